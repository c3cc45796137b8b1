"""Direct convolution on the CPU, generated with llvmlite: no im2col, no GEMM.

For few output channels the im2col + GEMM path spends its time in BLAS calls of a
skinny shape ([N*OH*OW, 75] @ [75, 6]: OpenBLAS ran those at 24-33 GFLOP/s here) and in
writing and reading the unfolded copy. These kernels read the (zero-padded) input in
place instead:

- ``conv2d``: out[n, o, oy, ox] = sum_{c,i,j} w[o, c, i, j] * x[n, c, oy*sh+i*dh, ox*sw+j*dw]
  (after padding). Vectors run along OW (an output row is contiguous); a tile of
  OB output channels x XB vectors of OW stays in registers while the loop runs over
  C (kh, kw unrolled), each weight a broadcast. Rows (n, oy) split across the pool.
  Rows shorter than a vector (OW < 16 float32 lanes with AVX-512, unit row stride):
  ``_conv_flat_ir`` packs x[n] per (c, tap column j) at row pitch OW and runs the
  vectors along the whole flattened (oy, ox) plane (OW = 10: 100 of 112 lanes busy,
  not 10 of 16). Vector width and tile sizes follow the CPU (``VECTOR``).
- ``conv2d_weight``: dw[o, c, i, j] = sum_{n,oy,ox} g[n, o, oy, ox] * x[n, c, ...]: a
  tile of OB output channels x kw partial-sum vectors (the most that fit the 32
  registers with the shorter operand list), reduced across lanes at the end. A task
  is (channel block, group of input channels); inside it n runs outermost, so g[n,
  block] is read from memory once and from L1 for every c and kernel row i, the
  partial sums of each (c, i) waiting in a small stack array between passes. For
  OW < 16 (unit row stride) the vectors run along the flattened plane as in the
  forward (x packed per (n, c)).

Without padding and with a unit column stride both kernels read x in place (the tail
vector's loads are masked, so no read leaves its row). Otherwise the padded copy is
stored phase-split, x[..., q*sw + p] at [..., p, q], so the lanes of a vector
(consecutive ox) read consecutive memory for any stride. Each kernel is specialized on
the whole geometry (constants: LLVM unrolls and schedules) and compiled once per
process and through ``_jit``'s disk cache.

One thread, kernel and copies, 2-core AVX-512 VM, float32 (us, GFLOP/s): SimpleCNN
conv1 3->6 5x5 32x32, batch 64: forward 390 -> 312 (116 -> 145), weight gradient
588 -> 423 (77 -> 107); conv2 6->16 5x5 14x14: 311 -> 225 (99 -> 136), 510 -> 340
(60 -> 90); CIFAR conv1 3->32 3x3: 758 -> 690 (131 -> 144), 1732 -> 996 (58 -> 100).

float32 accumulates in float32 vector partial sums: against float64 NumPy the relative
error (max |error| / max |result|) measured 2-6e-7 (forward, K = 75 and 150) and
0.4-1.5e-6 (weight gradient over 50,176 and 6,400 terms per lane group); the tests
bound them by 2e-6 and 2e-5.

>>> import numpy as np
>>> x = np.ones((1, 1, 4, 4), np.float32)
>>> conv2d(x, np.ones((2, 1, 3, 3), np.float32), (1, 1), (0, 0), (1, 1))[0, 1]
array([[9., 9.],
       [9., 9.]], dtype=float32)
"""
from __future__ import annotations


import llvmlite.ir as ir
import numpy as np

from ember.codegen.llvm.jit import vector_registers
from ember.codegen.llvm.native import compiled
from ember.codegen.llvm.loops import _new_module

__all__ = ["supports", "conv2d", "conv2d_weight"]

_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_PTR = ir.PointerType()
_FLOAT = {np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType()}
# (bytes per vector register, registers) of this CPU: AVX-512 64 x 32 (a vector is one
# zmm register: the target machine lifts LLVM's 256-bit cap), AVX2 32 x 16. The tiles
# below are sized to them; tests set it to build the other machine's code too.
VECTOR = vector_registers()


def _lanes(dtype: np.dtype) -> int:
    """Elements per vector."""
    return VECTOR[0] // np.dtype(dtype).itemsize


def _tile() -> int:
    """Accumulator vectors per register tile: 24 of AVX-512's 32 registers, 8 of AVX2's
    16; 8 registers are left for x's vectors and the broadcast weight. One thread, AVX2
    (GFLOP/s at tiles of 8 / 12 accumulators, one row a task): 32->64 3x3 at OW = 13
    57-65 / 55, 3->32 3x3 at OW = 30 33-63 / 21 (12 spills in the inner loop)."""
    return max(4, VECTOR[1] - 8)

# Multiply-adds from which a call splits across the pool: these kernels are compute
# bound, and a pool round trip costs ~30-60 us here.
_PARALLEL_MIN = 2_000_000


def supports(*arrays) -> bool:
    """Whether these kernels take the arrays (host float32/float64, all one dtype)."""
    return (all(type(a) is np.ndarray and a.dtype in _FLOAT for a in arrays)
            and len({a.dtype for a in arrays}) == 1)


# ---- IR helpers ----------------------------------------------------------------------

def _c(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


class _Loop:
    """``for i in range(lo, hi)`` around the body built inside the ``with``."""

    def __init__(self, b: ir.IRBuilder, lo, hi) -> None:
        self.b, self.lo, self.hi = b, lo, hi

    def __enter__(self):
        b = self.b
        lo = _c(self.lo) if isinstance(self.lo, int) else self.lo
        hi = _c(self.hi) if isinstance(self.hi, int) else self.hi
        pre = b.block
        self.head, body, self.end = (b.append_basic_block() for _ in range(3))
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = b.phi(_I64)
        self.i.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", self.i, hi), body, self.end)
        b.position_at_end(body)
        return self.i

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            b = self.b
            self.i.add_incoming(b.add(self.i, _c(1)), b.block)
            b.branch(self.head)
            b.position_at_end(self.end)


class _Builder:
    """One kernel ``name(ptrs..., start, end)`` and the vector helpers its body uses."""

    def __init__(self, name: str, dtype: np.dtype, nptrs: int) -> None:
        self.module = _new_module(name)
        self.ft = _FLOAT[dtype]
        self.lanes = _lanes(dtype)
        self.vt = ir.VectorType(self.ft, self.lanes)
        self.size = dtype.itemsize
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(),
                                                      [_PTR] * nptrs + [_I64, _I64]),
                         name=name)
        for a in fn.args[:nptrs]:
            a.add_attribute("noalias")
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.allocas = self.b   # allocas go in the entry block (SROA promotes them)
        vname = f"v{self.lanes}f{self.size * 8}"
        self.fma = ir.Function(self.module, ir.FunctionType(self.vt, [self.vt] * 3),
                               name=f"llvm.fma.{vname}")
        suffix = f"{vname}.p0"
        mask_t = ir.VectorType(_I1, self.lanes)
        self.mstore = ir.Function(self.module, ir.FunctionType(
            ir.VoidType(), [self.vt, _PTR, _I32, mask_t]), name=f"llvm.masked.store.{suffix}")
        self.mload = ir.Function(self.module, ir.FunctionType(
            self.vt, [_PTR, _I32, mask_t, self.vt]), name=f"llvm.masked.load.{suffix}")
        self.zero = ir.Constant(self.vt, [0.0] * self.lanes)

    def at(self, ptr, idx):
        return self.b.gep(ptr, [idx], inbounds=True, source_etype=self.ft)

    def vload(self, ptr, idx):
        return self.b.load(self.at(ptr, idx), typ=self.vt, align=self.size)

    def mask(self, n: int) -> ir.Constant:
        return ir.Constant(ir.VectorType(_I1, self.lanes),
                           [1] * n + [0] * (self.lanes - n))

    def splat(self, v):
        b = self.b
        one = b.insert_element(ir.Constant(self.vt, ir.Undefined), v, ir.Constant(_I32, 0))
        return b.shuffle_vector(one, ir.Constant(self.vt, ir.Undefined),
                                ir.Constant(ir.VectorType(_I32, self.lanes),
                                            [0] * self.lanes))

    def accumulators(self, count: int) -> list:
        """``count`` vector slots set to zero where the builder stands."""
        b = self.b
        with b.goto_entry_block():
            slots = [b.alloca(self.vt) for _ in range(count)]
        for s in slots:
            b.store(self.zero, s)
        return slots

    def source(self) -> str:
        self.b.ret_void()
        return str(self.module)


def _wgrad_block(out_ch: int, kw: int) -> int:
    """Output channels per weight-gradient task: the most whose nob x kw accumulator
    tile, plus the shorter operand list (nob g or kw x vectors) and one streamed vector,
    fits the registers (AVX-512's 32: 8 x 3 + 3 + 1 for 3x3, 5 x 5 + 5 + 1 for 5x5;
    AVX2's 16: 4 x 3 + 3 + 1, 2 x 5 + 2 + 1)."""
    regs = VECTOR[1]
    most = max(nob for nob in range(1, regs + 1) if nob * kw + min(nob, kw) + 1 <= regs
               or nob == 1)
    return _split(out_ch, most)


def _wgrad_groups(channels: int, kh: int, ob: int, kw: int, blocks: int
                  ) -> tuple[int, int]:
    """(input channels per weight-gradient task, groups of them): as many as keep the
    task's partial sums (cg x kh x ob x kw vectors) within 32 KB, so that g[n, block]
    is read from memory once, not once per input channel; at least two tasks where
    there are two channels, for the two threads."""
    most = max(1, 32768 // VECTOR[0] // (kh * ob * kw))
    if blocks == 1 and channels > 1:
        most = min(most, -(-channels // 2))
    cg = _split(channels, most)
    return cg, -(-channels // cg)


def _split(n: int, most: int) -> int:
    """The block size <= ``most`` that splits ``n`` into the fewest, most even blocks."""
    blocks = -(-n // max(1, min(most, n)))
    return -(-n // blocks)


def _blocks(b: ir.IRBuilder, count: int, size: int, emit) -> None:
    """Run ``emit(first_value, size)`` over ``count`` items in blocks of ``size`` (a loop
    over the full blocks, then the remainder's code)."""
    full, rem = divmod(count, size)
    if full == 1:
        emit(_c(0), size)
    elif full:
        with _Loop(b, 0, full) as k:
            emit(b.mul(k, _c(size)), size)
    if rem:
        emit(_c(full * size), rem)


# ---- the padded, phase-split input ----------------------------------------------------

def _layout(shape, kernel, stride, padding, dilation, lanes):
    """(OH, OW, vectors per output row, Hp, Wq): the padded copy is [N, C, Hp, sw, Wq].
    Without padding and with a unit column stride the kernels read x itself (Hp = H,
    Wq = W): the tail vector's loads are masked, so no read leaves its row."""
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    nvec = -(-ow // lanes)
    if _in_place(stride, padding):
        return oh, ow, nvec, h, w
    # Room for the last vector's lanes past OW (read, never stored) at every tap.
    wq = max(nvec * lanes + (kw - 1) * dw // sw, -(-(w + 2 * pw) // sw))
    return oh, ow, nvec, h + 2 * ph, wq


def _in_place(stride, padding) -> bool:
    return padding == (0, 0) and stride[1] == 1


def _flat(geom, kernel, stride, itemsize, channels: int = 1) -> bool:
    """Whether the weight gradient runs its vectors along the flattened output plane
    (``_wgrad_ir``): rows shorter than a vector, unit row stride, and the per-(n, c)
    packed copy of x (kw x Hp x OW) small enough for the stack (<= 64 KB). For longer
    rows packing cost more than the idle lanes it saves (one thread, 5x5 3->6, OW = 28:
    438 -> 486 us; 3x3 3->32, OW = 30: 1247 -> 1165 us, within noise)."""
    oh, ow, nvec, hp, _ = geom
    lanes = VECTOR[0] // itemsize
    return (ow < lanes and stride[0] == 1 and oh * ow <= 32 * lanes
            and channels * kernel[1] * hp * ow * itemsize <= 65536)


def _padded(x: np.ndarray, geom, stride, padding) -> np.ndarray:
    """x zero-padded into [N, C, Hp, sw, Wq]: column q*sw + p of the padded plane at
    [p, q], so that consecutive outputs of a strided convolution read consecutive
    memory."""
    n, c, h, w = x.shape
    if _in_place(stride, padding):
        return np.ascontiguousarray(x).reshape(n, c, h, 1, w)
    (_, sw), (ph, pw) = stride, padding
    _, _, _, hp, wq = geom
    buf = np.zeros((n, c, hp, wq * sw), x.dtype)
    buf[:, :, ph:ph + h, pw:pw + w] = x
    if sw == 1:
        return buf.reshape(n, c, hp, 1, wq)
    return np.ascontiguousarray(buf.reshape(n, c, hp, wq, sw).transpose(0, 1, 2, 4, 3))


# ---- kernels -------------------------------------------------------------------------

def _epilogue(k: _Builder, val, bias, o, relu: bool):
    """A vector of output channel ``o`` as the separate ops would leave it: ``+ bias[o]``
    (one rounding, as the add), then relu as the compiled relu computes it (x < 0 ? 0 :
    x: a NaN stays)."""
    b = k.b
    if bias is not None:
        val = b.fadd(val, k.splat(b.load(k.at(bias, o), typ=k.ft)))
    if relu:
        val = b.select(b.fcmp_ordered("<", val, k.zero), k.zero, val)
    return val


def _store(k: _Builder, out, acc, base, o0, nob: int, v0: int, nv: int, last: int,
           tail: int, bias, relu: bool) -> None:
    """Store a tile's accumulators through the epilogue: channel o0 + o's vectors v0 + v
    at ``base(o)`` + (v0 + v) * lanes; vector ``last`` keeps only ``tail`` lanes."""
    b, lanes = k.b, k.lanes
    for o in range(nob):
        row = base(o)
        for v in range(nv):
            val = _epilogue(k, b.load(acc[o * nv + v], typ=k.vt), bias, b.add(o0, _c(o)),
                            relu)
            ptr = k.at(out, b.add(row, _c((v0 + v) * lanes)))
            if v0 + v == last and tail < lanes:
                b.call(k.mstore, [val, ptr, ir.Constant(_I32, k.size), k.mask(tail)])
            else:
                b.store(val, ptr, align=k.size)


def _taps(k, x, wt, n, oys, o0, nob, v0, nv, shape, kernel, stride, dilation,
          geom) -> list:
    """The accumulators of one tile of ``_conv_ir`` (``_conv_pool_ir``: two output
    rows): per output row oy in ``oys``, ``nob * nv`` vectors holding, for channels
    o0 + o and vectors v0 + v of the row, sum over c, i, j of w[o, c, i, j] times x's
    taps."""
    b, lanes = k.b, k.lanes
    _, c_, _, _ = shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    _, ow, nvec, hp, wq = geom
    kk = kh * kw
    tail = ow - (nvec - 1) * lanes
    accs = [k.accumulators(nob * nv) for _ in oys]
    with _Loop(b, 0, c_) as c:
        plane = b.mul(b.add(b.mul(n, _c(c_)), c), _c(hp))
        wrow = b.mul(c, _c(kk))
        for i in range(kh):
            rows = [b.add(plane, b.add(b.mul(oy, _c(sh)), _c(i * dh))) for oy in oys]
            for j in range(kw):
                p, q = divmod(j * dw, sw)[::-1]
                taps = []
                for row in rows:
                    base = b.add(b.mul(b.add(b.mul(row, _c(sw)), _c(p)), _c(wq)),
                                 _c(q + v0 * lanes))
                    # The tail vector's lanes past OW are never stored: a masked load
                    # keeps them inside an unpadded x's row.
                    taps.append([b.call(k.mload, [k.at(x, b.add(base, _c(v * lanes))),
                                                  ir.Constant(_I32, k.size), k.mask(tail),
                                                  k.zero])
                                 if v0 + v == nvec - 1 and tail < lanes
                                 else k.vload(x, b.add(base, _c(v * lanes)))
                                 for v in range(nv)])
                for o in range(nob):
                    widx = b.add(b.add(b.mul(b.add(o0, _c(o)), _c(c_ * kk)), wrow),
                                 _c(i * kw + j))
                    wv = k.splat(b.load(k.at(wt, widx), typ=k.ft))
                    for acc, xs in zip(accs, taps):
                        for v in range(nv):
                            s = acc[o * nv + v]
                            b.store(b.call(k.fma, [wv, xs[v], b.load(s, typ=k.vt)]), s)
    return accs


def _conv_ir(name, dtype, shape, out_ch, kernel, stride, dilation, geom,
             epilogue=(False, False)) -> str:
    """out[n, o, oy, :] for the rows of the tasks t in [start, end); ``epilogue`` (bias,
    relu): + bias[o] (a fourth pointer), then relu, in registers before the store.

    A task is R neighbouring output rows (``_rows_per_task``): t = n*ceil(OH/R) + q
    computes rows qR .. qR+R-1 (the last task fewer when R does not divide OH), so each
    weight broadcast feeds R rows' multiply-adds, as in the pooled kernel's two rows."""
    oh, ow, nvec, _, _ = geom
    k = _Builder(name, dtype, 4 if epilogue[0] else 3)
    b, lanes = k.b, k.lanes
    x, wt, out = k.fn.args[:3]
    bias = k.fn.args[3] if epilogue[0] else None
    start, end = k.fn.args[-2:]
    per = _rows_per_task(geom)
    xb = min(nvec, 4)
    tail = ow - (nvec - 1) * lanes

    def rows(n, oys):
        ob = _split(out_ch, max(1, _tile() // (xb * len(oys))))

        def tile(o0, nob, v0, nv):
            accs = _taps(k, x, wt, n, oys, o0, nob, v0, nv, shape, kernel, stride,
                         dilation, geom)
            for oy, acc in zip(oys, accs):
                _store(k, out, acc, lambda o: b.mul(b.add(b.mul(b.add(
                    b.mul(n, _c(out_ch)), b.add(o0, _c(o))), _c(oh)), oy), _c(ow)),
                    o0, nob, v0, nv, nvec - 1, tail, bias, epilogue[1])

        def channels(o0, nob):
            for v0 in range(0, nvec, xb):   # unrolled: OW is a constant, and small
                tile(o0, nob, v0, min(xb, nvec - v0))

        _blocks(b, out_ch, ob, channels)

    with _Loop(b, start, end) as t:
        qb = -(-oh // per)
        n, q = b.sdiv(t, _c(qb)), b.srem(t, _c(qb))
        top = b.mul(q, _c(per))
        if oh % per == 0:
            rows(n, tuple(b.add(top, _c(r)) for r in range(per)))
        else:
            with b.if_else(b.icmp_signed("<", q, _c(qb - 1))) as (full, last):
                with full:
                    rows(n, tuple(b.add(top, _c(r)) for r in range(per)))
                with last:
                    rows(n, tuple(b.add(top, _c(r)) for r in range(oh % per)))
    return k.source()


def _rows_per_task(geom) -> int:
    """Output rows per task of ``_conv_ir``: 3 for rows of one vector, 2 for rows of two,
    else 1 (AVX-512; one with AVX2's smaller tiles). One thread, float32, AVX-512 (ms;
    1 / 2 / 3 / 4 rows): 32->64 3x3 at OW = 13 (CIFAR's conv2) 3.52 / 3.03 / 2.74 /
    3.11, its input gradient (64->32 at OW = 15) 4.99 / 4.21 / 3.95 / 4.11; at two
    vectors (OW = 30, 3x3 16->32) 4.34 / 4.19 / 4.43."""
    oh, _, nvec, _, _ = geom
    if VECTOR[1] < 32:   # AVX2 (8-vector tiles): 1 / 2 rows, 32->64: 57-65 / 51-61 GFLOP/s
        return 1
    return max(1, min(oh, 3 if nvec == 1 else 2 if nvec == 2 else 1))


def _vmax(b: ir.IRBuilder, a, c):
    """max(a, c) per lane as max pooling's value: a NaN on either side wins."""
    return b.select(b.or_(b.fcmp_unordered("uno", a, a), b.fcmp_ordered(">", a, c)), a, c)


def _conv_pool_ir(name, dtype, shape, out_ch, kernel, stride, dilation, geom,
                  epilogue) -> str:
    """``_conv_ir`` with 2x2/2 max pooling (floor mode) after its epilogue: the task
    t = n*PH + q computes output rows 2q and 2q+1 of a channel tile in registers, takes
    their maximum, then each pair of neighbouring columns' (even and odd lanes of two
    vectors), and stores only the pooled row out[n, o, q, :]. The convolution's output
    is never written (forward only: nothing else may read it)."""
    oh, ow, nvec, _, _ = geom
    ph_, pw_ = oh // 2, ow // 2
    k = _Builder(name, dtype, 4 if epilogue[0] else 3)
    b, lanes = k.b, k.lanes
    x, wt, out = k.fn.args[:3]
    bias = k.fn.args[3] if epilogue[0] else None
    start, end = k.fn.args[-2:]
    xb = min(nvec, 2)   # even: a vector pair makes one pooled vector
    ob = _split(out_ch, max(1, _tile() // (2 * xb)))
    i32 = ir.VectorType(_I32, lanes)
    evens = ir.Constant(i32, [2 * i for i in range(lanes)])
    odds = ir.Constant(i32, [2 * i + 1 for i in range(lanes)])

    with _Loop(b, start, end) as t:
        n, q = b.sdiv(t, _c(ph_)), b.srem(t, _c(ph_))
        oys = (b.mul(q, _c(2)), b.add(b.mul(q, _c(2)), _c(1)))

        def tile(o0, nob, v0, nv):
            accs = _taps(k, x, wt, n, oys, o0, nob, v0, nv, shape, kernel, stride,
                         dilation, geom)
            for o in range(nob):
                oc = b.add(o0, _c(o))
                prow = b.mul(b.add(b.mul(b.add(b.mul(n, _c(out_ch)), oc), _c(ph_)), q),
                             _c(pw_))
                m = [_vmax(b, *(_epilogue(k, b.load(acc[o * nv + v], typ=k.vt), bias, oc,
                                          epilogue[1]) for acc in accs))
                     for v in range(nv)]
                for v in range(0, nv, 2):   # lanes past OW pool into columns past PW
                    hi = m[v + 1] if v + 1 < nv else m[v]
                    pooled = _vmax(b, b.shuffle_vector(m[v], hi, evens),
                                   b.shuffle_vector(m[v], hi, odds))
                    col = (v0 + v) * lanes // 2
                    valid = min(lanes, pw_ - col)
                    if valid <= 0:
                        continue
                    ptr = k.at(out, b.add(prow, _c(col)))
                    b.call(k.mstore, [pooled, ptr, ir.Constant(_I32, k.size),
                                      k.mask(valid)])

        def channels(o0, nob):
            for v0 in range(0, nvec, xb):   # unrolled: OW is a constant, and small
                tile(o0, nob, v0, min(xb, nvec - v0))

        _blocks(b, out_ch, ob, channels)
    return k.source()


def _conv_flat_ir(name, dtype, shape, out_ch, kernel, stride, dilation, geom,
                  epilogue=(False, False)) -> str:
    """out[n] for the images n in [start, end), vectors along the flattened (oy, ox)
    plane (``_flat``): x[n] is packed at row pitch OW, one copy per (c, tap column j),
    so that out[n, o, p] = sum_{c,i,j} w[o, c, i, j] * xj[n, c][p + i*dh*OW]; the
    epilogue as ``_conv_ir``'s."""
    _, c_, _, _ = shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow, nvec, hp, wq = geom
    k = _Builder(name, dtype, 4 if epilogue[0] else 3)
    b, lanes = k.b, k.lanes
    x, wt, out = k.fn.args[:3]
    bias = k.fn.args[3] if epilogue[0] else None
    start, end = k.fn.args[-2:]
    kk, region, plane_len = kh * kw, hp * ow, oh * ow
    nflat = -(-plane_len // lanes)
    ftail = plane_len - (nflat - 1) * lanes
    xb = _split(nflat, 4)
    ob = _split(out_ch, max(1, _tile() // xb))
    with b.goto_entry_block():
        packed = b.alloca(k.ft, size=_c(c_ * kw * region))
    rmask = k.mask(ow)

    def masked_load(ptr, idx, mask):
        return b.call(k.mload, [k.at(ptr, idx), ir.Constant(_I32, k.size), mask, k.zero])

    with _Loop(b, start, end) as n:
        with _Loop(b, 0, c_) as c:
            plane = b.mul(b.add(b.mul(n, _c(c_)), c), _c(hp))
            with _Loop(b, 0, hp) as y:
                for j in range(kw):
                    p, q = divmod(j * dw, sw)[::-1]
                    src = b.add(b.mul(b.add(b.mul(b.add(plane, y), _c(sw)), _c(p)), _c(wq)),
                                _c(q))
                    dst = b.add(b.mul(b.add(b.mul(c, _c(kw)), _c(j)), _c(region)),
                                b.mul(y, _c(ow)))
                    b.call(k.mstore, [masked_load(x, src, rmask), k.at(packed, dst),
                                      ir.Constant(_I32, k.size), rmask])

        def tile(o0, nob, v0, nv):
            acc = k.accumulators(nob * nv)
            with _Loop(b, 0, c_) as c:
                for i in range(kh):
                    for j in range(kw):
                        base = b.add(b.mul(b.add(b.mul(c, _c(kw)), _c(j)), _c(region)),
                                     _c(i * dh * ow + v0 * lanes))
                        xs = [masked_load(packed, b.add(base, _c(v * lanes)), k.mask(ftail))
                              if v0 + v == nflat - 1 and ftail < lanes
                              else k.vload(packed, b.add(base, _c(v * lanes)))
                              for v in range(nv)]
                        for o in range(nob):
                            widx = b.add(b.mul(b.add(b.mul(b.add(o0, _c(o)), _c(c_)), c),
                                               _c(kk)), _c(i * kw + j))
                            wv = k.splat(b.load(k.at(wt, widx), typ=k.ft))
                            for v in range(nv):
                                s = acc[o * nv + v]
                                b.store(b.call(k.fma, [wv, xs[v], b.load(s, typ=k.vt)]), s)
            _store(k, out, acc, lambda o: b.mul(b.add(b.mul(n, _c(out_ch)), b.add(o0, _c(o))),
                                                _c(plane_len)),
                   o0, nob, v0, nv, nflat - 1, ftail, bias, epilogue[1])

        def channels(o0, nob):
            for v0 in range(0, nflat, xb):   # unrolled: the plane is small (_flat)
                tile(o0, nob, v0, min(xb, nflat - v0))

        _blocks(b, out_ch, ob, channels)
    return k.source()


def _wgrad_ir(name, dtype, shape, out_ch, kernel, stride, dilation, geom) -> str:
    """dw[o, c] for the tasks t = block*groups + group in [start, end): block = a run of
    OB output channels, group = a run of input channels (``_wgrad_groups``)."""
    n_, c_, _, _ = shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow, nvec, hp, wq = geom
    k = _Builder(name, dtype, 3)
    b, lanes = k.b, k.lanes
    x, g, dwt, start, end = k.fn.args
    ob = _wgrad_block(out_ch, kw)
    full, rem = divmod(out_ch, ob)
    tail = ow - (nvec - 1) * lanes
    ones = k.mask(tail)

    def rows(n, c, o0, nob, i, acc):
        """acc[o*kw + j] += g[n, o0+o, oy, :] * x[n, c, oy*sh + i*dh, j*dw + :], all oy."""
        plane = b.mul(b.add(b.mul(n, _c(c_)), c), _c(hp))
        with _Loop(b, 0, oh) as oy:
            row = b.add(plane, b.add(b.mul(oy, _c(sh)), b.mul(i, _c(dh))))
            grow = [b.mul(b.add(b.mul(b.add(b.mul(n, _c(out_ch)), b.add(o0, _c(o))),
                                      _c(oh)), oy), _c(ow)) for o in range(nob)]
            for v in range(nvec):   # unrolled: OW is a constant, and small
                # The last vector's lanes past OW load as zeros, in g and in x (masked
                # loads: 0 * inf would be NaN, and the unpadded x ends at its row).
                part = v == nvec - 1 and tail < lanes

                def load(ptr, idx):
                    if part:
                        return b.call(k.mload, [k.at(ptr, idx), ir.Constant(_I32, k.size),
                                                ones, k.zero])
                    return k.vload(ptr, idx)

                def xload(j):
                    p, q = divmod(j * dw, sw)[::-1]
                    return load(x, b.add(b.mul(b.add(b.mul(row, _c(sw)), _c(p)), _c(wq)),
                                         _c(q + v * lanes)))

                def fma(o, j, gv, xv):
                    s = acc[o * kw + j]
                    b.store(b.call(k.fma, [gv, xv, b.load(s, typ=k.vt)]), s)

                # Hold the shorter of the two operand lists in registers and stream the
                # other: the tile plus both lists would not fit the 32 registers.
                if kw <= nob:
                    xs = [xload(j) for j in range(kw)]
                    for o in range(nob):
                        gv = load(g, b.add(grow[o], _c(v * lanes)))
                        for j in range(kw):
                            fma(o, j, gv, xs[j])
                else:
                    gs = [load(g, b.add(grow[o], _c(v * lanes))) for o in range(nob)]
                    for j in range(kw):
                        xv = xload(j)
                        for o in range(nob):
                            fma(o, j, gs[o], xv)

    def reduce(c, o0, nob, i, acc):
        for o in range(nob):
            for j in range(kw):
                vec = b.load(acc[o * kw + j], typ=k.vt)
                total = b.extract_element(vec, ir.Constant(_I32, 0))
                for lane in range(1, lanes):
                    total = b.fadd(total, b.extract_element(vec, ir.Constant(_I32, lane)))
                idx = b.add(b.mul(b.add(b.mul(b.add(o0, _c(o)), _c(c_)), c), _c(kh * kw)),
                            b.add(b.mul(i, _c(kw)), _c(j)))
                b.store(total, k.at(dwt, idx))

    # n outside the kernel rows i: g[n, block] (a few KB) is then read kh times from L1,
    # not kh times from memory. The kh tiles of partial sums wait in a stack array
    # indexed by a run-time i (loaded before and stored after each (n, i) pass over
    # OH rows): kept as values, kh tiles did not fit the registers and LLVM spilled
    # inside the innermost loop (CIFAR 3->32 3x3, one thread: 1.73 -> 1.25 ms).
    cg, ngrp = _wgrad_groups(c_, kh, ob, kw, -(-out_ch // ob))
    with b.goto_entry_block():
        saved = b.alloca(k.vt, size=_c(cg * kh * ob * kw))

    def slot(i, idx):
        return b.gep(saved, [b.add(b.mul(i, _c(ob * kw)), _c(idx))], inbounds=True,
                     source_etype=k.vt)

    plane_len = oh * ow
    nflat, ftail = divmod(plane_len, lanes)
    if _flat(geom, kernel, stride, k.size):
        # OW < lanes: vectors run along the whole (oy, ox) plane, g's as it is and x's
        # packed per (n, c) at row pitch OW, one copy per tap column j (xj[y, ox] =
        # x[y, ox*sw + j*dw]): then xj[p + i*dh*OW] pairs with g[p], and no lane idles
        # but the plane's last vector's (OW = 10: 100 / 112 lanes used, not 10 / 16).
        with b.goto_entry_block():
            packed = b.alloca(k.ft, size=_c(kw * hp * ow))
        fmask = k.mask(ftail) if ftail else None

        def pack(n, c):
            plane = b.mul(b.add(b.mul(n, _c(c_)), c), _c(hp))
            with _Loop(b, 0, hp) as y:
                for j in range(kw):
                    p, q = divmod(j * dw, sw)[::-1]
                    src = b.add(b.mul(b.add(b.mul(b.add(plane, y), _c(sw)), _c(p)), _c(wq)),
                                _c(q))
                    dst = b.add(b.mul(y, _c(ow)), _c(j * hp * ow))
                    for v in range(nvec):
                        at_x = k.at(x, b.add(src, _c(v * lanes)))
                        at_p = k.at(packed, b.add(dst, _c(v * lanes)))
                        mask = ones if v == nvec - 1 else k.mask(lanes)
                        val = b.call(k.mload, [at_x, ir.Constant(_I32, k.size), mask,
                                               k.zero])
                        b.call(k.mstore, [val, at_p, ir.Constant(_I32, k.size), mask])

        def flat(n, o0, nob, i, acc):
            gbase = [b.mul(b.add(b.mul(n, _c(out_ch)), b.add(o0, _c(o))), _c(plane_len))
                     for o in range(nob)]
            xbase = b.mul(i, _c(dh * ow))

            def step(off, mask):
                def load(ptr, idx):
                    if mask is None:
                        return k.vload(ptr, idx)
                    return b.call(k.mload, [k.at(ptr, idx), ir.Constant(_I32, k.size),
                                            mask, k.zero])
                xs = [load(packed, b.add(xbase, b.add(off, _c(j * hp * ow))))
                      for j in range(kw)]
                for o in range(nob):
                    gv = load(g, b.add(gbase[o], off))
                    for j in range(kw):
                        s = acc[o * kw + j]
                        b.store(b.call(k.fma, [gv, xs[j], b.load(s, typ=k.vt)]), s)

            if nflat:
                with _Loop(b, 0, nflat) as v:
                    step(b.mul(v, _c(lanes)), None)
            if ftail:
                step(_c(nflat * lanes), fmask)

    else:
        pack = None

        def flat(n, o0, nob, i, acc):
            rows(n, c_now[0], o0, nob, i, acc)

    c_now = [None]

    def body(blk, grp, nob):
        o0 = b.mul(blk, _c(ob))
        c0 = b.mul(grp, _c(cg))
        c1 = b.add(c0, _c(cg))
        c1 = b.select(b.icmp_signed("<", c1, _c(c_)), c1, _c(c_))
        with _Loop(b, 0, cg * kh * ob * kw) as z:
            b.store(k.zero, b.gep(saved, [z], inbounds=True, source_etype=k.vt))
        acc = k.accumulators(nob * kw)
        with _Loop(b, 0, n_) as n:
            with _Loop(b, c0, c1) as c:
                c_now[0] = c
                if pack is not None:
                    pack(n, c)
                with _Loop(b, 0, kh) as i:
                    ci = b.add(b.mul(b.sub(c, c0), _c(kh)), i)
                    for idx, s in enumerate(acc):
                        b.store(b.load(slot(ci, idx), typ=k.vt), s)
                    flat(n, o0, nob, i, acc)
                    for idx, s in enumerate(acc):
                        b.store(b.load(s, typ=k.vt), slot(ci, idx))
        with _Loop(b, c0, c1) as c:
            with _Loop(b, 0, kh) as i:
                ci = b.add(b.mul(b.sub(c, c0), _c(kh)), i)
                for idx, s in enumerate(acc):
                    b.store(b.load(slot(ci, idx), typ=k.vt), s)
                reduce(c, o0, nob, i, acc)

    with _Loop(b, start, end) as t:
        blk, grp = b.sdiv(t, _c(ngrp)), b.srem(t, _c(ngrp))
        if not rem:
            body(blk, grp, ob)
        elif not full:
            body(blk, grp, rem)
        else:
            with b.if_else(b.icmp_signed("<", blk, _c(full))) as (then, other):
                with then:
                    body(blk, grp, ob)
                with other:
                    body(blk, grp, rem)
    return k.source()


# ---- compiled kernels and their calls ------------------------------------------------

def _kernel(kind: str, dtype: np.dtype, *key, epilogue=(False, False)):
    make = {"dconv": _conv_ir, "dconv_flat": _conv_flat_ir, "dwgrad": _wgrad_ir,
            "dconv_pool": _conv_pool_ir}[kind]
    if epilogue == (False, False) and kind != "dconv_pool":   # the key of before
        return compiled((kind, dtype.str, VECTOR, *key),
                        lambda name: (make(name, dtype, *key), 3), _PARALLEL_MIN)
    return compiled((kind, dtype.str, VECTOR, *key, epilogue),
                    lambda name: (make(name, dtype, *key, epilogue=epilogue),
                                  4 if epilogue[0] else 3), _PARALLEL_MIN)


def _norm(kernel, stride, padding, dilation):
    return tuple(map(lambda t: tuple(int(v) for v in t), (kernel, stride, padding, dilation)))


def conv2d(x: np.ndarray, w: np.ndarray, stride, padding, dilation,
           bias: np.ndarray | None = None, relu: bool = False,
           pool: bool = False) -> np.ndarray:
    """Cross-correlation of x [N, C, H, W] (any strides) with w [O, C, kh, kw] (groups
    1), zero padding -> C-contiguous [N, O, OH, OW] in x's dtype; then ``+ bias`` (O
    values, per output channel) and ``relu`` (``max(v, 0)``), in registers; ``pool``:
    then 2x2/2 max pooling (floor mode) -> [N, O, OH // 2, OW // 2]."""
    o, c, kh, kw = w.shape
    kernel, stride, padding, dilation = _norm((kh, kw), stride, padding, dilation)
    geom = _layout(x.shape, kernel, stride, padding, dilation, _lanes(x.dtype))
    oh, ow = geom[:2]
    n = x.shape[0]
    if pool:
        flat = _flat(geom, kernel, stride, x.dtype.itemsize, c)
        if flat or c == 0 or kh * kw == 0 or oh < 2 or ow < 2:
            # (the flattened-plane kernel has no pooled store: pool the stored output)
            from ember.codegen.llvm.native import max_pool2d
            y = conv2d(x, w, stride, padding, dilation, bias, relu)
            return max_pool2d(y, (2, 2), (2, 2), (0, 0), (1, 1))
        out = np.empty((n, o, oh // 2, ow // 2), x.dtype)
        arrays = [_padded(x, geom, stride, padding), np.ascontiguousarray(w, dtype=x.dtype),
                  out]
        if bias is not None:
            arrays.append(np.ascontiguousarray(bias, dtype=x.dtype).reshape(o))
        _kernel("dconv_pool", x.dtype, tuple(x.shape), o, kernel, stride, dilation, geom,
                epilogue=(bias is not None, bool(relu)))(
            arrays, n * (oh // 2), n * o * (oh // 2) * 2 * ow * c * kh * kw)
        return out
    out = np.empty((n, o, oh, ow), x.dtype)
    if out.size == 0:
        return out
    if c == 0 or kh * kw == 0:
        out.fill(0)
        if bias is not None:
            out += np.asarray(bias, x.dtype).reshape(1, o, 1, 1)
        return np.maximum(out.dtype.type(0), out) if relu else out   # x < 0 ? 0 : x
    xq = _padded(x, geom, stride, padding)
    wc = np.ascontiguousarray(w, dtype=x.dtype)
    arrays = [xq, wc, out]
    if bias is not None:
        arrays.append(np.ascontiguousarray(bias, dtype=x.dtype).reshape(o))
    flat = _flat(geom, kernel, stride, x.dtype.itemsize, c)
    tasks = n if flat else n * -(-oh // _rows_per_task(geom))
    _kernel("dconv_flat" if flat else "dconv", x.dtype, tuple(x.shape), o, kernel, stride,
            dilation, geom, epilogue=(bias is not None, bool(relu)))(
        arrays, tasks, out.size * c * kh * kw)
    return out


def conv2d_weight(g: np.ndarray, x: np.ndarray, kernel, stride, padding,
                  dilation) -> np.ndarray:
    """The weight gradient of ``conv2d``: g [N, O, OH, OW] (the output's gradient) and
    x [N, C, H, W] -> dw [O, C, kh, kw], summed over the batch and output pixels."""
    kernel, stride, padding, dilation = _norm(kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    o = g.shape[1]
    geom = _layout(x.shape, kernel, stride, padding, dilation, _lanes(x.dtype))
    dw = np.empty((o, c, *kernel), x.dtype)
    if dw.size == 0:
        return dw
    if g.size == 0:
        dw.fill(0)
        return dw
    xq = _padded(x, geom, stride, padding)
    gc = np.ascontiguousarray(g, dtype=x.dtype)
    ob = _wgrad_block(o, kernel[1])
    blocks = -(-o // ob)
    _kernel("dwgrad", x.dtype, tuple(x.shape), o, kernel, stride, dilation, geom)(
        [xq, gc, dw], blocks * _wgrad_groups(c, kernel[0], ob, kernel[1], blocks)[1],
        g.size * dw.size // o)
    return dw
