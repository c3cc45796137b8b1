"""Scalar LLVM IR for Kernel ops: NumPy semantics for every (op, dtype) the CPU backend
lowers (its op table is ``_Scalar``'s ``f_``/``i_``/``b_`` methods)."""
from __future__ import annotations


import llvmlite.ir as ir

from ember import dtypes
from ember.dtypes import DType
from ember.codegen.mathlib import DECOMPOSED, INTERNAL_OPS, decomposes, program


# ---- IR construction ------------------------------------------------------------------

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()
_PTR = ir.PointerType()
_VALUE_TYPE = {dtypes.float32: _F32, dtypes.float64: _F64, dtypes.int32: _I32,
               dtypes.int64: _I64, dtypes.bool_: _I1}
_STORAGE_TYPE = {**_VALUE_TYPE, dtypes.bool_: _I8}   # NumPy stores bool as a byte

# No fast-math flags: elementwise code rounds each op as eager (NumPy) does, bit for bit.
# 'contract' (a*b+c fused into an FMA) was on: one ulp away from eager, which a cast to
# an integer or a compare turns into a whole unit (timm's ModelEmaV2 averages BatchNorm's
# int64 step count: 0.9*6 + 0.1*16 stored 7 where eager stores 6). 'nnan'/'ninf' would
# let LLVM drop the NaN/inf handling that where() and the compares must keep; 'reassoc'
# would undo the hi/lo splits of the exp/log range reductions (whose FMAs are explicit).
# Elementwise loops vectorize without any of them.
_FMF = ()


# ---- scalar ops -----------------------------------------------------------------------

_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# (pow has integer forms too)
_FLOAT_RESULT = frozenset(("sqrt", "sin", "cos", "div")) | (frozenset(DECOMPOSED) - {"pow"})
# float type -> (integer type of its bits, mantissa bits, exponent bias)
_BITS = {_F32: (_I32, 23, 127), _F64: (_I64, 52, 1023)}
_DTYPE_OF = {_F32: dtypes.float32, _F64: dtypes.float64}


class _Scalar:
    """Scalar code for registry ops; every value is an SSA value of its dtype's type."""

    def __init__(self, b: ir.IRBuilder, fn: ir.Function) -> None:
        self.b = b
        self.fn = fn
        self.module = fn.module
        self.fmf = _FMF   # fast-math flags of add/sub/mul/div (none inside mathlib programs)

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
        return self.b.fadd(x, y, flags=self.fmf)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=self.fmf)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=self.fmf)

    def div(self, x, y):
        return self.b.fdiv(x, y, flags=self.fmf)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

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
        if out.is_floating_point and decomposes(name, out):
            return self.render(name, args)
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
        return self.b.fneg(x, flags=self.fmf)

    def f_abs(self, x):
        return self.call("fabs", x)

    def f_sign(self, x):
        b = self.b
        zero = self.c(x.type, 0.0)
        # torch's sign, (0 < x) - (x < 0): 0 for a NaN (ordered compares fail), +0.0
        # for -0.0.
        r = b.select(b.fcmp_ordered("<", x, zero), self.c(x.type, -1.0), zero)
        return b.select(b.fcmp_ordered(">", x, zero), self.c(x.type, 1.0), r)

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

    # -- mathlib programs (the decomposed transcendental functions)
    def render(self, name: str, args: list):
        """The value of ``mathlib.program(name, dtype)`` on ``args``: every op exactly as
        written (no 'contract': the program's FMAs are explicit, as on the GPU)."""
        dt = _DTYPE_OF[args[0].type]
        prog = program(name, dt)
        saved, self.fmf = self.fmf, ()
        try:
            vals: list = []
            for e in prog:
                if e.op == "arg":
                    v = args[e.args[0]]
                elif e.op == "const":
                    v = self.c(_VALUE_TYPE[e.dtype], e.args[0])
                elif e.op in INTERNAL_OPS:
                    v = getattr(self, "m_" + e.op)(*(vals[a] for a in e.args))
                else:
                    v = self.op(e.op, [vals[a] for a in e.args],
                                [prog[a].dtype for a in e.args], e.dtype)
                vals.append(v)
            return vals[-1]
        finally:
            self.fmf = saved

    def m_fma(self, x, y, z):
        return self.call("fma", x, y, z)

    def m_rint(self, x):
        return self.call("rint", x)

    def m_floor(self, x):
        return self.call("floor", x)

    def m_copysign(self, x, y):
        return self.call("copysign", x, y)

    def m_ldexp(self, x, n):
        """x * 2^n as two exponent-field scalings (one alone would leave the exponent
        range for results near the subnormals)."""
        b = self.b
        ity, mant, bias = _BITS[x.type]
        ni = b.fptosi(n, ity)
        n1 = b.ashr(ni, ir.Constant(ity, 1))
        n2 = b.sub(ni, n1)
        s1 = b.bitcast(b.shl(b.add(n1, ir.Constant(ity, bias)), ir.Constant(ity, mant)), x.type)
        s2 = b.bitcast(b.shl(b.add(n2, ir.Constant(ity, bias)), ir.Constant(ity, mant)), x.type)
        return self.mul(self.mul(x, s1), s2)

    def m_exp2i(self, n):
        b = self.b
        ity, mant, bias = _BITS[n.type]
        return b.bitcast(b.shl(b.add(b.fptosi(n, ity), ir.Constant(ity, bias)),
                               ir.Constant(ity, mant)), n.type)

    def m_frexp_exp(self, x):
        b = self.b
        ity, mant, bias = _BITS[x.type]
        e = b.and_(b.lshr(b.bitcast(x, ity), ir.Constant(ity, mant)),
                   ir.Constant(ity, 2 * bias + 1))
        return b.sitofp(b.sub(e, ir.Constant(ity, bias)), x.type)

    def m_frexp_mant(self, x):
        b = self.b
        ity, mant, bias = _BITS[x.type]
        return b.bitcast(b.or_(b.and_(b.bitcast(x, ity), ir.Constant(ity, (1 << mant) - 1)),
                               ir.Constant(ity, bias << mant)), x.type)

    def f_erf(self, x):
        # float64 (float32 is mathlib's program): libm's, as there is no llvm.erf. The JIT
        # resolves it in the process (Python links libm); it stays scalar.
        name = "erf" if x.type == _F64 else "erff"
        return self.b.call(self.intrinsic(name, x.type, [x.type]), [x])

    def f_pow(self, x, y):
        # float64 (float32 is mathlib's program): exp(y log x) in double loses ~|y log x|
        # ulps; the libm call is exact.
        return self.call("pow", x, y)

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

    b_relu = b_sign = b_abs

    def b_add(self, x, y):
        return self.b.or_(x, y)

    b_maximum = b_add

    def b_mul(self, x, y):
        return self.b.and_(x, y)

    b_minimum = b_mul

    def b_pow(self, x, y):
        return self.b.or_(x, self.b.xor(y, ir.Constant(_I1, 1)))   # x ** 0 == 1
