"""``ember.autograd.Variable``: PyTorch's legacy wrapper, kept so old code runs.

Since PyTorch 0.4 a Variable *is* a Tensor: ``Variable(t)`` returns a tensor (``t``
detached, sharing its memory), ``requires_grad=True`` makes that a leaf that requires
grad, ``volatile`` is ignored with a warning, and ``isinstance(x, Variable)`` holds for
every tensor.

>>> import ember
>>> from ember.autograd import Variable
>>> v = Variable(ember.ones(2), requires_grad=True)
>>> type(v).__name__, v.requires_grad, isinstance(v, Variable)
('Tensor', True, True)
"""
from __future__ import annotations

import warnings
from typing import Any

__all__ = ["Variable"]


class _VariableMeta(type):
    """Makes ``isinstance(t, Variable)`` true for every ember tensor, as in PyTorch."""

    def __instancecheck__(cls, other: Any) -> bool:
        from ember.tensor import Tensor
        return isinstance(other, Tensor)


class Variable(metaclass=_VariableMeta):
    """``Variable(data=None, requires_grad=False, volatile=False)``: ``data`` detached
    (same memory and version counter), with ``requires_grad`` set; an empty float
    tensor without ``data``. Never an instance of this class: a Tensor."""

    def __new__(cls, data: Any = None, requires_grad: bool = False,  # type: ignore[misc]
                volatile: bool = False):
        from ember.tensor import Tensor, tensor
        if volatile:
            warnings.warn("volatile was removed and now has no effect. Use `with "
                          "torch.no_grad():` instead.", UserWarning, stacklevel=2)
        if data is None:
            data = tensor([])
        elif not isinstance(data, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got "
                            f"{type(data).__name__}")
        out = data.detach()
        if requires_grad:
            out.requires_grad_(True)   # raises for integer tensors, as PyTorch
        return out
