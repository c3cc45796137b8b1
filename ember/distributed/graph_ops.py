"""Collectives as graph ops: ``all_reduce`` and ``broadcast`` of ember.distributed.

Inside ``@ember.compile`` a collective is recorded like any op, so a replay runs it with
no Python in between and a compiled training step is one graph. Each is
``impure`` (two all-reduces of the same value are two messages: never merged or folded)
and has an ``effect`` (kept though nothing read it, and scheduled as soon as its input
exists, so a gradient bucket's all-reduce starts before the rest of the backward).
Every rank runs the same plan, so the ranks issue the same collectives in the same
order (MPI requires it); ties in the schedule break by creation order.

The op is pure in the IR: it returns a new array, and ``collective_inplace`` writes it
into the tensor through the tensor's in-place path (the tracer's write-back).

These ops are registered when ember.distributed first records one (``ember.ops``
knows nothing of them: the registry is below every package): they need a process group to run, so the registry-wide
tests (every op against torch, every op compiled) do not apply to them; their tests
start MPI jobs (tests/test_distributed.py).
"""
from __future__ import annotations

import time

from ember.ops.registry import EXTERN, defop

# Seconds spent in collective graph ops of this process (for throughput reports: a
# compiled step's communication, separate from its compute).
stats = {"seconds": 0.0, "calls": 0}


def _run(xp, a, kind: str, group: int, op: str = "SUM", root: int = 0):
    t0 = time.perf_counter()
    try:
        return _run_timed(xp, a, kind, group, op, root)
    finally:
        stats["seconds"] += time.perf_counter() - t0
        stats["calls"] += 1


def _run_timed(xp, a, kind: str, group: int, op: str, root: int):
    from ember.distributed.group import group_by_id

    pg = group_by_id(group)
    tr = pg.transport("cuda" if xp.__name__ == "cupy" else "cpu")
    out = xp.array(a, copy=True, order="C")
    if xp.__name__ == "cupy" and tr.name == "mpi":
        import numpy as np
        host = np.ascontiguousarray(out.get())
        _start(tr, host, kind, op, root).wait()
        if op == "AVG":
            host /= pg.size
        return xp.asarray(host)
    _start(tr, out, kind, op, root).wait()
    if op == "AVG":
        out /= pg.size
    return out


def _start(tr, buf, kind: str, op: str, root: int):
    if kind == "all_reduce":
        return tr.all_reduce(buf, "SUM" if op == "AVG" else op, "all_reduce (compiled)")
    return tr.broadcast(buf, root, "broadcast (compiled)")


defop("all_reduce", EXTERN,
      lambda xp, a, group, reduce_op: _run(xp, a, "all_reduce", group, op=reduce_op),
      impure=True, effect=True)
defop("broadcast", EXTERN,
      lambda xp, a, group, root: _run(xp, a, "broadcast", group, root=root),
      impure=True, effect=True)


def collective_inplace(tensor, kind: str, pg, **attrs) -> None:
    """Run collective ``kind`` on ``tensor`` as a graph op written back in place."""
    from ember import autograd
    from ember.dispatch import dispatch

    with autograd.no_grad():
        tensor._inplace(lambda s: dispatch(kind, s, group=pg.id, **attrs), (), kind, cast=True)


def all_reduce_value(t, pg, op: str = "SUM"):
    """``t`` reduced over the group, as a new tensor (DDP's buckets, traced or not)."""
    from ember.dispatch import dispatch
    return dispatch("all_reduce", t, group=pg.id, reduce_op=op)
