"""The LLVM backend: hand-built Kernels against the registry's NumPy implementations.

Every elementwise op and dtype combination, special values (inf, nan, +-0, huge, tiny,
subnormal), broadcasting (stride 0), transposed, reversed and offset views, several
outputs, empty and 0-dim iteration spaces, a long fused chain and a threaded size.
"""
from __future__ import annotations

import math
import os
import re
import time

import numpy as np
import pytest

import ember  # noqa: F401  (fills the op registry)
from ember import dtypes as dt
from ember.codegen import llvm as cg
from ember.codegen.kernel import Expr, Kernel, Load, Store
from ember.ops import OPS
from ember.codegen.llvm.jit import vector_registers

F32, F64, I32, I64, B = dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_
FLOATS = [F32, F64]
INTS = [I32, I64]
rng = np.random.default_rng(7)

# rtol/atol per result dtype: float32 to ~10 ulp, float64 tightly.
TOL = {F32: (1e-5, 1e-6), F64: (1e-12, 1e-300)}


def c_strides(shape) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


def view_load(index: int, a: np.ndarray, dtype: dt.DType) -> Load:
    """A Load reading NumPy view ``a`` as it is (its own strides, in elements)."""
    return Load(index, dtype, tuple(s // a.itemsize for s in a.strides))


def run(kernel: Kernel, inputs: list[np.ndarray]) -> list[np.ndarray]:
    outs = [np.empty(kernel.shape, kernel.exprs[s.expr].dtype.np) for s in kernel.stores]
    cg.compile_kernel(kernel).run(inputs, outs)
    return outs


def op_kernel(op: str, arrays: list[np.ndarray], out: dt.DType, args_dtype=None) -> Kernel:
    """``op`` applied to ``arrays`` (all of one shape, any strides)."""
    shape = arrays[0].shape
    loads, exprs = [], []
    for i, a in enumerate(arrays):
        d = dt.from_numpy_dtype(a.dtype)
        loads.append(view_load(i, a, d))
        exprs.append(Expr("load", (i,), d))
    exprs.append(Expr(op, tuple(range(len(arrays))), out))
    return Kernel(f"{op}_k", shape, loads, exprs, stores=[len(arrays)])


def reference(op: str, *arrays: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(OPS[op].eager(np, *arrays))


def check(got: np.ndarray, want: np.ndarray, dtype: dt.DType, rtol=None, atol=None) -> None:
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if dtype.is_floating_point:
        r, a = TOL[dtype]
        np.testing.assert_allclose(got, want, rtol=rtol if rtol is not None else r,
                                   atol=atol if atol is not None else a, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


def special(dtype: dt.DType) -> np.ndarray:
    """Edge values plus a spread of magnitudes, both signs."""
    fi = np.finfo(dtype.np)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, 1e-3, -1e-3,
            float(fi.tiny), float(fi.tiny) / 8, float(fi.max), -float(fi.max), 1e-30, 1e30,
            -1e30, 80.0, 88.5, 89.0, -87.0, -100.0, -104.0, 700.0, 710.0, -740.0, -746.0,
            3.0, -3.0, 10.0, -10.0, 1e-7, 5e-5, 0.4999, 0.5001, 6.0, -6.0, 20.0, -20.0]
    with np.errstate(over="ignore"):
        fixed = np.array(vals, dtype=dtype.np)
    spread = np.concatenate([rng.standard_normal(300), rng.uniform(-30, 30, 300),
                             10.0 ** rng.uniform(-20, 20, 200)]).astype(dtype.np)
    return np.concatenate([fixed, spread])


def positive(dtype: dt.DType) -> np.ndarray:
    fi = np.finfo(dtype.np)
    lo, hi = np.log10(float(fi.smallest_subnormal)), np.log10(float(fi.max))
    return np.concatenate([10.0 ** rng.uniform(lo, hi, 2000),
                           rng.uniform(0.5, 2.0, 1000)]).astype(dtype.np)


# ---- unary float ops ------------------------------------------------------------------

UNARY_FLOAT = ["neg", "exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid",
               "erf", "relu"]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", UNARY_FLOAT)
def test_unary_float(op, dtype):
    x = special(dtype)
    if op in ("sin", "cos"):
        x = x[np.isnan(x) | (np.abs(x) < 1e4)]   # libm argument reduction differs above
    (got,) = run(op_kernel(op, [x], dtype), [x])
    want = reference(op, x)
    if op == "erf" and dtype is F64:
        check(got, want, dtype, rtol=0, atol=3e-7)   # the registry's form is float32-exact
    else:
        check(got, want, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_exp_log_accuracy(dtype):
    """exp and log across the whole range, subnormals included: rtol 1e-6 / 1e-12."""
    rtol = 1e-6 if dtype is F32 else 1e-12
    x = positive(dtype)
    (got,) = run(op_kernel("log", [x], dtype), [x])
    np.testing.assert_allclose(got, np.log(x), rtol=rtol)
    lim = 87.0 if dtype is F32 else 708.0
    y = np.concatenate([rng.uniform(-lim, lim, 5000), rng.uniform(-1, 1, 1000),
                        rng.uniform(-1e-6, 1e-6, 100)]).astype(dtype.np)
    (got,) = run(op_kernel("exp", [y], dtype), [y])
    np.testing.assert_allclose(got, np.exp(y), rtol=rtol)
    # Down into the subnormals, where only absolute accuracy of one subnormal step exists.
    tiny = np.linspace(-lim - 16, -lim, 1000).astype(dtype.np)
    (got,) = run(op_kernel("exp", [tiny], dtype), [tiny])
    sub = float(np.finfo(dtype.np).smallest_subnormal)
    np.testing.assert_allclose(got, np.exp(tiny), rtol=rtol, atol=sub)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_tanh_sigmoid_erf_accuracy(dtype):
    """Relative accuracy near zero, where naive formulas cancel."""
    x = np.concatenate([10.0 ** rng.uniform(-30, 1, 2000), rng.uniform(-5, 5, 2000)])
    x = (x * rng.choice([-1, 1], x.size)).astype(dtype.np)
    rtol = 1e-6 if dtype is F32 else 1e-12
    (got,) = run(op_kernel("tanh", [x], dtype), [x])
    np.testing.assert_allclose(got, np.tanh(x), rtol=rtol)
    (got,) = run(op_kernel("sigmoid", [x], dtype), [x])
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=rtol * 2)
    (got,) = run(op_kernel("erf", [x], dtype), [x])
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    small = np.abs(x) < 0.5
    np.testing.assert_allclose(got[small], want[small], rtol=rtol)   # relative near 0
    # float32: a rational fit (|err| < 5e-7), as the registry's; float64: libm's erf
    # (the registry's series is as close: an A-S fit, 2e-7 off, failed every first-call
    # check of a float64 GELU, which then ran eagerly).
    atol = 5e-7 if dtype is F32 else 1e-15
    np.testing.assert_allclose(got[~small], want[~small], atol=atol)
    dense = np.linspace(-6, 6, 100001).astype(dtype.np)
    (got,) = run(op_kernel("erf", [dense], dtype), [dense])
    want = np.array([math.erf(v) for v in dense.astype(np.float64)])
    np.testing.assert_allclose(got, want, atol=atol)
    assert np.abs(got).max() == 1.0   # the float32 fit overshoots 1 near |x| = 4: clamped


# ---- binary float ops -----------------------------------------------------------------

BINARY_FLOAT = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]


def pairs(dtype: dt.DType) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of special values, plus random pairs."""
    s = special(dtype)[:41]
    a, b = np.meshgrid(s, s)
    ra = rng.standard_normal(500) * 10
    rb = rng.standard_normal(500) * 10
    a = np.concatenate([a.ravel(), ra]).astype(dtype.np)
    b = np.concatenate([b.ravel(), rb]).astype(dtype.np)
    return a, b


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", BINARY_FLOAT)
def test_binary_float(op, dtype):
    a, b = pairs(dtype)
    (got,) = run(op_kernel(op, [a, b], dtype), [a, b])
    check(got, reference(op, a, b), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_pow_semantics(dtype):
    """C99/NumPy pow: negative bases with integer exponents, zeros, infinities, 1 and nan."""
    xs = np.array([-3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.inf, -np.inf,
                   np.nan, 1e-30, 1e30, -7.5])
    ys = np.array([-3.0, -2.0, -1.0, -0.5, 0.0, -0.0, 0.5, 1.0, 2.0, 3.0, 2.5, np.inf,
                   -np.inf, np.nan, 1e10, 41.0, -41.0, 0.1])
    a, b = (m.ravel().astype(dtype.np) for m in np.meshgrid(xs, ys))
    (got,) = run(op_kernel("pow", [a, b], dtype), [a, b])
    want = reference("pow", a, b)
    check(got, want, dtype)
    ok = ~np.isnan(want)   # zeros and infinities keep NumPy's signs
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    x = rng.uniform(0, 20, 3000).astype(dtype.np)
    y = rng.uniform(-20, 20, 3000).astype(dtype.np)
    (got,) = run(op_kernel("pow", [x, y], dtype), [x, y])
    np.testing.assert_allclose(got, reference("pow", x, y), rtol=2e-7 if dtype is F32 else 1e-15)


# ---- integer and bool ops -------------------------------------------------------------

def ints(dtype: dt.DType) -> np.ndarray:
    info = np.iinfo(dtype.np)
    edge = [0, 1, -1, 2, -2, 7, -7, 100, info.max, info.min, info.max - 1, info.min + 1]
    return np.concatenate([np.array(edge, dtype.np),
                           rng.integers(info.min, info.max, 300, dtype.np, endpoint=True),
                           rng.integers(-50, 50, 300).astype(dtype.np)])


@pytest.mark.parametrize("dtype", INTS, ids=str)
@pytest.mark.parametrize("op", ["neg", "abs", "sign", "relu"])
def test_unary_int(op, dtype):
    x = ints(dtype)
    (got,) = run(op_kernel(op, [x], dtype), [x])
    check(got, reference(op, x), dtype)


@pytest.mark.parametrize("dtype", INTS, ids=str)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum", "pow"])
def test_binary_int(op, dtype):
    a, b = ints(dtype), rng.permutation(ints(dtype))
    if op == "pow":
        b = np.abs(b % 70).astype(dtype.np)   # NumPy refuses negative integer exponents
    (got,) = run(op_kernel(op, [a, b], dtype), [a, b])
    check(got, reference(op, a, b), dtype)   # overflow wraps like NumPy


@pytest.mark.parametrize("op", ["add", "mul", "maximum", "minimum", "abs", "relu"])
def test_bool_arithmetic(op):
    a = np.array([False, False, True, True])
    b = np.array([False, True, False, True])
    arrays = [a] if op in ("abs", "relu") else [a, b]
    (got,) = run(op_kernel(op, arrays, B), arrays)
    check(got, reference(op, *arrays), B)


@pytest.mark.parametrize("dtype", [F32, F64, I32, I64, B], ids=str)
@pytest.mark.parametrize("op", ["lt", "le", "gt", "ge", "eq", "ne"])
def test_compare(op, dtype):
    if dtype.is_floating_point:
        a, b = pairs(dtype)
    elif dtype is B:
        a = np.array([False, False, True, True])
        b = np.array([False, True, False, True])
    else:
        a = ints(dtype)
        b = np.where(rng.random(a.size) < 0.3, a, rng.permutation(a)).astype(dtype.np)
    (got,) = run(op_kernel(op, [a, b], B), [a, b])
    check(got, reference(op, a, b), B)


@pytest.mark.parametrize("dtype", [F32, I64, B], ids=str)
@pytest.mark.parametrize("op", ["logical_and", "logical_or", "logical_not"])
def test_logical(op, dtype):
    if dtype is F32:
        a = np.array([0.0, -0.0, np.nan, 1.0, -2.0, np.inf, 0.0, 3.0], np.float32)
    elif dtype is I64:
        a = np.array([0, 0, 5, -1, 0, 7, 1, 0], np.int64)
    else:
        a = np.array([False, True, False, True, True, False, True, False])
    b = a[::-1].copy()
    arrays = [a] if op == "logical_not" else [a, b]
    (got,) = run(op_kernel(op, arrays, B), arrays)
    check(got, reference(op, *arrays), B)


@pytest.mark.parametrize("dtype", [F32, F64, I32, I64, B], ids=str)
def test_where(dtype):
    if dtype.is_floating_point:
        a, b = pairs(dtype)
    elif dtype is B:
        a, b = rng.random(64) < 0.5, rng.random(64) < 0.5
    else:
        a, b = ints(dtype), rng.permutation(ints(dtype))
    c = rng.random(a.size) < 0.5
    (got,) = run(op_kernel("where", [c, a, b], dtype), [c, a, b])
    check(got, reference("where", c, a, b), dtype)


ALL = [F32, F64, I32, I64, B]


@pytest.mark.parametrize("src", ALL, ids=str)
@pytest.mark.parametrize("dst", ALL, ids=str)
def test_cast(src, dst):
    if src.is_floating_point:
        x = np.concatenate([special(src), rng.uniform(-3e9, 3e9, 100).astype(src.np)])
    elif src is B:
        x = np.array([True, False, True])
    else:
        x = ints(src)
    k = op_kernel("cast", [x], dst)
    (got,) = run(k, [x])
    with np.errstate(all="ignore"):  # NaN/inf/out-of-range -> int: INT_MIN on x86, as ours
        want = x.astype(dst.np)
    check(got, want, dst)


def test_mixed_dtype_args_are_promoted():
    """An op whose args differ from its dtype converts them (the registry would cast)."""
    a = np.arange(10, dtype=np.int32)
    b = np.linspace(0, 1, 10, dtype=np.float32)
    k = Kernel("mix", (10,), [Load(0, I32, (1,)), Load(1, F32, (1,))],
               [Expr("load", (0,), I32), Expr("load", (1,), F32), Expr("add", (0, 1), F32),
                Expr("exp", (0,), F32), Expr("lt", (0, 1), B)], stores=[2, 3, 4])
    s, e, lt = run(k, [a, b])
    check(s, a.astype(np.float32) + b, F32)
    check(e, np.exp(a.astype(np.float32)), F32)
    check(lt, a < b, B)


def test_unsupported_raises():
    x = np.array([True])
    with pytest.raises(NotImplementedError):
        cg.compile_kernel(op_kernel("neg", [x], B))


# ---- layouts --------------------------------------------------------------------------

def test_broadcast_loads():
    """Row and column vectors and a scalar read with stride 0; one pass over [64, 300]."""
    x = rng.standard_normal((64, 300)).astype(np.float32)
    row = rng.standard_normal(300).astype(np.float32)
    col = rng.standard_normal(64).astype(np.float32)
    s = np.array(2.5, np.float32)
    k = Kernel("bc", (64, 300),
               [Load(0, F32, (300, 1)), Load(1, F32, (0, 1)), Load(2, F32, (1, 0)),
                Load(3, F32, (0, 0))],
               [Expr("load", (i,), F32) for i in range(4)]
               + [Expr("mul", (0, 1), F32), Expr("add", (4, 2), F32), Expr("sub", (5, 3), F32)],
               stores=[6])
    (got,) = run(k, [x, row, col, s])
    check(got, x * row + col[:, None] - s, F32)
    assert cg.compile_kernel(k).loop_shape == (64, 300)


def test_collapse_dims():
    assert cg.collapse_dims((4, 8, 16), [(128, 16, 1), (0, 0, 1)]) == ((32, 16), [(16, 1), (0, 1)])
    assert cg.collapse_dims((2, 1, 3), [(3, 99, 1)]) == ((6,), [(1,)])
    assert cg.collapse_dims((), [()]) == ((1,), [(0,)])
    assert cg.collapse_dims((3, 0), [(0, 1)]) == ((0,), [(0,)])
    assert cg.collapse_dims((5, 6), [(1, 5)]) == ((5, 6), [(1, 5)])


def test_transposed_reversed_and_strided_views():
    base = rng.standard_normal((40, 60)).astype(np.float32)
    t = base.T                      # strides (1, 60)
    r = base[::-1, ::-2]            # negative strides
    s = base[1::3, 5:35]            # sliced rows
    for v in (t, r, s):
        k = op_kernel("exp", [v], F32)
        (got,) = run(k, [v])
        check(got, np.exp(v), F32)
    a, b = base.T[:30, :20], base[10:40, 5:25]   # two differently strided inputs
    (got,) = run(op_kernel("mul", [a, b], F32), [a, b])
    check(got, a * b, F32)


def test_offsets():
    """Loads at element offsets into one buffer (a slice the caller turned into an offset)."""
    buf = np.arange(100, dtype=np.float64)
    k = Kernel("off", (3, 4), [Load(0, F64, (10, 1), offset=22), Load(0, F64, (0, 2), offset=1)],
               [Expr("load", (0,), F64), Expr("load", (1,), F64), Expr("add", (0, 1), F64)],
               stores=[2])
    (got,) = run(k, [buf])
    check(got, buf[22:52].reshape(3, 10)[:, :4] + buf[1:9:2][None, :], F64)


def test_multiple_outputs_and_bool_output():
    x = special(F32)
    k = Kernel("multi", x.shape, [Load(0, F32, (1,))],
               [Expr("load", (0,), F32), Expr("exp", (0,), F32), Expr("const", (0.0,), F32),
                Expr("gt", (0, 2), B), Expr("where", (3, 1, 2), F32), Expr("cast", (0,), F64)],
               stores=[1, 3, 4, 5, 1])
    e, pos, w, d, e2 = run(k, [x])
    with np.errstate(all="ignore"):
        check(e, np.exp(x), F32)
        check(pos, x > 0, B)
        check(w, np.where(x > 0, np.exp(x), 0).astype(np.float32), F32)
    check(d, x.astype(np.float64), F64)
    check(e2, e, F32)


def test_bool_input_bytes_and_const_store():
    c = np.array([True, False, True])
    k = Kernel("bc", (3,), [Load(0, B, (1,))],
               [Expr("load", (0,), B), Expr("logical_not", (0,), B), Expr("const", (7,), I32),
                Expr("const", (2 ** 40,), I64)],
               stores=[1, 2, 3])
    nc, seven, big = run(k, [c])
    check(nc, ~c, B)
    check(seven, np.full(3, 7, np.int32), I32)
    check(big, np.full(3, 2 ** 40, np.int64), I64)


@pytest.mark.parametrize("shape", [(0,), (3, 0, 4), (0, 5)])
def test_empty(shape):
    x = np.empty(shape, np.float32)
    k = Kernel("empty", shape, [Load(0, F32, c_strides(shape))],
               [Expr("load", (0,), F32), Expr("exp", (0,), F32)], stores=[1])
    (got,) = run(k, [x])
    assert got.shape == shape


def test_zero_dim():
    x = np.array(0.5, np.float32)
    k = Kernel("scalar", (), [Load(0, F32, ())],
               [Expr("load", (0,), F32), Expr("tanh", (0,), F32)], stores=[1])
    (got,) = run(k, [x])
    assert got.shape == ()
    check(got, np.tanh(x), F32)


# ---- a fused chain, threading, caching ------------------------------------------------

def chain_kernel(shape) -> Kernel:
    """gelu(x * a + b) * sigmoid(x) + x * x, with erf-GELU written out (17 exprs)."""
    nd = len(shape)
    f = F32
    return Kernel("chain", shape,
                  [Load(0, f, c_strides(shape)), Load(1, f, (0,) * nd), Load(2, f, (0,) * nd)],
                  [Expr("load", (0,), f), Expr("load", (1,), f), Expr("load", (2,), f),
                   Expr("mul", (0, 1), f), Expr("add", (3, 2), f),
                   Expr("const", (1 / math.sqrt(2),), f), Expr("mul", (4, 5), f),
                   Expr("erf", (6,), f), Expr("const", (1.0,), f), Expr("add", (7, 8), f),
                   Expr("mul", (4, 9), f), Expr("const", (0.5,), f), Expr("mul", (10, 11), f),
                   Expr("sigmoid", (0,), f), Expr("mul", (12, 13), f), Expr("mul", (0, 0), f),
                   Expr("add", (14, 15), f)],
                  stores=[16])


def chain_reference(x, a, b):
    def op(name, *args):
        return reference(name, *args)
    u = op("add", op("mul", x, a), b)
    g = op("mul", op("mul", u, op("add", op("erf", op("mul", u, np.float32(1 / math.sqrt(2)))),
                                          np.float32(1))), np.float32(0.5))
    return op("add", op("mul", g, op("sigmoid", x)), op("mul", x, x))


def test_chain():
    x = rng.standard_normal((37, 129)).astype(np.float32) * 3
    a, b = np.array(1.3, np.float32), np.array(-0.2, np.float32)
    (got,) = run(chain_kernel(x.shape), [x, a, b])
    check(got, chain_reference(x, a, b), F32)
    ck = cg.compile_kernel(chain_kernel(x.shape))
    assert 'define void @"chain"' in ck.source
    # the vector loop at the CPU's width: AVX-512 16 lanes in zmm, AVX2 8 in ymm
    width = vector_registers()[0]
    assert f"<{width // 4} x float>" in ck.optimized_ir()
    assert {64: "zmm", 32: "ymm", 16: "xmm"}[width] in ck.asm()


def test_short_row_sum_is_a_vector_tree():
    # x - x.sum(-1) over rows of 64: LLVM fully unrolls a loop of constant length 64
    # before its loop vectorizer runs, and without 'nsz' on the accumulating add the SLP
    # vectorizer left 64 dependent scalar adds (a row took 5x as long).
    n = 64
    k = Kernel("rowsum", (400, n), [Load(0, F32, (n, 1))],
               [Expr("load", (0,), F32), Expr("reduce_sum", (0,), F32),
                Expr("sub", (0, 1), F32)], [Store(2, (n, 1))], reduce_dims=1)
    x = rng.standard_normal((400, n)).astype(np.float32)
    ck = cg.compile_kernel(k)
    out = np.empty_like(x)
    ck.run([x], [out])
    np.testing.assert_allclose(out, x - x.astype(np.float64).sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    # (a vector reduction: the intrinsic after the O3 pipeline, a tree of vector adds
    # once the JIT's code generation has expanded it in the module)
    ir = ck.optimized_ir()
    scalar_adds = len(re.findall(r"= fadd [a-z ]*float ", ir))
    assert re.search(r"= fadd [a-z ]*<\d+ x float>|vector\.reduce\.fadd", ir), ir
    assert scalar_adds < 8, scalar_adds


def test_threaded_large():
    n = (1 << 20) + 7
    x = rng.standard_normal(n).astype(np.float32)
    a, b = np.array(0.7, np.float32), np.array(0.1, np.float32)
    ck = cg.compile_kernel(chain_kernel(x.shape))
    assert ck.estimated_ns >= cg.PARALLEL_MIN_NS
    if (os.cpu_count() or 1) > 1:
        assert ck._chunks is not None and len(ck._chunks) > 1
    small = cg.compile_kernel(chain_kernel((1000,)))
    assert small._chunks is None
    (got,) = run(chain_kernel(x.shape), [x, a, b])
    check(got, chain_reference(x, a, b), F32)
    # 2-d with a broadcast row: threads split the outer loop.
    m = rng.standard_normal((1031, 600)).astype(np.float32)
    row = rng.standard_normal(600).astype(np.float32)
    k = Kernel("rows", m.shape, [Load(0, F32, (600, 1)), Load(1, F32, (0, 1))],
               [Expr("load", (0,), F32), Expr("load", (1,), F32), Expr("add", (0, 1), F32)],
               stores=[2])
    (got,) = run(k, [m, row])
    check(got, m + row, F32)


@pytest.mark.parametrize("fast", [True, False])
def test_a_kernel_splits_only_if_its_timed_first_calls_were_slow(monkeypatch, fast):
    # The estimate picks the candidates; the first calls run on one thread, timed: one
    # faster than PARALLEL_MIN_NS stays on the calling thread (a pool thread's wake-up
    # cost more than the kernel), a slower one splits. Results are the same either way.
    n = (1 << 20) + 7
    x = rng.standard_normal(n).astype(np.float32)
    a, b = np.array(0.7, np.float32), np.array(0.1, np.float32)
    ck = cg.compile_kernel(chain_kernel(x.shape))
    assert ck.estimated_ns >= cg.PARALLEL_MIN_NS and ck._timed == cg.TIMED_CALLS
    monkeypatch.setattr(cg.kernels, "PARALLEL_MIN_NS", 10 ** 12 if fast else 0)
    want = chain_reference(x, a, b)
    for _ in range(cg.TIMED_CALLS + 2):
        (got,) = run(chain_kernel(x.shape), [x, a, b])
        out = np.empty_like(x)
        ck.run([x, a, b], [out])
        check(out, want, F32)
    assert ck._timed == 0
    if fast or (os.cpu_count() or 1) == 1:
        assert ck._chunks is None
    else:
        assert ck._chunks is not None and len(ck._chunks) > 1


def test_cache_by_signature():
    k1 = op_kernel("exp", [np.ones(5, np.float32)], F32)
    k2 = Kernel("other_name", k1.shape, list(k1.loads), list(k1.exprs), list(k1.stores))
    assert cg.compile_kernel(k1) is cg.compile_kernel(k2)
    k3 = op_kernel("exp", [np.ones(6, np.float32)], F32)
    assert cg.compile_kernel(k3) is not cg.compile_kernel(k1)


def test_wrong_argument_count():
    ck = cg.compile_kernel(op_kernel("exp", [np.ones(5, np.float32)], F32))
    with pytest.raises(ValueError, match="takes 1 inputs"):
        ck.run([], [np.empty(5, np.float32)])


def test_bad_arguments_raise():
    ck = cg.compile_kernel(op_kernel("exp", [np.ones(5, np.float32)], F32))
    with pytest.raises(TypeError, match="NumPy arrays"):
        ck.run([[1.0] * 5], [np.empty(5, np.float32)])
    for bad in (np.empty(4, np.float32), np.empty(5, np.float64)):
        with pytest.raises(ValueError, match="outputs must be"):
            ck.run([np.ones(5, np.float32)], [bad])
    ok = np.empty(5, np.float32)
    ck.run([np.ones(5, np.float32).view(np.memmap)], [ok])   # subclasses are fine
    check(ok, np.exp(np.ones(5, np.float32)), F32)


def test_horizontally_fused_kernels_of_different_shapes():
    from ember.codegen.llvm import compile_kernels

    k1 = Kernel("a", (1000,), [Load(0, F32, (1,))],
                [Expr("load", (0,), F32), Expr("exp", (0,), F32)], stores=[1])
    k2 = Kernel("b", (7, 9), [Load(0, F32, (9, 1)), Load(1, F32, (0, 1))],
                [Expr("load", (0,), F32), Expr("load", (1,), F32), Expr("mul", (0, 1), F32)],
                stores=[2])
    big = Kernel("c", (1 << 20,), [Load(0, F32, (1,))],
                 [Expr("load", (0,), F32), Expr("sigmoid", (0,), F32)], stores=[1])
    rng = np.random.default_rng(0)
    x, a, b, X = (rng.random(s).astype(np.float32) for s in [(1000,), (7, 9), (9,), (1 << 20,)])
    y, z, Y = np.empty_like(x), np.empty_like(a), np.empty_like(X)
    multi = compile_kernels([k1, k2, big], "multi")
    multi.run([[x], [a, b], [X]], [[y], [z], [Y]])
    np.testing.assert_allclose(y, np.exp(x), rtol=1e-6)
    np.testing.assert_array_equal(z, a * b)
    np.testing.assert_allclose(Y, 1 / (1 + np.exp(-X)), rtol=1e-6)
    with pytest.raises(ValueError):
        multi.run([[x], [a, b], [X]], [[y], [z], [np.empty(3, np.float32)]])


def _forked_call(fn, x, queue) -> None:
    queue.put(float(fn(x).sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_parallel_kernels():
    """multiprocessing forks by default on Linux, and only the forking thread survives:
    a child that split a kernel over the parent's pool threads waited forever."""
    import multiprocessing

    from ember.codegen.llvm import jit, spinpool

    x = ember.randn(2048, 2048)
    fn = ember.compile(lambda x: (x * 2 + 1).exp().sum(1))
    for _ in range(3):
        want = float(fn(x).sum())
    pool = spinpool._POOL if spinpool.available() else jit._POOL
    assert pool is not None and pool._threads   # the kernel split: threads exist
    time.sleep(0.3)   # the pool thread goes idle: the executor then reuses, not spawns
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_call, args=(fn, x, queue))
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in a parallel kernel")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(want, rel=1e-6)
