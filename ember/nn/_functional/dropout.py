"""Channel dropout (dropout1d/2d/3d: whole channels zeroed) and alpha dropout.

>>> import ember.nn.functional as F
>>> F.dropout2d(ember.ones(2, 3, 4, 4), 0.5, training=False).shape
ember.Size([2, 3, 4, 4])
"""
from __future__ import annotations

import math
import warnings

from ember.errors import OpError, shape_str
from ember.tensor import Tensor, rand

__all__ = ["dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"]


def _check(op: str, input, p: float) -> None:
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor(op, input=input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _channel_dropout(op: str, input: Tensor, p: float, training: bool, inplace: bool,
                     spatial: int) -> Tensor:
    _check(op, input, p)
    if input.ndim not in (spatial + 1, spatial + 2):
        raise OpError(op, f"{op}: Expected {spatial + 1}D or {spatial + 2}D input, but "
                      f"received a {input.ndim}D input of shape {shape_str(input)}", (input,))
    if not training or p == 0.0:
        return input
    batched = input.ndim == spatial + 2
    channels = input.shape[:2] if batched else input.shape[:1]
    shape = tuple(channels) + (1,) * (input.ndim - len(channels))
    # One draw per channel (a random primitive: a compiled trace draws afresh each call).
    keep = rand(*shape, dtype=input.dtype, device=input.device) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    out = input * keep.to(input.dtype) * scale
    return input.copy_(out) if inplace else out


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of [N, C, L] (or [C, L]) with probability ``p``."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 1)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of [N, C, H, W] (or [C, H, W]) with probability ``p``."""
    if isinstance(input, Tensor) and input.ndim == 2:   # (pytorch/examples' mnist_rnn)
        warnings.warn("dropout2d: Received a 2-D input to dropout2d, which is deprecated and "
                      "will result in an error in a future release. To retain the behavior "
                      "and silence this warning, please use dropout instead. Note that "
                      "dropout2d exists to provide channel-wise dropout on inputs with 2 "
                      "spatial dimensions, a channel dimension, and an optional batch "
                      "dimension (i.e. 3D or 4D inputs).", stacklevel=2)
        from ember.nn.functional import dropout   # each element is a channel, as torch
        return dropout(input, p, training, inplace)
    if isinstance(input, Tensor) and input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-"
                      "wise 1D dropout behavior is desired - input is interpreted as shape "
                      "(N, C, L), where C is the channel dim. This behavior will change in a "
                      "future release to interpret the input as one without a batch dimension, "
                      "i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, "
                      "please switch to using dropout1d instead.", stacklevel=2)
        return _channel_dropout("dropout2d", input, p, training, inplace, 1)
    return _channel_dropout("dropout2d", input, p, training, inplace, 2)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of [N, C, D, H, W] (or [C, D, H, W]) with probability ``p``."""
    return _channel_dropout("dropout3d", input, p, training, inplace, 3)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _alpha(op: str, input: Tensor, p: float, training: bool, inplace: bool,
           feature: bool) -> Tensor:
    _check(op, input, p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
        return input.copy_(out) if inplace else out
    # PyTorch's alpha dropout: dropped values go to SELU's negative saturation, then an
    # affine map keeps mean 0 and variance 1.
    alpha_p = -_SELU_ALPHA * _SELU_SCALE
    a = 1.0 / math.sqrt((alpha_p * alpha_p * p + 1) * (1 - p))
    b = -a * alpha_p * p
    shape = (tuple(input.shape[:2]) + (1,) * (input.ndim - 2)) if feature else input.shape
    keep = (rand(*shape, dtype=input.dtype, device=input.device) >= p).to(input.dtype)
    out = (input * keep + alpha_p * (1.0 - keep)) * a + b
    return input.copy_(out) if inplace else out


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                  inplace: bool = False) -> Tensor:
    """Dropout that keeps SELU's self-normalization. ``F.alpha_dropout(x, 0.2, True)``."""
    return _alpha("alpha_dropout", input, p, training, inplace, False)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                          inplace: bool = False) -> Tensor:
    """Alpha dropout of whole channels. ``F.feature_alpha_dropout(x, 0.2, True)``."""
    return _alpha("feature_alpha_dropout", input, p, training, inplace, True)
