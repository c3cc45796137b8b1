"""Flatten and Unflatten: reshape layers for Sequential models."""
from __future__ import annotations

from ember.nn.module import Module
from ember.tensor import Tensor


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` (by default all but the batch dim).

    >>> nn.Flatten()(ember.zeros(2, 16, 5, 5)).shape
    ember.Size([2, 400])
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``.

    >>> nn.Unflatten(1, (2, 5))(ember.zeros(3, 10)).shape
    ember.Size([3, 2, 5])
    """

    def __init__(self, dim: int, unflattened_size) -> None:
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input: Tensor) -> Tensor:
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
