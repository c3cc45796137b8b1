"""ember.special against torch.special (values and gradients), standard-library
references, finite differences and (where installed) scipy; one compiled use."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from conftest import check_against_torch, check_grad_fd, to_np

rng = np.random.default_rng(5)
X = rng.uniform(-3, 3, (4, 5))
POS = rng.uniform(0.1, 5, (4, 5))
UNIT = rng.uniform(0.02, 0.98, (4, 5))

# (name, inputs builder, extra args): each compared with torch.special.<name>.
UNARY = [("erf", X), ("erfc", X), ("erfinv", UNIT * 2 - 1), ("expit", X), ("logit", UNIT),
         ("gammaln", POS), ("digamma", POS), ("i0", X), ("i0e", X), ("i1", X), ("i1e", X),
         ("ndtr", X), ("ndtri", UNIT), ("log_ndtr", X * 3), ("sinc", X), ("entr", POS),
         ("exp2", X), ("expm1", X), ("log1p", POS), ("round", X * 3)]


@pytest.mark.parametrize("name,x", UNARY, ids=[u[0] for u in UNARY])
def test_unary_against_torch(name, x):
    torch = pytest.importorskip("torch")
    # digamma's gradient in torch (trigamma) is good to ~5e-10 only: compare it in float32.
    data = x.astype(np.float32) if name == "digamma" else x
    check_against_torch(getattr(ember.special, name), getattr(torch.special, name), [data],
                        grad=name != "round")
    check_against_torch(getattr(ember.special, name), getattr(torch.special, name),
                        [x.astype(np.float32)], grad=name != "round")


@pytest.mark.parametrize("name,x", [u for u in UNARY if u[0] != "round"],
                         ids=[u[0] for u in UNARY if u[0] != "round"])
def test_unary_gradients_by_finite_differences(name, x):
    check_grad_fd(getattr(ember.special, name), [x])


def test_against_standard_library():
    xs = np.linspace(-5, 25, 301)
    np.testing.assert_allclose(to_np(ember.special.erfc(ember.tensor(xs, dtype=ember.float64))),
                               [math.erfc(v) for v in xs], rtol=1e-13, atol=0)
    ps = np.linspace(0.5, 80, 300)
    np.testing.assert_allclose(to_np(ember.special.gammaln(ember.tensor(ps, dtype=ember.float64))),
                               [math.lgamma(v) for v in ps], rtol=1e-13, atol=1e-14)
    # log_ndtr far in the left tail: log(erfc(t)/2) ~ -t^2 - log(2 t sqrt(pi)), finite.
    out = to_np(ember.special.log_ndtr(ember.tensor([-40.0], dtype=ember.float64)))[0]
    t = 40 / math.sqrt(2)
    assert abs(out - (-t * t - math.log(2 * t * math.sqrt(math.pi)))) < 1e-3


def test_against_scipy_wide_ranges():
    sp = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(0.05, 40, 400), -np.linspace(0.05, 6, 100) - 0.37,
                        [-1e6 - 0.3, -12345.67]])
    f = lambda v: ember.tensor(v, dtype=ember.float64)   # noqa: E731
    np.testing.assert_allclose(to_np(ember.digamma(f(x))), sp.digamma(x), rtol=1e-12, atol=1e-13)
    for n in (1, 2, 3, 4):
        np.testing.assert_allclose(to_np(ember.polygamma(n, f(x))), sp.polygamma(n, x),
                                   rtol=1e-11)
    for n in (1, 2):   # at 0 the limit from the right, as torch
        torch = pytest.importorskip("torch")
        assert to_np(ember.polygamma(n, f([0.0])))[0] == torch.polygamma(n, torch.zeros(1))[0]
    p = np.concatenate([10.0 ** -np.arange(1, 300, 7), np.linspace(0.01, 0.99, 99)])
    np.testing.assert_allclose(to_np(ember.special.ndtri(f(p))), sp.ndtri(p), rtol=1e-12)
    b = np.linspace(-700, 700, 1401)
    for name in ("i0", "i0e", "i1", "i1e"):
        np.testing.assert_allclose(to_np(getattr(ember.special, name)(f(b))),
                                   getattr(sp, name)(b), rtol=1e-13)


def test_edge_values_match_torch():
    torch = pytest.importorskip("torch")
    cases = {"gammaln": [0.0, -1.0, -2.5, math.inf, -math.inf, 1e-300, 1.0, 2.0, 3.0, 171.0],
             "digamma": [0.0, -1.0, -2.5, math.inf, 1e-8],
             "erfinv": [1.0, -1.0, 1.5, 0.0, math.nan],
             "ndtri": [0.0, 1.0, -0.1, 0.5],
             "logit": [0.0, 1.0, 0.5],
             "entr": [0.0, -1.0, math.nan, 2.0],
             "sinc": [0.0, 1.0, -2.5],
             "erfc": [-math.inf, math.inf, 30.0, math.nan]}
    for name, vals in cases.items():
        e = getattr(ember.special, name)(ember.tensor(vals, dtype=ember.float64))
        t = getattr(torch.special, name)(torch.tensor(vals, dtype=torch.float64))
        np.testing.assert_allclose(to_np(e), t.numpy(), rtol=1e-12, equal_nan=True,
                                   err_msg=name)


def test_binary_and_parametrized_against_torch():
    torch = pytest.importorskip("torch")
    y = rng.uniform(0.1, 3, (4, 5))
    x0 = X.copy()
    x0[0, :2] = 0.0
    check_against_torch(ember.special.xlogy, torch.special.xlogy, [x0, y])
    check_against_torch(ember.special.xlog1py, torch.special.xlog1py, [x0, y])
    for n in (0, 2, 3):   # n = 0's gradient is torch's trigamma: float32 (see above)
        check_against_torch(lambda a: ember.special.polygamma(n, a),
                            lambda a: torch.special.polygamma(n, a),
                            [POS.astype(np.float32) if n == 0 else POS])
    check_against_torch(lambda a: ember.special.logit(a, eps=0.1),
                        lambda a: torch.special.logit(a, eps=0.1), [UNIT])
    check_against_torch(lambda a: ember.special.multigammaln(a, 3),
                        lambda a: torch.special.multigammaln(a, 3), [POS + 1.5])
    check_against_torch(lambda a: ember.special.logsumexp(a, 1),
                        lambda a: torch.special.logsumexp(a, 1), [X])
    check_against_torch(lambda a: ember.special.softmax(a, 0),
                        lambda a: torch.special.softmax(a, 0), [X])
    check_against_torch(lambda a: ember.special.log_softmax(a, 1),
                        lambda a: torch.special.log_softmax(a, 1), [X])
    check_against_torch(lambda a: ember.special.round(a, decimals=1),
                        lambda a: torch.special.round(a, decimals=1), [X], grad=False)
    # Python numbers on either side, nan and 0 * log(0).
    a = ember.special.xlogy(ember.tensor([0.0, 0.0, 2.0]), ember.tensor([0.0, math.nan, 3.0]))
    b = torch.special.xlogy(torch.tensor([0.0, 0.0, 2.0]), torch.tensor([0.0, math.nan, 3.0]))
    np.testing.assert_allclose(to_np(a), b.numpy(), equal_nan=True)
    assert to_np(ember.special.xlogy(2.0, ember.tensor([3.0])))[0] == pytest.approx(2 * math.log(3))
    assert to_np(ember.special.xlog1py(ember.tensor([2.0]), 1.0))[0] == pytest.approx(
        2 * math.log(2))


def test_gradients_stay_finite_at_zero():
    # xlogy(0, 0) = 0 and its gradient in x is 0 (not nan), as torch's.
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    y = ember.tensor([0.0, 2.0], requires_grad=True)
    ember.special.xlogy(x, y).sum().backward()
    assert np.isfinite(to_np(x.grad)).all() and np.isfinite(to_np(y.grad)).all()
    s = ember.tensor([0.0], requires_grad=True)
    ember.special.sinc(s).sum().backward()
    assert to_np(s.grad)[0] == 0.0
    for fn in (ember.special.i1, ember.special.i1e):
        z = ember.tensor([0.0], dtype=ember.float64, requires_grad=True)
        fn(z).sum().backward()
        assert to_np(z.grad)[0] == pytest.approx(0.5)


def test_polygamma_fd_in_float64():
    check_grad_fd(lambda a: ember.special.polygamma(1, a), [POS])
    check_grad_fd(ember.special.digamma, [POS])


def test_top_level_and_methods():
    x = ember.tensor([0.5, 2.0])
    for name, ref in [("lgamma", ember.special.gammaln), ("digamma", ember.special.digamma),
                      ("erfc", ember.special.erfc), ("i0", ember.special.i0),
                      ("sinc", ember.special.sinc), ("exp2", ember.special.exp2)]:
        np.testing.assert_array_equal(to_np(getattr(ember, name)(x)), to_np(ref(x)))
        np.testing.assert_array_equal(to_np(getattr(x, name)()), to_np(ref(x)))
    np.testing.assert_array_equal(to_np(x.polygamma(1)), to_np(ember.polygamma(1, x)))
    np.testing.assert_array_equal(to_np((x / 4).erfinv()), to_np(ember.erfinv(x / 4)))
    np.testing.assert_array_equal(to_np(x.xlogy(x)), to_np(ember.xlogy(x, x)))
    assert ember.special.exp2(ember.tensor([3])).dtype is ember.float32
    assert to_np(ember.special.exp2(ember.tensor([3])))[0] == 8.0
    assert ember.special.gammaln(ember.tensor([3])).dtype is ember.float32
    with pytest.raises(RuntimeError):
        ember.special.polygamma(-1, x)
    # In-place forms write into the tensor and return it.
    y = ember.tensor([0.5, 2.0])
    assert y.lgamma_() is y
    np.testing.assert_array_equal(to_np(y), to_np(ember.lgamma(x)))
    z = ember.tensor([0.5, 2.0])
    z.polygamma_(1)
    np.testing.assert_array_equal(to_np(z), to_np(x.polygamma(1)))


def test_compiled_equals_eager():
    def f(x, p):
        return (ember.special.gammaln(x) + ember.special.digamma(x) * ember.special.erfinv(p)
                + ember.special.xlogy(x, p) + ember.special.ndtri(p)
                + ember.special.i0e(x)).sum()
    cf = ember.compile(f)
    x = ember.tensor(POS, dtype=ember.float32)
    p = ember.tensor(UNIT, dtype=ember.float32)
    for _ in range(2):
        np.testing.assert_allclose(to_np(cf(x, p)), to_np(f(x, p)), rtol=1e-6)
    xg = ember.tensor(POS, dtype=ember.float32, requires_grad=True)

    def loss(a):
        return ember.special.gammaln(a).sum() + ember.special.erfc(a).sum()
    closs = ember.compile(loss)
    closs(xg).backward()
    g_compiled = to_np(xg.grad).copy()
    xg.grad = None
    loss(xg).backward()
    np.testing.assert_allclose(g_compiled, to_np(xg.grad), rtol=1e-6)


MODULES = ["ember.special", "ember.special_ops", "ember.tensor_more", "ember.distributions",
           "ember.distributions.distribution", "ember.distributions.normal",
           "ember.distributions.bernoulli", "ember.distributions.categorical",
           "ember.distributions.uniform", "ember.distributions.exponential",
           "ember.distributions.laplace", "ember.distributions.gamma",
           "ember.distributions.beta", "ember.distributions.independent",
           "ember.distributions.kl", "ember.distributions.multivariate_normal",
           "ember.distributions.constraints", "ember.distributions.utils"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    import doctest
    import importlib
    from ember.distributions.kl import Bernoulli, Normal, register_kl
    from ember.distributions.utils import broadcast_all
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, extraglobs={
        "ember": ember, "broadcast_all": broadcast_all, "register_kl": register_kl,
        "Normal": Normal, "Bernoulli": Bernoulli}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
