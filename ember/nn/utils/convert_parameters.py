"""parameters_to_vector / vector_to_parameters: a model's parameters as one flat vector
(for second-order methods, evolution strategies, weight averaging).

>>> vec = parameters_to_vector(model.parameters())
>>> vector_to_parameters(vec * 0.5, model.parameters())
"""
from __future__ import annotations

from typing import Iterable

from ember.tensor import Tensor, cat

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _check_device(param: Tensor, device):
    if device is None:
        return param.device
    if param.device != device:
        raise TypeError("Found two parameters on different devices, this is currently not "
                        "supported.")
    return device


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated, in order (differentiable).

    >>> parameters_to_vector(nn.Linear(3, 2).parameters()).shape
    ember.Size([8])
    """
    device = None
    parts = []
    for p in parameters:
        device = _check_device(p, device)
        parts.append(p.reshape(-1))
    return cat(parts)


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Point each parameter's data at its slice of ``vec`` (as PyTorch's ``param.data =``)."""
    if not isinstance(vec, Tensor):
        kind = type(vec)
        prefix = "" if kind.__module__ == "builtins" else kind.__module__ + "."
        raise TypeError(f"expected torch.Tensor, but got: {prefix}{kind.__name__}")
    device = None
    pointer = 0
    for p in parameters:
        device = _check_device(p, device)
        n = p.numel()
        p.data = vec[pointer:pointer + n].view_as(p).data
        pointer += n
