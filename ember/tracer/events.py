"""What the compiler tells whoever watches it: events, published to subscribers.

The tracer publishes (a function was compiled, a call traced, a segment built, a cache
hit, a recompile, a fallback, a graph break); ``ember.inspect`` subscribes at import and
turns them into records, logs, dumps and reports. The tracer imports nothing of
``inspect``: a new kind of watcher subscribes here without touching the compiler.

A subscriber is any object with some of ``Listener``'s methods (missing ones are
skipped; the events are the methods of ``Listener``). A subscriber's failure propagates: subscribers that must never break a compile
(debug output) catch their own errors.

>>> class Count(events.Listener):
...     hits = 0
...     def hit(self, cf, entry, seconds): Count.hits += 1
>>> events.subscribe(Count())
"""
from __future__ import annotations

from time import perf_counter
from typing import Any

clock = perf_counter   # what the tracer times its stages with


class Listener:
    """The events, with their arguments; a subscriber implements those it wants."""

    def function_created(self, cf) -> None:
        """A ``CompiledFunction`` was made (``cf.record`` may be set here)."""

    def entry_created(self, cf, entry, key, reason: str) -> None:
        """A cache entry of ``cf`` was made for ``key``: the first call, or the reason."""

    def traced(self, cf, entry, seconds: float) -> None:
        """A call ran the user's Python under the tracer for ``seconds``."""

    def pass_log(self, cf) -> Any:
        """A ``log`` object for ``run_pipeline``, or None (IR text costs time)."""

    def segment_built(self, cf, seg, env: dict, passlog, seconds: float) -> None:
        """A segment's graph was optimized and compiled into ``seg.plan``."""

    def hit(self, cf, entry, seconds: float) -> None:
        """A call replayed ``entry``'s plans in ``seconds``."""

    def recompiled(self, cf, reason: str) -> None:
        """A call missed the cache (or found a new branch) and traces again: why."""

    def rented(self, cf, reason: str, seen: int) -> None:
        """A call at a new size ran eagerly instead of compiling it (``admission.py``):
        why it missed, and the calls seen at that size so far."""

    def fallback(self, cf, text: str) -> None:
        """``cf`` falls back to eager for a reason seen for the first time."""

    def graph_break(self, cf, how: str, location: str) -> None:
        """The trace reads a tensor's value (``how``: item, bool...) at ``location``."""

    def verify_failed(self, cf, seg, inputs: dict, info, message: str) -> str | None:
        """mode="verify" found a kernel differing: a line naming a repro, or None."""

    def cache_report(self, cf) -> str | None:
        """``cf.cache_report()``'s text, or None."""


_listeners: list = []
# Event name -> the subscribers' handlers, rebuilt (and swapped in whole, so a thread
# publishing meanwhile sees the old or the new table) when one subscribes: a publish on
# the hot path (a cache hit) is one dict lookup and the calls. Read-only outside.
HANDLERS: dict[str, list] = {}


def _rebuild() -> None:
    global HANDLERS
    table = {}
    for name in vars(Listener):
        if not name.startswith("_"):
            found = [getattr(x, name) for x in _listeners if callable(getattr(x, name, None))]
            if found:
                table[name] = found
    HANDLERS = table


def subscribe(listener) -> None:
    """Add ``listener`` (once) to those told about every event."""
    if listener not in _listeners:
        _listeners.append(listener)
        _rebuild()


def unsubscribe(listener) -> None:
    """Stop telling ``listener``."""
    if listener in _listeners:
        _listeners.remove(listener)
        _rebuild()


def publish(event: str, *args) -> None:
    """Tell every subscriber that implements ``event``."""
    for handler in HANDLERS.get(event, ()):
        handler(*args)


def ask(event: str, *args) -> Any:
    """The first answer other than None from the subscribers, or None."""
    for handler in HANDLERS.get(event, ()):
        answer = handler(*args)
        if answer is not None:
            return answer
    return None
