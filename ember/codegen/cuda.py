"""GPU backend: one fused ``Kernel`` (elementwise, or row reductions) -> CUDA C -> CuPy.

``cuda_source(kernel)`` writes the CUDA C of a kernel; ``compile_kernel(kernel)`` wraps it
in a ``CudaKernel`` whose ``run(inputs, outputs)`` launches it through ``cupy.RawKernel``
(CuPy is imported only then: this module imports without it):

    >>> from ember import dtypes as dt
    >>> from ember.codegen.kernel import Expr, Kernel, Load
    >>> k = Kernel("k0", (4, 8), loads=[Load(0, dt.float32, (8, 1))],
    ...            exprs=[Expr("load", (0,), dt.float32), Expr("exp", (0,), dt.float32)],
    ...            stores=[1])
    >>> '__global__ void __launch_bounds__(256) k0(' in cuda_source(k)
    True

and on a GPU ``compile_kernel(k).run([x], [y])`` with CuPy float32 arrays ``x``, ``y``.
``compile_kernels(kernels, name)`` runs independent elementwise kernels as one launch
(``CudaKernels``: each kernel's loop becomes a ``__device__`` function over its own range
of the launch's blocks), as ``llvm.compile_kernels`` makes them one call on the CPU; the
plan batches an optimizer's per-parameter updates so.

Scalar semantics are those of the CPU backend (``llvm._Scalar``): NumPy casting, NaN
through maximum/minimum/relu/sign, compares false on NaN except ``ne``, integer
arithmetic wrapping, INT_MIN for out-of-range float->int conversions; exp, log, tanh,
erf and pow are CUDA's own math functions. One difference remains: CuPy compiles every
RawKernel with ``-ftz=true`` (appended after the caller's options), so float32 subnormals
flush to zero on the GPU; float64 is unaffected.

Shapes, strides and offsets are compiled in (``kernel.signature()`` already holds them),
so index arithmetic divides by constants; it is 32-bit unless the sizes or offsets need
64 bits. Layouts:

- elementwise: a grid-stride loop over the collapsed iteration space
  (``llvm.collapse_dims``), about one resident wave of blocks. When every load is
  contiguous or invariant (a broadcast scalar) and every store contiguous, a second entry
  ``<name>_v`` handles V consecutive points an iteration with 16-byte-or-smaller vector
  loads and stores (float4, double2, uchar4, ...) and a scalar tail; alignment is known
  only at run time, so ``run`` takes it only when every vectorized pointer is aligned;
- row reductions: one warp per row when rows are short (``WARP_ROW_MAX``), else one
  block per row; a row's reductions run in order, one pass over the row each (xor-shuffle
  warp reduce, then shared memory across warps), then a last pass stores the per-point
  values. float32 sums accumulate in double, as on the CPU; reduce_max propagates NaN;
- few long rows (a full reduction): each row is split across ``nsplit`` blocks, and the
  kernel runs as ``1 + #reductions`` launches (``<name>_p<k>`` entries): launch k writes
  each block's partial of reduction k to a workspace, later launches combine a row's
  partials (in a fixed order, so every block sees the same value) before going on.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ember import dtypes
from ember.codegen.kernel import REDUCTIONS, Expr, Kernel, KernelCache, Load
from ember.codegen.llvm import collapse_dims
from ember.dtypes import DType

__all__ = ["cuda_source", "compile_kernel", "compile_kernels", "launch_groups", "CudaKernel",
           "CudaKernels", "DeviceLimits", "Launch", "MultiLaunch"]

# Rows up to this long are reduced by one warp each: a block per row would leave most of
# its threads idle and pay two __syncthreads per reduction.
WARP_ROW_MAX = 1024
# Rows at least this long, when there are too few of them to fill the GPU, are split
# across several blocks (the entries ``<name>_p<k>`` exist only for such kernels).
SPLIT_MIN_INNER = 16384
SPLIT_MAX_ROWS = 512
# A block handles at least this many points of a row per pass before a row is split
# further; partials per row are capped so combining them stays a single cheap pass.
POINTS_PER_THREAD = 8
MAX_SPLIT = 1024
# Launches never exceed this many threads; the 32-bit index test leaves room for it.
MAX_GRID_THREADS = 1 << 24
ELEMENTWISE_BLOCK = 256
# A CudaKernels launch holds at most this many parts (its vector mask is 64 bits) and
# this many bytes of parameters (CUDA's limit before 12.1 and Volta).
MAX_PARTS = 64
MAX_PARAM_BYTES = 4096
WARP_ROWS_BLOCK = 256

_I31 = (1 << 31) - 1


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
    return _PRELUDE + _Generator(kernel).source()


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
    """

    def __init__(self, kernel: Kernel) -> None:
        gen = _Generator(kernel)
        self._describe(gen)
        self.source = _PRELUDE + gen.source()
        self.entries = gen.entries()

    @classmethod
    def _part(cls, gen: "_Generator") -> "CudaKernel":
        """A kernel that runs as a part of a ``CudaKernels`` launch: its description
        (arguments, sizes, vector access) without source or entry points of its own."""
        part = cls.__new__(cls)
        part._describe(gen)
        part.source, part.entries = "", []
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
        self.index_bits = 64 if gen.idx == "long long" else 32
        self.max_block = gen.max_block   # the kernels' __launch_bounds__
        # The vector entry (None if there is none), its points per iteration, and what it
        # needs of the pointers: (argument index, byte offset, alignment) per vector access.
        self.vector_entry = f"{gen.name}_v" if gen.vector else None
        self.vector_width = gen.vector[0] if gen.vector else 1
        self.vector_access = gen.vector_access()
        self._functions: dict[str, object] = {}
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
            return [Launch(self.name, max(grid, 1), block)], 0
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
            return [Launch(self.name, max(grid, 1), block)], 0
        grid = self.rows * nsplit
        phases = [Launch(f"{self.name}_p{k}", grid, block, nsplit)
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
        plan = self._plans.get((dev.id, vector))
        if plan is None:
            plan = self._plans[dev.id, vector] = self._launches(DeviceLimits.of_device(dev),
                                                                vector)
        launches, slots = plan
        ws = cupy.empty(slots, cupy.uint64) if slots else None
        for launch in launches:
            fn = self._function(cupy, launch.entry)
            extra = (ws, np.int32(launch.nsplit)) if launch.nsplit else ()
            fn((launch.grid,), (launch.block,), args + extra)

    def _function(self, cupy, entry: str):
        fn = self._functions.get(entry)
        if fn is None:
            # CuPy compiles one module per (source, options) and caches it per device;
            # each RawKernel picks its entry point out of that module.
            fn = self._functions[entry] = cupy.RawKernel(self.source, entry,
                                                         options=("--std=c++17",))
        return fn

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
        gens = [_Generator(k, f"{self.name}_{p}") for p, k in enumerate(kernels)]
        for k, gen in zip(kernels, gens):
            if gen.reduce:
                raise ValueError(f"{self.name}: kernel {k.name} reduces; only elementwise "
                                 "kernels share a launch")
        if _param_bytes(kernels) > MAX_PARAM_BYTES:
            raise ValueError(f"{self.name}: the kernels' {_param_bytes(kernels)} bytes of "
                             f"parameters exceed a launch's {MAX_PARAM_BYTES}")
        self.parts = [CudaKernel._part(g) for g in gens]
        self.source = (_PRELUDE + "".join(g.part_source() for g in gens)
                       + _multi_entry(self.name, gens))
        self.entries = [self.name]
        self._function = None
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
            self._kernel(cupy)((launch.grid,), (launch.block,), (*args, *scalars))

    def compile(self) -> None:
        """Compile for the current device now rather than at the first ``run``, so that a
        failure shows while the caller can still do without (the plan then keeps the
        separate kernels). CuPy compiles at a kernel's first launch: this one runs no
        part (every block range is empty) and reads no argument."""
        import cupy

        dev = cupy.cuda.Device().id
        if dev in self._compiled_on:
            return
        nothing = cupy.empty(1, cupy.uint8)
        arrays = sum(p.num_inputs + p.num_outputs for p in self.parts)
        empty = MultiLaunch(self.name, 1, 32, (0,) * len(self.parts), 0)
        self._kernel(cupy)((1,), (32,), (nothing,) * arrays + empty.args())
        self._compiled_on.add(dev)

    def _kernel(self, cupy):
        if self._function is None:
            self._function = cupy.RawKernel(self.source, self.name, options=("--std=c++17",))
        return self._function

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
    block layout is its own)."""
    groups: list[list[int]] = []
    shared: list[int] = []
    for i, k in enumerate(kernels):
        if k.reduce_dims:
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


_CACHE = KernelCache()


# ---- code generation ------------------------------------------------------------------

F32, F64, I32, I64, B = (dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64,
                         dtypes.bool_)
_CTYPE = {F32: "float", F64: "double", I32: "int", I64: "long long", B: "bool"}
_STORAGE = {**_CTYPE, B: "unsigned char"}   # NumPy and CuPy store bool as a byte
_SUFFIX = {F32: "f32", F64: "f64", I32: "i32", I64: "i64", B: "b"}
# CUDA's built-in vector types are named after the element type (float4, longlong2,
# uchar4); each is aligned to its size.
_VECTOR = {F32: "float", F64: "double", I32: "int", I64: "longlong", B: "uchar"}
_LANES = "xyzw"
# Which block of how many: a kernel's own launch, or its share of a CudaKernels launch
# (the parameters of its part functions).
_GRID = ("blockIdx.x", "gridDim.x")
_PART = ("bid", "nblocks")


class _Writer:
    """Lines of C with indentation; ``segment()`` reserves a place that definitions can
    be added to later (offsets are defined there on first use, see ``_Offsets``)."""

    def __init__(self) -> None:
        self.lines: list = []
        self.depth = 0

    def __call__(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextmanager
    def block(self, head: str):
        self(head + " {")
        self.depth += 1
        yield
        self.depth -= 1
        self("}")

    def segment(self) -> "_Writer":
        seg = _Writer()
        seg.depth = self.depth
        self.lines.append(seg)
        return seg

    def text(self) -> str:
        out: list[str] = []

        def flat(w: "_Writer") -> None:
            for line in w.lines:
                if isinstance(line, _Writer):
                    flat(line)
                else:
                    out.append(line)
        flat(self)
        return "\n".join(out) + "\n"


class _Offsets:
    """The element offsets of every load (index k) and store (index nl + i) at one loop
    level: ``index`` split into digits over ``shape``, then ``base + sum(digit * stride)``.
    Each is defined in ``seg`` on first use, so unused ones cost no code (and NVRTC no
    warnings); a base from an enclosing level is defined there."""

    def __init__(self, seg: _Writer, ix: str, index: str, shape: tuple[int, ...],
                 strides: list[tuple[int, ...]], bases: list, prefix: list[str], tag: str):
        self.seg, self.ix, self.index, self.shape = seg, ix, index, shape
        self.strides, self.bases, self.prefix, self.tag = strides, bases, prefix, tag
        self.digits: list[str] | None = None
        self.defined: set[int] = set()

    def __getitem__(self, i: int) -> str:
        name = self.prefix[i]
        if i in self.defined:
            return name
        self.defined.add(i)
        base = self.bases[i]
        base = base[i] if isinstance(base, _Offsets) else base
        digits = self._digits()
        terms = [] if base == "0" else [base]
        terms += [digits[d] if s == 1 else f"{digits[d]} * {_int(s)}"
                  for d, s in enumerate(self.strides[i]) if s != 0]
        self.seg(f"const {self.ix} {name} = {' + '.join(terms) or '0'};")
        return name

    def element(self, k: int, ptr: str) -> str:
        """The element load ``k`` reads through ``ptr`` at this point."""
        return f"{ptr}[{self[k]}]"

    def _digits(self) -> list[str]:
        if self.digits is None:
            shape, ix, tag = self.shape, self.ix, self.tag
            if len(shape) == 1:
                self.digits = [self.index]
            else:
                t = f"t{tag}"
                self.seg(f"{ix} {t} = {self.index};")
                self.digits = [""] * len(shape)
                for d in range(len(shape) - 1, 0, -1):
                    self.digits[d] = f"{tag}{d}"
                    self.seg(f"const {ix} {tag}{d} = {t} % {_int(shape[d])}; "
                             f"{t} /= {_int(shape[d])};")
                self.digits[0] = t
        return self.digits


class _Lane:
    """Lane ``c`` of a vector iteration, standing in for ``_Offsets`` where
    ``_Generator._value`` reads loads: a contiguous load is a component of the vector
    loaded for the iteration, an invariant load its one element."""

    def __init__(self, vectors: dict[int, str], c: int, kernel: Kernel) -> None:
        self.vectors, self.c, self.k = vectors, c, kernel

    def element(self, k: int, ptr: str) -> str:
        if k in self.vectors:
            return f"{self.vectors[k]}.{_LANES[self.c]}"
        return f"{ptr}[{_int(self.k.loads[k].offset)}]"


class _Generator:
    """Writes the CUDA C of one kernel (see the module docstring for the layouts)."""

    def __init__(self, kernel: Kernel, name: str | None = None) -> None:
        kernel.validate()
        self.k = kernel
        self.name = _ident(name or kernel.name)
        nd = len(kernel.shape)
        split = nd - kernel.reduce_dims
        strides = [ld.strides for ld in kernel.loads] + [st.strides for st in kernel.stores]
        self.reduce = kernel.reduce_dims > 0
        self.reductions = [i for i, e in enumerate(kernel.exprs) if e.op in REDUCTIONS]
        if self.reduce:
            self.outer, self.o_st = collapse_dims(kernel.shape[:split],
                                                  [s[:split] for s in strides])
            self.inner_shape, self.i_st = collapse_dims(kernel.shape[split:],
                                                        [s[split:] for s in strides])
            self.rows, self.inner = math.prod(self.outer), math.prod(self.inner_shape)
            self.empty = self.rows == 0 or (self.inner == 0 and not self.reductions)
            self.row_level = kernel.row_level()
        else:
            self.outer, self.o_st = collapse_dims(kernel.shape, strides)
            self.inner_shape, self.i_st = (), [() for _ in strides]
            self.rows, self.inner = math.prod(self.outer), 1
            self.empty = self.rows == 0
            self.row_level = [False] * len(kernel.exprs)
        self.size = math.prod(kernel.shape)
        self.warp_rows = self.reduce and self.inner <= WARP_ROW_MAX
        self.split = (self.reduce and bool(self.reductions) and not self.warp_rows
                      and self.inner >= SPLIT_MIN_INNER and self.rows <= SPLIT_MAX_ROWS)
        self.idx = "long long" if self._needs_64bit() else "int"
        self.max_block = (1024 if self.reduce and not self.warp_rows else
                          WARP_ROWS_BLOCK if self.reduce else ELEMENTWISE_BLOCK)
        # Each input pointer is typed by the first load that reads it.
        self.in_dtypes: list[DType | None] = [None] * kernel.num_inputs
        for ld in kernel.loads:
            if self.in_dtypes[ld.input] is None:
                self.in_dtypes[ld.input] = ld.dtype
        self.vector = self._vector_plan()

    def _vector_plan(self) -> tuple[int, list[int]] | None:
        """(V, the contiguous loads) if this elementwise kernel also gets a vector entry:
        in the collapsed (then 1-D) iteration space every load it reads has stride 1 or 0
        and every store stride 1; else None. A load of any other stride (broadcast along
        some dims, transposed, reversed) keeps the kernel scalar."""
        k = self.k
        if self.reduce or self.empty or not k.stores or len(self.outer) != 1:
            return None
        nl = len(k.loads)
        used = sorted({k.exprs[n].args[0] for st in k.stores for n in k.cone(st.expr)
                       if k.exprs[n].op == "load"})
        if any(self.o_st[j] not in ((0,), (1,)) for j in used):
            return None
        # (A single point collapses to stride 0 everywhere; its store is contiguous too.)
        if self.size > 1 and any(self.o_st[nl + i] != (1,) for i in range(len(k.stores))):
            return None
        contiguous = [j for j in used if self.o_st[j] == (1,)]
        # 16 bytes is the widest load or store a thread can issue, and CUDA's vector types
        # have at most four lanes; narrower operands use narrower vectors of as many lanes.
        widest = max([k.loads[j].dtype.itemsize for j in contiguous]
                     + [k.exprs[st.expr].dtype.itemsize for st in k.stores])
        return min(4, 16 // widest), contiguous

    def vector_access(self) -> list[tuple[int, int, int]]:
        """What the vector entry needs of its pointers: (argument index, byte offset,
        alignment) per vector load and store."""
        if not self.vector:
            return []
        v, contiguous = self.vector
        k = self.k
        out = []
        for j in contiguous:
            ld = k.loads[j]
            out.append((ld.input, ld.offset * ld.dtype.itemsize, v * ld.dtype.itemsize))
        for i, st in enumerate(k.stores):
            out.append((k.num_inputs + i, 0, v * k.exprs[st.expr].dtype.itemsize))
        return out

    def _needs_64bit(self) -> bool:
        k = self.k
        # Loop indices run up to the size plus one grid (or one split row) of threads.
        bound = self.size + MAX_GRID_THREADS + MAX_SPLIT * 1024
        for ld in k.loads:
            bound = max(bound, abs(ld.offset) + _span(k.shape, ld.strides))
        for st in k.stores:
            bound = max(bound, _span(k.shape, st.strides))
        return bound > _I31

    def entries(self) -> list[str]:
        names = [self.name]
        if self.vector:
            names.append(f"{self.name}_v")
        if self.split:
            names += [f"{self.name}_p{p}" for p in range(len(self.reductions) + 1)]
        return names

    # -- the whole program
    def source(self) -> str:
        w = _Writer()
        k = self.k
        w(f"// ember kernel {self.name}: shape {tuple(k.shape)}, reduce_dims {k.reduce_dims}"
          + (f", ops {'+'.join(k.ops)}" if k.ops else ""))
        params = self._params()
        # The most threads a launch of this kernel may have (see CudaKernel.launches):
        # the bound lets the compiler budget registers so that such a launch always fits.
        bound = f"__launch_bounds__({self.max_block})"
        if not self.reduce:
            self._elementwise_functions(w, f'extern "C" __global__ void {bound}', params,
                                        _GRID)
            return w.text()
        args = self._args()
        w("template <int PHASE>")
        with w.block(f"__device__ __forceinline__ void {self.name}_body({params}, "
                     "unsigned long long* __restrict__ ws, const int nsplit)"):
            self._rows(w)
        with w.block(f'extern "C" __global__ void {bound} {self.name}({params})'):
            w(f"{self.name}_body<-1>({args}, nullptr, 1);")
        if self.split:
            for p in range(len(self.reductions) + 1):
                with w.block(f'extern "C" __global__ void {bound} {self.name}_p{p}({params}, '
                             "unsigned long long* __restrict__ ws, const int nsplit)"):
                    w(f"{self.name}_body<{p}>({args}, ws, nsplit);")
        return w.text()

    def part_source(self) -> str:
        """This elementwise kernel as ``__device__`` functions ``<name>`` (and ``<name>_v``
        if it has a vector entry) that run its grid-stride loop over blocks ``bid`` of
        ``nblocks`` of the caller's launch: a part of a ``CudaKernels`` launch."""
        assert not self.reduce, "only elementwise kernels share a launch"
        w = _Writer()
        k = self.k
        w(f"// ember kernel part {self.name} ({k.name}): shape {tuple(k.shape)}"
          + (f", ops {'+'.join(k.ops)}" if k.ops else ""))
        params = f"{self._params()}, const int {_PART[0]}, const int {_PART[1]}"
        self._elementwise_functions(w, "__device__ __forceinline__ void", params, _PART)
        return w.text()

    def _elementwise_functions(self, w: _Writer, head: str, params: str,
                               blocks: tuple[str, str]) -> None:
        """The scalar function and, if any, the vector one, over ``blocks``."""
        with w.block(f"{head} {self.name}({params})"):
            self._elementwise(w, blocks)
        if self.vector:
            w(f"// {self.vector[0]} points per iteration; the caller checks alignment")
            with w.block(f"{head} {self.name}_v({params})"):
                self._vector_elementwise(w, blocks)

    def _params(self, prefix: str = "") -> str:
        """The parameter list: the inputs' then the outputs' pointers (names prefixed
        with ``prefix`` where several kernels' parameters share one list)."""
        ps = []
        for i, d in enumerate(self.in_dtypes):
            ty = _STORAGE[d] if d is not None else "void"
            ps.append(f"const {ty}* __restrict__ {prefix}in{i}")
        for i, st in enumerate(self.k.stores):
            ps.append(f"{_STORAGE[self.k.exprs[st.expr].dtype]}* __restrict__ {prefix}out{i}")
        return ", ".join(ps)

    def _args(self, prefix: str = "") -> str:
        """The names of ``_params(prefix)``, to pass them on."""
        return ", ".join([f"{prefix}in{i}" for i in range(self.k.num_inputs)]
                         + [f"{prefix}out{i}" for i in range(len(self.k.stores))])

    def _level(self, w: _Writer, index: str, shape, strides, bases: list, prefixes: tuple,
               tag: str) -> _Offsets:
        nl, ns = len(self.k.loads), len(self.k.stores)
        names = [f"{prefixes[0]}{j}" for j in range(nl)] + [f"{prefixes[1]}{i}" for i in range(ns)]
        return _Offsets(w.segment(), self.idx, index, shape, strides, bases, names, tag)

    # -- elementwise: a grid-stride loop over the collapsed iteration space
    def _grid_loop(self, var: str, start: int, end: int, blocks: tuple[str, str]) -> str:
        """A grid-stride loop over [start, end) as block ``blocks[0]`` of ``blocks[1]``."""
        ix = self.idx
        block, nblocks = blocks
        first = f"({ix}){block} * ({ix})blockDim.x + ({ix})threadIdx.x"
        if start:
            first = f"{_int(start)} + {first}"
        return (f"for ({ix} {var} = {first}; {var} < {_int(end)}; "
                f"{var} += ({ix})blockDim.x * ({ix}){nblocks})")

    def _elementwise(self, w: _Writer, blocks: tuple[str, str], start: int = 0) -> None:
        """The points from ``start`` on, one per iteration."""
        k = self.k
        nl = len(k.loads)
        with w.block(self._grid_loop("i", start, self.size, blocks)):
            bases = [_int(ld.offset) for ld in k.loads] + ["0"] * len(k.stores)
            offs = self._level(w, "i", self.outer, self.o_st, bases, ("o", "s"), "d")
            memo: dict[int, str] = {}
            for i, st in enumerate(k.stores):
                v = self._value(w, st.expr, memo, offs, "p")
                self._store(w, i, v, offs[nl + i])

    def _vector_elementwise(self, w: _Writer, blocks: tuple[str, str]) -> None:
        """V consecutive points per iteration: each contiguous load is one vector load,
        the lanes are the scalar code over its components, each store one vector store;
        then the last size % V points as in the scalar entry."""
        k = self.k
        v, contiguous = self.vector
        nvec = self.size // v
        if nvec:
            with w.block(self._grid_loop("v", 0, nvec, blocks)):
                vectors: dict[int, str] = {}
                for j in contiguous:
                    ld = k.loads[j]
                    ty = f"{_VECTOR[ld.dtype]}{v}"
                    ptr = self._in_ptr(ld)
                    if ld.offset:
                        ptr = f"{ptr} + {_int(ld.offset)}"
                    w(f"const {ty} vec{j} = reinterpret_cast<const {ty}*>({ptr})[v];")
                    vectors[j] = f"vec{j}"
                # Values that read no contiguous load are the same in every lane: lane 0
                # computes them, the others reuse its names.
                invariant: list[bool] = []
                for e in k.exprs:
                    invariant.append(e.args[0] not in vectors if e.op == "load" else
                                     e.op == "const" or all(invariant[a] for a in e.args))
                shared: dict[int, str] = {}
                lanes = []
                for c in range(v):
                    memo = dict(shared)
                    lane = _Lane(vectors, c, k)
                    lanes.append([self._value(w, st.expr, memo, lane, f"l{c}_")
                                  for st in k.stores])
                    if c == 0:
                        shared = {j: name for j, name in memo.items() if invariant[j]}
                for i, st in enumerate(k.stores):
                    d = k.exprs[st.expr].dtype
                    ty = f"{_VECTOR[d]}{v}"
                    parts = ", ".join(self._stored(d, lanes[c][i]) for c in range(v))
                    w(f"reinterpret_cast<{ty}*>(out{i})[v] = {ty}{{{parts}}};")
        if self.size % v:
            # Fewer than V points, so one iteration for a few threads.
            self._elementwise(w, blocks, start=nvec * v)

    # -- row reductions
    def _rows(self, w: _Writer) -> None:
        k, ix = self.k, self.idx
        nl, ns = len(k.loads), len(k.stores)
        last = len(self.reductions)
        if self.warp_rows:
            w("const int tpr = 32;")
        else:
            w("const int tpr = (int)blockDim.x;")
            w("__shared__ unsigned long long smem[32];")
        w("const int gpb = (int)blockDim.x / tpr;")
        w("const int lane = (int)threadIdx.x % tpr;")
        loop = (f"for ({ix} g = ({ix})blockIdx.x * ({ix})gpb + ({ix})((int)threadIdx.x / tpr); "
                f"g < ({ix}){_int(self.rows)} * nsplit; g += ({ix})gridDim.x * ({ix})gpb)")
        with w.block(loop):
            w(f"const {ix} row = g / nsplit;")
            w(f"const {ix} vl = (g - row * nsplit) * tpr + lane;   // this thread's first point")
            w(f"const {ix} nthreads = ({ix})nsplit * tpr;")
            bases = [_int(ld.offset) for ld in k.loads] + ["0"] * ns
            row_offs = self._level(w, "row", self.outer, self.o_st, bases, ("ro", "rs"), "d")
            memo: dict[int, str] = {}
            for r, j in enumerate(self.reductions):
                self._reduction(w, r, j, memo, row_offs)
            point = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
            rowst = [i for i in range(ns) if i not in point]
            for i in rowst:
                self._value(w, k.stores[i].expr, memo, row_offs, "r")
            for i in point:
                self._ensure_row(w, k.stores[i].expr, memo, row_offs)
            with w.block(f"if (PHASE < 0 || PHASE == {last})"):
                if rowst:
                    with w.block("if (vl == 0)"):
                        for i in rowst:
                            self._store(w, i, memo[k.stores[i].expr], row_offs[nl + i])
                if point:
                    with w.block(self._inner_loop()):
                        offs = self._inner_offsets(w, row_offs)
                        local = dict(memo)
                        for i in point:
                            v = self._value(w, k.stores[i].expr, local, offs, "p")
                            self._store(w, i, v, offs[nl + i])

    def _inner_loop(self) -> str:
        ix = self.idx
        return f"for ({ix} j = vl; j < {_int(self.inner)}; j += nthreads)"

    def _inner_offsets(self, w: _Writer, row_offs: _Offsets) -> _Offsets:
        n = len(self.k.loads) + len(self.k.stores)
        return self._level(w, "j", self.inner_shape, self.i_st, [row_offs] * n,
                           ("io", "is"), "e")

    def _reduction(self, w: _Writer, r: int, j: int, memo: dict, row_offs: _Offsets) -> None:
        k = self.k
        e = k.exprs[j]
        arg = e.args[0]
        acc = _acc_dtype(e)
        red = f"ember_red_{e.op[7:]}_{_SUFFIX[acc]}"
        self._ensure_row(w, arg, memo, row_offs)
        a = f"a{j}"
        w(f"{_CTYPE[acc]} {a};")
        with w.block(f"if (PHASE < 0 || PHASE == {r})"):
            w(f"{a} = {red}::identity();")
            with w.block(self._inner_loop()):
                offs = self._inner_offsets(w, row_offs)
                v = self._value(w, arg, dict(memo), offs, "p")
                v = _convert(v, k.exprs[arg].dtype, e.dtype)
                if acc is not e.dtype:
                    v = _convert(v, e.dtype, acc)
                w(f"{a} = {red}::apply({a}, {v});")
            if self.warp_rows:
                w(f"{a} = ember_warp_reduce<{red}>({a});")
            else:
                w(f"{a} = ember_block_reduce<{red}>({a}, smem);")
            if self.split:
                with w.block(f"if (PHASE == {r})"):
                    w(f"if (threadIdx.x == 0) *reinterpret_cast<{_CTYPE[acc]}*>("
                      f"ws + {_int(r * self.rows)} * nsplit + g) = {a};")
                    w("continue;")
        if self.split:
            # Later phases: this row's partials from the earlier launch, combined in the
            # same order by every block of the row.
            with w.block("else"):
                w(f"{a} = {red}::identity();")
                with w.block("for (int t = (int)threadIdx.x; t < nsplit; t += (int)blockDim.x)"):
                    w(f"{a} = {red}::apply({a}, *reinterpret_cast<const {_CTYPE[acc]}*>("
                      f"ws + ({_int(r * self.rows)} + row) * nsplit + t));")
                w(f"{a} = ember_block_reduce<{red}>({a}, smem);")
        name = f"r{j}"
        w(f"const {_CTYPE[e.dtype]} {name} = {_convert(a, acc, e.dtype)};")
        memo[j] = name

    def _ensure_row(self, w: _Writer, j: int, memo: dict, offs: _Offsets) -> None:
        """Compute, at row scope, the row-level exprs that expr ``j`` uses (so an inner
        loop reads them instead of recomputing them per point)."""
        for n in sorted(self.k.cone(j, memo.__contains__)):
            if self.row_level[n] and n not in memo:
                self._value(w, n, memo, offs, "r")

    # -- values and stores
    def _value(self, w: _Writer, j: int, memo: dict, offs: _Offsets, prefix: str) -> str:
        """The C name of expr ``j``'s value, writing its definition (and its operands')
        where not already in ``memo``."""
        if j in memo:
            return memo[j]
        k = self.k
        e = k.exprs[j]
        if e.op == "load":
            ld = k.loads[e.args[0]]
            code = offs.element(e.args[0], self._in_ptr(ld))
            if ld.dtype is B:
                code = f"({code} != 0)"
            code = _convert(code, ld.dtype, e.dtype)
        elif e.op == "const":
            code = _literal(e.args[0], e.dtype)
        elif e.op in REDUCTIONS:
            raise AssertionError(f"reduction {j} used before it was computed")
        else:
            args = [self._value(w, a, memo, offs, prefix) for a in e.args]
            code = _op(e.op, args, [k.exprs[a].dtype for a in e.args], e.dtype)
        name = f"{prefix}{j}"
        w(f"const {_CTYPE[e.dtype]} {name} = {code};")
        memo[j] = name
        return name

    def _in_ptr(self, ld: Load) -> str:
        """The input pointer of load ``ld``, typed as the load's dtype."""
        ptr = f"in{ld.input}"
        if self.in_dtypes[ld.input] is not ld.dtype:
            ptr = f"reinterpret_cast<const {_STORAGE[ld.dtype]}*>({ptr})"
        return ptr

    @staticmethod
    def _stored(dt: DType, value: str) -> str:
        return f"(unsigned char){value}" if dt is B else value

    def _store(self, w: _Writer, i: int, value: str, off: str) -> None:
        dt = self.k.exprs[self.k.stores[i].expr].dtype
        w(f"out{i}[{off}] = {self._stored(dt, value)};")


def _ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name or "kernel")
    return ident if not ident[0].isdigit() else "k_" + ident


def _span(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """The largest |element offset| a stride list reaches over ``shape``."""
    return sum(max(n - 1, 0) * abs(s) for n, s in zip(shape, strides))


def _int(v: int) -> str:
    """An integer literal of a type wide enough for it."""
    v = int(v)
    return str(v) if -_I31 <= v <= _I31 else f"{v}LL"


def _acc_dtype(e: Expr) -> DType:
    # float32 sums accumulate in double, as the CPU backend does.
    if e.op == "reduce_sum" and e.dtype.is_floating_point:
        return F64
    return e.dtype


# ---- scalar ops -----------------------------------------------------------------------

_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_FLOAT_RESULT = {"exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "div"}
_MATH = {"abs": "fabs", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "exp": "exp",
         "log": "log", "tanh": "tanh", "erf": "erf"}
_INF_BITS = {F32: "__int_as_float(0x7f800000)",
             F64: "__longlong_as_double(0x7ff0000000000000LL)"}
_NAN_BITS = {F32: "__int_as_float(0x7fc00000)",
             F64: "__longlong_as_double(0x7ff8000000000000LL)"}


def _convert(x: str, src: DType, dst: DType) -> str:
    """NumPy ``astype`` from ``src`` to ``dst`` of the C value ``x`` (as llvm.py)."""
    if src is dst:
        return x
    if dst is B:
        return f"({x} != 0)"             # a NaN is truthy: != is true for it
    if dst.is_floating_point or not src.is_floating_point:
        return f"(({_CTYPE[dst]})({x}))"  # bool -> 0/1; ints wrap when narrowed
    # float -> int: INT_MIN for NaN, inf and out-of-range values, as x86 (so NumPy).
    return f"ember_to_{_SUFFIX[dst]}({x})"


def _literal(value, dt: DType) -> str:
    if dt.is_floating_point:
        v = float(value)
        if dt is F32:
            with np.errstate(over="ignore"):
                v = float(np.float32(v))
        if math.isnan(v):
            return _NAN_BITS[dt]
        if math.isinf(v):
            return ("-" if v < 0 else "") + _INF_BITS[dt]
        # repr round-trips the double; a float32 value's nearest float is itself.
        return repr(v) + ("f" if dt is F32 else "")
    if dt is B:
        return "true" if bool(value) else "false"
    bits = dt.itemsize * 8
    v = int(value) & ((1 << bits) - 1)   # integer literals wrap like NumPy casts
    v = v - (1 << bits) if v >> (bits - 1) else v
    if v == -(1 << (bits - 1)):
        return f"(-{-(v + 1)} - 1)" if bits == 32 else f"(-{-(v + 1)}LL - 1)"
    return str(v) if bits == 32 else f"{v}LL"


def _op(name: str, args: list[str], arg_dtypes: list[DType], out: DType) -> str:
    """A C expression for registry op ``name`` (semantics of ``llvm._Scalar.op``)."""
    if name == "cast":
        return _convert(args[0], arg_dtypes[0], out)
    if name in _COMPARE:
        dt = dtypes.promote(*arg_dtypes)
        x, y = (_convert(a, d, dt) for a, d in zip(args, arg_dtypes))
        # C compares are NumPy's: false with a NaN operand, except != which is true.
        return f"({x} {_COMPARE[name]} {y})"
    if name.startswith("logical_"):
        bs = [_convert(a, d, B) for a, d in zip(args, arg_dtypes)]
        if name == "logical_not":
            return f"(!{bs[0]})"
        if name in ("logical_and", "logical_or"):
            return f"({bs[0]} {'&&' if name == 'logical_and' else '||'} {bs[1]})"
    if name == "where":
        return (f"({_convert(args[0], arg_dtypes[0], B)} ? {_convert(args[1], arg_dtypes[1], out)}"
                f" : {_convert(args[2], arg_dtypes[2], out)})")
    if name in _FLOAT_RESULT and not out.is_floating_point:
        raise NotImplementedError(f"op {name} with result dtype {out}")
    a = [_convert(x, d, out) for x, d in zip(args, arg_dtypes)]
    code = None
    if out.is_floating_point:
        code = _float_op(name, a, out)
    elif out is B:
        code = _BOOL_OPS.get(name)
        code = code and code.format(*a)
    else:
        code = _INT_OPS.get(name)
        code = code and code.format(*a, T=_CTYPE[out])
    if code is None:
        raise NotImplementedError(f"op {name} on {out} has no CUDA lowering")
    return code


def _float_op(name: str, a: list[str], out: DType) -> str | None:
    f = "f" if out is F32 else ""
    one = "1.0f" if out is F32 else "1.0"
    if name in _MATH:
        return f"{_MATH[name]}{f}({a[0]})"
    return {
        "neg": lambda: f"(-{a[0]})",
        "sign": lambda: f"ember_sign({a[0]})",
        "relu": lambda: f"ember_relu({a[0]})",
        "sigmoid": lambda: f"({one} / ({one} + exp{f}(-{a[0]})))",
        "add": lambda: f"({a[0]} + {a[1]})",
        "sub": lambda: f"({a[0]} - {a[1]})",
        "mul": lambda: f"({a[0]} * {a[1]})",
        "div": lambda: f"({a[0]} / {a[1]})",
        "pow": lambda: f"pow{f}({a[0]}, {a[1]})",
        "maximum": lambda: f"ember_maximum({a[0]}, {a[1]})",
        "minimum": lambda: f"ember_minimum({a[0]}, {a[1]})",
    }.get(name, lambda: None)()


# Integer arithmetic wraps like NumPy: done on the unsigned type (signed overflow is
# undefined in C++, and NVRTC's optimizer would be entitled to exploit it).
_INT_OPS = {
    "neg": "ember_neg({0})", "abs": "ember_iabs({0})", "sign": "ember_sign({0})",
    "relu": "ember_relu({0})", "add": "ember_add({0}, {1})", "sub": "ember_sub({0}, {1})",
    "mul": "ember_mul({0}, {1})", "maximum": "ember_maximum({0}, {1})",
    "minimum": "ember_minimum({0}, {1})", "pow": "ember_ipow({0}, {1})",
}
# NumPy's bool arithmetic is logic.
_BOOL_OPS = {
    "abs": "{0}", "relu": "{0}", "add": "({0} || {1})", "maximum": "({0} || {1})",
    "mul": "({0} && {1})", "minimum": "({0} && {1})", "pow": "({0} || !{1})",
}


_PRELUDE = r"""#ifndef EMBER_CUDA_PRELUDE
#define EMBER_CUDA_PRELUDE
#define EMBER_FN __device__ __forceinline__

// float -> int as x86 (and so NumPy there): INT_MIN for NaN, inf and out-of-range values.
// (A float argument widens to double exactly; the limits are powers of two.)
EMBER_FN int ember_to_i32(double v) {
    return (v >= -2147483648.0 && v < 2147483648.0) ? (int)v : (-2147483647 - 1);
}
EMBER_FN long long ember_to_i64(double v) {
    return (v >= -9223372036854775808.0 && v < 9223372036854775808.0)
        ? (long long)v : (-9223372036854775807LL - 1);
}

template <class T> struct ember_unsigned;
template <> struct ember_unsigned<int> { typedef unsigned int type; };
template <> struct ember_unsigned<long long> { typedef unsigned long long type; };
template <class T> EMBER_FN T ember_add(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x + (U)y);
}
template <class T> EMBER_FN T ember_sub(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x - (U)y);
}
template <class T> EMBER_FN T ember_mul(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x * (U)y);
}
template <class T> EMBER_FN T ember_neg(T x) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)0 - (U)x);
}
template <class T> EMBER_FN T ember_iabs(T x) { return x < 0 ? ember_neg(x) : x; }
// Exponentiation by squaring; NumPy rejects negative exponents, we give C's truncated
// answer (0 unless |x| == 1), as the CPU backend.
template <class T> EMBER_FN T ember_ipow(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    if (y < 0) return x == 1 ? (T)1 : x == -1 ? ((y & 1) ? (T)-1 : (T)1) : (T)0;
    U acc = 1, base = (U)x;
    while (y > 0) {
        if (y & 1) acc *= base;
        base *= base;
        y >>= 1;
    }
    return (T)acc;
}
// NumPy semantics: sign(NaN) is NaN and sign(-0.0) is +0.0; relu and maximum/minimum keep
// a NaN (x != x is false for integers, so these serve them too).
template <class T> EMBER_FN T ember_sign(T x) {
    return x > 0 ? (T)1 : x < 0 ? (T)-1 : x == 0 ? (T)0 : x;
}
template <class T> EMBER_FN T ember_relu(T x) { return x < 0 ? (T)0 : x; }
template <class T> EMBER_FN T ember_maximum(T x, T y) { return x != x ? x : (x > y ? x : y); }
template <class T> EMBER_FN T ember_minimum(T x, T y) { return x != x ? x : (x < y ? x : y); }
// reduce_max over floats: a NaN on either side wins (torch.amax, np.max), and +0 ranks
// above -0 (llvm.maximum, which the CPU backend uses).
template <class T> EMBER_FN T ember_max_nan(T a, T b) {
    if (a != a) return a;
    if (b != b) return b;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}

// Reductions: the accumulator type, its identity and its combine.
#define EMBER_RED(NAME, T, IDENTITY, APPLY) \
    struct NAME { \
        typedef T type; \
        static __device__ __forceinline__ T identity() { return IDENTITY; } \
        static __device__ __forceinline__ T apply(T a, T b) { return APPLY; } \
    };
EMBER_RED(ember_red_sum_f64, double, 0.0, a + b)
EMBER_RED(ember_red_sum_i32, int, 0, ember_add(a, b))
EMBER_RED(ember_red_sum_i64, long long, 0, ember_add(a, b))
EMBER_RED(ember_red_sum_b, bool, false, a != b)
EMBER_RED(ember_red_max_f32, float, __int_as_float((int)0xff800000u), ember_max_nan(a, b))
EMBER_RED(ember_red_max_f64, double,
          __longlong_as_double((long long)0xfff0000000000000ull), ember_max_nan(a, b))
EMBER_RED(ember_red_max_i32, int, (-2147483647 - 1), (b > a ? b : a))
EMBER_RED(ember_red_max_i64, long long, (-9223372036854775807LL - 1), (b > a ? b : a))
EMBER_RED(ember_red_max_b, bool, false, a || b)

EMBER_FN float ember_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN double ember_shfl_xor(double v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN int ember_shfl_xor(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN long long ember_shfl_xor(long long v, int m) {
    return __shfl_xor_sync(0xffffffffu, v, m);
}
EMBER_FN bool ember_shfl_xor(bool v, int m) {
    return __shfl_xor_sync(0xffffffffu, (int)v, m) != 0;
}

// Butterfly (xor) shuffles leave the warp's result in every lane, combined in the same
// order in each (a + b == b + a exactly), so all lanes agree bit for bit.
template <class R> EMBER_FN typename R::type ember_warp_reduce(typename R::type v) {
    for (int m = 16; m > 0; m >>= 1) v = R::apply(v, ember_shfl_xor(v, m));
    return v;
}
// Block reduce: warps reduce, lane 0 of each posts to shared memory, then every warp
// reduces the posted values (so every thread gets the result without a broadcast).
// blockDim.x must be a multiple of 32; every thread of the block must call it.
template <class R>
EMBER_FN typename R::type ember_block_reduce(typename R::type v, unsigned long long* smem) {
    typedef typename R::type T;
    T* s = reinterpret_cast<T*>(smem);
    const int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
    v = ember_warp_reduce<R>(v);
    if (lane == 0) s[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? s[lane] : R::identity();
    v = ember_warp_reduce<R>(v);
    __syncthreads();   // smem is reused by the next reduction
    return v;
}
#endif  // EMBER_CUDA_PRELUDE
"""
