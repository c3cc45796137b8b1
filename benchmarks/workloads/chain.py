"""The elementwise chain ``gelu(x * a + b) * sigmoid(x) + x * x`` (exact, erf GELU).

Seventeen scalar operations per element on float32; one fused kernel reads x once and
writes y once, so the bound is memory bandwidth (8 bytes per element). ``a`` and ``b``
are 0-dim tensors. Besides the libraries, the cell "ember kernel" runs the chain as one
hand-built ``Kernel`` through ember's LLVM codegen (on cuda: its CUDA codegen), without
``ember.compile``, into a preallocated output: what ember.compile could reach.

On cuda the chain runs at 16M and 256M elements (256M float32: 1 GiB per array), against
CuPy eager (the NumPy cell's code on CuPy arrays), torch and torch.compile; its aim is
``GPU_AIM``: ember at least 80% of the bandwidth of a device-to-device copy of the same
bytes (``cupy.copyto``, measured in the same run), from 16M elements.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads.common import (Args, Lazy, arrays, count_label, cupy_impl,
                                         jax_impl, library_impls, parse_count, plain_impl,
                                         resolve)

SIZES = ["1M", "16M"]
QUICK_SIZES = ["4K"]
GPU_SIZES = ["16M", "256M"]
GPU_QUICK_SIZES = QUICK_SIZES
# ember's bandwidth on the GPU as a fraction of a device-to-device copy of the same bytes,
# from 16M elements (128 MiB moved; smaller copies take microseconds: launches dominate).
GPU_AIM = 0.8
GPU_AIM_FROM = 16 << 20
INV_SQRT2 = 1 / math.sqrt(2)


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        n = parse_count(text)
        suffix = "" if device == "cpu" else f"_{device}"
        out.append(Workload(
            f"chain_{count_label(n)}{suffix}", "chain",
            f"gelu(x*a+b)*sigmoid(x)+x*x, {n:,} float32" + (f" on {device}" if suffix else ""),
            chain_impls(n, device), nbytes=8 * n, device=device,
            reference="numpy" if device == "cpu" else "torch",
            reference_fallbacks=() if device == "cpu" else ("cupy",),
            aim=GPU_AIM if device != "cpu" and n >= GPU_AIM_FROM else None))
    return out


def inputs(n: int) -> list[np.ndarray]:
    """x ~ N(0, 1) and the 0-dim a = 1.1, b = 0.1, all float32."""
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    return [x, np.array(1.1, np.float32), np.array(0.1, np.float32)]


def make_chain(lib: Any) -> Callable[..., Any]:
    """The chain in PyTorch's words, for ``lib`` = ember or torch."""
    F = lib.nn.functional

    def chain(x, a, b):
        return F.gelu(x * a + b) * lib.sigmoid(x) + x * x
    return chain


def chain_impls(n: int, device: str = "cpu") -> list[Impl]:
    args = Lazy(lambda: inputs(n))
    impls = library_impls(make_chain, args, device)
    if device != "cpu":
        def cupy_notes() -> list[str]:
            import cupy
            return [f"erf: {erf_function(cupy)[1]}"]
        return impls[:1] + [ember_cuda_kernel_impl(n, args)] + impls[1:] + [
            cupy_impl(numpy_chain, args, notes=cupy_notes)]
    return impls[:1] + [ember_kernel_impl(n, args)] + impls[1:] + [
        plain_impl("numpy", "numpy", numpy_chain, args, notes=[f"erf: {erf_function()[1]}"]),
        plain_impl("numba", "numba", numba_chain, args),
        jax_impl(jax_chain, args)]


def numpy_chain(xp: Any = np) -> Callable[..., Any]:
    """The chain as a NumPy user writes it (erf from scipy.special when it is there);
    ``xp=cupy``: the same code on CuPy arrays (erf from cupyx.scipy.special)."""
    erf, _ = erf_function(xp)

    def chain(x, a, b):
        u = x * a + b
        gelu = 0.5 * u * (1.0 + erf(u * np.float32(INV_SQRT2)))
        return gelu * (1.0 / (1.0 + xp.exp(-x))) + x * x
    return chain


def erf_function(xp: Any = np) -> tuple[Callable[[Any], Any], str]:
    """NumPy has no erf: scipy.special.erf (for CuPy arrays cupyx.scipy.special.erf),
    else Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7, below float32's resolution of the
    result) in ``xp``'s operations."""
    try:
        if xp is np:
            from scipy.special import erf
            return erf, "scipy.special.erf"
        from cupyx.scipy.special import erf
        return erf, "cupyx.scipy.special.erf"
    except ImportError:
        pass

    def erf_as(x: Any) -> Any:
        s = xp.sign(x)
        a = xp.abs(x)
        t = 1.0 / (1.0 + np.float32(0.3275911) * a)
        poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
            np.float32(1.421413741) + t * (np.float32(-1.453152027)
                                           + t * np.float32(1.061405429)))))
        return s * (1.0 - poly * xp.exp(-a * a))
    return erf_as, "Abramowitz-Stegun erf"


def numba_chain() -> Callable[..., np.ndarray]:
    """One parallel loop, compiled by Numba (fastmath off, as ember's results are exact)."""
    import numba

    half, one, inv_sqrt2 = np.float32(0.5), np.float32(1.0), np.float32(INV_SQRT2)

    @numba.njit(parallel=True, fastmath=False)
    def chain(x, a, b):
        out = np.empty_like(x)
        av, bv = a[()], b[()]
        for i in numba.prange(x.shape[0]):
            v = x[i]
            u = v * av + bv
            gelu = half * u * (one + math.erf(u * inv_sqrt2))
            out[i] = gelu / (one + math.exp(-v)) + v * v
        return out
    return chain


def jax_chain() -> Callable[..., Any]:
    import jax

    def chain(x, a, b):
        return jax.nn.gelu(x * a + b, approximate=False) * jax.nn.sigmoid(x) + x * x
    return chain


def ember_kernel_impl(n: int, np_args: Args | None = None) -> Impl:
    """The chain as one hand-built Kernel (ember's codegen alone), output preallocated."""
    def setup() -> Prepared:
        import ember  # noqa: F401  (fills the op registry)
        from ember.codegen.llvm import compile_kernel

        x, a, b = resolve(np_args) if np_args is not None else inputs(n)
        out = np.empty_like(x)
        kernel = compile_kernel(chain_kernel(n))

        def call() -> np.ndarray:
            kernel.run([x, a, b], [out])
            return out
        return Prepared(call, arrays)
    return Impl("ember kernel", "ember", setup)


def ember_cuda_kernel_impl(n: int, np_args: Args | None = None) -> Impl:
    """The same Kernel through ember's CUDA codegen (CuPy RawKernel), output preallocated."""
    def setup() -> Prepared:
        import cupy

        import ember  # noqa: F401  (fills the op registry)
        from ember.codegen.cuda import compile_kernel

        x, a, b = (cupy.asarray(v) for v in (resolve(np_args) if np_args is not None
                                             else inputs(n)))
        out = cupy.empty_like(x)
        kernel = compile_kernel(chain_kernel(n))

        def call() -> Any:
            kernel.run([x, a, b], [out])
            return out
        return Prepared(call, arrays, sync=cupy.cuda.runtime.deviceSynchronize)
    return Impl("ember kernel", "ember", setup)


def chain_kernel(n: int) -> Any:
    """gelu(x * a + b) * sigmoid(x) + x * x over [n] as a Kernel; a and b have stride 0."""
    from ember import dtypes as dt
    from ember.codegen.kernel import Expr, Kernel, Load

    f = dt.float32
    return Kernel("chain", (n,), [Load(0, f, (1,)), Load(1, f, (0,)), Load(2, f, (0,))],
                  [Expr("load", (0,), f), Expr("load", (1,), f), Expr("load", (2,), f),
                   Expr("mul", (0, 1), f), Expr("add", (3, 2), f),
                   Expr("const", (INV_SQRT2,), f), Expr("mul", (4, 5), f),
                   Expr("erf", (6,), f), Expr("const", (1.0,), f), Expr("add", (7, 8), f),
                   Expr("mul", (4, 9), f), Expr("const", (0.5,), f), Expr("mul", (10, 11), f),
                   Expr("sigmoid", (0,), f), Expr("mul", (12, 13), f), Expr("mul", (0, 0), f),
                   Expr("add", (14, 15), f)],
                  stores=[16])
