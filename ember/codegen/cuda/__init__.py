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
sigmoid, erf and softplus are ``codegen/mathlib.py``'s programs, rendered as
``__device__`` functions with no FMA contraction, so they give the CPU's bits (sqrt, sin,
cos and pow are CUDA's own). One difference remains: CuPy compiles every RawKernel with
``-ftz=true`` (appended after the caller's options), so float32 subnormals flush to zero
on the GPU; float64 is unaffected.

Shapes, strides and offsets are compiled in (``kernel.signature()`` already holds them),
so index arithmetic divides by constants; it is 32-bit unless the sizes or offsets need
64 bits. A size-generic kernel (``Kernel.generic``, for dynamic shapes) instead reads
every size, every stride other than 0 and 1 and every nonzero offset of its collapsed
layout from an int64 ``dims`` argument (after the outputs), indexes in 64 bits, and is
named after its structure: kernels that differ only in sizes have one source and share
one module, each launched with its own ``dims`` and launch sizes. What the static
generator decides from sizes it holds every variant of: a reduction's source has a
block-per-row layout (with split phases), a warp-per-row one and, with float32 sums, a
block-per-row one summing in float64; each instance launches the one the static kernel of
its sizes would use. Generic kernels never share a ``CudaKernels`` launch. Layouts:

- elementwise: a grid-stride loop over the collapsed iteration space
  (``llvm.collapse_dims``), about one resident wave of blocks. When every load is
  contiguous or invariant (a broadcast scalar) and every store contiguous, a second entry
  ``<name>_v`` handles V consecutive points an iteration with 16-byte-or-smaller vector
  loads and stores (float4, double2, uchar4, ...) and a scalar tail; alignment is known
  only at run time, so ``run`` takes it only when every vectorized pointer is aligned;
- row reductions: one warp per row when rows are short (``WARP_ROW_MAX``), else one
  block per row; a row's reductions run in order, one pass over the row each (xor-shuffle
  warp reduce, then shared memory across warps), then a last pass stores the per-point
  values. Accumulators follow ``policy.accumulator_dtype`` as on the CPU (float32 sums in
  float32 up to 64K points a row, float64 beyond); reduce_max propagates NaN;
- few long rows (a full reduction): each row is split across ``nsplit`` blocks, and the
  kernel runs as ``1 + #reductions`` launches (``<name>_p<k>`` entries): launch k writes
  each block's partial of reduction k to a workspace, later launches combine a row's
  partials (in a fixed order, so every block sees the same value) before going on.
"""
from __future__ import annotations

from ember.codegen.backend import Backend
from ember.codegen.kernel import Kernel
from ember.codegen.cuda.launch import (_CACHE, CudaKernel, CudaKernels, DeviceLimits, Launch,
                                       MultiLaunch, _param_bytes, compile_kernel,
                                       compile_kernels, cuda_source, launch_groups)
from ember.codegen.cuda.ops import _PRELUDE
from ember.codegen.cuda.source import (ELEMENTWISE_BLOCK, MAX_GRID_THREADS, MAX_PARAM_BYTES,
                                       MAX_PARTS, MAX_SPLIT, POINTS_PER_THREAD,
                                       SPLIT_MAX_ROWS, SPLIT_MIN_INNER, WARP_ROW_MAX,
                                       WARP_ROWS_BLOCK, _Generator)

# (Private names are re-exported for the tests and tools that reach them.)
# Files: launch.py (CudaKernel(s), launch sizes, the cache), source.py (the CUDA C of a
# Kernel's loops), ops.py (the op table: a C expression per op and dtype, the prelude).
__all__ = ["CudaBackend", "cuda_source", "compile_kernel", "compile_kernels", "launch_groups", "CudaKernel",
           "CudaKernels", "DeviceLimits", "Launch", "MultiLaunch"]


class CudaBackend(Backend):
    """The GPU's code generator (registered for device type "cuda"; CuPy is needed only
    to launch)."""

    name = "cuda"
    device_type = "cuda"
    runtime_scalars = True   # a generic kernel reads them from dims (source.py, SC<i>)

    def compile_kernel(self, kernel: Kernel) -> CudaKernel:
        return compile_kernel(kernel)

    def batch_groups(self, kernels: list[Kernel]) -> list[list[int]]:
        # Elementwise kernels share launches, as many as a launch's parameters hold;
        # reductions keep their own.
        return launch_groups(kernels)

    def compile_batch(self, kernels: list[Kernel], name: str) -> CudaKernels:
        multi = compile_kernels(kernels, name)
        multi.compile()   # now, while a failure can keep the separate kernels
        return multi
