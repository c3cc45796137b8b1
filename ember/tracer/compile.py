"""``ember.compile``: trace a function once per input signature, compile, and replay.

A call looks up its key (argument structure, tensor shapes/strides/dtypes/devices/
requires_grad, Python values, argument aliasing, grad mode: ``key.py``) and, among the
entries of that key, the one whose guards of Python state hold (``guards.py``). A miss
traces the function eagerly (the call's result is eager's), compiles the trace and checks
the compiled plan against eager on the same inputs (``entry.py``, ``checks.py``). The
second call with the same key traces again and compares: Python state that changed
between calls (a counter, a global) is reported and that key runs eagerly. From then on
a hit runs the plans without running the user's Python.

Reading a Python value from a tensor (``bool(t)``, ``t.item()``...) splits the trace
into segments (``segments.py``); the observed value selects the next segment, traced the
first time that value is seen. Every path equals eager. What happens is published as
events (``events.py``) that ``ember.inspect`` turns into logs, records and reports.

This module is the public API: ``compile``, ``CompiledFunction``, ``CompiledModule``.
"""
from __future__ import annotations

import functools
import threading
import warnings
import weakref
from typing import Any, Callable

from ember import dispatch as _dispatch
from ember.nn.module import STRUCTURE_VERSION, Module
from ember.tensor import Tensor
from ember.tracer import events, fastpath, pytree
from ember.tracer import admission
from ember.tracer.admission import SizeAdmission
from ember.runtime.memory import Arena
from ember.tracer.dynamic import DynamicDims
from ember.tracer.entry import Entry
from ember.tracer.events import clock
from ember.tracer.fastpath import MISS
from ember.tracer.guards import GuardSet, UninitializedTensor
from ember.tracer.key import CallKey, key_fields
from ember.tracer import options as _options
from ember.tracer.options import (COMPILE_LOCK, DEFAULT_CACHE_LIMIT,  # noqa: F401
                                  DYNAMIC_CACHE_LIMIT, CompileError,
                                  VerificationError, eager_mode, env_flag, global_eager,
                                  set_eager)
from ember.tracer.segments import segments
from ember.tracer.symbolic import Symbols, comparable, hold, same_path

__all__ = ["compile", "CompiledFunction", "CompiledModule", "CompileError", "VerificationError",
           "eager_mode", "set_eager", "env_flag", "DEFAULT_CACHE_LIMIT"]

_REASONS_KEPT = 100   # recompile reasons listed in stats(); later ones are only counted
NOTE_NEW_SIZE = ("a call at a new size runs eagerly until its eager calls have cost what "
                 "compiling a size costs (each size is traced on its own; admission.py)")


_LIVE: "weakref.WeakSet[CompiledFunction]" = weakref.WeakSet()   # for reset_all


def reset_all() -> None:
    """``ember.compiler.reset()``: every compiled function forgets its entries."""
    for fn in list(_LIVE):
        fn.reset()


class CompiledFunction:
    """The callable ``ember.compile(fn)`` returns. ``.stats()`` reports what happened.

    The cache maps a key (argument structure, tensor metadata, scalar values, argument
    aliasing, grad mode) to entries; each entry also holds the guards of the Python
    state its trace read (see guards.py), so one key can have several entries. Calls
    from several threads are safe: a function's entries replay one call at a time (plans
    reuse their buffers), eager calls run in parallel.
    """

    def __init__(self, fn: Callable, mode: str = "default", fullgraph: bool = False,
                 cache_limit: int | None = None, dynamic: bool | None = None) -> None:
        if mode not in ("default", "eager", "verify"):
            raise ValueError(f"ember.compile: unknown mode {mode!r} (default, eager, verify)")
        self._dynamic_setting = dynamic
        self.dynamic = DynamicDims(dynamic)   # which sizes vary (dynamic.py)
        self.arena = Arena()   # the working memory all entries share (one call at a time)
        functools.update_wrapper(self, fn)
        if not hasattr(self, "__name__"):   # a callable object: warnings and logs name it
            self.__name__ = self.__qualname__ = type(fn).__name__
        self.fn = fn
        self.mode = mode
        self.fullgraph = fullgraph
        self.symbols = self._new_symbols()    # which numbers vary (symbolic.py)
        # None: DEFAULT_CACHE_LIMIT, DYNAMIC_CACHE_LIMIT once sizes vary (limit())
        self.cache_limit = cache_limit
        self.cache: dict[Any, Entry] = {}      # (key, n) -> Entry, in creation order
        self._by_key: dict[Any, list] = {}     # key -> its entries
        self._unstable: dict[Any, int] = {}    # key -> calls that changed their own guards
        # "compiles": traces made into entries or branches; "code_builds": those whose
        # plans generated machine code (the others found every kernel compiled already).
        # "new_sizes_run_eagerly", "sizes_left_eager_cache_full": see admission.py
        self.counters = {"calls": 0, "compiles": 0, "code_builds": 0, "cache_hits": 0,
                         "eager_calls": 0, "new_sizes_run_eagerly": 0,
                         "sizes_left_eager_cache_full": 0}
        self._sizes = SizeAdmission()
        self.recompile_reasons: list[str] = []
        self.fallbacks: list[str] = []          # each reason once ...
        self.fallback_counts: dict[str, int] = {}   # ... and how often it happened
        self.notes: list[str] = []   # things worth knowing that cost nothing (warm-ups)
        self.breaks: list[tuple[str, str]] = []
        self._warned: set[str] = set()
        self._lock = threading.RLock()
        self._last_key: CallKey | None = None
        self._fast = None   # the fast function of the entry hit last (see _set_fast)
        self._fast_entry = None
        self._fast_hits0 = 0   # counters["cache_hits"] when _count_fast_hits last looked
        self.record = None   # the inspector's record (ember.inspect sets it)
        events.publish("function_created", self)
        _LIVE.add(self)

    def reset(self) -> None:
        """Forget every compiled entry and which sizes turned dynamic: the next call traces
        and compiles again (machine code already made is reused)."""
        with self._lock:
            self._fast = self._fast_entry = None
            self.cache.clear()
            self._by_key.clear()
            self._unstable.clear()
            self._last_key = None
            self.dynamic = DynamicDims(self._dynamic_setting)
            self.symbols = self._new_symbols()
            self._sizes = SizeAdmission()
            self.arena = Arena()

    def _new_symbols(self) -> Symbols:
        # (verify and fullgraph modes compile per value: their answers stay per trace)
        plain = self.mode == "default" and not self.fullgraph
        return Symbols(self._dynamic_setting if plain else False)

    def __get__(self, obj, objtype=None):  # decorating a method binds like a function
        return self if obj is None else functools.partial(self, obj)

    # ---- calling ----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        fast = self._fast
        if fast is not None and not kwargs:
            # The entry hit last, through its generated function (fastpath.py): it checks
            # what the key and guards check and runs the plan, or says MISS untouched.
            out = fast(args)
            if out is not MISS:
                return out
        if self.mode == "eager" or global_eager[0] or _dispatch.tracer is not None:
            return self.fn(*args, **kwargs)  # nested calls are traced inline
        try:
            return self._call(args, kwargs)
        finally:
            if self.symbols.flush:   # item() gives stand-ins from now on (or no longer)
                self.symbols.flush = False
                with self._lock:
                    self._fast = self._fast_entry = None
                    self.cache.clear()
                    self._by_key.clear()

    def _call(self, args, kwargs):
        """A call the fast function did not answer: look up, replay, trace or run eagerly."""
        leaves, spec = pytree.flatten_call(args, kwargs)
        if self.symbols.positions:   # symbolic numbers as 0-dim tensors (symbolic.py)
            leaves = self.symbols.convert(leaves)
        key = key_fields(leaves, spec)   # a CallKey's fields: see key.py
        with self._lock:
            self.counters["calls"] += 1
            self._count_fast_hits()
            entry, reason = self._lookup(key, leaves)
            if entry is not None and entry.state == "ready":
                changed = entry.captured_changed()
                if changed:
                    self._drop(key, entry)
                    entry, reason = None, changed
                else:
                    out = self._hit(entry, args, kwargs, leaves)
                    if not kwargs:
                        self._set_fast(entry, key, leaves)
                    return out
            renting = False
            if entry is None:
                self._drop_dead()
                admit = self._admit(key, reason)
                if admit == "compile":
                    return self._compile(key, args, kwargs, leaves, reason)
                renting = admit == "rent"
            elif entry.state == "second":
                t0 = clock()
                with COMPILE_LOCK:
                    result = entry.second_call(args, kwargs, leaves)
                self._check_stable(key, entry, leaves)
                self._sizes.checked(key, clock() - t0)
                return result
            self.counters["eager_calls"] += 1
        if not renting:
            return self.fn(*args, **kwargs)   # outside the lock: eager calls run in parallel
        t0 = clock()
        out = self.fn(*args, **kwargs)
        with self._lock:
            self._sizes.paid(key, clock() - t0)
        return out

    def _admit(self, key: tuple, reason: str) -> str:
        """What a call that found no entry does: "compile", or run eagerly ("rent": a new
        size of a dynamic function, until compiling it pays (admission.py), or "eager").
        Into a full cache, a new size takes the place of an entry hit less often than it
        was seen; other keys take the least recently used entry's once sizes vary."""
        limit = self.limit()
        if (admission.NEW_SIZES == "rent" and self.mode == "default" and not self.fullgraph
                and self.dynamic.mode is not False and self.cache
                and self._sizes.new_size(key, self._by_key)):
            seen = self._sizes.sighting(key)
            if seen == 1:
                self.counters["new_sizes_run_eagerly"] += 1
                if NOTE_NEW_SIZE not in self.notes:
                    self.notes.append(NOTE_NEW_SIZE)
            if not self._sizes.worth_compiling(key):
                events.publish("rented", self, reason, seen)
                return "rent"
            if len(self.cache) >= limit:
                victim = self._sizes.victim(self.cache, self.counters["calls"], limit,
                                            self._fast_entry if self._fast else None)
                if victim is None or seen <= victim[0][0]:
                    self.counters["sizes_left_eager_cache_full"] += 1
                    events.publish("rented", self, reason + " (the cache is full of sizes "
                                   "hit more often)", seen)
                    return "rent"
                (old_key, _), old = victim[1], victim[2]
                self._drop(old_key, old)
                self._sizes.given_up(tuple(old_key), old.hits)
                events.publish("recompiled", self, f"gave up the entry hit least often "
                               f"({old.hits} hits; cache limit {limit}) for a size seen "
                               f"{seen} times")
            return "compile"
        if len(self.cache) >= limit and self.dynamic.active():
            self._evict()   # sizes vary: the least recently used size makes room
        if len(self.cache) < limit:
            return "compile"
        self._fallback(f"cache limit of {limit} entries reached; running eagerly")
        return "eager"

    def _count_fast_hits(self) -> None:
        """Credit the hits the fast function made since the last generic call to its entry
        (it counts only the function's total, to stay short)."""
        n = self.counters["cache_hits"] - self._fast_hits0
        if n and self._fast_entry is not None:
            self._fast_entry.hits += n
            self._fast_entry.last_used = self.counters["calls"]
        self._fast_hits0 = self.counters["cache_hits"]

    def _hit(self, entry, args, kwargs, leaves):
        self.counters["cache_hits"] += 1
        self._fast_hits0 += 1
        entry.last_used = self.counters["calls"]
        entry.hits += 1
        t0 = clock()
        try:
            out = entry.run(args, kwargs, leaves)
        except Exception as e:
            if not self._can_rerun(entry, e):
                raise
            return self._rerun_eagerly(args, kwargs, e)
        seconds = clock() - t0
        for handler in events.HANDLERS.get("hit", ()):   # events.publish, inlined: every hit
            handler(self, entry, seconds)
        return out

    def _set_fast(self, entry, key, leaves) -> None:
        """Make ``entry`` (just hit) the one the next call tries first, through its fast
        function, built once per entry (None where it needs the generic path). Only the
        single entry of its key: with several, the generic lookup's order decides."""
        if len(self._by_key.get(key, ())) != 1 or entry.state != "ready":
            self._fast = None
            return
        if entry.fast is False:
            entry.fast = fastpath.build(self, entry, key, leaves)
        self._fast = entry.fast
        self._fast_entry = entry

    def _lookup(self, key: tuple, leaves):
        """The entry whose guards hold for this call, or None and why none did."""
        entries = self._by_key.get(key)
        if not entries:
            if not self.cache:
                return None, ""
            return None, CallKey(*key).diff(self._last_key)
        for e in entries:
            if e.predicates:   # branches on symbolic numbers (symbolic.py)
                reason = hold(e.predicates, leaves)
                if reason:
                    continue
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
        t0 = clock()
        try:
            result, entry = self._compile_entry(key, args, kwargs, leaves, reason)
        except UninitializedTensor as e:
            # A lazy module before its first call: this call runs eagerly and initializes
            # it (torch.compile does the same); the next one compiles.
            self._fast = None
            self.counters["eager_calls"] += 1
            note = (f"{e} was an uninitialized (lazy) parameter or buffer: the first call "
                    f"ran eagerly to initialize it")
            if note not in self.notes:
                self.notes.append(note)
            return self.fn(*args, **kwargs)
        # What compiling costs, for the sizes to come (admission.py), less the machine code
        # it generated (later sizes reuse that)
        made = sum(seg.plan.phase_seconds.get(k, 0.0) for seg in segments(entry.root)
                   if seg.plan is not None for k in ("codegen", "llvm", "cuda"))
        self._sizes.compiled(key, clock() - t0 - made)
        return result

    def _compile_entry(self, key, args, kwargs, leaves, reason: str):
        self._fast = None   # a new entry: the generic lookup decides until the next hit
        if reason:
            self._recompiled(reason)
        self.notes += self.dynamic.learn(key, leaves, self._by_key)
        # Numbers seen varying: this call, traced with the plain number, is watched for
        # type() tests; the first trace with symbols is checked against its trace.
        traced = {k: es[0] for k, es in self._by_key.items() if es and es[0].traces}
        probe = bool(self.symbols.learn(key, leaves, traced))
        sym = self.symbols
        first_symbolic = sym.reference is not None and any(
            i < len(leaves) and isinstance(leaves[i][1], Tensor) for i, _ in sym.positions)
        with COMPILE_LOCK:
            entry = Entry(self, GuardSet(self.fn, leaves, STRUCTURE_VERSION),
                          self.dynamic.sizes(leaves))
            entry.last_used = self.counters["calls"]
            entry.watch_code = probe
            # An exception (the user's, a KeyboardInterrupt) leaves no entry behind.
            result = entry.first_call(args, kwargs, leaves)
        if probe:
            self.notes.append(sym.probed(entry, entry.codes, leaves, key))
            if sym.reference is entry:   # calls convert them now: per-value keys are dead
                self._drop_per_value({i for i, _ in sym.positions})
                return result, entry   # (its key no call reaches either; kept as reference)
        elif first_symbolic:
            self._first_symbolic(entry, key)
        if entry.specialized:
            paths = sym.give_up()
            self.notes.append(f"{', '.join(paths)} varied, but the function uses the value "
                              f"as a Python number ({entry.specialized}): it is compiled "
                              "once per value")
            return result, entry
        key = self._last_key = CallKey(*key)   # the stored key has names (inspect reads them)
        self.cache[(key, id(entry))] = entry
        self._by_key.setdefault(key, []).append(entry)
        events.publish("entry_created", self, entry, key, reason or "first call")
        self._check_stable(key, entry, leaves)
        return result, entry

    def _first_symbolic(self, entry, key: tuple) -> None:
        """The first trace with symbolic numbers: it must have run the tensor ops the
        probing call's trace ran (else it is not kept: ``entry.specialized``)."""
        sym = self.symbols
        if not entry.traces or entry.specialized:
            return
        symbolic = {i for i, _ in sym.positions}
        if (not comparable(sym.reference_key, key, symbolic)
                or hold(entry.predicates, sym.reference_leaves)):
            return   # (another dtype, or another branch: a later entry is checked)
        if not same_path(entry.traces[0], sym.reference.traces[0], symbolic):
            entry.specialized = ("it ran other tensor ops than with the plain number: a "
                                 "test of type()?")
            return
        sym.reference = None

    def _drop_per_value(self, symbolic: set) -> None:
        """Drop the entries keyed by values of the ``symbolic`` leaves: calls give those
        as 0-dim tensors now, so no key of theirs can match again."""
        for old in list(self._by_key):
            if any(i < len(old[3]) and old[3][i][0] == "V" for i in symbolic):
                for e in list(self._by_key[old]):
                    self._drop(old, e)

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
        self._fast = None
        eager = Entry(self, None)
        eager.state = "eager"
        key = CallKey(*key)
        self.cache[(key, id(eager))] = eager
        self._by_key.setdefault(key, []).append(eager)
        events.publish("entry_created", self, eager, key, f"the call changes {what}")
        self._fallback(f"the function changes {what} when it runs, and a compiled replay "
                       "would not; this signature runs eagerly")

    def _drop_dead(self) -> None:
        """Forget entries whose guarded objects are gone (their kernels go with them)."""
        for (key, _), entry in list(self.cache.items()):
            if entry.guards is not None and not entry.guards.alive():
                self._drop(key, entry)

    def limit(self) -> int:
        """The number of cache entries kept: ``cache_limit``, or by default 8, and 64
        once some dim is dynamic (entries of one function share code and memory)."""
        if self.cache_limit is not None:
            return self.cache_limit
        # (read at each call: ember._dynamo.config.recompile_limit sets the default)
        return (max(DYNAMIC_CACHE_LIMIT, _options.DEFAULT_CACHE_LIMIT) if self.dynamic.active()
                else _options.DEFAULT_CACHE_LIMIT)

    def _evict(self) -> None:
        """Drop the least recently used entry (the one fast calls go to counts as used
        now). Only for functions whose sizes vary: a new size then compiles in place of
        an old one, from machine code already made, instead of running eagerly."""
        fast_entry = self._fast_entry if self._fast is not None else None
        candidates = [(e.last_used, i, k, e)
                      for i, ((k, _), e) in enumerate(self.cache.items()) if e is not fast_entry]
        if candidates:
            _, _, key, entry = min(candidates, key=lambda c: c[:2])
            self._drop(key, entry)
            events.publish("recompiled", self, "evicted the least recently used entry "
                           f"(cache limit {self.limit()}) for a new size")

    def _drop(self, key, entry) -> None:
        self._fast = None
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
        events.publish("recompiled", self, reason)

    @staticmethod
    def _can_rerun(entry, error: Exception) -> bool:
        """Whether a replay that raised ``error`` wrote none of the caller's memory: a
        value check failed (an index out of range; plans run checks first, write-backs
        last), or no kernel of the entry updates a tensor in place. (Never for verify
        mode's and fullgraph's own errors: they are the answer asked for.)"""
        if isinstance(error, (VerificationError, CompileError)):
            return False
        return getattr(error, "from_check", False) or not entry.updates_in_place()

    def _rerun_eagerly(self, args, kwargs, error: Exception):
        """The call of a failed replay, run eagerly: it raises where eager raises, having
        done what eager does before that line (``x.add_(1)`` before ``x[bad_index]``)."""
        try:
            out = self._eager(args, kwargs)
        except Exception as eager_error:   # eager's own error, without the replay's
            raise eager_error from None
        # (eager did not raise: the replay's error was the compiler's own)
        self._fallback(f"a call ran eagerly: its replay raised {type(error).__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else ''}")
        return out

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
            events.publish("fallback", self, text)
        if text not in self._warned:
            self._warned.add(text)
            warnings.warn(f"ember.compile of {self.__name__}: {text}", stacklevel=4)

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
        return [k for entry in list(self.cache.values()) for seg in segments(entry.root)
                if seg.plan is not None for k in seg.plan.kernels]

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
        report = events.ask("cache_report", self)
        return report if report is not None else f"{self.__name__}: {len(self.cache)} cache entries"


# torch.compile's modes tune Inductor and CUDA graphs; ember has one pipeline, which each
# of them selects. Its backends: ember's own code generator stands for Inductor (the
# default); "eager" and "aot_eager" run the function as written.
_TORCH_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_BACKENDS = {None: "default", "inductor": "default", "eager": "eager", "aot_eager": "eager"}


def compile(model: Callable | None = None, *, fullgraph: bool = False,
            dynamic: bool | None = None, backend: str | None = None, mode: str | None = None,
            options: dict | None = None, name: str | None = None, disable: bool = False,
            recompile_limit: int | None = None, cache_limit: int | None = None):
    """Compile a function or an ``nn.Module``: trace, optimize, fuse and run as kernels.

    torch.compile's signature: ``dynamic`` None compiles for the first call's sizes and
    makes a dim dynamic once a call changes it, True makes every dim dynamic, False none;
    kernels over dynamic dims are compiled once for every size (``tracer/dynamic.py``);
    unless False, an int or float argument that changes becomes a run-time value, one
    entry for every value (``tracer/symbolic.py``). ``mode``: torch's modes
    ("reduce-overhead", "max-autotune", ...) all run ember's one pipeline; ember's own
    are "eager" (run as written, to debug) and "verify" (check every replay against
    eager). ``backend``: "inductor" (or None) is ember's code generator,
    "eager"/"aot_eager" run as written. ``options`` (Inductor's settings) have nothing to
    tune here and are accepted as given. ``name`` names the function in ``stats()`` and
    ``explain()``. ``disable=True`` returns ``model`` itself. ``recompile_limit`` (or
    ``cache_limit``): the cache entries kept (default 8, and 64 once a dim is dynamic:
    the least recently used size then makes room for a new one); past it, calls run
    eagerly.

    >>> @ember.compile
    ... def f(x):
    ...     return (x * 2).exp() + 1
    >>> f(ember.ones(4))
    tensor([8.3891, 8.3891, 8.3891, 8.3891])
    """
    if mode is not None and options is not None:   # as torch.compile
        raise RuntimeError("Either mode or options can be specified, but both can't be "
                           "specified at the same time.")
    if callable(backend):
        raise NotImplementedError(
            "ember.compile: a custom backend (a callable given a torch.fx graph) has no "
            "graph to receive here: ember compiles with its own code generator. Leave "
            "backend out (or 'inductor'), or use 'eager' to run the function as written")
    if backend not in _BACKENDS:
        raise ValueError(f"ember.compile: unknown backend {backend!r}: ember compiles with "
                         "its own code generator ('inductor' or None), or runs the function "
                         "as written ('eager', 'aot_eager')")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"ember.compile: options must be a dict, got {type(options).__name__}")
    if recompile_limit is not None and cache_limit is not None and recompile_limit != cache_limit:
        raise ValueError("ember.compile: recompile_limit and cache_limit name the same limit; "
                         "give one")
    run = "default" if mode is None or mode in _TORCH_MODES else mode
    if _BACKENDS[backend] == "eager":
        run = "eager"
    settings = dict(mode=run, fullgraph=fullgraph, dynamic=dynamic,
                    cache_limit=recompile_limit if recompile_limit is not None else cache_limit)
    if model is None:
        return lambda f: compile(f, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                 mode=mode, options=options, name=name, disable=disable,
                                 recompile_limit=recompile_limit, cache_limit=cache_limit)
    if disable:
        return model
    compiled = (CompiledModule(model, **settings) if isinstance(model, Module)
                else CompiledFunction(model, **settings))
    if name is not None:
        target = compiled._compiled_forward if isinstance(compiled, CompiledModule) else compiled
        target.__name__ = name
    return compiled


class CompiledModule(Module):
    """What ``ember.compile(module)`` returns: an ``nn.Module`` that holds the original as
    its child ``_orig_mod`` and runs its calls compiled, as torch.compile's
    ``OptimizedModule``: it is an ``nn.Module`` (containers take it), its parameters and
    ``state_dict`` keys are the original's under ``_orig_mod.``, train/eval and every
    other attribute read or set are the original's, and it deep-copies and pickles (a copy
    compiles afresh).

    >>> cm = ember.compile(nn.Linear(2, 2))
    >>> list(cm.state_dict()), isinstance(cm, nn.Module)
    (['_orig_mod.weight', '_orig_mod.bias'], True)
    """

    _OWN = frozenset({"_orig_mod", "_compiled_forward", "_options", "forward"})

    def __init__(self, module, **options) -> None:
        super().__init__()
        self._modules["_orig_mod"] = module
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_compiled_forward", CompiledFunction(module.__call__, **options))

    def forward(self, *args, **kwargs):
        return self._compiled_forward(*args, **kwargs)

    @property
    def training(self) -> bool:
        return self._orig_mod.training

    @training.setter
    def training(self, value: bool) -> None:
        # Module.__init__ sets the default before the original is registered: ignored.
        modules = self.__dict__.get("_modules")
        if modules is not None and "_orig_mod" in modules:
            modules["_orig_mod"].training = value

    def __getattr__(self, name: str):
        modules = self.__dict__.get("_modules")
        if modules is None or "_orig_mod" not in modules:   # before __init__ (a copy)
            raise AttributeError(name)
        if name in modules:
            return modules[name]
        return getattr(modules["_orig_mod"], name)

    def __setattr__(self, name: str, value) -> None:
        if name in self._OWN or hasattr(type(self), name):
            super().__setattr__(name, value)
        else:
            setattr(self._orig_mod, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._OWN or hasattr(type(self), name):
            super().__delattr__(name)
        else:
            delattr(self._orig_mod, name)

    def __len__(self) -> int:
        return len(self._orig_mod)

    def __reduce__(self):
        # The compiled code, caches and locks stay behind: a copy compiles on its own.
        return _compiled_module, (self._orig_mod, self._options)

    def stats(self) -> dict:
        return self._compiled_forward.stats()

    def cache_report(self) -> str:
        return self._compiled_forward.cache_report()

    def __repr__(self) -> str:
        return f"Compiled({self._orig_mod!r})"


def _compiled_module(module, options: dict) -> CompiledModule:
    """Unpickling: ``CompiledModule(module, **options)``."""
    return CompiledModule(module, **options)
