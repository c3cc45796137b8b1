"""verify(graph): the checks the pass manager runs after each pass in debug mode."""
from __future__ import annotations

from ember.ops.registry import OPS


class GraphError(AssertionError):
    pass


def verify(graph) -> None:
    """Raise GraphError unless the graph is acyclic, typed, and every reference resolves.

    One pass over the nodes (linear in the graph): every operand is an earlier node with
    its edge, and a node has no other in-edges, so the edges follow node order and the
    graph is acyclic without a separate search."""
    g = graph._nx
    nodes = graph._nodes
    pred = g._pred     # networkx's own dicts: node -> {operand node: {edge key: data}}
    consts = graph.consts
    for nid, d in nodes.items():
        op = d.op
        if op not in OPS and op not in ("input", "const"):
            raise GraphError(f"%{nid}: unknown op {op!r}")
        if (d.shape is None or d.dtype is None or d.device is None or d.args is None
                or d.attrs is None):
            k = next(k for k in ("shape", "dtype", "device", "args", "attrs")
                     if getattr(d, k) is None)
            raise GraphError(f"%{nid}: missing {k}")
        ins = pred.get(nid)
        if ins is None:
            raise GraphError(f"%{nid}: not in the edge graph")
        for pos, a in enumerate(d.args):
            if a >= nid or a not in nodes:
                raise GraphError(f"%{nid}: argument %{a} is not an earlier node")
            keys = ins.get(a)
            if keys is None or pos not in keys:
                raise GraphError(f"%{nid}: edge for operand {pos} (%{a}) is missing")
        n_in = 0
        for a, keys in ins.items():
            n_in += len(keys)
        if n_in != len(d.args):
            raise GraphError(f"%{nid}: {n_in} in-edges for {len(d.args)} operands")
        if op == "const" and nid not in consts:
            raise GraphError(f"%{nid}: const without a value")
    if len(g) != len(nodes):
        raise GraphError(f"the edge graph has {len(g)} nodes for {len(nodes)} IR nodes")
    for o in graph.outputs:
        if o not in nodes:
            raise GraphError(f"output %{o} is not a node")
    for i, v in graph.writebacks:
        if i not in graph.sources or v not in nodes:
            raise GraphError(f"writeback %{i} <- %{v} does not resolve")
