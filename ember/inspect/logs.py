"""EMBER_LOGS: a comma list of channels, also settable with ``ember.set_logs("graph,breaks")``.

    graph       each captured graph as text (and where its dump folder went)
    passes      node counts before/after each pass and the IR lines it changed
    fusion      each graph's kernels, and why neighbouring nodes were not fused
    kernels     the generated source of every kernel (LLVM IR, CUDA C)
    recompiles  every recompile, with the guard that failed
    breaks      graph breaks and fallbacks to eager, with the user's line
    perf        compile time per stage; time per kernel (printed at exit)
    summary     at exit: per compiled function, calls, hits, recompiles, time saved

Every line goes through Python's ``logging``, to the logger ``ember.<channel>`` at INFO
level; the ``ember`` logger writes it to stderr as ``[ember:<channel>] ...`` (replace or
add handlers on ``logging.getLogger("ember")`` to send it elsewhere).
"""
from __future__ import annotations

import logging
import os
import sys

CHANNELS = ("graph", "passes", "fusion", "kernels", "recompiles", "breaks", "perf", "summary")
_active: set[str] = set()


def set_logs(channels: str | list[str] = "") -> None:
    """Turn log channels on (``"all"`` for every channel, ``""`` for none).

    >>> ember.set_logs("recompiles,breaks")
    """
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",") if c.strip()]
    chosen = set(CHANNELS) if "all" in channels else set(channels)
    unknown = chosen - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown EMBER_LOGS channel(s) {sorted(unknown)}; known: {CHANNELS}")
    _active.clear()
    _active.update(chosen)
    # These two print at exit; registering only when asked keeps atexit clean otherwise.
    if "summary" in chosen:
        from ember.inspect import summary
        summary.register_at_exit()
    if "perf" in chosen:
        from ember.inspect import perf
        perf.register_at_exit()


def enabled(channel: str) -> bool:
    """Is ``channel`` on?"""
    return channel in _active


class _Stderr(logging.Handler):
    """Writes to the current ``sys.stderr`` (tests and notebooks replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        channel = record.name.partition(".")[2]
        tag = f"ember:{channel}" if channel else "ember"
        print(f"[{tag}] {record.getMessage()}", file=sys.stderr)


_root = logging.getLogger("ember")
_root.setLevel(logging.INFO)
_root.addHandler(_Stderr())
_root.propagate = False
_loggers = {c: logging.getLogger(f"ember.{c}") for c in CHANNELS}


def log(channel: str, text: str) -> None:
    """Log ``text`` on ``channel`` if that channel is on."""
    if channel in _active:
        _loggers[channel].info(text)


try:
    set_logs(os.environ.get("EMBER_LOGS", ""))
except ValueError as e:  # a typo in the environment must not stop the program
    _root.warning(f"ignoring EMBER_LOGS: {e}")
