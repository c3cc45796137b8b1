"""The ``perf`` log channel: compile time per stage, and time per kernel.

With ``EMBER_LOGS=perf`` every traced call logs how long it ran (the user's Python run
eagerly while recording), every compiled graph logs its stages (each pass; the plan:
fusion, lowering, LLVM, first run), and plans built while the channel is on are profiled:
each step is timed on every call. ``print_kernel_times()`` prints the table; it is also
printed at exit.

>>> ember.set_logs("perf")
>>> f = ember.compile(lambda x: (x * 2).exp().sum()); [f(ember.ones(1000)) for _ in range(9)]
>>> print_kernel_times()
[ember:perf] kernel times (7 profiled calls of each) ...
"""
from __future__ import annotations

import atexit
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from ember.codegen.phases import summary
from ember.inspect import logs

if TYPE_CHECKING:
    from ember.ir.graph import Graph
    from ember.runtime.plan import Plan


@dataclass
class KernelTime:
    """Accumulated time of one plan step (a kernel, or an op run eagerly)."""
    function: str
    graph: str
    shape: str                  # the type of the kernel's last node, e.g. f32[8,32]
    name: str
    backend: str
    ops: str
    calls: int = 0
    seconds: float = 0.0


KERNEL_TIMES: list[KernelTime] = []
_registered = [False]


def log_trace(name: str, seconds: float) -> None:
    logs.log("perf", f"{name}: traced call {seconds * 1e3:.2f} ms (eager run while recording)")


def log_compile(name: str, graph: str, pass_runs: list, plan_seconds: float,
                total_seconds: float) -> None:
    passes = sum(r.seconds for r in pass_runs)
    each = ", ".join(f"{r.name} {r.seconds * 1e3:.2f}" for r in pass_runs)
    logs.log("perf", f"{name}: graph {graph}: compiled in {total_seconds * 1e3:.2f} ms: "
             f"passes {passes * 1e3:.2f} ms ({each}); plan {plan_seconds * 1e3:.2f} ms "
             f"(fusion, lowering, LLVM, first run)")


def log_phases(name: str, graph: str, phase_seconds: dict, seconds: float, nodes: int) -> None:
    """The compile time of one graph by phase, and per traced node (``codegen.phases``)."""
    logs.log("perf", f"{name}: graph {graph}: compile phases "
             f"{summary(phase_seconds, seconds, nodes)}")


def profile_plan(plan: Plan, graph: Graph, function: str, where: str) -> None:
    """Time every step of ``plan`` (compiled from ``graph``) on every call from now on."""
    timed = []
    for step, info in zip(plan.steps, plan.kernels):
        shape = graph.type_str(info.nodes[-1]) if info.nodes and info.nodes[-1] in graph else ""
        rec = KernelTime(function, where, shape, info.name, info.backend, "+".join(info.ops))
        KERNEL_TIMES.append(rec)
        timed.append(_timed(step, rec))
    plan.steps[:len(timed)] = timed


def _timed(step, rec: KernelTime):
    def run(env):
        t0 = perf_counter()
        step(env)
        rec.seconds += perf_counter() - t0
        rec.calls += 1
    return run


def kernel_times_text() -> str:
    """The profiled steps, slowest in total first."""
    rows = sorted((r for r in KERNEL_TIMES if r.calls), key=lambda r: -r.seconds)
    if not rows:
        return "kernel times: no profiled calls"
    lines = [f"kernel times ({sum(r.calls for r in rows)} profiled step calls)",
             f"  {'function':<16} {'graph':<10} {'kernel':<10} {'shape':<14} {'backend':<7} "
             f"{'calls':>6} {'total ms':>9} {'mean us':>9}  ops"]
    for r in rows:
        lines.append(f"  {r.function[:16]:<16} {r.graph:<10} {r.name:<10} {r.shape:<14} "
                     f"{r.backend:<7} "
                     f"{r.calls:>6} {r.seconds * 1e3:>9.3f} {r.seconds / r.calls * 1e6:>9.1f}  "
                     f"{r.ops}")
    return "\n".join(lines)


def print_kernel_times() -> None:
    """Print the per-kernel table to the ``perf`` channel (stderr)."""
    logs.log("perf", kernel_times_text())


def register_at_exit() -> None:
    if not _registered[0]:
        _registered[0] = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    if logs.enabled("perf") and any(r.calls for r in KERNEL_TIMES):
        print_kernel_times()
