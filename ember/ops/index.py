"""Advanced indexing: gather with integer/bool tensors, and its scatter (index_put);
one_hot; ``check_index``, the range check of indices that eager PyTorch makes; gather
and scatter along one dim (torch.gather, scatter, scatter_add); nonzero; argsort.

Keys are canonical tuples as in movement.py, where the string ``"tK"`` stands for
the K-th index tensor passed as an input after the data.

Value checks live in an op's eager function, never in the Python around the op: a
compiled replay runs no user Python, only plan steps, and those call the eager
functions. A check that guards a computation written with other ops (embedding's row
pick, nll_loss's target pick) is its own op, ``check_index``, kept by dead-code removal
and run by a plan before any other step (see ``OpDef.effect``).
"""
from __future__ import annotations

import functools

import ml_dtypes
import numpy as np

from ember.devices import add_at
from ember.dispatch import dispatch
from ember.errors import OpError, OpIndexError
from ember.ops.conv import _native
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
            # an embedding's gradient: rows added by a native kernel, np.add.at's order
            native = _native()
            if not (len(k) == 1 and native and native.scatter_add_rows(out, k[0], v)):
                np.add.at(out, k, v)
        else:
            add_at(xp, out, k, xp.broadcast_to(v, out[k].shape))
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
    if a.size and _any_outside(xp, a, bound, ignore):
        flat = a.reshape(-1)
        bad = (flat < 0) | (flat >= bound)
        if ignore is not None:
            bad &= flat != ignore
        if bool(bad.any()):
            err = OpIndexError(name, message.format(int(flat[int(bad.argmax())])))
            err.from_check = True
            raise err
    return xp.ones((), dtype=bool)


def _any_outside(xp, a, bound: int, ignore) -> bool:
    """Whether ``a`` may hold a value outside [0, bound) (one that is not ``ignore``):
    NumPy's min and max, or on a GPU one reduction kernel and one read back, where
    CuPy's min, max, comparisons and ``&`` launched five kernels (about 90 us a check
    on an H200)."""
    kernel = None if xp is np else _outside_kernel(xp)
    if kernel is None:
        return not bool((a.min() >= 0) & (a.max() < bound))
    return bool(kernel(a, bound, 0 if ignore is None else ignore, ignore is not None))


@functools.cache
def _outside_kernel(cupy):
    if not hasattr(cupy, "ReductionKernel"):   # (the test suite's CuPy stand-in)
        return None
    return cupy.ReductionKernel(
        "T x, int64 bound, int64 ignore, bool use_ignore", "bool bad",
        "(x < 0 || x >= bound) && !(use_ignore && x == ignore)", "a || b", "bad = a",
        "false", "ember_index_outside")


# PyTorch checks indices where it reads them; ember's gathers are composed from
# primitives that would wrap a negative index around, hence a check op of its own.
defop("check_index", INDEX, _check_index, effect=True)


# ---- gather / scatter along a dim (torch.gather, Tensor.scatter, scatter_add) ---------------

def _along(xp, index, dim):
    """The full NumPy index of ``index`` along ``dim``: ``index`` there, and an open grid
    over ``index``'s shape in every other dim (so the input may be larger there)."""
    grid = list(xp.ogrid[tuple(slice(0, n) for n in index.shape)]) if index.ndim else []
    grid[dim] = index
    return tuple(grid)


def _check_along(a, index, dim, name):
    if index.ndim != a.ndim and not (index.ndim <= 1 and a.ndim <= 1):
        raise OpError(name, "Index tensor must have the same number of dimensions as "
                      f"{'input' if name == 'gather' else 'self'} tensor")
    if index.dtype != np.int64:
        raise OpError(name, f"{name}(): Expected dtype int64 for index")
    for d in range(index.ndim):
        if d != dim and index.shape[d] > (a.shape[d] if a.ndim else 1):
            raise OpError(name, f"Size does not match at dimension {d} expected index "
                          f"{list(index.shape)} to be smaller than self {list(a.shape)} apart "
                          f"from dimension {dim}")
    if index.size:
        n = a.shape[dim] if a.ndim else 1
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= n:
            raise OpIndexError(name, f"index {hi if hi >= n else lo} is out of bounds for "
                               f"dimension {dim} with size {n}")


def _gather(xp, a, index, dim):
    _check_along(a, index, dim, "gather")
    a1, i1 = a.reshape(-1) if a.ndim == 0 else a, index.reshape(-1) if index.ndim == 0 else index
    return a1[_along(xp, i1, dim)].reshape(index.shape)


def _gather_vjp(g, out, a, index, dim):
    return (dispatch("scatter", a.new_zeros(a.shape), index, g, dim=dim, accumulate=True),
            None)


def _scatter(xp, a, index, src, dim, accumulate):
    name = "scatter_add" if accumulate else "scatter"
    _check_along(a, index, dim, name)
    for d in range(index.ndim):
        if src.ndim and index.shape[d] > src.shape[d]:
            raise OpError(name, f"Size does not match at dimension {d} expected index "
                          f"{list(index.shape)} to be smaller than src {list(src.shape)}")
    out = a.copy()
    if not index.size:
        return out
    # 0-dim tensors act as 1-dim ones of one element (reshape(-1) of ``out`` is a view).
    o1 = out.reshape(-1) if out.ndim == 0 else out
    i1 = index.reshape(-1) if index.ndim == 0 else index
    s1 = src.reshape(-1) if src.ndim == 0 and i1.ndim else src
    k = _along(xp, i1, dim)
    v = s1[tuple(slice(0, n) for n in i1.shape)].astype(a.dtype, copy=False)
    if not accumulate:
        o1[k] = v
    else:
        add_at(xp, o1, k, v)
    return out


def _pad_to(g, shape):
    """``g`` (the index's shape) in zeros of ``shape``: src may be larger than the index."""
    if tuple(g.shape) == tuple(shape):
        return g
    key = tuple((0, n, 1) for n in g.shape)
    return dispatch("unslice", g, shape=tuple(shape), key=key)


def _scatter_vjp(g, out, a, index, src, dim, accumulate):
    ga = gs = None
    if a.requires_grad:
        ga = g if accumulate else dispatch("scatter", g, index, g.new_zeros(()).expand(index.shape),
                                           dim=dim, accumulate=False)
    if src.requires_grad:
        gs = _pad_to(dispatch("gather", g, index, dim=dim), src.shape)
    return ga, None, gs


defop("gather", INDEX, _gather, _gather_vjp)
defop("scatter", INDEX, _scatter, _scatter_vjp)


def _nonzero(xp, a):
    return xp.stack(xp.nonzero(a), axis=-1).astype(np.int64) if a.ndim else \
        xp.zeros((int(bool(a)), 0), dtype=np.int64)


# How many elements are nonzero is known only from the values.
defop("nonzero", INDEX, _nonzero, data_dependent_shape=lambda a: True)


def _argsort(xp, a, dim, descending):
    if a.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if not descending:
        return _stable_argsort(xp, a, dim).astype(np.int64)
    # Stable descending: ascending on the reversed dim, reversed back (ties keep their
    # order, NaN comes first as in torch, and no negation that unsigned or bool can't take).
    n = a.shape[dim]
    rev = xp.flip(_stable_argsort(xp, xp.flip(a, dim), dim), dim)
    return (n - 1 - rev).astype(np.int64)


def _stable_argsort(xp, a, dim):
    # CuPy's sorts are always stable, and take kind="stable" (and no other kind).
    if a.dtype == _BFLOAT16:   # (ml_dtypes' sort leaves NaNs where they are; torch: last)
        a = a.astype(xp.float32)
    return xp.argsort(a, axis=dim, kind="stable")


_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


# Indices only (values are a gather of them, which carries the gradient).
defop("argsort", INDEX, _argsort)
