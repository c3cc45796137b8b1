"""``ember.cuda.amp``: the older spelling of ``ember.amp`` for CUDA, as ``torch.cuda.amp``.

``autocast(...)`` is ``ember.amp.autocast("cuda", ...)`` and ``GradScaler(...)`` is
``ember.amp.GradScaler("cuda", ...)``; without a GPU both warn and do nothing, as
PyTorch's do.

>>> scaler = ember.cuda.amp.GradScaler()
>>> with ember.cuda.amp.autocast():
...     loss = model(x).sum()
"""
from __future__ import annotations

from ember.amp import GradScaler as _GradScaler
from ember.amp import autocast as _autocast


class autocast(_autocast):
    """``ember.amp.autocast("cuda", ...)`` (float16 by default)."""

    def __init__(self, enabled: bool = True, dtype=None, cache_enabled: bool = True) -> None:
        super().__init__("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class GradScaler(_GradScaler):
    """``ember.amp.GradScaler("cuda", ...)``."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> None:
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval,
                         enabled)
