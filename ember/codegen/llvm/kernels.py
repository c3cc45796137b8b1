"""Compiled CPU kernels: ``CompiledKernel`` (one Kernel, one call) and
``CompiledKernels`` (independent kernels, one call), cached by signature."""
from __future__ import annotations

import ctypes
import hashlib
import math
import threading
import time
import weakref
import re

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np

from ember import threads as _threads
from ember.codegen import mathlib
from ember.codegen.kernel import LEAVES, REDUCTIONS, Kernel, KernelCache
from ember.codegen.policy import accumulator_dtype
from ember.codegen.llvm import spinpool
from ember.codegen.llvm.jit import (_DATA_OFFSET, _NDARRAY, _pool, _target_machine,
                                    jit_described, optimized_module)
from ember.codegen.llvm.loops import (_Layout, _add_kernel, _build_module, _new_module,
                                      float64_sums)
from ember.codegen.llvm.scalar import _I8, _I64, _PTR


# Kernels whose single-thread time is at least this (ns) run on all cores. Through the
# executor, waking a pool thread and being woken by it cost ~140 us a split on this VM
# (measured), so it paid from ~250 us of work; spinpool's workers start a share in ~1-5
# us while they spin, and a late one takes no share, so 40 us of work pays (a tanh over
# [8, 64, 768], minGPT's MLP width: 370 -> 192 us a call). The estimate
# (``estimate_ns``) picks the candidates; their first ``TIMED_CALLS`` calls run on one
# thread, timed, and only those at least this slow split from then on: the estimate
# took minGPT's layer norm over [512, 192] (20 us alone) for 300 us of work.
PARALLEL_MIN_NS = 40_000 if spinpool.available() else 250_000
TIMED_CALLS = 3
# Rough single-core costs (ns) behind that estimate, measured on 1M-element kernels:
# streaming memory ~25 GB/s; exp/log/tanh/sigmoid/erf ~0.3 ns; other ops ~0.05 ns.
_NS_PER_BYTE = 1 / 25
_NS_PER_OP = {"exp": 0.3, "log": 0.3, "tanh": 0.3, "sigmoid": 0.35, "erf": 0.3,
              "pow": 1.0, "sin": 5.0, "cos": 5.0}


def _split(total: int, n: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` row ranges cutting ``total`` rows into ``min(n, total)`` shares."""
    n = min(n, total)
    cuts = [total * t // n for t in range(n + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _op_ns(op: str) -> float:
    """The cost of one op per point; a mathlib program not measured above costs about
    as much per operation as exp's (~0.3 ns for ~25 operations)."""
    if op in _NS_PER_OP:
        return _NS_PER_OP[op]
    return 0.012 * mathlib.cost(op) if op in mathlib.DECOMPOSED else 0.05


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
        self.loop_shape = tuple(int(n) for n in self.layout.outer_shape)
        self._dims = None
        if self.layout.dims is not None:
            # Size-generic: one machine code for every kernel of this structure, named
            # after it; this instance passes its sizes in ``_dims``.
            self._dims = np.concatenate([   # the sizes, then the scalars' float64 bits
                np.array(self.layout.dims, np.int64),
                np.array(kernel.scalars, np.float64).view(np.int64)])
            self.name, self._code = _generic_code(kernel, self.layout)
        else:
            # The persistent cache is looked up by the description (signature and name):
            # a hit skips building the IR (jit.jit_described).
            self._code = _Code(*jit_described(
                f"{self.name} {kernel.signature()!r}",
                lambda: _build_module(kernel, self.name, self.layout)))
        self._engine, self.source = self._code.engine, self._code.source
        nargs = self.num_inputs + self.num_outputs + (self._dims is not None)
        i64 = ctypes.c_int64
        # Passing the arrays themselves and reading their data pointer inside the
        # generated code costs ~0.7 us a call; asking NumPy (.ctypes.data or
        # __array_interface__) costs ~0.8-1.2 us per array (measured).
        if _DATA_OFFSET is not None:
            ftype = ctypes.CFUNCTYPE(None, *([ctypes.py_object] * nargs), i64, i64)
            self._address = self._engine.get_function_address(self.name + "_py")
            self._cfunc = ftype(self._address)
            self._by_object = True
        else:  # pragma: no cover - NumPy with an unexpected object layout
            ftype = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nargs), i64, i64)
            self._cfunc = ftype(self._engine.get_function_address(self.name))
            self._by_object = False
        self._tail = () if self._dims is None else (self._dims,)   # the generic's sizes
        outer = self.loop_shape[0]
        self._outer = outer
        self.estimated_ns = estimate_ns(kernel)
        # worth splitting; into how many shares follows ember.set_num_threads (_shares)
        self._parallel = self.estimated_ns >= PARALLEL_MIN_NS and outer > 1
        self._timed = TIMED_CALLS if self._parallel else 0   # calls left to time
        self._fastest = math.inf   # the fastest timed call (seconds)
        self._shares(outer)

    def run(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """Compute the kernel over ``inputs`` into the preallocated ``outputs``."""
        # The generated code trusts its arguments: it reads ndarray fields and writes
        # whole outputs. Types, shapes and dtypes are checked (~0.2 us); contiguity of the
        # outputs is the caller's promise (checking it would cost as much again).
        exact = True   # all exactly ndarrays (else subclasses, accepted by _reject)
        if len(inputs) != self.num_inputs or len(outputs) != self.num_outputs:
            self._reject(inputs, outputs)
        for a in inputs:
            if type(a) is not _NDARRAY:
                self._reject(inputs, outputs)
                exact = False
        for o, npd, n in zip(outputs, self._out_np, self.out_sizes):
            if type(o) is not _NDARRAY or o.dtype is not npd or o.size != n:
                self._reject(inputs, outputs)
                exact = False
        if self._nthreads != _threads._num_threads:
            self._shares(self._outer)
        chunks = self._chunks
        if chunks is None:
            if not self.layout.empty:
                if self._by_object and exact and not self._parallel:   # fastcall.py
                    (getattr(self, "_direct", None) or self.direct())(*inputs, *outputs)
                elif self._by_object:
                    self._cfunc(*inputs, *outputs, *self._tail, 0, self._outer)
                else:  # pragma: no cover
                    self._cfunc(*[a.ctypes.data for a in (*inputs, *outputs, *self._tail)],
                                0, self._outer)
            return
        if self._by_object:
            args = (*inputs, *outputs, *self._tail)   # (a tuple: spinpool's argv)
        else:  # pragma: no cover
            args = [a.ctypes.data for a in (*inputs, *outputs, *self._tail)]
        if self._timed:
            self._timed_call(args, self._outer)
            return
        if _SPIN and self._by_object:
            spinpool.run(self._address, len(args), id(args) + _TUPLE_ITEMS, self._outer,
                         len(chunks))
            return
        pool = _pool()
        futures = [pool.submit(self._cfunc, *args, lo, hi) for lo, hi in chunks[1:]]
        self._cfunc(*args, *chunks[0])  # the calling thread takes a share too
        for f in futures:
            f.result()

    def _timed_call(self, args: tuple | list, total: int) -> None:
        """One of the first calls of a kernel estimated worth splitting: on the calling
        thread, timed; after the last, it splits only if the fastest was slow enough."""
        t0 = time.perf_counter()
        self._cfunc(*args, 0, total)
        self._fastest = min(self._fastest, time.perf_counter() - t0)
        self._timed -= 1
        if self._timed <= 0:   # (two threads may both have taken the last timed call)
            self._timed = 0
            if self._fastest * 1e9 < PARALLEL_MIN_NS:
                self._parallel = False
                self._shares(total)

    def _shares(self, total: int) -> None:
        """Split ``total`` outer rows into ``ember.get_num_threads()`` shares (None: run
        on the calling thread alone)."""
        self._nthreads = n = _threads._num_threads
        self._chunks = _split(total, n) if self._parallel and min(n, total) > 1 else None

    def direct(self):
        """``f`` such that ``f(*inputs, *outputs)`` is ``run(inputs, outputs)`` without
        its checks, for a caller that has made sure of them (a cache hit's generated code:
        fastpath.py): a builtin (fastcall.py) for a short kernel, else a ctypes call.
        None where ``run`` does more (threads, an empty loop, raw pointers)."""
        if self._parallel or self.layout.empty or not self._by_object:
            return None
        f = getattr(self, "_direct", None)
        if f is None:
            from ember.codegen.llvm import fastcall
            tail = self._tail
            if self.estimated_ns <= fastcall.MAX_NS:
                f = fastcall.launcher(self._engine.get_function_address(self.name + "_py"),
                                      self.num_inputs + self.num_outputs + len(tail),
                                      self._outer)
                if f is not None and tail:
                    builtin = f
                    f = lambda *arrays: builtin(*arrays, *tail)  # noqa: E731
            if f is None:
                cfunc, outer = self._cfunc, self._outer
                f = lambda *arrays: cfunc(*arrays, *tail, 0, outer)  # noqa: E731
            self._direct = f   # the kernel keeps its launcher; its engine outlives it
        return f

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
        if self._code.module is None:   # machine code from the persistent cache
            self._code.module = optimized_module(self.source)
        return str(self._code.module)

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


def _tuple_items_offset() -> int | None:
    """Where a tuple's item pointers start (``tuple.__basicsize__``: 24 on 64-bit
    CPython), checked on a probe; None if they are not there."""
    probe = (object(), object())
    off = tuple.__basicsize__
    try:
        if all(ctypes.c_void_p.from_address(id(probe) + off + 8 * i).value == id(v)
               for i, v in enumerate(probe)) and ctypes.sizeof(ctypes.c_void_p) == 8:
            return off
    except Exception:  # pragma: no cover
        pass
    return None  # pragma: no cover


_TUPLE_ITEMS = _tuple_items_offset()
# Split kernels run on spinpool's workers (else on the executor of jit._pool).
_SPIN = spinpool.available() and _TUPLE_ITEMS is not None
_ONLY_NDARRAY = {np.ndarray}


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
        # Named after what it computes, not the plan's step numbers: the same updates
        # planned again (another batch size) find this code in memory and on disk.
        signatures = repr([k.signature() for k in kernels])
        self.name = "batch_" + hashlib.sha1(signatures.encode()).hexdigest()[:16]
        self.parts = [CompiledKernel.__new__(CompiledKernel) for _ in kernels]
        bounds, total = [], 0
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
            bounds.append((total, rows))
            total += rows
        self._rows = total
        self.nargs = sum(p.num_inputs + p.num_outputs for p in self.parts)
        self._out_np = [d for p in self.parts for d in p._out_np]
        self._out_sizes = [n for p in self.parts for n in p.out_sizes]
        self._num_inputs = [p.num_inputs for p in self.parts]
        self._num_outputs = [p.num_outputs for p in self.parts]

        def build() -> str:   # only on a miss of the persistent cache (jit_described)
            module = _new_module(self.name)
            subs = [_add_kernel(module, k, part.name, part.layout)
                    for k, part in zip(kernels, self.parts)]
            self._driver(module, subs, bounds)
            return str(module)
        self._code = _shared_code(f"{self.name} {signatures}", build)
        self._engine, self.source = self._code.engine, self._code.source
        ftype = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
        self._address = self._engine.get_function_address(self.name)
        self._cfunc = ftype(self._address)
        self._argv = ctypes.py_object * self.nargs
        self.estimated_ns = sum(estimate_ns(k) for k in kernels)
        self._parallel = self.estimated_ns >= PARALLEL_MIN_NS and total > 1
        self._timed = TIMED_CALLS if self._parallel else 0
        self._fastest = math.inf
        self._shares(total)

    _shares = CompiledKernel._shares
    _timed_call = CompiledKernel._timed_call

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
        if len(inputs) != len(self.parts) or len(outputs) != len(self.parts):
            raise ValueError(f"{self.name} runs {len(self.parts)} kernels, got "
                             f"{len(inputs)} input lists")
        flat, outs = [], []
        for ins, out in zip(inputs, outputs):
            flat += ins
            flat += out
            outs += out
        # The checks of CompiledKernel.run for every part at once, as C-level list work:
        # per part in Python they cost ~2 us each (16 small parameters' optimizer
        # updates: 36 us of checks around 2 us of machine code).
        if (set(map(type, flat)) != _ONLY_NDARRAY or [o.dtype for o in outs] != self._out_np
                or [o.size for o in outs] != self._out_sizes
                or [len(i) for i in inputs] != self._num_inputs
                or [len(o) for o in outputs] != self._num_outputs):
            for part, ins, out in zip(self.parts, inputs, outputs):
                part._reject(ins, out)
        if _TUPLE_ITEMS is None:  # pragma: no cover - an unexpected tuple layout
            keep = self._argv(*flat)
            addr = ctypes.addressof(keep)
        else:
            # The driver reads a PyObject* array: a tuple's own items are one (built in
            # ~0.5 us; a ctypes array of 112 py_objects took 44 us). ``keep`` holds it.
            keep = tuple(flat)
            addr = id(keep) + _TUPLE_ITEMS
        if self._nthreads != _threads._num_threads:
            self._shares(self._rows)
        if self._chunks is None:
            self._cfunc(addr, 0, self._rows)
            return
        if self._timed:
            self._timed_call([addr], self._rows)
            return
        if _SPIN:
            word = ctypes.c_int64(addr)
            spinpool.run(self._address, 1, ctypes.addressof(word), self._rows,
                         len(self._chunks))
            return
        pool = _pool()
        futures = [pool.submit(self._cfunc, addr, lo, hi) for lo, hi in self._chunks[1:]]
        self._cfunc(addr, *self._chunks[0])
        for f in futures:
            f.result()

    def optimized_ir(self) -> str:
        if self._code.module is None:   # machine code from the persistent cache
            self._code.module = optimized_module(self.source)
        return str(self._code.module)

    def asm(self) -> str:
        return _target_machine().emit_assembly(llvm.parse_assembly(self.optimized_ir()))



def estimate_ns(kernel: Kernel) -> float:
    """A rough single-thread run time of ``kernel`` (ns), to decide on threading."""
    per_elem = sum(ld.dtype.itemsize for ld in kernel.loads if any(ld.strides))
    per_elem += sum(kernel.exprs[s.expr].dtype.itemsize for s in kernel.stores)
    per_elem *= _NS_PER_BYTE
    per_elem += sum(_op_ns(e.op) for e in kernel.exprs
                    if e.op not in LEAVES)
    passes = 1 + sum(e.op in REDUCTIONS for e in kernel.exprs)  # each reduction re-reads
    return math.prod(kernel.shape) * per_elem * passes


class _Code:
    """Machine code (an engine or a cached library), its optimized module (None until
    asked for, when it came from the persistent cache) and its IR text."""

    def __init__(self, engine, module, source: str) -> None:
        self.engine, self.module, self.source = engine, module, source


def _generic_code(kernel: Kernel, layout: _Layout) -> tuple[str, _Code]:
    """The function name and machine code of a size-generic kernel: one per structure
    (``Kernel.structure`` and the layout's template), named after it so that the
    persistent cache finds it from any process."""
    # A float32 sum's accumulator depends on the row length (policy.accumulator_dtype,
    # loops.float64_sums).
    acc = (tuple(accumulator_dtype(kernel, e) for e in kernel.exprs if e.op in REDUCTIONS),
           float64_sums(layout))
    description = repr((kernel.structure(), layout.template(), acc))
    name = "generic_" + hashlib.sha1(description.encode()).hexdigest()[:16]
    return name, _shared_code(f"{name} {description}",
                              lambda: _build_module(kernel, name, layout))


def _shared_code(description: str, build_source) -> _Code:
    """``jit_described``'s code, made once per description while anything uses it: the
    kernels of every size of a dynamic-shape function, a batch of optimizer updates
    planned again for a new batch size."""
    code = _SHARED.get(description)
    if code is None:
        with _SHARED_LOCK:
            code = _SHARED.get(description)
            if code is None:
                code = _SHARED[description] = _Code(*jit_described(description, build_source))
    return code


def _ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name or "kernel")
    return ident if not ident[0].isdigit() else "k_" + ident


_CACHE = KernelCache()
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
