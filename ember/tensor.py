"""Tensor: PyTorch's tensor API over a NumPy or CuPy array.

Primitive ops go through ``dispatch``; everything else here (mean, var, softmax,
clamp, min, ...) is composed from primitives, so autograd and tracing get it for free.
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Any, Iterable

import numpy as np

from ember import autograd, dispatch as _dispatch_mod, dtypes
from ember.amp import state as _amp
from ember.dispatch import constant, dispatch
from ember.dtypes import DType
from ember.errors import OpError, shape_str
from ember.runtime.device import CPU, Device, array_module, as_device, device_of_array

_NP = np.ndarray
values_indices = namedtuple("values_indices", ["values", "indices"])


class Size(tuple):
    """The shape of a tensor: a tuple that prints as ``ember.Size([2, 3])``."""

    def __repr__(self) -> str:
        return f"ember.Size({list(self)})"

    def numel(self) -> int:
        return math.prod(self)


def _dims(dim, ndim: int, op: str) -> tuple[int, ...]:
    """Normalize a dim argument (int, tuple or None = all) to sorted non-negative ints."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    out = []
    for d in dim:
        nd = builtins.max(ndim, 1)
        if not -nd <= d < nd:
            raise IndexError(f"{op}: Dimension out of range (expected to be in range of "
                             f"[{-nd}, {nd - 1}], but got {d})")
        out.append(d % nd if ndim else 0)
    return tuple(sorted(set(out))) if ndim else ()


def _shape_arg(shape) -> tuple[int, ...]:
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


class Tensor:
    """A multi-dimensional array with autograd, on the CPU (NumPy) or CUDA (CuPy).

    >>> x = ember.tensor([2., 3.], requires_grad=True)
    >>> (x ** 2).sum().backward(); x.grad
    tensor([4., 6.])
    """

    # Storage model, as PyTorch's: a view (``_base`` is not None) shares its base's memory
    # and version counter ``_vc`` (a one-element list, so every view bumps the same
    # count). ``_view`` is how the view was made from its base, as (OpDef, attrs) steps:
    # replayed on the base to give the view a new history after the base was written in
    # place. ``_vver`` is the version at which the view's history was last made, and
    # ``_vmeta`` says how it was made (None, "no_grad", or (function, output index) for
    # functions returning several views). The last three are set only on views.
    __slots__ = ("_data", "_rg", "_grad", "_node", "_vc", "_base", "_view", "_vver", "_vmeta",
                 "_retains_grad", "_device", "_xp", "__weakref__")
    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data: Any = (), dtype=None, device=None, requires_grad: bool = False) -> None:
        t = tensor(data, dtype=dtype or dtypes.get_default_dtype(), device=device)
        Tensor._init(self, t._data, requires_grad)

    # ---- construction -----------------------------------------------------------------
    @staticmethod
    def _init(t: Tensor, data, requires_grad: bool) -> None:
        t._data = data
        t._rg = requires_grad
        t._grad = None
        t._node = None
        t._vc = [0]
        t._base = None
        t._retains_grad = False
        if type(data) is _NP:
            t._device, t._xp = CPU, np
        else:
            t._device = device_of_array(data)
            t._xp = array_module(t._device)

    @staticmethod
    def _wrap(data, requires_grad: bool = False) -> Tensor:
        t = object.__new__(Tensor)
        Tensor._init(t, data, requires_grad)
        return t

    def _view_of(self, src: Tensor, op, attrs: dict) -> None:
        """Called by dispatch on the result of a view op: it becomes a view of ``src``'s base."""
        if op.name == "reshape" and not _aliases(self._data, src._data):
            return  # NumPy had to copy (torch's reshape copies there too)
        base = src._base
        grad = autograd._state.__dict__.get("grad", True)
        if base is None:
            self._base, self._view = src, ((op, attrs),)
            self._vmeta = None if grad else "no_grad"
        else:
            self._base, self._view = base, src._view + ((op, attrs),)
            meta = src._vmeta
            self._vmeta = meta if meta is not None or grad else "no_grad"
        self._vc = src._vc
        self._vver = src._vc[0]

    def _sync_view(self) -> None:
        """The storage was written in place since this view's history was made: make it
        again, as the view of the base's current history (PyTorch regenerates it too)."""
        base = self._base
        version = self._vc[0]
        if base._rg and self._vmeta is not None:
            # Its base's history may have been rewritten, and PyTorch will not make a new
            # history for these views (see _check_view_write).
            raise RuntimeError(_view_rebase_message(self._vmeta, "its base or another view of "
                                                    "its base has been modified inplace"))
        if base._rg and self._vmeta is None:
            with autograd.enable_grad():
                r = _replay(base, self._view)
            self._node, self._rg = r._node, True
        self._vver = version

    def _is_view(self) -> bool:
        return self._base is not None

    @property
    def _version(self) -> int:
        """How many times this tensor's storage was written in place (through any view)."""
        return self._vc[0]

    @_version.setter
    def _version(self, value: int) -> None:
        self._vc[0] = value

    @property
    def requires_grad(self) -> bool:
        base = self._base
        if base is None:
            return self._rg
        if self._vver != self._vc[0] and self._vmeta is None:
            self._sync_view()
        return self._rg or base._rg  # PyTorch's rule for views

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self._rg = value

    def _fresh_copy(self) -> Tensor:
        t = Tensor._wrap(self._data.copy(), False)
        if _dispatch_mod.tracer is not None:  # same value: a compiled call must know it
            _dispatch_mod.tracer.alias(t, self)
        return t

    # ``.grad`` is a property so that a compiled function sees which gradients it read and
    # assigned (``loss.backward()`` and ``zero_grad()`` inside ``@ember.compile``).
    @property
    def grad(self) -> Tensor | None:
        g = self._grad
        if g is not None and _dispatch_mod.tracer is not None:
            _dispatch_mod.tracer.read_grad(self, g)
        return g

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if _dispatch_mod.tracer is not None:
            _dispatch_mod.tracer.set_grad(self, value)
        self._grad = value

    # ---- metadata ---------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_dims(dim, self.ndim, "size")[0]]

    @property
    def dtype(self) -> DType:
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> Device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    def element_size(self) -> int:
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_complex(self) -> bool:
        return self.dtype.is_complex

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    @property
    def grad_fn(self):
        if self._base is not None and self._vver != self._vc[0]:
            self._sync_view()
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def data(self) -> Tensor:
        """The same memory, cut off from autograd, with a version counter of its own: as in
        PyTorch, writes through ``.data`` are hidden from autograd's checks."""
        t = Tensor._wrap(self._data, False)
        if _dispatch_mod.tracer is not None:   # no gradient through it, compiled too
            _dispatch_mod.tracer.detach(t, self)
        return t

    @data.setter
    def data(self, other: Tensor) -> None:
        tracer = _dispatch_mod.tracer
        if tracer is not None:  # the trace must know t with its old memory to replay this
            hook = getattr(tracer, "set_data", None)
            if hook is not None:
                hook(self, other)
        self._data = other._data
        # .data may move the tensor (Module.to): device and array module must follow.
        self._device, self._xp = other._device, other._xp
        self._base = None  # it no longer views its old base's memory
        self._version += 1

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    __hash__ = object.__hash__

    def __deepcopy__(self, memo) -> Tensor:
        # The default protocol would try to copy the array module held in _xp.
        if self._node is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) "
                               "support the deepcopy protocol at the moment.")
        t = object.__new__(type(self))
        memo[id(self)] = t
        Tensor._init(t, self._data.copy(), self.requires_grad)
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        return t

    def __repr__(self) -> str:
        a = self._host()
        if a.dtype.kind == "V":   # bfloat16: NumPy formats it like a float32
            a = a.astype(np.float32)
        body = np.array2string(a, separator=", ", prefix="tensor(",
                               precision=4, floatmode="maxprec_equal")
        extra = []
        if a.size == 0 or self.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_,
                                             dtypes.get_default_dtype().to_complex()):
            extra.append(f"dtype={self.dtype!r}")
        if self._device.type != "cpu":
            extra.append(f"device='{self._device}'")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name()}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        if a.size == 0:
            body = "[]"
        return "tensor(" + ", ".join([body] + extra) + ")"

    # ---- conversion -------------------------------------------------------------------
    def _host(self) -> np.ndarray:
        return self._data if self._xp is np else self._data.get()

    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if self._xp is not np:
            raise TypeError("can't convert cuda tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        _observe(self, "numpy")
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self.detach().cpu()._data
        return a.astype(dtype) if dtype is not None else a

    def item(self) -> int | float | bool:
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               "to Scalar")
        _observe(self, "item")
        return self._host().reshape(()).item()

    def tolist(self):
        _observe(self, "tolist")
        return self._host().tolist()

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        _observe(self, "bool")
        return bool(self._host().reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def to(self, *args, dtype=None, device=None, copy: bool = False, non_blocking: bool = False) -> Tensor:
        """``t.to("cuda")``, ``t.to(ember.float64)``, ``t.to(other)``, ``t.to("cpu", ember.int64)``."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (DType, type)) or (isinstance(a, str) and
                                                  a.replace("ember.", "") in dtypes._BY_NAME):
                dtype = dtypes.as_dtype(a)
            else:
                device = as_device(a)
        out = self
        if device is not None and as_device(device) != self._device:
            out = dispatch("to_device", out, device=as_device(device))
        if dtype is not None and dtypes.as_dtype(dtype) is not out.dtype:
            out = dispatch("cast", out, dtype=dtypes.as_dtype(dtype))
        if copy and out is self:
            out = self.clone()
        return out

    def cuda(self, device=None) -> Tensor:
        return self.to(Device("cuda", device if isinstance(device, int) else 0))

    def cpu(self) -> Tensor:
        return self.to(CPU)

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtypes.bool_)

    def half(self) -> Tensor:
        return self.to(dtypes.float16)

    def bfloat16(self) -> Tensor:
        return self.to(dtypes.bfloat16)

    def byte(self) -> Tensor:
        return self.to(dtypes.uint8)

    def char(self) -> Tensor:
        return self.to(dtypes.int8)

    def short(self) -> Tensor:
        return self.to(dtypes.int16)

    def cfloat(self) -> Tensor:
        return self.to(dtypes.complex64)

    def cdouble(self) -> Tensor:
        return self.to(dtypes.complex128)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    # ---- autograd ---------------------------------------------------------------------
    def detach(self) -> Tensor:
        """A tensor sharing this one's data and version counter, cut off from the autograd
        graph (so autograd still sees in-place writes through it)."""
        t = Tensor._wrap(self._data, False)
        t._vc = self._vc
        if _dispatch_mod.tracer is not None:
            _dispatch_mod.tracer.detach(t, self)
        return t

    def detach_(self) -> Tensor:
        if self._base is not None:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        if _dispatch_mod.tracer is not None:
            _dispatch_mod.tracer.detach(self, self)
        self._node = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not (self.is_floating_point()):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if not requires_grad and self._node is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables.")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        self._retains_grad = self._node is not None

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Accumulate gradients of this tensor into the ``.grad`` of the leaves."""
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            gradient = ones_like(self)
        elif not isinstance(gradient, Tensor):
            gradient = tensor(gradient, dtype=self.dtype, device=self.device)
        if gradient.shape != self.shape:
            raise OpError("backward", f"gradient of shape {shape_str(gradient)} does not match "
                          f"the tensor's shape {shape_str(self)}", (self, gradient))
        autograd.backward(self, gradient.to(self.dtype),
                          retain_graph=create_graph if retain_graph is None else retain_graph,
                          create_graph=create_graph)

    # ---- arithmetic (elementwise primitives) ------------------------------------------
    def __add__(self, o):
        return dispatch("add", self, o)

    def __radd__(self, o):
        return dispatch("add", o, self)

    def __sub__(self, o):
        return dispatch("sub", self, o)

    def __rsub__(self, o):
        return dispatch("sub", o, self)

    def __mul__(self, o):
        return dispatch("mul", self, o)

    def __rmul__(self, o):
        return dispatch("mul", o, self)

    def __truediv__(self, o):
        return dispatch("div", self, o)

    def __rtruediv__(self, o):
        return dispatch("div", o, self)

    def __pow__(self, o):
        return dispatch("pow", self, o)

    def __rpow__(self, o):
        return dispatch("pow", o, self)

    def __floordiv__(self, o):
        return dispatch("floor_divide", self, o)

    def __rfloordiv__(self, o):
        return dispatch("floor_divide", o, self)

    def __mod__(self, o):
        return dispatch("remainder", self, o)

    def __rmod__(self, o):
        return dispatch("remainder", o, self)

    def __matmul__(self, o):
        return self.matmul(o)

    def __rmatmul__(self, o):
        return _as_tensor_like(o, self).matmul(self)

    def __neg__(self):
        return dispatch("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return dispatch("abs", self)

    def __lt__(self, o):
        return dispatch("lt", self, o)

    def __le__(self, o):
        return dispatch("le", self, o)

    def __gt__(self, o):
        return dispatch("gt", self, o)

    def __ge__(self, o):
        return dispatch("ge", self, o)

    def __eq__(self, o):  # type: ignore[override]
        return dispatch("eq", self, o)

    def __ne__(self, o):  # type: ignore[override]
        return dispatch("ne", self, o)

    def __and__(self, o):
        return dispatch("logical_and", self, o)

    def __or__(self, o):
        return dispatch("logical_or", self, o)

    def __invert__(self):
        if self.dtype is not dtypes.bool_:
            raise OpError("invert", "only bool tensors are supported", (self,))
        return dispatch("logical_not", self)

    def add(self, o, alpha=1):
        return self + (o * alpha if alpha != 1 else o)

    def sub(self, o, alpha=1):
        return self - (o * alpha if alpha != 1 else o)

    def mul(self, o):
        return self * o

    def div(self, o):
        return self / o

    def pow(self, o):
        return self ** o

    def neg(self):
        return -self

    def floor_divide(self, o):
        return self // o

    def remainder(self, o):
        return self % o

    def fmod(self, o):
        """Remainder with the dividend's sign (C's fmod), unlike ``%``."""
        r = self % o
        return where((r != 0) & ((r < 0) != (self < 0)), r - o, r)

    def floor(self):
        return dispatch("floor", self)

    def ceil(self):
        return -dispatch("floor", -self)

    def trunc(self):
        return where(self < 0, self.ceil(), self.floor())

    def exp(self):
        return dispatch("exp", self)

    def log(self):
        return dispatch("log", self)

    def sqrt(self):
        return dispatch("sqrt", self)

    def rsqrt(self):
        return 1 / dispatch("sqrt", self)

    def abs(self):
        return dispatch("abs", self)

    def sign(self):
        return dispatch("sign", self)

    def sin(self):
        return dispatch("sin", self)

    def cos(self):
        return dispatch("cos", self)

    def tanh(self):
        return dispatch("tanh", self)

    def sigmoid(self):
        return dispatch("sigmoid", self)

    def erf(self):
        return dispatch("erf", self)

    def relu(self):
        return dispatch("relu", self)

    def square(self):
        return self * self

    def reciprocal(self):
        return 1 / self

    def log1p(self):
        return (self + 1).log()

    def maximum(self, o):
        return dispatch("maximum", self, o)

    def minimum(self, o):
        return dispatch("minimum", self, o)

    def lt(self, o):
        return self < o

    def le(self, o):
        return self <= o

    def gt(self, o):
        return self > o

    def ge(self, o):
        return self >= o

    def eq(self, o):
        return self == o

    def ne(self, o):
        return self != o

    def logical_not(self):
        return dispatch("logical_not", self)

    def clamp(self, min=None, max=None) -> Tensor:
        """Limit values to [min, max]; the gradient passes where min <= x <= max."""
        if min is None and max is None:
            raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
        out = self
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out

    clip = clamp

    def where(self, condition: Tensor, other) -> Tensor:
        """PyTorch's ``x.where(cond, y)``: x where cond holds, else y."""
        return where(condition, self, other)

    def masked_fill(self, mask: Tensor, value) -> Tensor:
        return where(mask, _as_tensor_like(value, self).to(self.dtype), self)

    # ---- reductions -------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        x = self
        if dtype is not None:
            x = x.to(dtype)
        elif x.dtype.category < 2:  # PyTorch sums integers and bools as int64
            x = x.to(dtypes.int64)
        return dispatch("sum", x, axes=_dims(dim, x.ndim, "sum"), keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if x.dtype.category < 2:
            raise OpError("mean", "could not infer output dtype. Input dtype must be either a "
                          f"floating point or complex dtype. Got: {x.dtype.name}", (x,))
        axes = _dims(dim, x.ndim, "mean")
        n = math.prod(x.shape[a] for a in axes)
        return x.sum(axes, keepdim) / n if n else x.sum(axes, keepdim) * float("nan")

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        axes = _dims(dim, self.ndim, "var")
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        n = math.prod(self.shape[a] for a in axes)
        centered = self - self.mean(axes, keepdim=True)
        return (centered * centered).sum(axes, keepdim) / builtins.max(n - correction, 0)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        if self.numel() == 0:
            raise OpError("amax", "Expected reduction dim to be specified for input.numel() == 0",
                          (self,))
        return dispatch("amax", self, axes=_dims(dim, self.ndim, "amax"), keepdim=keepdim)

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        if self.dtype is dtypes.bool_:
            return ~((~self).amax(dim, keepdim))
        return -((-self).amax(dim, keepdim))

    def max(self, dim=None, keepdim: bool = False):
        """``x.max()``; ``x.max(dim)`` gives (values, indices); ``x.max(other)`` is maximum."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        return self._pick_along(dim, keepdim, self.argmax(dim, keepdim=True), True)

    def min(self, dim=None, keepdim: bool = False):
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        return self._pick_along(dim, keepdim, self.argmin(dim, keepdim=True), False)

    def _pick_along(self, dim, keepdim: bool, idx: Tensor, largest: bool):
        """(values, indices) of max/min over ``dim``. As in PyTorch, the gradient goes to
        the one element the index picks, not shared among ties as amax does."""
        if self.ndim == 0:
            _dims(dim, 0, "max")  # still checks the dim
            return values_indices(self, idx)
        d = _dims(dim, self.ndim, "max")[0]
        if self.requires_grad and autograd.is_grad_enabled():
            key = tuple(idx if i == d else arange(s, device=self.device).reshape(
                tuple(s if j == i else 1 for j in range(self.ndim)))
                for i, s in enumerate(self.shape))
            values = self[key]
        else:  # no gradient to route: the reduction is cheaper than a gather
            values = self.amax(d, keepdim=True) if largest else self.amin(d, keepdim=True)
        if not keepdim:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return values_indices(values, idx)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        axes = None if dim is None else _dims(dim, self.ndim, "argmax")  # () for 0-dim
        axis = axes[0] if axes else None
        return dispatch("argmax", self, axis=axis, keepdim=keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        x = self.logical_not() if self.dtype is dtypes.bool_ else -self
        return x.argmax(dim, keepdim)

    def all(self) -> Tensor:
        return self.bool().logical_not().sum() == 0

    def any(self) -> Tensor:
        return self.bool().sum() > 0

    def softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        e = (x - x.amax(dim, keepdim=True).detach()).exp()
        return e / e.sum(dim, keepdim=True)

    def log_softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        shifted = x - x.amax(dim, keepdim=True).detach()
        return shifted - shifted.exp().sum(dim, keepdim=True).log()

    def logsumexp(self, dim, keepdim: bool = False) -> Tensor:
        m = self.amax(dim, keepdim=True).detach()
        out = (self - m).exp().sum(dim, keepdim=True).log() + m
        return out if keepdim else out.squeeze(dim)

    def norm(self, p=2, dim=None, keepdim: bool = False) -> Tensor:
        if p == 2:
            return (self * self).sum(dim, keepdim).sqrt()
        return (self.abs() ** p).sum(dim, keepdim) ** (1.0 / p)

    # ---- matmul -----------------------------------------------------------------------
    def matmul(self, other: Tensor) -> Tensor:
        """PyTorch's matmul, including 1-D operands (treated as vectors)."""
        other = _as_tensor_like(other, self)
        if self.ndim == 0 or other.ndim == 0:
            raise OpError("matmul", "both arguments to matmul need to be at least 1D",
                          (self, other))
        a = self.unsqueeze(0) if self.ndim == 1 else self
        b = other.unsqueeze(-1) if other.ndim == 1 else other
        if a.shape[-1] != b.shape[-2]:
            raise OpError("matmul", f"shapes {shape_str(self)} and {shape_str(other)} cannot be "
                          f"multiplied ({a.shape[-1]} != {b.shape[-2]})", (self, other))
        if _amp.state.modes:   # inside ember.amp.autocast: a lower precision
            a, b = _amp.cast_operands(a, b)
        if a.dtype is not b.dtype:
            dt = dtypes.promote(a.dtype, b.dtype)
            a, b = a.to(dt), b.to(dt)
        out = dispatch("matmul", a, b)
        if other.ndim == 1:
            out = out.squeeze(-1)
        if self.ndim == 1:  # vector @ vector is 0-dim: the -2 axis moved to -1 above
            out = out.squeeze(-2 if other.ndim > 1 else -1)
        return out

    mm = matmul
    bmm = matmul

    def dot(self, other: Tensor) -> Tensor:
        return (self * other).sum()

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
        track = grad and (self._rg or any(isinstance(o, Tensor) and o.requires_grad
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
            src = Tensor._wrap(data.copy(), self._rg)
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

    def div_(self, o):
        return self._inplace(lambda s: s / o, (o,), "div_")

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

    def new_zeros(self, *size, dtype=None, device=None) -> Tensor:
        return zeros(_shape_arg(size), dtype=dtype or self.dtype, device=device or self.device)

    def new_ones(self, *size, dtype=None, device=None) -> Tensor:
        return ones(_shape_arg(size), dtype=dtype or self.dtype, device=device or self.device)

    def new_full(self, size, fill_value, dtype=None, device=None) -> Tensor:
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device)

    def new_tensor(self, data, dtype=None, device=None) -> Tensor:
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device)


_dispatch_mod._bind(Tensor)


def _observe(t: Tensor, how: str) -> None:
    """A Python value is read from a tensor: a compiled function's trace splits here."""
    if _dispatch_mod.tracer is not None:
        _dispatch_mod.tracer.observe(t, how)


def _overwrite(old: Tensor, new: Tensor) -> Tensor:
    """``new``, but linked to ``old``'s history with a zero gradient, as PyTorch's copy_
    is: backward then still visits (and checks the saved tensors of) the old history."""
    if old._node is None or not autograd._state.__dict__.get("grad", True):
        return new
    return dispatch("where", constant(False, dtypes.bool_, old._device), old, new)


def _aliases(out, a) -> bool:
    """Is array ``out`` a view of ``a``'s memory (and not a copy)? NumPy and CuPy point
    a view's ``base`` at the array owning the memory."""
    b = out.base
    return b is not None and (b is a or b is a.base)


def _replay(t: Tensor, steps: tuple) -> Tensor:
    """Make the view ``steps`` (a view's ``_view``) of ``t`` again, through dispatch."""
    for op, attrs in steps:
        t = dispatch(op, t, **attrs)
    return t


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


def _check_view_write(view: Tensor, base: Tensor, op: str) -> None:
    """Refuse what PyTorch refuses: writes autograd could not track through a view."""
    if base._node is None and base._rg:
        raise RuntimeError(f"{op}: a view of a leaf Variable that requires grad is being used in "
                           "an in-place operation.")
    meta = view._vmeta
    if meta is not None:
        raise RuntimeError(f"{op}: " + _view_rebase_message(meta, "is being modified inplace"))


def _view_rebase_message(meta, what: str) -> str:
    if meta == "no_grad":
        return (f"A view was created in no_grad mode and {what} with grad mode enabled. Given "
                "that this use case is ambiguous and error-prone, it is forbidden. You can "
                "clarify your code by moving both the view and the inplace either both inside "
                "the no_grad block (if you don't want the inplace to be tracked) or both outside "
                "(if you want the inplace to be tracked).")
    return (f"Output {meta[1]} of {meta[0]} is a view and {what}. This view is the "
            "output of a function that returns multiple views. Such functions do not allow the "
            "output views to be modified inplace. You should replace the inplace operation by an "
            "out-of-place one.")


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
    old = Tensor._wrap(base._data, base._rg)
    old._node = base._node
    saved = Tensor._wrap(base._data, False)
    saved._vc = base._vc
    base._node = autograd.Node(_COPY_SLICES, (old, written),
                               {"view": view._view, "shape": tuple(base._data.shape)}, saved)
    base._rg = True
    view._sync_view()


def _canonical_key(x: Tensor, key) -> tuple[tuple, list[Tensor]]:
    """Normalize an indexing key against x's shape; index tensors become "tK" slots."""
    if not isinstance(key, tuple):
        key = (key,)
    tensors: list[Tensor] = []
    items = []
    for k in key:
        if isinstance(k, (list, np.ndarray)) or (hasattr(k, "__cuda_array_interface__")):
            k = tensor(k, device=x.device)
        if isinstance(k, Tensor) and k.ndim == 0 and k.dtype.category == 1:
            k = int(k.item())
        items.append(k)
    consumed = sum(1 if isinstance(k, (int, slice)) or (isinstance(k, Tensor) and k.dtype is not dtypes.bool_)
                   else (k.ndim if isinstance(k, Tensor) else 0) for k in items if k is not Ellipsis)
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
        elif isinstance(k, Tensor):
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


def _as_tensor_like(v, like: Tensor) -> Tensor:
    """A Python scalar or array-like as a tensor on ``like``'s device."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (bool, int, float)):
        return constant(v, dtypes.scalar_dtype(v), like.device)
    return tensor(v, device=like.device)


# ---- creation -----------------------------------------------------------------------------

def _new_constant(array) -> Tensor:
    """Wrap an array made from Python data; a compiled trace records it as a literal."""
    t = Tensor._wrap(array, False)
    if _dispatch_mod.tracer is not None:
        _dispatch_mod.tracer.constant(t, None)
    return t


def tensor(data: Any, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor copied from Python data, a NumPy array or another tensor.

    >>> ember.tensor([[1, 2], [3, 4]]).dtype
    ember.int64
    """
    if isinstance(data, Tensor):
        t = data.detach().to(dtype=dtype, device=device, copy=True)
        return t.requires_grad_(requires_grad) if requires_grad else t
    dev = as_device(device)
    xp = array_module(dev)
    if dtype is None:
        a = np.asarray(data.get() if hasattr(data, "get") and not isinstance(data, np.ndarray) else data)
        if a.dtype == object:
            raise TypeError("tensor(): could not infer a dtype for data of mixed types")
        if a.dtype.kind == "f":
            dt = dtypes.get_default_dtype() if not isinstance(data, np.ndarray) else dtypes.from_numpy_dtype(a.dtype)
        else:
            dt = dtypes.from_numpy_dtype(a.dtype) if a.dtype.kind in "biuV" else dtypes.get_default_dtype()
        if a.dtype.kind in "iu" and not isinstance(data, np.ndarray):
            dt = dtypes.int64
        if a.dtype.kind == "c":   # Python complex numbers take the default complex dtype
            dt = dtypes.from_numpy_dtype(a.dtype) if isinstance(data, np.ndarray) \
                else dtypes.default_complex()
    else:
        dt = dtypes.as_dtype(dtype)
    if dt.is_floating_point and isinstance(data, (list, tuple)):
        data = _flatten_tensors(data)
    arr = xp.array(data, dtype=dt.np)
    t = _new_constant(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _flatten_tensors(data):
    """Allow lists of 0-dim tensors (tensor([a, b]) where a, b are tensors)."""
    if isinstance(data, Tensor):
        return data._host()
    if isinstance(data, (list, tuple)):
        return [_flatten_tensors(d) for d in data]
    return data


def as_tensor(data: Any, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray) and device in (None, "cpu") and dtype is None:
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(a: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array (as in PyTorch)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray (got {type(a).__name__})")
    dtypes.from_numpy_dtype(a.dtype)  # raises for unsupported dtypes
    if a.dtype not in dtypes._BY_NP:
        a = a.astype(dtypes.from_numpy_dtype(a.dtype).np)
    return _new_constant(a)


def _factory_dtype(dtype) -> DType:
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    t = dispatch("full", shape=_shape_arg((size,)), value=fill_value, dtype=dtypes.as_dtype(dtype),
                 device=as_device(device))
    return t.requires_grad_(True) if requires_grad else t


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 0, dtype=_factory_dtype(dtype), device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 1, dtype=_factory_dtype(dtype), device=device,
                requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = (dtypes.get_default_dtype() if any(isinstance(v, float) for v in (start, end, step))
                 else dtypes.int64)
    t = dispatch("arange", start=start, end=end, step=step, dtype=dtypes.as_dtype(dtype),
                 device=as_device(device))
    return t.requires_grad_(True) if requires_grad else t


def linspace(start: float, end: float, steps: int, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    dt = _factory_dtype(dtype)
    xp = array_module(as_device(device))
    t = _new_constant(xp.linspace(start, end, steps).astype(dt.np))
    return t.requires_grad_(True) if requires_grad else t


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp = array_module(as_device(device))
    t = _new_constant(xp.eye(n, m, dtype=_factory_dtype(dtype).np))
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    t = dispatch("rand", shape=_shape_arg(size), dtype=_factory_dtype(dtype),
                 device=as_device(device), generator=generator)
    return t.requires_grad_(True) if requires_grad else t


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    t = dispatch("randn", shape=_shape_arg(size), dtype=_factory_dtype(dtype),
                 device=as_device(device), generator=generator)
    return t.requires_grad_(True) if requires_grad else t


def randint(low: int, high: int | None = None, size=None, *, generator=None, dtype=None,
            device=None) -> Tensor:
    if size is None and isinstance(high, (tuple, list, Size)):  # randint(high, size)
        high, size = None, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    return dispatch("randint", low=low, high=high, shape=_shape_arg((size,)),
                    dtype=dtypes.as_dtype(dtype or dtypes.int64), device=as_device(device),
                    generator=generator)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1."""
    return dispatch("randperm", n=n, dtype=dtypes.as_dtype(dtype or dtypes.int64),
                    device=as_device(device), generator=generator)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros_like(t, dtype, device, requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False, *,
              generator=None) -> Tensor:
    return rand(t.shape, generator=generator, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False, *,
               generator=None) -> Tensor:
    return randn(t.shape, generator=generator, dtype=dtype or t.dtype, device=device or t.device,
                 requires_grad=requires_grad)


def randint_like(t: Tensor, low: int, high: int | None = None, dtype=None, device=None, *,
                 generator=None) -> Tensor:
    return randint(low, high, t.shape, generator=generator, dtype=dtype or t.dtype,
                   device=device or t.device)


# ---- functions over several tensors --------------------------------------------------------

def where(condition: Tensor, input, other) -> Tensor:
    """Elements of ``input`` where ``condition`` holds, else of ``other`` (broadcasting)."""
    return dispatch("where", condition, input, other)


def cat(tensors: Iterable[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dim."""
    tensors = list(tensors)
    if not tensors:
        raise OpError("cat", "expected a non-empty list of Tensors")
    ref = tensors[0]
    d = _dims(dim, ref.ndim, "cat")[0]
    dt = ref.dtype
    for t in tensors[1:]:
        dt = dtypes.promote(dt, t.dtype)
        if t.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d):
            raise OpError("cat", f"Sizes of tensors must match except in dimension {d}: "
                          + " and ".join(shape_str(x) for x in tensors), tensors)
    return dispatch("cat", *[t.to(dt) for t in tensors], dim=d)


concat = cat


def stack(tensors: Iterable[Tensor], dim: int = 0) -> Tensor:
    """Stack tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise OpError("stack", "expected a non-empty list of Tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise OpError("stack", "expects each tensor to be equal size, but got "
                      + " and ".join(shape_str(t) for t in tensors), tensors)
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def allclose(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, equal_nan=equal_nan))


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)
