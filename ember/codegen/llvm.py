"""CPU backend: one fused ``Kernel`` (elementwise, or row reductions) -> LLVM IR -> native vector code.

``compile_kernel(kernel)`` builds one LLVM function per kernel with llvmlite's IRBuilder,
optimizes it at O3 for the host CPU (AVX-512 here), JIT-compiles it with MCJIT and
returns a ``CompiledKernel`` whose ``run(inputs, outputs)`` calls it through ctypes:

    >>> from ember import dtypes as dt
    >>> from ember.codegen.kernel import Expr, Kernel, Load
    >>> k = Kernel("k0", (4, 8), loads=[Load(0, dt.float32, (8, 1))],
    ...            exprs=[Expr("load", (0,), dt.float32), Expr("exp", (0,), dt.float32)],
    ...            stores=[1])   # a bare index: a C-contiguous output of shape
    >>> x = np.ones((4, 8), np.float32); y = np.empty_like(x)
    >>> compile_kernel(k).run([x], [y]); float(y[0, 0])
    2.7182817459106445

The loop nest is collapsed as far as the strides allow, so a contiguous kernel is one
long unit-stride loop that LLVM's loop vectorizer turns into 16-lane AVX-512 code.
exp and log are our own polynomials (``llvm.exp`` and libm calls stay scalar, about 10x
slower, DESIGN section 6); tanh, sigmoid, erf and float32 pow are built from them.
Large kernels split their outermost loop across a persistent thread pool: ctypes
releases the GIL during the call.
"""
from __future__ import annotations

import ctypes
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np

from ember import dtypes
from ember.codegen.kernel import REDUCTIONS, Expr, Kernel, KernelCache, Load
from ember.dtypes import DType

__all__ = ["compile_kernel", "compile_kernels", "CompiledKernel", "CompiledKernels",
           "collapse_dims", "estimate_ns"]

# Kernels whose estimated single-thread time is at least this (ns) run on all cores.
# Waking a pool thread costs ~20-100 us on this VM (measured), so the split pays from
# ~250 us of work: ~256K elements of the 17-op chain, ~512K of a plain add.
PARALLEL_MIN_NS = 250_000
# Rough single-core costs (ns) behind that estimate, measured on 1M-element kernels:
# streaming memory ~25 GB/s; exp/log/tanh/sigmoid/erf ~0.3 ns; other ops ~0.05 ns.
_NS_PER_BYTE = 1 / 25
_NS_PER_OP = {"exp": 0.3, "log": 0.3, "tanh": 0.3, "sigmoid": 0.35, "erf": 0.3,
              "pow": 1.0, "sin": 5.0, "cos": 5.0}


def compile_kernel(kernel: Kernel) -> "CompiledKernel":
    """Machine code for ``kernel``; equal kernels (by ``kernel.signature()``) compile once."""
    return _CACHE.get_or_build(kernel, CompiledKernel)


class CompiledKernel:
    """A JIT-compiled kernel: ``run(inputs, outputs)`` fills ``outputs`` in place.

    ``inputs`` are the kernel's input arrays (any strides: the Loads' element strides
    and offsets are compiled in, relative to each array's data pointer); ``outputs`` are
    C-contiguous arrays of ``kernel.shape`` with the stored exprs' dtypes.
    """

    def __init__(self, kernel: Kernel) -> None:
        kernel.validate()
        self.name = _ident(kernel.name)
        self.shape = tuple(kernel.shape)
        self.num_inputs = kernel.num_inputs
        self.num_outputs = len(kernel.stores)
        self.out_dtypes = [kernel.exprs[s.expr].dtype for s in kernel.stores]
        self._out_np = [d.np for d in self.out_dtypes]
        # Elements each output holds: the product of the dims its store walks.
        self.out_sizes = [math.prod(n for n, st in zip(self.shape, s.strides) if st)
                          for s in kernel.stores]
        self.size = math.prod(self.shape)
        self.layout = _Layout.of(kernel)
        self.loop_shape = self.layout.outer_shape
        self.source = _build_module(kernel, self.name, self.layout)
        self._engine, self._module = _jit(self.source)
        nargs = self.num_inputs + self.num_outputs
        i64 = ctypes.c_int64
        # Passing the arrays themselves and reading their data pointer inside the
        # generated code costs ~0.7 us a call; asking NumPy (.ctypes.data or
        # __array_interface__) costs ~0.8-1.2 us per array (measured).
        if _DATA_OFFSET is not None:
            ftype = ctypes.CFUNCTYPE(None, *([ctypes.py_object] * nargs), i64, i64)
            self._cfunc = ftype(self._engine.get_function_address(self.name + "_py"))
            self._by_object = True
        else:  # pragma: no cover - NumPy with an unexpected object layout
            ftype = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nargs), i64, i64)
            self._cfunc = ftype(self._engine.get_function_address(self.name))
            self._by_object = False
        outer = self.loop_shape[0]
        self._outer = outer
        self._chunks = None
        nthreads = min(os.cpu_count() or 1, outer)
        self.estimated_ns = estimate_ns(kernel)
        if self.estimated_ns >= PARALLEL_MIN_NS and nthreads > 1:
            bounds = [outer * t // nthreads for t in range(nthreads + 1)]
            self._chunks = list(zip(bounds[:-1], bounds[1:]))

    def run(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """Compute the kernel over ``inputs`` into the preallocated ``outputs``."""
        # The generated code trusts its arguments: it reads ndarray fields and writes
        # whole outputs. Types, shapes and dtypes are checked (~0.2 us); contiguity of the
        # outputs is the caller's promise (checking it would cost as much again).
        if len(inputs) != self.num_inputs or len(outputs) != self.num_outputs:
            self._reject(inputs, outputs)
        for a in inputs:
            if type(a) is not _NDARRAY:
                self._reject(inputs, outputs)
        for o, npd, n in zip(outputs, self._out_np, self.out_sizes):
            if type(o) is not _NDARRAY or o.dtype is not npd or o.size != n:
                self._reject(inputs, outputs)
        chunks = self._chunks
        if chunks is None:
            if not self.layout.empty:
                if self._by_object:
                    self._cfunc(*inputs, *outputs, 0, self._outer)
                else:  # pragma: no cover
                    self._cfunc(*[a.ctypes.data for a in (*inputs, *outputs)], 0, self._outer)
            return
        if self._by_object:
            args = [*inputs, *outputs]
        else:  # pragma: no cover
            args = [a.ctypes.data for a in (*inputs, *outputs)]
        pool = _pool()
        futures = [pool.submit(self._cfunc, *args, lo, hi) for lo, hi in chunks[1:]]
        self._cfunc(*args, *chunks[0])  # the calling thread takes a share too
        for f in futures:
            f.result()

    def _reject(self, inputs: list, outputs: list) -> None:
        """Raise for arguments the fast checks in ``run`` did not accept, unless they are
        valid after all (ndarray subclasses, equal but distinct dtype objects)."""
        if len(inputs) != self.num_inputs or len(outputs) != self.num_outputs:
            raise ValueError(f"kernel {self.name} takes {self.num_inputs} inputs and "
                             f"{self.num_outputs} outputs, got {len(inputs)} and "
                             f"{len(outputs)}")
        for a in inputs:
            if not isinstance(a, _NDARRAY):
                raise TypeError(f"kernel {self.name}: inputs must be NumPy arrays, "
                                f"got {type(a).__name__}")
        for o, npd, n in zip(outputs, self._out_np, self.out_sizes):
            if not (isinstance(o, _NDARRAY) and o.size == n and o.dtype == npd):
                raise ValueError(f"kernel {self.name}: outputs must be "
                                 f"{[d.name for d in self._out_np]} arrays of "
                                 f"{self.out_sizes} elements")

    def optimized_ir(self) -> str:
        """The LLVM IR after the O3 pipeline (vectorized loops show as <16 x float>)."""
        return str(self._module)

    def asm(self) -> str:
        """The host assembly of the optimized module."""
        return _target_machine().emit_assembly(llvm.parse_assembly(self.optimized_ir()))

    def __repr__(self) -> str:
        return (f"CompiledKernel({self.name}, shape={self.shape}, "
                f"loops={self.loop_shape}, threads={len(self._chunks or [0])})")


# ---- horizontal fusion ----------------------------------------------------------------

def compile_kernels(kernels: list[Kernel], name: str) -> "CompiledKernels":
    """Independent kernels (of any shapes) as one machine-code function, one call."""
    return CompiledKernels(kernels, name)


class CompiledKernels:
    """Several independent kernels run by one call: ``run([[inputs...], ...],
    [[outputs...], ...])``. The outer rows of all of them form one range that threads
    split, so e.g. every parameter's optimizer update is one call over all cores.

        >>> multi = compile_kernels([k1, k2], "updates")
        >>> multi.run([[x1], [x2]], [[y1], [y2]])
    """

    def __init__(self, kernels: list[Kernel], name: str) -> None:
        if _DATA_OFFSET is None:  # pragma: no cover
            raise NotImplementedError("horizontal fusion needs ndarray data pointer offsets")
        self.name = _ident(name)
        self.parts = [CompiledKernel.__new__(CompiledKernel) for _ in kernels]
        module = _new_module(self.name)
        subs, bounds, total = [], [], 0
        for i, (k, part) in enumerate(zip(kernels, self.parts)):
            k.validate()
            part.name, part.shape = f"{self.name}_{i}", tuple(k.shape)
            part.num_inputs, part.num_outputs = k.num_inputs, len(k.stores)
            part.out_dtypes = [k.exprs[s.expr].dtype for s in k.stores]
            part._out_np = [d.np for d in part.out_dtypes]
            part.out_sizes = [math.prod(n for n, st in zip(part.shape, s.strides) if st)
                              for s in k.stores]
            part.layout = _Layout.of(k)
            rows = 0 if part.layout.empty else part.layout.outer_shape[0]
            subs.append(_add_kernel(module, k, part.name, part.layout))
            bounds.append((total, rows))
            total += rows
        self._rows = total
        self.nargs = sum(p.num_inputs + p.num_outputs for p in self.parts)
        self._driver(module, subs, bounds)
        self.source = str(module)
        self._engine, self._module = _jit(self.source)
        ftype = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
        self._cfunc = ftype(self._engine.get_function_address(self.name))
        self._argv = ctypes.py_object * self.nargs
        self.estimated_ns = sum(estimate_ns(k) for k in kernels)
        nthreads = min(os.cpu_count() or 1, total)
        self._chunks = None
        if self.estimated_ns >= PARALLEL_MIN_NS and nthreads > 1:
            cuts = [total * t // nthreads for t in range(nthreads + 1)]
            self._chunks = list(zip(cuts[:-1], cuts[1:]))

    def _driver(self, module, subs, bounds) -> None:
        """``name(PyObject** arrays, start, end)``: each part gets its share of the rows."""
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_PTR, _I64, _I64]),
                         name=self.name)
        argv, start, end = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        k = 0
        for sub, (lo, rows), part in zip(subs, bounds, self.parts):
            n = part.num_inputs + part.num_outputs
            ptrs = []
            for j in range(k, k + n):
                obj = b.load(b.gep(argv, [ir.Constant(_I64, j)], source_etype=_PTR), typ=_PTR)
                ptrs.append(b.load(b.gep(obj, [ir.Constant(_I64, _DATA_OFFSET)],
                                         source_etype=_I8), typ=_PTR))
            k += n
            # rows [start, end) of the whole range, clipped to this part's [lo, lo + rows)
            s = b.sub(start, ir.Constant(_I64, lo))
            e = b.sub(end, ir.Constant(_I64, lo))
            zero, top = ir.Constant(_I64, 0), ir.Constant(_I64, rows)
            s = b.select(b.icmp_signed("<", s, zero), zero, s)
            e = b.select(b.icmp_signed(">", e, top), top, e)
            with b.if_then(b.icmp_signed("<", s, e)):
                b.call(sub, ptrs + [s, e])
        b.ret_void()

    def run(self, inputs: list[list[np.ndarray]], outputs: list[list[np.ndarray]]) -> None:
        flat = []
        for part, ins, outs in zip(self.parts, inputs, outputs):
            if len(ins) != part.num_inputs or len(outs) != part.num_outputs or any(
                    type(a) is not _NDARRAY for a in ins) or any(
                    type(o) is not _NDARRAY or o.dtype is not d or o.size != n
                    for o, d, n in zip(outs, part._out_np, part.out_sizes)):
                part._reject(ins, outs)
            flat.extend(ins)
            flat.extend(outs)
        if len(inputs) != len(self.parts):
            raise ValueError(f"{self.name} runs {len(self.parts)} kernels, got "
                             f"{len(inputs)} input lists")
        argv = self._argv(*flat)
        addr = ctypes.addressof(argv)
        if self._chunks is None:
            self._cfunc(addr, 0, self._rows)
            return
        pool = _pool()
        futures = [pool.submit(self._cfunc, addr, lo, hi) for lo, hi in self._chunks[1:]]
        self._cfunc(addr, *self._chunks[0])
        for f in futures:
            f.result()

    def optimized_ir(self) -> str:
        return str(self._module)

    def asm(self) -> str:
        return _target_machine().emit_assembly(llvm.parse_assembly(self.optimized_ir()))


# ---- loop nest ------------------------------------------------------------------------

@dataclass
class _Layout:
    """The kernel's outer (row) and inner (reduced) loop nests after collapsing; the
    stride lists are the loads' then the stores'."""
    outer_shape: tuple[int, ...]
    outer_strides: list[tuple[int, ...]]
    inner_shape: tuple[int, ...]
    inner_strides: list[tuple[int, ...]]
    empty: bool

    @classmethod
    def of(cls, kernel: Kernel) -> "_Layout":
        split = len(kernel.shape) - kernel.reduce_dims
        strides = [ld.strides for ld in kernel.loads] + [st.strides for st in kernel.stores]
        outer, o_st = collapse_dims(kernel.shape[:split], [s[:split] for s in strides])
        inner, i_st = collapse_dims(kernel.shape[split:], [s[split:] for s in strides])
        if not kernel.reduce_dims:
            inner, i_st = (), [() for _ in strides]
        empty = outer == (0,) or (kernel.reduce_dims > 0 and inner == (0,) and not any(
            e.op in REDUCTIONS for e in kernel.exprs))
        return cls(outer, o_st, inner, i_st, empty)


def collapse_dims(shape: tuple[int, ...], strides: list[tuple[int, ...]]
                  ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Merge dims that every load walks the same way, so the innermost loop is long.

    Dim d merges into d+1 when each load has ``strides[d] == strides[d+1] * shape[d+1]``
    (contiguous, or broadcast along both); outputs are C-contiguous and always merge.
    Size-1 dims are dropped. An empty iteration space gives ``(0,)``, a 0-dim one ``(1,)``.

        >>> collapse_dims((4, 8, 16), [(128, 16, 1), (0, 0, 1)])
        ((32, 16), [(16, 1), (0, 1)])
    """
    if any(n == 0 for n in shape):
        return (0,), [(0,) for _ in strides]
    dims = [(n, [s[d] for s in strides]) for d, n in enumerate(shape) if n != 1]
    merged: list[tuple[int, list[int]]] = []
    for n, st in reversed(dims):
        if merged:
            inner_n, inner_st = merged[-1]
            if all(a == b * inner_n for a, b in zip(st, inner_st)):
                merged[-1] = (n * inner_n, inner_st)
                continue
        merged.append((n, st))
    merged.reverse()
    if not merged:
        return (1,), [(0,) for _ in strides]
    loop_shape = tuple(n for n, _ in merged)
    return loop_shape, [tuple(st[i] for _, st in merged) for i in range(len(strides))]


def estimate_ns(kernel: Kernel) -> float:
    """A rough single-thread run time of ``kernel`` (ns), to decide on threading."""
    per_elem = sum(ld.dtype.itemsize for ld in kernel.loads if any(ld.strides))
    per_elem += sum(kernel.exprs[s.expr].dtype.itemsize for s in kernel.stores)
    per_elem *= _NS_PER_BYTE
    per_elem += sum(_NS_PER_OP.get(e.op, 0.05) for e in kernel.exprs
                    if e.op not in ("load", "const"))
    passes = 1 + sum(e.op in REDUCTIONS for e in kernel.exprs)  # each reduction re-reads
    return math.prod(kernel.shape) * per_elem * passes


def _ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name or "kernel")
    return ident if not ident[0].isdigit() else "k_" + ident


# ---- IR construction ------------------------------------------------------------------

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()
_PTR = ir.PointerType()
_VALUE_TYPE = {dtypes.float32: _F32, dtypes.float64: _F64, dtypes.int32: _I32,
               dtypes.int64: _I64, dtypes.bool_: _I1}
_STORAGE_TYPE = {**_VALUE_TYPE, dtypes.bool_: _I8}   # NumPy stores bool as a byte

# Only 'contract' (lets the backend fuse a*b+c into an FMA, which is more accurate, not
# less). 'nnan'/'ninf' would let LLVM drop the NaN/inf handling that where() and the
# compares must keep; 'reassoc' would undo the hi/lo splits of the exp/log range
# reductions. Elementwise loops vectorize without any of them.
_FMF = ("contract",)


def _new_module(name: str) -> ir.Module:
    module = ir.Module(name=name)
    module.triple = llvm.get_process_triple()
    module.data_layout = str(_target_machine().target_data)
    return module


def _add_kernel(module: ir.Module, kernel: Kernel, name: str, layout: _Layout) -> ir.Function:
    """Function ``name(inputs..., outputs..., start, end)`` computing outer rows
    [start, end) of ``kernel``."""
    nin, nout = kernel.num_inputs, len(kernel.stores)
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
    nin, nout = kernel.num_inputs, len(kernel.stores)
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
    For each row, every reduction gets a loop nest over the inner dims that accumulates
    into a stack slot (SROA turns it into a register; 'reassoc' on the accumulating add
    lets the vectorizer keep 16 partial sums), then a last inner nest computes and stores
    the per-point outputs. Per-point values are recomputed in each pass instead of being
    kept: a row is in L1/L2 by then, and recomputing costs less than a round trip.
    """

    def __init__(self, kernel: Kernel, fn: ir.Function, layout: "_Layout") -> None:
        self.kernel = kernel
        self.fn = fn
        self.layout = layout
        nin = kernel.num_inputs
        self.in_ptrs = fn.args[:nin]
        self.out_ptrs = fn.args[nin:nin + len(kernel.stores)]
        self.start, self.end = fn.args[-2], fn.args[-1]
        self.row_level = kernel.row_level() if kernel.reduce_dims else [True] * len(kernel.exprs)
        self.stash = self._plan_stash()
        self.pass_no = 0

    def emit(self) -> None:
        b = self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.entry = b.block
        if self.layout.empty:
            b.ret_void()
            return
        k = self.kernel
        zeros = [ir.Constant(_I64, ld.offset) for ld in k.loads]
        zeros += [ir.Constant(_I64, 0) for _ in k.stores]
        self._nest(self.layout.outer_shape, self.layout.outer_strides, zeros, self._row,
                   "o", parallel=True)
        self.b.ret_void()

    def _nest(self, shape, strides, offs: list, body, tag: str, parallel: bool = False):
        """Loops over ``shape``; ``body(offs)`` gets each stride list's element offset."""
        def level(depth: int, offs: list) -> None:
            if depth == len(shape):
                body(offs)
                return
            b = self.b
            lo = self.start if parallel and depth == 0 else ir.Constant(_I64, 0)
            hi = self.end if parallel and depth == 0 else ir.Constant(_I64, shape[depth])
            pre = b.block
            loop = self.fn.append_basic_block(f"{tag}loop{depth}")
            done = self.fn.append_basic_block(f"{tag}done{depth}")
            b.cbranch(b.icmp_signed("<", lo, hi), loop, done)
            b.position_at_end(loop)
            i = b.phi(_I64, name=f"{tag}{depth}")
            i.add_incoming(lo, pre)
            offs = [off if st[depth] == 0 else
                    b.add(off, b.mul(i, ir.Constant(_I64, st[depth])))
                    for off, st in zip(offs, strides)]
            level(depth + 1, offs)
            nxt = b.add(i, ir.Constant(_I64, 1))
            i.add_incoming(nxt, b.block)
            b.cbranch(b.icmp_signed("<", nxt, hi), loop, done)
            b.position_at_end(done)
        level(0, offs)

    def _row(self, offs: list) -> None:
        """One row: its reductions in order, then the stores."""
        k, lay = self.kernel, self.layout
        memo: dict[int, object] = {}
        nl = len(k.loads)
        self.pass_no = 0
        for r, e in enumerate(k.exprs):
            if e.op not in REDUCTIONS:
                continue
            self._ensure_row(e.args[0], offs, memo)
            acc = self._accumulator(e)

            def reduce_body(inner, e=e, acc=acc):
                local = dict(memo)
                self._accumulate(e, acc, self._value(e.args[0], inner, local))
                for j, (i, when) in self.stash.items():   # keep it for the later passes
                    if when == self.pass_no:
                        self._store(i, self._value(j, inner, local), inner[nl + i], expr=j)
            self._nest(lay.inner_shape, lay.inner_strides, offs, reduce_body, f"r{r}_")
            memo[r] = _Scalar(self.b, self.fn).convert(
                self.b.load(acc), self._acc_dtype(e), e.dtype)
            self.pass_no += 1
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

    def _plan_stash(self) -> dict[int, tuple[int, int]]:
        """Expensive per-point values (exp, log, ...) computed in a reduction pass and
        needed again later, each parked in a point-level output buffer of its dtype until
        the last pass overwrites it: softmax computes exp once, not twice.
        Returns expr -> (store index, pass number that writes it)."""
        k = self.kernel
        if not k.reduce_dims:
            return {}
        point_stores = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
        reductions = [r for r, e in enumerate(k.exprs) if e.op in REDUCTIONS]
        cones = [self._cone(k.exprs[r].args[0]) for r in reductions]
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
        """The SSA value of expr ``j`` at load offsets ``offs`` (memoized in ``memo``)."""
        if j in memo:
            return memo[j]
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
            v = _const(e.args[0], e.dtype)
        elif e.op in REDUCTIONS:
            raise AssertionError(f"reduction {j} used before it was computed")
        else:
            args = [self._value(a, offs, memo) for a in e.args]
            arg_dtypes = [k.exprs[a].dtype for a in e.args]
            sc = _Scalar(b, self.fn)
            if (e.op == "div" and k.reduce_dims and e.dtype.is_floating_point
                    and not self.row_level[j] and self.row_level[e.args[1]]):
                # Dividing every point of a row by one row value (softmax): multiply by
                # its reciprocal, which LLVM hoists out of the loop (within 1 ulp).
                x, y = (sc.convert(a, d, e.dtype) for a, d in zip(args, arg_dtypes))
                r = sc.div(sc.c(y.type, 1.0), y)
                # Where 1/y overflows (a subnormal y), divide as written.
                finite = b.fcmp_ordered("<", sc.call("fabs", r), sc.c(y.type, float("inf")))
                v = b.select(finite, sc.mul(x, r), sc.div(x, y))
            else:
                v = sc.op(e.op, args, arg_dtypes, e.dtype)
        memo[j] = v
        return v

    def _accumulator(self, e: Expr):
        """A stack slot holding the reduction's identity (allocated in the entry block)."""
        ty = _VALUE_TYPE[self._acc_dtype(e)]
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            slot = self.b.alloca(ty)
        if e.op == "reduce_sum":
            init = ir.Constant(ty, 0.0 if e.dtype.is_floating_point else 0)
        elif e.dtype.is_floating_point:
            init = ir.Constant(ty, float("-inf"))
        elif e.dtype is dtypes.bool_:
            init = ir.Constant(ty, 0)
        else:
            init = ir.Constant(ty, -(1 << (e.dtype.itemsize * 8 - 1)))
        self.b.store(init, slot)
        return slot

    def _accumulate(self, e: Expr, slot, v) -> None:
        b = self.b
        sc = _Scalar(b, self.fn)
        arg_dtype = self.kernel.exprs[e.args[0]].dtype
        acc_dtype = self._acc_dtype(e)
        acc = b.load(slot, typ=_VALUE_TYPE[acc_dtype])
        if e.op == "reduce_sum":
            if e.dtype.is_floating_point:
                # 'reassoc' lets the vectorizer keep 16 x 4 partial sums.
                v = sc.convert(sc.convert(v, arg_dtype, e.dtype), e.dtype, acc_dtype)
                new = b.fadd(acc, v, flags=("reassoc", "contract"))
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

    def _acc_dtype(self, e: Expr) -> DType:
        """float32 sums of up to 64K points accumulate in float32: the vectorizer's
        64 partial sums keep each under ~1K additions (error ~1e-6, like NumPy's
        pairwise sum), and float64 would halve the vector width of the whole loop
        (softmax's exp ran 1.8x slower). Longer sums use float64."""
        if (e.op == "reduce_sum" and e.dtype.is_floating_point
                and (e.dtype is dtypes.float64 or math.prod(self.kernel.inner_shape) > 65536)):
            return dtypes.float64
        return e.dtype

    def _store(self, i: int, v, off, expr: int | None = None) -> None:
        b, k = self.b, self.kernel
        dt = k.exprs[k.stores[i].expr if expr is None else expr].dtype
        if dt is dtypes.bool_:
            v = b.zext(v, _I8)
        b.store(v, b.gep(self.out_ptrs[i], [off], inbounds=True, source_etype=_STORAGE_TYPE[dt]))


def _const(value, dt: DType) -> ir.Constant:
    if dt.is_floating_point:
        return ir.Constant(_VALUE_TYPE[dt], float(value))
    if dt is dtypes.bool_:
        return ir.Constant(_I1, int(bool(value)))
    bits = dt.itemsize * 8
    v = int(value) & ((1 << bits) - 1)   # integer literals wrap like NumPy casts
    return ir.Constant(_VALUE_TYPE[dt], v - (1 << bits) if v >> (bits - 1) else v)


# ---- scalar ops -----------------------------------------------------------------------

_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_FLOAT_RESULT = {"exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "div"}
_LN2_HI = {32: 0.693359375, 64: 6.93147180369123816490e-01}    # exact in few bits, so
_LN2_LO = {32: -2.12194440e-4, 64: 1.90821492927058770002e-10}  # n * hi is exact


class _Scalar:
    """Scalar code for registry ops; every value is an SSA value of its dtype's type."""

    def __init__(self, b: ir.IRBuilder, fn: ir.Function) -> None:
        self.b = b
        self.fn = fn
        self.module = fn.module

    # -- plumbing
    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        return fn

    def call(self, base: str, *args):
        """``llvm.<base>.<f32|f64>`` on float arguments of one type."""
        ty = args[0].type
        suffix = "f32" if ty == _F32 else "f64"
        return self.b.call(self.intrinsic(f"llvm.{base}.{suffix}", ty, [ty] * len(args)),
                           list(args))

    def c(self, ty: ir.Type, v: float) -> ir.Constant:
        return ir.Constant(ty, v)

    def add(self, x, y):
        return self.b.fadd(x, y, flags=_FMF)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=_FMF)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=_FMF)

    def div(self, x, y):
        return self.b.fdiv(x, y, flags=_FMF)

    def horner(self, x, coeffs: list[float]):
        """coeffs[0]*x^n + ... + coeffs[n], as FMAs."""
        acc = self.c(x.type, coeffs[0])
        for cf in coeffs[1:]:
            acc = self.add(self.mul(acc, x), self.c(x.type, cf))
        return acc

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def clamp(self, x, lo: float, hi: float):
        """Clamp, keeping NaN (ordered compares are false for it)."""
        b = self.b
        x = b.select(b.fcmp_ordered("<", x, self.c(x.type, lo)), self.c(x.type, lo), x)
        return b.select(b.fcmp_ordered(">", x, self.c(x.type, hi)), self.c(x.type, hi), x)

    def convert(self, v, src: DType, dst: DType):
        """NumPy ``astype`` semantics between ember dtypes."""
        b = self.b
        if src is dst:
            return v
        sty, dty = _VALUE_TYPE[src], _VALUE_TYPE[dst]
        if dst is dtypes.bool_:
            zero = ir.Constant(sty, 0)
            if src.is_floating_point:
                return b.fcmp_unordered("!=", v, zero)   # NaN is truthy
            return b.icmp_unsigned("!=", v, zero)
        if src is dtypes.bool_:
            return b.uitofp(v, dty) if dst.is_floating_point else b.zext(v, dty)
        if src.is_floating_point and dst.is_floating_point:
            return b.fpext(v, dty) if src.itemsize < dst.itemsize else b.fptrunc(v, dty)
        if dst.is_floating_point:
            return b.sitofp(v, dty)
        if not src.is_floating_point:
            return b.sext(v, dty) if src.itemsize < dst.itemsize else b.trunc(v, dty)
        # float -> int: fptosi is poison out of range; x86 (and so NumPy) gives INT_MIN
        # for NaN, inf and out-of-range values, and so do we.
        bits = dst.itemsize * 8
        lim = float(2 ** (bits - 1))
        ok = b.and_(b.fcmp_ordered(">=", v, ir.Constant(sty, -lim)),
                    b.fcmp_ordered("<", v, ir.Constant(sty, lim)))
        return b.select(ok, b.fptosi(v, dty), ir.Constant(dty, -(1 << (bits - 1))))

    # -- dispatch
    def op(self, name: str, args: list, arg_dtypes: list[DType], out: DType):
        b = self.b
        if name == "cast":
            return self.convert(args[0], arg_dtypes[0], out)
        if name in _COMPARE or name in ("logical_and", "logical_or", "logical_not"):
            return self.logical(name, args, arg_dtypes)
        if name == "where":
            cond = self.convert(args[0], arg_dtypes[0], dtypes.bool_)
            return b.select(cond, self.convert(args[1], arg_dtypes[1], out),
                            self.convert(args[2], arg_dtypes[2], out))
        if name in _FLOAT_RESULT and not out.is_floating_point:
            raise NotImplementedError(f"op {name} with result dtype {out}")
        args = [self.convert(a, d, out) for a, d in zip(args, arg_dtypes)]
        if out.is_floating_point:
            fn = getattr(self, "f_" + name, None)
        elif out is dtypes.bool_:
            fn = getattr(self, "b_" + name, None)
        else:
            fn = getattr(self, "i_" + name, None)
        if fn is None:
            raise NotImplementedError(f"op {name} on {out} has no LLVM lowering")
        return fn(*args)

    def logical(self, name: str, args: list, arg_dtypes: list[DType]):
        b = self.b
        if name.startswith("logical"):
            bools = [self.convert(a, d, dtypes.bool_) for a, d in zip(args, arg_dtypes)]
            if name == "logical_not":
                return b.xor(bools[0], ir.Constant(_I1, 1))
            return (b.and_ if name == "logical_and" else b.or_)(*bools)
        dt = dtypes.promote(*arg_dtypes)
        x, y = (self.convert(a, d, dt) for a, d in zip(args, arg_dtypes))
        op = _COMPARE[name]
        if dt.is_floating_point:
            # NumPy: every compare with NaN is False except !=.
            if name == "ne":
                return b.fcmp_unordered(op, x, y)
            return b.fcmp_ordered(op, x, y)
        if dt is dtypes.bool_:
            return b.icmp_unsigned(op, x, y)
        return b.icmp_signed(op, x, y)

    # -- floating point
    def f_neg(self, x):
        return self.b.fneg(x, flags=_FMF)

    def f_abs(self, x):
        return self.call("fabs", x)

    def f_sign(self, x):
        b = self.b
        one = self.c(x.type, 1.0)
        r = b.select(b.fcmp_ordered("<", x, self.c(x.type, 0.0)), self.c(x.type, -1.0), x)
        r = b.select(b.fcmp_ordered(">", x, self.c(x.type, 0.0)), one, r)
        # NumPy's sign(-0.0) is +0.0; NaN stays NaN.
        return b.select(b.fcmp_ordered("==", x, self.c(x.type, 0.0)), self.c(x.type, 0.0), r)

    def f_relu(self, x):
        # maximum(x, 0) propagates NaN: a NaN fails the ordered compare and is kept.
        b = self.b
        return b.select(b.fcmp_ordered("<", x, self.c(x.type, 0.0)), self.c(x.type, 0.0), x)

    def f_add(self, x, y):
        return self.add(x, y)

    def f_sub(self, x, y):
        return self.sub(x, y)

    def f_mul(self, x, y):
        return self.mul(x, y)

    def f_div(self, x, y):
        return self.div(x, y)

    def f_maximum(self, x, y):
        b = self.b   # NumPy propagates a NaN from either side
        r = b.select(b.fcmp_ordered(">", x, y), x, y)
        return b.select(self.isnan(x), x, r)

    def f_minimum(self, x, y):
        b = self.b
        r = b.select(b.fcmp_ordered("<", x, y), x, y)
        return b.select(self.isnan(x), x, r)

    def f_sqrt(self, x):
        return self.call("sqrt", x)

    def f_sin(self, x):
        return self.call("sin", x)

    def f_cos(self, x):
        return self.call("cos", x)

    def f_exp(self, x):
        """exp(x): n = round(x / ln2), r = x - n ln2 (Cody-Waite hi/lo), Taylor on r,
        times 2^n as two exponent-field scalings so results down to the subnormals stay
        exact (one scale alone would need an exponent out of range)."""
        b = self.b
        ty = x.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        lo, hi = (-150.0, 100.0) if bits == 32 else (-1400.0, 1000.0)
        nan = self.isnan(x)
        # The clamp maps -inf/+inf to 0/inf; NaN is replaced so fptosi never sees it.
        xc = b.select(nan, self.c(ty, 0.0), self.clamp(x, lo, hi))
        n = self.call("rint", self.mul(xc, self.c(ty, 1.4426950408889634)))
        r = self.sub(xc, self.mul(n, self.c(ty, _LN2_HI[bits])))
        r = self.sub(r, self.mul(n, self.c(ty, _LN2_LO[bits])))
        # |r| <= ln2/2: Taylor to r^7 (float32) or r^13 (float64) is below half an ulp.
        degree = 7 if bits == 32 else 13
        p = self.horner(r, [1.0 / math.factorial(k) for k in range(degree, -1, -1)])
        ni = b.fptosi(n, ity)
        n1 = b.ashr(ni, ir.Constant(ity, 1))
        n2 = b.sub(ni, n1)
        s1 = b.bitcast(b.shl(b.add(n1, ir.Constant(ity, bias)), ir.Constant(ity, mant)), ty)
        s2 = b.bitcast(b.shl(b.add(n2, ir.Constant(ity, bias)), ir.Constant(ity, mant)), ty)
        return b.select(nan, x, self.mul(self.mul(p, s1), s2))

    def expm1_nonpositive(self, y):
        """exp(y) - 1 for y <= 0, accurate near 0 (for tanh); y must not be NaN."""
        b = self.b
        ty = y.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        y = self.clamp(y, -40.0, 0.0)   # exp(-40) is below both epsilons: the result is -1
        n = self.call("rint", self.mul(y, self.c(ty, 1.4426950408889634)))
        r = self.sub(y, self.mul(n, self.c(ty, _LN2_HI[bits])))
        r = self.sub(r, self.mul(n, self.c(ty, _LN2_LO[bits])))
        degree = 7 if bits == 32 else 13
        q = self.mul(r, self.horner(r, [1.0 / math.factorial(k) for k in range(degree, 0, -1)]))
        s = b.bitcast(b.shl(b.add(b.fptosi(n, ity), ir.Constant(ity, bias)),
                            ir.Constant(ity, mant)), ty)
        # 2^n (e^r - 1) + (2^n - 1): exactly q when n == 0, no cancellation otherwise.
        return self.add(self.mul(s, q), self.sub(s, self.c(ty, 1.0)))

    def f_log(self, x):
        """log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)); log(1+f) = 2 atanh(s),
        s = f / (2 + f), as a series in s^2 (|s| < 0.172)."""
        b = self.b
        ty = x.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        tiny = b.fcmp_ordered("<", x, self.c(ty, 2.0 ** (1 - bias)))
        # Subnormals: scale into the normal range first, take the scale off e.
        xs = b.select(tiny, self.mul(x, self.c(ty, 2.0 ** mant)), x)
        ib = b.bitcast(xs, ity)
        e = b.sub(b.and_(b.lshr(ib, ir.Constant(ity, mant)), ir.Constant(ity, 2 * bias + 1)),
                  ir.Constant(ity, bias))
        e = b.select(tiny, b.sub(e, ir.Constant(ity, mant)), e)
        m = b.bitcast(b.or_(b.and_(ib, ir.Constant(ity, (1 << mant) - 1)),
                            ir.Constant(ity, bias << mant)), ty)
        big = b.fcmp_ordered(">", m, self.c(ty, math.sqrt(2.0)))
        m = b.select(big, self.mul(m, self.c(ty, 0.5)), m)
        e = b.add(e, b.zext(big, ity))
        f = self.sub(m, self.c(ty, 1.0))
        s = self.div(f, self.add(f, self.c(ty, 2.0)))
        z = self.mul(s, s)
        terms = 5 if bits == 32 else 10
        series = self.mul(z, self.horner(z, [2.0 / (2 * k + 1) for k in range(terms, 0, -1)]))
        log1p = self.add(self.add(s, s), self.mul(s, series))
        ef = b.sitofp(e, ty)
        res = self.add(self.mul(ef, self.c(ty, _LN2_HI[bits])),
                       self.add(log1p, self.mul(ef, self.c(ty, _LN2_LO[bits]))))
        res = b.select(b.fcmp_ordered("==", x, self.c(ty, math.inf)), self.c(ty, math.inf), res)
        res = b.select(b.fcmp_ordered("==", x, self.c(ty, 0.0)), self.c(ty, -math.inf), res)
        return b.select(b.fcmp_unordered("<", x, self.c(ty, 0.0)), self.c(ty, math.nan), res)

    def f_tanh(self, x):
        b = self.b
        ty = x.type
        nan = self.isnan(x)
        y = self.mul(self.call("fabs", x), self.c(ty, -2.0))
        u = self.expm1_nonpositive(b.select(nan, self.c(ty, 0.0), y))
        # tanh|x| = -expm1(-2|x|) / (expm1(-2|x|) + 2): relative accuracy near 0 too.
        t = self.div(b.fneg(u), self.add(u, self.c(ty, 2.0)))
        return b.select(nan, x, self.call("copysign", t, x))

    def f_sigmoid(self, x):
        b = self.b
        ty = x.type
        # exp only ever sees -|x|, so neither branch overflows (as the registry does).
        e = self.f_exp(b.fneg(self.call("fabs", x)))
        r = self.div(self.c(ty, 1.0), self.add(self.c(ty, 1.0), e))
        return b.select(b.fcmp_ordered(">=", x, self.c(ty, 0.0)), r, self.mul(e, r))

    def f_erf(self, x):
        """Taylor series for |x| < 0.5 (relative accuracy near 0), else the registry's
        Abramowitz-Stegun 7.1.26 form (absolute error 1.2e-7)."""
        b = self.b
        ty = x.type
        if ty == _F32:
            return self.erf_rational(x)
        ax = self.call("fabs", x)
        z = self.mul(x, x)
        terms = 6 if ty == _F32 else 11
        taylor = [2.0 / math.sqrt(math.pi) * (-1) ** k / (math.factorial(k) * (2 * k + 1))
                  for k in range(terms - 1, -1, -1)]
        small = self.mul(x, self.horner(z, taylor))
        t = self.div(self.c(ty, 1.0), self.add(self.c(ty, 1.0), self.mul(ax, self.c(ty, 0.5))))
        poly = self.horner(t, [0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                               -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223])
        big = self.sub(self.c(ty, 1.0), self.mul(t, self.f_exp(self.sub(poly, z))))
        big = self.call("copysign", big, x)
        return b.select(b.fcmp_ordered("<", ax, self.c(ty, 0.5)), small, big)

    def erf_rational(self, x):
        """float32 erf as x P(x^2) / Q(x^2) on [-4, 4] (Eigen's/XLA's fit; erf is +-1 in
        float32 beyond). No exp: about twice as fast as the A-S form; |error| < 5e-7."""
        b = self.b
        xc = self.clamp(x, -4.0, 4.0)
        z = self.mul(xc, xc)
        p = self.horner(z, [-2.72614225801306e-10, 2.77068142495902e-08,
                            -2.10102402082508e-06, -5.69250639462346e-05,
                            -7.34990630326855e-04, -2.95459980854025e-03,
                            -1.60960333262415e-02])
        q = self.horner(z, [-1.45660718464996e-05, -2.13374055278905e-04,
                            -1.68282697438203e-03, -7.37332916720468e-03,
                            -1.42647390514189e-02])
        r = self.div(self.mul(xc, p), q)
        return b.select(self.isnan(x), x, r)

    def f_pow(self, x, y):
        if x.type == _F64:
            # exp(y log x) in double loses ~|y log x| ulps; the libm call is exact.
            return self.call("pow", x, y)
        b = self.b
        # float32: exp(y log|x|) in double is correctly rounded to float32 nearly always.
        r = self.pow_via_exp_log(b.fpext(x, _F64), b.fpext(y, _F64))
        return b.fptrunc(r, _F32)

    def pow_via_exp_log(self, x, y):
        """C99 pow semantics (as NumPy) from exp and log, for float64 values."""
        b = self.b
        ty = x.type

        def k(v: float):
            return self.c(ty, v)

        r = self.f_exp(self.mul(y, self.f_log(self.call("fabs", x))))
        fy = self.call("floor", y)
        y_int = b.fcmp_ordered("==", fy, y)                       # true for +-inf too
        half = self.call("floor", self.mul(y, k(0.5)))
        y_odd = b.fcmp_ordered("==", self.sub(y, self.add(half, half)), k(1.0))  # inf: NaN
        sign = b.icmp_signed("<", b.bitcast(x, _I64), ir.Constant(_I64, 0))  # x < 0 or -0
        r = b.select(b.and_(sign, y_odd), b.fneg(r), r)
        neg_finite = b.and_(b.fcmp_ordered("<", x, k(0.0)),
                            b.fcmp_ordered("!=", x, k(-math.inf)))
        r = b.select(b.and_(neg_finite, b.xor(y_int, ir.Constant(_I1, 1))), k(math.nan), r)
        y_inf = b.fcmp_ordered("==", self.call("fabs", y), k(math.inf))
        one = b.or_(b.fcmp_ordered("==", y, k(0.0)), b.fcmp_ordered("==", x, k(1.0)))
        one = b.or_(one, b.and_(b.fcmp_ordered("==", x, k(-1.0)), y_inf))
        return b.select(one, k(1.0), r)

    # -- integers (wrap around like NumPy)
    def i_neg(self, x):
        return self.b.neg(x)

    def i_abs(self, x):
        b = self.b
        return b.select(b.icmp_signed("<", x, ir.Constant(x.type, 0)), b.neg(x), x)

    def i_sign(self, x):
        b = self.b
        zero = ir.Constant(x.type, 0)
        return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type),
                     b.zext(b.icmp_signed("<", x, zero), x.type))

    def i_relu(self, x):
        b = self.b
        zero = ir.Constant(x.type, 0)
        return b.select(b.icmp_signed("<", x, zero), zero, x)

    def i_add(self, x, y):
        return self.b.add(x, y)

    def i_sub(self, x, y):
        return self.b.sub(x, y)

    def i_mul(self, x, y):
        return self.b.mul(x, y)

    def i_maximum(self, x, y):
        return self.b.select(self.b.icmp_signed(">", x, y), x, y)

    def i_minimum(self, x, y):
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def i_pow(self, x, y):
        """Exponentiation by squaring (a loop: integer pow does not vectorize). NumPy
        rejects negative exponents; we give C's truncated answer (0 unless |x| == 1)."""
        b = self.b
        ty = x.type
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        pre = b.block
        loop = self.fn.append_basic_block("ipow")
        done = self.fn.append_basic_block("ipow_done")
        b.cbranch(b.icmp_signed(">", y, zero), loop, done)
        b.position_at_end(loop)
        acc, base, e = b.phi(ty), b.phi(ty), b.phi(ty)
        odd = b.trunc(e, _I1)
        acc2 = b.select(odd, b.mul(acc, base), acc)
        base2 = b.mul(base, base)
        e2 = b.ashr(e, one)
        for phi, first, nxt in ((acc, one, acc2), (base, x, base2), (e, y, e2)):
            phi.add_incoming(first, pre)
            phi.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed(">", e2, zero), loop, done)
        b.position_at_end(done)
        res = b.phi(ty)
        res.add_incoming(one, pre)
        res.add_incoming(acc2, loop)
        minus_one = b.select(b.trunc(y, _I1), ir.Constant(ty, -1), one)
        negative = b.select(b.icmp_signed("==", x, one), one,
                            b.select(b.icmp_signed("==", x, ir.Constant(ty, -1)), minus_one, zero))
        return b.select(b.icmp_signed("<", y, zero), negative, res)

    # -- bool (NumPy's bool arithmetic is logic)
    def b_abs(self, x):
        return x

    b_relu = b_abs

    def b_add(self, x, y):
        return self.b.or_(x, y)

    b_maximum = b_add

    def b_mul(self, x, y):
        return self.b.and_(x, y)

    b_minimum = b_mul

    def b_pow(self, x, y):
        return self.b.or_(x, self.b.xor(y, ir.Constant(_I1, 1)))   # x ** 0 == 1


# ---- JIT ------------------------------------------------------------------------------

# Per-point ops worth keeping in memory between passes rather than computing again.
_EXPENSIVE = frozenset(("exp", "log", "tanh", "sigmoid", "erf", "pow", "sin", "cos"))

_CACHE = KernelCache()
_POOL_LOCK = threading.Lock()
_TM = None


def _target_machine() -> llvm.TargetMachine:
    """The host target machine (for printing assembly); without the host CPU name and
    features LLVM stops at SSE."""
    global _TM
    if _TM is None:
        _TM = _new_target_machine()
    return _TM


def _new_target_machine() -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        # LLVM's Intel tuning caps vectors at 256 bits; 512-bit zmm code runs the
        # exp/erf polynomials ~1.3x faster here (measured), so lift the cap.
        features=llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit",
        # Small code model + PIC: constants become RIP-relative memory operands
        # ({1to16} broadcasts) instead of a movabs + broadcast per use inside the
        # loop (JIT default "large"); erf ran 1.4x faster. llvmlite's memory manager
        # keeps one module's sections together, and libm calls go through stubs.
        opt=3, reloc="pic", codemodel="small", jit=True)


def _jit(source: str):
    """Verify, optimize at O3 (loop + SLP vectorization) and MCJIT-compile ``source``."""
    # Each engine gets its own target machine: an MCJIT engine owns the one it is made
    # with and destroys it when freed (a shared one crashed every later engine).
    tm = _new_target_machine()
    mod = llvm.parse_assembly(source)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    # The engine (and its machine code) lives as long as the compiled kernel holding it:
    # only that object calls into the code (worker threads finish before run() returns).
    return engine, mod


def _find_data_offset() -> int | None:
    """Byte offset of the data pointer inside an ndarray object, checked on live arrays
    (16 on 64-bit CPython: it follows the object header)."""
    probes = [np.arange(3.0), np.zeros((2, 3), np.int32)[:, 1:], np.ones(0)]
    for off in (16,):
        try:
            if all(ctypes.c_void_p.from_address(id(a) + off).value == a.ctypes.data
                   for a in probes):
                return off
        except Exception:  # pragma: no cover
            pass
    return None  # pragma: no cover


_DATA_OFFSET = _find_data_offset()
_NDARRAY = np.ndarray
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                           thread_name_prefix="ember-cpu")
    return _POOL
