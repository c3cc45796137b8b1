"""Column reductions: sums and maxima down a tensor's leading dims (``x.sum(0)``, a bias
gradient over the batch, a per-channel sum of an NHWC array) are generated and reduced
in column order, tiles of adjacent columns at a time (``loops._LoopNest._columns``).
Compiled equals eager and NumPy (float64 references), at sizes around the tile and the
vector width, in static and size-generic code."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import dtypes
from ember.codegen.kernel import Expr, Kernel, Load, Store
from ember.codegen.llvm.kernels import CompiledKernel
from ember.codegen.llvm.loops import _TILE, _Layout, _LoopNest

f32 = dtypes.float32


def _kernels(fn, *args):
    return ember.explain(fn, *args).kernels


def _column_order(kernel: Kernel) -> bool:
    nest = _LoopNest.__new__(_LoopNest)
    nest.kernel, nest.layout = kernel, _Layout.of(kernel)
    nest.plan()
    return nest.column


def _compiled(fn, *args):
    """fn compiled: its third call (the first two trace and build), and eager's result."""
    cf = ember.compile(fn)
    cf(*args)
    cf(*args)
    got, want = cf(*args), fn(*args)
    stats = cf.stats()
    assert not stats["fallbacks"] and stats["cache_hits"], stats
    return got, want


@pytest.mark.parametrize("rows,cols", [(1, 8), (3, 9), (64, 255), (1000, _TILE),
                                       (17, _TILE + 1), (5, 1000), (4096, 1024)])
def test_sum_down_columns_equals_numpy(rows, cols):
    rng = np.random.default_rng(rows * 7 + cols)
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    got, want = _compiled(lambda x: ((x * 2).sum(0), (x + 1).mean(0), x.amax(0)),
                          ember.tensor(a))
    ref = (2 * a.astype(np.float64).sum(0), (a.astype(np.float64) + 1).mean(0), a.max(0))
    # float32 rounding of the inputs' sum, relative to the sum of magnitudes
    scale = 2e-6 * (np.abs(a).sum(0).max() + rows)
    for g, w, r in zip(got, want, ref):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=2e-5, atol=scale)
        np.testing.assert_allclose(g.numpy(), r, rtol=2e-5, atol=scale)


def test_column_sum_is_one_generated_kernel_in_column_order():
    x = ember.randn(512, 300)
    ks = _kernels(lambda x: (x * 2).sum(0), x)
    assert [k.backend for k in ks] == ["llvm"]
    assert _column_order(ks[0].kernel)
    # A row sum keeps row order.
    ks = _kernels(lambda x: (x * 2).sum(1), x)
    assert not _column_order(ks[0].kernel)


def test_float32_column_sums_accumulate_in_float64():
    # 200,000 float32 values per column, one by one: float32 accumulation would drift.
    a = np.random.default_rng(0).random((200_000, 16), dtype=np.float32)
    got, _ = _compiled(lambda x: (x + 0.5).sum(0), ember.tensor(a))
    want = (a + np.float32(0.5)).astype(np.float64).sum(0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-7)


@pytest.mark.parametrize("shape, axes", [((64, 6, 28, 28), (0, 2, 3)), ((64, 50_176), (1,))])
def test_long_float32_row_sums_accumulate_in_float64(shape, axes):
    """A row of over 8,192 points: each of the vectorizer's 64 float32 partial sums would
    take hundreds of points in turn (a conv bias gradient was 2.4e-4 off, 10x NumPy's
    error, and failed the first call's check where a channel's sum nearly cancelled)."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal(shape, dtype=np.float32)
    mask = rng.standard_normal(shape, dtype=np.float32) > 0
    got, _ = _compiled(lambda g, m: (g * m).sum(axes), ember.tensor(g), ember.tensor(mask))
    want = (g.astype(np.float64) * mask).sum(axes)
    assert np.abs(got.numpy() - want).max() < 4e-5   # float32 partial sums: 2e-4 to 7e-4


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_integer_and_double_columns(dtype):
    a = (np.random.default_rng(1).standard_normal((70, 33)) * 100).astype(dtype)
    got, want = _compiled(lambda x: (x.sum(0), x.amax(0)), ember.tensor(a))
    np.testing.assert_array_equal(got[0].numpy(), a.sum(0))
    np.testing.assert_array_equal(got[1].numpy(), a.max(0))
    np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())


def test_nan_propagates_through_a_column_max():
    a = np.random.default_rng(2).standard_normal((40, 20)).astype(np.float32)
    a[13, 5] = np.nan
    got, _ = _compiled(lambda x: (x * 1).amax(0), ember.tensor(a))
    np.testing.assert_array_equal(np.isnan(got.numpy()), np.isnan(a.max(0)))


def test_middle_dim_and_nhwc_channel_sums():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 50, 40)).astype(np.float32)    # sum over dim 1
    got, _ = _compiled(lambda x: (x * x).sum(1), ember.tensor(a))
    np.testing.assert_allclose(got.numpy(), (a.astype(np.float64) ** 2).sum(1), rtol=2e-5)
    # A per-channel sum of an NHWC array viewed as NCHW (a bias gradient).
    g = rng.standard_normal((8, 9, 9, 32)).astype(np.float32)
    x = ember.tensor(g).permute(0, 3, 1, 2)
    got, _ = _compiled(lambda x: (x * 3).sum((0, 2, 3)), x)
    np.testing.assert_allclose(got.numpy(), 3 * g.astype(np.float64).sum((0, 1, 2)),
                               rtol=2e-5, atol=1e-4)
    ks = _kernels(lambda x: (x * 3).sum((0, 2, 3)), x)
    assert len(ks) == 1 and _column_order(ks[0].kernel)


def test_mixed_layouts_reduce_in_row_order_and_agree():
    rng = np.random.default_rng(4)
    g = ember.tensor(rng.standard_normal((4, 7, 7, 16)).astype(np.float32)).permute(0, 3, 1, 2)
    m = ember.tensor(rng.standard_normal((4, 16, 7, 7)).astype(np.float32))
    got, want = _compiled(lambda g, m: (g * m).sum((0, 2, 3), keepdim=True), g, m)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-5, atol=1e-5)


def test_broadcast_output_beside_a_column_sum():
    # ``e`` is the bias broadcast over the batch: one value per column of the column sum's
    # kernel, but an output at every point (stored per point, lower._store_per_point).
    x, b = ember.randn(33, 12), ember.randn(12)

    def f(x, b):
        e = b.expand(33, 12) * 2
        return (x * e).sum(0), e + 0
    got, want = _compiled(f, x, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, atol=1e-6)


def test_eager_float32_sums_down_many_rows_are_accurate():
    # NumPy adds rows one by one in float32 (1.3e-4 relative over 28,672 rows here);
    # eager accumulates such sums in float64, as the compiled kernel does, so the first
    # compiled call's check against eager agrees.
    a = np.random.default_rng(8).standard_normal((64, 64, 7, 40)).astype(np.float32)
    y = np.maximum(a * 2 + 0.25, 0) - 0.1
    want = y.astype(np.float64).sum((0, 1, 2))
    got = ember.tensor(y).sum((0, 1, 2))
    assert got.dtype is ember.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=3e-7)
    cf = ember.compile(lambda x: ((x * 2 + 0.25).relu() - 0.1).sum((0, 1, 2)))
    for _ in range(3):
        out = cf(ember.tensor(a))
    assert not cf.stats()["fallbacks"], cf.stats()
    np.testing.assert_allclose(out.numpy(), want, rtol=3e-7)


def test_kernel_level_column_order_with_a_stored_row_value():
    # rows = 20 columns of a [50, 20] array: reduce_sum then * 0.5, stored per column.
    n, c = 50, 20
    k = Kernel("colk", (c, n), [Load(0, f32, (1, c))],
               [Expr("load", (0,), f32), Expr("reduce_sum", (0,), f32),
                Expr("const", (0.5,), f32), Expr("mul", (1, 2), f32)],
               [Store(3, (1, 0))], reduce_dims=1)
    assert _column_order(k)
    a = np.random.default_rng(5).standard_normal((n, c)).astype(np.float32)
    out = np.empty(c, np.float32)
    CompiledKernel(k).run([a], [out])
    np.testing.assert_allclose(out, a.astype(np.float64).sum(0) * 0.5, rtol=1e-6)


def test_generic_column_sums_share_code_across_batch_sizes():
    cf = ember.compile(lambda x, w: ((x * w).sum(0), (x + w).amax(0)), dynamic=True)
    w = ember.randn(40)
    builds = []
    for b in (64, 48, 17, 300, 1, 9):
        x = ember.randn(b, 40)
        for _ in range(10_000):   # until a call replays (a new size runs eagerly until
            # compiling it pays, admission.py; then it traces: eager's result)
            hits = cf.stats()["cache_hits"]
            got = cf(x, w)
            if cf.stats()["cache_hits"] > hits:
                break
        else:
            raise AssertionError(f"batch {b} never replayed: {cf.stats()}")
        ref = ((x.numpy() * w.numpy()).astype(np.float64).sum(0), (x.numpy() + w.numpy()).max(0))
        np.testing.assert_allclose(got[0].numpy(), ref[0], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(got[1].numpy(), ref[1], rtol=1e-6)
        builds.append(cf.stats()["code_builds"])
    assert builds[-1] == builds[0], builds   # one machine code for every batch size


def test_linear_bias_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)

    def step(x, w, b):
        ember.nn.functional.linear(x, w, b).relu().sum().backward()
    ew, eb = ember.tensor(w, requires_grad=True), ember.tensor(b, requires_grad=True)
    cf = ember.compile(step)
    for _ in range(2):
        ew.grad = eb.grad = None
        cf(ember.tensor(x), ew, eb)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    torch.nn.functional.linear(torch.tensor(x), tw, tb).relu().sum().backward()
    np.testing.assert_allclose(eb.grad.numpy(), tb.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-4)


def test_gradient_stored_beside_its_column_sum_in_one_pass():
    # relu's backward (g * mask) is stored for the weight gradient's GEMM and summed
    # down the batch for the bias gradient: one kernel, in column order.
    rng = np.random.default_rng(7)
    g = ember.tensor(rng.standard_normal((128, 300)).astype(np.float32))
    m = ember.tensor(rng.standard_normal((128, 300)).astype(np.float32) > 0)

    def f(g, m):
        d = g * m
        return d.sum(0), d
    ks = [k for k in _kernels(f, g, m) if k.kernel is not None]
    assert len(ks) == 1 and _column_order(ks[0].kernel)
    got, want = _compiled(f, g, m)
    ref = g.numpy() * m.numpy()
    np.testing.assert_array_equal(got[1].numpy(), ref)
    np.testing.assert_allclose(got[0].numpy(), ref.astype(np.float64).sum(0), rtol=1e-5,
                               atol=1e-5)
    # A per-point output that needs the sum (x - mean) keeps row order.
    ks = _kernels(lambda g: g - g.mean(0), g)
    assert all(not _column_order(k.kernel) for k in ks if k.kernel is not None)


# ---- fuzz: random reductions over random layouts ------------------------------------------

def _fuzz_case(seed: int) -> None:
    """A random 2-4 dim array (maybe a permuted view), an elementwise prefix, a sum, mean
    or amax over a random set of dims (keepdim or not), sometimes the prefix stored too:
    compiled equals NumPy in float64, at one size (static code) then at another (the
    leading dim turns dynamic: size-generic code)."""
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(2, 5))
    shape = [int(rng.choice([1, 2, 3, 7, 8, 9, 16, 33, 64, 130, 257])) for _ in range(nd)]
    perm = rng.permutation(nd) if rng.random() < 0.5 else np.arange(nd)
    axes = tuple(sorted(int(a) for a in rng.choice(nd, int(rng.integers(1, nd + 1)),
                                                   replace=False)))
    keep = bool(rng.random() < 0.5)
    op = str(rng.choice(["sum", "mean", "amax"]))
    scale = float(rng.choice([0.5, 2.0, -1.5]))
    store_prefix = bool(rng.random() < 0.4)

    def program(x):
        y = (x * scale + 0.25).relu() - 0.1
        r = getattr(y, op)(axes, keepdim=keep)
        return (r, y) if store_prefix else (r,)

    def reference(x):
        y = np.maximum(x * scale + 0.25, 0) - 0.1
        r = {"sum": np.sum, "mean": np.mean, "amax": np.max}[op](y, axis=axes, keepdims=keep)
        return (r, y) if store_prefix else (r,)

    cf = ember.compile(program)
    for lead in (shape[0], shape[0] + 3):
        base = rng.standard_normal([lead] + shape[1:]).astype(np.float32)
        # stored in the permuted order, viewed back in the logical one
        x = ember.tensor(np.ascontiguousarray(base.transpose(perm)))
        x = x.permute(*[int(i) for i in np.argsort(perm)])
        for _ in range(3):
            got = cf(x)
        tol = 2e-6 * (np.abs(base).sum() + 1) if op != "amax" else 1e-6
        for g, r in zip(got, reference(base.astype(np.float64))):
            np.testing.assert_allclose(g.numpy(), r, rtol=1e-5, atol=tol,
                                       err_msg=f"seed {seed}: {shape} perm {perm} "
                                               f"{op}{axes} keepdim={keep}")
    stats = cf.stats()
    assert not stats["fallbacks"] and stats["cache_hits"], (seed, stats)


def test_column_fuzz_slice():
    for seed in range(30):
        _fuzz_case(seed)


@pytest.mark.slow
@pytest.mark.fuzz
def test_column_fuzz_long():
    import os
    for seed in range(1000, 1000 + int(os.environ.get("EMBER_COLUMN_FUZZ", "1000"))):
        _fuzz_case(seed)


def test_column_order_with_an_expensive_value_stored_and_summed():
    # GELU's backward beside its bias gradient: exp(x) stored per point and summed per
    # column. Planning a stash for the exp (kept for a later pass in row order) used to
    # rule out column order: strided loads, 3x slower.
    n, c = 40, 24
    k = Kernel("colexp", (c, n), [Load(0, f32, (1, c))],
               [Expr("load", (0,), f32), Expr("exp", (0,), f32),
                Expr("reduce_sum", (1,), f32)],
               [Store(1, (1, c)), Store(2, (1, 0))], reduce_dims=1)
    assert _column_order(k)
    a = np.random.default_rng(6).standard_normal((n, c)).astype(np.float32)
    points, sums = np.empty((n, c), np.float32), np.empty(c, np.float32)
    CompiledKernel(k).run([a], [points, sums])
    np.testing.assert_allclose(points, np.exp(a), rtol=1e-6)
    np.testing.assert_allclose(sums, np.exp(a.astype(np.float64)).sum(0), rtol=1e-6)


def test_gelu_bias_gradient_compiled_equals_eager():
    lin = ember.nn.Linear(16, 48)
    x = ember.randn(6, 10, 16, requires_grad=True)

    def step(x):
        lin.zero_grad()
        y = ember.nn.functional.gelu(lin(x))
        y.sum().backward()
        return y
    cf = ember.compile(step)
    for _ in range(4):
        got = cf(x)
    assert not cf.stats()["fallbacks"], cf.stats()
    np.testing.assert_allclose(got.detach().numpy(), step(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    cf(x)
    bias_grad = lin.bias.grad.numpy().copy()
    step(x)
    np.testing.assert_allclose(bias_grad, lin.bias.grad.numpy(), rtol=1e-5, atol=1e-6)
