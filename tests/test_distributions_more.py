"""The second set of ember.distributions families, the transforms, TransformedDistribution,
biject_to/transform_to and their KL divergences, against torch.distributions: log_prob,
entropy, mean, variance, mode, cdf/icdf (values and gradients; a statistic torch does not
define must raise NotImplementedError here too), sampling by moments over 20k draws,
shapes, reparameterized gradients (by finite differences over fixed draws, or by the
gradient of an exact expectation), validation errors, and ember.compile."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
import ember.distributions as D
from conftest import to_np

rng = np.random.default_rng(11)
N = 20_000

POS = rng.uniform(0.5, 3.0, (2, 3))
POS2 = rng.uniform(0.5, 3.0, (2, 3))
LOC = rng.standard_normal((2, 3))
PROBS = rng.uniform(0.05, 0.95, (2, 3))
CAT = rng.uniform(0.1, 1.0, (2, 4))
DF = np.array([[0.7, 1.5, 2.5], [4.0, 6.0, 9.0]])   # every branch of StudentT's moments


def _t(a, dtype=ember.float64):
    return ember.tensor(np.asarray(a), dtype=dtype)


def _conv(module, v, requires_grad=False):
    if isinstance(v, np.ndarray):
        if module is ember:
            return _t(v).requires_grad_(requires_grad)
        return module.tensor(v, requires_grad=requires_grad)
    return v


def _family(module, name):
    """A family by name, or by ``submodule.Name`` for those torch keeps off the top level."""
    import importlib
    if "." in name:
        sub, name = name.split(".")
        module = importlib.import_module(f"{module.__name__}.{sub}")
    return getattr(module, name)


def _pair(torch, spec, requires_grad=False):
    """(ember distribution, torch distribution, ember params, torch params)."""
    name, kw, wants = spec[0], spec[1], spec[3].split()
    ep = {k: _conv(ember, v, requires_grad and k in wants) for k, v in kw.items()}
    tp = {k: _conv(torch, v, requires_grad and k in wants) for k, v in kw.items()}
    return _family(D, name)(**ep), _family(torch.distributions, name)(**tp), ep, tp


def _pos(shape=(5, 2, 3)):
    return rng.uniform(0.05, 4.0, shape)


def _simplex(alpha, n=5):
    return rng.dirichlet(alpha, (n,) + alpha.shape[:-1]) if alpha.ndim == 1 else np.stack(
        [np.stack([rng.dirichlet(a) for a in alpha]) for _ in range(n)])


# name -> (family, kwargs, values for log_prob/cdf, differentiable params)
SPECS = {
    "LogNormal": ("LogNormal", dict(loc=LOC, scale=POS / 4), _pos(), "loc scale"),
    "HalfNormal": ("HalfNormal", dict(scale=POS), _pos(), "scale"),
    "Cauchy": ("Cauchy", dict(loc=LOC, scale=POS), rng.standard_normal((5, 2, 3)) * 3,
               "loc scale"),
    "HalfCauchy": ("HalfCauchy", dict(scale=POS), _pos(), "scale"),
    "Gumbel": ("Gumbel", dict(loc=LOC, scale=POS), rng.standard_normal((5, 2, 3)) * 2,
               "loc scale"),
    "StudentT": ("StudentT", dict(df=DF, loc=LOC, scale=POS),
                 rng.standard_normal((5, 2, 3)) * 2, "df loc scale"),
    "Chi2": ("Chi2", dict(df=POS * 2), _pos(), "df"),
    "Dirichlet": ("Dirichlet", dict(concentration=CAT * 3), _simplex(CAT * 3),
                  "concentration"),
    "Poisson": ("Poisson", dict(rate=POS * 2), rng.integers(0, 9, (5, 2, 3)).astype(float),
                "rate"),
    "Binomial-probs": ("Binomial", dict(total_count=np.full((2, 3), 10.0), probs=PROBS),
                       rng.integers(0, 11, (5, 2, 3)).astype(float), "probs"),
    "Binomial-logits": ("Binomial", dict(total_count=6, logits=LOC),
                        rng.integers(0, 7, (5, 2, 3)).astype(float), "logits"),
    "Geometric-probs": ("Geometric", dict(probs=PROBS),
                        rng.integers(0, 7, (5, 2, 3)).astype(float), "probs"),
    "Geometric-logits": ("Geometric", dict(logits=LOC),
                         rng.integers(0, 7, (5, 2, 3)).astype(float), "logits"),
    "Multinomial": ("Multinomial", dict(total_count=6, probs=CAT),
                    np.stack([np.stack([rng.multinomial(6, p / p.sum()) for p in CAT])
                              for _ in range(5)]).astype(float), "probs"),
    "Weibull": ("Weibull", dict(scale=POS, concentration=POS2), _pos(), "scale concentration"),
    "Pareto": ("Pareto", dict(scale=POS, alpha=POS2 * 2), POS + _pos(), "scale alpha"),
    "RelaxedBernoulli": ("RelaxedBernoulli", dict(temperature=np.array(0.7), probs=PROBS),
                         rng.uniform(0.05, 0.95, (5, 2, 3)), "temperature probs"),
    "LogitRelaxedBernoulli": ("relaxed_bernoulli.LogitRelaxedBernoulli",
                              dict(temperature=np.array(0.7), logits=LOC),
                              rng.standard_normal((5, 2, 3)), "temperature logits"),
    "RelaxedOneHotCategorical": ("RelaxedOneHotCategorical",
                                 dict(temperature=np.array(0.7), probs=CAT), _simplex(CAT),
                                 "temperature probs"),
    "ExpRelaxedCategorical": ("relaxed_categorical.ExpRelaxedCategorical",
                              dict(temperature=np.array(0.7), logits=CAT * 2),
                              np.log(_simplex(CAT)), "temperature logits"),
    "OneHotCategoricalStraightThrough": ("OneHotCategoricalStraightThrough",
                                         dict(probs=CAT),
                                         np.eye(4)[rng.integers(0, 4, (5, 2))], "probs"),
}


def _close(a, b, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(to_np(a), b.detach().numpy(), rtol=rtol, atol=atol,
                               equal_nan=True)


def _same(fe, ft, rtol=1e-9, atol=1e-11):
    """fe() and ft() agree, or both raise NotImplementedError (torch's 'not defined')."""
    try:
        expected = ft()
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            fe()
        return False
    _close(fe(), expected, rtol, atol)
    return True


@pytest.mark.parametrize("key", sorted(SPECS))
def test_statistics_against_torch(key):
    torch = pytest.importorskip("torch")
    e, t, _, _ = _pair(torch, SPECS[key])
    v = SPECS[key][2]
    assert tuple(e.batch_shape) == tuple(t.batch_shape)
    assert tuple(e.event_shape) == tuple(t.event_shape)
    assert e.has_rsample == t.has_rsample
    assert e.support.event_dim == t.support.event_dim
    assert e.support.is_discrete == t.support.is_discrete
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)), rtol=1e-8)
    # (torch's Multinomial entropy takes lgamma(n + 1) in float32: 1e-8 apart)
    _same(e.entropy, t.entropy, rtol=1e-6 if key == "Multinomial" else 1e-8)
    for stat in ("mean", "variance", "stddev", "mode"):
        _same(lambda: getattr(e, stat), lambda: getattr(t, stat))
    _same(lambda: e.cdf(ember.tensor(v)), lambda: t.cdf(torch.tensor(v)))
    q = rng.uniform(0.05, 0.95, (5, 2, 3))
    _same(lambda: e.icdf(ember.tensor(q)), lambda: t.icdf(torch.tensor(q)), rtol=1e-8)
    if t.has_enumerate_support:
        _close(e.enumerate_support(), t.enumerate_support())
    # Expanded copies keep their batch shape and statistics.
    shape = (4,) + tuple(e.batch_shape)
    ex, tx = e.expand(shape), t.expand(shape)
    assert type(ex) is type(e)
    assert tuple(ex.batch_shape) == tuple(tx.batch_shape)
    assert tuple(ex.event_shape) == tuple(tx.event_shape)
    _close(ex.log_prob(ember.tensor(v[:4])), tx.log_prob(torch.tensor(v[:4])), rtol=1e-8)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_log_prob_and_entropy_gradients_against_torch(key):
    torch = pytest.importorskip("torch")
    e, t, ep, tp = _pair(torch, SPECS[key], requires_grad=True)
    v = SPECS[key][2]
    le, lt = e.log_prob(ember.tensor(v)).sum(), t.log_prob(torch.tensor(v)).sum()
    try:
        lt = lt + 0.5 * t.entropy().sum()
        le = le + 0.5 * e.entropy().sum()
    except NotImplementedError:
        pass
    le.backward()
    lt.backward()
    for k in SPECS[key][3].split():
        _close(ep[k].grad, tp[k].grad, rtol=1e-7, atol=1e-10)


# Families whose moments exist and are finite at these parameters.
MOMENT_KEYS = ["LogNormal", "HalfNormal", "Gumbel", "Chi2", "Dirichlet", "Poisson",
               "Binomial-probs", "Binomial-logits", "Geometric-probs", "Multinomial",
               "Weibull", "OneHotCategoricalStraightThrough"]


@pytest.mark.parametrize("key", MOMENT_KEYS)
def test_sample_moments_and_shapes(key):
    name, kw = SPECS[key][:2]
    e = _family(D, name)(**{k: _conv(ember, v) for k, v in kw.items()})
    ember.manual_seed(123)
    s = to_np(e.sample((N,)))
    assert s.shape == (N,) + tuple(e.batch_shape) + tuple(e.event_shape)
    assert tuple(e.sample().shape) == tuple(e.batch_shape) + tuple(e.event_shape)
    assert tuple(e.sample((2, 3)).shape) == (2, 3) + tuple(e.batch_shape) + tuple(e.event_shape)
    mean, var = to_np(e.mean), to_np(e.variance)
    # 6 standard errors: a wrong distribution fails, chance does not.
    assert np.all(np.abs(s.mean(0) - mean) < 6 * np.sqrt(var / N) + 1e-12), key
    centered = s - mean
    fourth = (centered ** 4).mean(0)
    se_var = np.sqrt(np.maximum(fourth - var ** 2, 1e-30) / N)
    assert np.all(np.abs((centered ** 2).mean(0) - var) < 6 * se_var + 1e-12), key
    assert bool(e.support.check(ember.tensor(s)).all())


@pytest.mark.parametrize("key", ["Cauchy", "HalfCauchy", "StudentT", "Pareto",
                                 "RelaxedBernoulli", "RelaxedOneHotCategorical"])
def test_samples_by_quantiles_and_support(key):
    """Heavy-tailed or moment-less families: the median against torch's icdf where
    it has one, else draws in the support with the right shape."""
    torch = pytest.importorskip("torch")
    e, t, _, _ = _pair(torch, SPECS[key])
    ember.manual_seed(5)
    s = to_np(e.sample((N,)))
    assert s.shape == (N,) + tuple(e.batch_shape) + tuple(e.event_shape)
    assert bool(e.support.check(ember.tensor(s)).all())
    try:
        med = t.icdf(torch.full(tuple(t.batch_shape), 0.5, dtype=torch.float64)).numpy()
    except NotImplementedError:
        med = None
    if med is not None:   # the sample median within ~6 standard errors of the true one
        dens = np.exp(t.log_prob(torch.tensor(med)).numpy())
        assert np.all(np.abs(np.median(s, 0) - med) < 6 * 0.5 / (dens * np.sqrt(N)))
    else:   # a cdf check at the draws' own median: half the draws lie below it
        frac = (s < np.median(s, 0)).mean(0)
        assert np.all(np.abs(frac - 0.5) < 0.01)
    if key == "StudentT":   # the scale-free |x - loc| / scale median, from torch's draws
        torch.manual_seed(0)
        ts = t.sample((N,)).numpy()
        z_e = np.median(np.abs(s - LOC) / POS, 0)
        z_t = np.median(np.abs(ts - LOC) / POS, 0)
        assert np.all(np.abs(z_e - z_t) < 0.08 * (1 + z_t))


@pytest.mark.parametrize("key", ["LogNormal", "HalfNormal", "Cauchy", "HalfCauchy", "Gumbel",
                                 "Weibull", "Pareto", "RelaxedBernoulli",
                                 "RelaxedOneHotCategorical"])
def test_rsample_gradients_by_finite_differences(key):
    """Reparameterized draws from a fixed seed are smooth in the parameters: their
    gradient equals a central difference over re-seeded draws."""
    name, kw, _, params = SPECS[key]
    params = params.split()
    d0 = _family(D, name)(**{k: _conv(ember, v) for k, v in kw.items()})
    w = rng.standard_normal((3,) + tuple(d0.batch_shape) + tuple(d0.event_shape))

    def f(vals, grad=False):
        args = {k: (_t(vals[k]).requires_grad_(grad) if k in vals else _conv(ember, v))
                for k, v in kw.items()}
        ember.manual_seed(42)
        x = getattr(D, name)(**args).rsample((3,))
        assert tuple(x.shape) == w.shape
        return (x * _t(w)).sum(), args

    base = {k: np.array(kw[k], dtype=np.float64) for k in params}
    out, args = f(base, grad=True)
    out.backward()
    h = 1e-6
    for k in params:
        g = to_np(args[k].grad)
        flat = base[k].reshape(-1)
        num = np.zeros_like(flat)
        for i in range(flat.size):
            up = {kk: vv.copy() for kk, vv in base.items()}
            dn = {kk: vv.copy() for kk, vv in base.items()}
            up[k].reshape(-1)[i] += h
            dn[k].reshape(-1)[i] -= h
            num[i] = (to_np(f(up)[0]) - to_np(f(dn)[0])) / (2 * h)
        np.testing.assert_allclose(g.reshape(-1), num, rtol=1e-4, atol=1e-5, err_msg=k)


def test_rsample_gradients_of_gamma_based_families():
    """Chi2, StudentT and Dirichlet draw through Gamma's implicit reparameterization:
    the gradient of a sample average matches that of the exact expectation."""
    n = 40_000
    ember.manual_seed(1)
    df = _t([3.0]).requires_grad_(True)
    D.Chi2(df).rsample((n,)).mean().backward()   # E[x] = df
    assert abs(to_np(df.grad)[0] - 1.0) < 0.05
    df, scale = _t([10.0]).requires_grad_(True), _t([1.5]).requires_grad_(True)
    x = D.StudentT(df, 0.0, scale).rsample((n,))
    (x ** 2).mean().backward()   # E[x^2] = scale^2 df / (df - 2)
    assert abs(to_np(scale.grad)[0] - 2 * 1.5 * 10 / 8) / (2 * 1.5 * 10 / 8) < 0.05
    assert abs(to_np(df.grad)[0] + 2 * 1.5 ** 2 / 64) < 0.02
    conc = _t([1.0, 2.0, 3.0]).requires_grad_(True)
    D.Dirichlet(conc).rsample((n,))[:, 0].mean().backward()   # E[x_0] = a_0 / sum(a)
    exact = np.array([5.0, -1.0, -1.0]) / 36
    np.testing.assert_allclose(to_np(conc.grad), exact, atol=4e-3)


def test_straight_through_gradient():
    probs = _t([[0.2, 0.3, 0.5]]).requires_grad_(True)
    ember.manual_seed(0)
    d = D.OneHotCategoricalStraightThrough(probs=probs)
    x = d.rsample((4,))
    assert set(np.unique(to_np(x))) <= {0.0, 1.0}
    np.testing.assert_array_equal(to_np(x).sum(-1), 1.0)
    (x * _t([1.0, 2.0, 3.0])).sum().backward()
    # d probs_normalized / d probs applied to the summed weights (4 draws).
    p = np.array([0.2, 0.3, 0.5])
    w = 4 * np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(to_np(probs.grad)[0], w - (w * p).sum(), rtol=1e-10)


def test_mixture_same_family_against_torch():
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((2, 3))
    loc, scale = rng.standard_normal((2, 3)), rng.uniform(0.5, 2, (2, 3))
    lt, tl = _t(loc).requires_grad_(True), torch.tensor(loc, requires_grad=True)
    e = D.MixtureSameFamily(D.Categorical(logits=_t(logits)), D.Normal(lt, _t(scale)))
    t = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.tensor(logits)),
        torch.distributions.Normal(tl, torch.tensor(scale)))
    assert tuple(e.batch_shape) == (2,) and tuple(e.event_shape) == ()
    v = rng.standard_normal((5, 2)) * 2
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
    _close(e.cdf(ember.tensor(v)), t.cdf(torch.tensor(v)))
    _close(e.mean, t.mean)
    _close(e.variance, t.variance)
    e.log_prob(ember.tensor(v)).sum().backward()
    t.log_prob(torch.tensor(v)).sum().backward()
    _close(lt.grad, tl.grad)
    ember.manual_seed(3)
    s = to_np(e.sample((N,)))
    assert s.shape == (N, 2)
    var = to_np(e.variance)
    assert np.all(np.abs(s.mean(0) - to_np(e.mean)) < 6 * np.sqrt(var / N))
    assert tuple(e.expand((4, 2)).sample((3,)).shape) == (3, 4, 2)
    # Multivariate components (an Independent Normal) and a shared mixture.
    comp = D.Independent(D.Normal(_t(rng.standard_normal((3, 2))), _t(np.ones((3, 2)))), 1)
    tcomp = torch.distributions.Independent(torch.distributions.Normal(
        torch.tensor(to_np(comp.base_dist.loc)), torch.ones(3, 2, dtype=torch.float64)), 1)
    em = D.MixtureSameFamily(D.Categorical(probs=_t([0.2, 0.3, 0.5])), comp)
    tm = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.tensor([0.2, 0.3, 0.5],
                                                           dtype=torch.float64)), tcomp)
    v = rng.standard_normal((4, 2))
    _close(em.log_prob(ember.tensor(v)), tm.log_prob(torch.tensor(v)))
    _close(em.mean, tm.mean)
    _close(em.variance, tm.variance)
    assert tuple(em.sample((5,)).shape) == (5, 2)
    with pytest.raises(ValueError):
        D.MixtureSameFamily(D.Categorical(probs=_t([0.5, 0.5])), D.Normal(_t(loc), _t(scale)))


TRANSFORMS = [
    ("ExpTransform", (), rng.standard_normal((2, 3))),
    ("SigmoidTransform", (), rng.standard_normal((2, 3)) * 3),
    ("TanhTransform", (), rng.standard_normal((2, 3))),
    ("SoftplusTransform", (), rng.standard_normal((2, 3)) * 3),
    ("AffineTransform", (LOC, POS), rng.standard_normal((2, 3))),
    ("AffineTransform", (1.5, -2.0), rng.standard_normal((2, 3))),
    ("PowerTransform", (POS2,), rng.uniform(0.2, 3, (2, 3))),
    ("StickBreakingTransform", (), rng.standard_normal((2, 3))),
    ("AbsTransform", (), rng.standard_normal((2, 3))),
    ("SoftmaxTransform", (), rng.standard_normal((2, 3))),
    ("LowerCholeskyTransform", (), rng.standard_normal((2, 3, 3))),
    ("PositiveDefiniteTransform", (), rng.standard_normal((2, 3, 3))),
]


@pytest.mark.parametrize("i", range(len(TRANSFORMS)))
def test_transforms_against_torch(i):
    torch = pytest.importorskip("torch")
    name, args, x = TRANSFORMS[i]
    te = getattr(D.transforms, name)(*[_conv(ember, a) for a in args])
    tt = getattr(torch.distributions.transforms, name)(*[_conv(torch, a) for a in args])
    xe, xt = _t(x).requires_grad_(True), torch.tensor(x, requires_grad=True)
    ye, yt = te(xe), tt(xt)
    _close(ye, yt)
    assert te.bijective == tt.bijective
    assert te.domain.event_dim == tt.domain.event_dim
    assert te.codomain.event_dim == tt.codomain.event_dim
    _close(te.inv(ember.tensor(yt.detach().numpy())), tt.inv(yt.detach()), rtol=1e-8)
    assert te.inv.inv is te
    try:
        sign_t = tt.sign
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            te.sign
    else:
        if isinstance(sign_t, int):
            assert te.sign == sign_t
        else:
            _close(te.sign, sign_t)
    if tt.bijective:
        if name != "LowerCholeskyTransform":
            le = te.log_abs_det_jacobian(xe, ye)
            lt = tt.log_abs_det_jacobian(xt, yt)
            _close(le, lt, rtol=1e-8)
            (le.sum() + ye.sum()).backward()
            (lt.sum() + yt.sum()).backward()
            _close(xe.grad, xt.grad, rtol=1e-8)
            # The inverse's log-det is the negated forward one, at swapped arguments.
            _close(te.inv.log_abs_det_jacobian(ye, xe), -lt, rtol=1e-8)
    assert tuple(te.forward_shape(x.shape)) == tuple(tt.forward_shape(torch.Size(x.shape)))
    assert tuple(te.inverse_shape(ye.shape)) == tuple(tt.inverse_shape(yt.shape))


def test_compose_cache_and_equality():
    torch = pytest.importorskip("torch")
    T, TT = D.transforms, torch.distributions.transforms
    x = rng.standard_normal((4, 3))
    ce = T.ComposeTransform([T.AffineTransform(0.5, 2.0), T.TanhTransform(),
                             T.AffineTransform(_t(LOC[0]), _t(POS[0]))])
    ct = TT.ComposeTransform([TT.AffineTransform(0.5, 2.0), TT.TanhTransform(),
                              TT.AffineTransform(torch.tensor(LOC[0]), torch.tensor(POS[0]))])
    ye, yt = ce(_t(x)), ct(torch.tensor(x))
    _close(ye, yt)
    _close(ce.inv(ye), ct.inv(yt), rtol=1e-7)
    _close(ce.log_abs_det_jacobian(_t(x), ye), ct.log_abs_det_jacobian(torch.tensor(x), yt))
    _close(ce.sign, ct.sign)
    assert ce.bijective and ce.inv.inv is ce
    # identity_transform: the empty composition.
    np.testing.assert_array_equal(to_np(D.identity_transform(_t(x))), x)
    np.testing.assert_array_equal(to_np(D.identity_transform.log_abs_det_jacobian(
        _t(x), _t(x))), 0 * x)
    assert D.ExpTransform() == D.ExpTransform() and D.ExpTransform() != D.SigmoidTransform()
    assert D.AffineTransform(1.0, 2.0) == D.AffineTransform(1.0, 2.0)
    assert D.ExpTransform().inv == D.ExpTransform().inv
    # cache_size=1: the inverse of the last output is its input itself (atanh(1) is inf).
    tc = D.TanhTransform(cache_size=1)
    big = _t([30.0])
    y = tc(big)
    assert tc.inv(y) is big
    assert math.isinf(to_np(D.TanhTransform().inv(y))[0])
    with pytest.raises(ValueError):
        D.ExpTransform(cache_size=2)
    # IndependentTransform sums the log-det over reinterpreted dims.
    it = D.IndependentTransform(D.ExpTransform(), 1)
    assert it.domain.event_dim == 1
    np.testing.assert_allclose(to_np(it.log_abs_det_jacobian(_t(x), _t(x).exp())), x.sum(-1))


@pytest.mark.parametrize("which", ["biject_to", "transform_to"])
def test_constraint_registry_against_torch(which):
    torch = pytest.importorskip("torch")
    C, TC = D.constraints, torch.distributions.constraints
    pairs = [(C.real, TC.real), (C.positive, TC.positive), (C.nonnegative, TC.nonnegative),
             (C.unit_interval, TC.unit_interval), (C.interval(-1.0, 3.0), TC.interval(-1.0, 3.0)),
             (C.greater_than(2.0), TC.greater_than(2.0)), (C.less_than(1.0), TC.less_than(1.0)),
             (C.half_open_interval(0.0, 2.0), TC.half_open_interval(0.0, 2.0)),
             (C.simplex, TC.simplex), (C.real_vector, TC.real_vector),
             (C.independent(C.positive, 1), TC.independent(TC.positive, 1)),
             (C.lower_cholesky, TC.lower_cholesky),
             (C.positive_definite, TC.positive_definite)]
    for ce, ct in pairs:
        if which == "biject_to" and ce in (C.lower_cholesky, C.positive_definite):
            with pytest.raises(NotImplementedError):
                D.biject_to(ce)
            continue
        te, tt = getattr(D, which)(ce), getattr(torch.distributions, which)(ct)
        assert type(te).__name__ == type(tt).__name__
        x = rng.standard_normal((3, 3)) * 2
        ye, yt = te(_t(x)), tt(torch.tensor(x))
        _close(ye, yt)
        assert bool(ce.check(ye).all())
        if te.bijective and ce is not C.lower_cholesky:
            _close(te.log_abs_det_jacobian(_t(x), ye), tt.log_abs_det_jacobian(
                torch.tensor(x), yt))
            _close(te.inv(ye), tt.inv(yt), rtol=1e-6, atol=1e-8)


def test_transformed_distribution_against_torch():
    torch = pytest.importorskip("torch")
    T, TT = D.transforms, torch.distributions.transforms
    loc, scale = _t(LOC).requires_grad_(True), _t(POS)
    tloc, tscale = torch.tensor(LOC, requires_grad=True), torch.tensor(POS)
    # A logistic: logit of a uniform, shifted and scaled.
    e = D.TransformedDistribution(D.Uniform(_t(np.zeros((2, 3))), _t(np.ones((2, 3)))),
                                  [T.SigmoidTransform().inv, T.AffineTransform(loc, scale)])
    t = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(torch.zeros(2, 3, dtype=torch.float64),
                                    torch.ones(2, 3, dtype=torch.float64)),
        [TT.SigmoidTransform().inv, TT.AffineTransform(tloc, tscale)])
    v = rng.standard_normal((5, 2, 3))
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
    _close(e.cdf(ember.tensor(v)), t.cdf(torch.tensor(v)))
    q = rng.uniform(0.05, 0.95, (5, 2, 3))
    _close(e.icdf(ember.tensor(q)), t.icdf(torch.tensor(q)))
    e.log_prob(ember.tensor(v)).sum().backward()
    t.log_prob(torch.tensor(v)).sum().backward()
    _close(loc.grad, tloc.grad)
    assert e.has_rsample and tuple(e.rsample((4,)).shape) == (4, 2, 3)
    # A decreasing transform flips the cdf.
    e2 = D.TransformedDistribution(D.Normal(0.0, 1.0), T.AffineTransform(1.0, -2.0))
    t2 = torch.distributions.TransformedDistribution(torch.distributions.Normal(0.0, 1.0),
                                                     TT.AffineTransform(1.0, -2.0))
    w = rng.standard_normal(5)
    _close(e2.cdf(_t(w)), t2.cdf(torch.tensor(w)), rtol=1e-6)
    # A transform that adds an event dim: the base becomes Independent.
    e3 = D.TransformedDistribution(D.Normal(_t(np.zeros((2, 3))), _t(np.ones((2, 3)))),
                                   T.StickBreakingTransform())
    t3 = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(torch.zeros(2, 3, dtype=torch.float64),
                                   torch.ones(2, 3, dtype=torch.float64)),
        TT.StickBreakingTransform())
    assert tuple(e3.batch_shape) == (2,) and tuple(e3.event_shape) == (4,)
    assert tuple(e3.base_dist.event_shape) == (3,)
    s = to_np(e3.sample((5,)))
    _close(e3.log_prob(ember.tensor(s)), t3.log_prob(torch.tensor(s)), rtol=1e-8)
    assert tuple(e3.expand((3, 2)).batch_shape) == (3, 2)


def test_kl_against_torch():
    torch = pytest.importorskip("torch")
    pairs = [("Dirichlet", dict(concentration=CAT * 3), dict(concentration=CAT[::-1] + 1)),
             ("Poisson", dict(rate=POS), dict(rate=POS2)),
             ("Gumbel", dict(loc=LOC, scale=POS), dict(loc=-LOC, scale=POS2)),
             ("Cauchy", dict(loc=LOC, scale=POS), dict(loc=-LOC, scale=POS2)),
             ("HalfNormal", dict(scale=POS), dict(scale=POS2)),
             ("LogNormal", dict(loc=LOC, scale=POS), dict(loc=-LOC, scale=POS2)),
             ("Geometric", dict(probs=PROBS), dict(probs=PROBS[::-1].copy())),
             ("Pareto", dict(scale=POS, alpha=POS2), dict(scale=POS2, alpha=POS)),
             ("Binomial", dict(total_count=np.full((2, 3), 8.0), probs=PROBS),
              dict(total_count=np.array([[8.0, 7, 8], [6, 8, 8]]), probs=PROBS[::-1].copy()))]
    for name, kp, kq in pairs:
        ekp = {k: _conv(ember, v, True) for k, v in kp.items()}
        pe = getattr(D, name)(**ekp)
        qe = getattr(D, name)(**{k: _conv(ember, v) for k, v in kq.items()})
        tkp = {k: _conv(torch, v, True) for k, v in kp.items()}
        pt = getattr(torch.distributions, name)(**tkp)
        qt = getattr(torch.distributions, name)(**{k: _conv(torch, v) for k, v in kq.items()})
        ke, kt = D.kl_divergence(pe, qe), torch.distributions.kl_divergence(pt, qt)
        _close(ke, kt, rtol=1e-8)
        # Gradients where finite.
        fin = np.isfinite(kt.detach().numpy())
        ember.where(ember.tensor(fin), ke, 0.0).sum().backward()
        (kt.where(torch.tensor(fin), 0.0)).sum().backward()
        for k, v in kp.items():
            if isinstance(v, np.ndarray) and k != "total_count":
                _close(ekp[k].grad, tkp[k].grad, rtol=1e-7, atol=1e-10)
    with pytest.raises(NotImplementedError):   # different transforms
        D.kl_divergence(D.LogNormal(0.0, 1.0),
                        D.TransformedDistribution(D.Normal(0.0, 1.0), D.SigmoidTransform()))


ALPHA = np.array([[0.8, 1.5, 2.5], [3.0, 4.0, 1.0]])   # Pareto: infinite and finite KLs
CROSS_KL = [
    ("Bernoulli", dict(probs=PROBS), "Poisson", dict(rate=POS)),
    ("Exponential", dict(rate=POS), "Gumbel", dict(loc=LOC, scale=POS2)),
    ("Gamma", dict(concentration=POS, rate=POS2), "Gumbel", dict(loc=LOC, scale=POS2)),
    ("Gumbel", dict(loc=LOC, scale=POS), "Normal", dict(loc=-LOC, scale=POS2)),
    ("Normal", dict(loc=LOC, scale=POS), "Gumbel", dict(loc=-LOC, scale=POS2)),
    ("Uniform", dict(low=LOC, high=LOC + POS), "Gumbel", dict(loc=-LOC, scale=POS2)),
    ("Pareto", dict(scale=POS, alpha=ALPHA), "Exponential", dict(rate=POS2)),
    ("Pareto", dict(scale=POS, alpha=ALPHA), "Gamma", dict(concentration=POS, rate=POS2)),
    ("Pareto", dict(scale=POS, alpha=ALPHA), "Normal", dict(loc=LOC, scale=POS2)),
    ("Uniform", dict(low=POS, high=POS + 1), "Pareto", dict(scale=POS2, alpha=POS)),
    ("Normal", dict(loc=LOC, scale=POS), "Pareto", dict(scale=POS, alpha=POS2)),
    ("Gamma", dict(concentration=POS, rate=POS2), "Pareto", dict(scale=POS, alpha=POS2)),
    ("Gumbel", dict(loc=LOC, scale=POS), "Exponential", dict(rate=POS2)),
    ("Pareto", dict(scale=POS, alpha=POS2), "Uniform", dict(low=LOC, high=LOC + 9)),
    ("Poisson", dict(rate=POS), "Binomial", dict(total_count=5, probs=PROBS)),
]


@pytest.mark.parametrize("i", range(len(CROSS_KL)))
def test_cross_family_kl_against_torch(i):
    torch = pytest.importorskip("torch")
    pn, kp, qn, kq = CROSS_KL[i]
    ekp = {k: _conv(ember, v, True) for k, v in kp.items()}
    tkp = {k: _conv(torch, v, True) for k, v in kp.items()}
    pe, pt = getattr(D, pn)(**ekp), getattr(torch.distributions, pn)(**tkp)
    qe = getattr(D, qn)(**{k: _conv(ember, v) for k, v in kq.items()})
    qt = getattr(torch.distributions, qn)(**{k: _conv(torch, v) for k, v in kq.items()})
    ke, kt = D.kl_divergence(pe, qe), torch.distributions.kl_divergence(pt, qt)
    _close(ke, kt, rtol=1e-8)
    fin = np.isfinite(kt.detach().numpy())
    if fin.any() and kt.requires_grad:
        ember.where(ember.tensor(fin), ke, 0.0).sum().backward()
        kt.where(torch.tensor(fin), 0.0).sum().backward()
        for k in kp:
            # torch's gradient is nan at Pareto's alpha == 1 (it divides by alpha - 1
            # before masking); ours stays finite there, and equal elsewhere.
            ge, gt = to_np(ekp[k].grad), tkp[k].grad.numpy()
            assert np.isfinite(ge).all()
            ok = np.isfinite(gt)
            np.testing.assert_allclose(ge[ok], gt[ok], rtol=1e-7, atol=1e-10)


def test_validation_errors_match_torch():
    torch = pytest.importorskip("torch")
    checks = [
        (lambda m: m.distributions.LogNormal(m.tensor([0.0]), m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.HalfNormal(m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.Cauchy(m.tensor([0.0]), m.tensor([0.0])), ValueError),
        (lambda m: m.distributions.Dirichlet(m.tensor([1.0, -1.0])), ValueError),
        (lambda m: m.distributions.Dirichlet(m.tensor(1.0)), ValueError),
        (lambda m: m.distributions.Poisson(m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.Binomial(m.tensor([1.5]), probs=m.tensor([0.5])), ValueError),
        (lambda m: m.distributions.Binomial(10), ValueError),
        (lambda m: m.distributions.Geometric(probs=m.tensor([0.0])), ValueError),
        (lambda m: m.distributions.StudentT(m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.Weibull(m.tensor([1.0]), m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.Multinomial(1.5, probs=m.tensor([0.5, 0.5])),
         NotImplementedError),
        (lambda m: m.distributions.Pareto(m.tensor([2.0]), m.tensor([1.0])).log_prob(
            m.tensor([1.0])), ValueError),
        (lambda m: m.distributions.Poisson(m.tensor([1.0])).log_prob(m.tensor([0.5])),
         ValueError),
        (lambda m: m.distributions.Dirichlet(m.tensor([1.0, 1.0])).log_prob(
            m.tensor([0.5, 0.6])), ValueError),
        (lambda m: m.distributions.LogNormal(0.0, 1.0).log_prob(m.tensor([-1.0])), ValueError),
        (lambda m: m.distributions.TransformedDistribution(
            m.distributions.Normal(0.0, 1.0), [1]), ValueError),
    ]
    saved = torch.distributions.Distribution._validate_args, D.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    D.Distribution.set_default_validate_args(True)
    try:
        for make, err in checks:
            with pytest.raises(err) as e:
                make(ember)
            with pytest.raises(err) as t:
                make(torch)
            head = lambda x: str(x.value).split("invalid values")[0].split("tensor(")[0]  # noqa
            assert head(e).replace("ember.", "torch.") == head(t)
    finally:
        torch.distributions.Distribution.set_default_validate_args(saved[0])
        D.Distribution.set_default_validate_args(saved[1])


def test_compiled_equals_eager():
    """A loss built from the new families (log_prob of a parameter, a KL, an rsample)
    compiled by ember.compile: the same values and gradients as eagerly, and the same
    draws (Poisson's and Binomial's sampling ops included) from the same seed."""
    w = ember.tensor(rng.standard_normal((3,)), dtype=ember.float32, requires_grad=True)

    def loss(x, conc):
        scale = w.exp()
        lp = D.LogNormal(w, scale).log_prob(x).sum()
        lp = lp + D.StudentT(3.0, w, scale).log_prob(x).sum()
        lp = lp + D.Dirichlet(conc * scale.sum()).log_prob(conc / conc.sum()).sum()
        kl = D.kl_divergence(D.Gumbel(w, scale), D.Gumbel(0.0, 1.0)).sum()
        z = D.Weibull(scale, 2.0).rsample((4,)).mean()
        counts = D.Poisson(scale * 3).sample((2,)) + D.Binomial(5, probs=scale.sigmoid()).sample()
        return -lp + kl + z, counts

    x = ember.tensor(rng.uniform(0.5, 2, (5, 3)), dtype=ember.float32)
    conc = ember.tensor([1.0, 2.0, 3.0])
    # One graph: validation checks and the sampling ops are recorded, not graph breaks.
    assert "0 graph break(s)" in str(ember.explain(loss, x, conc)).splitlines()[0]
    closs = ember.compile(loss)
    results = []
    for fn in (loss, closs, closs):
        ember.manual_seed(4)
        w.grad = None
        value, counts = fn(x, conc)
        value.backward()
        results.append((to_np(value), to_np(counts), to_np(w.grad).copy()))
    for value, counts, grad in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-5)
        np.testing.assert_array_equal(counts, results[0][1])
        np.testing.assert_allclose(grad, results[0][2], rtol=1e-4, atol=1e-6)


def test_checks_inside_compile_are_recorded_and_raise_as_eagerly():
    def f(p, q):
        kl = D.kl_divergence(D.Binomial(ember.tensor([5.0]), probs=p),
                             D.Binomial(ember.tensor([5.0]), probs=q))
        return D.Geometric(probs=p).log_prob(ember.tensor([2.0])) + kl
    a, b = ember.tensor([0.3]), ember.tensor([0.6])
    assert "0 graph break(s)" in str(ember.explain(f, a, b)).splitlines()[0]
    cf = ember.compile(f)
    np.testing.assert_allclose(to_np(cf(a, b)), to_np(f(a, b)), rtol=1e-6)
    with pytest.raises(ValueError, match="to be positive"):   # Geometric's own check
        cf(ember.tensor([0.0]), b)
    np.testing.assert_allclose(to_np(cf(b, a)), to_np(f(b, a)), rtol=1e-6)


NEW_MODULES = ["transforms", "transformed_distribution", "constraint_registry", "log_normal",
               "half_normal", "cauchy", "gumbel", "weibull", "pareto", "chi2", "student_t",
               "dirichlet", "poisson", "binomial", "geometric", "multinomial",
               "relaxed_bernoulli", "relaxed_categorical", "one_hot_categorical",
               "mixture_same_family"]


@pytest.mark.parametrize("name", NEW_MODULES)
def test_docstring_examples(name):
    import doctest
    import importlib
    mod = importlib.import_module(f"ember.distributions.{name}")
    result = doctest.testmod(mod, extraglobs={"ember": ember},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_sampling_ops_on_the_cuda_standin():
    """The new random ops (Poisson's, Binomial's) and Dirichlet's gamma draws take their
    CuPy path on a "cuda" device (the NumPy-backed CuPy stand-in, strict like CuPy)."""
    import cupy_standin
    with cupy_standin.installed():
        dev = ember.device("cuda")
        ember.manual_seed(0)
        n = 4000
        p = D.Poisson(ember.full((3,), 4.0, device=dev)).sample((n,))
        b = D.Binomial(10, probs=ember.full((3,), 0.3, device=dev)).sample((n,))
        m = D.Multinomial(5, probs=ember.tensor([0.2, 0.8], device=dev)).sample((n,))
        conc = ember.tensor([1.0, 2.0, 3.0], device=dev, requires_grad=True)
        x = D.Dirichlet(conc).rsample((n,))
        x[:, 0].mean().backward()
        for s in (p, b, m, x):
            assert s.device.type == "cuda"
        assert np.all(np.abs(to_np(p).mean(0) - 4.0) < 6 * np.sqrt(4.0 / n))
        assert np.all(np.abs(to_np(b).mean(0) - 3.0) < 6 * np.sqrt(2.1 / n))
        assert np.all(np.abs(to_np(m).mean(0) - [1.0, 4.0]) < 6 * np.sqrt(0.8 / n))
        np.testing.assert_allclose(to_np(conc.grad), np.array([5.0, -1.0, -1.0]) / 36,
                                   atol=0.02)


def test_top_level_poisson_and_binomial():
    """torch.poisson / torch.binomial: draws in the input's dtype, with the moments."""
    ember.manual_seed(3)
    r = ember.poisson(ember.full((20000,), 3.0))
    assert r.dtype == ember.float32 and abs(float(r.mean()) - 3.0) < 0.08
    b = ember.binomial(ember.full((20000,), 10.0), ember.full((20000,), 0.3),
                       generator=ember.Generator().manual_seed(1))
    assert abs(float(b.mean()) - 3.0) < 0.06 and abs(float(b.var()) - 2.1) < 0.12
    assert float(b.min()) >= 0 and float(b.max()) <= 10
