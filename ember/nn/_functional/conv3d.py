"""3-D convolution and pooling, and instance_norm, composed from registry ops.

conv3d is a sum over the depth taps of 2-D convolutions: for tap ``i`` the input's depth
slices ``i*dilation, i*dilation + stride, ...`` are folded into the batch and convolved
with ``weight[:, :, i]`` by conv2d (its im2col or direct kernels), so both gradients are
conv2d's. conv_transpose3d is the same over conv_transpose2d, each tap's output spread
along depth (zeros between, stride apart) and summed. The pools are separable: a window
reduction (max, or a sum divided by NumPy-computed counts) along each of the three dims
in turn, each a stack of strided slices; adaptive average pooling is one averaging matrix
per dim. All exact, all differentiable, all traced by ``ember.compile``.

>>> import ember.nn.functional as F
>>> F.conv3d(ember.ones(1, 2, 5, 5, 5), ember.ones(4, 2, 3, 3, 3)).shape
ember.Size([1, 4, 3, 3, 3])
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ember.errors import OpError, check_same_dtype, shape_str
from ember.tensor import Tensor, cat, stack, tensor, zeros

__all__ = ["conv3d", "conv_transpose3d", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
           "adaptive_max_pool3d", "instance_norm"]


def _triple(v, name: str = "value") -> tuple[int, int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]),) * 3
        if len(v) != 3:
            raise ValueError(f"expected an int or a tuple of 3 for {name}, got {v!r}")
        return tuple(int(x) for x in v)
    return (int(v),) * 3


def _pad_dims(x: Tensor, pads: list) -> Tensor:
    """Zero-pad the last three dims by [(left, right)] * 3 (depth first)."""
    from ember.nn._functional.sampling import pad
    flat = []
    for left, right in reversed(pads):
        flat += [left, right]
    return pad(x, tuple(flat)) if any(flat) else x


def _strided(x: Tensor, dim: int, start: int, step: int, count: int) -> Tensor:
    key = (slice(None),) * dim + (slice(start, start + step * (count - 1) + 1, step),)
    return x[key]


def conv3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """3-D convolution of [N, C, D, H, W] (or [C, D, H, W]) with weight
    [O, C/groups, kd, kh, kw].

    >>> F.conv3d(ember.ones(2, 3, 4, 6, 6), ember.ones(5, 3, 2, 3, 3), padding=1).shape
    ember.Size([2, 5, 5, 6, 6])
    """
    from ember.nn._functional.conv import conv_operands
    from ember.nn.functional import conv2d
    x, unbatched = conv_operands("conv3d", input, weight, bias, "[out, in/groups, kd, kh, kw]")
    out_ch, in_per_group, kd, kh, kw = weight.shape
    if x.ndim != 5 or x.shape[1] != in_per_group * groups:
        raise OpError("conv3d", f"expected input of shape [N, {in_per_group * groups}, D, H, W] "
                      f"(or [{in_per_group * groups}, D, H, W]) for a weight of shape "
                      f"{shape_str(weight)} and groups={groups}, but got {shape_str(input)}",
                      (input, weight))
    if out_ch % groups:
        raise OpError("conv3d", f"out_channels={out_ch} must be divisible by groups={groups}",
                      (weight,))
    (sd, sh, sw), (dd, dh, dw) = _triple(stride, "stride"), _triple(dilation, "dilation")
    kernel = (kd, kh, kw)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * 3
        elif padding == "same":
            if (sd, sh, sw) != (1, 1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for k, d in zip(kernel, (dd, dh, dw))]
            pads = [(t // 2, t - t // 2) for t in totals]      # the odd one on the right
        else:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                             "{'valid', 'same'}")
        x = _pad_dims(x, pads)
        ph = pw = 0
    else:
        pd, ph, pw = _triple(padding, "padding")
        x = _pad_dims(x, [(pd, pd), (0, 0), (0, 0)])
    n, c, d, h, w = x.shape
    od = (d - dd * (kd - 1) - 1) // sd + 1
    if od <= 0:
        raise OpError("conv3d", f"kernel depth {kd} (dilation {dd}) is larger than the padded "
                      f"input depth {d}", (input, weight))
    out = None
    for i in range(kd):
        xs = _strided(x, 2, i * dd, sd, od).permute(0, 2, 1, 3, 4).reshape(n * od, c, h, w)
        y = conv2d(xs, weight[:, :, i], None, (sh, sw), (ph, pw), (dh, dw), groups)
        out = y if out is None else out + y
    oh, ow = out.shape[-2:]
    out = out.reshape(n, od, out_ch, oh, ow).permute(0, 2, 1, 3, 4)
    if bias is not None:
        out = out + bias.reshape(1, out_ch, 1, 1, 1).to(out.dtype)
    return out.squeeze(0) if unbatched else out


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 3-D convolution of [N, C_in, D, H, W] with weight
    [C_in, C_out/groups, kd, kh, kw].

    >>> F.conv_transpose3d(ember.ones(1, 2, 3, 3, 3), ember.ones(2, 4, 2, 2, 2), stride=2).shape
    ember.Size([1, 4, 6, 6, 6])
    """
    from ember.nn._functional.conv import conv_operands
    from ember.nn.functional import conv_transpose2d
    x, unbatched = conv_operands("conv_transpose3d", input, weight, bias,
                                 "[in, out/groups, kd, kh, kw]")
    if x.ndim != 5 or x.shape[1] != weight.shape[0]:
        raise OpError("conv_transpose3d", f"expected input of shape [N, {weight.shape[0]}, D, H, "
                      f"W] for a weight of shape {shape_str(weight)}, but got "
                      f"{shape_str(input)}", (input, weight))
    (sd, sh, sw), (pd, ph, pw) = _triple(stride, "stride"), _triple(padding, "padding")
    (opd, oph, opw), (dd, dh, dw) = (_triple(output_padding, "output_padding"),
                                     _triple(dilation, "dilation"))
    if opd >= max(sd, dd):
        raise OpError("conv_transpose3d", f"output padding must be smaller than either stride "
                      f"or dilation, but got output_padding={(opd, oph, opw)}, stride="
                      f"{(sd, sh, sw)}, dilation={(dd, dh, dw)}", (input, weight))
    n, _, d, h, w = x.shape
    kd = weight.shape[2]
    c_out = weight.shape[1] * groups
    spread = (d - 1) * sd + 1
    full = spread + dd * (kd - 1)
    planes = x.permute(0, 2, 1, 3, 4).reshape(n * d, x.shape[1], h, w)
    out = None
    for i in range(kd):
        y = conv_transpose2d(planes, weight[:, :, i], None, (sh, sw), (ph, pw), (oph, opw),
                             groups, (dh, dw))
        oh, ow = y.shape[-2:]
        y = y.reshape(n, d, c_out, oh, ow)
        if sd > 1:   # depth d goes to d*sd: zeros between
            gap = zeros((n, d, sd - 1, c_out, oh, ow), dtype=y.dtype, device=y.device)
            y = cat([y.unsqueeze(2), gap], 2).reshape(n, d * sd, c_out, oh, ow)[:, :spread]
        y = y.permute(0, 2, 1, 3, 4)
        y = _pad_dims(y, [(i * dd, full - spread - i * dd), (0, 0), (0, 0)])
        out = y if out is None else out + y
    od = full - 2 * pd + opd
    if od <= 0:
        raise OpError("conv_transpose3d", f"the output depth {od} is too small for input "
                      f"{shape_str(input)}", (input, weight))
    if opd:
        out = _pad_dims(out, [(0, opd), (0, 0), (0, 0)])
    out = out[:, :, pd:pd + od]
    if bias is not None:
        out = out + bias.reshape(1, c_out, 1, 1, 1).to(out.dtype)
    return out.squeeze(0) if unbatched else out


# ---- pooling ------------------------------------------------------------------------------
def _pool_out(size: int, k: int, s: int, p: int, dil: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape."""
    span = size + 2 * p - dil * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = span // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _window_reduce(x: Tensor, dim: int, k: int, s: int, p: int, dil: int, out: int,
                   fill: float, how: str) -> Tensor:
    """Max or sum over the windows along one dim, padded with ``fill``."""
    size = x.shape[dim]
    need = (out - 1) * s + dil * (k - 1) + 1
    right = max(need - size - p, 0)
    if p or right:
        shape = list(x.shape)
        parts = []
        for amount in (p, None, right):
            if amount is None:
                parts.append(x)
            elif amount:
                shape[dim] = amount
                parts.append(tensor(np.full(shape, fill), dtype=x.dtype, device=x.device))
        x = cat(parts, dim)
    taps = [_strided(x, dim, i * dil, s, out) for i in range(k)]
    if len(taps) == 1:
        return taps[0]
    if how == "max":
        return stack(taps, -1).amax(-1)
    total = taps[0]
    for t in taps[1:]:
        total = total + t
    return total


def _pool_setup(op: str, input: Tensor, kernel_size, stride, padding, dilation):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim not in (4, 5):
        raise OpError(op, f"expected a 4-D [C, D, H, W] or 5-D [N, C, D, H, W] input, got "
                      f"{shape_str(input)}", (input,))
    k = _triple(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else _triple(stride, "stride")
    p, dil = _triple(padding, "padding"), _triple(dilation, "dilation")
    for kk, pp in zip(k, p):
        if pp > kk // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got "
                               f"pad={pp}, kernel_size={kk} and dilation=1")
    return k, s, p, dil


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """3-D max pooling of [N, C, D, H, W] (padding counts as -inf).

    >>> F.max_pool3d(ember.randn(1, 2, 4, 4, 4), 2).shape
    ember.Size([1, 2, 2, 2, 2])
    """
    if return_indices:
        raise NotImplementedError("max_pool3d: return_indices=True is not supported")
    k, s, p, dil = _pool_setup("max_pool3d", input, kernel_size, stride, padding, dilation)
    x = input
    for j in range(3):
        dim = x.ndim - 3 + j
        out = _pool_out(x.shape[dim], k[j], s[j], p[j], dil[j], ceil_mode)
        if out <= 0:
            raise RuntimeError(f"max_pool3d: output size is too small for input "
                               f"{list(input.shape)}")
        x = _window_reduce(x, dim, k[j], s[j], p[j], dil[j], out, float("-inf"), "max")
    return x


def _avg_counts(size: int, k: int, s: int, p: int, out: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """3-D average pooling of [N, C, D, H, W].

    >>> F.avg_pool3d(ember.ones(1, 1, 4, 4, 4), 2).shape
    ember.Size([1, 1, 2, 2, 2])
    """
    k, s, p, _ = _pool_setup("avg_pool3d", input, kernel_size, stride, padding, 1)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    x = input
    divisor = np.ones(())
    for j in range(3):
        dim = x.ndim - 3 + j
        size = x.shape[dim]
        out = _pool_out(size, k[j], s[j], p[j], 1, ceil_mode)
        if out <= 0:
            raise RuntimeError(f"avg_pool3d: output size is too small for input "
                               f"{list(input.shape)}")
        x = _window_reduce(x, dim, k[j], s[j], p[j], 1, out, 0.0, "sum")
        divisor = np.multiply.outer(divisor, _avg_counts(size, k[j], s[j], p[j], out,
                                                         count_include_pad))
    if divisor_override is not None:
        return x / float(divisor_override)
    return x / tensor(divisor, dtype=x.dtype, device=x.device)


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """Average [N, C, D, H, W] into ``output_size`` windows per dim (None keeps a dim).

    >>> F.adaptive_avg_pool3d(ember.randn(1, 2, 5, 7, 9), (2, 3, None)).shape
    ember.Size([1, 2, 2, 3, 9])
    """
    x = input
    for j, o in enumerate(_adaptive_sizes(input, output_size, "adaptive_avg_pool3d")):
        dim = x.ndim - 3 + j
        size = x.shape[dim]
        o = size if o is None else int(o)
        if o == size:
            continue
        # Window i covers [floor(i*size/o), ceil((i+1)*size/o)): an averaging matrix.
        a = np.zeros((o, size))
        for i in range(o):
            lo, hi = (i * size) // o, -((-(i + 1) * size) // o)
            a[i, lo:hi] = 1.0 / (hi - lo)
        mat = tensor(a.T, dtype=x.dtype, device=x.device)
        x = x.movedim(dim, -1).matmul(mat).movedim(-1, dim)
    return x


def _adaptive_sizes(input: Tensor, output_size, op: str) -> list:
    if not isinstance(input, Tensor) or input.ndim not in (4, 5):
        raise OpError(op, "expected a 4-D or 5-D input", ())
    sizes = (list(output_size) if isinstance(output_size, (tuple, list))
             else [output_size] * 3)
    if len(sizes) != 3:
        raise ValueError(f"{op}: output_size must be 3, got {output_size!r}")
    return sizes


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    """Max of [N, C, D, H, W] over ``output_size`` windows per dim (None keeps a dim);
    window i of n covers [floor(i*n/o), ceil((i+1)*n/o)), as torch's.

    >>> F.adaptive_max_pool3d(ember.randn(1, 2, 5, 7, 9), (2, 3, None)).shape
    ember.Size([1, 2, 2, 3, 9])
    """
    if return_indices:
        raise NotImplementedError("adaptive_max_pool3d: return_indices=True is not supported")
    x = input
    for j, o in enumerate(_adaptive_sizes(input, output_size, "adaptive_max_pool3d")):
        dim = x.ndim - 3 + j
        size = x.shape[dim]
        o = size if o is None else int(o)
        if o == size:
            continue
        parts = []
        for i in range(o):
            lo, hi = (i * size) // o, -((-(i + 1) * size) // o)
            parts.append(x.narrow(dim, lo, hi - lo).amax(dim, keepdim=True))
        x = cat(parts, dim)
    return x


def instance_norm(input: Tensor, running_mean: Optional[Tensor] = None,
                  running_var: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                  bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) of [N, C, *] over its positions; the running
    statistics, if given, track the batch average of the per-instance ones (in place).

    >>> F.instance_norm(ember.randn(2, 3, 8)).shape
    ember.Size([2, 3, 8])
    """
    from ember.autograd import no_grad
    if not isinstance(input, Tensor) or input.ndim < 3:
        raise ValueError(f"Expected more than 1 spatial element when training, got input "
                         f"of {input.ndim if isinstance(input, Tensor) else '?'} dims")
    check_same_dtype("instance_norm", input, True, running_mean=running_mean,
                     running_var=running_var, weight=weight, bias=bias)
    from ember.nn.functional import half_as_float32
    input, weight, bias, half = half_as_float32(input, weight, bias)
    c = input.shape[1]
    stat_shape = (1, c) + (1,) * (input.ndim - 2)
    if use_input_stats:
        dims = tuple(range(2, input.ndim))
        count = int(np.prod(input.shape[2:]))
        if count <= 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input "
                             f"size {list(input.shape)}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        with no_grad():
            if running_mean is not None:
                batch_mean = mean.detach().reshape(input.shape[0], c).mean(0)
                running_mean.mul_(1.0 - momentum).add_(batch_mean * momentum)
            if running_var is not None:
                unbiased = var.detach().reshape(input.shape[0], c).mean(0) * (count / (count - 1))
                running_var.mul_(1.0 - momentum).add_(unbiased * momentum)
        out = centered * (var + eps).rsqrt()
    else:
        if running_mean is None or running_var is None:
            raise ValueError("Expected running_mean and running_var to be defined when "
                             "use_input_stats is false")
        out = (input - running_mean.reshape(stat_shape)) * (
            running_var.reshape(stat_shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(stat_shape)
    if bias is not None:
        out = out + bias.reshape(stat_shape)
    return out if half is None else out.to(half)
