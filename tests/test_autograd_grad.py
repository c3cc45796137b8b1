"""``ember.autograd.grad``: gradients returned, not accumulated, against torch."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")
rng = np.random.default_rng(0)


def _pair(*shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _close(got, want, rtol=1e-5):
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=rtol, atol=1e-6)


def test_grad_matches_torch_and_leaves_dot_grad_alone():
    (xe, xt), (we, wt) = _pair(4, 3), _pair(3)
    ge = ember.autograd.grad(((xe * we).sin() ** 2).sum(), (xe, we))
    gt = torch.autograd.grad(((xt * wt).sin() ** 2).sum(), (xt, wt))
    for a, b in zip(ge, gt):
        _close(a, b)
    assert xe.grad is None and we.grad is None
    single = ember.autograd.grad((xe * 2).sum(), xe)
    assert isinstance(single, tuple) and len(single) == 1


def test_several_outputs_grad_outputs_and_non_leaf_inputs():
    (xe, xt), = [_pair(5)]
    he, ht = xe.exp(), xt.exp()          # a non-leaf input
    ye, yt = he * 3, ht * 3
    ze, zt = he.sum(), ht.sum()
    seed = rng.standard_normal(5).astype(np.float32)
    ge = ember.autograd.grad([ye, ze], [he, xe], [ember.tensor(seed), None])
    gt = torch.autograd.grad([yt, zt], [ht, xt], [torch.tensor(seed), None])
    for a, b in zip(ge, gt):
        _close(a, b)


def test_gradient_penalty_with_create_graph_trains_like_torch():
    """A WGAN-GP style penalty: the gradient of the critic's output with respect to its
    input, itself differentiated with respect to the critic's weights."""
    ember.manual_seed(0)
    ce = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    ct = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        for pe, pt in zip(ce.parameters(), ct.parameters()):
            pt.copy_(torch.tensor(pe.detach().numpy()))
    (xe, xt), = [_pair(6, 3)]
    for c, x, lib in ((ce, xe, ember), (ct, xt, torch)):
        out = c(x)
        g, = lib.autograd.grad(out.sum(), x, create_graph=True)
        penalty = ((g.norm(2, dim=1) - 1) ** 2).mean()
        penalty.backward()
    for pe, pt in zip(ce.parameters(), ct.parameters()):
        if pt.grad is None:   # the last bias does not reach the input gradient
            assert pe.grad is None
        else:
            _close(pe.grad, pt.grad, rtol=1e-4)


def test_deprecated_only_inputs_is_accepted():
    """PyTorch-GAN's WGAN-GP passes only_inputs=True (deprecated, ignored by torch)."""
    x = ember.ones(3, requires_grad=True)
    (g,) = ember.autograd.grad((x * x).sum(), x, only_inputs=True)
    assert g.tolist() == [2.0, 2.0, 2.0]


def test_errors_and_unused_inputs_as_torch():
    (xe, _), (ue, _) = _pair(3), _pair(3)
    y = (xe * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        ember.autograd.grad(y, [xe, ue], retain_graph=True)
    gx, gu = ember.autograd.grad(y, [xe, ue], allow_unused=True, retain_graph=True)
    assert gu is None
    gx, gu = ember.autograd.grad(y, [xe, ue], materialize_grads=True, retain_graph=True)
    np.testing.assert_array_equal(gu.numpy(), np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="does not require grad"):
        ember.autograd.grad(y, ember.ones(3))
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        ember.autograd.grad(xe * 2, xe)
    ember.autograd.grad(y, xe)   # frees the graph (retain_graph defaults to create_graph)
    with pytest.raises(RuntimeError, match="second time"):
        ember.autograd.grad(y, xe)


def test_grad_through_a_compiled_model_and_inside_a_compiled_step():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    cm = ember.compile(m)
    x = ember.randn(5, 3, requires_grad=True)
    want, = ember.autograd.grad(m(x).sum(), x)
    for _ in range(3):
        got, = ember.autograd.grad(cm(x).sum(), x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)

    def penalty(x):
        g, = ember.autograd.grad(m(x).sum(), x, create_graph=True)
        return (g ** 2).sum()

    step = ember.compile(penalty)
    for _ in range(3):
        xi = ember.randn(5, 3, requires_grad=True)
        np.testing.assert_allclose(float(step(xi)), float(penalty(xi)), rtol=1e-5)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "exp", "sqrt", "softmax", "log_softmax"])
def test_second_derivatives_through_ops_whose_gradient_reads_their_output(name):
    """create_graph: tanh's gradient 1 - out**2 must be differentiated through out.
    The saved output was detached, so the second derivative lost those terms (or the
    first gradient did not require grad at all)."""
    a = rng.uniform(0.2, 2.0, 5).astype(np.float32)
    w = np.arange(5, dtype=np.float32)
    got = []
    for lib in (ember, torch):
        x = lib.tensor(a, requires_grad=True)
        f = (lambda t: getattr(t, name)(0)) if "softmax" in name else getattr(lib.Tensor, name)
        y = (f(x) * lib.tensor(w)).sum()
        g, = lib.autograd.grad(y, x, create_graph=True)
        (g ** 3).sum().backward()   # backward(create_graph) paths differentiate the same
        got.append(x.grad)
    _close(got[0], got[1], rtol=1e-4)


def test_autograd_functional_matches_torch():
    """torch.autograd.functional (torchdiffeq imports vjp from it): vjp, jvp, jacobian
    (several inputs and outputs), hessian, vhp, hvp against torch in float64; and the
    torch import paths ember.autograd.functional / .function."""
    import importlib
    assert importlib.import_module("ember.autograd.functional").vjp
    assert importlib.import_module("ember.autograd.function").Function is ember.autograd.Function
    rng = np.random.default_rng(0)
    a, m, v = rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal(3)
    x = ember.tensor(a)
    F = ember.autograd.functional
    W = ember.tensor(m)

    def f(x):
        return (W @ x).tanh()

    def s(x):
        return ((W @ x).tanh() ** 2).sum()

    jac = F.jacobian(f, x)
    want = (1 - np.tanh(m @ a) ** 2)[:, None] * m
    np.testing.assert_allclose(jac.numpy(), want, rtol=1e-12)
    _, g = F.vjp(f, x, ember.tensor(v))
    np.testing.assert_allclose(g.numpy(), v @ want, rtol=1e-12)
    _, jv = F.jvp(f, x, ember.tensor(v))
    np.testing.assert_allclose(jv.numpy(), want @ v, rtol=1e-12)
    torch = pytest.importorskip("torch")
    T = torch.autograd.functional
    Wt = torch.tensor(m)
    h = F.hessian(s, x).numpy()
    np.testing.assert_allclose(h, T.hessian(lambda x: ((Wt @ x).tanh() ** 2).sum(),
                                            torch.tensor(a)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(F.hvp(s, x, ember.tensor(v))[1].numpy(), h @ v, rtol=1e-10)
    both = F.jacobian(lambda x, y: (x * y.sin(), (x + y).sum()), (x, ember.tensor(v)))
    assert len(both) == 2 and len(both[0]) == 2 and both[1][0].shape == (3,)


def test_backward_of_a_list_of_roots_is_one_pass_as_torch():
    """torch.autograd.backward([a, b], [ga, gb]) raised AttributeError: a tensor reached
    from both roots gets its hook once, with the summed gradient."""
    b = ember.tensor([1.0, 2.0], requires_grad=True)
    y = b * 3
    calls = []
    y.register_hook(lambda g: calls.append(g.tolist()) or g.clamp(max=1.5))
    ember.autograd.backward([(y * y).sum(), y.sum()])
    assert calls == [[7.0, 13.0]] and b.grad.tolist() == [4.5, 4.5]
    c = ember.tensor([1.0, 2.0], requires_grad=True)
    ember.autograd.backward((c * 2, c.sum()), (ember.tensor([1.0, 0.5]), None))
    assert c.grad.tolist() == [3.0, 2.0]
    with pytest.raises(RuntimeError, match="2 tensors"):
        ember.autograd.backward([c.sum(), c.sum()], [None])
