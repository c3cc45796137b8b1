"""Memory of a plan: the buffers steps write into, reusing them where values never
overlap in time, and writing updated parameters straight into their own memory.

``plan_memory`` runs once per plan after it is built; ``update_in_place`` before it.
"""
from __future__ import annotations

import sys

from typing import TYPE_CHECKING

import numpy as np

from ember.devices import array_module, device_of_array

if TYPE_CHECKING:
    from ember.runtime.plan import Plan

class Buffer:
    """Memory for one output of a step. ``plan_memory`` gives it a reused array. Values
    handed to the user (``pooled`` False) get an array nobody else holds: one this
    buffer handed out before whose tensor has since been freed, else a new one, so a
    steady loop does not fault in fresh pages (64 MB of them cost ~10 ms here) and no
    call ever overwrites a tensor the user still has."""

    __slots__ = ("shape", "dtype", "pooled", "array", "spare", "xp")

    def __init__(self, shape, dtype, pooled: bool, xp=np) -> None:
        self.shape, self.dtype, self.pooled, self.array = tuple(shape), np.dtype(dtype), pooled, None
        self.spare: list = []
        self.xp = xp   # NumPy, or CuPy for a buffer on the GPU

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
        a = self.xp.empty(self.shape, self.dtype)
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


def update_in_place(plan: Plan, graph, env: dict) -> None:
    """Let kernels write the new value of a mutated parameter (or optimizer state)
    straight into its memory instead of a buffer copied back at the end of the call.

    Legal when nothing after the kernel reads the old value (through any view), the
    kernel reads it only at the point it writes (same strides: elementwise, no
    reduction), the tensor shares memory with no other input, and every check step
    (``OpDef.effect``: an index out of range raises) has run before the kernel: a call
    that raises must leave parameters as they were, as eager does.
    """
    from ember.ops.registry import OPS
    from ember.runtime.steps import EagerStep, KernelStep

    targets = {v: i for i, v in graph.writebacks
               if graph.sources[i].kind == "captured"
               and graph[i].dtype == graph[v].dtype
               and tuple(graph[i].shape) == tuple(graph[v].shape)}
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
    checked = 1 + max((i for i, s in enumerate(plan.steps) if type(s) is EagerStep
                       and OPS[graph[s.nid].op].effect), default=-1)
    for i, (step, info) in enumerate(zip(plan.steps, plan.kernels)):
        k = info.kernel
        if type(step) is not KernelStep or k is None or k.reduce_dims or i < checked:
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
            a = env[t]
            xp = array_module(device_of_array(a))
            if any(o != t and type(env[o]) is type(a) and xp.may_share_memory(a, env[o])
                   for o in graph.inputs if o in env):
                continue
            step.buffers[j] = InPlace(t)


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
    free: list = []                   # raw byte arrays no live buffer uses
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
            fits = [j for j, r in enumerate(free) if r.nbytes >= size
                    and (type(r) is np.ndarray) == (buf.xp is np)]   # same device
            if fits:
                raw = free.pop(min(fits, key=lambda j: free[j].nbytes))  # best fit
            else:
                raw = buf.xp.empty(size, np.uint8)
                total += size
            owner[id(buf)] = raw
            # NumPy's allocations are aligned for every dtype; views at offset 0 stay so.
            buf.array = raw[:buf.nbytes].view(buf.dtype).reshape(buf.shape)
    plan.memory = {"pooled_bytes": needed, "allocated_bytes": total}
    return needed - total


