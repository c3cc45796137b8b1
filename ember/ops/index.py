"""Advanced indexing: gather with integer/bool tensors, and its scatter (index_put).

Keys are canonical tuples as in movement.py, where the string ``"tK"`` stands for
the K-th index tensor passed as an input after the data.
"""
from __future__ import annotations

import numpy as np

from ember.dispatch import dispatch
from ember.ops.elementwise import sum_to
from ember.ops.registry import INDEX, defop


def build_key(key: tuple, idx: tuple) -> tuple:
    return tuple(idx[int(k[1:])] if type(k) is str else slice(*k) if type(k) is tuple else k
                 for k in key)


def _index_vjp(g, out, a, *idx, key):
    zeros = a.new_zeros(a.shape)
    return (dispatch("index_put", zeros, g, *idx, key=key, accumulate=True),) + (None,) * len(idx)


def _index_put(xp, a, v, *idx, key, accumulate):
    out = a.copy()
    k = build_key(key, idx)
    v = v.astype(a.dtype, copy=False)
    if not accumulate:
        out[k] = v
    elif xp is np:
        np.add.at(out, k, v)
    else:
        import cupyx
        cupyx.scatter_add(out, k, xp.broadcast_to(v, out[k].shape))
    return out


def _index_put_vjp(g, out, a, v, *idx, key, accumulate):
    ga = gv = None
    if a.requires_grad:
        ga = g if accumulate else dispatch("index_put", g, g.new_zeros(()), *idx, key=key,
                                           accumulate=False)
    if v.requires_grad:
        gv = sum_to(dispatch("index", g, *idx, key=key), v.shape)
    return (ga, gv) + (None,) * len(idx)


# x[mask] has as many elements as the mask has True values. (x[mask] = v keeps x's shape.)
defop("index", INDEX, lambda xp, a, *idx, key: a[build_key(key, idx)], _index_vjp,
      data_dependent_shape=lambda a, *idx: any(i.dtype.name == "bool" for i in idx))
defop("index_put", INDEX, _index_put, _index_put_vjp)


def _one_hot(xp, a, num_classes):
    if a.dtype != np.int64:
        raise TypeError("one_hot is only applicable to index tensor of type int64")
    if a.size:   # out-of-range classes would give rows of zeros: an error instead
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError("Class values must be non-negative.")
        if hi >= num_classes:
            raise ValueError(f"Class values must be smaller than num_classes ({num_classes}), "
                             f"got {hi}.")
    return (a[..., None] == xp.arange(num_classes)).astype(np.int64)


defop("one_hot", INDEX, _one_hot)
