"""ember.nn: modules, functional forms, init, and the Module API.

Layers are compared with torch.nn (same weights via load_state_dict) on outputs and on
the gradients of inputs and parameters; NumPy references and float64 finite differences
check the core layers whether or not torch is installed.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from conftest import assert_close, check_grad_fd

RTOL, ATOL = 1e-4, 1e-5


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return rng(seed).standard_normal(shape).astype(dtype)


# ---- helpers comparing with torch ---------------------------------------------------------

def copy_weights(module: nn.Module, tmodule) -> None:
    """Load ember's parameters and buffers into a torch module (strict: names must agree)."""
    import torch

    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in module.state_dict().items()}
    tmodule.load_state_dict(state)


def compare_module(module: nn.Module, tmodule, *inputs, grad: bool = True, rtol=RTOL,
                   atol=ATOL, copy: bool = True) -> None:
    """Same weights, same NumPy inputs: outputs, input gradients, parameter gradients and
    buffers (running statistics) of ember and torch agree."""
    import torch

    if copy:
        copy_weights(module, tmodule)
    e_in = [ember.tensor(x, requires_grad=grad and x.dtype.kind == "f") for x in inputs]
    t_in = [torch.tensor(x, requires_grad=grad and x.dtype.kind == "f") for x in inputs]
    out, tout = module(*e_in), tmodule(*t_in)
    assert_close(out, tout, rtol, atol)
    if grad:
        cot = rng(99).uniform(0.5, 1.5, size=tuple(tout.shape)).astype(np.float32)
        (out * ember.tensor(cot)).sum().backward()
        (tout * torch.tensor(cot)).sum().backward()
        for e, t in zip(e_in, t_in):
            if t.grad is not None:
                assert_close(e.grad, t.grad, rtol, atol)
        tparams = dict(tmodule.named_parameters())
        for name, p in module.named_parameters():
            assert_close(p.grad, tparams[name].grad, rtol, atol)
    tbufs = dict(tmodule.named_buffers())
    for name, b in module.named_buffers():
        assert_close(b, tbufs[name], rtol, atol)


# ---- layers against torch -----------------------------------------------------------------

LAYERS = [
    ("linear", lambda m: m.Linear(4, 3), [(2, 4)]),
    ("linear_nobias_3d", lambda m: m.Linear(4, 3, bias=False), [(2, 5, 4)]),
    ("conv", lambda m: m.Conv2d(3, 4, 3), [(2, 3, 7, 6)]),
    ("conv_stride_pad", lambda m: m.Conv2d(2, 4, (3, 2), stride=2, padding=1), [(2, 2, 8, 7)]),
    ("conv_dilation_nobias", lambda m: m.Conv2d(2, 3, 3, dilation=2, bias=False), [(1, 2, 9, 9)]),
    ("conv_groups", lambda m: m.Conv2d(4, 6, 3, padding=1, groups=2), [(2, 4, 5, 5)]),
    ("conv_same", lambda m: m.Conv2d(2, 3, 3, padding="same"), [(1, 2, 5, 6)]),
    ("conv_unbatched", lambda m: m.Conv2d(2, 3, 3), [(2, 6, 6)]),
    ("maxpool", lambda m: m.MaxPool2d(2), [(2, 3, 6, 6)]),
    ("maxpool_stride_pad", lambda m: m.MaxPool2d(3, stride=2, padding=1), [(2, 2, 7, 8)]),
    ("maxpool_dilation", lambda m: m.MaxPool2d(2, stride=1, dilation=2), [(1, 2, 6, 6)]),
    ("avgpool", lambda m: m.AvgPool2d(2), [(2, 3, 6, 6)]),
    ("avgpool_pad", lambda m: m.AvgPool2d(3, stride=2, padding=1), [(2, 2, 7, 8)]),
    ("avgpool_nopadcount", lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), [(1, 2, 7, 7)]),
    ("avgpool_divisor", lambda m: m.AvgPool2d(2, divisor_override=3), [(1, 2, 4, 4)]),
    ("adaptive_avg_1", lambda m: m.AdaptiveAvgPool2d(1), [(2, 3, 5, 5)]),
    ("adaptive_avg_uneven", lambda m: m.AdaptiveAvgPool2d((2, 3)), [(2, 3, 5, 7)]),
    ("relu", lambda m: m.ReLU(), [(3, 5)]),
    ("leaky_relu", lambda m: m.LeakyReLU(0.2), [(3, 5)]),
    ("gelu", lambda m: m.GELU(), [(3, 5)]),
    ("gelu_tanh", lambda m: m.GELU(approximate="tanh"), [(3, 5)]),
    ("silu", lambda m: m.SiLU(), [(3, 5)]),
    ("sigmoid", lambda m: m.Sigmoid(), [(3, 5)]),
    ("tanh", lambda m: m.Tanh(), [(3, 5)]),
    ("softmax", lambda m: m.Softmax(dim=1), [(3, 5)]),
    ("softmax_dim0", lambda m: m.Softmax(dim=0), [(3, 5, 2)]),
    ("log_softmax", lambda m: m.LogSoftmax(dim=-1), [(3, 5)]),
    ("flatten", lambda m: m.Flatten(), [(2, 3, 4, 5)]),
    ("flatten_range", lambda m: m.Flatten(0, 2), [(2, 3, 4, 5)]),
    ("unflatten", lambda m: m.Unflatten(1, (3, 4)), [(2, 12)]),
    ("identity", lambda m: m.Identity(), [(2, 3)]),
    ("layernorm", lambda m: m.LayerNorm(6), [(3, 6)]),
    ("layernorm_2d", lambda m: m.LayerNorm((4, 6)), [(2, 4, 6)]),
    ("layernorm_noaffine", lambda m: m.LayerNorm(6, elementwise_affine=False), [(3, 6)]),
    ("batchnorm2d", lambda m: m.BatchNorm2d(3), [(4, 3, 5, 5)]),
    ("batchnorm1d", lambda m: m.BatchNorm1d(3), [(8, 3)]),
    ("batchnorm1d_3d", lambda m: m.BatchNorm1d(3, momentum=None), [(4, 3, 5)]),
    ("batchnorm_noaffine", lambda m: m.BatchNorm2d(2, affine=False), [(3, 2, 4, 4)]),
    ("batchnorm_notrack", lambda m: m.BatchNorm2d(2, track_running_stats=False), [(3, 2, 4, 4)]),
    ("sequential", lambda m: m.Sequential(m.Linear(4, 8), m.Tanh(), m.Linear(8, 2)), [(5, 4)]),
]


@pytest.mark.parametrize("name,make,shapes", LAYERS, ids=[x[0] for x in LAYERS])
def test_layer_matches_torch(name, make, shapes):
    torch = pytest.importorskip("torch")
    module, tmodule = make(nn), make(torch.nn)
    inputs = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    compare_module(module, tmodule, *inputs)


@pytest.mark.parametrize("name,make,shapes", [x for x in LAYERS if "batchnorm" in x[0]],
                         ids=[x[0] for x in LAYERS if "batchnorm" in x[0]])
def test_batchnorm_running_stats_and_eval_match_torch(name, make, shapes):
    torch = pytest.importorskip("torch")
    module, tmodule = make(nn), make(torch.nn)
    copy_weights(module, tmodule)
    for step in range(3):  # running statistics accumulate the same way
        x = randn(*shapes[0], seed=step) * (step + 1) + step
        compare_module(module, tmodule, x, copy=False)
    module.eval(), tmodule.eval()
    compare_module(module, tmodule, randn(*shapes[0], seed=7), copy=False)


def test_batchnorm_updates_buffers_in_place():
    bn = nn.BatchNorm2d(3)
    mean, var = bn.running_mean, bn.running_var
    data = mean._data
    bn(ember.randn(4, 3, 2, 2) + 5)
    assert bn.running_mean is mean and bn.running_var is var and bn.running_mean._data is data
    assert mean._version > 0 and int(bn.num_batches_tracked) == 1
    assert float(mean.mean()) == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ember.OpError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(ember.randn(1, 3))


def test_embedding_matches_torch():
    torch = pytest.importorskip("torch")
    for kwargs in ({}, {"padding_idx": 1}):
        emb, temb = nn.Embedding(7, 3, **kwargs), torch.nn.Embedding(7, 3, **kwargs)
        idx = np.array([[1, 2, 1], [6, 0, 1]])
        compare_module(emb, temb, idx)
        if kwargs:
            assert not np.any(emb.weight.grad.numpy()[1])


LOSSES = [
    ("ce", lambda m: m.CrossEntropyLoss(), (4, 5), "index"),
    ("ce_sum", lambda m: m.CrossEntropyLoss(reduction="sum"), (4, 5), "index"),
    ("ce_none", lambda m: m.CrossEntropyLoss(reduction="none"), (4, 5), "index"),
    ("ce_ignore", lambda m: m.CrossEntropyLoss(ignore_index=2), (6, 3), "index"),
    ("ce_smoothing", lambda m: m.CrossEntropyLoss(label_smoothing=0.1), (4, 5), "index"),
    ("ce_smoothing_ignore_none",
     lambda m: m.CrossEntropyLoss(label_smoothing=0.2, ignore_index=0, reduction="none"),
     (6, 3), "index"),
    ("ce_kdim", lambda m: m.CrossEntropyLoss(), (2, 4, 3, 2), "index"),
    ("ce_probs", lambda m: m.CrossEntropyLoss(), (4, 5), "probs"),
    ("ce_probs_smoothing", lambda m: m.CrossEntropyLoss(label_smoothing=0.1), (4, 5), "probs"),
    ("nll", lambda m: m.NLLLoss(), (4, 5), "index"),
    ("nll_none", lambda m: m.NLLLoss(reduction="none", ignore_index=1), (6, 3), "index"),
    ("mse", lambda m: m.MSELoss(), (3, 4), "float"),
    ("mse_sum", lambda m: m.MSELoss(reduction="sum"), (3, 4), "float"),
    ("mse_none", lambda m: m.MSELoss(reduction="none"), (3, 4), "float"),
    ("l1", lambda m: m.L1Loss(), (3, 4), "float"),
    ("bce", lambda m: m.BCELoss(), (3, 4), "prob01"),
    ("bce_logits", lambda m: m.BCEWithLogitsLoss(), (3, 4), "prob01"),
]


def _loss_inputs(shape, kind, seed=0):
    x = randn(*shape, seed=seed) * 2
    r = rng(seed + 1)
    if kind == "index":
        target = r.integers(0, shape[1], size=(shape[0],) + shape[2:])
    elif kind == "probs":
        p = r.uniform(size=shape).astype(np.float32)
        target = p / p.sum(1, keepdims=True)
    elif kind == "prob01":
        target = r.uniform(size=shape).astype(np.float32)
    else:
        target = randn(*shape, seed=seed + 1)
    return x, target


@pytest.mark.parametrize("name,make,shape,kind", LOSSES, ids=[x[0] for x in LOSSES])
def test_loss_matches_torch(name, make, shape, kind):
    torch = pytest.importorskip("torch")
    x, target = _loss_inputs(shape, kind)
    if name == "bce":
        x = 1 / (1 + np.exp(-x))
    if name.startswith("nll"):
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = make(nn)(xe, ember.tensor(target)), make(torch.nn)(xt, torch.tensor(target))
    assert_close(out, tout, RTOL, ATOL)
    cot = rng(3).uniform(0.5, 1.5, size=tuple(tout.shape)).astype(np.float32)
    (out * ember.tensor(cot)).sum().backward()
    (tout * torch.tensor(cot)).sum().backward()
    assert_close(xe.grad, xt.grad, RTOL, ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_weighted_cross_entropy_matches_torch(reduction, smoothing):
    torch = pytest.importorskip("torch")
    x, target = _loss_inputs((6, 4), "index", seed=5)
    target[1] = -100
    w = rng(2).uniform(0.5, 2, size=4).astype(np.float32)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = F.cross_entropy(xe, ember.tensor(target), weight=ember.tensor(w), reduction=reduction,
                          label_smoothing=smoothing)
    tout = torch.nn.functional.cross_entropy(xt, torch.tensor(target), weight=torch.tensor(w),
                                             reduction=reduction, label_smoothing=smoothing)
    assert_close(out, tout, RTOL, ATOL)
    out.sum().backward()
    tout.sum().backward()
    assert_close(xe.grad, xt.grad, RTOL, ATOL)


def test_bce_with_logits_pos_weight_matches_torch():
    torch = pytest.importorskip("torch")
    x, target = _loss_inputs((5, 3), "prob01")
    pw = np.array([0.5, 2.0, 3.0], dtype=np.float32)
    xe, xt = ember.tensor(x * 20, requires_grad=True), torch.tensor(x * 20, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(xe, ember.tensor(target), pos_weight=ember.tensor(pw))
    tout = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch.tensor(target), pos_weight=torch.tensor(pw))
    assert_close(out, tout, RTOL, ATOL)
    out.backward()
    tout.backward()
    assert_close(xe.grad, xt.grad, RTOL, ATOL)


FUNCTIONALS = [
    ("linear", lambda f, x, w, b: f.linear(x, w, b), [(3, 4), (5, 4), (5,)]),
    ("conv2d", lambda f, x, w, b: f.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)),
     [(2, 3, 6, 5), (4, 3, 3, 3), (4,)]),
    ("max_pool2d", lambda f, x: f.max_pool2d(x, 2, 2), [(2, 3, 6, 6)]),
    ("avg_pool2d", lambda f, x: f.avg_pool2d(x, (2, 3), stride=1), [(2, 3, 6, 6)]),
    ("relu", lambda f, x: f.relu(x), [(4, 5)]),
    ("gelu", lambda f, x: f.gelu(x), [(4, 5)]),
    ("gelu_tanh", lambda f, x: f.gelu(x, approximate="tanh"), [(4, 5)]),
    ("sigmoid", lambda f, x: f.sigmoid(x), [(4, 5)]),
    ("tanh", lambda f, x: f.tanh(x), [(4, 5)]),
    ("softmax", lambda f, x: f.softmax(x, dim=-1), [(4, 5)]),
    ("log_softmax", lambda f, x: f.log_softmax(x, 0), [(4, 5)]),
    ("layer_norm", lambda f, x, w, b: f.layer_norm(x, (5,), w, b, eps=1e-3), [(4, 5), (5,), (5,)]),
    ("batch_norm_train", lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True),
     [(6, 3, 2), (3,), (3,)]),
    ("mse_loss", lambda f, x, y: f.mse_loss(x, y), [(4, 5), (4, 5)]),
]


@pytest.mark.parametrize("name,fn,shapes", FUNCTIONALS, ids=[x[0] for x in FUNCTIONALS])
def test_functional_matches_torch(name, fn, shapes):
    torch = pytest.importorskip("torch")
    from conftest import check_against_torch

    inputs = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    check_against_torch(lambda *a: fn(F, *a), lambda *a: fn(torch.nn.functional, *a), inputs,
                        rtol=RTOL, atol=ATOL)


def test_functional_flatten_embedding_dropout_names():
    x = ember.randn(2, 3, 4)
    assert F.flatten(x).shape == (24,) and F.flatten(x, 1).shape == (2, 12)
    assert F.embedding(ember.tensor([2, 0]), ember.eye(3)).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert F.dropout(x, 0.3, training=False) is x


def test_module_repr_matches_torch():
    torch = pytest.importorskip("torch")

    def build(m):
        return m.Sequential(
            m.Conv2d(3, 6, 5), m.Conv2d(3, 6, 3, stride=2, padding=1, bias=False),
            m.MaxPool2d(2, 2), m.AvgPool2d(2), m.ReLU(), m.GELU(approximate="tanh"),
            m.Softmax(dim=1), m.LogSoftmax(dim=1), m.Dropout(0.25), m.Flatten(), m.Identity(),
            m.LayerNorm(8), m.BatchNorm2d(16), m.Embedding(10, 3), m.Linear(400, 120),
            m.Sequential(m.Linear(2, 2), m.Tanh()), m.ModuleList([m.Sigmoid()]),
            m.CrossEntropyLoss(), m.MSELoss())

    assert repr(build(nn)) == repr(build(torch.nn))


# ---- NumPy references (always run) --------------------------------------------------------

def _np_conv2d(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + b.reshape(1, o, 1, 1)


def test_conv2d_matches_numpy_reference():
    x, w, b = randn(2, 3, 7, 7, seed=1), randn(4, 3, 3, 3, seed=2), randn(4, seed=3)
    got = F.conv2d(ember.tensor(x), ember.tensor(w), ember.tensor(b), stride=2, padding=1)
    np.testing.assert_allclose(got.numpy(), _np_conv2d(x, w, b, 2, 1), rtol=1e-5, atol=1e-5)


def test_pooling_matches_numpy_reference():
    x = randn(2, 3, 6, 4)
    windows = x.reshape(2, 3, 3, 2, 2, 2)
    np.testing.assert_allclose(F.max_pool2d(ember.tensor(x), 2).numpy(), windows.max((3, 5)))
    np.testing.assert_allclose(F.avg_pool2d(ember.tensor(x), 2).numpy(), windows.mean((3, 5)),
                               rtol=1e-6, atol=1e-7)


def test_losses_and_norms_match_numpy_reference():
    x, t = randn(5, 4), np.array([0, 3, 1, 1, 2])
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    ce = F.cross_entropy(ember.tensor(x), ember.tensor(t))
    assert float(ce) == pytest.approx(-logp[np.arange(5), t].mean(), rel=1e-5)
    ln = F.layer_norm(ember.tensor(x), (4,))
    ref = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln.numpy(), ref, rtol=1e-4, atol=1e-5)
    bn = F.batch_norm(ember.tensor(x), None, None, training=True)
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(bn.numpy(), ref, rtol=1e-4, atol=1e-5)
    gelu = F.gelu(ember.tensor(x)).numpy()
    ref = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(gelu, ref, rtol=1e-5, atol=1e-6)


FD_CASES = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     [(1, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    ("conv2d_groups", lambda x, w: F.conv2d(x, w, groups=2), [(1, 4, 4, 4), (2, 2, 2, 2)]),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1), [(1, 2, 5, 5)]),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(1, 2, 5, 5)]),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b), [(3, 4), (4,), (4,)]),
    ("batch_norm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     [(4, 3, 2, 2), (3,), (3,)]),
    ("gelu", lambda x: F.gelu(x), [(3, 4)]),
    ("linear", lambda x, w, b: F.linear(x, w, b), [(3, 4), (2, 4), (2,)]),
]


@pytest.mark.parametrize("name,fn,shapes", FD_CASES, ids=[x[0] for x in FD_CASES])
def test_gradients_match_finite_differences(name, fn, shapes):
    inputs = [randn(*s, seed=i, dtype=np.float64) for i, s in enumerate(shapes)]
    check_grad_fd(fn, inputs, rtol=1e-5, atol=1e-6)


def test_cross_entropy_gradient_matches_finite_differences():
    target = ember.tensor([2, 0, 1])
    check_grad_fd(lambda x: F.cross_entropy(x, target, label_smoothing=0.1),
                  [randn(3, 4, dtype=np.float64)], rtol=1e-5, atol=1e-7)


def test_dropout_masks_and_scales():
    drop = nn.Dropout(0.25)
    x = ember.ones(4000, requires_grad=True)
    y = drop(x)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.03
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert not np.any(F.dropout(x, 1.0).detach().numpy())
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_embedding_gradient_accumulates_repeated_rows():
    emb = nn.Embedding(4, 2)
    emb(ember.tensor([1, 1, 3])).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy(), [[0, 0], [2, 2], [0, 0], [1, 1]])


# ---- init -----------------------------------------------------------------------------------

def test_fan_in_and_fan_out():
    assert nn.init._calculate_fan_in_and_fan_out(ember.empty(6, 3, 5, 5)) == (75, 150)
    assert nn.init._calculate_fan_in_and_fan_out(ember.empty(3, 4)) == (4, 3)
    with pytest.raises(ValueError):
        nn.init._calculate_fan_in_and_fan_out(ember.empty(3))


def test_init_distributions():
    w = ember.empty(200, 300)
    for fn, lo, hi, std in [
        (lambda t: nn.init.uniform_(t, -2, 3), -2, 3, 5 / math.sqrt(12)),
        (lambda t: nn.init.kaiming_uniform_(t, nonlinearity="relu"), None, None,
         math.sqrt(2 / 300)),
        (lambda t: nn.init.kaiming_normal_(t, mode="fan_out"), None, None,
         math.sqrt(2 / (1 + 0.01 ** 2)) / math.sqrt(200)),
        (lambda t: nn.init.xavier_uniform_(t, gain=2.0), None, None, 2 * math.sqrt(2 / 500)),
        (lambda t: nn.init.xavier_normal_(t), None, None, math.sqrt(2 / 500)),
        (lambda t: nn.init.normal_(t, 1.0, 0.5), None, None, 0.5),
    ]:
        assert fn(w) is w
        a = w.numpy()
        assert a.std() == pytest.approx(std, rel=0.03)
        if lo is not None:
            assert a.min() >= lo and a.max() < hi
    nn.init.constant_(w, 0.5)
    assert np.all(w.numpy() == 0.5)
    assert np.all(nn.init.zeros_(w).numpy() == 0) and np.all(nn.init.ones_(w).numpy() == 1)
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))


def test_zero_element_layers_initialize_with_a_warning_as_torch():
    """DCGAN at img_size 8 builds nn.Linear(128 * 0 ** 2, 1): torch warns and builds it."""
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        lin = nn.Linear(0, 1)
    assert tuple(lin.weight.shape) == (1, 0) and lin.bias.tolist() == [0.0]
    with pytest.warns(UserWarning, match="no-op"):
        nn.init.kaiming_normal_(ember.empty(3, 0))


def test_default_initializations_follow_pytorch():
    lin = nn.Linear(300, 200)
    bound = 1 / math.sqrt(300)  # kaiming_uniform_(a=sqrt(5)) reduces to this bound
    for p in (lin.weight, lin.bias):
        a = p.detach().numpy()
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    conv = nn.Conv2d(6, 16, 5)
    bound = 1 / math.sqrt(6 * 25)
    assert np.abs(conv.weight.detach().numpy()).max() <= bound
    assert np.abs(conv.bias.detach().numpy()).max() <= bound
    emb = nn.Embedding(100, 50)
    assert emb.weight.detach().numpy().std() == pytest.approx(1.0, rel=0.05)
    ln, bn = nn.LayerNorm(4), nn.BatchNorm2d(4)
    for m in (ln, bn):
        assert m.weight.tolist() == [1.0] * 4 and m.bias.tolist() == [0.0] * 4
    assert bn.running_var.tolist() == [1.0] * 4 and bn.num_batches_tracked.dtype == ember.int64
    assert nn.Embedding(5, 2, padding_idx=3).weight[3].tolist() == [0.0, 0.0]
    ember.manual_seed(1)
    a = nn.Linear(3, 3).weight.detach().numpy().copy()
    ember.manual_seed(1)
    assert np.array_equal(a, nn.Linear(3, 3).weight.detach().numpy())


# ---- Module API -----------------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Dropout(0.5)])
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(8, 2))
        self.register_buffer("scale", ember.ones(2))
        self.register_buffer("cache", ember.zeros(3), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        x = self.bn(self.fc1(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x) * self.scale


def test_parameters_buffers_children_and_modules():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "blocks.0.weight",
                     "blocks.0.bias", "head.1.weight", "head.1.bias"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert len(list(net.fc1.parameters())) == 2
    assert [n for n, _ in net.named_buffers()] == [
        "scale", "cache", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "blocks", "head"]
    assert len(list(net.children())) == 4
    mods = [n for n, _ in net.named_modules()]
    assert mods[:3] == ["", "fc1", "bn"] and "head.1" in mods and len(list(net.modules())) == 9
    assert net.note == "plain attribute" and "note" not in net._parameters
    assert net.get_submodule("head.1") is net.head[1]
    assert net.get_parameter("blocks.0.bias") is net.blocks[0].bias


def test_shared_parameters_are_listed_once():
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3


def test_train_eval_and_requires_grad():
    net = Net()
    assert net.training and net.head[0].training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net(ember.randn(3, 4))  # no graph, no error


def test_zero_grad():
    net = Net()
    net(ember.randn(3, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not np.any(p.grad.numpy()) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip():
    a, b = Net(), Net()
    sd = a.state_dict()
    # PyTorch's order: a module's own entries, then each child's; no non-persistent buffers.
    assert list(sd) == ["scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                        "blocks.0.weight", "blocks.0.bias", "head.1.weight", "head.1.bias"]
    assert not any(v.requires_grad for v in sd.values())
    w = b.fc1.weight
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.fc1.weight is w  # copied in place, optimizers keep their references
    x = ember.randn(5, 4)
    a.eval(), b.eval()
    assert_close(a(x), b(x))
    # NumPy values (a checkpoint converted from elsewhere) load too.
    b.load_state_dict({k: v.numpy() for k, v in sd.items()})


def test_load_state_dict_errors_leave_module_unchanged():
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = Net().state_dict()
    bad = dict(sd)
    bad["fc1.weight"] = ember.zeros(3, 3)
    del bad["head.1.bias"]
    bad["extra.weight"] = ember.zeros(1)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(bad)
    msg = str(info.value)
    assert "size mismatch for fc1.weight" in msg and "[3, 3]" in msg and "[8, 4]" in msg
    assert 'Missing key(s) in state_dict: "head.1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    # Non-strict loads ignore missing/unexpected keys but still refuse shape mismatches.
    bad["fc1.weight"] = sd["fc1.weight"]
    res = net.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["head.1.bias"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(net.fc1.weight.detach().numpy(), sd["fc1.weight"].numpy())


def test_to_dtype_keeps_parameter_objects():
    net = Net()
    w = net.fc1.weight
    net(ember.randn(3, 4)).sum().backward()
    assert net.double() is net
    assert net.fc1.weight is w and w.dtype == ember.float64 and w.grad.dtype == ember.float64
    assert isinstance(w, nn.Parameter) and w.requires_grad and w.is_leaf
    assert net.bn.running_mean.dtype == ember.float64
    assert net.bn.num_batches_tracked.dtype == ember.int64
    assert net(ember.randn(3, 4, dtype=ember.float64)).dtype == ember.float64
    net.to(ember.float32)
    assert w.dtype == ember.float32
    net.to("cpu").cpu().float()
    assert w.device == ember.device("cpu")
    with pytest.raises(TypeError):
        net.to(ember.int64)


def test_setattr_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(ember.ones(2))
    m.sub = nn.Linear(2, 2)
    m.t = ember.ones(2)  # a plain tensor is an ordinary attribute
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and "t" not in m._buffers
    with pytest.raises(TypeError, match="Parameter or None"):
        m.w = ember.zeros(2)
    m.w = None
    assert list(m.parameters()) == list(m.sub.parameters())
    del m.sub
    assert not hasattr(m, "sub")
    m.register_buffer("buf", ember.zeros(1))
    m.buf = ember.ones(1)
    assert m._buffers["buf"].tolist() == [1.0]
    with pytest.raises(KeyError):
        m.register_buffer("t", ember.zeros(1))
    with pytest.raises(KeyError):
        m.register_buffer("w", ember.zeros(1))  # already a parameter name

    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Forgot()
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


def test_apply_hooks_and_deepcopy():
    net = Net()
    net.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
    assert not np.any(net.head[1].bias.detach().numpy())
    seen = []
    h = net.fc1.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    net(ember.randn(3, 4))
    h.remove()
    net(ember.randn(3, 4))
    assert seen == [(3, 8)]
    clone = copy.deepcopy(net)
    assert clone.fc1.weight is not net.fc1.weight and isinstance(clone.fc1.weight, nn.Parameter)
    assert_close(clone.fc1.weight, net.fc1.weight)
    with ember.no_grad():
        clone.fc1.weight.add_(1)
    assert not np.allclose(clone.fc1.weight.detach().numpy(), net.fc1.weight.detach().numpy())


def test_parameter_is_a_leaf_tensor_sharing_data():
    t = ember.ones(3)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, ember.Tensor)
    assert p.requires_grad and p.is_leaf and p.grad is None
    assert repr(p).startswith("Parameter containing:\ntensor([1., 1., 1.], requires_grad=True)")
    t.add_(1)
    assert p.tolist() == [2.0, 2.0, 2.0]
    assert not nn.Parameter(ember.ones(1), requires_grad=False).requires_grad
    y = p * 2
    assert type(y) is ember.Tensor
    with pytest.raises(RuntimeError):
        nn.Parameter(ember.tensor([1, 2]))


def test_sequential_and_module_list_protocols():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU)
    seq.append(nn.Linear(3, 1))
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    assert seq(ember.randn(4, 2)).shape == (4, 1)
    seq.insert(1, nn.Tanh())
    del seq[2]
    assert [type(m).__name__ for m in seq] == ["Linear", "Tanh", "Linear"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(IndexError):
        seq[5]
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert isinstance(named.fc, nn.Linear) and list(named.state_dict()) == ["fc.weight", "fc.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    assert len(ml) == 3 and isinstance(ml[-1], nn.Tanh) and len(ml[:2]) == 2
    assert len(list(ml.parameters())) == 2
    md = nn.ModuleDict({"a": nn.Linear(2, 2)})
    md["b"] = nn.ReLU()
    assert list(md) == ["a", "b"] and "a" in md and len(list(md.parameters())) == 2


# ---- errors ---------------------------------------------------------------------------------

def test_linear_shape_error_names_op_shapes_and_line():
    layer = nn.Linear(4, 3)
    with pytest.raises(ember.OpError) as info:
        layer(ember.randn(2, 5))
    msg = str(info.value)
    assert "linear" in msg and "[2, 5]" in msg and "[3, 4]" in msg and "in_features=4" in msg
    assert "test_nn.py" in msg  # the user's line, not ember's
    assert "in module Linear(in_features=4, out_features=3, bias=True)" in msg


@pytest.mark.parametrize("call,match", [
    (lambda: nn.Conv2d(3, 6, 5)(ember.randn(1, 4, 32, 32)),
     r"conv2d.*\[N, 3, H, W\].*\[1, 4, 32, 32\]"),
    (lambda: nn.Conv2d(3, 6, 5)(ember.randn(1, 3, 3, 3)), "conv2d.*larger than"),
    (lambda: nn.BatchNorm2d(3)(ember.randn(2, 3, 4)), "BatchNorm2d.*4D.*3D"),
    (lambda: nn.BatchNorm2d(3)(ember.randn(2, 4, 2, 2)), "BatchNorm2d.*3 channels"),
    (lambda: nn.LayerNorm(5)(ember.randn(2, 4)), r"layer_norm.*\[2, 4\].*\[5\]"),
    (lambda: nn.MaxPool2d(2)(ember.randn(4, 4)), "max_pool2d.*4-D"),
    (lambda: nn.CrossEntropyLoss()(ember.randn(2, 3), ember.tensor([0, 3])), "nll_loss.*Target 3"),
    (lambda: nn.CrossEntropyLoss()(ember.randn(2, 3), ember.tensor([0, 1, 2])), r"nll_loss.*\[2\]"),
    (lambda: nn.Embedding(3, 2)(ember.tensor([1, -1])), "embedding.*index out of range in self"),
    (lambda: nn.Embedding(3, 2)(ember.tensor([0.5])), "embedding.*integer"),
])
def test_shape_errors_are_op_errors(call, match):
    with pytest.raises(ember.OpError, match=f"(?s){match}") as info:
        call()
    assert "test_nn.py" in str(info.value)


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_module_cuda_round_trip():
    net = Net()
    w = net.fc1.weight
    x = ember.randn(3, 4)
    net.eval()
    expected = net(x).detach().numpy()
    net.cuda()
    assert net.fc1.weight is w and w.device.type == "cuda"
    assert net.bn.running_mean.device.type == "cuda"
    out = net(x.cuda())
    out.sum().backward()
    assert w.grad.device.type == "cuda"
    np.testing.assert_allclose(out.detach().cpu().numpy(), expected, rtol=1e-4, atol=1e-5)
    net.cpu()
    assert w.device == ember.device("cpu") and w.grad.device == ember.device("cpu")


def test_one_hot_matches_pytorch_and_errors_alike_eager_and_compiled():
    torch = pytest.importorskip("torch")
    labels = np.array([[0, 3, 1], [2, 2, 0]])
    for k in (-1, 6):
        want = torch.nn.functional.one_hot(torch.tensor(labels), k).numpy()
        got = F.one_hot(ember.tensor(labels), k)
        assert got.dtype == ember.int64
        np.testing.assert_array_equal(got.numpy(), want)
    cf = ember.compile(lambda y: F.one_hot(y, 4).float() * 2)
    for _ in range(3):
        np.testing.assert_array_equal(cf(ember.tensor([1, 3])).numpy(), [[0, 2, 0, 0], [0, 0, 0, 2]])
    for bad, match in (([1, 4], "smaller than num_classes"), ([-1, 2], "non-negative")):
        with pytest.raises(ember.OpError, match=match):
            F.one_hot(ember.tensor(bad), 4)
        with pytest.raises(ember.OpError, match=match):
            cf(ember.tensor(bad))
    with pytest.raises(ember.OpError, match="int64"):
        F.one_hot(ember.tensor([1.0]), 2)


@pytest.mark.filterwarnings("ignore:.*encountered in (multiply|divide):RuntimeWarning")
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_batch_with_every_target_ignored_gives_zero_gradients(smoothing):
    # (a batch of padding, a masked-LM batch with nothing masked) torch's loss is NaN
    # (0/0) and its gradients 0; ember's were NaN (0 * inf), which an optimizer step
    # spread into every weight.
    torch = pytest.importorskip("torch")
    compiled = ember.compile(lambda x, t: F.cross_entropy(x, t, label_smoothing=smoothing))
    for run in (lambda x, t: F.cross_entropy(x, t, label_smoothing=smoothing), compiled,
                compiled, compiled, lambda x, t: F.nll_loss(x, t)):
        x = ember.ones(3, 4, requires_grad=True)
        loss = run(x, ember.tensor([-100, -100, -100]))
        loss.backward()
        assert np.isnan(loss.item()) and (x.grad.numpy() == 0).all()
    xt = torch.ones(3, 4, requires_grad=True)   # a zero weight is still 0/0, as torch's
    torch.nn.functional.nll_loss(xt, torch.tensor([1, 1, 1]),
                                 weight=torch.tensor([1., 0., 1., 1.])).backward()
    x = ember.ones(3, 4, requires_grad=True)
    F.nll_loss(x, ember.tensor([1, 1, 1]), weight=ember.tensor([1., 0., 1., 1.])).backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
