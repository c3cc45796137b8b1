"""Making tensors: ``tensor``, ``zeros``, ``arange``, ``rand``, ... and ``Tensor.new_*``
(``TensorCreate``, a base of ``Tensor``); and the functions over several tensors
(``where``, ``cat``, ``stack``). ``ember.tensor`` re-exports all of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ember import dispatch as _dispatch_mod, dtypes
from ember.dispatch import constant, dispatch
from ember.dtypes import DType
from ember.errors import OpError, shape_str
from ember.devices import array_module, factory_device
from ember.tensor_common import Size, _dims, _shape_arg

if TYPE_CHECKING:
    from ember.tensor import Tensor


class TensorCreate:
    """``Tensor.new_zeros`` and friends: new tensors with this one's dtype and device."""

    __slots__ = ()

    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """Zeros of ``size`` with this tensor's dtype and device (unless given)."""
        return zeros(_shape_arg(size), dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return ones(_shape_arg(size), dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return empty(_shape_arg(size), dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None,
                 requires_grad: bool = False) -> Tensor:
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """A copy of ``data`` (detached when a tensor) with this tensor's dtype and device."""
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)


def _as_tensor_like(v, like: Tensor) -> Tensor:
    """A Python scalar or array-like as a tensor on ``like``'s device."""
    if isinstance(v, _tensor.Tensor):
        return v
    if isinstance(v, (bool, int, float)):
        return constant(v, dtypes.scalar_dtype(v), like.device)
    return tensor(v, device=like.device)


# ---- creation -----------------------------------------------------------------------------

def _new_constant(array) -> Tensor:
    """Wrap an array made from Python data; a compiled trace records it as a literal."""
    t = _tensor.Tensor._wrap(array, False)
    if _dispatch_mod.tracer is not None:
        _dispatch_mod.tracer.constant(t, None)
    return t


def tensor(data: Any, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor copied from Python data, a NumPy array or another tensor.

    >>> ember.tensor([[1, 2], [3, 4]]).dtype
    ember.int64
    """
    if isinstance(data, _tensor.Tensor):
        t = data.detach().to(dtype=dtype, device=device, copy=True)
        return t.requires_grad_(requires_grad) if requires_grad else t
    if type(data) is _dispatch_mod.SymScalar:   # a number read at every call
        t = _symbolic_fill((), data, dtype, device)
        if t is not None:
            return t.requires_grad_(True) if requires_grad else t
        data = data.value
    dev = factory_device(device)
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
    if (_dispatch_mod.tracer is not None and type(data) is np.ndarray and xp is np
            and data.dtype in dtypes._BY_NP):
        # Traced: a copy of the array as it is at each call (see _from_array).
        t = _from_array(data).to(dtype=dt, copy=True)
    else:
        t = _new_constant(xp.array(data, dtype=dt.np))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _flatten_tensors(data):
    """Allow lists of 0-dim tensors (tensor([a, b]) where a, b are tensors)."""
    if isinstance(data, _tensor.Tensor):
        return data._host()
    if isinstance(data, (list, tuple)):
        return [_flatten_tensors(d) for d in data]
    return data


def as_tensor(data: Any, dtype=None, device=None) -> Tensor:
    if isinstance(data, _tensor.Tensor):
        return data.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray) and factory_device(device).type == "cpu" and dtype is None:
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
    return _from_array(a)


def _from_array(a: np.ndarray) -> Tensor:
    """A tensor over NumPy array ``a``. Traced, the array is Python state that the caller
    may write in place between calls, so it is a captured input read at every call, not
    a literal copied once (a large array's contents are not guarded: a replay of the
    literal missed in-place writes)."""
    t = _tensor.Tensor._wrap(a, False)
    if _dispatch_mod.tracer is not None:
        _dispatch_mod.tracer.array_input(t)
    return t


def _factory_dtype(dtype) -> DType:
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def _symbolic_fill(shape: tuple, value, dtype, device) -> Tensor | None:
    """A new tensor of ``shape`` filled with a symbolic number (tracer/symbolic.py), read
    from the graph's input as eager's constant would hold it; None where the number must
    be plain (a dtype it is not exact in: the caller then fills with the value)."""
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(value)
    t = value.operand(dt, factory_device(device))
    if t is None:
        return None
    t = t.to(factory_device(device))
    return t.expand(shape).contiguous() if shape else t.clone()


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if type(fill_value) is _dispatch_mod.SymScalar:   # a number read at every call
        t = _symbolic_fill(_shape_arg((size,)), fill_value, dtype, device)
        if t is not None:
            return t.requires_grad_(True) if requires_grad else t
        fill_value = fill_value.value
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    t = dispatch("full", shape=_shape_arg((size,)), value=fill_value, dtype=dtypes.as_dtype(dtype),
                 device=factory_device(device))
    return t.requires_grad_(True) if requires_grad else t


def _sizes(sizes: tuple, size, layout, name: str) -> tuple[int, ...]:
    """The shape of a factory call: ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``;
    ``layout`` may be ``ember.strided`` (or ``sparse_coo``: ember stores it dense)."""
    if layout is not None and getattr(layout, "name", None) not in ("strided", "sparse_coo"):
        raise TypeError(f"{name}(): argument 'layout' must be ember.layout, not "
                        f"{type(layout).__name__}")
    if size is not None:
        if sizes:
            raise TypeError(f"{name}() got multiple values for argument 'size'")
        return _shape_arg((size,))
    return _shape_arg(sizes)


def zeros(*sizes, size=None, dtype=None, layout=None, device=None, pin_memory: bool = False,
          requires_grad: bool = False) -> Tensor:
    return full(_sizes(sizes, size, layout, "zeros"), 0, dtype=_factory_dtype(dtype),
                device=device, requires_grad=requires_grad)


def ones(*sizes, size=None, dtype=None, layout=None, device=None, pin_memory: bool = False,
         requires_grad: bool = False) -> Tensor:
    return full(_sizes(sizes, size, layout, "ones"), 1, dtype=_factory_dtype(dtype),
                device=device, requires_grad=requires_grad)


def empty(*sizes, size=None, dtype=None, layout=None, device=None, pin_memory: bool = False,
          requires_grad: bool = False, memory_format=None) -> Tensor:
    return zeros(_sizes(sizes, size, layout, "empty"), dtype=dtype, device=device,
                 requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = (dtypes.get_default_dtype() if any(isinstance(v, float) for v in (start, end, step))
                 else dtypes.int64)
    t = dispatch("arange", start=start, end=end, step=step, dtype=dtypes.as_dtype(dtype),
                 device=factory_device(device))
    return t.requires_grad_(True) if requires_grad else t


def linspace(start: float, end: float, steps: int, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """``steps`` points from ``start`` to ``end``; float32/float64 bit for bit as torch.

    >>> ember.linspace(0, 1, 5)
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
    """
    dt = _factory_dtype(dtype)
    xp = array_module(factory_device(device))
    if dt.np in (np.float32, np.float64) and steps > 1:
        values = xp.asarray(linspace_values(start, end, steps, dt.np))
    else:
        values = xp.linspace(start, end, steps).astype(dt.np)
    t = _new_constant(values)
    return t.requires_grad_(True) if requires_grad else t


def linspace_values(start: float, end: float, steps: int, dtype) -> np.ndarray:
    """torch's CPU linspace for a float dtype: ``step = (end - start) / (steps - 1)`` in
    the dtype, the first half ``fma(step, i, start)``, the second ``fma(-step, steps - 1
    - i, end)``, each rounded once (NumPy's linspace rounds elsewhere, which moved
    ``affine_grid``'s points off pixel centres and ``grid_sample``'s floors with them)."""
    T = np.dtype(dtype).type
    s, e = T(start), T(end)
    step = (e - s) / T(steps - 1)
    i = np.arange(steps, dtype=np.float64)
    half = i < steps // 2
    if T is np.float32:   # a float32 product is exact in float64: one rounding at the end
        up = np.float64(s) + np.float64(step) * i
        down = np.float64(e) - np.float64(step) * (steps - 1 - i)
        return np.where(half, up, down).astype(np.float32)
    up = _fma(np.full(steps, step), i, s)
    down = _fma(np.full(steps, -step), steps - 1 - i, e)
    return np.where(half, up, down)


def _fma(a: np.ndarray, b: np.ndarray, c) -> np.ndarray:
    """a * b + c in float64 with the error-free transformations (Dekker's product and
    Knuth's sum): the fused multiply-add NumPy lacks, to the last bit in practice."""
    p = a * b
    ah = a * 134217729.0
    ah = ah - (ah - a)
    bh = b * 134217729.0
    bh = bh - (bh - b)
    al, bl = a - ah, b - bh
    ep = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    total = p + c
    bb = total - p
    es = (p - (total - bb)) + (c - bb)
    return total + (ep + es)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    xp = array_module(factory_device(device))
    t = _new_constant(xp.eye(n, m, dtype=_factory_dtype(dtype).np))
    return t.requires_grad_(True) if requires_grad else t


def rand(*sizes, size=None, generator=None, dtype=None, layout=None, device=None,
         pin_memory: bool = False, requires_grad: bool = False) -> Tensor:
    t = dispatch("rand", shape=_sizes(sizes, size, layout, "rand"), dtype=_factory_dtype(dtype),
                 device=factory_device(device), generator=generator)
    return t.requires_grad_(True) if requires_grad else t


def randn(*sizes, size=None, generator=None, dtype=None, layout=None, device=None,
          pin_memory: bool = False, requires_grad: bool = False) -> Tensor:
    t = dispatch("randn", shape=_sizes(sizes, size, layout, "randn"),
                 dtype=_factory_dtype(dtype),
                 device=factory_device(device), generator=generator)
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
                    dtype=dtypes.as_dtype(dtype or dtypes.int64), device=factory_device(device),
                    generator=generator)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1."""
    return dispatch("randperm", n=n, dtype=dtypes.as_dtype(dtype or dtypes.int64),
                    device=factory_device(device), generator=generator)


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

def where(condition: Tensor, input=None, other=None):
    """Elements of ``input`` where ``condition`` holds, else of ``other`` (broadcasting).
    ``where(condition)`` alone is ``condition.nonzero(as_tuple=True)``.

    >>> ember.where(ember.tensor([True, False]), 1.0, 0.0)
    tensor([1., 0.])
    """
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    if input is None or other is None:
        raise TypeError("where() takes a condition alone, or a condition, input and other")
    return dispatch("where", condition, input, other)


def broadcast_shapes(*shapes) -> Size:
    """The shape that tensors of ``shapes`` broadcast to.

    >>> ember.broadcast_shapes((2, 1), (3,))
    ember.Size([2, 3])
    """
    out: list[int] = []
    for shape in shapes:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if len(shape) > len(out):
            out = [1] * (len(shape) - len(out)) + out
        for i, s in enumerate(shape):
            j = len(out) - len(shape) + i
            if out[j] == 1:
                out[j] = s
            elif s != 1 and s != out[j]:
                raise RuntimeError("Shape mismatch: objects cannot be broadcast to a single "
                                   f"shape. Mismatch is at dim {j}: {out[j]} vs {s}")
    return Size(out)


def cat(tensors: Iterable[Tensor], dim: int = 0, *, out: Tensor | None = None) -> Tensor:
    """Concatenate tensors along an existing dim (into ``out`` if given)."""
    if out is not None:
        from ember.out_arg import write_out
        return write_out("cat", out, cat(tensors, dim))
    tensors = list(tensors)
    if not tensors:
        raise OpError("cat", "expected a non-empty list of Tensors")
    # torch's legacy rule: 1-D empty tensors are skipped (DINO's MultiCropWrapper starts
    # from torch.empty(0)), though their dtype still takes part in the promotion
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = dtypes.promote(dt, t.dtype)
    kept = [t for t in tensors if t.shape != (0,)]
    if kept and len(kept) < len(tensors):
        tensors = kept
    ref = tensors[0]
    d = _dims(dim, ref.ndim, "cat")[0]
    for t in tensors[1:]:
        if t.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d):
            raise OpError("cat", f"Sizes of tensors must match except in dimension {d}: "
                          + " and ".join(shape_str(x) for x in tensors), tensors)
    return dispatch("cat", *[t.to(dt) for t in tensors], dim=d)


concat = cat


def stack(tensors: Iterable[Tensor], dim: int = 0, *, out: Tensor | None = None) -> Tensor:
    """Stack tensors of equal shape along a new dim (into ``out`` if given)."""
    if out is not None:
        from ember.out_arg import write_out
        return write_out("stack", out, stack(tensors, dim))
    tensors = list(tensors)
    if not tensors:
        raise OpError("stack", "expected a non-empty list of Tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise OpError("stack", "expects each tensor to be equal size, but got "
                      + " and ".join(shape_str(t) for t in tensors), tensors)
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-5, atol: float = 1e-8,
             equal_nan: bool = False) -> bool:
    """Whether every element of ``input`` is close to ``other`` (see ``Tensor.isclose``).

    >>> ember.allclose(ember.tensor([1.0]), ember.tensor([1.0 + 1e-9]))
    True
    """
    for name, v in (("input", input), ("other", other)):
        if not isinstance(v, _tensor.Tensor):
            raise TypeError(f"allclose(): argument '{name}' must be Tensor, not "
                            f"{type(v).__name__}")
    return input.allclose(other, rtol, atol, equal_nan)


def is_tensor(x) -> bool:
    return isinstance(x, _tensor.Tensor)



# ---- legacy tensor types: ember.LongTensor(3), ember.FloatTensor([1, 2]) ----------------------

class _LegacyTensorType(type):
    """``ember.LongTensor`` and friends, as torch's legacy types: calling one makes a tensor
    of its dtype (from sizes, zero-filled where torch leaves memory uninitialized, or
    from data); ``isinstance`` checks the dtype of a CPU tensor; ``x.type(ember.LongTensor)``
    casts."""

    dtype: DType

    def __call__(cls, *args, device=None):
        if len(args) == 1 and not isinstance(args[0], int):
            if isinstance(args[0], Size):
                return zeros(args[0], dtype=cls.dtype, device=device)
            return tensor(args[0], dtype=cls.dtype, device=device)
        return zeros(_shape_arg(args), dtype=cls.dtype, device=device)

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _tensor.Tensor) and obj.dtype is cls.dtype and not obj.is_cuda

    def __repr__(cls) -> str:
        return f"<class 'ember.{cls.__name__}'>"


LEGACY_TYPES = {}
for _name, _type in (("float32", "FloatTensor"), ("float64", "DoubleTensor"),
                     ("float16", "HalfTensor"), ("bfloat16", "BFloat16Tensor"),
                     ("int64", "LongTensor"), ("int32", "IntTensor"), ("int16", "ShortTensor"),
                     ("int8", "CharTensor"), ("uint8", "ByteTensor"), ("bool", "BoolTensor")):
    if _name in dtypes._BY_NAME:   # the dtypes this build has
        LEGACY_TYPES[_type] = _LegacyTensorType(_type, (), {"dtype": dtypes._BY_NAME[_name],
                                                            "__module__": "ember"})
globals().update(LEGACY_TYPES)

# Last: tensor.py imports this module while it defines Tensor, so Tensor is looked up
# at call time (``_tensor.Tensor``), whichever module is imported first.
from ember import tensor as _tensor  # noqa: E402
