"""``F.scaled_dot_product_attention``: attention written as matmul, softmax and where."""
from __future__ import annotations

import math

from ember import dtypes
from ember.amp import state as _amp
from ember.errors import OpError, shape_str
from ember.tensor import Tensor, arange, where

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """``softmax(q @ k^T * scale + mask) @ v`` over [..., L, E] queries and [..., S, E] keys.

    A bool ``attn_mask`` marks with True the pairs that take part (False ones get -inf);
    a float mask is added to the scores. ``is_causal`` masks the upper triangle (aligned
    at the top left, as PyTorch). Dropout is applied whenever ``dropout_p > 0``, as in
    PyTorch (modules pass 0 in eval mode). Written as matmul, softmax and where, so it
    fuses and differentiates like any composite.

    >>> q = ember.randn(2, 4, 8)
    >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    ember.Size([2, 4, 8])
    """
    from ember.nn.functional import _MAYBE, _not_tensor, dropout
    if (not isinstance(query, Tensor) or not isinstance(key, Tensor)
            or not isinstance(value, Tensor) or not isinstance(attn_mask, _MAYBE)):
        raise _not_tensor("scaled_dot_product_attention", query=query, key=key, value=value,
                          attn_mask=attn_mask)
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise OpError("scaled_dot_product_attention", f"expected query, key and value of at "
                      f"least 2 dims, got {shape_str(query)}, {shape_str(key)}, "
                      f"{shape_str(value)}", (query, key, value))
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise OpError("scaled_dot_product_attention", f"query {shape_str(query)}, key "
                      f"{shape_str(key)} and value {shape_str(value)} do not fit: query and key "
                      f"need the same last dim, key and value the same sequence length",
                      (query, key, value))
    if not (query.dtype is key.dtype is value.dtype) and not _amp.state.modes:
        raise OpError("scaled_dot_product_attention", f"Expected query, key, and value to "
                      f"have the same dtype, but got query.dtype: {query.dtype.name} "
                      f"key.dtype: {key.dtype.name} and value.dtype: {value.dtype.name} "
                      f"instead.", (query, key, value))
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be "
                           "set when is_causal=True")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = _repeat_heads(key, groups)
        value = _repeat_heads(value, groups)
    L, S = query.shape[-2], key.shape[-2]
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query.matmul(key.transpose(-2, -1)) * scale_factor
    if is_causal:
        rows = arange(L, device=query.device).unsqueeze(1)
        cols = arange(S, device=query.device).unsqueeze(0)
        scores = where(rows >= cols, scores, float("-inf"))
    elif attn_mask is not None:
        # A query whose every key is masked (padding, as NaViT packs images) attends to
        # nothing: torch gives it zeros, where a plain softmax of -inf gives NaN and NaN
        # gradients everywhere. Its scores become zeros, so no NaN reaches the backward,
        # and its weights are zeroed below.
        if attn_mask.dtype is dtypes.bool_:
            live = attn_mask.any(-1, keepdim=True)
            scores = where(attn_mask, scores, float("-inf"))
        else:
            live = (attn_mask != float("-inf")).any(-1, keepdim=True)
            scores = scores + attn_mask
        scores = where(live, scores, 0.0)
    weights = scores.softmax(-1)
    if attn_mask is not None and not is_causal:
        weights = where(live, weights, 0.0)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return weights.matmul(value)


def _repeat_heads(t: Tensor, groups: int) -> Tensor:
    """[..., Hkv, S, E] -> [..., Hkv*groups, S, E], each head repeated ``groups`` times in
    place (``repeat_interleave`` on the head dim)."""
    lead, (h, s, e) = t.shape[:-3], t.shape[-3:]
    t = t.unsqueeze(-3).expand(*lead, h, groups, s, e)
    return t.reshape(*lead, h * groups, s, e)
