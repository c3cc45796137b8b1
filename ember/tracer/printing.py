"""Output a function writes while it is traced: a compiled replay would not write it.

A replay runs kernels, not the function's Python, so a ``print`` or an emitted log
record inside the function would appear at the traced calls only and then silently
stop. While a trace runs, ``print`` and ``logging.Logger.callHandlers`` are wrapped:
output from the traced thread fails the trace (the signature runs eagerly, and
``stats()`` says why); other threads print as usual. A log record below its logger's
level is never emitted, so it costs nothing.

>>> with watch_output():
...     fn(*args)          # under the tracer: print() in fn marks the trace failed
"""
from __future__ import annotations

import builtins
import contextlib
import logging

from ember import dispatch as _dispatch

_print = builtins.print
_call_handlers = logging.Logger.callHandlers


def _failing(what: str) -> None:
    tracer = _dispatch._local.tracer
    if tracer is not None:
        tracer.fail(f"the function calls {what}, which a compiled replay would not do "
                    "(it replays kernels, not Python)")


def _traced_print(*args, **kwargs):
    _failing("print()")
    return _print(*args, **kwargs)


def _traced_call_handlers(self, record):
    _failing(f"logging ({record.levelname.lower()} on logger {self.name!r})")
    return _call_handlers(self, record)


@contextlib.contextmanager
def watch_output():
    """Wrap print and logging while a trace runs (see the module docstring)."""
    old_print, old_handlers = builtins.print, logging.Logger.callHandlers
    builtins.print, logging.Logger.callHandlers = _traced_print, _traced_call_handlers
    try:
        yield
    finally:
        builtins.print, logging.Logger.callHandlers = old_print, old_handlers
