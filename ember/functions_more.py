"""More of torch's functions, written with ember's ops so that autograd and
``ember.compile`` work for them: lerp, addcmul, addcdiv, diff, meshgrid, cartesian_prod,
take_along_dim, count_nonzero, tril/triu_indices, kron, std_mean, var_mean, cdist, isin,
bucketize, searchsorted, median, quantile, nanquantile, index_add, scatter_reduce; and
unique and bincount, whose sizes depend on the values (eager only, as ``nonzero``).

>>> ember.lerp(ember.tensor([0., 1.]), ember.tensor([2., 3.]), 0.5)
tensor([1., 2.])
"""
from __future__ import annotations

import math

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.ops.elementwise import _TORCH_NAMES
from ember.tensor import Tensor, cat, stack, tensor, where
from ember.tensor_common import values_indices


def _t(x, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return tensor(x, device=like.device) if like is not None else tensor(x)


# --- elementwise blends -----------------------------------------------------------------

def lerp(input: Tensor, end: Tensor, weight) -> Tensor:
    """``input + weight * (end - input)``.

    >>> ember.lerp(ember.zeros(2), ember.ones(2), 0.5)
    tensor([0.5, 0.5])
    """
    return input + (end - input) * weight


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """``input + value * tensor1 * tensor2``.

    >>> ember.addcmul(ember.ones(2), ember.ones(2), ember.ones(2), value=2)
    tensor([3., 3.])
    """
    return input + tensor1 * tensor2 * value


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """``input + value * tensor1 / tensor2``; integer division is refused as in PyTorch.

    >>> ember.addcdiv(ember.ones(2), ember.ones(2), ember.full((2,), 2.), value=2)
    tensor([2., 2.])
    """
    if not tensor1.dtype.is_floating_point and not tensor2.dtype.is_floating_point \
            and not tensor1.dtype.is_complex and not tensor2.dtype.is_complex:
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a "
                           "future release addcdiv will perform a true division of tensor1 "
                           "and tensor2. The historic addcdiv behavior can be implemented as "
                           "(input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) "
                           "for integer inputs and as (input + value * tensor1 / tensor2) for "
                           "float inputs. The future addcdiv behavior is just the latter "
                           "implementation: (input + value * tensor1 / tensor2), for all dtypes.")
    return input + tensor1 / tensor2 * value


# --- differences, grids, products -------------------------------------------------------

def diff(input: Tensor, n: int = 1, dim: int = -1, prepend=None, append=None) -> Tensor:
    """The n-th forward difference along ``dim``.

    >>> ember.diff(ember.tensor([1, 3, 6]))
    tensor([2, 3])
    """
    if input.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    dim = dim + input.ndim if dim < 0 else dim
    parts = [p for p in (prepend, input, append) if p is not None]
    x = cat([_t(p, input) for p in parts], dim) if len(parts) > 1 else input
    for _ in range(n):
        length = x.shape[dim]
        if length == 0:
            break
        if x.dtype is dtypes.bool_:
            x = x.narrow(dim, 1, length - 1) ^ x.narrow(dim, 0, length - 1)
        else:
            x = x.narrow(dim, 1, length - 1) - x.narrow(dim, 0, length - 1)
    return x


def meshgrid(*tensors, indexing: str | None = None) -> tuple:
    """Coordinate grids from 1-D tensors (``indexing='ij'`` by default, as PyTorch).

    >>> a, b = ember.meshgrid(ember.arange(2), ember.arange(3), indexing="ij")
    >>> a.shape
    ember.Size([2, 3])
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise ValueError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but '
                         f'received: {indexing}')
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list "
                               f"but got: {t}")
    flat = [t.reshape(-1) for t in tensors]
    # 'xy' swaps the first two output dims (Cartesian x along columns).
    place = list(range(len(flat)))
    if indexing == "xy" and len(flat) >= 2:
        place[0], place[1] = 1, 0
    shape = [0] * len(flat)
    for i, t in enumerate(flat):
        shape[place[i]] = t.shape[0]
    out = []
    for i, t in enumerate(flat):
        view = [1] * len(flat)
        view[place[i]] = -1
        out.append(t.reshape(view).expand(shape))
    return tuple(out)


def cartesian_prod(*tensors: Tensor) -> Tensor:
    """All tuples of one element from each 1-D tensor, one row each.

    >>> ember.cartesian_prod(ember.tensor([1, 2]), ember.tensor([3, 4]))
    tensor([[1, 3],
            [1, 4],
            [2, 3],
            [2, 4]])
    """
    if len(tensors) == 1:
        return tensors[0]
    return stack([g.reshape(-1) for g in meshgrid(*tensors, indexing="ij")], 1)


def kron(input: Tensor, other: Tensor) -> Tensor:
    """Kronecker product.

    >>> ember.kron(ember.eye(2), ember.ones(1, 2))
    tensor([[1., 1., 0., 0.],
            [0., 0., 1., 1.]])
    """
    nd = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (nd - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (nd - other.ndim) + tuple(other.shape))
    a = a.reshape([d for s in a.shape for d in (s, 1)])
    b = b.reshape([d for s in b.shape for d in (1, s)])
    out = (a * b).reshape([x * y for x, y in zip(
        (1,) * (nd - input.ndim) + tuple(input.shape),
        (1,) * (nd - other.ndim) + tuple(other.shape))])
    return out


def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    """Pick values at ``indices`` along ``dim`` (the flattened input when dim is None).

    >>> ember.take_along_dim(ember.tensor([[1, 2], [3, 4]]), ember.tensor([[1], [0]]), 1)
    tensor([[2],
            [3]])
    """
    if indices.dtype.is_floating_point or indices.dtype.is_complex or \
            indices.dtype is dtypes.bool_:
        raise RuntimeError("torch.take_along_dim(): dtype of indices should be Long but got "
                           f"{_TORCH_NAMES.get(indices.dtype.name, indices.dtype.name)}")
    indices = indices.to(dtypes.int64)
    if dim is None:
        return input.reshape(-1).gather(0, indices.reshape(-1))
    if input.ndim != indices.ndim:
        raise RuntimeError("torch.take_along_dim(): input and indices should have the same "
                           f"number of dimensions, but got {input.ndim} dimensions for input, "
                           f"and {indices.ndim} dimensions for indices")
    d = dim + input.ndim if dim < 0 else dim
    shape = [max(a, b) for a, b in zip(input.shape, indices.shape)]
    ishape, jshape = list(shape), list(shape)
    ishape[d], jshape[d] = input.shape[d], indices.shape[d]
    return input.expand(ishape).gather(d, indices.expand(jshape))


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    """How many elements are not zero (along ``dim``).

    >>> ember.count_nonzero(ember.tensor([0, 1, 2]))
    tensor(2)
    """
    return (input != 0).sum(dim).to(dtypes.int64) if dim is not None else \
        (input != 0).sum().to(dtypes.int64)


def _tri_indices(fn, row, col, offset, dtype, device) -> Tensor:
    if row < 0 or col < 0:
        raise RuntimeError(f"row must be non-negative, got{row}" if row < 0 else
                           f"col must be non-negative, got{col}")
    r, c = fn(row, offset, col)
    return tensor(np.stack([r, c]).astype(np.int64).reshape(2, -1),
                  dtype=dtype or dtypes.int64, device=device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """Row and column indices of the lower triangle, shape [2, N].

    >>> ember.tril_indices(2, 2)
    tensor([[0, 1, 1],
            [0, 0, 1]])
    """
    return _tri_indices(np.tril_indices, row, col, offset, dtype, device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """Row and column indices of the upper triangle, shape [2, N].

    >>> ember.triu_indices(2, 2)
    tensor([[0, 0, 1],
            [0, 1, 1]])
    """
    return _tri_indices(np.triu_indices, row, col, offset, dtype, device)


def var_mean(input: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False,
             *, correction: int | None = None) -> tuple:
    """``(input.var(...), input.mean(...))`` over the same dims.

    >>> ember.var_mean(ember.tensor([1., 3.]))
    (tensor(2.), tensor(2.))
    """
    return (input.var(dim, unbiased, keepdim, correction=correction),
            input.mean(dim, keepdim=keepdim))


def std_mean(input: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False,
             *, correction: int | None = None) -> tuple:
    """``(input.std(...), input.mean(...))`` over the same dims.

    >>> ember.std_mean(ember.tensor([1., 3.]))
    (tensor(1.4142), tensor(2.))
    """
    return (input.std(dim, unbiased, keepdim, correction=correction),
            input.mean(dim, keepdim=keepdim))


# --- distances, membership, search ------------------------------------------------------

def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str =
          "use_mm_for_euclid_dist_if_necessary") -> Tensor:
    """p-norm distance between each row of ``x1`` and each row of ``x2`` ([..., P, R]).

    >>> ember.cdist(ember.tensor([[0., 0.]]), ember.tensor([[3., 4.]]))
    tensor([[5.]])
    """
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {x1.ndim}D"
                           if x1.ndim < 2 else
                           f"cdist only supports at least 2D tensors, X2 got: {x2.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if not x1.dtype.is_floating_point:
        raise RuntimeError(f"cdist only supports floating-point dtypes, X1 got: "
                           f"{x1.dtype.name}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    d = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).abs()
    if p == 0:
        return (d != 0).sum(-1).to(x1.dtype)
    if math.isinf(p):
        return d.amax(-1)
    if p == 1:
        return d.sum(-1)
    s = (d * d).sum(-1) if p == 2 else (d ** p).sum(-1)
    # The root's gradient at distance 0 is infinite; PyTorch gives 0 there.
    pos = s > 0
    safe = where(pos, s, s.new_ones(()))
    root = safe.sqrt() if p == 2 else safe ** (1.0 / p)
    return where(pos, root, s.new_zeros(()))


def isin(elements, test_elements, *, assume_unique: bool = False,
         invert: bool = False) -> Tensor:
    """Whether each element of ``elements`` is in ``test_elements``.

    >>> ember.isin(ember.tensor([1, 2, 3]), ember.tensor([2, 5]))
    tensor([False,  True, False])
    """
    like = elements if isinstance(elements, Tensor) else test_elements
    e, t = _t(elements, like), _t(test_elements, like)
    hit = (e.unsqueeze(-1) == t.reshape(-1)).any(-1) if t.numel() else \
        e.new_zeros(e.shape).to(dtypes.bool_)
    return ~hit if invert else hit


def searchsorted(sorted_sequence: Tensor, input, *, out_int32: bool = False,
                 right: bool = False, side: str | None = None, sorter=None) -> Tensor:
    """Where each value of ``input`` would be inserted into the sorted innermost dim of
    ``sorted_sequence`` to keep it sorted (leftmost place, or rightmost with right/side).

    >>> ember.searchsorted(ember.tensor([1, 3, 5]), ember.tensor([3, 6]))
    tensor([1, 3])
    """
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but "
                               f"got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to "
                               "opposites, got side of left while right was True")
        right = side == "right"
    scalar = not isinstance(input, Tensor)
    values = _t(input, sorted_sequence)
    seq = sorted_sequence
    if sorter is not None:
        seq = seq.gather(-1, sorter)
    if seq.ndim > 1:
        if values.ndim != seq.ndim or tuple(values.shape[:-1]) != tuple(seq.shape[:-1]):
            raise RuntimeError("torch.searchsorted(): boundaries tensor should be 1 dimension "
                               "or the first N-1 dimensions of boundaries tensor and input "
                               "value tensor must match, but we got boundaries tensor "
                               f"{list(seq.shape)} and input value tensor "
                               f"{list(values.shape)}")
        below = seq.unsqueeze(-2) <= values.unsqueeze(-1) if right else \
            seq.unsqueeze(-2) < values.unsqueeze(-1)
    else:
        below = seq <= values.unsqueeze(-1) if right else seq < values.unsqueeze(-1)
    out = below.sum(-1).to(dtypes.int32 if out_int32 else dtypes.int64)
    return out.reshape(()) if scalar else out


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False,
              right: bool = False) -> Tensor:
    """The bucket of each value: i with ``boundaries[i-1] < x <= boundaries[i]``
    (``<= x <`` with right=True).

    >>> ember.bucketize(ember.tensor([0.5, 1.0, 2.5]), ember.tensor([1.0, 2.0]))
    tensor([0, 0, 2])
    """
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim("
                           f"{boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


# --- order statistics -------------------------------------------------------------------

def _median(name, input, dim, keepdim, ignore_nan):
    if dim is None:
        x = input.reshape(-1)
        if x.shape[0] == 0:
            return x.new_full((), float("nan"))
        return _median(name, x, 0, False, ignore_nan).values
    d = dim + input.ndim if dim < 0 else dim
    if input.ndim == 0:
        return values_indices(input.clone(), input.new_zeros(()).to(dtypes.int64))
    n = input.shape[d]
    if n == 0:
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    vals, idx = input.sort(d, stable=True)         # NaN sorts last
    k = (~vals.isnan()).sum(d, keepdim=True)
    if ignore_nan:      # the lower median of the values that are not NaN
        pos = ((k - 1).clamp(min=0)) // 2
    else:               # NaN (the first one) wherever a row has one
        pos = where(k < n, k, k.new_full((), (n - 1) // 2))
    v, i = vals.gather(d, pos), idx.gather(d, pos)
    if not keepdim:
        v, i = v.squeeze(d), i.squeeze(d)
    return values_indices(v, i)


def median(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """The lower median: of all elements (a 0-d tensor), or along ``dim`` as
    ``(values, indices)``; NaN where there is a NaN.

    >>> ember.median(ember.tensor([3., 1., 2., 4.]))
    tensor(2.)
    """
    return _median("median", input, dim, keepdim, False)


def nanmedian(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """median that ignores NaN (NaN only where all values are NaN).

    >>> ember.nanmedian(ember.tensor([3., float("nan"), 1.]))
    tensor(1.)
    """
    return _median("nanmedian", input, dim, keepdim, True)


def _quantile(name, input, q, dim, keepdim, interpolation, ignore_nan):
    if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
        raise RuntimeError(f"{name}() interpolation must be one of linear, lower, higher, "
                           f"midpoint or nearest. Got {interpolation}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    scalar_q = not isinstance(q, Tensor)
    qt = _t(q, input).to(input.dtype).reshape(-1)
    if not scalar_q and q.ndim > 1:
        raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
    qv = qt.numpy() if not scalar_q else np.array([q])
    if ((qv < 0) | (qv > 1)).any():
        raise RuntimeError(f"{name}() q values must be in the range [0, 1]")
    x = input.reshape(-1) if dim is None else input
    d = 0 if dim is None else (dim + input.ndim if dim < 0 else dim)
    if x.ndim == 0:
        x = x.reshape(1)
    s = x.movedim(d, -1).sort(-1)[0]            # NaN sorts last
    n = s.shape[-1]
    nan = s.isnan()
    k = (~nan).sum(-1, keepdim=True).to(s.dtype) if ignore_nan else \
        s.new_full(tuple(s.shape[:-1]) + (1,), float(n))
    qs = qt.reshape((1,) * (s.ndim - 1) + (-1,))
    pos = qs * (k - 1).clamp(min=0)
    lo = pos.floor()
    hi = pos.ceil()
    if interpolation == "lower":
        hi = lo
    elif interpolation == "higher":
        lo = hi
    elif interpolation == "nearest":
        lo = hi = pos.round()
    shape = tuple(s.shape[:-1]) + (qs.shape[-1],)
    lo_i = lo.expand(shape).to(dtypes.int64).clamp(0, max(n - 1, 0))
    hi_i = hi.expand(shape).to(dtypes.int64).clamp(0, max(n - 1, 0))
    a, b = s.gather(-1, lo_i), s.gather(-1, hi_i)
    if interpolation == "midpoint":
        out = a + (b - a) * 0.5
    elif interpolation == "linear":
        out = a + (b - a) * (pos - lo).expand(shape)
    else:
        out = a
    bad = (k == 0) if ignore_nan else nan.any(-1, keepdim=True)
    out = where(bad.expand(shape), out.new_full((), float("nan")), out)
    out = out.movedim(-1, 0)                    # q's dim first, as PyTorch
    if dim is not None and keepdim:
        out = out.unsqueeze(d + 1)
    elif dim is None and keepdim:
        out = out.reshape((out.shape[0],) + (1,) * input.ndim)
    if scalar_q:
        out = out.squeeze(0)
    return out


def quantile(input: Tensor, q, dim: int | None = None, keepdim: bool = False, *,
             interpolation: str = "linear") -> Tensor:
    """The q-th quantiles (NaN where a row has NaN).

    >>> ember.quantile(ember.tensor([0., 1., 2., 3.]), 0.5)
    tensor(1.5)
    """
    return _quantile("quantile", input, q, dim, keepdim, interpolation, False)


def nanquantile(input: Tensor, q, dim: int | None = None, keepdim: bool = False, *,
                interpolation: str = "linear") -> Tensor:
    """quantile that ignores NaN (NaN only where a row is all NaN).

    >>> ember.nanquantile(ember.tensor([0., float('nan'), 2.]), 0.5)
    tensor(1.)
    """
    return _quantile("nanquantile", input, q, dim, keepdim, interpolation, True)


# --- histograms, block matrices, windows ------------------------------------------------

def histc(input: Tensor, bins: int = 100, min=0, max=0) -> Tensor:
    """Counts of ``input`` in ``bins`` equal bins over [min, max] (the data's range when
    min == max); values outside are ignored.

    >>> ember.histc(ember.tensor([1., 2., 1.]), bins=4, min=0, max=3)
    tensor([0., 2., 1., 0.])
    """
    if not (input.dtype.is_floating_point):
        raise NotImplementedError('"histogram_cpu" not implemented for '
                                  f"'{_TORCH_NAMES.get(input.dtype.name, input.dtype.name)}'")
    if bins <= 0:
        raise RuntimeError(f"torch.histc(): bins must be > 0, but got {bins} for dimension 0")
    if max < min:
        raise RuntimeError("torch.histc(): max must be larger than min")
    x = input.reshape(-1)
    if min == max and x.numel():
        # The data's range, kept as tensors so that a compiled call needs no value.
        lo, hi = x.detach().amin(), x.detach().amax()
        same = lo == hi
        lo, hi = where(same, lo - 1, lo), where(same, hi + 1, hi)
    else:
        lo, hi = (min - 1, max + 1) if min == max else (min, max)
        lo, hi = x.new_full((), float(lo)), x.new_full((), float(hi))
    inside = (x >= lo) & (x <= hi)
    pos = ((x - lo) * bins / (hi - lo)).floor()
    idx = where(inside, pos, pos.new_zeros(())).to(dtypes.int64).clamp(0, bins - 1)
    return x.new_zeros((bins,)).detach().scatter_add(0, idx, inside.to(x.dtype))


def block_diag(*tensors: Tensor) -> Tensor:
    """A block-diagonal matrix of 0-, 1- or 2-D tensors (a 1-D tensor is one row).

    >>> ember.block_diag(ember.tensor([[1, 2]]), ember.tensor(3))
    tensor([[1, 2, 0],
            [0, 0, 3]])
    """
    mats = []
    for i, t in enumerate(tensors):
        if t.ndim > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer "
                               f"dimensions. Input {i} has {t.ndim} dimensions")
        mats.append(t.reshape(1, -1) if t.ndim < 2 else t)
    if not mats:
        return tensor(np.zeros((1, 0), np.float32))
    dtype = mats[0].dtype
    for m in mats[1:]:
        dtype = dtypes.promote_types(dtype, m.dtype)
    width = sum(m.shape[1] for m in mats)
    rows, left = [], 0
    for m in mats:
        r, c = m.shape
        parts = [m.new_zeros((r, left)).to(dtype), m.to(dtype),
                 m.new_zeros((r, width - left - c)).to(dtype)]
        rows.append(cat(parts, 1))
        left += c
    return cat(rows, 0)


def _unfold_windows(self: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Windows of ``size`` elements every ``step`` along ``dimension``, as a new last dim.

    >>> ember.arange(5).unfold(0, 2, 2)
    tensor([[0, 1],
            [2, 3]])
    """
    d = dimension + self.ndim if dimension < 0 and self.ndim else dimension
    length = self.shape[d] if self.ndim else 1
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    if size > length:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {length} but size "
                           f"is {size}")
    if self.ndim == 0:
        return self.reshape(1)
    n = (length - size) // step + 1
    idx = (np.arange(n)[:, None] * step + np.arange(size)[None, :]).reshape(-1)
    picked = self.index_select(d, tensor(idx.astype(np.int64), device=self.device))
    shape = tuple(self.shape[:d]) + (n, size) + tuple(self.shape[d + 1:])
    return picked.reshape(shape).movedim(d + 1, -1)


# --- value-dependent sizes (eager only) -------------------------------------------------

def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim: int | None = None):
    """The distinct values, sorted; with the inverse (each element's index into them)
    and counts where asked. Its size depends on the values: a compiled call runs it
    eagerly.

    >>> ember.unique(ember.tensor([2, 1, 2]), return_counts=True)
    (tensor([1, 2]), tensor([1, 2]))
    """
    if dim is not None:
        dim = dim + input.ndim if dim < 0 else dim
    out = [dispatch("unique", input, part="values", dim=dim)]
    if return_inverse:
        out.append(dispatch("unique", input, part="inverse", dim=dim))
    if return_counts:
        out.append(dispatch("unique", input, part="counts", dim=dim))
    return out[0] if len(out) == 1 else tuple(out)


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """How often each value 0..max occurs in a 1-D non-negative integer tensor (or the
    sum of ``weights`` there). Its size depends on the values: eager only.

    >>> ember.bincount(ember.tensor([0, 2, 2]))
    tensor([1, 0, 2])
    """
    if input.ndim != 1:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if input.dtype.is_floating_point or input.dtype.is_complex:
        raise NotImplementedError('"bincount_cpu" not implemented for '
                                  f"'{_TORCH_NAMES.get(input.dtype.name, input.dtype.name)}'")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    if input.numel() and int(input.min().item()) < 0:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is not None:
        if weights.ndim != 1 or weights.shape[0] != input.shape[0]:
            raise RuntimeError("weights should be 1-d and have the same length as input")
        w = weights if weights.dtype is dtypes.float32 else weights.to(dtypes.float64)
        return dispatch("bincount", input, w, minlength=minlength).to(w.dtype)
    return dispatch("bincount", input, minlength=minlength)


# --- scatter with reductions ------------------------------------------------------------

def _index_like(index: Tensor, dim: int, shape) -> Tensor:
    view = [1] * len(shape)
    view[dim] = -1
    return index.reshape(view).expand(shape)


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    """``input`` with ``alpha * source``'s slices added at ``index`` along ``dim``.

    >>> ember.zeros(3).index_add(0, ember.tensor([0, 0]), ember.ones(2))
    tensor([2., 0., 0.])
    """
    if index.ndim > 1:
        raise IndexError("index_add_(): Index is supposed to be a vector")
    d = dim + input.ndim if dim < 0 else dim
    src = source if input.ndim else source.reshape(1)
    if input.ndim and src.shape[d] != index.numel():
        raise IndexError(f"index_add_(): Number of indices ({index.numel()}) should be equal "
                         f"to source.size(dim) ({src.shape[d]})")
    base = input if input.ndim else input.reshape(1)
    out = base.scatter_add(d, _index_like(index.reshape(-1), d, src.shape),
                           src * alpha if alpha != 1 else src)
    return out if input.ndim else out.reshape(())


def scatter_reduce(input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    """Reduce ``src`` into ``input`` at ``index`` along ``dim`` with sum, prod, mean,
    amax or amin (differentiable for sum and mean).

    >>> ember.zeros(2).scatter_reduce(0, ember.tensor([0, 0]), ember.ones(2), "sum")
    tensor([2., 0.])
    """
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError("reduce argument must be either sum, prod, mean, amax or amin, "
                           f"got {reduce}")
    d = dim + input.ndim if dim < 0 else dim
    if index.dtype is not dtypes.int64:
        raise RuntimeError("scatter_reduce(): Expected dtype int64 for index")
    if reduce in ("sum", "mean"):
        part = src[tuple(slice(0, s) for s in index.shape)]
        base = input if include_self else input.scatter(d, index, 0)
        total = base.scatter_add(d, index, part)
        if reduce == "sum":
            return total
        ones = index.new_ones(index.shape).to(input.dtype)
        count = (input.new_ones(input.shape) if include_self else
                 input.new_zeros(input.shape)).scatter_add(d, index, ones)
        count = where(count == 0, count.new_ones(()), count)
        if input.dtype.is_floating_point or input.dtype.is_complex:
            return total / count
        return total.floor_divide(count)
    return dispatch("scatter_reduce_np", input, index, src, dim=d, reduce=reduce,
                    include_self=bool(include_self))


__all__ = ["lerp", "addcmul", "addcdiv", "diff", "meshgrid", "cartesian_prod", "kron",
           "take_along_dim", "count_nonzero", "tril_indices", "triu_indices", "var_mean",
           "std_mean", "cdist", "isin", "searchsorted", "bucketize", "median", "nanmedian",
           "quantile", "nanquantile", "unique", "bincount", "index_add", "scatter_reduce",
           "histc", "block_diag"]


# Tensor methods where PyTorch has them; in-place forms write the result into the tensor.
_TENSOR_METHODS = ("lerp addcmul addcdiv diff count_nonzero kron take_along_dim bincount "
                   "unique median nanmedian quantile nanquantile index_add scatter_reduce "
                   "histc").split()


def _method(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)
    method.__name__ = method.__qualname__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


def _inplace_method(fn, name: str = ""):
    name = name or fn.__name__ + "_"

    def method(self, *args, **kwargs):
        others = tuple(a for a in args if isinstance(a, Tensor))
        return self._inplace(lambda s: fn(s, *args, **kwargs), others, name)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``x.{name}(...)`` writes ``x.{fn.__name__}(...)`` into x."
    return method


for _name in _TENSOR_METHODS:
    if not hasattr(Tensor, _name):
        setattr(Tensor, _name, _method(globals()[_name]))
if not hasattr(Tensor, "unfold"):
    Tensor.unfold = _unfold_windows
    Tensor.unfold.__name__ = Tensor.unfold.__qualname__ = "unfold"
for _name in ("index_add", "scatter_reduce"):
    if not hasattr(Tensor, _name + "_"):
        setattr(Tensor, _name + "_", _inplace_method(globals()[_name]))
