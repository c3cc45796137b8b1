"""Native CPU kernels for convolution and pooling, generated with llvmlite.

im2col into the rows-are-output-pixels layout ([N*OH*OW, C*kh*kw], so a convolution is
one large GEMM ``cols @ W^T``), its adjoint col2im, and max pooling forward/backward.
Each kernel is specialized on its geometry, dtype and input strides (constants, so LLVM
unrolls and vectorizes the window loops), compiled once per process (and through
``_jit``'s persistent disk cache across processes), and split over the batch (or the
[N*C] planes) across the CPU pool when the work is large enough to pay for the wake-up.

>>> import numpy as np
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1))[0, 0]
array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""
from __future__ import annotations

import ctypes
import math
import threading
import zlib
from contextlib import contextmanager

import llvmlite.ir as ir
import numpy as np

from ember import threads as _threads
from ember.codegen.llvm import spinpool
from ember.codegen.llvm.jit import _jit, _pool, vector_registers
from ember.codegen.llvm.loops import _new_module

__all__ = ["supports", "im2col", "col2im", "max_pool2d", "max_pool2d_backward",
           "avg_pool2d", "avg_pool2d_backward", "scatter_add_rows"]

_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_PTR = ir.PointerType()
_FLOAT = {np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType()}
# Work (elements touched) from which a call is split across the pool. These kernels
# are memory-bound: on this 2-core VM splitting the CNN benchmarks' im2col/pooling
# (1-4M elements) made the training steps ~3% slower (SimpleCNN 9.9 -> 10.2 ms, CIFAR
# 31.7 -> 32.6 ms, alternating in one process), so only much larger calls split. Through
# spinpool (shares start in a few us) splitting from 0.25-1M changed the CNN steps and
# forwards by 0.93-1.07x (same-process blocks): no gain, the cores share one memory bus.
_PARALLEL_MIN = 16_000_000
_KERNELS: dict = {}
_SPIN = spinpool.available()   # split kernels on spinpool's workers (else the executor)
_LOCK = threading.Lock()


def supports(*arrays) -> bool:
    """Whether the native kernels handle these arrays (host float32/float64, planes
    under 2^24 elements: pooling keeps its indices in floats)."""
    return all(type(a) is np.ndarray and a.dtype in _FLOAT
               and (a.ndim == 2 or a.ndim == 4 and a.shape[2] * a.shape[3] < 1 << 24)
               for a in arrays)


# ---- IR helpers ----------------------------------------------------------------------

def _c(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


@contextmanager
def _for(b: ir.IRBuilder, lo, hi):
    """``for i in range(lo, hi)`` (i64 values or ints) around the body built inside."""
    lo = _c(lo) if isinstance(lo, int) else lo
    hi = _c(hi) if isinstance(hi, int) else hi
    pre = b.block
    head, body, end = (b.append_basic_block() for _ in range(3))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(_I64)
    i.add_incoming(lo, pre)
    b.cbranch(b.icmp_signed("<", i, hi), body, end)
    b.position_at_end(body)
    yield i
    i.add_incoming(b.add(i, _c(1)), b.block)
    b.branch(head)
    b.position_at_end(end)


def _at(b: ir.IRBuilder, ptr, idx, typ):
    return b.gep(ptr, [idx], inbounds=True, source_etype=typ)


def _dot(b: ir.IRBuilder, terms) -> ir.Value:
    """sum(v * k) over (i64 value, int constant) pairs."""
    acc = _c(0)
    for v, k in terms:
        if k:
            acc = b.add(acc, v if k == 1 else b.mul(v, _c(k)))
    return acc


def _in_range(b: ir.IRBuilder, v, n: int):
    """0 <= v < n, as one unsigned compare."""
    return b.icmp_unsigned("<", v, _c(n))


def _function(name: str, nptrs: int):
    module = _new_module(name)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_PTR] * nptrs + [_I64, _I64]),
                     name=name)
    for a in fn.args[:nptrs]:
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    return module, fn, b


# ---- kernels -------------------------------------------------------------------------

def _im2col_ir(name, ft, shape, xstr, geom):
    """cols[n, oy, ox, c, i, j] = x[n, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw] (or 0),
    for n in [start, end)."""
    (_, c_, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = shape, *geom
    module, fn, b = _function(name, 2)
    x, cols, start, end = fn.args
    zero = ir.Constant(ft, 0.0)
    row = c_ * kh * kw
    with _for(b, start, end) as n:
        with _for(b, 0, oh) as oy:
            with _for(b, 0, ow) as ox:
                obase = b.mul(b.add(b.mul(b.add(b.mul(n, _c(oh)), oy), _c(ow)), ox), _c(row))
                y0 = b.sub(b.mul(oy, _c(sh)), _c(ph))
                x0 = b.sub(b.mul(ox, _c(sw)), _c(pw))
                with _for(b, 0, c_) as c:
                    cbase = _dot(b, [(n, xstr[0]), (c, xstr[1])])
                    with _for(b, 0, kh) as i:
                        iy = b.add(y0, b.mul(i, _c(dh)))
                        rok = _in_range(b, iy, h)
                        iyc = b.select(rok, iy, _c(0))
                        rbase = b.add(cbase, b.mul(iyc, _c(xstr[2])))
                        obase_i = b.add(obase, b.mul(b.add(b.mul(c, _c(kh)), i), _c(kw)))
                        for j in range(kw):   # unrolled: kw is small
                            ix = b.add(x0, _c(j * dw))
                            ok = b.and_(rok, _in_range(b, ix, w))
                            ixc = b.select(ok, ix, _c(0))
                            v = b.load(_at(b, x, b.add(rbase, b.mul(ixc, _c(xstr[3]))), ft),
                                       typ=ft)
                            b.store(b.select(ok, v, zero),
                                    _at(b, cols, b.add(obase_i, _c(j)), ft))
    b.ret_void()
    return str(module)


def _col2im_ir(name, ft, shape, geom):
    """dx[n] = 0, then dx[n, c, iy, ix] += cols[n, oy, ox, c, i, j] over the windows."""
    (_, c_, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = shape, *geom
    module, fn, b = _function(name, 2)
    cols, dx, start, end = fn.args
    zero = ir.Constant(ft, 0.0)
    row, plane = c_ * kh * kw, c_ * h * w
    with _for(b, start, end) as n:
        dbase = b.mul(n, _c(plane))
        with _for(b, 0, plane) as k:
            b.store(zero, _at(b, dx, b.add(dbase, k), ft))
        with _for(b, 0, oh) as oy:
            with _for(b, 0, ow) as ox:
                obase = b.mul(b.add(b.mul(b.add(b.mul(n, _c(oh)), oy), _c(ow)), ox), _c(row))
                y0 = b.sub(b.mul(oy, _c(sh)), _c(ph))
                x0 = b.sub(b.mul(ox, _c(sw)), _c(pw))
                with _for(b, 0, c_) as c:
                    with _for(b, 0, kh) as i:
                        iy = b.add(y0, b.mul(i, _c(dh)))
                        with b.if_then(_in_range(b, iy, h)):
                            rbase = b.add(dbase, b.mul(b.add(b.mul(c, _c(h)), iy), _c(w)))
                            obase_i = b.add(obase, b.mul(b.add(b.mul(c, _c(kh)), i), _c(kw)))
                            for j in range(kw):
                                ix = b.add(x0, _c(j * dw))
                                with b.if_then(_in_range(b, ix, w)):
                                    p = _at(b, dx, b.add(rbase, ix), ft)
                                    g = b.load(_at(b, cols, b.add(obase_i, _c(j)), ft), typ=ft)
                                    b.store(b.fadd(b.load(p, typ=ft), g), p)
    b.ret_void()
    return str(module)


def _pool_ir(name, ft, shape, xstr, geom, backward: bool, relu: bool = False):
    """Max pooling over planes [start, end) of the N*C planes, PyTorch's rule: the first
    maximum wins, a NaN wins (and the last NaN). Forward: out[p, oy, ox] = x at the max.
    Backward (argument g instead of out): dx[p] = 0, dx[p, argmax] += g[p, oy, ox];
    ``relu``: then dx[p] = 0 where x[p] <= 0, relu's gradient (torch's threshold_backward)."""
    (_, c_, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = shape, *geom
    module, fn, b = _function(name, 3 if backward else 2)
    if backward:
        x, g, dx, start, end = fn.args
        row = b.alloca(_I32, size=_c(ow))   # one output row's argmax positions
        if relu:
            grow = b.alloca(ft, size=_c(ow))   # and their gradients after relu's test
    else:
        x, out, start, end = fn.args
    ninf = ir.Constant(ft, float("-inf"))
    zero = ir.Constant(ft, 0.0)

    def window(xbase, oy, ox):
        """The window's maximum and (backward) its flat index in the plane, an i32.
        PyTorch's scan (a cell wins if greater or NaN, from the first in-range cell)
        picks the first cell equal to the maximum, or the last NaN: the index is found
        that way after the maximum, so that no select of the index shares a condition
        with the maximum's (on AVX2 such a pair became a branch per cell: CIFAR's
        [64, 32, 30, 30] relu-fused pooling backward 5.8 ms, now 2.2 ms)."""
        y0 = b.sub(b.mul(oy, _c(sh)), _c(ph))
        x0 = b.sub(b.mul(ox, _c(sw)), _c(pw))
        cells = []   # (in range, value, flat index) in the window's order
        # Without padding every window lies inside the plane: no range checks, so the
        # addresses stay affine in ox (a select on the index turns loads into gathers).
        for i in range(kh):   # unrolled: the value and index travel in registers
            iy = b.add(y0, _c(i * dh))
            rok = _in_range(b, iy, h) if ph else ir.Constant(_I1, 1)
            iyc = b.select(rok, iy, _c(0)) if ph else iy
            for j in range(kw):
                ix = b.add(x0, _c(j * dw))
                ok = b.and_(rok, _in_range(b, ix, w)) if pw else rok
                ixc = b.select(ok, ix, _c(0)) if pw else ix
                off = b.add(b.mul(iyc, _c(xstr[2])), b.mul(ixc, _c(xstr[3])))
                v = b.load(_at(b, x, b.add(xbase, off), ft), typ=ft)
                cells.append((ok, v, (iyc, ixc)))
        best = ninf
        for ok, v, _ in cells:
            better = b.or_(b.fcmp_ordered(">", v, best), b.fcmp_unordered("uno", v, v))
            best = b.select(b.and_(ok, better), v, best)
        if not backward:
            return best, None
        first, last_nan = ir.Constant(_I32, -1), ir.Constant(_I32, -1)
        flats = [b.trunc(b.add(b.mul(iyc, _c(w)), ixc), _I32) for _, _, (iyc, ixc) in cells]
        # The maximum is the first cell that reached it, bit for bit (an earlier equal
        # cell would have been taken instead), so the first cell with its bits is the
        # index (0.0 and -0.0 included). Compared as integers: as float compares the
        # chain below met an LLVM assertion (doRAUW) for float64 (2, 1) windows.
        ity = ir.IntType(64 if ft == ir.DoubleType() else 32)
        best_bits = b.bitcast(best, ity)
        for (ok, v, _), flat in reversed(list(zip(cells, flats))):
            same = b.icmp_unsigned("==", b.bitcast(v, ity), best_bits)
            first = b.select(b.and_(ok, same), flat, first)
        for (ok, v, _), flat in zip(cells, flats):
            last_nan = b.select(b.and_(ok, b.fcmp_unordered("uno", v, v)), flat, last_nan)
        return best, b.select(b.fcmp_unordered("uno", best, best), last_nan, first)

    # Windows that tile the plane (stride == kernel, no padding or dilation: the usual
    # 2x2/2) write each gradient element once, the window's maximum g and its other cells
    # 0, instead of zeroing the plane and adding into it (1.19 -> 0.6 ms on CIFAR's
    # [64, 32, 30, 30]).
    tiled = backward and (sh, sw) == (kh, kw) and (ph, pw, dh, dw) == (0, 0, 1, 1)
    with _for(b, start, end) as p:
        xbase = _dot(b, [(b.sdiv(p, _c(c_)), xstr[0]), (b.srem(p, _c(c_)), xstr[1])])
        if backward:
            dbase = b.mul(p, _c(h * w))
            with _for(b, oh * kh * w if tiled else 0, h * w) as k:
                b.store(zero, _at(b, dx, b.add(dbase, k), ft))
        with _for(b, 0, oh) as oy:
            obase = b.mul(b.add(b.mul(p, _c(oh)), oy), _c(ow))
            if not backward:
                with _for(b, 0, ow) as ox:
                    best, _ = window(xbase, oy, ox)
                    b.store(best, _at(b, out, b.add(obase, ox), ft))
            else:
                with _for(b, 0, ow) as ox:
                    best, arg = window(xbase, oy, ox)
                    b.store(arg, _at(b, row, ox, _I32))
                    if relu and tiled:
                        # Each cell gets one window's gradient or 0: relu's test at the
                        # argmax is the window's maximum <= 0 (a NaN fails it), and a
                        # cell no window picked is 0 either way.
                        gv = b.load(_at(b, g, b.add(obase, ox), ft), typ=ft)
                        b.store(b.select(b.fcmp_ordered("<=", best, zero), zero, gv),
                                _at(b, grow, ox, ft))
                if tiled:
                    for i in range(kh):
                        y = b.add(b.mul(oy, _c(kh)), _c(i))
                        rbase = b.mul(y, _c(w))
                        with _for(b, 0, ow) as ox:
                            at = b.load(_at(b, row, ox, _I32), typ=_I32)
                            gv = (b.load(_at(b, grow, ox, ft), typ=ft) if relu else
                                  b.load(_at(b, g, b.add(obase, ox), ft), typ=ft))
                            for j in range(kw):
                                pos = b.add(rbase, b.add(b.mul(ox, _c(kw)), _c(j)))
                                hit = b.icmp_signed("==", at, b.trunc(pos, _I32))
                                b.store(b.select(hit, gv, zero),
                                        _at(b, dx, b.add(dbase, pos), ft))
                        with _for(b, ow * kw, w) as x:   # columns no window covers
                            b.store(zero, _at(b, dx, b.add(dbase, b.add(rbase, x)), ft))
                else:
                    with _for(b, 0, ow) as ox:
                        # A window with no in-range element cannot happen (pad <= k/2).
                        at = b.sext(b.load(_at(b, row, ox, _I32), typ=_I32), _I64)
                        d = _at(b, dx, b.add(dbase, at), ft)
                        gv = b.load(_at(b, g, b.add(obase, ox), ft), typ=ft)
                        b.store(b.fadd(b.load(d, typ=ft), gv), d)
        if relu and not tiled:
            # Overlapping windows add into a cell: relu's test selects the sum, as the
            # separate where does (0 where x <= 0, even for an inf or NaN sum), while
            # the plane is still in cache.
            with _for(b, 0, h) as iy:
                with _for(b, 0, w) as ix:
                    off = _dot(b, [(iy, xstr[2]), (ix, xstr[3])])
                    xv = b.load(_at(b, x, b.add(xbase, off), ft), typ=ft)
                    d = _at(b, dx, b.add(dbase, b.add(b.mul(iy, _c(w)), ix)), ft)
                    b.store(b.select(b.fcmp_ordered("<=", xv, zero), zero,
                                     b.load(d, typ=ft)), d)
    b.ret_void()
    return str(module)


def _avg_ir(name, ft, shape, xstr, geom, divisor: int, backward: bool):
    """Average pooling over planes [start, end): out = window sum / divisor (``divisor``
    0: the window's count of real, unpadded elements). Backward (g instead of x, dx
    C-contiguous): dx[p] = 0, then each in-range element of a window += g / divisor."""
    (_, c_, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = shape, *geom
    module, fn, b = _function(name, 2)
    src, dst, start, end = fn.args
    zero = ir.Constant(ft, 0.0)
    with _for(b, start, end) as p:
        if backward:
            dbase = b.mul(p, _c(h * w))
            with _for(b, 0, h * w) as k:
                b.store(zero, _at(b, dst, b.add(dbase, k), ft))
        else:
            xbase = _dot(b, [(b.sdiv(p, _c(c_)), xstr[0]), (b.srem(p, _c(c_)), xstr[1])])
        with _for(b, 0, oh) as oy:
            with _for(b, 0, ow) as ox:
                y0 = b.sub(b.mul(oy, _c(sh)), _c(ph))
                x0 = b.sub(b.mul(ox, _c(sw)), _c(pw))
                o = b.add(b.mul(b.add(b.mul(p, _c(oh)), oy), _c(ow)), ox)
                cells = []
                for i in range(kh):
                    iy = b.add(y0, _c(i * dh))
                    rok = _in_range(b, iy, h)
                    iyc = b.select(rok, iy, _c(0))
                    for j in range(kw):
                        ix = b.add(x0, _c(j * dw))
                        ok = b.and_(rok, _in_range(b, ix, w))
                        cells.append((ok, iyc, b.select(ok, ix, _c(0))))
                if divisor:
                    div = ir.Constant(ft, float(divisor))
                else:
                    count = _c(0)
                    for ok, _, _ in cells:
                        count = b.add(count, b.zext(ok, _I64))
                    div = b.sitofp(count, ft)
                if not backward:
                    total = zero
                    for ok, iyc, ixc in cells:
                        off = b.add(b.mul(iyc, _c(xstr[2])), b.mul(ixc, _c(xstr[3])))
                        v = b.load(_at(b, src, b.add(xbase, off), ft), typ=ft)
                        total = b.fadd(total, b.select(ok, v, zero))
                    b.store(b.fdiv(total, div), _at(b, dst, o, ft))
                else:
                    gv = b.fdiv(b.load(_at(b, src, o, ft), typ=ft), div)
                    for ok, iyc, ixc in cells:
                        with b.if_then(ok):
                            d = _at(b, dst, b.add(dbase, b.add(b.mul(iyc, _c(w)), ixc)), ft)
                            b.store(b.fadd(b.load(d, typ=ft), gv), d)
    b.ret_void()
    return str(module)


def _pool2x2_ir(name, ft, shape, xstr, geom, backward: bool, relu: bool, lanes: int):
    """``_pool_ir`` for 2x2 windows at stride 2 on rows of unit stride, as explicit
    vectors: a pair of input rows is loaded ``2 * lanes`` elements at a time, split into
    the windows' even and odd columns, and the four cells' vectors give the maximum
    and (backward) which cell gets the gradient, interleaved back for the stores. The
    loop vectorizer left the scalar form's stride-2 loads scalar on AVX2: CIFAR's
    [64, 32, 30, 30] 0.83 / 5.97 / 3.27 ms (forward / backward / after relu), one
    thread; 0.28 / 0.88 / 0.91 ms so. Same rule and same results as ``_pool_ir``, bit
    for bit."""
    (_, c_, h, w), (oh, ow) = shape, geom[4]
    module, fn, b = _function(name, 3 if backward else 2)
    if backward:
        x, g, dx, start, end = fn.args
    else:
        x, out, start, end = fn.args
    ity = ir.IntType(64 if ft == ir.DoubleType() else 32)
    size = 8 if ft == ir.DoubleType() else 4

    def splat(typ, v, n):
        return ir.Constant(typ if n == 1 else ir.VectorType(typ, n), v if n == 1 else [v] * n)

    def load(ptr, off, n):
        typ = ft if n == 1 else ir.VectorType(ft, n)
        return b.load(_at(b, ptr, off, ft), typ=typ, align=size)

    def store(v, ptr, off):
        b.store(v, _at(b, ptr, off, ft), align=size)

    def columns(row, ox, n):
        """The even and odd columns of ``n`` windows from ``ox`` in one input row."""
        off = b.add(row, b.mul(ox, _c(2)))
        if n == 1:
            return load(x, off, 1), load(x, b.add(off, _c(1)), 1)
        both = load(x, off, 2 * n)
        mask = ir.VectorType(_I32, n)
        return (b.shuffle_vector(both, both, ir.Constant(mask, list(range(0, 2 * n, 2)))),
                b.shuffle_vector(both, both, ir.Constant(mask, list(range(1, 2 * n, 2)))))

    def windows(r0, r1, obase, dbase, oy, ox, n):
        """``n`` windows from column ``ox`` of output row ``oy`` (n = 1: scalars)."""
        cells = [*columns(r0, ox, n), *columns(r1, ox, n)]   # PyTorch's scan order
        best = splat(ft, float("-inf"), n)
        for v in cells:
            better = b.or_(b.fcmp_ordered(">", v, best), b.fcmp_unordered("uno", v, v))
            best = b.select(better, v, best)
        if not backward:
            store(best, out, b.add(obase, ox))
            return
        zero = splat(ft, 0.0, n)
        gv = load(g, b.add(obase, ox), n)
        if relu:   # relu's test at the argmax: the maximum <= 0 (a NaN fails it)
            gv = b.select(b.fcmp_ordered("<=", best, zero), zero, gv)
        # The first cell with the maximum's bits, or the last NaN (as _pool_ir).
        itype = ity if n == 1 else ir.VectorType(ity, n)
        bits = b.bitcast(best, itype)
        first = splat(_I32, -1, n)
        for k in reversed(range(4)):
            first = b.select(b.icmp_unsigned("==", b.bitcast(cells[k], itype), bits),
                             splat(_I32, k, n), first)
        last_nan = splat(_I32, -1, n)
        for k, v in enumerate(cells):
            last_nan = b.select(b.fcmp_unordered("uno", v, v), splat(_I32, k, n), last_nan)
        arg = b.select(b.fcmp_unordered("uno", best, best), last_nan, first)
        grads = [b.select(b.icmp_signed("==", arg, splat(_I32, k, n)), gv, zero)
                 for k in range(4)]
        for i, (even, odd) in enumerate((grads[:2], grads[2:])):
            at = b.add(dbase, b.add(b.mul(b.add(b.mul(oy, _c(2)), _c(i)), _c(w)),
                                    b.mul(ox, _c(2))))
            if n == 1:
                store(even, dx, at)
                store(odd, dx, b.add(at, _c(1)))
            else:
                inter = ir.Constant(ir.VectorType(_I32, 2 * n),
                                    [j // 2 + (j % 2) * n for j in range(2 * n)])
                store(b.shuffle_vector(even, odd, inter), dx, at)

    # Vectors of n windows (a row narrower than ``lanes`` takes the widest power of 2
    # that fits); the row's last vector overlaps the one before it, not a scalar tail
    # (7 of CIFAR's 15 windows a row: 1.95 -> 0.88 ms).
    n = lanes if ow >= lanes else 1 << max(ow.bit_length() - 1, 0)
    with _for(b, start, end) as p:
        xbase = _dot(b, [(b.sdiv(p, _c(c_)), xstr[0]), (b.srem(p, _c(c_)), xstr[1])])
        dbase = b.mul(p, _c(h * w))
        if backward:   # rows and columns no window covers (odd H or W)
            with _for(b, oh * 2 * w, h * w) as k:
                store(ir.Constant(ft, 0.0), dx, b.add(dbase, k))
        with _for(b, 0, oh) as oy:
            r0 = b.add(xbase, b.mul(b.mul(oy, _c(2)), _c(xstr[2])))
            r1 = b.add(r0, _c(xstr[2]))
            obase = b.mul(b.add(b.mul(p, _c(oh)), oy), _c(ow))
            with _for(b, 0, ow // n) as t:
                windows(r0, r1, obase, dbase, oy, b.mul(t, _c(n)), n)
            if ow % n:   # the last n windows again: rewrites the same values
                windows(r0, r1, obase, dbase, oy, _c(ow - n), n)
            if backward and w % 2:
                for i in range(2):
                    at = b.add(dbase, b.add(b.mul(b.add(b.mul(oy, _c(2)), _c(i)), _c(w)),
                                            _c(w - 1)))
                    store(ir.Constant(ft, 0.0), dx, at)
    b.ret_void()
    return str(module)


def _scatter_add_ir(name, ft, row: int):
    """out[idx[i], :] += v[i, :] for i in [start, end), in that order (rows of ``row``
    elements; idx in range): np.add.at's sums, bit for bit."""
    module, fn, b = _function(name, 3)
    out, idx, v, start, end = fn.args
    with _for(b, start, end) as i:
        dst = b.mul(b.load(_at(b, idx, i, _I64), typ=_I64), _c(row))
        src = b.mul(i, _c(row))
        with _for(b, 0, row) as c:
            d = _at(b, out, b.add(dst, c), ft)
            b.store(b.fadd(b.load(d, typ=ft), b.load(_at(b, v, b.add(src, c), ft), typ=ft)), d)
    b.ret_void()
    return str(module)


# ---- compiled kernels and their calls ------------------------------------------------

class _Native:
    """One compiled kernel ``fn(ptrs..., start, end)`` and how to split its range: over
    the CPU pool once ``work`` reaches ``parallel_min``."""

    def __init__(self, name: str, source: str, nptrs: int,
                 parallel_min: int = _PARALLEL_MIN) -> None:
        self._parallel_min = parallel_min
        self._engine, _ = _jit(source)
        ftype = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nptrs), ctypes.c_int64,
                                 ctypes.c_int64)
        self._address = self._engine.get_function_address(name)
        self._fn = ftype(self._address)

    def __call__(self, arrays, total: int, work: int) -> None:
        ptrs = [a.ctypes.data for a in arrays]
        nthreads = min(_threads._num_threads, total)
        if work < self._parallel_min or nthreads < 2:
            self._fn(*ptrs, 0, total)
            return
        if _SPIN:
            words = (ctypes.c_int64 * len(ptrs))(*ptrs)
            spinpool.run(self._address, len(ptrs), ctypes.addressof(words), total, nthreads)
            return
        bounds = [total * t // nthreads for t in range(nthreads + 1)]
        futures = [_pool().submit(self._fn, *ptrs, lo, hi)
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        self._fn(*ptrs, bounds[0], bounds[1])   # the calling thread takes a share
        for f in futures:
            f.result()


def compiled(sig: tuple, build, parallel_min: int = _PARALLEL_MIN) -> _Native:
    """The kernel of signature ``sig`` (kind first), built once per process:
    ``build(name)`` gives its IR text and pointer count. The name is stable across
    processes (hash() of strings is salted per process): the IR text is the persistent
    cache's key. directconv.py's kernels come through here too."""
    k = _KERNELS.get(sig)
    if k is None:
        with _LOCK:
            k = _KERNELS.get(sig)
            if k is None:
                name = f"ember_{sig[0]}_{zlib.crc32(repr(sig).encode()):08x}"
                k = _KERNELS[sig] = _Native(name, *build(name), parallel_min)
    return k


def _kernel(kind: str, dtype: np.dtype, *key) -> _Native:
    def build(name: str) -> tuple[str, int]:
        ft = _FLOAT[dtype]
        if kind in ("avg_fwd", "avg_bwd"):
            return _avg_ir(name, ft, *key, backward=kind == "avg_bwd"), 2
        if kind == "scatter_add":
            return _scatter_add_ir(name, ft, *key), 3
        if kind == "im2col":
            return _im2col_ir(name, ft, *key), 2
        if kind == "col2im":
            return _col2im_ir(name, ft, *key), 2
        backward, relu = kind != "pool_fwd", kind == "pool_bwd_relu"
        shape, xstr, geom = key
        if geom[:4] == ((2, 2), (2, 2), (0, 0), (1, 1)) and xstr[3] == 1:
            lanes = vector_registers()[0] // dtype.itemsize
            return _pool2x2_ir(name, ft, shape, xstr, geom, backward, relu, lanes), \
                2 + backward
        return _pool_ir(name, ft, *key, backward=backward, relu=relu), 2 + backward
    return compiled((kind, dtype.str, *key), build)


def _elem_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def _out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _geometry(shape, kernel, stride, padding, dilation):
    _, _, h, w = shape
    out = (_out_size(h, kernel[0], stride[0], padding[0], dilation[0]),
           _out_size(w, kernel[1], stride[1], padding[1], dilation[1]))
    return (tuple(kernel), tuple(stride), tuple(padding), tuple(dilation), out)


def _strided_ok(a: np.ndarray) -> bool:
    """Strides the kernels can take (whole elements; NumPy allows odd byte strides)."""
    return all(s % a.itemsize == 0 for s in a.strides)


def im2col(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """[N, C, H, W] (any strides) -> [N*OH*OW, C*kh*kw], zeros where the window is in
    the padding."""
    if not _strided_ok(x):
        x = np.ascontiguousarray(x)
    geom = _geometry(x.shape, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    (kh, kw), oh, ow = geom[0], *geom[4]
    cols = np.empty((n * oh * ow, c * kh * kw), x.dtype)
    if cols.size:
        _kernel("im2col", x.dtype, tuple(x.shape), _elem_strides(x), geom)(
            [x, cols], n, cols.size)
    return cols


def col2im(cols: np.ndarray, shape, kernel, stride, padding, dilation) -> np.ndarray:
    """The adjoint of ``im2col``: [N*OH*OW, C*kh*kw] -> [N, C, H, W], overlapping windows
    accumulated."""
    cols = np.ascontiguousarray(cols)
    shape = tuple(shape)
    out = np.empty(shape, cols.dtype)
    if out.size:
        _kernel("col2im", cols.dtype, shape, _geometry(shape, kernel, stride, padding,
                                                       dilation))([cols, out], shape[0],
                                                                  cols.size + out.size)
    return out


def max_pool2d(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """Max over each window of [N, C, H, W] (any strides) -> C-contiguous output."""
    if not _strided_ok(x):
        x = np.ascontiguousarray(x)
    geom = _geometry(x.shape, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    out = np.empty((n, c, *geom[4]), x.dtype)
    if out.size:
        _kernel("pool_fwd", x.dtype, tuple(x.shape), _elem_strides(x), geom)(
            [x, out], n * c, out.size * math.prod(kernel))
    return out


def max_pool2d_backward(g: np.ndarray, x: np.ndarray, kernel, stride, padding,
                        dilation, relu: bool = False) -> np.ndarray:
    """The input gradient of ``max_pool2d``: each output's gradient goes to the element
    its window's maximum came from (found again from ``x``); ``relu``: 0 where
    ``x <= 0``, relu's gradient when ``x`` is a relu's output."""
    if not _strided_ok(x):
        x = np.ascontiguousarray(x)
    g = np.ascontiguousarray(g, dtype=x.dtype)
    geom = _geometry(x.shape, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    dx = np.empty(x.shape, x.dtype)
    if dx.size:
        _kernel("pool_bwd_relu" if relu else "pool_bwd", x.dtype, tuple(x.shape),
                _elem_strides(x), geom)(
            [x, g, dx], n * c, g.size * math.prod(kernel) + dx.size)
    return dx


def avg_pool2d(x: np.ndarray, kernel, stride, padding, divisor: int) -> np.ndarray:
    """Window sums of [N, C, H, W] (any strides) / ``divisor`` (0: each window's count
    of real elements) -> C-contiguous output."""
    if not _strided_ok(x):
        x = np.ascontiguousarray(x)
    geom = _geometry(x.shape, kernel, stride, padding, (1, 1))
    n, c = x.shape[:2]
    out = np.empty((n, c, *geom[4]), x.dtype)
    if out.size:
        _kernel("avg_fwd", x.dtype, tuple(x.shape), _elem_strides(x), geom, int(divisor))(
            [x, out], n * c, out.size * math.prod(kernel))
    return out


def avg_pool2d_backward(g: np.ndarray, shape, kernel, stride, padding,
                        divisor: int) -> np.ndarray:
    """The input gradient of ``avg_pool2d``: each window's gradient / divisor, spread
    over its real elements."""
    g = np.ascontiguousarray(g)
    shape = tuple(shape)
    geom = _geometry(shape, kernel, stride, padding, (1, 1))
    dx = np.empty(shape, g.dtype)
    if dx.size:
        _kernel("avg_bwd", g.dtype, shape, (0, 0, 0, 0), geom, int(divisor))(
            [g, dx], shape[0] * shape[1], g.size * math.prod(kernel) + dx.size)
    return dx


def scatter_add_rows(out: np.ndarray, idx: np.ndarray, v: np.ndarray) -> bool:
    """``np.add.at(out, idx, v)`` for integer ``idx`` picking rows of a C-contiguous
    float32/float64 ``out`` (the embedding's gradient), in the same order, so the same
    sums; False (nothing done) where it does not apply. NumPy's loop took 1.8 ms for
    minGPT's [512 tokens, 192] into [65, 192], one element at a time."""
    if not (type(out) is np.ndarray and out.dtype in _FLOAT and out.ndim >= 1
            and out.flags.c_contiguous and out.flags.writeable
            and isinstance(idx, np.ndarray) and idx.dtype.kind in "iu"):
        return False
    rows = out.shape[0]
    flat = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if lo < -rows or hi >= rows:
        return False   # np.add.at raises NumPy's IndexError
    if lo < 0:
        flat = np.where(flat < 0, flat + rows, flat)
    row = math.prod(out.shape[1:])
    try:
        src = np.broadcast_to(v, idx.shape + out.shape[1:])
    except ValueError:
        return False   # np.add.at says why
    src = np.ascontiguousarray(src, dtype=out.dtype)
    if np.may_share_memory(src, out):   # the kernel's pointers are noalias
        src = src.copy()
    if flat.size and row:
        _kernel("scatter_add", out.dtype, row)([out, flat, src], flat.size, 0)
    return True
