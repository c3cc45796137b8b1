"""Scalar LLVM IR for Kernel ops: NumPy semantics for every (op, dtype) the CPU backend
lowers (its op table is ``_Scalar``'s ``f_``/``i_``/``b_`` methods)."""
from __future__ import annotations

import math

import llvmlite.ir as ir

from ember import dtypes
from ember.dtypes import DType


# ---- IR construction ------------------------------------------------------------------

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()
_PTR = ir.PointerType()
_VALUE_TYPE = {dtypes.float32: _F32, dtypes.float64: _F64, dtypes.int32: _I32,
               dtypes.int64: _I64, dtypes.bool_: _I1}
_STORAGE_TYPE = {**_VALUE_TYPE, dtypes.bool_: _I8}   # NumPy stores bool as a byte

# Only 'contract' (lets the backend fuse a*b+c into an FMA, which is more accurate, not
# less). 'nnan'/'ninf' would let LLVM drop the NaN/inf handling that where() and the
# compares must keep; 'reassoc' would undo the hi/lo splits of the exp/log range
# reductions. Elementwise loops vectorize without any of them.
_FMF = ("contract",)


# ---- scalar ops -----------------------------------------------------------------------

_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_FLOAT_RESULT = {"exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "div"}
_LN2_HI = {32: 0.693359375, 64: 6.93147180369123816490e-01}    # exact in few bits, so
_LN2_LO = {32: -2.12194440e-4, 64: 1.90821492927058770002e-10}  # n * hi is exact


class _Scalar:
    """Scalar code for registry ops; every value is an SSA value of its dtype's type."""

    def __init__(self, b: ir.IRBuilder, fn: ir.Function) -> None:
        self.b = b
        self.fn = fn
        self.module = fn.module

    # -- plumbing
    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        return fn

    def call(self, base: str, *args):
        """``llvm.<base>.<f32|f64>`` on float arguments of one type."""
        ty = args[0].type
        suffix = "f32" if ty == _F32 else "f64"
        return self.b.call(self.intrinsic(f"llvm.{base}.{suffix}", ty, [ty] * len(args)),
                           list(args))

    def c(self, ty: ir.Type, v: float) -> ir.Constant:
        return ir.Constant(ty, v)

    def add(self, x, y):
        return self.b.fadd(x, y, flags=_FMF)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=_FMF)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=_FMF)

    def div(self, x, y):
        return self.b.fdiv(x, y, flags=_FMF)

    def horner(self, x, coeffs: list[float]):
        """coeffs[0]*x^n + ... + coeffs[n], as FMAs."""
        acc = self.c(x.type, coeffs[0])
        for cf in coeffs[1:]:
            acc = self.add(self.mul(acc, x), self.c(x.type, cf))
        return acc

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def clamp(self, x, lo: float, hi: float):
        """Clamp, keeping NaN (ordered compares are false for it)."""
        b = self.b
        x = b.select(b.fcmp_ordered("<", x, self.c(x.type, lo)), self.c(x.type, lo), x)
        return b.select(b.fcmp_ordered(">", x, self.c(x.type, hi)), self.c(x.type, hi), x)

    def convert(self, v, src: DType, dst: DType):
        """NumPy ``astype`` semantics between ember dtypes."""
        b = self.b
        if src is dst:
            return v
        sty, dty = _VALUE_TYPE[src], _VALUE_TYPE[dst]
        if dst is dtypes.bool_:
            zero = ir.Constant(sty, 0)
            if src.is_floating_point:
                return b.fcmp_unordered("!=", v, zero)   # NaN is truthy
            return b.icmp_unsigned("!=", v, zero)
        if src is dtypes.bool_:
            return b.uitofp(v, dty) if dst.is_floating_point else b.zext(v, dty)
        if src.is_floating_point and dst.is_floating_point:
            return b.fpext(v, dty) if src.itemsize < dst.itemsize else b.fptrunc(v, dty)
        if dst.is_floating_point:
            return b.sitofp(v, dty)
        if not src.is_floating_point:
            return b.sext(v, dty) if src.itemsize < dst.itemsize else b.trunc(v, dty)
        # float -> int: fptosi is poison out of range; x86 (and so NumPy) gives INT_MIN
        # for NaN, inf and out-of-range values, and so do we.
        bits = dst.itemsize * 8
        lim = float(2 ** (bits - 1))
        ok = b.and_(b.fcmp_ordered(">=", v, ir.Constant(sty, -lim)),
                    b.fcmp_ordered("<", v, ir.Constant(sty, lim)))
        return b.select(ok, b.fptosi(v, dty), ir.Constant(dty, -(1 << (bits - 1))))

    # -- dispatch
    def op(self, name: str, args: list, arg_dtypes: list[DType], out: DType):
        b = self.b
        if name == "cast":
            return self.convert(args[0], arg_dtypes[0], out)
        if name in _COMPARE or name in ("logical_and", "logical_or", "logical_not"):
            return self.logical(name, args, arg_dtypes)
        if name == "where":
            cond = self.convert(args[0], arg_dtypes[0], dtypes.bool_)
            return b.select(cond, self.convert(args[1], arg_dtypes[1], out),
                            self.convert(args[2], arg_dtypes[2], out))
        if name in _FLOAT_RESULT and not out.is_floating_point:
            raise NotImplementedError(f"op {name} with result dtype {out}")
        args = [self.convert(a, d, out) for a, d in zip(args, arg_dtypes)]
        if out.is_floating_point:
            fn = getattr(self, "f_" + name, None)
        elif out is dtypes.bool_:
            fn = getattr(self, "b_" + name, None)
        else:
            fn = getattr(self, "i_" + name, None)
        if fn is None:
            raise NotImplementedError(f"op {name} on {out} has no LLVM lowering")
        return fn(*args)

    def logical(self, name: str, args: list, arg_dtypes: list[DType]):
        b = self.b
        if name.startswith("logical"):
            bools = [self.convert(a, d, dtypes.bool_) for a, d in zip(args, arg_dtypes)]
            if name == "logical_not":
                return b.xor(bools[0], ir.Constant(_I1, 1))
            return (b.and_ if name == "logical_and" else b.or_)(*bools)
        dt = dtypes.promote(*arg_dtypes)
        x, y = (self.convert(a, d, dt) for a, d in zip(args, arg_dtypes))
        op = _COMPARE[name]
        if dt.is_floating_point:
            # NumPy: every compare with NaN is False except !=.
            if name == "ne":
                return b.fcmp_unordered(op, x, y)
            return b.fcmp_ordered(op, x, y)
        if dt is dtypes.bool_:
            return b.icmp_unsigned(op, x, y)
        return b.icmp_signed(op, x, y)

    # -- floating point
    def f_neg(self, x):
        return self.b.fneg(x, flags=_FMF)

    def f_abs(self, x):
        return self.call("fabs", x)

    def f_sign(self, x):
        b = self.b
        one = self.c(x.type, 1.0)
        r = b.select(b.fcmp_ordered("<", x, self.c(x.type, 0.0)), self.c(x.type, -1.0), x)
        r = b.select(b.fcmp_ordered(">", x, self.c(x.type, 0.0)), one, r)
        # NumPy's sign(-0.0) is +0.0; NaN stays NaN.
        return b.select(b.fcmp_ordered("==", x, self.c(x.type, 0.0)), self.c(x.type, 0.0), r)

    def f_relu(self, x):
        # maximum(x, 0) propagates NaN: a NaN fails the ordered compare and is kept.
        b = self.b
        return b.select(b.fcmp_ordered("<", x, self.c(x.type, 0.0)), self.c(x.type, 0.0), x)

    def f_add(self, x, y):
        return self.add(x, y)

    def f_sub(self, x, y):
        return self.sub(x, y)

    def f_mul(self, x, y):
        return self.mul(x, y)

    def f_div(self, x, y):
        return self.div(x, y)

    def f_maximum(self, x, y):
        b = self.b   # NumPy propagates a NaN from either side
        r = b.select(b.fcmp_ordered(">", x, y), x, y)
        return b.select(self.isnan(x), x, r)

    def f_minimum(self, x, y):
        b = self.b
        r = b.select(b.fcmp_ordered("<", x, y), x, y)
        return b.select(self.isnan(x), x, r)

    def f_sqrt(self, x):
        return self.call("sqrt", x)

    def f_sin(self, x):
        return self.call("sin", x)

    def f_cos(self, x):
        return self.call("cos", x)

    def f_exp(self, x):
        """exp(x): n = round(x / ln2), r = x - n ln2 (Cody-Waite hi/lo), Taylor on r,
        times 2^n as two exponent-field scalings so results down to the subnormals stay
        exact (one scale alone would need an exponent out of range)."""
        b = self.b
        ty = x.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        lo, hi = (-150.0, 100.0) if bits == 32 else (-1400.0, 1000.0)
        nan = self.isnan(x)
        # The clamp maps -inf/+inf to 0/inf; NaN is replaced so fptosi never sees it.
        xc = b.select(nan, self.c(ty, 0.0), self.clamp(x, lo, hi))
        n = self.call("rint", self.mul(xc, self.c(ty, 1.4426950408889634)))
        r = self.sub(xc, self.mul(n, self.c(ty, _LN2_HI[bits])))
        r = self.sub(r, self.mul(n, self.c(ty, _LN2_LO[bits])))
        # |r| <= ln2/2: Taylor to r^7 (float32) or r^13 (float64) is below half an ulp.
        degree = 7 if bits == 32 else 13
        p = self.horner(r, [1.0 / math.factorial(k) for k in range(degree, -1, -1)])
        ni = b.fptosi(n, ity)
        n1 = b.ashr(ni, ir.Constant(ity, 1))
        n2 = b.sub(ni, n1)
        s1 = b.bitcast(b.shl(b.add(n1, ir.Constant(ity, bias)), ir.Constant(ity, mant)), ty)
        s2 = b.bitcast(b.shl(b.add(n2, ir.Constant(ity, bias)), ir.Constant(ity, mant)), ty)
        return b.select(nan, x, self.mul(self.mul(p, s1), s2))

    def expm1_nonpositive(self, y):
        """exp(y) - 1 for y <= 0, accurate near 0 (for tanh); y must not be NaN."""
        b = self.b
        ty = y.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        y = self.clamp(y, -40.0, 0.0)   # exp(-40) is below both epsilons: the result is -1
        n = self.call("rint", self.mul(y, self.c(ty, 1.4426950408889634)))
        r = self.sub(y, self.mul(n, self.c(ty, _LN2_HI[bits])))
        r = self.sub(r, self.mul(n, self.c(ty, _LN2_LO[bits])))
        degree = 7 if bits == 32 else 13
        q = self.mul(r, self.horner(r, [1.0 / math.factorial(k) for k in range(degree, 0, -1)]))
        s = b.bitcast(b.shl(b.add(b.fptosi(n, ity), ir.Constant(ity, bias)),
                            ir.Constant(ity, mant)), ty)
        # 2^n (e^r - 1) + (2^n - 1): exactly q when n == 0, no cancellation otherwise.
        return self.add(self.mul(s, q), self.sub(s, self.c(ty, 1.0)))

    def f_log(self, x):
        """log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)); log(1+f) = 2 atanh(s),
        s = f / (2 + f), as a series in s^2 (|s| < 0.172)."""
        b = self.b
        ty = x.type
        bits = 32 if ty == _F32 else 64
        ity, mant, bias = (_I32, 23, 127) if bits == 32 else (_I64, 52, 1023)
        tiny = b.fcmp_ordered("<", x, self.c(ty, 2.0 ** (1 - bias)))
        # Subnormals: scale into the normal range first, take the scale off e.
        xs = b.select(tiny, self.mul(x, self.c(ty, 2.0 ** mant)), x)
        ib = b.bitcast(xs, ity)
        e = b.sub(b.and_(b.lshr(ib, ir.Constant(ity, mant)), ir.Constant(ity, 2 * bias + 1)),
                  ir.Constant(ity, bias))
        e = b.select(tiny, b.sub(e, ir.Constant(ity, mant)), e)
        m = b.bitcast(b.or_(b.and_(ib, ir.Constant(ity, (1 << mant) - 1)),
                            ir.Constant(ity, bias << mant)), ty)
        big = b.fcmp_ordered(">", m, self.c(ty, math.sqrt(2.0)))
        m = b.select(big, self.mul(m, self.c(ty, 0.5)), m)
        e = b.add(e, b.zext(big, ity))
        f = self.sub(m, self.c(ty, 1.0))
        s = self.div(f, self.add(f, self.c(ty, 2.0)))
        z = self.mul(s, s)
        terms = 5 if bits == 32 else 10
        series = self.mul(z, self.horner(z, [2.0 / (2 * k + 1) for k in range(terms, 0, -1)]))
        log1p = self.add(self.add(s, s), self.mul(s, series))
        ef = b.sitofp(e, ty)
        res = self.add(self.mul(ef, self.c(ty, _LN2_HI[bits])),
                       self.add(log1p, self.mul(ef, self.c(ty, _LN2_LO[bits]))))
        res = b.select(b.fcmp_ordered("==", x, self.c(ty, math.inf)), self.c(ty, math.inf), res)
        res = b.select(b.fcmp_ordered("==", x, self.c(ty, 0.0)), self.c(ty, -math.inf), res)
        return b.select(b.fcmp_unordered("<", x, self.c(ty, 0.0)), self.c(ty, math.nan), res)

    def f_tanh(self, x):
        b = self.b
        ty = x.type
        nan = self.isnan(x)
        y = self.mul(self.call("fabs", x), self.c(ty, -2.0))
        u = self.expm1_nonpositive(b.select(nan, self.c(ty, 0.0), y))
        # tanh|x| = -expm1(-2|x|) / (expm1(-2|x|) + 2): relative accuracy near 0 too.
        t = self.div(b.fneg(u), self.add(u, self.c(ty, 2.0)))
        return b.select(nan, x, self.call("copysign", t, x))

    def f_sigmoid(self, x):
        b = self.b
        ty = x.type
        # exp only ever sees -|x|, so neither branch overflows (as the registry does).
        e = self.f_exp(b.fneg(self.call("fabs", x)))
        r = self.div(self.c(ty, 1.0), self.add(self.c(ty, 1.0), e))
        return b.select(b.fcmp_ordered(">=", x, self.c(ty, 0.0)), r, self.mul(e, r))

    def f_erf(self, x):
        """Taylor series for |x| < 0.5 (relative accuracy near 0), else the registry's
        Abramowitz-Stegun 7.1.26 form (absolute error 1.2e-7)."""
        b = self.b
        ty = x.type
        if ty == _F32:
            return self.erf_rational(x)
        ax = self.call("fabs", x)
        z = self.mul(x, x)
        terms = 6 if ty == _F32 else 11
        taylor = [2.0 / math.sqrt(math.pi) * (-1) ** k / (math.factorial(k) * (2 * k + 1))
                  for k in range(terms - 1, -1, -1)]
        small = self.mul(x, self.horner(z, taylor))
        t = self.div(self.c(ty, 1.0), self.add(self.c(ty, 1.0), self.mul(ax, self.c(ty, 0.5))))
        poly = self.horner(t, [0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                               -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223])
        big = self.sub(self.c(ty, 1.0), self.mul(t, self.f_exp(self.sub(poly, z))))
        big = self.call("copysign", big, x)
        return b.select(b.fcmp_ordered("<", ax, self.c(ty, 0.5)), small, big)

    def erf_rational(self, x):
        """float32 erf as x P(x^2) / Q(x^2) on [-4, 4] (Eigen's/XLA's fit; erf is +-1 in
        float32 beyond). No exp: about twice as fast as the A-S form; |error| < 5e-7."""
        b = self.b
        xc = self.clamp(x, -4.0, 4.0)
        z = self.mul(xc, xc)
        p = self.horner(z, [-2.72614225801306e-10, 2.77068142495902e-08,
                            -2.10102402082508e-06, -5.69250639462346e-05,
                            -7.34990630326855e-04, -2.95459980854025e-03,
                            -1.60960333262415e-02])
        q = self.horner(z, [-1.45660718464996e-05, -2.13374055278905e-04,
                            -1.68282697438203e-03, -7.37332916720468e-03,
                            -1.42647390514189e-02])
        r = self.div(self.mul(xc, p), q)
        return b.select(self.isnan(x), x, r)

    def f_pow(self, x, y):
        if x.type == _F64:
            # exp(y log x) in double loses ~|y log x| ulps; the libm call is exact.
            return self.call("pow", x, y)
        b = self.b
        # float32: exp(y log|x|) in double is correctly rounded to float32 nearly always.
        r = self.pow_via_exp_log(b.fpext(x, _F64), b.fpext(y, _F64))
        return b.fptrunc(r, _F32)

    def pow_via_exp_log(self, x, y):
        """C99 pow semantics (as NumPy) from exp and log, for float64 values."""
        b = self.b
        ty = x.type

        def k(v: float):
            return self.c(ty, v)

        r = self.f_exp(self.mul(y, self.f_log(self.call("fabs", x))))
        fy = self.call("floor", y)
        y_int = b.fcmp_ordered("==", fy, y)                       # true for +-inf too
        half = self.call("floor", self.mul(y, k(0.5)))
        y_odd = b.fcmp_ordered("==", self.sub(y, self.add(half, half)), k(1.0))  # inf: NaN
        sign = b.icmp_signed("<", b.bitcast(x, _I64), ir.Constant(_I64, 0))  # x < 0 or -0
        r = b.select(b.and_(sign, y_odd), b.fneg(r), r)
        neg_finite = b.and_(b.fcmp_ordered("<", x, k(0.0)),
                            b.fcmp_ordered("!=", x, k(-math.inf)))
        r = b.select(b.and_(neg_finite, b.xor(y_int, ir.Constant(_I1, 1))), k(math.nan), r)
        y_inf = b.fcmp_ordered("==", self.call("fabs", y), k(math.inf))
        one = b.or_(b.fcmp_ordered("==", y, k(0.0)), b.fcmp_ordered("==", x, k(1.0)))
        one = b.or_(one, b.and_(b.fcmp_ordered("==", x, k(-1.0)), y_inf))
        return b.select(one, k(1.0), r)

    # -- integers (wrap around like NumPy)
    def i_neg(self, x):
        return self.b.neg(x)

    def i_abs(self, x):
        b = self.b
        return b.select(b.icmp_signed("<", x, ir.Constant(x.type, 0)), b.neg(x), x)

    def i_sign(self, x):
        b = self.b
        zero = ir.Constant(x.type, 0)
        return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type),
                     b.zext(b.icmp_signed("<", x, zero), x.type))

    def i_relu(self, x):
        b = self.b
        zero = ir.Constant(x.type, 0)
        return b.select(b.icmp_signed("<", x, zero), zero, x)

    def i_add(self, x, y):
        return self.b.add(x, y)

    def i_sub(self, x, y):
        return self.b.sub(x, y)

    def i_mul(self, x, y):
        return self.b.mul(x, y)

    def i_maximum(self, x, y):
        return self.b.select(self.b.icmp_signed(">", x, y), x, y)

    def i_minimum(self, x, y):
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def i_pow(self, x, y):
        """Exponentiation by squaring (a loop: integer pow does not vectorize). NumPy
        rejects negative exponents; we give C's truncated answer (0 unless |x| == 1)."""
        b = self.b
        ty = x.type
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        pre = b.block
        loop = self.fn.append_basic_block("ipow")
        done = self.fn.append_basic_block("ipow_done")
        b.cbranch(b.icmp_signed(">", y, zero), loop, done)
        b.position_at_end(loop)
        acc, base, e = b.phi(ty), b.phi(ty), b.phi(ty)
        odd = b.trunc(e, _I1)
        acc2 = b.select(odd, b.mul(acc, base), acc)
        base2 = b.mul(base, base)
        e2 = b.ashr(e, one)
        for phi, first, nxt in ((acc, one, acc2), (base, x, base2), (e, y, e2)):
            phi.add_incoming(first, pre)
            phi.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed(">", e2, zero), loop, done)
        b.position_at_end(done)
        res = b.phi(ty)
        res.add_incoming(one, pre)
        res.add_incoming(acc2, loop)
        minus_one = b.select(b.trunc(y, _I1), ir.Constant(ty, -1), one)
        negative = b.select(b.icmp_signed("==", x, one), one,
                            b.select(b.icmp_signed("==", x, ir.Constant(ty, -1)), minus_one, zero))
        return b.select(b.icmp_signed("<", y, zero), negative, res)

    # -- bool (NumPy's bool arithmetic is logic)
    def b_abs(self, x):
        return x

    b_relu = b_abs

    def b_add(self, x, y):
        return self.b.or_(x, y)

    b_maximum = b_add

    def b_mul(self, x, y):
        return self.b.and_(x, y)

    b_minimum = b_mul

    def b_pow(self, x, y):
        return self.b.or_(x, self.b.xor(y, ir.Constant(_I1, 1)))   # x ** 0 == 1
