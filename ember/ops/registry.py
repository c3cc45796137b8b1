"""The op registry: the one place where a primitive op is defined.

An ``OpDef`` says what an op is (its kind and dtype rule), how to run it eagerly on
NumPy or CuPy (``eager(xp, *arrays, **attrs)``), and its gradient (``vjp(g, out,
*inputs, **attrs)``, written with ember ops so that a traced backward is recorded like
any other code). Everything else in ember is composed from these primitives.
"""
from __future__ import annotations

import dis
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
                 "differentiable", "saves_out", "saves_inputs", "saves_varargs",
                 "data_dependent_shape", "effect", "view", "reads_for_others", "out_for",
                 "saves_any", "keeps_inputs", "refuses_bool", "checks_scalars",
                 "scalar_in_float32")

    def __init__(self, name: str, kind: str, eager: Callable, vjp: Callable | None = None,
                 *, dtype_rule: str = "promote", commutative: bool = False,
                 impure: bool = False, effect: bool = False, view: bool = False,
                 reads_for_others: tuple = (), out_for: tuple | None = None,
                 data_dependent_shape: Callable | None = None, refuses_bool: str = "",
                 checks_scalars: bool = False, scalar_in_float32: bool = False) -> None:
        assert dtype_rule in DTYPE_RULES, dtype_rule
        self.name = name
        # PyTorch's float16/bfloat16 kernel reads a scalar second operand in float32 and
        # rounds once (mul, div, floor_divide: dispatch._scalar_in_float32).
        self.scalar_in_float32 = scalar_in_float32
        # PyTorch's error for a bool operand (``mask - 1``), "" where bools are taken.
        self.refuses_bool = refuses_bool
        # A Python int outside an integer result dtype raises (PyTorch's checked
        # conversion) instead of wrapping as arithmetic's does (dispatch.constant).
        self.checks_scalars = checks_scalars
        self.kind = kind
        self.eager = eager
        self.vjp = vjp
        self.dtype_rule = dtype_rule
        self.commutative = commutative
        self.impure = impure  # random: never CSE'd, folded or replayed from a constant
        # A check (index ranges): run for the error it may raise, so dead-code removal
        # keeps it though nothing reads its result, and plans run it before anything else.
        self.effect = effect
        # args -> True when the output's shape depends on input values (x[mask]): a
        # compiled replay could not know it, so such a call is never traced.
        self.data_dependent_shape = data_dependent_shape
        # The eager result shares its first input's memory (a view, as in PyTorch): it
        # shares that storage's version counter too, and in-place writes through it reach
        # the base. reshape is a view only where the layout allows (else NumPy copies).
        self.view = view
        self.differentiable = vjp is not None
        # Whether the gradient reads the op's output: then writing into that output in
        # place before backward must raise (as in PyTorch) instead of giving wrong grads.
        # Likewise for inputs: ops like add or slice only look at an input's shape, so
        # changing that input in place afterwards is harmless (PyTorch allows it too).
        self.saves_out, self.saves_inputs, self.saves_varargs = _value_reads(vjp)
        self.saves_any = self.saves_out or any(self.saves_inputs) or self.saves_varargs
        # A Node of it keeps every input as it is (autograd._kept: no Unsaved records)
        self.keeps_inputs = all(self.saves_inputs) and (self.saves_varargs or vjp is None)
        # Finer, as PyTorch saves: inputs whose value only the *other* inputs' gradients
        # read (x in ``x * 3``, where 3 needs no gradient, may then change in place), and
        # the inputs whose gradients read the output (None: any).
        self.reads_for_others = reads_for_others
        self.out_for = out_for

    def saves_input(self, i: int) -> bool:
        """Does the gradient read the value of input ``i``?"""
        return self.saves_inputs[i] if i < len(self.saves_inputs) else self.saves_varargs

    def needs_saved(self, i: int | None, wants: tuple) -> bool:
        """Does backward read input ``i``'s value (``None``: the output's), given which
        inputs want a gradient (``wants[j]``)?"""
        if i is None:
            if not self.saves_out:
                return False
            return self.out_for is None or any(wants[j] for j in self.out_for if j < len(wants))
        if not self.saves_input(i):
            return False
        if i in self.reads_for_others:
            return any(w for j, w in enumerate(wants) if j != i)
        return True

    @property
    def elementwise(self) -> bool:
        return self.kind in ELEMENTWISE

    def __repr__(self) -> str:
        return f"OpDef({self.name}, {self.kind})"


# Reading only these from a tensor does not depend on its values.
_METADATA = frozenset(("shape", "dtype", "device", "ndim", "requires_grad", "new_zeros"))


def _value_reads(fn: Callable | None) -> tuple[bool, tuple[bool, ...], bool]:
    """Which arguments of ``vjp(g, out, *inputs, **attrs)`` it reads the values of:
    (out, each named input, the *inputs tuple). Found from the bytecode: a load of the
    argument not immediately followed by a metadata attribute counts as a read. Anything
    not understood counts as a read, so the version check errs on the safe side."""
    if fn is None:
        return False, (), False
    fn = getattr(fn, "__wrapped__", fn)   # a wrapper that only forwards its arguments
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount < 2:
        return True, (), True
    names = code.co_varnames[1:code.co_argcount]  # out, then the named inputs
    vararg = code.co_varnames[code.co_argcount + code.co_kwonlyargcount] \
        if code.co_flags & 0x04 else None  # CO_VARARGS
    read = {n: n in code.co_cellvars for n in names + ((vararg,) if vararg else ())}
    ins = list(dis.get_instructions(code))
    for k, i in enumerate(ins):
        if not i.opname.startswith("LOAD_FAST"):
            continue
        # Python 3.13 fuses two loads into one instruction with a tuple argval.
        vals = i.argval if isinstance(i.argval, tuple) else (i.argval,)
        nxt = ins[k + 1] if k + 1 < len(ins) else None
        meta = (len(vals) == 1 and nxt is not None and nxt.opname in ("LOAD_ATTR", "LOAD_METHOD")
                and nxt.argval in _METADATA)
        for v in vals:
            if v in read and not meta:
                read[v] = True
    return read[names[0]], tuple(read[n] for n in names[1:]), bool(vararg and read[vararg])


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
