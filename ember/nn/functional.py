"""ember.nn.functional: PyTorch's functional layer API, composed from primitive ops.

Nothing here has its own gradient: every function is written with ember ops, so
autograd, tracing and fusion see ordinary primitives (convolution is ``im2col`` and a
matmul, max pooling the ``max_pool2d`` primitive, cross entropy ``log_softmax`` and an
``index``).

>>> import ember.nn.functional as F
>>> F.relu(ember.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""
from __future__ import annotations

import math
from typing import Sequence

from ember import dtypes
from ember.amp import state as _amp
from ember.autograd import is_grad_enabled, no_grad
from ember.compiler import is_compiling
from ember.dispatch import dispatch
from ember.errors import OpError, check_same_dtype, shape_str, type_name
from ember.ops.conv import direct_conv_rule as _direct_conv
from ember.tensor import Tensor, arange, rand_like, where

__all__ = [
    "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu",
    "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
    "layer_norm", "batch_norm", "embedding", "cross_entropy", "nll_loss", "mse_loss",
    "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "flatten", "one_hot",
    "scaled_dot_product_attention",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


# ---- linear and convolution --------------------------------------------------------------

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``, with weight of shape [out_features, in_features].

    >>> F.linear(ember.ones(2, 4), ember.ones(3, 4)).shape
    ember.Size([2, 3])
    """
    if (not isinstance(input, Tensor) or not isinstance(weight, Tensor)
            or not isinstance(bias, _MAYBE)):
        raise _not_tensor("linear", input=input, weight=weight, bias=bias)
    in_features = weight.shape[-1]
    if input.ndim == 0 or input.shape[-1] != in_features:
        raise OpError("linear", f"input of shape {shape_str(input)} does not fit a weight of shape "
                      f"{shape_str(weight)}: the input's last dim must be in_features="
                      f"{in_features}", (input, weight))
    if not _amp.state.modes:   # (autocast casts them to one dtype)
        check_same_dtype("linear", input, weight=weight, bias=bias)
    elif bias is not None:
        x, w = _amp.cast_operands(input, weight)
        if x.dtype is w.dtype and x.dtype.itemsize == 2:
            # torch's autocast addmm adds the bias to the float32 product and rounds once
            # (nanoGPT's loss moved by 5e-5 when ember rounded the product, then the sum)
            from ember.amp import autocast
            with autocast(x.device.type, enabled=False):   # (the matmul in float32)
                out = x.float().matmul(w.float().t()) + bias.to(x.dtype).float()
            return out.to(x.dtype)
    out = input.matmul(weight.t())
    if bias is not None:   # in the product's dtype (a bfloat16 one under autocast)
        out = out + (bias if bias.dtype is out.dtype else bias.to(out.dtype))
    return out


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of [N, C, H, W] with weight [O, C/groups, kh, kw].

    On the CPU with few output channels (float32/float64, groups 1; the measured rule
    at ``ember.ops.conv.direct_conv_rule``) it runs the generated direct convolution
    ``conv2d_direct`` (weight gradient ``conv2d_weight_direct``; ``explain`` shows it).
    Otherwise it is lowered to im2col (the ``im2col`` primitive, one row per output
    pixel) and one matmul over the whole batch, so the GEMM is the only heavy op and
    both gradients come from matmul's (then ``col2im``).

    >>> F.conv2d(ember.ones(1, 3, 8, 8), ember.ones(6, 3, 5, 5)).shape
    ember.Size([1, 6, 4, 4])
    """
    from ember.nn._functional.conv import conv_operands
    x, unbatched = conv_operands("conv2d", input, weight, bias, "[out, in/groups, kh, kw]")
    out_ch, in_per_group, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_per_group * groups:
        raise OpError("conv2d", f"expected input of shape [N, {in_per_group * groups}, H, W] "
                      f"(or [{in_per_group * groups}, H, W]) for a weight of shape "
                      f"{shape_str(weight)} and groups={groups}, but got {shape_str(input)}",
                      (input, weight))
    if out_ch % groups:
        raise OpError("conv2d", f"out_channels={out_ch} must be divisible by groups={groups}",
                      (weight,))
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    ph, pw = _conv_padding(padding, (kh, kw), (dh, dw), (sh, sw))
    n, c, h, w = x.shape
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise OpError("conv2d", f"kernel size ({kh}, {kw}) (dilation {dh, dw}) is larger than "
                      f"the padded input ({h + 2 * ph}, {w + 2 * pw})", (input, weight))
    geom = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    grad = is_grad_enabled() and any(t is not None and t.requires_grad
                                     for t in (x, weight, bias))
    if _direct_conv(x, weight, groups, (sh, sw), grad):   # no im2col, output NCHW
        out = dispatch("conv2d_direct", x, weight, **geom)
        if bias is not None:
            out = out + bias.reshape(1, out_ch, 1, 1).to(out.dtype)
        return out.squeeze(0) if unbatched else out
    cols = dispatch("im2col", x, kernel=(kh, kw), **geom)           # [N*OH*OW, C*kh*kw]
    rows = n * oh * ow
    if groups == 1:   # one GEMM over the whole batch; W^T is a view BLAS reads as is
        out = cols.matmul(weight.reshape(out_ch, -1).t())          # [N*OH*OW, O]
    else:             # one GEMM per group
        k = in_per_group * kh * kw
        cg = cols.reshape(rows, groups, k).permute(1, 0, 2)        # [G, N*OH*OW, k]
        wg = weight.reshape(groups, out_ch // groups, k).permute(0, 2, 1)
        out = cg.matmul(wg).permute(1, 0, 2).reshape(rows, out_ch)
    # Back to NCHW, contiguous as PyTorch's: in a compiled step this copy fuses with the
    # bias add and the elementwise ops that follow (the ReLU) into one kernel. The bias
    # is added in NCHW so that its gradient sums contiguous planes (a column sum of
    # [N*OH*OW, O] ran ~9x slower in NumPy, measured).
    out = out.reshape(n, oh, ow, out_ch).permute(0, 3, 1, 2).contiguous()
    if bias is not None:   # in the product's dtype (a bfloat16 one under autocast)
        out = out + bias.reshape(1, out_ch, 1, 1).to(out.dtype)
    return out.squeeze(0) if unbatched else out


# ---- pooling ---------------------------------------------------------------------------

def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """Max over each window of [N, C, H, W] (padding counts as -inf).

    As in PyTorch, a window's gradient goes to its first maximum (or a NaN), and
    ``return_indices=True`` also gives each maximum's flat index in its [H, W] plane.

    >>> F.max_pool2d(ember.arange(16.).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("max_pool2d", input=input)
    x, unbatched, geom = _pool_setup("max_pool2d", input, kernel_size, stride, padding, dilation)
    (kh, kw), stride, padding, dilation, (oh, ow) = geom
    if ceil_mode:
        out = _ceil_pool.max_pool(x, (kh, kw), stride, padding, dilation, return_indices)
        return tuple(o.squeeze(0) for o in out) if unbatched and return_indices else \
            out.squeeze(0) if unbatched else out
    attrs = dict(kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    out = dispatch("max_pool2d", x, **attrs)
    if return_indices:
        idx = dispatch("max_pool2d_indices", x.detach(), **attrs)
        return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)
    return out.squeeze(0) if unbatched else out


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over each window of [N, C, H, W].

    >>> F.avg_pool2d(ember.ones(1, 1, 4, 4), 2).shape
    ember.Size([1, 1, 2, 2])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("avg_pool2d", input=input)
    x, unbatched, geom = _pool_setup("avg_pool2d", input, kernel_size, stride, padding, 1)
    (kh, kw), stride, padding, _, _ = geom
    if ceil_mode:
        out = _ceil_pool.avg_pool(x, (kh, kw), stride, padding, count_include_pad,
                                  divisor_override)
        return out.squeeze(0) if unbatched else out
    if divisor_override:
        divisor = int(divisor_override)
    elif count_include_pad or padding == (0, 0):
        divisor = kh * kw
    else:   # each window by how many real (unpadded) elements it covers
        divisor = 0
    out = dispatch("avg_pool2d", x, kernel=(kh, kw), stride=stride, padding=padding,
                   divisor=divisor)
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average-pool [N, C, H, W] down to ``output_size`` with PyTorch's window rule
    (window i spans floor(i*H/oh) .. ceil((i+1)*H/oh)).

    >>> F.adaptive_avg_pool2d(ember.ones(2, 3, 7, 7), 1).shape
    ember.Size([2, 3, 1, 1])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("adaptive_avg_pool2d", input=input)
    oh, ow = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    h, w = input.shape[-2:]
    oh, ow = oh or h, ow or w
    if h % oh == 0 and w % ow == 0:  # equal windows: one reshape and a mean
        lead = input.shape[:-2]
        x = input.reshape(*lead, oh, h // oh, ow, w // ow)
        return x.mean(dim=(-3, -1))
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        cols = []
        for j in range(ow):
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            cols.append(input[..., h0:h1, w0:w1].mean(dim=(-2, -1)))
        rows.append(_stack(cols, -1))
    return _stack(rows, -2)


# ---- activations -----------------------------------------------------------------------

def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0). ``F.relu(ember.tensor([-1., 2.]))`` is ``tensor([0., 2.])``."""
    if not isinstance(input, Tensor):
        raise _not_tensor("relu", input=input)
    return input.relu_() if inplace else input.relu()


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope * x.

    >>> F.leaky_relu(ember.tensor([-1., 2.]), 0.1)
    tensor([-0.1000,  2.0000])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("leaky_relu", input=input)
    out = where(input > 0, input, input * negative_slope)
    return input.copy_(out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact, with erf), or PyTorch's tanh approximation.

    >>> F.gelu(ember.tensor([0.0, 1.0]))
    tensor([0.0000, 0.8413])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("gelu", input=input)
    if input.dtype.itemsize == 2 and input.is_floating_point():   # float16/bfloat16:
        return gelu(input.float(), approximate).to(input.dtype)   # rounded once, as torch
    if approximate == "none":
        return input * 0.5 * (1.0 + (input * _INV_SQRT_2).erf())
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + inner.tanh())
    raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x). ``F.silu(ember.tensor([0.]))`` is ``tensor([0.])``."""
    if not isinstance(input, Tensor):
        raise _not_tensor("silu", input=input)
    from ember.nn._functional.activation import _original
    x = _original(input, inplace)
    out = x * x.sigmoid()
    return input.copy_(out) if inplace else out


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)). ``F.sigmoid(ember.tensor([0.]))`` is ``tensor([0.5000])``."""
    if not isinstance(input, Tensor):
        raise _not_tensor("sigmoid", input=input)
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent. ``F.tanh(ember.tensor([0.]))`` is ``tensor([0.])``."""
    if not isinstance(input, Tensor):
        raise _not_tensor("tanh", input=input)
    return input.tanh()


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``.

    >>> F.softmax(ember.tensor([[1., 1.]]), dim=1)
    tensor([[0.5000, 0.5000]])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("softmax", input=input)
    return input.softmax(_softmax_dim(input, dim), dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """log(softmax(x)) along ``dim``, computed stably.

    >>> F.log_softmax(ember.tensor([[0., 0.]]), dim=1)
    tensor([[-0.6931, -0.6931]])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("log_softmax", input=input)
    return input.log_softmax(_softmax_dim(input, dim), dtype=dtype)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p); the
    identity when not ``training``.

    >>> F.dropout(ember.ones(4), p=0.5, training=False)
    tensor([1., 1., 1., 1.])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("dropout", input=input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        # The mask is a random primitive (impure), so a compiled trace draws a fresh one.
        keep = rand_like(input) >= p
        out = input * keep.to(input.dtype) * (1.0 / (1.0 - p))
    return input.copy_(out) if inplace else out


# ---- normalization ---------------------------------------------------------------------

def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims (biased variance).

    >>> F.layer_norm(ember.tensor([[1., 3.]]), (2,))
    tensor([[-1.0000,  1.0000]])
    """
    if (not isinstance(input, Tensor)
            or not isinstance(weight, _MAYBE) or not isinstance(bias, _MAYBE)):
        raise _not_tensor("layer_norm",
                          input=input, normalized_shape=normalized_shape, weight=weight, bias=bias)
    check_same_dtype("layer_norm", input, True, weight=weight, bias=bias)
    input, weight, bias, half = half_as_float32(input, weight, bias)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[-k:]) != shape:
        raise OpError("layer_norm", f"input of shape {shape_str(input)} does not end in the "
                      f"normalized_shape {list(shape)}", (input,))
    dims = tuple(range(input.ndim - k, input.ndim))
    count = math.prod(shape)
    if count == 0 or input.numel() == 0 or input.dtype not in (dtypes.float32,
                                                                 dtypes.float64):
        centered = input - input.mean(dims, keepdim=True)
        var = (centered * centered).mean(dims, keepdim=True)
        out = centered * (var + eps).rsqrt()
    else:
        # The statistics in one pass over each row: the sum and the sum of squares of
        # the row shifted by its first element. The shift keeps the cancellation in
        # E[d^2] - E[d]^2 to the scale of the row's spread (the shifted-data algorithm);
        # it is detached because the result does not depend on it (any constant shift
        # gives the same function), so the gradient stays exact. A compiled row kernel
        # reads each row once for both sums, then once to normalize.
        first = input[(Ellipsis,) + (slice(0, 1),) * k].detach()
        d = input - first
        shift = d.sum(dims, keepdim=True) * (1.0 / count)       # mean - first
        var = ((d * d).sum(dims, keepdim=True) * (1.0 / count) - shift * shift).clamp(min=0.0)
        out = (d - shift) * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out if half is None else out.to(half)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) of [N, C, ...] by batch statistics when ``training``
    (updating the running statistics in place), else by the running statistics.

    >>> F.batch_norm(ember.tensor([[1.], [3.]]), None, None, training=True)
    tensor([[-1.0000],
            [ 1.0000]])
    """
    if (not isinstance(input, Tensor) or not isinstance(running_mean, _MAYBE)
            or not isinstance(running_var, _MAYBE) or not isinstance(weight, _MAYBE)
            or not isinstance(bias, _MAYBE)):
        raise _not_tensor("batch_norm", input=input, running_mean=running_mean,
                          running_var=running_var, weight=weight, bias=bias)
    check_same_dtype("batch_norm", input, True, running_mean=running_mean,
                     running_var=running_var, weight=weight, bias=bias)
    input, weight, bias, half = half_as_float32(input, weight, bias)
    if input.ndim < 2:
        raise OpError("batch_norm", f"expected an input of at least 2 dims [N, C, ...], got "
                      f"{shape_str(input)}", (input,))
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise OpError("batch_norm", f"{name} of shape {shape_str(t)} does not match the "
                          f"{c} channels of the input {shape_str(input)}", (input, t))
    stat_shape = (1, c) + (1,) * (input.ndim - 2)
    if training:
        dims = (0,) + tuple(range(2, input.ndim))
        count = input.numel() // c
        if count <= 1:
            raise OpError("batch_norm", "expected more than 1 value per channel when training, "
                          f"got input of shape {shape_str(input)}", (input,))
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if running_mean is not None or running_var is not None:
            # In place, so the module's buffers (and a compiler watching mutations) see it;
            # the running variance is the unbiased one, as in PyTorch.
            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1.0 - momentum).add_(mean.detach().reshape(c) * momentum)
                if running_var is not None:
                    unbiased = var.detach().reshape(c) * (count / (count - 1))
                    running_var.mul_(1.0 - momentum).add_(unbiased * momentum)
        out = centered * (var + eps).rsqrt()
    else:
        if running_mean is None or running_var is None:
            raise OpError("batch_norm", "running_mean and running_var are needed when not "
                          "training", (input,))
        out = (input - running_mean.reshape(stat_shape)) * (
            running_var.reshape(stat_shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(stat_shape)
    if bias is not None:
        out = out + bias.reshape(stat_shape)
    return out if half is None else out.to(half)


# ---- embedding -------------------------------------------------------------------------

def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` picked by the integer tensor ``input`` (shape input.shape + [dim]).
    ``sparse=True`` gives the same gradient, dense (ember has no sparse layout: see
    ``ember.sparse``), so SGD and Adagrad steps equal torch's sparse ones.

    >>> F.embedding(ember.tensor([1, 0]), ember.eye(3)).shape
    ember.Size([2, 3])
    """
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise _not_tensor("embedding", input=input, weight=weight)
    if input.is_floating_point() or input.dtype is dtypes.bool_:
        raise OpError("embedding", f"expected an integer index tensor, got {input.dtype.name}",
                      (input, weight))
    # NumPy would wrap a negative index around: PyTorch's range check instead, as an op so
    # that a compiled replay checks each call's indices too.
    dispatch("check_index", input, bound=weight.shape[0], name="embedding",
             message="index out of range in self")
    if max_norm is not None:
        _embedding.embedding_renorm_(weight, input, max_norm, norm_type)
    out = weight[input]
    if scale_grad_by_freq:
        out = _embedding.scale_grad_by_freq(out, input)
    if padding_idx is not None:
        # The padding row's value is used, but it gets no gradient (as in PyTorch).
        if padding_idx < 0:
            padding_idx += weight.shape[0]
        keep = (input != padding_idx).unsqueeze(-1)
        out = where(keep, out, out.detach())
    return out


# ---- losses ----------------------------------------------------------------------------

@_amp.fp32_op   # float32 inside autocast, as PyTorch
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy of logits [N, C, ...] against class indices [N, ...] (or class
    probabilities shaped like the input).

    >>> F.cross_entropy(ember.zeros(2, 4), ember.tensor([0, 3]))
    tensor(1.3863)
    """
    if (not isinstance(input, Tensor) or not isinstance(target, Tensor)
            or not isinstance(weight, _MAYBE)):
        raise _not_tensor("cross_entropy", input=input, target=target, weight=weight)
    if weight is not None:
        check_same_dtype("cross_entropy", input, weight=weight)
    reduction = _reduction(size_average, reduce, reduction)
    class_dim = 0 if input.ndim == 1 else 1
    logp = input.log_softmax(class_dim)
    n_classes = input.shape[class_dim]
    if target.is_floating_point():  # class probabilities
        if tuple(target.shape) != tuple(input.shape):
            raise OpError("cross_entropy", f"probability targets must have the input's shape: "
                          f"input {shape_str(input)}, target {shape_str(target)}",
                          (input, target))
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        terms = logp * target
        if weight is not None:
            terms = terms * _class_view(weight, input.ndim, class_dim)
        loss = -terms.sum(class_dim)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        rows = input.numel() // n_classes
        return loss.sum() / rows if rows else loss.sum() * float("nan")
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing <= 0:
        return nll
    ignored = target == ignore_index
    terms = logp if weight is None else logp * _class_view(weight, input.ndim, class_dim)
    smooth = where(ignored, 0.0, -terms.sum(class_dim))
    if reduction == "sum":
        smooth = smooth.sum()
    elif reduction == "mean":
        if weight is None:
            smooth = smooth.sum() / (~ignored).sum()
        else:
            safe = where(ignored, 0, target)
            smooth = smooth.sum() / where(ignored, 0.0, weight[safe]).sum()
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / n_classes)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 ``[..., num_classes]``: 1 at each value's class, 0 elsewhere.
    ``num_classes=-1`` takes the largest value + 1 (read from the data: under
    ``ember.compile`` that value becomes a guard).

    >>> F.one_hot(ember.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    if not isinstance(tensor, Tensor):
        raise _not_tensor("one_hot", tensor=tensor)
    if num_classes == -1:
        if tensor.numel() == 0:
            raise OpError("one_hot", "Can not infer total number of classes from empty tensor.",
                          (tensor,))
        num_classes = int(tensor.max()) + 1
    return dispatch("one_hot", tensor, num_classes=int(num_classes))


@_amp.fp32_op   # float32 inside autocast, as PyTorch
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities [N, C, ...] at class indices [N, ...].

    >>> F.nll_loss(ember.tensor([[-1., -2.]]), ember.tensor([1]))
    tensor(2.)
    """
    if (not isinstance(input, Tensor) or not isinstance(target, Tensor)
            or not isinstance(weight, _MAYBE)):
        raise _not_tensor("nll_loss", input=input, target=target, weight=weight)
    reduction = _reduction(size_average, reduce, reduction)
    if input.ndim == 1:  # unbatched: [C] with a 0-dim target
        batch_shape = ()
        flat = input.reshape(1, -1)
    else:
        batch_shape = (input.shape[0],) + tuple(input.shape[2:])
        # Classes last, so each row of ``flat`` is one sample's log-probabilities.
        last = (0,) + tuple(range(2, input.ndim)) + (1,)
        flat = input.permute(last).reshape(-1, input.shape[1])
    if input.ndim == 0 or tuple(target.shape) != batch_shape:
        raise OpError("nll_loss", f"expected target of shape {list(batch_shape)} for input of "
                      f"shape {shape_str(input)}, but got {shape_str(target)}", (input, target))
    if target.is_floating_point() or target.dtype is dtypes.bool_:
        raise OpError("nll_loss", f"expected integer class indices as target, got "
                      f"{target.dtype.name}", (input, target))
    n_classes = flat.shape[1]
    dispatch("check_index", target, bound=n_classes, ignore=ignore_index, name="nll_loss",
             message="Target {} is out of bounds.")
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = where(valid, t, 0)
    if is_compiling() and flat.ndim == 2:
        # Compiled: the gather as a masked row sum (exact: one term, the rest zeros), so
        # it joins the row kernel that made ``flat`` (log_softmax's), and its gradient
        # is elementwise instead of a scatter. Eager keeps the cheaper gather.
        # int32 class numbers: the compare then runs at the float32 lanes' width.
        small = dtypes.int32 if n_classes < 2 ** 31 else dtypes.int64
        hit = (safe.to(small).unsqueeze(1)
               == arange(n_classes, dtype=small, device=flat.device))
        picked = where(hit, flat, 0.0).sum(1)
    else:
        picked = flat[arange(flat.shape[0], device=flat.device), safe]
    # An ignored entry's gradient is 0, as torch's, also when every entry is ignored (a
    # batch of padding: the mean is 0/0, and 0 * inf made NaN gradients that ruined the
    # weights): where() selects its 0 instead of multiplying by it.
    picked = where(valid, picked, 0.0)
    w = valid.to(flat.dtype)
    if weight is not None:
        if tuple(weight.shape) != (n_classes,):
            raise OpError("nll_loss", f"weight of shape {shape_str(weight)} does not match the "
                          f"{n_classes} classes", (input, weight))
        w = weight[safe] * w
    loss = -picked * w
    if reduction == "none":
        return loss.reshape(batch_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


@_amp.fp32_op   # float32 inside autocast, as PyTorch
def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
             reduction: str = "mean") -> Tensor:
    """Mean (or sum) of squared differences.

    >>> F.mse_loss(ember.tensor([1., 2.]), ember.tensor([1., 4.]))
    tensor(2.)
    """
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise _not_tensor("mse_loss", input=input, target=target)
    reduction = _reduction(size_average, reduce, reduction)
    diff = input - target
    return _reduce(diff * diff, reduction)


@_amp.fp32_op   # float32 inside autocast, as PyTorch
def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
            reduction: str = "mean") -> Tensor:
    """Mean (or sum) of absolute differences.

    >>> F.l1_loss(ember.tensor([1., 2.]), ember.tensor([1., 4.]))
    tensor(1.)
    """
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise _not_tensor("l1_loss", input=input, target=target)
    reduction = _reduction(size_average, reduce, reduction)
    return _reduce((input - target).abs(), reduction)


@_amp.fp32_op   # float32 inside autocast, as PyTorch
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities ``input``; logs clamp at -100 as
    in PyTorch.

    >>> F.binary_cross_entropy(ember.tensor([0.5]), ember.tensor([1.]))
    tensor(0.6931)
    """
    if (not isinstance(input, Tensor) or not isinstance(target, Tensor)
            or not isinstance(weight, _MAYBE)):
        raise _not_tensor("binary_cross_entropy", input=input, target=target, weight=weight)
    reduction = _reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise OpError("binary_cross_entropy", f"target {shape_str(target)} must have the "
                      f"input's shape {shape_str(input)}", (input, target))
    log_p = input.log().clamp(min=-100.0)
    log_q = (1 - input).log().clamp(min=-100.0)
    loss = -(target * log_p + (1 - target) * log_q)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@_amp.fp32_op   # float32 inside autocast, as PyTorch
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross entropy of sigmoid(input), computed stably from the logits.

    >>> F.binary_cross_entropy_with_logits(ember.tensor([0.]), ember.tensor([1.]))
    tensor(0.6931)
    """
    if (not isinstance(input, Tensor) or not isinstance(target, Tensor)
            or not isinstance(weight, _MAYBE) or not isinstance(pos_weight, _MAYBE)):
        raise _not_tensor("binary_cross_entropy_with_logits", input=input, target=target,
                          weight=weight, size_average=None, reduce=None, reduction=None,
                          pos_weight=pos_weight)
    reduction = _reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise OpError("binary_cross_entropy_with_logits", f"target {shape_str(target)} must "
                      f"have the input's shape {shape_str(input)}", (input, target))
    # log(1 + exp(-x)) = m + log(exp(-m) + exp(-x - m)) with m = max(-x, 0): never overflows.
    m = (-input).clamp(min=0)
    softplus_neg = m + ((-m).exp() + (-input - m).exp()).log()
    if pos_weight is not None:
        log_weight = (pos_weight - 1) * target + 1
        loss = (1 - target) * input + log_weight * softplus_neg
    else:
        loss = (1 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---- shape -----------------------------------------------------------------------------

def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one (``torch.flatten``).

    >>> F.flatten(ember.zeros(2, 3, 4), 1).shape
    ember.Size([2, 12])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("flatten", input=input)
    return input.flatten(start_dim, end_dim)


# ---- helpers ---------------------------------------------------------------------------

def _not_tensor(op: str, **args) -> TypeError:
    """PyTorch's error for the first argument that should be a tensor and is not (a NumPy
    array, a Python number): called only once a check has failed, so the common call
    pays one ``isinstance`` per tensor argument. Keywords come in PyTorch's order for
    ``op``; the ones that are not tensors by design (``normalized_shape``) are skipped."""
    for pos, (name, v) in enumerate(args.items(), 1):
        if v is not None and not isinstance(v, Tensor) and name in _TENSOR_ARGS:
            return TypeError(f"{op}(): argument '{name}' (position {pos}) must be Tensor, "
                             f"not {type_name(v)}")
    return TypeError(f"{op}(): expected Tensor arguments")


_MAYBE = (Tensor, type(None))   # an optional tensor argument: one isinstance


def half_as_float32(input: Tensor, *params):
    """For a norm: a float16/bfloat16 input and its parameters in float32, and the dtype
    to round the result to once (torch's norm kernels compute half inputs in float32 and
    return the input's dtype, float32 parameters or not); else all as given and None."""
    dt = input.dtype
    if not (dt.is_floating_point and dt.itemsize == 2):
        return (input, *params, None)
    return (input.float(), *(p if p is None or p.dtype is not dt else p.float()
                             for p in params), dt)
_TENSOR_ARGS = frozenset(("input", "weight", "bias", "target", "tensor", "running_mean",
                          "running_var", "pos_weight", "query", "key", "value", "attn_mask"))


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _out_size(n: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _conv_padding(padding, kernel: tuple[int, int], dilation: tuple[int, int],
                  stride: tuple[int, int]) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(t % 2 for t in total):
            raise NotImplementedError("padding='same' with an even effective kernel needs "
                                      "asymmetric padding, which is not supported")
        return total[0] // 2, total[1] // 2
    if isinstance(padding, str):
        raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                         "{'valid', 'same'}")
    return _pair(padding)


def _pool_setup(op: str, input: Tensor, kernel_size, stride, padding, dilation):
    """Batch a [C, H, W] input and work out a pooling's window geometry."""
    if input.ndim not in (3, 4):
        raise OpError(op, f"expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got "
                      f"{shape_str(input)}", (input,))
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    k = _pair(kernel_size)
    s = k if stride is None or stride == [] or stride == () else _pair(stride)
    p, d = _pair(padding), _pair(dilation)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise OpError(op, f"pad should be at most half of effective kernel size, but got "
                      f"pad={p} and kernel_size={k}", (input,))
    h, w = x.shape[2:]
    out = (_out_size(h, k[0], s[0], p[0], d[0]), _out_size(w, k[1], s[1], p[1], d[1]))
    if out[0] <= 0 or out[1] <= 0:
        raise OpError(op, f"kernel_size {k} is larger than the padded input "
                      f"({h + 2 * p[0]}, {w + 2 * p[1]})", (input,))
    return x, unbatched, (k, s, p, d, out)


def _softmax_dim(input: Tensor, dim: int | None) -> int:
    if dim is not None:
        return dim
    # PyTorch's legacy implicit choice (it also warns).
    return 0 if input.ndim in (0, 1, 3) else 1


def _class_view(weight: Tensor, ndim: int, class_dim: int) -> Tensor:
    shape = [1] * ndim
    shape[class_dim] = weight.shape[0]
    return weight.reshape(tuple(shape))


def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:  # PyTorch's deprecated arguments
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _stack(tensors: Sequence[Tensor], dim: int) -> Tensor:
    from ember.tensor import stack
    return stack(list(tensors), dim)


# ---- the rest, one file per kind in ember/nn/_functional/ (imported last) --------------
from ember.nn._functional import *  # noqa: E402,F401,F403
from ember.nn._functional import __all__ as _more, embedding as _embedding  # noqa: E402
from ember.nn._functional import ceil_pool as _ceil_pool  # noqa: E402

__all__ += _more
# embedding_bag, bilinear, grid_sample, affine_grid, conv3d and the 3-D pools (nn3's files).
from ember.nn._functional.more_nn import *  # noqa: E402,F401,F403
from ember.nn._functional.more_nn import __all__ as _nn3  # noqa: E402

__all__ += _nn3
# lp_pool*, max_pool*_with_indices, max_unpool3d and relu_/selu_/... (more_api.py).
from ember.nn._functional.more_api import *  # noqa: E402,F401,F403
from ember.nn._functional.more_api import __all__ as _more_api  # noqa: E402
# max_pool3d that also takes return_indices=True (MaxPool3d/MaxUnpool3d need the indices)
from ember.nn._functional.more_api import max_pool3d  # noqa: E402,F811

__all__ += _more_api
# MultiheadAttention's computation with its weights passed in (nn/attention.py).
from ember.nn.attention import multi_head_attention_forward  # noqa: E402

__all__ += ["multi_head_attention_forward"]
