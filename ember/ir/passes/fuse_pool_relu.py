"""Fold relu's gradient mask into the max-pooling gradient.

``max_pool2d(relu(z))`` differentiates into ``mul(max_pool2d_backward(g, y),
cast(gt(y, 0)))`` with y the relu's output (relu's gradient reads its output; a mask
on the pre-activation z, ``gt(z, 0)`` with ``y = relu(z)``, is the same mask). The
pooling gradient's kernel already reads y to find each window's maximum, so it applies
the mask too (``max_pool2d_backward`` with ``relu=True``): one pass over the gradient
instead of a pooled gradient written, then read again with y and multiplied. The fused
kernel multiplies by 1.0 or 0.0 as the separate ``mul`` does, NaN and -0.0 included.

Rewritten only when it is the same program: the unmasked gradient has no other reader
(no other node, output or write-back), the mask is exactly ``y > 0`` of the pooled
tensor cast to the gradient's dtype, and nothing broadcasts.
"""
from __future__ import annotations

import numpy as np


def _is_zero(graph, nid: int) -> bool:
    if graph[nid].op != "const":
        return False
    v = np.asarray(graph.consts[nid])
    return v.size == 1 and v.dtype.kind in "biuf" and bool(v.reshape(()) == 0)


def _mask_source(graph, nid: int) -> int | None:
    """The tensor t when ``nid`` is ``cast(gt(t, 0))``, else None."""
    c = graph[nid]
    if c.op != "cast" or len(c.args) != 1:
        return None
    gt = graph[c.args[0]]
    if gt.op != "gt" or len(gt.args) != 2 or not _is_zero(graph, gt.args[1]):
        return None
    t = gt.args[0]
    if graph[t].shape != c.shape or not graph[t].dtype.is_floating_point:
        return None
    return t


def _private(graph, nid: int, user: int) -> bool:
    """Whether ``user`` is the only reader of ``nid``, and reads it once."""
    return (graph.users(nid) == [user] and graph[user].args.count(nid) == 1
            and nid not in graph.outputs and all(v != nid for _, v in graph.writebacks))


def fuse_pool_relu(graph):
    """Rewrite ``max_pool2d_backward(g, y) * cast(y > 0)`` into
    ``max_pool2d_backward(g, y, relu=True)``.

    >>> # in the compiled step of relu -> max_pool2d, explain shows
    >>> # %120 = max_pool2d_backward %118, %14 {kernel=(2, 2), ..., relu=True}
    """
    for nid in graph.nodes():
        m = graph[nid]
        if m.op != "mul" or len(m.args) != 2:
            continue
        for pb_id, mask_id in (m.args, m.args[::-1]):
            pb = graph[pb_id]
            if pb.op != "max_pool2d_backward" or pb.attrs.get("relu"):
                continue
            if pb.shape != m.shape or pb.dtype is not m.dtype or pb_id == mask_id:
                continue
            if graph[mask_id].dtype is not m.dtype:
                continue
            t = _mask_source(graph, mask_id)
            y = pb.args[1]
            if t is None:
                continue
            # The mask of y itself, or of z where y = relu(z) (z > 0 iff relu(z) > 0).
            if t != y and not (graph[y].op == "relu" and graph[y].args == (t,)):
                continue
            if not _private(graph, pb_id, nid):
                continue
            # pb comes before the mul and reads only earlier nodes: it takes the mul's
            # place (every reader of the mul comes after pb too).
            pb.attrs["relu"] = True
            graph.replace_uses(nid, pb_id)
            graph.remove(nid)
            break
    return graph
