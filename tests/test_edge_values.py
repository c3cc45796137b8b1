"""torch's results at the edges of the float range: -0.0, NaN and inf, values and
gradients, eager and compiled alike.

relu keeps -0.0 and NaN (``x < 0 ? 0 : x``) and its gradient is torch's
``threshold_backward``, selected rather than multiplied by a mask: it passes the gradient
at a NaN output and gives 0, not NaN, for an inf gradient where the output is <= 0.
maximum/minimum's gradients are selected the same way; ``sign`` of NaN is 0, so ``abs``'s
gradient at NaN is 0. An inf gradient (fp16 overflow before a GradScaler skips the
step) raises no RuntimeWarning (the test suite turns them into errors).
"""
import numpy as np
import pytest

import ember

# add, sub and mul keep NumPy's overflow/invalid warnings in eager (dispatch.py, LOUD_OK:
# quieting them doubled a small add's time); every other op is silent, as torch.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*encountered in (multiply|add|subtract):RuntimeWarning")

VALUES = [-0.0, 0.0, np.nan, np.inf, -np.inf, -1.5, 2.0, 0.25, -3.0]
GRADS = [1.0, 2.0, 3.0, 4.0, np.inf, np.inf, -np.inf, np.inf, 1.0]


def _same_bits(actual, expected):
    a, e = np.asarray(actual), np.asarray(expected)
    np.testing.assert_array_equal(a, e)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(e))


def _unary(lib, name):
    return {"relu": lib.relu, "sign": lib.sign, "abs": lib.abs,
            "relu_fn": lib.nn.functional.relu,
            "max0": lambda x: lib.maximum(x, lib.zeros_like(x)),
            "min0": lambda x: lib.minimum(x, lib.zeros_like(x))}[name]


def _value_and_grad(lib, name, x, g, dtype):
    x = lib.tensor(np.array(x, dtype), requires_grad=True)
    y = _unary(lib, name)(x)
    y.backward(lib.tensor(np.array(g, dtype)))
    return y.detach().numpy(), x.grad.numpy()


NAMES = ["relu", "relu_fn", "sign", "abs", "max0", "min0"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_eager_equals_torch_at_the_edges(name, dtype):
    torch = pytest.importorskip("torch")
    y, gx = _value_and_grad(ember, name, VALUES, GRADS, dtype)
    ty, tgx = _value_and_grad(torch, name, VALUES, GRADS, dtype)
    # maximum/minimum(-0.0, 0.0): NumPy and the compiled code give the second argument,
    # torch the first; the sign of that zero is the one difference left.
    (np.testing.assert_array_equal if name in ("max0", "min0") else _same_bits)(y, ty)
    _same_bits(gx, tgx)


def test_edge_values_without_torch():
    """The rules written out (the same figures torch gives), for machines without it."""
    y, gx = _value_and_grad(ember, "relu", VALUES, GRADS, np.float32)
    _same_bits(y, np.array([-0.0, 0.0, np.nan, np.inf, 0, 0, 2, 0.25, 0], np.float32))
    _same_bits(gx, np.array([0, 0, 3, 4, 0, 0, -np.inf, np.inf, 0], np.float32))
    s, gs = _value_and_grad(ember, "abs", VALUES, [1.0] * len(VALUES), np.float32)
    _same_bits(gs, np.array([0, 0, 0, 1, -1, -1, 1, 1, -1], np.float32))
    _same_bits(ember.sign(ember.tensor(VALUES)).numpy(),
               np.array([0, 0, 0, 1, -1, -1, 1, 1, -1], np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_compiled_equals_eager_at_the_edges(name):
    """Values and gradients of a compiled step, bit for bit with eager (which equals
    torch above), on every call of the replay."""
    x0 = np.array(VALUES * 3, np.float32)
    g0 = np.array(GRADS * 3, np.float32)

    def step(x, g):
        x = x.detach().requires_grad_(True)
        y = _unary(ember, name)(x * 1.0)
        y.backward(g)
        return y.detach(), x.grad

    cf = ember.compile(step)
    want = step(ember.tensor(x0), ember.tensor(g0))
    for _ in range(3):
        got = cf(ember.tensor(x0), ember.tensor(g0))
        for a, e in zip(got, want):
            _same_bits(a.numpy(), e.numpy())
    assert not cf.fallbacks and cf.stats()["eager_calls"] == 0


def test_compiled_forward_keeps_torch_relu_and_sign():
    x = ember.tensor(np.array(VALUES * 5, np.float32))
    cf = ember.compile(lambda x: (ember.relu(x * 2.0), (x * 2.0).sign()))
    for _ in range(3):
        r, s = cf(x)
    y = np.array(VALUES * 5, np.float32) * np.float32(2.0)
    _same_bits(r.numpy(), np.where(y < 0, np.float32(0), y))
    _same_bits(s.numpy(), np.where(y > 0, 1, np.where(y < 0, -1, 0)).astype(np.float32))
    assert not cf.fallbacks


# ---- functions composed of primitives ---------------------------------------------------

BIG = [0.0, 1e-6, -1e-6, 0.5, -3.0, 1e3, -3e4, 1e7, 1e19, -1e19, 1e30, -3e38, np.inf,
       -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_asinh_acosh_stay_finite_where_x_squared_overflows(dtype):
    """asinh(1e30) was NaN (x * x overflowed float32) and acosh(1e30) inf; torch's are
    69.77. Their gradients too, compiled as eager."""
    torch = pytest.importorskip("torch")
    x = np.array(BIG, dtype)
    for name, vals in (("asinh", x), ("acosh", np.abs(x) + 1)):
        e = getattr(ember, name)(ember.tensor(vals)).numpy()
        t = getattr(torch, name)(torch.tensor(vals)).numpy()
        np.testing.assert_allclose(e, t, rtol=4 * np.finfo(dtype).eps, atol=0)
        ok = np.isfinite(vals)
        xe = ember.tensor(vals[ok], requires_grad=True)
        getattr(ember, name)(xe).sum().backward()
        xt = torch.tensor(vals[ok], requires_grad=True)
        getattr(torch, name)(xt).sum().backward()
        # (torch's gradient 1/sqrt(1 + x^2) underflows to 0 beyond 1e19; ours is 1/|x|)
        np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-18)
        cf = ember.compile(lambda v, name=name: getattr(ember, name)(v))
        for _ in range(3):
            got = cf(ember.tensor(vals)).numpy()
        np.testing.assert_allclose(got, e, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_asinh_in_float16_computes_in_float32():
    torch = pytest.importorskip("torch")
    x = np.array([0.5, -300.0, 6e4], np.float16)
    np.testing.assert_array_equal(ember.asinh(ember.tensor(x)).numpy(),
                                  torch.asinh(torch.tensor(x)).numpy())


def test_logsigmoid_gradient_at_zero_is_half():
    """min(x, 0) through clamp gave the gradient 1 at x = 0 (zero-initialized logits);
    torch's is sigmoid(-0) = 0.5."""
    x = ember.tensor([0.0, -0.0, 1.0, -2.0], requires_grad=True)
    ember.nn.functional.logsigmoid(x).sum().backward()
    want = 1 / (1 + np.exp(np.array([0.0, 0.0, 1.0, -2.0])))
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6)


def test_shrinks_keep_nan():
    torch = pytest.importorskip("torch")
    x = np.array([np.nan, 0.3, -0.3, 0.7, -0.7, np.inf, -np.inf], np.float32)
    for name in ("hardshrink", "softshrink"):
        e = getattr(ember.nn.functional, name)(ember.tensor(x)).numpy()
        t = getattr(torch.nn.functional, name)(torch.tensor(x)).numpy()
        np.testing.assert_array_equal(e, t)   # (torch's softshrink(-0.3) is -0.0)
