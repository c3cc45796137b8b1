"""Advanced indexing: gather with integer/bool tensors, and its scatter (index_put);
one_hot; and ``check_index``, the range check of indices that eager PyTorch makes.

Keys are canonical tuples as in movement.py, where the string ``"tK"`` stands for
the K-th index tensor passed as an input after the data.

Value checks live in an op's eager function, never in the Python around the op: a
compiled replay runs no user Python, only plan steps, and those call the eager
functions. A check that guards a computation written with other ops (embedding's row
pick, nll_loss's target pick) is its own op, ``check_index``, kept by dead-code removal
and run by a plan before any other step (see ``OpDef.effect``).
"""
from __future__ import annotations

import numpy as np

from ember.dispatch import dispatch
from ember.errors import OpError, OpIndexError
from ember.ops.elementwise import sum_to
from ember.ops.registry import INDEX, defop


def build_key(key: tuple, idx: tuple) -> tuple:
    return tuple(idx[int(k[1:])] if type(k) is str else slice(*k) if type(k) is tuple else k
                 for k in key)


def _index_vjp(g, out, a, *idx, key):
    zeros = a.new_zeros(a.shape)
    return (dispatch("index_put", zeros, g, *idx, key=key, accumulate=True),) + (None,) * len(idx)


def _index(xp, a, *idx, key):
    try:
        return a[build_key(key, idx)]
    except IndexError as e:   # PyTorch's words: "dimension", not NumPy's "axis"
        raise OpIndexError("index", str(e).replace(" axis ", " dimension ")) from None


def _index_put(xp, a, v, *idx, key, accumulate):
    out = a.copy()
    k = build_key(key, idx)
    v = v.astype(a.dtype, copy=False)
    try:
        if not accumulate:
            out[k] = v
        elif xp is np:
            np.add.at(out, k, v)
        else:
            import cupyx
            cupyx.scatter_add(out, k, xp.broadcast_to(v, out[k].shape))
    except IndexError as e:
        raise OpIndexError("index_put", str(e).replace(" axis ", " dimension ")) from None
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
defop("index", INDEX, _index, _index_vjp,
      data_dependent_shape=lambda a, *idx: any(i.dtype.name == "bool" for i in idx))
defop("index_put", INDEX, _index_put, _index_put_vjp)


def _one_hot(xp, a, num_classes):
    if a.dtype != np.int64:
        raise OpError("one_hot", "one_hot is only applicable to index tensor of type int64")
    if a.size:   # out-of-range classes would give rows of zeros: an error instead
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise OpError("one_hot", "Class values must be non-negative.")
        if hi >= num_classes:
            raise OpError("one_hot", f"Class values must be smaller than num_classes "
                          f"({num_classes}), got {hi}.")
    return (a[..., None] == xp.arange(num_classes)).astype(np.int64)


defop("one_hot", INDEX, _one_hot)


def _check_index(xp, a, *, bound: int, ignore=None, name: str, message: str):
    """Raise ``OpIndexError(name, message.format(v))`` for the first value ``v`` of ``a``
    outside [0, bound) that is not ``ignore``; else return a 0-dim True nobody reads.

    Two reductions in the common case (about 2 us on a small batch); the mask that finds
    the first bad value is built only when there is one (or values equal to ``ignore``)."""
    if a.size:
        lo, hi = a.min(), a.max()
        if not bool((lo >= 0) & (hi < bound)):   # one device sync on a GPU
            flat = a.reshape(-1)
            bad = (flat < 0) | (flat >= bound)
            if ignore is not None:
                bad &= flat != ignore
            if bool(bad.any()):
                err = OpIndexError(name, message.format(int(flat[int(bad.argmax())])))
                err.from_check = True
                raise err
    return xp.ones((), dtype=bool)


# PyTorch checks indices where it reads them; ember's gathers are composed from
# primitives that would wrap a negative index around, hence a check op of its own.
defop("check_index", INDEX, _check_index, effect=True)
