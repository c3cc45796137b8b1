"""``nn.DataParallel`` and ``nn.parallel.data_parallel`` for programs written with them.

torch splits each batch across the GPUs in ``device_ids`` and gathers the outputs on
``output_device``. ember runs on one device at a time, so the wrapped module runs on the
whole batch on its own device, which is what torch does with one GPU or none. The
wrapper is what programs rely on: ``model.module`` and ``state_dict`` keys under
``module.``.

>>> m = ember.nn.DataParallel(ember.nn.Linear(3, 2))
>>> list(m.state_dict()), m(ember.ones(4, 3)).shape
(['module.weight', 'module.bias'], ember.Size([4, 2]))
"""
from __future__ import annotations

from typing import Any, Sequence

from ember.nn.module import Module

__all__ = ["DataParallel", "data_parallel"]


class DataParallel(Module):
    """``module`` behind torch's DataParallel interface (see the module docstring)."""

    def __init__(self, module: Module, device_ids: Sequence[Any] | None = None,
                 output_device: Any = None, dim: int = 0) -> None:
        super().__init__()
        self.module = module
        self.device_ids = list(device_ids) if device_ids is not None else []
        self.output_device = output_device
        self.dim = dim

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.module(*inputs, **kwargs)


def data_parallel(module: Module, inputs: Any, device_ids: Sequence[Any] | None = None,
                  output_device: Any = None, dim: int = 0,
                  module_kwargs: dict | None = None) -> Any:
    """``module(*inputs, **module_kwargs)`` on the module's device (torch.nn.parallel's
    function form of ``DataParallel``)."""
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs, **(module_kwargs or {}))
