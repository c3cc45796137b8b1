"""The direct convolution path of F.conv2d (``conv2d_direct``, ``conv2d_weight_direct``):
the generated kernels against float64 NumPy sums and PyTorch, gradients by finite
differences, compiled == eager, and which path F.conv2d takes."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.codegen.llvm import directconv

# The kernels' tiles follow the CPU's vector registers (bytes x count: AVX-512 64 x 32,
# AVX2 32 x 16); the kernel tests build and run both layouts whatever this machine has
# (LLVM splits a vector wider than the machine's).
REGISTER_FILES = {"avx512": (64, 32), "avx2": (32, 16)}


@pytest.fixture(params=list(REGISTER_FILES.values()), ids=list(REGISTER_FILES))
def vector(request, monkeypatch):
    monkeypatch.setattr(directconv, "VECTOR", request.param)
    return request.param


# (N, C, H, W, O, kh, kw, stride, padding, dilation): odd sizes, OW not a multiple of
# 16 or 8 (the vector widths), strides, padding, dilation, batch 1.
CASES = [
    (2, 3, 9, 13, 6, 3, 3, 1, 0, 1),
    (1, 3, 32, 32, 6, 5, 5, 1, 0, 1),
    (3, 2, 11, 17, 7, 3, 2, 2, 1, 1),
    (2, 4, 12, 19, 13, 3, 3, (2, 1), (2, 1), 2),
    (1, 1, 7, 40, 3, 1, 3, 3, 2, (1, 3)),
    (2, 5, 14, 10, 16, 5, 5, 1, 2, 1),
    (1, 2, 6, 35, 17, 2, 4, 1, 1, (2, 1)),
    # The weight gradient's flattened-plane path (OW < the vector width, unit row
    # stride), with a column stride, dilation and padding, and kw = 1 with a remainder
    # block of output channels; x read in place (no padding, unit column stride) with a
    # row stride and OW = 29, and OW = 16 exactly, batch 1.
    (2, 3, 12, 21, 5, 3, 3, (1, 2), 0, (2, 1)),
    (3, 2, 10, 9, 9, 3, 3, 1, 1, 2),
    (2, 4, 6, 5, 33, 1, 1, 1, 0, 1),
    (2, 3, 15, 37, 4, 3, 5, (2, 1), 0, (1, 2)),
    (1, 2, 8, 18, 3, 3, 3, 1, 0, 1),
    # Tasks of several output rows (_rows_per_task): three rows of one vector with one
    # and two rows left over, two rows of two vectors with one left (float32; float64
    # has half the lanes, so other combinations).
    (1, 2, 60, 15, 5, 3, 3, 1, 0, 1),
    (2, 3, 61, 13, 4, 3, 3, 1, 0, 1),
    (1, 2, 35, 30, 4, 3, 3, 1, 1, 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _windows64(x, kh, kw, s, p, d):
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    n, c, h, w = x.shape
    oh, ow = (h - d[0] * (kh - 1) - 1) // s[0] + 1, (w - d[1] * (kw - 1) - 1) // s[1] + 1
    st = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, oh, ow, kh, kw),
        (st[0], st[1], st[2] * s[0], st[3] * s[1], st[2] * d[0], st[3] * d[1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_float64_sums(case, dtype, vector):
    n, c, h, w, o, kh, kw, s, p, d = case
    s, p, d = _pair(s), _pair(p), _pair(d)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    win = _windows64(x, kh, kw, s, p, d)
    ref = np.einsum("ncyxij,ocij->noyx", win, wt.astype(np.float64))
    out = directconv.conv2d(x, wt, s, p, d)
    assert out.dtype == dtype and out.flags.c_contiguous and out.shape == ref.shape
    g = rng.standard_normal(ref.shape).astype(dtype)
    dw = directconv.conv2d_weight(g, x, (kh, kw), s, p, d)
    dw_ref = np.einsum("noyx,ncyxij->ocij", g.astype(np.float64), win)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(out - ref).max() <= tol * max(1.0, np.abs(ref).max())
    assert np.abs(dw - dw_ref).max() <= tol * max(1.0, np.abs(dw_ref).max())


def test_weight_grad_masks_lanes_past_the_row(vector):
    # An inf in a column no window of the last kernel column reads: the lanes past OW
    # of the last vector must not turn it into NaN through 0 * inf.
    x = np.zeros((1, 1, 3, 20), np.float32)
    x[0, 0, :, 19] = np.inf          # 3x3 kernel, no padding: OW = 18, column 19 is read
    g = np.ones((1, 1, 1, 18), np.float32)   # only by j = 2 (then through ox = 17)
    dw = directconv.conv2d_weight(g, x, (3, 3), (1, 1), (0, 0), (1, 1))
    assert np.isfinite(dw[..., :2]).all() and np.isinf(dw[..., 2]).all()


def test_weight_grad_flat_path_keeps_inf_in_its_taps(monkeypatch):
    # OW = 10 < 16 lanes: the flattened-plane path packs x per tap column. An inf in the
    # last column reaches only j = 2's weights (through ox = 9); every other tap stays
    # finite. (With AVX2's 8 lanes OW = 10 takes the row path.)
    monkeypatch.setattr(directconv, "VECTOR", REGISTER_FILES["avx512"])
    assert directconv._flat((10, 10, 1, 12, 12), (3, 3), (1, 1), 4)
    monkeypatch.setattr(directconv, "VECTOR", REGISTER_FILES["avx2"])
    assert not directconv._flat((10, 10, 1, 12, 12), (3, 3), (1, 1), 4)
    assert directconv._flat((6, 6, 1, 8, 8), (3, 3), (1, 1), 4)
    monkeypatch.setattr(directconv, "VECTOR", REGISTER_FILES["avx512"])
    x = np.ones((1, 1, 12, 12), np.float32)
    x[0, 0, :, 11] = np.inf
    g = np.ones((1, 2, 10, 10), np.float32)
    dw = directconv.conv2d_weight(g, x, (3, 3), (1, 1), (0, 0), (1, 1))
    assert np.isinf(dw[..., 2]).all()
    np.testing.assert_array_equal(dw[..., :2], np.full((2, 1, 3, 2), 100, np.float32))


def test_float32_error_on_the_training_shapes(vector):
    # The docstring's bound: float32 partial sums over a reduction of N*OH*OW = 50,176
    # (weight gradient) and C*kh*kw = 150 (forward) terms, against float64.
    rng = np.random.default_rng(5)
    for (n, c, h, o, k) in ((64, 3, 32, 6, 5), (64, 6, 14, 16, 5)):
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
        win = _windows64(x, k, k, (1, 1), (0, 0), (1, 1))
        ref = np.einsum("ncyxij,ocij->noyx", win, wt.astype(np.float64))
        out = directconv.conv2d(x, wt, (1, 1), (0, 0), (1, 1))
        g = rng.standard_normal(ref.shape).astype(np.float32)
        dw = directconv.conv2d_weight(g, x, (k, k), (1, 1), (0, 0), (1, 1))
        dw_ref = np.einsum("noyx,ncyxij->ocij", g.astype(np.float64), win)
        assert np.abs(out - ref).max() <= 2e-6 * np.abs(ref).max()
        assert np.abs(dw - dw_ref).max() <= 2e-5 * np.abs(dw_ref).max()


def test_non_contiguous_input(vector):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    x = base.transpose(0, 3, 1, 2)    # a permuted view, [2, 3, 9, 11]
    wt = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    out = directconv.conv2d(x, wt, (1, 1), (1, 1), (1, 1))
    ref = directconv.conv2d(np.ascontiguousarray(x), wt, (1, 1), (1, 1), (1, 1))
    np.testing.assert_array_equal(out, ref)


def _torch_check(torch, case, dtype, permuted=False):
    n, c, h, w, o, kh, kw, s, p, d = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, h, w, c) if permuted else (n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    ex, ew, eb = (ember.tensor(a, requires_grad=True) for a in (x, wt, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    exi, txi = (ex.permute(0, 3, 1, 2), tx.permute(0, 3, 1, 2)) if permuted else (ex, tx)
    eo = F.conv2d(exi, ew, eb, s, p, d)
    to = torch.nn.functional.conv2d(txi, tw, tb, s, p, d)
    g = rng.standard_normal(tuple(to.shape)).astype(dtype)
    (eo * ember.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), **tol)
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_against_torch(case, dtype):
    torch = pytest.importorskip("torch")
    _torch_check(torch, case, dtype)


def test_against_torch_permuted_input():
    torch = pytest.importorskip("torch")
    _torch_check(torch, (2, 3, 9, 13, 6, 3, 3, 2, 1, 1), np.float32, permuted=True)


def test_finite_differences():
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((2, 2, 5, 6))
    w0 = rng.standard_normal((3, 2, 3, 2))
    b0 = rng.standard_normal(3)
    g = rng.standard_normal((2, 3, 3, 4))
    geom = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))

    def f(x, w, b):
        return float((F.conv2d(ember.tensor(x), ember.tensor(w), ember.tensor(b), **geom)
                      * ember.tensor(g)).sum().item())

    ex, ew, eb = (ember.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    (F.conv2d(ex, ew, eb, **geom) * ember.tensor(g)).sum().backward()
    args = [x0, w0, b0]
    for k, t in enumerate((ex, ew, eb)):
        num = np.zeros_like(args[k])
        for idx in np.ndindex(args[k].shape):
            hi = [a.copy() for a in args]
            lo = [a.copy() for a in args]
            hi[k][idx] += 1e-6
            lo[k][idx] -= 1e-6
            num[idx] = (f(*hi) - f(*lo)) / 2e-6
        np.testing.assert_allclose(t.grad.numpy(), num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("geom", [dict(padding=(2, 0), dilation=(2, 1)),
                                  dict(padding=0, dilation=1),
                                  dict(padding=(1, 2), dilation=(1, 3))])
def test_input_gradient_at_stride_1_is_a_direct_convolution(geom):
    """At stride 1, dx is the convolution of g with the flipped, channel-swapped weight
    (``_conv_input_grad``): checked by finite differences, and that no col2im ran."""
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((2, 3, 7, 8))
    w0 = rng.standard_normal((4, 3, 3, 2))
    ex, ew = ember.tensor(x0, requires_grad=True), ember.tensor(w0, requires_grad=True)
    out = F.conv2d(ex, ew, **geom)
    g = rng.standard_normal(tuple(out.shape))
    (out * ember.tensor(g)).sum().backward()

    def f(x):
        return float((F.conv2d(ember.tensor(x), ember.tensor(w0), **geom)
                      * ember.tensor(g)).sum().item())

    num = np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        hi, lo = x0.copy(), x0.copy()
        hi[idx] += 1e-6
        lo[idx] -= 1e-6
        num[idx] = (f(hi) - f(lo)) / 2e-6
    np.testing.assert_allclose(ex.grad.numpy(), num, rtol=1e-6, atol=1e-6)

    w = ember.tensor(w0, requires_grad=True)
    report = ember.explain(lambda x: ember.autograd.grad(
        (F.conv2d(x, w, **geom) * ember.tensor(g)).sum(), x)[0],
        ember.tensor(x0, requires_grad=True))
    ops = [gr.graph[n].op for gr in report.graphs for n in gr.graph.nodes()]
    assert "flip" in ops and "conv2d_direct" in ops and "col2im" not in ops, ops


def test_input_gradient_keeps_col2im_where_it_is_not_a_convolution():
    """Stride 2, or padding past d*(k-1): matmul + col2im, as before."""
    for geom in (dict(stride=2, padding=1), dict(padding=1)):
        w = ember.randn(4, 3, 3, 3) if "stride" in geom else ember.randn(4, 3, 1, 1)
        report = ember.explain(lambda x: ember.autograd.grad(F.conv2d(x, w, **geom).sum(),
                                                             x)[0],
                               ember.randn(2, 3, 8, 8, requires_grad=True))
        ops = [gr.graph[n].op for gr in report.graphs for n in gr.graph.nodes()]
        assert "col2im" in ops, (geom, ops)


def test_double_backward_through_weight_grad():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 6, 7))
    w = rng.standard_normal((3, 2, 3, 3))
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    for xx, ww, mod in ((ex, ew, F), (tx, tw, torch.nn.functional)):
        out = mod.conv2d(xx, ww, padding=1)
        (out ** 2).sum().backward(create_graph=True)
        gw = ww.grad
        xx.grad = ww.grad = None
        (gw ** 2).sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-9)


def _simple_cnn():
    nn = ember.nn
    return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 2))


def test_compiled_train_step_equals_eager():
    results = []
    for compiled in (False, True):
        ember.manual_seed(0)
        model = _simple_cnn()
        opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        run = ember.compile(step) if compiled else step
        ember.manual_seed(1)
        x, y = ember.randn(4, 3, 32, 32), ember.randint(0, 2, (4,))
        losses = [float(run(x, y).item()) for _ in range(3)]
        results.append((losses, [p.detach().numpy().copy() for p in model.parameters()]))
        if compiled:
            st = run.stats()
            assert not st["fallbacks"] and not st["breaks"], st
    (le, pe), (lc, pc) = results
    np.testing.assert_allclose(lc, le, rtol=1e-5)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _explain(fn, *args) -> str:
    return str(ember.explain(fn, *args))


def test_path_choice_in_explain():
    small = ember.nn.Conv2d(3, 6, 5)   # SimpleCNN's conv1: direct
    big = ember.nn.Conv2d(64, 128, 3)  # many channels: im2col + GEMM
    text = _explain(lambda x: small(x), ember.randn(2, 3, 32, 32))
    assert "conv2d_direct" in text and "im2col" not in text
    text = _explain(lambda x: big(x), ember.randn(2, 64, 8, 8))
    assert "im2col" in text and "conv2d_direct" not in text


def test_compiled_bias_relu_fuse_after_the_direct_conv():
    """The bias add and the ReLU after conv2d_direct run in its epilogue
    (fuse_conv_epilogue): no elementwise kernel after it, and no copy."""
    conv = ember.nn.Conv2d(3, 4, 3)
    x = ember.randn(2, 3, 8, 8)
    f = ember.compile(lambda x: F.relu(conv(x)))
    np.testing.assert_allclose(f(x).detach().numpy(), F.relu(conv(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    text = str(ember.explain(lambda x: F.relu(conv(x)), x))
    assert "conv2d_direct" in text and "relu=True" in text, text
    assert "add+relu" not in text and "contiguous" not in text, text


def test_other_paths_keep_im2col():
    x = ember.randn(1, 4, 6, 6)
    w = ember.randn(4, 2, 3, 3)
    assert not F._direct_conv(x, w, 2)                       # groups
    assert not F._direct_conv(x.to(ember.float16), w.to(ember.float16), 1)
    assert F._direct_conv(x, ember.randn(4, 4, 3, 3), 1)


def test_rule_without_gradients_takes_wider_convolutions():
    """Only the forward counts without gradients: 64->128 3x3 at stride 1 goes direct
    then, not in training; a strided one with a long reduction never does."""
    x, w = ember.randn(1, 64, 8, 8), ember.randn(128, 64, 3, 3)
    assert F._direct_conv(x, w, 1, (1, 1), grad=False)
    assert not F._direct_conv(x, w, 1, (1, 1), grad=True)
    assert not F._direct_conv(x, w, 1, (2, 2), grad=False)
    assert F._direct_conv(ember.randn(1, 3, 32, 32), ember.randn(64, 3, 7, 7), 1, (2, 2),
                          grad=False)                        # a stem: C*kh*kw = 147
    with ember.no_grad():
        text = str(ember.explain(lambda x: F.conv2d(x, w, padding=1), x))
    assert "conv2d_direct" in text and "im2col" not in text, text
    wg = w.clone().requires_grad_()
    text = str(ember.explain(lambda x: F.conv2d(x, wg, padding=1), x))
    assert "im2col" in text, text
