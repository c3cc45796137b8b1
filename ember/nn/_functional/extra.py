"""Functional forms of the rarer layers: hard/soft shrinkage, randomized leaky ReLU,
local response normalization, channel shuffle, max unpooling, and the multi-label and
multi-class margin losses. Compositions of ember ops (autograd and ``ember.compile``
work for them), PyTorch's signatures and defaults.

>>> F.hardshrink(ember.tensor([-1.0, 0.2, 0.7]))
tensor([-1.0000,  0.0000,  0.7000])
"""
from __future__ import annotations

from ember.errors import OpError, shape_str
from ember.tensor import Tensor, arange, rand_like, where

__all__ = ["hardshrink", "softshrink", "rrelu", "rrelu_", "local_response_norm",
           "channel_shuffle", "max_unpool1d", "max_unpool2d", "multilabel_soft_margin_loss",
           "multi_margin_loss", "multilabel_margin_loss", "triplet_margin_with_distance_loss"]


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """0 where |x| <= lambd, else x (a NaN stays NaN, as torch)."""
    return where(input.abs() <= lambd, 0.0, input)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """0 where |x| <= lambd, x - lambd above it, x + lambd below -lambd (a NaN stays NaN
    and passes its gradient, as torch)."""
    return where(input.abs() <= lambd, 0.0,
                 where(input > lambd, input - lambd, input + lambd))


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
          training: bool = False, inplace: bool = False) -> Tensor:
    """Leaky ReLU whose negative slope is drawn from U(lower, upper) per element in
    training, and is (lower + upper) / 2 in evaluation."""
    if training:
        slope = rand_like(input) * (upper - lower) + lower
    else:
        slope = (lower + upper) / 2
    out = where(input >= 0, input, input * slope)
    if inplace:
        return input.copy_(out)
    return out


def rrelu_(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
           training: bool = False) -> Tensor:
    """``rrelu`` in place."""
    return rrelu(input, lower, upper, training, inplace=True)


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + alpha * mean of x^2 over ``size`` neighbouring channels) ** beta, as
    AlexNet's (and PyTorch's: the window is zero-padded, the mean divides by ``size``)."""
    if input.ndim < 3:
        raise OpError("local_response_norm", f"expected 3 or more dims (got input of shape "
                      f"{shape_str(input)})", (input,))
    c = input.shape[1]
    sq = input * input
    lead, trail = size // 2, (size - 1) // 2
    pad_shape = list(sq.shape)
    parts = []
    if lead:
        pad_shape[1] = lead
        parts.append(sq.new_zeros(pad_shape))
    parts.append(sq)
    if trail:
        pad_shape[1] = trail
        parts.append(sq.new_zeros(pad_shape))
    from ember.tensor import cat
    padded = cat(parts, 1) if len(parts) > 1 else sq
    window = padded.narrow(1, 0, c)
    for i in range(1, size):
        window = window + padded.narrow(1, i, c)
    return input / (window * (alpha / size) + k) ** beta


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet): [N, g*c, ...] viewed as
    [N, g, c, ...], transposed to [N, c, g, ...]."""
    n, ch = input.shape[0], input.shape[1]
    if ch % groups:
        raise OpError("channel_shuffle", f"number of channels ({ch}) must be divisible by "
                      f"groups ({groups})", (input,))
    rest = tuple(input.shape[2:])
    return input.reshape(n, groups, ch // groups, *rest).transpose(1, 2).reshape(
        n, ch, *rest)


def _unpool_size(sizes, kernel, stride, padding, output_size, dims: int) -> tuple:
    if output_size is not None:
        out = tuple(output_size)[-dims:]
        return out
    return tuple((s - 1) * st - 2 * p + k for s, k, st, p in zip(sizes, kernel, stride, padding))


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The partial inverse of ``max_pool2d(..., return_indices=True)``: each value back
    at its index in an [oh, ow] plane of zeros."""
    k = _tuple(kernel_size, 2)
    s = _tuple(stride if stride is not None else kernel_size, 2)
    oh, ow = _unpool_size(input.shape[-2:], k, s, _tuple(padding, 2), output_size, 2)
    lead = tuple(input.shape[:-2])
    flat = input.reshape(*lead, -1)
    out = flat.new_zeros(*lead, oh * ow).scatter(-1, indices.reshape(*lead, -1), flat)
    return out.reshape(*lead, oh, ow)


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The partial inverse of ``max_pool1d(..., return_indices=True)``."""
    k, s, p = (_tuple(v, 1)[0] for v in (kernel_size, stride if stride is not None
                                         else kernel_size, padding))
    size = output_size[-1] if output_size is not None else (input.shape[-1] - 1) * s - 2 * p + k
    out = input.new_zeros(*input.shape[:-1], size).scatter(-1, indices, input)
    return out


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average=None, reduce=None,
                                reduction: str = "mean") -> Tensor:
    """Per sample, the mean over classes of the binary logistic loss of each label."""
    from ember.nn.functional import _reduction, logsigmoid
    reduction = _reduction(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), reduction)


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average=None, reduce=None,
                      reduction: str = "mean") -> Tensor:
    """Per sample, sum over j != y of max(0, margin - x[y] + x[j]) ** p, divided by the
    number of classes (and weighted by weight[y])."""
    from ember.nn.functional import _reduction
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    reduction = _reduction(size_average, reduce, reduction)
    x = input if input.ndim == 2 else input.reshape(1, -1)
    y = target.reshape(-1, 1)
    picked = x.gather(1, y)
    terms = (margin - picked + x).clamp(min=0)
    if p == 2:
        terms = terms * terms
    if weight is not None:
        terms = terms * weight[y]
    others = y != arange(x.shape[1], device=x.device).reshape(1, -1)
    loss = where(others, terms, 0.0).sum(1) / x.shape[1]
    loss = loss if input.ndim == 2 else loss.reshape(())
    return _reduce(loss, reduction)


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                           reduction: str = "mean") -> Tensor:
    """Per sample, over each target class j (``target`` lists them, ended by -1) and
    each other class k: max(0, 1 - (x[j] - x[k])), summed and divided by the classes."""
    from ember.nn.functional import _reduction
    reduction = _reduction(size_average, reduce, reduction)
    x = input if input.ndim == 2 else input.reshape(1, -1)
    t = target if target.ndim == 2 else target.reshape(1, -1)
    c = x.shape[1]
    valid = (t >= 0).to(x.dtype).cumprod(1) > 0          # entries before the first -1
    safe = where(valid, t, 0)
    classes = arange(c, device=x.device).reshape(1, 1, c)
    listed = ((safe.unsqueeze(2) == classes) & valid.unsqueeze(2)).any(1)   # [N, C]
    xj = x.gather(1, safe)                                                  # [N, T]
    hinge = (1 - (xj.unsqueeze(2) - x.unsqueeze(1))).clamp(min=0)           # [N, T, C]
    keep = valid.unsqueeze(2) & ~listed.unsqueeze(1)
    loss = where(keep, hinge, 0.0).sum((1, 2)) / c
    loss = loss if input.ndim == 2 else loss.reshape(())
    return _reduce(loss, reduction)


def triplet_margin_with_distance_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *,
                                      distance_function=None, margin: float = 1.0,
                                      swap: bool = False, reduction: str = "mean") -> Tensor:
    """max(0, d(a, p) - d(a, n) + margin) with any distance (pairwise L2 by default)."""
    from ember.nn.functional import pairwise_distance
    d = distance_function if distance_function is not None else pairwise_distance
    pos, neg = d(anchor, positive), d(anchor, negative)
    if swap:
        neg = neg.minimum(d(positive, negative))
    return _reduce((pos - neg + margin).clamp(min=0), reduction)
