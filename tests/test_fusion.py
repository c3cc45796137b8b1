"""Reduction fusion: softmax, log_softmax, layer_norm and random reductions over random
dims compile to few kernels and equal eager (and PyTorch where installed), with no
fallback hiding a wrong kernel."""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F


def _compiled_equals_eager(fn, *args, calls=3, tol=1e-4):
    """Compile ``fn``, check each call against eager, and require no fallback: a kernel
    that disagreed on its first run would otherwise be hidden by the eager fallback."""
    expected = fn(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    cf = ember.compile(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(calls):
            got = cf(*args)
            got = got if isinstance(got, tuple) else (got,)
            for g, e in zip(got, expected):
                assert g.shape == e.shape and g.dtype == e.dtype
                np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=tol, atol=tol,
                                           equal_nan=True)
    s = cf.stats()
    assert not s["fallbacks"], s["fallbacks"]
    return cf, expected


def _kernels(fn, *args):
    return [k for k in ember.explain(fn, *args).kernels if k.backend == "llvm"]


def _x(*shape, seed=0):
    return ember.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_softmax_is_one_kernel():
    x = _x(64, 100)
    _compiled_equals_eager(lambda x: F.softmax(x, -1), x)
    ks = _kernels(lambda x: F.softmax(x, -1), x)
    assert len(ks) == 1 and ks[0].kernel.reduce_dims == 1, ks
    assert ks[0].ops.count("sum") == 1 and ks[0].ops.count("amax") == 1


def test_layer_norm_is_one_kernel():
    x, w, b = _x(32, 48), _x(48, seed=1), _x(48, seed=2)
    fn = lambda x, w, b: F.layer_norm(x, (48,), w, b)  # noqa: E731
    _compiled_equals_eager(fn, x, w, b)
    assert len(_kernels(fn, x, w, b)) == 1


def test_log_softmax_nll_takes_at_most_two_kernels():
    x = _x(64, 10)
    y = ember.tensor(np.random.default_rng(3).integers(0, 10, 64))
    fn = lambda x, y: F.nll_loss(F.log_softmax(x, 1), y)  # noqa: E731
    _compiled_equals_eager(fn, x, y)
    report = ember.explain(fn, x, y)
    g = report.graphs[0].graph
    x_node = next(n for n in g.nodes() if g[n].op == "input")
    downstream = {n for n in g.nodes() if n != x_node
                  and x_node in g.ancestors(n)}
    # The target's preparation (ignore_index mask) does not depend on x; the log_softmax
    # is one kernel and the gathered loss one more (the gather itself runs eagerly).
    on_x = [k for k in report.kernels if k.backend == "llvm" and set(k.nodes) & downstream]
    assert len(on_x) <= 2, report.kernels


def test_against_torch():
    torch = pytest.importorskip("torch")
    x = _x(16, 33)
    cf = ember.compile(lambda x: (F.softmax(x, 1), F.log_softmax(x, 0),
                                  F.layer_norm(x, (33,)), x.var(1), x.amax(0)))
    xt = torch.from_numpy(x.numpy())
    want = (torch.softmax(xt, 1), torch.log_softmax(xt, 0),
            torch.nn.functional.layer_norm(xt, (33,)), xt.var(1), xt.amax(0))
    for _ in range(3):
        for g, w in zip(cf(x), want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5)


def test_reduction_broadcast_along_the_wrong_dim_is_not_fused_wrongly():
    # x.sum(1) has shape [N]; with N == C, x - x.sum(1) broadcasts it along the rows'
    # *columns* (NumPy right-aligns), which is not "the row's sum": must stay correct.
    x = _x(5, 5)
    _compiled_equals_eager(lambda x: x - x.sum(1), x)
    _compiled_equals_eager(lambda x: x - x.sum(0), x)        # this one is per column
    _compiled_equals_eager(lambda x: (x.T - x.amax(1)).exp().sum(0), x)


def test_full_and_leading_and_middle_reductions():
    x = _x(4, 6, 7)
    _compiled_equals_eager(lambda x: (x * 2).sum(), x)
    _compiled_equals_eager(lambda x: x.exp().sum((0, 2), keepdim=True) / x.abs().sum(), x)
    _compiled_equals_eager(lambda x: x / x.abs().amax(1, keepdim=True), x)
    _compiled_equals_eager(lambda x: (x - x.mean(0)).square().mean(0), x)


def test_integer_bool_and_special_values():
    i = ember.tensor(np.random.default_rng(0).integers(-50, 50, (6, 9)))
    _compiled_equals_eager(lambda i: (i * 3).sum(1) + i.amax(1), i)
    _compiled_equals_eager(lambda i: (i > 0).sum(1), i)
    _compiled_equals_eager(lambda i: (i > 40).amax(0), i)
    x = _x(3, 4)
    x.numpy()[1, 2] = np.nan
    x.numpy()[2, 0] = np.inf
    _compiled_equals_eager(lambda x: (x.amax(1), (x * 1).sum(1)), x)


def test_empty_and_scalar_reductions():
    _compiled_equals_eager(lambda x: (x + 1).sum(1), _x(0, 4))
    _compiled_equals_eager(lambda x: (x + 1).sum(0), _x(0, 4))
    _compiled_equals_eager(lambda x: (x * 3).sum(), ember.tensor(np.float32(2.5)))


def test_non_contiguous_inputs():
    x = _x(40, 30).T            # [30, 40] with strides (1, 30)
    _compiled_equals_eager(lambda x: F.softmax(x, 1), x)
    _compiled_equals_eager(lambda x: F.softmax(x, 0), x)
    _compiled_equals_eager(lambda x: F.layer_norm(x[:, ::2], (20,)), x)


def _random_reduction_program(rng: random.Random):
    """Producers -> a reduction over random dims -> consumers back over the rows."""
    rank = rng.randint(1, 4)
    shape = tuple(rng.choice([1, 2, 3, 5, 8]) for _ in range(rank))
    axes = tuple(sorted(rng.sample(range(rank), rng.randint(1, rank))))
    keepdim = rng.random() < 0.6
    kind = rng.choice(["sum", "amax", "mean", "softmax", "norm"])
    pre = rng.choice([lambda x: x, lambda x: x.exp(), lambda x: x * 2 + 1,
                      lambda x: x.tanh() - x])

    def program(x, y):
        h = pre(x)
        if kind == "sum":
            r = h.sum(axes, keepdim=keepdim)
        elif kind == "amax":
            r = h.amax(axes, keepdim=keepdim)
        elif kind == "mean":
            r = h.mean(axes, keepdim=keepdim)
        elif kind == "softmax":
            m = h.amax(axes, keepdim=True)
            e = (h - m).exp()
            return e / e.sum(axes, keepdim=True) * y
        else:
            mu = h.mean(axes, keepdim=True)
            var = ((h - mu) ** 2).mean(axes, keepdim=True)
            return (h - mu) / (var + 1e-5).sqrt() + y
        # Consumers: per row, and back over the full shape when the shapes line up.
        out = r * 0.5 + 1
        return (out, h - r) if keepdim else (out,)

    data = np.random.default_rng(rng.randrange(1 << 30))
    x = ember.tensor(data.standard_normal(shape).astype(np.float32))
    if rank >= 2 and rng.random() < 0.4:
        x = ember.tensor(data.standard_normal(shape[::-1]).astype(np.float32)).permute(
            *reversed(range(rank)))
    y = ember.tensor(data.standard_normal(shape[rng.randint(0, rank):]).astype(np.float32))
    return program, x, y


@pytest.mark.parametrize("seed", range(40))
def test_random_reduction_programs(seed):
    program, x, y = _random_reduction_program(random.Random(seed))
    _compiled_equals_eager(program, x, y)


def test_row_division_edge_values_match_eager():
    # A row value divides every point through its reciprocal when that is finite; a
    # zero, subnormal, infinite or NaN divisor must still give exactly what x / y gives.
    x = np.ones((6, 5), np.float32)
    x[0] = 1e-30
    x[:, 0] = 0.0
    d = np.array([[0.0], [1e-41], [np.inf], [np.nan], [-0.0], [3.0]], np.float32)
    fn = lambda x, d: x.exp() / (d + x.sum(1, keepdim=True) * 0)  # noqa: E731
    _compiled_equals_eager(fn, ember.tensor(x), ember.tensor(d), tol=1e-6)


def test_softmax_computes_exp_once():
    ks = _kernels(lambda x: F.softmax(x, -1), _x(8, 64))
    from ember.codegen.llvm import compile_kernel
    source = ks[0].source
    opt = compile_kernel(ks[0].kernel).optimized_ir()
    # exp's range reduction rounds with llvm.rint: one call per pass that computes exp.
    calls = [line for line in source.splitlines() if "call" in line and "llvm.rint" in line]
    assert len(calls) == 1, calls
    from ember.codegen.llvm.jit import vector_registers
    assert f"<{vector_registers()[0] // 4} x float>" in opt   # vectorized at the CPU's width


def test_a_causal_mask_before_softmax_keeps_the_max_reduction_vectorized():
    # Knowing the -inf of where(mask, -inf, x), LLVM rewrote the row maximum into a
    # conditional one it left scalar (minGPT's attention softmax ran 3x slower); the
    # kernel reads that -inf from a global LLVM cannot see through.
    from ember.codegen.llvm import compile_kernel
    mask = ember.tril(ember.ones(64, 64)) == 0
    fn = lambda x: F.softmax(x.masked_fill(mask, float("-inf")), -1)  # noqa: E731
    x = _x(8, 64, 64)
    _compiled_equals_eager(fn, x)
    ks = _kernels(fn, x)
    assert len(ks) == 1 and "amax" in ks[0].kernel.ops
    opt = compile_kernel(ks[0].kernel).optimized_ir()
    assert "llvm.vector.reduce.fmaximum" in opt


def test_groups_joined_only_inside_a_third_group_make_no_cycle():
    """Group A (a1, a2) and group B (b1, b2, sharing only ``e``): a1 -> view -> b1, and
    b2 -> view -> a2. No path of nodes runs from A back to A, yet the two groups need
    each other first; fusion must not leave both (it made the call run eagerly)."""
    import warnings

    def f(x, t, y):
        a1 = (x * 2.0).exp()
        e = t == ember.arange(41)
        b1 = ember.where(e, a1.reshape(24, 41), 0.0)
        b2 = ember.where(e, y, 0.0)
        a2 = a1 + b2.reshape(6, 4, 41)
        return b1, a2

    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((6, 4, 41)).astype(np.float32))
    t = ember.tensor(rng.integers(0, 41, (24, 1)))
    y = ember.tensor(rng.standard_normal((24, 41)).astype(np.float32))
    cf = ember.compile(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a fallback to eager warns
        for _ in range(3):
            got = cf(x, t, y)
    for g, e in zip(got, f(x, t, y)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-6)
    assert cf.counters["eager_calls"] == 0


def test_relu_mask_is_recomputed_where_the_gradient_uses_it():
    """ReLU's backward test ``out <= 0`` reads only ``out``, which the next layer's matmul
    keeps anyway: it is computed in the backward kernel that selects the gradient,
    not stored by the forward kernel (a full bool array written and read once)."""
    torch = pytest.importorskip("torch")
    ember.manual_seed(0)
    lin1, lin2 = ember.nn.Linear(12, 16), ember.nn.Linear(16, 3)

    def step(x):
        lin1.zero_grad()
        lin2.zero_grad()
        loss = lin2(lin1(x).relu()).square().mean()
        loss.backward()
        return loss.detach(), lin1.weight.grad.clone(), lin1.bias.grad.clone()

    x = _x(8, 12)
    cf, _ = _compiled_equals_eager(step, x)
    ks = ember.explain(step, x).kernels   # the forward's is a matmul's epilogue
    forward = [k for k in ks if "relu" in k.ops]
    assert forward and all("le" not in k.ops for k in forward), [k.ops for k in ks]
    assert any("le" in k.ops and "where" in k.ops for k in ks), [k.ops for k in ks]
    t1, t2 = torch.nn.Linear(12, 16), torch.nn.Linear(16, 3)
    with torch.no_grad():
        for t, e in ((t1, lin1), (t2, lin2)):
            t.weight.copy_(torch.tensor(e.weight.detach().numpy()))
            t.bias.copy_(torch.tensor(e.bias.detach().numpy()))
    xt = torch.tensor(x.numpy())
    t2(t1(xt).relu()).square().mean().backward()
    got = cf(x)
    np.testing.assert_allclose(got[1].numpy(), t1.weight.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[2].numpy(), t1.bias.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_find_cycle_agrees_with_networkx_on_random_graphs():
    import random

    import networkx as nx

    from ember.ir.passes.fuse import _find_cycle

    rng = random.Random(0)
    for _ in range(2000):
        n = rng.randint(1, 12)
        succ: dict = {}
        for _ in range(rng.randint(0, 30)):
            a, b = rng.randrange(n), rng.randrange(n)
            if a != b:
                succ.setdefault(a, set()).add(b)
        cycle = _find_cycle(succ)
        g = nx.DiGraph([(a, b) for a, out in succ.items() for b in out])
        assert (cycle is not None) == (len(g) > 0 and not nx.is_directed_acyclic_graph(g))
        for i, u in enumerate(cycle or ()):   # consecutive nodes are edges, closing back
            assert cycle[(i + 1) % len(cycle)] in succ[u]


def test_fused_arithmetic_rounds_each_op_as_eager():
    # a*b + c was contracted into an FMA: one ulp away from eager, which a cast to an
    # integer turned into a whole unit (timm's ModelEmaV2 on BatchNorm's int64 step
    # count: compiled 7, eager and torch 6)
    def ema(e, m):
        e.copy_(0.9 * e + (1.0 - 0.9) * m)

    f = ember.compile(ema)
    for _ in range(4):
        e = ember.tensor(6, dtype=ember.long)
        f(e, ember.tensor(16, dtype=ember.long))
        assert int(e) == 6
    rng = np.random.default_rng(0)
    a, b, c = (ember.tensor(rng.standard_normal(10_000).astype(np.float32)) for _ in range(3))
    chain = ember.compile(lambda a, b, c: (a * b + c) * a - b / c)
    for _ in range(3):
        np.testing.assert_array_equal(chain(a, b, c).numpy(), ((a * b + c) * a - b / c).numpy())
