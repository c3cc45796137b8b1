"""Kernel: the backend-neutral description of one fused group.

A kernel iterates over ``shape`` (C order). Each ``Load`` reads an input buffer at
``offset + sum(i_d * strides[d])`` (strides in elements; 0 broadcasts along that dim, so
movement ops such as expand, permute and basic slicing become index arithmetic). ``exprs``
is a scalar SSA program evaluated at every point; ``stores`` name the exprs written to the
output buffers, each a fresh C-contiguous array of ``shape``.

    exprs[i] = Expr("load", (k,), dtype)       value of loads[k] at this point
    exprs[i] = Expr("const", (value,), dtype)  a literal
    exprs[i] = Expr(op, (j, ...), dtype)       a registry elementwise op over earlier exprs
                                               ("cast" converts to ``dtype``)

Example: ``y = exp(x) * 2`` over a [4, 8] float32 ``x``:
    Kernel("k0", (4, 8), loads=[Load(0, float32, (8, 1))],
           exprs=[Expr("load", (0,), f32), Expr("exp", (0,), f32),
                  Expr("const", (2.0,), f32), Expr("mul", (1, 2), f32)], stores=[3])
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.dtypes import DType


@dataclass(frozen=True)
class Load:
    input: int                  # index of the kernel's input buffer
    dtype: DType
    strides: tuple[int, ...]    # element strides per iteration dim; 0 = broadcast
    offset: int = 0             # element offset of the first element


@dataclass(frozen=True)
class Expr:
    op: str
    args: tuple
    dtype: DType


@dataclass
class Kernel:
    name: str
    shape: tuple[int, ...]
    loads: list[Load]
    exprs: list[Expr]
    stores: list[int]
    ops: list[str] = field(default_factory=list)   # the primitive ops it fused, for explain()
    src: list[str] = field(default_factory=list)   # the user's lines they came from

    @property
    def num_inputs(self) -> int:
        return 1 + max((ld.input for ld in self.loads), default=-1)

    def signature(self) -> tuple:
        """Everything the generated code depends on: equal signatures share machine code."""
        return (self.shape, tuple(self.loads), tuple(self.exprs), tuple(self.stores))
