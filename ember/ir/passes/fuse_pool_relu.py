"""Fold relu's gradient mask into the max-pooling gradient.

``max_pool2d(relu(z))`` differentiates into ``where(le(y, 0), 0, max_pool2d_backward(g,
y))`` with y the relu's output (relu's gradient reads its output, torch's
``threshold_backward``; a test of the pre-activation z, ``le(z, 0)`` with ``y =
relu(z)``, is the same test). The pooling gradient's kernel already reads y to find each
window's maximum, so it applies the test too (``max_pool2d_backward`` with
``relu=True``): one pass over the gradient instead of a pooled gradient written, then
read again with y and selected. The fused kernel selects as the separate ``where``
does: 0 where y <= 0, the gradient elsewhere (a NaN y passes it, an inf gradient where
y <= 0 is 0).

Rewritten only when it is the same program: the unselected gradient has no other reader
(no other node, output or write-back), the test is exactly ``y <= 0`` of the pooled
tensor, the value where it holds is 0, and nothing broadcasts.
"""
from __future__ import annotations

import numpy as np


def _is_zero(graph, nid: int) -> bool:
    if graph[nid].op != "const":
        return False
    v = np.asarray(graph.consts[nid])
    return v.size == 1 and v.dtype.kind in "biuf" and bool(v.reshape(()) == 0)


def _test_source(graph, nid: int, shape) -> int | None:
    """The tensor t when ``nid`` is ``le(t, 0)`` with t of ``shape``, else None."""
    le = graph[nid]
    if le.op != "le" or len(le.args) != 2 or not _is_zero(graph, le.args[1]):
        return None
    t = le.args[0]
    if graph[t].shape != shape or not graph[t].dtype.is_floating_point:
        return None
    return t


def _private(graph, nid: int, user: int) -> bool:
    """Whether ``user`` is the only reader of ``nid``, and reads it once."""
    return (graph.users(nid) == [user] and graph[user].args.count(nid) == 1
            and nid not in graph.outputs and all(v != nid for _, v in graph.writebacks))


def fuse_pool_relu(graph):
    """Rewrite ``where(y <= 0, 0, max_pool2d_backward(g, y))`` into
    ``max_pool2d_backward(g, y, relu=True)``.

    >>> # in the compiled step of relu -> max_pool2d, explain shows
    >>> # %120 = max_pool2d_backward %118, %14 {kernel=(2, 2), ..., relu=True}
    """
    for nid in graph.nodes():
        m = graph[nid]
        if m.op != "where" or len(m.args) != 3:
            continue
        test_id, zero_id, pb_id = m.args
        pb = graph[pb_id]
        if pb.op != "max_pool2d_backward" or pb.attrs.get("relu"):
            continue
        if pb.shape != m.shape or pb.dtype is not m.dtype or not _is_zero(graph, zero_id):
            continue
        t = _test_source(graph, test_id, m.shape)
        y = pb.args[1]
        if t is None:
            continue
        # The test of y itself, or of z where y = relu(z) (z <= 0 iff relu(z) <= 0).
        if t != y and not (graph[y].op == "relu" and graph[y].args == (t,)):
            continue
        if not _private(graph, pb_id, nid):
            continue
        # pb comes before the where and reads only earlier nodes: it takes the where's
        # place (every reader of the where comes after pb too).
        pb.attrs["relu"] = True
        graph.replace_uses(nid, pb_id)
        graph.remove(nid)
    return graph
