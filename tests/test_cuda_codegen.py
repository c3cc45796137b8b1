"""The CUDA backend, checked without a GPU, and against the CPU backend on one.

Kernels come from three places: the Kernels the compiler really lowers for the programs
of test_compile.py and test_fusion.py (collected through ``ember.explain``), every
fusible op on every dtype, and hand-built reductions (softmax, layer_norm statistics,
log_softmax + a masked loss, full sums, int and bool maxima, row-level stores, column and
multi-dim reductions, empty rows). Without a GPU:

- every kernel compiles to sm_90 machine code with NVRTC and its entry points are in the
  CUBIN's symbol table;
- every kernel's CUDA C is also compiled as C++ with g++ over a small header that emulates
  CUDA sequentially (each thread a ucontext fiber; ``__syncthreads`` and warp shuffles are
  barriers that switch fibers and report a deadlock instead of hanging), launched with
  the launches ``CudaKernel.launches`` chooses for small and H100-sized devices (the
  vector entry of an elementwise kernel where the arrays' pointers are aligned for it, as
  ``CudaKernel.run`` chooses), and its outputs compared with the LLVM backend's. That
  checks the index arithmetic, the warp / block / split reductions, the vector lanes and
  tails and the scalar semantics; CUDA's own math functions and real concurrency are only
  checked on a GPU (tests marked ``gpu``).
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import dtypes as dt
from ember.codegen import cuda, llvm, nvrtc
from ember.codegen.kernel import Expr, Kernel, Load, Store, contiguous_strides
from ember.ir.passes.fuse import FUSIBLE

sys.path.insert(0, os.path.dirname(__file__))
import cuda_emulator  # noqa: E402
import test_codegen_llvm as tl  # noqa: E402  (its hand-built kernels)
import test_compile as tc  # noqa: E402  (its programs)
import test_fusion as tf  # noqa: E402

pytestmark = pytest.mark.slow  # seconds per test: left out by the fast lane

F32, F64, I32, I64, B = dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_
ALL = [F32, F64, I32, I64, B]
SMALL = cuda.DeviceLimits(sm_count=1, max_threads_per_block=64, max_threads_per_sm=64)
MEDIUM = cuda.DeviceLimits(sm_count=2, max_threads_per_block=128, max_threads_per_sm=256)
H100 = cuda.DeviceLimits(sm_count=132, max_threads_per_block=1024, max_threads_per_sm=2048)


@dataclass
class Case:
    """A kernel and its inputs: each input is ``buf[start:]`` (a start > 0 leaves room
    for negative strides and offsets before the data pointer)."""
    kernel: Kernel
    bufs: list[np.ndarray]
    starts: list[int]

    def inputs(self) -> list[np.ndarray]:
        return [b[s:] for b, s in zip(self.bufs, self.starts)]


def make_case(kernel: Kernel, rng: np.random.Generator, values=None) -> Case:
    """Random inputs laid out as the kernel's Loads read them (``values[i]`` overrides
    input i's buffer values, repeated to the length needed)."""
    bufs, starts = [], []
    for i in range(kernel.num_inputs):
        lds = [ld for ld in kernel.loads if ld.input == i]
        d = lds[0].dtype if lds else F32
        # The element range the loads read, relative to the input's pointer (which must
        # itself point into the buffer).
        lo = min([ld.offset + sum(min(0, (n - 1) * s) for n, s in zip(kernel.shape, ld.strides))
                  for ld in lds] + [0])
        hi = max([ld.offset + sum(max(0, (n - 1) * s) for n, s in zip(kernel.shape, ld.strides))
                  for ld in lds] + [0])
        n = max(hi - lo + 1, 1)
        if values is not None and values[i] is not None:
            buf = np.resize(np.asarray(values[i], d.np), n)
        elif any(ld.iota for ld in lds):   # the Load's promise: it reads 0, 1, 2, ...
            buf = np.arange(lo, lo + n).astype(d.np)
        elif d.is_floating_point:
            buf = (rng.standard_normal(n) * 2).astype(d.np)
        elif d is B:
            buf = rng.random(n) < 0.5
        else:
            buf = rng.integers(-20, 21, n).astype(d.np)
        bufs.append(buf)
        starts.append(-lo)
    return Case(kernel, bufs, starts)


def renamed(k: Kernel, name: str) -> Kernel:
    return Kernel(name, k.shape, list(k.loads), list(k.exprs), list(k.stores), k.reduce_dims,
                  list(k.ops), list(k.src))


def out_arrays(ck) -> list[np.ndarray]:
    """Outputs filled with a 0x5A byte pattern, so an element a kernel skips (or a bool
    stored as other than 0/1) shows up."""
    outs = [np.empty(n, d.np) for n, d in zip(ck.out_sizes, ck.out_dtypes)]
    for o in outs:
        o.view(np.uint8)[:] = 0x5A
    return outs


# Rows without points: the CPU backend skips its call when the iteration space has no
# points, leaving these outputs unwritten, so their identities are spelled out here.
EXPECTED = {"sum_empty_rows": [np.zeros(3, np.float32)],
            "max_empty_rows": [np.full(3, np.iinfo(np.int32).min, np.int32)]}


def cpu_outputs(case: Case) -> list[np.ndarray]:
    if case.kernel.name in EXPECTED:
        return EXPECTED[case.kernel.name]
    ck = llvm.compile_kernel(case.kernel)
    outs = out_arrays(ck)
    ck.run(case.inputs(), outs)
    return outs


def tolerance(kernel: Kernel, dtype: dt.DType) -> tuple[float, float]:
    """(rtol, atol): the backends' math functions differ (the CPU's exp/log/tanh/erf are
    our polynomials, float64 erf the registry's 1.2e-7 approximation; libm's and CUDA's
    are their own, CUDA's float32 ones within a few ulp)."""
    if dtype is F32:
        return 2e-5, 2e-6
    return (1e-10, 1e-12) if all(e.op != "erf" for e in kernel.exprs) else (1e-10, 5e-7)


MATH_FUNCTIONS = {"exp", "log", "tanh", "erf", "sigmoid", "pow", "sin", "cos"}


def assert_same(got: list[np.ndarray], want: list[np.ndarray], kernel: Kernel, what: str):
    for i, (g, w) in enumerate(zip(got, want)):
        d = dt.from_numpy_dtype(w.dtype)
        e = kernel.exprs[kernel.stores[i].expr]
        msg = f"{what}: kernel {kernel.name} output {i} ({e.op} -> {e.dtype})\n{kernel}"
        if d is B:   # the bytes themselves: exactly 0 or 1
            np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8), err_msg=msg)
        elif d.is_floating_point:
            rtol, atol = tolerance(kernel, d)
            if kernel.reduce_dims and d is F32 and w.size:
                # The backends sum in other orders (tree in a block, serial on the CPU):
                # an output made from differences of sums (a variance, E[d^2] - E[d]^2)
                # carries their rounding at the scale of the largest output, a few ulp.
                finite = np.abs(w[np.isfinite(w)])
                atol = max(atol, 2e-6 * float(finite.max(initial=0.0)))
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=msg)
            # NumPy's sign(-0.0) is +0.0, relu(-0.0) is -0.0. (Not where math functions
            # round differently: 1 + erf(-6) is 0 on one backend, 1e-17 on the other, and
            # the sign of a zero after it follows.)
            if not any(x.op in MATH_FUNCTIONS for x in kernel.exprs):
                zero = (w == 0) & (g == 0)
                np.testing.assert_array_equal(np.signbit(g[zero]), np.signbit(w[zero]),
                                              err_msg=msg)
        else:
            np.testing.assert_array_equal(g, w, err_msg=msg)


# ---- the kernels ----------------------------------------------------------------------

def _ld(i, d, strides, offset=0):
    return Load(i, d, tuple(strides), offset)


def softmax_kernel(name: str, rows: int, n: int, d=F32, stats: bool = False) -> Kernel:
    """Row softmax; with ``stats`` also stores the row max and sum (row-level stores)."""
    exprs = [Expr("load", (0,), d), Expr("reduce_max", (0,), d), Expr("sub", (0, 1), d),
             Expr("exp", (2,), d), Expr("reduce_sum", (3,), d), Expr("div", (3, 4), d)]
    stores = [Store(5, (n, 1))] + ([Store(1, (1, 0)), Store(4, (1, 0))] if stats else [])
    return Kernel(name, (rows, n), [_ld(0, d, (n, 1))], exprs, stores, reduce_dims=1)


def layer_norm_kernel(name: str, outer: tuple[int, ...], n: int) -> Kernel:
    """y = (x - mean) / sqrt(var + eps) * w + b, storing y, mean and rstd (row-level)."""
    f = F32
    shape = (*outer, n)
    x_st = contiguous_strides(shape)
    row_st = (*contiguous_strides(outer), 0)
    bc = (0,) * len(outer) + (1,)
    exprs = [Expr("load", (0,), f), Expr("reduce_sum", (0,), f), Expr("const", (1.0 / n,), f),
             Expr("mul", (1, 2), f), Expr("sub", (0, 3), f), Expr("mul", (4, 4), f),
             Expr("reduce_sum", (5,), f), Expr("mul", (6, 2), f), Expr("const", (1e-5,), f),
             Expr("add", (7, 8), f), Expr("sqrt", (9,), f), Expr("const", (1.0,), f),
             Expr("div", (11, 10), f), Expr("mul", (4, 12), f), Expr("load", (1,), f),
             Expr("mul", (13, 14), f), Expr("load", (2,), f), Expr("add", (15, 16), f)]
    return Kernel(name, shape, [_ld(0, f, x_st), _ld(1, f, bc), _ld(2, f, bc)], exprs,
                  [Store(17, x_st), Store(3, row_st), Store(12, row_st)], reduce_dims=1)


def log_softmax_nll_kernel(name: str, rows: int, n: int) -> Kernel:
    """log_softmax over rows, and the loss -sum(where(mask, logp, 0)) per row: three
    reductions, each using the previous ones."""
    f = F32
    exprs = [Expr("load", (0,), f), Expr("reduce_max", (0,), f), Expr("sub", (0, 1), f),
             Expr("exp", (2,), f), Expr("reduce_sum", (3,), f), Expr("log", (4,), f),
             Expr("sub", (2, 5), f), Expr("load", (1,), B), Expr("const", (0.0,), f),
             Expr("where", (7, 6, 8), f), Expr("reduce_sum", (9,), f), Expr("neg", (10,), f)]
    return Kernel(name, (rows, n), [_ld(0, f, (n, 1)), _ld(1, B, (n, 1))], exprs,
                  [Store(6, (n, 1)), Store(11, (1, 0))], reduce_dims=1)


def reduce_kernel(name: str, op: str, shape, strides, d, out=None, reduce_dims=1,
                  pre: str | None = None) -> Kernel:
    """``op`` ("reduce_sum"/"reduce_max") of an input (optionally through a unary
    ``pre``), result dtype ``out``, stored per row."""
    out = out or d
    exprs = [Expr("load", (0,), d)]
    if pre:
        exprs.append(Expr(pre, (0,), d))
    exprs.append(Expr(op, (len(exprs) - 1,), out))
    outer = shape[:len(shape) - reduce_dims]
    row_st = (*contiguous_strides(outer), *(0,) * reduce_dims)
    return Kernel(name, tuple(shape), [_ld(0, d, strides)], exprs,
                  [Store(len(exprs) - 1, row_st)], reduce_dims=reduce_dims)


def hand_built() -> list[tuple[Kernel, list | None]]:
    """(kernel, input values or None for random ones)."""
    ks: list[tuple[Kernel, list | None]] = []
    add = ks.append
    # Softmax: warp per row, block per row, split rows (full reductions), float64.
    add((softmax_kernel("softmax_warp", 7, 50), None))
    add((softmax_kernel("softmax_block", 3, 3000, stats=True), None))
    add((softmax_kernel("softmax_split", 2, 20000, stats=True), None))
    add((softmax_kernel("softmax_f64", 5, 1500, d=F64), None))
    add((softmax_kernel("softmax_one_wide", 1, 17), None))
    # layer_norm statistics over one row dim and over two outer dims.
    add((layer_norm_kernel("layer_norm", (5,), 300), None))
    add((layer_norm_kernel("layer_norm_3d", (2, 3), 40), None))
    add((layer_norm_kernel("layer_norm_split", (2,), 17000), None))
    add((log_softmax_nll_kernel("log_softmax_nll", 9, 10), None))
    add((log_softmax_nll_kernel("log_softmax_nll_block", 4, 2500), None))
    # Full sums (outer shape ()): small, block, split; float32, float64, ints.
    for n in (1, 33, 2000, 40000):
        add((reduce_kernel(f"sum_all_{n}", "reduce_sum", (n,), (1,), F32), None))
    add((reduce_kernel("sum_all_f64", "reduce_sum", (30000,), (1,), F64, pre="exp"), None))
    # int32 sums that wrap (the order of a wrapping sum does not matter, so exact).
    big = np.array([2 ** 30 + 7, 2 ** 30 - 3, -5, 2 ** 29], np.int32)
    add((reduce_kernel("sum_i32_wraps", "reduce_sum", (6, 50), (50, 1), I32), [big]))
    add((reduce_kernel("sum_i64", "reduce_sum", (20000,), (1,), I64), None))
    add((reduce_kernel("max_i32", "reduce_max", (9, 70), (70, 1), I32), None))
    add((reduce_kernel("max_i64_split", "reduce_max", (1, 30000), (30000, 1), I64), None))
    add((reduce_kernel("max_bool", "reduce_max", (12, 40), (40, 1), B), None))
    add((reduce_kernel("any_bool_block", "reduce_max", (3, 5000), (5000, 1), B),
         [np.array([False] * 4999 + [True] * 3)]))
    add((reduce_kernel("count_bool", "reduce_sum", (8, 33), (33, 1), B, out=I64), None))
    add((reduce_kernel("sum_sign_i32", "reduce_sum", (4, 9), (9, 1), I32, pre="sign"), None))
    # reduce_max: NaN wins wherever it is; +0 above -0; all -inf stays -inf.
    nanrow = np.array([1.0, np.nan, 3.0, -np.inf, 0.0, -0.0, 2.0, np.inf, 5.0, -1.0], np.float32)
    add((reduce_kernel("max_nan", "reduce_max", (10, 10), (1, 10), F32), [nanrow]))
    zeros = np.array([0.0, -0.0, -0.0, -1.0], np.float64)   # a lane sees +0 then -0
    add((reduce_kernel("max_signed_zero", "reduce_max", (3, 4), (4, 1), F64), [zeros]))
    add((reduce_kernel("max_all_neg_inf", "reduce_max", (2, 2000), (2000, 1), F32),
         [np.array([-np.inf])]))
    # Column reduction (a transposed read), two reduced dims, a middle reduced dim read
    # through a permutation, and empty rows (identities stored per row).
    add((reduce_kernel("sum_columns", "reduce_sum", (300, 8), (1, 300), F32), None))
    add((reduce_kernel("sum_two_dims", "reduce_sum", (4, 6, 5), (1, 20, 4), F32,
                       reduce_dims=2, pre="tanh"), None))
    add((reduce_kernel("max_two_dims_block", "reduce_max", (3, 40, 50), (2000, 1, 40), F64,
                       reduce_dims=2), None))
    add((reduce_kernel("sum_empty_rows", "reduce_sum", (3, 0), (0, 1), F32), None))
    add((reduce_kernel("max_empty_rows", "reduce_max", (3, 0), (0, 1), I32), None))
    # Row-level inputs and a reduction of a row-level value: sum(b[row]) == n * b[row];
    # a row-level store next to point-level ones; offsets and negative strides.
    f = F32
    add((Kernel("row_level_mix", (6, 25), [_ld(0, f, (25, 1)), _ld(1, f, (1, 0), offset=2)],
                [Expr("load", (0,), f), Expr("load", (1,), f), Expr("reduce_sum", (1,), f),
                 Expr("exp", (1,), f), Expr("mul", (0, 3), f), Expr("reduce_max", (4,), f),
                 Expr("add", (4, 2), f), Expr("sub", (6, 5), f)],
                [Store(7, (25, 1)), Store(3, (1, 0)), Store(2, (1, 0)), Store(5, (1, 0))],
                reduce_dims=1), None))
    add((Kernel("reversed_rows", (5, 700), [_ld(0, f, (-700, -1), offset=5 * 700 - 1)],
                [Expr("load", (0,), f), Expr("reduce_sum", (0,), f), Expr("sub", (0, 1), f)],
                [Store(2, (700, 1)), Store(1, (1, 0))], reduce_dims=1), None))
    add((Kernel("reduce_no_reductions", (3, 4), [_ld(0, f, (4, 1)), _ld(1, f, (1, 0))],
                [Expr("load", (0,), f), Expr("load", (1,), f), Expr("mul", (0, 1), f),
                 Expr("neg", (1,), f)],
                [Store(2, (4, 1)), Store(3, (1, 0))], reduce_dims=1), None))
    # Elementwise: the 17-op chain, mixed dtypes, 0-dim, empty, offsets, bool stores.
    add((renamed(tl.chain_kernel((37, 129)), "chain"), None))
    add((Kernel("mixed", (10,), [_ld(0, I32, (1,)), _ld(1, F32, (1,))],
                [Expr("load", (0,), I32), Expr("load", (1,), F32), Expr("add", (0, 1), F32),
                 Expr("exp", (0,), F32), Expr("lt", (0, 1), B), Expr("cast", (1,), I64),
                 Expr("const", (2 ** 40,), I64), Expr("const", (-2 ** 31,), I32),
                 Expr("add", (5, 6), I64), Expr("mul", (0, 7), I32)],
                [2, 3, 4, 8, 9]), None))
    add((Kernel("scalar", (), [_ld(0, F64, ())],
                [Expr("load", (0,), F64), Expr("tanh", (0,), F64)], [1]), None))
    add((Kernel("empty", (3, 0, 4), [_ld(0, F32, (0, 4, 1))],
                [Expr("load", (0,), F32), Expr("exp", (0,), F32)], [1]), None))
    add((Kernel("offsets", (3, 4), [_ld(0, F64, (10, 1), offset=22), _ld(0, F64, (0, 2), 1)],
                [Expr("load", (0,), F64), Expr("load", (1,), F64), Expr("add", (0, 1), F64)],
                [2]), None))
    add((Kernel("permuted_3d", (5, 6, 7), [_ld(0, F32, (1, 35, 5)), _ld(1, B, (0, 7, 1))],
                [Expr("load", (0,), F32), Expr("load", (1,), B), Expr("const", (0.5,), F32),
                 Expr("where", (1, 0, 2), F32), Expr("gt", (3, 2), B),
                 Expr("logical_and", (4, 1), B)], [3, 5]), None))
    return ks


UNARY = ["neg", "exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid", "erf",
         "softplus", "relu", "logical_not"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "le", "gt", "ge",
          "eq", "ne", "logical_and", "logical_or"]
BOOL_RESULT = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not"}


def cpu_lowers(k: Kernel) -> bool:
    """Whether the CPU backend has code for every expr of ``k`` (IR construction alone:
    the O3 JIT would cost ~30 ms a kernel)."""
    try:
        llvm._build_module(k, "k", llvm._Layout.of(k))
    except NotImplementedError:
        return False
    return True


def op_kernel(op: str, d: dt.DType, out: dt.DType) -> Kernel:
    """``op`` over loads a, b (dtype ``d``) and a bool mask c, with result dtype ``out``."""
    args = (2, 0, 1) if op == "where" else (0, 1) if op in BINARY else (0,)
    exprs = [Expr("load", (0,), d), Expr("load", (1,), d), Expr("load", (2,), B),
             Expr(op, args, out)]
    return Kernel(f"{op}_{d.name}_{out.name}", (4,), [Load(0, d, (1,)), Load(1, d, (1,)),
                                                        Load(2, B, (1,))], exprs, [3])


def op_cases(rng: np.random.Generator) -> list[Case]:
    """Every fusible op on every dtype the CPU backend lowers, over special values: one
    kernel per operand dtype, one store per op (and per cast target)."""
    def fvals(d):
        fixed = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, 3.0, -3.0,
                 1e-3, 1e-30, 1e30, -1e30, 80.0, 89.0, -100.0, 700.0, -746.0, 1e-7, 6.0, -6.0]
        with np.errstate(over="ignore"):
            fixed = np.array(fixed, d.np)
        return np.concatenate([fixed, (rng.standard_normal(200) * 5).astype(d.np),
                               (10.0 ** rng.uniform(-20, 20, 40)).astype(d.np),
                               rng.uniform(-3e9, 3e9, 20).astype(d.np)])

    def ivals(d):
        info = np.iinfo(d.np)
        edge = np.array([0, 1, -1, 2, -2, 7, -7, info.max, info.min, info.max - 1], d.np)
        return np.concatenate([edge, rng.integers(info.min, info.max, 60, d.np),
                               rng.integers(-30, 30, 200).astype(d.np)])

    cases = []
    for d in ALL:
        a = fvals(d) if d.is_floating_point else ivals(d) if d is not B else (
            np.array([False, True, True, False] * 8))
        b = rng.permutation(a)
        c = rng.random(a.size) < 0.5
        exprs = [Expr("load", (0,), d), Expr("load", (1,), d), Expr("load", (2,), B)]
        for op in sorted(FUSIBLE):
            outs = ALL if op == "cast" else [B] if op in BOOL_RESULT else [d]
            for out in outs:
                if cpu_lowers(op_kernel(op, d, out)):
                    args = (2, 0, 1) if op == "where" else (0, 1) if op in BINARY else (0,)
                    exprs.append(Expr(op, args, out))
        k = Kernel(f"ops_{d.name}", (a.size,), [Load(0, d, (1,)), Load(1, d, (1,)),
                                                 Load(2, B, (1,))],
                   exprs, list(range(3, len(exprs))))
        cases.append(Case(k, [a, b, c], [0, 0, 0]))
    return cases


def _collect(fn, *args) -> list[Kernel]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ember.explain(fn, *args)
    infos = [p for k in report.kernels for p in (k.parts or [k])]   # batched kernels' parts
    return [k.kernel for k in infos if k.kernel is not None]


def _x(*shape, seed=0):
    return ember.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _training_step_kernels() -> list[Kernel]:
    """The kernels of compiled training steps: forward, backward and the updates of
    SGD with momentum and of Adam (through LayerNorm, GELU, dropout, cross entropy)."""
    import ember.nn as nn

    ks = []
    for opt_cls, kw in ((ember.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
                        (ember.optim.Adam, dict(lr=1e-3))):
        ember.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 16), nn.LayerNorm(16), nn.GELU(), nn.Dropout(0.1),
                              nn.Linear(16, 5))
        opt = opt_cls(model.parameters(), **kw)

        def step(x, y, model=model, opt=opt):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        ks += _collect(step, _x(8, 12), ember.tensor(np.arange(8) % 5))
    return ks


def collected_kernels() -> list[Kernel]:
    """The Kernels the runtime lowers for real programs (deduplicated by signature)."""
    ks: list[Kernel] = []
    for name in sorted(tc.OP_PROGRAMS):
        fn, *args = tc.OP_PROGRAMS[name]()
        ks += _collect(fn, *args)
    for seed in range(15):
        ks += _collect(*tc._random_program(random.Random(seed)))
    for seed in range(25):
        ks += _collect(*tf._random_reduction_program(random.Random(seed)))
    x, w, b = _x(32, 48), _x(48, seed=1), _x(48, seed=2)
    ks += _collect(lambda x, w, b: F.layer_norm(x, (48,), w, b), x, w, b)
    y = ember.tensor(np.random.default_rng(3).integers(0, 10, 64))
    ks += _collect(lambda x, y: F.nll_loss(F.log_softmax(x, 1), y), _x(64, 10), y)
    # Sizes that pick the block-per-row and the split layouts.
    ks += _collect(lambda x: F.softmax(x, -1), _x(6, 3000))
    ks += _collect(lambda x: (x * x).sum() + x.amax(), _x(40000))
    ks += _collect(lambda x: F.softmax(x, 0), _x(5000, 3))
    i = ember.tensor(np.random.default_rng(0).integers(-50, 50, (6, 9)))
    ks += _collect(lambda i: ((i * 3).sum(1) + i.amax(1), (i > 0).sum(1), (i > 40).amax(0)), i)
    ks += _training_step_kernels()
    out, seen = [], set()
    for k in ks:
        if k.signature() not in seen:
            seen.add(k.signature())
            out.append(renamed(k, f"prog{len(out)}"))
    return out


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    rng = np.random.default_rng(11)
    cases = [make_case(k, rng, v) for k, v in hand_built()]
    cases += [make_case(k, rng) for k in collected_kernels()]
    cases += op_cases(rng)
    return tuple(cases)


def chunks(items: list, n: int) -> list[list]:
    return [items[i::n] for i in range(n)]


# ---- NVRTC: every kernel compiles to sm_90 SASS ----------------------------------------

@pytest.fixture(scope="module")
def nvrtc_ready():
    nvrtc.find_nvrtc()   # the test extra installs nvidia-cuda-nvrtc: missing is a failure


def _cubin_check(kernels: list[Kernel]) -> bytes:
    """Compile ``kernels`` as one program; raises unless every entry point is there."""
    cks = [cuda.CudaKernel(k) for k in kernels]
    return nvrtc.compile_entry_points("".join(ck.source for ck in cks),
                                      [e for ck in cks for e in ck.entries], arch="sm_90")


# NVRTC serializes compiles inside one process, so the big check runs one NVRTC process
# per core; the worker loads nvrtc.py by path (it needs only the standard library).
NVRTC_WORKER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("ember_nvrtc_worker", sys.argv[1])
nvrtc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nvrtc)
with open(sys.argv[2]) as fh:
    source = fh.read()
cubin = nvrtc.compile_entry_points(source, json.loads(sys.argv[3]), arch="sm_90")
print(json.dumps(sorted(nvrtc.cubin_functions(cubin))))
"""


def test_nvrtc_compiles_every_kernel_to_sm90(nvrtc_ready, workdir):
    cks = [cuda.CudaKernel(c.kernel) for c in all_cases()]
    assert len(cks) > 120
    modes = {(ck.warp_rows, ck.can_split) for ck in cks if ck.reduce}
    assert modes == {(True, False), (False, False), (False, True)}
    assert sum(ck.reduce for ck in cks) > 60
    procs = []
    for i, part in enumerate(chunks(cks, 2)):
        path = os.path.join(workdir, f"nvrtc{i}.cu")
        with open(path, "w") as fh:
            fh.write("".join(ck.source for ck in part))   # the prelude is include-guarded
        entries = [e for ck in part for e in ck.entries]
        procs.append((entries, subprocess.Popen(
            [sys.executable, "-c", NVRTC_WORKER, nvrtc.__file__, path, json.dumps(entries)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for entries, proc in procs:
        out, err = proc.communicate()
        assert proc.returncode == 0, err[-5000:]   # NvrtcError: the log, or what is missing
        assert set(entries) <= set(json.loads(out))


def test_nvrtc_64bit_indexing_when_sizes_need_it(nvrtc_ready):
    f = F32
    exprs = [Expr("load", (0,), f), Expr("exp", (0,), f)]
    small = Kernel("idx32", (1 << 20,), [Load(0, f, (1,))], exprs, [1])
    huge = Kernel("idx64", (3, 1 << 30), [Load(0, f, (1 << 30, 1))], exprs, [1])
    far = Kernel("idx64_offset", (8,), [Load(0, f, (1,), offset=3 << 30)], exprs, [1])
    rows = Kernel("idx64_rows", (1 << 22, 1 << 10), [Load(0, f, (1 << 10, 1))],
                  [Expr("load", (0,), f), Expr("reduce_sum", (0,), f)], [Store(1, (1, 0))],
                  reduce_dims=1)
    assert cuda.CudaKernel(small).index_bits == 32
    assert "for (int i = " in cuda.cuda_source(small)
    for k in (huge, far, rows):
        assert cuda.CudaKernel(k).index_bits == 64, k.name
        assert "long long" in cuda.cuda_source(k) and "const int o0" not in cuda.cuda_source(k)
    assert _cubin_check([small, huge, far, rows])[:4] == b"\x7fELF"


def test_nvrtc_compiles_vector_entries(nvrtc_ready):
    """Every vector type the vector entries use (float2/4, double2, int2/4, longlong2,
    uchar2/4), with and without a tail, in 32- and 64-bit index code."""
    ks = vector_kernels(1023) + vector_kernels(4)
    cks = [cuda.CudaKernel(k) for k in ks]
    assert all(ck.vector_entry in ck.entries for ck in cks)
    source = "".join(ck.source for ck in cks)
    for ty in ("float2", "float4", "double2", "int2", "int4", "longlong2", "uchar2", "uchar4"):
        assert f"const {ty} vec" in source or f"{ty}*>(out" in source, ty
    assert _cubin_check(ks)[:4] == b"\x7fELF"
    wide = Kernel("wide_v64", (3, 1 << 30), [Load(0, F32, (1 << 30, 1), offset=8)],
                  [Expr("load", (0,), F32), Expr("neg", (0,), F32)], [1])
    assert cuda.CudaKernel(wide).index_bits == 64 and cuda.CudaKernel(wide).vector_width == 4
    assert _cubin_check([wide])[:4] == b"\x7fELF"


def test_nvrtc_reports_errors_with_the_log(nvrtc_ready):
    with pytest.raises(nvrtc.NvrtcError, match=r"(?s)bad\.cu.*undefined_thing"):
        nvrtc.compile_cubin('extern "C" __global__ void k() { undefined_thing(); }',
                            name="bad.cu")
    with pytest.raises(nvrtc.NvrtcError, match="real architecture"):
        nvrtc.compile_cubin('extern "C" __global__ void k() {}', arch="compute_90")
    assert nvrtc.nvrtc_version() >= (12, 0)


def test_cubin_symbol_table(nvrtc_ready):
    src = ('extern "C" __global__ void first(float* y) { y[threadIdx.x] = 1.0f; }\n'
           'extern "C" __global__ void second(int* y) { y[0] = 2; }\n')
    cubin, _ = nvrtc.compile_cubin(src)
    assert cubin[:4] == b"\x7fELF"
    assert {"first", "second"} <= nvrtc.cubin_functions(cubin)
    assert "third" not in nvrtc.cubin_functions(cubin)
    with pytest.raises(nvrtc.NvrtcError, match="third"):
        nvrtc.compile_entry_points(src, ["first", "third"])
    with pytest.raises(ValueError, match="ELF64"):
        nvrtc.cubin_functions(b"not an elf file at all")


# ---- semantics on the CPU: the CUDA C under a sequential CUDA emulation ----------------

class Emulator(cuda_emulator.Emulator):
    """The emulator, running a CudaKernel on a Case."""

    def run(self, ck: cuda.CudaKernel, case: Case, limits: cuda.DeviceLimits, policy: int = 0,
            outs: list[np.ndarray] | None = None):
        """``ck``'s outputs (into ``outs`` if given) on ``case`` with the launches chosen
        for ``limits``, threads scheduled round-robin (policy 0), lowest (1) or highest (2)
        first. As ``CudaKernel.run``, the arrays' pointers decide on the vector entry."""
        self.lib.emu_set_policy(policy)
        inputs = case.inputs()
        outs = out_arrays(ck) if outs is None else outs
        launches, slots = ck.launches(limits, [a.ctypes.data for a in (*inputs, *outs)])
        # Poisoned so a partial read before it is written shows up as garbage.
        ws = np.full(max(slots, 1), 0x7FF4DEADBEEF0000, np.uint64)
        for ln in launches:
            assert ln.block <= limits.max_threads_per_block and ln.block % 32 == 0, ln
            ptrs = [a.ctypes.data for a in (*inputs, *outs)]
            nsplit = ctypes.c_int(ln.nsplit or 0)
            if ln.nsplit:
                ptrs += [ws.ctypes.data, ctypes.addressof(nsplit)]
            rc = self.launch(ln.entry, ln.grid, ln.block, ptrs)
            assert rc == 0, f"{ln}: emulated launch failed ({rc}: 3 is a deadlock)"
        return outs, launches

    def run_multi(self, multi: cuda.CudaKernels, cases: list[Case], limits: cuda.DeviceLimits,
                  policy: int = 0):
        """``multi``'s outputs per part on ``cases`` (one a part) with the launch chosen
        for ``limits``; as ``CudaKernels.run``, each part's pointers decide on its
        vector body. Returns the outputs, the launch and the pointers per part."""
        self.lib.emu_set_policy(policy)
        inputs = [c.inputs() for c in cases]
        outs = [out_arrays(part) for part in multi.parts]
        ptrs = [[a.ctypes.data for a in (*i, *o)] for i, o in zip(inputs, outs)]
        launch = multi.launch(limits, ptrs)
        assert launch.block <= limits.max_threads_per_block and launch.block % 32 == 0
        scalars = [np.array(a) for a in launch.args()]   # each passed by its address
        rc = self.launch(launch.entry, launch.grid, launch.block,
                         [p for ps in ptrs for p in ps] + [a.ctypes.data for a in scalars])
        assert rc == 0, f"{launch}: emulated launch failed ({rc}: 3 is a deadlock)"
        return outs, launch, ptrs


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="ember-cuda-emu-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def emulated(workdir):
    """Every case's CudaKernel on the emulator."""
    assert shutil.which("g++"), "the CUDA emulator needs g++"
    return emulate_all(list(all_cases()), workdir)


def emulate_all(cases: list[Case], workdir: str) -> list[tuple]:
    """(case, its CudaKernel, the Emulator holding it) for every case, compiled by g++
    in two halves in parallel."""
    cks = [cuda.CudaKernel(c.kernel) for c in cases]
    halves = chunks(list(range(len(cases))), 2)

    def build(idx):
        return Emulator([cks[i].source for i in idx], [e for i in idx for e in cks[i].entries],
                        workdir)
    with ThreadPoolExecutor(2) as pool:
        emus = list(pool.map(build, halves))
    where = {i: emus[h] for h, idx in enumerate(halves) for i in idx}
    return [(c, ck, where[i]) for i, (c, ck) in enumerate(zip(cases, cks))]


def test_emulated_kernels_match_cpu(emulated):
    """Every kernel, launched as for a 1-SM/64-thread device (grid-stride loops, several
    rows per block), a 2-SM/128-thread one, and an H100, under three thread schedules,
    equals the LLVM backend."""
    seen_launches = set()
    for case, ck, emu in emulated:
        want = cpu_outputs(case)
        for limits, policy in ((SMALL, 1), (MEDIUM, 2), (H100, 0)):
            if limits is H100 and ck.size > 100_000:
                continue   # 1024-thread blocks: emulated one fiber a thread
            got, launches = emu.run(ck, case, limits, policy)
            assert_same(got, want, case.kernel, f"emulated on {limits}")
            seen_launches.add((ck.reduce, ck.warp_rows, len(launches) > 1,
                               any(ln.entry == ck.vector_entry for ln in launches)))
    # The layouts all ran: elementwise (scalar and vector entries), warp and block per
    # row, and split rows.
    assert seen_launches >= {(False, False, False, False), (False, False, False, True),
                             (True, True, False, False), (True, False, False, False),
                             (True, False, True, False)}


def test_emulated_64bit_indexing(workdir, monkeypatch):
    """The 64-bit index code (forced here for small sizes) computes the same."""
    monkeypatch.setattr(cuda.source, "_I31", 0)   # where the generator reads it
    cases = [c for c in all_cases() if not c.kernel.name.startswith(("prog", "ops_"))]
    rng = np.random.default_rng(3)
    cases += [aligned_case(make_case(k, rng)) for n in (5, 1023) for k in vector_kernels(n)]
    cks = [cuda.CudaKernel(c.kernel) for c in cases]
    assert all(ck.index_bits == 64 for ck in cks)
    emu = Emulator([ck.source for ck in cks], [e for ck in cks for e in ck.entries], workdir)
    vector_runs = 0
    for case, ck in zip(cases, cks):
        want = cpu_outputs(case)
        for limits, policy in ((SMALL, 2), (MEDIUM, 1)):
            got, launches = emu.run(ck, case, limits, policy)
            assert_same(got, want, case.kernel, f"64-bit, emulated on {limits}")
            vector_runs += any(ln.entry == ck.vector_entry for ln in launches)
    assert vector_runs > 0


# ---- vector entries: V points an iteration where the operands are contiguous -----------

def vector_kernels(n: int) -> list[Kernel]:
    """Elementwise kernels of ``n`` points that get vector entries: mixed widths, an
    invariant (broadcast scalar) operand, a contiguous load at an offset, 2-D shapes."""
    f, d, s = F32, F64, (1,)
    sc = (0,)   # a broadcast scalar
    return [
        # float4 + uchar4: where(mask, x * c, exp(c)), x > c.
        Kernel(f"vec_where_{n}", (n,), [_ld(0, f, s), _ld(1, B, s), _ld(2, f, sc, offset=1)],
               [Expr("load", (0,), f), Expr("load", (1,), B), Expr("load", (2,), f),
                Expr("mul", (0, 2), f), Expr("exp", (2,), f), Expr("where", (1, 3, 4), f),
                Expr("gt", (0, 2), B)], [5, 6]),
        # double2 (a load 2 elements in: still 16-byte aligned) + float2 + uchar2 stores.
        Kernel(f"vec_f64_{n}", (n,), [_ld(0, d, s), _ld(1, d, s, offset=2), _ld(2, d, sc)],
               [Expr("load", (0,), d), Expr("load", (1,), d), Expr("load", (2,), d),
                Expr("sub", (0, 1), d), Expr("mul", (3, 2), d), Expr("cast", (4,), f),
                Expr("le", (0, 1), B)], [4, 5, 6]),
        # int2 + longlong2, wrapping arithmetic.
        Kernel(f"vec_int_{n}", (n,), [_ld(0, I32, s), _ld(1, I64, s)],
               [Expr("load", (0,), I32), Expr("load", (1,), I64), Expr("add", (0, 1), I64),
                Expr("const", (-2 ** 31,), I32), Expr("mul", (0, 3), I32)], [2, 4]),
        # int4 over a 2-D space that collapses to 1-D, with a scalar read as [1, 1].
        Kernel(f"vec_i32_2d_{n}", (n, 1), [_ld(0, I32, (1, 1)), _ld(1, I32, (0, 0))],
               [Expr("load", (0,), I32), Expr("load", (1,), I32), Expr("maximum", (0, 1), I32),
                Expr("neg", (2,), I32)], [3]),
        # uchar4 alone.
        Kernel(f"vec_bool_{n}", (n,), [_ld(0, B, s), _ld(1, B, s)],
               [Expr("load", (0,), B), Expr("load", (1,), B), Expr("logical_not", (0,), B),
                Expr("logical_or", (2, 1), B)], [3]),
        # A 3-D contiguous space; the input read as float64 with a float32 store.
        Kernel(f"vec_3d_{n}", (1, n, 1), [_ld(0, d, (n, 1, 1))],
               [Expr("load", (0,), d), Expr("tanh", (0,), d), Expr("cast", (1,), f)], [1, 2]),
    ]


VECTOR_SIZES = (1, 3, 4, 5, 1023, 4099)


def aligned_case(case: Case, shift: int = 0, align: int = 64) -> Case:
    """``case`` with each buffer copied to an ``align``-byte aligned address, plus
    ``shift`` elements (so the inputs' pointers are misaligned by that many)."""
    bufs = []
    for b in case.bufs:
        raw = np.zeros((b.size + shift) * b.itemsize + align, np.uint8)
        at = -raw.ctypes.data % align
        a = raw[at:at + (b.size + shift) * b.itemsize].view(b.dtype)
        a[shift:] = b
        bufs.append(a)
    return Case(case.kernel, bufs, [s + shift for s in case.starts])


@pytest.fixture(scope="module")
def vector_emulated(workdir):
    assert shutil.which("g++"), "the CUDA emulator needs g++"
    rng = np.random.default_rng(7)
    cases = [aligned_case(make_case(k, rng)) for n in VECTOR_SIZES for k in vector_kernels(n)]
    return emulate_all(cases, workdir)


def test_vector_entries_for_contiguous_kernels_only():
    """Contiguous or invariant loads and contiguous stores get ``<name>_v``, V from the
    widest vectorized operand; any other access pattern keeps a kernel scalar-only."""
    def ew(name, shape, loads, exprs, stores=None):
        return cuda.CudaKernel(Kernel(name, shape, loads, exprs, stores or [len(exprs) - 1]))

    one = {F32: "neg", F64: "neg", I32: "neg", I64: "neg", B: "logical_not"}
    for d, (v, ty) in {F32: (4, "float4"), F64: (2, "double2"), I32: (4, "int4"),
                       I64: (2, "longlong2"), B: (4, "uchar4")}.items():
        ck = ew(f"neg_{d.name}", (3, 5), [Load(0, d, (5, 1))],
                [Expr("load", (0,), d), Expr(one[d], (0,), d)])
        assert ck.vector_entry == f"neg_{d.name}_v" and ck.vector_entry in ck.entries
        assert ck.vector_width == v and f"const {ty} vec0 = " in ck.source, d
        assert f"reinterpret_cast<{ty}*>(out0)[v] = {ty}{{" in ck.source
        align = 4 if d is B else 16
        assert ck.vector_access == [(0, 0, align), (1, 0, align)]   # (argument, offset, bytes)
    # Mixed widths: the widest operand sets V, narrower ones use narrower vectors. Two
    # loads of the first dtype; a compare stores bool, an add the second dtype.
    mixed = {(F32, B): (4, ["float4", "uchar4"]), (F64, B): (2, ["double2", "uchar2"]),
             (I32, I64): (2, ["int2", "longlong2"]), (F32, F64): (2, ["float2", "double2"])}
    for (a, b), (v, tys) in mixed.items():
        out = B if b is B else b
        op = "lt" if b is B else "add"
        ck = ew(f"mixed_{a.name}_{b.name}", (10,), [Load(0, a, (1,)), Load(1, a, (1,))],
                [Expr("load", (0,), a), Expr("load", (1,), a), Expr(op, (0, 1), out)])
        assert ck.vector_width == v and all(t in ck.source for t in tys), (a, b)
    # An invariant operand is read as a scalar and needs no alignment.
    ck = ew("scaled", (64,), [Load(0, F32, (1,)), Load(1, F64, (0,), offset=3)],
            [Expr("load", (0,), F32), Expr("load", (1,), F64), Expr("mul", (0, 1), F64),
             Expr("cast", (2,), F32)])
    assert ck.vector_width == 4 and ck.vector_access == [(0, 0, 16), (2, 0, 16)]
    assert "in1[3]" in ck.source
    # Broadcast along one dim, transposed, strided, reversed, a permuted store, empty,
    # and reductions: scalar only.
    f = F32
    neg = [Expr("load", (0,), f), Expr("neg", (0,), f)]
    scalar_only = [
        ew("row_broadcast", (3, 4), [Load(0, f, (0, 1))], neg),
        ew("col_broadcast", (3, 4), [Load(0, f, (1, 0))], neg),
        ew("transposed", (4, 3), [Load(0, f, (1, 4))], neg),
        ew("strided", (8,), [Load(0, f, (2,))], neg),
        ew("reversed", (8,), [Load(0, f, (-1,), offset=7)], neg),
        ew("one_transposed", (4, 3), [Load(0, f, (3, 1)), Load(1, f, (1, 4))],
           neg + [Expr("load", (1,), f), Expr("add", (1, 2), f)]),
        ew("permuted_store", (4, 3), [Load(0, f, (3, 1))], neg, [Store(1, (1, 4))]),
        ew("empty", (0, 4), [Load(0, f, (4, 1))], neg),
        cuda.CudaKernel(softmax_kernel("rows", 4, 8)),
    ]
    for ck in scalar_only:
        assert ck.vector_entry is None and ck.vector_width == 1, ck
        assert not any(e.endswith("_v") for e in ck.entries) and "_v(" not in ck.source
        assert ck.launches(H100, [0] * 8)[0] == ck.launches(H100)[0]
    # Among the programs' kernels, both kinds occur.
    cks = [cuda.CudaKernel(c.kernel) for c in all_cases()]
    ew_cks = [ck for ck in cks if not ck.reduce and not ck.empty]
    assert 0 < sum(ck.vector_entry is not None for ck in ew_cks) < len(ew_cks)


def test_emulated_vector_entries_match_cpu(vector_emulated):
    """Sizes below, at and off a multiple of V (the scalar tail), aligned inputs: the
    vector entry runs and equals the LLVM backend, under three schedules."""
    for case, ck, emu in vector_emulated:
        assert ck.vector_entry is not None, case.kernel.name
        want = cpu_outputs(case)
        for limits, policy in ((SMALL, 1), (MEDIUM, 2), (H100, 0)):
            got, launches = emu.run(ck, case, limits, policy)
            assert [ln.entry for ln in launches] == [ck.vector_entry], case.kernel.name
            assert launches[0].grid == min(-(-ck.size // ck.vector_width // launches[0].block),
                                           limits.resident_blocks(launches[0].block))
            assert_same(got, want, case.kernel, f"vector entry, emulated on {limits}")


def test_misaligned_pointers_take_the_scalar_entry(vector_emulated):
    """An input or output one element off its vector alignment (a view with an offset)
    runs the scalar entry, and is still right; a broadcast scalar may sit anywhere."""
    for case, ck, emu in vector_emulated:
        if ck.size not in (5, 1023):
            continue
        want = cpu_outputs(case)
        shifted = aligned_case(case, shift=1)
        got, launches = emu.run(ck, shifted, MEDIUM, 2)
        contiguous = {a for a, _, _ in ck.vector_access if a < ck.num_inputs}
        assert [ln.entry for ln in launches] == [ck.name if contiguous else ck.vector_entry]
        assert_same(got, want, case.kernel, "misaligned inputs")
        # One output one element off a 64-byte boundary.
        outs = []
        for o in out_arrays(ck):
            raw = np.empty((o.size + 1) * o.itemsize + 64, np.uint8)
            at = -raw.ctypes.data % 64 + o.itemsize
            outs.append(raw[at:at + o.nbytes].view(o.dtype))
            outs[-1][:] = o
        got, launches = emu.run(ck, aligned_case(case), SMALL, 1, outs=outs)
        assert [ln.entry for ln in launches] == [ck.name]
        assert_same(got, want, case.kernel, "misaligned outputs")
    # The choice itself, per pointer: vec_where reads x (float4), mask (uchar4) and a
    # scalar, writes float4 and uchar4.
    ck = cuda.CudaKernel(vector_kernels(64)[0])
    entry = [ln.entry for ln in ck.launches(H100, [0, 0, 0, 0, 0])[0]]
    assert entry == ["vec_where_64_v"]
    for ptrs, vector in (([16, 4, 3, 32, 4], True), ([4, 0, 0, 0, 0], False),
                         ([0, 2, 0, 0, 0], False), ([0, 0, 0, 8, 0], False),
                         ([0, 0, 0, 0, 1], False), ([0, 0, 1, 0, 0], True)):
        assert ck.aligned(ptrs) == vector, ptrs
        want = ck.vector_entry if vector else ck.name
        assert ck.launches(H100, ptrs)[0][0].entry == want, ptrs
    # A Load's compiled-in offset counts: x[1:] is misaligned even at an aligned pointer.
    f = F32
    for offset, vector in ((1, False), (2, False), (4, True)):
        k = Kernel(f"off{offset}", (32,), [Load(0, f, (1,), offset)],
                   [Expr("load", (0,), f), Expr("neg", (0,), f)], [1])
        assert cuda.CudaKernel(k).aligned([0, 0]) == vector, offset


def test_split_rows_use_several_blocks_per_row(emulated):
    case, ck, emu = next(t for t in emulated if t[0].kernel.name == "softmax_split")
    launches, slots = ck.launches(MEDIUM)
    assert [ln.entry for ln in launches] == ["softmax_split_p0", "softmax_split_p1",
                                             "softmax_split_p2"]
    assert launches[0].nsplit > 1 and slots == 2 * 2 * launches[0].nsplit
    got, _ = emu.run(ck, case, MEDIUM)
    x = case.inputs()[0][:2 * 20000].reshape(2, 20000).astype(np.float64)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(got[0].reshape(2, 20000), e / e.sum(1, keepdims=True), rtol=1e-5,
                               atol=1e-9)
    np.testing.assert_allclose(got[1], x.max(1), rtol=0)
    np.testing.assert_allclose(got[2], e.sum(1), rtol=1e-6)


def test_emulator_finds_divergent_barriers_and_races(workdir):
    """The emulation is strict: a barrier that not every thread reaches is an error, and
    a missing barrier gives a wrong value (a thread that completes a barrier runs on
    before the others wake)."""
    src = r"""
    extern "C" __global__ void divergent(float* y) {
        if (threadIdx.x < 32) __syncthreads();
        y[threadIdx.x] = 1.0f;
    }
    extern "C" __global__ void half_warp(float* y) {
        float v = threadIdx.x;
        if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
        y[threadIdx.x] = v;
    }
    extern "C" __global__ void fine(float* y) {
        __shared__ float s[64];
        s[threadIdx.x] = (float)threadIdx.x;
        __syncthreads();
        y[threadIdx.x + 64 * blockIdx.x] = s[63 - threadIdx.x]
            + __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
    }
    extern "C" __global__ void racy(float* y) {
        __shared__ float s[64];
        for (int r = 0; r < 2; ++r) {
            s[threadIdx.x] = (float)(100 * r + threadIdx.x);
            __syncthreads();
            y[64 * r + threadIdx.x] = s[63 - threadIdx.x];
            // (a second __syncthreads belongs here, before s is written again)
        }
    }
    """
    emu = Emulator([src], ["divergent", "half_warp", "fine", "racy"], workdir)
    y = np.zeros(128, np.float32)
    assert emu.launch("divergent", 1, 64, [y.ctypes.data]) == 3
    assert emu.launch("half_warp", 1, 64, [y.ctypes.data]) == 3
    t = np.arange(64)
    for policy in (0, 1, 2):
        emu.lib.emu_set_policy(policy)
        assert emu.launch("fine", 2, 64, [y.ctypes.data]) == 0
        np.testing.assert_array_equal(y, np.tile(63 - t + (t ^ 1), 2))
        assert emu.launch("racy", 1, 64, [y.ctypes.data]) == 0
        assert not np.array_equal(y, np.concatenate([63 - t, 163 - t])), policy


# ---- the Python side: launches, caching, arguments --------------------------------------

def _launch_kernels() -> dict[str, Kernel]:
    f = F32
    ew = Kernel("ew", (1 << 24,), [Load(0, f, (1,))],
                [Expr("load", (0,), f), Expr("exp", (0,), f)], [1])
    tiny = Kernel("tiny", (10,), [Load(0, f, (1,))],
                  [Expr("load", (0,), f), Expr("exp", (0,), f)], [1])
    return {"ew": ew, "tiny": tiny,
            "wide_rows": softmax_kernel("wide_rows", 4096, 4096),
            "short_rows": softmax_kernel("short_rows", 100000, 100),
            "full_sum": reduce_kernel("full_sum", "reduce_sum", (1 << 24,), (1,), f),
            "ln": layer_norm_kernel("ln", (2,), 1 << 20)}


def test_launch_sizes_follow_the_device():
    ks = {n: cuda.CudaKernel(k) for n, k in _launch_kernels().items()}
    (ln,), slots = ks["ew"].launches(H100)
    assert (ln.block, ln.grid, slots) == (256, 132 * 8, 0)   # one resident wave, strided
    assert ks["tiny"].launches(H100)[0] == [cuda.Launch("tiny", 1, 256)]
    (ln,), _ = ks["wide_rows"].launches(H100)
    assert not ks["wide_rows"].warp_rows and ln.block == 512 and ln.grid == 132 * 4
    (ln,), _ = ks["short_rows"].launches(H100)
    assert ks["short_rows"].warp_rows and ln.block == 256 and ln.grid == 132 * 8
    launches, slots = ks["full_sum"].launches(H100)
    assert [x.entry for x in launches] == ["full_sum_p0", "full_sum_p1"]
    assert launches[0].block == 1024 and launches[0].nsplit == 264 == launches[0].grid
    assert slots == 264
    launches, slots = ks["ln"].launches(H100)
    assert len(launches) == 3 and launches[0].nsplit == 128 and slots == 2 * 2 * 128
    # A smaller device gets smaller launches from the same kernel.
    launches, _ = ks["full_sum"].launches(SMALL)
    assert launches[0].block == 64 and launches[0].grid == 1 * 1
    # Aligned pointers take the vector entry, a thread per 4 points.
    assert ks["ew"].launches(H100, [0, 0])[0] == [cuda.Launch("ew_v", 132 * 8, 256)]
    assert ks["ew"].launches(SMALL, [0, 0])[0] == [cuda.Launch("ew_v", 1, 64)]
    assert ks["tiny"].launches(H100, [256, 512])[0] == [cuda.Launch("tiny_v", 1, 256)]
    big = cuda.CudaKernel(Kernel("big", (4096,), [Load(0, F64, (1,))],
                                 [Expr("load", (0,), F64), Expr("exp", (0,), F64)], [1]))
    assert big.launches(H100)[0] == [cuda.Launch("big", 16, 256)]
    assert big.launches(H100, [0, 0])[0] == [cuda.Launch("big_v", 8, 256)]


def test_launches_respect_limits_for_every_kernel():
    for case in all_cases():
        ck = cuda.CudaKernel(case.kernel)
        aligned = [0] * (ck.num_inputs + ck.num_outputs)
        for limits, ptrs in ((SMALL, None), (MEDIUM, aligned), (H100, None), (H100, aligned)):
            launches, slots = ck.launches(limits, ptrs)
            assert (launches == []) == ck.empty
            for ln in launches:
                assert ln.entry in ck.entries
                assert 32 <= ln.block <= min(limits.max_threads_per_block, ck.max_block)
                assert ln.block % 32 == 0
                assert ln.grid >= 1 and ln.grid * ln.block <= cuda.MAX_GRID_THREADS
            assert slots == (ck.num_reductions * ck.rows * launches[0].nsplit
                             if len(launches) > 1 else 0)


def test_compile_kernel_caches_by_signature_and_imports_without_cupy():
    k1 = tl.op_kernel("exp", [np.ones(5, np.float32)], F32)
    k2 = renamed(k1, "other_name")
    assert cuda.compile_kernel(k1) is cuda.compile_kernel(k2)
    assert cuda.compile_kernel(tl.op_kernel("exp", [np.ones(6, np.float32)], F32)) \
        is not cuda.compile_kernel(k1)
    code = ("import sys; sys.modules['cupy'] = None; import ember.codegen.cuda as c; "
            "import ember.codegen.nvrtc; print(c.cuda_source.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0 and "cuda_source" in proc.stdout, proc.stderr


def test_lowering_matches_the_cpu_backend_op_by_op():
    """Every op/dtype the CPU backend lowers, CUDA lowers; what it refuses, CUDA refuses."""
    assert FUSIBLE == set(UNARY) | set(BINARY) | {"where", "cast"}, "a new op: list it here"
    checked = 0
    for op in sorted(FUSIBLE):
        for d in ALL:
            for out in ALL:
                k = op_kernel(op, d, out)
                try:
                    cuda.cuda_source(k)
                    gpu_ok = True
                except NotImplementedError:
                    gpu_ok = False
                assert cpu_lowers(k) == gpu_ok, (op, d, out)
                checked += gpu_ok
    assert checked > 400


def test_bad_kernels_are_rejected():
    f = F32
    with pytest.raises(ValueError, match="strides"):
        cuda.cuda_source(Kernel("k", (4,), [Load(0, f, (1, 1))], [Expr("load", (0,), f)], [0]))
    with pytest.raises(ValueError, match="row-level"):
        cuda.cuda_source(Kernel("k", (3, 4), [Load(0, f, (4, 1))],
                                [Expr("load", (0,), f), Expr("reduce_sum", (0,), f)],
                                [Store(1, (4, 1))], reduce_dims=1))
    with pytest.raises(ValueError, match="without reduce_dims"):
        cuda.cuda_source(Kernel("k", (4,), [Load(0, f, (1,))],
                                [Expr("load", (0,), f), Expr("reduce_sum", (0,), f)], [1]))


# ---- horizontal fusion: independent elementwise kernels, one launch -------------------

def multi_cases() -> list[Case]:
    """The parts of one multi-kernel: different sizes and dtypes, parts with a vector
    body on aligned pointers and on pointers one element off, a 1-element part, parts
    without a vector body (strided, permuted, offsets, mixed dtypes), a 0-dim and an
    empty kernel, and two parts (named ``wide64_*``) that the tests give 64-bit index
    code."""
    rng = np.random.default_rng(13)
    named = {k.name: (k, v) for k, v in hand_built()}
    cases = [aligned_case(make_case(k, rng)) for k in (
        vector_kernels(1)[0], vector_kernels(1023)[1], vector_kernels(5)[3],
        renamed(vector_kernels(1023)[5], "wide64_vec_3d"))]
    cases.append(aligned_case(make_case(vector_kernels(4099)[2], rng), shift=1))
    for name in ("chain", "mixed", "scalar", "empty", "offsets", "permuted_3d"):
        k, v = named[name]
        cases.append(make_case(k, rng, v))
    k, v = named["offsets"]
    cases.append(make_case(renamed(k, "wide64_offsets"), rng, v))
    return cases


@pytest.fixture
def some_parts_64bit(monkeypatch):
    """Parts named ``wide64_*`` get 64-bit index code (real sizes that need it would not
    fit in the emulator's memory)."""
    needs = cuda._Generator._needs_64bit
    monkeypatch.setattr(cuda._Generator, "_needs_64bit",
                        lambda g: g.k.name.startswith("wide64") or needs(g))


def test_nvrtc_compiles_multi_kernels(nvrtc_ready, some_parts_64bit):
    multi = cuda.CudaKernels([c.kernel for c in multi_cases()], "multi")
    assert multi.entries == ["multi"] and {p.index_bits for p in multi.parts} == {32, 64}
    assert sum(p.vector_entry is not None for p in multi.parts) >= 5
    assert nvrtc.compile_entry_points(multi.source, multi.entries, arch="sm_90")[:4] == b"\x7fELF"
    # The largest launch launch_groups makes: parameters up to MAX_PARAM_BYTES.
    group = cuda.launch_groups([wide_kernel()] * 100)[0]
    multi = cuda.CudaKernels([renamed(wide_kernel(), f"w{i}") for i in group], "full")
    assert cuda._param_bytes([wide_kernel()] * (len(group) + 1)) > cuda.MAX_PARAM_BYTES
    assert nvrtc.compile_entry_points(multi.source, multi.entries, arch="sm_90")[:4] == b"\x7fELF"


def wide_kernel(n: int = 100) -> Kernel:
    """An elementwise kernel of 7 inputs and 1 output (68 bytes of a launch's parameters);
    strided, so without a vector body (half the code to compile)."""
    f = F32
    exprs = [Expr("load", (i,), f) for i in range(7)]
    for i in range(1, 7):
        exprs.append(Expr("add", (len(exprs) - 1 if i > 1 else 0, i), f))
    return Kernel("wide", (n,), [Load(i, f, (2,)) for i in range(7)], exprs, [len(exprs) - 1])


def test_emulated_multi_kernel_matches_cpu(workdir, some_parts_64bit):
    """One launch runs every part: each gets the blocks it would be launched with alone,
    its vector body where its own pointers are aligned, and equals the LLVM backend,
    launched as for 1-SM/64-thread and 2-SM/128-thread devices under three schedules."""
    cases = multi_cases()
    multi = cuda.CudaKernels([c.kernel for c in cases], "multi")
    alone = [cuda.CudaKernel(c.kernel) for c in cases]
    emu = Emulator([multi.source], multi.entries, workdir)
    wants = [cpu_outputs(c) for c in cases]
    vector_bodies = set()
    for limits in (SMALL, MEDIUM):
        for policy in (0, 1, 2):
            got, launch, ptrs = emu.run_multi(multi, cases, limits, policy)
            start = 0
            for p, (ck, g, w, c) in enumerate(zip(alone, got, wants, cases)):
                # The blocks and the body the part would get launched alone.
                own = ck.launches(limits, ptrs[p])[0]
                assert launch.ends[p] - start == (own[0].grid if own else 0), c.kernel.name
                vector = bool(launch.vector_mask >> p & 1)
                assert vector == (bool(own) and own[0].entry == ck.vector_entry)
                vector_bodies.add((vector, ck.vector_entry is not None))
                assert own == [] or own[0].block == launch.block
                start = launch.ends[p]
                assert_same(g, w, c.kernel, f"part {p} of a multi-kernel on {limits}")
            assert launch.grid == start
    # Vector bodies ran, and scalar ones for parts with and without a vector body.
    assert vector_bodies == {(True, True), (False, True), (False, False)}


def test_launch_groups_and_the_multi_kernel_cache():
    ew, ew2 = vector_kernels(64)[0], vector_kernels(64)[2]
    rows = softmax_kernel("rows", 4, 8)
    # Reductions keep their own launches; elementwise kernels share one, up to MAX_PARTS
    # of them or MAX_PARAM_BYTES of parameters.
    assert cuda.launch_groups([ew, rows, ew2, ew]) == [[1], [0, 2, 3]]
    assert [len(g) for g in cuda.launch_groups([ew] * 130)] == [64, 64, 2]
    groups = cuda.launch_groups([wide_kernel()] * 130)
    assert [len(g) for g in groups] == [60, 60, 10] and sum(groups, []) == list(range(130))
    with pytest.raises(ValueError, match="only elementwise"):
        cuda.CudaKernels([ew, rows], "m")
    with pytest.raises(ValueError, match="1 to 64 kernels"):
        cuda.CudaKernels([ew] * 65, "m")
    with pytest.raises(ValueError, match="bytes of parameters"):
        cuda.CudaKernels([wide_kernel()] * 61, "m")
    # Equal lists of parts (by signature, whatever their names) share one multi-kernel.
    m = cuda.compile_kernels([ew, ew2], "a")
    assert cuda.compile_kernels([renamed(ew, "x"), renamed(ew2, "y")], "b") is m
    assert cuda.compile_kernels([ew2, ew], "a") is not m
    assert cuda.compile_kernels([ew, ew2, ew], "a") is not m
    # An empty part gets no blocks; only empty parts, no launch.
    empty = Kernel("empty", (0,), [Load(0, F32, (1,))],
                   [Expr("load", (0,), F32), Expr("neg", (0,), F32)], [1])
    m = cuda.CudaKernels([empty, ew, empty], "m")
    launch = m.launch(H100)
    assert launch.ends == (0, 1, 1) and launch.grid == 1 and launch.vector_mask == 0
    assert m.launch(H100, [[0, 0]] + [[0] * 5] + [[0, 0]]).vector_mask == 0b010
    assert cuda.CudaKernels([empty, empty], "m").launch(H100) is None
    # Sizes as each part alone: one resident wave at most, the vector width counted.
    big = Kernel("big", (1 << 24,), [Load(0, F32, (1,))],
                 [Expr("load", (0,), F32), Expr("exp", (0,), F32)], [1])
    launch = cuda.CudaKernels([big, ew, big], "m").launch(H100, [[0, 0], [0] * 5, [0, 4]])
    assert launch.ends == (132 * 8, 132 * 8 + 1, 2 * 132 * 8 + 1)
    assert launch.block == 256 and launch.vector_mask == 0b011
    assert [type(a) for a in launch.args()] == [np.int32] * 3 + [np.uint64]


# ---- on a GPU: CudaKernel.run against the CPU backend -----------------------------------

@pytest.fixture(scope="module")
def cupy():
    import cupy as cp   # the tests asking for it are skipped unless ember sees a GPU
    return cp


def _gpu_run(cp, ck: cuda.CudaKernel, case: Case) -> list[np.ndarray]:
    inputs = [cp.asarray(b)[s:] for b, s in zip(case.bufs, case.starts)]
    outs = [cp.asarray(o) for o in out_arrays(ck)]
    ck.run(inputs, outs)
    return [cp.asnumpy(o) for o in outs]


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_matches_cpu_on_every_kernel(cupy):
    for case in all_cases():
        ck = cuda.CudaKernel(case.kernel)
        assert_same(_gpu_run(cupy, ck, case), cpu_outputs(case), case.kernel, "GPU")


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_matches_cpu_at_full_size(cupy):
    """The launch layouts at sizes that fill the device: a strided elementwise pass,
    block and warp rows, split full reductions (several launches and a workspace)."""
    rng = np.random.default_rng(5)
    for k in _launch_kernels().values():
        if k.name == "short_rows":
            k = softmax_kernel("short_rows", 20000, 100)
        case = make_case(k, rng)
        ck = cuda.compile_kernel(k)
        assert_same(_gpu_run(cupy, ck, case), cpu_outputs(case), k, "GPU")


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_vector_entries_aligned_or_not(cupy):
    """CuPy allocations are aligned, so the vector entry runs; a view one element in runs
    the scalar entry. Both equal the CPU backend."""
    rng = np.random.default_rng(9)
    for n in (5, 4099, 1 << 20):
        for k in vector_kernels(n):
            case = make_case(k, rng)
            ck = cuda.compile_kernel(k)
            for shift in (0, 1):
                c = aligned_case(case, shift=shift)
                ptrs = [cupy.asarray(b)[s:].data.ptr for b, s in zip(c.bufs, c.starts)]
                assert ck.aligned(ptrs + [0] * ck.num_outputs) == (shift == 0)
                assert_same(_gpu_run(cupy, ck, c), cpu_outputs(case), k, f"GPU, shift {shift}")


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_run_checks_its_arguments(cupy):
    ck = cuda.compile_kernel(tl.op_kernel("exp", [np.ones(5, np.float32)], F32))
    x, y = cupy.ones(5, cupy.float32), cupy.empty(5, cupy.float32)
    with pytest.raises(ValueError, match="takes 1 inputs"):
        ck.run([], [y])
    with pytest.raises(TypeError, match="CuPy arrays"):
        ck.run([np.ones(5, np.float32)], [y])
    with pytest.raises(ValueError, match="float32"):
        ck.run([cupy.ones(5, cupy.float64)], [y])
    with pytest.raises(ValueError, match="outputs must be"):
        ck.run([x], [cupy.empty(4, cupy.float32)])
    ck.run([x], [y])
    np.testing.assert_allclose(cupy.asnumpy(y), np.exp(np.ones(5, np.float32)), rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_multi_kernel_matches_cpu(cupy):
    """One launch of parts of every kind (aligned and misaligned, vector bodies or not)."""
    cases = multi_cases()
    multi = cuda.compile_kernels([c.kernel for c in cases], "multi")
    inputs = [[cupy.asarray(b)[s:] for b, s in zip(c.bufs, c.starts)] for c in cases]
    outs = [[cupy.asarray(o) for o in out_arrays(part)] for part in multi.parts]
    multi.run(inputs, outs)
    for c, o in zip(cases, outs):
        assert_same([cupy.asnumpy(x) for x in o], cpu_outputs(c), c.kernel, "GPU multi-kernel")
