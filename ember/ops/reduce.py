"""Reductions over axes: sum, amax and argmax (min, mean, var, softmax are composites)."""
from __future__ import annotations

from ember.ops.registry import INDEX, REDUCE, defop


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


defop("sum", REDUCE, lambda xp, a, axes, keepdim: xp.sum(a, axis=axes, keepdims=keepdim),
      _sum_vjp)
defop("amax", REDUCE, lambda xp, a, axes, keepdim: xp.max(a, axis=axes, keepdims=keepdim),
      _amax_vjp)


def _argmax(xp, a, axis, keepdim):
    if axis is None:
        r = xp.argmax(a.reshape(-1))
        return r.reshape((1,) * a.ndim) if keepdim else r
    return xp.argmax(a, axis=axis, keepdims=keepdim)


# Indices are not differentiable; argmin is argmax of the negation.
defop("argmax", INDEX, _argmax)
