"""embedding_bag / EmbeddingBag, bilinear / Bilinear, grid_sample and affine_grid against
torch, NumPy references and finite differences; one compiled training step per layer."""

import numpy as np
import pytest

import ember
from conftest import compiled_steps_agree
import ember.nn as nn
import ember.nn.functional as F


def _np(t):
    return t.detach().numpy()


# ---- embedding_bag ------------------------------------------------------------------------
def _bag_reference(inp, w, offsets, mode, psw=None, padding_idx=None):
    ends = list(offsets[1:]) + [len(inp)]
    out = np.zeros((len(offsets), w.shape[1]), w.dtype)
    for b, (s, e) in enumerate(zip(offsets, ends)):
        rows = [w[i] * (1.0 if psw is None else psw[j]) for j, i in
                zip(range(s, e), inp[s:e]) if i != padding_idx]
        if rows:
            out[b] = {"sum": np.sum, "mean": np.mean, "max": np.max}[mode](rows, 0)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 4])
def test_embedding_bag_numpy(mode, padding_idx):
    rs = np.random.RandomState(0)
    w = rs.randn(10, 3).astype(np.float32)
    inp, off = [1, 2, 4, 5, 4, 3, 2, 9], [0, 2, 2, 5]
    out = F.embedding_bag(ember.tensor(inp), ember.tensor(w), ember.tensor(off), mode=mode,
                          padding_idx=padding_idx)
    np.testing.assert_allclose(_np(out), _bag_reference(inp, w, off, mode,
                                                        padding_idx=padding_idx), rtol=1e-6)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("case", ["1d", "2d", "last_offset", "psw", "padding"])
def test_embedding_bag_matches_torch(mode, case):
    torch = pytest.importorskip("torch")
    if case == "psw" and mode != "sum":
        pytest.skip("per_sample_weights is sum-only")
    rs = np.random.RandomState(1)
    w = rs.randn(12, 4).astype(np.float32)
    w[3] = w[7]                              # a tie for max: the first row gets the gradient
    kw = {"mode": mode}
    if case == "2d":
        inp, off = rs.randint(0, 12, (3, 4)), None
    else:
        inp, off = np.array([3, 7, 1, 0, 5, 5, 11, 2, 7, 3]), np.array([0, 3, 3, 6])
    if case == "last_offset":
        off, kw["include_last_offset"] = np.append(off, len(inp)), True
    if case == "padding":
        kw["padding_idx"] = 5
    psw = rs.rand(*inp.shape).astype(np.float32) if case == "psw" else None
    tw, ew = torch.tensor(w, requires_grad=True), ember.tensor(w, requires_grad=True)
    tp = None if psw is None else torch.tensor(psw, requires_grad=True)
    ep = None if psw is None else ember.tensor(psw, requires_grad=True)
    t = torch.nn.functional.embedding_bag(torch.tensor(inp), tw, None if off is None else
                                          torch.tensor(off), per_sample_weights=tp, **kw)
    e = F.embedding_bag(ember.tensor(inp), ew, None if off is None else ember.tensor(off),
                        per_sample_weights=ep, **kw)
    np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rs.randn(*t.shape).astype(np.float32)
    (t * torch.tensor(g)).sum().backward()
    (e * ember.tensor(g)).sum().backward()
    np.testing.assert_allclose(_np(ew.grad), tw.grad.numpy(), rtol=1e-5, atol=1e-6)
    if psw is not None:
        np.testing.assert_allclose(_np(ep.grad), tp.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_bag_errors_and_module():
    w = ember.randn(5, 2)
    with pytest.raises(ValueError, match="offsets has to be None"):
        F.embedding_bag(ember.tensor([[1, 2]]), w, ember.tensor([0]))
    with pytest.raises(ValueError, match="offsets has to be a 1D Tensor but got None"):
        F.embedding_bag(ember.tensor([1, 2]), w)
    with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
        F.embedding_bag(ember.tensor([[1, 2]]), w, per_sample_weights=ember.ones(1, 2))
    bag = nn.EmbeddingBag(5, 2, mode="sum", padding_idx=0)
    assert _np(bag.weight)[0].tolist() == [0.0, 0.0]
    assert list(bag.state_dict()) == ["weight"]
    out = bag(ember.tensor([[1, 2], [0, 3]]))
    ref = _np(bag.weight)
    np.testing.assert_allclose(_np(out), [ref[1] + ref[2], ref[3]], rtol=1e-6)


# ---- bilinear -----------------------------------------------------------------------------
def test_bilinear_matches_torch_and_numpy():
    torch = pytest.importorskip("torch")
    tm, em = torch.nn.Bilinear(3, 4, 5), nn.Bilinear(3, 4, 5)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    rs = np.random.RandomState(2)
    a, b = rs.randn(2, 6, 3).astype(np.float32), rs.randn(2, 6, 4).astype(np.float32)
    ref = np.einsum("...i,oij,...j->...o", a, tm.weight.detach().numpy(), b) + \
        tm.bias.detach().numpy()
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ea, eb = ember.tensor(a, requires_grad=True), ember.tensor(b, requires_grad=True)
    t, e = tm(ta, tb), em(ea, eb)
    np.testing.assert_allclose(_np(e), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5, atol=1e-5)
    (t ** 2).sum().backward()
    (e ** 2).sum().backward()
    for x, y in [(ea, ta), (eb, tb), (em.weight, tm.weight), (em.bias, tm.bias)]:
        np.testing.assert_allclose(_np(x.grad), y.grad.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="input1 size does not match"):
        em(ember.randn(2, 4), ember.randn(2, 4))


# ---- grid_sample / affine_grid ------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_matches_torch(dims, mode, padding_mode, align_corners):
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(3)
    x = rs.randn(2, 3, *([5] * dims)).astype(np.float32)
    # Positions beyond [-1, 1] exercise the padding modes.
    g = (rs.rand(2, 4, *([3] * (dims - 1)), dims) * 2.8 - 1.4).astype(np.float32)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
    ex, eg = ember.tensor(x, requires_grad=True), ember.tensor(g, requires_grad=True)
    t = torch.nn.functional.grid_sample(tx, tg, mode, padding_mode, align_corners)
    e = F.grid_sample(ex, eg, mode, padding_mode, align_corners)
    np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5, atol=1e-5)
    w = rs.randn(*t.shape).astype(np.float32)
    (t * torch.tensor(w)).sum().backward()
    (e * ember.tensor(w)).sum().backward()
    np.testing.assert_allclose(_np(ex.grad), tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    grid_grad = np.zeros_like(g) if eg.grad is None else _np(eg.grad)   # nearest: none
    np.testing.assert_allclose(grid_grad, tg.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_grid_sample_numpy_and_finite_differences():
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    # align_corners=True: -1 and 1 are the corner pixels' centres.
    g = np.array([[[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-1.0 / 3, 0.5]]]])
    out = _np(F.grid_sample(ember.tensor(x), ember.tensor(g), align_corners=True))[0, 0, 0]
    want = [0.0, 11.0, x[0, 0, 1, 1:3].mean(), 0.25 * 5 + 0.25 * 6 + 0.25 * 9 + 0.25 * 10]
    want[3] = (x[0, 0, 1, 1] * 0.5 + x[0, 0, 2, 1] * 0.5)       # x = 1.0, y = 1.5
    np.testing.assert_allclose(out, want, rtol=1e-12)
    rs = np.random.RandomState(4)
    gx = rs.rand(1, 2, 2, 2) * 1.6 - 0.8
    grid = ember.tensor(gx, requires_grad=True)
    inp = ember.tensor(rs.randn(1, 2, 4, 4))

    def f(gr):
        return (F.grid_sample(inp, gr, padding_mode="reflection", align_corners=False) ** 2).sum()
    f(grid).backward()
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 1, 1, 1), (0, 0, 1, 0)]:
        up, down = gx.copy(), gx.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (f(ember.tensor(up)).item() - f(ember.tensor(down)).item()) / (2 * eps)
        np.testing.assert_allclose(_np(grid.grad)[idx], fd, rtol=1e-5)


def test_affine_grid_matches_torch_and_warns():
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(5)
    for dims, size in [(2, (2, 3, 4, 5)), (3, (2, 1, 3, 4, 5))]:
        th = rs.randn(2, dims, dims + 1).astype(np.float32)
        for ac in (False, True):
            tt, et = torch.tensor(th, requires_grad=True), ember.tensor(th, requires_grad=True)
            t = torch.nn.functional.affine_grid(tt, size, ac)
            e = F.affine_grid(et, size, ac)
            np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5, atol=1e-6)
            (t ** 2).sum().backward()
            (e ** 2).sum().backward()
            np.testing.assert_allclose(_np(et.grad), tt.grad.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.warns(UserWarning, match="align_corners=False since 1.3.0"):
        F.affine_grid(ember.tensor(th[:, :2, :3].copy()), (2, 1, 3, 3))
    with pytest.raises(ValueError, match="Nx2x3"):
        F.affine_grid(ember.zeros(1, 3, 4), (1, 1, 2, 2), align_corners=False)


def test_identity_affine_grid_and_linspace_are_torch_bit_for_bit():
    """The spatial-transformer tutorial starts from the identity map: its points fall on
    pixel boundaries, where grid_sample floors them, so one ulp off torch's points gave
    a different gradient (NumPy's linspace rounds elsewhere than torch's)."""
    torch = pytest.importorskip("torch")
    for tdt, edt in ((torch.float32, ember.float32), (torch.float64, ember.float64)):
        for n in (2, 3, 5, 28, 37, 100, 1001):
            for lo, hi in ((-1, 1), (-3.7, 11.2), (5, -2)):
                np.testing.assert_array_equal(
                    _np(ember.linspace(lo, hi, n, dtype=edt)),
                    torch.linspace(lo, hi, n, dtype=tdt).numpy())
        for size in [(1, 1, 28, 28), (2, 3, 7, 5), (1, 2, 4, 6, 3)]:
            k = len(size) - 2
            eye = np.eye(k, k + 1)[None].repeat(size[0], 0)
            for ac in (False, True):
                np.testing.assert_array_equal(
                    _np(F.affine_grid(ember.tensor(eye, dtype=edt), size, ac)),
                    torch.nn.functional.affine_grid(torch.tensor(eye, dtype=tdt), size,
                                                    ac).numpy())
    th = torch.tensor([[[1., 0, 0], [0, 1, 0]]], requires_grad=True)
    et = ember.tensor(th.detach().numpy(), requires_grad=True)
    x = np.random.RandomState(0).randn(1, 1, 28, 28).astype(np.float32)
    gt = torch.nn.functional.affine_grid(th, (1, 1, 28, 28), align_corners=False)
    torch.nn.functional.grid_sample(torch.tensor(x), gt, align_corners=False).sum().backward()
    ge = F.affine_grid(et, (1, 1, 28, 28), align_corners=False)
    F.grid_sample(ember.tensor(x), ge, align_corners=False).sum().backward()
    np.testing.assert_allclose(_np(et.grad), th.grad.numpy(), rtol=1e-4, atol=1e-3)


# ---- compiled training steps --------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 4, mode="max")
        self.bil = nn.Bilinear(4, 4, 3)
        self.theta = nn.Linear(3, 6)

    def forward(self, idx, offsets, img):
        h = self.bag(idx, offsets)
        z = self.bil(h, h.tanh())
        theta = self.theta(z).reshape(-1, 2, 3) * 0.1 + ember.eye(2, 3)
        grid = F.affine_grid(theta, tuple(img.shape), align_corners=False)
        return F.grid_sample(img, grid, padding_mode="border", align_corners=False).mean()


def test_compiled_training_step_equals_eager():
    idx = ember.tensor([1, 5, 7, 7, 2, 19, 0, 3])
    offsets = ember.tensor([0, 3, 5])
    img = ember.randn(3, 2, 5, 5)
    compiled_steps_agree(_Net, lambda m, *xs: m(*xs), (idx, offsets, img), lr=0.5)