"""ember.distributions against torch.distributions: log_prob, cdf, entropy, mean, mode,
variance, KL (values and gradients); sampling checked by moments over many draws with
tolerances of several standard errors (a wrong distribution fails, chance does not);
validation errors; reproducible seeding and fresh draws under ember.compile."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
import ember.distributions as D
from conftest import to_np

rng = np.random.default_rng(3)
N = 200_000


def _t(a, dtype=ember.float64):
    return ember.tensor(np.asarray(a), dtype=dtype)


def _pair(torch, spec):
    """(ember distribution, torch distribution) from a spec (name, kwargs as numpy)."""
    name, kw = spec
    e = getattr(D, name)(**{k: _t(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    t = getattr(torch.distributions, name)(**{
        k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    return e, t


POS = rng.uniform(0.5, 3.0, (2, 3))
POS2 = rng.uniform(0.5, 3.0, (2, 3))
LOC = rng.standard_normal((2, 3))
PROBS = rng.uniform(0.05, 0.95, (2, 3))
CAT = rng.uniform(0.1, 1.0, (2, 4))
SPECS = {
    "Normal": ("Normal", dict(loc=LOC, scale=POS)),
    "Laplace": ("Laplace", dict(loc=LOC, scale=POS)),
    "Exponential": ("Exponential", dict(rate=POS)),
    "Gamma": ("Gamma", dict(concentration=POS, rate=POS2)),
    "Beta": ("Beta", dict(concentration1=POS, concentration0=POS2)),
    "Uniform": ("Uniform", dict(low=LOC, high=LOC + POS)),
    "Bernoulli-probs": ("Bernoulli", dict(probs=PROBS)),
    "Bernoulli-logits": ("Bernoulli", dict(logits=LOC)),
    "Categorical-probs": ("Categorical", dict(probs=CAT)),
    "Categorical-logits": ("Categorical", dict(logits=CAT * 3)),
    "OneHotCategorical": ("OneHotCategorical", dict(probs=CAT)),
}


def _support_values(name, e):
    if name.startswith("Bernoulli"):
        return rng.integers(0, 2, (5, 2, 3)).astype(np.float64)
    if name.startswith("Categorical"):
        return rng.integers(0, 4, (5, 2))
    if name == "OneHotCategorical":
        return np.eye(4)[rng.integers(0, 4, (5, 2))]
    if name == "Beta":
        return rng.uniform(0.05, 0.95, (5, 2, 3))
    if name in ("Gamma", "Exponential"):
        return rng.uniform(0.05, 4, (5, 2, 3))
    if name == "Uniform":
        return LOC + POS * rng.uniform(0, 1, (5, 2, 3))
    return rng.standard_normal((5, 2, 3)) * 2


def _close(a, b, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(to_np(a), b.detach().numpy(), rtol=rtol, atol=atol,
                               equal_nan=True)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_statistics_against_torch(key):
    torch = pytest.importorskip("torch")
    e, t = _pair(torch, SPECS[key])
    assert tuple(e.batch_shape) == tuple(t.batch_shape)
    assert tuple(e.event_shape) == tuple(t.event_shape)
    v = _support_values(key, e)
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
    _close(e.entropy(), t.entropy())
    for stat in ("mean", "variance", "stddev", "mode"):
        _close(getattr(e, stat), getattr(t, stat))
    if key in ("Normal", "Laplace", "Exponential", "Uniform"):
        _close(e.cdf(ember.tensor(v)), t.cdf(torch.tensor(v)))
        q = rng.uniform(0.05, 0.95, (5, 2, 3))
        _close(e.icdf(ember.tensor(q)), t.icdf(torch.tensor(q)))
    if key == "Gamma":
        _close(e.cdf(ember.tensor(v)), t.cdf(torch.tensor(v)), rtol=1e-6)
    if getattr(t, "has_enumerate_support", False):
        _close(e.enumerate_support(), t.enumerate_support())
    # Expanded copies keep their statistics.
    ex, tx = e.expand((4,) + tuple(e.batch_shape)), t.expand((4,) + tuple(t.batch_shape))
    assert tuple(ex.batch_shape) == tuple(tx.batch_shape)
    _close(ex.entropy(), tx.entropy())


@pytest.mark.parametrize("key", ["Normal", "Laplace", "Gamma", "Beta", "Bernoulli-logits",
                                 "Categorical-logits", "Exponential"])
def test_log_prob_and_entropy_gradients_against_torch(key):
    torch = pytest.importorskip("torch")
    name, kw = SPECS[key]
    e_par = {k: _t(v).requires_grad_(True) for k, v in kw.items()}
    t_par = {k: torch.tensor(v, requires_grad=True) for k, v in kw.items()}
    e, t = getattr(D, name)(**e_par), getattr(torch.distributions, name)(**t_par)
    v = _support_values(key, e)
    (e.log_prob(ember.tensor(v)).sum() + e.entropy().sum() * 0.5).backward()
    (t.log_prob(torch.tensor(v)).sum() + t.entropy().sum() * 0.5).backward()
    for k in kw:
        _close(e_par[k].grad, t_par[k].grad, rtol=1e-8)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_sample_moments(key):
    """Sample means and variances within 6 standard errors of the exact ones (the third
    moment's 4th-moment noise bound is estimated from the draws themselves)."""
    e = getattr(D, SPECS[key][0])(**{k: _t(v) if isinstance(v, np.ndarray) else v
                                     for k, v in SPECS[key][1].items()})
    ember.manual_seed(123)
    s = to_np(e.sample((N,)))
    assert s.shape == (N,) + tuple(e.batch_shape) + tuple(e.event_shape)
    if key.startswith("Categorical"):   # category frequencies against probs
        p = to_np(e.probs)
        for c in range(p.shape[-1]):
            freq = (s == c).mean(0)
            se = np.sqrt(p[..., c] * (1 - p[..., c]) / N)
            assert np.all(np.abs(freq - p[..., c]) < 6 * se), (c, freq, p[..., c])
        return
    mean, var = to_np(e.mean), to_np(e.variance)
    assert np.all(np.abs(s.mean(0) - mean) < 6 * np.sqrt(var / N))
    centered = s - mean
    fourth = (centered ** 4).mean(0)
    se_var = np.sqrt(np.maximum(fourth - var ** 2, 1e-30) / N)
    assert np.all(np.abs((centered ** 2).mean(0) - var) < 6 * se_var + 1e-12)
    # Every draw lies in the support.
    assert bool(e.support.check(ember.tensor(s)).all())


def test_multivariate_normal_against_torch():
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((2, 3, 3))
    cov = a @ a.transpose(0, 2, 1) + 3 * np.eye(3)
    loc = rng.standard_normal((2, 3))
    v = rng.standard_normal((4, 2, 3))
    for kind, mat in [("covariance_matrix", cov), ("precision_matrix", np.linalg.inv(cov)),
                      ("scale_tril", np.linalg.cholesky(cov))]:
        lt, mt = _t(loc).requires_grad_(True), _t(mat).requires_grad_(True)
        tl, tm = torch.tensor(loc, requires_grad=True), torch.tensor(mat, requires_grad=True)
        e = D.MultivariateNormal(lt, **{kind: mt})
        t = torch.distributions.MultivariateNormal(tl, **{kind: tm})
        _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
        _close(e.entropy(), t.entropy())
        for name in ("mean", "variance", "covariance_matrix", "precision_matrix", "scale_tril"):
            _close(getattr(e, name), getattr(t, name), rtol=1e-8, atol=1e-10)
        (e.log_prob(ember.tensor(v)).sum() + e.entropy().sum()).backward()
        (t.log_prob(torch.tensor(v)).sum() + t.entropy().sum()).backward()
        _close(lt.grad, tl.grad, rtol=1e-7)
        # torch's gradient of a symmetric matrix argument is not symmetrized; compare the
        # symmetric parts (the only part a covariance can move in), or the lower triangle.
        ge, gt = to_np(mt.grad), tm.grad.numpy()
        if kind == "scale_tril":
            np.testing.assert_allclose(np.tril(ge), np.tril(gt), rtol=1e-7, atol=1e-10)
        else:
            sym = lambda g: g + np.swapaxes(g, -1, -2)   # noqa: E731
            np.testing.assert_allclose(sym(ge), sym(gt), rtol=1e-7, atol=1e-10)
    e = D.MultivariateNormal(_t(loc[0]), covariance_matrix=_t(cov[0]))
    ember.manual_seed(5)
    s = to_np(e.sample((N,)))
    assert s.shape == (N, 3)
    se = np.sqrt(np.diag(cov[0]) / N)
    assert np.all(np.abs(s.mean(0) - loc[0]) < 6 * se)
    emp = np.cov(s.T)
    se_cov = np.sqrt((cov[0] ** 2 + np.outer(np.diag(cov[0]), np.diag(cov[0]))) / N)
    assert np.all(np.abs(emp - cov[0]) < 6 * se_cov)


def test_rsample_gradients():
    # d E[x] / d param, estimated from reparameterized draws, against the exact value.
    ember.manual_seed(0)
    loc, scale = _t([0.5]).requires_grad_(True), _t([2.0]).requires_grad_(True)
    x = D.Normal(loc, scale).rsample((N,))
    (x ** 2).mean().backward()   # E[x^2] = loc^2 + scale^2
    assert abs(to_np(loc.grad)[0] - 1.0) < 0.05 and abs(to_np(scale.grad)[0] - 4.0) < 0.05
    for alpha_v, rate_v in [(0.5, 1.0), (3.0, 2.0)]:
        alpha, rate = _t([alpha_v]).requires_grad_(True), _t([rate_v]).requires_grad_(True)
        g = D.Gamma(alpha, rate).rsample((N,))
        g.mean().backward()   # E[x] = alpha / rate
        se = math.sqrt(alpha_v) / rate_v / math.sqrt(N) * 4   # generous for the gradient
        assert abs(to_np(alpha.grad)[0] - 1 / rate_v) < 6 * se + 1e-3
        assert abs(to_np(rate.grad)[0] + alpha_v / rate_v ** 2) < 6 * se + 1e-3
    a, b = _t([2.0]).requires_grad_(True), _t([3.0]).requires_grad_(True)
    D.Beta(a, b).rsample((N,)).mean().backward()   # E = a / (a + b)
    assert abs(to_np(a.grad)[0] - 3 / 25) < 3e-3 and abs(to_np(b.grad)[0] + 2 / 25) < 3e-3
    u_lo, u_hi = _t([1.0]).requires_grad_(True), _t([3.0]).requires_grad_(True)
    D.Uniform(u_lo, u_hi).rsample((N,)).mean().backward()
    assert abs(to_np(u_lo.grad)[0] - 0.5) < 0.01 and abs(to_np(u_hi.grad)[0] - 0.5) < 0.01
    assert not D.Bernoulli(probs=_t([0.5])).has_rsample


def test_kl_against_torch():
    torch = pytest.importorskip("torch")
    pairs = [("Normal", dict(loc=LOC, scale=POS), dict(loc=LOC * 0.5, scale=POS2)),
             ("Bernoulli", dict(probs=PROBS), dict(probs=PROBS[::-1].copy())),
             ("Categorical", dict(probs=CAT), dict(logits=CAT * 2)),
             ("OneHotCategorical", dict(probs=CAT), dict(logits=CAT * 2)),
             ("Exponential", dict(rate=POS), dict(rate=POS2)),
             ("Laplace", dict(loc=LOC, scale=POS), dict(loc=-LOC, scale=POS2)),
             ("Gamma", dict(concentration=POS, rate=POS2), dict(concentration=POS2, rate=POS)),
             ("Beta", dict(concentration1=POS, concentration0=POS2),
              dict(concentration1=POS2, concentration0=POS)),
             ("Uniform", dict(low=LOC, high=LOC + 1), dict(low=LOC - 1, high=LOC + 2))]
    for name, kp, kq in pairs:
        ep, tp = _pair(torch, (name, kp))
        eq, tq = _pair(torch, (name, kq))
        _close(D.kl_divergence(ep, eq), torch.distributions.kl_divergence(tp, tq))
    # Independent wraps: KL sums the reinterpreted dims.
    ep, tp = _pair(torch, ("Normal", dict(loc=LOC, scale=POS)))
    eq, tq = _pair(torch, ("Normal", dict(loc=-LOC, scale=POS)))
    _close(D.kl_divergence(D.Independent(ep, 1), D.Independent(eq, 1)),
           torch.distributions.kl_divergence(torch.distributions.Independent(tp, 1),
                                             torch.distributions.Independent(tq, 1)))
    # Gradient of a KL (a VAE's loss term) against torch.
    mu, sd = _t(LOC).requires_grad_(True), _t(POS).requires_grad_(True)
    tmu, tsd = torch.tensor(LOC, requires_grad=True), torch.tensor(POS, requires_grad=True)
    D.kl_divergence(D.Normal(mu, sd), D.Normal(0.0, 1.0)).sum().backward()
    torch.distributions.kl_divergence(torch.distributions.Normal(tmu, tsd),
                                      torch.distributions.Normal(0.0, 1.0)).sum().backward()
    _close(mu.grad, tmu.grad)
    _close(sd.grad, tsd.grad)
    # Zero-probability categories: inf where q has none and p some, as torch.
    p0 = np.array([0.5, 0.5, 0.0])
    q0 = np.array([0.0, 0.5, 0.5])
    _close(D.kl_divergence(D.Categorical(probs=_t(p0)), D.Categorical(probs=_t(q0))),
           torch.distributions.kl_divergence(torch.distributions.Categorical(torch.tensor(p0)),
                                             torch.distributions.Categorical(torch.tensor(q0))))


def test_register_kl_and_missing_pair():
    class MyNormal(D.Normal):
        pass

    @D.register_kl(MyNormal, D.Normal)
    def _kl(p, q):
        return p.loc * 0 + 42.0

    p = MyNormal(_t([0.0]), _t([1.0]))
    assert to_np(D.kl_divergence(p, D.Normal(_t([0.0]), _t([1.0]))))[0] == 42.0
    # The parent's rule still serves a subclass on the other side.
    assert to_np(D.kl_divergence(D.Normal(_t([0.0]), _t([1.0])), p))[0] == 0.0
    with pytest.raises(NotImplementedError):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Laplace(0.0, 1.0))


def test_independent():
    torch = pytest.importorskip("torch")
    e, t = _pair(torch, SPECS["Normal"])
    ei, ti = D.Independent(e, 1), torch.distributions.Independent(t, 1)
    assert tuple(ei.batch_shape) == (2,) and tuple(ei.event_shape) == (3,)
    v = rng.standard_normal((4, 2, 3))
    _close(ei.log_prob(ember.tensor(v)), ti.log_prob(torch.tensor(v)))
    _close(ei.entropy(), ti.entropy())
    assert ei.has_rsample and ei.rsample((5,)).shape == (5, 2, 3)
    with pytest.raises(ValueError):
        D.Independent(e, 3)


def test_validation_errors_match_torch():
    torch = pytest.importorskip("torch")
    checks = [
        (lambda m: m.distributions.Normal(m.tensor([0.0]), m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.Bernoulli(probs=m.tensor([1.5])), ValueError),
        (lambda m: m.distributions.Bernoulli(), ValueError),
        (lambda m: m.distributions.Uniform(m.tensor([1.0]), m.tensor([0.0])), ValueError),
        (lambda m: m.distributions.Normal(0.0, 1.0).log_prob(m.tensor([math.nan])), ValueError),
        (lambda m: m.distributions.Exponential(m.tensor([1.0])).log_prob(m.tensor([-1.0])),
         ValueError),
        (lambda m: m.distributions.Categorical(probs=m.tensor([0.5, 0.5])).log_prob(
            m.tensor(2)), ValueError),
        (lambda m: m.distributions.Normal(m.zeros(3), m.ones(3)).log_prob(m.zeros(2)),
         ValueError),
        (lambda m: m.distributions.Normal(0.0, 1.0).log_prob(0.5), ValueError),
    ]
    # Both defaults on (torch's is __debug__; another test may have turned it off).
    saved = torch.distributions.Distribution._validate_args, D.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    D.Distribution.set_default_validate_args(True)
    try:
        _raise_alike(checks, torch)
    finally:
        torch.distributions.Distribution.set_default_validate_args(saved[0])
        D.Distribution.set_default_validate_args(saved[1])
    # validate_args=False skips the checks, as torch.
    d = D.Normal(_t([0.0]), _t([-1.0]), validate_args=False)
    assert np.isnan(to_np(d.log_prob(_t([0.0])))).all()


def _raise_alike(checks, torch):
    for make, err in checks:
        with pytest.raises(err) as e:
            make(ember)
        with pytest.raises(err) as t:
            make(torch)
        # Equal texts; a printed tensor's digits may differ (ember: 1.5, torch: 1.5000).
        head = lambda x: str(x.value).split("invalid values")[0].split("tensor(")[0]  # noqa
        assert head(e).replace("ember.", "torch.") == head(t)


def test_seeding_and_compiled_sampling():
    d = D.Normal(ember.zeros(3), ember.ones(3))
    ember.manual_seed(7)
    a = to_np(d.sample((2,)))
    ember.manual_seed(7)
    b = to_np(d.sample((2,)))
    np.testing.assert_array_equal(a, b)

    def step(loc, logits):
        n = D.Normal(loc, ember.ones(3)).rsample((4,))
        c = D.Categorical(logits=logits).sample((4,))
        g = D.Gamma(ember.full((3,), 2.0), ember.ones(3)).sample((4,))
        return n.sum(0) + c.float().sum() + g.sum(0) * 0 + D.Normal(loc, 1.0).log_prob(n).sum()
    cf = ember.compile(step)
    loc, logits = ember.zeros(3), ember.tensor([0.0, 1.0, 2.0])
    ember.manual_seed(11)
    eager = [to_np(step(loc, logits)) for _ in range(3)]
    ember.manual_seed(11)
    compiled = [to_np(cf(loc, logits)) for _ in range(3)]
    for x, y in zip(eager, compiled):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    assert not np.allclose(compiled[1], compiled[2])   # fresh draws at every call


def test_vae_style_loss_compiled_equals_eager():
    w = ember.tensor(rng.standard_normal((4, 6)), dtype=ember.float32, requires_grad=True)

    def loss(x, eps_seed_free):
        h = x @ w
        mu, log_sd = h[:, :3], h[:, 3:]
        q = D.Normal(mu, log_sd.exp())
        z = q.rsample()
        kl = D.kl_divergence(q, D.Normal(ember.zeros(3), ember.ones(3))).sum()
        return kl + D.Independent(D.Normal(z, 1.0), 1).log_prob(eps_seed_free).sum()
    x = ember.tensor(rng.standard_normal((5, 4)), dtype=ember.float32)
    y = ember.tensor(rng.standard_normal((5, 3)), dtype=ember.float32)
    closs = ember.compile(loss)
    ember.manual_seed(2)
    le = loss(x, y)
    le.backward()
    ge = to_np(w.grad).copy()
    w.grad = None
    ember.manual_seed(2)
    lc = closs(x, y)
    lc.backward()
    np.testing.assert_allclose(to_np(lc), to_np(le), rtol=1e-5)
    np.testing.assert_allclose(to_np(w.grad), ge, rtol=1e-4, atol=1e-6)


def test_validation_inside_compile_keeps_one_graph_and_checks_every_call():
    def f(loc, scale, v):
        return D.Normal(loc, scale).log_prob(v)
    a = ember.zeros(3)
    report = ember.explain(f, a, ember.ones(3), a)
    assert "0 graph break(s)" in str(report).splitlines()[0]
    cf = ember.compile(f)
    for _ in range(3):
        np.testing.assert_allclose(to_np(cf(a, ember.ones(3), a)), to_np(f(a, ember.ones(3), a)))
    with pytest.raises(ValueError, match="Expected parameter scale"):
        cf(a, -ember.ones(3), a)
    with pytest.raises(ValueError, match="Expected value argument"):
        cf(a, ember.ones(3), a + math.nan)
    np.testing.assert_allclose(to_np(cf(a, ember.ones(3), a)), to_np(f(a, ember.ones(3), a)))
