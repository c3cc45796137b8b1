"""The inspector's subscription to the compiler's events (ember/tracer/events.py).

The tracer publishes what happens (a function compiled, a call traced, a segment built,
a hit, a recompile, a fallback, a graph break); ``Inspector`` turns each into records,
log lines, dumps and reports, and everything about looking inside lives here. Each is
cheap when no log channel, dump directory or profiler wants it, and none may break a
compile: a failing debug output is a warning. Importing ``ember.inspect`` subscribes.

>>> events.subscribe(Inspector())     # done once, below
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ember.inspect import dump, logs
from ember.inspect.passes import PassRecorder
from ember.inspect.record import new_record
from ember.tracer import events

if TYPE_CHECKING:
    from ember.runtime.plan import KernelInfo
    from ember.tracer.compile import CompiledFunction
    from ember.tracer.entry import Entry
    from ember.tracer.segments import Segment


class Inspector(events.Listener):
    """Records, logs and dumps, from the compiler's events."""

    def function_created(self, cf: CompiledFunction) -> None:
        cf.record = new_record(cf)   # kept for the summary at exit

    def entry_created(self, cf: CompiledFunction, entry: Entry, key, reason: str) -> None:
        cf.record.entry_created(entry, key, reason)

    def hit(self, cf: CompiledFunction, entry: Entry, seconds: float) -> None:
        rec = cf.record._by_entry.get(entry)   # FunctionRecord.hit, inlined: every hit
        if rec is not None:
            rec.hits += 1
            rec.hit_seconds += seconds

    def pass_log(self, cf: CompiledFunction) -> PassRecorder | None:
        """The ``log`` for run_pipeline, or None when nobody looks (the IR text costs time)."""
        if logs.enabled("passes") or logs.enabled("perf") or dump.dump_dir() is not None:
            return PassRecorder(cf.__name__)
        return None

    def traced(self, cf: CompiledFunction, entry: Entry, seconds: float) -> None:
        """A call of ``cf`` ran the user's Python under the tracer for ``seconds``."""
        cf.record.traced(entry, seconds)
        if logs.enabled("perf"):
            from ember.inspect import perf
            perf.log_trace(cf.__name__, seconds)

    def recompiled(self, cf: CompiledFunction, reason: str) -> None:
        logs.log("recompiles", f"{cf.__name__}: recompiling: {reason}")

    def rented(self, cf: CompiledFunction, reason: str, seen: int) -> None:
        logs.log("recompiles", f"{cf.__name__}: a new size runs eagerly (call {seen} at it; "
                 f"it compiles once such calls cost what a compile does): {reason}")

    def fallback(self, cf: CompiledFunction, text: str) -> None:
        logs.log("breaks", f"{cf.__name__}: fallback: {text}")

    def graph_break(self, cf: CompiledFunction, how: str, location: str) -> None:
        logs.log("breaks", f"{cf.__name__}: graph break: {how}() at {location}")

    def segment_built(self, cf: CompiledFunction, seg: Segment, env: dict,
                      passlog: PassRecorder | None, seconds: float) -> None:
        """A graph (segment) of ``cf`` was optimized and compiled into ``seg.plan``."""
        cf.record.compile_seconds += seconds
        cf.record.graphs_built += 1
        if logs.enabled("graph"):
            logs.log("graph", f"{cf.__name__}: segment [{seg.lo}, {seg.hi}):\n{seg.graph.text()}")
        if logs.enabled("kernels"):
            for k in seg.plan.kernels:
                if k.source:  # generated code: LLVM IR, or CUDA C
                    logs.log("kernels", f"{k.name} ({'+'.join(k.ops)}):\n{k.source}")
        try:
            _segment_built(cf, seg, env, passlog, seconds)
        except Exception as e:  # debug output must never break a compile
            warnings.warn(f"ember: inspecting {cf.__name__} failed: {type(e).__name__}: {e}",
                          stacklevel=3)

    def verify_failed(self, cf: CompiledFunction, seg: Segment, inputs: dict, info: KernelInfo,
                      message: str) -> str:
        """mode="verify" found kernel ``info`` differing: write a repro; a line naming it."""
        done = dump.dump_graph(cf.__name__, seg.graph, seg.traced or seg.graph,
                               seg.plan.kernels, inputs,
                               why=f"mode='verify' found {info.name} differing",
                               suffix="_verify", recorded=message)
        if done is None:
            return "repro: could not be written (see the warning)"
        return f"repro: python {done.resolve() / 'repro.py'}"

    def cache_report(self, cf: CompiledFunction) -> str:
        from ember.inspect.cache import cache_report
        return cache_report(cf)


def _segment_built(cf, seg, env, passlog, seconds) -> None:
    where = f"[{seg.lo}, {seg.hi})"
    runs = passlog.runs if passlog is not None else []
    if logs.enabled("perf"):
        from ember.inspect import perf
        perf.log_compile(cf.__name__, where, runs, seg.plan.compile_seconds, seconds)
        traced = seg.traced
        perf.log_phases(cf.__name__, where, seg.plan.phase_seconds, seconds,
                        len(traced if traced is not None else seg.graph))
        perf.profile_plan(seg.plan, seg.graph, cf.__name__, where)
    if logs.enabled("fusion"):
        from ember.inspect.fusion import explain_fusion
        report = str(explain_fusion(seg.graph, seg.plan.kernels))
        logs.log("fusion", f"{cf.__name__}: graph {where}: {len(seg.plan.kernels)} kernel(s)\n"
                 + "\n".join("  " + line for line in report.splitlines()))
    if dump.dump_dir() is not None:
        inputs = {n: env[n] for n in seg.graph.inputs if n in env}
        folder = dump.dump_graph(cf.__name__, seg.graph, seg.traced, seg.plan.kernels, inputs,
                                 runs)
        if folder is not None:
            logs.log("graph", f"{cf.__name__}: graph {where} dumped to {folder}")


INSPECTOR = Inspector()
events.subscribe(INSPECTOR)
