"""Tensor methods that change shape or layout, never values: reshape, view, permute,
expand, split and friends (``TensorShape``, a base of ``Tensor``). Most return views."""
from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING

from ember.dispatch import dispatch
from ember.dtypes import DType
from ember.errors import OpError
from ember.tensor_common import _dims, _shape_arg

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
        d = _dims(dim, self.ndim, "unflatten")[0]
        return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1:])

    def permute(self, *dims) -> Tensor:
        dims = _shape_arg(dims)
        if len(dims) != self.ndim or sorted(d % builtins.max(self.ndim, 1) for d in dims) != list(range(self.ndim)):
            raise OpError("permute", f"dims {list(dims)} are not a permutation of the "
                          f"{self.ndim} dims of the input", (self,))
        dims = tuple(d % self.ndim for d in dims)
        return dispatch("permute", self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        if self.ndim < 2 and self.ndim == 0:
            return self
        d0, d1 = (_dims(d, self.ndim, "transpose")[0] for d in (dim0, dim1))
        dims = list(range(self.ndim))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.permute(dims)

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

    def contiguous(self) -> Tensor:
        return self if self.is_contiguous() else dispatch("contiguous", self)

    def clone(self) -> Tensor:
        return dispatch("contiguous", self)

    def repeat(self, *sizes) -> Tensor:
        sizes = _shape_arg(sizes)
        x = self.reshape((1,) * (len(sizes) - self.ndim) + tuple(self.shape))
        shape = x.shape
        x = x.reshape(tuple(v for s in shape for v in (1, s)))
        x = x.expand(tuple(v for r, s in zip(sizes, shape) for v in (r, s)))
        return x.reshape(tuple(r * s for r, s in zip(sizes, shape)))

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
