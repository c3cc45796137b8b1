"""Helpers shared by the distributions: broadcasting parameters, probabilities and
logits, lazily computed attributes."""
from __future__ import annotations

import numbers

from ember import dtypes
from ember.tensor import Tensor, tensor


def broadcast_all(*values) -> tuple:
    """Tensors of one broadcast shape; numbers become tensors of the tensors' dtype (the
    default float without any).

    >>> a, b = broadcast_all(ember.zeros(2), 1.0)
    >>> b
    tensor([1., 1.])
    """
    if not all(isinstance(v, (Tensor, numbers.Number)) for v in values):
        raise ValueError("Input arguments must all be instances of numbers.Number, "
                         "torch.Tensor or objects implementing __torch_function__.")
    like = next((v for v in values if isinstance(v, Tensor)), None)
    if like is None:
        dt = dtypes.get_default_dtype()
        return tuple(tensor(float(v), dtype=dt) for v in values)
    dt = like.dtype if like.dtype.is_floating_point else dtypes.get_default_dtype()
    ts = [v if isinstance(v, Tensor) else tensor(v, dtype=dt, device=like.device)
          for v in values]
    shape = _shape(*[tuple(t.shape) for t in ts])
    return tuple(t.expand(shape) for t in ts)


def _shape(*shapes) -> tuple:
    import numpy as np
    return tuple(np.broadcast_shapes(*shapes))


def clamp_probs(probs: Tensor) -> Tensor:
    """Probabilities kept away from 0 and 1 by the dtype's epsilon."""
    eps = dtypes.finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs: Tensor, is_binary: bool = False) -> Tensor:
    """log p (or log(p / (1 - p)) when ``is_binary``), finite at p = 0 or 1."""
    ps = clamp_probs(probs)
    if is_binary:
        return ps.log() - (-ps).log1p()
    return ps.log()


def logits_to_probs(logits: Tensor, is_binary: bool = False) -> Tensor:
    """sigmoid (binary) or softmax over the last dim."""
    if is_binary:
        return logits.sigmoid()
    return logits.softmax(-1)


class lazy_property:
    """Computed at first use and stored on the instance (torch's lazy_property)."""

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped
        self.__doc__ = wrapped.__doc__

    def __get__(self, instance, obj_type=None):
        if instance is None:
            return self
        value = self.wrapped(instance)
        instance.__dict__[self.wrapped.__name__] = value
        return value
