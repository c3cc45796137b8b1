"""weight_norm, spectral_norm and parametrize against torch, NumPy and finite differences."""
import warnings

import numpy as np
import pytest

import ember
from conftest import compiled_steps_agree
import ember.nn as nn
from ember.nn.utils import parametrize


def _np(t):
    return t.detach().numpy()


def _load_from_torch(em, tm):
    missing = em.load_state_dict({k: ember.tensor(v.detach().numpy())
                                  for k, v in tm.state_dict().items()})
    assert not missing.missing_keys and not missing.unexpected_keys


def test_weight_norm_numpy():
    with pytest.warns(FutureWarning, match="deprecated"):
        m = nn.utils.weight_norm(nn.Linear(3, 4))
    v = _np(m.weight_v)
    np.testing.assert_allclose(_np(m.weight_g)[:, 0], np.linalg.norm(v, axis=1), rtol=1e-6)
    with ember.no_grad():
        m.weight_g.mul_(2.0)
    x = ember.randn(2, 3)
    out = m(x)
    w = 2 * v                      # g doubled, v unchanged: w = 2 v
    np.testing.assert_allclose(_np(out), _np(x) @ w.T + _np(m.bias), rtol=1e-5, atol=1e-6)
    nn.utils.remove_weight_norm(m)
    assert sorted(m.state_dict()) == ["bias", "weight"]
    np.testing.assert_allclose(_np(m.weight), w, rtol=1e-5)
    with pytest.raises(ValueError, match="weight_norm of 'weight' not found"):
        nn.utils.remove_weight_norm(m)


@pytest.mark.parametrize("dim", [0, 1, None])
@pytest.mark.parametrize("new", [False, True])
def test_weight_norm_matches_torch(dim, new):
    torch = pytest.importorskip("torch")
    tw = torch.nn.utils.parametrizations.weight_norm if new else torch.nn.utils.weight_norm
    ew = nn.utils.parametrizations.weight_norm if new else nn.utils.weight_norm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tm = tw(torch.nn.Conv2d(2, 3, 3), dim=dim)
        em = ew(nn.Conv2d(2, 3, 3), dim=dim)
    assert list(em.state_dict()) == list(tm.state_dict())
    _load_from_torch(em, tm)
    x = np.random.RandomState(0).randn(2, 2, 5, 5).astype(np.float32)
    tout, eout = tm(torch.tensor(x)), em(ember.tensor(x))
    np.testing.assert_allclose(_np(eout), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    (tout ** 2).sum().backward()
    (eout ** 2).sum().backward()
    for (k, tp), (k2, ep) in zip(tm.named_parameters(), em.named_parameters()):
        assert k == k2
        np.testing.assert_allclose(_np(ep.grad), tp.grad.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=k)


def test_weight_norm_finite_differences():
    m = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2, bias=False))
    x = ember.randn(4, 3, dtype=ember.float64)
    m.double()
    g = m.parametrizations.weight.original0
    (m(x) ** 2).sum().backward()
    analytic = _np(g.grad).copy()
    eps = 1e-6
    for i in range(2):
        with ember.no_grad():
            g[i, 0] += eps
            up = (m(x) ** 2).sum().item()
            g[i, 0] -= 2 * eps
            down = (m(x) ** 2).sum().item()
            g[i, 0] += eps
        np.testing.assert_allclose(analytic[i, 0], (up - down) / (2 * eps), rtol=1e-5)


@pytest.mark.parametrize("new", [False, True])
@pytest.mark.parametrize("mod", ["linear", "convT"])
def test_spectral_norm_matches_torch(new, mod):
    torch = pytest.importorskip("torch")
    ts = torch.nn.utils.parametrizations.spectral_norm if new else torch.nn.utils.spectral_norm
    es = nn.utils.parametrizations.spectral_norm if new else nn.utils.spectral_norm
    if mod == "linear":
        tm, em = ts(torch.nn.Linear(5, 4), n_power_iterations=2), \
            es(nn.Linear(5, 4), n_power_iterations=2)
        shape = (3, 5)
    else:
        tm, em = ts(torch.nn.ConvTranspose2d(3, 2, 3)), es(nn.ConvTranspose2d(3, 2, 3))
        shape = (1, 3, 4, 4)
    assert list(em.state_dict()) == list(tm.state_dict())
    _load_from_torch(em, tm)
    rs = np.random.RandomState(1)
    for step in range(3):                    # training: u, v move each forward
        x = rs.randn(*shape).astype(np.float32)
        tout, eout = tm(torch.tensor(x)), em(ember.tensor(x))
        np.testing.assert_allclose(_np(eout), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
        tout.sum().backward()
        eout.sum().backward()
    for (k, tp), (_, ep) in zip(tm.named_parameters(), em.named_parameters()):
        np.testing.assert_allclose(_np(ep.grad), tp.grad.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=k)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(_np(em.state_dict()[k]), v.numpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=k)
    tm.eval()
    em.eval()
    before = {k: _np(v).copy() for k, v in em.state_dict().items()}
    x = rs.randn(*shape).astype(np.float32)
    np.testing.assert_allclose(_np(em(ember.tensor(x))), tm(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    for k, v in em.state_dict().items():              # eval: the buffers stay
        np.testing.assert_array_equal(_np(v), before[k])


def test_spectral_norm_sigma_numpy():
    """After many iterations the weight's largest singular value is 1."""
    m = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 4), n_power_iterations=50)
    m(ember.randn(1, 6))
    np.testing.assert_allclose(np.linalg.svd(_np(m.weight), compute_uv=False)[0], 1.0,
                               rtol=1e-4)
    m2 = nn.utils.spectral_norm(nn.Linear(6, 4), n_power_iterations=50)
    m2(ember.randn(1, 6))
    np.testing.assert_allclose(np.linalg.svd(_np(m2.weight), compute_uv=False)[0], 1.0,
                               rtol=1e-4)
    nn.utils.remove_spectral_norm(m2)
    assert sorted(m2.state_dict()) == ["bias", "weight"]


class _Symmetric(nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(0, 1)

    def right_inverse(self, a):
        return a.triu()


class _Double(nn.Module):
    def forward(self, x):
        return 2 * x

    def right_inverse(self, a):
        return a / 2


def test_parametrize_register_remove():
    m = nn.Linear(3, 3)
    p0 = m.weight
    parametrize.register_parametrization(m, "weight", _Symmetric())
    assert type(m).__name__ == "ParametrizedLinear" and isinstance(m, nn.Linear)
    assert parametrize.is_parametrized(m) and parametrize.is_parametrized(m, "weight")
    assert not parametrize.is_parametrized(m, "bias")
    assert m.parametrizations.weight.original is p0      # the same Parameter object
    w = _np(m.weight)
    np.testing.assert_array_equal(w, w.T)
    parametrize.register_parametrization(m, "weight", _Double())
    np.testing.assert_allclose(_np(m.weight), 2 * w)
    sym = np.arange(9, dtype=np.float32).reshape(3, 3)
    sym = sym + sym.T
    m.weight = ember.tensor(sym)                          # through both right_inverses
    np.testing.assert_allclose(_np(m.weight), sym, rtol=1e-6)
    with parametrize.cached():
        assert m.weight is m.weight
    assert m.weight is not m.weight
    parametrize.remove_parametrizations(m, "weight")
    assert type(m) is nn.Linear and not hasattr(m, "parametrizations")
    assert m.weight is p0
    np.testing.assert_allclose(_np(m.weight), sym, rtol=1e-6)
    with pytest.raises(ValueError, match="does not have a parametrization"):
        parametrize.remove_parametrizations(m, "weight")
    with pytest.raises(ValueError, match="does not have a parameter"):
        parametrize.register_parametrization(m, "nope", _Double())
    other = nn.Linear(3, 3)
    assert not hasattr(other, "parametrizations") and type(other) is nn.Linear


def test_parametrize_shape_check_and_gradient():
    class Bad(nn.Module):
        def forward(self, x):
            return x[:1]
    with pytest.raises(ValueError, match="may not change the shape"):
        parametrize.register_parametrization(nn.Linear(3, 3), "weight", Bad())
    m = parametrize.register_parametrization(nn.Linear(3, 3), "weight", _Symmetric())
    x = ember.randn(2, 3)
    m(x).sum().backward()
    g = _np(m.parametrizations.weight.original.grad)
    # d/dW of sum(x W^T) is the column sums of x broadcast; symmetrized onto the triangle.
    base = np.tile(_np(x).sum(0), (3, 1))
    want = np.triu(base) + np.tril(base, -1).T
    np.testing.assert_allclose(g, want, rtol=1e-5)


def test_parametrize_matches_torch_state_dict():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import parametrize as tparam

    class TSym(torch.nn.Module):
        def forward(self, x):
            return x.triu() + x.triu(1).transpose(0, 1)

    tm = tparam.register_parametrization(torch.nn.Linear(3, 3), "weight", TSym())
    em = parametrize.register_parametrization(nn.Linear(3, 3), "weight", _Symmetric())
    assert list(em.state_dict()) == list(tm.state_dict())
    _load_from_torch(em, tm)
    np.testing.assert_allclose(_np(em.weight), tm.weight.detach().numpy())


@pytest.mark.parametrize("which", ["weight_norm", "p_weight_norm", "spectral_norm",
                                   "p_spectral_norm"])
def test_compiled_training_step_equals_eager(which):
    def make():
        ember.manual_seed(0)
        fn = {"weight_norm": nn.utils.weight_norm,
              "p_weight_norm": nn.utils.parametrizations.weight_norm,
              "spectral_norm": nn.utils.spectral_norm,
              "p_spectral_norm": nn.utils.parametrizations.spectral_norm}[which]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return nn.Sequential(fn(nn.Linear(4, 5)), nn.Tanh(), nn.Linear(5, 1))
    compiled_steps_agree(make, lambda m, x: (m(x) ** 2).mean(), (ember.randn(6, 4),))


# ---- orthogonal ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,orth_map,triv", [
    ((4, 4), None, True), ((5, 3), None, True), ((3, 5), None, True),
    ((4, 4), "householder", True), ((5, 3), "matrix_exp", True),
    ((5, 3), "householder", False), ((4, 4), "householder", False)])
def test_orthogonal_matches_torch(shape, orth_map, triv):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.parametrizations import orthogonal as torch_orthogonal
    torch.manual_seed(0)
    tm = torch_orthogonal(torch.nn.Linear(shape[1], shape[0]), orthogonal_map=orth_map,
                          use_trivialization=triv)
    em = nn.utils.parametrizations.orthogonal(nn.Linear(shape[1], shape[0]),
                                              orthogonal_map=orth_map, use_trivialization=triv)
    assert list(em.state_dict()) == list(tm.state_dict())
    with torch.no_grad():                      # away from the identity: a non-trivial map
        tm.parametrizations.weight.original.add_(torch.randn(shape) * 0.3)
    _load_from_torch(em, tm)
    tw, ew = tm.weight, em.weight
    np.testing.assert_allclose(_np(ew), tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    (tw ** 3).sum().backward()
    (ew ** 3).sum().backward()
    np.testing.assert_allclose(_np(em.parametrizations.weight.original.grad),
                               tm.parametrizations.weight.original.grad.numpy(),
                               rtol=1e-4, atol=1e-5)


def test_orthogonal_numpy_properties():
    rs = np.random.RandomState(0)
    for shape in [(4, 4), (6, 3), (3, 6)]:
        m = nn.utils.parametrizations.orthogonal(nn.Linear(shape[1], shape[0]))
        # Off the diagonal: householder reads the diagonal's integer part as signs (torch's
        # map; its gradient there is zero, so training never moves it).
        noise = rs.randn(*shape)
        noise[np.arange(min(shape)), np.arange(min(shape))] = 0
        with ember.no_grad():
            m.parametrizations.weight.original.add_(ember.tensor(noise.astype(np.float32)))
        w = _np(m.weight).astype(np.float64)
        gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
        np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-5)
        q = np.linalg.qr(rs.randn(max(shape), min(shape)))[0].astype(np.float32)
        q = q if shape[0] >= shape[1] else q.T
        m.weight = ember.tensor(q)                     # through right_inverse
        np.testing.assert_allclose(_np(m.weight), q, atol=1e-5)
    with pytest.raises(ValueError, match="orthogonal_map has to be one of"):
        nn.utils.parametrizations.orthogonal(nn.Linear(2, 2), orthogonal_map="qr")
    with pytest.raises(ValueError, match="Expected a matrix"):
        nn.utils.parametrizations.orthogonal(nn.Linear(2, 2), "bias")


@pytest.mark.parametrize("orth_map", ["matrix_exp", "householder"])
def test_orthogonal_compiled_step_equals_eager(orth_map):
    def make():
        return nn.Sequential(nn.utils.parametrizations.orthogonal(
            nn.Linear(4, 4), orthogonal_map=orth_map), nn.Tanh(), nn.Linear(4, 1))
    compiled_steps_agree(make, lambda m, x: (m(x) ** 2).mean(), (ember.randn(6, 4),))


def test_parametrized_deepcopy():
    import copy
    import pickle
    m = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))
    m2 = copy.deepcopy(m)
    assert type(m2).__name__ == "ParametrizedLinear" and type(m2) is not type(m)
    np.testing.assert_array_equal(_np(m2.weight), _np(m.weight))
    with ember.no_grad():
        m2.parametrizations.weight.original0.mul_(2.0)
    np.testing.assert_allclose(_np(m2.weight), 2 * _np(m.weight), rtol=1e-6)
    parametrize.remove_parametrizations(m2, "weight")
    assert type(m2) is nn.Linear and parametrize.is_parametrized(m, "weight")
    np.testing.assert_allclose(_np(m2.weight), 2 * _np(m.weight), rtol=1e-6)
    with pytest.raises(RuntimeError, match="only supported through state_dict"):
        pickle.dumps(m)
