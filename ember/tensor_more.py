"""More of torch's tensor functions: rot90, vander, signbit, heaviside, logcumsumexp,
cummax, cummin, mode, trapezoid (trapz), cumulative_trapezoid, and the Tensor methods
as_strided, index_put(_), masked_scatter(_).

Where a composition of ember ops is exact it is one (autograd and ``ember.compile``
then work for free); the scans whose NumPy form is the exact one (logcumsumexp, the
running arg-extremes, mode's counting) are small registry ops defined here.

>>> ember.rot90(ember.tensor([[1, 2], [3, 4]]))
tensor([[2, 4],
        [1, 3]])
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.ops.registry import INDEX, REDUCE, UNARY, defop
from ember.tensor import Tensor, cat, ones, tensor, where
from ember.tensor_common import values_indices

__all__ = ["rot90", "vander", "signbit", "heaviside", "logcumsumexp", "cummax", "cummin",
           "mode", "trapezoid", "trapz", "cumulative_trapezoid"]


def _dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


# ---- rearrangements -----------------------------------------------------------------------

def rot90(input: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times, from the first of ``dims`` towards the second.

    >>> ember.rot90(ember.tensor([[1, 2], [3, 4]]), 2)
    tensor([[4, 3],
            [2, 1]])
    """
    dims = list(dims)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if input.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {input.ndim}")
    d0, d1 = _dim(dims[0], input.ndim), _dim(dims[1], input.ndim)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and "
                           f"dim1 = {d1}")
    k %= 4
    if k == 1:
        return input.flip([d1]).transpose(d0, d1)
    if k == 2:
        return input.flip([d0, d1])
    if k == 3:
        return input.flip([d0]).transpose(d0, d1)
    return input.clone()


def vander(x: Tensor, N: int | None = None, increasing: bool = False) -> Tensor:
    """The Vandermonde matrix: columns x^(N-1), ..., x, 1 (reversed when ``increasing``).

    >>> ember.vander(ember.tensor([1, 2, 3]), N=3)
    tensor([[1, 1, 1],
            [4, 2, 1],
            [9, 3, 1]])
    """
    if x.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    n = x.shape[0] if N is None else int(N)
    if n < 0:
        raise RuntimeError("N must be non-negative.")
    # As torch: integers and bools widen to int64; the powers are a running product.
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        x = x.to(dtypes.int64)
    col = x.unsqueeze(1)
    if n == 0:
        return col[:, :0]
    parts = [ones(x.shape[0], 1, dtype=x.dtype, device=x.device)]
    if n > 1:
        parts.append(col.expand(x.shape[0], n - 1))
    out = cat(parts, 1).cumprod(1)
    return out if increasing else out.flip([1])


# ---- sign and step ------------------------------------------------------------------------

defop("signbit", UNARY, lambda xp, a: xp.signbit(a), dtype_rule="bool")


def signbit(input: Tensor) -> Tensor:
    """Whether the sign bit is set (True for -0.0 too).

    >>> ember.signbit(ember.tensor([-0.0, 0.0, -1.0]))
    tensor([ True, False,  True])
    """
    if input.dtype.is_complex:
        raise RuntimeError("signbit is not implemented for complex tensors.")
    return dispatch("signbit", input)


def heaviside(input: Tensor, values) -> Tensor:
    """0 where input < 0, 1 where > 0, ``values`` where == 0 (no gradient, as torch).

    >>> ember.heaviside(ember.tensor([-1., 0., 2.]), ember.tensor(0.5))
    tensor([0.0, 0.5, 1.0])
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"heaviside(): argument 'values' (position 2) must be Tensor, not "
                        f"{type(values).__name__}")
    if input.dtype != values.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes.")
    if input.dtype.is_complex:
        raise RuntimeError("heaviside is not yet implemented for complex tensors.")
    x, v = input.detach(), values.detach()
    return where(x == 0, v, (x > 0).to(x.dtype)).to(x.dtype)


# ---- scans -------------------------------------------------------------------------------

def _on_host(fn):
    """Run a NumPy kernel on host memory: ``ufunc.accumulate`` is NumPy's, not CuPy's."""
    def eager(xp, a, **attrs):
        if xp is np:
            return fn(a, **attrs)
        return xp.asarray(fn(a.get(), **attrs))
    return eager


def _logcumsumexp(a, dim):
    with np.errstate(all="ignore"):
        return np.logaddexp.accumulate(a, axis=dim)


def _logcumsumexp_vjp(g, out, a, dim):
    # d out_j / d a_i = exp(a_i - out_j) for j >= i. Summed over j in log space, split by
    # the sign of g, so nothing overflows: grad_i = exp(a_i + L+_i) - exp(a_i + L-_i),
    # where L+-_i = log sum_{j>=i} g+-_j exp(-out_j) is a reversed logcumsumexp.
    def rev_lcse(t):
        return dispatch("logcumsumexp", t.flip([dim]), dim=dim).flip([dim])
    pos = where(g > 0, g, 0.0).log() - out
    neg = where(g < 0, -g, 0.0).log() - out
    return ((a + rev_lcse(pos)).exp() - (a + rev_lcse(neg)).exp(),)


defop("logcumsumexp", REDUCE, _on_host(_logcumsumexp), _logcumsumexp_vjp)


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    """log(cumsum(exp(x))) along ``dim``, without overflow or underflow.

    >>> ember.logcumsumexp(ember.tensor([0., 0.]), 0)
    tensor([0.0000, 0.6931])
    """
    x = input if input.dtype.is_floating_point else input.to(dtypes.get_default_dtype())
    if x.ndim == 0:
        return x.clone()
    return dispatch("logcumsumexp", x, dim=_dim(dim, x.ndim))


def _running_arg(a, dim, largest):
    """Index of the running max (min) along ``dim``: the latest of ties, and once a nan
    is met the latest nan (torch's rule: ``x >= best or isnan(x)``)."""
    if a.shape[dim] == 0:
        return np.zeros(a.shape, dtype=np.int64)
    if a.dtype == ml_dtypes.bfloat16:   # (NumPy kind "V": NaN rules in float32)
        a = a.astype(np.float32)
    acc = np.maximum if largest else np.minimum
    best = acc.accumulate(a, axis=dim) if a.dtype != np.bool_ else \
        (np.logical_or if largest else np.logical_and).accumulate(a, axis=dim)
    shape = [1] * a.ndim
    shape[dim] = a.shape[dim]
    pos = np.arange(a.shape[dim], dtype=np.int64).reshape(shape)
    take = a == best
    if a.dtype.kind in "fc":
        take = (take & ~np.isnan(best)) | np.isnan(a)
    return np.maximum.accumulate(np.where(take, pos, 0), axis=dim)


defop("cumarg", INDEX, _on_host(_running_arg))


def _cumext(name: str, input: Tensor, dim: int):
    if input.ndim == 0:
        return values_indices(input.clone(), tensor(0, device=input.device))
    d = _dim(dim, input.ndim)
    idx = dispatch("cumarg", input.detach(), dim=d, largest=name == "cummax")
    return values_indices(input.gather(d, idx), idx)   # gather: the gradient, as torch's


def cummax(input: Tensor, dim: int):
    """Running maximum along ``dim`` and where it was found: ``(values, indices)``.

    >>> ember.cummax(ember.tensor([1., 3., 2.]), 0).values
    tensor([1., 3., 3.])
    """
    return _cumext("cummax", input, dim)


def cummin(input: Tensor, dim: int):
    """Running minimum along ``dim`` and where it was found: ``(values, indices)``.

    >>> ember.cummin(ember.tensor([3., 1., 2.]), 0).indices
    tensor([0, 1, 1])
    """
    return _cumext("cummin", input, dim)


def _mode_index(a, dim):
    """Per row along ``dim``: the index (the last occurrence) of the most frequent value,
    the smallest of equally frequent ones, as torch.mode."""
    moved = np.moveaxis(a, dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = np.empty(rows.shape[0], dtype=np.int64)
    for r, row in enumerate(rows):
        values, counts = np.unique(row, return_counts=True)   # sorted: ties go to the smallest
        best = values[np.argmax(counts)]
        same = (row == best) | (np.isnan(row) & np.isnan(best)) if row.dtype.kind == "f" \
            else row == best
        out[r] = np.flatnonzero(same)[-1]
    return out.reshape(moved.shape[:-1])


defop("mode_index", INDEX, _on_host(_mode_index))


def mode(input: Tensor, dim: int = -1, keepdim: bool = False):
    """The most frequent value along ``dim`` (the smallest of ties) and its last index.

    >>> ember.mode(ember.tensor([1, 2, 2, 3]))
    values_indices(values=tensor(2), indices=tensor(2))
    """
    if input.ndim == 0:
        return values_indices(input.clone(), tensor(0, device=input.device))
    d = _dim(dim, input.ndim)
    if input.shape[d] == 0:
        raise IndexError("mode(): Expected reduction dim 1 to have non-zero size.")
    idx = dispatch("mode_index", input.detach(), dim=d)
    values = input.gather(d, idx.unsqueeze(d))
    idx = idx.unsqueeze(d) if keepdim else idx
    return values_indices(values if keepdim else values.squeeze(d), idx)


# ---- integration -------------------------------------------------------------------------

def trapezoid(y: Tensor, x=None, *, dx=None, dim: int = -1) -> Tensor:
    """The trapezoid rule along ``dim``, with sample points ``x`` or spacing ``dx`` (1).

    >>> ember.trapezoid(ember.tensor([1., 2., 3.]))
    tensor(4.)
    """
    if isinstance(x, Tensor) and dx is not None:
        raise TypeError("trapezoid() received an invalid combination of arguments: x and dx")
    d = _dim(dim, y.ndim)
    y = _floating(y)
    n = y.shape[d]
    if n == 0:
        return y.sum(d) * 0
    pair = y.narrow(d, 1, n - 1) + y.narrow(d, 0, n - 1)
    if isinstance(x, Tensor):
        return (pair * _spacing(x, y, d)).sum(d) / 2
    step = 1 if x is None and dx is None else (dx if dx is not None else x)
    return pair.sum(d) * (step / 2)


trapz = trapezoid


def _floating(y: Tensor) -> Tensor:
    # torch integrates integer samples in the default float dtype.
    return y if y.dtype.is_floating_point or y.dtype.is_complex else \
        y.to(dtypes.get_default_dtype())


def _spacing(x: Tensor, y: Tensor, d: int) -> Tensor:
    """The gaps between sample points, shaped to broadcast against y's pairs."""
    if x.ndim == 1:
        if x.shape[0] != y.shape[d]:
            raise RuntimeError("trapezoid: There must be one `x` value for each sample point")
        gaps = x[1:] - x[:-1]
        shape = [1] * y.ndim
        shape[d] = gaps.shape[0]
        return gaps.reshape(shape)
    nx = x.shape[d - y.ndim + x.ndim] if x.ndim <= y.ndim else x.shape[d]
    dxn = d - y.ndim + x.ndim if x.ndim <= y.ndim else d
    return x.narrow(dxn, 1, nx - 1) - x.narrow(dxn, 0, nx - 1)


def cumulative_trapezoid(y: Tensor, x=None, *, dx=None, dim: int = -1) -> Tensor:
    """Running trapezoid-rule integrals along ``dim`` (one fewer than y's points).

    >>> ember.cumulative_trapezoid(ember.tensor([1., 2., 3.]))
    tensor([1.5, 4.0])
    """
    if isinstance(x, Tensor) and dx is not None:
        raise TypeError("cumulative_trapezoid() received an invalid combination of "
                        "arguments: x and dx")
    d = _dim(dim, y.ndim)
    y = _floating(y)
    n = y.shape[d]
    if n == 0:
        return y.narrow(d, 0, 0)
    pair = y.narrow(d, 1, n - 1) + y.narrow(d, 0, n - 1)
    if isinstance(x, Tensor):
        return (pair * _spacing(x, y, d) / 2).cumsum(d)
    step = 1 if x is None and dx is None else (dx if dx is not None else x)
    return (pair * (step / 2)).cumsum(d)


# ---- Tensor methods: storage views and masked writes --------------------------------------

def as_strided(self: Tensor, size, stride, storage_offset: int | None = None) -> Tensor:
    """The elements of this tensor's storage at ``offset + sum(i_k * stride_k)``.

    A gather from the storage (a copy, unlike torch's view: writes to it do not reach
    this tensor); its gradient sums over elements read more than once, as torch's.

    >>> ember.arange(6.).as_strided((2, 2), (1, 1))
    tensor([[0., 1.],
            [1., 2.]])
    """
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    if any(s < 0 for s in stride):
        raise RuntimeError("as_strided: Negative strides are not supported at the moment, "
                           f"got strides: {list(stride)}")
    root = self._base if self._base is not None else self
    if root._data.flags.c_contiguous:
        storage = root.reshape(-1)
        item = root._data.itemsize
        own = (self._data.__array_interface__["data"][0]
               - root._data.__array_interface__["data"][0]) // item
    else:   # no dense storage to read: this tensor's elements in row-major order
        storage, own = self.contiguous().reshape(-1), 0
    offset = own if storage_offset is None else int(storage_offset)
    need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 \
        if all(n > 0 for n in size) else 0
    if need > storage.shape[0]:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                           f"offset {offset}, and itemsize {self._data.itemsize} requiring a "
                           f"storage size of {need * self._data.itemsize} are out of bounds "
                           f"for storage of size {storage.shape[0] * self._data.itemsize}")
    flat = np.full(size, offset, dtype=np.int64)
    for k, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[k] = n
        flat = flat + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    idx = tensor(flat, device=self.device)
    return dispatch("index", storage, idx, key=("t0",))


def _index_key(self: Tensor, indices) -> tuple[tuple, tuple]:
    if isinstance(indices, Tensor) or not isinstance(indices, (tuple, list)):
        raise TypeError("index_put_(): argument 'indices' must be tuple of Tensors")
    idx = []
    for i in indices:
        if not isinstance(i, Tensor):
            raise TypeError("index_put_(): argument 'indices' must be tuple of Tensors")
        if i.dtype.is_floating_point or i.dtype.is_complex:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        idx.append(i)
    if len(idx) > self.ndim:
        raise IndexError(f"too many indices for tensor of dimension {self.ndim} "
                         f"(got {len(idx)})")
    return tuple(f"t{k}" for k in range(len(idx))), tuple(idx)


def index_put(self: Tensor, indices, values: Tensor, accumulate: bool = False) -> Tensor:
    """A copy of this tensor with ``values`` written (or, ``accumulate``, added) at
    ``indices``, a tuple of index tensors (``out[indices] = values``).

    >>> ember.zeros(3).index_put((ember.tensor([0, 2]),), ember.ones(2))
    tensor([1., 0., 1.])
    """
    key, idx = _index_key(self, indices)
    if not isinstance(values, Tensor):
        raise TypeError("index_put(): argument 'values' must be Tensor")
    if values.dtype != self.dtype:
        raise RuntimeError(f"Index put requires the source and destination dtypes match, got "
                           f"{_name(self.dtype)} for the destination and {_name(values.dtype)} "
                           f"for the source.")
    return dispatch("index_put", self, values, *idx, key=key, accumulate=bool(accumulate))


def index_put_(self: Tensor, indices, values: Tensor, accumulate: bool = False) -> Tensor:
    """In place: ``self[indices] = values`` (``+=`` with ``accumulate``); returns self."""
    return self._inplace(lambda s: index_put(s, indices, values, accumulate), (values,),
                         "index_put_")


def _name(dt) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
            "int32": "Int", "bool": "Bool", "bfloat16": "BFloat16"}.get(dt.name, dt.name)


def masked_scatter(self: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """A copy of this tensor with the True places of ``mask`` filled, in row-major order,
    by consecutive elements of ``source``.

    >>> ember.zeros(3).masked_scatter(ember.tensor([True, False, True]), ember.tensor([1., 2.]))
    tensor([1., 0., 2.])
    """
    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with "
                           f"dtype {mask.dtype}")
    if source.dtype != self.dtype:
        raise RuntimeError(f"masked_scatter: expected self and source to have same dtypes but "
                           f"got {_name(self.dtype)} and {_name(source.dtype)}")
    shape = tuple(np.broadcast_shapes(tuple(self.shape), tuple(mask.shape)))
    m = mask.expand(shape)
    base = self.expand(shape)
    # The k-th True place takes source's k-th element: its rank among the True places.
    rank = m.reshape(-1).to(dtypes.int64).cumsum(0) - 1
    count = int(rank[-1].item()) + 1 if rank.shape[0] else 0
    if count > source.numel():
        raise RuntimeError("masked_scatter: expected source to have at least as many elements "
                           "as the ones in mask")
    if source.numel() == 0:
        return base.clone()
    picked = source.reshape(-1)[rank.clamp(min=0)].reshape(shape)
    return where(m, picked, base)


def masked_scatter_(self: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """In place form of ``masked_scatter``; returns self."""
    if tuple(np.broadcast_shapes(tuple(self.shape), tuple(mask.shape))) != tuple(self.shape):
        raise RuntimeError(f"masked_scatter_: expected mask of shape broadcastable to "
                           f"{list(self.shape)} but got {list(mask.shape)}")
    return self._inplace(lambda s: masked_scatter(s, mask, source), (source,), "masked_scatter_")


def _attach() -> None:
    methods = {"rot90": rot90, "signbit": signbit, "heaviside": heaviside,
               "logcumsumexp": logcumsumexp, "cummax": cummax, "cummin": cummin, "mode": mode,
               "as_strided": as_strided, "index_put": index_put, "index_put_": index_put_,
               "masked_scatter": masked_scatter, "masked_scatter_": masked_scatter_}
    for name, fn in methods.items():
        if not hasattr(Tensor, name):
            setattr(Tensor, name, fn)


_attach()
