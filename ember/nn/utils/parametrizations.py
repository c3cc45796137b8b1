"""torch.nn.utils.parametrizations: weight_norm and spectral_norm (and orthogonal) as
parametrizations (see ember.nn.utils.parametrize).

State dict keys are torch's: weight_norm keeps ``parametrizations.weight.original0`` (g)
and ``original1`` (v); spectral_norm keeps ``parametrizations.weight.original`` and the
power iteration's vectors ``parametrizations.weight.0._u`` / ``_v``.

>>> m = weight_norm(nn.Linear(20, 40))
>>> m.parametrizations.weight.original0.shape
ember.Size([40, 1])
"""
from __future__ import annotations

from typing import Optional

from ember.autograd import no_grad
from ember.nn import functional as F
from ember.nn.module import Module
from ember.nn.utils import parametrize
from ember.nn.utils.orthogonal import orthogonal
from ember.nn.utils.spectral_norm import _to_matrix
from ember.nn.utils.weight_norm import _weight_norm, norm_except_dim
from ember.tensor import Tensor

__all__ = ["weight_norm", "spectral_norm", "orthogonal"]


class _WeightNorm(Module):
    def __init__(self, dim: Optional[int] = 0) -> None:
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        return norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module: Module, name: str = "weight", dim: Optional[int] = 0) -> Module:
    """``module.<name> = g * v / ||v||`` as a parametrization with originals g and v.

    >>> m = weight_norm(nn.Linear(3, 2))
    >>> sorted(m.state_dict())
    ['bias', 'parametrizations.weight.original0', 'parametrizations.weight.original1']
    """
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module


class _SpectralNorm(Module):
    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of [-{ndim}, "
                             f"{ndim - 1}] but got {dim})")
        if n_power_iterations <= 0:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            with no_grad():
                weight_mat = _to_matrix(weight.detach(), self.dim)
                h, w = weight_mat.shape
                u = weight_mat.new_empty(h).normal_(0, 1)
                v = weight_mat.new_empty(w).normal_(0, 1)
                self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
                self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))
            self._power_method(weight_mat, 15)

    def _power_method(self, weight_mat: Tensor, n_power_iterations: int) -> None:
        """u and v, updated in place (no gradient), as torch's."""
        with no_grad():
            w = weight_mat.detach()
            for _ in range(n_power_iterations):
                self._u.copy_(F.normalize(w.matmul(self._v), dim=0, eps=self.eps))
                self._v.copy_(F.normalize(w.t().matmul(self._u), dim=0, eps=self.eps))

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = _to_matrix(weight, self.dim)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        u, v = self._u.clone(), self._v.clone()
        sigma = u.dot(weight_mat.matmul(v))
        return weight / sigma

    def right_inverse(self, value: Tensor) -> Tensor:
        return value


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: Optional[int] = None) -> Module:
    """Divide ``module.<name>`` by its spectral norm (power iteration) as a parametrization.

    >>> m = spectral_norm(nn.Linear(3, 2))
    >>> list(m.state_dict())[:2]
    ['bias', 'parametrizations.weight.original']
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if dim is None:
        from ember.nn.utils.spectral_norm import _conv_transpose3d
        from ember.nn.conv import ConvTranspose1d, ConvTranspose2d
        transposed = (ConvTranspose1d, ConvTranspose2d) + _conv_transpose3d()
        dim = 1 if isinstance(module, transposed) else 0
    parametrize.register_parametrization(
        module, name, _SpectralNorm(weight, n_power_iterations, dim, eps))
    return module
