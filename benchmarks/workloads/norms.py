"""Row reductions over a [rows, cols] float32 matrix: softmax, log_softmax + NLL loss,
layer_norm. Each reads the matrix and (except the loss) writes one of the same size; a
fused implementation makes one or two passes over each row while it is in cache.

On cuda they also run at 32768x4096 (512 MiB per matrix), against CuPy eager (the NumPy
cell's code on CuPy arrays), torch and torch.compile.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Workload
from benchmarks.workloads.common import (Lazy, cupy_impl, jax_impl, library_impls,
                                         parse_shape, plain_impl)

SIZES = ["4096x1024"]
QUICK_SIZES = ["64x128"]
GPU_SIZES = ["4096x1024", "32768x4096"]
GPU_QUICK_SIZES = QUICK_SIZES
EPS = 1e-5


def inputs(rows: int, cols: int) -> dict[str, np.ndarray]:
    """x ~ N(0, 1) [rows, cols], int64 targets, layer_norm's weight and bias."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    target = rng.integers(0, cols, rows).astype(np.int64)
    weight = (1 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(cols)).astype(np.float32)
    return {"x": x, "target": target, "weight": weight, "bias": bias}


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        rows, cols = parse_shape(text)
        size = rows * cols
        data = Lazy(lambda rows=rows, cols=cols: inputs(rows, cols))

        def pick(*names: str, data: Lazy = data) -> Lazy:
            return Lazy(lambda: [data()[n] for n in names])
        label = f"{rows}x{cols}" + ("" if device == "cpu" else f"_{device}")
        where = "" if device == "cpu" else f" on {device}"
        specs = [
            ("softmax", "row softmax", make_softmax, pick("x"), 8 * size,
             numpy_softmax, numba_softmax, jax_softmax),
            ("log_softmax_nll", "log_softmax + NLL loss (mean)", make_log_softmax_nll,
             pick("x", "target"), 4 * size + 8 * rows,
             numpy_log_softmax_nll, numba_log_softmax_nll, jax_log_softmax_nll),
            ("layer_norm", "layer_norm with weight and bias", make_layer_norm,
             pick("x", "weight", "bias"), 8 * size + 8 * cols,
             numpy_layer_norm, numba_layer_norm, jax_layer_norm),
        ]
        for name, title, make, args, nbytes, np_fn, nb_fn, jax_fn in specs:
            impls: list[Impl] = library_impls(make, args, device)
            if device == "cpu":
                impls += [plain_impl("numpy", "numpy", np_fn, args),
                          plain_impl("numba", "numba", nb_fn, args),
                          jax_impl(jax_fn, args)]
            else:
                impls.append(cupy_impl(np_fn, args))
            out.append(Workload(f"{name}_{label}", "norms",
                                f"{title}, [{rows}, {cols}] float32{where}", impls,
                                nbytes=nbytes, device=device,
                                reference="numpy" if device == "cpu" else "torch",
                                reference_fallbacks=() if device == "cpu" else ("cupy",)))
    return out


# ---- the shared source (ember and torch) ------------------------------------------------

def make_softmax(lib: Any) -> Callable[..., Any]:
    F = lib.nn.functional
    return lambda x: F.softmax(x, dim=1)


def make_log_softmax_nll(lib: Any) -> Callable[..., Any]:
    F = lib.nn.functional
    return lambda x, target: F.nll_loss(F.log_softmax(x, dim=1), target)


def make_layer_norm(lib: Any) -> Callable[..., Any]:
    F = lib.nn.functional
    return lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps=EPS)


# ---- NumPy (and, with xp=cupy, CuPy) --------------------------------------------------

def numpy_softmax(xp: Any = np) -> Callable[..., Any]:
    def softmax(x):
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return softmax


def numpy_log_softmax_nll(xp: Any = np) -> Callable[..., Any]:
    def loss(x, target):
        m = x.max(axis=1, keepdims=True)
        logp = x - (xp.log(xp.exp(x - m).sum(axis=1, keepdims=True)) + m)
        return -logp[xp.arange(len(target)), target].mean()
    return loss


def numpy_layer_norm(xp: Any = np) -> Callable[..., Any]:
    def layer_norm(x, w, b):
        centered = x - x.mean(axis=1, keepdims=True)
        var = (centered * centered).mean(axis=1, keepdims=True)
        return centered / xp.sqrt(var + np.float32(EPS)) * w + b
    return layer_norm


# ---- Numba: one parallel loop over rows -------------------------------------------------

def numba_softmax() -> Callable[..., np.ndarray]:
    import numba

    @numba.njit(parallel=True, fastmath=False)
    def softmax(x):
        rows, cols = x.shape
        out = np.empty_like(x)
        for i in numba.prange(rows):
            m = x[i, 0]
            for j in range(1, cols):
                m = max(m, x[i, j])
            s = 0.0
            for j in range(cols):
                e = math.exp(x[i, j] - m)
                out[i, j] = e
                s += e
            inv = 1.0 / s
            for j in range(cols):
                out[i, j] *= inv
        return out
    return softmax


def numba_log_softmax_nll() -> Callable[..., np.ndarray]:
    import numba

    @numba.njit(parallel=True, fastmath=False)
    def loss(x, target):
        rows, cols = x.shape
        total = 0.0
        for i in numba.prange(rows):
            m = x[i, 0]
            for j in range(1, cols):
                m = max(m, x[i, j])
            s = 0.0
            for j in range(cols):
                s += math.exp(x[i, j] - m)
            total += m + math.log(s) - x[i, target[i]]
        return np.float32(total / rows)
    return loss


def numba_layer_norm() -> Callable[..., np.ndarray]:
    import numba

    @numba.njit(parallel=True, fastmath=False)
    def layer_norm(x, w, b):
        rows, cols = x.shape
        out = np.empty_like(x)
        for i in numba.prange(rows):
            s = 0.0
            for j in range(cols):
                s += x[i, j]
            mean = s / cols
            v = 0.0
            for j in range(cols):
                d = x[i, j] - mean
                v += d * d
            inv = 1.0 / math.sqrt(v / cols + EPS)
            for j in range(cols):
                out[i, j] = (x[i, j] - mean) * inv * w[j] + b[j]
        return out
    return layer_norm


# ---- JAX ------------------------------------------------------------------------------

def jax_softmax() -> Callable[..., Any]:
    import jax
    return lambda x: jax.nn.softmax(x, axis=1)


def jax_log_softmax_nll() -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp

    def loss(x, target):
        logp = jax.nn.log_softmax(x, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, target[:, None], axis=1))
    return loss


def jax_layer_norm() -> Callable[..., Any]:
    import jax.numpy as jnp

    def layer_norm(x, w, b):
        centered = x - x.mean(axis=1, keepdims=True)
        var = (centered * centered).mean(axis=1, keepdims=True)
        return centered / jnp.sqrt(var + EPS) * w + b
    return layer_norm
