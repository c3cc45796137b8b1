"""Where the compiler calls the inspector: one function per moment worth seeing.

ember/tracer/compile.py calls these (and nothing else of ember.inspect) so the compiler
stays readable and everything about looking inside lives here. Each is cheap when no log
channel, dump directory or profiler wants it, and none may break a compile: a failing
hook is a warning.

>>> # in compile.py:   self.record = _inspect.track(self)
"""
from __future__ import annotations

import warnings
from time import perf_counter as clock  # noqa: F401  (compile.py times stages with it)
from typing import TYPE_CHECKING

from ember.inspect import dump, logs
from ember.inspect.passes import PassRecorder
from ember.inspect.record import FunctionRecord, new_record

if TYPE_CHECKING:
    from ember.runtime.plan import KernelInfo
    from ember.tracer.compile import CompiledFunction, Entry, Segment


def track(cf: CompiledFunction) -> FunctionRecord:
    """A new CompiledFunction: its record (kept for the summary at exit)."""
    return new_record(cf)


def pass_recorder(cf: CompiledFunction) -> PassRecorder | None:
    """The ``log`` for run_pipeline, or None when nobody looks (the IR text costs time)."""
    if logs.enabled("passes") or logs.enabled("perf") or dump.dump_dir() is not None:
        return PassRecorder(cf.__name__)
    return None


def traced(cf: CompiledFunction, entry: Entry, seconds: float) -> None:
    """A call of ``cf`` ran the user's Python under the tracer for ``seconds``."""
    cf.record.traced(entry, seconds)
    if logs.enabled("perf"):
        from ember.inspect import perf
        perf.log_trace(cf.__name__, seconds)


def segment_built(cf: CompiledFunction, seg: Segment, env: dict, passlog: PassRecorder | None,
                  seconds: float) -> None:
    """A graph (segment) of ``cf`` was optimized and compiled into ``seg.plan``."""
    cf.record.compile_seconds += seconds
    cf.record.graphs_built += 1
    try:
        _segment_built(cf, seg, env, passlog, seconds)
    except Exception as e:  # debug output must never break a compile
        warnings.warn(f"ember: inspecting {cf.__name__} failed: {type(e).__name__}: {e}",
                      stacklevel=3)


def _segment_built(cf, seg, env, passlog, seconds) -> None:
    where = f"[{seg.lo}, {seg.hi})"
    runs = passlog.runs if passlog is not None else []
    if logs.enabled("perf"):
        from ember.inspect import perf
        perf.log_compile(cf.__name__, where, runs, seg.plan.compile_seconds, seconds)
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


def verify_failed(cf: CompiledFunction, seg: Segment, inputs: dict, info: KernelInfo,
                  message: str) -> str:
    """mode="verify" found kernel ``info`` differing: write a repro; returns a line naming it."""
    done = dump.dump_graph(cf.__name__, seg.graph, seg.traced or seg.graph, seg.plan.kernels,
                           inputs, why=f"mode='verify' found {info.name} differing",
                           suffix="_verify", recorded=message)
    if done is None:
        return "repro: could not be written (see the warning)"
    return f"repro: python {done.resolve() / 'repro.py'}"
