"""Linear (fully connected) layers, and Identity."""
from __future__ import annotations

import math
from typing import Any

from ember.tensor import empty
from ember.nn import functional as F
from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.tensor import Tensor


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to remove a model's head).

    >>> nn.Identity()(ember.ones(2)).shape
    ember.Size([2])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """``y = x @ weight.T + bias`` with weight [out_features, in_features].

    Initialized as in PyTorch: weight by kaiming_uniform_(a=sqrt(5)), bias by
    U(-1/sqrt(in_features), 1/sqrt(in_features)).

    >>> nn.Linear(4, 3)(ember.randn(2, 4)).shape
    ember.Size([2, 3])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
