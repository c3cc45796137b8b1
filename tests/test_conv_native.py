"""Convolution as one GEMM over the batch (im2col rows = output pixels) and max pooling
as its own primitive, with the native llvmlite kernels behind both: against PyTorch,
against the NumPy fallbacks, against finite differences, and compiled against eager."""
from __future__ import annotations

import os

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.codegen.llvm import native
from ember.ops import conv as conv_ops
from tests.conftest import check_against_torch, check_grad_fd, to_np

rng = np.random.default_rng(15)

# (N, C, H, W, O, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 9, 8, 6, 3, 1, 1, 1, 1),
    (1, 4, 11, 7, 4, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (3, 6, 8, 8, 6, 5, 1, 0, 1, 3),
    (1, 2, 5, 5, 3, 1, 2, 0, 1, 1),          # 1x1, strided
    (2, 4, 7, 6, 8, 2, (1, 2), (1, 1), (2, 1), 4),   # depthwise-style, even kernel
]


def _conv_inputs(case, dtype=np.float64):
    n, c, h, w, o, k, s, p, d, g = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_forward_and_grads_match_torch(case, dtype):
    torch = pytest.importorskip("torch")
    x, wt, b, attrs = _conv_inputs(case, dtype)
    # float32 sums of ~50 products of unit normals in another order than torch's (the
    # vector width decides ours): a cancelling output can differ by a few 1e-6.
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else {}
    check_against_torch(lambda x, w, b: F.conv2d(x, w, b, **attrs),
                        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **attrs),
                        [x, wt, b], **tol)


def test_conv2d_noncontiguous_input_and_no_bias_match_torch():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 7, 6, 3)).transpose(0, 3, 2, 1)        # channels-last
    assert not x.flags.c_contiguous
    wt = rng.standard_normal((5, 3, 3, 3))
    check_against_torch(lambda x, w: F.conv2d(x, w, padding=1),
                        lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), [x, wt])


def test_conv2d_output_is_contiguous_and_views():
    out = F.conv2d(ember.ones(2, 3, 8, 8), ember.ones(4, 3, 3, 3))
    assert out.is_contiguous()
    assert out.view(2, -1).shape == (2, 4 * 36)   # as PyTorch's conv output allows


@pytest.mark.parametrize("case", CONV_CASES[:3])
def test_conv2d_grads_match_finite_differences(case):
    x, wt, b, attrs = _conv_inputs(case)
    check_grad_fd(lambda x, w, b: F.conv2d(x, w, b, **attrs), [x, wt, b])


# ((2, 2), None, 0, 1), (3, 3, 0, 1) and (2, 3, 0, 1) below tile the plane (stride ==
# kernel, with rows and columns no window covers): their backward writes each cell once.
POOL_CASES = [((2, 2), None, 0, 1), (3, 2, 1, 1), ((3, 2), (2, 1), (1, 0), (1, 2)),
              (2, 1, 0, 2), (3, 3, 1, 1), (3, 3, 0, 1)]


@pytest.mark.parametrize("k,s,p,d", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool2d_matches_torch(k, s, p, d, dtype):
    torch = pytest.importorskip("torch")
    x = rng.permutation(np.linspace(-3, 3, 2 * 3 * 9 * 8)).reshape(2, 3, 9, 8).astype(dtype)
    check_against_torch(lambda a: F.max_pool2d(a, k, s, p, d),
                        lambda a: torch.nn.functional.max_pool2d(a, k, s, p, d), [x])
    got = F.max_pool2d(ember.tensor(x), k, s, p, d, return_indices=True)[1]
    want = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, return_indices=True)[1]
    np.testing.assert_array_equal(to_np(got), want.numpy())


def test_max_pool2d_ties_nan_and_inf_follow_torch():
    """PyTorch: the first maximum takes the gradient, a NaN wins, a window of -inf
    points at its first in-range element."""
    torch = pytest.importorskip("torch")
    x = np.array([[[[1.0, 1.0, 0.0, -np.inf], [1.0, np.nan, 2.0, -np.inf],
                    [2.0, 0.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf, -np.inf]]]])
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        for k, s, p in [(2, 1, 0), (2, 2, 1), (3, 1, 1), (2, 2, 0), (3, 3, 0)]:
            xe = ember.tensor(xs, requires_grad=True)
            xt = torch.tensor(xs, requires_grad=True)
            ye, ie = F.max_pool2d(xe, k, s, p, return_indices=True)
            yt, it = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
            np.testing.assert_array_equal(to_np(ye.detach()), yt.detach().numpy())
            np.testing.assert_array_equal(to_np(ie), it.numpy())
            g = rng.standard_normal(yt.shape).astype(dtype)
            ye.backward(ember.tensor(g))
            yt.backward(torch.tensor(g))
            np.testing.assert_array_equal(to_np(xe.grad), xt.grad.numpy())


def test_max_pool_unbatched_and_1d_indices():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 10))
    got = F.max_pool1d(ember.tensor(x), 3, 2, 1, return_indices=True)
    want = torch.nn.functional.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(to_np(got[0]), want[0].numpy())
    np.testing.assert_array_equal(to_np(got[1]), want[1].numpy())


def test_max_pool2d_grad_matches_finite_differences():
    x = rng.permutation(np.linspace(-2, 2, 2 * 2 * 7 * 6)).reshape(2, 2, 7, 6)
    check_grad_fd(lambda a: F.max_pool2d(a, 3, 2, 1), [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,d", [((2, 1), (3, 1), (2, 1)), ((2, 2), (2, 2), (1, 1)),
                                   ((3, 2), (1, 2), (2, 2))])
def test_max_pool2d_backward_index_of_ties_zeros_and_nans(k, s, d, dtype):
    # The backward finds the window's index after its maximum: the first cell with the
    # maximum's bits, or the last NaN. Ties, 0.0 / -0.0, -inf and NaN against the NumPy
    # scan; the float64 (2, 1) window is the one whose float-compare form of that search
    # hit an LLVM assertion (a crash) while optimizing.
    x = rng.integers(-2, 3, (2, 3, 9, 7)).astype(dtype)
    m = rng.random(x.shape)
    x[m < 0.05] = np.nan
    x[(m > 0.05) & (m < 0.1)] = -np.inf
    x[(m > 0.1) & (m < 0.2)] = -0.0
    geom = (k, s, (0, 0), d)
    out = native.max_pool2d(x, *geom)
    idx = conv_ops._window_argmax(np, x, *geom)
    np.testing.assert_array_equal(out, conv_ops._gather(np, x, idx))
    g = rng.standard_normal(out.shape).astype(dtype)
    # (overlapping windows add into a cell in another order: allclose)
    np.testing.assert_allclose(native.max_pool2d_backward(g, x, *geom),
                               conv_ops._scatter(np, g, idx, x.shape), rtol=1e-6, atol=1e-6)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.max_pool2d(tx, k, s, 0, d) * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(native.max_pool2d_backward(g, x, *geom), tx.grad.numpy())


def _pool_kernel(kind, x, lanes=None):
    """max pooling 2x2/2 of ``x`` by ``_pool_ir`` (lanes None) or by the vector kernel
    at ``lanes``, whatever the host's registers: kind "fwd", "bwd" or "relu"."""
    geom = native._geometry(x.shape, (2, 2), (2, 2), (0, 0), (1, 1))
    key = (tuple(x.shape), native._elem_strides(x), geom)
    ft, backward, relu = native._FLOAT[x.dtype], kind != "fwd", kind == "relu"

    def build(name):
        if lanes is None:
            return native._pool_ir(name, ft, *key, backward=backward, relu=relu), 2 + backward
        return native._pool2x2_ir(name, ft, *key, backward, relu, lanes), 2 + backward
    return native.compiled(("test_pool", kind, lanes, x.dtype.str, *key), build), geom


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_2x2_vectors_equal_the_scalar_scan(lanes, dtype):
    # The 2x2/2 kernel works on vectors of windows; a row narrower than a vector, its
    # last (overlapping) vector, odd H and W, ties, +-0, +-inf and NaN must give what
    # the window-by-window scan gives, bit for bit: forward, backward, after relu.
    lanes = lanes * 4 // np.dtype(dtype).itemsize
    for h, w in [(1, 5), (2, 2), (3, 7), (5, 9), (13, 13), (30, 30), (6, 33), (4, 40)]:
        x = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf, np.nan],
                                dtype), (2, 3, h + 1, w))[:, :, 1:]   # planes strided
        for kind in ("fwd", "bwd", "relu"):
            (ref, geom), (vec, _) = _pool_kernel(kind, x), _pool_kernel(kind, x, lanes)
            out = np.empty((2, 3, *geom[4]), dtype)
            args = [x, out] if kind == "fwd" else [x, rng.standard_normal(out.shape)
                                                  .astype(dtype), np.empty_like(x)]
            got = args[:-1] + [args[-1].copy()]   # x keeps its strides
            ref(args, 6, 0)
            vec(got, 6, 0)
            assert got[-1].tobytes() == args[-1].tobytes(), (h, w, kind)


@pytest.mark.parametrize("k,s,p,d", [(2, 2, 0, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 1), (2, 1)),
                                     ((2, 3), (2, 3), 0, 1)])
def test_native_kernels_equal_the_array_fallbacks(k, s, p, d):
    """The llvmlite kernels and the NumPy code (what CuPy and other dtypes run) agree."""
    pair = lambda v: (v, v) if isinstance(v, int) else v   # noqa: E731
    geom = tuple(map(pair, (k, s, p, d)))
    x = rng.standard_normal((3, 4, 9, 7)).astype(np.float32)
    xt = rng.standard_normal((3, 9, 7, 4)).astype(np.float32).transpose(0, 3, 1, 2)
    for a in (x, xt):
        assert native.supports(a)
        cols = native.im2col(a, *geom)
        win = conv_ops._windows(np, a, *geom, 0)
        ref = win.transpose(0, 2, 3, 1, 4, 5).reshape(cols.shape)
        np.testing.assert_array_equal(cols, ref)
        g = rng.standard_normal(cols.shape).astype(np.float32)
        np.testing.assert_allclose(native.col2im(g, a.shape, *geom),
                                   conv_ops._col2im(np, g.astype(np.float16), a.shape, *geom)
                                   .astype(np.float32), rtol=2e-2, atol=2e-2)
        out = native.max_pool2d(a, *geom)
        idx = conv_ops._window_argmax(np, a, *geom)
        np.testing.assert_array_equal(out, conv_ops._gather(np, a, idx))
        go = rng.standard_normal(out.shape).astype(np.float32)
        np.testing.assert_allclose(native.max_pool2d_backward(go, a, *geom),
                                   conv_ops._scatter(np, go, idx, a.shape), rtol=1e-6,
                                   atol=1e-6)


def test_half_precision_runs_the_array_code_and_matches():
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    assert not native.supports(x)
    got = F.conv2d(ember.tensor(x), ember.tensor(w), padding=1)
    want = F.conv2d(ember.tensor(x.astype(np.float32)), ember.tensor(w.astype(np.float32)),
                    padding=1)
    np.testing.assert_allclose(to_np(got).astype(np.float32), to_np(want), rtol=2e-2, atol=5e-2)
    np.testing.assert_array_equal(to_np(F.max_pool2d(ember.tensor(x), 2)),
                                  to_np(F.max_pool2d(ember.tensor(x.astype(np.float32)), 2))
                                  .astype(np.float16))


def _cnn(lib, groups=1):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, stride=2, groups=groups)
            self.fc = nn.Linear(8 * 3 * 3, 4)

        def forward(self, x):
            x = lib.nn.functional.max_pool2d(lib.nn.functional.relu(self.c1(x)), 2)
            x = lib.nn.functional.relu(self.c2(x))
            return self.fc(lib.flatten(x, 1))
    return Net()


@pytest.mark.parametrize("groups", [1, 2])
def test_compiled_training_step_equals_eager(groups):
    x = ember.tensor(rng.standard_normal((4, 3, 16, 16)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 4, 4))
    results = []
    for compiled in (False, True):
        ember.manual_seed(0)
        m = _cnn(ember, groups)
        opt = ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            return loss
        f = ember.compile(step) if compiled else step
        losses = [float(f(x, y)) for _ in range(3)]
        results.append((losses, [to_np(p.detach()).copy() for p in m.parameters()]))
    (le, pe), (lc, pc) = results
    np.testing.assert_allclose(lc, le, rtol=1e-5)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_compiled_conv_bias_relu_fuses_after_the_gemm():
    """The NCHW copy, the bias add and the ReLU after the GEMM are one kernel."""
    conv = ember.nn.Conv2d(3, 80, 3)   # 80 channels: the im2col + GEMM path
    f = ember.compile(lambda x: F.relu(conv(x)))
    x = ember.randn(2, 3, 8, 8)
    np.testing.assert_allclose(to_np(f(x)), to_np(F.relu(conv(x))), rtol=1e-6, atol=1e-6)
    text = str(ember.explain(lambda x: F.relu(conv(x)), x))
    assert "contiguous+add+relu" in text, text


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
@pytest.mark.parametrize("include_pad,override", [(True, None), (False, None), (True, 5)])
def test_avg_pool2d_matches_torch(k, s, p, include_pad, override):
    torch = pytest.importorskip("torch")
    for x in (rng.standard_normal((2, 3, 9, 8)),
              rng.standard_normal((2, 8, 9, 3)).astype(np.float32).transpose(0, 3, 2, 1)):
        check_against_torch(
            lambda a: F.avg_pool2d(a, k, s, p, count_include_pad=include_pad,
                                   divisor_override=override),
            lambda a: torch.nn.functional.avg_pool2d(a, k, s, p, count_include_pad=include_pad,
                                                     divisor_override=override), [x])


def test_avg_pool2d_native_equals_fallback_and_finite_differences():
    x = rng.standard_normal((2, 3, 7, 6))
    for div in (9, 0):
        geom = ((3, 3), (2, 2), (1, 1))
        out = native.avg_pool2d(x, *geom, div)
        np.testing.assert_allclose(out, conv_ops._avg_pool2d(np, x.astype(np.float16), *geom,
                                                             div).astype(np.float64),
                                   rtol=5e-3, atol=5e-3)
        g = rng.standard_normal(out.shape)
        np.testing.assert_allclose(native.avg_pool2d_backward(g, x.shape, *geom, div),
                                   conv_ops._avg_pool2d_backward(np, g.astype(np.float16),
                                                                 x.shape, *geom, div),
                                   rtol=5e-3, atol=5e-3)
    check_grad_fd(lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=False), [x])


def test_native_kernels_split_across_threads_give_the_same_result(monkeypatch):
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    geom = ((3, 3), (2, 2), (1, 1), (1, 1))
    one = [native.im2col(x, *geom), native.max_pool2d(x, *geom), native.avg_pool2d(x, *geom[:3], 0)]
    g = rng.standard_normal(one[0].shape).astype(np.float32)
    one += [native.col2im(g, x.shape, *geom), native.max_pool2d_backward(one[1], x, *geom)]
    monkeypatch.setattr(native, "_PARALLEL_MIN", 0)
    split = [native.im2col(x, *geom), native.max_pool2d(x, *geom),
             native.avg_pool2d(x, *geom[:3], 0), native.col2im(g, x.shape, *geom),
             native.max_pool2d_backward(one[1], x, *geom)]
    for a, b in zip(one, split):
        np.testing.assert_array_equal(a, b)


def test_a_second_process_reuses_the_native_kernels_on_disk(tmp_path):
    """The IR text keys the persistent cache: a kernel name salted per process (``hash``
    of a string) missed it in every new process and filled it with copies."""
    import subprocess
    import sys
    code = ("import ember, ember.nn.functional as F; x = ember.randn(2, 3, 9, 9, "
            "requires_grad=True); F.max_pool2d(F.conv2d(x, ember.randn(4, 3, 3, 3)), 2)"
            ".sum().backward()")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    counts = []
    for seed in (1, 2):
        env = dict(os.environ, PYTHONHASHSEED=str(seed), EMBER_CACHE_DIR=str(tmp_path),
                   PYTHONPATH=root)
        subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=root)
        counts.append(sum(len(files) for _, _, files in os.walk(tmp_path)))
    assert counts[0] > 0 and counts[1] == counts[0], counts
