"""The CUDA backend's op table: a C expression per (op, dtype), and the prelude of
helpers they call."""
from __future__ import annotations

import math

import numpy as np

from ember import dtypes
from ember.dtypes import DType
from ember.codegen.kernel import Kernel
from ember.codegen.mathlib import DECOMPOSED, INTERNAL_OPS, decomposes, program

F32, F64, I32, I64, B = (dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64,
                         dtypes.bool_)
_CTYPE = {F32: "float", F64: "double", I32: "int", I64: "long long", B: "bool"}
_STORAGE = {**_CTYPE, B: "unsigned char"}   # NumPy and CuPy store bool as a byte
_SUFFIX = {F32: "f32", F64: "f64", I32: "i32", I64: "i64", B: "b"}


# ---- scalar ops -----------------------------------------------------------------------

_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# (pow has integer forms too)
_FLOAT_RESULT = frozenset(("sqrt", "sin", "cos", "div")) | (frozenset(DECOMPOSED) - {"pow"})
# (erf: float64 only, float32 is mathlib's program)
_MATH = {"abs": "fabs", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "erf": "erf"}
_INF_BITS = {F32: "__int_as_float(0x7f800000)",
             F64: "__longlong_as_double(0x7ff0000000000000LL)"}
_NAN_BITS = {F32: "__int_as_float(0x7fc00000)",
             F64: "__longlong_as_double(0x7ff8000000000000LL)"}


def _convert(x: str, src: DType, dst: DType) -> str:
    """NumPy ``astype`` from ``src`` to ``dst`` of the C value ``x`` (as llvm.py)."""
    if src is dst:
        return x
    if dst is B:
        return f"({x} != 0)"             # a NaN is truthy: != is true for it
    if dst.is_floating_point or not src.is_floating_point:
        return f"(({_CTYPE[dst]})({x}))"  # bool -> 0/1; ints wrap when narrowed
    # float -> int: INT_MIN for NaN, inf and out-of-range values, as x86 (so NumPy).
    return f"ember_to_{_SUFFIX[dst]}({x})"


def _literal(value, dt: DType) -> str:
    if dt.is_floating_point:
        v = float(value)
        if dt is F32:
            with np.errstate(over="ignore"):
                v = float(np.float32(v))
        if math.isnan(v):
            return _NAN_BITS[dt]
        if math.isinf(v):
            return ("-" if v < 0 else "") + _INF_BITS[dt]
        # repr round-trips the double; a float32 value's nearest float is itself.
        return repr(v) + ("f" if dt is F32 else "")
    if dt is B:
        return "true" if bool(value) else "false"
    bits = dt.itemsize * 8
    v = int(value) & ((1 << bits) - 1)   # integer literals wrap like NumPy casts
    v = v - (1 << bits) if v >> (bits - 1) else v
    if v == -(1 << (bits - 1)):
        return f"(-{-(v + 1)} - 1)" if bits == 32 else f"(-{-(v + 1)}LL - 1)"
    return str(v) if bits == 32 else f"{v}LL"


def _op(name: str, args: list[str], arg_dtypes: list[DType], out: DType) -> str:
    """A C expression for registry op ``name`` (semantics of ``llvm._Scalar.op``)."""
    if name == "cast":
        return _convert(args[0], arg_dtypes[0], out)
    if name in _COMPARE:
        dt = dtypes.promote(*arg_dtypes)
        x, y = (_convert(a, d, dt) for a, d in zip(args, arg_dtypes))
        # C compares are NumPy's: false with a NaN operand, except != which is true.
        return f"({x} {_COMPARE[name]} {y})"
    if name.startswith("logical_"):
        bs = [_convert(a, d, B) for a, d in zip(args, arg_dtypes)]
        if name == "logical_not":
            return f"(!{bs[0]})"
        if name in ("logical_and", "logical_or"):
            return f"({bs[0]} {'&&' if name == 'logical_and' else '||'} {bs[1]})"
    if name == "where":
        return (f"({_convert(args[0], arg_dtypes[0], B)} ? {_convert(args[1], arg_dtypes[1], out)}"
                f" : {_convert(args[2], arg_dtypes[2], out)})")
    if name in _FLOAT_RESULT and not out.is_floating_point:
        raise NotImplementedError(f"op {name} with result dtype {out}")
    a = [_convert(x, d, out) for x, d in zip(args, arg_dtypes)]
    code = None
    if out.is_floating_point:
        code = _float_op(name, a, out)
    elif out is B:
        code = _BOOL_OPS.get(name)
        code = code and code.format(*a)
    else:
        code = _INT_OPS.get(name)
        code = code and code.format(*a, T=_CTYPE[out])
    if code is None:
        raise NotImplementedError(f"op {name} on {out} has no CUDA lowering")
    return code


def _float_op(name: str, a: list[str], out: DType) -> str | None:
    f = "f" if out is F32 else ""
    if decomposes(name, out):   # a mathlib program, defined by math_source
        return f"ember_{name}_{_SUFFIX[out]}({', '.join(a)})"
    if name in _MATH:
        return f"{_MATH[name]}{f}({a[0]})"
    return {
        "neg": lambda: f"(-{a[0]})",
        "sign": lambda: f"ember_sign({a[0]})",
        "relu": lambda: f"ember_relu({a[0]})",
        "add": lambda: f"({a[0]} + {a[1]})",
        "sub": lambda: f"({a[0]} - {a[1]})",
        "mul": lambda: f"({a[0]} * {a[1]})",
        "div": lambda: f"({a[0]} / {a[1]})",
        "pow": lambda: f"pow{f}({a[0]}, {a[1]})",
        "maximum": lambda: f"ember_maximum({a[0]}, {a[1]})",
        "minimum": lambda: f"ember_minimum({a[0]}, {a[1]})",
    }.get(name, lambda: None)()


# Integer arithmetic wraps like NumPy: done on the unsigned type (signed overflow is
# undefined in C++, and NVRTC's optimizer would be entitled to exploit it).
_INT_OPS = {
    "neg": "ember_neg({0})", "abs": "ember_iabs({0})", "sign": "ember_sign({0})",
    "relu": "ember_relu({0})", "add": "ember_add({0}, {1})", "sub": "ember_sub({0}, {1})",
    "mul": "ember_mul({0}, {1})", "maximum": "ember_maximum({0}, {1})",
    "minimum": "ember_minimum({0}, {1})", "pow": "ember_ipow({0}, {1})",
}
# NumPy's bool arithmetic is logic.
_BOOL_OPS = {
    "abs": "{0}", "relu": "{0}", "sign": "{0}", "add": "({0} || {1})", "maximum": "({0} || {1})",
    "mul": "({0} && {1})", "minimum": "({0} && {1})", "pow": "({0} || !{1})",
}


def math_source(kernels: list[Kernel]) -> str:
    """The ``__device__`` functions of the mathlib programs ``kernels`` use (each
    include-guarded, so sources concatenate)."""
    need = {(e.op, e.dtype) for k in kernels for e in k.exprs
            if e.op in DECOMPOSED and decomposes(e.op, e.dtype)}
    return "".join(_math_function(op, dt)
                   for op, dt in sorted(need, key=lambda n: (n[0], n[1].itemsize)))


def _math_function(op: str, dt: DType) -> str:
    """``ember_<op>_<f32|f64>``: mathlib's program, each operation as written (no
    contraction into FMAs; the program's FMAs are explicit)."""
    prog = program(op, dt)
    name = f"ember_{op}_{_SUFFIX[dt]}"
    nargs = sum(e.op == "arg" for e in prog)
    params = ", ".join(f"{_CTYPE[dt]} t{i}" for i in range(nargs))
    lines = [f"#ifndef EMBER_MATH_{name}", f"#define EMBER_MATH_{name}",
             f"EMBER_FN {_CTYPE[dt]} {name}({params}) {{"]
    for j, e in enumerate(prog):
        if e.op == "arg":
            continue
        a = [f"t{i}" for i in e.args] if e.op != "const" else []
        if e.op == "const":
            code = _literal(e.args[0], e.dtype)
        elif e.op in INTERNAL_OPS or (e.op in ("add", "sub", "mul") and e.dtype.is_floating_point):
            code = f"ember_{e.op}_rn({', '.join(a)})" if e.op in ("add", "sub", "mul") else \
                f"ember_{e.op}({', '.join(a)})"
        else:
            code = _op(e.op, a, [prog[i].dtype for i in e.args], e.dtype)
        lines.append(f"    const {_CTYPE[e.dtype]} t{j} = {code};")
    lines += [f"    return t{len(prog) - 1};", "}", "#endif", ""]
    return "\n".join(lines)


_PRELUDE = r"""#ifndef EMBER_CUDA_PRELUDE
#define EMBER_CUDA_PRELUDE
#define EMBER_FN __device__ __forceinline__

// float -> int as x86 (and so NumPy there): INT_MIN for NaN, inf and out-of-range values.
// (A float argument widens to double exactly; the limits are powers of two.)
EMBER_FN int ember_to_i32(double v) {
    return (v >= -2147483648.0 && v < 2147483648.0) ? (int)v : (-2147483647 - 1);
}
EMBER_FN long long ember_to_i64(double v) {
    return (v >= -9223372036854775808.0 && v < 9223372036854775808.0)
        ? (long long)v : (-9223372036854775807LL - 1);
}

template <class T> struct ember_unsigned;
template <> struct ember_unsigned<int> { typedef unsigned int type; };
template <> struct ember_unsigned<long long> { typedef unsigned long long type; };
template <class T> EMBER_FN T ember_add(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x + (U)y);
}
template <class T> EMBER_FN T ember_sub(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x - (U)y);
}
template <class T> EMBER_FN T ember_mul(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)x * (U)y);
}
template <class T> EMBER_FN T ember_neg(T x) {
    typedef typename ember_unsigned<T>::type U;
    return (T)((U)0 - (U)x);
}
template <class T> EMBER_FN T ember_iabs(T x) { return x < 0 ? ember_neg(x) : x; }
// Exponentiation by squaring; NumPy rejects negative exponents, we give C's truncated
// answer (0 unless |x| == 1), as the CPU backend.
template <class T> EMBER_FN T ember_ipow(T x, T y) {
    typedef typename ember_unsigned<T>::type U;
    if (y < 0) return x == 1 ? (T)1 : x == -1 ? ((y & 1) ? (T)-1 : (T)1) : (T)0;
    U acc = 1, base = (U)x;
    while (y > 0) {
        if (y & 1) acc *= base;
        base *= base;
        y >>= 1;
    }
    return (T)acc;
}
// torch's semantics: sign(NaN) is 0 and sign(-0.0) is +0.0; relu (-0.0 stays) and
// maximum/minimum keep a NaN (x != x is false for integers, so these serve them too).
template <class T> EMBER_FN T ember_sign(T x) {
    return x > 0 ? (T)1 : x < 0 ? (T)-1 : (T)0;
}
template <class T> EMBER_FN T ember_relu(T x) { return x < 0 ? (T)0 : x; }
template <class T> EMBER_FN T ember_maximum(T x, T y) { return x != x ? x : (x > y ? x : y); }
template <class T> EMBER_FN T ember_minimum(T x, T y) { return x != x ? x : (x < y ? x : y); }
// reduce_max over floats: a NaN on either side wins (torch.amax, np.max), and +0 ranks
// above -0 (llvm.maximum, which the CPU backend uses).
template <class T> EMBER_FN T ember_max_nan(T a, T b) {
    if (a != a) return a;
    if (b != b) return b;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}

// The operations of mathlib programs (math_source), exactly as written: the _rn forms are
// never contracted into FMAs, so the GPU computes what the CPU backend does.
#ifdef __CUDA_ARCH__
EMBER_FN float ember_add_rn(float a, float b) { return __fadd_rn(a, b); }
EMBER_FN float ember_sub_rn(float a, float b) { return __fsub_rn(a, b); }
EMBER_FN float ember_mul_rn(float a, float b) { return __fmul_rn(a, b); }
EMBER_FN double ember_add_rn(double a, double b) { return __dadd_rn(a, b); }
EMBER_FN double ember_sub_rn(double a, double b) { return __dsub_rn(a, b); }
EMBER_FN double ember_mul_rn(double a, double b) { return __dmul_rn(a, b); }
#else
template <class T> EMBER_FN T ember_add_rn(T a, T b) { return a + b; }
template <class T> EMBER_FN T ember_sub_rn(T a, T b) { return a - b; }
template <class T> EMBER_FN T ember_mul_rn(T a, T b) { return a * b; }
#endif
EMBER_FN float ember_fma(float a, float b, float c) { return fmaf(a, b, c); }
EMBER_FN double ember_fma(double a, double b, double c) { return fma(a, b, c); }
EMBER_FN float ember_floor(float x) { return floorf(x); }
EMBER_FN double ember_floor(double x) { return floor(x); }
EMBER_FN float ember_rint(float x) { return rintf(x); }
EMBER_FN double ember_rint(double x) { return rint(x); }
EMBER_FN float ember_copysign(float x, float y) { return copysignf(x, y); }
EMBER_FN double ember_copysign(double x, double y) { return copysign(x, y); }
union ember_bits32 { float f; int i; };
union ember_bits64 { double f; long long i; };
EMBER_FN float ember_pow2(int n) { ember_bits32 u; u.i = (n + 127) << 23; return u.f; }
EMBER_FN double ember_pow2(long long n) {
    ember_bits64 u; u.i = (n + 1023) << 52; return u.f;
}
// x * 2^n, n integral: two exact scalings (one would leave the exponent range near the
// subnormals).
EMBER_FN float ember_ldexp(float x, float n) {
    const int i = (int)n, h = i >> 1;
    return ember_mul_rn(ember_mul_rn(x, ember_pow2(h)), ember_pow2(i - h));
}
EMBER_FN double ember_ldexp(double x, double n) {
    const long long i = (long long)n, h = i >> 1;
    return ember_mul_rn(ember_mul_rn(x, ember_pow2(h)), ember_pow2(i - h));
}
EMBER_FN float ember_exp2i(float n) { return ember_pow2((int)n); }
EMBER_FN double ember_exp2i(double n) { return ember_pow2((long long)n); }
EMBER_FN float ember_frexp_exp(float x) {
    ember_bits32 u; u.f = x; return (float)(((u.i >> 23) & 255) - 127);
}
EMBER_FN double ember_frexp_exp(double x) {
    ember_bits64 u; u.f = x; return (double)(((u.i >> 52) & 2047) - 1023);
}
EMBER_FN float ember_frexp_mant(float x) {
    ember_bits32 u; u.f = x; u.i = (u.i & 0x7fffff) | (127 << 23); return u.f;
}
EMBER_FN double ember_frexp_mant(double x) {
    ember_bits64 u; u.f = x; u.i = (u.i & 0xfffffffffffffLL) | (1023LL << 52); return u.f;
}

// Reductions: the accumulator type, its identity and its combine.
#define EMBER_RED(NAME, T, IDENTITY, APPLY) \
    struct NAME { \
        typedef T type; \
        static __device__ __forceinline__ T identity() { return IDENTITY; } \
        static __device__ __forceinline__ T apply(T a, T b) { return APPLY; } \
    };
EMBER_RED(ember_red_sum_f32, float, 0.0f, a + b)
EMBER_RED(ember_red_sum_f64, double, 0.0, a + b)
EMBER_RED(ember_red_sum_i32, int, 0, ember_add(a, b))
EMBER_RED(ember_red_sum_i64, long long, 0, ember_add(a, b))
EMBER_RED(ember_red_sum_b, bool, false, a != b)
EMBER_RED(ember_red_max_f32, float, __int_as_float((int)0xff800000u), ember_max_nan(a, b))
EMBER_RED(ember_red_max_f64, double,
          __longlong_as_double((long long)0xfff0000000000000ull), ember_max_nan(a, b))
EMBER_RED(ember_red_max_i32, int, (-2147483647 - 1), (b > a ? b : a))
EMBER_RED(ember_red_max_i64, long long, (-9223372036854775807LL - 1), (b > a ? b : a))
EMBER_RED(ember_red_max_b, bool, false, a || b)

EMBER_FN float ember_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN double ember_shfl_xor(double v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN int ember_shfl_xor(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
EMBER_FN long long ember_shfl_xor(long long v, int m) {
    return __shfl_xor_sync(0xffffffffu, v, m);
}
EMBER_FN bool ember_shfl_xor(bool v, int m) {
    return __shfl_xor_sync(0xffffffffu, (int)v, m) != 0;
}

// Butterfly (xor) shuffles leave the warp's result in every lane, combined in the same
// order in each (a + b == b + a exactly), so all lanes agree bit for bit.
template <class R> EMBER_FN typename R::type ember_warp_reduce(typename R::type v) {
    for (int m = 16; m > 0; m >>= 1) v = R::apply(v, ember_shfl_xor(v, m));
    return v;
}
// Block reduce: warps reduce, lane 0 of each posts to shared memory, then every warp
// reduces the posted values (so every thread gets the result without a broadcast).
// blockDim.x must be a multiple of 32; every thread of the block must call it.
template <class R>
EMBER_FN typename R::type ember_block_reduce(typename R::type v, unsigned long long* smem) {
    typedef typename R::type T;
    T* s = reinterpret_cast<T*>(smem);
    const int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
    v = ember_warp_reduce<R>(v);
    if (lane == 0) s[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? s[lane] : R::identity();
    v = ember_warp_reduce<R>(v);
    __syncthreads();   // smem is reused by the next reduction
    return v;
}
#endif  // EMBER_CUDA_PRELUDE
"""
