"""Row kernels: independent reductions sharing one pass, layer_norm's one-pass statistics,
log_softmax + NLL with the target gather inside the row kernel, and the cross entropy's
backward fused with it. Compiled equals eager; both match torch and NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import dtypes
from ember.codegen.kernel import Expr, Kernel, Load
from ember.codegen.llvm.kernels import CompiledKernel
from ember.codegen.llvm.loops import _Layout, _LoopNest

f32 = dtypes.float32


def _kernels(fn, *args):
    return ember.explain(fn, *args).kernels


def _reduce_passes(kernel: Kernel) -> list[list[int]]:
    nest = _LoopNest.__new__(_LoopNest)
    nest.kernel, nest.layout, nest.row_level = kernel, _Layout.of(kernel), kernel.row_level()
    return nest._plan_passes()


# ---- independent reductions share a pass ------------------------------------------------

def test_independent_reductions_share_one_pass():
    # 0 load; 1 sum(x); 2 x*x; 3 sum(x*x); 4 max(x); 5 x - sum(x); 6 sum(5)
    k = Kernel("k", (6, 37), [Load(0, f32, (37, 1))],
               [Expr("load", (0,), f32), Expr("reduce_sum", (0,), f32),
                Expr("mul", (0, 0), f32), Expr("reduce_sum", (2,), f32),
                Expr("reduce_max", (0,), f32), Expr("sub", (0, 1), f32),
                Expr("reduce_sum", (5,), f32)],
               [1, 3, 4, 6], reduce_dims=1)
    from ember.codegen.kernel import Store
    k.stores = [Store(j, (1, 0)) for j in (1, 3, 4, 6)]
    assert _reduce_passes(k) == [[1, 3, 4], [6]]
    x = np.random.default_rng(0).standard_normal((6, 37)).astype(np.float32)
    outs = [np.empty(6, np.float32) for _ in range(4)]
    CompiledKernel(k).run([x], outs)
    s = x.sum(1)
    np.testing.assert_allclose(outs[0], s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[1], (x * x).sum(1), rtol=1e-5)
    np.testing.assert_array_equal(outs[2], x.max(1))
    np.testing.assert_allclose(outs[3], (x - s[:, None]).sum(1), rtol=1e-4, atol=1e-4)


def test_dependent_reductions_keep_their_order():
    # softmax: max, then sum(exp(x - max)): two passes.
    x = ember.randn(5, 33)
    (k,) = [k for k in _kernels(lambda x: F.softmax(x, dim=1), x) if k.kernel]
    assert len(_reduce_passes(k.kernel)) == 2
    np.testing.assert_allclose(ember.compile(lambda x: F.softmax(x, dim=1))(x).numpy(),
                               F.softmax(x, dim=1).numpy(), rtol=1e-6, atol=1e-7)


# ---- layer_norm --------------------------------------------------------------------------

def _layer_norm_step(shape_norm, affine):
    def step(x, w, b):
        y = F.layer_norm(x, shape_norm, w if affine else None, b if affine else None)
        (y * y.detach().cos()).sum().backward()
        return y
    return step


@pytest.mark.parametrize("shape,norm,offset", [
    ((64, 48), (48,), 0.0),
    ((64, 48), (48,), 1000.0),      # a large mean: the shift keeps the variance exact
    ((3, 5, 40), (40,), 5.0),
    ((4, 6, 7), (6, 7), -3.0),      # two normalized dims
    ((7, 1), (1,), 2.0),            # one element per row: variance 0
])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_compiled_equals_eager_and_torch(shape, norm, offset, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 2 + offset).astype(np.float32)
    w = (1 + 0.3 * rng.standard_normal(norm)).astype(np.float32)
    b = (0.3 * rng.standard_normal(norm)).astype(np.float32)
    step = _layer_norm_step(norm, affine)
    results = []
    for run in (step, ember.compile(step), ember.compile(step)):
        ts = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
        for _ in range(2 if run is not step else 1):   # the second call replays the plan
            for t in ts:
                t.grad = None
            y = run(*ts)
        results.append([y.detach().numpy()] + [t.grad.numpy() if t.grad is not None else None
                                      for t in ts])
    def torch_run(dtype):
        tt = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in (x, w, b)]
        yt = torch.nn.functional.layer_norm(tt[0], norm, tt[1] if affine else None,
                                            tt[2] if affine else None)
        (yt * yt.detach().cos()).sum().backward()
        return [yt.detach().numpy()] + [t.grad.numpy() if t.grad is not None else None
                                        for t in tt]
    # Against float64 torch, as close as float32 torch is (or 5e-6 of the scale): the
    # shifted one-pass statistics are more exact than torch's for rows with a large mean.
    want, torch32 = torch_run(torch.float64), torch_run(torch.float32)
    for got in results:
        for g, e, t32 in zip(got, want, torch32):
            if e is None:
                assert g is None
                continue
            scale = max(1.0, float(np.abs(e).max()))
            tol = max(5e-6 * scale, 2 * float(np.abs(t32 - e).max()))
            np.testing.assert_allclose(g, e, rtol=0, atol=tol)
    for g, e in zip(results[1], results[0]):     # compiled against eager: tighter
        if e is not None:
            np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-5 * max(1.0, np.abs(e).max()))


def test_layer_norm_constant_rows_are_zero_not_nan():
    x = ember.full((4, 16), 3.25)
    for f in (lambda x: F.layer_norm(x, (16,)), ember.compile(lambda x: F.layer_norm(x, (16,)))):
        for _ in range(2):
            y = f(x)
        np.testing.assert_array_equal(y.numpy(), np.zeros((4, 16), np.float32))


def test_layer_norm_matches_numpy_reference():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((32, 300)) * 0.01 + 50).astype(np.float32)
    ref = x.astype(np.float64)
    ref = (ref - ref.mean(1, keepdims=True)) / np.sqrt(ref.var(1, keepdims=True) + 1e-5)
    f = ember.compile(lambda x: F.layer_norm(x, (300,)))
    for _ in range(2):
        y = f(ember.tensor(x))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-3, atol=2e-3)


def test_layer_norm_statistics_take_one_pass():
    x, w, b = ember.randn(16, 64), ember.randn(64), ember.randn(64)
    ks = [k for k in _kernels(lambda x, w, b: F.layer_norm(x, (64,), w, b), x, w, b)
          if k.kernel is not None]
    assert len(ks) == 1
    kernel = ks[0].kernel
    assert kernel.reduce_dims == 1
    # sum and sum of squares: two reductions, one pass over the row
    assert len(_reduce_passes(kernel)) == 1
    assert sum(e.op == "reduce_sum" for e in kernel.exprs) == 2


def test_layer_norm_backward_row_sums_share_a_pass():
    x = ember.randn(16, 64, requires_grad=True)
    w, b = ember.randn(64, requires_grad=True), ember.randn(64, requires_grad=True)

    def step(x, w, b):
        F.layer_norm(x, (64,), w, b).pow(2).sum().backward()
    ks = [k.kernel for k in _kernels(step, x, w, b) if k.kernel is not None]
    rows = [k for k in ks if k.reduce_dims and k.shape == (16, 64)]
    assert len(rows) == 1   # forward and backward in one row kernel
    passes = _reduce_passes(rows[0])
    assert len(passes) == 2   # the statistics, then the backward's two row sums
    # The weight and bias gradients sum down the batch: column sums, generated too.
    columns = [k for k in ks if k.reduce_dims and k.shape == (64, 16)]
    assert columns and all(k.loads for k in columns)


# ---- log_softmax + NLL, cross entropy -----------------------------------------------------

def _ops(kernels):
    return [op for k in kernels for op in k.ops if k.backend == "eager"]


def test_log_softmax_nll_gather_is_in_the_row_kernel():
    x, t = ember.randn(32, 50), ember.tensor(np.arange(32) % 50)
    ks = _kernels(lambda x, t: F.nll_loss(F.log_softmax(x, dim=1), t), x, t)
    assert "index" not in _ops(ks)
    rows = [k for k in ks if k.kernel is not None and k.kernel.reduce_dims
            and "amax" in k.ops]
    assert len(rows) == 1 and "eq" in rows[0].ops and "where" in rows[0].ops
    # log_softmax's [32, 50] output is not stored: only row-level values leave it
    kernel = rows[0].kernel
    row = kernel.row_level()
    assert all(row[s.expr] for s in kernel.stores)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_compiled_equals_eager_and_torch(reduction, weighted):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((40, 13)) * 3).astype(np.float32)
    t = rng.integers(0, 13, 40)
    t[[3, 17]] = -100   # ignored
    w = rng.uniform(0.5, 2.0, 13).astype(np.float32)

    def step(x, t, w):
        loss = F.cross_entropy(x, t, weight=w if weighted else None, reduction=reduction)
        (loss.sum() if reduction == "none" else loss).backward()
        return loss
    got = []
    for run in (step, ember.compile(step)):
        xe = ember.tensor(x, requires_grad=True)
        for _ in range(1 if run is step else 3):
            xe.grad = None
            loss = run(xe, ember.tensor(t), ember.tensor(w))
        got.append((loss.detach().numpy(), xe.grad.numpy()))
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(t),
                                           weight=torch.tensor(w) if weighted else None,
                                           reduction=reduction)
    (lt.sum() if reduction == "none" else lt).backward()
    for loss, grad in got:
        np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1][0], got[0][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[1][1], got[0][1], rtol=1e-6, atol=1e-7)


def test_cross_entropy_backward_has_no_scatter_and_one_row_kernel():
    x = ember.randn(16, 10, requires_grad=True)
    t = ember.tensor(np.arange(16) % 10)

    def step(x, t):
        loss = F.cross_entropy(x, t)
        loss.backward()
        return loss
    ks = _kernels(step, x, t)
    eager = _ops(ks)
    assert "index" not in eager and "index_put" not in eager
    rows = [k for k in ks if k.kernel is not None and "amax" in k.ops]
    assert len(rows) == 1
    # the forward and the gradient's softmax - onehot in the same kernel
    assert "expand" in rows[0].ops and rows[0].ops.count("where") >= 2


def test_compiled_nll_still_checks_targets():
    f = ember.compile(lambda x, t: F.cross_entropy(x, t))
    x = ember.randn(4, 5)
    for _ in range(2):
        f(x, ember.tensor([0, 1, 2, 4]))
    with pytest.raises(Exception, match="out of bounds"):
        f(x, ember.tensor([0, 1, 5, 4]))


def test_nll_loss_matches_numpy_reference_compiled():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    t = rng.integers(0, 300, 64)
    f = ember.compile(lambda x, t: F.nll_loss(F.log_softmax(x, dim=1), t))
    for _ in range(2):
        got = float(f(ember.tensor(x), ember.tensor(t)))
    xd = x.astype(np.float64)
    m = xd.max(1, keepdims=True)
    logp = xd - (np.log(np.exp(xd - m).sum(1, keepdims=True)) + m)
    assert got == pytest.approx(-logp[np.arange(64), t].mean(), rel=1e-5)


# ---- expand as broadcasting ----------------------------------------------------------------

def test_lone_expand_stays_a_view():
    # An expand feeding a matmul is not a kernel op: it would copy what a view gives.
    def f(a, b):
        return (a.sum(1, keepdim=True).expand(8, 8) @ b).relu()
    a, b = ember.randn(8, 8), ember.randn(8, 8)
    ks = _kernels(f, a, b)
    assert not any("expand" in k.ops for k in ks if k.kernel is not None)
    np.testing.assert_allclose(ember.compile(f)(a, b).numpy(), f(a, b).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_expand_between_kernel_ops_fuses_and_matches_eager():
    def f(x):
        s = x.exp().sum(1, keepdim=True)
        return x * s.expand(6, 9) + s.expand(2, 6, 9)
    x = ember.randn(6, 9)
    ks = [k for k in _kernels(f, x) if k.kernel is not None]
    assert any("expand" in k.ops for k in ks)
    cf = ember.compile(f)
    for _ in range(2):
        y = cf(x)
    np.testing.assert_allclose(y.numpy(), f(x).numpy(), rtol=1e-6)


# ---- the target gather inside the row kernel ----------------------------------------------

def _gather_kernel(iota: bool) -> Kernel:
    """sum over j of where(t[i] == arange[j], x[i, j] - max_i(x), 0) on a [5, 7] x."""
    i32 = dtypes.int32
    return Kernel("g", (5, 7), [Load(0, f32, (7, 1)), Load(1, i32, (1, 0)),
                                Load(2, i32, (0, 1), iota=iota)],
                  [Expr("load", (0,), f32), Expr("reduce_max", (0,), f32),
                   Expr("sub", (0, 1), f32), Expr("load", (1,), i32),
                   Expr("load", (2,), i32), Expr("eq", (3, 4), dtypes.bool_),
                   Expr("const", (0.0,), f32), Expr("where", (5, 2, 6), f32),
                   Expr("reduce_sum", (7,), f32)],
                  [], reduce_dims=1)


@pytest.mark.parametrize("iota", [True, False])
def test_masked_row_sum_becomes_a_gather(iota):
    from ember.codegen.kernel import Store
    k = _gather_kernel(iota)
    k.stores = [Store(8, (1, 0))]
    nest = _LoopNest.__new__(_LoopNest)
    nest.kernel, nest.layout, nest.row_level = k, _Layout.of(k), k.row_level()
    # the max; with the hint the masked sum takes no pass of its own
    assert nest._plan_passes() == ([[1]] if iota else [[1], [8]])
    assert list(nest.gathers) == ([8] if iota else [])
    x = np.random.default_rng(5).standard_normal((5, 7)).astype(np.float32)
    x[2, 4] = x[2].max()                   # picks x - max = 0.0 exactly
    t = np.array([0, 6, 4, -1, 7], np.int32)   # -1 and 7 match no column: 0
    out = np.empty(5, np.float32)
    CompiledKernel(k).run([x, t, np.arange(7, dtype=np.int32)], [out])
    shifted = x - x.max(1, keepdims=True)
    want = np.where(t[:, None] == np.arange(7), shifted, 0).sum(1)
    np.testing.assert_array_equal(out, want)
    assert out[3] == 0 and out[4] == 0
    assert not np.signbit(out[2])


def test_nll_kernel_gathers_without_a_third_pass():
    x, t = ember.randn(32, 50), ember.tensor(np.arange(32) % 50)
    ks = _kernels(lambda x, t: F.nll_loss(F.log_softmax(x, dim=1), t), x, t)
    (kernel,) = [k.kernel for k in ks if k.kernel is not None and "amax" in k.ops]
    assert any(ld.iota for ld in kernel.loads)
    nest = _LoopNest.__new__(_LoopNest)
    nest.kernel, nest.layout, nest.row_level = kernel, _Layout.of(kernel), kernel.row_level()
    assert len(nest._plan_passes()) == 2 and len(nest.gathers) == 1   # max; sum of exp
