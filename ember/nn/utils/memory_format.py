"""Convert only the convolution weights of a model to a memory format (channels last), as
``torch.nn.utils.memory_format``: values and shapes stay, the strides change.

>>> m = nn.utils.convert_conv2d_weight_memory_format(nn.Conv2d(3, 4, 2), ember.channels_last)
>>> m.weight.stride()
(12, 1, 6, 3)
"""
from __future__ import annotations

from typing import TypeVar

from ember.nn.module import Module

__all__ = ["convert_conv2d_weight_memory_format", "convert_conv3d_weight_memory_format"]

_M = TypeVar("_M", bound=Module)


def _convert(module: Module, memory_format, kinds: tuple) -> None:
    if isinstance(module, kinds):
        # the parameter object stays (an optimizer may hold it); its memory is re-laid
        module.weight.data = module.weight.detach().clone(memory_format=memory_format)
    for child in module.children():
        _convert(child, memory_format, kinds)


def convert_conv2d_weight_memory_format(module: _M, memory_format) -> _M:
    """Lay out every ``Conv2d``/``ConvTranspose2d`` weight in ``module`` (itself included)
    in ``memory_format``; returns ``module``."""
    from ember.nn.conv import Conv2d, ConvTranspose2d
    _convert(module, memory_format, (Conv2d, ConvTranspose2d))
    return module


def convert_conv3d_weight_memory_format(module: _M, memory_format) -> _M:
    """Lay out every ``Conv3d``/``ConvTranspose3d`` weight in ``module`` (itself included)
    in ``memory_format``; returns ``module``."""
    from ember.nn.conv3d import Conv3d, ConvTranspose3d
    _convert(module, memory_format, (Conv3d, ConvTranspose3d))
    return module
