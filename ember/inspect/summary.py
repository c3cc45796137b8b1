"""``EMBER_LOGS=summary``: at exit, what each compiled function cost and (roughly) saved.

Per compiled function: calls, compiles, cache hits, eager calls, every recompile reason
and fallback, the time spent compiling, and the time saved. Saved time is an estimate:
each cache entry's first calls ran the Python eagerly (while recording it), so the
faster of them stands in for one eager call, and every cache hit saved that minus what
the hit took. Recording makes those calls slower than plain eager, so the estimate
leans high.

>>> ember.set_logs("summary")      # or EMBER_LOGS=summary; print_summary() prints it now
"""
from __future__ import annotations

import atexit

from ember.inspect import logs
from ember.inspect.record import RECORDS, FunctionRecord

_registered = [False]


def summary_text(records: list[FunctionRecord] | None = None) -> str:
    """The summary of ``records`` (default: every compiled function of this process)."""
    records = [r for r in (RECORDS if records is None else records) if r.counters["calls"]]
    lines = [f"{len(records)} compiled function(s) called; times are wall clock, "
             f"'saved' is an estimate (eager time measured on each cache entry's traced calls)"]
    for rec in records:
        c = rec.counters
        lines.append(f"{rec.name}: {c['calls']} calls, {c['compiles']} compiles, "
                     f"{c['cache_hits']} cache hits, {c['eager_calls']} eager calls, "
                     f"{rec.graphs_built} graph(s) built")
        for reason in rec.recompile_reasons:
            lines.append(f"    recompile: {reason}")
        for text, n in rec.fallbacks.items():
            lines.append(f"    fallback{f' (x{n})' if n > 1 else ''}: {text}")
        eager, hits, hit_s = estimate(rec)
        compile_s = rec.compile_seconds
        if hits:
            saved = eager - hit_s
            lines.append(f"    compiling {compile_s * 1e3:.2f} ms; compiled calls "
                         f"{hit_s / hits * 1e3:.3f} ms each over {hits} cache hits, eager "
                         f"~{eager / hits * 1e3:.3f} ms each (measured while recording, so high)")
            lines.append(f"    saved ~{saved * 1e3:.2f} ms at most (estimate), net "
                         f"{(saved - compile_s) * 1e3:+.2f} ms after compiling")
        else:
            lines.append(f"    compiling {compile_s * 1e3:.2f} ms; no cache hits yet, "
                         f"nothing saved")
    return "\n".join(lines)


def estimate(rec: FunctionRecord) -> tuple[float, int, float]:
    """(estimated eager seconds of the hits, hits, seconds the hits took)."""
    eager = hit_s = 0.0
    hits = 0
    for e in rec.entries:
        if e.hits and e.eager_seconds >= 0:
            eager += e.hits * e.eager_seconds
            hits += e.hits
            hit_s += e.hit_seconds
    return eager, hits, hit_s


def print_summary() -> None:
    """Print the summary to the ``summary`` channel (stderr) now."""
    logs.log("summary", summary_text())


def register_at_exit() -> None:
    if not _registered[0]:
        _registered[0] = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    if logs.enabled("summary"):
        print_summary()
