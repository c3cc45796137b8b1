"""torch's top-level names that programs call and ember lacked: ``select``, ``tile``,
``asarray``, ``vmap``; the ``torch.conv2d`` / ``torch.layer_norm`` / ``torch.dropout``
forms of functional ops (torch's argument orders: ``batch_norm`` and ``instance_norm``
take the weight first, ``dropout`` calls its flag ``train``); and the Tensor methods
``select``, ``tile``, ``data_ptr``, ``storage_offset``, ``nbytes``, ``itemsize``.

>>> import ember
>>> ember.tile(ember.tensor([1, 2]), (2, 2))
tensor([[1, 2, 1, 2],
        [1, 2, 1, 2]])
>>> ember.arange(6).view(2, 3).select(1, 2)
tensor([2, 5])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import ember.nn.functional as F
from ember.func import vmap
from ember.tensor import Tensor, as_tensor

__all__ = ["_assert", "select", "tile", "asarray", "vmap", "conv1d", "conv2d", "conv3d",
           "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d", "avg_pool1d",
           "adaptive_avg_pool1d", "layer_norm", "group_norm",
           "batch_norm", "instance_norm", "pixel_shuffle", "pixel_unshuffle",
           "channel_shuffle", "selu", "celu", "rrelu", "hardshrink", "threshold", "dropout",
           "alpha_dropout", "feature_alpha_dropout"]


def _assert(condition: Any, message: str) -> None:
    """``torch._assert``: ``assert condition, message`` (torchvision's ViT checks its
    input size with it)."""
    assert condition, message


def select(input: Tensor, dim: int, index: int) -> Tensor:
    """The slice at ``index`` along ``dim``, without that dim (a view)."""
    n = input.ndim
    if not -n <= dim < n:
        raise IndexError(f"select(): Dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {dim})")
    size = input.shape[dim]
    if not -size <= index < size:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input.shape)} at dimension {dim}")
    return input[(slice(None),) * (dim % n) + (index,)]


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:
    """``input`` repeated ``dims`` times along each dim (ones prepended to whichever of
    the two is shorter), as torch.tile / np.tile."""
    dims = tuple(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return input.repeat(*dims)


def asarray(obj: Any, *, dtype: Any = None, device: Any = None, copy: bool | None = None,
            requires_grad: bool = False) -> Tensor:
    """A tensor of ``obj``, sharing its memory where it can (a tensor or a NumPy array of
    that dtype and device) unless ``copy``; ``copy=False`` where it cannot raises."""
    out = as_tensor(obj, dtype=dtype, device=device)
    shares = isinstance(obj, Tensor) and out is obj or (
        isinstance(obj, np.ndarray) and np.shares_memory(out.numpy(), obj))
    if copy is False and not shares and isinstance(obj, (Tensor, np.ndarray)):
        raise ValueError("asarray(): copy=False, but a copy is needed (another dtype or "
                         "device)")
    if copy:
        out = out.clone()
    return out.requires_grad_(True) if requires_grad else out


conv1d, conv2d, conv3d = F.conv1d, F.conv2d, F.conv3d
conv_transpose1d, conv_transpose2d = F.conv_transpose1d, F.conv_transpose2d
avg_pool1d, adaptive_avg_pool1d = F.avg_pool1d, F.adaptive_avg_pool1d
pixel_shuffle, pixel_unshuffle, channel_shuffle = (F.pixel_shuffle, F.pixel_unshuffle,
                                                   F.channel_shuffle)
selu, celu, rrelu, hardshrink, threshold = F.selu, F.celu, F.rrelu, F.hardshrink, F.threshold


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False) -> Tensor:
    return F.max_pool1d(input, kernel_size, stride or None, padding, dilation, ceil_mode)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False) -> Tensor:
    return F.max_pool2d(input, kernel_size, stride or None, padding, dilation, ceil_mode)


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5,
               cudnn_enable: bool = True) -> Tensor:
    return F.layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5,
               cudnn_enabled: bool = True) -> Tensor:
    return F.group_norm(input, num_groups, weight, bias, eps)


def batch_norm(input: Tensor, weight: Tensor | None, bias: Tensor | None,
               running_mean: Tensor | None, running_var: Tensor | None, training: bool,
               momentum: float, eps: float, cudnn_enabled: bool = True) -> Tensor:
    """torch.batch_norm's order (weight and bias before the running statistics)."""
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                        eps)


def instance_norm(input: Tensor, weight: Tensor | None, bias: Tensor | None,
                  running_mean: Tensor | None, running_var: Tensor | None,
                  use_input_stats: bool, momentum: float, eps: float,
                  cudnn_enabled: bool = True) -> Tensor:
    """torch.instance_norm's order (weight and bias before the running statistics)."""
    return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                           momentum, eps)


def dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return F.dropout(input, p, train)


def alpha_dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return F.alpha_dropout(input, p, train)


def feature_alpha_dropout(input: Tensor, p: float, train: bool) -> Tensor:
    return F.feature_alpha_dropout(input, p, train)


def _data_ptr(self: Tensor) -> int:
    """The address of the tensor's first element."""
    a = self._data
    return int(a.ctypes.data) if isinstance(a, np.ndarray) else int(a.data.ptr)


def _root(a: Any) -> Any:
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def _storage_offset(self: Tensor) -> int:
    """Elements from the start of the memory the tensor views to its first element."""
    a = self._data
    root = _root(a)
    if not isinstance(root, type(a)) or root.size == 0:
        return 0
    start = root.ctypes.data if isinstance(root, np.ndarray) else root.data.ptr
    return (_data_ptr(self) - int(start)) // a.itemsize


Tensor.select = select
Tensor.tile = tile
Tensor.data_ptr = _data_ptr
Tensor.storage_offset = _storage_offset
Tensor.nbytes = property(lambda self: int(self._data.nbytes))
Tensor.itemsize = property(lambda self: int(self._data.itemsize))
