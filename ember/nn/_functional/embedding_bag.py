"""embedding_bag and bilinear, composed from registry ops.

A bag reduction never reads index values on the host: each looked-up row's bag number is
a cumulative sum of marks put at the offsets (``index_add`` then ``cumsum``), and the bags
are summed with ``index_add``. ``max`` takes the bag maxima with ``scatter_reduce`` (no
gradient) and then sums, differentiably, only the first row that reaches each maximum, so
the gradient goes to that row as in PyTorch. So ``ember.compile`` traces it whole.

>>> import ember.nn.functional as F
>>> F.embedding_bag(ember.tensor([1, 2, 4, 5]), ember.randn(10, 3), ember.tensor([0, 2])).shape
ember.Size([2, 3])
"""
from __future__ import annotations

from typing import Optional

from ember import dtypes
from ember.autograd import no_grad
from ember.tensor import Tensor, arange, cat, where, zeros

__all__ = ["embedding_bag", "bilinear"]


def _bag_ids(offsets: Tensor, n: int) -> Tensor:
    """The bag of each of ``n`` looked-up rows: the number of offsets at or before it,
    minus one (empty bags are skipped naturally: their offsets repeat)."""
    marks = zeros(n + 1, device=offsets.device).index_add(
        0, offsets.clamp(0, n), zeros(offsets.shape[0], device=offsets.device) + 1.0)
    return (marks[:n].cumsum(0) - 1.0).to(dtypes.int64)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Optional[Tensor] = None,
                  max_norm: Optional[float] = None, norm_type: float = 2,
                  scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
                  per_sample_weights: Optional[Tensor] = None,
                  include_last_offset: bool = False,
                  padding_idx: Optional[int] = None) -> Tensor:
    """Sums, means or maxima of bags of embedding rows, without the per-row intermediate.

    ``input`` [B, N] holds B bags of N indices; a 1-D ``input`` is cut into bags at
    ``offsets``. Rows equal to ``padding_idx`` are left out; an empty bag gives zeros.

    >>> w = ember.arange(6.).reshape(3, 2)
    >>> F.embedding_bag(ember.tensor([[0, 2], [1, 1]]), w, mode="sum")
    tensor([[4., 6.],
            [4., 6.]])
    """
    from ember.nn.functional import _not_tensor, embedding
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise _not_tensor("embedding_bag", input=input, weight=weight)
    if weight.ndim != 2:
        raise ValueError(f"weight has to be a 2D Tensor, but got Tensor of dimension "
                         f"{weight.ndim}")
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, but got {mode}")
    # (``sparse=True``: the same gradient, dense, as ``F.embedding``'s)
    if per_sample_weights is not None and tuple(input.shape) != tuple(per_sample_weights.shape):
        raise ValueError(f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) "
                         f"is not None, then it must have the same shape as the input "
                         f"({input.shape})")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. "
                                  f"per_sample_weights is only supported for mode='sum' (got "
                                  f"mode='{mode}'). Please open a feature request on the "
                                  f"Pytorch GitHub.")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is "
                             "treated is a mini-batch of fixed length sequences. However, "
                             f"found offsets of type {type(offsets).__name__}")
        bags, per = input.shape
        offsets = arange(0, bags * per, max(per, 1), dtype=dtypes.int64, device=input.device)
        input = input.reshape(-1)
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights.reshape(-1)
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension "
                         f"{input.ndim}")
    if offsets.is_floating_point():
        raise RuntimeError("embedding_bag: expected offsets to be an integer tensor")
    n = input.shape[0]
    num_bags = offsets.shape[0] - (1 if include_last_offset else 0)
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    rows = embedding(input, weight, None, max_norm, norm_type, scale_grad_by_freq)   # [n, D]
    bag = _bag_ids(offsets[:num_bags], n)
    valid = None
    if padding_idx is not None:
        valid = input != padding_idx
    if include_last_offset:
        inside = arange(n, device=input.device) < offsets[num_bags]
        valid = inside if valid is None else valid & inside
    # An element before the first offset (offsets[0] > 0) belongs to no bag (bag id -1).
    in_bag = bag >= 0
    valid = in_bag if valid is None else valid & in_bag
    bag = bag.clamp(0, None)
    dim = weight.shape[1]
    out_shape = (num_bags, dim)
    keep = valid.unsqueeze(-1)
    if mode == "max":
        with no_grad():
            masked = where(keep, rows, float("-inf"))
            index = bag.unsqueeze(-1).expand(n, dim)
            top = zeros(out_shape, dtype=weight.dtype, device=weight.device).fill_(
                float("-inf")).scatter_reduce(0, index, masked.detach(), reduce="amax")
            is_max = (masked == top[bag]) & keep
            # The first maximum of each bag and column: its running count within the bag.
            count = is_max.to(weight.dtype).cumsum(0)
            before = cat([zeros(1, dim, dtype=weight.dtype, device=weight.device), count], 0)
            start = before[offsets[:num_bags].clamp(0, n)]
            first = is_max & ((count - start[bag]) == 1)
        picked = where(first, rows, 0.0)
        return zeros(out_shape, dtype=weight.dtype, device=weight.device).index_add(
            0, bag, picked)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.unsqueeze(-1)
    rows = where(keep, rows, 0.0)
    total = zeros(out_shape, dtype=rows.dtype, device=weight.device).index_add(0, bag, rows)
    if mode == "sum":
        return total
    counts = zeros(num_bags, dtype=rows.dtype, device=weight.device).index_add(
        0, bag, valid.to(rows.dtype))
    return total / counts.clamp(1.0, None).unsqueeze(-1)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor,
             bias: Optional[Tensor] = None) -> Tensor:
    """``y[..., o] = x1 A[o] x2 + b[o]`` for weight A [out, in1, in2].

    >>> F.bilinear(ember.ones(2, 3), ember.ones(2, 4), ember.ones(5, 3, 4)).shape
    ember.Size([2, 5])
    """
    from ember.nn.functional import _MAYBE, _not_tensor
    if (not isinstance(input1, Tensor) or not isinstance(input2, Tensor)
            or not isinstance(weight, Tensor) or not isinstance(bias, _MAYBE)):
        raise _not_tensor("bilinear", input1=input1, input2=input2, weight=weight, bias=bias)
    if weight.ndim != 3:
        raise RuntimeError(f"bilinear(): weight must be 3-dimensional, got {weight.ndim}")
    out, in1, in2 = weight.shape
    if input1.shape[-1] != in1:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got "
                           f"{input1.shape[-1]} but expected {in1}")
    if input2.shape[-1] != in2:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got "
                           f"{input2.shape[-1]} but expected {in2}")
    if tuple(input1.shape[:-1]) != tuple(input2.shape[:-1]):
        raise RuntimeError(f"bilinear(): input batch dimensions do not match: got "
                           f"{list(input1.shape[:-1])} and {list(input2.shape[:-1])}")
    # x1 @ A as one matmul: [..., in1] x [in1, out*in2], then the dot with x2.
    a = weight.permute(1, 0, 2).reshape(in1, out * in2)
    t = input1.matmul(a).reshape(tuple(input1.shape[:-1]) + (out, in2))
    y = (t * input2.unsqueeze(-2)).sum(-1)
    return y if bias is None else y + bias
