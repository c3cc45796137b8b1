"""A memory copy, the bandwidth reference: how close each library's plain copy comes to
``np.copyto`` into a preallocated array (the roofline every bandwidth-bound workload is
measured against). Every cell but "numpy copyto" returns a fresh array, as a user's
``x.clone()`` does. On cuda the same with CuPy: "cupy" (``cupy.copy``) and "cupy copyto".
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads.common import (Lazy, arrays, count_label, cupy_impl, gpu_sync,
                                         library_impls, parse_count, plain_impl, resolve)

SIZES = ["16M"]
QUICK_SIZES = ["4K"]


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        n = parse_count(text)
        x = Lazy(lambda n=n: [np.random.default_rng(2).standard_normal(n, dtype=np.float32)])
        impls = library_impls(make_clone, x, device)
        if device == "cpu":
            impls += [plain_impl("numpy", "numpy", lambda: np.copy, x),
                      numpy_copyto_impl(x),
                      plain_impl("numba", "numba", numba_copy, x)]
        else:
            impls += [cupy_impl(lambda xp: xp.copy, x), cupy_copyto_impl(x)]
        suffix = "" if device == "cpu" else f"_{device}"
        out.append(Workload(f"copy_{count_label(n)}{suffix}", "copy",
                            f"x.clone(), {n:,} float32" + (f" on {device}" if suffix else ""),
                            impls, nbytes=8 * n, device=device,
                            reference="numpy" if device == "cpu" else "torch",
                            reference_fallbacks=() if device == "cpu" else ("cupy",)))
    return out


def make_clone(lib: Any) -> Callable[..., Any]:
    return lambda x: x.clone()


def numpy_copyto_impl(x: Lazy) -> Impl:
    def setup() -> Prepared:
        src = resolve(x)[0].copy()
        dst = np.empty_like(src)

        def call() -> np.ndarray:
            np.copyto(dst, src)
            return dst
        return Prepared(call, arrays, notes=lambda: ["into a preallocated array (no page faults)"])
    return Impl("numpy copyto", "numpy", setup)


def cupy_copyto_impl(x: Lazy) -> Impl:
    """cupy.copyto into a preallocated device array: the GPU roofline's own operation."""
    def setup() -> Prepared:
        import cupy
        src = cupy.asarray(resolve(x)[0])
        dst = cupy.empty_like(src)

        def call() -> object:
            cupy.copyto(dst, src)
            return dst
        return Prepared(call, arrays, sync=gpu_sync("cupy", "cuda"),
                        notes=lambda: ["into a preallocated device array"])
    return Impl("cupy copyto", "cupy", setup)


def numba_copy() -> Callable[..., np.ndarray]:
    import numba

    @numba.njit(parallel=True)
    def copy(x):
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            out[i] = x[i]
        return out
    return copy
