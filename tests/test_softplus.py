"""F.softplus: a fused primitive (registry op ``softplus``, mathlib program) checked
against torch, finite differences and eager."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F

VALUES = np.array([-800.0, -104.0, -30.0, -20.5, -3.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0, 2.4,
                   9.9, 10.1, 15.0, 19.9, 20.0, 20.5, 30.0, 800.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 20.0), (0.5, 5.0), (1.0, 2.0)])
def test_softplus_matches_torch(dtype, beta, threshold):
    torch = pytest.importorskip("torch")
    x = VALUES.astype(dtype)
    t = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.softplus(t, beta=beta, threshold=threshold)
    want.backward(torch.linspace(-1, 1, x.size, dtype=t.dtype))
    e = ember.tensor(x, requires_grad=True)
    got = F.softplus(e, beta=beta, threshold=threshold)
    got.backward(ember.tensor(np.linspace(-1, 1, x.size).astype(dtype)))
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=rtol, atol=0)
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=1e-30)


def test_softplus_special_values():
    x = ember.tensor(np.array([np.nan, np.inf, -np.inf], np.float32))
    got = F.softplus(x).numpy()
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == 0.0
    # exp(x) exactly where 1 + exp(x) rounds to 1 (log1p, not log(1 + .)).
    tiny = F.softplus(ember.tensor(np.array([-40.0, -90.0], np.float32))).numpy()
    np.testing.assert_allclose(tiny, np.exp(np.array([-40.0, -90.0])), rtol=1e-6)


def test_softplus_gradient_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.uniform(-6, 6, 50)
    e = ember.tensor(x, requires_grad=True)
    F.softplus(e, beta=1.5).sum().backward()
    h = 1e-6
    def f(v):
        return F.softplus(ember.tensor(v), beta=1.5).numpy()
    fd = (f(x + h) - f(x - h)) / (2 * h)
    np.testing.assert_allclose(e.grad.numpy(), fd, rtol=1e-6, atol=1e-9)


def _run(fn, *args, calls=3):
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no kernel may fall back to eager
        for _ in range(calls):
            out = fn(*args)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_compiled_equals_eager_in_one_kernel(dtype):
    rng = np.random.default_rng(1)
    x = ember.tensor((rng.standard_normal((64, 33)) * 30).astype(dtype))

    def f(x):
        return F.softplus(x * 2 + 1, beta=1.5, threshold=10) - x.sigmoid()

    cf = ember.compile(f)
    got = _run(cf, x)
    want = f(x)
    # NumPy's exp/log1p (eager) vs mathlib's programs: a few ulp of each term, which the
    # difference of two terms near 1 turns into an absolute error of a few ulp of 1.
    tol = 4e-7 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)
    kernels = [k for k in cf.kernels() if "softplus" in k.ops]
    assert len(kernels) == 1 and kernels[0].backend == "llvm", cf.kernels()
    assert {"mul", "add", "softplus", "where", "sigmoid"} <= set(kernels[0].ops)


def test_softplus_compiled_backward_equals_eager():
    rng = np.random.default_rng(2)
    xv = rng.uniform(-25, 25, (16, 8))

    def step(x):
        y = F.softplus(x, beta=0.7).sum()
        y.backward()
        return y

    x1 = ember.tensor(xv, requires_grad=True)
    want = step(x1)
    cf = ember.compile(step)
    for _ in range(3):
        x2 = ember.tensor(xv, requires_grad=True)
        got = _run(cf, x2, calls=1)
        np.testing.assert_allclose(got.detach().item(), want.detach().item(), rtol=1e-13)
        np.testing.assert_allclose(x2.grad.numpy(), x1.grad.numpy(), rtol=1e-13, atol=1e-300)
