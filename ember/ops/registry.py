"""The op registry: the one place where a primitive op is defined.

An ``OpDef`` says what an op is (its kind and dtype rule), how to run it eagerly on
NumPy or CuPy (``eager(xp, *arrays, **attrs)``), and its gradient (``vjp(g, out,
*inputs, **attrs)``, written with ember ops so that a traced backward is recorded like
any other code). Everything else in ember is composed from these primitives.
"""
from __future__ import annotations

from typing import Callable

# Kinds of op. Elementwise ops broadcast their inputs and promote their dtypes.
UNARY, BINARY, TERNARY = "unary", "binary", "ternary"
REDUCE, MOVEMENT, EXTERN, RANDOM, INDEX, CREATION = (
    "reduce", "movement", "extern", "random", "index", "creation")
ELEMENTWISE = frozenset((UNARY, BINARY, TERNARY))

# dtype rules of elementwise ops (others compute their dtype in ``eager``):
#   "promote": PyTorch's result_type of the inputs
#   "float":   as promote, but integers become the default float (exp, div, ...)
#   "bool":    computed in the promoted type, result is bool (comparisons)
#   "where":   the first input is the bool condition; the others promote
DTYPE_RULES = ("promote", "float", "bool", "where")


class OpDef:
    """A primitive op: kind, dtype rule, eager implementation and gradient."""

    __slots__ = ("name", "kind", "eager", "vjp", "dtype_rule", "commutative", "impure",
                 "differentiable")

    def __init__(self, name: str, kind: str, eager: Callable, vjp: Callable | None = None,
                 *, dtype_rule: str = "promote", commutative: bool = False,
                 impure: bool = False) -> None:
        assert dtype_rule in DTYPE_RULES, dtype_rule
        self.name = name
        self.kind = kind
        self.eager = eager
        self.vjp = vjp
        self.dtype_rule = dtype_rule
        self.commutative = commutative
        self.impure = impure  # random: never CSE'd, folded or replayed from a constant
        self.differentiable = vjp is not None

    @property
    def elementwise(self) -> bool:
        return self.kind in ELEMENTWISE

    def __repr__(self) -> str:
        return f"OpDef({self.name}, {self.kind})"


OPS: dict[str, OpDef] = {}


def defop(name: str, kind: str, eager: Callable, vjp: Callable | None = None,
          **flags) -> OpDef:
    """Register a primitive; names are unique."""
    if name in OPS:
        raise ValueError(f"op {name!r} is already registered")
    op = OPS[name] = OpDef(name, kind, eager, vjp, **flags)
    return op


def get(name: str) -> OpDef:
    return OPS[name]
