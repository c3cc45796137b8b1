"""ember.fft and the complex helpers (ember/fft.py, ember/complex_numbers.py,
ember/ops/spectral.py): values against PyTorch and NumPy, gradients against PyTorch and
float64 finite differences (through real-valued views of the complex results), and a
compiled training use equal to eager."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import check_against_torch, check_grad_fd, to_np

rng = np.random.default_rng(11)
X = rng.standard_normal((3, 8))
X3 = rng.standard_normal((2, 4, 6))
Z = rng.standard_normal((3, 5, 2))   # complex inputs as (real, imag) pairs


def _np(t):
    t = t.resolve_conj() if hasattr(t, "resolve_conj") else t
    return to_np(t)


# (transform, kwargs, input): every transform, with n/s padding and trimming and norms
FORWARD = [
    ("fft", {}, X), ("fft", {"n": 5}, X), ("fft", {"n": 11, "dim": 0, "norm": "ortho"}, X),
    ("ifft", {}, X), ("ifft", {"n": 10, "norm": "forward"}, X),
    ("rfft", {}, X), ("rfft", {"n": 7, "norm": "forward"}, X), ("rfft", {"dim": 0}, X),
    ("irfft", {}, X), ("irfft", {"n": 9}, X), ("irfft", {"n": 4, "norm": "ortho"}, X),
    ("fft2", {}, X3), ("ifft2", {"s": (3, 8)}, X3), ("fftn", {}, X3), ("fftn", {"dim": 0}, X3),
    ("ifftn", {"s": (5,), "norm": "ortho"}, X3),
    ("rfft2", {}, X3), ("rfftn", {"s": (2, 6)}, X3), ("rfftn", {"dim": (0, 2)}, X3),
    ("irfft2", {}, X3), ("irfftn", {"s": (3, 7)}, X3), ("irfftn", {"dim": (0, 1)}, X3),
    ("hfft", {}, X), ("hfft", {"n": 6}, X), ("ihfft", {}, X),
    ("fftshift", {}, X3), ("ifftshift", {"dim": 1}, X3), ("fftshift", {"dim": (0, 2)}, X3),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in FORWARD]


def _real_view(mod, out):
    if hasattr(out, "resolve_conj"):   # torch's lazy conjugation (ifft of a real input)
        out = out.resolve_conj()
    return mod.view_as_real(out) if out.dtype.is_complex else out


@pytest.mark.parametrize("name,kwargs,x", FORWARD, ids=IDS)
def test_real_input_against_torch(name, kwargs, x):
    torch = pytest.importorskip("torch")
    check_against_torch(lambda a: _real_view(ember, getattr(ember.fft, name)(a, **kwargs)),
                        lambda a: _real_view(torch, getattr(torch.fft, name)(a, **kwargs)), [x])


@pytest.mark.parametrize("name,kwargs,x", FORWARD, ids=IDS)
def test_real_input_gradient_finite_differences(name, kwargs, x):
    check_grad_fd(lambda a: _real_view(ember, getattr(ember.fft, name)(a, **kwargs)), [x])


COMPLEX = [("fft", {}), ("ifft", {"n": 3, "dim": 0}), ("fft2", {"norm": "ortho"}),
           ("ifftn", {"s": (4, 7)}), ("irfft", {}), ("irfft", {"n": 7, "norm": "forward"}),
           ("irfft2", {}), ("hfft", {"n": 5})]


@pytest.mark.parametrize("name,kwargs", COMPLEX, ids=[f"{n}-{kw}" for n, kw in COMPLEX])
def test_complex_input_against_torch_and_fd(name, kwargs):
    torch = pytest.importorskip("torch")

    def fn(mod):
        return lambda p: _real_view(mod, getattr(mod.fft, name)(mod.view_as_complex(p), **kwargs))
    check_against_torch(fn(ember), fn(torch), [Z])
    check_grad_fd(fn(ember), [Z])


def test_against_numpy_float32_and_dtypes():
    x = X.astype(np.float32)
    out = ember.fft.rfft(ember.tensor(x))
    assert out.dtype is ember.complex64
    np.testing.assert_allclose(to_np(out), np.fft.rfft(x), rtol=1e-5, atol=1e-5)
    assert ember.fft.fft(ember.tensor(X)).dtype is ember.complex128
    back = ember.fft.irfft(out, n=8)
    assert back.dtype is ember.float32
    np.testing.assert_allclose(to_np(back), x, atol=1e-5)
    ints = ember.fft.fft(ember.tensor([1, 2, 3]))
    assert ints.dtype is ember.complex64
    np.testing.assert_allclose(to_np(ints), np.fft.fft([1, 2, 3]), rtol=1e-6)


def test_frequencies_match_torch():
    torch = pytest.importorskip("torch")
    for n, d in [(5, 0.1), (8, 1.0)]:
        np.testing.assert_allclose(to_np(ember.fft.fftfreq(n, d)), torch.fft.fftfreq(n, d).numpy())
        np.testing.assert_allclose(to_np(ember.fft.rfftfreq(n, d)),
                                   torch.fft.rfftfreq(n, d).numpy())
    assert ember.fft.fftfreq(4, dtype=ember.float64).dtype is ember.float64


def test_complex_helpers_against_torch():
    torch = pytest.importorskip("torch")
    check_against_torch(lambda p: ember.view_as_complex(p).abs(),
                        lambda p: torch.view_as_complex(p).abs(), [Z])
    check_against_torch(lambda p: ember.view_as_complex(p).angle(),
                        lambda p: torch.view_as_complex(p).angle(), [Z])
    check_against_torch(lambda p: ember.view_as_real(ember.view_as_complex(p).conj()),
                        lambda p: torch.view_as_real(torch.view_as_complex(p).conj()
                                                     .resolve_conj()), [Z])
    check_against_torch(lambda a, b: ember.view_as_real(ember.complex(a, b)),
                        lambda a, b: torch.view_as_real(torch.complex(a, b)), [X, X * 2])
    check_against_torch(lambda a, b: ember.view_as_real(ember.polar(a, b)),
                        lambda a, b: torch.view_as_real(torch.polar(a, b)), [np.abs(X), X])
    z = ember.view_as_complex(ember.tensor(Z))
    np.testing.assert_array_equal(to_np(z.real), Z[..., 0])
    np.testing.assert_array_equal(to_np(z.imag), Z[..., 1])
    check_grad_fd(lambda p: ember.view_as_complex(p).angle(), [Z])
    check_grad_fd(lambda p: ember.view_as_complex(p).imag * 3, [Z])


def test_errors_as_torch():
    with pytest.raises(RuntimeError, match="expects a real input"):
        ember.fft.rfft(ember.fft.fft(ember.ones(4)))
    with pytest.raises(RuntimeError, match="Invalid normalization mode"):
        ember.fft.fft(ember.ones(4), norm="bogus")
    with pytest.raises(RuntimeError, match="Invalid number of data points"):
        ember.fft.fft(ember.ones(4), n=0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        ember.fft.fft(ember.ones(4), dim=2)
    with pytest.raises(RuntimeError, match="non-complex"):
        ember.ones(2).imag


def test_compiled_training_equals_eager():
    """A spectral filter learned by gradient descent: rfft, a complex product, irfft and
    an |fft| loss, compiled (the transforms run as eager steps) against eager."""
    def run(compiled):
        r = np.random.default_rng(5)
        w = ember.tensor(r.standard_normal((5, 2)), requires_grad=True)
        x = ember.tensor(r.standard_normal((4, 8)))
        y = ember.tensor(r.standard_normal((4, 8)))
        opt = ember.optim.SGD([w], lr=0.05)

        def step(x, y):
            spec = ember.fft.rfft(x) * ember.view_as_complex(w)
            out = ember.fft.irfft(spec, n=8)
            loss = ((out - y) ** 2).mean() + ember.fft.fft(out).abs().mean() * 0.01
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        f = ember.compile(step) if compiled else step
        return [float(f(x, y)) for _ in range(4)], to_np(w)

    eager, comp = run(False), run(True)
    np.testing.assert_allclose(comp[0], eager[0], rtol=1e-10)
    np.testing.assert_allclose(comp[1], eager[1], rtol=1e-10)
    assert eager[0][-1] < eager[0][0]


def test_complex_product_gradients_against_torch():
    """Products, quotients and matmuls of complex tensors conjugate the other factor in
    their gradients, and a real input's gradient is the real part (PyTorch's rules)."""
    torch = pytest.importorskip("torch")
    q = rng.standard_normal((3, 5, 2))
    m1, m2 = rng.standard_normal((3, 4, 2)), rng.standard_normal((4, 2, 2))
    c = (lambda mod, p: mod.view_as_complex(p))
    for fn in (lambda mod: lambda p, r: mod.view_as_real(c(mod, p) * c(mod, r)),
               lambda mod: lambda p, r: mod.view_as_real(c(mod, p) / c(mod, r)),
               lambda mod: lambda p, r: c(mod, p).abs() * c(mod, r).real):
        check_against_torch(fn(ember), fn(torch), [Z, q])
        check_grad_fd(fn(ember), [Z, q])
    mm = (lambda mod: lambda p, r: mod.view_as_real(c(mod, p) @ c(mod, r)))
    check_against_torch(mm(ember), mm(torch), [m1, m2])
    check_grad_fd(mm(ember), [m1, m2])
    mixed = (lambda mod: lambda x, p: mod.view_as_real(x * mod.view_as_complex(p)))
    check_against_torch(mixed(ember), mixed(torch), [X[:, :5], Z])
    check_grad_fd(mixed(ember), [X[:, :5], Z])


def _spectral_conv(mod, x, wr, wi, modes=3):
    """A Fourier neural operator layer: the lowest modes of rfft2 mixed by complex weights
    (einsum), the rest zero, back by irfft2."""
    w = mod.complex(wr, wi)
    xf = mod.fft.rfft2(x)
    b, o, h, half = x.shape[0], w.shape[1], x.shape[-2], x.shape[-1] // 2 + 1
    part = mod.einsum("bixy,ioxy->boxy", xf[:, :, :modes, :modes], w)
    out = mod.cat([part, mod.zeros(b, o, h - modes, modes, dtype=xf.dtype)], 2)
    out = mod.cat([out, mod.zeros(b, o, h, half - modes, dtype=xf.dtype)], 3)
    return mod.fft.irfft2(out, s=(h, x.shape[-1]))


def test_fourier_layer_against_torch_and_compiled():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(2)
    inputs = [r.standard_normal((2, 3, 8, 8)), r.standard_normal((3, 4, 3, 3)),
              r.standard_normal((3, 4, 3, 3))]
    check_against_torch(lambda *a: _spectral_conv(ember, *a),
                        lambda *a: _spectral_conv(torch, *a), inputs)
    check_grad_fd(lambda *a: _spectral_conv(ember, *a), [inputs[0][:1, :, :6, :6]] + inputs[1:])

    def loss(x, wr, wi):
        return (_spectral_conv(ember, x, wr, wi) ** 2).sum()
    ts = [ember.tensor(a) for a in inputs]
    eager = loss(*ts)
    compiled = ember.compile(loss)
    for _ in range(3):
        np.testing.assert_allclose(float(compiled(*ts)), float(eager), rtol=1e-12)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "tanh", "log1p", "expm1",
                                  "pow", "rpow"])
def test_complex_elementwise_gradients_against_torch(name, request):
    """Complex-differentiable elementwise ops: gradient g * conj(f'(z)), as PyTorch."""
    torch = pytest.importorskip("torch")
    p = Z * 0.5 + np.array([0.3, 0.1])   # away from log's and sqrt's branch cut at 0

    def fn(mod):
        def f(p, q=None):
            z = mod.view_as_complex(p)
            if name == "pow":
                out = z ** mod.view_as_complex(q)
            elif name == "rpow":
                out = z ** 3
            else:
                out = getattr(z, name)()
            return mod.view_as_real(out)
        return f
    inputs = [p, Z[::-1].copy() * 0.3] if name == "pow" else [p]
    check_against_torch(fn(ember), fn(torch), inputs)
    check_grad_fd(fn(ember), inputs)
