"""ember/nn/modules_extra.py and _functional/extra.py against torch: values, input
gradients, one compiled call sequence each."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(3)


def _a(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = {
    "Hardshrink": (lambda L: L.nn.Hardshrink(0.4), [_a(3, 5)]),
    "Softshrink": (lambda L: L.nn.Softshrink(0.3), [_a(3, 5)]),
    "RReLU_eval": (lambda L: L.nn.RReLU(0.1, 0.3).eval(), [_a(3, 5)]),
    "Softmax2d": (lambda L: L.nn.Softmax2d(), [_a(2, 3, 4, 4)]),
    "LocalResponseNorm": (lambda L: L.nn.LocalResponseNorm(3, 1e-2, 0.75, 2.0), [_a(2, 6, 3, 3)]),
    "LocalResponseNorm_even": (lambda L: L.nn.LocalResponseNorm(4), [_a(2, 5, 7)]),
    "CrossMapLRN2d": (lambda L: L.nn.CrossMapLRN2d(5, 1e-3), [_a(1, 7, 2, 2)]),
    "ChannelShuffle": (lambda L: L.nn.ChannelShuffle(3), [_a(2, 6, 2, 2)]),
    "MultiLabelSoftMarginLoss": (lambda L: L.nn.MultiLabelSoftMarginLoss(
        weight=L.tensor(np.linspace(0.5, 1.5, 4).astype(np.float32))),
        [_a(3, 4), (RNG.random((3, 4)) > 0.5).astype(np.float32)]),
    "MultiMarginLoss": (lambda L: L.nn.MultiMarginLoss(margin=0.7),
                        [_a(4, 5), np.array([0, 3, 4, 1])]),
    "MultiMarginLoss_p2_w": (lambda L: L.nn.MultiMarginLoss(
        p=2, weight=L.tensor(np.arange(1, 6, dtype=np.float32)), reduction="sum"),
        [_a(4, 5), np.array([0, 3, 4, 1])]),
    "MultiLabelMarginLoss": (lambda L: L.nn.MultiLabelMarginLoss(),
                             [_a(3, 4), np.array([[3, 0, -1, 1], [1, 2, 3, 0], [-1, 2, 1, 0]])]),
    "TripletMarginLoss": (lambda L: L.nn.TripletMarginLoss(margin=0.5, swap=True),
                          [_a(4, 6), _a(4, 6), _a(4, 6)]),
    "TripletMarginWithDistanceLoss": (lambda L: L.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda a, b: (a - b).abs().sum(-1), margin=2.0),
        [_a(4, 6), _a(4, 6), _a(4, 6)]),
}


@pytest.mark.parametrize("name", CASES)
def test_module_matches_torch(name):
    make, arrays = CASES[name]
    me, mt = make(ember), make(torch)
    te = [ember.tensor(a, requires_grad=a.dtype.kind == "f" and i == 0)
          for i, a in enumerate(arrays)]
    tt = [torch.tensor(a, requires_grad=a.dtype.kind == "f" and i == 0)
          for i, a in enumerate(arrays)]
    oe, ot = me(*te), mt(*tt)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = _a(*ot.shape) if ot.ndim else np.float32(1.3)
    (oe * ember.tensor(g)).sum().backward()
    (ot * torch.tensor(g)).sum().backward()
    if name == "CrossMapLRN2d":   # torch's hand-written backward is not its forward's
        _finite_differences(me, arrays[0], g)   # gradient (symmetric windows): check ours
    else:
        np.testing.assert_allclose(te[0].grad.numpy(), tt[0].grad.numpy(), rtol=1e-4,
                                   atol=1e-6)
    compiled = ember.compile(me)
    for _ in range(3):
        out = compiled(*[t.detach() for t in te])
    np.testing.assert_allclose(out.numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_max_unpool_inverts_max_pool_as_torch():
    a = _a(2, 3, 6, 6)
    pe, ie = ember.nn.MaxPool2d(2, return_indices=True)(ember.tensor(a))
    pt, it = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(a))
    ue = ember.nn.MaxUnpool2d(2)(pe, ie)
    ut = torch.nn.MaxUnpool2d(2)(pt, it)
    np.testing.assert_array_equal(ue.numpy(), ut.numpy())
    b = _a(2, 3, 8)
    pe, ie = ember.nn.MaxPool1d(2, return_indices=True)(ember.tensor(b))
    pt, it = torch.nn.MaxPool1d(2, return_indices=True)(torch.tensor(b))
    np.testing.assert_array_equal(ember.nn.MaxUnpool1d(2)(pe, ie).numpy(),
                                  torch.nn.MaxUnpool1d(2)(pt, it).numpy())
    out = ember.nn.functional.max_unpool2d(pe.unsqueeze(-2), ie.unsqueeze(-2), (1, 2),
                                           output_size=(1, 9))
    assert out.shape == (2, 3, 1, 9)


def test_rrelu_training_draws_slopes_in_range():
    ember.manual_seed(0)
    x = -ember.ones(10000)
    y = ember.nn.RReLU(0.1, 0.3).train()(x)
    s = -y.numpy()
    assert s.min() >= 0.1 and s.max() <= 0.3 and abs(s.mean() - 0.2) < 0.005
    assert ember.nn.RReLU().eval()(ember.tensor([2.0])).item() == 2.0


def _finite_differences(module, a, g, h=1e-4):
    x = ember.tensor(a.astype(np.float64), requires_grad=True)
    (module(x) * ember.tensor(g.astype(np.float64))).sum().backward()
    flat = a.astype(np.float64).reshape(-1)
    fd = np.empty_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        f = lambda v: float((module(ember.tensor(v.reshape(a.shape))).numpy() * g).sum())  # noqa
        fd[i] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy().reshape(-1), fd, rtol=1e-5, atol=1e-7)
