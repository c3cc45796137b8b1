"""Data types and PyTorch's type-promotion rules.

ember has five dtypes. They happen to form a chain under PyTorch's promotion
(bool < int32 < int64 < float32 < float64; note int64 + float32 -> float32, unlike
NumPy), so promoting two dtypes is taking the larger one.
"""
from __future__ import annotations

import numpy as np


class DType:
    """A tensor element type, e.g. ``ember.float32``."""

    __slots__ = ("name", "np", "rank", "is_floating_point", "itemsize")

    def __init__(self, name: str, np_dtype: type, rank: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.rank = rank
        self.is_floating_point = name.startswith("float")
        self.itemsize = self.np.itemsize

    @property
    def category(self) -> int:
        """0 bool, 1 integer, 2 floating: what promotion compares first."""
        return 0 if self.rank == 0 else (2 if self.is_floating_point else 1)

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):  # pickles as the singleton
        return (dtype_of_name, (self.name,))


bool_ = DType("bool", np.bool_, 0)
int32 = DType("int32", np.int32, 1)
int64 = DType("int64", np.int64, 2)
float32 = DType("float32", np.float32, 3)
float64 = DType("float64", np.float64, 4)

ALL = (bool_, int32, int64, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}
# Aliases PyTorch users type.
_BY_NAME.update({"float": float32, "double": float64, "int": int32, "long": int64})

_default_float = float32


def dtype_of_name(name: str) -> DType:
    return _BY_NAME[name]


def from_numpy_dtype(npd) -> DType:
    """The ember dtype of a NumPy/CuPy dtype; narrower types map to the nearest ember one."""
    d = _BY_NP.get(npd)
    if d is not None:
        return d
    npd = np.dtype(npd)
    d = _BY_NP.get(npd)
    if d is not None:
        return d
    if npd.kind == "f":
        return float32 if npd.itemsize <= 4 else float64
    if npd.kind in "iu":
        return int32 if npd.itemsize < 4 or (npd.kind == "i" and npd.itemsize == 4) else int64
    if npd.kind == "b":
        return bool_
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
    if isinstance(d, str):
        try:
            return _BY_NAME[d.replace("ember.", "").replace("torch.", "")]
        except KeyError:
            raise TypeError(f"unknown dtype {d!r}") from None
    return from_numpy_dtype(d)


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(d) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating dtypes are allowed, got {d}")
    _default_float = d


def promote(a: DType, b: DType) -> DType:
    return a if a.rank >= b.rank else b


def scalar_dtype(v) -> DType:
    """The dtype a Python number takes part in promotion with ('wrapped numbers')."""
    if isinstance(v, bool):
        return bool_
    if isinstance(v, int):
        return int64
    return _default_float


def result_type(dim: DType | None, zero: DType | None, wrapped: DType | None) -> DType:
    """PyTorch's result_type: dimensioned tensors win within their category,
    then 0-dim tensors, then Python scalars (c10 combine_categories)."""
    return _combine(dim, _combine(zero, wrapped))


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point:
        return promote(higher, lower)
    return higher
