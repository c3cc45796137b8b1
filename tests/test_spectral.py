"""ember.stft and ember.istft (ember/spectral.py): values and gradients against PyTorch
over the argument combinations (float32 and float64, batched and not, windows, padding
modes, one- and two-sided, normalized), round trips, torch's errors and warnings, and a
spectral loss under ember.compile equal to eager."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.spectral
from conftest import check_against_torch, check_grad_fd, to_np


def _window(mod, kind, size, dtype):
    if kind is None:
        return None
    if kind == "hann":
        return mod.hann_window(size, dtype=dtype)
    if kind == "hamming":
        return mod.hamming_window(size, periodic=False, dtype=dtype)
    raise ValueError(kind)


def _dtype(mod, x):
    return mod.float64 if x.dtype == np.float64 or str(x.dtype).endswith("float64") \
        else mod.float32


# (signal shape, stft kwargs, window kind): windows have win_length (else n_fft) samples
STFT_CASES = [
    ((40,), dict(n_fft=16), "hann"),
    ((40,), dict(n_fft=16), None),
    ((2, 37), dict(n_fft=15, hop_length=4), "hann"),
    ((2, 33), dict(n_fft=16, hop_length=5, win_length=9), "hann"),
    ((33,), dict(n_fft=16, win_length=10), None),
    ((30,), dict(n_fft=8, hop_length=3, center=False), "hamming"),
    ((3, 30), dict(n_fft=12, hop_length=4, pad_mode="constant"), "hann"),
    ((30,), dict(n_fft=10, pad_mode="replicate", normalized=True), "hann"),
    ((30,), dict(n_fft=10, hop_length=7, pad_mode="circular"), None),
    ((2, 30), dict(n_fft=12, onesided=False), "hann"),
    ((29,), dict(n_fft=11, hop_length=2, onesided=False, normalized=True, center=False),
     "hann"),
    ((16,), dict(n_fft=16, center=False), None),   # one frame: n_fft == the length
    ((31,), dict(n_fft=16, hop_length=4, win_length=8, center=False, align_to_window=True),
     "hann"),
    ((2, 30), dict(n_fft=12, hop_length=3, win_length=6, center=False,
                   align_to_window=False), None),
]


def _stft_ids():
    out = []
    for shape, kw, win in STFT_CASES:
        out.append("x".join(map(str, shape)) + "-" + "-".join(f"{k}={v}" for k, v in kw.items())
                   + f"-{win}")
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kwargs,win", STFT_CASES, ids=_stft_ids())
def test_stft_against_torch(shape, kwargs, win, dtype):
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    size = kwargs.get("win_length", kwargs["n_fft"])

    def fn(mod):
        def f(a):
            w = _window(mod, win, size, _dtype(mod, a))
            return mod.view_as_real(mod.stft(a, window=w, return_complex=True, **kwargs))
        return f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the missing-window warning
        check_against_torch(fn(ember), fn(torch), [x])


def test_stft_window_gradient_and_fd():
    """The window is differentiable too (padded to n_fft, or not), and float64
    gradients agree with finite differences."""
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 21))
    for kwargs, size in ((dict(n_fft=8, hop_length=3), 8), (dict(n_fft=8, win_length=5), 5)):
        w = rng.uniform(0.5, 1.0, size)

        def fn(mod):
            return lambda a, b: mod.view_as_real(mod.stft(a, window=b, return_complex=True,
                                                          **kwargs))
        check_against_torch(fn(ember), fn(torch), [x, w])
        check_grad_fd(fn(ember), [x[:, :13], w])


def test_mixed_dtypes_promote_as_torch():
    """A float64 window makes a float32 signal's stft complex128 (padded or not), and
    istft's result is real of the promoted dtype."""
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(30).astype(np.float32)
    for win_length in (12, 7):
        def fn(mod):
            def f(a):
                w = mod.hann_window(win_length, dtype=mod.float64)
                spec = mod.stft(a, 12, win_length=win_length, window=w, return_complex=True)
                return mod.view_as_real(spec), mod.istft(spec, 12, win_length=win_length,
                                                         window=w)
            return f
        check_against_torch(fn(ember), fn(torch), [x])
        assert fn(ember)(ember.tensor(x))[0].dtype == ember.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_magnitude_loss_gradient_against_torch(dtype):
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 48)).astype(dtype)

    def fn(mod):
        def f(a):
            w = mod.hann_window(16, dtype=_dtype(mod, a))
            return mod.stft(a, 16, hop_length=4, window=w, return_complex=True).abs().sum()
        return f
    # A sum of ~10^2 terms of size ~10 per gradient entry: float32 rounding is absolute.
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else {}
    check_against_torch(fn(ember), fn(torch), [x], **tol)


def test_complex_input_and_window():
    """A complex signal (or window) gives a two-sided complex stft (onesided=True raises),
    and istft(..., return_complex=True) inverts it."""
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((30, 2))
    w = rng.uniform(0.5, 1.0, 10)

    def fwd(mod):
        return lambda p: mod.view_as_real(mod.stft(mod.view_as_complex(p), 10, hop_length=3,
                                                   window=mod.hann_window(10, dtype=mod.float64)))
    check_against_torch(fwd(ember), fwd(torch), [z])

    def cwin(mod):
        return lambda a, p: mod.view_as_real(mod.stft(a, 10, window=mod.complex(p, p * 0.5)))
    check_against_torch(cwin(ember), cwin(torch), [z[:, 0].copy(), w])

    def back(mod):
        def f(p):
            spec = mod.stft(mod.view_as_complex(p), 10, hop_length=3,
                            window=mod.hann_window(10, dtype=mod.float64))
            return mod.view_as_real(mod.istft(spec, 10, hop_length=3, return_complex=True,
                                              window=mod.hann_window(10, dtype=mod.float64)))
        return f
    check_against_torch(back(ember), back(torch), [z])
    np.testing.assert_allclose(to_np(back(ember)(ember.tensor(z))), z, atol=1e-12)
    with pytest.raises(RuntimeError, match="Cannot have onesided output"):
        ember.stft(ember.view_as_complex(ember.tensor(z)), 10, onesided=True)


# (signal shape, kwargs shared by stft and istft, window kind, istft-only kwargs)
ISTFT_CASES = [
    ((40,), dict(n_fft=16), "hann", {}),
    ((2, 37), dict(n_fft=15, hop_length=4), "hann", dict(length=37)),
    ((2, 33), dict(n_fft=16, hop_length=4, win_length=10), "hann", {}),
    ((30,), dict(n_fft=8, hop_length=3, center=False), None, {}),
    ((30,), dict(n_fft=10, normalized=True), "hann", dict(length=25)),
    ((2, 30), dict(n_fft=12, onesided=False), "hann", {}),
    ((30,), dict(n_fft=12, hop_length=5), "hamming", dict(length=45)),   # zero-padded
    ((31,), dict(n_fft=9, hop_length=2, center=False), "hamming", dict(length=20)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kwargs,win,extra", ISTFT_CASES,
                         ids=[f"case{i}" for i in range(len(ISTFT_CASES))])
def test_istft_against_torch(shape, kwargs, win, extra, dtype):
    """istft of torch's stft of a signal (a consistent STFT) and of a perturbed one (the
    least-squares inverse), with gradients through the spectrogram."""
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    size = kwargs.get("win_length", kwargs["n_fft"])
    x = torch.tensor(rng.standard_normal(shape), dtype=tdt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = torch.stft(x, window=_window(torch, win, size, tdt), return_complex=True,
                          **kwargs)
    real = torch.view_as_real(spec).numpy()
    noisy = (real + 0.1 * rng.standard_normal(real.shape)).astype(dtype)

    def fn(mod):
        def f(p):
            w = _window(mod, win, size, _dtype(mod, p))
            return mod.istft(mod.view_as_complex(p), window=w, **kwargs, **extra)
        return f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # missing window, zero padding to `length`
        check_against_torch(fn(ember), fn(torch), [real])
        check_against_torch(fn(ember), fn(torch), [noisy])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip(dtype):
    """istft(stft(x)) == x wherever the windows overlap (all of x when centred)."""
    rng = np.random.default_rng(7)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    x = rng.standard_normal((2, 50)).astype(dtype)
    et = ember.tensor(x)
    dt = ember.float64 if dtype == np.float64 else ember.float32
    for n_fft, hop, win_length in ((16, 4, None), (15, 5, 15), (16, 3, 9), (8, 8, None)):
        w = ember.hann_window(win_length or n_fft, dtype=dt) if hop < 8 else None
        kw = dict(hop_length=hop, win_length=win_length, window=w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = ember.stft(et, n_fft, return_complex=True, **kw)
            back = ember.istft(spec, n_fft, length=50, **kw)
        assert back.dtype == dt and back.shape == (2, 50)
        np.testing.assert_allclose(to_np(back), x, atol=tol)
    # uncentred with a window that never vanishes: every sample the frames cover
    w = ember.hamming_window(12, dtype=dt)
    spec = et[0].stft(12, hop_length=4, window=w, center=False, return_complex=True)
    back = spec.istft(12, hop_length=4, window=w, center=False)
    assert back.shape == (48,)
    np.testing.assert_allclose(to_np(back), x[0, :48], atol=tol)


def test_istft_gradient_finite_differences():
    rng = np.random.default_rng(7)
    real = rng.standard_normal((5, 7, 2))
    check_grad_fd(lambda p: ember.istft(ember.view_as_complex(p), 8, hop_length=2,
                                        window=ember.hann_window(8, dtype=ember.float64)),
                  [real])
    # and with respect to the window (it is in the envelope too)
    check_grad_fd(lambda p, w: ember.istft(ember.view_as_complex(p), 8, hop_length=2,
                                           window=w, length=10),
                  [real, rng.uniform(0.5, 1.0, 8)])


def test_return_complex_and_window_warnings():
    rng = np.random.default_rng(7)
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(20)
    with pytest.raises(RuntimeError, match="stft requires the return_complex parameter"):
        ember.stft(ember.tensor(x), 8, window=ember.hann_window(8))
    ember.spectral._warned.clear()
    with pytest.warns(UserWarning, match="return_complex=False is deprecated"):
        old = ember.stft(ember.tensor(x), 8, window=ember.hann_window(8, dtype=ember.float64),
                         return_complex=False)
    expected = torch.stft(torch.tensor(x), 8, window=torch.hann_window(8, dtype=torch.float64),
                          return_complex=True)
    np.testing.assert_allclose(to_np(old), torch.view_as_real(expected).numpy(), atol=1e-12)
    with pytest.warns(UserWarning, match="A window was not provided"):
        ember.stft(ember.tensor(x), 8, return_complex=True)
    with warnings.catch_warnings():   # torch warns once per process
        warnings.simplefilter("error")
        ember.stft(ember.tensor(x), 8, return_complex=True)
    spec = ember.stft(ember.tensor(x), 8, window=ember.ones(8), return_complex=True)
    with pytest.warns(UserWarning, match="A window was not provided"):
        ember.istft(spec, 8)
    with pytest.warns(UserWarning, match="padded with zeros"):
        assert ember.istft(spec, 8, window=ember.ones(8), length=30).shape == (30,)


def _x(mod):
    return mod.tensor(np.random.default_rng(0).standard_normal(40), dtype=mod.float32)


def _spec(mod):
    return mod.stft(_x(mod), 16, window=mod.hann_window(16), return_complex=True)


# (call on a module, exception, message pattern): each fails alike in ember and torch
ERRORS = [
    (lambda m: m.stft(_x(m), 0, return_complex=True), RuntimeError, "expected 0 < n_fft < 40"),
    (lambda m: m.stft(_x(m), 50, center=False, return_complex=True), RuntimeError,
     "expected 0 < n_fft < 40"),
    (lambda m: m.stft(_x(m), 100, return_complex=True), RuntimeError,
     "Padding size should be less than"),
    (lambda m: m.stft(_x(m), 16, hop_length=0, return_complex=True), RuntimeError,
     "expected hop_length > 0"),
    (lambda m: m.stft(_x(m), 16, win_length=17, return_complex=True), RuntimeError,
     "expected 0 < win_length <= n_fft"),
    (lambda m: m.stft(_x(m), 16, win_length=8, window=m.ones(9), return_complex=True),
     RuntimeError, "expected a 1D window tensor of size equal to win_length=8"),
    (lambda m: m.stft(_x(m).reshape(2, 2, 10), 4, return_complex=True), RuntimeError,
     "expected a 1D or 2D tensor"),
    (lambda m: m.stft(_x(m).long(), 4, return_complex=True), RuntimeError,
     "expected a tensor of floating point or complex values"),
    (lambda m: m.stft(_x(m), 16, pad_mode="foo", return_complex=True), NotImplementedError,
     "Unrecognised padding mode foo"),
    (lambda m: m.stft(_x(m), 4, align_to_window=True, return_complex=True), RuntimeError,
     "align_to_window should only be set when center = false"),
    (lambda m: m.stft(_x(m), 4.0, return_complex=True), TypeError, "n_fft"),
    (lambda m: m.stft(_x(m).to(m.complex64), 10, onesided=True), RuntimeError,
     "Cannot have onesided output"),
    (lambda m: m.istft(m.view_as_real(_spec(m)), 16, window=m.hann_window(16)), RuntimeError,
     "istft requires a complex-valued input"),
    # NOLA: the hann window vanishes at the first sample of an uncentred signal
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(16), center=False), RuntimeError,
     "window overlap add min"),
    (lambda m: m.istft(_spec(m), 16, window=m.zeros(16)), RuntimeError,
     "window overlap add min"),
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(4), win_length=4, hop_length=4),
     RuntimeError, "window overlap add min"),
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(16), hop_length=20), RuntimeError,
     "expected 0 < hop_length <= win_length"),
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(16), win_length=20), RuntimeError,
     "expected 0 < win_length <= n_fft"),
    (lambda m: m.istft(_spec(m), 16, window=m.ones(15)), RuntimeError, "Invalid window shape"),
    (lambda m: m.istft(_spec(m), 14, window=m.ones(14)), RuntimeError,
     "match n_fft / 2 \\+ 1 when onesided=True, but got 9"),
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(16), onesided=False), RuntimeError,
     "match n_fft when onesided=False, but got 9"),
    (lambda m: m.istft(_spec(m), 16, window=m.hann_window(16), return_complex=True),
     RuntimeError, "Cannot have onesided output"),
    (lambda m: m.istft(_spec(m)[:, :0], 16, window=m.hann_window(16)), RuntimeError,
     "input tensor cannot be empty"),
    (lambda m: m.istft(_spec(m)[None, None], 16, window=m.hann_window(16)), RuntimeError,
     "expected a tensor with 3 or 4 dimensions, but got 5"),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors_as_torch(case):
    fn, exc, pattern = ERRORS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=pattern):
            fn(ember)
        torch = pytest.importorskip("torch")
        with pytest.raises(exc, match=pattern):
            fn(torch)


def test_spectral_loss_compiled_equals_eager():
    """A multi-resolution STFT magnitude loss (log and linear) between a learned filter's
    output and a target, stepped by SGD: compiled equals eager, and the loss falls."""
    def run(compiled):
        r = np.random.default_rng(3)
        kernel = ember.tensor(r.standard_normal(5) * 0.3, requires_grad=True)
        x = ember.tensor(r.standard_normal((2, 64)))
        target = ember.tensor(r.standard_normal((2, 64)))
        opt = ember.optim.SGD([kernel], lr=0.01)

        def spec(sig, n_fft):
            w = ember.hann_window(n_fft, dtype=sig.dtype)
            return ember.stft(sig, n_fft, hop_length=n_fft // 4, window=w,
                              return_complex=True).abs()

        def step(x, target):
            y = ember.nn.functional.conv1d(x.unsqueeze(1), kernel.view(1, 1, 5),
                                           padding=2).squeeze(1)
            loss = 0
            for n_fft in (16, 32):
                a, b = spec(y, n_fft), spec(target, n_fft)
                loss = loss + (a - b).abs().mean() + ((a + 1e-3).log() - (b + 1e-3).log()
                                                      ).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        f = ember.compile(step) if compiled else step
        return [float(f(x, target)) for _ in range(4)], to_np(kernel)

    eager, comp = run(False), run(True)
    np.testing.assert_allclose(comp[0], eager[0], rtol=1e-10)
    np.testing.assert_allclose(comp[1], eager[1], rtol=1e-10)
    assert eager[0][-1] < eager[0][0]


def test_istft_compiled_equals_eager():
    """istft inside a compiled function equals eager, gradients included; its NOLA check
    is no graph break, and a replay with a window that fails it raises torch's error."""
    r = np.random.default_rng(4)
    real = r.standard_normal((2, 9, 6, 2))
    hann = ember.hann_window(16, dtype=ember.float64)

    def f(p, w):
        y = ember.istft(ember.view_as_complex(p), 16, hop_length=4, window=w, length=24)
        return (y ** 2).sum()

    def grads(fn):
        p = ember.tensor(real, requires_grad=True)
        loss = fn(p, hann)
        loss.backward()
        return float(loss), to_np(p.grad)

    eager = grads(f)
    compiled = ember.compile(f)
    for _ in range(2):
        got = grads(compiled)
        np.testing.assert_allclose(got[0], eager[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], eager[1], rtol=1e-12, atol=1e-14)
    assert "0 graph break" in str(ember.explain(f, ember.tensor(real), hann))
    with pytest.raises(RuntimeError, match="window overlap add min"):
        compiled(ember.tensor(real), ember.zeros(16, dtype=ember.float64))
    np.testing.assert_allclose(grads(compiled)[0], eager[0], rtol=1e-12)


def test_tensor_methods_and_exports():
    x = ember.randn(2, 40)
    w = ember.hann_window(16)
    a = x.stft(16, window=w, return_complex=True)
    b = ember.stft(x, 16, window=w, return_complex=True)
    np.testing.assert_array_equal(to_np(a), to_np(b))
    np.testing.assert_array_equal(to_np(a.istft(16, window=w)), to_np(ember.istft(b, 16,
                                                                                  window=w)))
    assert a.shape == (2, 9, 11) and a.dtype == ember.complex64


def test_docstring_examples():
    import doctest
    result = doctest.testmod(ember.spectral, extraglobs={"ember": ember},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
