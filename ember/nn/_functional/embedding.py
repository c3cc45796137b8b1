"""Embedding options: ``max_norm`` (rows renormalized in place when looked up) and
``scale_grad_by_freq`` (each row's gradient divided by how often it occurs in the batch).

>>> w = ember.full((3, 2), 4.0)
>>> F.embedding(ember.tensor([1]), w, max_norm=1.0).norm().item() <= 1.0
True
"""
from __future__ import annotations

from ember.autograd import no_grad
from ember.tensor import Tensor, where


def embedding_renorm_(weight: Tensor, input: Tensor, max_norm: float, norm_type: float) -> None:
    """Scale, in place and without gradient, every row of ``weight`` that ``input`` picks
    and whose ``norm_type`` norm exceeds ``max_norm`` down to norm max_norm (PyTorch's
    ``embedding_renorm_``: factor max_norm / (norm + 1e-7))."""
    with no_grad():
        idx = input.reshape(-1)
        rows = weight[idx]
        a = rows.abs()
        if norm_type == float("inf"):
            norms = a.amax(-1, keepdim=True)
        elif norm_type == 1:
            norms = a.sum(-1, keepdim=True)
        elif norm_type == 2:
            norms = (a * a).sum(-1, keepdim=True).sqrt()
        else:
            norms = (a ** norm_type).sum(-1, keepdim=True) ** (1.0 / norm_type)
        scale = where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        # A repeated index writes the same row value twice: harmless.
        weight[idx] = rows * scale.to(rows.dtype)


def scale_grad_by_freq(out: Tensor, input: Tensor) -> Tensor:
    """``out`` unchanged in value, with each looked-up row's gradient divided by the number
    of times its index occurs in ``input``."""
    flat = input.reshape(-1)
    counts = (flat.unsqueeze(1) == flat.unsqueeze(0)).sum(1).reshape(input.shape)
    frozen = out.detach()
    return frozen + (out - frozen) / counts.unsqueeze(-1).to(out.dtype)
