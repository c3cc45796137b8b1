"""Tensor methods real PyTorch programs call that ember lacked, with their top-level forms:
metadata queries (``is_cpu``, ``get_device``, ``is_signed``, ``retains_grad`` ...), the
legacy ``new``, in-place comparisons and torch's comparison aliases (``greater``,
``less_equal_`` ...), ``ravel``, ``fill_diagonal_``, ``sum_to_size``, ``put_``,
``renorm``, ``split_with_sizes``, ``index_reduce``, ``unique_consecutive``, the
``*_scatter`` functions, ``frexp`` / ``ldexp`` / ``nextafter``, and the legacy linalg
methods (``svd``, ``qr``, ``cholesky_solve`` ...).

Everything is written with ember's own tensor ops, so autograd and ``ember.compile``
follow it. The in-place shape changes (``squeeze_``, ``t_`` ...) are in
tensor_restride.py; ``resize_`` is left out (it changes the memory too).

>>> import ember
>>> ember.tensor([1., 2., 3.]).greater(2)
tensor([False, False,  True])
>>> ember.tensor([[1, 2], [3, 4]]).ravel()
tensor([1, 2, 3, 4])
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from ember import autograd, dtypes
from ember.dispatch import dispatch
from ember.linalg_decomp import (cholesky_solve, legacy_cross, legacy_qr, legacy_svd,
                                 triangular_solve)
from ember.tensor import Size, Tensor, cat, full, ones_like, tensor, where, zeros
from ember.tensor_common import _dims
from ember import tensor_restride  # noqa: F401,E402  (squeeze_, t_, ...: see there)

__all__ = ["ravel", "greater", "greater_equal", "less", "less_equal", "not_equal", "put",
           "renorm", "split_with_sizes", "unsafe_chunk", "unsafe_split", "frexp", "ldexp",
           "ldexp_", "nextafter", "index_reduce", "unique_consecutive", "diagonal_scatter",
           "select_scatter", "slice_scatter", "as_strided", "cholesky_inverse", "is_signed",
           "matrix_exp"]

frexp_result = namedtuple("frexp", ["mantissa", "exponent"])


# ---- metadata ---------------------------------------------------------------------------
def _get_device(self: Tensor) -> int:
    """The CUDA device index, or -1 for a CPU tensor (as torch)."""
    return -1 if self.device.type == "cpu" else int(self.device.index or 0)


def _is_pinned(self: Tensor) -> bool:
    """Whether the memory is page-locked (made by ``pin_memory()`` with CUDA present)."""
    a = self._data
    while a is not None:
        if "Pinned" in type(a).__name__:
            return True
        a = getattr(a, "base", None)
    return False


def _pin_memory(self: Tensor, device: Any = None) -> Tensor:
    """A copy in page-locked memory. As torch without an accelerator, raises when CUDA is
    not available; a tensor already pinned is returned as is."""
    from ember import cuda
    if not cuda.is_available():
        raise RuntimeError("Cannot access accelerator device when none is available.")
    if self.is_cuda:
        raise RuntimeError(f"cannot pin '{self.type()}' only dense CPU tensors can be pinned")
    if _is_pinned(self):
        return self
    from ember.utils.data.dataloader import _pin
    return _pin(self)


def is_signed(input: Tensor) -> bool:
    """Whether the dtype holds negative values (False for uint8 and bool)."""
    return input.dtype not in (dtypes.uint8, dtypes.bool_)


def _is_inference(self: Tensor) -> bool:
    """ember has no inference tensors (see ``ember.inference_mode``): a tensor made in
    inference mode is a plain one that does not require grad. This answers whether one
    is being made now: True inside an enabled ``inference_mode`` block for a tensor with
    no autograd history."""
    return autograd.is_inference_mode_enabled() and not self.requires_grad


def _new(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """torch's legacy ``x.new(...)``: of x's dtype and device, ``new()`` is empty,
    ``new(2, 3)`` or ``new(Size)`` of that size (zero-filled where torch leaves memory
    uninitialized), ``new(data)`` holds ``data``, ``new(tensor)`` is that tensor."""
    dtype = kwargs.pop("dtype", None) or self.dtype
    device = kwargs.pop("device", None) or self.device
    if kwargs:
        raise TypeError(f"new() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if not args:
        return zeros(0, dtype=dtype, device=device)
    if (len(args) == 1 and isinstance(args[0], Size)) or all(
            isinstance(a, int) and not isinstance(a, bool) for a in args):
        return zeros(tuple(args[0]) if isinstance(args[0], Size) else args, dtype=dtype,
                     device=device)
    if len(args) > 1:
        raise TypeError("new() received an invalid combination of arguments")
    data = args[0]
    if isinstance(data, Tensor):
        if data.dtype is not dtype or data.device != device:
            raise TypeError(f"expected {dtype} on {device} (got {data.dtype} on "
                            f"{data.device})")
        return data
    return tensor(data, dtype=dtype, device=device)


# ---- shape ------------------------------------------------------------------------------
def ravel(input: Tensor) -> Tensor:
    """The elements as a 1-D tensor: a view where the layout allows, else a copy."""
    return input.reshape(-1)


def _sum_to_size(self: Tensor, *size: Any) -> Tensor:
    """Summed to ``size``, which must be expandable to this tensor's size: leading dims
    are summed away, dims where ``size`` has 1 are summed keeping them."""
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) \
        else tuple(size)
    shape = tuple(self.shape)
    lead = len(shape) - len(size)
    if lead < 0 or any(s != t and s != 1 for s, t in zip(size, shape[lead:])):
        raise RuntimeError(f"size {{{', '.join(map(str, size))}}} is not expandable to "
                           f"size {{{', '.join(map(str, shape))}}}.")
    out = self
    keep = [lead + i for i, (s, t) in enumerate(zip(size, shape[lead:])) if s == 1 and t != 1]
    if keep:
        out = out.sum(dim=tuple(keep), keepdim=True)
    if lead:
        out = out.sum(dim=tuple(range(lead)))
    return out


def split_with_sizes(input: Tensor, split_sizes: Sequence[int], dim: int = 0
                     ) -> tuple[Tensor, ...]:
    """Pieces of ``split_sizes`` along ``dim``; the sizes must add up to its length."""
    d = _dims(dim, input.ndim, "split_with_sizes")[0]
    sizes = [int(s) for s in split_sizes]
    if sum(sizes) != input.shape[d] or any(s < 0 for s in sizes):
        raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to "
                           f"{input.shape[d]} (input tensor's size at dimension {d}), but got "
                           f"split_sizes={sizes}")
    return tuple(input.split(sizes, d))


def unsafe_chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """``chunk`` (torch's unsafe form differs only in skipping view checks)."""
    return tuple(input.chunk(chunks, dim))


def unsafe_split(input: Tensor, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """``split`` (torch's unsafe form differs only in skipping view checks)."""
    return tuple(input.split(split_size, dim))


def as_strided(input: Tensor, size: Any, stride: Any, storage_offset: int | None = None
               ) -> Tensor:
    """``input.as_strided(...)`` (see there: a copy in ember, not a view)."""
    return input.as_strided(size, stride, storage_offset)


# ---- comparisons --------------------------------------------------------------------------
def _compare_inplace(name: str):
    def method(self: Tensor, other: Any) -> Tensor:
        # The result (True/False) is written in this tensor's dtype, as torch's.
        return self._inplace(lambda s: getattr(s, name)(other), (other,), name + "_",
                             cast=True)
    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"``x.{name}_(y)`` writes ``x.{name}(y)`` into x, in x's dtype."
    return method


def greater(input: Tensor, other: Any) -> Tensor:
    return input.gt(other)


def greater_equal(input: Tensor, other: Any) -> Tensor:
    return input.ge(other)


def less(input: Tensor, other: Any) -> Tensor:
    return input.lt(other)


def less_equal(input: Tensor, other: Any) -> Tensor:
    return input.le(other)


def not_equal(input: Tensor, other: Any) -> Tensor:
    return input.ne(other)


# ---- writes -------------------------------------------------------------------------------
def _fill_diagonal_(self: Tensor, fill_value: Any, wrap: bool = False) -> Tensor:
    """Writes ``fill_value`` on the main diagonal (all dims equal beyond 2-D); ``wrap``
    continues a tall matrix's diagonal below its square part, as NumPy's."""
    if self.ndim < 2:
        raise RuntimeError("dimensions must larger than 1")
    shape = tuple(self.shape)
    if self.ndim > 2 and len(set(shape)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    mask = np.zeros(shape, dtype=bool)
    flat = mask.reshape(-1)
    if self.ndim == 2:
        rows, cols = shape
        end = rows * cols if wrap else min(rows, cols) * cols
        flat[0:end:cols + 1] = True
    else:
        step = sum(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        flat[::step] = True
    m = tensor(mask, device=self.device)
    return self._inplace(lambda s: s.masked_fill(m, fill_value), (), "fill_diagonal_")


def put(input: Tensor, index: Tensor, source: Tensor, accumulate: bool = False) -> Tensor:
    """A copy with ``source``'s elements written (or added) at the flat positions
    ``index`` of ``input``, as if it were 1-D."""
    if index.dtype is not dtypes.int64:
        raise RuntimeError(f"put_(): Expected a long tensor for index, but got {index.dtype}")
    if source.dtype is not input.dtype:
        raise RuntimeError(f"put_(): self and source expected to have the same dtype, but "
                           f"got self.dtype = {input.dtype} and source.dtype = {source.dtype}")
    if index.numel() != source.numel():
        raise RuntimeError(f"put_(): Expected source and index to have the same number of "
                           f"elements, but got source.numel() = {source.numel()}, "
                           f"index.numel() = {index.numel()}")
    flat = input.reshape(-1)
    n = flat.shape[0]
    idx = index.reshape(-1)
    idx = where(idx < 0, idx + n, idx)
    # A range check of its own op (not .item()), so a compiled call makes it too.
    dispatch("check_index", idx, bound=n, name="put_",
             message="out of range: tried to access index {} on a tensor of " + f"{n} "
             "elements.")
    return flat.index_put((idx,), source.reshape(-1), accumulate).reshape(input.shape)


def _put_(self: Tensor, index: Tensor, source: Tensor, accumulate: bool = False) -> Tensor:
    return self._inplace(lambda s: put(s, index, source, accumulate), (source,), "put_")


def renorm(input: Tensor, p: float, dim: int, maxnorm: float) -> Tensor:
    """Each slice along ``dim`` whose ``p``-norm exceeds ``maxnorm`` scaled down to
    norm ``maxnorm`` (torch's factor ``maxnorm / (norm + 1e-7)``)."""
    if p <= 0:
        raise RuntimeError("renorm: non-positive-norm not supported")
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    if input.ndim <= 1:
        raise RuntimeError(f"renorm: input needs at least 2 dimensions, got {input.ndim} "
                           "dimensions")
    d = _dims(dim, input.ndim, "renorm")[0]
    others = tuple(i for i in range(input.ndim) if i != d)
    from ember.linalg import vector_norm
    norm = vector_norm(input, p, dim=others, keepdim=True)
    factor = where(norm > maxnorm, maxnorm / (norm + 1e-7), 1.0).to(input.dtype)
    return input * factor


def _renorm_(self: Tensor, p: float, dim: int, maxnorm: float) -> Tensor:
    return self._inplace(lambda s: renorm(s, p, dim, maxnorm), (), "renorm_")


def index_reduce(input: Tensor, dim: int, index: Tensor, source: Tensor, reduce: str, *,
                 include_self: bool = True) -> Tensor:
    """A copy with the slices of ``source`` reduced (``prod``, ``mean``, ``amax``,
    ``amin``) into the slices ``index`` along ``dim``; ``include_self`` counts the
    tensor's own values in."""
    if reduce not in ("prod", "mean", "amax", "amin"):
        raise RuntimeError(f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
                           f"amin but got {reduce}.")
    d = _dims(dim, input.ndim, "index_reduce")[0] if input.ndim else 0
    if index.ndim > 1:
        raise IndexError("index_reduce_(): Index is supposed to be a vector")
    if index.dtype not in (dtypes.int64, dtypes.int32):
        raise RuntimeError("index_reduce_(): Expected dtype int32/int64 for index")
    if source.dtype is not input.dtype:
        raise RuntimeError("index_reduce_(): self and source expected to have the same dtype")
    src_shape = tuple(source.shape) if source.ndim else (1,)
    self_shape = tuple(input.shape) if input.ndim else (1,)
    if (len(src_shape) != len(self_shape) or index.numel() != src_shape[d]
            or any(a != b for i, (a, b) in enumerate(zip(src_shape, self_shape)) if i != d)):
        raise RuntimeError("index_reduce_(): Expected source to have the shape of self "
                           "except at dim, and its size at dim to be index's length")
    x, src = input.reshape(self_shape), source.reshape(src_shape)
    if reduce == "mean":   # differentiable as it is
        return _scatter_values(x, d, index, src, reduce, include_self).reshape(input.shape)
    with autograd.no_grad():
        out = _scatter_values(x, d, index, src, reduce, include_self)
    if autograd.is_grad_enabled() and (x.requires_grad or src.requires_grad):
        out = _with_index_reduce_grad(out, x, d, index.long(), src, reduce, include_self)
    return out.reshape(input.shape)


def _scatter_values(x: Tensor, d: int, index: Tensor, src: Tensor, reduce: str,
                    include_self: bool) -> Tensor:
    view = [1] * src.ndim
    view[d] = -1
    idx = index.long().reshape(view).expand(src.shape)
    return x.scatter_reduce(d, idx, src, reduce, include_self=include_self)


def _with_index_reduce_grad(out: Tensor, x: Tensor, d: int, index: Tensor, src: Tensor,
                            reduce: str, include_self: bool) -> Tensor:
    """``out`` (the values, no history) given torch's index_reduce gradients for prod,
    amax and amin (from its FunctionsManual): ``out + (x - x') * a + index_add((src -
    src') * b)`` with ``'`` detached has out's value and gradients ``a * g`` for x and
    ``b * g[index]`` for src."""
    xs, ss = x.detach(), src.detach()
    value = out.index_select(d, index)
    if reduce == "prod":
        masked_self = xs.masked_fill(xs == 0, 1)
        a = _scatter_values(masked_self, d, index, ss, reduce, include_self) / masked_self
        src_zero = ss == 0
        zeros_in = xs.new_zeros(xs.shape).index_add(d, index, src_zero.to(xs.dtype))
        single = src_zero & (zeros_in.index_select(d, index) == 1)
        masked_result = _scatter_values(xs, d, index, ss.masked_fill(single, 1), reduce,
                                        include_self)
        b = where(single, masked_result.index_select(d, index),
                  value / ss.masked_fill(src_zero, 1))
    else:   # amax / amin: the gradient is shared evenly among the elements that tie
        self_is = (xs == out).to(xs.dtype)
        src_is = (ss == value).to(xs.dtype)
        n = self_is.index_add(d, index, src_is)
        a = self_is / n
        b = src_is / n.index_select(d, index)
    if not include_self:
        a = a.index_fill(d, index, 0)
    # (x - x') is zero but for inf and NaN, where it would make the value NaN
    dx = where(xs.isfinite(), x - xs, 0.0) * a
    ds = where(ss.isfinite(), src - ss, 0.0) * b
    return out + dx + out.new_zeros(out.shape).index_add(d, index, ds)


def _index_reduce_(self: Tensor, dim: int, index: Tensor, source: Tensor, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    return self._inplace(lambda s: index_reduce(s, dim, index, source, reduce,
                                                include_self=include_self),
                         (source,), "index_reduce_")


def _check_src(src: Tensor, view: Tensor, op: str) -> None:
    if tuple(src.shape) != tuple(view.shape):
        raise RuntimeError(f"{op}: expected src to have a size equal to the slice of self. "
                           f"src size = {list(src.shape)}, slice size = {list(view.shape)}")


def diagonal_scatter(input: Tensor, src: Tensor, offset: int = 0, dim1: int = 0,
                     dim2: int = 1) -> Tensor:
    """A copy of ``input`` with ``src`` on its diagonal (as ``diagonal(offset, dim1,
    dim2)`` picks it)."""
    out = input.clone()
    view = out.diagonal(offset, dim1, dim2)
    _check_src(src, view, "diagonal_scatter")
    view.copy_(src)
    return out


def select_scatter(input: Tensor, src: Tensor, dim: int, index: int) -> Tensor:
    """A copy of ``input`` with ``src`` as its slice ``select(dim, index)``."""
    out = input.clone()
    view = out.select(dim, index)
    _check_src(src, view, "select_scatter")
    view.copy_(src)
    return out


def slice_scatter(input: Tensor, src: Tensor, dim: int = 0, start: int | None = None,
                  end: int | None = None, step: int = 1) -> Tensor:
    """A copy of ``input`` with ``src`` as its slice ``start:end:step`` along ``dim``."""
    d = _dims(dim, input.ndim, "slice_scatter")[0]
    out = input.clone()
    view = out[(slice(None),) * d + (slice(start, end, step),)]
    _check_src(src, view, "slice_scatter")
    view.copy_(src)
    return out


def unique_consecutive(input: Tensor, return_inverse: bool = False,
                       return_counts: bool = False, dim: int | None = None):
    """The tensor with each run of equal consecutive elements (or slices along ``dim``)
    kept once; with each element's run number and each run's length where asked. Its
    size depends on the values: a compiled call splits there, as for ``unique``."""
    if dim is None:
        x, d = input.reshape(-1), 0
    else:
        d = _dims(dim, input.ndim, "unique_consecutive")[0]
        x = input
    n = x.shape[d] if x.ndim else 1
    if n == 0:
        keep = zeros(0, dtype=dtypes.bool_, device=input.device)
    else:
        after, before = x.narrow(d, 1, n - 1), x.narrow(d, 0, n - 1)
        change = after != before
        if x.ndim > 1:
            change = change.any(dim=tuple(i for i in range(x.ndim) if i != d)) \
                if dim is not None else change
        first = full((1,), True, dtype=dtypes.bool_, device=input.device)
        keep = cat([first, change])
    values = x[(slice(None),) * d + (keep,)]
    out = [values]
    if return_inverse:
        inverse = keep.long().cumsum(0) - 1
        out.append(inverse.reshape(input.shape) if dim is None else inverse)
    if return_counts:
        starts = keep.nonzero().reshape(-1)
        ends = cat([starts[1:], full((1,), n, dtype=dtypes.int64, device=input.device)])
        out.append(ends - starts)
    return out[0] if len(out) == 1 else tuple(out)


# ---- floating-point pieces ---------------------------------------------------------------
def _check_float(x: Tensor, op: str) -> None:
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"torch.{op}() only supports floating-point dtypes")


def _times_pow2(x: Tensor, k: Tensor) -> Tensor:
    """``x * 2 ** k`` (float64, ``k`` integer-valued), in two exact steps so that
    neither factor overflows where the product does not (subnormals scaled up)."""
    half = (k / 2).floor()
    return (x.double() * 2.0 ** half) * 2.0 ** (k - half)


def _exponent(x: Tensor) -> Tensor:
    """frexp's exponent of finite nonzero ``x`` (|x| = m * 2**e, 0.5 <= m < 1), in
    float64: log2 estimates it, one correction step makes it exact."""
    a = x.abs().double()
    e = a.log2().floor() + 1
    m = _times_pow2(a, -e)
    return where(m >= 1, e + 1, where(m < 0.5, e - 1, e))


def frexp(input: Tensor) -> frexp_result:
    """(mantissa, exponent) with ``input = mantissa * 2 ** exponent`` and
    ``0.5 <= |mantissa| < 1`` (0, inf and NaN keep exponent 0); exponent is int32."""
    _check_float(input, "frexp")
    x = input.detach()
    finite = x.isfinite() & (x != 0)
    safe = where(finite, x, 1.0)
    e = where(finite, _exponent(safe), 0.0)
    m = where(finite, _times_pow2(safe, -e).to(x.dtype), x)
    return frexp_result(m, e.to(dtypes.int32))


def ldexp(input: Tensor, other: Any) -> Tensor:
    """``input * 2 ** other`` (an integer input gives the default float dtype)."""
    two = 2.0 ** (other if isinstance(other, Tensor) else tensor(other))
    if not input.dtype.is_floating_point and not input.dtype.is_complex:
        input = input.to(dtypes.get_default_dtype())
    return input * two


def ldexp_(input: Tensor, other: Any) -> Tensor:
    return input._inplace(lambda s: ldexp(s, other), (other,), "ldexp_")


def nextafter(input: Tensor, other: Any) -> Tensor:
    """The next floating-point value after ``input`` towards ``other``."""
    other = other if isinstance(other, Tensor) else tensor(other, dtype=input.dtype,
                                                          device=input.device)
    dtype = dtypes.promote_types(input.dtype, other.dtype)
    if not dtype.is_floating_point:
        raise RuntimeError(f"\"nextafter_cpu\" not implemented for '{dtype}'")
    x, y = (t.detach().to(dtype) for t in (input, other))
    info = np.finfo(np.dtype(x.dtype.name) if x.dtype.name != "bfloat16" else np.float32)
    digits = {"float16": 11, "bfloat16": 8}.get(x.dtype.name, info.nmant + 1)
    min_exp = {"float16": -13, "bfloat16": -125}.get(x.dtype.name, info.minexp + 1)
    tiny = 2.0 ** (min_exp - digits)           # the smallest subnormal
    finite = x.isfinite() & (x != 0)
    safe = where(finite, x, 1.0)
    e = _exponent(safe)
    # frexp's mantissa exactly +-0.5: a power of two, whose spacing halves below it
    power = _times_pow2(safe.abs(), -e) == 0.5
    up = (y > x)                               # the direction, as a sign of the step
    away = up == (x > 0)                       # moving away from zero
    k = where(away | ~power, e - digits, e - digits - 1)
    step = _times_pow2(ones_like(k), k).clamp_min(tiny)
    step = where(finite, step, tiny)           # from zero: the smallest subnormal
    big = float(info.max) if x.dtype.name != "bfloat16" else 3.3895313892515355e38
    sign = where(up, 1.0, -1.0).double()
    # Outwards from the largest finite value (or from inf) is inf; inwards from inf is
    # the largest finite value. (Those are not computed: overflow warnings otherwise.)
    outward_inf = (x.isinf() | (x.abs() == big)) & away
    inward_inf = x.isinf() & ~away
    start = where(x.isfinite() & ~outward_inf, x, 0.0).double()
    out = (start + sign * step).to(x.dtype)
    pos = x > 0
    out = where(outward_inf, where(pos, full((), math.inf, dtype=dtype),
                                   full((), -math.inf, dtype=dtype)), out)
    out = where(inward_inf, where(pos, full((), big, dtype=dtype),
                                  full((), -big, dtype=dtype)), out)
    out = where(x == y, y, out)
    return where(x.isnan() | y.isnan(), full((), math.nan, dtype=dtype, device=x.device),
                 out)


def _nextafter_(self: Tensor, other: Any) -> Tensor:
    return self._inplace(lambda s: nextafter(s, other), (), "nextafter_")


# ---- linear algebra ----------------------------------------------------------------------
def cholesky_inverse(input: Tensor, upper: bool = False) -> Tensor:
    """The inverse of ``A = L L^H`` (``U^H U`` with ``upper``) from its Cholesky factor."""
    if input.ndim < 2 or input.shape[-1] != input.shape[-2]:
        raise RuntimeError("cholesky_inverse: A must be batches of square matrices, but they "
                           f"are {input.shape[-2] if input.ndim > 1 else 1} by "
                           f"{input.shape[-1] if input.ndim else 1} matrices")
    from ember.tensor import eye
    n = input.shape[-1]
    ident = eye(n, dtype=input.dtype, device=input.device).expand(input.shape)
    return cholesky_solve(ident, input, upper)


# Padé 13 coefficients and the 1-norm bound theta_13 of Higham (2005), "The scaling and
# squaring method for the matrix exponential revisited".
_PADE13 = (64764752532480000., 32382376266240000., 7771770303897600., 1187353796428800.,
           129060195264000., 10559470521600., 670442572800., 33522128640., 1323241920.,
           40840800., 960960., 16380., 182., 1.)
_THETA13 = 5.371920351148152


def matrix_exp(input: Tensor) -> Tensor:
    """The matrix exponential of each square matrix of the last two dims (Padé 13 with
    scaling and squaring, differentiable through ember's matmul and solve)."""
    if input.ndim < 2 or input.shape[-1] != input.shape[-2]:
        raise RuntimeError("linalg.matrix_exp: A must be batches of square matrices, but "
                           f"they are {input.shape[-2] if input.ndim > 1 else 1} by "
                           f"{input.shape[-1] if input.ndim else 1} matrices")
    if not (input.dtype.is_floating_point or input.dtype.is_complex):
        raise RuntimeError(f"linalg.matrix_exp: Expected a floating point or complex tensor "
                           f"as input. Got {input.dtype}")
    from ember.linalg_decomp import solve
    from ember.tensor import eye
    n = input.shape[-1]
    if n == 0 or input.numel() == 0:
        return input.clone()
    norm = input.detach().abs().sum(-2).amax().item()   # the largest 1-norm of the batch
    s = max(0, math.ceil(math.log2(norm / _THETA13))) if norm > 0 else 0
    a = input / (2.0 ** s) if s else input
    b = _PADE13
    ident = eye(n, dtype=input.dtype, device=input.device)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2)
             + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * ident)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 \
        + b[0] * ident
    r = solve(v - u, v + u)
    for _ in range(s):
        r = r @ r
    return r


# ---- attaching ----------------------------------------------------------------------------
Tensor.is_cpu = property(lambda self: self.device.type == "cpu")
Tensor.is_meta = property(lambda self: False)
Tensor.get_device = _get_device
Tensor.pin_memory = _pin_memory
Tensor.is_pinned = _is_pinned
Tensor.ndimension = lambda self: self.ndim
Tensor.retains_grad = property(lambda self: bool(self._retains_grad),
                               doc="True after ``retain_grad()`` on a non-leaf tensor.")
Tensor.new = _new
Tensor.is_signed = is_signed
Tensor.is_inference = _is_inference
Tensor.is_conj = lambda self: False     # ember conjugates eagerly: never a lazy conj bit
Tensor.is_neg = lambda self: False
Tensor.resolve_conj = lambda self: self
Tensor.resolve_neg = lambda self: self
Tensor.H = property(lambda self: _adjoint(self, "H"))
Tensor.mH = property(lambda self: _adjoint(self, "mH"))
Tensor.ravel = ravel
Tensor.sum_to_size = _sum_to_size
Tensor.split_with_sizes = split_with_sizes
Tensor.unsafe_chunk = unsafe_chunk
Tensor.unsafe_split = unsafe_split
Tensor.fill_diagonal_ = _fill_diagonal_
Tensor.cross = legacy_cross
Tensor.put = put
Tensor.put_ = _put_
Tensor.renorm = renorm
Tensor.renorm_ = _renorm_
Tensor.heaviside_ = lambda self, values: self._inplace(lambda s: s.heaviside(values),
                                                       (values,), "heaviside_")
Tensor.index_reduce = index_reduce
Tensor.index_reduce_ = _index_reduce_
Tensor.diagonal_scatter = diagonal_scatter
Tensor.select_scatter = select_scatter
Tensor.slice_scatter = slice_scatter
Tensor.unique_consecutive = unique_consecutive
Tensor.frexp = frexp
Tensor.ldexp = ldexp
Tensor.ldexp_ = ldexp_
Tensor.nextafter = nextafter
Tensor.nextafter_ = _nextafter_
Tensor.matrix_exp = matrix_exp
Tensor.svd = legacy_svd
Tensor.qr = legacy_qr
Tensor.cholesky_solve = lambda self, input2, upper=False: cholesky_solve(self, input2, upper)
Tensor.cholesky_inverse = cholesky_inverse
Tensor.triangular_solve = triangular_solve


def _histogram(self: Tensor, bins: Any = 100, *, range: Any = None, weight: Any = None,
               density: bool = False):
    from ember.functions_math import histogram
    return histogram(self, bins, range=range, weight=weight, density=density)


Tensor.histogram = _histogram

for _name, _alias in (("gt", "greater"), ("ge", "greater_equal"), ("lt", "less"),
                      ("le", "less_equal"), ("ne", "not_equal"), ("eq", None)):
    setattr(Tensor, _name + "_", _compare_inplace(_name))
    if _alias is not None:
        setattr(Tensor, _alias, getattr(Tensor, _name))
        setattr(Tensor, _alias + "_", getattr(Tensor, _name + "_"))


def _adjoint(x: Tensor, name: str) -> Tensor:
    """The conjugate transpose: of the matrix (``H``: 0-D to 2-D) or of the last two
    dims (``mH``)."""
    if name == "H":
        if x.ndim > 2:
            raise RuntimeError("tensor.H is only supported on matrices (2-D tensors). Got "
                               f"{x.ndim}-D tensor.")
        t = x.t() if x.ndim == 2 else x
        if x.ndim == 1:
            raise RuntimeError("tensor.H is only supported on matrices (2-D tensors). Got "
                               "1-D tensor.")
    else:
        if x.ndim < 2:
            raise RuntimeError("tensor.mH is only supported on matrices or batches of "
                               f"matrices. Got {x.ndim}-D tensor.")
        t = x.transpose(-2, -1)
    return t.conj() if x.dtype.is_complex else t
