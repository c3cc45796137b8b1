"""``torch._utils``: the flat-buffer helpers mixed-precision trainers import
(guided-diffusion's ``fp16_util``, apex-style master weights).

>>> flat = _flatten_dense_tensors([ember.ones(2, 2), ember.zeros(3)])
>>> [t.shape for t in _unflatten_dense_tensors(flat, [ember.ones(2, 2), ember.zeros(3)])]
[ember.Size([2, 2]), ember.Size([3])]
"""
from __future__ import annotations

from typing import Sequence

from ember.tensor import Tensor, cat

__all__ = ["_flatten_dense_tensors", "_unflatten_dense_tensors"]


def _flatten_dense_tensors(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors' values, one after another, in one new 1-D tensor."""
    return cat([t.contiguous().view(-1) for t in tensors])


def _unflatten_dense_tensors(flat: Tensor, tensors: Sequence[Tensor]) -> tuple:
    """Views of ``flat`` shaped as ``tensors``, in order (the inverse of the above)."""
    out, offset = [], 0
    for t in tensors:
        n = t.numel()
        out.append(flat.narrow(0, offset, n).view_as(t))
        offset += n
    return tuple(out)
