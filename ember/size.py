"""``ember.Size``: the shape of a tensor (in a module of its own, so that autograd can
use it without importing the tensor modules)."""
from __future__ import annotations

import math


class Size(tuple):
    """The shape of a tensor: a tuple that prints as ``ember.Size([2, 3])``.

    >>> ember.randn(2, 3).shape
    ember.Size([2, 3])
    """

    def __repr__(self) -> str:
        return f"ember.Size({list(self)})"

    def numel(self) -> int:
        return math.prod(self)
