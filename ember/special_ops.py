"""Primitive ops for the special functions NumPy lacks: lgamma, digamma, polygamma,
erfc, erfinv, ndtri, log_ndtr and the modified Bessel functions i0, i0e, i1, i1e.

Each is an elementwise registry op (kind unary) with a NumPy/CuPy kernel computed in
float64 and rounded to the input's dtype, and a gradient written with ember ops. No
backend renders them, so inside ``ember.compile`` they run as eager steps of the plan.

The kernels are the classic series: Lanczos for lgamma, shift-and-asymptotic for
digamma and Hurwitz zeta (polygamma), Giles' estimate polished by Newton steps for the
inverse error functions, power series and Hankel's expansion for the Bessel functions.

>>> ember.lgamma(ember.tensor([1., 5.]))
tensor([0.0000, 3.1781])
"""
from __future__ import annotations

import math

import numpy as np

from ember.dispatch import dispatch
from ember.ops.elementwise import _erf, _erf_series
from ember.ops.registry import UNARY, defop

_SQRT_PI = math.sqrt(math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _float64(fn):
    """Compute in float64 (poles give inf/nan as in PyTorch, silently: dispatch.quiet),
    return the input's float dtype."""
    def eager(xp, a, **attrs):
        out = fn(xp, a.astype(np.float64), **attrs)
        return out.astype(a.dtype if a.dtype.kind in "fc" else np.float64)
    return eager


# ---- gamma family ---------------------------------------------------------------------

# Lanczos, g = 7, n = 9: relative error about 1e-15 over the positive reals.
_LANCZOS_G = 7.0
_LANCZOS = (0.99999999999980993, 676.5203681218851, -1259.1392167224028,
            771.32342877765313, -176.61502916214059, 12.507343278686905,
            -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7)


def _lgamma_pos(xp, x):
    """log Gamma(x) for x >= 0.5."""
    z = x - 1.0
    acc = xp.full_like(z, _LANCZOS[0])
    for i, c in enumerate(_LANCZOS[1:], 1):
        acc = acc + c / (z + i)
    t = z + _LANCZOS_G + 0.5
    return _LOG_SQRT_2PI + (z + 0.5) * xp.log(t) - t + xp.log(acc)


def lgamma_kernel(xp, x):
    # Reflection for x < 0.5: lgamma(x) = log(pi / |sin(pi x)|) - lgamma(1 - x); the poles
    # (0, -1, ...) give +inf, as PyTorch.
    small = x < 0.5
    pos = _lgamma_pos(xp, xp.where(small, 1.0 - x, x))
    s = xp.abs(xp.sin(math.pi * _frac_near(xp, x)))
    refl = math.log(math.pi) - xp.log(s) - pos
    out = xp.where(small, refl, pos)
    whole = x == xp.floor(x)
    out = xp.where(small & whole, xp.inf, out)
    # At the integers the exact log-factorials: lgamma(1) = lgamma(2) = 0 exactly, as torch.
    table = xp.asarray(_LOG_FACTORIALS)
    at = xp.where(whole & (x >= 1) & (x <= len(_LOG_FACTORIALS)), x, 1.0).astype(np.int64) - 1
    out = xp.where(whole & (x >= 1) & (x <= len(_LOG_FACTORIALS)), table[at], out)
    return xp.where(xp.isinf(x), xp.inf, out)


_LOG_FACTORIALS = np.array([math.lgamma(k) for k in range(1, 172)])   # lgamma(1..171)


def _frac_near(xp, x):
    """x minus the nearest integer: sin(pi x) without the error of a large argument."""
    return x - xp.round(x)


def digamma_kernel(xp, x):
    # psi(x) = psi(1 - x) - pi / tan(pi x) for x < 0.5; then psi(x) = psi(x + n) - sum
    # 1/(x + k) up to x + n >= 10, and the asymptotic series there (error < 1e-15).
    small = x < 0.5
    y = xp.where(small, 1.0 - x, x)
    acc = xp.zeros_like(y)
    for _ in range(10):
        low = y < 10.0
        acc = acc - xp.where(low, 1.0 / y, 0.0)
        y = xp.where(low, y + 1.0, y)
    r = 1.0 / (y * y)
    series = r * (1 / 12 - r * (1 / 120 - r * (1 / 252 - r * (1 / 240 - r * (1 / 132 - r * (
        691 / 32760 - r / 12))))))
    pos = acc + xp.log(y) - 0.5 / y - series
    refl = pos - math.pi / xp.tan(math.pi * _frac_near(xp, x))
    out = xp.where(small, refl, pos)
    pole = small & (x == xp.floor(x))
    out = xp.where(pole, xp.where(x == 0, -xp.inf, xp.nan), out)   # PyTorch: -inf at 0
    return xp.where(x == xp.inf, xp.inf, out)


# Bernoulli numbers B_2j / (2j)! for the Euler-Maclaurin tail of the Hurwitz zeta.
_B2J = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510)
_B2J_FACT = tuple(b / math.factorial(2 * j + 2) for j, b in enumerate(_B2J))


def _hurwitz_zeta(xp, s: float, x):
    """zeta(s, x) = sum_k (x + k)^-s for s > 1 and x > 0."""
    acc = xp.zeros_like(x)
    y = x.copy()
    for _ in range(12):   # sum the first terms until x + k >= 12
        low = y < 12.0
        acc = acc + xp.where(low, y ** -s, 0.0)
        y = xp.where(low, y + 1.0, y)
    tail = y ** (1 - s) / (s - 1) + 0.5 * y ** -s
    rise = s   # s (s + 1) ... (s + 2j - 2)
    power = y ** (-s - 1)
    for j, c in enumerate(_B2J_FACT):
        tail = tail + c * rise * power
        rise *= (s + 2 * j + 1) * (s + 2 * j + 2)
        power = power / (y * y)
    return acc + tail


def polygamma_kernel(xp, x, n: int):
    if n == 0:
        return digamma_kernel(xp, x)
    # psi^(n)(x) = (-1)^(n+1) n! zeta(n + 1, x) for x > 0; below 1/2 the reflection
    # (-1)^n psi^(n)(1 - x) - psi^(n)(x) = pi d^n/dx^n cot(pi x), whose right side is
    # pi^(n+1) P_n(cot(pi x)) with P_0 = c, P_k+1 = -(1 + c^2) P_k'(c).
    small = x < 0.5
    y = xp.where(small, 1.0 - x, x)
    pos = (-1.0) ** (n + 1) * math.factorial(n) * _hurwitz_zeta(xp, float(n + 1), y)
    poly = np.polynomial.Polynomial([0.0, 1.0])
    for _ in range(n):
        poly = -np.polynomial.Polynomial([1.0, 0.0, 1.0]) * poly.deriv()
    c = 1.0 / xp.tan(math.pi * _frac_near(xp, x))
    deriv = xp.zeros_like(c)
    for coef in poly.coef[::-1]:   # Horner
        deriv = deriv * c + coef
    refl = (-1.0) ** n * pos - math.pi ** (n + 1) * deriv
    out = xp.where(small, refl, pos)
    pole = (x <= 0) & (x == xp.floor(x))
    # At 0 the limit from the right, as torch (+inf for odd n, -inf for even); at the
    # negative integers odd n meet +inf from both sides, even n have no limit.
    at_zero = xp.inf if n % 2 else -xp.inf
    return xp.where(pole, xp.where(x == 0, at_zero, xp.inf if n % 2 else xp.nan), out)


# ---- error functions ------------------------------------------------------------------

def _erfc_pos(xp, x):
    """erfc(x) for x >= 0 with full relative precision (float64)."""
    out = xp.empty_like(x)
    small = x < 2.0
    out[small] = 1.0 - _erf_series(xp, x[small], 48)
    big = x[~small]
    k = big.copy()
    for n in range(120, 0, -1):   # the continued fraction of erfc, good to 1e-16 at x >= 2
        k = big + (n / 2) / k
    out[~small] = xp.exp(-big * big) / (k * _SQRT_PI)
    return out


def _log_erfc_pos(xp, x):
    """log erfc(x) for x >= 0, finite far beyond erfc's underflow."""
    out = xp.empty_like(x)
    small = x < 2.0
    out[small] = xp.log1p(-_erf_series(xp, x[small], 48))
    big = x[~small]
    k = big.copy()
    for n in range(120, 0, -1):
        k = big + (n / 2) / k
    out[~small] = -big * big - xp.log(k * _SQRT_PI)
    return out


def erfc_kernel(xp, x):
    ax = xp.abs(xp.nan_to_num(x, nan=0.0))
    pos = _erfc_pos(xp, ax)
    out = xp.where(x < 0, 2.0 - pos, pos)
    return xp.where(xp.isnan(x), xp.nan, out)


def _giles(xp, w, sign):
    """Giles' single-precision estimate of erfinv from w = -log((1 - y)(1 + y))."""
    lo = w - 2.5
    p = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941):
        p = c + p * lo
    hi = xp.sqrt(w) - 3.0
    q = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
              -0.0076224613, 0.00943887047, 1.00167406, 2.83297682):
        q = c + q * hi
    return xp.where(w < 5.0, p, q) * sign


def _erfcinv_pos(xp, z):
    """The x >= 0 with erfc(x) = z, for 0 < z <= 1: Newton on log erfc (quadratic, so it
    converges from Giles' estimate in a few steps even where erfc underflows)."""
    # Giles' estimate of erfinv(y) for y = 1 - z; far out (z < 1e-8, beyond the range
    # it was fitted on) the leading asymptotics of erfc instead.
    big_l = -xp.log(z)
    far = xp.sqrt(xp.maximum(big_l - 0.5 * xp.log(xp.maximum(big_l, 1.0)) - math.log(_SQRT_PI),
                             0.0))
    x = xp.where(z < 1e-8, far, _giles(xp, -xp.log(z * (2.0 - z)), 1.0 - z))
    x = xp.maximum(x, 0.0)
    logz = xp.log(z)
    for _ in range(6):
        le = _log_erfc_pos(xp, x)
        # d/dx log erfc(x) = -2/sqrt(pi) exp(-x^2 - log erfc(x))
        d = -(2 / _SQRT_PI) * xp.exp(-x * x - le)
        x = xp.maximum(x - (le - logz) / d, 0.0)
    return x


def erfinv_kernel(xp, y):
    ay = xp.abs(y)
    # |y| < 0.5: Newton on erf itself (accurate near 0); beyond, on erfc(x) = 1 - |y|,
    # which is exact there, so the tails keep their digits.
    x = _giles(xp, -xp.log((1.0 - y) * (1.0 + y)), y)
    small = ay < 0.5
    xs = xp.where(small, x, 0.0)
    for _ in range(3):
        xs = xs - (_erf(xp, xs) - xp.where(small, y, 0.0)) / (
            (2 / _SQRT_PI) * xp.exp(-xs * xs))
    zt = xp.where(small | (ay >= 1.0) | xp.isnan(y), 0.5, 1.0 - ay)
    xt = _erfcinv_pos(xp, zt) * xp.sign(y)
    out = xp.where(small, xs, xt)
    out = xp.where(ay == 1.0, xp.sign(y) * xp.inf, out)
    return xp.where((ay > 1.0) | xp.isnan(y), xp.nan, out)


def ndtri_kernel(xp, p):
    # p < 0.5: -sqrt(2) erfcinv(2p) keeps the digits of a tiny p; else sqrt(2) erfinv(2p - 1).
    low = p < 0.5
    zl = xp.where(low & (p > 0), 2.0 * p, 0.5)
    lo = -math.sqrt(2) * _erfcinv_pos(xp, zl)
    hi = math.sqrt(2) * erfinv_kernel(xp, xp.where(low, 0.0, 2.0 * p - 1.0))
    out = xp.where(low, lo, hi)
    out = xp.where(p == 0, -xp.inf, out)
    return xp.where((p < 0) | (p > 1) | xp.isnan(p), xp.nan, out)


def log_ndtr_kernel(xp, x):
    # log Phi(x) = log(erfc(-x / sqrt 2) / 2); for x > 0, log1p(-erfc(x / sqrt 2) / 2).
    t = xp.nan_to_num(x, nan=0.0) / math.sqrt(2)
    neg = t < 0
    le = _log_erfc_pos(xp, xp.abs(t))
    out = xp.where(neg, le - math.log(2), xp.log1p(-0.5 * xp.exp(le)))
    return xp.where(xp.isnan(x), xp.nan, out)


# ---- modified Bessel functions of the first kind -----------------------------------------

def _bessel_e(xp, x, nu: int):
    """I_nu(|x|) exp(-|x|) for nu in {0, 1}: the power series up to 20, Hankel's
    asymptotic expansion beyond (its smallest term there is about e^-40)."""
    ax = xp.abs(x)
    small = ax <= 20.0
    xs = xp.where(small, ax, 0.0)
    q = xs * xs / 4.0
    term = xp.ones_like(xs) if nu == 0 else xs / 2.0
    acc = term.copy()
    for k in range(1, 90):
        term = term * q / (k * (k + nu))
        acc = acc + term
    ser = acc * xp.exp(-xs)
    xl = xp.where(small, 1.0, ax)
    mu = 4.0 * nu * nu
    term = xp.ones_like(xl)
    asy = term.copy()
    for k in range(1, 31):
        term = term * -(mu - (2 * k - 1) ** 2) / (k * 8.0 * xl)
        asy = asy + term
    asy = asy / xp.sqrt(2 * math.pi * xl)
    return xp.where(small, ser, asy)


def i0e_kernel(xp, x):
    return _bessel_e(xp, x, 0)


def i1e_kernel(xp, x):
    return _bessel_e(xp, x, 1) * xp.sign(x)


def i0_kernel(xp, x):
    return _bessel_e(xp, x, 0) * xp.exp(xp.abs(x))


def i1_kernel(xp, x):
    return _bessel_e(xp, x, 1) * xp.exp(xp.abs(x)) * xp.sign(x)


# ---- gradients (ember ops, so a traced backward records them) -----------------------------

def _lgamma_vjp(g, out, a):
    return (g * dispatch("digamma", a),)


def _digamma_vjp(g, out, a):
    return (g * dispatch("polygamma", a, n=1),)


def _polygamma_vjp(g, out, a, n):
    return (g * dispatch("polygamma", a, n=n + 1),)


def _erfc_vjp(g, out, a):
    return (-g * (2 / _SQRT_PI) * (-(a * a)).exp(),)


def _erfinv_vjp(g, out, a):
    return (g * (_SQRT_PI / 2) * (out * out).exp(),)


def _ndtri_vjp(g, out, a):
    return (g * math.sqrt(2 * math.pi) * (out * out * 0.5).exp(),)


def _log_ndtr_vjp(g, out, a):
    # Phi'(x) / Phi(x) = exp(-x^2/2 - log Phi(x)) / sqrt(2 pi): finite in both tails.
    return (g * (-(a * a) * 0.5 - out - _LOG_SQRT_2PI).exp(),)


def _i0_vjp(g, out, a):
    return (g * dispatch("i1", a),)


def _i0e_vjp(g, out, a):
    return (g * (dispatch("i1e", a) - a.sign() * out),)


def _i1_vjp(g, out, a):
    # I1'(x) = I0(x) - I1(x)/x, which is 1/2 at x = 0.
    safe = a.masked_fill(a == 0, 1.0)
    return (g * (dispatch("i0", a) - out / safe).masked_fill(a == 0, 0.5),)


def _i1e_vjp(g, out, a):
    safe = a.masked_fill(a == 0, 1.0)
    return (g * (dispatch("i0e", a) - out * (a.sign() + 1 / safe)).masked_fill(a == 0, 0.5),)


defop("lgamma", UNARY, _float64(lgamma_kernel), _lgamma_vjp, dtype_rule="float")
defop("digamma", UNARY, _float64(digamma_kernel), _digamma_vjp, dtype_rule="float")
defop("polygamma", UNARY, _float64(polygamma_kernel), _polygamma_vjp, dtype_rule="float")
defop("erfc", UNARY, _float64(erfc_kernel), _erfc_vjp, dtype_rule="float")
defop("erfinv", UNARY, _float64(erfinv_kernel), _erfinv_vjp, dtype_rule="float")
defop("ndtri", UNARY, _float64(ndtri_kernel), _ndtri_vjp, dtype_rule="float")
defop("log_ndtr", UNARY, _float64(log_ndtr_kernel), _log_ndtr_vjp, dtype_rule="float")
defop("i0", UNARY, _float64(i0_kernel), _i0_vjp, dtype_rule="float")
defop("i0e", UNARY, _float64(i0e_kernel), _i0e_vjp, dtype_rule="float")
defop("i1", UNARY, _float64(i1_kernel), _i1_vjp, dtype_rule="float")
defop("i1e", UNARY, _float64(i1e_kernel), _i1e_vjp, dtype_rule="float")
