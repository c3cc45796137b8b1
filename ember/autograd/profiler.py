"""``torch.autograd.profiler``: the older names of ``ember.profiler``'s (``profile``,
``record_function``); ``use_cuda``/``use_device`` are taken and add nothing (CPU clock).

>>> with ember.autograd.profiler.profile() as prof:
...     _ = ember.ones(3).exp()
>>> [row.key for row in prof.key_averages()]
['full', 'exp']
"""
from __future__ import annotations

from ember.profiler import EventList, profile, record_function

__all__ = ["profile", "record_function", "EventList"]
