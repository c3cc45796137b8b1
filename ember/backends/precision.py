"""``ember.set_float32_matmul_precision``: PyTorch's TF32/bfloat16 permission for
float32 matmuls. ember keeps the setting and computes at full float32 ("highest") on
every device; "high" and "medium" permit less, never require it."""
from __future__ import annotations

_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """``"highest"``, ``"high"`` or ``"medium"``, as in PyTorch."""
    global _precision
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid precision '{precision}': expected highest, high or medium")
    _precision = precision


def get_float32_matmul_precision() -> str:
    return _precision
