"""LLVM IR of a Kernel's loop nest: rows split across threads, one inner pass per
reduction, then the stores."""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
import llvmlite.ir as ir

from ember import dtypes
from ember.codegen.kernel import LEAVES, REDUCTIONS, Expr, Kernel, Load, Param, Parametrizer
from ember.dtypes import DType
from ember.codegen.kernel import collapse_dims, template
from ember.codegen.mathlib import DECOMPOSED
from ember.codegen.policy import accumulator_dtype
from ember.codegen.llvm.jit import _DATA_OFFSET, _target_machine
from ember.codegen.llvm.scalar import _I1, _I8, _I64, _PTR, _STORAGE_TYPE, _VALUE_TYPE, _Scalar


# ---- loop nest ------------------------------------------------------------------------

@dataclass
class _Layout:
    """The kernel's outer (row) and inner (reduced) loop nests after collapsing; the
    stride lists are the loads' then the stores'. For a size-generic kernel the numbers
    are ``Param``s and ``dims`` holds their values (see ``kernel.py``)."""
    outer_shape: tuple[int, ...]
    outer_strides: list[tuple[int, ...]]
    inner_shape: tuple[int, ...]
    inner_strides: list[tuple[int, ...]]
    empty: bool
    offsets: tuple[int, ...] = ()     # each load's element offset
    dims: tuple[int, ...] | None = None   # a generic kernel's run-time values
    # Whether the loads suit column order (``_column_layout``); the loop nest decides.
    column: bool = False

    @classmethod
    def of(cls, kernel: Kernel) -> "_Layout":
        split = len(kernel.shape) - kernel.reduce_dims
        strides = [ld.strides for ld in kernel.loads] + [st.strides for st in kernel.stores]
        unit = kernel.generic   # a generic kernel keeps size-1 dims (collapse_dims)
        # Which dims vary (a generic kernel reads those sizes at run time, see Kernel)
        flags = kernel.varying or (True,) * len(kernel.shape)
        outer, o_st, o_f = collapse_dims(kernel.shape[:split], [s[:split] for s in strides],
                                         unit, flags[:split])
        inner, i_st, i_f = collapse_dims(kernel.shape[split:], [s[split:] for s in strides],
                                         unit, flags[split:])
        if not kernel.reduce_dims:
            inner, i_st, i_f = (), [() for _ in strides], ()
        empty = outer == (0,) or (kernel.reduce_dims > 0 and inner == (0,) and not any(
            e.op in REDUCTIONS for e in kernel.exprs))
        offsets = tuple(ld.offset for ld in kernel.loads)
        column = (kernel.reduce_dims > 0 and not empty
                  and _column_layout(outer, o_st[:len(kernel.loads)], i_st[:len(kernel.loads)]))
        # (An empty dim collapses every stride to 0, which would read as a broadcast:
        # such a kernel keeps static code.)
        if not kernel.generic or empty or 0 in kernel.shape:
            return cls(outer, o_st, inner, i_st, empty, offsets, column=column)
        p = Parametrizer()
        outer, inner = p.sizes(outer, o_f), p.sizes(inner, i_f)
        # Along any dim but the innermost loop's, even a stride of 0 or 1 is read at run
        # time: a stride is a product of the sizes inside it, so at size 1 a contiguous
        # array has stride 1 where other sizes have a varying one, and the code must be
        # the same. (The innermost loop keeps them: its unit stride is what vectorizes.
        # In column order that is the last outer dim.)
        last_o = len(outer) - 1 if not kernel.reduce_dims or column else None
        o_st = [tuple(p.stride(s) if d == last_o else p.size(s) for d, s in enumerate(st))
                for st in o_st]
        i_st = [tuple(p.stride(s) if d == len(inner) - 1 else p.size(s)
                      for d, s in enumerate(st)) for st in i_st]
        offsets = p.strides(offsets)
        return cls(outer, o_st, inner, i_st, empty, offsets, tuple(p.values), column)

    def template(self) -> tuple:
        """The layout with each Param as its slot: what a generic kernel's code depends on."""
        return template((self.outer_shape, self.outer_strides, self.inner_shape,
                         self.inner_strides, self.offsets, self.column))


def float64_sums(layout: _Layout) -> bool:
    """Whether a row's float32 sum accumulates in float64 because float32 would add too
    many points one after another:

    - the innermost loop is short (a sum over [33, 130, *, 7] keeping dim 2: rows of
      30,030 points, 7 at a time) or reads no load contiguously (a sum of a transposed
      view): the vectorizer keeps no partial sums, so each point is added to one
      accumulator (float32 drifted 9e-5 relative on that row);
    - the row is long (over ``_FLOAT64_SUM_POINTS``): the vectorizer's 64 partial sums
      then each take over 128 points in turn. A bias gradient over [64, 6, 28, 28] (50,176
      points per channel) was 3e-4 off in float32, 10x NumPy's pairwise error, and failed
      the first call's check where a channel's sum nearly cancelled.

    Memory-bound either way: the wider adds cost no time. (Size-generic code reads the
    sizes of this call: the shared code's name includes the answer.)"""
    inner = layout.inner_shape
    if not inner:
        return False
    total = 1
    for n in inner:
        total *= int(n)
    loads = layout.inner_strides[:len(layout.offsets)]   # (the stores' follow)
    unit = any(st[-1] == 1 and not isinstance(st[-1], Param) for st in loads)
    return total > _FLOAT64_SUM_POINTS or (total > 1024 and (int(inner[-1]) < 64 or not unit))


# Points per float32 sum beyond which it accumulates in float64 (``float64_sums``): 128
# per partial sum of the vectorized loop.
_FLOAT64_SUM_POINTS = 8192


def _column_layout(outer, o_st: list, i_st: list) -> bool:
    """Whether loads with these collapsed strides (loads only, literal numbers) are
    reduced faster in column order (``_LoopNest._column_order``): every load that moves
    along the reduced dims moves by 0 or 1 along the last outer dim, and one by 1 there
    while its innermost reduced stride is not 1. Eight columns at least, to vectorize."""
    streamed = [n for n, st in enumerate(i_st) if any(st)]
    return (outer[-1] >= 8 and bool(streamed)
            and all(o_st[n][-1] in (0, 1) for n in streamed)
            and any(o_st[n][-1] == 1 and i_st[n][-1] != 1 for n in streamed))




def _new_module(name: str) -> ir.Module:
    module = ir.Module(name=name)
    module.triple = llvm.get_process_triple()
    module.data_layout = str(_target_machine().target_data)
    return module


def _add_kernel(module: ir.Module, kernel: Kernel, name: str, layout: _Layout) -> ir.Function:
    """Function ``name(inputs..., outputs..., [dims,] start, end)`` computing outer rows
    [start, end) of ``kernel`` (``dims``: a generic kernel's int64 values)."""
    nin, nout = kernel.num_inputs, len(kernel.stores) + (layout.dims is not None)
    fnty = ir.FunctionType(ir.VoidType(), [_PTR] * (nin + nout) + [_I64, _I64])
    fn = ir.Function(module, fnty, name=name)
    for arg in fn.args[:nin + nout]:
        # Outputs are fresh buffers; inputs are only read, so aliasing among them is fine.
        arg.add_attribute("noalias")
    _LoopNest(kernel, fn, layout).emit()
    return fn


def _build_module(kernel: Kernel, name: str, layout: _Layout) -> str:
    """The unoptimized LLVM IR text of ``kernel`` as function ``name`` (and ``name_py``)."""
    module = _new_module(name)
    nin, nout = kernel.num_inputs, len(kernel.stores) + (layout.dims is not None)
    fn = _add_kernel(module, kernel, name, layout)
    fnty = fn.function_type

    if _DATA_OFFSET is not None:
        # Entry point taking the ndarray objects (PyObject*): reads each data pointer.
        wrapper = ir.Function(module, fnty, name=name + "_py")
        b = ir.IRBuilder(wrapper.append_basic_block("entry"))
        ptrs = [b.load(b.gep(obj, [ir.Constant(_I64, _DATA_OFFSET)], source_etype=_I8),
                       typ=_PTR) for obj in wrapper.args[:nin + nout]]
        b.call(fn, ptrs + list(wrapper.args[nin + nout:]))
        b.ret_void()
    return str(module)


class _LoopNest:
    """Emits the loops of a kernel and the scalar code of its exprs.

    The outer dims (rows) form one loop nest, split across threads by its first loop.
    For each row, each pass of reductions (those that do not read one another) gets a
    loop nest over the inner dims that accumulates each into a stack slot (SROA turns it
    into a register; 'reassoc' on the accumulating add lets the vectorizer keep 16
    partial sums), then a last inner nest computes and stores the per-point outputs. Per-point values are recomputed in each pass instead of being
    kept: a row is in L1/L2 by then, and recomputing costs less than a round trip.
    """

    def __init__(self, kernel: Kernel, fn: ir.Function, layout: "_Layout") -> None:
        self.kernel = kernel
        self.fn = fn
        self.layout = layout
        nin = kernel.num_inputs
        self.in_ptrs = fn.args[:nin]
        self.out_ptrs = fn.args[nin:nin + len(kernel.stores)]
        self.dims_ptr = fn.args[nin + len(kernel.stores)] if layout.dims is not None else None
        self.dims: dict[int, object] = {}   # Param index -> its value, read in the entry
        self.start, self.end = fn.args[-2], fn.args[-1]
        self.plan()

    def plan(self) -> None:
        """Decide the loop structure from the kernel and its layout (no IR yet)."""
        kernel = self.kernel
        self.row_level = kernel.row_level() if kernel.reduce_dims else [True] * len(kernel.exprs)
        self.gathers, self.gathers_after = {}, {}
        self.passes = self._plan_passes() if kernel.reduce_dims else []
        self.pass_no = 0
        # Column order computes the per-point stores in its one pass, so nothing needs
        # stashing between passes. (Planning a stash first kept GELU's backward with its
        # bias gradient in row order: strided loads, erf and exp stashed and read back,
        # 3x slower.)
        self.stash = {}
        self.column = self._column_order()
        if not self.column:
            self.stash = self._plan_stash()

    def emit(self) -> None:
        b = self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.entry = b.block
        if self.layout.empty:
            b.ret_void()
            return
        k = self.kernel
        if self.dims_ptr is not None:   # every run-time size, read once up front
            for i in range(len(self.layout.dims)):
                v = b.load(b.gep(self.dims_ptr, [ir.Constant(_I64, i)], inbounds=True,
                                 source_etype=_I64), typ=_I64)
                self.dims[i] = v
            # then the kernel's scalars, as float64 bits
            self.scalars = [b.bitcast(b.load(b.gep(
                self.dims_ptr, [ir.Constant(_I64, len(self.layout.dims) + i)],
                inbounds=True, source_etype=_I64), typ=_I64), ir.DoubleType())
                for i in range(len(k.scalars))]
        zeros = [self._int(off) for off in self.layout.offsets]
        zeros += [ir.Constant(_I64, 0) for _ in k.stores]
        if self.column:
            self._columns(zeros)
        else:
            self._nest(self.layout.outer_shape, self.layout.outer_strides, zeros, self._row,
                       "o", parallel=True)
        self.b.ret_void()

    def _int(self, n: int):
        """An i64 of a layout number: a constant, or a generic kernel's run-time value."""
        return self.dims[n.index] if isinstance(n, Param) else ir.Constant(_I64, n)

    def _nest(self, shape, strides, offs: list, body, tag: str, parallel: bool = False):
        """Loops over ``shape``; ``body(offs)`` gets each stride list's element offset."""
        def level(depth: int, offs: list) -> None:
            if depth == len(shape):
                body(offs)
                return
            b = self.b
            lo = self.start if parallel and depth == 0 else ir.Constant(_I64, 0)
            hi = self.end if parallel and depth == 0 else self._int(shape[depth])
            pre = b.block
            loop = self.fn.append_basic_block(f"{tag}loop{depth}")
            done = self.fn.append_basic_block(f"{tag}done{depth}")
            b.cbranch(b.icmp_signed("<", lo, hi), loop, done)
            b.position_at_end(loop)
            i = b.phi(_I64, name=f"{tag}{depth}")
            i.add_incoming(lo, pre)
            offs = [off if _zero(st[depth]) else
                    b.add(off, b.mul(i, self._int(st[depth])))
                    for off, st in zip(offs, strides)]
            level(depth + 1, offs)
            nxt = b.add(i, ir.Constant(_I64, 1))
            i.add_incoming(nxt, b.block)
            b.cbranch(b.icmp_signed("<", nxt, hi), loop, done)
            b.position_at_end(done)
        level(0, offs)

    def _row(self, offs: list) -> None:
        """One row: its reductions pass by pass, then the stores."""
        k, lay = self.kernel, self.layout
        memo: dict[int, object] = {}
        nl = len(k.loads)
        self.pass_no = 0
        for r in self.gathers_after.get(-1, ()):
            self._gather(r, offs, memo)
        for p, group in enumerate(self.passes):
            for r in group:
                self._ensure_row(k.exprs[r].args[0], offs, memo)
            accs = [self._accumulator(k.exprs[r]) for r in group]

            def reduce_body(inner, group=group, accs=accs):
                local = dict(memo)
                for r, acc in zip(group, accs):
                    e = k.exprs[r]
                    self._accumulate(e, acc, self._value(e.args[0], inner, local))
                for j, (i, when) in self.stash.items():   # keep it for the later passes
                    if when == self.pass_no:
                        self._store(i, self._value(j, inner, local), inner[nl + i], expr=j)
            self._nest(lay.inner_shape, lay.inner_strides, offs, reduce_body, f"r{p}_")
            for r, acc in zip(group, accs):
                memo[r] = self._result(k.exprs[r], self.b.load(acc))
            self.pass_no += 1
            for r in self.gathers_after.get(p, ()):
                self._gather(r, offs, memo)
        point = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
        for i, st in enumerate(k.stores):
            if i not in point:
                self._store(i, self._value(st.expr, offs, memo), offs[nl + i])
        if point:
            for i in point:
                self._ensure_row(k.stores[i].expr, offs, memo)

            def body(inner):
                local = dict(memo)
                # Every value first: a stashed value is read from an output buffer that
                # the stores below overwrite.
                values = [self._value(k.stores[i].expr, inner, local) for i in point]
                for i, v in zip(point, values):
                    self._store(i, v, inner[nl + i])
            self._nest(lay.inner_shape, lay.inner_strides, offs, body, "s")

    # ---- column order: reductions across rows that lie side by side in memory ----------

    def _column_order(self) -> bool:
        """Whether to reduce in column order: a row's points are far apart in memory
        while neighbouring rows are adjacent (``x.sum(0)`` of a C-order matrix, the bias
        gradient of an NHWC product). Row order would then read a cache line once per
        row it holds, so instead each tile of neighbouring rows is reduced together: the
        reduced dims outermost, the tile's rows innermost, contiguous and vectorized.

        Where the layout suits it (``_column_layout``), for one pass of reductions (no
        gathers) whose per-point stores need no reduction: those are
        stored in the same pass (a bias gradient's kernel stores the gradient it sums,
        which the weight gradient's GEMM reads)."""
        k = self.kernel
        return (self.layout.column and len(self.passes) == 1 and not self.gathers
                and all(self.row_level[st.expr] or not any(
                    k.exprs[j].op in REDUCTIONS for j in k.cone(st.expr)) for st in k.stores))

    def _columns(self, zeros: list) -> None:
        """The kernel in column order (``_column_order``): the outer dims but the last
        as rows are (split across threads by the first), the last in tiles."""
        lay = self.layout
        outer = lay.outer_shape
        if len(outer) == 1:   # the threads split the columns themselves
            self._column_tiles(zeros, self.start, self.end)
            return
        last = self._int(outer[-1])
        self._nest(outer[:-1], [s[:-1] for s in lay.outer_strides], zeros,
                   lambda offs: self._column_tiles(offs, ir.Constant(_I64, 0), last), "o",
                   parallel=True)

    def _loop(self, lo, hi, body, tag: str, step: int = 1) -> None:
        """``for i in range(lo, hi, step): body(i)`` over i64 values."""
        b = self.b
        pre = b.block
        loop = self.fn.append_basic_block(f"{tag}loop")
        done = self.fn.append_basic_block(f"{tag}done")
        b.cbranch(b.icmp_signed("<", lo, hi), loop, done)
        b.position_at_end(loop)
        i = b.phi(_I64, name=tag)
        i.add_incoming(lo, pre)
        body(i)
        nxt = b.add(i, ir.Constant(_I64, step))
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, hi), loop, done)
        b.position_at_end(done)

    def _column_tiles(self, offs: list, lo, hi) -> None:
        """Columns [lo, hi) at ``offs``, ``_TILE`` at a time: each tile's accumulators
        live in a stack array, one per column."""
        k, lay, b = self.kernel, self.layout, self.b
        nl = len(k.loads)
        last = [s[-1] for s in lay.outer_strides]   # the loads', then the stores'
        group = self.passes[0]
        points = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
        slots = []
        for r in group:
            ty = _VALUE_TYPE[self._acc_dtype(k.exprs[r])]
            with b.goto_block(self.entry):
                b.position_at_start(self.entry)
                slots.append((b.alloca(ty, size=_TILE), ty))

        def at(base: list, t) -> list:   # offsets of column t of the tile
            return [o if _zero(s) else b.add(o, b.mul(t, self._int(s)))
                    for o, s in zip(base, last)]

        def tile(c0) -> None:
            n = b.sub(hi, c0)
            n = b.select(b.icmp_signed("<", n, ir.Constant(_I64, _TILE)), n,
                         ir.Constant(_I64, _TILE))
            base = at(offs, c0)
            zero = ir.Constant(_I64, 0)

            def init(t) -> None:
                for r, (slot, ty) in zip(group, slots):
                    b.store(self._identity(k.exprs[r], ty), b.gep(slot, [t], source_etype=ty))
            self._loop(zero, n, init, "ci")

            def point(inner: list) -> None:
                def column(t) -> None:
                    where, local = at(inner, t), {}
                    for r, (slot, ty) in zip(group, slots):
                        e = k.exprs[r]
                        self._accumulate(e, b.gep(slot, [t], source_etype=ty),
                                         self._value(e.args[0], where, local))
                    for i in points:
                        self._store(i, self._value(k.stores[i].expr, where, local),
                                    where[nl + i])
                self._loop(zero, n, column, "cr")
            self._nest(lay.inner_shape, lay.inner_strides, base, point, "r0_")

            def store(t) -> None:
                where = at(base, t)
                memo = {r: self._result(k.exprs[r],
                                        b.load(b.gep(slot, [t], source_etype=ty), typ=ty))
                        for r, (slot, ty) in zip(group, slots)}
                for i, st in enumerate(k.stores):
                    if i not in points:
                        self._store(i, self._value(st.expr, where, memo), where[nl + i])
            self._loop(zero, n, store, "cs")
        self._loop(lo, hi, tile, "ct", step=_TILE)

    def _plan_passes(self) -> list[list[int]]:
        """The reductions grouped into passes over the row: each joins the last pass
        unless it reads a reduction of that pass. layer_norm's sum and sum of squares, or
        its backward's two row sums, then share one read of the row. Gathers (see
        ``_gather_of``) take no pass: ``self.gathers_after[p]`` are computed once pass
        ``p`` is done (-1: before the first)."""
        k = self.kernel
        passes: list[list[int]] = []
        avail: dict[int, int] = {}     # reduction -> the pass after which it is known
        self.gathers: dict[int, tuple[int, int]] = {}
        self.gathers_after: dict[int, list[int]] = {}

        def deps(*roots: int) -> list[int]:
            return [d for j in roots for d in k.cone(j) if k.exprs[d].op in REDUCTIONS]
        for r, e in enumerate(k.exprs):
            if e.op not in REDUCTIONS:
                continue
            gather = self._gather_of(r)
            if gather is not None:
                self.gathers[r] = gather
                avail[r] = max((avail[d] for d in deps(*gather)), default=-1)
                self.gathers_after.setdefault(avail[r], []).append(r)
                continue
            need = max((avail[d] for d in deps(e.args[0])), default=-1)
            if passes and need < len(passes) - 1:
                passes[-1].append(r)
            else:
                passes.append([r])
            avail[r] = len(passes) - 1
        return passes

    def _gather_of(self, r: int) -> tuple[int, int] | None:
        """``(v, i)`` if reduction ``r`` is ``reduce_sum(where(eq(i, iota), v, 0))`` over
        one inner dim, with ``i`` a row-level integer and ``iota`` a load of 0..n-1
        (``Load.iota``): the sum is ``v`` at inner index ``i`` (0 if ``i`` is out of
        range), read directly instead of summed over the row."""
        k, lay = self.kernel, self.layout
        e = k.exprs[r]
        if e.op != "reduce_sum" or not e.dtype.is_floating_point or len(lay.inner_shape) != 1:
            return None
        w = k.exprs[e.args[0]]
        if w.op != "where" or w.dtype != e.dtype:
            return None
        c, v, z = w.args
        zero = k.exprs[z]
        if (k.exprs[c].op != "eq" or zero.op != "const" or zero.args[0] != 0
                or k.exprs[v].dtype != e.dtype):
            return None
        a, b = k.exprs[c].args
        for i, j in ((a, b), (b, a)):
            ld = k.exprs[j]
            if (ld.op != "load" or not k.loads[ld.args[0]].iota
                    or ld.dtype != k.exprs[i].dtype or ld.dtype.is_floating_point
                    or ld.dtype is dtypes.bool_ or not self.row_level[i]):
                continue
            n = ld.args[0]
            # (0 and 1 are never Params: a generic kernel's test is structural too)
            if (lay.offsets[n] == 0 and lay.inner_strides[n] == (1,)
                    and all(_zero(st) for st in lay.outer_strides[n])):
                return v, i
        return None

    def _gather(self, r: int, offs: list, memo: dict) -> None:
        """Gather ``r`` (``_gather_of``): ``v`` read at inner index ``i`` of this row."""
        b, k = self.b, self.kernel
        v, i = self.gathers[r]
        self._ensure_row(i, offs, memo)
        self._ensure_row(v, offs, memo)
        sc = _Scalar(b, self.fn)
        idx = sc.convert(self._value(i, offs, memo), k.exprs[i].dtype, dtypes.int64)
        n = self._int(self.layout.inner_shape[0])
        inside = b.and_(b.icmp_signed(">=", idx, ir.Constant(_I64, 0)),
                        b.icmp_signed("<", idx, n))
        at = b.select(inside, idx, ir.Constant(_I64, 0))   # index 0 always exists (n > 1)
        moved = [off if _zero(st[0]) else b.add(off, b.mul(at, self._int(st[0])))
                 for off, st in zip(offs, self.layout.inner_strides)]
        value = self._value(v, moved, dict(memo))
        ty = _VALUE_TYPE[k.exprs[r].dtype]
        # + 0.0 as the masked sum would (-0.0 becomes 0.0), 0 where no index matched.
        value = b.fadd(value, ir.Constant(ty, 0.0))
        memo[r] = b.select(inside, value, ir.Constant(ty, 0.0))

    def _plan_stash(self) -> dict[int, tuple[int, int]]:
        """Expensive per-point values (exp, log, ...) computed in a reduction pass and
        needed again later, each parked in a point-level output buffer of its dtype until
        the last pass overwrites it: softmax computes exp once, not twice.
        Returns expr -> (store index, pass number that writes it)."""
        k = self.kernel
        if not k.reduce_dims:
            return {}
        point_stores = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
        cones = [set().union(*(self._cone(k.exprs[r].args[0]) for r in group))
                 for group in self.passes]
        final = set().union(*(self._cone(k.stores[i].expr) for i in point_stores))
        stash, free = {}, list(point_stores)
        for p, cone in enumerate(cones):
            later = final.union(*cones[p + 1:])
            for j in sorted(cone & later, reverse=True):
                if k.exprs[j].op not in _EXPENSIVE or j in stash:
                    continue
                fits = [i for i in free if k.exprs[k.stores[i].expr].dtype == k.exprs[j].dtype]
                if fits:
                    stash[j] = (fits[0], p)
                    free.remove(fits[0])
        return stash

    def _cone(self, j: int) -> set[int]:
        """The per-point exprs that expr ``j`` is computed from (itself included)."""
        return self.kernel.cone(j, self.row_level.__getitem__)

    def _ensure_row(self, j: int, offs: list, memo: dict) -> None:
        """Compute the row-level exprs that expr ``j`` uses, here, before an inner loop
        (a value made inside the loop would not dominate later uses)."""
        for n in sorted(self.kernel.cone(j, memo.__contains__)):
            if self.row_level[n] and n not in memo:
                self._value(n, offs, memo)

    def _value(self, j: int, offs: list, memo: dict):
        """The SSA value of expr ``j`` at load offsets ``offs`` (memoized in ``memo``).

        Operands first, depth first in operand order, as a recursion would emit them,
        but with an explicit stack: a 20,000-op chain is 20,000 deep."""
        if j in memo:
            return memo[j]
        exprs = self.kernel.exprs
        stack = [j]
        while stack:
            n = stack[-1]
            if n in memo:
                stack.pop()
                continue
            e = exprs[n]
            parked = self.stash.get(n)
            if (e.op not in LEAVES and e.op not in REDUCTIONS
                    and not (parked is not None and self.pass_no > parked[1])):
                pending = next((a for a in e.args if a not in memo), None)
                if pending is not None:
                    stack.append(pending)
                    continue
            stack.pop()
            self._value_of(n, offs, memo)
        return memo[j]

    def _value_of(self, j: int, offs: list, memo: dict):
        """Emit expr ``j`` whose operands are all in ``memo``."""
        k, b = self.kernel, self.b
        e = k.exprs[j]
        parked = self.stash.get(j)
        if parked is not None and self.pass_no > parked[1]:   # computed in an earlier pass
            i = parked[0]
            dt = e.dtype
            v = b.load(b.gep(self.out_ptrs[i], [offs[len(k.loads) + i]], inbounds=True,
                             source_etype=_STORAGE_TYPE[dt]), typ=_STORAGE_TYPE[dt])
            if dt is dtypes.bool_:
                v = b.icmp_unsigned("!=", v, ir.Constant(_I8, 0))
            memo[j] = v
            return v
        if e.op == "load":
            ld: Load = k.loads[e.args[0]]
            ptr = b.gep(self.in_ptrs[ld.input], [offs[e.args[0]]], inbounds=True,
                        source_etype=_STORAGE_TYPE[ld.dtype])
            v = b.load(ptr, typ=_STORAGE_TYPE[ld.dtype])
            if ld.dtype is dtypes.bool_:
                v = b.icmp_unsigned("!=", v, ir.Constant(_I8, 0))
            v = _Scalar(b, self.fn).convert(v, ld.dtype, e.dtype)
        elif e.op == "const":
            v = self._constant(e)
        elif e.op == "scalar":
            v = self._scalar(e)
        elif e.op in REDUCTIONS:
            raise AssertionError(f"reduction {j} used before it was computed")
        else:
            args = [self._value(a, offs, memo) for a in e.args]
            arg_dtypes = [k.exprs[a].dtype for a in e.args]
            sc = _Scalar(b, self.fn)
            # A division stays a division, even by one row value: multiplying by the
            # reciprocal is 1 ulp off eager, and a compare or an int cast after it a
            # whole unit ((x / x.amax(-1, keepdim=True) * 255).long() gave 254 for
            # 255). softmax multiplies by its sum's reciprocal in eager, as torch does.
            v = sc.op(e.op, args, arg_dtypes, e.dtype)
        memo[j] = v
        return v

    def _constant(self, e: Expr):
        """A literal; but -inf in a kernel with a max reduction is read from a global, so
        that LLVM does not know it: knowing it, it rewrites ``maximum(acc, where(m, -inf,
        x))`` (a causal mask before softmax) into ``where(m, acc, maximum(acc, x))``, a
        reduction it then leaves scalar: 3x slower on minGPT's attention rows."""
        value = e.args[0]
        if not (e.dtype.is_floating_point and value == float("-inf")
                and any(x.op == "reduce_max" for x in self.kernel.exprs)):
            return _const(value, e.dtype)
        ty = _VALUE_TYPE[e.dtype]
        name = f"{self.fn.name}.neg_inf.{e.dtype.name}"
        gv = self.fn.module.globals.get(name)
        if gv is None:   # external linkage: no pass may assume it keeps its initializer
            gv = ir.GlobalVariable(self.fn.module, ty, name)
            gv.initializer = ir.Constant(ty, value)
            gv.align = 8
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            return self.b.load(gv, typ=ty)

    def _scalar(self, e: Expr):
        """A "scalar" expr: read from ``dims`` after the layout's values (float64 bits),
        or, in a generic kernel laid out statically (an empty dim), its value."""
        i = e.args[0]
        if self.dims_ptr is None:
            return _const(self.kernel.scalars[i], e.dtype)
        return _Scalar(self.b, self.fn).convert(self.scalars[i], dtypes.float64, e.dtype)

    def _accumulator(self, e: Expr):
        """A stack slot holding the reduction's identity (allocated in the entry block)."""
        ty = _VALUE_TYPE[self._acc_dtype(e)]
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            slot = self.b.alloca(ty)
        self.b.store(self._identity(e, ty), slot)
        return slot

    @staticmethod
    def _identity(e: Expr, ty) -> ir.Constant:
        """The value reduction ``e`` starts from, of accumulator type ``ty``."""
        if e.op == "reduce_sum":
            return ir.Constant(ty, 0.0 if e.dtype.is_floating_point else 0)
        if e.dtype.is_floating_point:
            return ir.Constant(ty, float("-inf"))
        if e.dtype is dtypes.bool_:
            return ir.Constant(ty, 0)
        return ir.Constant(ty, -(1 << (e.dtype.itemsize * 8 - 1)))

    def _accumulate(self, e: Expr, slot, v) -> None:
        b = self.b
        sc = _Scalar(b, self.fn)
        arg_dtype = self.kernel.exprs[e.args[0]].dtype
        acc_dtype = self._acc_dtype(e)
        acc = b.load(slot, typ=_VALUE_TYPE[acc_dtype])
        if e.op == "reduce_sum":
            if e.dtype.is_floating_point:
                # 'reassoc' lets the vectorizer keep 16 x 4 partial sums. 'nsz' too: a
                # short row of constant length (64) is unrolled before the loop
                # vectorizer runs, and only with it does the SLP vectorizer make the
                # 64 dependent adds a tree of vector adds (a layer_norm over 64
                # columns: 55 -> 11 ns a row). The sum starts from +0.0, so no
                # result's zero sign depends on it.
                v = sc.convert(sc.convert(v, arg_dtype, e.dtype), e.dtype, acc_dtype)
                new = b.fadd(acc, v, flags=("reassoc", "nsz", "contract"))
            else:
                new = b.add(acc, sc.convert(v, arg_dtype, e.dtype))
        elif e.dtype.is_floating_point:
            # NaN-propagating maximum, as torch.amax and np.max.
            v = sc.convert(v, arg_dtype, e.dtype)
            new = sc.call("maximum", acc, v)
        else:
            v = sc.convert(v, arg_dtype, e.dtype)
            gt = b.icmp_unsigned if e.dtype is dtypes.bool_ else b.icmp_signed
            new = b.select(gt(">", v, acc), v, acc)
        b.store(new, slot)

    def _result(self, e: Expr, acc):
        """A finished accumulator as the reduction's value. A float sum gets + 0.0 (no
        fast-math flags): 'nsz' on the accumulating adds lets LLVM drop the +0.0 they
        start from, which left a row of -0.0 summing to -0.0 (NumPy, torch: +0.0)."""
        sc = _Scalar(self.b, self.fn)
        acc_dtype = self._acc_dtype(e)
        if e.op == "reduce_sum" and acc_dtype.is_floating_point:
            acc = self.b.fadd(acc, sc.c(acc.type, 0.0))
        return sc.convert(acc, acc_dtype, e.dtype)

    def _acc_dtype(self, e: Expr) -> DType:
        """The accumulator dtype: the shared policy (``policy.accumulator_dtype``), but
        float64 for float32 sums whose points are added one by one: in column order, or
        where the innermost loop is too short for the vectorizer's partial sums or the row
        is long (``float64_sums``)."""
        if (e.op == "reduce_sum" and e.dtype is dtypes.float32
                and (self.column or float64_sums(self.layout))):
            return dtypes.float64
        return accumulator_dtype(self.kernel, e)

    def _store(self, i: int, v, off, expr: int | None = None) -> None:
        b, k = self.b, self.kernel
        dt = k.exprs[k.stores[i].expr if expr is None else expr].dtype
        if dt is dtypes.bool_:
            v = b.zext(v, _I8)
        b.store(v, b.gep(self.out_ptrs[i], [off], inbounds=True, source_etype=_STORAGE_TYPE[dt]))


def _zero(stride) -> bool:
    """A literal stride of 0 (a broadcast), never a Param that is 0 in this instance:
    code shared by every size must not depend on one size's values."""
    return stride == 0 and not isinstance(stride, Param)


def _const(value, dt: DType) -> ir.Constant:
    if dt.is_floating_point:
        return ir.Constant(_VALUE_TYPE[dt], float(value))
    if dt is dtypes.bool_:
        return ir.Constant(_I1, int(bool(value)))
    bits = dt.itemsize * 8
    v = int(value) & ((1 << bits) - 1)   # integer literals wrap like NumPy casts
    return ir.Constant(_VALUE_TYPE[dt], v - (1 << bits) if v >> (bits - 1) else v)



# Columns reduced together in column order (``_LoopNest._column_tiles``): 2 KiB of
# float64 accumulators, and a contiguous run of 1 KiB of float32 per reduced point.
_TILE = 256

# Per-point ops worth keeping in memory between passes rather than computing again.
_EXPENSIVE = frozenset(("pow", "sin", "cos")) | frozenset(DECOMPOSED)
