"""SyncBatchNorm: batch normalization whose statistics would span every process.

ember trains one process per device, and a single process (world size 1, or no process
group) is what this layer supports: there it is BatchNorm over the local batch, which is
what torch's SyncBatchNorm computes then too. Training with batch statistics across
several processes raises instead of silently normalizing per process.

>>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
>>> nn.SyncBatchNorm.convert_sync_batchnorm(model)[1]
SyncBatchNorm(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
"""
from __future__ import annotations

from typing import Any

from ember.autograd import no_grad
from ember.nn import functional as F
from ember.nn.module import Module
from ember.nn.norm import _BatchNorm
from ember.tensor import Tensor

__all__ = ["SyncBatchNorm"]


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over (N, *) per channel of an input of 2 or more dims.

    >>> nn.SyncBatchNorm(3)(ember.randn(4, 3, 5)).shape
    ember.Size([4, 3, 5])
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group: Any | None = None, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)
        self.process_group = process_group

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {input.ndim}D input)")
        if input.shape[1] == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        bn_training = self.training or (self.running_mean is None
                                        and self.running_var is None)
        track = not self.training or self.track_running_stats
        if bn_training and self.training and self._world_size() > 1:
            raise NotImplementedError(
                "SyncBatchNorm: synchronizing batch statistics across processes is not "
                "supported by ember; it normalizes a single process's batch only")
        return F.batch_norm(input, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            bn_training, factor, self.eps)

    def _world_size(self) -> int:
        from ember import distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any | None = None) -> Module:
        """Replace every ``BatchNorm*d`` in ``module`` (or ``module`` itself) by a
        ``SyncBatchNorm`` holding the same parameters, buffers and mode."""
        from ember.nn.norm3d import _InstanceNorm
        out = module
        # ember's instance norms derive from _BatchNorm; torch's do not, and stay.
        if isinstance(module, _BatchNorm) and not isinstance(module, _InstanceNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group,
                      bias=module.bias is not None)
            if module.affine:
                out.weight = module.weight
                out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
