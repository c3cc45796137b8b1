"""Reductions over axes: sum, amax and argmax (min, mean, var, softmax are composites);
and the scans cumsum and cumprod."""
from __future__ import annotations

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.ops.registry import INDEX, REDUCE, defop

_INT64 = dtypes.int64
_BFLOAT16 = dtypes.bfloat16.np


def where(c, a, b):
    return dispatch("where", c, a, b)


def _restore_dims(g, shape, axes, keepdim):
    """Put reduced axes back as size-1 dims so ``g`` broadcasts against the input."""
    if keepdim:
        return g
    full = list(shape)
    for ax in axes:
        full[ax] = 1
    return g.reshape(tuple(full))


def _sum_vjp(g, out, a, axes, keepdim):
    return (_restore_dims(g, a.shape, axes, keepdim).expand(a.shape),)


def _amax_vjp(g, out, a, axes, keepdim):
    # The gradient goes to every maximal element, shared equally among ties (as amax does).
    o = _restore_dims(out, a.shape, axes, keepdim)
    mask = (a == o).to(g.dtype)
    count = mask.sum(dim=axes, keepdim=True)
    return (_restore_dims(g, a.shape, axes, keepdim) * mask / count,)


# NumPy sums float32 along the last axis in pairwise partial sums, but down the leading
# axes row by row, in float32: over 28,672 rows that drifted 1.3e-4 relative (torch:
# 1.5e-7), past the tolerance of a compiled call's first check against eager, where the
# generated kernel sums in float64. Beyond this many rows added one by one, the eager
# sum accumulates in float64 too (2x the time of NumPy's float32 sum).
_SERIAL_ROWS = 4096


def _half(a) -> bool:
    """float16 or bfloat16 (whose NumPy kind is "V"): PyTorch sums them in float32."""
    return a.dtype.itemsize == 2 and (a.dtype.kind == "f" or a.dtype == _BFLOAT16)


def _sum(xp, a, axes, keepdim):
    if _half(a):   # summed in bfloat16, 1000 halves added up to 128 (torch: 500)
        return xp.sum(a, axis=axes, keepdims=keepdim, dtype=xp.float32).astype(a.dtype)
    if a.dtype.kind == "f" and a.dtype.itemsize < 8 and a.ndim:
        rows = 1
        for ax in (axes if axes is not None else range(a.ndim)):
            if ax % a.ndim != a.ndim - 1:
                rows *= a.shape[ax]
        if rows > _SERIAL_ROWS:
            return xp.sum(a, axis=axes, keepdims=keepdim, dtype=xp.float64).astype(a.dtype)
    # Integers sum in their own dtype, wrapping as torch's sum(dtype=int32) (NumPy would
    # widen to int64); Tensor.sum makes them int64 unless a dtype is asked for.
    dt = a.dtype if a.dtype.kind in "iu" else None
    if xp is np:   # np.sum's Python wrapper costs ~2.5 us a call; the same reduction
        return np.add.reduce(a, axis=axes, keepdims=keepdim, dtype=dt)
    return xp.sum(a, axis=axes, keepdims=keepdim, dtype=dt)


defop("sum", REDUCE, _sum, _sum_vjp)
defop("amax", REDUCE, lambda xp, a, axes, keepdim: xp.max(a, axis=axes, keepdims=keepdim),
      _amax_vjp)


def _argmax(xp, a, axis, keepdim):
    if axis is None:
        r = xp.argmax(a.reshape(-1))
        return r.reshape((1,) * a.ndim) if keepdim else r
    return xp.argmax(a, axis=axis, keepdims=keepdim)


# Indices are not differentiable; argmin is argmax of the negation.
defop("argmax", INDEX, _argmax)


# ---- scans ------------------------------------------------------------------------------

def _cumsum_vjp(g, out, a, dim):
    # Each input reaches every output at or after it: a reversed cumulative sum.
    return (dispatch("flip", dispatch("cumsum", dispatch("flip", g, dims=(dim,)), dim=dim),
                     dims=(dim,)),)


def _cumprod_vjp(g, out, a, dim):
    # grad_i = sum_{j >= i} g_j prod_{k <= j, k != i} a_k, in O(n) and exact with zeros
    # (as PyTorch's): before a row's first zero it is revcumsum(g * out)_i / a_i; at the
    # first zero, revcumsum(g * out')_i with out' the products skipping that zero; after
    # it, every product holds that zero.
    zero = a == 0
    zeros_so_far = dispatch("cumsum", dispatch("cast", zero, dtype=_INT64), dim=dim)
    before = zeros_so_far == 0
    first = zero & (zeros_so_far == 1)
    grad = where(before, _rev_cumsum(g * out, dim) / where(before, a, 1), 0)
    skipped = dispatch("cumprod", where(first, 1, a), dim=dim)
    return (grad + where(first, _rev_cumsum(g * skipped, dim), 0),)


def _rev_cumsum(x, dim):
    return _cumsum_vjp(x, None, x, dim)[0]


def _cumsum(xp, a, dim):
    # Float32/16 running sums accumulate in float64 (PyTorch's CPU scan does): in float32
    # a 1M-long cumsum drifts by 2e-5 relative, where torch stays at 3e-8.
    if a.dtype.kind == "f" and a.dtype.itemsize < 8 or _half(a):
        return xp.cumsum(a, axis=dim, dtype=xp.float64).astype(a.dtype)
    return xp.cumsum(a, axis=dim, dtype=a.dtype)


defop("cumsum", REDUCE, _cumsum, _cumsum_vjp)
defop("cumprod", REDUCE, lambda xp, a, dim: xp.cumprod(a, axis=dim, dtype=a.dtype), _cumprod_vjp)
