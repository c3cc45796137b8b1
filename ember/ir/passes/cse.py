"""Common-subexpression elimination: one node per distinct (op, operands, attributes).

Random ops are never merged: two calls to rand() are two different tensors. Reads
across an in-place update are never merged either: the write made a new value
(``strided_scatter``), and reads after it are ops on that value.
"""
from __future__ import annotations

from ember.ops.registry import OPS


def _key(graph, nid: int):
    d = graph[nid]
    op = d.op
    if op == "const":
        v = graph.consts[nid]
        if v.size > 64:  # comparing big constants costs more than it saves
            return None
        return ("const", d.dtype.name, v.shape, v.tobytes())
    if op == "input" or OPS[op].impure:
        return None
    args = d.args
    if OPS[op].commutative:
        args = tuple(sorted(args))
    try:
        attrs = tuple(sorted(d.attrs.items()))
        hash(attrs)
    except TypeError:
        return None
    return (op, args, attrs, d.dtype.name)


def cse(graph):
    seen: dict = {}
    for nid in graph.nodes():
        key = _key(graph, nid)
        if key is None:
            continue
        prev = seen.get(key)
        if prev is None:
            seen[key] = nid
        else:
            graph.replace_uses(nid, prev)
            graph.remove(nid)
    return graph
