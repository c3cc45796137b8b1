"""CPU backend (package): one fused ``Kernel`` (elementwise, or row reductions) -> LLVM IR -> native vector code.

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
exp, log, tanh, sigmoid, erf and softplus are ``codegen/mathlib.py``'s programs, rendered
inline so they vectorize (``llvm.exp`` and libm calls stay scalar, about 10x slower,
DESIGN section 6); float32 pow is built from the float64 exp and log programs.
Large kernels split their outermost loop across a persistent thread pool: ctypes
releases the GIL during the call.
"""
from __future__ import annotations

from ember.codegen.backend import Backend
from ember.codegen.kernel import Kernel, collapse_dims
from ember.codegen.llvm.jit import _DATA_OFFSET, _jit, _target_machine  # noqa: F401
from ember.codegen.llvm.kernels import (_CACHE, PARALLEL_MIN_NS, TIMED_CALLS,
                                        CompiledKernel, CompiledKernels, compile_kernel,
                                        compile_kernels, estimate_ns)
from ember.codegen.llvm.loops import _Layout, _build_module
from ember.codegen.llvm.scalar import _Scalar

# (Private names are re-exported for the tests and tools that reach them.)
# Files: jit.py (target machine, MCJIT, thread pool), loops.py (the loop nest of a
# Kernel), scalar.py (the op table: scalar IR per op and dtype), kernels.py (compiled
# kernels and their cache).
__all__ = ["LLVMBackend", "compile_kernel", "compile_kernels", "CompiledKernel", "CompiledKernels",
           "collapse_dims", "estimate_ns"]


class LLVMBackend(Backend):
    """The CPU's code generator (registered for device type "cpu")."""

    name = "llvm"
    device_type = "cpu"
    column_reductions = True   # loops.py's column order
    runtime_scalars = True     # read from the generic kernel's dims (loops.py)

    def compile_kernel(self, kernel: Kernel) -> CompiledKernel:
        return compile_kernel(kernel)

    def compile_batch(self, kernels: list[Kernel], name: str) -> CompiledKernels:
        return compile_kernels(kernels, name)
