"""3-D layers (Conv3d, ConvTranspose3d, MaxPool3d, AvgPool3d, AdaptiveAvgPool3d,
BatchNorm3d) and InstanceNorm1d/2d/3d against torch, NumPy references and a compiled
training step."""
import warnings

import numpy as np
import pytest

import ember
from conftest import compiled_steps_agree
import ember.nn as nn
import ember.nn.functional as F


def _np(t):
    return t.detach().numpy()


def _compare(ef, tf, *arrays, rtol=1e-5, atol=1e-5):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    es = [ember.tensor(a, requires_grad=True) for a in arrays]
    t, e = tf(*ts), ef(*es)
    assert tuple(e.shape) == tuple(t.shape)
    np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=rtol, atol=atol)
    w = np.random.RandomState(9).randn(*t.shape).astype(np.float32)
    (t * torch.tensor(w)).sum().backward()
    (e * ember.tensor(w)).sum().backward()
    for a, b in zip(es, ts):
        np.testing.assert_allclose(_np(a.grad), b.grad.numpy(), rtol=rtol * 10, atol=atol * 10)


def _conv3d_numpy(x, w, stride, padding):
    """A direct 6-loop-free reference: sum over kernel taps of strided slices."""
    n, c, d, h, ww = x.shape
    o, _, kd, kh, kw = w.shape
    xp = np.pad(x, [(0, 0), (0, 0)] + [(padding, padding)] * 3)
    od, oh, ow = [(s + 2 * padding - k) // stride + 1 for s, k in zip((d, h, ww), (kd, kh, kw))]
    out = np.zeros((n, o, od, oh, ow))
    for i in range(kd):
        for j in range(kh):
            for k in range(kw):
                patch = xp[:, :, i:i + stride * od:stride, j:j + stride * oh:stride,
                           k:k + stride * ow:stride]
                out += np.einsum("ncdhw,oc->nodhw", patch, w[:, :, i, j, k])
    return out


def test_conv3d_numpy_reference():
    rs = np.random.RandomState(0)
    x, w = rs.randn(2, 3, 5, 6, 4), rs.randn(4, 3, 3, 2, 3)
    out = F.conv3d(ember.tensor(x), ember.tensor(w), stride=2, padding=1)
    np.testing.assert_allclose(_np(out), _conv3d_numpy(x, w, 2, 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(), dict(stride=(2, 1, 2), padding=(1, 0, 1)),
                                dict(dilation=(2, 1, 1), groups=2), dict(padding="same"),
                                dict(padding="same", dilation=2, groups=2)])
def test_conv3d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(1)
    x = rs.randn(2, 4, 6, 7, 5).astype(np.float32)
    w = rs.randn(6, 4 // kw.get("groups", 1), 3, 2, 3).astype(np.float32)
    b = rs.randn(6).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # torch: 'same' with an even kernel
        _compare(lambda x, w, b: F.conv3d(x, w, b, **kw),
                 lambda x, w, b: torch.nn.functional.conv3d(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(stride=(2, 1, 2), padding=(1, 0, 1),
                                                              output_padding=(1, 0, 1)),
                                dict(stride=2, groups=2, dilation=(2, 1, 1))])
def test_conv_transpose3d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(2)
    x = rs.randn(2, 4, 3, 4, 3).astype(np.float32)
    w = rs.randn(4, 3, 2, 3, 2).astype(np.float32)
    b = rs.randn(3 * kw.get("groups", 1)).astype(np.float32)
    _compare(lambda x, w, b: F.conv_transpose3d(x, w, b, **kw),
             lambda x, w, b: torch.nn.functional.conv_transpose3d(x, w, b, **kw), x, w, b)


def test_conv3d_modules_load_torch_weights():
    torch = pytest.importorskip("torch")
    for tm, em in [(torch.nn.Conv3d(2, 3, 3, padding=1), nn.Conv3d(2, 3, 3, padding=1)),
                   (torch.nn.ConvTranspose3d(2, 3, 2, stride=2),
                    nn.ConvTranspose3d(2, 3, 2, stride=2))]:
        assert list(em.state_dict()) == list(tm.state_dict())
        em.load_state_dict({k: ember.tensor(v.detach().numpy())
                            for k, v in tm.state_dict().items()})
        x = np.random.RandomState(3).randn(1, 2, 3, 4, 4).astype(np.float32)
        np.testing.assert_allclose(_np(em(ember.tensor(x))), tm(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-5)
    out = nn.ConvTranspose3d(2, 3, 3, stride=2)(ember.randn(1, 2, 3, 3, 3),
                                                output_size=(8, 8, 8))
    assert out.shape == (1, 3, 8, 8, 8)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pools_match_torch(ceil_mode):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = np.random.RandomState(4).randn(2, 3, 7, 6, 5).astype(np.float32)
    _compare(lambda x: F.max_pool3d(x, (3, 2, 2), (2, 2, 1), (1, 1, 0), (1, 1, 2), ceil_mode),
             lambda x: tf.max_pool3d(x, (3, 2, 2), (2, 2, 1), (1, 1, 0), (1, 1, 2), ceil_mode), x)
    for include_pad in (True, False):
        _compare(lambda x: F.avg_pool3d(x, (3, 2, 3), 2, 1, ceil_mode, include_pad),
                 lambda x: tf.avg_pool3d(x, (3, 2, 3), 2, 1, ceil_mode, include_pad), x)
    _compare(lambda x: F.avg_pool3d(x, 2, divisor_override=3),
             lambda x: tf.avg_pool3d(x, 2, divisor_override=3), x)
    for size in [(4, None, 3), 2, (1, 1, 1), (7, 4, 5)]:
        _compare(lambda x: F.adaptive_avg_pool3d(x, size),
                 lambda x: tf.adaptive_avg_pool3d(x, size), x)
        _compare(lambda x: nn.AdaptiveMaxPool3d(size)(x),
                 lambda x: torch.nn.AdaptiveMaxPool3d(size)(x), x)


def test_pools_numpy():
    x = np.random.RandomState(5).randn(1, 2, 4, 4, 6)
    out = _np(nn.MaxPool3d(2)(ember.tensor(x)))
    ref = x.reshape(1, 2, 2, 2, 2, 2, 3, 2).max(axis=(3, 5, 7))
    np.testing.assert_array_equal(out, ref)
    out = _np(nn.AvgPool3d(2)(ember.tensor(x)))
    np.testing.assert_allclose(out, x.reshape(1, 2, 2, 2, 2, 2, 3, 2).mean(axis=(3, 5, 7)),
                               rtol=1e-12)
    out = _np(nn.AdaptiveAvgPool3d(1)(ember.tensor(x)))
    np.testing.assert_allclose(out[..., 0, 0, 0], x.mean(axis=(2, 3, 4)), rtol=1e-12)


def test_batchnorm3d_and_instancenorm_match_torch():
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(6)
    cases = [(torch.nn.BatchNorm3d(3), nn.BatchNorm3d(3), (2, 3, 2, 3, 4)),
             (torch.nn.InstanceNorm1d(3), nn.InstanceNorm1d(3), (2, 3, 5)),
             (torch.nn.InstanceNorm2d(3, affine=True), nn.InstanceNorm2d(3, affine=True),
              (2, 3, 4, 4)),
             (torch.nn.InstanceNorm3d(3, affine=True, track_running_stats=True),
              nn.InstanceNorm3d(3, affine=True, track_running_stats=True), (2, 3, 2, 3, 4)),
             (torch.nn.InstanceNorm2d(3), nn.InstanceNorm2d(3), (3, 4, 4))]    # unbatched
    for tm, em, shape in cases:
        assert list(em.state_dict()) == list(tm.state_dict())
        if tm.affine:
            with torch.no_grad():
                tm.weight.uniform_(0.5, 1.5)
                tm.bias.uniform_(-0.5, 0.5)
            em.load_state_dict({k: ember.tensor(v.detach().numpy())
                                for k, v in tm.state_dict().items()})
        for training in (True, True, False):
            tm.train(training)
            em.train(training)
            x = rs.randn(*shape).astype(np.float32)
            tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
            t, e = tm(tx), em(ex)
            np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-4, atol=1e-5)
            (t ** 3).sum().backward()
            (e ** 3).sum().backward()
            np.testing.assert_allclose(_np(ex.grad), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
            for k, v in tm.state_dict().items():
                np.testing.assert_allclose(_np(em.state_dict()[k]), v.numpy(), rtol=1e-5,
                                           atol=1e-6, err_msg=f"{type(tm).__name__}.{k}")


def test_compiled_training_step_equals_eager():
    x = ember.randn(2, 2, 6, 6, 6)

    def make():
        return nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                             nn.MaxPool3d(2), nn.ConvTranspose3d(4, 3, 2, stride=2),
                             nn.InstanceNorm3d(3, affine=True), nn.AvgPool3d(2),
                             nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 1))
    compiled_steps_agree(make, lambda m, x: (m(x) ** 2).mean(), (x,), rtol=1e-4, atol=1e-5)