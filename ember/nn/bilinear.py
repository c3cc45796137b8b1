"""Bilinear: ``y = x1^T A x2 + b`` (torch.nn.Bilinear).

>>> nn.Bilinear(20, 30, 40)(ember.randn(128, 20), ember.randn(128, 30)).shape
ember.Size([128, 40])
"""
from __future__ import annotations

import math

from ember.nn import functional as F
from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.tensor import Tensor, empty

__all__ = ["Bilinear"]


class Bilinear(Module):
    """Weight [out, in1, in2] and bias [out], both U(-1/sqrt(in1), 1/sqrt(in1)).

    >>> nn.Bilinear(3, 4, 2)(ember.randn(5, 3), ember.randn(5, 4)).shape
    ember.Size([5, 2])
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in1_features, in2_features, dtype=dtype,
                                      device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
