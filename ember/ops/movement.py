"""Movement primitives: they change how elements are laid out, never their values.

reshape, permute, expand, slice (basic indexing) and its gradient unslice, diagonal, cat, flip,
contiguous, detach, data_update, and unfold2d/fold2d (im2col/col2im in the [N, C*kh*kw, L]
layout, what conv_transpose2d uses; conv2d and pooling use ``ember.ops.conv``). reshape
(where the layout allows), permute, expand, slice and diagonal are views: their result
shares the input's memory, as in PyTorch (``OpDef.view``).
Slicing keys are stored canonically as tuples (hashable, for the IR): an int picks an
index, ``(start, stop, step)`` a slice, ``None`` a new axis.
"""
from __future__ import annotations

import math

import numpy as np

from ember.dispatch import dispatch
from ember.ops.registry import MOVEMENT, defop
from ember.devices import array_module


def numpy_key(key: tuple) -> tuple:
    """The NumPy indexing tuple of a canonical key."""
    return tuple(slice(*k) if type(k) is tuple else k for k in key)


defop("reshape", MOVEMENT, lambda xp, a, shape: a.reshape(shape),
      lambda g, out, a, shape: (g.reshape(a.shape),), view=True)


def _permute_vjp(g, out, a, dims):
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return (g.permute(tuple(inverse)),)


defop("permute", MOVEMENT, lambda xp, a, dims: a.transpose(dims), _permute_vjp, view=True)


def _expand_vjp(g, out, a, shape):
    from ember.ops.elementwise import sum_to
    return (sum_to(g, a.shape),)


def _expand(xp, a, shape):
    out = xp.broadcast_to(a, shape)
    if xp is np and a.flags.writeable:
        # PyTorch lets one write through an expanded view where no two elements share
        # memory (``x.expand(3, 4)[0].add_(1)``); Tensor._inplace refuses the overlapping
        # writes, as PyTorch does. NumPy marks every broadcast read-only.
        out.flags.writeable = True
    return out


defop("expand", MOVEMENT, _expand, _expand_vjp, view=True)
# Always a fresh C-ordered copy: Tensor.contiguous() skips it when already contiguous, and
# clone() relies on the copy.
defop("contiguous", MOVEMENT, lambda xp, a: xp.array(a, copy=True, order="C"),
      lambda g, out, a: (g,))


def _to_device(xp, a, device):
    # Decided by the array, not ``xp``: a plan runs each op with its output device's module.
    if device.type == "cpu":  # NumPy arrays are already on the host (no .get())
        return a if isinstance(a, np.ndarray) else a.get()
    return array_module(device).asarray(a)


# The same value, with no gradient: how a trace records ``t.detach()``, ``t.data`` and
# values read under ``no_grad``, so that a compiled backward stops where eager's does.
# ``simplify`` removes it before fusion; replayed through dispatch it cuts the tape.
defop("detach", MOVEMENT, lambda xp, a: a)
# ``a`` whose data was overwritten with ``b`` under ``no_grad`` (``p.clamp_(0, 1)``, an
# optimizer step): the value of ``b``, and ``a``'s place in the autograd graph, as in eager
# where an in-place update without grad mode keeps a tensor's grad_fn (a leaf stays a leaf).
defop("data_update", MOVEMENT, lambda xp, a, b: b, lambda g, out, a, b: (g, None))
defop("to_device", MOVEMENT, _to_device, lambda g, out, a, device: (g.to(a.device),))


def _unslice(xp, g, shape, key):
    z = xp.zeros(shape, dtype=g.dtype)
    z[numpy_key(key)] = g
    return z


# The trailing Ellipsis keeps ``a[1, 2]`` a 0-dim view (NumPy gives a scalar copy).
defop("slice", MOVEMENT, lambda xp, a, key: a[numpy_key(key) + (Ellipsis,)],
      lambda g, out, a, key: (dispatch("unslice", g, shape=tuple(a.shape), key=key),),
      view=True)
defop("unslice", MOVEMENT, _unslice,
      lambda g, out, a, shape, key: (dispatch("slice", g, key=key),))


def _diagonal(xp, a, offset, dim1, dim2):
    out = a.diagonal(offset, dim1, dim2)
    if xp is np and a.flags.writeable:
        out.flags.writeable = True  # a view PyTorch writes through; NumPy marks it read-only
    return out


def _diagonal_vjp(g, out, a, offset, dim1, dim2):
    from ember.tensor import arange
    # Where each diagonal element sits in ``a`` (flat), then a scatter into zeros.
    n = math.prod(a.shape)
    where = dispatch("diagonal", arange(n, device=a.device).reshape(a.shape), offset=offset,
                     dim1=dim1, dim2=dim2).reshape(-1)
    flat = dispatch("index_put", g.new_zeros((n,)), g.reshape(-1), where, key=("t0",),
                    accumulate=False)
    return (flat.reshape(a.shape),)


defop("diagonal", MOVEMENT, _diagonal, _diagonal_vjp, view=True)


def _cat_vjp(g, out, *inputs, dim):
    grads, start = [], 0
    for t in inputs:
        n = t.shape[dim]
        key = tuple((0, s, 1) for s in g.shape[:dim]) + ((start, start + n, 1),)
        grads.append(dispatch("slice", g, key=key) if t.requires_grad else None)
        start += n
    return tuple(grads)


defop("cat", MOVEMENT, lambda xp, *arrays, dim: xp.concatenate(arrays, axis=dim), _cat_vjp)


# ---- im2col / col2im ------------------------------------------------------------------

def _out_size(n, k, stride, pad, dilation):
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _unfold2d(xp, a, kernel, stride, padding, dilation, pad_value):
    n, c, h, w = a.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"kernel {kernel} is larger than the padded input {(h + 2 * ph, w + 2 * pw)}")
    if ph or pw:
        a = xp.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    s = a.strides
    windows = xp.lib.stride_tricks.as_strided(
        a, shape=(n, c, kh, kw, oh, ow),
        strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))
    return windows.reshape(n, c * kh * kw, oh * ow)


def _fold2d(xp, cols, shape, kernel, stride, padding, dilation):
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # kh*kw strided adds; overlapping windows accumulate
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw] += cols[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w]


def _unfold_vjp(g, out, a, kernel, stride, padding, dilation, pad_value):
    return (dispatch("fold2d", g, shape=tuple(a.shape), kernel=kernel, stride=stride,
                            padding=padding, dilation=dilation),)


def _fold_vjp(g, out, cols, shape, kernel, stride, padding, dilation):
    return (dispatch("unfold2d", g, kernel=kernel, stride=stride, padding=padding,
                            dilation=dilation, pad_value=0.0),)


defop("unfold2d", MOVEMENT, _unfold2d, _unfold_vjp)
defop("fold2d", MOVEMENT, _fold2d, _fold_vjp)
# im2col/col2im in the one-GEMM layout and max pooling (what conv2d and max_pool2d use).
from ember.ops import conv as _conv  # noqa: E402,F401


# A copy, as torch.flip (NumPy's flip is a negative-stride view, which PyTorch can't make).
defop("flip", MOVEMENT, lambda xp, a, dims: xp.flip(a, dims).copy() if dims else a.copy(),
      lambda g, out, a, dims: (dispatch("flip", g, dims=dims),))
