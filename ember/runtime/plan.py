"""Plan: the ordered steps of one compiled graph over an environment of arrays.

A step (``steps.py``) is a generated kernel (one fused group, or several independent
ones run as one call), a BLAS matmul with its epilogue kernel, or a registry op run
eagerly (movement ops as NumPy views, indexing, anything without a kernel). Building a
plan runs it once on the real inputs: that discovers the memory layout of every
intermediate (view strides become kernel index arithmetic) and gives the first results.
Then ``memory.py`` writes updated parameters in place where it can and shares buffers.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import networkx as nx

from ember.codegen.backend import backend_for
from ember.codegen.kernel import Kernel
from ember.codegen.lower import (const_varies, external_args, group_outputs, lower_group,
                                 varying_dims)
from ember.codegen.phases import phase
from ember.ir.passes.fuse import Group, fuse
from ember.ir.views import address, byte_view, root
from ember.ops.registry import OPS
from ember.devices import array_module
from ember.runtime.memory import (Arena, Buffer, InPlace, plan_memory, release_dead_values,
                                  update_in_place)
from ember.runtime.steps import (GroupFallbackStep, KernelStep, MatmulStep, MultiKernelStep,
                                 eager_step)


@dataclass
class KernelInfo:
    """What explain() shows of one step."""
    name: str
    backend: str            # a Backend's name ("llvm", "cuda"), "extern" or "eager"
    ops: list[str]
    nodes: list[int]
    src: list[str]
    source: str = ""
    kernel: Kernel | None = None
    reason: str = ""        # why a fused group fell back to eager
    parts: list = field(default_factory=list)   # horizontally fused kernels, one call

    def __repr__(self) -> str:
        return f"<{self.backend} kernel {self.name}: {'+'.join(self.ops)}>"


@dataclass
class Plan:
    steps: list = field(default_factory=list)        # callables env -> None
    kernels: list[KernelInfo] = field(default_factory=list)
    consts: dict = field(default_factory=dict)
    exports: list[tuple[int, int]] = field(default_factory=list)  # (trace id, plan node id)
    compile_seconds: float = 0.0
    # Seconds per compile phase ("passes", "fuse", "lower", "codegen", "llvm"), filled
    # in by the tracer (``codegen.phases``); "codegen" excludes "llvm".
    phase_seconds: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)       # what plan_memory pooled and allocated
    # Constants that results are (views of) (``zeros_like(x)``, folded): each call runs on
    # a copy, or a result the caller changed in place would change the next call's. Per
    # storage: (a private copy, [(const id, shape, byte strides, byte offset)]), so that
    # results viewing one storage (``z, z[1:]``) still share it, as in eager.
    fresh: list[tuple] = field(default_factory=list)

    def run(self, env: dict) -> None:
        local = dict(env)
        local.update(self.consts)
        if self.fresh:
            self.fresh_constants(local)
        for step in self.steps:
            step(local)
        for trace_id, nid in self.exports:
            env[trace_id] = local[nid]

    def fresh_constants(self, env: dict) -> None:
        """Put copies of the constants results view into ``env`` (see ``fresh``)."""
        for base, members in self.fresh:
            new = base.copy(order="K")
            for c, shape, strides, offset in members:
                env[c] = byte_view(new, shape, strides, offset)


def build_plan(graph, env: dict, escaping: set[int], *, on_fallback=None,
               arena: Arena | None = None, dynamic: frozenset = frozenset(),
               reference: dict | None = None) -> tuple[Plan, dict]:
    """Compile ``graph`` into a Plan, running it once on ``env`` (input id -> array).
    Its pooled buffers go into ``arena``, shared with the other plans of its compiled
    signature (a private one if None).

    Dynamic shapes: ``dynamic`` holds the sizes that vary between calls, ``reference``
    the node shapes of this graph built for other sizes (``DynamicDims.reference``);
    kernels iterating over a varying size are made size-generic (``Kernel.generic``)."""
    t0 = time.perf_counter()
    # What the plan hands on (to the user, to a later segment or to the backward) gets
    # memory of its own: pooled bytes are reused by the next plan that runs.
    escaping = set(escaping) | set(graph.outputs)
    plan = Plan(consts=graph.device_consts())
    env = dict(env)
    env.update(plan.consts)
    keep = set(graph.outputs) | {v for _, v in graph.writebacks}
    # Shapes of the parameters and other captured tensors: no call changes those.
    fixed = {tuple(graph[n].shape) for n in graph.inputs if graph.sources[n].kind != "arg"}
    with phase("fuse"):
        groups = fuse(graph)   # groups only where a backend can compile them
    group_of = {n: i for i, g in enumerate(groups) for n in g.nodes}
    # The first run frees each value once its last reader has run (as a replay's pooled
    # buffers do): it would otherwise hold every intermediate of the graph at once.
    waiting = {n: set(graph.users(n)) for n in graph.nodes()}
    held = keep | set(graph.inputs) | set(plan.consts)
    for unit in _schedule(graph, groups, group_of):
        if isinstance(unit, Group):
            generic = bool(dynamic) and _varies(graph, unit, dynamic, fixed, reference)
            _add_group(plan, graph, unit, env, keep, escaping, on_fallback,
                       (generic, dynamic, reference))
        elif graph[unit].op == "matmul":
            d = graph[unit]
            shape, transposed = tuple(d.shape), _read_transposed(graph, unit)
            if transposed:
                shape = shape[:-2] + shape[-2:][::-1]
            step = MatmulStep(graph, unit, Buffer(shape, d.dtype.np, pooled=unit not in escaping,
                                                  xp=array_module(d.device)), transposed)
            step(env)
            plan.steps.append(step)
            plan.kernels.append(KernelInfo(f"%{unit}", "extern", ["matmul"], [unit],
                                           [d.src] if d.src else []))
        elif graph[unit].op not in ("input", "const"):
            step = eager_step(graph, unit)
            step(env)
            plan.steps.append(step)
            d = graph[unit]
            plan.kernels.append(KernelInfo(f"%{unit}", "eager", [d.op], [unit],
                                           [d.src] if d.src else []))
        _release(graph, unit.nodes if isinstance(unit, Group) else (unit,), env, waiting, held)
    update_in_place(plan, graph, env)
    with phase("codegen"):   # batches of independent kernels, compiled together
        _fuse_horizontally(plan)
    plan_memory(plan, keep, arena)
    release_dead_values(plan, graph, keep)
    plan.fresh = _handed_constants(plan.consts, [env[n] for n in graph.outputs])
    plan.compile_seconds = time.perf_counter() - t0
    return plan, env


def _handed_constants(consts: dict, results: list) -> list[tuple]:
    """``Plan.fresh`` for constants ``results`` view: per storage, a private copy (this
    first call's results keep the arrays they view) and where each constant sits in it."""
    handed = {id(root(a)) for a in results}
    storages: dict[int, tuple] = {}
    for c, a in consts.items():
        base = root(a)
        if id(base) in handed and hasattr(a, "strides"):
            _, members = storages.setdefault(id(base), (base.copy(order="K"), []))
            members.append((c, a.shape, a.strides, address(a) - address(base)))
    return list(storages.values())


def _release(graph, nodes, env: dict, waiting: dict, held: set) -> None:
    """Drop from ``env`` the values whose last reader is among ``nodes`` (which just
    ran; a view in ``env`` keeps its base alive)."""
    for u in nodes:
        for a in graph[u].args:
            w = waiting.get(a)
            if w is not None:
                w.discard(u)
                if not w and a not in held:
                    del waiting[a]
                    env.pop(a, None)


def _read_transposed(graph, nid: int) -> bool:
    """True if matmul ``nid`` (of same-dtype matrices) is only read through a permute
    that swaps its last two dims."""
    d = graph[nid]
    users = list(graph.users(nid))
    nd = len(d.shape)
    swap = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    return (nd >= 2 and len(users) == 1
            and graph[users[0]].op == "permute" and graph[users[0]].attrs["dims"] == swap
            and all(len(graph[a].shape) >= 2 and graph[a].dtype == d.dtype
                    for a in d.args)
            and not any(nid == v for _, v in graph.writebacks) and nid not in graph.outputs)


def _fuse_horizontally(plan: Plan) -> None:
    """Run independent kernels as few calls as their backend can make of them
    (``Backend.batch_groups`` and ``compile_batch``: one machine-code call on the CPU,
    one launch per parameter-limited group on a GPU).

    Within each window of consecutive kernel steps of one backend, a kernel's level is
    one more than the highest level of the window's kernels it reads from; each level
    becomes one call. Adam's per-parameter scalar work (bias corrections) is one level
    and the updates of all parameters the next: two calls, whatever the number of
    parameters.
    """
    steps, infos = [], []
    window: list[tuple] = []

    def flush():
        level: dict[int, int] = {}     # value written in the window -> its level
        read_at: dict[int, int] = {}   # value read in the window -> the last level reading it
        levels: list[list[tuple]] = []
        for step, info in window:
            lv = 1 + max((level[a] for a in step.reads if a in level), default=-1)
            # A kernel that overwrites a parameter in place runs after every kernel that
            # reads its old value: in one call they would run at the same time.
            lv = max([lv] + [read_at[b.nid] + 1 for b in step.buffers
                             if isinstance(b, InPlace) and b.nid in read_at])
            for w in step.writes:
                level[w] = lv
            for a in step.reads:
                read_at[a] = max(read_at.get(a, -1), lv)
            while len(levels) <= lv:
                levels.append([])
            levels[lv].append((step, info))
        for batch in levels:
            _emit_batch(batch, steps, infos)
        window.clear()

    for step, info in zip(plan.steps, plan.kernels):
        if type(step) is KernelStep and not info.kernel.generic:
            if window and window[0][0].backend is not step.backend:
                flush()   # a call runs on one device
            window.append((step, info))
            continue
        flush()
        steps.append(step)
        infos.append(info)
    flush()
    plan.steps, plan.kernels = steps, infos


def _emit_batch(batch: list[tuple], steps: list, infos: list) -> None:
    """Independent kernel steps of one backend as few calls as it can make of them."""
    backend = batch[0][0].backend
    for group in backend.batch_groups([i.kernel for _, i in batch]):
        part = [batch[j] for j in group]
        compiled = None
        if len(part) >= 2:
            name = f"{part[0][1].name}-{part[-1][1].name}"
            try:
                compiled = backend.compile_batch([i.kernel for _, i in part], name)
            except Exception:  # keep the separate kernels: they work
                pass
        if compiled is None:
            for s, i in part:
                steps.append(s)
                infos.append(i)
            continue
        steps.append(MultiKernelStep([s for s, _ in part], compiled))
        infos.append(KernelInfo(
            name, backend.name, [op for _, i in part for op in i.ops],
            [n for _, i in part for n in i.nodes],
            sorted({x for _, i in part for x in i.src}), compiled.source,
            parts=[i for _, i in part]))


def _schedule(graph, groups, group_of):
    """Units (a group, or a single node) in an order that respects every dependency."""
    q = nx.DiGraph()
    unit_of = {}
    for n in graph.nodes():
        u = ("g", group_of[n]) if n in group_of else ("n", n)
        unit_of[n] = u
        q.add_node(u)
    for a, b in graph.edges():
        if unit_of[a] != unit_of[b]:
            q.add_edge(unit_of[a], unit_of[b])
    # Creation order breaks ties: the schedule follows the user's program where it can.
    # Checks (index ranges) go first, as soon as what they check exists: a bad value then
    # raises before any step has written a parameter in place (see update_in_place).
    def key(u):
        if u[0] == "g":
            return 1, groups[u[1]].nodes[0]
        op = graph[u[1]].op
        return (0 if op in OPS and OPS[op].effect else 1), u[1]

    order = nx.lexicographical_topological_sort(q, key=key)
    for u in order:
        yield groups[u[1]] if u[0] == "g" else u[1]


def _varies(graph, group: Group, dynamic: frozenset, fixed: set, reference) -> bool:
    """Whether the kernel of ``group`` changes size with the call: its nodes' shapes
    differ from the ``reference`` build's. Without one (the first size to compile
    size-generic code), a guess: a dim is one of the sizes ``DynamicDims.sizes`` gave,
    and the shape is not a parameter's. A wrong guess costs speed only (a recompile
    per size, or generic code for a fixed size), never correctness."""
    if reference is not None:   # a dim of its nodes or what they read (a row sum), or
        # a constant made from a size (lowered as a run-time scalar where it can be)
        return any(varying_dims(graph, group, reference)) or any(
            const_varies(graph, m, reference) for n in group.nodes for m in (n, *graph[n].args))
    return tuple(group.full) not in fixed and any(n in dynamic for n in group.full)


def _add_group(plan, graph, group, env, keep, escaping, on_fallback,
               sizes: tuple = (False, frozenset(), None)) -> None:
    """``sizes``: whether the kernel is size-generic, the varying sizes and the reference
    build's shapes (``lower_group``)."""
    args = external_args(graph, group)
    outs = group_outputs(graph, group, keep)
    name = f"kernel{len(plan.kernels)}"
    src = sorted({graph[n].src for n in group.nodes if graph[n].src})
    device = graph[group.nodes[0]].device
    backend = backend_for(device.type)   # fusion grouped it: there is one
    try:
        with phase("lower"):
            kernel = lower_group(graph, group, args, outs, env, name, *sizes,
                                 scalars=backend.runtime_scalars)
        with phase("codegen"):   # LLVM's own share is phase "llvm", inside this one
            compiled = backend.compile_kernel(kernel)
    except Exception as e:  # a compile error costs speed, never correctness
        reason = f"{type(e).__name__}: {e}"
        if on_fallback:
            on_fallback(reason, src[0] if src else "")
        else:
            warnings.warn(f"ember.compile: kernel {name} runs eagerly ({reason})", stacklevel=2)
        step = GroupFallbackStep(graph, group.nodes)
        step(env)
        plan.steps.append(step)
        plan.kernels.append(KernelInfo(name, "eager", [graph[n].op for n in group.nodes],
                                       group.nodes, src, reason=reason))
        return
    xp = array_module(device)
    buffers = [Buffer(graph[o].shape, graph[o].dtype.np, pooled=o not in escaping,
                      xp=xp) for o in outs]
    step = KernelStep(compiled, args, outs, buffers, backend)
    step(env)
    info = KernelInfo(name, backend.name, kernel.ops,
                      group.nodes, src, getattr(compiled, "source", ""), kernel)
    prev = plan.steps[-1] if plan.steps else None
    if (isinstance(prev, MatmulStep) and prev.epilogue is None and prev.nid in args
            and not kernel.reduce_dims):
        # The elementwise consumer of a matmul runs in the matmul's step, as its epilogue.
        prev.add_epilogue(step)
        mm = plan.kernels[-1]
        plan.kernels[-1] = KernelInfo(f"{mm.name}+{name}", "extern", mm.ops + kernel.ops,
                                      mm.nodes + group.nodes, sorted(set(mm.src) | set(src)),
                                      info.source, kernel)
        return
    plan.steps.append(step)
    plan.kernels.append(info)

