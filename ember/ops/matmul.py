"""Matrix multiplication: an extern op (BLAS on the CPU, cuBLAS on the GPU)."""
from __future__ import annotations

from ember.ops.elementwise import conj, sum_to
from ember.ops.registry import EXTERN, defop


def _matmul_vjp(g, out, a, b):
    # Batch dims broadcast like elementwise ops, so sum_to folds them back.
    return (sum_to(g @ conj(b).mT, a.shape) if a.requires_grad else None,
            sum_to(conj(a).mT @ g, b.shape) if b.requires_grad else None)


def _matmul(xp, a, b):
    out = xp.matmul(a, b)
    # ml_dtypes' bfloat16 matmul returns float32: keep the operands' dtype, as PyTorch.
    return out if out.dtype == a.dtype or a.dtype != b.dtype else out.astype(a.dtype)


defop("matmul", EXTERN, _matmul, _matmul_vjp, reads_for_others=(0, 1))
