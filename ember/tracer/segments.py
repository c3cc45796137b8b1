"""A traced call and the tree of segments its graph breaks split a cache entry into.

Reading a Python value from a tensor (``bool(t)``, ``t.item()``) cuts the trace: the
nodes before the cut are one segment, and the observed value picks the child segment
that follows. A cache entry keeps one tree; each path from the root is one trace.
``walk`` is the one loop every replay uses to go down it (the compiled replay, the
eager replay with autograd).

>>> path = insert_path(entry, trace)        # the segments along trace's path
>>> seg, value = walk(entry.root, run_segment, env)
>>> seg.trace if value is END else value    # the last segment, or a value not seen yet
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ember.ir.graph import Graph, InputSource
from ember.runtime.plan import Plan
from ember.tracer.trace import Observation, observed_value
from ember.tensor import array_of


@dataclass
class Trace:
    """One traced call: its graph, the values it observed, and how to rebuild its result."""
    graph: Graph
    observations: list[Observation]
    out_spec: Any
    # per output leaf: ("T", position in graph.outputs), ("V", value) or ("S", position):
    # the Python number an ``item()`` gave, read from that output (``out_value``)
    out_leaves: list
    captured: list
    arg_paths: dict            # input node id -> leaf index in the flattened arguments
    failed: str = ""
    failed_at: str = ""
    # Positions in graph.outputs whose tensor required grad, and those the function called
    # ``retain_grad()`` on: what the compiled backward must reproduce.
    grad_outputs: tuple = ()
    retained_outputs: tuple = ()
    # The captured tensors that required grad when traced: while no other one does, a
    # replay's results need gradients exactly when the traced call's did.
    captured_grad: frozenset = frozenset()
    none_grads: tuple = ()     # tensors made before the call whose ``.grad`` read None
    runtime_values: frozenset = frozenset()   # (id(dict), key, index): read at every call
    effects: tuple | None = None   # what a replay copies before writing back (writeback.py)
    # the arrays a call last checked to share no written memory (weak references)
    unshared: list = field(default_factory=list)
    # (weak reference to a module, attribute) the call assigned a tensor it made, after
    # the result's leaves in ``out_spec`` (pytree.AttrWrites)
    written: tuple = ()
    # ids of the captured tensors read through those slots, read there every call
    # (entry.py, ``_read_from_slots``)
    fed: frozenset = frozenset()
    # (id(module), name) of the slots read at every call that the call did not assign
    read_slots: frozenset = frozenset()
    # the graph position of the first ``item()`` stand-in (symbolic.ItemProxy), if any
    first_item: int | None = None

    def signature(self, upto: int) -> list:
        """What must be identical between two traces of the same code, up to node ``upto``."""
        g = self.graph
        sig = []
        for n in g.nodes():
            if n >= upto:
                break
            d = g[n]
            c = g.consts.get(n)
            sig.append((n, d.op, d.args, _attr_key(d.attrs), d.shape, d.dtype.name,
                        None if c is None else (c.shape, c.tobytes())))
        if upto >= g.next_id:  # the whole call: what it writes back must agree too
            sig.append(("effects", tuple(g.outputs), tuple(g.writebacks), tuple(g.grad_writes),
                        tuple(g.rebinds), tuple(sorted(g.aliases.items()))))
        return sig


def _attr_key(attrs: dict):
    try:
        return tuple(sorted((k, v) for k, v in attrs.items()))
    except TypeError:
        return repr(attrs)


@dataclass
class Segment:
    """The nodes [lo, hi) of the traces through it, compiled into ``plan``; ``obs`` is the
    value read at ``hi`` (None at the end of a call), ``children`` the next segment per
    observed value."""
    lo: int
    hi: int
    obs: Observation | None = None
    children: dict = field(default_factory=dict)
    trace: Trace | None = None       # the trace whose outputs end here (terminal segments)
    needs: set = field(default_factory=set)
    plan: Plan | None = None
    graph: Graph | None = None       # the optimized segment graph
    captured: list = field(default_factory=list)  # (input id, InputSource, meta) per build
    # per captured .grad: a weak reference to the last array whose meta matched
    checked: list = field(default_factory=list)
    # (trace graph, needs, writebacks) the segment was built from: ``traced`` re-derives
    source: tuple | None = None

    @property
    def traced(self) -> Graph | None:
        """The segment's graph as traced, before the passes (explain and dumps show it),
        made again from its trace's graph, which the entry keeps unchanged."""
        if self.source is None:
            return None
        g, needs, writebacks = self.source
        return segment_graph(g, self.lo, self.hi, needs, writebacks)


END = object()   # what ``walk`` returns as the value when a call reached its end


def walk(root: Segment, run: Callable[[Segment, dict], None], env: dict,
         tensors: bool = False) -> tuple[Segment, Any]:
    """Run ``run(segment, env)`` from ``root`` down; after each segment, the value the
    call read there (``env`` holds arrays, or Tensors when ``tensors``) picks the child.
    Returns the last segment and ``END`` when the call reached its end, or the segment
    whose observed value has no child yet and that value (a branch not traced yet).
    Exceptions of ``run`` propagate. (Plain arguments and a tuple: every replay, every
    cache hit, goes through here.)"""
    seg = root
    while True:
        run(seg, env)
        obs = seg.obs
        if obs is None:
            return seg, END
        v = env[obs.node]
        value = observed_value(array_of(v) if tensors else v, obs.how)
        child = seg.children.get(value)
        if child is None:
            return seg, value
        seg = child


def segments(root: Segment | None) -> Iterator[Segment]:
    """Every segment of a tree, depth first, children in the order they were seen."""
    stack = [root] if root is not None else []
    while stack:
        seg = stack.pop()
        yield seg
        stack.extend(reversed(list(seg.children.values())))


def has_path(root: Segment | None, trace: Trace) -> bool:
    """Does the tree already hold ``trace``'s path, to a compiled end?"""
    seg = root
    for o in trace.observations:
        if seg is None or seg.obs is None:
            return False
        seg = seg.children.get(o.value)
    return seg is not None and seg.trace is not None


def trace_through(root: Segment, traces: list[Trace], seg: Segment) -> Graph:
    """A full trace graph that passes through ``seg`` (any will do: prefixes agree)."""
    for t in traces:
        s = root
        for o in t.observations:
            if s is seg:
                return t.graph
            s = s.children.get(o.value)
            if s is None:
                break
        if s is seg:
            return t.graph
    raise AssertionError("segment without a trace")


def insert_path(root: Segment | None, trace: Trace) -> tuple[Segment, list[Segment]]:
    """Add ``trace``'s path to the tree (creating segments it lacks); returns the root and
    the path, and marks for rebuilding each segment that must now hand on more values."""
    g = trace.graph
    cuts = [o.cut for o in trace.observations] + [g.next_id]
    path: list[Segment] = []
    parent, lo = None, 0
    for i, hi in enumerate(cuts):
        obs = trace.observations[i] if i < len(trace.observations) else None
        if parent is None:
            seg = root
            if seg is None:
                seg = root = Segment(lo, hi, obs)
        else:
            key = trace.observations[i - 1].value
            seg = parent.children.get(key)
            if seg is None:
                seg = parent.children[key] = Segment(lo, hi, obs)
        if obs is None:
            seg.trace = trace
        path.append(seg)
        parent, lo = seg, hi
    # What each segment must hand on: values used later, outputs, observed values.
    later_uses = set(g.outputs) | {v for _, v in g.writebacks}
    for n in g.nodes():
        later_uses.update(g[n].args)
    for seg in path:
        need = {n for n in later_uses if seg.lo <= n < seg.hi and (
            n in g.outputs or any(v == n for _, v in g.writebacks)
            or any(u >= seg.hi for u in g.users(n)))}
        # Observed values made here: a later (perhaps empty) segment observes some, as in
        # ``a.numpy(); b.numpy()`` of two tensors made before the first read.
        need.update(o.node for o in trace.observations if seg.lo <= o.node < seg.hi)
        if seg.obs is not None:
            need.add(seg.obs.node)
        if not need <= seg.needs or seg.plan is None:
            seg.needs |= need
            seg.plan = None
    return root, path


def divergence(a: Trace, b: Trace) -> int:
    """Node count up to which two traces must agree (their first differing observation)."""
    for oa, ob in zip(a.observations, b.observations):
        if oa.value != ob.value or oa.cut != ob.cut:
            if oa.how == ob.how == "shape" and oa.node == ob.node:
                return oa.node   # the node whose size differed may differ in its shape
            return min(oa.cut, ob.cut)
    return max(a.graph.next_id, b.graph.next_id)


def segment_graph(g: Graph, lo: int, hi: int, needs: list[int], writebacks) -> Graph:
    """The nodes of [lo, hi); values from earlier segments become inputs."""
    sg = g.copy()
    sg.grad_writes, sg.rebinds, sg.aliases = [], [], {}  # applied from the whole trace
    used_before = set()
    for n in g.nodes():
        if lo <= n < hi:
            used_before.update(a for a in g[n].args if a < lo)
    used_before.update(n for n in needs if n < lo)
    used_before.update(v for _, v in writebacks if v < lo)
    used_before.update(i for i, _ in writebacks)
    for n in g.nodes():
        if n >= hi and n not in used_before:
            sg.remove(n)
        elif n < lo or (n >= hi):
            if n in used_before:
                if g[n].op != "input":
                    sg.make_input(n, InputSource("env", f"%{n}"))
            else:
                sg.remove(n)
    sg.inputs.sort()
    sg.outputs = list(needs)
    sg.writebacks = list(writebacks)
    return sg


def out_value(kind: str, v, outs):
    """One leaf of a replay's result: a Python value the trace returned ("V"), an output
    ("T"), or the number an output holds ("S", a returned ``item()``)."""
    if kind == "V":
        return v
    return outs[v] if kind == "T" else outs[v].item()
