"""3-D layers: Conv3d, ConvTranspose3d, MaxPool3d, AvgPool3d, AdaptiveAvgPool3d,
AdaptiveMaxPool3d.

The convolutions share Conv2d's arguments, parameters and initialization (``_ConvNd``);
the functional ops are compositions of 2-D convolutions and strided slices
(ember/nn/_functional/conv3d.py).

>>> nn.Conv3d(1, 2, 3)(ember.randn(1, 1, 5, 5, 5)).shape
ember.Size([1, 2, 3, 3, 3])
"""
from __future__ import annotations

from ember.nn import functional as F
from ember.nn.conv import _ConvNd, _ConvTransposeNd
from ember.nn.module import Module
from ember.nn.pooling import AvgPool2d, MaxPool2d
from ember.tensor import Tensor

__all__ = ["Conv3d", "ConvTranspose3d", "MaxPool3d", "AvgPool3d", "AdaptiveAvgPool3d",
           "AdaptiveMaxPool3d"]


class Conv3d(_ConvNd):
    """3-D convolution over [N, C, D, H, W].

    >>> nn.Conv3d(3, 8, (2, 3, 3), padding=1)(ember.randn(2, 3, 4, 8, 8)).shape
    ember.Size([2, 8, 5, 8, 8])
    """

    _dims = 3   # (_ConvNd's constructor, with torch's arguments)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv3d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class ConvTranspose3d(_ConvTransposeNd):
    """Transposed 3-D convolution over [N, C, D, H, W] (the gradient of Conv3d's input).

    >>> nn.ConvTranspose3d(4, 2, 2, stride=2)(ember.randn(1, 4, 3, 3, 3)).shape
    ember.Size([1, 2, 6, 6, 6])
    """

    _dims = 3

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        return F.conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)


class MaxPool3d(MaxPool2d):
    """Max over windows of [N, C, D, H, W]; ``stride`` defaults to ``kernel_size``.

    >>> nn.MaxPool3d(2)(ember.randn(1, 1, 4, 4, 4)).shape
    ember.Size([1, 1, 2, 2, 2])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.max_pool3d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool3d(AvgPool2d):
    """Mean over windows of [N, C, D, H, W]; ``stride`` defaults to ``kernel_size``.

    >>> nn.AvgPool3d(2)(ember.randn(1, 1, 4, 4, 4)).shape
    ember.Size([1, 1, 2, 2, 2])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool3d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool3d(Module):
    """Average [N, C, D, H, W] into ``output_size`` windows per dim.

    >>> nn.AdaptiveAvgPool3d((1, 2, 2))(ember.randn(1, 3, 5, 6, 7)).shape
    ember.Size([1, 3, 1, 2, 2])
    """

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool3d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool3d(Module):
    """Max of [N, C, D, H, W] over ``output_size`` windows per dim.

    >>> nn.AdaptiveMaxPool3d(2)(ember.randn(1, 3, 5, 6, 7)).shape
    ember.Size([1, 3, 2, 2, 2])
    """

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_max_pool3d(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
