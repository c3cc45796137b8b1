"""ember.explain(fn, *args): what was compiled, into which kernels, and where it broke."""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.codegen.phases import summary
from ember.ir.graph import Graph
from ember.tracer.compile import CompiledFunction, CompiledModule, compile
from ember.tracer.segments import segments


@dataclass
class GraphReport:
    """One compiled graph (a segment between graph breaks)."""
    graph: Graph            # the optimized IR
    traced: Graph           # the IR as traced, before passes
    kernels: list = field(default_factory=list)      # this graph's runtime.plan.KernelInfo
    # Compile seconds per phase (passes, fuse, lower, codegen, llvm; ``codegen.phases``)
    # and in all (passes, plan building and its first run).
    phase_seconds: dict = field(default_factory=dict)
    compile_seconds: float = 0.0

    @property
    def compile_time(self) -> str:
        """The compile time, split by phase and per traced node, on one line."""
        return summary(self.phase_seconds, self.compile_seconds, len(self.traced))

    @property
    def nx(self):
        return self.graph.to_networkx()

    @property
    def text(self) -> str:
        return self.graph.text()


@dataclass
class Break:
    reason: str
    location: str

    def __str__(self) -> str:
        return f"{self.reason} at {self.location}"


@dataclass
class ExplainReport:
    name: str
    graphs: list[GraphReport] = field(default_factory=list)
    kernels: list = field(default_factory=list)      # runtime.plan.KernelInfo
    breaks: list[Break] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    trace_seconds: float = 0.0      # the traced calls (the Python run under the tracer)

    def __str__(self) -> str:
        lines = [f"ember.explain({self.name}): {len(self.graphs)} graph(s), "
                 f"{len(self.kernels)} kernel(s), {len(self.breaks)} graph break(s)"
                 + (f"; traced in {self.trace_seconds * 1e3:.1f} ms" if self.trace_seconds
                    else "")]
        for b in self.breaks:
            lines.append(f"  break: {b}")
        for f in self.fallbacks:
            lines.append(f"  fallback: {f}")
        for i, g in enumerate(self.graphs):
            lines.append(f"\n-- graph {i}: {len(g.traced)} traced nodes -> {len(g.graph)} after passes")
            if g.compile_seconds:   # (a repro's report has no timings)
                lines.append(f"  compiled in {g.compile_time}")
            lines.extend("  " + line for line in g.text.splitlines())
        lines.append("\n-- kernels")
        for k in self.kernels:
            where = f"  ({', '.join(_short(s) for s in k.src)})" if k.src else ""
            extra = f"  [{k.reason}]" if k.reason else ""
            lines.append(f"  {k.name:<10} {k.backend:<7} {'+'.join(k.ops)}{where}{extra}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """One self-contained HTML page: pictures, IR text and kernel sources side by side.

        >>> open("report.html", "w").write(ember.explain(f, x).to_html())
        """
        from ember.inspect.html import report_html
        return report_html(self)


def _short(src: str) -> str:
    import os
    path, _, line = src.rpartition(":")
    return f"{os.path.basename(path)}:{line}"


def explain(fn, *args, **kwargs) -> ExplainReport:
    """Compile ``fn`` for these arguments (running it once) and report what happened.

    >>> report = ember.explain(lambda x: (x * 2).relu().sum(), ember.randn(8))
    >>> print(report)            # graphs, kernels with their fused ops, graph breaks
    """
    if isinstance(fn, CompiledModule):
        cf = CompiledFunction(fn._orig_mod.__call__)
    elif isinstance(fn, CompiledFunction):
        cf = CompiledFunction(fn.fn, fullgraph=fn.fullgraph)
    else:
        cf = compile(fn)
        if not isinstance(cf, CompiledFunction):  # a module
            return explain(cf, *args, **kwargs)
    cf(*args, **kwargs)
    report = ExplainReport(getattr(fn, "__name__", type(fn).__name__))
    for entry in cf.cache.values():
        for seg in segments(entry.root):
            if seg.graph is not None:
                plan = seg.plan
                report.graphs.append(GraphReport(
                    seg.graph, seg.traced, list(plan.kernels), dict(plan.phase_seconds),
                    plan.phase_seconds.get("passes", 0.0) + plan.compile_seconds))
                report.kernels.extend(seg.plan.kernels)
    report.breaks = [Break(r, loc) for r, loc in cf.breaks]
    report.fallbacks = list(cf.fallbacks)
    report.stats = cf.stats()
    record = getattr(cf, "record", None)
    report.trace_seconds = getattr(record, "trace_seconds", 0.0)
    return report
