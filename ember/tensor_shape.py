"""Tensor methods that change shape or layout, never values: reshape, view, permute,
expand, split and friends (``TensorShape``, a base of ``Tensor``). Most return views."""
from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING

from ember import dtypes
from ember import tensor as _tensor  # Tensor itself (this module is a base of it)
from ember.dispatch import dispatch
from ember.dtypes import DType
from ember.errors import OpError
from ember.tensor_common import (_dims, _shape_arg, channels_last, channels_last_3d,
                                 contiguous_format, memory_format, preserve_format)

if TYPE_CHECKING:
    from ember.tensor import Tensor


class TensorShape:
    """Shape and layout methods of ``Tensor``."""

    __slots__ = ()

    # ---- shape ------------------------------------------------------------------------
    def reshape(self, *shape) -> Tensor:
        """A view where the layout allows one (as ``view``), else a copy."""
        shape = self._target_shape(_shape_arg(shape), "reshape")
        return dispatch("reshape", self, shape=shape)

    def _target_shape(self, shape: tuple[int, ...], op: str) -> tuple[int, ...]:
        n = self._data.size
        if shape.count(-1) > 1:
            raise OpError(op, "only one dimension can be inferred", (self,))
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or n % known:
                raise OpError(op, f"shape '{list(shape)}' is invalid for input of size {n}",
                              (self,))
            shape = tuple(n // known if s == -1 else s for s in shape)
        if math.prod(shape) != n:
            raise OpError(op, f"shape '{list(shape)}' is invalid for input of size {n}", (self,))
        return shape

    def view(self, *shape) -> Tensor:
        """The same memory seen with another shape; raises where the layout allows no view.

        >>> x = ember.zeros(2, 3); x.view(3, 2)[0, 0] = 1; x[0, 0]
        tensor(1.)
        """
        if len(shape) == 1 and isinstance(shape[0], (DType, str)):
            raise NotImplementedError("view(dtype) is not supported; use .to(dtype)")
        shape = self._target_shape(_shape_arg(shape), "view")
        data = self._data
        if not data.flags.c_contiguous and _view_strides(data, shape) is None:
            raise OpError("view", "view size is not compatible with input tensor's size and stride "
                          "(at least one dimension spans across two contiguous subspaces). Use "
                          ".reshape(...) instead.", (self,))
        return dispatch("reshape", self, shape=shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.view(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _dims(start_dim, self.ndim, "flatten")[0], _dims(end_dim, self.ndim, "flatten")[0]
        if s == e:
            return self  # as in PyTorch
        shape = self.shape
        return self.reshape(shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])

    def unflatten(self, dim: int, sizes) -> Tensor:
        """Dim ``dim`` as several dims of ``sizes`` (one may be -1).

        >>> ember.zeros(2, 6).unflatten(1, (3, -1)).shape
        ember.Size([2, 3, 2])
        """
        d = _dims(dim, self.ndim, "unflatten")[0]
        sizes = tuple(int(v) for v in sizes)
        if not sizes:
            raise OpError("unflatten", "unflatten: sizes must be non-empty", (self,))
        n = self.shape[d]
        if sizes.count(-1) > 1:
            raise OpError("unflatten", "only one dimension can be inferred", (self,))
        known = math.prod(v for v in sizes if v != -1)
        if -1 in sizes and known and n % known == 0:
            sizes = tuple(n // known if v == -1 else v for v in sizes)
        if math.prod(sizes) != n:
            raise OpError("unflatten", f"unflatten: Provided sizes {list(sizes)} don't multiply up "
                          f"to the size of dim {dim} ({n}) in the input tensor", (self,))
        return self.reshape(self.shape[:d] + sizes + self.shape[d + 1:])

    def movedim(self, source, destination) -> Tensor:
        """Dims ``source`` moved to positions ``destination``, the others kept in order."""
        src = (source,) if isinstance(source, int) else tuple(source)
        dst = (destination,) if isinstance(destination, int) else tuple(destination)
        if len(src) != len(dst):
            raise OpError("movedim", f"movedim: Invalid source or destination dims: source "
                          f"({list(src)} dims) should contain the same number of dims as "
                          f"destination ({list(dst)} dims)", (self,))
        nd = self.ndim
        src = [_dims(d, nd, "movedim")[0] for d in src]
        dst = [_dims(d, nd, "movedim")[0] for d in dst]
        if len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise OpError("movedim", "movedim: repeated dim", (self,))
        order = [-1] * nd
        for s, d in zip(src, dst):
            order[d] = s
        rest = iter(d for d in range(nd) if d not in src)
        return self.permute(tuple(o if o >= 0 else next(rest) for o in order))

    moveaxis = movedim

    def flip(self, *dims, **kw) -> Tensor:
        """A copy with the order of elements reversed along ``dims``.

        >>> ember.tensor([[1, 2], [3, 4]]).flip(1)
        tensor([[2, 1],
                [4, 3]])
        """
        if kw:   # flip(dims=[0]), as torch's keyword
            if dims or set(kw) != {"dims"}:
                raise TypeError(f"flip() got unexpected arguments {sorted(kw)}")
            dims = (kw["dims"],)
        dims = _shape_arg(dims)
        norm = [_dims(d, self.ndim, "flip")[0] for d in dims]
        for d in norm:
            if norm.count(d) > 1:
                raise OpError("flip", f"dim {d} appears multiple times in the list of dims",
                              (self,))
        return dispatch("flip", self, dims=tuple(norm))

    def fliplr(self) -> Tensor:
        if self.ndim < 2:
            raise OpError("fliplr", "Input must be >= 2-d.", (self,))
        return self.flip(1)

    def flipud(self) -> Tensor:
        if self.ndim < 1:
            raise OpError("flipud", "Input must be >= 1-d.", (self,))
        return self.flip(0)

    def roll(self, shifts, dims=None) -> Tensor:
        """Elements shifted along ``dims`` (of the flattened tensor when None), wrapping
        around.

        >>> ember.tensor([1, 2, 3, 4]).roll(1)
        tensor([4, 1, 2, 3])
        """
        if dims is None:
            if not isinstance(shifts, int) and len(shifts) != 1:
                raise OpError("roll", f"shifts and dimensions must align. shifts: {len(shifts)}, "
                              "dims:0", (self,))
            return self.flatten().roll(shifts, 0).view(self.shape)
        shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if len(shifts) != len(dims):
            raise OpError("roll", f"shifts and dimensions must align. shifts: {len(shifts)}, "
                          f"dims:{len(dims)}", (self,))
        x = self
        for shift, dim in zip(shifts, dims):
            d = _dims(dim, x.ndim, "roll")[0]
            n = x.shape[d]
            k = int(shift) % n if n else 0
            if k:
                x = _tensor.cat([x.narrow(d, n - k, k), x.narrow(d, 0, n - k)], d)
        return x if x is not self else self.clone()

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims (j - i <= diagonal); zeros elsewhere.

        >>> ember.ones(2, 2).tril()
        tensor([[1., 0.],
                [1., 1.]])
        """
        return _triangle(self, diagonal, True, "tril")

    def triu(self, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two dims (j - i >= diagonal); zeros elsewhere."""
        return _triangle(self, diagonal, False, "triu")

    def permute(self, *dims) -> Tensor:
        dims = _shape_arg(dims)
        n = self._data.ndim
        # (each dim in [-n, n): 7 is not 3 of a 4-dim tensor)
        norm = tuple([d + n if d < 0 else d for d in dims])
        if len(norm) != n or sorted(norm) != list(range(n)):
            raise OpError("permute", f"dims {list(dims)} are not a permutation of the "
                          f"{n} dims of the input", (self,))
        return dispatch("permute", self, dims=norm)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        n = self._data.ndim
        if n == 0:
            return self
        if type(dim0) is int and type(dim1) is int and -n <= dim0 < n and -n <= dim1 < n:
            d0, d1 = dim0 % n, dim1 % n   # (the common case: no _dims)
        else:
            d0, d1 = (_dims(d, n, "transpose")[0] for d in (dim0, dim1))
        dims = list(range(n))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return dispatch("permute", self, dims=tuple(dims))

    swapaxes = transpose

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise OpError("t", f"expects a tensor with <= 2 dimensions, but self is {self.ndim}D",
                          (self,))
        return self.transpose(0, 1) if self.ndim == 2 else self.permute(tuple(range(self.ndim)))

    @property
    def T(self) -> Tensor:
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def unsqueeze(self, dim: int) -> Tensor:
        nd = self.ndim + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze: Dimension out of range (expected to be in range of "
                             f"[{-nd}, {nd - 1}], but got {dim})")
        dim %= nd
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        axes = _dims(dim, self.ndim, "squeeze")
        return self.reshape(tuple(s for i, s in enumerate(self.shape)
                                  if not (i in axes and s == 1)))

    def expand(self, *sizes) -> Tensor:
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise OpError("expand", f"the number of sizes provided ({len(sizes)}) must be greater "
                          f"or equal to the number of dimensions in the tensor ({self.ndim})", (self,))
        lead = len(sizes) - self.ndim
        shape = []
        for i, s in enumerate(sizes):
            cur = self.shape[i - lead] if i >= lead else None
            if s == -1:
                if cur is None:
                    raise OpError("expand", "-1 is not allowed in a leading, non-existing dimension",
                                  (self,))
                s = cur
            elif cur is not None and cur != 1 and cur != s:
                raise OpError("expand", f"the expanded size of the tensor ({s}) must match the "
                              f"existing size ({cur}) at non-singleton dimension {i}. Target sizes: "
                              f"{list(sizes)}", (self,))
            shape.append(s)
        return dispatch("expand", self, shape=tuple(shape))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def broadcast_to(self, shape) -> Tensor:
        return self.expand(shape)

    def stride(self, dim: int | None = None):
        """Steps in elements between neighbours along each dim (torch's ``stride()``).

        >>> ember.zeros(2, 3, 4, 5).to(memory_format=ember.channels_last).stride()
        (60, 1, 15, 3)
        """
        item = self._data.itemsize
        strides = tuple(s // item for s in self._data.strides)
        return strides if dim is None else strides[_dims(dim, self.ndim, "stride")[0]]

    def is_contiguous(self, memory_format=contiguous_format) -> bool:
        """Whether elements are stored densely in ``memory_format``'s order (dims of size
        1 do not count, as in torch)."""
        _check_format(memory_format, "is_contiguous", _FORMATS)
        order = _ORDER.get(memory_format)
        if order is None:
            return bool(self._data.flags.c_contiguous)
        if self.ndim != len(order):
            return False
        return _dense(self.shape, self.stride(), order)

    def contiguous(self, memory_format=contiguous_format) -> Tensor:
        """This tensor if dense in ``memory_format`` already, else a copy that is
        (``ember.channels_last``: stored N, H, W, C; values and gradients unchanged)."""
        _check_format(memory_format, "contiguous", _FORMATS)
        order = _ORDER.get(memory_format)
        if order is None:
            return self if self.is_contiguous() else dispatch("contiguous", self)
        _check_rank(self, memory_format, len(order))
        if self.is_contiguous(memory_format):
            return self
        back = [order.index(d) for d in range(len(order))]
        return dispatch("contiguous", self.permute(*order)).permute(*back)

    def _to_format(self, memory_format) -> Tensor:
        """``to(memory_format=...)``: as ``contiguous``, but, as torch, a channels-last
        result has exactly the strides of a fresh one (``contiguous`` accepts any
        strides that are dense, which differ only along dims of size 1)."""
        order = _ORDER.get(memory_format)
        if order is None:
            return self.contiguous(memory_format)
        _check_rank(self, memory_format, len(order))
        canonical, step = [0] * len(order), 1
        for d in reversed(order):
            canonical[d] = step
            step *= max(self.shape[d], 1)
        if self.stride() == tuple(canonical):
            return self
        back = [order.index(d) for d in range(len(order))]
        return dispatch("contiguous", self.permute(*order)).permute(*back)

    def clone(self, *, memory_format=preserve_format) -> Tensor:
        """A copy with its own memory: C-ordered, or in ``memory_format`` (preserve keeps
        a channels-last tensor channels-last, as torch)."""
        _check_format(memory_format, "clone", _FORMATS)
        if memory_format is preserve_format:
            for fmt, order in _ORDER.items():
                if self.ndim == len(order) and not self._data.flags.c_contiguous and \
                        self.is_contiguous(fmt):
                    memory_format = fmt
        order = _ORDER.get(memory_format)
        if order is None:
            return dispatch("contiguous", self)
        _check_rank(self, memory_format, len(order))
        back = [order.index(d) for d in range(len(order))]
        return dispatch("contiguous", self.permute(*order)).permute(*back)

    def repeat(self, *sizes) -> Tensor:
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise OpError("repeat", "Number of dimensions of repeat dims can not be smaller than "
                          "number of dimensions of tensor", (self,))
        if any(r < 0 for r in sizes):
            raise OpError("repeat", f"Trying to create tensor with negative dimension: "
                          f"{list(sizes)}", (self,))
        x = self.reshape((1,) * (len(sizes) - self.ndim) + tuple(self.shape))
        shape = x.shape
        x = x.reshape(tuple(v for s in shape for v in (1, s)))
        x = x.expand(tuple(v for r, s in zip(sizes, shape) for v in (r, s)))
        out = x.reshape(tuple(r * s for r, s in zip(sizes, shape)))
        # Memory of its own, as torch's: where the reshape could stay a view (repeats
        # over sizes of 1), writing the result wrote this tensor (fast_neural_style's
        # ``style.repeat(...)`` then ``div_``)
        return out if out._base is None else out.clone(memory_format=contiguous_format)

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
        """The diagonal of the dims ``dim1`` and ``dim2`` as the last dim: a view.

        >>> ember.arange(9).reshape(3, 3).diagonal()
        tensor([0, 4, 8])
        """
        d1, d2 = _dims(dim1, self.ndim, "diagonal")[0], _dims(dim2, self.ndim, "diagonal")[0]
        if d1 == d2:
            raise OpError("diagonal", f"diagonal dimensions cannot be identical {dim1}, {dim2}",
                          (self,))
        return dispatch("diagonal", self, offset=int(offset), dim1=d1, dim2=d2)

    def split(self, split_size, dim: int = 0) -> tuple[Tensor, ...]:
        d = _dims(dim, self.ndim, "split")[0]
        n = self.shape[d]
        sizes = ([split_size] * ((n + split_size - 1) // split_size) if isinstance(split_size, int)
                 else list(split_size))
        if isinstance(split_size, int) and n % split_size:
            sizes[-1] = n % split_size
        out, start = [], 0
        for s in sizes:
            out.append(self.narrow(d, start, s))
            start += s
        return _several_views(out, self, "Split")

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        n = self.shape[_dims(dim, self.ndim, "chunk")[0]]
        return self.split(builtins.max(1, -(-n // chunks)), dim)

    def tensor_split(self, indices_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
        """Views split at indices (a list) or into n nearly equal parts (an int: the first
        ``size % n`` parts get one more element).

        >>> [t.tolist() for t in ember.arange(5).tensor_split(2)]
        [[0, 1, 2], [3, 4]]
        """
        if self.ndim == 0:
            raise OpError("tensor_split", "tensor_split expected at least a 1-dimensional "
                          "tensor, but got a tensor with 0 dims", (self,))
        d = _dims(dim, self.ndim, "tensor_split")[0]
        n = self.shape[d]
        ios = indices_or_sections
        if isinstance(ios, _tensor.Tensor):
            if ios.dtype.is_floating_point or ios.ndim > 1:
                raise OpError("tensor_split", "tensor_split expected tensor_indices_or_sections "
                              "to be a zero-dimensional or one-dimensional tensor of dtype long",
                              (self, ios))
            ios = ios.tolist()
        if isinstance(ios, int):
            if ios <= 0:
                raise OpError("tensor_split", f"number of sections must be larger than 0, got "
                              f"{ios}", (self,))
            q, r = divmod(n, ios)
            bounds = [i * q + builtins.min(i, r) for i in range(ios + 1)]
        else:
            bounds = [0] + [builtins.min(builtins.max(int(i) if i >= 0 else int(i) + n, 0), n)
                            for i in ios] + [n]
        out = [self.narrow(d, a, builtins.max(b - a, 0)) for a, b in zip(bounds, bounds[1:])]
        return _several_views(out, self, "TensorSplit")

    def repeat_interleave(self, repeats, dim: int | None = None, *,
                          output_size: int | None = None) -> Tensor:
        """Each element repeated ``repeats`` times (an int, or a tensor of one count per
        element along ``dim``); over the flattened tensor when ``dim`` is None.

        >>> ember.tensor([1, 2]).repeat_interleave(2)
        tensor([1, 1, 2, 2])
        """
        x = self.flatten() if dim is None else self
        d = 0 if dim is None else _dims(dim, x.ndim, "repeat_interleave")[0]
        if isinstance(repeats, _tensor.Tensor) and repeats.numel() == 1 and repeats.ndim <= 1:
            repeats = int(repeats.reshape(()).item())
        if isinstance(repeats, int):
            if repeats < 0:
                raise OpError("repeat_interleave", "repeats can not be negative", (self,))
            if x.ndim == 0:
                x = x.reshape(1)
            shape = x.shape
            out = x.unsqueeze(d + 1).expand(shape[:d + 1] + (repeats,) + shape[d + 1:])
            return out.reshape(shape[:d] + (shape[d] * repeats,) + shape[d + 1:])
        if repeats.ndim != 1 or repeats.shape[0] != x.shape[d]:
            raise OpError("repeat_interleave", "repeats must have the same size as input along "
                          "dim", (self, repeats))
        return x.index_select(d, _interleave_index(repeats, x.device))

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        d = _dims(dim, self.ndim, "narrow")[0]
        key = (slice(None),) * d + (slice(start, start + length),)
        return self[key]

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        d = _dims(dim, self.ndim, "unbind")[0]
        return _several_views([self[(slice(None),) * d + (i,)] for i in range(self.shape[d])],
                              self, "Unbind")


def _view_strides(a, shape: tuple[int, ...]):
    """Element strides of ``a`` seen as ``shape`` without copying, or None where no view
    can (PyTorch's computeStride: dims merge only where their memory is contiguous)."""
    old = a.shape
    if a.size == 0 or not old:
        return (0,) * len(shape)
    item = a.itemsize
    strides = [st // item for st in a.strides]
    new = [0] * len(shape)
    view_d = len(shape) - 1
    chunk = strides[-1]
    tensor_n = view_n = 1
    for d in range(len(old) - 1, -1, -1):
        tensor_n *= old[d]
        if d == 0 or (old[d - 1] != 1 and strides[d - 1] != tensor_n * chunk):
            while view_d >= 0 and (view_n < tensor_n or shape[view_d] == 1):
                new[view_d] = view_n * chunk
                view_n *= shape[view_d]
                view_d -= 1
            if view_n != tensor_n:
                return None
            if d > 0:
                chunk = strides[d - 1]
                tensor_n = view_n = 1
    return tuple(new) if view_d == -1 else None


def _several_views(views: list[Tensor], src: Tensor, name: str) -> tuple[Tensor, ...]:
    """Outputs of split/chunk/unbind: as in PyTorch, autograd refuses to write into them."""
    for i, v in enumerate(views):
        if v is not src and v._base is not None:
            v._vmeta = (name, i)
    return tuple(views)


def _interleave_index(repeats, device):
    """i repeated repeats[i] times, for each i. The counts are read from the tensor (a
    compiled call splits its trace there: the output's size depends on them)."""
    if repeats.dtype.is_floating_point:
        raise OpError("repeat_interleave", "repeats has to be Long or Int tensor", (repeats,))
    counts = repeats.tolist()
    if any(c < 0 for c in counts):
        raise OpError("repeat_interleave", "repeats can not be negative", (repeats,))
    index = [i for i, c in enumerate(counts) for _ in range(c)]
    return _tensor.tensor(index, dtype=dtypes.int64, device=device)


def _triangle(x, diagonal: int, lower: bool, op: str):
    if x.ndim < 2:
        raise OpError(op, f"{op}: input tensor must have at least 2 dimensions", (x,))
    rows, cols = x.shape[-2], x.shape[-1]
    i = _tensor.arange(rows, device=x.device).reshape(rows, 1)
    j = _tensor.arange(cols, device=x.device)
    keep = (j - i <= diagonal) if lower else (j - i >= diagonal)
    return _tensor.where(keep, x, x.new_zeros(()))


_FORMATS = (contiguous_format, preserve_format, channels_last, channels_last_3d)
# the storage order of each channels-last format's dims, outermost first
_ORDER = {channels_last: (0, 2, 3, 1), channels_last_3d: (0, 2, 3, 4, 1)}


def _dense(shape, strides, order) -> bool:
    """torch's is-contiguous test for a storage order: innermost dim first, each dim of
    size > 1 steps over everything inside it."""
    expected = 1
    for d in reversed(order):
        if shape[d] != 1:
            if strides[d] != expected:
                return False
            expected *= shape[d]
    return True


def _check_rank(t, fmt, rank: int) -> None:
    if t.ndim != rank:
        raise RuntimeError(f"required rank {rank} tensor to use {fmt.name} format")


def _check_format(fmt, op: str, allowed: tuple) -> None:
    if not isinstance(fmt, memory_format):
        raise TypeError(f"{op}(): argument 'memory_format' must be ember.memory_format, not "
                        f"{type(fmt).__name__}")
    if fmt not in allowed:
        raise OpError(op, f"memory format {fmt} is not supported (ember keeps tensors C-ordered)")
