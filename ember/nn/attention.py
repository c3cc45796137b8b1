"""MultiheadAttention with PyTorch's parameters, masks and outputs.

Parameters are named as in PyTorch (``in_proj_weight`` [3E, E] holding q, k, v stacked,
``in_proj_bias``, ``out_proj``; ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight``
when kdim or vdim differ from embed_dim), so a torch ``state_dict`` loads unchanged.

Unlike ``F.scaled_dot_product_attention``, a bool mask here marks with True the positions
that may NOT be attended (PyTorch's convention for this module): both ``attn_mask`` and
``key_padding_mask`` become additive float masks (-inf where True) and are summed.

>>> mha = nn.MultiheadAttention(8, 2)
>>> x = ember.randn(5, 3, 8)
>>> out, w = mha(x, x, x)
>>> out.shape, w.shape
(ember.Size([5, 3, 8]), ember.Size([3, 5, 5]))
"""
from __future__ import annotations

import contextlib
import enum
import math
from typing import Iterator, Optional

from ember import dtypes
from ember.nn import functional as F
from ember.nn import init
from ember.nn.linear import Linear
from ember.nn.module import Module, Parameter
from ember.tensor import Tensor, cat, empty, zeros

__all__ = ["MultiheadAttention", "SDPBackend", "sdpa_kernel", "multi_head_attention_forward"]


class SDPBackend(enum.IntEnum):
    """torch.nn.attention.SDPBackend: the attention kernels PyTorch can pick from."""

    ERROR = -1
    MATH = 0
    FLASH_ATTENTION = 1
    EFFICIENT_ATTENTION = 2
    CUDNN_ATTENTION = 3
    OVERRIDEABLE = 4


_SDP_FLAG = {SDPBackend.MATH: "math", SDPBackend.FLASH_ATTENTION: "flash",
             SDPBackend.EFFICIENT_ATTENTION: "mem_efficient",
             SDPBackend.CUDNN_ATTENTION: "cudnn"}


@contextlib.contextmanager
def sdpa_kernel(backends: list[SDPBackend] | SDPBackend,
                set_priority: bool = False) -> Iterator[dict]:
    """Enable only ``backends`` for scaled_dot_product_attention inside the block
    (torch.nn.attention.sdpa_kernel): ``ember.backends.cuda``'s ``*_sdp_enabled`` flags
    follow, and are restored after. ember has one attention implementation (eager or
    fused by ember.compile), used whatever the choice: results do not change.

    >>> with sdpa_kernel(SDPBackend.MATH):
    ...     out = F.scaled_dot_product_attention(q, k, v)
    """
    from ember.backends import cuda as _cuda
    if not isinstance(backends, (list, SDPBackend)):
        raise AssertionError("Backend must be an instance of SDPBackend or a list of "
                             f"SDPBackend instances, got {type(backends).__name__}")
    if isinstance(backends, SDPBackend):
        backends = [backends]
    chosen = {_SDP_FLAG.get(b) for b in dict.fromkeys(backends)}
    previous = dict(_cuda._sdp)
    try:
        for flag in _cuda._sdp:
            _cuda._sdp[flag] = flag in chosen
        yield {}
    finally:
        _cuda._sdp.update(previous)


class NonDynamicallyQuantizableLinear(Linear):
    """PyTorch's name for the output projection of MultiheadAttention (a plain Linear);
    kept so that module reprs and type names match."""


class MultiheadAttention(Module):
    """``Concat(head_1, ..., head_h) W_o`` with ``head_i = Attention(Q W_q_i, K W_k_i,
    V W_v_i)``.

    Inputs are [L, N, E] (or [N, L, E] with ``batch_first``, or unbatched [L, E]).
    Returns ``(attn_output, attn_weights)``; the weights are averaged over heads
    ([N, L, S]) unless ``average_attn_weights=False`` ([N, H, L, S]), and are None when
    ``need_weights=False``.

    >>> out, _ = nn.MultiheadAttention(8, 2, batch_first=True)(x, x, x, need_weights=False)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: Optional[int] = None, vdim: Optional[int] = None,
                 batch_first: bool = False, device=None, dtype=None) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        kw = dict(dtype=dtype, device=device)
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(empty(1, 1, embed_dim, **kw))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        batched = isinstance(query, Tensor) and query.ndim == 3
        if batched and self.batch_first:
            query, key, value = (t.transpose(0, 1) if isinstance(t, Tensor) else t
                                 for t in (query, key, value))
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight,
            self.in_proj_bias, self.bias_k, self.bias_v, self.add_zero_attn, self.dropout,
            self.out_proj.weight, self.out_proj.bias, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=self.q_proj_weight, k_proj_weight=self.k_proj_weight,
            v_proj_weight=self.v_proj_weight, average_attn_weights=average_attn_weights,
            is_causal=is_causal, _where="MultiheadAttention.forward()")
        if batched and self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return ""


def multi_head_attention_forward(
        query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Optional[Tensor], in_proj_bias: Optional[Tensor],
        bias_k: Optional[Tensor], bias_v: Optional[Tensor], add_zero_attn: bool,
        dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Optional[Tensor],
        training: bool = True, key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = True, attn_mask: Optional[Tensor] = None,
        use_separate_proj_weight: bool = False, q_proj_weight: Optional[Tensor] = None,
        k_proj_weight: Optional[Tensor] = None, v_proj_weight: Optional[Tensor] = None,
        static_k: Optional[Tensor] = None, static_v: Optional[Tensor] = None,
        average_attn_weights: bool = True, is_causal: bool = False,
        _where: str = "multi_head_attention_forward()") -> tuple[Tensor, Optional[Tensor]]:
    """``F.multi_head_attention_forward``: MultiheadAttention's computation with its
    weights passed in (CLIP's attention pooling calls it). Inputs are [L, N, E] (key and
    value [S, N, kdim/vdim]) or unbatched [L, E]; returns ``(out, weights)`` as the module.

    >>> w, b = ember.randn(24, 8), ember.zeros(24)
    >>> out, _ = F.multi_head_attention_forward(x, x, x, 8, 2, w, b, None, None, False,
    ...                                         0.0, ember.eye(8), None)
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_where}: argument '{name}' must be Tensor, not "
                            f"{type(t).__name__}")
    if query.ndim not in (2, 3):
        raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but "
                             f"received {query.ndim}-D query tensor")
    batched = query.ndim == 3
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise AssertionError(f"For {'batched (3-D)' if batched else 'unbatched (2-D)'} "
                             f"`query`, expected `key` and `value` to be "
                             f"{query.ndim}-D but found {key.ndim}-D and {value.ndim}-D "
                             f"tensors respectively")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use "
                           "the Transformer module method `generate_square_subsequent_mask`"
                           " to create this mask.")
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    L, N, E = query.shape
    S = key.shape[0]
    H = num_heads
    hd = E // H
    if E != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, "
                             f"but got {E}")
    if hd * H != E:
        raise AssertionError(f"embed_dim {E} not divisible by num_heads {H}")
    if not use_separate_proj_weight:
        if tuple(key.shape) != tuple(value.shape):
            raise AssertionError(f"key shape {tuple(key.shape)} does not match value "
                                 f"shape {tuple(value.shape)}")
        w_q, w_k, w_v = in_proj_weight.chunk(3)
    else:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(f"key's sequence and batch dims {tuple(key.shape[:2])} do "
                                 f"not match value's {tuple(value.shape[:2])}")
        w_q, w_k, w_v = q_proj_weight, k_proj_weight, v_proj_weight
    b_q = b_k = b_v = None
    if in_proj_bias is not None:
        b_q, b_k, b_v = in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q)
    k = F.linear(key, w_k, b_k)
    v = F.linear(value, w_v, b_v)

    mask = _attn_mask(attn_mask, q.dtype, L, S, N * H)
    if key_padding_mask is not None:
        for d, want in enumerate((N, S)):
            if key_padding_mask.ndim != 2 or key_padding_mask.shape[d] != want:
                got = (key_padding_mask.shape[d] if key_padding_mask.ndim == 2
                       else list(key_padding_mask.shape))
                raise AssertionError(f"Expected key_padded_mask.shape[{d}] to be {want}, "
                                     f"but got {got}")
    kpm = _as_float_mask(key_padding_mask, q.dtype, "key_padding_mask")
    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise AssertionError("bias cannot be added to static key or value.")
        k = cat([k, bias_k.expand(1, N, E)], 0)
        v = cat([v, bias_v.expand(1, N, E)], 0)
        mask = _pad_last(mask)
        kpm = _pad_last(kpm)
    q = q.reshape(L, N * H, hd).transpose(0, 1)             # [N*H, L, hd]
    k = k.reshape(k.shape[0], N * H, hd).transpose(0, 1) if static_k is None else static_k
    v = v.reshape(v.shape[0], N * H, hd).transpose(0, 1) if static_v is None else static_v
    for name, t in (("key", static_k), ("value", static_v)):
        if t is not None and (t.ndim != 3 or t.shape[0] != N * H or t.shape[2] != hd):
            raise AssertionError(f"expecting static_{name} of shape [{N * H}, S, {hd}], "
                                 f"but got {list(t.shape)}")
    if add_zero_attn:
        k = cat([k, zeros(N * H, 1, hd, dtype=k.dtype, device=k.device)], 1)
        v = cat([v, zeros(N * H, 1, hd, dtype=v.dtype, device=v.device)], 1)
        mask = _pad_last(mask)
        kpm = _pad_last(kpm)
    S = k.shape[1]
    if kpm is not None:
        kpm = kpm.reshape(N, 1, 1, S).expand(N, H, 1, S).reshape(N * H, 1, S)
        mask = kpm if mask is None else mask + kpm

    scores = (q * (1.0 / math.sqrt(hd))).matmul(k.transpose(1, 2))   # [N*H, L, S]
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(-1)
    if training and dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, True)
    out = weights.matmul(v)                                          # [N*H, L, hd]
    out = out.transpose(0, 1).reshape(L * N, E)
    # (the output projection may change the width: CLIP's attention pooling, 256 -> 16)
    out = F.linear(out, out_proj_weight, out_proj_bias).reshape(L, N, -1)
    if need_weights:
        weights = weights.reshape(N, H, L, S)
        if average_attn_weights:
            weights = weights.mean(1)
    else:
        weights = None
    if not batched:
        out = out.squeeze(1)
        weights = weights.squeeze(0) if weights is not None else None
    return out, weights


def _attn_mask(attn_mask, dtype, L: int, S: int, NH: int) -> Optional[Tensor]:
    mask = _as_float_mask(attn_mask, dtype, "attn_mask")
    if mask is None:
        return None
    if mask.ndim == 2:
        if tuple(mask.shape) != (L, S):
            raise RuntimeError(f"The shape of the 2D attn_mask is {mask.shape}, but "
                               f"should be {(L, S)}.")
        return mask.unsqueeze(0)
    if mask.ndim == 3:
        if tuple(mask.shape) != (NH, L, S):
            raise RuntimeError(f"The shape of the 3D attn_mask is {mask.shape}, but "
                               f"should be {(NH, L, S)}.")
        return mask
    raise RuntimeError(f"attn_mask's dimension {mask.ndim} is not supported")


def _as_float_mask(mask: Optional[Tensor], dtype, name: str) -> Optional[Tensor]:
    """A bool mask (True = masked out) as an additive float mask: -inf where True."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a Tensor, not {type(mask).__name__}")
    if mask.dtype is dtypes.bool_:
        return zeros(*mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf"))
    if not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return mask.to(dtype)


def _pad_last(mask: Optional[Tensor]) -> Optional[Tensor]:
    """One more key column, which takes part (0 added to its scores)."""
    if mask is None:
        return None
    pad = zeros(*mask.shape[:-1], 1, dtype=mask.dtype, device=mask.device)
    return cat([mask, pad], -1)
