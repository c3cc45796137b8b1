"""``ember.compile``: trace a function once per input signature, compile, and replay.

A call looks up its guard key (argument structure, tensor shapes/strides/dtypes/devices/
requires_grad, Python values, module training flags, grad mode). A miss traces the
function eagerly (the call's result is eager's), compiles the trace and checks the
compiled plan against eager on the same inputs. The second call with the same key traces
again and compares: Python state that changed between calls (a counter, a global) is
reported and that key runs eagerly. From then on a hit runs the plans without running
the user's Python.

Reading a Python value from a tensor (``bool(t)``, ``t.item()``...) splits the trace
into segments; the observed value selects the next segment, traced the first time that
value is seen. Every path equals eager.
"""
from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ember import autograd, dispatch as _dispatch
from ember.errors import OpError
from ember.inspect import hooks as _inspect
from ember.ir.graph import Graph, InputSource
from ember.ir.passes import run_pipeline
from ember.ir.views import byte_view, root
from ember.amp import state as _amp
from ember.ops.random import preserved_rng
from ember.ops.registry import OPS
from ember.runtime.plan import Plan, build_plan
from ember.tensor import Tensor
from ember.nn.module import STRUCTURE_VERSION
from ember.tracer import pytree
from ember.tracer.guards import GuardSet
from ember.tracer.trace import Observation, Tracer, copy_same_layout, observed_value, tracing

DEFAULT_CACHE_LIMIT = 8
# Ops whose result may be a view of their first argument (besides those with OpDef.view).
_MOVEMENT_VIEWS = frozenset(("reshape", "permute", "expand", "slice", "detach", "strided_view",
                             "to_device", "unfold2d"))
_REASONS_KEPT = 100   # recompile reasons listed in stats(); later ones are only counted


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off, any case."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


_global_eager = [env_flag("EMBER_EAGER")]
# Tracing and building plans touch process-wide state (the LLVM JIT, the random number
# generator saved around first runs, the inspector's records): one thread at a time.
_COMPILE_LOCK = threading.RLock()


class CompileError(RuntimeError):
    """Raised with fullgraph=True where ember would otherwise fall back or split."""


class VerificationError(AssertionError):
    """mode="verify": a compiled kernel's output differs from eager."""


def set_eager(flag: bool = True) -> None:
    """Run every compiled function as plain Python (for debuggers and prints)."""
    _global_eager[0] = bool(flag)


class eager_mode:
    """``with ember.eager_mode(): ...`` runs compiled functions eagerly inside the block."""

    def __enter__(self):
        self._prev = _global_eager[0]
        _global_eager[0] = True

    def __exit__(self, *exc):
        _global_eager[0] = self._prev


# ---- one trace and the segments it splits into --------------------------------------------

@dataclass
class Trace:
    graph: Graph
    observations: list[Observation]
    out_spec: Any
    out_leaves: list           # per output leaf: ("T", position in graph.outputs) or ("V", value)
    captured: list
    arg_paths: dict            # input node id -> leaf index in the flattened arguments
    failed: str = ""
    failed_at: str = ""
    # Positions in graph.outputs whose tensor required grad, and those the function called
    # ``retain_grad()`` on: what the compiled backward must reproduce.
    grad_outputs: tuple = ()
    retained_outputs: tuple = ()
    effects: tuple | None = None   # what a replay copies before writing back (``_effects``)

    def signature(self, upto: int) -> list:
        """What must be identical between two traces of the same code, up to node ``upto``."""
        g = self.graph
        sig = []
        for n in g.nodes():
            if n >= upto:
                break
            d = g[n]
            c = g.consts.get(n)
            sig.append((n, d["op"], d["args"], _attr_key(d["attrs"]), d["shape"], d["dtype"].name,
                        None if c is None else (c.shape, c.tobytes())))
        if upto >= g._next:  # the whole call: what it writes back must agree too
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
    lo: int
    hi: int
    obs: Observation | None = None
    children: dict = field(default_factory=dict)
    trace: Trace | None = None       # the trace whose outputs end here (terminal segments)
    needs: set = field(default_factory=set)
    plan: Plan | None = None
    graph: Graph | None = None       # the optimized segment graph
    captured: list = field(default_factory=list)  # (input id, InputSource, meta) per build
    traced: Graph | None = None


# ---- the compiled function ------------------------------------------------------------------

class CompiledFunction:
    """The callable ``ember.compile(fn)`` returns. ``.stats()`` reports what happened.

    The cache maps a key (argument structure, tensor metadata, scalar values, argument
    aliasing, grad mode) to entries; each entry also holds the guards of the Python
    state its trace read (see guards.py), so one key can have several entries. Calls
    from several threads are safe: a function's entries replay one call at a time (plans
    reuse their buffers), eager calls run in parallel.
    """

    def __init__(self, fn: Callable, mode: str = "default", fullgraph: bool = False,
                 cache_limit: int = DEFAULT_CACHE_LIMIT) -> None:
        if mode not in ("default", "eager", "verify"):
            raise ValueError(f"ember.compile: unknown mode {mode!r} (default, eager, verify)")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.mode = mode
        self.fullgraph = fullgraph
        self.cache_limit = cache_limit
        self.cache: dict[Any, Entry] = {}      # (key, n) -> Entry, in creation order
        self._by_key: dict[Any, list] = {}     # key -> its entries
        self._unstable: dict[Any, int] = {}    # key -> calls that changed their own guards
        self.counters = {"calls": 0, "compiles": 0, "cache_hits": 0, "eager_calls": 0}
        self.recompile_reasons: list[str] = []
        self.fallbacks: list[str] = []          # each reason once ...
        self.fallback_counts: dict[str, int] = {}   # ... and how often it happened
        self.notes: list[str] = []   # things worth knowing that cost nothing (warm-ups)
        self.breaks: list[tuple[str, str]] = []
        self._warned: set[str] = set()
        self._lock = threading.RLock()
        self._last_key = None
        self.record = _inspect.track(self)  # times and why each cache entry exists

    def __get__(self, obj, objtype=None):  # decorating a method binds like a function
        return self if obj is None else functools.partial(self, obj)

    # ---- calling ----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self.mode == "eager" or _global_eager[0] or _dispatch.tracer is not None:
            return self.fn(*args, **kwargs)  # nested calls are traced inline
        leaves, spec = pytree.flatten_call(args, kwargs)
        key = self._key(leaves, spec)
        with self._lock:
            self.counters["calls"] += 1
            entry, reason = self._lookup(key, leaves)
            if entry is not None and entry.state == "ready":
                changed = entry.captured_changed()
                if changed:
                    self._drop(key, entry)
                    entry, reason = None, changed
                else:
                    return self._hit(entry, args, kwargs, leaves)
            if entry is None:
                self._drop_dead()
                if len(self.cache) < self.cache_limit:
                    return self._compile(key, args, kwargs, leaves, reason)
                self._fallback(f"cache limit of {self.cache_limit} entries reached; "
                               "running eagerly")
            elif entry.state == "second":
                with _COMPILE_LOCK:
                    result = entry.second_call(args, kwargs, leaves)
                self._check_stable(key, entry, leaves)
                return result
            self.counters["eager_calls"] += 1
        return self.fn(*args, **kwargs)   # outside the lock: eager calls run in parallel

    def _hit(self, entry, args, kwargs, leaves):
        self.counters["cache_hits"] += 1
        t0 = _inspect.clock()
        try:
            out = entry.run(args, kwargs, leaves)
        except OpError as e:
            if not e.from_check:
                raise
            # A value check failed (an index out of range) before any step wrote state
            # (plans run checks first, write-backs last): run the call eagerly, so that it
            # raises where eager raises, having done what eager does before that line.
            return self._eager(args, kwargs)
        self.record.hit(entry, _inspect.clock() - t0)
        return out

    def _lookup(self, key, leaves):
        """The entry whose guards hold for this call, or None and why none did."""
        entries = self._by_key.get(key)
        if not entries:
            if not self.cache:
                return None, ""
            return None, describe_key_change(self._last_key, key)
        for e in entries:
            if e.guards is None or e.state == "eager":
                return e, ""
            i = e.guards.check(leaves)
            if i < 0:
                return e, ""
            reason = e.guards.describe(i)
        return None, reason

    def _compile(self, key, args, kwargs, leaves, reason: str):
        """A miss: trace (the call runs eagerly under the tracer), then keep the entry if
        the call finished and left the state its trace read as it found it."""
        if reason:
            self._recompiled(reason)
        with _COMPILE_LOCK:
            entry = Entry(self, GuardSet(self.fn, leaves, STRUCTURE_VERSION))
            # An exception (the user's, a KeyboardInterrupt) leaves no entry behind.
            result = entry.first_call(args, kwargs, leaves)
        self._last_key = key
        self.cache[(key, id(entry))] = entry
        self._by_key.setdefault(key, []).append(entry)
        self.record.entry_created(entry, key, reason or "first call")
        self._check_stable(key, entry, leaves)
        return result

    def _check_stable(self, key, entry, leaves) -> None:
        """After a traced call: did the call change the Python state its trace read (a
        counter in ``self``, a global it assigns)? A replay would not do that: drop the
        entry; when it happens again, this key runs eagerly."""
        if entry.state == "eager" or entry.guards is None:
            return
        i = entry.guards.check(leaves)
        if i < 0:
            return
        what = entry.guards.describe(i)
        self._drop(key, entry)
        n = self._unstable[key] = self._unstable.get(key, 0) + 1
        if n == 1:
            self.notes.append(f"the call changed {what}; compiling again from the next call")
            return
        eager = Entry(self, None)
        eager.state = "eager"
        self.cache[(key, id(eager))] = eager
        self._by_key.setdefault(key, []).append(eager)
        self.record.entry_created(eager, key, f"the call changes {what}")
        self._fallback(f"the function changes {what} when it runs, and a compiled replay "
                       "would not; this signature runs eagerly")

    def _drop_dead(self) -> None:
        """Forget entries whose guarded objects are gone (their kernels go with them)."""
        for (key, _), entry in list(self.cache.items()):
            if entry.guards is not None and not entry.guards.alive():
                self._drop(key, entry)

    def _drop(self, key, entry) -> None:
        self.cache.pop((key, id(entry)), None)
        entries = self._by_key.get(key, [])
        if entry in entries:
            entries.remove(entry)

    def _recompiled(self, reason: str) -> None:
        if len(self.recompile_reasons) < _REASONS_KEPT:
            self.recompile_reasons.append(reason)
        else:
            self.counters["recompiles_not_listed"] = (
                self.counters.get("recompiles_not_listed", 0) + 1)
        _log("recompiles", f"{self.__name__}: recompiling: {reason}")

    def _eager(self, args, kwargs):
        with self._lock:
            self.counters["eager_calls"] += 1
        return self.fn(*args, **kwargs)

    def _fallback(self, reason: str, location: str = "") -> None:
        text = reason + (f" (at {location})" if location else "")
        if self.fullgraph:
            raise CompileError(f"ember.compile(fullgraph=True) of {self.__name__}: {text}")
        count = self.fallback_counts.get(text, 0)
        self.fallback_counts[text] = count + 1
        if count == 0:
            self.fallbacks.append(text)
            _log("breaks", f"{self.__name__}: fallback: {text}")
        if text not in self._warned:
            self._warned.add(text)
            warnings.warn(f"ember.compile of {self.__name__}: {text}", stacklevel=4)

    # ---- the key ------------------------------------------------------------------------
    def _key(self, leaves, spec):
        parts = [pytree.spec_key(spec), autograd.is_grad_enabled()]
        if _amp.state.modes:   # autocast changes the dtypes a trace computes in
            parts[1] = (parts[1], _amp.key())
        tensors = []
        for path, v in leaves:
            if isinstance(v, Tensor):
                a = v._data
                # ``_rg`` is requires_grad for a tensor that is not a view (the hot path)
                rg = v._rg if v._base is None else v.requires_grad
                parts.append(("T", a.shape, a.dtype, v._device, rg, a.strides))
                tensors.append(v)
            elif isinstance(v, (int, float, bool, str, type(None))):
                parts.append(_scalar_key(v))
            else:   # objects: their identity and contents are guards of the entry
                parts.append(("O", type(v)))
        if len(tensors) > 1:
            parts.append(_aliasing(tensors))
        return tuple(parts)

    # ---- introspection -------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters and reasons: compiles, cache hits, recompiles, fallbacks (each reason
        once, with ``fallback_counts``), graph breaks, notes."""
        with self._lock:
            return dict(self.counters, cache_entries=len(self.cache),
                        recompile_reasons=list(self.recompile_reasons),
                        fallbacks=list(self.fallbacks),
                        fallback_counts=dict(self.fallback_counts), notes=list(self.notes),
                        breaks=[f"{r} at {loc}" for r, loc in self.breaks])

    def kernels(self) -> list:
        """The steps of every compiled plan (``KernelInfo``: backend, fused ops, source),
        without running anything.

        >>> step(x, y); step(x, y); len(step.kernels())
        """
        out = []
        for entry in list(self.cache.values()):
            stack = [entry.root] if entry.root is not None else []
            while stack:
                seg = stack.pop()
                if seg.plan is not None:
                    out.extend(seg.plan.kernels)
                stack.extend(seg.children.values())
        return out

    def guards(self) -> list[str]:
        """The Python state each cache entry's trace depends on, one line per guard.

        >>> f(x); print("\\n".join(f.guards()))
        global 'scale' == 0.5
        """
        out = []
        for entry in list(self.cache.values()):
            if entry.guards is not None:
                out += [f"{w} == {e}" for w, e in zip(entry.guards.where, entry.guards.expected)]
        return out

    def cache_report(self) -> str:
        """Each cache entry: its guard key, why it was made (first call or the failed guard).

        >>> f(ember.ones(2, 3)); f(ember.ones(4, 3)); print(f.cache_report())
        """
        from ember.inspect.cache import cache_report
        return cache_report(self)


def _scalar_key(v) -> tuple:
    """A Python scalar in the key: its type and value, with -0.0 apart from 0.0 and every
    NaN alike (NaN != NaN would miss the cache at every call)."""
    if type(v) is float:
        if v != v:
            return ("V", "float", "nan")
        if v == 0.0:
            return ("V", "float", v, math.copysign(1.0, v))
    return ("V", type(v).__name__, v)


def _aliasing(tensors: list) -> tuple | None:
    """Which tensor arguments are the same tensor, and which share memory: a trace of
    ``f(x, x)`` must not replay ``f(x, y)``. None in the usual case: no two do."""
    roots = []
    for t in tensors:
        a = t._data
        roots.append(id(a) if a.base is None else id(root(a)))
    if len(set(roots)) == len(roots):   # distinct memory implies distinct tensors
        return None
    ids = [id(t) for t in tensors]
    return ("A", tuple(ids.index(i) for i in ids), tuple(roots.index(r) for r in roots))


def describe_key_change(old, new) -> str:
    """A readable reason for a recompile: which part of the key changed."""
    if old is None:
        return ""
    if old[0] != new[0]:
        return "argument structure changed"
    if old[1] != new[1]:
        if isinstance(old[1], tuple) or isinstance(new[1], tuple):
            return f"autocast (or grad mode) changed ({old[1]} -> {new[1]})"
        return f"grad mode changed ({old[1]} -> {new[1]})"
    if len(old) != len(new):
        return "number of arguments changed"
    for i, (a, b) in enumerate(zip(old[2:], new[2:])):
        if a == b:
            continue
        if a is None or b is None or a[0] == "A":
            return "which tensor arguments are the same tensor or share memory changed"
        if a[0] == "T" and b[0] == "T":
            names = ("shape", "dtype", "device", "requires_grad", "strides")
            for n, x, y in zip(names, a[1:], b[1:]):
                if x != y:
                    return f"argument {i} {n} {_fmt(x)} -> {_fmt(y)}"
        return f"argument {i} changed: {_fmt_leaf(a)} -> {_fmt_leaf(b)}"
    return "guards changed"


def _fmt_leaf(part) -> str:
    if part[0] == "V":
        return repr(part[2])
    if part[0] == "O":
        return f"a {part[1].__name__}"
    return "a tensor"


def _fmt(x):
    if isinstance(x, tuple):
        return "[" + ",".join(map(str, x)) + "]"
    return str(x)


# ---- a cache entry ------------------------------------------------------------------------

class Entry:
    """The compiled code of one guard key: a tree of segments split at observed values."""

    def __init__(self, owner: CompiledFunction, guards: GuardSet | None) -> None:
        self.owner = owner
        self.guards = guards   # the Python state the trace read (None: matches any)
        self.state = "second"
        self.root: Segment | None = None
        self.traces: list[Trace] = []
        self.captured: list = []
        self.captured_meta: list = []
        self.captured_data: list = []
        self.warmups = 0
        self.autograd_plans = None   # CompiledAutograd, False if unavailable, None: not yet

    # ---- tracing ------------------------------------------------------------------------
    def _trace(self, args, kwargs, leaves):
        with _COMPILE_LOCK:
            return self._trace_locked(args, kwargs, leaves)

    def _trace_locked(self, args, kwargs, leaves):
        tracer = Tracer(fullgraph=self.owner.fullgraph)
        arg_paths = {}
        snapshot = {}
        for i, (path, v) in enumerate(leaves):
            if isinstance(v, Tensor):
                tracer.add_arg(v, path)
                nid = tracer.env[id(v)]
                arg_paths.setdefault(nid, i)
                snapshot[nid] = copy_same_layout(v._data)
        t0 = _inspect.clock()
        with tracing(tracer):
            result = self.owner.fn(*args, **kwargs)
            out_leaves, out_spec = pytree.flatten(result)
            tensors = [v for _, v in out_leaves if isinstance(v, Tensor)]
            graph = tracer.finish(tensors)
        _inspect.traced(self.owner, self, _inspect.clock() - t0)
        template, k = [], 0
        for _, v in out_leaves:
            if isinstance(v, Tensor):
                template.append(("T", k))
                k += 1
            else:
                template.append(("V", v))
        snapshot.update(tracer.snapshots)
        trace = Trace(graph, tracer.observations, out_spec, template, tracer.captured, arg_paths,
                      tracer.failed, tracer.failed_at,
                      tuple(i for i, t in enumerate(tensors) if t.requires_grad),
                      tuple(i for i, t in enumerate(tensors) if t._retains_grad))
        return result, trace, snapshot

    def first_call(self, args, kwargs, leaves):
        owner = self.owner
        result, trace, snapshot = self._trace(args, kwargs, leaves)
        owner.counters["compiles"] += 1
        if trace.failed:
            self.state = "eager"
            owner._fallback(trace.failed, trace.failed_at)
            return result
        self._start(trace, snapshot, result)
        return result

    def _start(self, trace: Trace, snapshot: dict, result) -> None:
        owner = self.owner
        self.traces.append(trace)
        self.captured = list(trace.captured)
        self.captured_meta = [_meta(t) for t in self.captured]
        self.captured_data = [t._data for t in self.captured]   # checked by identity first
        for o in trace.observations:
            if (f"{o.how}() reads a tensor value", o.location) not in owner.breaks:
                owner.breaks.append((f"{o.how}() reads a tensor value", o.location))
            _log("breaks", f"{owner.__name__}: graph break: {o.how}() at {o.location}")
        self._compile_path(trace, snapshot, result)

    def _compile_path(self, trace: Trace, snapshot: dict, result, quiet: bool = False) -> None:
        """Build the plans of ``trace``'s path. If that fails (the first-call check found a
        difference, or the compiler itself failed), this signature runs eagerly from now
        on: a compile failure costs speed, never correctness."""
        try:
            with _COMPILE_LOCK:
                self._add_path(trace, snapshot, result)
        except CompileError:   # fullgraph=True: already explained
            self.state = "eager"
            raise
        except Exception as e:
            self.state = "eager"
            if not quiet:
                self.owner._fallback(str(e) if isinstance(e, _Mismatch) else
                                     f"building the compiled code failed ({type(e).__name__}: "
                                     f"{e}); this signature runs eagerly")

    def second_call(self, args, kwargs, leaves):
        """Trace once more and compare: Python state that changed would be frozen."""
        if not self.traces:   # the first call raised (a bad target, say): it traced nothing
            return self.first_call(args, kwargs, leaves)
        result, trace, snapshot = self._trace(args, kwargs, leaves)
        first = self.traces[0]
        upto = _divergence(first, trace)
        a, b = first.signature(upto), trace.signature(upto)
        if a != b:
            n = next((x[0] for x, y in zip(a, b) if x != y), min(len(a), len(b)))
            loc = (trace.graph[n]["src"] if isinstance(n, int) and n in trace.graph.nx
                   else "")
            if self.warmups < 1 and not trace.failed:
                # State created lazily on the first call (an optimizer's momentum buffers,
                # gradients that did not exist yet) makes call 1 differ from call 2: start
                # over from call 2, and compare it with call 3.
                self.warmups += 1
                self.owner.notes.append(f"call 1 differed from call 2 (at {loc or 'the end'});"
                                        " compiled from call 2 on")
                self.root, self.traces = None, []
                self._start(trace, snapshot, result)
                return result
            self.state = "eager"
            self.owner._fallback("a Python value differed between the first two calls (it would "
                                 "be frozen into the compiled code); this signature runs eagerly",
                                 loc)
            return result
        self.state = "ready"
        if trace.failed:
            self.state = "eager"
            self.owner._fallback(trace.failed, trace.failed_at)
            return result
        if not self._has_path(trace):
            self.owner.counters["compiles"] += 1
            self.traces.append(trace)
            self._compile_path(trace, snapshot, result)
        return result

    def captured_changed(self) -> str:
        data = self.captured_data
        for i, t in enumerate(self.captured):
            if t._data is data[i]:   # same array object: same shape, dtype and strides
                continue
            m, now = self.captured_meta[i], _meta(t)
            if now != m:
                return f"captured tensor {i} changed {m} -> {now}"
            data[i] = t._data
        return ""

    # ---- building segments --------------------------------------------------------------
    def _has_path(self, trace: Trace) -> bool:
        seg = self.root
        for o in trace.observations:
            if seg is None or seg.obs is None:
                return False
            seg = seg.children.get(o.value)
        return seg is not None and seg.trace is not None

    def _add_path(self, trace: Trace, snapshot: dict, result) -> None:
        """Insert ``trace`` into the segment tree, (re)build plans along it, check them."""
        g = trace.graph
        end = g._next
        cuts = [o.cut for o in trace.observations] + [end]
        path: list[Segment] = []
        parent, lo = None, 0
        for i, hi in enumerate(cuts):
            obs = trace.observations[i] if i < len(trace.observations) else None
            if parent is None:
                seg = self.root
                if seg is None:
                    seg = self.root = Segment(lo, hi, obs)
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
            later_uses.update(g[n]["args"])
        for seg in path:
            need = {n for n in later_uses if seg.lo <= n < seg.hi and (
                n in g.outputs or any(v == n for _, v in g.writebacks)
                or any(u >= seg.hi for u in g.users(n)))}
            if seg.obs is not None:
                need.add(seg.obs.node)
            if not need <= seg.needs or seg.plan is None:
                seg.needs |= need
                seg.plan = None
        escaping = _escaping(g)
        env = dict(snapshot)
        with preserved_rng():  # the traced call already drew this call's random numbers
            for seg in path:
                if seg.plan is None:
                    self._build_segment(seg, g, env, escaping)
                else:
                    seg.plan.run(env)
        _check_against_eager(self.owner, trace, env, result)

    def _build_segment(self, seg: Segment, g: Graph, env: dict, escaping: set) -> None:
        sg = _segment_graph(g, seg.lo, seg.hi, sorted(seg.needs),
                            g.writebacks if seg.obs is None else [])
        seg.traced = sg.copy()
        t0, passlog = _inspect.clock(), _inspect.pass_recorder(self.owner)
        sg = run_pipeline(sg, log=passlog)
        seg.graph = sg
        seg.captured = [(n, s, _meta(s.current())) for n, s in sg.sources.items()
                        if s.kind in ("captured", "grad", "value")]
        inputs = {n: env[n] for n in sg.inputs}
        plan, local = build_plan(sg, inputs, escaping,
                                 on_fallback=lambda r, loc: self.owner._fallback(
                                     f"a kernel runs eagerly: {r}", loc))
        plan.exports = list(zip(sorted(seg.needs), sg.outputs))
        for trace_id, nid in plan.exports:
            env[trace_id] = local[nid]
        seg.plan = plan
        _log("graph", f"{self.owner.__name__}: segment [{seg.lo}, {seg.hi}):\n{sg.text()}")
        for k in plan.kernels:
            if k.source:  # generated code: LLVM IR, or CUDA C
                _log("kernels", f"{k.name} ({'+'.join(k.ops)}):\n{k.source}")
        _inspect.segment_built(self.owner, seg, env, passlog, _inspect.clock() - t0)

    # ---- replay -------------------------------------------------------------------------
    def run(self, args, kwargs, leaves):
        # A call that ran backward itself (a training step) has consumed its graph: its
        # outputs are returned without one, like values read after ``loss.backward()``.
        # (Outputs made under enable_grad() inside a no_grad call need gradients too.)
        if not self.traces[0].graph.grad_writes and (self.traces[0].grad_outputs or (
                autograd.is_grad_enabled() and (
                    any(isinstance(v, Tensor) and v.requires_grad for _, v in leaves)
                    or any(t.requires_grad for t in self.captured)))):
            plans = self._autograd_plans(leaves)
            if plans is None:
                return self._run_with_autograd(args, kwargs, leaves)
            trace = self.root.trace
            outs = plans.forward(leaves)
            return pytree.unflatten(trace.out_spec, [v if kind == "V" else outs[v]
                                                     for kind, v in trace.out_leaves])
        env = {}
        trace0 = self.traces[0]
        for t in self.traces:
            if t.graph.writebacks:
                if _shares_written_memory(self.traces, leaves):
                    self.owner._fallback("a call ran eagerly: an argument shares memory with "
                                         "a tensor the call writes in place")
                    return self.owner._eager(args, kwargs)
                break
        for nid, i in trace0.arg_paths.items():
            env[nid] = leaves[i][1]._data
        seg = self.root
        verify = self.owner.mode == "verify"
        while True:
            try:
                self._fill_captured(seg, env)
            except _Stale as e:  # e.g. a gradient set to None outside: run this call eagerly
                self.owner._fallback(f"a call ran eagerly: {e}")
                return self.owner._eager(args, kwargs)
            if verify:
                _verify_segment(self.owner, seg, env)
            seg.plan.run(env)
            if seg.obs is None:
                break
            value = observed_value(env[seg.obs.node], seg.obs.how)
            child = seg.children.get(value)
            if child is None:  # a branch not seen yet: trace it (this call runs eagerly)
                self.owner._recompiled(
                    f"new value {_short(value)} of {seg.obs.how}() at {seg.obs.location}")
                result, trace, snapshot = self._trace(args, kwargs, leaves)
                self.owner.counters["compiles"] += 1
                if trace.failed:
                    self.owner._fallback(trace.failed, trace.failed_at)
                    return result
                self.traces.append(trace)
                self._compile_path(trace, snapshot, result)
                return result
            seg = child
        return self._outputs(seg.trace, env, leaves)

    def _autograd_plans(self, leaves):
        """The compiled forward/backward pair (built on first need), or None where the
        call has graph breaks or the build failed: then the trace replays eagerly."""
        if self.autograd_plans is None:
            seg = self.root
            self.autograd_plans = False
            if seg is not None and seg.obs is None and seg.trace is not None:
                from ember.tracer.autograd_plan import CompiledAutograd
                try:
                    with preserved_rng():
                        self.autograd_plans = CompiledAutograd(self, seg.trace, leaves)
                except OpError:   # this call's values are bad (an index): raise as eager
                    self.autograd_plans = None   # does, and build from a later call
                    raise
                except Exception as e:  # costs speed, never correctness
                    self.owner._fallback(f"the backward is not compiled ({type(e).__name__}: "
                                         f"{e}); gradients replay the trace eagerly")
        return self.autograd_plans or None

    def _fill_captured(self, seg: Segment, env: dict) -> None:
        for nid, source, meta in seg.captured:  # read every call: optimizers update them
            t = source.current()
            if source.kind != "captured" and (t is None or _meta(t) != meta):
                raise _Stale(f"{source.path} is {'None' if t is None else _meta(t)}, "
                             f"was {meta} when compiled")
            env[nid] = t._data

    def _outputs(self, trace: Trace, env: dict, leaves):
        """Apply the call's effects as eager would and return its result: memory written
        in place is written back into the caller's tensors, ``.grad`` and ``.data``
        assignments are redone, and results that are (views of) the caller's tensors
        are those tensors (views of that memory); the rest are fresh arrays."""
        g = trace.graph
        effects = trace.effects
        if effects is None:
            effects = trace.effects = _effects(g, env)
        if effects is _PURE:   # fresh results only, nothing to write: the common case
            return pytree.unflatten(trace.out_spec, [
                v if kind == "V" else Tensor._wrap(env[g.outputs[v]])
                for kind, v in trace.out_leaves])
        copies, staged, needed = effects
        tensors = {n: _input_tensor(g, n, trace, leaves) for n in needed}
        values = [None if i in g.aliases else env[n] for i, n in enumerate(g.outputs)]
        for i in copies:          # fresh results the plan computed in someone's memory
            values[i] = values[i].copy()
        early = {v: env[v].copy() for v in staged}
        for inp, val in g.writebacks:
            new, mem = early.get(val, env[val]), env[inp]
            if new is not mem:    # else the kernel already wrote it in place
                mem[...] = new
            tensors[inp]._version += 1
        handed = [_handed(g, i, values[i], env, tensors) for i in range(len(g.outputs))]
        for inp, out in g.grad_writes:
            tensors[inp]._grad = None if out is None else handed[out]
        for inp, out in g.rebinds:
            _rebind(tensors[inp], handed[out])
        outs = [v if kind == "V" else handed[v] for kind, v in trace.out_leaves]
        return pytree.unflatten(trace.out_spec, outs)

    def _run_with_autograd(self, args, kwargs, leaves):
        """Replay the traced ops through dispatch, so the autograd tape is recorded."""
        from ember.tracer.autograd_plan import replay_op

        seg = self.root
        tenv: dict[int, Tensor] = {}
        trace = self.traces[0]
        for nid, i in trace.arg_paths.items():
            tenv[nid] = leaves[i][1]
        while True:
            g = _trace_through(self, seg)
            for n in g.nodes():
                if not seg.lo <= n < seg.hi or n in tenv:
                    continue
                d = g[n]
                if d["op"] == "input":
                    tenv[n] = g.sources[n].current()
                elif d["op"] == "const":
                    tenv[n] = Tensor._wrap(g.const_array(n))
                else:
                    tenv[n] = replay_op(d, [tenv[a] for a in d["args"]])
            if seg.obs is None:
                break
            value = observed_value(tenv[seg.obs.node]._data, seg.obs.how)
            child = seg.children.get(value)
            if child is None:
                result, trace, snapshot = self._trace(args, kwargs, leaves)
                self.traces.append(trace)
                if not trace.failed:
                    self._compile_path(trace, snapshot, result, quiet=True)
                return result
            seg = child
        g = seg.trace.graph
        tensors = {n: _input_tensor(g, n, seg.trace, leaves) for n in _effect_inputs(g)}
        memory = {n: tensors[n]._data for n in tensors}   # before any .data rebinding
        with autograd.no_grad():
            new = {inp: tenv[val]._data.copy() for inp, val in g.writebacks}
            for inp, val in g.writebacks:
                memory[inp][...] = new[inp]
                tensors[inp]._version += 1
            handed = []
            for i, n in enumerate(g.outputs):
                how = g.aliases.get(i)
                if how is not None and (how[0] == "input" or any(
                        how[1] == inp for inp, _ in g.writebacks)):
                    handed.append(_handed(g, i, None, memory, tensors))
                else:
                    handed.append(tenv[n])
            for inp, out in g.grad_writes:
                tensors[inp]._grad = None if out is None else handed[out].detach()
            for inp, out in g.rebinds:
                _rebind(tensors[inp], handed[out].detach())
        outs = [v if kind == "V" else handed[v] for kind, v in seg.trace.out_leaves]
        return pytree.unflatten(seg.trace.out_spec, outs)


def _trace_through(entry: Entry, seg: Segment) -> Graph:
    """A full trace graph that passes through ``seg`` (any will do: prefixes agree)."""
    for t in entry.traces:
        s = entry.root
        for o in t.observations:
            if s is seg:
                return t.graph
            s = s.children.get(o.value)
            if s is None:
                break
        if s is seg:
            return t.graph
    raise AssertionError("segment without a trace")


def _effect_inputs(g: Graph) -> set:
    """Input nodes whose tensors a call's effects and results refer to."""
    ins = {i for i, _ in g.writebacks} | {i for i, _ in g.grad_writes} | {i for i, _ in g.rebinds}
    return ins | {how[1] for how in g.aliases.values()}


def _effects(g: Graph, env: dict) -> tuple[list, list, set]:
    """Which values a replay must copy before it writes back: fresh results the plan
    computed as (views of) an input's memory (``y = x + 0`` simplified to ``x``, two
    results merged into one), and written-back values read from memory that another
    write-back overwrites first. Decided once: a plan's aliasing is the same every call."""
    input_roots = {id(root(env[n])) for n in g.inputs if n in env}
    written = {id(root(env[i])) for i, _ in g.writebacks}
    copies, seen = [], set()
    for i, n in enumerate(g.outputs):
        if i in g.aliases:
            continue
        if id(root(env[n])) in input_roots or n in seen:
            copies.append(i)
        seen.add(n)
    staged = [v for i, v in g.writebacks
              if env[v] is not env[i] and id(root(env[v])) in written]
    needed = _effect_inputs(g)
    if not (copies or staged or needed or g.writebacks or g.grad_writes or g.rebinds):
        return _PURE
    return copies, staged, needed


_PURE = ([], [], set())


def _shares_written_memory(traces: list, leaves) -> bool:
    """True when an argument shares memory with another argument or captured tensor that
    the call writes in place: the traces assumed separate memory (running them would
    read values before the write that eager reads after it)."""
    seen: dict[int, bool] = {}
    for trace in traces:
        g = trace.graph
        if not g.writebacks:
            continue
        written = {i for i, _ in g.writebacks}
        arrays = [(leaves[i][1]._data, n in written) for n, i in trace.arg_paths.items()]
        for n in written:
            if g.sources[n].kind != "arg":
                t = g.sources[n].current()
                if t is not None:
                    arrays.append((t._data, True))
        for a, w in arrays:
            r = id(root(a))
            if r in seen and (w or seen[r]):
                return True
            seen[r] = seen.get(r, False) or w
        seen.clear()
    return False


def _handed(g: Graph, i: int, value, memory: dict, tensors: dict):
    """Output ``i`` as the tensor a caller gets."""
    how = g.aliases.get(i)
    if how is None:
        return Tensor._wrap(value)
    if how[0] == "input":
        return tensors[how[1]]
    _, n, shape, strides, offset, lstrides, loffset = how
    t = Tensor._wrap(byte_view(memory[n], shape, strides, offset))
    link = getattr(t, "_view_of", None)
    if link is not None:   # a view of the caller's tensor: one version counter, as eager
        link(tensors[n], OPS["strided_view"],
             {"shape": shape, "strides": lstrides, "offset": loffset})
    return t


def _rebind(t: Tensor, value: Tensor) -> None:
    """``t.data = value`` as a replay of the traced call does it."""
    if value is not t:
        t.data = value


def _input_tensor(g: Graph, nid: int, trace: Trace, leaves):
    src = g.sources[nid]
    if src.kind != "arg":
        return src.current()
    return leaves[trace.arg_paths[nid]][1]


def _meta(t) -> tuple:
    return (tuple(t.shape), t.dtype.name, str(t.device), t._data.strides)


def _short(v) -> str:
    if isinstance(v, tuple) and len(v) == 3 and isinstance(v[2], bytes):
        return f"<array {v[0]}>"
    return repr(v)


def _divergence(a: Trace, b: Trace) -> int:
    """Node count up to which two traces must agree (their first differing observation)."""
    for oa, ob in zip(a.observations, b.observations):
        if oa.value != ob.value or oa.cut != ob.cut:
            return min(oa.cut, ob.cut)
    return max(a.graph._next, b.graph._next)


def _segment_graph(g: Graph, lo: int, hi: int, needs: list[int], writebacks) -> Graph:
    """The nodes of [lo, hi); values from earlier segments become inputs."""
    sg = g.copy()
    sg.grad_writes, sg.rebinds, sg.aliases = [], [], {}  # applied from the whole trace
    used_before = set()
    for n in g.nodes():
        if lo <= n < hi:
            used_before.update(a for a in g[n]["args"] if a < lo)
    used_before.update(n for n in needs if n < lo)
    used_before.update(v for _, v in writebacks if v < lo)
    used_before.update(i for i, _ in writebacks)
    for n in g.nodes():
        if n >= hi and n not in used_before:
            sg.remove(n)
        elif n < lo or (n >= hi):
            if n in used_before:
                if g[n]["op"] != "input":
                    sg.make_input(n, InputSource("env", f"%{n}"))
            else:
                sg.remove(n)
    sg.inputs.sort()
    sg.outputs = list(needs)
    sg.writebacks = list(writebacks)
    return sg


def _escaping(g: Graph) -> set[int]:
    """Values handed to the user (outputs, and what they view): never reused buffers."""
    out = set()
    stack = list(g.outputs)
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        op = g[n]["op"]
        if op in _MOVEMENT_VIEWS or op in OPS and getattr(OPS[op], "view", False):
            stack.extend(g[n]["args"])
    return out


class _Mismatch(Exception):
    pass


class _Stale(Exception):
    """A captured input the plan was built for is gone or changed layout."""


# The first-run check's tolerance per type: float16/bfloat16 results of float32 kernels
# may round one ulp (2**-10, 2**-7 relative) away from NumPy's.
_CHECK_TOL = {"float16": 2e-3, "bfloat16": 2e-2, "float32": 1e-4, "float64": 1e-9,
              "complex64": 1e-4, "complex128": 1e-9}


def _close(a, b) -> bool:
    a, b = (np.asarray(x.get() if hasattr(x, "__cuda_array_interface__") else x)
            for x in (a, b))   # CuPy arrays come to the host to be compared
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    tol = _CHECK_TOL.get(a.dtype.name)
    if tol is not None:
        if a.dtype.kind == "V":   # bfloat16 (ml_dtypes): compared as float32
            a, b = a.astype(np.float32), b.astype(np.float32)
        return bool(np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True))
    return bool(np.array_equal(a, b))


def _check_against_eager(owner, trace: Trace, env: dict, result) -> None:
    """The first compiled run must equal the eager result of the same call."""
    from ember.ops.registry import OPS

    g = trace.graph
    if any(g[n]["op"] in OPS and OPS[g[n]["op"]].impure for n in g.nodes()):
        return  # random draws differ between the two runs by design
    leaves, _ = pytree.flatten(result)
    tensors = [v for _, v in leaves if isinstance(v, Tensor)]
    for i, (t, nid) in enumerate(zip(tensors, g.outputs)):
        if nid in g.sources:
            continue
        if not _close(env[nid], t._host()):
            raise _Mismatch(f"compiled output {i} differed from eager on the first call "
                            f"(node %{nid}, {g[nid]['src']}); this signature runs eagerly")


def _verify_segment(owner, seg: Segment, env: dict) -> None:
    """mode="verify": run kernel by kernel beside the interpreter; name the first that differs."""
    from ember.ir.interpreter import interpret

    g = seg.graph
    for nid in g.inputs:
        if nid not in env and g.sources[nid].kind == "captured":
            env[nid] = g.sources[nid].tensor._data
    inputs = {n: env[n] for n in g.inputs}
    ref = interpret(g, inputs)
    local = dict(inputs)
    local.update(seg.plan.consts)
    for step, info in zip(seg.plan.steps, seg.plan.kernels):
        step(local)
        for n in info.nodes:
            if n in local and not _close(local[n], ref[n]):
                msg = (f"ember.compile(mode='verify') of {owner.__name__}: kernel {info.name} "
                       f"({info.backend}: {'+'.join(info.ops)}) computed %{n} differently from eager; "
                       f"max abs diff {np.nanmax(np.abs(np.asarray(local[n], float) - np.asarray(ref[n], float)))}"
                       f"\n  source lines: {', '.join(info.src) or '?'}")
                repro = _inspect.verify_failed(owner, seg, inputs, info, msg)  # names a script
                raise VerificationError(f"{msg}\n  {repro}")


# ---- logging -------------------------------------------------------------------------------

def _log(channel: str, text: str) -> None:
    from ember.inspect import logs
    logs.log(channel, text)


# ---- the decorator -------------------------------------------------------------------------

def compile(fn: Callable | None = None, *, mode: str = "default", fullgraph: bool = False,
            cache_limit: int = DEFAULT_CACHE_LIMIT):
    """Compile a function or an ``nn.Module``: trace, optimize, fuse and run as kernels.

    >>> @ember.compile
    ... def f(x):
    ...     return (x * 2).exp() + 1
    >>> f(ember.ones(4))
    tensor([8.3891, 8.3891, 8.3891, 8.3891])
    """
    if fn is None:
        return lambda f: compile(f, mode=mode, fullgraph=fullgraph, cache_limit=cache_limit)
    from ember.nn import Module

    if isinstance(fn, Module):
        return CompiledModule(fn, mode=mode, fullgraph=fullgraph, cache_limit=cache_limit)
    return CompiledFunction(fn, mode=mode, fullgraph=fullgraph, cache_limit=cache_limit)


class CompiledModule:
    """A compiled module: behaves like the module (same parameters, train/eval, state_dict)."""

    def __init__(self, module, **options) -> None:
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_compiled_forward", CompiledFunction(module.__call__, **options))

    def __call__(self, *args, **kwargs):
        return self._compiled_forward(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._orig_mod, name)

    def __setattr__(self, name, value):
        setattr(self._orig_mod, name, value)

    def stats(self) -> dict:
        return self._compiled_forward.stats()

    def cache_report(self) -> str:
        return self._compiled_forward.cache_report()

    def __repr__(self) -> str:
        return f"Compiled({self._orig_mod!r})"
