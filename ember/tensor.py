"""Tensor: PyTorch's tensor API over a NumPy or CuPy array.

The class is defined here: storage and views, metadata, conversion and autograd. Its
methods come by kind from its bases: ``TensorMath`` (tensor_math.py: arithmetic,
elementwise functions, reductions, matmul), ``TensorShape`` (tensor_shape.py),
``TensorIndex`` (tensor_index.py: indexing and in-place writes) and ``TensorCreate``
(tensor_create.py, with ``tensor``, ``zeros``, ``arange``, ... re-exported here).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ember import autograd, dispatch as _dispatch_mod, dtypes
from ember.dispatch import dispatch
from ember.dtypes import DType
from ember.errors import OpError, shape_str
from ember.devices import CPU, Device, array_module, as_device, device_of_array
from ember.tensor_common import (_NP, Size, _aliases, _dims, _observe, _replay,  # noqa: F401
                                 _shape_arg, _view_rebase_message, values_indices)
from ember.tensor_create import (TensorCreate, allclose, arange, as_tensor,  # noqa: F401
                                 broadcast_shapes, cat, concat, empty, empty_like, eye,
                                 from_numpy, full, full_like, is_tensor, linspace, ones,
                                 ones_like, rand, rand_like, randint, randint_like, randn,
                                 randn_like, randperm, stack, tensor, where, zeros, zeros_like)
from ember.tensor_common import STRUCTURE_VERSION
from ember.tensor_common import preserve_format as _PRESERVE
from ember.tensor_index import TensorIndex
from ember.tensor_math import TensorMath
from ember.tensor_shape import TensorShape

_new = object.__new__



def array_of(t: Tensor):
    """The NumPy (CPU) or CuPy (CUDA) array holding ``t``'s values.

    How ember's own layers (the tracer, serialization, distributed, data loading) read a
    tensor's memory; an internal accessor, not part of PyTorch's API. The array is the
    tensor's own memory: writing into it bypasses autograd and the version counter.

    >>> array_of(ember.tensor([1.0, 2.0]))
    array([1., 2.], dtype=float32)
    """
    return t._data

class Tensor(TensorMath, TensorShape, TensorIndex, TensorCreate):
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
    # (``__dict__``: attributes programs put on tensors, as torch's take them, such as
    # ``param.is_shared = True`` or BERT-pytorch's ``pe.require_grad = False``)
    __slots__ = ("_data", "_rg", "_grad", "_node", "_vc", "_base", "_view", "_vver", "_vmeta",
                 "_retains_grad", "_device", "_xp", "__weakref__", "__dict__")
    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    def __init__(self, *args: Any, dtype=None, device=None, requires_grad: bool = False) -> None:
        """``ember.Tensor(data)``, or torch's legacy ``ember.Tensor(2, 3)`` /
        ``Tensor(size)``: a tensor of the default dtype of those sizes (zero-filled where
        torch leaves memory uninitialized)."""
        dtype = dtype or dtypes.get_default_dtype()
        if args and (isinstance(args[0], Size) or all(
                isinstance(a, int) and not isinstance(a, bool) for a in args)):
            t = zeros(_shape_arg(args), dtype=dtype, device=device)
        elif len(args) > 1:   # (data, dtype): ember's older positional form
            t = tensor(args[0], dtype=args[1] or dtype, device=device)
        else:
            t = tensor(args[0] if args else (), dtype=dtype, device=device)
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
        t = _new(Tensor)
        # ``_init``, inlined: every op's result is made here
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
        STRUCTURE_VERSION[0] += 1   # compiled code may branch on it: guards look again
        if value and _dispatch_mod.tracer is not None:   # (a new leaf, if made in the call)
            _dispatch_mod.tracer.new_leaf(self)

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
        if _dispatch_mod.tracer is not None:
            if g is None:   # a replay must know that it still is (``if p.grad is None``)
                _dispatch_mod.tracer.read_none_grad(self)
            else:
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

    # (devices ember has no backend for: programs test them, as pytorch/examples' dcgan)
    is_xpu = is_mps = is_ipu = is_vulkan = is_xla = is_hpu = is_mtia = property(
        lambda self: False)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    def nelement(self) -> int:
        return self._data.size

    def element_size(self) -> int:
        """Bytes per element (4 for float32)."""
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_complex(self) -> bool:
        return self.dtype.is_complex

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
        STRUCTURE_VERSION[0] += 1   # its shape and dtype are guarded (a module's too)

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
        if self.__dict__:   # attributes a program set on it, copied as torch's are
            import copy
            t.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return t

    def __reduce_ex__(self, protocol):
        # The default protocol would pickle the array module held in _xp ("cannot pickle
        # 'module' object"); this one keeps class, requires_grad and shared memory.
        from ember.serialization import reduce_tensor
        return reduce_tensor(self)

    def __repr__(self) -> str:
        a = self._host()
        if a.dtype.kind == "V":   # bfloat16: NumPy formats it like a float32
            a = a.astype(np.float32)
        from ember.printing import array2string_options
        body = np.array2string(a, separator=", ", prefix="tensor(", **array2string_options())
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
        tracer = _dispatch_mod.tracer
        if tracer is not None and tracer.symbols is not None:   # read when Python needs it
            proxy = tracer.symbols.item(self, tracer)          # (tracer/symbolic.py)
            if proxy is not None:
                return proxy
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

    def to(self, *args, dtype=None, device=None, copy: bool = False, non_blocking: bool = False,
           memory_format=None) -> Tensor:
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
        if memory_format is not None and memory_format is not _PRESERVE:
            out = out._to_format(memory_format)
        if copy and out is self:
            out = self.clone()
        return out

    def cuda(self, device=None, non_blocking: bool = False, memory_format=None) -> Tensor:
        """A copy on the GPU (``non_blocking`` as torch's; CuPy copies are ordered on
        its stream)."""
        out = self.to(Device("cuda", device if isinstance(device, int) else 0))
        return out if memory_format is None else out.contiguous(memory_format=memory_format)

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

    def type(self, dtype=None, non_blocking: bool = False):
        """Without ``dtype``, the type's name ('ember.FloatTensor', as torch's
        'torch.FloatTensor'); with one (a dtype or such a name), this tensor cast to it.

        >>> ember.zeros(2).type(), ember.zeros(2).type(ember.int64).dtype
        ('ember.FloatTensor', ember.int64)
        """
        if dtype is None:
            name = _TYPE_NAMES.get(self.dtype.name, self.dtype.name)
            return f"ember.{'cuda.' if self.is_cuda else ''}{name}"
        legacy = getattr(dtype, "dtype", None)
        if isinstance(dtype, type) and isinstance(legacy, DType):   # x.type(ember.LongTensor)
            return self.to(legacy)
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            prefix, _, name = dtype.rpartition(".")
            by_type = {v: k for k, v in _TYPE_NAMES.items()}
            if name not in by_type or prefix not in ("torch", "ember", "torch.cuda", "ember.cuda"):
                raise ValueError(f"invalid type: '{dtype}'")
            out = self.to(dtypes.as_dtype(by_type[name]))
            return out.cuda() if prefix.endswith("cuda") else out.cpu()
        return self.to(dtypes.as_dtype(dtype))

    def __format__(self, spec: str) -> str:
        # f"{loss:.4f}" formats a 0-dim tensor's value, as PyTorch does.
        if self.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

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

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor
        replaces it. Returns a handle with ``remove()`` (see ember/autograd_hooks.py)."""
        from ember.autograd_hooks import register_hook
        return register_hook(self, hook)

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        self._retains_grad = self._node is not None

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Accumulate gradients of this tensor into the ``.grad`` of the leaves."""
        if gradient is not None and self.requires_grad:
            if not isinstance(gradient, Tensor):
                gradient = tensor(gradient, dtype=self.dtype, device=self.device)
            if gradient.shape != self.shape:
                raise OpError("backward", f"gradient of shape {shape_str(gradient)} does not "
                              f"match the tensor's shape {shape_str(self)}", (self, gradient))
        autograd.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)


_dispatch_mod._bind(Tensor)

# Tensor.type() names, as torch's legacy tensor types.
_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor",
               "int16": "ShortTensor", "int8": "CharTensor", "uint8": "ByteTensor",
               "bool": "BoolTensor", "complex64": "ComplexFloatTensor",
               "complex128": "ComplexDoubleTensor"}
