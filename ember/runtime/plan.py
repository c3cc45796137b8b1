"""Plan: the ordered steps of one compiled graph over an environment of arrays.

A step is a generated kernel (one fused group), or a registry op run eagerly (BLAS
matmul, reductions, movement ops as NumPy views, anything without a kernel). Building a
plan runs it once on the real inputs: that discovers the memory layout of every
intermediate (view strides become kernel index arithmetic) and gives the first results.
"""
from __future__ import annotations

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

    def __repr__(self) -> str:
        return f"<{self.backend} kernel {self.name}: {'+'.join(self.ops)}>"


@dataclass
class Plan:
    steps: list = field(default_factory=list)        # callables env -> None
    kernels: list[KernelInfo] = field(default_factory=list)
    consts: dict = field(default_factory=dict)
    exports: list[tuple[int, int]] = field(default_factory=list)  # (trace id, plan node id)
    compile_seconds: float = 0.0

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


def _kernel_step(compiled, args, outs, shapes, dtypes, persistent):
    buffers = [np.empty(s, d) for s, d in zip(shapes, dtypes)] if persistent else None

    def step(env):
        out = buffers if buffers is not None else [np.empty(s, d) for s, d in zip(shapes, dtypes)]
        compiled.run([env[a] for a in args], out)
        for o, arr in zip(outs, out):
            env[o] = arr
    return step


def _eager_step(graph, nid):
    def step(env):
        env[nid] = run_node(graph, nid, env)
    return step


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
        elif graph[unit]["op"] not in ("input", "const"):
            step = _eager_step(graph, unit)
            step(env)
            plan.steps.append(step)
            d = graph[unit]
            backend_name = "extern" if d["op"] == "matmul" else "eager"
            plan.kernels.append(KernelInfo(f"%{unit}", backend_name, [d["op"]], [unit],
                                           [d["src"]] if d.get("src") else []))
    plan.compile_seconds = time.perf_counter() - t0
    return plan, env


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
        steps = [_eager_step(graph, n) for n in group.nodes]

        def step(env):
            for s in steps:
                s(env)
        step(env)
        plan.steps.append(step)
        plan.kernels.append(KernelInfo(name, "eager", [graph[n]["op"] for n in group.nodes],
                                       group.nodes, src, reason=reason))
        return
    shapes = [graph[o]["shape"] for o in outs]
    dts = [graph[o]["dtype"].np for o in outs]
    step = _kernel_step(compiled, args, outs, shapes, dts,
                        persistent=not any(o in escaping for o in outs))
    step(env)
    plan.steps.append(step)
    plan.kernels.append(KernelInfo(name, "llvm", kernel.ops, group.nodes, src,
                                   getattr(compiled, "source", ""), kernel))
