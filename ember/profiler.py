"""``torch.profiler``'s names: where the time of an eager program goes, op by op.

While a ``profile`` is active, every primitive op ember runs eagerly is timed (its eager
implementation is wrapped for the duration; outside a profile nothing is), and
``record_function`` ranges are timed around any code. A compiled call's replay runs
generated code, not eager ops: wrap it in a ``record_function`` to see it, and use
``explain()`` and the ``perf`` channel of ``ember.compile`` for what is inside. Only the
CPU's clock is read: ``ProfilerActivity.CUDA`` is accepted and adds nothing.

>>> from ember.profiler import profile, record_function
>>> with profile() as prof:
...     with record_function("step"):
...         y = (ember.ones(64, 64) @ ember.ones(64, 64)).relu()
>>> "matmul" in prof.key_averages().table()
True
"""
from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import threading
import time
from typing import Any, Callable

__all__ = ["profile", "record_function", "ProfilerActivity", "ProfilerAction", "schedule",
           "tensorboard_trace_handler", "supported_activities"]

_ACTIVE: list = []          # the profiles recording now (innermost last)
_LOCK = threading.Lock()


class ProfilerActivity(enum.Enum):
    CPU = 0
    CUDA = 1


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def supported_activities() -> set:
    return {ProfilerActivity.CPU}


def schedule(*, wait: int, warmup: int, active: int, repeat: int = 0,
             skip_first: int = 0) -> Callable[[int], ProfilerAction]:
    """Which steps record: skip ``skip_first``, then cycles of ``wait`` idle, ``warmup``
    and ``active`` recording steps (the last saves), ``repeat`` times (0: forever)."""
    cycle = wait + warmup + active

    def action(step: int) -> ProfilerAction:
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if repeat and step // cycle >= repeat:
            return ProfilerAction.NONE
        k = step % cycle
        if k < wait:
            return ProfilerAction.NONE
        if k < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD_AND_SAVE if k == cycle - 1 else ProfilerAction.RECORD
    return action


class _Event:
    __slots__ = ("name", "start_ns", "end_ns", "shapes", "thread", "op")

    def __init__(self, name: str, start_ns: int, end_ns: int, shapes: Any = None,
                 op: bool = True) -> None:
        self.name, self.start_ns, self.end_ns, self.shapes = name, start_ns, end_ns, shapes
        self.thread, self.op = threading.get_ident(), op   # (op: a primitive, not a range)


class FunctionEventAvg:
    """One row of ``key_averages()``: a name's count and times (microseconds)."""

    def __init__(self, key: str, input_shapes: Any = None, op: bool = True) -> None:
        self.key, self.input_shapes, self.op = key, input_shapes, op
        self.count = 0
        self.cpu_time_total = 0.0

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / max(self.count, 1)

    cpu_time_total_str = property(lambda self: _us(self.cpu_time_total))
    self_cpu_time_total = property(lambda self: self.cpu_time_total)
    cuda_time_total = device_time_total = 0.0


class EventList(list):
    """``key_averages()``'s rows, with torch's ``table``."""

    def table(self, sort_by: str | None = None, row_limit: int = 100, **_: Any) -> str:
        rows = list(self)
        if sort_by:
            key = sort_by.replace("self_", "").replace("cuda", "cpu").replace("device", "cpu")
            rows.sort(key=lambda r: getattr(r, key, 0.0), reverse=True)
        rows = rows[:row_limit] if row_limit and row_limit > 0 else rows
        total = sum(r.cpu_time_total for r in self if r.op) or 1.0   # (ranges hold ops)
        width = max([len("Name")] + [len(r.key) for r in rows])
        line = "-" * (width + 48)
        out = [line, f"{'Name':<{width}}  {'CPU total %':>11}  {'CPU total':>10}  "
                     f"{'CPU avg':>10}  {'# Calls':>8}", line]
        for r in rows:
            out.append(f"{r.key:<{width}}  {100 * r.cpu_time_total / total:>10.2f}%  "
                       f"{_us(r.cpu_time_total):>10}  {_us(r.cpu_time):>10}  {r.count:>8}")
        out += [line, f"Self CPU time total: {_us(total)} (ops; ranges include theirs)"]
        return "\n".join(out) + "\n"

    def total_average(self) -> FunctionEventAvg:
        avg = FunctionEventAvg("Total")
        for r in self:
            avg.count += r.count
            avg.cpu_time_total += r.cpu_time_total
        return avg


def _us(t: float) -> str:
    return f"{t / 1000:.3f}ms" if t >= 1000 else f"{t:.3f}us"


class profile:  # noqa: N801  (torch's name)
    """Time the ops and ``record_function`` ranges run inside it (torch.profiler.profile;
    ``torch.autograd.profiler.profile`` is the same, ``use_cuda`` ignored)."""

    def __init__(self, activities: Any = None, schedule: Callable | None = None,
                 on_trace_ready: Callable | None = None, record_shapes: bool = False,
                 profile_memory: bool = False, with_stack: bool = False,
                 with_flops: bool = False, with_modules: bool = False, enabled: bool = True,
                 **_: Any) -> None:
        self.schedule, self.on_trace_ready = schedule, on_trace_ready
        self.record_shapes, self.enabled = record_shapes, enabled
        self.events: list[_Event] = []
        self.step_num = 0
        self._recording = False

    # ---- recording ----------------------------------------------------------------------
    def __enter__(self) -> profile:
        if self.enabled:
            self._set(self._action() is not ProfilerAction.NONE)
        return self

    def __exit__(self, *exc) -> None:
        if self._recording:
            self._set(False)
            if self.schedule is None and self.on_trace_ready is not None:
                self.on_trace_ready(self)

    def start(self) -> None:
        self.__enter__()

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def step(self) -> None:
        """The end of a training step: the schedule decides whether the next records,
        and ``on_trace_ready`` gets the profile when an active span ends."""
        if not self.enabled:
            return
        done = self._action()
        self.step_num += 1
        if done is ProfilerAction.RECORD_AND_SAVE and self.on_trace_ready is not None:
            self.on_trace_ready(self)
        recording = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
        nxt = self._action()
        if nxt in recording and (done not in recording
                                 or done is ProfilerAction.RECORD_AND_SAVE):
            self.events = []   # a new span starts clean (warm-up steps are not kept)
        self._set(nxt is not ProfilerAction.NONE)

    def _action(self) -> ProfilerAction:
        return (ProfilerAction.RECORD if self.schedule is None
                else self.schedule(self.step_num))

    def _set(self, on: bool) -> None:
        if on == self._recording:
            return
        self._recording = on
        with _LOCK:
            if on:
                _ACTIVE.append(self)
                if len(_ACTIVE) == 1:
                    _wrap_ops()
            else:
                _ACTIVE.remove(self)
                if not _ACTIVE:
                    _unwrap_ops()

    # ---- results ------------------------------------------------------------------------
    def key_averages(self, group_by_input_shape: bool = False, **_: Any) -> EventList:
        rows: dict = {}
        for e in self.events:
            shapes = e.shapes if group_by_input_shape else None
            key = (e.name, None if shapes is None else tuple(map(tuple, shapes)))
            row = rows.get(key)
            if row is None:
                row = rows[key] = FunctionEventAvg(e.name, shapes, e.op)
            row.count += 1
            row.cpu_time_total += (e.end_ns - e.start_ns) / 1000
        return EventList(rows.values())

    def export_chrome_trace(self, path: str) -> None:
        """The events as a Chrome trace (chrome://tracing, Perfetto)."""
        trace = [{"name": e.name, "ph": "X", "cat": "cpu_op", "pid": os.getpid(),
                  "tid": e.thread, "ts": e.start_ns / 1000, "dur": (e.end_ns - e.start_ns) / 1000,
                  **({"args": {"Input Dims": e.shapes}} if e.shapes else {})}
                 for e in self.events]
        with open(path, "w") as f:
            json.dump({"traceEvents": trace}, f)

    def events_list(self) -> list:
        return list(self.events)


def _record(name: str, start: int, end: int, shapes: Any = None, op: bool = True) -> None:
    for p in _ACTIVE:
        p.events.append(_Event(name, start, end, shapes, op))


_ORIGINAL: dict = {}


def _wrap_ops() -> None:
    """Time every registry op's eager implementation while a profile records."""
    from ember.ops.registry import OPS
    for op in OPS.values():
        if op.name not in _ORIGINAL:
            _ORIGINAL[op.name] = op.eager
            op.eager = _timed(op.name, op.eager)


def _unwrap_ops() -> None:
    from ember.ops.registry import OPS
    for name, fn in _ORIGINAL.items():
        OPS[name].eager = fn
    _ORIGINAL.clear()


def _timed(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def timed(xp, *arrays, **attrs):
        start = time.perf_counter_ns()
        out = fn(xp, *arrays, **attrs)
        shapes = ([list(getattr(a, "shape", ())) for a in arrays]
                  if any(p.record_shapes for p in _ACTIVE) else None)
        _record(name, start, time.perf_counter_ns(), shapes)
        return out
    return timed


class record_function(contextlib.ContextDecorator):  # noqa: N801  (torch's name)
    """A named range in the profile (``with record_function("forward"):``, or as a
    decorator); nothing is recorded outside a profile."""

    def __init__(self, name: str, args: str | None = None) -> None:
        self.name = name
        self._start = 0

    def __enter__(self) -> record_function:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        if _ACTIVE:
            _record(self.name, self._start, time.perf_counter_ns(), op=False)


def tensorboard_trace_handler(dir_name: str, worker_name: str | None = None,
                              use_gzip: bool = False) -> Callable[[profile], None]:
    """An ``on_trace_ready`` that writes each span's Chrome trace into ``dir_name``."""
    def handler(prof: profile) -> None:
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{os.uname().nodename}_{os.getpid()}"
        prof.export_chrome_trace(os.path.join(
            dir_name, f"{worker}.{time.time_ns()}.pt.trace.json"))
    return handler
