"""Memory of a plan: the buffers steps write into, reusing them where values never
overlap in time, and writing updated parameters straight into their own memory.

``plan_memory`` runs once per plan after it is built; ``update_in_place`` before it.
"""
from __future__ import annotations

import sys
import weakref

from typing import TYPE_CHECKING

import numpy as np

from ember.devices import array_module, device_of_array

if TYPE_CHECKING:
    from ember.runtime.plan import Plan

class Spares(list):
    """Arrays handed out before, of one shape and dtype, kept for reuse once their
    tensors are freed: at most ``limit`` of them."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = 4) -> None:
        super().__init__()
        self.limit = limit


class Buffer:
    """Memory for one output of a step. ``plan_memory`` gives it a reused array. Values
    handed to the user (``pooled`` False) get an array nobody else holds: one handed out
    before whose tensor has since been freed, else a new one, so a steady loop does not
    fault in fresh pages (64 MB of them cost ~10 ms here) and no call ever overwrites a
    tensor the user still has. Those spare arrays are the arena's, shared by every plan
    of the compiled signature (``Arena.spares``): eight batch sizes of a training step
    keep one set of gradient arrays, not eight."""

    __slots__ = ("shape", "dtype", "pooled", "array", "spare", "xp", "__weakref__")

    def __init__(self, shape, dtype, pooled: bool, xp=np) -> None:
        self.shape, self.dtype, self.pooled, self.array = tuple(shape), np.dtype(dtype), pooled, None
        self.spare = Spares()
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
        # A pooled buffer gets its array from plan_memory after the plan's first run:
        # what that run allocated must not stay alive beside it.
        if not self.pooled and len(self.spare) < self.spare.limit:
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


_ALIGN = 64   # bytes: a cache line; every buffer of an arena starts on one


def plan_memory(plan: Plan, live_out: set[int], arena: Arena | None = None) -> int:
    """Give every pooled buffer a place in ``arena`` (a private one if None), sharing
    bytes between buffers whose values are never alive at the same time (a view keeps
    its base alive). Values in ``live_out`` (the plan's outputs) stay alive to the end.
    Returns the bytes saved against one array per buffer.

    Places are packed greedily, largest buffer first, at the lowest offset that no
    buffer alive at the same time uses: the arena comes close to the most bytes ever
    alive at once. The arena is allocated once and reused by every later run (and by
    every plan of the same compiled signature), so steady-state calls fault in no fresh
    pages; values handed to the user are never pooled.
    """
    roots: dict[int, set] = {}      # value -> pooled buffers it may be (a view of)
    first: dict[int, int] = {}      # id(buffer) -> step that writes it
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
                first.setdefault(id(buf), i)
                last.setdefault(id(buf), i)
            if step.may_alias:
                for a in step.reads:
                    r |= roots.get(a, set())
            roots[w] = r
    for v in live_out:
        for b in roots.get(v, ()):
            last[b] = float("inf")
    needed = sum(max(b.nbytes, 1) for b in pooled.values())
    layout: dict = {}               # array module -> [(buffer, offset)]
    sizes: dict = {}                # array module -> bytes its buffers span
    by_size = sorted(pooled, key=lambda b: (-pooled[b].nbytes, first[b]))
    placed: dict = {}               # array module -> [(offset, end, first, last)]
    for b in by_size:
        buf = pooled[b]
        size = -(-max(buf.nbytes, 1) // _ALIGN) * _ALIGN
        lo, hi = first[b], last[b]
        spots = placed.setdefault(buf.xp, [])
        off = 0
        for o, e in sorted((o, e) for o, e, f, l in spots if f <= hi and lo <= l):
            if off + size <= o:
                break
            off = max(off, e)
        spots.append((off, off + size, lo, hi))
        layout.setdefault(buf.xp, []).append((buf, off))
        sizes[buf.xp] = max(sizes.get(buf.xp, 0), off + size)
    if arena is None:
        arena = Arena()
    for xp, bufs in layout.items():
        arena.place(xp, bufs, sizes[xp])
    handed = [b for step in plan.steps for b in step.buffers
              if type(b) is Buffer and not b.pooled]
    for b in handed:
        b.spare = arena.spares(b, sum(c.shape == b.shape and c.dtype == b.dtype
                                      and c.xp is b.xp for c in handed))
    total = sum(sizes.values())
    plan.memory = {"pooled_bytes": needed, "allocated_bytes": total,
                   "arena_bytes": arena.nbytes}
    return needed - total


class Arena:
    """The working memory of one compiled signature: one block of bytes per device, in
    which every plan of the signature (forward, backward, the segments of each path)
    lays out its pooled buffers. Those plans run one after another and a pooled value
    never outlives its plan (what a plan hands on is not pooled), so they can all use
    the same bytes: the block is as large as the largest plan needs, not their sum.

    >>> arena = Arena(); plan_memory(forward, keep, arena); plan_memory(backward, keep, arena)
    >>> arena.nbytes   # max of the two layouts, not their sum
    """

    __slots__ = ("blocks", "users", "handed", "__weakref__")

    def __init__(self) -> None:
        self.blocks: dict = {}   # array module -> its uint8 block
        self.users: dict = {}    # array module -> [(weakref to Buffer, offset)]
        self.handed: dict = {}   # (array module, shape, dtype) -> Spares

    def spares(self, buf: Buffer, count: int) -> Spares:
        """The spare arrays of ``buf``'s shape and dtype, shared by the signature's
        plans (they run one at a time; an array is reused only once nobody holds it),
        room for 4 per buffer of that kind in the plan that has the most."""
        s = self.handed.setdefault((buf.xp, buf.shape, buf.dtype), Spares(0))
        s.limit = max(s.limit, 4 * count)
        return s

    @property
    def nbytes(self) -> int:
        return sum(int(b.nbytes) for b in self.blocks.values())

    def place(self, xp, layout: list, size: int) -> None:
        """Give each ``(buffer, offset)`` of ``layout`` its bytes; grow the block (and move
        the buffers already placed onto the new one) if ``size`` exceeds it."""
        users = [(r, off) for r, off in self.users.get(xp, ()) if r() is not None]
        users += [(weakref.ref(buf), off) for buf, off in layout]
        self.users[xp] = users
        block = self.blocks.get(xp)
        if block is None or block.nbytes < size:
            block = self.blocks[xp] = xp.empty(size, np.uint8)
            todo = [(r(), off) for r, off in users]
        else:
            todo = layout
        for buf, off in todo:
            if buf is not None:
                # Offsets are multiples of 64 from NumPy's (aligned) start: every dtype
                # stays aligned.
                buf.array = block[off:off + buf.nbytes].view(buf.dtype).reshape(buf.shape)


_TRIM: list = []   # [malloc_trim, or None where the C library has none]
_PENDING: list = []  # [Py_AddPendingCall and the callback it runs], once set up


def _malloc_trim():
    if not _TRIM:
        try:
            import ctypes
            trim = ctypes.CDLL(None).malloc_trim
            trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
            _TRIM.append(trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    return _TRIM[0]


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``).

    Compiling a call runs it eagerly and then runs the new plans once: hundreds of MB of
    arrays that are all freed by the end, but glibc keeps the pages of a fragmented heap
    mapped, so the process would stay that much larger for good. Called once per build,
    never on a replay (it takes well under a millisecond); a no-op where the C library
    is not glibc.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_when_freed(obj) -> None:
    """``release_free_memory`` once ``obj`` and what only it holds are gone.

    The traced call's result is the eager one, and it holds that call's autograd graph
    (every activation) until the caller drops it, after the entry is built. A weakref
    callback runs before the object's attributes are released, and any Python code it
    ran would run CPython's pending calls right there; so the callback is C only
    (``Py_AddPendingCall`` through ctypes) and the trim, a pending call, runs in the
    main thread after the bytecode whose deallocation triggered it has finished.
    """
    if _malloc_trim() is None:
        return
    if not _PENDING:
        try:
            import ctypes
            import functools
            callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(_pending_trim)
            add = ctypes.pythonapi.Py_AddPendingCall
            # (the callback, the dead weakref as its unused argument)
            add.argtypes, add.restype = [ctypes.c_void_p, ctypes.py_object], ctypes.c_int
            schedule = functools.partial(add, ctypes.cast(callback, ctypes.c_void_p))
            _PENDING.extend((schedule, callback, []))
        except (AttributeError, OSError):   # not CPython
            _PENDING.extend((None, None, []))
    schedule, _, refs = _PENDING
    if schedule is None:
        return
    refs[:] = [r for r in refs if r() is not None]
    try:
        refs.append(weakref.ref(obj, schedule))
    except TypeError:   # not weakly referable
        pass


def _pending_trim(_arg) -> int:
    # No gc.collect() here: a full collection cost ~70 ms per call in a process that
    # has imported torch (the views fuzz test ran 12x slower); what sits in reference
    # cycles is trimmed at the next build instead.
    release_free_memory()
    return 0   # anything else would mean "an exception is set"


RELEASE_MIN_BYTES = 1 << 20   # values smaller than this stay in a run's env to its end


class ReleasingStep:
    """A step, then dropping values nothing after it reads from the run's environment.

    A plan's run keeps every value in its env until it returns; values a step allocates
    itself (eager steps: an unfold's columns, a copy made by a reshape) would all be alive
    at once. Wrapping their last reader frees each as soon as it is dead, as eager does.
    Only plans with such values of at least ``RELEASE_MIN_BYTES`` get one (a wrapped step
    is a call through one more Python frame)."""

    __slots__ = ("step", "drop", "reads", "writes", "buffers", "may_alias")

    def __init__(self, step, drop: list[int]) -> None:
        self.step, self.drop = step, drop
        self.reads, self.writes, self.buffers = step.reads, step.writes, step.buffers
        self.may_alias = step.may_alias

    def __call__(self, env: dict) -> None:
        self.step(env)
        for v in self.drop:
            env.pop(v, None)

    def __getattr__(self, name: str):   # what inspectors read of the step (epilogue, ...)
        return getattr(self.step, name)


def release_dead_values(plan: Plan, graph, live_out: set[int]) -> int:
    """Wrap the last reader of each large value a step allocates outside the arena (its
    buffer is None: an eager step's result) in a ``ReleasingStep``. Returns the bytes
    that are now freed before the run ends."""
    last: dict[int, int] = {}
    made: dict[int, int] = {}
    for i, step in enumerate(plan.steps):
        for a in step.reads:
            last[a] = i
        for w, buf in zip(step.writes, step.buffers):
            if buf is None and w not in live_out and w in graph:
                made[w] = i
    drops: dict[int, list[int]] = {}
    freed = 0
    for v, i in made.items():
        d = graph[v]
        nbytes = int(np.prod(d.shape, dtype=np.int64)) * np.dtype(d.dtype.np).itemsize
        if nbytes < RELEASE_MIN_BYTES:
            continue
        drops.setdefault(max(i, last.get(v, i)), []).append(v)
        freed += nbytes
    for i, vs in drops.items():
        plan.steps[i] = ReleasingStep(plan.steps[i], sorted(vs))
    return freed
