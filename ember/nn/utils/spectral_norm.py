"""torch.nn.utils.spectral_norm / remove_spectral_norm: ``w = w_orig / sigma(w_orig)``
with sigma estimated by power iteration, by a forward pre-hook.

The parameter becomes ``weight_orig`` and the power iteration's vectors are the buffers
``weight_u`` and ``weight_v`` (torch's names, so torch checkpoints load). In training mode
each forward first runs ``n_power_iterations`` steps (no gradient, updating the buffers in
place); in eval mode the stored vectors are used as they are. The gradient flows through
``sigma = u . (W v)`` with u and v held constant, as in torch.

>>> m = spectral_norm(nn.Linear(20, 40))
>>> m.weight_u.shape
ember.Size([40])
"""
from __future__ import annotations

from typing import Optional

from ember.autograd import no_grad
from ember.nn import functional as F
from ember.nn.module import Module, Parameter
from ember.tensor import Tensor

__all__ = ["spectral_norm", "remove_spectral_norm", "SpectralNorm"]


def _to_matrix(weight: Tensor, dim: int) -> Tensor:
    if dim != 0:
        weight = weight.permute(dim, *[d for d in range(weight.ndim) if d != dim])
    return weight.reshape(weight.shape[0], -1)


class SpectralNorm:
    """The forward pre-hook that sets ``module.<name>`` to ``<name>_orig / sigma``."""

    _version = 1

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        self.name = name
        self.dim = dim
        if n_power_iterations <= 0:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations}")
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        return _to_matrix(weight, self.dim)

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        weight_mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            with no_grad():
                w = weight_mat.detach()
                for _ in range(self.n_power_iterations):
                    v.copy_(F.normalize(w.t().matmul(u), dim=0, eps=self.eps))
                    u.copy_(F.normalize(w.matmul(v), dim=0, eps=self.eps))
        # Clones: the buffers are updated in place by the next call, after this graph.
        u, v = u.clone(), v.clone()
        sigma = u.dot(weight_mat.matmul(v))
        return weight / sigma

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        object.__delattr__(module, self.name)
        del module._buffers[self.name + "_u"]
        del module._buffers[self.name + "_v"]
        del module._parameters[self.name + "_orig"]
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        object.__setattr__(module, self.name,
                           self.compute_weight(module, do_power_iteration=module.training))

    @staticmethod
    def apply(module: Module, name: str, n_power_iterations: int, dim: int,
              eps: float) -> "SpectralNorm":
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm) and hook.name == name:
                raise RuntimeError(f"Cannot register two spectral_norm hooks on the same "
                                   f"parameter {name}")
        fn = SpectralNorm(name, n_power_iterations, dim, eps)
        weight = module._parameters[name]
        with no_grad():
            weight_mat = fn.reshape_weight_to_matrix(weight.detach())
            h, w = weight_mat.shape
            u = F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=fn.eps)
            v = F.normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=fn.eps)
        del module._parameters[name]
        module.register_parameter(name + "_orig", weight)
        object.__setattr__(module, name, weight.detach())
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)
        module.register_forward_pre_hook(fn)
        return fn


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: Optional[int] = None) -> Module:
    """Divide ``module.<name>`` by its spectral norm, estimated by power iteration.

    >>> m = spectral_norm(nn.Linear(3, 2))
    >>> sorted(m.state_dict())
    ['bias', 'weight_orig', 'weight_u', 'weight_v']
    """
    if dim is None:
        from ember.nn.conv import ConvTranspose1d, ConvTranspose2d
        transposed = (ConvTranspose1d, ConvTranspose2d) + _conv_transpose3d()
        dim = 1 if isinstance(module, transposed) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def _conv_transpose3d() -> tuple:
    import ember.nn as nn
    return (nn.ConvTranspose3d,) if hasattr(nn, "ConvTranspose3d") else ()


def remove_spectral_norm(module: Module, name: str = "weight") -> Module:
    """Fold the spectral normalization back into a plain parameter ``module.<name>``."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, SpectralNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[key]
            return module
    raise ValueError(f"spectral_norm of '{name}' not found in {module}")
