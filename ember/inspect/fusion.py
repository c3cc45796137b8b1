"""Why the graph became these kernels: the fused groups, and why neighbours stayed apart.

The plan's kernels say which nodes ran together. For every edge between two op nodes
that ended in different kernels, ``explain_fusion`` names what kept them apart: an op
the code generators do not emit (BLAS matmul, movement views), or the reason fusion
itself gave when it refused the merge (``fuse(graph, refused)``): iteration spaces that
cannot share one loop nest, a merge that would make a cycle between kernels, or
broadcasting that would index a value differently.

>>> report = ember.explain(lambda x: (x * 2).sum() + x.t(), ember.randn(4, 4))
>>> print(explain_fusion(report.graphs[0].graph, report.graphs[0].kernels))
kernel0  llvm   %1 mul, %2 sum  f32[]
...
not fused: %2 sum -> %4 add: iteration spaces differ ([4,4] reducing dims 0,1 vs [4,4]) ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.ir.graph import Graph
from ember.codegen.backend import backend_for
from ember.ir.passes.fuse import FUSIBLE, REDUCE_OPS, fuse, fusible
from ember.ops.registry import OPS

_LEAVES = ("input", "const")


@dataclass
class NotFused:
    producer: int
    consumer: int
    reason: str


@dataclass
class FusionReport:
    """The kernels of one graph (``kernels``: plan KernelInfos) and the unfused edges."""
    graph: Graph
    kernels: list
    not_fused: list[NotFused] = field(default_factory=list)

    def __str__(self) -> str:
        g = self.graph
        lines = []
        for k in self.kernels:
            members = ", ".join(_node(g, n) for n in k.nodes if n in g)
            shape = g.type_str(k.nodes[-1]) if k.nodes and k.nodes[-1] in g else ""
            extra = f"  [fell back: {k.reason}]" if k.reason else ""
            lines.append(f"{k.name:<9}{k.backend:<7}{members}  {shape}{extra}")
        users: dict[tuple[int, str], list[int]] = {}  # one line per producer and reason
        for nf in self.not_fused:
            users.setdefault((nf.producer, nf.reason), []).append(nf.consumer)
        for (p, reason), cs in users.items():
            lines.append(f"not fused: {_node(g, p)} -> {', '.join(_node(g, c) for c in cs)}: "
                         f"{reason}")
        return "\n".join(lines)



def explain_fusion(graph: Graph, kernels: list) -> FusionReport:
    """The fused groups of ``graph`` and, for each edge between kernels, why."""
    unit = {n: i for i, k in enumerate(kernels) for n in k.nodes}
    refused: list = []   # fusion's own decisions: the merges it tried and refused, and why
    group_of = {n: g for g in fuse(graph, refused) for n in g.nodes}
    why = {(r.producer, r.consumer): r.reason for r in refused}
    report = FusionReport(graph, list(kernels))
    seen = set()
    for a, b in graph.edges():
        if (a, b) in seen or graph[a].op in _LEAVES or graph[b].op in _LEAVES:
            continue
        seen.add((a, b))
        if unit.get(a) is None or unit.get(a) != unit.get(b):
            report.not_fused.append(NotFused(a, b, why_apart(graph, a, b, group_of,
                                                             why.get((a, b)))))
    return report


def why_apart(graph: Graph, a: int, b: int, group_of: dict, refused: str | None) -> str:
    """Why producer ``a`` and its user ``b`` are in different kernels; ``refused`` is the
    reason fusion gave when it refused to merge them (``fuse.Refused``), if it tried."""
    for n in (b, a):
        if not fusible(graph, n):
            return not_fusible_reason(graph, n)
    ga, gb = group_of.get(a), group_of.get(b)
    if ga is None or gb is None:
        return "not grouped by fusion"
    if refused == "spaces":
        return (f"iteration spaces differ ({_space(ga)} vs {_space(gb)}); "
                f"a kernel is one loop nest")
    if refused == "cycle":
        via = cycle_through(graph, set(ga.nodes), set(gb.nodes))
        where = f" through %{via} {graph[via].op}" if via is not None else ""
        return f"merging would make a cycle{where}"
    if refused == "broadcast":
        return "broadcasting would read a value at a different point of the shared loop nest"
    if refused == "size":
        return "the kernel would be too long (fuse.MAX_GROUP_WEIGHT ops) to compile fast"
    return "left apart by the greedy fusion order"


def _space(g) -> str:
    text = "[" + ",".join(map(str, g.full)) + "]"
    if g.rdims:
        dims = ",".join(map(str, sorted(g.rdims)))
        text += f" reducing dim{'s' if len(g.rdims) > 1 else ''} {dims}"
    return text


def not_fusible_reason(graph: Graph, n: int) -> str:
    d = graph[n]
    op = d.op
    kind = OPS[op].kind if op in OPS else "?"
    backend = backend_for(d.device.type)
    if backend is None:
        return f"{op} is on {d.device}, which has no code generator"
    bad = [graph[x].dtype for x in (n, *d.args) if graph[x].dtype not in backend.dtypes]
    if bad:
        return f"no code generator emits {bad[0].name} (the op runs through NumPy)"
    if op == "matmul":
        return "matmul runs as a BLAS call (extern)"
    if op in REDUCE_OPS:
        return f"this {op} cannot be generated (no axes, or float16)"
    if kind == "reduce":
        return f"no code generator emits the reduction {op} (runs through NumPy)"
    if kind == "movement":
        return f"{op} is a movement op (a NumPy view; kernels read it through strides)"
    if op in OPS and OPS[op].elementwise and op not in FUSIBLE:
        return f"no code generator emits {op}"
    return f"{op} is not elementwise ({kind} op, runs through NumPy)"


def cycle_through(graph: Graph, first: set, second: set) -> int | None:
    """A node outside both sets on a path between them (merging them would be a cycle)."""
    merged = first | second
    lo = min(merged)
    # Node ids are topological: walking back from the sets' outside operands, nothing
    # below the smallest member can lead back into them.
    parent = {}
    stack = [a for m in merged for a in graph[m].args if a not in merged and a >= lo]
    for s in stack:
        parent.setdefault(s, s)
    while stack:
        n = stack.pop()
        for a in graph[n].args:
            if a in merged:
                return parent[n]
            if a >= lo and a not in parent:
                parent[a] = parent[n]
                stack.append(a)
    return None


def _node(graph, n: int) -> str:
    return f"%{n} {graph[n].op}"
