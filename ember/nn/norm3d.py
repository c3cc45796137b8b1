"""BatchNorm3d and InstanceNorm1d/2d/3d, with torch's arguments, buffers and defaults.

BatchNorm3d is BatchNorm over (N, D, H, W) per channel: F.batch_norm already handles any
rank. Instance norm normalizes each (sample, channel) over its positions; its running
statistics (``track_running_stats=True``) average the per-instance ones over the batch.

>>> nn.BatchNorm3d(2)(ember.randn(2, 2, 3, 3, 3)).shape
ember.Size([2, 2, 3, 3, 3])
"""
from __future__ import annotations

import warnings

from ember.errors import OpError, shape_str
from ember.nn import functional as F
from ember.nn.norm import _BatchNorm
from ember.tensor import Tensor

__all__ = ["BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"]


class BatchNorm3d(_BatchNorm):
    """Batch normalization of [N, C, D, H, W] per channel.

    >>> nn.BatchNorm3d(3)(ember.randn(2, 3, 2, 4, 4)).shape
    ember.Size([2, 3, 2, 4, 4])
    """

    _ranks = (5,)


class _InstanceNorm(_BatchNorm):
    _spatial = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)

    def forward(self, input: Tensor) -> Tensor:
        batched = self._spatial + 2
        if input.ndim not in (batched - 1, batched):
            raise ValueError(f"expected {batched - 1}D or {batched}D input (got {input.ndim}D "
                             f"input)")
        unbatched = input.ndim == batched - 1
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            if self.affine:
                raise OpError(type(self).__name__, f"expected input's size at dim=1 to match "
                              f"num_features ({self.num_features}), but got: {x.shape[1]}, "
                              f"input of shape {shape_str(input)}", (input,))
            warnings.warn("input's size at dim=1 does not match num_features. You can "
                          "silence this warning by not passing in num_features, which is not "
                          "used because affine=False", stacklevel=2)
        out = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                              self.training or not self.track_running_stats,
                              self.momentum if self.momentum is not None else 0.0, self.eps)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of [N, C, L] (or [C, L]).

    >>> nn.InstanceNorm1d(3)(ember.randn(2, 3, 8)).shape
    ember.Size([2, 3, 8])
    """

    _spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of [N, C, H, W] (or [C, H, W]).

    >>> nn.InstanceNorm2d(3, affine=True)(ember.randn(2, 3, 4, 4)).shape
    ember.Size([2, 3, 4, 4])
    """

    _spatial = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization of [N, C, D, H, W] (or [C, D, H, W]).

    >>> nn.InstanceNorm3d(2)(ember.randn(1, 2, 3, 4, 4)).shape
    ember.Size([1, 2, 3, 4, 4])
    """

    _spatial = 3
