"""Tensor indexing and in-place writes: ``x[key]``, ``x[key] = v``, and every ``op_``
(``TensorIndex``, a base of ``Tensor``).

An in-place op computes out of place, then writes into the tensor's memory, so every
view sees it; with gradients recorded, the written tensor (or, through a view, its
base) gets the op's history, as PyTorch's CopySlices does.
"""
from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING

import numpy as np

from ember import autograd, dispatch as _dispatch_mod, dtypes
from ember import tensor as _tensor  # Tensor itself (this module is a base of it)
from ember.dispatch import constant, dispatch
from ember.errors import OpError, OpIndexError, shape_str
from ember.tensor_common import (STRUCTURE_VERSION, _dims, _replay, _view_rebase_message,
                                 values_indices)
from ember.tensor_create import _as_tensor_like, arange, full_like, rand_like, randn_like, tensor

if TYPE_CHECKING:
    from ember.tensor import Tensor


class TensorIndex:
    """Indexing and in-place methods of ``Tensor``."""

    __slots__ = ()

    # ---- indexing ---------------------------------------------------------------------
    def __getitem__(self, key) -> Tensor:
        canon, index_tensors = _canonical_key(self, key)
        if index_tensors:
            return dispatch("index", self, *index_tensors, key=canon)
        return dispatch("slice", self, key=canon)  # a view, even of everything (x[:])

    def __setitem__(self, key, value) -> None:
        canon, index_tensors = _canonical_key(self, key)
        value = _as_tensor_like(value, self)
        if value.device != self.device:
            raise OpError("setitem", f"value is on {value.device} but the tensor is on {self.device}",
                          (self, value))
        value = value.to(self.dtype)
        lead = 0
        while lead < value.ndim and value.shape[lead] == 1:
            lead += 1
        if lead:   # as torch, a value's leading 1s go (cleanrl writes a [1, n] into a row)
            value = value.reshape(tuple(value.shape[lead:]))
        if not index_tensors:  # as PyTorch: a copy into the view ``self[key]``
            target = dispatch("slice", self, key=canon)
            target._inplace(lambda src: _overwrite(src, value.expand(target.shape)), (value,),
                            "setitem", cast=True)
            return
        self._inplace(lambda src: dispatch("index_put", src, value, *index_tensors, key=canon,
                                           accumulate=False), (value,), "setitem", cast=True)

    # ---- in-place ---------------------------------------------------------------------
    def _inplace(self, compute, others=(), op: str = "inplace", cast: bool = False,
                 overlap_ok: bool = False) -> Tensor:
        """Compute out of place, then write into this tensor's memory (views see it).

        With gradients recorded, this tensor's history becomes the op's. Written through a
        view, the base's history becomes a CopySlices node (PyTorch's): the base's
        gradient passes through outside the view, and inside it goes to the op's inputs.
        """
        grad = autograd._state.__dict__.get("grad", True)
        base = self._base
        if base is not None and grad and self._vver != self._vc[0]:
            self._sync_view()
        track = grad and (self._rg or any(isinstance(o, _tensor.Tensor) and o.requires_grad
                                          for o in others))
        if track:
            if base is not None:
                _check_view_write(self, base, op)
            elif self._node is None and self._rg:
                raise RuntimeError(f"{op}: a leaf Variable that requires grad is being used in an "
                                   "in-place operation.")
        data = self._data
        if not overlap_ok and not data.flags.c_contiguous and any(st == 0 and n > 1 for st, n in
                                               zip(data.strides, data.shape)):
            raise OpError(op, "unsupported operation: more than one element of the written-to "
                          "tensor refers to a single memory location. Please clone() the tensor "
                          "before performing the operation.", (self,))
        src = self
        if track:  # the graph must see the old value, which is about to be overwritten
            src = self._wrap(data.copy(), self._rg)
            src._node = self._node
            if _dispatch_mod.tracer is not None:
                _dispatch_mod.tracer.alias(src, self)
        result = compute(src)
        if result.shape != self.shape:
            raise OpError(op, f"output with shape {shape_str(self)} doesn't match the broadcast "
                          f"shape {shape_str(result)}", (self,))
        if not cast and result.dtype.category > self.dtype.category:
            raise OpError(op, f"result type {result.dtype.name} can't be cast to the desired output "
                          f"type {self.dtype.name}", (self,))
        try:
            data[...] = result._data
        except ValueError as e:  # read-only memory (a NumPy array made read-only, say)
            raise OpError(op, f"cannot write into this tensor: {e}", (self,)) from None
        self._vc[0] += 1  # every view of this storage, and every node saving one, sees it
        if track:
            if base is not None:
                _rebase_history(self, base, result)
            else:
                if result._node is None:  # overwritten by a constant: its gradient is zero
                    result = dispatch("where", constant(False, dtypes.bool_, self._device),
                                      src, result)
                self._node = result._node
                if not self._rg:   # compiled calls check requires_grad when this moves
                    STRUCTURE_VERSION[0] += 1
                self._rg = True
        if _dispatch_mod.tracer is not None:
            _dispatch_mod.tracer.mutate(self, result)
        return self

    def add_(self, o, alpha=1):
        return self._inplace(lambda s: s.add(o, alpha), (o,), "add_")

    def sub_(self, o, alpha=1):
        return self._inplace(lambda s: s.sub(o, alpha), (o,), "sub_")

    def mul_(self, o):
        return self._inplace(lambda s: s * o, (o,), "mul_")

    def div_(self, o, *, rounding_mode: str | None = None):
        return self._inplace(lambda s: s.div(o, rounding_mode=rounding_mode), (o,), "div_")

    def pow_(self, o):
        return self._inplace(lambda s: s ** o, (o,), "pow_")

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda s: s.clamp(min, max), (), "clamp_")

    def relu_(self):
        return self._inplace(lambda s: s.relu(), (), "relu_")

    def addcmul_(self, t1, t2, value=1):
        return self._inplace(lambda s: s + t1 * t2 * value, (t1, t2), "addcmul_")

    def addcdiv_(self, t1, t2, value=1):
        return self._inplace(lambda s: s + t1 / t2 * value, (t1, t2), "addcdiv_")

    def lerp_(self, end, weight):
        return self._inplace(lambda s: s + (end - s) * weight, (end,), "lerp_")

    def copy_(self, src: Tensor):
        src = _as_tensor_like(src, self)
        return self._inplace(lambda s: _overwrite(s, src.to(self.dtype).to(self.device)
                                                  .expand(self.shape)), (src,), "copy_", cast=True)

    def masked_fill_(self, mask: Tensor, value):
        return self._inplace(lambda s: s.masked_fill(mask, value), (value,), "masked_fill_")

    def fill_(self, value):
        # One value everywhere: PyTorch allows it where elements share memory (expand).
        return self._inplace(lambda s: full_like(s, value), (), "fill_", cast=True,
                             overlap_ok=True)

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None):
        return self._inplace(lambda s: rand_like(s, generator=generator) * (b - a) + a, (),
                             "uniform_", cast=True)

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None):
        return self._inplace(lambda s: randn_like(s, generator=generator) * std + mean, (),
                             "normal_", cast=True)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def tril_(self, diagonal: int = 0):
        return self._inplace(lambda s: s.tril(diagonal), (), "tril_")

    def triu_(self, diagonal: int = 0):
        return self._inplace(lambda s: s.triu(diagonal), (), "triu_")

    def bitwise_and_(self, other):
        return self._inplace(lambda s: s & other, (other,), "bitwise_and_")

    def bitwise_or_(self, other):
        return self._inplace(lambda s: s | other, (other,), "bitwise_or_")

    def bitwise_xor_(self, other):
        return self._inplace(lambda s: s ^ other, (other,), "bitwise_xor_")

    def bitwise_left_shift_(self, other):
        return self._inplace(lambda s: s << other, (other,), "bitwise_left_shift_")

    def bitwise_right_shift_(self, other):
        return self._inplace(lambda s: s >> other, (other,), "bitwise_right_shift_")

    __ilshift__ = bitwise_left_shift_
    __irshift__ = bitwise_right_shift_
    __iand__ = bitwise_and_
    __ior__ = bitwise_or_
    __ixor__ = bitwise_xor_

    def addmm_(self, mat1, mat2, *, beta=1, alpha=1):
        return self._inplace(lambda s: s.addmm(mat1, mat2, beta=beta, alpha=alpha), (mat1, mat2),
                             "addmm_")

    def baddbmm_(self, batch1, batch2, *, beta=1, alpha=1):
        return self._inplace(lambda s: s.baddbmm(batch1, batch2, beta=beta, alpha=alpha),
                             (batch1, batch2), "baddbmm_")

    def scatter_(self, dim: int, index, src=None, *, value=None, reduce=None):
        return self._inplace(lambda s: s.scatter(dim, index, src, value=value, reduce=reduce),
                             (src,), "scatter_")

    def scatter_add_(self, dim: int, index, src):
        return self._inplace(lambda s: s.scatter_add(dim, index, src), (src,), "scatter_add_")

    # ---- sorting and gathering along a dim --------------------------------------------
    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """(values, indices) sorted along ``dim``; ties keep their order, NaN sorts as
        the largest value.

        >>> ember.tensor([3, 1, 2]).sort()
        values_indices(values=tensor([1, 2, 3]), indices=tensor([1, 2, 0]))
        """
        d = _dims(dim, self.ndim, "sort")
        d = d[0] if d else 0
        idx = dispatch("argsort", self, dim=d, descending=bool(descending))
        return values_indices(self.gather(d, idx) if self.ndim else self.clone(), idx)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        d = _dims(dim, self.ndim, "argsort")
        return dispatch("argsort", self, dim=d[0] if d else 0, descending=bool(descending))

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """(values, indices) of the ``k`` largest (or smallest) elements along ``dim``.

        >>> ember.tensor([1., 5., 3.]).topk(2).values
        tensor([5., 3.])
        """
        d = _dims(dim, self.ndim, "topk")
        d = d[0] if d else 0
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise OpError("topk", "selected index k out of range", (self,))
        idx = dispatch("argsort", self, dim=d, descending=bool(largest))
        if self.ndim == 0:
            return values_indices(self.clone(), idx)
        idx = idx.narrow(d, 0, k).contiguous()
        return values_indices(self.gather(d, idx), idx)

    def gather(self, dim: int, index, *, sparse_grad: bool = False) -> Tensor:
        """``out[i][j] = self[index[i][j]][j]`` for dim 0 (and likewise for others).

        >>> ember.tensor([[1, 2], [3, 4]]).gather(1, ember.tensor([[1], [0]]))
        tensor([[2],
                [3]])
        """
        _check_index_tensor(self, index, "gather")
        d = _dims(dim, self.ndim, "gather")
        return dispatch("gather", self, index, dim=d[0] if d else 0)

    def scatter(self, dim: int, index, src=None, *, value=None, reduce=None) -> Tensor:
        """A copy with ``src`` (or ``value``) written at ``index`` along ``dim``: the
        inverse of gather (``reduce="add"`` adds instead)."""
        if reduce not in (None, "add"):
            raise NotImplementedError(f"scatter(reduce={reduce!r}) is not supported; only "
                                      "'add' (or use scatter_add)")
        if src is None and value is None:
            raise TypeError("scatter() missing 1 required argument: 'src' or 'value'")
        _check_index_tensor(self, index, "scatter")
        if not isinstance(src, _tensor.Tensor):
            v = value if src is None else src
            src = _tensor.full(index.shape, v, dtype=self.dtype, device=self.device)
        elif src.dtype is not self.dtype:
            raise OpError("scatter", f"scatter(): Expected self.dtype to be equal to src.dtype",
                          (self, src))
        d = _dims(dim, self.ndim, "scatter")
        return dispatch("scatter", self, index, src, dim=d[0] if d else 0,
                        accumulate=reduce == "add")

    def scatter_add(self, dim: int, index, src) -> Tensor:
        """A copy with ``src`` added at ``index`` along ``dim`` (repeated indices add up)."""
        return self.scatter(dim, index, src, reduce="add")

    def index_select(self, dim: int, index) -> Tensor:
        """The entries of ``index`` (a vector) along ``dim``.

        >>> ember.tensor([[1, 2], [3, 4]]).index_select(0, ember.tensor([1]))
        tensor([[3, 4]])
        """
        if not isinstance(index, _tensor.Tensor):
            raise TypeError("index_select(): argument 'index' must be Tensor, not "
                            f"{type(index).__name__}")
        if index.dtype not in (dtypes.int64, dtypes.int32):
            raise OpError("index_select", "index_select(): Expected dtype int32/int64 for index",
                          (self, index))
        if index.ndim > 1:
            raise OpIndexError("index_select", "index_select(): Index is supposed to be a "
                               "vector", (self, index))
        d = _dims(dim, self.ndim, "index_select")
        d = d[0] if d else 0
        x = self.reshape(1) if self.ndim == 0 else self
        dispatch("check_index", index, bound=x.shape[d], name="index_select",
                 message="index out of range in self")
        out = x[(slice(None),) * d + (index.reshape(-1),)]
        return out.reshape(()) if self.ndim == 0 else out

    def masked_select(self, mask) -> Tensor:
        """The elements where ``mask`` (broadcast with this tensor) holds, as a vector.
        Its length depends on the values: a compiled call runs it eagerly."""
        if not isinstance(mask, _tensor.Tensor) or mask.dtype is not dtypes.bool_:
            raise OpError("masked_select", "masked_select: expected BoolTensor for mask",
                          (self,))
        shape = _tensor.broadcast_shapes(self.shape, mask.shape)
        return self.expand(shape)[mask.expand(shape)]

    def nonzero(self, *, as_tuple: bool = False):
        """Indices of the nonzero elements, one row each (or one vector per dim with
        ``as_tuple``). Its size depends on the values: a compiled call runs it eagerly.

        >>> ember.tensor([0, 3, 0, 4]).nonzero()
        tensor([[1],
                [3]])
        """
        if as_tuple:
            x = self.reshape(1) if self.ndim == 0 else self
            nz = dispatch("nonzero", x)
            return tuple(nz[:, i] for i in range(x.ndim))
        return dispatch("nonzero", self)

    def argwhere(self) -> Tensor:
        return self.nonzero()

# In-place forms of methods (``x.sin_()`` writes ``x.sin()`` into x), as PyTorch names them.
# As there, a result of a higher kind than the tensor (``int_tensor.sin_()``) raises.
_INPLACE_FORMS = """exp log sqrt rsqrt abs neg sign sin cos tanh sigmoid erf floor ceil trunc round
log1p expm1 square reciprocal remainder fmod floor_divide cumsum cumprod bitwise_not
logical_not logical_and logical_or logical_xor clip nan_to_num""".split()


def _inplace_form(name: str):
    def method(self, *args, **kwargs):
        return self._inplace(lambda s: getattr(s, name)(*args, **kwargs), args, name + "_")
    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"``x.{name}_(...)`` writes ``x.{name}(...)`` into x."
    return method


for _name in _INPLACE_FORMS:
    setattr(TensorIndex, _name + "_", _inplace_form(_name))


def _overwrite(old: Tensor, new: Tensor) -> Tensor:
    """``new``, but linked to ``old``'s history with a zero gradient, as PyTorch's copy_
    is: backward then still visits (and checks the saved tensors of) the old history."""
    if old._node is None or not autograd._state.__dict__.get("grad", True):
        return new
    return dispatch("where", constant(False, dtypes.bool_, old._device), old, new)


def _check_view_write(view: Tensor, base: Tensor, op: str) -> None:
    """Refuse what PyTorch refuses: writes autograd could not track through a view."""
    if base._node is None and base._rg:
        raise RuntimeError(f"{op}: a view of a leaf Variable that requires grad is being used in "
                           "an in-place operation.")
    meta = view._vmeta
    if meta is not None:
        raise RuntimeError(f"{op}: " + _view_rebase_message(meta, "is being modified inplace"))


class _CopySlices:
    """The autograd op of a base written in place through one of its views.

    Inputs: the base before the write (only its history is used) and the value written
    into the view. The base's gradient passes through outside the view; inside, it is the
    written value's gradient (PyTorch's CopySlices)."""

    name = "CopySlices"
    saves_out = False

    @staticmethod
    def saves_input(i: int) -> bool:
        return False  # only shapes and histories are used, never values

    @staticmethod
    def vjp(g, out, old, written, view, shape):
        g_old = g_written = None
        if old._rg:
            n = math.prod(shape)
            where = _replay(arange(n, device=g.device).reshape(shape), view).reshape(-1)
            g_old = dispatch("index_put", g.reshape(-1), g.new_zeros(()), where, key=("t0",),
                             accumulate=False).reshape(shape)
        if written._rg:
            g_written = _replay(g, view)
        return g_old, g_written


_COPY_SLICES = _CopySlices()


def _rebase_history(view: Tensor, base: Tensor, written: Tensor) -> None:
    """After ``view`` was overwritten with ``written``: the base's history is a CopySlices
    node, and the view's history is the view of it."""
    old = _tensor.Tensor._wrap(base._data, base._rg)
    old._node = base._node
    saved = _tensor.Tensor._wrap(base._data, False)
    saved._vc = base._vc
    base._node = autograd.Node(_COPY_SLICES, (old, written),
                               {"view": view._view, "shape": tuple(base._data.shape)}, saved)
    if not base._rg:
        STRUCTURE_VERSION[0] += 1   # (see _inplace)
    base._rg = True
    view._sync_view()


def _canonical_key(x: Tensor, key) -> tuple[tuple, list[Tensor]]:
    """Normalize an indexing key against x's shape; index tensors become "tK" slots."""
    if not isinstance(key, tuple):
        key = (key,)
    tensors: list[Tensor] = []
    items = []
    for k in key:
        if isinstance(k, (list, range, np.ndarray)) or hasattr(k, "__cuda_array_interface__"):
            k = tensor(k, device=x.device)
        if isinstance(k, _tensor.Tensor) and k.ndim == 0 and k.dtype.category == 1:
            k = int(k.item())
        items.append(k)
    consumed = sum(1 if isinstance(k, (int, slice)) or (isinstance(k, _tensor.Tensor) and k.dtype is not dtypes.bool_)
                   else (k.ndim if isinstance(k, _tensor.Tensor) else 0) for k in items if k is not Ellipsis)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim} (got {consumed})")
    canon = []
    dim = 0
    for k in items:
        if k is Ellipsis:
            for _ in range(x.ndim - consumed):
                canon.append((0, x.shape[dim], 1))
                dim += 1
            consumed = x.ndim  # a second Ellipsis expands to nothing
        elif k is None:
            canon.append(None)
        elif isinstance(k, bool):
            raise IndexError("indexing with a Python bool is not supported")
        elif isinstance(k, int):
            n = x.shape[dim]
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size {n}")
            canon.append(k % n)
            dim += 1
        elif isinstance(k, slice):
            start, stop, step = k.indices(x.shape[dim])
            if step <= 0:
                raise ValueError("step must be greater than zero")
            canon.append((start, builtins.max(start, stop), step))
            dim += 1
        elif isinstance(k, _tensor.Tensor):
            if k.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            if k.device != x.device:
                raise OpError("index", f"indices are on {k.device} but the tensor is on {x.device}",
                              (x, k))
            canon.append(f"t{len(tensors)}")
            tensors.append(k)
            dim += k.ndim if k.dtype is dtypes.bool_ else 1
        else:
            raise IndexError(f"unsupported index type {type(k).__name__}")
    return tuple(canon), tensors


def _check_index_tensor(x, index, op: str) -> None:
    if not isinstance(index, _tensor.Tensor):
        raise TypeError(f"{op}(): argument 'index' must be Tensor, not {type(index).__name__}")
    if index.dtype is not dtypes.int64:
        raise OpError(op, f"{op}(): Expected dtype int64 for index", (x, index))
