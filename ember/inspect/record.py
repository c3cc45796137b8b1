"""What the inspector remembers about each compiled function while the program runs.

A ``FunctionRecord`` shares the counters and reason lists of its ``CompiledFunction``
(the same dict and list objects), and adds times and per-cache-entry facts: why each
entry was created, how long its traced calls took (they run the Python eagerly: the
first two calls of an entry do), its cache hits and how long they took. Records outlive
their functions, so the summary at exit sees every one.

>>> f = ember.compile(lambda x: x + 1)
>>> f(ember.ones(2)); f.record.entries[0].reason
'first call'
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ember.tracer.compile import CompiledFunction

# Every record made in this process, in creation order (the summary at exit reads them).
RECORDS: list[FunctionRecord] = []


@dataclass
class EntryRecord:
    """One cache entry: why it exists and what it cost and saved."""
    index: int
    key: tuple
    reason: str                      # "first call" or the guard that failed
    eager_seconds: float = -1.0     # fastest traced call of the entry: eager run + recording
    hits: int = 0
    hit_seconds: float = 0.0


@dataclass
class FunctionRecord:
    """Times and cache-entry facts of one compiled function (see the module docstring)."""
    name: str
    counters: dict
    recompile_reasons: list
    fallbacks: dict                  # reason -> how many calls it concerned
    compile_seconds: float = 0.0     # passes, fusion, code generation, first runs
    trace_seconds: float = 0.0       # every traced call (these run the Python eagerly)
    graphs_built: int = 0
    entries: list[EntryRecord] = field(default_factory=list)
    # Entry -> EntryRecord, weakly: a dropped entry's id may be reused by a new one.
    _by_entry: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary,
                                                 repr=False)

    def entry_created(self, entry, key: tuple, reason: str) -> None:
        rec = EntryRecord(len(self.entries), key, reason)
        self.entries.append(rec)
        self._by_entry[entry] = rec

    def entry_of(self, entry) -> EntryRecord | None:
        return self._by_entry.get(entry)

    def traced(self, entry, seconds: float) -> None:
        self.trace_seconds += seconds
        rec = self._by_entry.get(entry)
        if rec is not None and (rec.eager_seconds < 0 or seconds < rec.eager_seconds):
            rec.eager_seconds = seconds

    def hit(self, entry, seconds: float) -> None:
        rec = self._by_entry.get(entry)
        if rec is not None:
            rec.hits += 1
            rec.hit_seconds += seconds


def new_record(cf: CompiledFunction) -> FunctionRecord:
    """The record of a new CompiledFunction, registered for the summary at exit."""
    rec = FunctionRecord(display_name(cf), cf.counters, cf.recompile_reasons, cf.fallback_counts)
    RECORDS.append(rec)
    return rec


def display_name(cf: CompiledFunction) -> str:
    """``f`` for a function, ``MLP.forward`` for a compiled module's call."""
    owner = getattr(cf.fn, "__self__", None)
    if owner is not None and getattr(cf.fn, "__name__", "") == "__call__":
        return f"{type(owner).__name__}.forward"
    return getattr(cf, "__name__", None) or type(cf.fn).__name__
