"""Elementwise primitives: unary, binary and ternary ops with broadcasting.

Gradients are written with ember tensor ops; ``sum_to`` undoes broadcasting. Ops run
with NumPy's floating-point warnings off (``dispatch.quiet``): log(0) = -inf, 0/0 = nan,
sin(inf) = nan silently, as in PyTorch.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ember.dispatch import dispatch
from ember.errors import OpError
from ember.ops.registry import BINARY, TERNARY, UNARY, defop


def _where(c, a, b):
    return dispatch("where", c, a, b)


def sum_to(g, shape):
    """Sum a broadcast gradient back down to ``shape`` (the inverse of broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(dim=axes, keepdim=True)
    return g.reshape(shape) if g.shape != shape else g


def _holomorphic(vjp):
    """The vjp of a complex-differentiable op for complex cotangents: PyTorch's gradient
    is g * conj(f'(z)), and ``vjp`` computes g * f'(z), so conjugate around it."""
    def wrapped(g, out, *inputs, **attrs):
        if g._data.dtype.kind != "c":
            return vjp(g, out, *inputs, **attrs)
        return tuple(None if r is None else conj(r)
                     for r in vjp(conj(g), out, *inputs, **attrs))
    wrapped.__wrapped__ = vjp   # what it reads (registry._value_reads) is vjp's
    return wrapped


# ---- unary ----------------------------------------------------------------------------

_math = []   # codegen.llvm.eager_math, imported on first use (it imports this module)


def _compiled(op: str, numpy_form):
    """``op``'s eager function: on float32 NumPy arrays (and float64 erf), the compiled
    kernels' machine code (``codegen/llvm/eager_math.py``: the numbers compiled code
    gives, 2-9x faster than NumPy); ``numpy_form`` elsewhere (CuPy, other dtypes)."""
    def eager(xp, a):
        if a.dtype.itemsize == 2 and a.dtype.kind in "fV":
            # float16/bfloat16 computed in float32 and rounded once, as torch's half
            # kernels do: the NumPy forms of sigmoid and softplus rounded every step
            # to half precision (one ulp off torch's, found by the dtype fuzzer)
            return eager(xp, a.astype(xp.float32)).astype(a.dtype)
        if xp is np:
            if not _math:
                try:
                    from ember.codegen.llvm import eager_math
                except Exception:   # pragma: no cover - llvmlite unusable here
                    eager_math = None
                _math.append(eager_math)
            if _math[0] is not None:
                out = _math[0].unary(op, a)
                if out is not None:
                    return out
        return numpy_form(xp, a)
    return eager


defop("neg", UNARY, lambda xp, a: xp.negative(a), lambda g, out, a: (-g,),
      refuses_bool="Negation, the `-` operator, on a bool tensor is not supported. If you "
                   "are trying to invert a mask, use the `~` or `logical_not()` operator "
                   "instead.")
defop("exp", UNARY, _compiled("exp", lambda xp, a: xp.exp(a)),
      _holomorphic(lambda g, out, a: (g * out,)),
      dtype_rule="float")
defop("log", UNARY, _compiled("log", lambda xp, a: xp.log(a)),
      _holomorphic(lambda g, out, a: (g / a,)),
      dtype_rule="float")
defop("sqrt", UNARY, lambda xp, a: xp.sqrt(a),
      _holomorphic(lambda g, out, a: (g * 0.5 / out,)),
      dtype_rule="float")
# torch's sgn rule: the gradient times sign(a), so 0 at a NaN (torch's sign of NaN is 0).
defop("abs", UNARY, lambda xp, a: xp.abs(a), lambda g, out, a: (g * a.sign(),))
def _zero_grad(g, out, a):
    # Piecewise-constant ops: PyTorch records them and gives a zero gradient, so a loss
    # built on them still backpropagates instead of failing.
    return (g.new_zeros(a.shape).to(a.dtype),)


def _sign(xp, a):
    # torch's sign: 0 for a NaN and +0.0 for -0.0 ((0 < a) - (a < 0)); NumPy's keeps both.
    if a.dtype.kind == "b":   # (NumPy has no bool sign; torch's is the value itself)
        return a.copy()
    if a.dtype.kind in "iuc":
        return xp.sign(a)
    # (bfloat16, NumPy kind "V", compared in float32: ml_dtypes warns at a NaN)
    x = a.astype(xp.float32) if a.dtype == _BFLOAT16 else a
    return ((x > 0).astype(a.dtype) - (x < 0).astype(a.dtype)).astype(a.dtype, copy=False)


defop("sign", UNARY, _sign, _zero_grad)
# Integers are their own floor (and xp.floor would turn them into float64).
defop("floor", UNARY, lambda xp, a: a if a.dtype.kind in "biu" else xp.floor(a), _zero_grad)
defop("sin", UNARY, lambda xp, a: xp.sin(a), _holomorphic(lambda g, out, a: (g * a.cos(),)),
      dtype_rule="float")
defop("cos", UNARY, lambda xp, a: xp.cos(a), _holomorphic(lambda g, out, a: (-g * a.sin(),)),
      dtype_rule="float")
defop("tanh", UNARY, _compiled("tanh", lambda xp, a: xp.tanh(a)),
      _holomorphic(lambda g, out, a: (g * (1 - out * out),)),
      dtype_rule="float")


def _sigmoid(xp, a):
    # Both branches stay finite: exp only ever sees -|a|.
    e = xp.exp(-xp.abs(a))
    r = 1 / (1 + e)
    return xp.where(a >= 0, r, e * r)


defop("sigmoid", UNARY, _compiled("sigmoid", _sigmoid), lambda g, out, a: (g * out * (1 - out),),
      dtype_rule="float")
# log(1 + exp(a)) without overflow (F.softplus adds beta and the threshold).
defop("softplus", UNARY, _compiled(
          "softplus", lambda xp, a: xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))),
      lambda g, out, a: (g * a.sigmoid(),), dtype_rule="float")


# Maclaurin coefficients of erf(x) * sqrt(pi) / 2 = sum c_n x^(2n+1): enough terms for
# float64 at |x| < 2.5 (the alternating sum loses at most about one digit there).
_ERF_SERIES = [(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(48)]
_SQRT_PI = math.sqrt(math.pi)


def _erf_series(xp, x, terms):
    x2 = x * x
    acc = xp.zeros_like(x)
    for c in reversed(_ERF_SERIES[:terms]):
        acc = acc * x2 + c
    return acc * x * (2 / _SQRT_PI)


# float32 erf as x P(x^2) / Q(x^2) on [-4, 4] (Eigen's and XLA's fit, also the compiled
# kernels' in ``codegen/mathlib.py``): error < 5e-7, no exp, about 8x faster than a series
# and an erfc fit (a GELU's erf was a quarter of a small transformer's eager step).
ERF32_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
           -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
           -1.60960333262415e-02)
ERF32_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
           -7.37332916720468e-03, -1.42647390514189e-02)


def _erf32(xp, a):
    x = xp.clip(a.astype(np.float32), -4.0, 4.0)   # erf is +-1 in float32 beyond
    z = x * x
    p, q = xp.full_like(z, ERF32_P[0]), xp.full_like(z, ERF32_Q[0])
    for c in ERF32_P[1:]:
        p *= z
        p += np.float32(c)
    for c in ERF32_Q[1:]:
        q *= z
        q += np.float32(c)
    p *= x
    p /= q
    return xp.clip(p, -1.0, 1.0, out=p)   # the fit reaches 1 + 2e-7 near |x| = 4


def _erf(xp, a):
    # NumPy has no erf, and GELU needs it to match PyTorch's exact GELU. In float64: a
    # power series near 0 (relative accuracy) and erfc from a continued fraction beyond.
    if a.dtype != np.float64:
        return _erf32(xp, a).astype(a.dtype, copy=False)
    x = xp.abs(a)
    out = xp.empty_like(x)
    small = x < 2.5
    out[small] = _erf_series(xp, x[small], 48)
    xl = x[~small]
    k = xl.copy()
    for n in range(60, 0, -1):  # erfc(x) = exp(-x^2) / (sqrt(pi) (x + 1/2 / (x + 1 / (x + ...
        k = xl + (n / 2) / k
    out[~small] = 1.0 - xp.exp(-xl * xl) / (k * _SQRT_PI)
    return xp.sign(a) * out


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
defop("erf", UNARY, _compiled("erf", _erf),
      lambda g, out, a: (g * _TWO_OVER_SQRT_PI * (-(a * a)).exp(),),
      dtype_rule="float")


def relu_array(xp, a):
    """torch's relu on an array: ``a < 0 ? 0 : a`` (a NaN and -0.0 stay), as the compiled
    relu computes it. NumPy's maximum returns its second argument on a tie (and a NaN
    from either), so the zero goes first; ``np.where`` would take 10x as long."""
    return xp.maximum(a.dtype.type(0), a)


def relu_grad(g, out):
    """relu's gradient from its output, torch's ``threshold_backward``: 0 where
    ``out <= 0``, else g (a NaN output passes g; an inf g is 0 where masked, not NaN)."""
    return _where(out <= 0, 0.0, g)


defop("relu", UNARY, relu_array, lambda g, out, a: (relu_grad(g, out),))


def _cast_vjp(g, out, a, dtype):
    if g.dtype.is_complex and not a.dtype.is_complex:   # real to complex: the real part
        g = dispatch("complex_real", g)
    return (g.to(a.dtype) if a.dtype.is_floating_point or a.dtype.is_complex else None,)


defop("cast", UNARY, lambda xp, a, dtype: a.astype(dtype.np), _cast_vjp)


# ---- binary ---------------------------------------------------------------------------

def _add_vjp(g, out, a, b):
    return sum_to(g, a.shape), sum_to(g, b.shape)


def _sub_vjp(g, out, a, b):
    return sum_to(g, a.shape), sum_to(-g, b.shape)


def _mul_vjp(g, out, a, b):
    return (sum_to(g * conj(b), a.shape) if a.requires_grad else None,
            sum_to(g * conj(a), b.shape) if b.requires_grad else None)


def _div_vjp(g, out, a, b):
    gb = g / conj(b)
    return (sum_to(gb, a.shape) if a.requires_grad else None,
            sum_to(-gb * conj(out), b.shape) if b.requires_grad else None)


def conj(x):
    """x, conjugated when complex: PyTorch's gradients of complex products (grad * conj(b))."""
    return dispatch("conj", x) if x._data.dtype.kind == "c" else x


def _pow_vjp(g, out, a, b):
    ga = gb = None
    if a.requires_grad:
        ga = sum_to(g * b * a ** (b - 1), a.shape)
    if b.requires_grad:  # d/db a^b = a^b log a, taken as 0 where a == 0 (as PyTorch does)
        gb = sum_to(_where(a == 0, 0.0, g * out * a.log()), b.shape)
    return ga, gb


def _minmax_vjp(loses):
    """torch's rule for maximum/minimum: ties share the gradient equally; each side's
    gradient is 0 where it ``loses`` to the other and g elsewhere (a NaN loses to
    nothing: both sides get g). Selected, not multiplied by a mask: an inf g is 0 where
    masked, as in torch, not NaN."""
    def vjp(g, out, a, b):
        h = _where(a == b, g * 0.5, g)
        return (sum_to(_where(loses(a, b), 0.0, h), a.shape) if a.requires_grad else None,
                sum_to(_where(loses(b, a), 0.0, h), b.shape) if b.requires_grad else None)
    return vjp


# Scalar exponents PyTorch computes without pow (PowKernel.cpp): 2 and 3 by multiplying,
# 0.5 as sqrt, -0.5 as 1/sqrt, -1 as 1/x, -2 as 1/(x*x); eagerly here and in compiled
# kernels (``codegen/lower.py``). They differ from pow at -0.0 and -inf (sqrt(-0.0) is
# -0.0 where pow gives +0.0) and in the last bit.
SPECIAL_POWERS = {2.0: lambda xp, a: a * a, 3.0: lambda xp, a: a * a * a,
                  0.5: lambda xp, a: xp.sqrt(a), -0.5: lambda xp, a: 1 / xp.sqrt(a),
                  -1.0: lambda xp, a: 1 / a, -2.0: lambda xp, a: 1 / (a * a)}


_BFLOAT16 = ml_dtypes.bfloat16


def special_power(a, b) -> float | None:
    """The exponent when ``a ** b`` is a float power PyTorch computes without pow (a
    scalar exponent in ``SPECIAL_POWERS``), else None. A GELU's ``pow(x, 3.0)`` through
    exp and log also cost 2.4x its tanh. torch's CPU float16 takes pow for all of them
    (bfloat16, float32 and float64 do not)."""
    if not (a.dtype.kind == "f" and a.dtype.itemsize > 2 or a.dtype == _BFLOAT16) \
            or b.ndim or b.dtype.kind not in "fiu" and b.dtype != _BFLOAT16:
        return None
    v = float(b)
    return v if v in SPECIAL_POWERS else None


def _pow(xp, a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu" and (b < 0).any():
        raise ValueError("Integers to negative integer powers are not allowed.")
    v = special_power(a, b)
    if v is not None:   # (bfloat16 in float32, rounded once, as torch)
        x = a.astype(xp.float32) if a.dtype == _BFLOAT16 else a
        return SPECIAL_POWERS[v](xp, x).astype(a.dtype, copy=False)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu" and b.ndim == 0 and int(b) < 0:
        raise ValueError("Integers to negative integer powers are not allowed.")
    return xp.power(a, b)


defop("add", BINARY, lambda xp, a, b: a + b, _add_vjp, commutative=True)
defop("sub", BINARY, lambda xp, a, b: a - b, _sub_vjp,
      refuses_bool="Subtraction, the `-` operator, with a bool tensor is not supported. If "
                   "you are trying to invert a mask, use the `~` or `logical_not()` operator "
                   "instead.")
defop("mul", BINARY, lambda xp, a, b: a * b, _mul_vjp, commutative=True,
      reads_for_others=(0, 1), scalar_in_float32=True)
defop("div", BINARY, lambda xp, a, b: xp.true_divide(a, b), _div_vjp, dtype_rule="float",
      out_for=(1,), scalar_in_float32=True)
defop("pow", BINARY, _pow, _holomorphic(_pow_vjp), reads_for_others=(1,), out_for=(1,),
      checks_scalars=True)


def _int_division(fn):
    """Integer division by zero raises (NumPy would warn and give 0), as in PyTorch."""
    def eager(xp, a, b):
        if a.dtype.kind in "biu" and (b == 0).any():
            raise ZeroDivisionError("ZeroDivisionError")
        return fn(xp, a, b)   # float x / 0: inf or nan (silently: dispatch.quiet)
    return eager


def _remainder_vjp(g, out, a, b):
    return (sum_to(g, a.shape) if a.requires_grad else None,
            sum_to(-g * (a / b).floor(), b.shape) if b.requires_grad else None)


def _remainder(xp, a, b):
    """Python semantics (a nonzero result takes the divisor's sign), as torch.remainder;
    a zero result of floats keeps fmod's sign, as torch's kernel (NumPy's takes the
    divisor's: 0 % -2.5 was -0.0)."""
    if a.dtype.kind in "biu":
        return xp.remainder(a, b)
    m = xp.fmod(a, b)
    return xp.where((m != 0) & ((b < 0) != (m < 0)), m + b, m)


defop("floor_divide", BINARY, _int_division(lambda xp, a, b: xp.floor_divide(a, b)),
      scalar_in_float32=True)
defop("remainder", BINARY, _int_division(_remainder), _remainder_vjp)
defop("maximum", BINARY, lambda xp, a, b: xp.maximum(a, b), _minmax_vjp(lambda a, b: a < b),
      commutative=True)
defop("minimum", BINARY, lambda xp, a, b: xp.minimum(a, b), _minmax_vjp(lambda a, b: a > b),
      commutative=True)

for _name, _fn in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
                   ("ge", "greater_equal"), ("eq", "equal"), ("ne", "not_equal")]:
    defop(_name, BINARY, (lambda f: lambda xp, a, b: getattr(xp, f)(a, b))(_fn),
          dtype_rule="bool", commutative=_name in ("eq", "ne"))

defop("logical_and", BINARY, lambda xp, a, b: xp.logical_and(a, b), dtype_rule="bool",
      commutative=True)
defop("logical_or", BINARY, lambda xp, a, b: xp.logical_or(a, b), dtype_rule="bool",
      commutative=True)
defop("logical_not", UNARY, lambda xp, a: xp.logical_not(a), dtype_rule="bool")


# ---- ternary --------------------------------------------------------------------------

def _where_vjp(g, out, c, a, b):
    return (None,
            sum_to(_where(c, g, 0.0), a.shape) if a.requires_grad else None,
            sum_to(_where(c, 0.0, g), b.shape) if b.requires_grad else None)


defop("where", TERNARY, lambda xp, c, a, b: xp.where(c, a, b), _where_vjp, dtype_rule="where",
      checks_scalars=True)


# ---- accurate near zero, rounding, C remainder, bitwise ----------------------------------
# log(1 + x) and exp(x) - 1 lose every digit of a small x to rounding (log1p(1e-8) would
# be 0 in float32): NumPy's log1p/expm1 keep them.
defop("log1p", UNARY, lambda xp, a: xp.log1p(a),
      _holomorphic(lambda g, out, a: (g / (a + 1),)),
      dtype_rule="float")
defop("expm1", UNARY, lambda xp, a: xp.expm1(a),
      _holomorphic(lambda g, out, a: (g * (out + 1),)),
      dtype_rule="float")


def _round(xp, a, decimals):
    if a.dtype.kind in "biu":
        return a.copy() if decimals >= 0 else xp.round(a, decimals)
    return xp.round(a, decimals)   # half to even, as torch.round


defop("round", UNARY, _round, lambda g, out, a, decimals: _zero_grad(g, out, a))


def _fmod_vjp(g, out, a, b):
    return (sum_to(g, a.shape) if a.requires_grad else None,
            sum_to(-g * (a / b).trunc(), b.shape) if b.requires_grad else None)


# C's fmod: the result takes the dividend's sign (torch.fmod), unlike remainder.
defop("fmod", BINARY, _int_division(lambda xp, a, b: xp.fmod(a, b)), _fmod_vjp)


def _bitwise(name, fn):
    def eager(xp, *arrays):
        for a in arrays:
            if a.dtype.kind not in "biu":
                raise _NotImplemented(name, f'"{name}_cpu" not implemented for '
                              f"'{_TORCH_NAMES.get(a.dtype.name, a.dtype.name)}'")
        return fn(xp, *arrays)
    return eager


class _NotImplemented(OpError, NotImplementedError):
    """What PyTorch raises for an op it lacks for a dtype (bitwise ops on floats)."""


_TORCH_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half",
                "bfloat16": "BFloat16"}
defop("bitwise_and", BINARY, _bitwise("bitwise_and", lambda xp, a, b: xp.bitwise_and(a, b)),
      commutative=True)
defop("bitwise_or", BINARY, _bitwise("bitwise_or", lambda xp, a, b: xp.bitwise_or(a, b)),
      commutative=True)
defop("bitwise_xor", BINARY, _bitwise("bitwise_xor", lambda xp, a, b: xp.bitwise_xor(a, b)),
      commutative=True)
defop("bitwise_not", UNARY, _bitwise("bitwise_not", lambda xp, a: xp.invert(a)))


def _shift(left: bool):
    """a << b, a >> b as PyTorch: a shift by a negative count or by the width or more
    gives 0 (or -1, shifting a negative right), where C and NumPy leave it undefined."""
    def shift(xp, a, b):
        ok = (b >= 0) & (b < a.dtype.itemsize * 8)
        b = xp.where(ok, b, 0).astype(a.dtype, copy=False)
        if left:
            return xp.where(ok, xp.left_shift(a, b), 0).astype(a.dtype, copy=False)
        out = xp.where(ok, xp.right_shift(a, b), xp.where(a < 0, -1, 0))
        return out.astype(a.dtype, copy=False)
    return shift


defop("bitwise_left_shift", BINARY, _bitwise("lshift", _shift(True)))
defop("bitwise_right_shift", BINARY, _bitwise("rshift", _shift(False)))
defop("logical_xor", BINARY, lambda xp, a, b: xp.logical_xor(a, b), dtype_rule="bool",
      commutative=True)
