"""Data types, PyTorch's type-promotion rules, ``finfo`` and ``iinfo``.

ember's dtypes are NumPy's (bfloat16 comes from the ``ml_dtypes`` package):
bool; uint8, int8, int16, int32, int64; float16, bfloat16, float32, float64;
complex64, complex128. Promotion follows ``torch.promote_types`` (uint8 + int8 ->
int16, float16 + bfloat16 -> float32, int64 + float16 -> float16, float64 + complex64
-> complex128), and ``result_type`` PyTorch's priority of dimensioned tensors over
0-dim tensors over Python numbers.

>>> ember.promote_types(ember.uint8, ember.int8)
ember.int16
>>> ember.finfo(ember.float16).max
65504.0
"""
from __future__ import annotations

import ml_dtypes
import numpy as np


class DType:
    """A tensor element type, e.g. ``ember.float32``."""

    __slots__ = ("name", "np", "rank", "is_floating_point", "is_complex", "is_signed",
                 "itemsize", "category")

    def __init__(self, name: str, np_dtype, rank: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.rank = rank   # position in ALL: an order for tables, not for promotion
        self.is_floating_point = name.startswith(("float", "bfloat"))
        self.is_complex = name.startswith("complex")
        self.is_signed = name not in ("bool", "uint8")
        self.itemsize = self.np.itemsize
        # What PyTorch's result_type compares first: 0 bool, 1 integer, 2 floating, 3 complex.
        self.category = (0 if name == "bool" else 3 if self.is_complex
                         else 2 if self.is_floating_point else 1)

    @property
    def eps(self) -> float:
        """``finfo(self).eps`` (floating and complex types)."""
        return finfo(self).eps

    def to_real(self) -> DType:
        """The real type of a complex type (``complex64.to_real()`` is float32); others: itself."""
        return {"complex64": float32, "complex128": float64}.get(self.name, self)

    def to_complex(self) -> DType:
        """The complex type with this real part (``float32.to_complex()`` is complex64)."""
        if self.is_complex:
            return self
        if self is float64:
            return complex128
        if self.is_floating_point:
            return complex64
        raise RuntimeError(f"to_complex is not supported for {self}")

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):  # pickles as the singleton
        return (dtype_of_name, (self.name,))


bool_ = DType("bool", np.bool_, 0)
uint8 = DType("uint8", np.uint8, 1)
int8 = DType("int8", np.int8, 2)
int16 = DType("int16", np.int16, 3)
int32 = DType("int32", np.int32, 4)
int64 = DType("int64", np.int64, 5)
float16 = DType("float16", np.float16, 6)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, 7)
float32 = DType("float32", np.float32, 8)
float64 = DType("float64", np.float64, 9)
complex64 = DType("complex64", np.complex64, 10)
complex128 = DType("complex128", np.complex128, 11)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64,
       complex64, complex128)
_BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}
# Aliases PyTorch users type.
_BY_NAME.update({"float": float32, "double": float64, "int": int32, "long": int64,
                 "half": float16, "short": int16, "cfloat": complex64, "cdouble": complex128})

_default_float = float32


def dtype_of_name(name: str) -> DType:
    return _BY_NAME[name]


def from_numpy_dtype(npd) -> DType:
    """The ember dtype of a NumPy/CuPy dtype; types ember lacks (uint16, uint32,
    uint64, float128...) map to the nearest ember one."""
    d = _BY_NP.get(npd)
    if d is not None:
        return d
    npd = np.dtype(npd)
    d = _BY_NP.get(npd)
    if d is not None:
        return d
    if npd.kind == "f":
        return float64
    if npd.kind == "c":
        return complex128
    if npd.kind == "u":
        return int32 if npd.itemsize < 4 else int64
    if npd.kind == "i":
        return int64
    raise TypeError(f"ember has no dtype for NumPy dtype {npd}")


def as_dtype(d) -> DType:
    """Accept ember dtypes, NumPy dtypes, Python types and names."""
    if isinstance(d, DType):
        return d
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    if d is complex:
        return default_complex()
    if isinstance(d, str):
        try:
            return _BY_NAME[d.replace("ember.", "").replace("torch.", "")]
        except KeyError:
            raise TypeError(f"unknown dtype {d!r}") from None
    return from_numpy_dtype(d)


def get_default_dtype() -> DType:
    """The dtype of Python floats in new tensors (float32 unless set).

    >>> ember.get_default_dtype()
    ember.float32
    """
    return _default_float


def set_default_dtype(d) -> None:
    """Set the dtype of new floating tensors (``tensor([1.0])``, ``zeros``, ``randn``,
    integer division...): a floating dtype, as in PyTorch.

    >>> ember.set_default_dtype(ember.float64); ember.tensor([1.0]).dtype
    ember.float64
    """
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def default_complex() -> DType:
    """The dtype of Python complex numbers: complex128 when the default is float64."""
    return complex128 if _default_float is float64 else complex64


# ---- promotion ------------------------------------------------------------------------------

def _promote_rule(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if a.category != b.category:
        hi, lo = (a, b) if a.category > b.category else (b, a)
        if hi.is_complex and lo is float64:
            return complex128
        return hi
    if a.is_complex or a is bool_:
        return a if a.itemsize >= b.itemsize else b
    if a.is_floating_point:
        if a.itemsize == b.itemsize == 2:   # float16 with bfloat16: neither holds the other
            return float32
        return a if a.itemsize >= b.itemsize else b
    if a.is_signed == b.is_signed:
        return a if a.itemsize >= b.itemsize else b
    signed = a if a.is_signed else b   # with uint8: a signed type that holds 0..255
    return signed if signed.itemsize > 1 else int16


_PROMOTE = {(a, b): _promote_rule(a, b) for a in ALL for b in ALL}


def promote(a: DType, b: DType) -> DType:
    """PyTorch's ``promote_types``."""
    return _PROMOTE[a, b]


def promote_types(type1, type2) -> DType:
    """The smallest dtype both promote to, as ``torch.promote_types``.

    >>> ember.promote_types(ember.float16, ember.bfloat16)
    ember.float32
    """
    return promote(as_dtype(type1), as_dtype(type2))


def scalar_dtype(v) -> DType:
    """The dtype a Python number takes part in promotion with ('wrapped numbers')."""
    if isinstance(v, bool):
        return bool_
    if isinstance(v, int):
        return int64
    if isinstance(v, complex):
        return default_complex()
    return _default_float


def result_type(dim: DType | None, zero: DType | None, wrapped: DType | None) -> DType:
    """PyTorch's result_type: dimensioned tensors win within their category,
    then 0-dim tensors, then Python scalars (c10 combine_categories)."""
    return _combine(dim, _combine(zero, wrapped))


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    if higher is None:
        return lower
    if lower is None or higher.is_complex:
        return higher
    if lower.is_complex:
        # A float keeps its precision: float64 tensor * 1j is complex128.
        return higher.to_complex() if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point:
        return promote(higher, lower)
    return higher


def is_floating_point(input) -> bool:
    """Is the tensor's dtype a floating one (``ember.is_floating_point(t)``)?

    >>> ember.is_floating_point(ember.ones(2, dtype=ember.bfloat16))
    True
    """
    return input.dtype.is_floating_point


def is_complex(input) -> bool:
    """Is the tensor's dtype a complex one (``ember.is_complex(t)``)?"""
    return input.dtype.is_complex


# ---- finfo / iinfo ------------------------------------------------------------------------

class finfo:
    """Machine limits of a floating (or complex: of its real part) dtype, with
    PyTorch's fields: bits, eps, max, min, tiny, smallest_normal, resolution, dtype.

    >>> ember.finfo(ember.bfloat16).eps
    0.0078125
    """

    def __init__(self, type=None) -> None:
        d = _default_float if type is None else as_dtype(type)
        if not (d.is_floating_point or d.is_complex):
            raise TypeError(f"ember.finfo() requires a floating point input type. Use "
                            f"ember.iinfo to handle '{d}'")
        real = d.to_real()
        info = ml_dtypes.finfo(real.np) if real is bfloat16 else np.finfo(real.np)
        self.bits = int(info.bits)
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.smallest_normal = self.tiny = float(info.smallest_normal)
        self.resolution = 10.0 ** -int(info.precision)   # PyTorch's: exactly a power of ten
        self.dtype = real.name

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
                f"tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype, with PyTorch's fields: bits, max, min, dtype.

    >>> ember.iinfo(ember.uint8).max
    255
    """

    def __init__(self, type) -> None:
        d = as_dtype(type)
        if d.category != 1:
            raise TypeError(f"{d} is not supported by ember.iinfo")
        info = np.iinfo(d.np)
        self.bits, self.max, self.min = int(info.bits), int(info.max), int(info.min)
        self.dtype = d.name

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
