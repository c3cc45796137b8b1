"""Compile-time accounting: seconds per phase of one graph's compile.

The tracer opens ``collecting()`` around a segment's compile; the passes, fusion,
lowering, code generation and LLVM each add their time with ``phase(name)``; the plan
keeps the table (``Plan.phase_seconds``), which ``explain()`` and the "perf" log show,
with the time per graph node. Outside ``collecting()``, ``phase`` costs one clock read.

    >>> with collecting() as acc:
    ...     with phase("fuse"):
    ...         pass
    >>> sorted(acc)
    ['fuse']
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from time import perf_counter
from typing import Iterator

_local = threading.local()
# The phases in compile order ("other": the plan's first run, memory planning...).
ORDER = ("passes", "fuse", "lower", "codegen", "llvm", "cuda")


@contextmanager
def collecting() -> Iterator[dict[str, float]]:
    """A fresh table of phase -> seconds for the phases timed inside (per thread)."""
    prev = getattr(_local, "acc", None)
    acc: dict[str, float] = {}
    _local.acc = acc
    try:
        yield acc
    finally:
        _local.acc = prev


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time of the block to phase ``name`` of the table being collected."""
    t0 = perf_counter()
    try:
        yield
    finally:
        acc = getattr(_local, "acc", None)
        if acc is not None:
            acc[name] = acc.get(name, 0.0) + perf_counter() - t0


def summary(acc: dict[str, float], total: float, nodes: int) -> str:
    """``total`` seconds split into its phases, and per node: one line.

    >>> summary({"passes": 0.1, "fuse": 0.2}, 0.5, 1000)
    '0.500 s (passes 0.100, fuse 0.200, other 0.200): 500.0 us per node'
    """
    order = {k: i for i, k in enumerate(ORDER)}
    parts = [f"{k} {acc[k]:.3f}" for k in sorted(acc, key=lambda k: order.get(k, len(order)))]
    other = total - sum(acc.values())
    if other > 0.0005:
        parts.append(f"other {other:.3f}")
    per = f": {total / nodes * 1e6:.1f} us per node" if nodes else ""
    return f"{total:.3f} s ({', '.join(parts)}){per}"
