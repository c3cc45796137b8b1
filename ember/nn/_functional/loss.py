"""Losses beyond those in functional.py: smooth_l1_loss, huber_loss, kl_div,
soft_margin_loss, cosine_similarity, cosine_embedding_loss, margin_ranking_loss,
hinge_embedding_loss, poisson_nll_loss, gaussian_nll_loss, triplet_margin_loss.

>>> import ember.nn.functional as F
>>> F.smooth_l1_loss(ember.tensor([0.0, 3.0]), ember.tensor([0.5, 0.0]))
tensor(1.3125)
"""
from __future__ import annotations

import math
import warnings

from ember.errors import OpError, shape_str
from ember.tensor import Tensor, where

__all__ = ["smooth_l1_loss", "huber_loss", "kl_div", "soft_margin_loss", "cosine_similarity",
           "cosine_embedding_loss", "margin_ranking_loss", "hinge_embedding_loss",
           "poisson_nll_loss", "gaussian_nll_loss", "pairwise_distance",
           "triplet_margin_loss", "normalize"]


def _args(op: str, input, target, size_average=None, reduce=None,
          reduction: str = "mean") -> str:
    from ember.nn.functional import _not_tensor, _reduction
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise _not_tensor(op, input=input, target=target)
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size ({list(target.shape)}) that is different to the "
                      f"input size ({list(input.shape)}). This will likely lead to incorrect "
                      "results due to broadcasting. Please ensure they have the same size.",
                      stacklevel=3)
    return _reduction(size_average, reduce, reduction)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    from ember.nn.functional import _reduce as reduce_
    return reduce_(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target).

    >>> F.smooth_l1_loss(ember.tensor([2.0]), ember.tensor([0.0]), beta=0.5)
    tensor(1.7500)
    """
    reduction = _args("smooth_l1_loss", input, target, size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    d = (input - target).abs()
    if beta == 0.0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).

    >>> F.huber_loss(ember.tensor([2.0]), ember.tensor([0.0]), delta=0.5)
    tensor(0.8750)
    """
    reduction = _args("huber_loss", input, target, None, None, reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    d = (input - target).abs()
    loss = where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """Pointwise KL divergence target * (log target - input), ``input`` being
    log-probabilities (and ``target`` too with ``log_target``). ``reduction="batchmean"``
    divides the sum by the batch size (the mathematically right KL); ``"mean"`` averages
    over every element, as PyTorch (which warns).

    >>> F.kl_div(ember.tensor([[-1.0, -1.0]]), ember.tensor([[0.5, 0.5]]), reduction="batchmean")
    tensor(0.3069)
    """
    from ember.nn.functional import _not_tensor, _reduction
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise _not_tensor("kl_div", input=input, target=target)
    if reduction == "batchmean":
        if size_average is not None or reduce is not None:
            reduction = _reduction(size_average, reduce, "mean")
    else:
        reduction = _reduction(size_average, reduce, reduction)
        if reduction == "mean":
            warnings.warn("reduction: 'mean' divides the total loss by both the batch size and "
                          "the support size.'batchmean' divides only by the batch size, and "
                          "aligns with the KL div math definition.'mean' will be changed to "
                          "behave the same as 'batchmean' in the next major release.",
                          stacklevel=2)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        # xlogy(t, t): 0 where t == 0; log only ever sees positive values, so neither the
        # value nor the gradient of the unselected branch can be nan.
        positive = target > 0
        safe = where(positive, target, 1.0)
        loss = where(positive, target * safe.log(), 0.0) - target * input
    if reduction == "batchmean":
        total = loss.sum()
        return total / input.shape[0] if input.ndim != 0 else total
    return _reduce(loss, reduction)


def soft_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                     reduction: str = "mean") -> Tensor:
    """log(1 + exp(-y x)) for targets y in {-1, 1}. ``F.soft_margin_loss(x, y)``."""
    reduction = _args("soft_margin_loss", input, target, size_average, reduce, reduction)
    z = -target * input
    return _reduce(z.clamp(min=0.0) + (-z.abs()).exp().log1p(), reduction)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Tensor | None = None) -> Tensor:
    """input / max(||input||_p along dim, eps). ``F.normalize(x, dim=-1)``."""
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported")
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """<x1, x2> / max(||x1|| ||x2||, eps) along ``dim``. ``F.cosine_similarity(a, b)``."""
    dot = (x1 * x2).sum(dim)
    n1 = (x1 * x1).sum(dim)
    n2 = (x2 * x2).sum(dim)
    return dot / (n1 * n2).clamp(min=eps * eps).sqrt()


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) for y = 1, max(0, cos(x1, x2) - margin) for y = -1."""
    from ember.nn.functional import _reduction
    reduction = _reduction(size_average, reduce, reduction)
    eps = 1e-12  # PyTorch's EPSILON in the norms
    dot = (input1 * input2).sum(-1)
    mag = ((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps)
    cos = dot / mag.sqrt()
    loss = where(target == 1, 1.0 - cos, 0.0) + where(target == -1, (cos - margin).clamp(min=0),
                                                      0.0)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """max(0, -y (x1 - x2) + margin). ``F.margin_ranking_loss(a, b, y)``."""
    from ember.nn.functional import _reduction
    reduction = _reduction(size_average, reduce, reduction)
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0.0), reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """x for y = 1, max(0, margin - x) for y = -1."""
    from ember.nn.functional import _reduction
    reduction = _reduction(size_average, reduce, reduction)
    loss = where(target == 1, input, 0.0) + where(target == -1, (margin - input).clamp(min=0.0),
                                                  0.0)
    return _reduce(loss, reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average=None, eps: float = 1e-8, reduce=None,
                     reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of a Poisson with rate exp(input) (or input)."""
    reduction = _args("poisson_nll_loss", input, target, size_average, reduce, reduction)
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * (input + eps).log()
    if full:
        safe = where(target > 1, target, 2.0)
        stirling = safe * safe.log() - safe + 0.5 * (2 * math.pi * safe).log()
        loss = loss + where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor | float, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """0.5 (log max(var, eps) + (input - target)^2 / max(var, eps)) (+ 0.5 log 2 pi)."""
    from ember.nn.functional import _reduction
    reduction = _reduction(None, None, reduction)
    if not isinstance(var, Tensor):
        var = input.new_full(tuple(input.shape), float(var))
    elif tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):      # one variance per sample
            var = var.unsqueeze(-1)
        elif not (tuple(input.shape[:-1]) == tuple(var.shape[:-1]) and var.shape[-1] == 1):
            raise ValueError("var is of incorrect size")
    if (var < 0).any():
        raise ValueError("var has negative entry/entries")
    from ember.autograd import no_grad
    with no_grad():
        floor = var.clamp(min=eps) - var  # clamp without gradient, as PyTorch does
    var = var + floor
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p along the last dim. ``F.pairwise_distance(a, b)``."""
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False, size_average=None,
                        reduce=None, reduction: str = "mean") -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0) with d the p-norm distance."""
    from ember.nn.functional import _reduction
    reduction = _reduction(size_average, reduce, reduction)
    if anchor.ndim != positive.ndim or anchor.ndim != negative.ndim:
        raise OpError("triplet_margin_loss", f"anchor {shape_str(anchor)}, positive "
                      f"{shape_str(positive)} and negative {shape_str(negative)} must have the "
                      "same number of dimensions", (anchor, positive, negative))
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = d_neg.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).clamp(min=0.0), reduction)
