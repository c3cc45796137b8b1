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
