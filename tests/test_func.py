"""``ember.func`` against ``torch.func`` (values), and against finite differences and
closed forms where torch is not installed."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember import func

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.func, torch.jit
rng = np.random.default_rng(11)


def _a(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _both(fn_name, f, *arrays, **kw):
    """``fn_name`` of ``f`` on ember and torch tensors made from ``arrays``."""
    torch = pytest.importorskip("torch")
    e = getattr(func, fn_name)(f(ember), **kw)(*[ember.tensor(a) for a in arrays])
    t = getattr(torch.func, fn_name)(f(torch), **kw)(*[torch.tensor(a) for a in arrays])
    return e, t


def _close(e, t, tol=1e-6):
    if isinstance(e, (tuple, list)):
        assert len(e) == len(t)
        for a, b in zip(e, t):
            _close(a, b, tol)
        return
    assert not e.requires_grad       # outermost results carry no history, as torch's
    np.testing.assert_allclose(e.numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def test_grad_and_its_options_match_torch():
    f = lambda lib: lambda x, y: (lib.sin(x) * y ** 2).sum()   # noqa: E731
    x, y = _a(3), _a(3)
    _close(*_both("grad", f, x, y))
    _close(*_both("grad", f, x, y, argnums=(0, 1)))
    _close(*_both("grad_and_value", f, x, y, argnums=1))
    aux = lambda lib: lambda x: ((x * x).sum(), x.mean())   # noqa: E731
    _close(*_both("grad", aux, x, has_aux=True))
    nested = lambda lib: lambda x: func_of(lib).grad(lambda v: v.sin())(x)   # noqa: E731
    _close(*_both("grad", nested, np.array(0.7)))    # d2/dx2 sin = -sin


def func_of(lib):
    return func if lib is ember else lib.func


def test_jacobians_hessian_vjp_jvp_match_torch():
    f = lambda lib: lambda x: lib.tanh(x) * x.sum()   # noqa: E731
    x = _a(4)
    _close(*_both("jacrev", f, x))
    _close(*_both("jacfwd", f, x))
    g = lambda lib: lambda x: (x ** 3).sum() + (x[0] * x[1])   # noqa: E731
    _close(*_both("hessian", g, x), tol=1e-5)
    torch = pytest.importorskip("torch")
    v = _a(4)
    out, fn = func.vjp(f(ember), ember.tensor(x))
    tout, tfn = torch.func.vjp(f(torch), torch.tensor(x))
    _close(out, tout)
    _close(fn(ember.tensor(v)), tfn(torch.tensor(v)))
    _close(func.jvp(f(ember), (ember.tensor(x),), (ember.tensor(v),)),
           torch.func.jvp(f(torch), (torch.tensor(x),), (torch.tensor(v),)))


def test_vmap_maps_dims_and_matches_torch():
    f = lambda lib: lambda a, b: (a * b).sum(-1) + a.max()   # noqa: E731
    a, b = _a(5, 3, 4), _a(3, 4)
    _close(*_both("vmap", f, a, b, in_dims=(0, None)))
    _close(*_both("vmap", f, a, a.transpose(1, 0, 2), in_dims=(0, 1), out_dims=1))
    pair = lambda lib: lambda a: (a.sum(), a * 2)   # noqa: E731
    _close(*_both("vmap", pair, a))
    per_sample = func.vmap(func.grad(lambda w, x: (x @ w).sin().sum()), in_dims=(None, 0))
    w, xs = _a(4), _a(6, 2, 4)
    got = per_sample(ember.tensor(w), ember.tensor(xs)).numpy()
    want = np.stack([(np.cos(x @ w)[:, None] * x).sum(0) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="different sizes"):
        func.vmap(lambda a, b: a + b)(ember.ones(2), ember.ones(3))


def test_functional_call_swaps_parameters_and_buffers_then_restores_them():
    torch = pytest.importorskip("torch")
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    tm = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    m.eval()
    tm.eval()
    new = {"0.weight": _a(2, 3, dtype=np.float32), "1.running_mean": _a(2, dtype=np.float32)}
    x = _a(4, 3, dtype=np.float32)
    before = m[0].weight.detach().numpy().copy()
    out = func.functional_call(m, {k: ember.tensor(v) for k, v in new.items()},
                               (ember.tensor(x),))
    tout = torch.func.functional_call(tm, {k: torch.tensor(v) for k, v in new.items()},
                                      (torch.tensor(x),))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(m[0].weight.detach().numpy(), before)
    assert isinstance(m[0].weight, nn.Parameter)
    with pytest.raises(RuntimeError, match="missing keys"):
        func.functional_call(m, {"0.weight": ember.ones(2, 3)}, (ember.ones(1, 3),),
                             strict=True)


def test_maml_inner_step_backpropagates_to_the_meta_parameters():
    # One inner SGD step through functional_call and func.grad; the meta-gradient flows
    # back through the inner gradient (second order), as in torch.
    torch = pytest.importorskip("torch")
    w0 = _a(2, 3, dtype=np.float32)
    x, y = _a(5, 3, dtype=np.float32), _a(5, 2, dtype=np.float32)

    def meta_grad(lib, fc, grad):
        lin = lib.nn.Linear(3, 2, bias=False)
        with lib.no_grad():
            lin.weight.copy_(lib.tensor(w0))
        params = {"weight": lin.weight}
        loss = lambda p: ((fc(lin, p, (lib.tensor(x),)) - lib.tensor(y)) ** 2).mean()  # noqa
        g = grad(loss)(params)
        adapted = {"weight": params["weight"] - 0.1 * g["weight"]}
        loss(adapted).backward()
        return lin.weight.grad.numpy()

    got = meta_grad(ember, func.functional_call, func.grad)
    want = meta_grad(torch, torch.func.functional_call, torch.func.grad)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_grad_by_finite_differences_without_torch():
    x = _a(3)
    g = func.grad(lambda t: (t.exp() * t).sum())(ember.tensor(x)).numpy()
    np.testing.assert_allclose(g, np.exp(x) * (1 + x), rtol=1e-10)
