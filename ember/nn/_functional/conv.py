"""conv1d, conv_transpose1d/2d, group_norm and rms_norm, composed from registry ops.

conv1d is conv2d over a height of 1. A transposed convolution is the gradient of a
convolution with respect to its input: one matmul (weight^T @ x gives every kernel tap's
contribution, [N, C_out*kh*kw, H*W]) and ``fold2d`` (col2im), which adds the
overlapping contributions into place and crops the padding; both have gradients.

>>> import ember.nn.functional as F
>>> F.conv_transpose2d(ember.ones(1, 2, 3, 3), ember.ones(2, 4, 3, 3), stride=2).shape
ember.Size([1, 4, 7, 7])
"""
from __future__ import annotations

from ember.dispatch import dispatch
from ember.amp import state as _amp
from ember.errors import OpError, check_same_dtype, shape_str
from ember.tensor import Tensor, array_of

__all__ = ["conv1d", "conv_transpose1d", "conv_transpose2d", "group_norm", "rms_norm"]


def _single(v, name: str = "value") -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"expected a single int for {name}, got {v!r}")
        return int(v[0])
    return int(v)


def conv_operands(op: str, input, weight, bias, layout: str) -> tuple[Tensor, bool]:
    """The checks every convolution starts with: tensors (bias optional) and a weight of
    ``layout``'s rank (``"[out, in/groups, kh, kw]"``). Returns the input with a batch
    dim and whether it had none (an input one rank below the weight's)."""
    from ember.nn.functional import _MAYBE, _not_tensor
    if (not isinstance(input, Tensor) or not isinstance(weight, Tensor)
            or not isinstance(bias, _MAYBE)):
        raise _not_tensor(op, input=input, weight=weight, bias=bias)
    rank = layout.count(",") + 1
    if weight.ndim != rank:
        raise OpError(op, f"expected a {rank}-D weight {layout}, got {shape_str(weight)}",
                      (input, weight))
    if not _amp.state.modes:   # (autocast casts them to one dtype first)
        check_same_dtype(op, input, weight=weight, bias=bias)
    unbatched = input.ndim == rank - 1
    return (input.unsqueeze(0) if unbatched else input), unbatched


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution of [N, C, L] (or [C, L]) with weight [O, C/groups, k].

    >>> F.conv1d(ember.ones(2, 3, 10), ember.ones(4, 3, 3)).shape
    ember.Size([2, 4, 8])
    """
    from ember.nn.functional import conv2d
    conv_operands("conv1d", input, weight, bias, "[out, in/groups, k]")
    if input.ndim not in (2, 3):
        raise OpError("conv1d", f"expected a 2-D [C, L] or 3-D [N, C, L] input, got "
                      f"{shape_str(input)}", (input, weight))
    stride, dilation = _single(stride, "stride"), _single(dilation, "dilation")
    if padding == "same" and (dilation * (weight.shape[-1] - 1)) % 2:
        if stride != 1:
            raise ValueError("padding='same' is not supported for strided convolutions")
        # An even total: PyTorch puts the extra element on the right.
        from ember.nn._functional.sampling import pad as pad_
        total = dilation * (weight.shape[-1] - 1)
        input, padding = pad_(input, (total // 2, total - total // 2)), 0
    pad = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
    out = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, stride), pad,
                 (1, dilation), groups)
    return out.squeeze(-2)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution of [N, C_in, H, W] with weight [C_in, C_out/groups, kh, kw];
    the output has H_out = (H - 1) * stride - 2 * padding + dilation * (kh - 1) +
    output_padding + 1.

    >>> F.conv_transpose2d(ember.ones(1, 4, 5, 5), ember.ones(4, 2, 3, 3), padding=1).shape
    ember.Size([1, 2, 5, 5])
    """
    from ember.nn.functional import _pair
    x, unbatched = conv_operands("conv_transpose2d", input, weight, bias,
                                 "[in, out/groups, kh, kw]")
    c_in, out_per_group, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != c_in:
        raise OpError("conv_transpose2d", f"expected input of shape [N, {c_in}, H, W] (or "
                      f"[{c_in}, H, W]) for a weight of shape {shape_str(weight)}, but got "
                      f"{shape_str(input)}", (input, weight))
    if c_in % groups:
        raise OpError("conv_transpose2d", f"in_channels={c_in} must be divisible by "
                      f"groups={groups}", (weight,))
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    oph, opw = _pair(output_padding)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise OpError("conv_transpose2d", f"output padding must be smaller than either stride "
                      f"or dilation, but got output_padding={(oph, opw)}, stride={(sh, sw)}, "
                      f"dilation={(dh, dw)}", (input, weight))
    if oph >= sh or opw >= sw:
        # fold2d's window grid would then be larger than the input's: not supported.
        raise NotImplementedError("conv_transpose2d: output_padding >= stride (allowed by a "
                                  "larger dilation) is not supported")
    n, _, h, w = x.shape
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if oh <= 0 or ow <= 0:
        raise OpError("conv_transpose2d", f"the output size ({oh}, {ow}) is too small for input "
                      f"{shape_str(input)}", (input, weight))
    c_out = out_per_group * groups
    in_per_group = c_in // groups
    taps = out_per_group * kh * kw
    xg = x.reshape(n, groups, in_per_group, h * w)
    wg = weight.reshape(groups, in_per_group, taps).transpose(1, 2)   # [G, taps, Cin/G]
    cols = wg.matmul(xg).reshape(n, c_out * kh * kw, h * w)          # [N, Cout*kh*kw, H*W]
    out = dispatch("fold2d", cols, shape=(n, c_out, oh, ow), kernel=(kh, kw), stride=(sh, sw),
                   padding=(ph, pw), dilation=(dh, dw))
    if bias is not None:
        out = out + bias.reshape(1, c_out, 1, 1)
    return out.squeeze(0) if unbatched else out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 1-D convolution of [N, C_in, L] with weight [C_in, C_out/groups, k].

    >>> F.conv_transpose1d(ember.ones(1, 4, 5), ember.ones(4, 2, 3), stride=2).shape
    ember.Size([1, 2, 11])
    """
    if not isinstance(input, Tensor) or input.ndim not in (2, 3):
        raise OpError("conv_transpose1d", f"expected a 2-D or 3-D input, got "
                      f"{shape_str(input) if isinstance(input, Tensor) else type(input)}", ())
    out = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias,
                           (1, _single(stride)), (0, _single(padding)),
                           (0, _single(output_padding)), groups, (1, _single(dilation)))
    return out.squeeze(-2)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize [N, C, *] over each group of C/num_groups channels (and all positions),
    then scale and shift per channel.

    >>> F.group_norm(ember.randn(2, 4, 3), 2).shape
    ember.Size([2, 4, 3])
    """
    from ember.nn.functional import _MAYBE, _not_tensor, half_as_float32
    if (not isinstance(input, Tensor) or not isinstance(weight, _MAYBE)
            or not isinstance(bias, _MAYBE)):
        raise _not_tensor("group_norm", input=input, weight=weight, bias=bias)
    check_same_dtype("group_norm", input, True, weight=weight, bias=bias)
    input, weight, bias, half = half_as_float32(input, weight, bias)
    if input.ndim < 2:
        raise OpError("group_norm", f"expected an input of at least 2 dims [N, C, *], got "
                      f"{shape_str(input)}", (input,))
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by "
                           f"num_groups, but got input of shape {list(input.shape)} and "
                           f"num_groups={num_groups}")
    x = input.reshape(n, num_groups, -1)
    centered = x - x.mean(-1, keepdim=True)
    var = (centered * centered).mean(-1, keepdim=True)
    out = (centered * (var + eps).rsqrt()).reshape(input.shape)
    stat_shape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(stat_shape)
    if bias is not None:
        out = out + bias.reshape(stat_shape)
    return out if half is None else out.to(half)


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2 over the trailing ``normalized_shape`` dims) + eps) * weight;
    ``eps`` defaults to the dtype's machine epsilon, as PyTorch.

    >>> F.rms_norm(ember.tensor([[3.0, 4.0]]), (2,))
    tensor([[0.8485, 1.1314]])
    """
    import numpy as np
    from ember.nn.functional import _MAYBE, _not_tensor
    if not isinstance(input, Tensor) or not isinstance(weight, _MAYBE):
        raise _not_tensor("rms_norm", input=input, weight=weight)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[-k:]) != shape:
        raise OpError("rms_norm", f"input of shape {shape_str(input)} does not end in the "
                      f"normalized_shape {list(shape)}", (input,))
    if eps is None:
        eps = float(np.finfo(array_of(input).dtype).eps)
    dims = tuple(range(input.ndim - k, input.ndim))
    out = input * ((input * input).mean(dims, keepdim=True) + eps).rsqrt()
    return out if weight is None else out * weight
