"""Convolution and pooling primitives: im2col/col2im in the GEMM-friendly layout, the
direct convolution for few channels (``conv2d_direct``, ``conv2d_weight_direct``, and
the measured rule that picks it), and max pooling with its own gradient.

``im2col`` lays the windows of an [N, C, H, W] input out as [N*OH*OW, C*kh*kw] (one row
per output pixel), so a convolution is one large GEMM ``cols @ W^T`` and both its
gradients are one GEMM each (``g @ W`` then ``col2im``; ``g^T @ cols``), instead of N
small GEMMs. ``max_pool2d`` keeps no unfolded copy: its gradient finds each window's
maximum again in the input (PyTorch's rule: the first maximum, or a NaN) and sends the
output gradient there. On the CPU, float32/float64 run native kernels
(``ember.codegen.llvm.native``); other dtypes and devices (CuPy) run the NumPy-style code
below.
"""
from __future__ import annotations

import numpy as np

from ember.amp.state import state as _amp
from ember.dispatch import dispatch
from ember.ops.elementwise import relu_array, relu_grad
from ember.ops.movement import _fold2d, _out_size
from ember.ops.registry import EXTERN, MOVEMENT, defop


def _native():
    try:
        from ember.codegen.llvm import native
    except ImportError:   # pragma: no cover - llvmlite missing: the array code runs
        return None
    return native


def _windows(xp, a, kernel, stride, padding, dilation, pad_value):
    """The [N, C, OH, OW, kh, kw] windows of ``a`` as a strided view of a padded copy."""
    n, c, h, w = a.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if ph or pw:
        a = xp.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    s = a.strides
    return xp.lib.stride_tricks.as_strided(
        a, shape=(n, c, oh, ow, kh, kw),
        strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw))


# ---- im2col / col2im ----------------------------------------------------------------

def _im2col(xp, a, kernel, stride, padding, dilation):
    native = _native() if xp is np else None
    if native is not None and native.supports(a):
        return native.im2col(a, kernel, stride, padding, dilation)
    win = _windows(xp, a, kernel, stride, padding, dilation, 0)
    n, c, oh, ow, kh, kw = win.shape
    return xp.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow,
                                                                          c * kh * kw)


def _col2im(xp, cols, shape, kernel, stride, padding, dilation):
    native = _native() if xp is np else None
    if native is not None and native.supports(cols):
        return native.col2im(cols, shape, kernel, stride, padding, dilation)
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    # fold2d's [N, C*kh*kw, OH*OW] layout, as a view of this one's [N*OH*OW, C*kh*kw]
    cols = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    return _fold2d(xp, cols, shape, kernel, stride, padding, dilation)


def _im2col_vjp(g, out, a, kernel, stride, padding, dilation):
    return (dispatch("col2im", g, shape=tuple(a.shape), kernel=kernel, stride=stride,
                     padding=padding, dilation=dilation),)


def _col2im_vjp(g, out, cols, shape, kernel, stride, padding, dilation):
    return (dispatch("im2col", g, kernel=kernel, stride=stride, padding=padding,
                     dilation=dilation),)


defop("im2col", MOVEMENT, _im2col, _im2col_vjp)
defop("col2im", MOVEMENT, _col2im, _col2im_vjp)


# ---- direct convolution ---------------------------------------------------------------
# For few output channels on the CPU (see F.conv2d's rule): generated kernels read the
# input in place (``ember.codegen.llvm.directconv``) instead of im2col + a skinny GEMM.
# Other devices and dtypes compute the same sums over a strided view of the windows.

def _direct():
    try:
        from ember.codegen.llvm import directconv
    except ImportError:   # pragma: no cover - llvmlite missing: the array code runs
        return None
    return directconv


# When F.conv2d runs the generated direct convolution (``conv2d_direct``, its weight
# gradient ``conv2d_weight_direct``) instead of im2col + GEMM: float32/float64 on the
# CPU, groups 1, no autocast, and few output channels or a short reduction, where
# BLAS's skinny GEMMs are slow and the im2col copy dominates. Measured on this 2-core
# AVX-512 VM (float32, 3x3 padding 1 (HxW 16, 32) or none (15), 5x5 none; ms, median of
# 15; quiet machine) after the kernels' second round (register-fitting weight-gradient
# tiles, flattened-plane vectors for OW < 16, x read in place): fwd = im2col + GEMM +
# NHWC->NCHW copy vs conv2d_direct; dW = GEMM g_rows^T @ cols vs conv2d_weight_direct;
# "all" = (im2col + both GEMMs + copy) / (both direct kernels), > 1: direct is faster.
# One thread each (BLAS and the kernels), then "all" with two threads each:
#   N    C->O   k  HxW   K=C*k*k   fwd i2c / direct   dW GEMM / direct   all   all 2T
#   64   3->6   5  32    75        2.70 / 0.40        1.69 / 0.56        4.56  5.50
#   64   6->16  5  14    150       0.72 / 0.24        0.46 / 0.38        1.90  2.24
#   64   3->32  3  32    27        3.33 / 0.79        2.17 / 1.13        2.86  2.28
#   64   32->64 3  16    288       11.86 / 4.51       5.15 / 5.60        1.68  1.13
#   64   32->64 3  15    288       6.61 / 3.15        3.20 / 3.99        1.37  1.04
#   64   64->64 3  16    576       21.72 / 8.65       11.84 / 11.01      1.71  1.49
#   1    3->6   5  32    75        0.05 / 0.02        0.01 / 0.03        1.14  1.11
#   256  3->6   5  32    75        22.10 / 1.39       9.27 / 1.91        9.52  7.42
#   64   3->4   3  32    27        1.25 / 0.20        0.72 / 0.26        4.28  2.98
#   64   3->64  3  32    27        9.09 / 1.92        3.81 / 2.28        3.08  2.97
#   64   16->16 3  16    144       1.94 / 0.66        0.96 / 0.80        1.99  1.67
#   64   32->32 3  16    288       7.59 / 2.37        3.19 / 2.97        2.02  1.43
#   64   16->64 3  16    144       4.66 / 1.96        2.40 / 2.58        1.55  1.09
#   64   6->32  5  14    150       0.88 / 0.41        0.73 / 0.73        1.41  1.12
#   64   12->16 5  14    300       1.30 / 0.45        0.84 / 0.74        1.79  1.46
#   64   16->32 5  14    400       2.32 / 1.13        1.70 / 1.90        1.33  0.92
# The forward wins everywhere; the weight gradient (now 90-110 GFLOP/s on one thread)
# still loses to threaded BLAS for 5x5 with K = 400 and draws with it for O*K of
# 18,432 at 3x3 (CIFAR's 32->64: 1.04). Those two-thread columns were measured while
# OpenBLAS's worker spun for ~0.1 s after each GEMM on the core a kernel's second share
# ran on (``ember/blas_spin.py`` shortened it): CIFAR's compiled training step with its
# 32->64 conv direct then took 20.0-20.7 ms against 19.9-20.8 with im2col; with the
# spin shortened, 16.2-16.6 against 18.9-19.0 ms (alternating processes). So in
# training the bound is O*K <= 36,864 (a 64->64 3x3, whose weight gradient also drew on
# one thread); without gradients only the forward counts, measured the same way (no_grad,
# F.conv2d, ms, im2col + GEMM / direct):
#   N   C->O     k  s  HxW  O*K      ratio      N   C->O     k  s  HxW  O*K      ratio
#   64  64->64   3  1  32   36,864   3.66       32  128->128 3  1  16   147,456  2.64
#   64  64->128  3  1  16   73,728   2.28       32  128->128 3  1  8    147,456  0.84
#   16  64->64   3  1  56   36,864   2.96       16  256->256 3  1  7    589,824  0.63
#   64  64->64   3  1  8    36,864   1.65       16  256->256 3  1  14   589,824  1.19
#   64  256->64  1  1  14   16,384   1.79       32  64->64   3  2  16   36,864   0.72
#   8   3->64    7  2  224  9,408    8.41       64  128->128 3  1  4    147,456  1.25
# so stride 1 with O*K <= 73,728, or any stride with C*kh*kw <= 300.


def direct_conv_rule(x, weight, groups: int, stride=(1, 1), grad: bool = True) -> bool:
    """Whether F.conv2d takes the direct path for these tensors (the rule above):
    ``grad``: whether the convolution's gradients will be taken.

    >>> direct_conv_rule(ember.randn(8, 3, 32, 32), ember.randn(6, 3, 5, 5), 1)
    True
    """
    out_ch, c, kh, kw = weight.shape
    if not (groups == 1 and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype is weight.dtype and x.dtype.name in ("float32", "float64")
            and "cpu" not in _amp.modes):
        return False
    size = out_ch * c * kh * kw
    if not grad:
        return (tuple(stride) == (1, 1) and size <= 73_728) or c * kh * kw <= 300
    return (out_ch <= 64 and size <= 36_864
            and (kh * kw <= 9 or out_ch <= 32 and c * kh * kw <= 300))


def _conv2d_direct(xp, x, w, bias=None, *, stride, padding, dilation, relu=False,
                   pool=False):
    """The convolution, then (the epilogue ``fuse_conv_epilogue`` moves into it) ``+
    bias`` (O values, as ``bias.reshape(1, O, 1, 1)``), ``relu`` and ``pool`` (2x2
    max pooling, stride 2, floor mode), in that order."""
    direct = _direct() if xp is np else None
    args = (x, w) if bias is None else (x, w, bias)
    if direct is not None and direct.supports(*args):
        return direct.conv2d(x, w, stride, padding, dilation, bias=bias, relu=relu,
                             pool=pool)
    if pool:
        y = _conv2d_direct(xp, x, w, bias, stride=stride, padding=padding,
                           dilation=dilation, relu=relu)
        return _max_pool2d(xp, y, (2, 2), (2, 2), (0, 0), (1, 1))
    win = _windows(xp, x, w.shape[2:], stride, padding, dilation, 0)
    out = xp.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))           # [N, OH, OW, O]
    out = xp.ascontiguousarray(out.transpose(0, 3, 1, 2)).astype(x.dtype, copy=False)
    if bias is not None:   # the separate add's rounding: (sum) + b, in x's dtype
        out = out + bias.reshape(1, -1, 1, 1).astype(x.dtype, copy=False)
    if relu:   # the relu op's own rule (elementwise.py)
        out = relu_array(xp, out)
    return out


def _conv2d_weight_direct(xp, g, x, kernel, stride, padding, dilation):
    direct = _direct() if xp is np else None
    if direct is not None and direct.supports(g, x):
        return direct.conv2d_weight(g, x, kernel, stride, padding, dilation)
    win = _windows(xp, x, kernel, stride, padding, dilation, 0)
    return xp.tensordot(g, win, axes=([0, 2, 3], [0, 2, 3])).astype(x.dtype, copy=False)


def _conv_input_grad(g, w, shape, stride, padding, dilation):
    """dx of a convolution. With stride 1 it is itself a convolution, of g (padded by
    d*(k-1) - p) with the weight flipped in both taps and with its in/out channels
    swapped, which the direct path computes without col2im when its rule takes that
    convolution; else g as rows [N*OH*OW, O] @ W [O, C*kh*kw], then col2im."""
    n, o, oh, ow = g.shape
    kernel = tuple(w.shape[2:])
    full = tuple(d * (k - 1) - p for k, p, d in zip(kernel, padding, dilation))
    if tuple(stride) == (1, 1) and min(full) >= 0:
        wt = w.transpose(0, 1)                                     # [C, O, kh, kw]
        if direct_conv_rule(g, wt, 1):
            return dispatch("conv2d_direct", g, wt.flip((2, 3)), stride=(1, 1),
                            padding=full, dilation=dilation)
    rows = g.permute(0, 2, 3, 1).reshape(n * oh * ow, o).matmul(w.reshape(o, -1))
    return dispatch("col2im", rows, shape=tuple(shape), kernel=kernel,
                    stride=stride, padding=padding, dilation=dilation)


def _conv2d_direct_vjp(g, out, x, w, bias=None, *, stride, padding, dilation,
                       relu=False, pool=False):
    # The fused op (``fuse_conv_epilogue``) is made after autograd's graph exists, but
    # an eager call of it differentiates too. It computes the unpooled activation again
    # instead of reading ``out``: a vjp that reads its output makes autograd keep every
    # convolution's output (and forbid writing it in place), fused or not.
    if relu or pool:
        args = (x, w) if bias is None else (x, w, bias)
        y = dispatch("conv2d_direct", *args, stride=stride, padding=padding,
                     dilation=dilation, relu=relu)
        if pool:   # (with relu's mask, as fuse_pool_relu makes it)
            g = dispatch("max_pool2d_backward", g, y, kernel=(2, 2), stride=(2, 2),
                         padding=(0, 0), dilation=(1, 1), relu=relu)
        else:
            g = relu_grad(g, y)
    grads = (_conv_input_grad(g, w, x.shape, stride, padding, dilation),
             dispatch("conv2d_weight_direct", g, x, kernel=tuple(w.shape[2:]),
                      stride=stride, padding=padding, dilation=dilation))
    if bias is None:
        return grads
    return grads + (g.sum((0, 2, 3)).reshape(bias.shape),)


def _conv2d_weight_direct_vjp(gw, out, g, x, kernel, stride, padding, dilation):
    # dw is bilinear in (g, x): its gradient in g is the convolution of x with gw, the
    # one in x a convolution's input gradient with gw as the weight.
    return (dispatch("conv2d_direct", x, gw, stride=stride, padding=padding,
                     dilation=dilation),
            _conv_input_grad(g, gw, x.shape, stride, padding, dilation))


defop("conv2d_direct", EXTERN, _conv2d_direct, _conv2d_direct_vjp)
defop("conv2d_weight_direct", EXTERN, _conv2d_weight_direct, _conv2d_weight_direct_vjp)


# ---- max pooling ----------------------------------------------------------------------

def _window_argmax(xp, a, kernel, stride, padding, dilation):
    """Each window's maximum as a flat index into its [H, W] plane (PyTorch's
    ``return_indices``): the first maximum, or the last NaN (PyTorch's scan, CPU and
    CUDA alike, takes every NaN it meets)."""
    n, c, h, w = a.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    low = -xp.inf if a.dtype.kind not in "biu" else np.iinfo(a.dtype).min
    win = _windows(xp, a, kernel, stride, padding, dilation, low)
    oh, ow = win.shape[2:4]
    flat = win.reshape(n, c, oh, ow, kh * kw)
    k = flat.argmax(-1)   # the first maximum (NumPy's argmax stops at the first NaN)
    if a.dtype.kind not in "biu":
        nan = xp.isnan(flat)
        k = xp.where(nan.any(-1), kh * kw - 1 - nan[..., ::-1].argmax(-1), k)
    if ph or pw:   # a window of -inf whose max landed on padding: its first real element
        valid = _windows(xp, xp.ones((1, 1, h, w), dtype=bool), kernel, stride, padding,
                         dilation, False).reshape(1, 1, oh, ow, kh * kw)
        on_pad = ~xp.take_along_axis(valid, k[..., None], -1)[..., 0]
        k = xp.where(on_pad, valid.argmax(-1), k)
    iy = xp.arange(oh).reshape(oh, 1) * sh - ph + (k // kw) * dh
    ix = xp.arange(ow) * sw - pw + (k % kw) * dw
    return (iy * w + ix).astype(np.int64)


def _gather(xp, a, idx):
    n, c = a.shape[:2]
    flat = a.reshape(n, c, -1)
    return xp.take_along_axis(flat, idx.reshape(n, c, -1), axis=2).reshape(idx.shape)


def _scatter(xp, g, idx, shape):
    n, c, h, w = shape
    planes = xp.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (h * w)
    flat = (planes + idx).reshape(-1)
    out = xp.bincount(flat, weights=g.reshape(-1), minlength=n * c * h * w)
    return out.astype(g.dtype).reshape(shape)


def _max_pool2d(xp, a, kernel, stride, padding, dilation):
    native = _native() if xp is np else None
    if native is not None and native.supports(a):
        return native.max_pool2d(a, kernel, stride, padding, dilation)
    if a.dtype.kind in "biu":   # no -inf padding: the window's own values decide
        win = _windows(xp, a, kernel, stride, padding, dilation, np.iinfo(a.dtype).min)
        return xp.ascontiguousarray(win.max(axis=(4, 5)))
    return _gather(xp, a, _window_argmax(xp, a, kernel, stride, padding, dilation))


def _max_pool2d_backward(xp, g, a, kernel, stride, padding, dilation, relu=False):
    """The gradient of ``max_pool2d(a)``; ``relu``: then 0 where ``a <= 0``, the
    gradient of ``max_pool2d(relu(z))`` in z when ``a = relu(z)`` (``fuse_pool_relu``
    moves relu's gradient in here), as the separate ``where`` selects it: each element's
    summed gradient or 0 (an inf sum is 0 where masked; a NaN ``a`` passes it)."""
    native = _native() if xp is np else None
    if native is not None and native.supports(a) and g.dtype == a.dtype:
        return native.max_pool2d_backward(g, a, kernel, stride, padding, dilation,
                                          relu=relu)
    idx = _window_argmax(xp, a, kernel, stride, padding, dilation)
    dx = _scatter(xp, g, idx, a.shape)
    if relu:
        dx = xp.where(a <= 0, dx.dtype.type(0), dx)
    return dx


def _max_pool2d_vjp(g, out, a, kernel, stride, padding, dilation):
    return (dispatch("max_pool2d_backward", g, a, kernel=kernel, stride=stride,
                     padding=padding, dilation=dilation),)


def _max_pool2d_backward_vjp(gg, out, g, a, kernel, stride, padding, dilation,
                             relu=False):
    # Linear in g: its gradient picks gg (times the mask) at the same maxima; none
    # flows to a (the maxima's positions and the mask are piecewise constant in a).
    idx = dispatch("max_pool2d_indices", a, kernel=kernel, stride=stride, padding=padding,
                   dilation=dilation)
    if relu:
        gg = relu_grad(gg, a)
    return (dispatch("pool_gather", gg, idx), a.new_zeros(a.shape))


defop("max_pool2d", EXTERN, _max_pool2d, _max_pool2d_vjp)
defop("max_pool2d_backward", EXTERN, _max_pool2d_backward, _max_pool2d_backward_vjp)
defop("max_pool2d_indices", EXTERN, _window_argmax)
defop("pool_gather", EXTERN, _gather,
      lambda g, out, a, idx: (dispatch("pool_scatter", g, idx, shape=tuple(a.shape)), None))
defop("pool_scatter", EXTERN, _scatter,
      lambda g, out, src, idx, shape: (dispatch("pool_gather", g, idx), None))


# ---- average pooling ------------------------------------------------------------------
# ``divisor``: divisor_override, or kh*kw (count_include_pad), or 0: each window's count
# of real (unpadded) elements.

def _avg_divisors(xp, shape, kernel, stride, padding, divisor, dtype):
    if divisor:
        return divisor
    ones = xp.ones((1, 1) + tuple(shape[2:]), dtype=dtype)
    return _windows(xp, ones, kernel, stride, padding, (1, 1), 0).sum(axis=(4, 5))


def _avg_pool2d(xp, a, kernel, stride, padding, divisor):
    native = _native() if xp is np else None
    if native is not None and native.supports(a):
        return native.avg_pool2d(a, kernel, stride, padding, divisor)
    total = _windows(xp, a, kernel, stride, padding, (1, 1), 0).sum(axis=(4, 5))
    out = total / _avg_divisors(xp, a.shape, kernel, stride, padding, divisor, a.dtype)
    return xp.ascontiguousarray(out.astype(a.dtype, copy=False))


def _avg_pool2d_backward(xp, g, shape, kernel, stride, padding, divisor):
    native = _native() if xp is np else None
    if native is not None and native.supports(g):
        return native.avg_pool2d_backward(g, shape, kernel, stride, padding, divisor)
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = g.shape[2:]
    share = g / _avg_divisors(xp, shape, kernel, stride, padding, divisor, g.dtype)
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share
    return xp.ascontiguousarray(out[:, :, ph:ph + h, pw:pw + w]).astype(g.dtype, copy=False)


defop("avg_pool2d", EXTERN, _avg_pool2d,
      lambda g, out, a, kernel, stride, padding, divisor: (
          dispatch("avg_pool2d_backward", g, shape=tuple(a.shape), kernel=kernel,
                   stride=stride, padding=padding, divisor=divisor),))
defop("avg_pool2d_backward", EXTERN, _avg_pool2d_backward,
      lambda g, out, gy, shape, kernel, stride, padding, divisor: (
          dispatch("avg_pool2d", g, kernel=kernel, stride=stride, padding=padding,
                   divisor=divisor),))
