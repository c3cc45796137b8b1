"""Algebraic simplification: x*1, x+0 (ints; floats: x + -0.0), x-0 (x - +0.0), x/1,
--x, identity casts and reshapes, and
detach and data_update (they only steer gradients, which the compiled backward has
already taken into account).

Safe with in-place updates: the graph is pure (a write is a new value, see
``ember/ir/views.py``), and a result simplified to an input (``y = x + 0`` then
``x.add_(5)``) is copied by the replay before the write-back (``compile._effects``),
so ``y`` keeps the old value and never aliases ``x``.
"""
from __future__ import annotations

import numpy as np


def _is_scalar_const(graph, nid: int, value) -> bool:
    if graph[nid].op != "const":
        return False
    v = graph.consts[nid]
    return v.size >= 1 and bool(np.all(v == value))


def _is_zero(graph, nid: int, negative: bool) -> bool:
    """A constant zero that adding (``negative``: -0.0) or subtracting (+0.0) leaves
    every float unchanged: -0.0 + 0.0 is +0.0, so ``x + 0`` is not ``x`` for floats."""
    if not _is_scalar_const(graph, nid, 0):
        return False
    v = graph.consts[nid]
    return v.dtype.kind not in "fc" or bool(np.all(np.signbit(v.real) == negative))


def _identity_operand(graph, nid: int) -> int | None:
    """The operand that ``nid`` merely passes through, if any."""
    d = graph[nid]
    op, args = d.op, d.args

    def same_type(a: int) -> bool:
        return graph[a].shape == d.shape and graph[a].dtype is d.dtype

    if op in ("mul",):
        for a, b in (args, args[::-1]):
            if _is_scalar_const(graph, b, 1) and same_type(a):
                return a
    if op == "add":
        for a, b in (args, args[::-1]):
            if _is_zero(graph, b, negative=True) and same_type(a):
                return a
    if op == "sub" and _is_zero(graph, args[1], negative=False) and same_type(args[0]):
        return args[0]
    if op == "div" and _is_scalar_const(graph, args[1], 1) and same_type(args[0]):
        return args[0]
    if op == "neg" and graph[args[0]].op == "neg":
        return graph[args[0]].args[0]
    if op == "detach":
        return args[0]
    if op == "data_update":
        return args[1]
    if op in ("cast", "reshape", "expand") and same_type(args[0]):
        return args[0]
    if op == "permute" and d.attrs["dims"] == tuple(range(len(d.shape))):
        return args[0]
    return None


def simplify(graph):
    for nid in graph.nodes():
        if graph[nid].op in ("input", "const"):
            continue
        src = _identity_operand(graph, nid)
        if src is not None:
            graph.replace_uses(nid, src)
            graph.remove(nid)
    return graph
