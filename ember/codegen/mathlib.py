"""Transcendental functions decomposed once, as Kernel-level programs every backend renders.

``program(op, dtype)`` is a straight-line list of ``Expr`` over the op's operands
(``Expr("arg", (i,), dtype)``); its last expr is the result. Programs use the registry's
basic ops (add, sub, mul, div, neg, abs, cast, where, compares, logical ops) and eight
more that every backend renders exactly (``INTERNAL_OPS``):

    fma(a, b, c)      a * b + c, rounded once
    rint(x)           round to nearest, ties to even
    floor(x)          round down
    copysign(x, y)    |x| with y's sign
    ldexp(x, n)       x * 2**n for integral n, as two exact power-of-two scalings (so results
                      down to the subnormals are exact)
    exp2i(n)          2**n for integral n in the normal exponent range (one scaling)
    frexp_exp(x)      the unbiased exponent of a normal x, as a float
    frexp_mant(x)     x's significand in [1, 2) (x normal)

Backends render ``add``/``sub``/``mul`` of a program without contracting them into FMAs
(the LLVM backend drops its 'contract' flag, CUDA uses ``__fadd_rn`` and friends): every
FMA is an explicit ``fma``, so the CPU and the GPU compute the same numbers.

    >>> from ember import dtypes
    >>> ops = [e.op for e in program("sigmoid", dtypes.float32)]
    >>> ops[0], "ldexp" in ops, ops[-1]
    ('arg', True, 'where')

The algorithms (accuracy figures in the tests): exp by Cody-Waite range reduction and
a Taylor polynomial; log by exponent split and an atanh series; tanh from expm1; sigmoid
and softplus from exp of -|x|; erf as a rational fit (float32) or Taylor/Abramowitz-Stegun
(float64).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

from ember import dtypes
from ember.codegen.kernel import Expr
from ember.dtypes import DType
from ember.ops.elementwise import ERF32_P, ERF32_Q

__all__ = ["program", "decomposes", "DECOMPOSED", "INTERNAL_OPS"]

INTERNAL_OPS = frozenset(("fma", "rint", "floor", "copysign", "ldexp", "exp2i", "frexp_exp",
                          "frexp_mant"))
_B = dtypes.bool_
_LN2_HI = {32: 0.693359375, 64: 6.93147180369123816490e-01}    # exact in few bits, so
_LN2_LO = {32: -2.12194440e-4, 64: 1.90821492927058770002e-10}  # n * hi is exact


class _Builder:
    """Appends exprs to a program; every method returns the new expr's index."""

    def __init__(self, dtype: DType, nargs: int) -> None:
        self.dt = dtype
        self.bits = dtype.itemsize * 8
        self.exprs = [Expr("arg", (i,), dtype) for i in range(nargs)]
        self._consts: dict[str, int] = {}

    def emit(self, op: str, *args: int, dtype: DType | None = None) -> int:
        self.exprs.append(Expr(op, args, dtype or self.dt))
        return len(self.exprs) - 1

    def c(self, v: float) -> int:
        key = (self.dt.name, float(v).hex())
        if key not in self._consts:
            self.exprs.append(Expr("const", (float(v),), self.dt))
            self._consts[key] = len(self.exprs) - 1
        return self._consts[key]

    def __getattr__(self, op: str) -> Callable[..., int]:
        if op in ("lt", "le", "gt", "ge", "eq", "ne", "logical_or", "logical_and",
                  "logical_not"):
            return lambda *a: self.emit(op, *a, dtype=_B)
        return lambda *a: self.emit(op, *a)

    # -- helpers
    def horner(self, x: int, coeffs: list[float]) -> int:
        """coeffs[0]*x^n + ... + coeffs[n], as FMAs."""
        acc = self.c(coeffs[0])
        for cf in coeffs[1:]:
            acc = self.fma(acc, x, self.c(cf))
        return acc

    def isnan(self, x: int) -> int:
        return self.ne(x, x)

    def clamp(self, x: int, lo: float, hi: float) -> int:
        """Clamp, keeping NaN (ordered compares are false for it)."""
        x = self.where(self.lt(x, self.c(lo)), self.c(lo), x)
        return self.where(self.gt(x, self.c(hi)), self.c(hi), x)

    def reduce_ln2(self, x: int) -> tuple[int, int]:
        """n = rint(x / ln2) and r = x - n ln2 (Cody-Waite: n * hi is exact)."""
        n = self.rint(self.mul(x, self.c(1.4426950408889634)))
        r = self.fma(n, self.c(-_LN2_HI[self.bits]), x)
        return n, self.fma(n, self.c(-_LN2_LO[self.bits]), r)

    # -- functions
    def exp(self, x: int) -> int:
        """exp(x): |r| <= ln2/2, Taylor to r^7 (float32) or r^13 (float64) is below half
        an ulp; times 2^n by ``ldexp``."""
        lo, hi = (-150.0, 100.0) if self.bits == 32 else (-1400.0, 1000.0)
        nan = self.isnan(x)
        # The clamp maps -inf/+inf to 0/inf; NaN is replaced so n stays finite.
        xc = self.where(nan, self.c(0.0), self.clamp(x, lo, hi))
        n, r = self.reduce_ln2(xc)
        degree = 7 if self.bits == 32 else 13
        p = self.horner(r, [1.0 / math.factorial(k) for k in range(degree, -1, -1)])
        return self.where(nan, x, self.ldexp(p, n))

    def expm1_nonpositive(self, y: int) -> int:
        """exp(y) - 1 for y <= 0, accurate near 0 (for tanh); y must not be NaN."""
        y = self.clamp(y, -40.0, 0.0)   # exp(-40) is below both epsilons: the result is -1
        n, r = self.reduce_ln2(y)
        degree = 7 if self.bits == 32 else 13
        q = self.mul(r, self.horner(r, [1.0 / math.factorial(k) for k in range(degree, 0, -1)]))
        s = self.exp2i(n)   # n >= -58: a normal power of two
        # 2^n (e^r - 1) + (2^n - 1): exactly q when n == 0, no cancellation otherwise.
        return self.fma(s, q, self.sub(s, self.c(1.0)))

    def log(self, x: int) -> int:
        """log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)); log(1+f) = 2 atanh(s),
        s = f / (2 + f), as a series in s^2 (|s| < 0.172)."""
        mant, bias = (23, 127) if self.bits == 32 else (52, 1023)
        tiny = self.lt(x, self.c(2.0 ** (1 - bias)))
        # Subnormals: scale into the normal range first, take the scale off e.
        xs = self.where(tiny, self.mul(x, self.c(2.0 ** mant)), x)
        e = self.frexp_exp(xs)
        e = self.where(tiny, self.sub(e, self.c(float(mant))), e)
        m = self.frexp_mant(xs)
        big = self.gt(m, self.c(math.sqrt(2.0)))
        m = self.where(big, self.mul(m, self.c(0.5)), m)
        e = self.where(big, self.add(e, self.c(1.0)), e)
        f = self.sub(m, self.c(1.0))
        s = self.div(f, self.add(f, self.c(2.0)))
        z = self.mul(s, s)
        terms = 5 if self.bits == 32 else 10
        series = self.mul(z, self.horner(z, [2.0 / (2 * k + 1) for k in range(terms, 0, -1)]))
        log1p = self.fma(s, series, self.add(s, s))
        res = self.fma(e, self.c(_LN2_HI[self.bits]),
                       self.fma(e, self.c(_LN2_LO[self.bits]), log1p))
        res = self.where(self.eq(x, self.c(math.inf)), self.c(math.inf), res)
        res = self.where(self.eq(x, self.c(0.0)), self.c(-math.inf), res)
        negative = self.logical_or(self.lt(x, self.c(0.0)), self.isnan(x))
        return self.where(negative, self.c(math.nan), res)

    def log1p_small(self, e: int) -> int:
        """log(1 + e) for e >= 0, accurate when e is tiny: log(u) * e / (u - 1), u = 1 + e
        (the rounding of u cancels out; Goldberg's trick)."""
        u = self.add(self.c(1.0), e)
        d = self.sub(u, self.c(1.0))
        return self.where(self.eq(d, self.c(0.0)), e, self.mul(self.log(u), self.div(e, d)))

    def tanh(self, x: int) -> int:
        nan = self.isnan(x)
        y = self.mul(self.abs(x), self.c(-2.0))
        u = self.expm1_nonpositive(self.where(nan, self.c(0.0), y))
        # tanh|x| = -expm1(-2|x|) / (expm1(-2|x|) + 2): relative accuracy near 0 too.
        t = self.div(self.neg(u), self.add(u, self.c(2.0)))
        return self.where(nan, x, self.copysign(t, x))

    def sigmoid(self, x: int) -> int:
        # exp only ever sees -|x|, so neither branch overflows (as the registry does).
        e = self.exp(self.neg(self.abs(x)))
        r = self.div(self.c(1.0), self.add(self.c(1.0), e))
        return self.where(self.ge(x, self.c(0.0)), r, self.mul(e, r))

    def softplus(self, x: int) -> int:
        """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, and exact for
        very negative x (where it is exp(x))."""
        e = self.exp(self.neg(self.abs(x)))
        pos = self.where(self.gt(x, self.c(0.0)), x, self.c(0.0))
        return self.add(pos, self.log1p_small(e))

    def pow(self, x: int, y: int) -> int:
        """float32 pow as exp(y log|x|) in float64 (correctly rounded to float32 nearly
        always), with C99's special cases (as NumPy). float64 pow is the backends' libm
        (exp(y log x) in double would lose ~|y log x| ulps)."""
        if self.bits != 32:
            raise NotImplementedError("float64 pow is the backends' own")
        out, self.dt, self.bits = self.dt, dtypes.float64, 64
        x = self.emit("cast", x)
        y = self.emit("cast", y)
        r = self.exp(self.mul(y, self.log(self.abs(x))))
        y_int = self.eq(self.floor(y), y)                            # true for +-inf too
        half = self.floor(self.mul(y, self.c(0.5)))
        y_odd = self.eq(self.sub(y, self.add(half, half)), self.c(1.0))   # inf: NaN, false
        sign = self.lt(self.copysign(self.c(1.0), x), self.c(0.0))        # x < 0 or -0
        r = self.where(self.logical_and(sign, y_odd), self.neg(r), r)
        neg_finite = self.logical_and(self.lt(x, self.c(0.0)), self.ne(x, self.c(-math.inf)))
        r = self.where(self.logical_and(neg_finite, self.logical_not(y_int)),
                       self.c(math.nan), r)
        y_inf = self.eq(self.abs(y), self.c(math.inf))
        one = self.logical_or(self.eq(y, self.c(0.0)), self.eq(x, self.c(1.0)))
        one = self.logical_or(one, self.logical_and(self.eq(x, self.c(-1.0)), y_inf))
        r = self.where(one, self.c(1.0), r)
        self.dt, self.bits = out, 32
        return self.emit("cast", r)

    def erf(self, x: int) -> int:
        """float32 erf (``erf_rational``). float64 erf is the backends' libm: the fits
        within reach (Abramowitz-Stegun, 1.2e-7) are float32-accurate only, and the eager
        op is good to 1e-15, so the first-call check ran every float64 GELU eagerly."""
        if self.bits != 32:
            raise NotImplementedError("float64 erf is the backends' own")
        return self.erf_rational(x)

    def erf_rational(self, x: int) -> int:
        """float32 erf as x P(x^2) / Q(x^2) on [-4, 4] (Eigen's/XLA's fit; erf is +-1 in
        float32 beyond). No exp: about twice as fast as the A-S form; |error| < 5e-7."""
        xc = self.clamp(x, -4.0, 4.0)
        z = self.mul(xc, xc)
        p = self.horner(z, list(ERF32_P))
        q = self.horner(z, list(ERF32_Q))
        # (the fit reaches 1 + 2e-7 near |x| = 4: clamped, as the registry's eager erf)
        return self.clamp(self.div(self.mul(xc, p), q), -1.0, 1.0)   # (NaN stays NaN)


# The registry ops computed by a program: op -> its number of operands. Adding one is a
# method above and a line here.
DECOMPOSED = {"exp": 1, "log": 1, "tanh": 1, "sigmoid": 1, "erf": 1, "softplus": 1, "pow": 2}


@functools.lru_cache(maxsize=None)
def program(op: str, dtype: DType) -> tuple[Expr, ...]:
    """The program computing registry op ``op`` on ``dtype`` (float32 or float64) values."""
    if op not in DECOMPOSED or not dtype.is_floating_point or dtype.itemsize not in (4, 8):
        raise NotImplementedError(f"no {op} program for {dtype}")
    b = _Builder(dtype, DECOMPOSED[op])
    getattr(b, op)(*range(DECOMPOSED[op]))
    return tuple(b.exprs)


def decomposes(op: str, dtype: DType) -> bool:
    """Whether ``op`` on ``dtype`` is computed by a program (else by the backend's own
    op table)."""
    if op not in DECOMPOSED:
        return False
    try:
        program(op, dtype)
    except NotImplementedError:
        return False
    return True


def cost(op: str) -> int:
    """The number of float32 operations of ``op``'s program (a backend's cost hint)."""
    return sum(e.op not in ("arg", "const") for e in program(op, dtypes.float32))
