"""More of torch's math, as functions and Tensor methods: trigonometric and hyperbolic
functions and their inverses, log2/log10, hypot, logaddexp, copysign, fmax/fmin, prod,
nansum/nanmean, aminmax, kthvalue, trace, diag, stacking helpers, inner/mv/tensordot,
cov/corrcoef, index_fill/index_copy, gcd/lcm, and torch's aliases (divide, multiply,
subtract, absolute, arctan, ...).

Each is written with ember's ops (atan, asin, acos and atan2 are primitives of their own,
ember/ops/mathops.py), so autograd and ``ember.compile`` work for it.

>>> ember.atan2(ember.tensor([1.0]), ember.tensor([-1.0]))
tensor([2.3562])
"""
from __future__ import annotations

import math

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.functions_more import _inplace_method, _method
from ember.tensor import Tensor, cat, stack, tensor, where
from ember.tensor_common import values_indices

_LN2, _LN10 = math.log(2.0), math.log(10.0)


def _float(x: Tensor) -> Tensor:
    """Integers and bools compute in the default float, as torch's float ops."""
    return x if x.is_floating_point() or x.dtype.is_complex else x.to(dtypes.get_default_dtype())


def _t(x, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x, dtype=like.dtype if isinstance(x, float)
                                                  and like.is_floating_point() else None,
                                                  device=like.device)


def _pair(a, b) -> tuple[Tensor, Tensor]:
    """Two operands broadcast to one shape, promoted to one float dtype."""
    like = a if isinstance(a, Tensor) else b
    a, b = _float(_t(a, like)), _float(_t(b, like))
    if a.dtype != b.dtype:
        wide = dtypes.promote(a.dtype, b.dtype)
        a, b = a.to(wide), b.to(wide)
    shape = tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
    return a.expand(*shape), b.expand(*shape)


# ---- trigonometric and hyperbolic ---------------------------------------------------------

def tan(input: Tensor) -> Tensor:
    """sin / cos. ``ember.tan(ember.tensor([0.5]))``"""
    x = _float(input)
    return x.sin() / x.cos()


def atan(input: Tensor) -> Tensor:
    """The inverse tangent. ``ember.atan(ember.tensor([1.0]))``"""
    return dispatch("atan", _float(input))


def asin(input: Tensor) -> Tensor:
    """The inverse sine (nan outside [-1, 1]). ``ember.asin(ember.tensor([0.5]))``"""
    return dispatch("asin", _float(input))


def acos(input: Tensor) -> Tensor:
    """The inverse cosine (nan outside [-1, 1]). ``ember.acos(ember.tensor([0.5]))``"""
    return dispatch("acos", _float(input))


def atan2(input: Tensor, other: Tensor) -> Tensor:
    """The angle of (other, input), elementwise, in (-pi, pi].

    >>> ember.atan2(ember.tensor([1.0]), ember.tensor([-1.0]))
    tensor([2.3562])
    """
    y, x = _pair(input, other)
    return dispatch("atan2", y.contiguous(), x.contiguous())


def sinh(input: Tensor) -> Tensor:
    """(e^x - e^-x) / 2, through expm1 (exact near 0). ``ember.sinh(ember.tensor([1.0]))``"""
    x = _float(input)
    return (x.expm1() - (-x).expm1()) * 0.5


def cosh(input: Tensor) -> Tensor:
    """(e^x + e^-x) / 2. ``ember.cosh(ember.tensor([1.0]))``"""
    x = _float(input)
    return (x.exp() + (-x).exp()) * 0.5


# Beyond 2^28, x^2 would overflow float32 (or lose 1 + x^2's 1): asinh and acosh are
# log(2x) there, to within 1/(4x^2) (< 2^-58). Each branch of their ``where``s sees an
# argument clamped into its own range, so the branch not taken has a finite value and
# derivative and adds an exact 0 to the gradient (an inf or NaN there would make it NaN).
_BIG = 2.0 ** 28
_LN2 = math.log(2.0)


def _in_float32(fn):
    """float16/bfloat16 compute in float32 (x^2 overflows float16 from 256), as torch's
    half kernels do, and round once at the end."""
    def wrapped(input: Tensor) -> Tensor:
        x = _float(input)
        if x.dtype in (dtypes.float16, dtypes.bfloat16):
            return fn(x.to(dtypes.float32)).to(x.dtype)
        return fn(x)
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@_in_float32
def asinh(x: Tensor) -> Tensor:
    """The inverse hyperbolic sine: log1p(x + x^2 / (1 + sqrt(1 + x^2))) for x >= 0 (exact
    near 0), -asinh(-x) below, log(2|x|) with x's sign beyond 2^28.
    ``ember.asinh(ember.tensor([1.0]))``"""
    def pos(y):
        return (y + y * y / (1 + (1 + y * y).sqrt())).log1p()
    neg = x < 0
    small = x.clamp(-_BIG, _BIG)
    near = where(neg, -pos(where(neg, -small, 0.0)), pos(where(neg, 0.0, small)))
    far = (dispatch("maximum", x.abs(), x.new_full((), _BIG)).log() + _LN2)
    return where(x.abs() > _BIG, where(neg, -far, far), near)


@_in_float32
def acosh(x: Tensor) -> Tensor:
    """The inverse hyperbolic cosine, log1p(t + sqrt(t (x + 1))) with t = x - 1 (exact near
    1, nan below), log(2x) beyond 2^28. ``ember.acosh(ember.tensor([2.0]))``"""
    small = dispatch("minimum", x, x.new_full((), _BIG))
    far = dispatch("maximum", x, x.new_full((), _BIG)).log() + _LN2
    t = small - 1
    # sqrt(t) sqrt(x + 1), not sqrt(t (x + 1)): at x = 1 the gradient is inf, as torch's,
    # where the product rule would multiply an inf by t = 0
    return where(x > _BIG, far, (t + t.sqrt() * (small + 1).sqrt()).log1p())


def atanh(input: Tensor) -> Tensor:
    """The inverse hyperbolic tangent, log1p(2x / (1 - x)) / 2.
    ``ember.atanh(ember.tensor([0.5]))``"""
    x = _float(input)
    return (2 * x / (1 - x)).log1p() * 0.5


def log2(input: Tensor) -> Tensor:
    """Base-2 logarithm. ``ember.log2(ember.tensor([8.0]))``"""
    return _float(input).log() / _LN2


def log10(input: Tensor) -> Tensor:
    """Base-10 logarithm. ``ember.log10(ember.tensor([100.0]))``"""
    return _float(input).log() / _LN10


def deg2rad(input: Tensor) -> Tensor:
    """Degrees to radians. ``ember.deg2rad(ember.tensor([180.0]))``"""
    return _float(input) * (math.pi / 180.0)


def rad2deg(input: Tensor) -> Tensor:
    """Radians to degrees. ``ember.rad2deg(ember.tensor([3.1416]))``"""
    return _float(input) * (180.0 / math.pi)


def frac(input: Tensor) -> Tensor:
    """x - trunc(x), with x's sign. ``ember.frac(ember.tensor([-1.5]))``"""
    return input - input.trunc()


def isposinf(input: Tensor) -> Tensor:
    """Where x is +inf. ``ember.isposinf(ember.tensor([float('inf')]))``"""
    return input.isinf() & (input > 0)


def isneginf(input: Tensor) -> Tensor:
    """Where x is -inf. ``ember.isneginf(ember.tensor([-float('inf')]))``"""
    return input.isinf() & (input < 0)


# ---- binary ---------------------------------------------------------------------------

def hypot(input: Tensor, other: Tensor) -> Tensor:
    """sqrt(x^2 + y^2). ``ember.hypot(ember.tensor([3.]), ember.tensor([4.]))``"""
    a, b = _pair(input, other)
    return (a * a + b * b).sqrt()


def logaddexp(input: Tensor, other: Tensor) -> Tensor:
    """log(e^x + e^y) without overflow; equal infinities stay themselves.

    >>> ember.logaddexp(ember.tensor([0.]), ember.tensor([0.]))
    tensor([0.6931])
    """
    a, b = _pair(input, other)
    same = a == b   # (equal infinities: no inf - inf)
    d = where(same, 0.0, a) - where(same, 0.0, b)
    return where(same, a + _LN2, a.maximum(b) + (-d.abs()).exp().log1p())


def logaddexp2(input: Tensor, other: Tensor) -> Tensor:
    """log2(2^x + 2^y). ``ember.logaddexp2(ember.tensor([1.]), ember.tensor([1.]))``"""
    a, b = _pair(input, other)
    same = a == b
    d = where(same, 0.0, a) - where(same, 0.0, b)
    return where(same, a + 1.0, a.maximum(b) + (-d.abs() * _LN2).exp().log1p() / _LN2)


def copysign(input: Tensor, other) -> Tensor:
    """|x| with the sign of ``other`` (-0.0 counts as negative).
    ``ember.copysign(ember.tensor([2.]), -1.0)``"""
    a, b = _pair(input, other)
    negative = (b < 0) | ((b == 0) & ((1 / b) < 0))
    return where(negative, -a.abs(), a.abs())


def fmax(input: Tensor, other: Tensor) -> Tensor:
    """The maximum, ignoring a NaN (NaN only where both are).
    ``ember.fmax(ember.tensor([float('nan')]), ember.tensor([1.]))``"""
    a, b = input, other
    return where(a.isnan(), b, where(b.isnan(), a, a.maximum(b)))


def fmin(input: Tensor, other: Tensor) -> Tensor:
    """The minimum, ignoring a NaN. ``ember.fmin(ember.tensor([1.]), ember.tensor([2.]))``"""
    a, b = input, other
    return where(a.isnan(), b, where(b.isnan(), a, a.minimum(b)))


def float_power(input, exponent) -> Tensor:
    """``input ** exponent`` in float64. ``ember.float_power(ember.tensor([2]), 3)``"""
    base = input.to(dtypes.float64) if isinstance(input, Tensor) else tensor(
        float(input), dtype=dtypes.float64, device=exponent.device)
    if isinstance(exponent, Tensor):
        exponent = exponent.to(dtypes.float64)
    return base.pow(exponent)


def divide(input, other, *, rounding_mode: str | None = None) -> Tensor:
    """``torch.divide``: true division, or ``rounding_mode="trunc"``/``"floor"``.
    ``ember.divide(ember.tensor([-7.]), 2, rounding_mode="floor")``"""
    if rounding_mode is None:
        return input / other
    if rounding_mode == "floor":
        return input // other
    if rounding_mode == "trunc":
        q = (input / other).trunc()
        if _integral(input) and _integral(other):   # integers stay integers
            q = q.to(result_type(input, other))
        return q
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
                     f"found '{rounding_mode}'")


def _integral(x) -> bool:
    if isinstance(x, Tensor):
        return not (x.is_floating_point() or x.dtype.is_complex)
    return isinstance(x, int)


def multiply(input, other) -> Tensor:
    """``torch.multiply``, an alias of mul."""
    return input * other


def subtract(input, other, *, alpha=1) -> Tensor:
    """``input - alpha * other``."""
    return input - other * alpha if alpha != 1 else input - other


def rsub(input, other, *, alpha=1) -> Tensor:
    """``other - alpha * input``."""
    return other - input * alpha if alpha != 1 else other - input


def true_divide(input, other) -> Tensor:
    """``torch.true_divide``, an alias of div."""
    return input / other


def clamp_min(input: Tensor, min) -> Tensor:
    """``x.clamp(min=...)``."""
    return input.clamp(min=min)


def clamp_max(input: Tensor, max) -> Tensor:
    """``x.clamp(max=...)``."""
    return input.clamp(max=max)


def gcd(input: Tensor, other: Tensor) -> Tensor:
    """The greatest common divisor of integer tensors. ``ember.gcd(ember.tensor([12]), ember.tensor([8]))``"""
    a, b = input.broadcast_to(np.broadcast_shapes(input.shape, other.shape)), other
    return dispatch("gcd", a.contiguous(), b.broadcast_to(a.shape).contiguous())


def lcm(input: Tensor, other: Tensor) -> Tensor:
    """The least common multiple of integer tensors. ``ember.lcm(ember.tensor([4]), ember.tensor([6]))``"""
    a, b = input.broadcast_to(np.broadcast_shapes(input.shape, other.shape)), other
    return dispatch("lcm", a.contiguous(), b.broadcast_to(a.shape).contiguous())


# ---- reductions -------------------------------------------------------------------------

def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The product of all elements, or over ``dim`` (the gradient handles zeros, as torch's).

    >>> ember.prod(ember.tensor([[1., 2.], [3., 4.]]), 1)
    tensor([ 2., 12.])
    """
    x = input if dtype is None else input.to(dtype)
    if dtype is None and not (x.is_floating_point() or x.dtype.is_complex):
        x = x.to(dtypes.int64)   # integers and bools multiply in int64, as torch's
    if dim is None:
        out = (x.reshape(-1).cumprod(0, dtype=x.dtype)[-1] if x.numel()
               else tensor(1, dtype=x.dtype))
        return out
    d = dim % max(x.ndim, 1)
    if x.shape[d] == 0:
        shape = list(x.shape)
        shape[d] = 1
        out = x.new_ones(shape)
    else:
        out = x.cumprod(d, dtype=x.dtype).narrow(d, x.shape[d] - 1, 1)
    return out if keepdim else out.squeeze(d)


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The sum, NaNs counted as zero. ``ember.nansum(ember.tensor([1., float('nan')]))``"""
    x = where(input.isnan(), 0.0, input) if input.is_floating_point() else input
    return x.sum(dim, keepdim=keepdim, dtype=dtype) if dim is not None else x.sum(dtype=dtype)


def nanmean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The mean of the non-NaN elements. ``ember.nanmean(ember.tensor([1., float('nan')]))``"""
    ok = ~input.isnan()
    n = ok.sum(dim, keepdim=keepdim) if dim is not None else ok.sum()
    return nansum(input, dim, keepdim, dtype=dtype) / n


def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False):
    """(min, max) as a namedtuple. ``ember.aminmax(ember.tensor([3., 1., 2.]))``"""
    from collections import namedtuple
    out = namedtuple("aminmax", ["min", "max"])
    if dim is None:
        return out(input.amin(), input.amax())
    return out(input.amin(dim, keepdim=keepdim), input.amax(dim, keepdim=keepdim))


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """The k-th smallest value (1-based) over ``dim`` and its index.
    ``ember.kthvalue(ember.tensor([3., 1., 2.]), 2)``"""
    n = input.shape[dim] if input.ndim else 1
    if not 1 <= k <= n:
        raise IndexError(f"kthvalue(): selected number k out of range for dimension {dim}")
    values, idx = input.sort(dim)
    d = dim % max(input.ndim, 1)
    v, i = values.narrow(d, k - 1, 1), idx.narrow(d, k - 1, 1)
    return values_indices(v if keepdim else v.squeeze(d), i if keepdim else i.squeeze(d))


def msort(input: Tensor) -> Tensor:
    """Sorted along dim 0. ``ember.msort(ember.tensor([3., 1.]))``"""
    return input.sort(0).values


def trace(input: Tensor) -> Tensor:
    """The sum of a matrix's diagonal. ``ember.trace(ember.eye(3))``"""
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return input.diagonal().sum()


def dist(input: Tensor, other: Tensor, p: float = 2) -> Tensor:
    """The p-norm of ``input - other``. ``ember.dist(ember.zeros(2), ember.ones(2))``"""
    return (input - other).norm(p)


def equal(input: Tensor, other: Tensor) -> bool:
    """Same shape and the same values. ``ember.equal(ember.ones(2), ember.ones(2))``"""
    return tuple(input.shape) == tuple(other.shape) and bool((input == other).all())


# ---- shape ------------------------------------------------------------------------------

def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A vector's diagonal matrix, or a matrix's diagonal as a vector.

    >>> ember.diag(ember.tensor([1., 2.]))
    tensor([[1., 0.],
            [0., 2.]])
    """
    if input.ndim == 2:
        return input.diagonal(diagonal)
    if input.ndim != 1:
        raise RuntimeError("diag(): Supports 1D or 2D tensors. Got " f"{input.ndim}D")
    return diag_embed(input, diagonal)


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Matrices whose ``offset`` diagonal is the last dim of ``input`` (dims -2, -1).
    ``ember.diag_embed(ember.ones(2, 3)).shape``"""
    if (dim1, dim2) not in ((-2, -1), (input.ndim - 1, input.ndim)):
        raise NotImplementedError("diag_embed: only dim1=-2, dim2=-1")
    k = input.shape[-1]
    n = k + abs(offset)
    eye = tensor(np.eye(n, k=offset), dtype=input.dtype, device=input.device)
    # The values padded to length n, along the rows (offset >= 0: row i holds input[i]) or
    # the columns (offset < 0), then masked by the shifted identity: n^2 work.
    zeros = input.new_zeros(*input.shape[:-1], abs(offset))
    v = cat([input, zeros], -1) if offset else input
    return v.unsqueeze(-1) * eye if offset >= 0 else v.unsqueeze(-2) * eye


def diagflat(input: Tensor, offset: int = 0) -> Tensor:
    """The flattened input on a diagonal. ``ember.diagflat(ember.ones(2, 2)).shape``"""
    return diag_embed(input.reshape(-1), offset)


def atleast_1d(*tensors):
    """Each tensor with at least 1 dim (one tensor, or a tuple)."""
    out = tuple(t.reshape(1) if t.ndim == 0 else t for t in _flat(tensors))
    return out[0] if len(out) == 1 else out


def atleast_2d(*tensors):
    """Each tensor with at least 2 dims."""
    out = tuple(t.reshape(1, -1) if t.ndim < 2 else t for t in _flat(tensors))
    return out[0] if len(out) == 1 else out


def atleast_3d(*tensors):
    """Each tensor with at least 3 dims (a matrix [M, N] becomes [M, N, 1], as torch's)."""
    def up(t):
        if t.ndim == 0:
            return t.reshape(1, 1, 1)
        if t.ndim == 1:
            return t.reshape(1, -1, 1)
        return t.unsqueeze(-1) if t.ndim == 2 else t
    out = tuple(up(t) for t in _flat(tensors))
    return out[0] if len(out) == 1 else out


def _flat(tensors) -> tuple:
    return tuple(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) \
        else tensors


def hstack(tensors) -> Tensor:
    """Concatenate along dim 1 (dim 0 for vectors). ``ember.hstack([ember.ones(2), ember.ones(3)])``"""
    ts = atleast_1d(*tensors)
    ts = ts if isinstance(ts, tuple) else (ts,)
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    """Concatenate along dim 0, vectors as rows. ``ember.vstack([ember.ones(2), ember.ones(2)])``"""
    ts = atleast_2d(*tensors)
    return cat(ts if isinstance(ts, tuple) else (ts,), 0)


row_stack = vstack


def dstack(tensors) -> Tensor:
    """Concatenate along dim 2. ``ember.dstack([ember.ones(2), ember.ones(2)]).shape``"""
    ts = atleast_3d(*tensors)
    return cat(ts if isinstance(ts, tuple) else (ts,), 2)


def column_stack(tensors) -> Tensor:
    """Vectors as columns, matrices side by side."""
    ts = [t.reshape(-1, 1) if t.ndim <= 1 else t for t in tensors]
    return cat(ts, 1)


def hsplit(input: Tensor, indices_or_sections):
    """``tensor_split`` along dim 1 (dim 0 for vectors)."""
    return _split_along("hsplit", input, indices_or_sections, 0 if input.ndim == 1 else 1, 1)


def vsplit(input: Tensor, indices_or_sections):
    """``tensor_split`` along dim 0."""
    return _split_along("vsplit", input, indices_or_sections, 0, 2)


def dsplit(input: Tensor, indices_or_sections):
    """``tensor_split`` along dim 2.

    >>> [t.shape for t in ember.dsplit(ember.zeros(1, 2, 4), 2)]
    [ember.Size([1, 2, 2]), ember.Size([1, 2, 2])]
    """
    return _split_along("dsplit", input, indices_or_sections, 2, 3)


def _split_along(name: str, input: Tensor, sections, dim: int, min_dims: int):
    # As torch: a number of sections must divide the dim (tensor_split would not ask).
    if input.ndim < min_dims:
        raise RuntimeError(f"torch.{name} requires a tensor with at least {min_dims} "
                           f"dimension, but got a tensor with {input.ndim} dimensions!")
    if isinstance(sections, int) and (sections == 0 or input.shape[dim] % sections):
        raise RuntimeError(f"torch.{name} attempted to split along dimension {dim}, but the "
                           f"size of the dimension {input.shape[dim]} is not divisible by "
                           f"the split_size {sections}!")
    return input.tensor_split(sections, dim)


def broadcast_tensors(*tensors) -> tuple:
    """The tensors expanded to their common shape (views)."""
    shape = np.broadcast_shapes(*(tuple(t.shape) for t in tensors))
    return tuple(t.expand(*shape) for t in tensors)


def swapdims(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """An alias of transpose."""
    return input.transpose(dim0, dim1)


def take(input: Tensor, index: Tensor) -> Tensor:
    """``input.reshape(-1)[index]``. ``ember.take(ember.eye(2), ember.tensor([0, 3]))``"""
    return input.reshape(-1)[index]


def index_fill(input: Tensor, dim: int, index: Tensor, value) -> Tensor:
    """A copy with the slices ``index`` along ``dim`` set to ``value``."""
    d = dim % max(input.ndim, 1)
    mask_shape = [1] * input.ndim
    mask_shape[d] = input.shape[d]
    hit = _one_hot_rows(input.shape[d], index, input.device)
    return where(hit.reshape(mask_shape), _t(value, input), input)


def _one_hot_rows(n: int, index: Tensor, device) -> Tensor:
    return (index.reshape(-1, 1) == tensor(np.arange(n), device=device)).any(0)


def index_copy(input: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """A copy with the slices ``index`` along ``dim`` replaced by ``source``'s."""
    d = dim % max(input.ndim, 1)
    kept = index_fill(input, d, index, 0)
    placed = input.new_zeros(input.shape).index_add(d, index, source)
    return where(_mask(input, d, index), placed, kept)


def _mask(input: Tensor, d: int, index: Tensor) -> Tensor:
    shape = [1] * input.ndim
    shape[d] = input.shape[d]
    return _one_hot_rows(input.shape[d], index, input.device).reshape(shape)


# ---- products ---------------------------------------------------------------------------

def inner(input: Tensor, other: Tensor) -> Tensor:
    """Sum over the last dims' products. ``ember.inner(ember.ones(3), ember.ones(3))``"""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return tensordot(input, other, ([-1], [-1]))


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix times vector. ``ember.mv(ember.eye(2), ember.ones(2))``"""
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {vec.ndim}")
    return input @ vec


def addmv(input: Tensor, mat: Tensor, vec: Tensor, *, beta=1, alpha=1) -> Tensor:
    """``beta * input + alpha * mat @ vec``."""
    return input * beta + (mat @ vec) * alpha


def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """``beta * input + alpha * sum_b batch1[b] @ batch2[b]``."""
    return input * beta + (batch1 @ batch2).sum(0) * alpha


def vdot(input: Tensor, other: Tensor) -> Tensor:
    """The dot product of two vectors (conjugating the first, for complex ones)."""
    return (input * other).sum()


def tensordot(a: Tensor, b: Tensor, dims=2) -> Tensor:
    """Contract ``dims`` (a count, or two lists) of ``a`` with those of ``b``.

    >>> ember.tensordot(ember.ones(2, 3), ember.ones(3, 4), 1).shape
    ember.Size([2, 4])
    """
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = [list(d) if isinstance(d, (list, tuple)) else [d] for d in dims]
    da, db = [d % a.ndim for d in da], [d % b.ndim for d in db]
    free_a = [d for d in range(a.ndim) if d not in da]
    free_b = [d for d in range(b.ndim) if d not in db]
    k = math.prod(a.shape[d] for d in da)
    am = a.permute(*free_a, *da).reshape(-1, k)
    bm = b.permute(*db, *free_b).reshape(k, -1)
    return (am @ bm).reshape(*[a.shape[d] for d in free_a], *[b.shape[d] for d in free_b])


def cov(input: Tensor, *, correction: int = 1, fweights=None, aweights=None) -> Tensor:
    """The covariance of the rows' variables (columns are observations).
    ``ember.cov(ember.randn(3, 10)).shape``"""
    if fweights is not None or aweights is not None:
        raise NotImplementedError("cov: fweights and aweights are not supported")
    x = _float(input if input.ndim == 2 else input.reshape(1, -1))
    n = x.shape[1]
    xc = x - x.mean(1, keepdim=True)
    c = (xc @ xc.t()) / max(n - correction, 0)
    return c.squeeze() if input.ndim < 2 else c


def corrcoef(input: Tensor) -> Tensor:
    """Pearson correlation coefficients of the rows. ``ember.corrcoef(ember.randn(3, 10))``"""
    c = cov(input)
    if c.ndim == 0:
        return c / c
    d = c.diagonal().sqrt()
    return (c / d.unsqueeze(1) / d.unsqueeze(0)).clamp(-1, 1)


# ---- dtypes ------------------------------------------------------------------------------

def result_type(tensor1, tensor2):
    """The dtype of an elementwise op on the two (tensors or Python numbers), by the same
    rule as ``+`` (0-dim tensors and numbers do not raise a dimensioned tensor's kind).
    ``ember.result_type(ember.ones(1, dtype=ember.int32), 1.0)``"""
    def empty(x):
        if not isinstance(x, Tensor):
            return x
        return x if x.ndim == 0 else x.reshape(-1)[:0]
    if not isinstance(tensor1, Tensor) and not isinstance(tensor2, Tensor):
        return (tensor(tensor1) + tensor2).dtype
    if not isinstance(tensor1, Tensor):
        tensor1, tensor2 = tensor2, tensor1
    return (empty(tensor1) + empty(tensor2)).dtype


def can_cast(from_, to) -> bool:
    """Whether torch's casting rules allow ``from_`` to ``to`` (no float to int, no
    complex to real, no number to bool)."""
    f, t = dtypes.as_dtype(from_), dtypes.as_dtype(to)
    rank = lambda d: 0 if d is dtypes.bool_ else 3 if d.is_complex else 2 \
        if d.is_floating_point else 1   # noqa: E731
    return rank(f) <= rank(t)


def histogram(input: Tensor, bins=100, *, range=None, weight: Tensor | None = None,
              density: bool = False):
    """Counts (or weights, or a density) of ``input`` in ``bins`` bins (a count, or the
    edges as a 1-D tensor), over ``range`` or the data's; ``(hist, bin_edges)`` as torch's.
    Its bins depend on the values: it runs eagerly (as NumPy's), with no gradient.

    >>> ember.histogram(ember.tensor([1., 2., 1.]), bins=2).hist
    tensor([2., 1.])
    """
    from collections import namedtuple
    x = input.detach().cpu().numpy().reshape(-1)
    edges = bins.detach().cpu().numpy() if isinstance(bins, Tensor) else int(bins)
    w = None if weight is None else weight.detach().cpu().numpy().reshape(-1)
    hist, edge = np.histogram(x, edges, range=range, weights=w, density=density)
    out = namedtuple("histogram", ["hist", "bin_edges"])
    make = lambda a: tensor(a.astype(x.dtype), device=input.device)   # noqa: E731
    return out(make(hist), make(edge))


def apply_(input: Tensor, callable) -> Tensor:
    """``x.apply_(f)``: ``f`` of each element, written in place (CPU tensors, slow, as
    torch's)."""
    if input.device.type != "cpu":
        raise TypeError("apply_ is only implemented on CPU tensors")
    flat = input.detach().cpu().numpy().reshape(-1)
    values = np.array([callable(v) for v in flat.tolist()], dtype=flat.dtype)
    with _no_grad():
        input.copy_(tensor(values.reshape(tuple(input.shape)), dtype=input.dtype))
    return input


def map_(input: Tensor, other: Tensor, callable) -> Tensor:
    """``x.map_(y, f)``: ``f(x_i, y_i)`` over ``y`` broadcast to ``x``, written in place."""
    if input.device.type != "cpu":
        raise TypeError("map_ is only implemented on CPU tensors")
    a = input.detach().numpy().reshape(-1).tolist()
    b = other.detach().expand(*input.shape).contiguous().numpy().reshape(-1).tolist()
    values = np.array([callable(u, v) for u, v in zip(a, b)], dtype=input.detach().numpy().dtype)
    with _no_grad():
        input.copy_(tensor(values.reshape(tuple(input.shape)), dtype=input.dtype))
    return input


def _no_grad():
    from ember.autograd import no_grad
    return no_grad()


# ---- torch's aliases ----------------------------------------------------------------------

arctan, arcsin, arccos, arctan2 = atan, asin, acos, atan2
arcsinh, arccosh, arctanh = asinh, acosh, atanh


def absolute(input: Tensor) -> Tensor:
    """An alias of abs."""
    return input.abs()


def negative(input: Tensor) -> Tensor:
    """An alias of neg."""
    return -input


def positive(input: Tensor) -> Tensor:
    """``input`` itself (refused for bool, as torch)."""
    if input.dtype.is_bool:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return input


def fix(input: Tensor) -> Tensor:
    """An alias of trunc."""
    return input.trunc()


def sgn(input: Tensor) -> Tensor:
    """sign, for real tensors."""
    return input.sign()


__all__ = ["tan", "atan", "asin", "acos", "atan2", "sinh", "cosh", "asinh", "acosh", "atanh",
           "log2", "log10", "deg2rad", "rad2deg", "frac", "isposinf", "isneginf", "hypot",
           "logaddexp", "logaddexp2", "copysign", "fmax", "fmin", "float_power", "divide",
           "multiply", "subtract", "rsub", "true_divide", "clamp_min", "clamp_max", "gcd",
           "lcm", "prod", "nansum", "nanmean", "aminmax", "kthvalue", "msort", "trace",
           "dist", "equal", "diag", "diag_embed", "diagflat", "atleast_1d", "atleast_2d",
           "atleast_3d", "hstack", "vstack", "row_stack", "dstack", "column_stack", "hsplit",
           "vsplit", "dsplit", "broadcast_tensors", "swapdims", "take", "index_fill", "index_copy",
           "inner", "mv", "addmv", "addbmm", "vdot", "tensordot", "cov", "corrcoef",
           "result_type", "can_cast", "histogram", "arctan", "arcsin", "arccos",
           "arctan2", "arcsinh", "arccosh", "arctanh", "absolute", "negative", "positive",
           "fix", "sgn"]

# Tensor methods where torch has them (the function's first argument is the tensor), and
# in-place forms that write the result into it.
_METHODS = ("tan atan asin acos atan2 sinh cosh asinh acosh atanh log2 log10 deg2rad "
            "rad2deg frac isposinf isneginf hypot logaddexp logaddexp2 copysign fmax fmin "
            "float_power divide multiply subtract true_divide clamp_min clamp_max gcd lcm "
            "prod nansum nanmean aminmax kthvalue msort trace dist equal diag diag_embed "
            "diagflat hsplit vsplit dsplit swapdims take index_fill index_copy inner mv addmv addbmm "
            "vdot cov corrcoef arctan arcsin arccos arctan2 arcsinh arccosh arctanh absolute "
            "negative positive fix sgn").split()
_INPLACE = ("tan atan asin acos atan2 sinh cosh asinh acosh atanh log2 log10 deg2rad rad2deg "
            "frac hypot logaddexp copysign float_power divide multiply subtract true_divide "
            "clamp_min clamp_max gcd lcm index_fill index_copy arctan arcsin arccos arctan2 "
            "absolute negative fix").split()


for _name in _METHODS:
    if not hasattr(Tensor, _name):
        setattr(Tensor, _name, _method(globals()[_name]))
Tensor.apply_, Tensor.map_ = apply_, map_
for _name in _INPLACE:
    if not hasattr(Tensor, _name + "_"):
        setattr(Tensor, _name + "_", _inplace_method(globals()[_name], _name + "_"))
del stack
