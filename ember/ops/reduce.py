"""Reductions over axes: sum, amax and argmax (min, mean, var, softmax are composites);
and the scans cumsum and cumprod."""
from __future__ import annotations

from ember.dispatch import dispatch
from ember.ops.registry import INDEX, REDUCE, defop


def arange(n, device):
    from ember.tensor import arange as make   # ember.tensor imports the ops package
    return make(n, device=device)


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


# ---- scans ------------------------------------------------------------------------------

def _cumsum_vjp(g, out, a, dim):
    # Each input reaches every output at or after it: a reversed cumulative sum.
    return (dispatch("flip", dispatch("cumsum", dispatch("flip", g, dims=(dim,)), dim=dim),
                     dims=(dim,)),)


# Beyond this length, cumprod's gradient divides by the input (O(n)) instead of forming
# the n x n products that stay exact where inputs are zero.
EXACT_CUMPROD_GRAD = 256


def _cumprod_vjp(g, out, a, dim):
    n = a.shape[dim]
    if n > EXACT_CUMPROD_GRAD:
        rev = _cumsum_vjp(g * out, None, a, dim)[0]
        return (rev / a,)
    # c[..., i, j] = prod of a[k] for k <= j, k != i: a broadcast along a new dim i, with
    # the diagonal replaced by 1, cumulatively multiplied along j. grad_i = sum_{j >= i}
    # g_j c[i, j]. Exact where inputs are zero (dividing out[j] by a[i] is not).
    x = a.movedim(dim, -1)
    gj = g.movedim(dim, -1)
    eye = (arange(n, device=a.device).reshape(n, 1) == arange(n, device=a.device)).expand(
        x.shape[:-1] + (n, n))
    rows = where(eye, 1, x.unsqueeze(-2).expand(x.shape[:-1] + (n, n)).to(a.dtype))
    c = dispatch("cumprod", rows, dim=rows.ndim - 1)
    upper = arange(n, device=a.device).reshape(n, 1) <= arange(n, device=a.device)
    grad = (where(upper, c * gj.unsqueeze(-2), 0)).sum(-1)
    return (grad.movedim(-1, dim),)


defop("cumsum", REDUCE, lambda xp, a, dim: xp.cumsum(a, axis=dim, dtype=a.dtype), _cumsum_vjp)
defop("cumprod", REDUCE, lambda xp, a, dim: xp.cumprod(a, axis=dim, dtype=a.dtype), _cumprod_vjp)
