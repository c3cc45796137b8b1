"""Plan: the ordered steps of one compiled graph over an environment of arrays.

A step is a generated kernel (one fused group), or a registry op run eagerly (BLAS
matmul, reductions, movement ops as NumPy views, anything without a kernel). Building a
plan runs it once on the real inputs: that discovers the memory layout of every
intermediate (view strides become kernel index arithmetic) and gives the first results.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ember.codegen.kernel import Kernel
from ember.codegen.lower import external_args, group_outputs, lower_group
from ember.ir.interpreter import run_node
from ember.ir.passes.fuse import Group, fuse


@dataclass
class KernelInfo:
    """What explain() shows of one step."""
    name: str
    backend: str            # "llvm", "cuda", "extern", "eager"
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
    memory: dict = field(default_factory=dict)       # what plan_memory pooled and allocated

    def run(self, env: dict) -> None:
        local = dict(env)
        local.update(self.consts)
        for step in self.steps:
            step(local)
        for trace_id, nid in self.exports:
            env[trace_id] = local[nid]


def _compile(kernel: Kernel):
    from ember.codegen import llvm
    return llvm.compile_kernel(kernel)


class Buffer:
    """Memory for one output of a step. ``plan_memory`` gives it a reused array. Values
    handed to the user (``pooled`` False) get an array nobody else holds: one this
    buffer handed out before whose tensor has since been freed, else a new one, so a
    steady loop does not fault in fresh pages (64 MB of them cost ~10 ms here) and no
    call ever overwrites a tensor the user still has."""

    __slots__ = ("shape", "dtype", "pooled", "array", "spare")

    def __init__(self, shape, dtype, pooled: bool) -> None:
        self.shape, self.dtype, self.pooled, self.array = tuple(shape), np.dtype(dtype), pooled, None
        self.spare: list = []

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def get(self, env: dict):
        if self.array is not None:
            return self.array
        for a in self.spare:
            # References: this list, the loop variable, getrefcount's argument. Anything
            # more (a tensor, a view's .base) means someone still uses it.
            if sys.getrefcount(a) <= 3:
                return a
        a = np.empty(self.shape, self.dtype)
        if len(self.spare) < 4:
            self.spare.append(a)
        return a


class InPlace:
    """An output written straight into the memory of input ``nid`` (a parameter or
    optimizer state updated in place), so no copy is needed at the end of the call."""

    __slots__ = ("nid",)
    pooled = False

    def __init__(self, nid: int) -> None:
        self.nid = nid

    def get(self, env: dict):
        return env[self.nid]


class KernelStep:
    """A generated kernel: reads ``args``, writes ``writes`` into their buffers."""
    may_alias = False   # its outputs are its own buffers, never views of its inputs

    def __init__(self, compiled, args: list[int], outs: list[int], buffers: list[Buffer]):
        self.compiled, self.reads, self.writes, self.buffers = compiled, args, outs, buffers

    def __call__(self, env: dict) -> None:
        out = [b.get(env) for b in self.buffers]
        self.compiled.run([env[a] for a in self.reads], out)
        for o, arr in zip(self.writes, out):
            env[o] = arr


class MultiKernelStep:
    """Adjacent independent kernels as one machine-code call (horizontal fusion): e.g.
    the optimizer updates of every parameter, each of its own shape."""
    may_alias = False

    def __init__(self, steps: list[KernelStep], compiled) -> None:
        self.parts, self.compiled = steps, compiled
        self.reads = [a for s in steps for a in s.reads]
        self.writes = [w for s in steps for w in s.writes]
        self.buffers = [b for s in steps for b in s.buffers]

    def __call__(self, env: dict) -> None:
        outs = [[b.get(env) for b in s.buffers] for s in self.parts]
        self.compiled.run([[env[a] for a in s.reads] for s in self.parts], outs)
        for s, out in zip(self.parts, outs):
            for o, arr in zip(s.writes, out):
                env[o] = arr


class EagerStep:
    """A registry op run eagerly (a view, an index, anything without a kernel). Its
    result may be a view of an input, so it keeps the input's memory alive."""
    may_alias = True

    def __init__(self, graph, nid: int) -> None:
        self.graph, self.nid = graph, nid
        self.reads, self.writes, self.buffers = list(graph[nid]["args"]), [nid], [None]
        self.shape = tuple(graph[nid]["shape"])

    def __call__(self, env: dict) -> None:
        out = run_node(self.graph, self.nid, env)
        if out.shape != self.shape:   # kernels after this one are built for that shape
            raise RuntimeError(f"ember.compile: %{self.nid} ({self.graph[self.nid]['op']}) "
                               f"gave shape {out.shape}, traced as {self.shape}; a "
                               "data-dependent shape must not be replayed")
        env[self.nid] = out


class MatmulStep:
    """A BLAS matmul into a reused buffer, then its elementwise epilogue kernel (if any)
    right away, while the product is still in cache."""
    may_alias = False

    def __init__(self, graph, nid: int, buffer: Buffer, transposed: bool = False) -> None:
        self.graph, self.nid = graph, nid
        self.reads, self.writes, self.buffers = list(graph[nid]["args"]), [nid], [buffer]
        self.epilogue: KernelStep | None = None
        # Compute (A @ B)^T as B^T @ A^T into a C-order buffer when the product is only
        # read transposed (weight gradients): the kernels reading it then see contiguous
        # memory (vectorized, collapsed loops) instead of a strided view.
        self.transposed = transposed

    def add_epilogue(self, k: KernelStep) -> None:
        self.epilogue = k
        self.reads = self.reads + [a for a in k.reads if a != self.nid and a not in self.reads]
        self.writes = self.writes + k.writes
        self.buffers = self.buffers + k.buffers

    def __call__(self, env: dict) -> None:
        a, b = (env[x] for x in self.graph[self.nid]["args"])
        buf = self.buffers[0]
        if self.transposed:
            out = np.matmul(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out=buf.get(env))
            env[self.nid] = out.swapaxes(-1, -2)
        elif a.dtype == b.dtype == buf.dtype and a.ndim >= 1 and b.ndim >= 1:
            env[self.nid] = np.matmul(a, b, out=buf.get(env))
        else:  # mixed dtypes, vectors: the registry op decides
            env[self.nid] = run_node(self.graph, self.nid, env)
        if self.epilogue is not None:
            self.epilogue(env)


class GroupFallbackStep:
    """A fused group whose kernel failed to compile, run op by op."""
    may_alias = True

    def __init__(self, graph, nodes: list[int]) -> None:
        self.steps = [EagerStep(graph, n) for n in nodes]
        self.reads = sorted({a for s in self.steps for a in s.reads} - set(nodes))
        self.writes = list(nodes)
        self.buffers = [None] * len(nodes)

    def __call__(self, env: dict) -> None:
        for s in self.steps:
            s(env)


def build_plan(graph, env: dict, escaping: set[int], *, backend: str = "llvm",
               on_fallback=None) -> tuple[Plan, dict]:
    """Compile ``graph`` into a Plan, running it once on ``env`` (input id -> array)."""
    t0 = time.perf_counter()
    plan = Plan(consts=dict(graph.consts))
    env = dict(env)
    env.update(graph.consts)
    keep = set(graph.outputs) | {v for _, v in graph.writebacks}
    groups = fuse(graph) if backend == "llvm" else []
    group_of = {n: i for i, g in enumerate(groups) for n in g.nodes}
    for unit in _schedule(graph, groups, group_of):
        if isinstance(unit, Group):
            _add_group(plan, graph, unit, env, keep, escaping, on_fallback)
        elif graph[unit]["op"] == "matmul" and graph[unit]["device"].type == "cpu":
            d = graph[unit]
            shape, transposed = tuple(d["shape"]), _read_transposed(graph, unit)
            if transposed:
                shape = shape[:-2] + shape[-2:][::-1]
            step = MatmulStep(graph, unit, Buffer(shape, d["dtype"].np,
                                                  pooled=unit not in escaping), transposed)
            step(env)
            plan.steps.append(step)
            plan.kernels.append(KernelInfo(f"%{unit}", "extern", ["matmul"], [unit],
                                           [d["src"]] if d.get("src") else []))
        elif graph[unit]["op"] not in ("input", "const"):
            step = EagerStep(graph, unit)
            step(env)
            plan.steps.append(step)
            d = graph[unit]
            plan.kernels.append(KernelInfo(f"%{unit}", "eager", [d["op"]], [unit],
                                           [d["src"]] if d.get("src") else []))
    _update_in_place(plan, graph, env)
    if backend == "llvm":
        _fuse_horizontally(plan)
    plan_memory(plan, keep)
    plan.compile_seconds = time.perf_counter() - t0
    return plan, env


def _read_transposed(graph, nid: int) -> bool:
    """True if matmul ``nid`` (of same-dtype matrices) is only read through a permute
    that swaps its last two dims."""
    d = graph[nid]
    users = list(graph.users(nid))
    nd = len(d["shape"])
    swap = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    return (nd >= 2 and len(users) == 1
            and graph[users[0]]["op"] == "permute" and graph[users[0]]["attrs"]["dims"] == swap
            and all(len(graph[a]["shape"]) >= 2 and graph[a]["dtype"] == d["dtype"]
                    for a in d["args"])
            and not any(nid == v for _, v in graph.writebacks) and nid not in graph.outputs)


def _update_in_place(plan: Plan, graph, env: dict) -> None:
    """Let kernels write the new value of a mutated parameter (or optimizer state)
    straight into its memory instead of a buffer copied back at the end of the call.

    Legal when nothing after the kernel reads the old value (through any view), the
    kernel reads it only at the point it writes (same strides: elementwise, no
    reduction), and the tensor shares memory with no other input.
    """
    targets = {v: i for i, v in graph.writebacks
               if graph.sources[i].kind == "captured"
               and graph[i]["dtype"] == graph[v]["dtype"]
               and tuple(graph[i]["shape"]) == tuple(graph[v]["shape"])}
    if not targets:
        return
    roots: dict[int, set] = {n: {n} for n in graph.inputs}
    last_read: dict[int, float] = {}
    for i, step in enumerate(plan.steps):
        for a in step.reads:
            for r in roots.get(a, ()):
                last_read[r] = i
        for w in step.writes:
            roots[w] = (set().union(*(roots.get(a, set()) for a in step.reads))
                        if step.may_alias else set())
    for v in graph.outputs:          # handed on (views of inputs included): keep them
        for r in roots.get(v, ()):
            last_read[r] = float("inf")
    for i, (step, info) in enumerate(zip(plan.steps, plan.kernels)):
        k = info.kernel
        if type(step) is not KernelStep or k is None or k.reduce_dims:
            continue
        for j, w in enumerate(step.writes):
            t = targets.get(w)
            if t is None or last_read.get(t, -1) > i:
                continue
            st = k.stores[j]
            if t in step.reads:
                idx = step.reads.index(t)
                if any(ld.input == idx and (ld.strides != st.strides or ld.offset)
                       for ld in k.loads):
                    continue
            elif not env[t].flags.c_contiguous:   # written as a fresh C-order output
                continue
            if any(o != t and np.may_share_memory(env[t], env[o]) for o in graph.inputs
                   if o in env):
                continue
            step.buffers[j] = InPlace(t)


def _fuse_horizontally(plan: Plan) -> None:
    """Run independent kernels as one call each (``llvm.compile_kernels``).

    Within each window of consecutive kernel steps, a kernel's level is one more than
    the highest level of the window's kernels it reads from; each level becomes one
    call. Adam's per-parameter scalar work (bias corrections) is one level and the
    updates of all parameters the next: two calls, whatever the number of parameters.
    """
    steps, infos = [], []
    window: list[tuple] = []

    def flush():
        level: dict[int, int] = {}     # value written in the window -> its level
        levels: list[list[tuple]] = []
        for step, info in window:
            lv = 1 + max((level[a] for a in step.reads if a in level), default=-1)
            for w in step.writes:
                level[w] = lv
            while len(levels) <= lv:
                levels.append([])
            levels[lv].append((step, info))
        for batch in levels:
            _emit_batch(batch, steps, infos)
        window.clear()

    for step, info in zip(plan.steps, plan.kernels):
        if type(step) is KernelStep:
            window.append((step, info))
            continue
        flush()
        steps.append(step)
        infos.append(info)
    flush()
    plan.steps, plan.kernels = steps, infos


def _emit_batch(batch: list[tuple], steps: list, infos: list) -> None:
    from ember.codegen import llvm

    if len(batch) >= 2:
        name = f"{batch[0][1].name}-{batch[-1][1].name}"
        try:
            compiled = llvm.compile_kernels([i.kernel for _, i in batch], name)
        except Exception:  # keep the separate kernels: they work
            compiled = None
        if compiled is not None:
            steps.append(MultiKernelStep([s for s, _ in batch], compiled))
            infos.append(KernelInfo(
                name, "llvm", [op for _, i in batch for op in i.ops],
                [n for _, i in batch for n in i.nodes],
                sorted({x for _, i in batch for x in i.src}), compiled.source,
                parts=[i for _, i in batch]))
            return
    for s, i in batch:
        steps.append(s)
        infos.append(i)


def plan_memory(plan: Plan, live_out: set[int]) -> int:
    """Give every pooled buffer an array, sharing one array between buffers whose values
    are never alive at the same time (a view keeps its base alive). Values in
    ``live_out`` (the plan's outputs) stay alive to the end. Returns the bytes saved.

    The arrays are allocated once and reused by every later run, so steady-state calls
    fault in no fresh pages; values handed to the user are never pooled.
    """
    roots: dict[int, set] = {}      # value -> pooled buffers it may be (a view of)
    last: dict[int, float] = {}     # id(buffer) -> index of the last step that needs it
    pooled: dict[int, Buffer] = {}
    for i, step in enumerate(plan.steps):
        for a in step.reads:
            for b in roots.get(a, ()):
                last[b] = i
        for w, buf in zip(step.writes, step.buffers):
            r = set()
            if buf is not None and buf.pooled:
                r.add(id(buf))
                pooled[id(buf)] = buf
                last.setdefault(id(buf), i)
            if step.may_alias:
                for a in step.reads:
                    r |= roots.get(a, set())
            roots[w] = r
    for v in live_out:
        for b in roots.get(v, ()):
            last[b] = float("inf")
    free: list[np.ndarray] = []       # raw byte arrays no live buffer uses
    owner: dict[int, np.ndarray] = {}
    total = needed = 0
    for i, step in enumerate(plan.steps):
        for b in [b for b, end in last.items() if end < i and b in owner]:
            free.append(owner.pop(b))
            del last[b]
        for buf in step.buffers:
            if buf is None or not buf.pooled:
                continue
            size = max(buf.nbytes, 1)
            needed += size
            fits = [j for j, r in enumerate(free) if r.nbytes >= size]
            if fits:
                raw = free.pop(min(fits, key=lambda j: free[j].nbytes))  # best fit
            else:
                raw = np.empty(size, np.uint8)
                total += size
            owner[id(buf)] = raw
            # NumPy's allocations are aligned for every dtype; views at offset 0 stay so.
            buf.array = raw[:buf.nbytes].view(buf.dtype).reshape(buf.shape)
    plan.memory = {"pooled_bytes": needed, "allocated_bytes": total}
    return needed - total


def _schedule(graph, groups, group_of):
    """Units (a group, or a single node) in an order that respects every dependency."""
    q = nx.DiGraph()
    unit_of = {}
    for n in graph.nodes():
        u = ("g", group_of[n]) if n in group_of else ("n", n)
        unit_of[n] = u
        q.add_node(u)
    for a, b in graph.nx.edges():
        if unit_of[a] != unit_of[b]:
            q.add_edge(unit_of[a], unit_of[b])
    # Creation order breaks ties: the schedule follows the user's program where it can.
    order = nx.lexicographical_topological_sort(
        q, key=lambda u: groups[u[1]].nodes[0] if u[0] == "g" else u[1])
    for u in order:
        yield groups[u[1]] if u[0] == "g" else u[1]


def _add_group(plan, graph, group, env, keep, escaping, on_fallback) -> None:
    args = external_args(graph, group)
    outs = group_outputs(graph, group, keep)
    name = f"kernel{len(plan.kernels)}"
    src = sorted({graph[n]["src"] for n in group.nodes if graph[n].get("src")})
    try:
        kernel = lower_group(graph, group, args, outs, env, name)
        compiled = _compile(kernel)
    except Exception as e:  # a compile error costs speed, never correctness
        reason = f"{type(e).__name__}: {e}"
        if on_fallback:
            on_fallback(reason, src[0] if src else "")
        else:
            warnings.warn(f"ember.compile: kernel {name} runs eagerly ({reason})", stacklevel=2)
        step = GroupFallbackStep(graph, group.nodes)
        step(env)
        plan.steps.append(step)
        plan.kernels.append(KernelInfo(name, "eager", [graph[n]["op"] for n in group.nodes],
                                       group.nodes, src, reason=reason))
        return
    buffers = [Buffer(graph[o]["shape"], graph[o]["dtype"].np, pooled=o not in escaping)
               for o in outs]
    step = KernelStep(compiled, args, outs, buffers)
    step(env)
    info = KernelInfo(name, "llvm", kernel.ops, group.nodes, src,
                      getattr(compiled, "source", ""), kernel)
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

