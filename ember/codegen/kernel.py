"""Kernel: the backend-neutral description of one fused group.

A kernel iterates over ``shape`` (C order). Its last ``reduce_dims`` dims are reduced:
for every index of the leading "outer" dims (a row), the kernel first computes each
reduction over the row's "inner" points, then evaluates and stores the per-point values.
``reduce_dims == 0`` is a plain elementwise kernel.

Each ``Load`` reads an input buffer at ``offset + sum(i_d * strides[d])`` (strides in
elements; 0 broadcasts along that dim, so expand, permute and basic slicing are index
arithmetic). ``exprs`` is a scalar SSA program:

    Expr("load", (k,), dtype)          value of loads[k] at this point
    Expr("const", (value,), dtype)     a literal
    Expr("scalar", (i,), dtype)        ``scalars[i]``, read at run time (a size-generic
                                       kernel's number that depends on sizes: mean's 1/N)
    Expr(op, (j, ...), dtype)          a registry elementwise op over earlier exprs
                                       ("cast" converts to ``dtype``)
    Expr("reduce_sum", (j,), dtype)    sum of expr j over the row's inner points
    Expr("reduce_max", (j,), dtype)    maximum of expr j over the row (NaN if any is NaN)

An expr is *row-level* if it is a reduction or all its operands are row-level or
constants; it has one value per row. A reduction's operand may use earlier reductions
(softmax: ``reduce_sum(exp(x - reduce_max(x)))``), so a backend computes reductions in
order, one pass over the row each (or fewer when they are independent).

Each ``Store`` writes expr ``expr`` to output buffer ``i`` (the i-th store) at
``sum(i_d * strides[d])``; a row-level store has stride 0 on every reduced dim and is
written once per row. Outputs are fresh arrays the runtime allocates.

Example: ``y = exp(x) * 2`` over a [4, 8] float32 ``x``:
    Kernel("k0", (4, 8), loads=[Load(0, f32, (8, 1))],
           exprs=[Expr("load", (0,), f32), Expr("exp", (0,), f32),
                  Expr("const", (2.0,), f32), Expr("mul", (1, 2), f32)],
           stores=[Store(3, (8, 1))])
Row softmax of a [4, 8] ``x``: shape (4, 8), reduce_dims=1, exprs
    0 load x; 1 reduce_max(0); 2 sub(0, 1); 3 exp(2); 4 reduce_sum(3); 5 div(3, 4)
and stores=[Store(5, (8, 1))].

A *size-generic* kernel (``generic=True``, made for compiled functions whose sizes vary:
dynamic shapes) is compiled once for every kernel of the same ``structure()``: after a
backend has collapsed its loops, every loop bound, every stride other than 0 and 1 and
every nonzero offset becomes a ``Param`` that the code reads at run time from one extra
int64 argument (``dims``), so a batch of 48 runs the machine code built for 64. So do its
``scalars`` (after the sizes, as float64 bits): the constants that differ between sizes,
such as the 1/N of a mean over a varying dim, which would otherwise make code per size.
"""
from __future__ import annotations

import struct

import threading
import weakref
from dataclasses import dataclass, field

from ember.dtypes import DType

REDUCTIONS = ("reduce_sum", "reduce_max")
LEAVES = ("load", "const", "scalar")   # exprs without operand exprs


@dataclass(frozen=True)
class Load:
    input: int                  # index of the kernel's input buffer
    dtype: DType
    strides: tuple[int, ...]    # element strides per iteration dim; 0 = broadcast
    offset: int = 0             # element offset of the first element
    # A hint: the input holds 0, 1, 2, ... along the kernel's single inner dim (an
    # ``arange`` constant). A backend may then turn a masked row sum
    # ``reduce_sum(where(eq(row_index, this), v, 0))`` into a read of ``v`` at
    # ``row_index`` (NLL's target gather); one that ignores it just loads the values.
    iota: bool = False


@dataclass(frozen=True)
class Expr:
    op: str
    args: tuple
    dtype: DType


@dataclass(frozen=True)
class Store:
    expr: int                   # the expr whose value is written
    strides: tuple[int, ...]    # element strides of the output per iteration dim


@dataclass
class Kernel:
    name: str
    shape: tuple[int, ...]
    loads: list[Load]
    exprs: list[Expr]
    stores: list[Store]         # (a bare expr index means ``Store(i, contiguous)``)
    reduce_dims: int = 0        # trailing dims of ``shape`` that are reduced
    ops: list[str] = field(default_factory=list)   # the primitive ops it fused, for explain()
    src: list[str] = field(default_factory=list)   # the user's lines they came from
    generic: bool = False       # sizes, strides and offsets read at run time (see above)
    # Per dim of ``shape``: whether a generic kernel's size there varies (read at run
    # time); the others are compiled in (a row length of 1024 keeps its unrolled loop).
    # None: all vary.
    varying: tuple | None = None
    scalars: tuple = ()         # the values of its "scalar" exprs (a generic kernel's)

    def __post_init__(self) -> None:
        # A bare expr index stores a C-contiguous output of ``shape`` (the common case).
        dense = contiguous_strides(self.shape)
        self.stores = [s if isinstance(s, Store) else Store(s, dense) for s in self.stores]

    @property
    def num_inputs(self) -> int:
        return 1 + max((ld.input for ld in self.loads), default=-1)

    @property
    def outer_shape(self) -> tuple[int, ...]:
        return self.shape[:len(self.shape) - self.reduce_dims]

    @property
    def inner_shape(self) -> tuple[int, ...]:
        return self.shape[len(self.shape) - self.reduce_dims:]

    def row_level(self) -> list[bool]:
        """For each expr: True if it has one value per row (see the module docstring)."""
        out: list[bool] = []
        for e in self.exprs:
            if e.op in REDUCTIONS:
                out.append(True)
            elif e.op == "load":
                out.append(self.reduce_dims > 0 and _zero_inner(self.loads[e.args[0]], self))
            elif e.op in ("const", "scalar"):
                out.append(True)
            else:
                out.append(all(out[a] for a in e.args))
        return out

    def cone(self, j: int, stop=lambda n: False) -> set[int]:
        """Expr ``j`` and the exprs it is computed from, not entering those where
        ``stop(n)`` is true (values a backend already has, say)."""
        out, stack = set(), [j]
        while stack:
            n = stack.pop()
            if n in out or stop(n):
                continue
            out.add(n)
            if self.exprs[n].op not in LEAVES:
                stack.extend(self.exprs[n].args)
        return out

    def validate(self) -> None:
        """Raise ValueError if the description is malformed (every backend calls this)."""
        nd = len(self.shape)
        for ld in self.loads:
            if len(ld.strides) != nd:
                raise ValueError(f"kernel {self.name}: load of input {ld.input} has strides "
                                 f"{ld.strides} for a {nd}-dim iteration space {self.shape}")
        row = self.row_level()
        for st in self.stores:
            if len(st.strides) != nd:
                raise ValueError(f"kernel {self.name}: store of expr {st.expr} has strides "
                                 f"{st.strides} for a {nd}-dim iteration space {self.shape}")
            # (An empty iteration space stores nothing: an empty view's strides are
            # whatever its producer left, zeros included, so the test would misfire.)
            if (self.reduce_dims and row[st.expr] and any(st.strides[nd - self.reduce_dims:])
                    and 0 not in self.shape):
                raise ValueError(f"kernel {self.name}: row-level expr {st.expr} is stored "
                                 "with nonzero strides on reduced dims")
        for i, e in enumerate(self.exprs):
            if e.op not in LEAVES and any(
                    isinstance(a, int) and not 0 <= a < i for a in e.args):
                raise ValueError(f"kernel {self.name}: expr {i} ({e.op}) must use earlier "
                                 "exprs")
            if e.op in REDUCTIONS and not self.reduce_dims:
                raise ValueError(f"kernel {self.name}: {e.op} in a kernel without reduce_dims")
            if e.op == "scalar" and not (self.generic and 0 <= e.args[0] < len(self.scalars)):
                raise ValueError(f"kernel {self.name}: scalar {e.args[0]} of "
                                 f"{len(self.scalars)} (generic kernels only)")

    def signature(self) -> tuple:
        """Everything the generated code depends on: equal signatures share machine code."""
        return (self.shape, self.reduce_dims, tuple(self.loads), _exact(tuple(self.exprs)),
                tuple(self.stores), self.generic, self.varying, _exact(tuple(self.scalars)))

    def structure(self) -> tuple:
        """What a size-generic kernel's code depends on besides its collapsed loop layout
        (which the backend adds, with ``template``, and anything else it decides from
        sizes, such as a sum's accumulator dtype): the loads' inputs, dtypes and hints, the
        exprs, which exprs are stored and which are row-level, never a size (nor a
        ``scalars`` value)."""
        row = tuple(self.row_level()) if self.reduce_dims else ()
        return (self.reduce_dims, tuple((ld.input, ld.dtype, ld.iota) for ld in self.loads),
                _exact(tuple(self.exprs)), tuple(st.expr for st in self.stores), row)


class Param(int):
    """A loop bound, stride or offset of a size-generic kernel. It computes and compares
    as this instance's value (so size arithmetic works unchanged), while a backend emits
    a run-time read of element ``index`` of the kernel's ``dims`` argument for it.

        >>> p = Param(48, 0); p * 2, template((p, 1))
        (96, (('P', 0), 1))
    """

    def __new__(cls, value: int, index: int) -> "Param":
        obj = super().__new__(cls, value)
        obj.index = index
        return obj

    def __repr__(self) -> str:
        return f"Param({int(self)}, {self.index})"


class Parametrizer:
    """Turns a collapsed layout's numbers into ``Param``s, in first-seen order; ``values``
    is the ``dims`` array the kernel is then called with. Sizes become Params, or those
    whose flag is set (``sizes(shape, flags)``: the dims that vary); strides and offsets
    of 0 and 1 stay literal (they decide broadcasting and vectorization, so they are
    part of the code's structure). A literal is part of the template, so it only ever
    meets its own value.

        >>> p = Parametrizer(); p.size(64), p.stride(1), p.stride(512), p.values
        (Param(64, 0), 1, Param(512, 1), [64, 512])
        >>> Parametrizer().sizes((64, 1024), (True, False))
        (Param(64, 0), 1024)
    """

    def __init__(self) -> None:
        self.values: list[int] = []

    def size(self, n: int) -> Param:
        self.values.append(int(n))
        return Param(n, len(self.values) - 1)

    def stride(self, s: int) -> int:
        return s if s in (0, 1) else self.size(s)

    def sizes(self, shape, flags=None) -> tuple:
        if flags is None:
            return tuple(self.size(n) for n in shape)
        return tuple(self.size(n) if f else n for n, f in zip(shape, flags))

    def strides(self, strides) -> tuple:
        return tuple(self.stride(s) for s in strides)


def template(x):
    """``x`` (nested tuples and lists of numbers) with each Param as ``("P", index)``:
    the part of a size-generic kernel's layout that its code depends on."""
    if isinstance(x, Param):
        return ("P", x.index)
    if isinstance(x, (tuple, list)):
        return tuple(template(v) for v in x)
    return x


def _exact(x):
    """``x`` with every float written exactly: -0.0 == 0.0 in Python, but 1/(x*-0.0)
    is not 1/(x*0.0), so two kernels differing only there must not share code."""
    if type(x) is float:   # a NaN's sign too: hex() writes both as 'nan'
        return ("float", x.hex() if x == x else struct.pack("<d", x).hex())
    if isinstance(x, Expr):
        return (x.op, _exact(x.args), x.dtype)
    if isinstance(x, tuple):
        return tuple(_exact(v) for v in x)
    return x


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


def collapse_dims(shape: tuple[int, ...], strides: list[tuple[int, ...]],
                  keep_unit: bool = False, flags: tuple | None = None):
    """Merge dims that every load walks the same way, so the innermost loop is long.

    Dim d merges into d+1 when each load has ``strides[d] == strides[d+1] * shape[d+1]``
    (contiguous, or broadcast along both); outputs are C-contiguous and always merge.
    Size-1 dims are dropped, unless ``keep_unit`` (a size-generic kernel: a size that is
    1 in this call is another size in the next, and its layout must not change).
    An empty iteration space gives ``(0,)``, a 0-dim one ``(1,)``. With ``flags`` (one
    bool per dim) it also returns each collapsed dim's flags OR-ed together.

        >>> collapse_dims((4, 8, 16), [(128, 16, 1), (0, 0, 1)])
        ((32, 16), [(16, 1), (0, 1)])
    """
    flags = tuple(flags) if flags is not None else None
    out = _collapse(shape, strides, keep_unit, flags or (False,) * len(shape))
    return out if flags is not None else out[:2]


def _collapse(shape, strides, keep_unit: bool, flags: tuple):
    if any(n == 0 for n in shape):
        return (0,), [(0,) for _ in strides], (False,)
    dims = [(n, [s[d] for s in strides], f) for d, (n, f) in enumerate(zip(shape, flags))
            if n != 1 or keep_unit]
    merged: list[tuple[int, list[int], bool]] = []
    for n, st, f in reversed(dims):
        if merged:
            inner_n, inner_st, inner_f = merged[-1]
            if all(a == b * inner_n for a, b in zip(st, inner_st)):
                merged[-1] = (n * inner_n, inner_st, f or inner_f)
                continue
        merged.append((n, st, f))
    merged.reverse()
    if not merged:
        return (1,), [(0,) for _ in strides], (False,)
    loop_shape = tuple(n for n, _, _ in merged)
    return (loop_shape, [tuple(st[i] for _, st, _ in merged) for i in range(len(strides))],
            tuple(f for _, _, f in merged))



def _zero_inner(load: Load, kernel: Kernel) -> bool:
    return all(s == 0 for s in load.strides[len(kernel.shape) - kernel.reduce_dims:])


class KernelCache(weakref.WeakValueDictionary):
    """Compiled code per ``Kernel.signature()``, built once even when threads race (each
    backend keeps one; clearing it forces fresh compiles). It holds the code weakly: the
    plans that use a kernel keep it alive, and when the last goes (a dropped cache entry,
    a dead compiled function) its machine code is freed."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def get_or_build(self, kernel: Kernel, build):
        sig = kernel.signature()
        compiled = self.get(sig)
        if compiled is None:
            with self._lock:
                compiled = self.get(sig)
                if compiled is None:
                    compiled = self[sig] = build(kernel)
        return compiled
