"""CUDA kernels and their launches: ``CudaKernel`` (one Kernel), ``CudaKernels``
(independent elementwise kernels, one launch), launch sizing from ``DeviceLimits``."""
from __future__ import annotations

import math
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from ember.codegen.kernel import Kernel, KernelCache
from ember.codegen.phases import phase
from ember.diskcache import default_cache
from ember.codegen.cuda.ops import _PRELUDE, math_source
from ember.codegen.cuda.source import (ELEMENTWISE_BLOCK, MAX_GRID_THREADS, MAX_PARAM_BYTES,
                                       MAX_PARTS, MAX_SPLIT, POINTS_PER_THREAD,
                                       WARP_ROWS_BLOCK, _Generator, _ident, _Writer)



def cuda_source(kernel: Kernel) -> str:
    """The CUDA C of ``kernel``: a shared prelude (include-guarded, so several kernels'
    sources concatenate into one program) and ``extern "C" __global__`` entry points
    named after the kernel.

        >>> from ember import dtypes as dt
        >>> from ember.codegen.kernel import Expr, Kernel, Load
        >>> k = Kernel("negate", (3,), [Load(0, dt.int32, (1,))],
        ...            [Expr("load", (0,), dt.int32), Expr("neg", (0,), dt.int32)], [1])
        >>> "const int p1 = ember_neg(p0);" in cuda_source(k)    # wraps like NumPy
        True
    """
    return _PRELUDE + math_source([kernel]) + _Generator(kernel).source()


def compile_kernel(kernel: Kernel) -> "CudaKernel":
    """The ``CudaKernel`` of ``kernel``; equal kernels (by ``kernel.signature()``) share one."""
    return _CACHE.get_or_build(kernel, CudaKernel)


@dataclass(frozen=True)
class DeviceLimits:
    """What launch sizes depend on: a device's SM count and thread limits."""
    sm_count: int
    max_threads_per_block: int
    max_threads_per_sm: int

    @classmethod
    def of_device(cls, device) -> "DeviceLimits":
        """The limits of a ``cupy.cuda.Device``."""
        a = device.attributes
        return cls(a["MultiProcessorCount"], a["MaxThreadsPerBlock"],
                   a["MaxThreadsPerMultiProcessor"])

    def resident_blocks(self, threads: int) -> int:
        """Blocks of ``threads`` threads that fit on the device at once (by thread count)."""
        return self.sm_count * max(1, self.max_threads_per_sm // threads)


@dataclass(frozen=True)
class Launch:
    """One kernel launch: entry point, grid and block size; split-phase launches
    (``nsplit`` set) also take the workspace and ``nsplit``."""
    entry: str
    grid: int
    block: int
    nsplit: int | None = None


class CudaKernel:
    """A kernel's CUDA C and its launches: ``run(inputs, outputs)`` fills ``outputs``.

    ``inputs`` are CuPy arrays with any strides (the Loads' element strides and offsets
    are compiled in, relative to each array's data pointer); ``outputs`` are preallocated
    C-contiguous CuPy arrays, one per store, of the stored exprs' dtypes.

    A size-generic kernel (``kernel.generic``) reads its sizes, strides and offsets from
    ``dims`` (int64, passed after the outputs at every launch, one device copy per
    device); its source and compiled module are shared with every kernel of the same
    structure, whatever their sizes, and its launches are sized by its own.
    """

    def __init__(self, kernel: Kernel) -> None:
        gen = _Generator(kernel)
        self._describe(gen)
        self.source = _PRELUDE + math_source([kernel]) + gen.source()
        self.entries = gen.entries()
        self._program = (_shared_program(self.source, self.entries) if gen.generic else
                         _Program(self.source, self.entries))

    @classmethod
    def _part(cls, gen: "_Generator") -> "CudaKernel":
        """A kernel that runs as a part of a ``CudaKernels`` launch: its description
        (arguments, sizes, vector access) without source or entry points of its own."""
        part = cls.__new__(cls)
        part._describe(gen)
        part.source, part.entries = "", []
        part._program = _Program("", [])
        return part

    def _describe(self, gen: "_Generator") -> None:
        kernel = gen.k
        self.name = gen.name
        self.shape = tuple(kernel.shape)
        self.num_inputs = kernel.num_inputs
        self.num_outputs = len(kernel.stores)
        self.in_dtypes = gen.in_dtypes
        self.out_dtypes = [kernel.exprs[s.expr].dtype for s in kernel.stores]
        self.out_sizes = [math.prod(n for n, st in zip(self.shape, s.strides) if st)
                          for s in kernel.stores]
        self.empty = gen.empty
        self.reduce = gen.reduce
        self.rows, self.inner = gen.rows, gen.inner
        self.size = gen.size
        self.num_reductions = len(gen.reductions)
        self.warp_rows = gen.warp_rows
        self.can_split = gen.split
        # The entry point of its rows and the prefix of its split phases' entry points.
        self.row_entry, self.phase_prefix = gen.row_entries() if gen.reduce else (gen.name, "")
        self.generic = gen.generic
        # the sizes, then the scalars' float64 bits (Kernel.scalars)
        self.dims = None if gen.dims is None else np.concatenate([
            np.array(gen.dims, np.int64), np.array(kernel.scalars, np.float64).view(np.int64)])
        self._dims_on: dict[int, object] = {}   # device -> its copy of ``dims``
        self.index_bits = 64 if gen.idx == "long long" else 32
        self.max_block = gen.max_block   # the kernels' __launch_bounds__
        # The vector entry (None if there is none), its points per iteration, and what it
        # needs of the pointers: (argument index, byte offset, alignment) per vector access.
        self.vector_entry = f"{gen.name}_v" if gen.vector else None
        self.vector_width = gen.vector[0] if gen.vector else 1
        self.vector_access = gen.vector_access()
        self._plans: dict[tuple[int, bool], tuple[list[Launch], int]] = {}

    def aligned(self, pointers: list[int]) -> bool:
        """Whether the vector entry may run on ``pointers`` (the inputs' and outputs' data
        pointers, in argument order): every vector access must be aligned to its size."""
        return self.vector_entry is not None and all(
            (pointers[a] + offset) % align == 0 for a, offset, align in self.vector_access)

    def vector_for(self, arrays) -> bool:
        """Whether this call on CuPy ``arrays`` (inputs, then outputs) runs the vector
        entry: a view's data pointer includes its offset, so it is a per-call question."""
        return self.vector_entry is not None and self.aligned([a.data.ptr for a in arrays])

    def launches(self, limits: DeviceLimits, pointers: list[int] | None = None
                 ) -> tuple[list[Launch], int]:
        """The launches that run this kernel on a device with ``limits``, and the
        workspace they need (8-byte slots; 0 unless a row is split across blocks).
        An elementwise kernel uses its vector entry only when ``pointers`` (as for
        ``aligned``) are given and aligned."""
        return self._launches(limits, pointers is not None and self.aligned(pointers))

    def _launches(self, limits: DeviceLimits, vector: bool) -> tuple[list[Launch], int]:
        if self.empty:
            return [], 0
        max_block = min(self.max_block, limits.max_threads_per_block) // 32 * 32
        if not self.reduce:
            block = min(ELEMENTWISE_BLOCK, max_block)
            return [Launch(self.vector_entry if vector else self.name,
                           self._elementwise_grid(limits, block, vector), block)], 0
        if self.warp_rows:
            block = min(WARP_ROWS_BLOCK, max_block)
            rows_per_block = block // 32
            grid = min(-(-self.rows // rows_per_block), limits.resident_blocks(block),
                       MAX_GRID_THREADS // block)
            return [Launch(self.row_entry, max(grid, 1), block)], 0
        # About POINTS_PER_THREAD points per thread and pass, in 128..1024 threads.
        want = 1 << max(0, (-(-self.inner // POINTS_PER_THREAD) - 1).bit_length())
        block = max(32, min(max_block, max(128, want)))
        resident = limits.resident_blocks(block)
        nsplit = 1
        if self.can_split and self.rows < resident:
            nsplit = min(-(-resident // self.rows),
                         -(-self.inner // (block * POINTS_PER_THREAD)), MAX_SPLIT)
        if nsplit <= 1:
            grid = min(self.rows, resident, MAX_GRID_THREADS // block)
            return [Launch(self.row_entry, max(grid, 1), block)], 0
        grid = self.rows * nsplit
        phases = [Launch(f"{self.phase_prefix}{k}", grid, block, nsplit)
                  for k in range(self.num_reductions + 1)]
        return phases, self.num_reductions * self.rows * nsplit

    def _elementwise_grid(self, limits: DeviceLimits, block: int, vector: bool) -> int:
        """Blocks of an elementwise launch: enough for the points, at most about one
        resident wave (the loop strides over the rest)."""
        # One thread per vector of points (the tail needs fewer than V threads).
        work = -(-self.size // self.vector_width) if vector else self.size
        grid = min(-(-work // block), limits.resident_blocks(block), MAX_GRID_THREADS // block)
        return max(grid, 1)

    def run(self, inputs: list, outputs: list) -> None:
        """Launch the kernel over CuPy ``inputs`` into the preallocated ``outputs``."""
        import cupy

        self._check_args(cupy, inputs, outputs)
        if self.empty:
            return
        args = (*inputs, *outputs)
        vector = self.vector_for(args)
        dev = cupy.cuda.Device()
        if self.dims is not None:
            dims = self._dims_on.get(dev.id)
            if dims is None:
                dims = self._dims_on[dev.id] = cupy.asarray(self.dims)
            args += (dims,)
        plan = self._plans.get((dev.id, vector))
        if plan is None:
            plan = self._plans[dev.id, vector] = self._launches(DeviceLimits.of_device(dev),
                                                                vector)
        launches, slots = plan
        ws = cupy.empty(slots, cupy.uint64) if slots else None
        for launch in launches:
            fn = self._program.function(cupy, dev, launch.entry)
            extra = (ws, np.int32(launch.nsplit)) if launch.nsplit else ()
            fn((launch.grid,), (launch.block,), args + extra)

    def _check_args(self, cupy, inputs: list, outputs: list) -> None:
        # The generated code trusts its arguments (it indexes with compiled-in strides).
        if len(inputs) != self.num_inputs or len(outputs) != self.num_outputs:
            raise ValueError(f"kernel {self.name} takes {self.num_inputs} inputs and "
                             f"{self.num_outputs} outputs, got {len(inputs)} and "
                             f"{len(outputs)}")
        for i, (a, d) in enumerate(zip(inputs, self.in_dtypes)):
            if not isinstance(a, cupy.ndarray):
                raise TypeError(f"kernel {self.name}: inputs must be CuPy arrays, "
                                f"got {type(a).__name__}")
            if d is not None and a.dtype != d.np:
                raise ValueError(f"kernel {self.name}: input {i} must be {d.name}, "
                                 f"got {a.dtype}")
        for o, d, n in zip(outputs, self.out_dtypes, self.out_sizes):
            if not (isinstance(o, cupy.ndarray) and o.dtype == d.np and o.size == n
                    and o.flags.c_contiguous):
                raise ValueError(f"kernel {self.name}: outputs must be C-contiguous CuPy "
                                 f"{[t.name for t in self.out_dtypes]} arrays of "
                                 f"{self.out_sizes} elements")

    def __repr__(self) -> str:
        kind = ((f"elementwise, vectors of {self.vector_width}" if self.vector_entry else
                 "elementwise") if not self.reduce else
                f"{self.num_reductions} reductions, {self.rows}x{self.inner}, "
                + ("warp" if self.warp_rows else "block") + " per row")
        return f"CudaKernel({self.name}, shape={self.shape}, {kind})"


class CudaKernels:
    """Independent elementwise kernels run by one launch: ``run([[inputs...], ...],
    [[outputs...], ...])``, as ``llvm.CompiledKernels`` on the CPU, so that e.g. every
    parameter's optimizer update costs one launch instead of one each (a launch from
    Python costs several microseconds, more than a small kernel runs).

    Each kernel (part p) becomes ``__device__`` functions (``_Generator.part_source``)
    and the entry point ``name`` gives part p the blocks [ends[p-1], ends[p]): as many as
    the part would be launched with alone, all of the elementwise block size. Bit p of
    the last argument, set per call from the pointers as ``CudaKernel.run`` decides,
    runs part p's vector body. Parts keep their own index width (32 or 64 bits).

        >>> multi = compile_kernels([k1, k2], "updates")
        >>> multi.run([[x1], [x2]], [[y1], [y2]])
    """

    def __init__(self, kernels: list[Kernel], name: str) -> None:
        self.name = _ident(name)
        if not 1 <= len(kernels) <= MAX_PARTS:
            raise ValueError(f"{self.name}: 1 to {MAX_PARTS} kernels share a launch, "
                             f"got {len(kernels)}")
        for k in kernels:
            if k.generic:
                # Its code is shared by every size, and launched alone with its sizes.
                raise ValueError(f"{self.name}: kernel {k.name} is size-generic; it "
                                 "launches alone")
        gens = [_Generator(k, f"{self.name}_{p}") for p, k in enumerate(kernels)]
        for k, gen in zip(kernels, gens):
            if gen.reduce:
                raise ValueError(f"{self.name}: kernel {k.name} reduces; only elementwise "
                                 "kernels share a launch")
        if _param_bytes(kernels) > MAX_PARAM_BYTES:
            raise ValueError(f"{self.name}: the kernels' {_param_bytes(kernels)} bytes of "
                             f"parameters exceed a launch's {MAX_PARAM_BYTES}")
        self.parts = [CudaKernel._part(g) for g in gens]
        self.source = (_PRELUDE + math_source(kernels) + "".join(g.part_source() for g in gens)
                       + _multi_entry(self.name, gens))
        self.entries = [self.name]
        self._program = _Program(self.source, self.entries)
        self._compiled_on: set[int] = set()   # devices
        # (device, vector mask) -> the launch (None: every part is empty) and the scalar
        # arguments that follow the arrays.
        self._plans: dict[tuple[int, int], tuple[MultiLaunch | None, tuple]] = {}

    def launch(self, limits: DeviceLimits, pointers: list[list[int]] | None = None
               ) -> "MultiLaunch | None":
        """The launch that runs every part on a device with ``limits`` (None if every
        part is empty). A part runs its vector body only when its ``pointers`` (its
        inputs' and outputs' data pointers, as for ``CudaKernel.aligned``) are given
        and aligned."""
        return self._launch(limits, sum(1 << p for p, (part, ptrs)
                                        in enumerate(zip(self.parts, pointers or []))
                                        if part.aligned(ptrs)))

    def _launch(self, limits: DeviceLimits, mask: int) -> "MultiLaunch | None":
        block = min(ELEMENTWISE_BLOCK, limits.max_threads_per_block // 32 * 32)
        ends, total = [], 0
        for p, part in enumerate(self.parts):
            if not part.empty:
                total += part._elementwise_grid(limits, block, bool(mask >> p & 1))
            ends.append(total)
        return MultiLaunch(self.name, total, block, tuple(ends), mask) if total else None

    def run(self, inputs: list[list], outputs: list[list]) -> None:
        """Launch every part over its CuPy ``inputs`` into its preallocated ``outputs``."""
        import cupy

        if len(inputs) != len(self.parts) or len(outputs) != len(self.parts):
            raise ValueError(f"{self.name} runs {len(self.parts)} kernels, got "
                             f"{len(inputs)} input and {len(outputs)} output lists")
        args, mask = [], 0
        for p, (part, ins, outs) in enumerate(zip(self.parts, inputs, outputs)):
            part._check_args(cupy, ins, outs)
            args += ins
            args += outs
            if part.vector_for((*ins, *outs)):
                mask |= 1 << p
        dev = cupy.cuda.Device()
        plan = self._plans.get((dev.id, mask))
        if plan is None:
            launch = self._launch(DeviceLimits.of_device(dev), mask)
            plan = self._plans[dev.id, mask] = (launch, launch.args() if launch else ())
        launch, scalars = plan
        if launch is not None:
            self._program.function(cupy, dev, self.name)(
                (launch.grid,), (launch.block,), (*args, *scalars))

    def compile(self) -> None:
        """Compile for the current device now rather than at the first ``run``, so that a
        failure shows while the caller can still do without (the plan then keeps the
        separate kernels). CuPy compiles at a kernel's first launch: this one runs no
        part (every block range is empty) and reads no argument."""
        import cupy

        dev = cupy.cuda.Device()
        if dev.id in self._compiled_on:
            return
        nothing = cupy.empty(1, cupy.uint8)
        arrays = sum(p.num_inputs + p.num_outputs for p in self.parts)
        empty = MultiLaunch(self.name, 1, 32, (0,) * len(self.parts), 0)
        self._program.function(cupy, dev, self.name)((1,), (32,),
                                                      (nothing,) * arrays + empty.args())
        self._compiled_on.add(dev.id)

    def __repr__(self) -> str:
        return f"CudaKernels({self.name}, {len(self.parts)} parts)"


@dataclass(frozen=True)
class MultiLaunch:
    """The launch of a ``CudaKernels``: part p runs blocks [ends[p-1], ends[p]), its
    vector body where bit p of ``vector_mask`` is set."""
    entry: str
    grid: int
    block: int
    ends: tuple[int, ...]
    vector_mask: int

    def args(self) -> tuple:
        """The scalar arguments after the arrays, typed as the entry point declares them."""
        return (*(np.int32(e) for e in self.ends), np.uint64(self.vector_mask))


def launch_groups(kernels: list[Kernel]) -> list[list[int]]:
    """How independent ``kernels`` can run: groups of their indices, each one launch
    (``compile_kernels`` for a group of several). Elementwise kernels share launches, as
    many as one launch's parameters hold; a kernel that reduces keeps its own launch (its
    block layout is its own), and so does a size-generic one (its code serves every size:
    a launch of several would be compiled per combination of sizes)."""
    groups: list[list[int]] = []
    shared: list[int] = []
    for i, k in enumerate(kernels):
        if k.reduce_dims or k.generic:
            groups.append([i])
            continue
        if shared and (len(shared) == MAX_PARTS
                       or _param_bytes([kernels[j] for j in shared] + [k]) > MAX_PARAM_BYTES):
            groups.append(shared)
            shared = []
        shared.append(i)
    return groups + [shared] if shared else groups


def compile_kernels(kernels: list[Kernel], name: str) -> CudaKernels:
    """Independent elementwise ``kernels`` (of any shapes) as one launch; equal lists of
    kernels (by their signatures) share one."""
    return _CACHE.get_or_build(_Parts(kernels, name),
                               lambda parts: CudaKernels(parts.kernels, parts.name))


class _Parts:
    """The kernels of a ``CudaKernels`` as ``KernelCache`` keys them. The key starts with a
    string, so it is never a single kernel's signature: both share ``_CACHE`` (and so
    are cleared together)."""

    def __init__(self, kernels: list[Kernel], name: str) -> None:
        self.kernels, self.name = kernels, name

    def signature(self) -> tuple:
        return ("parts", *(k.signature() for k in self.kernels))


def _param_bytes(kernels: list[Kernel]) -> int:
    """The bytes of a CudaKernels entry's parameters: a pointer per array and an int per
    part, then the 8-byte vector mask (after at most 4 bytes of padding)."""
    return sum(8 * (k.num_inputs + len(k.stores)) + 4 for k in kernels) + 12


def _multi_entry(name: str, gens: list["_Generator"]) -> str:
    """The entry point of a CudaKernels: each block runs its share of one part."""
    w = _Writer()
    params = [g._params(f"p{p}_") for p, g in enumerate(gens) if g._params()]
    params.append(", ".join(f"const int end{p}" for p in range(len(gens))))
    params.append("const unsigned long long vec")
    w(f"// ember multi-kernel {name}: part p runs blocks [end(p-1), end(p)), its vector "
      "body if bit p of vec is set")
    head = f'extern "C" __global__ void __launch_bounds__({ELEMENTWISE_BLOCK}) {name}('
    with w.block(head + ",\n        ".join(params) + ")"):
        w("const int b = (int)blockIdx.x;")
        for p, g in enumerate(gens):
            # Its block index and block count within the part's range.
            own = "b, end0" if p == 0 else f"b - end{p - 1}, end{p} - end{p - 1}"
            args = ", ".join(filter(None, [g._args(f"p{p}_"), own]))
            with w.block(f"if (b < end{p})"):
                if g.vector:
                    w(f"if (vec >> {p} & 1) {g.name}_v({args});")
                    w(f"else {g.name}({args});")
                else:
                    w(f"{g.name}({args});")
                w("return;")
    return w.text()


# --fmad=false: a*b+c rounded twice, as eager (CuPy's one kernel per op) does; the
# math library's FMAs are explicit (fmaf) and stay (see llvm/scalar.py's _FMF).
OPTIONS = ("--std=c++17", "--fmad=false")


class _Program:
    """The machine code of one CUDA source, per device: a CUBIN from ember's persistent
    cache (``nvrtc.cached_cubin``: keyed by the source, the device's architecture and
    NVRTC's version; compiled by NVRTC on a miss) loaded as a CuPy module, or, where that
    cannot be done (the cache is off, no NVRTC, a CuPy without ``cuda.function.Module``,
    a driver that refuses the CUBIN), CuPy's ``RawKernel``, which compiles through its
    own cache (``CUPY_CACHE_DIR``). Either runs the same source with the same options."""

    def __init__(self, source: str, entries: list[str]) -> None:
        self.source, self.entries = source, entries
        self._functions: dict[tuple[int, str], object] = {}
        # device -> its loaded module (None: CuPy's RawKernel compiles): one load per
        # device, whichever of the entry points are used
        self._modules: dict[int, object] = {}

    def function(self, cupy, device, entry: str):
        """The launchable ``entry`` on ``device`` (a ``cupy.cuda.Device``, current)."""
        fn = self._functions.get((device.id, entry))
        if fn is None:
            if device.id not in self._modules:
                self._modules[device.id] = self._module(cupy, device)
            module = self._modules[device.id]
            if module is not None:
                fn = module.get_function(entry)
            else:
                # CuPy compiles one module per (source, options) and caches it per
                # device; each RawKernel picks its entry point out of that module.
                with phase("cuda"):   # CuPy compiles at the first launch, or now
                    fn = cupy.RawKernel(self.source, entry, options=OPTIONS)
            self._functions[device.id, entry] = fn
        return fn

    def _module(self, cupy, device):
        module_type = getattr(getattr(getattr(cupy, "cuda", None), "function", None),
                              "Module", None)
        if module_type is None or _CUBINS_OFF or default_cache() is None:
            return None
        from ember.codegen import nvrtc
        try:
            nvrtc.nvrtc_version()
        except nvrtc.NvrtcError as e:
            # No NVRTC of ember's own: CuPy (with its own NVRTC and its own disk cache,
            # CUPY_CACHE_DIR) compiles, as before there was this cache; nothing to say.
            _cubins_off(str(e).splitlines()[0], warn=False)
            return None
        try:
            cubin = nvrtc.cached_cubin(self.source, f"sm_{device.compute_capability}",
                                       self.entries, OPTIONS[1:])
        except nvrtc.NvrtcError:
            return None   # CuPy compiles it and reports the error at the launch
        module = module_type()
        try:
            module.load(cubin)
        except Exception as e:   # e.g. a driver older than the NVRTC that made it
            _cubins_off(f"the driver refused a CUBIN ({type(e).__name__}: {e})")
            return None
        return module


_CUBINS_OFF: str | None = None   # why this process compiles through CuPy instead
# The programs of size-generic kernels by source: kernels of one structure, whatever
# their sizes, share one (held while a kernel uses it).
_PROGRAMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_PROGRAMS_LOCK = threading.Lock()


def _shared_program(source: str, entries: list[str]) -> _Program:
    with _PROGRAMS_LOCK:
        program = _PROGRAMS.get(source)
        if program is None:
            program = _PROGRAMS[source] = _Program(source, entries)
        return program


def _cubins_off(reason: str, warn: bool = True) -> None:
    """From now on this process leaves CUDA compiles to CuPy's RawKernel (said once)."""
    global _CUBINS_OFF
    if _CUBINS_OFF is None:
        _CUBINS_OFF = reason
        if warn:
            warnings.warn(f"ember: CUDA kernels are not kept in ember's cache ({reason}); "
                          "CuPy compiles them", RuntimeWarning, stacklevel=4)


_CACHE = KernelCache()
