"""``ember.amp``: automatic mixed precision, as ``torch.amp``: ``autocast`` and
``GradScaler``.

>>> with ember.amp.autocast("cpu", dtype=ember.bfloat16):
...     out = model(x)          # its matmuls and linears compute in bfloat16
"""
from ember.amp.autocast_mode import (autocast, get_autocast_dtype, is_autocast_available,
                                     is_autocast_enabled)
from ember.amp.grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_available", "is_autocast_enabled",
           "get_autocast_dtype"]
