"""Resampling and padding: interpolate (nearest, nearest-exact, linear, bilinear,
bicubic, trilinear, area), upsample*, pad (constant, reflect, replicate, circular).

Every mode is a gather along one spatial dim at a time with integer indices (and, for the
linear modes, two gathers blended by constant weights). The indices and weights depend
only on the shapes and options, so a compiled trace holds them as constants, and the
gradient is the gather's (a scatter-add). Index and weight formulas are PyTorch's
(``area_pixel_compute_source_index``, ``nearest_idx``), computed in float32 where
PyTorch does so that the same source pixel is picked.

>>> import ember.nn.functional as F
>>> F.interpolate(ember.arange(4.).reshape(1, 1, 2, 2), scale_factor=2).shape
ember.Size([1, 1, 4, 4])
"""
from __future__ import annotations

import math

import numpy as np

from ember import dtypes
from ember.errors import OpError, shape_str
from ember.tensor import Tensor, tensor
from ember.tensor_common import channels_last

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pad"]

_LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners=None, recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize the spatial dims of [N, C, *spatial] to ``size`` or by ``scale_factor``
    (``mode``: nearest, linear, bilinear, bicubic, trilinear, area, nearest-exact). A
    channels_last input gives a channels_last result, any other a contiguous one, as
    torch's (DINO permutes it back and calls ``view``).

    >>> F.interpolate(ember.ones(1, 1, 2, 2), scale_factor=2).shape
    ember.Size([1, 1, 4, 4])
    """
    out = _interpolate(input, size, scale_factor, mode, align_corners, recompute_scale_factor,
                       antialias)
    if (isinstance(input, Tensor) and input.ndim == 4 and out.ndim == 4
            and not input.is_contiguous()
            and input.is_contiguous(memory_format=channels_last)):
        return out.contiguous(memory_format=channels_last)
    return out.contiguous()   # (nearest's result was a strided view; torch's is dense)


def _interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of [N, C, *spatial] to ``size`` or by ``scale_factor``.

    >>> x = ember.tensor([[[1.0, 2.0]]])
    >>> F.interpolate(x, size=4, mode="linear", align_corners=True)
    tensor([[[1.0000, 1.3333, 1.6667, 2.0000]]])
    """
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor("interpolate", input=input)
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    dim = input.ndim - 2
    if dim < 1:
        raise ValueError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                         f"{input.ndim}D) for the modes: nearest | linear | bilinear | bicubic "
                         f"| trilinear | area | nearest-exact (got {mode})")
    in_sizes = tuple(input.shape[2:])
    out_sizes, scales = _output_size(dim, in_sizes, size, scale_factor, recompute_scale_factor)
    if mode in _LINEAR:
        if _LINEAR[mode] != dim:
            raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                      f"{_LINEAR[mode] + 2}D input")
        out = input
        for d in range(dim):
            i0, i1, w1 = _linear_taps(in_sizes[d], out_sizes[d], scales[d], align_corners,
                                      np.float64 if input.dtype is dtypes.float64 else np.float32)
            out = _blend(out, 2 + d, i0, i1, w1)
        return out
    if mode in ("nearest", "nearest-exact"):
        out = input
        for d in range(dim):
            idx = _nearest_index(in_sizes[d], out_sizes[d], scales[d], mode == "nearest-exact")
            if idx is not None:
                out = _take(out, 2 + d, idx)
        return out
    if mode == "area":
        from ember.nn.functional import adaptive_avg_pool2d
        if dim == 2:
            return adaptive_avg_pool2d(input, out_sizes)
        if dim == 1:
            return adaptive_avg_pool2d(input.unsqueeze(-2), (1, out_sizes[0])).squeeze(-2)
        raise NotImplementedError("interpolate: mode='area' supports 3-D and 4-D inputs")
    if mode == "bicubic":
        if dim != 2:
            raise NotImplementedError(f"Got {input.ndim}D input, but bicubic mode needs 4D "
                                      "input")
        out = input
        ftype = np.float64 if input.dtype is dtypes.float64 else np.float32
        for d in range(dim):
            taps = _cubic_taps(in_sizes[d], out_sizes[d], scales[d], align_corners, ftype)
            out = _weighted_sum(out, 2 + d, taps)
        return out
    raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                              f"{input.ndim}D) for the modes: nearest | linear | bilinear | "
                              f"bicubic | trilinear | area | nearest-exact (got {mode})")


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    """Deprecated alias of ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size=None, scale_factor=None) -> Tensor:
    """``interpolate(..., mode="nearest")``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size=None, scale_factor=None) -> Tensor:
    """``interpolate(..., mode="bilinear", align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative amounts, crop) the last dims: ``pad`` is (left, right) for
    the last dim, then (top, bottom) for the one before, and so on.

    >>> F.pad(ember.ones(1, 2), (1, 1)).tolist()
    [[0.0, 1.0, 1.0, 0.0]]
    """
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor("pad", input=input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError("Padding length should be less than or equal to two times the "
                           "input dimension but got padding length "
                           f"{len(pad)} and input of dimension {input.ndim}")
    if mode != "constant" and value not in (None, 0, 0.0):
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    out = input
    for k in range(len(pad) // 2):
        d = input.ndim - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        if left == 0 and right == 0:
            continue
        n = out.shape[d]
        if mode == "constant":
            out = _pad_constant(out, d, left, right, 0.0 if value is None else value)
            continue
        j = np.arange(-left, n + right)
        if mode == "replicate":
            idx = np.clip(j, 0, n - 1)
        elif mode == "reflect":
            if left >= n or right >= n:
                raise RuntimeError(f"Argument #4: Padding size should be less than the "
                                   f"corresponding input dimension, but got: padding "
                                   f"({left}, {right}) at dimension {d} of input "
                                   f"{list(input.shape)}")
            period = 2 * (n - 1) if n > 1 else 1
            m = np.mod(j, period)
            idx = np.where(m < n, m, period - m)
        elif mode == "circular":
            if left > n or right > n:
                raise ValueError("Padding value causes wrapping around more than once.")
            idx = np.mod(j, n)
        else:
            raise NotImplementedError(f"pad: mode {mode!r} is not supported")
        out = _take(out, d, idx)
    return out


# ---- helpers -----------------------------------------------------------------------------

def _output_size(dim: int, in_sizes: tuple, size, scale_factor, recompute_scale_factor):
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(f"Input and output must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of "
                                 f"{list(in_sizes)} and output size of {list(size)}. Please "
                                 "provide input tensor in (N, C, d1, d2, ...,dK) format and "
                                 "output size in (o1, o2, ...,oK) format.")
            out = tuple(int(s) for s in size)
        else:
            out = (int(size),) * dim
        return out, (None,) * dim
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if isinstance(scale_factor, (list, tuple)):
        if len(scale_factor) != dim:
            raise ValueError(f"Input and scale_factor must have the same number of spatial "
                             f"dimensions, but got input with spatial dimensions of "
                             f"{list(in_sizes)} and scale_factor of shape {list(scale_factor)}. "
                             "Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                             "scale_factor in (s1, s2, ...,sK) format.")
        factors = tuple(float(s) for s in scale_factor)
    else:
        factors = (float(scale_factor),) * dim
    out = tuple(int(math.floor(n * s)) for n, s in zip(in_sizes, factors))
    if recompute_scale_factor:
        return out, (None,) * dim
    return out, factors


def _source_scale(n_in: int, n_out: int, scale: float | None) -> np.float32:
    """PyTorch's compute_scales_value: 1/scale_factor when given, else in/out (float32)."""
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(n_in) / np.float32(n_out)


def _nearest_index(n_in: int, n_out: int, scale, exact: bool):
    if n_in == n_out and not exact:
        return None
    s = _source_scale(n_in, n_out, scale)
    dst = np.arange(n_out, dtype=np.float32)
    if exact:
        dst = dst + np.float32(0.5)
    return np.minimum(np.floor(dst * s).astype(np.int64), n_in - 1)


def _linear_taps(n_in: int, n_out: int, scale, align_corners: bool, ftype):
    """Source indices and weights of linear interpolation, computed in the input's
    precision (PyTorch's opmath: float64 for float64 inputs, float32 otherwise)."""
    dst = np.arange(n_out, dtype=ftype)
    if align_corners:
        src = dst * ftype((n_in - 1) / (n_out - 1) if n_out > 1 else 0)
    else:
        if scale is not None and scale > 0:
            s = ftype(1.0 / scale)       # 1/scale in double, then cast, as PyTorch
        else:
            s = ftype(n_in) / ftype(n_out)
        src = np.maximum(s * (dst + ftype(0.5)) - ftype(0.5), ftype(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0.astype(ftype)).astype(ftype)
    return i0, i1, w1


def _cubic_taps(n_in: int, n_out: int, scale, align_corners: bool, ftype):
    """PyTorch's bicubic: four source indices (clamped at the borders) and the cubic
    convolution weights (A = -0.75) for each output position."""
    a = ftype(-0.75)
    dst = np.arange(n_out, dtype=ftype)
    if align_corners:
        src = dst * ftype((n_in - 1) / (n_out - 1) if n_out > 1 else 0)
    else:   # no clamp at 0 for cubic, as PyTorch
        s = ftype(1.0 / scale) if scale is not None and scale > 0 else \
            ftype(n_in) / ftype(n_out)
        src = s * (dst + ftype(0.5)) - ftype(0.5)
    base = np.floor(src).astype(np.int64)
    t = (src - base.astype(ftype)).astype(ftype)

    def near(x):   # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):    # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    return [(np.clip(base - 1 + k, 0, n_in - 1), w) for k, w in enumerate(weights)]


def _weighted_sum(x: Tensor, dim: int, taps) -> Tensor:
    shape = [1] * x.ndim
    out = None
    for idx, w in taps:
        shape[dim] = len(w)
        term = _take(x, dim, idx) * tensor(w.reshape(shape), dtype=x.dtype, device=x.device)
        out = term if out is None else out + term
    return out


def _take(x: Tensor, dim: int, idx: np.ndarray) -> Tensor:
    key = (slice(None),) * dim + (tensor(idx, dtype=dtypes.int64, device=x.device),)
    return x[key]


def _blend(x: Tensor, dim: int, i0: np.ndarray, i1: np.ndarray, w1: np.ndarray) -> Tensor:
    shape = [1] * x.ndim
    shape[dim] = len(w1)
    lam = tensor(w1.reshape(shape), dtype=x.dtype, device=x.device)
    a, b = _take(x, dim, i0), _take(x, dim, i1)
    return a * (1.0 - lam) + b * lam


def _pad_constant(x: Tensor, d: int, left: int, right: int, value: float) -> Tensor:
    from ember.tensor import cat, full
    if left < 0:
        x = x.narrow(d, -left, x.shape[d] + left)
        left = 0
    if right < 0:
        x = x.narrow(d, 0, x.shape[d] + right)
        right = 0
    if x.shape[d] < 0:
        raise OpError("pad", f"negative padding crops {shape_str(x)} below zero size", (x,))
    parts = []
    for amount in (left, None, right):
        if amount is None:
            parts.append(x)
        elif amount > 0:
            shape = list(x.shape)
            shape[d] = amount
            parts.append(full(tuple(shape), value, dtype=x.dtype, device=x.device))
    return parts[0] if len(parts) == 1 else cat(parts, d)
