"""torch.nn.utils.weight_norm / remove_weight_norm: ``w = g * v / ||v||`` by a forward
pre-hook, with torch's parameter names (``weight_g``, ``weight_v``).

The norm is taken over every dim but ``dim`` (``dim=None``: the whole tensor), as torch's
``norm_except_dim``; the hook recomputes ``module.weight`` from ``weight_g`` and
``weight_v`` before each forward, so gradients reach both.

>>> m = weight_norm(nn.Linear(20, 40), name="weight")
>>> m.weight_g.shape, m.weight_v.shape
(ember.Size([40, 1]), ember.Size([40, 20]))
"""
from __future__ import annotations

import warnings
from typing import Optional

from ember.autograd import no_grad
from ember.nn.module import Module, Parameter
from ember.tensor import Tensor

__all__ = ["weight_norm", "remove_weight_norm", "norm_except_dim"]


def norm_except_dim(v: Tensor, pow: float = 2, dim: int = 0) -> Tensor:
    """The ``pow``-norm of ``v`` over all dims but ``dim``, kept as size-1 dims (``dim=-1``:
    over everything, a 0-d tensor), as torch.norm_except_dim."""
    if dim == -1:
        return v.norm(pow)
    dim = dim % v.ndim if v.ndim else 0
    others = tuple(d for d in range(v.ndim) if d != dim)
    if not others:
        return v.abs() if pow else v
    return v.abs().pow(pow).sum(others, keepdim=True).pow(1.0 / pow)


def _weight_norm(v: Tensor, g: Tensor, dim: int = 0) -> Tensor:
    """torch._weight_norm: ``v * (g / ||v||)`` with the norm over all dims but ``dim``."""
    return v * (g / norm_except_dim(v, 2, dim))


class WeightNorm:
    """The forward pre-hook that recomputes ``module.<name>`` from ``<name>_g`` and
    ``<name>_v``."""

    def __init__(self, name: str, dim: int) -> None:
        if dim is None:
            dim = -1
        self.name = name
        self.dim = dim

    def compute_weight(self, module: Module) -> Tensor:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return _weight_norm(v, g, self.dim)

    @staticmethod
    def apply(module: Module, name: str, dim: Optional[int]) -> "WeightNorm":
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm) and hook.name == name:
                raise RuntimeError(f"Cannot register two weight_norm hooks on the same "
                                   f"parameter {name}")
        if dim is None:
            dim = -1
        fn = WeightNorm(name, dim)
        weight = getattr(module, name)
        del module._parameters[name]
        module.register_parameter(name + "_g", Parameter(norm_except_dim(weight, 2, dim)
                                                         .detach()))
        module.register_parameter(name + "_v", Parameter(weight.detach()))
        object.__setattr__(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module)
        object.__delattr__(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        object.__setattr__(module, self.name, self.compute_weight(module))


def weight_norm(module: Module, name: str = "weight", dim: Optional[int] = 0) -> Module:
    """Reparametrize ``module.<name>`` as ``g * v / ||v||`` (torch.nn.utils.weight_norm).

    >>> m = weight_norm(nn.Linear(3, 2))
    >>> sorted(m.state_dict())
    ['bias', 'weight_g', 'weight_v']
    """
    warnings.warn("`ember.nn.utils.weight_norm` is deprecated in favor of "
                  "`ember.nn.utils.parametrizations.weight_norm`.", FutureWarning, stacklevel=2)
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: Module, name: str = "weight") -> Module:
    """Fold ``g`` and ``v`` back into a plain parameter ``module.<name>``."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, WeightNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[key]
            return module
    raise ValueError(f"weight_norm of '{name}' not found in {module}")
