"""``ember.set_float32_matmul_precision``: PyTorch's TF32/bfloat16 permission for
float32 matmuls. ember keeps the setting and computes at full float32 ("highest") on
every device; "high" and "medium" permit less, never require it."""
from __future__ import annotations

import warnings

_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """``"highest"``, ``"high"`` or ``"medium"``, as in PyTorch."""
    global _precision
    if precision not in ("highest", "high", "medium"):   # PyTorch warns and keeps its setting
        warnings.warn(f"{precision} is not one of 'highest', 'high', or 'medium'; the current "
                      "set_float32_matmul_precision call has no effect.", stacklevel=2)
        return
    _precision = precision


def get_float32_matmul_precision() -> str:
    return _precision
