"""Lowering: a fused group of IR nodes -> a backend-neutral Kernel.

Operands from outside the group become Loads whose strides come from the arrays the
group will read (views included), broadcast into the group's iteration shape. Scalar
constants become literals in the expression.
"""
from __future__ import annotations

from ember.codegen.kernel import Expr, Kernel, Load


def group_outputs(graph, group: list[int], keep: set[int]) -> list[int]:
    """Members whose value is needed outside the group."""
    members = set(group)
    return [n for n in group
            if n in keep or any(u not in members for u in graph.users(n))]


def external_args(graph, group: list[int]) -> list[int]:
    members = set(group)
    out: list[int] = []
    for n in group:
        for a in graph[n]["args"]:
            if a not in members and a not in out and not _inline_const(graph, a):
                out.append(a)
    return out


def _inline_const(graph, nid: int) -> bool:
    return graph[nid]["op"] == "const" and graph.consts[nid].size == 1


def broadcast_strides(array, shape: tuple) -> tuple[int, ...]:
    """Element strides reading ``array`` broadcast to ``shape`` (0 on broadcast dims)."""
    lead = len(shape) - array.ndim
    out = []
    for d, n in enumerate(shape):
        if d < lead:
            out.append(0)
            continue
        size = array.shape[d - lead]
        out.append(0 if size == 1 else array.strides[d - lead] // array.itemsize)
    return tuple(out)


def lower_group(graph, group: list[int], args: list[int], outputs: list[int], arrays: dict,
                name: str) -> Kernel:
    """Build the Kernel of ``group``; ``arrays`` holds the operands' arrays (for strides)."""
    shape = tuple(graph[group[0]]["shape"])
    loads = [Load(i, graph[a]["dtype"], broadcast_strides(arrays[a], shape))
             for i, a in enumerate(args)]
    exprs: list[Expr] = []
    ref: dict[int, int] = {}
    for i, a in enumerate(args):
        ref[a] = len(exprs)
        exprs.append(Expr("load", (i,), graph[a]["dtype"]))
    for n in group:
        d = graph[n]
        operands = []
        for a in d["args"]:
            if a not in ref:  # a scalar constant, inlined
                ref[a] = len(exprs)
                exprs.append(Expr("const", (graph.consts[a].reshape(()).item(),), graph[a]["dtype"]))
            operands.append(ref[a])
        ref[n] = len(exprs)
        exprs.append(Expr(d["op"], tuple(operands), d["dtype"]))
    return Kernel(name, shape, loads, exprs, [ref[o] for o in outputs],
                  ops=[graph[n]["op"] for n in group],
                  src=sorted({graph[n]["src"] for n in group if graph[n].get("src")}))
