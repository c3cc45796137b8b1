"""EMBER_LOGS: a comma list of channels (graph, passes, fusion, kernels, recompiles, breaks,
perf), also settable from Python with ``ember.set_logs("graph,breaks")``."""
from __future__ import annotations

import os
import sys

CHANNELS = ("graph", "passes", "fusion", "kernels", "recompiles", "breaks", "perf")
_active: set[str] = set()


def set_logs(channels: str | list[str] = "") -> None:
    """Turn log channels on (``"all"`` for every channel, ``""`` for none)."""
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",") if c.strip()]
    chosen = set(CHANNELS) if "all" in channels else set(channels)
    unknown = chosen - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown EMBER_LOGS channel(s) {sorted(unknown)}; known: {CHANNELS}")
    _active.clear()
    _active.update(chosen)


def enabled(channel: str) -> bool:
    return channel in _active


def log(channel: str, text: str) -> None:
    if channel in _active:
        print(f"[ember:{channel}] {text}", file=sys.stderr)


try:
    set_logs(os.environ.get("EMBER_LOGS", ""))
except ValueError as e:  # a typo in the environment must not stop the program
    print(f"[ember] ignoring EMBER_LOGS: {e}", file=sys.stderr)
