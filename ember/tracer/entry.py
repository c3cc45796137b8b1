"""One cache entry: the traces of a key, their segment tree, its plans, and the replays.

An entry's first call traces (the call runs eagerly under the tracer) and builds plans
along the trace's path, checked against the call's eager results. The second call traces
again and compares (Python state that changed would be frozen into the plans). From then
on a call replays: ``walk`` goes down the segment tree running each segment's plan, and
``writeback.outputs`` applies the call's effects. Calls that need gradients run the
compiled forward/backward pair (``autograd_plan.py``), or replay the trace through
dispatch where that pair can't be built.

>>> entry = Entry(compiled_function, guards)
>>> entry.first_call(args, kwargs, leaves); entry.second_call(args, kwargs, leaves)
>>> entry.run(args, kwargs, leaves)          # a replay: no user Python runs
"""
from __future__ import annotations

import random
import weakref

import numpy as np

from ember import autograd
from ember.codegen import phases
from ember.devices import Device
from ember.dtypes import DType
from ember.errors import OpError
from ember.ir.graph import Graph
from ember.ir.views import address
from ember.ir.interpreter import TensorInterpreter
from ember.ir.passes import run_pipeline
from ember.ops.random import preserved_rng
from ember.runtime.memory import InPlace, release_free_memory
from ember.runtime.plan import build_plan
from ember.tensor import Tensor, array_of
from ember.tensor_common import STRUCTURE_VERSION
from ember.tracer import events, pytree
from ember.tracer.autograd_plan import CompiledAutograd
from ember.tracer.printing import watch_output
from ember.tracer.checks import (Mismatch, check_against_eager, result_tensors,
                                 verify_segment)
from ember.tracer.options import COMPILE_LOCK, CompileError
from ember.tracer.symbolic import CodeWatch, Context, ItemProxy, SymScalar
from ember.tracer.segments import (END, Segment, Trace, divergence, has_path, insert_path,
                                   out_value, segment_graph, segments, trace_through, walk)
from ember.tracer.trace import ARRAY_INPUT, Tracer, copy_same_layout, tracing
from ember.tracer.writeback import (escaping, meta, outputs, shares_written_memory,
                                    tensor_outputs)

# Results a replay may hand back as the traced call made them: immutable values, one
# object for every call. Any other object (a list or array the function filled, an
# object holding tensors that pytree cannot open) would be the traced call's object
# again, stale: such a result makes the call run eagerly.
_ATOMS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis), slice, range,
          np.generic, DType, Device, type)


def _same_captured(a: Trace, b: Trace, upto: int) -> bool:
    """Whether both traces read the same tensors from outside the call, object for
    object: a replay reads the first trace's. Signatures name captured inputs by their
    position only, so a tensor taken from an iterator (``next(it)``) or any state the
    guards cannot see, another each call, looked the same, and replays kept reading
    the traced one. (Gradients are read through their owner; values through a getter.)"""
    ga, gb = a.graph, b.graph
    for n in ga.inputs:
        if n >= upto:
            break
        sa, sb = ga.sources.get(n), gb.sources.get(n)
        if sa is None or sb is None or sa.kind != sb.kind:
            return False
        if sa.kind in ("captured", "grad") and sa.tensor is not sb.tensor and not (
                sa.kind == "captured" and _same_array(sa, sb)):
            return False
        if sa.kind == "attr" and not sa.getter.same_slot(sb.getter):
            return False
    return True


def _read_from_slots(tracer: Tracer, graph: Graph, written: list,
                     slots: dict) -> tuple[frozenset, frozenset]:
    """Make captured inputs that an object's attribute (or a module's buffer) held "attr"
    inputs, read from their slot at every call: the old values of slots the call assigns anew (a
    state fed back, ``self.h = f(self.h)``; DINO's ``self.center`` buffer), and tensors
    the call only read from a slot (``slots``: what the slots held when it started), such
    as a batch that pix2pix's ``set_input`` leaves in ``self.real_A`` before each step.
    Only a tensor that needs no gradient and is in that one slot (of the slots whose
    guards can check by kind): a tensor also reached another way is one input of call 1's
    trace, and the second call (whose slot holds another tensor) traces two, which the
    comparison sees. Returns the ids of those tensors and the (id(module), name) of the
    slots only read. Guards check these slots by kind (``Guards.settle``);
    ``Entry.captured_changed`` their layout."""
    olds = [tracer.attr_old.get((id(ref()), name)) for ref, name, _ in written]
    candidates = [(ref, name, old) for (ref, name, _), old in zip(written, olds)
                  if sum(o is old for o in olds) == 1]
    # (every slot the call assigned, replayably or not: ``self.c = self.h`` assigns a
    # tensor from before the call, which a replay cannot; such a slot is no input)
    assigned = set(tracer.attr_old)
    for refs in slots.values():
        if len(refs) == 1 and (id(refs[0][0]()), refs[0][1]) not in assigned:
            ref, name, _, v = refs[0]
            candidates.append((ref, name, v))
    fed, read = set(), set()
    for ref, name, old in candidates:
        if not isinstance(old, Tensor) or old.requires_grad:
            continue
        nid = tracer.input_of.get(id(old))
        src = graph.sources.get(nid)
        if src is None or src.kind != "captured" or src.tensor is not old:
            continue
        if (id(ref()), name) not in assigned and len(slots.get(id(old), ())) != 1:
            continue
        reader = pytree.SlotReader(ref, name)
        reader.meta, reader.checked = meta(old), None   # (see Entry.captured_changed)
        graph.sources[nid] = type(src)("attr", f"{src.path} (the {name!r} it held)",
                                       getter=reader)
        fed.add(id(old))
        if (id(ref()), name) not in assigned:
            read.add((id(ref()), name))
    return frozenset(fed), frozenset(read)


def _traced_meta(source, array, node) -> tuple:
    """What a plan built for input ``source`` assumed: its tensor's metadata now (the
    strides of its sizes of 1 included: a snapshot copy has others), or, where it holds
    none any more (a ``.grad`` the call itself set to None, as ``zero_grad()`` at the end
    of a step does), the traced value's."""
    t = source.current()
    if t is not None:
        return meta(t)
    return (tuple(array.shape), node.dtype.name, str(node.device), array.strides)


def _same_array(sa, sb) -> bool:
    """Captured inputs that are NumPy arrays made tensors inside the call: the same if
    they are the same memory (a replay reads the first, which sees in-place writes), or
    both made during the call with equal contents (a table computed with NumPy in the
    forward, a new array each call: as constant as a literal was)."""
    x, y = sa.tensor._data, sb.tensor._data
    if _same_memory(x, y):
        return True
    return (sa.path.endswith(ARRAY_INPUT) and sb.path.endswith(ARRAY_INPUT)
            and type(x) is np.ndarray and type(y) is np.ndarray and x.shape == y.shape
            and x.dtype == y.dtype and bool(np.array_equal(x, y, equal_nan=True)))


def _same_memory(x, y) -> bool:
    """Two arrays over the same bytes, laid out alike (``from_numpy`` of one NumPy array
    makes a new tensor per call: a replay reads the first, which sees the same memory).
    The first is alive, so no other allocation can have its address."""
    return (type(x) is np.ndarray and type(y) is np.ndarray and x.shape == y.shape
            and x.strides == y.strides and x.dtype == y.dtype and address(x) == address(y))


def _global_rngs() -> tuple:
    """Python's and NumPy's global random states. A traced call that drew from them (a
    branch on ``random.random()``) would replay the traced draw; the second trace catches
    a different draw, but not one that took the same branch by chance."""
    state = np.random.get_state(legacy=False)
    return (random.getstate(), state["state"]["pos"], state["state"]["key"].tobytes(),
            state["has_gauss"])


class Stale(Exception):
    """A captured input the plan was built for is gone or changed layout."""


# Child segments a graph break keeps (values seen there) before new values run eagerly.
MAX_BRANCHES = 16
# Paths for new values at graph breaks compiled before they must pay off: past that, a
# new value compiles only while the entry's replays number at least BRANCH_PAYBACK per
# path compiled so far, else that call runs eagerly (an adaptive ODE solver meets new
# values almost every call: 9 compiles in 10 calls, 15.8 s a call against 0.13 s eagerly).
FREE_BRANCHES = 4
BRANCH_PAYBACK = 2


class Entry:
    """The compiled code of one guard key: a tree of segments split at observed values."""

    def __init__(self, owner, guards, dynamic: frozenset = frozenset()) -> None:
        self.owner = owner     # the CompiledFunction
        self.guards = guards   # the Python state the trace read (None: matches any)
        self.dynamic = dynamic   # the call's sizes that vary (size-generic kernels)
        self.last_used = 0       # the owner's call count at the last generic-path hit
        self.hits = 0            # generic-path hits (admission.py weighs entries by them)
        self.built_code = False  # whether building the last path generated machine code
        self.state = "second"
        self.root: Segment | None = None
        self.traces: list[Trace] = []
        self.captured: list = []
        self.captured_meta: list = []
        self.none_grads: tuple = ()
        self.captured_data: list = []
        self.warmups = 0
        self.branch_builds = 0   # paths compiled for new values at breaks (after call 2)
        self.replays = 0         # calls replayed to their end through the segment tree
        self.autograd_plans = None   # CompiledAutograd, False if unavailable, None: not yet
        self.specialized = ""   # why a trace with symbolic arguments used their values
        self.watch_code = False   # record the code objects the trace runs (symbolic.py)
        self.predicates: list = []   # the branches its traces took on symbolic numbers
        self.codes = None
        self.fast = False   # fastpath.build's function, None if not eligible, False: not yet
        # The working memory every plan of this entry shares, and the owner's other
        # entries too: a function runs one call at a time (its lock), so the sizes of a
        # dynamic-shape function share one block as large as the largest needs.
        self.arena = owner.arena

    # ---- tracing ------------------------------------------------------------------------
    def _trace(self, args, kwargs, leaves):
        with COMPILE_LOCK:
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
                snapshot[nid] = copy_same_layout(array_of(v))
        t0 = events.clock()
        rngs = _global_rngs()
        hyper = self.guards.hyperparameters() if self.guards is not None else []
        slots = self.guards.tensor_slots() if self.guards is not None else {}
        symbols = self.owner.symbols
        ctx = tracer.symbols = Context()
        # A probe watches code for type() tests of plain numbers; stand-ins need the
        # watch to keep them from code that may test their type (symbolic.CodeWatch)
        watched = self.watch_code or symbols.items == "probe"
        stand_ins = bool(symbols.positions) or symbols.items is True
        watch = CodeWatch(ctx, probe=watched) if watched or stand_ins else None
        with tracing(tracer), watch_output():
            on = watch is not None and watch.start()
            if stand_ins and not on:   # another profiler is on: plain numbers, not kept
                call_args, call_kwargs = args, kwargs
                if symbols.positions:
                    ctx.reasons.append("another profiler is active (stand-ins need "
                                       "sys.setprofile)")
            else:
                ctx.items = symbols.items is True
                call_args, call_kwargs = symbols.substitute(args, kwargs, leaves, ctx)
            try:
                result = self.owner.fn(*call_args, **call_kwargs)
            except BaseException as e:
                if ctx.made:   # (maybe the stand-ins' doing: give them up)
                    ctx.close()
                    self._raised_with_symbols(e)
                raise
            finally:
                if on:
                    watch.stop()
                self.codes = watch.found if on and watched else None
            note = symbols.traced(ctx, self.codes, watched)
            if note:
                self.owner.notes.append(note)
            del call_args, call_kwargs   # (the symbols' escape check counts references)
            self._after_call(tracer, args, kwargs, symbols.originals(leaves, args, kwargs),
                             hyper, slots)
            if _global_rngs() != rngs:
                tracer.fail("the function draws from Python's or NumPy's global random "
                            "numbers: a replay would repeat the traced draws (ember's own "
                            "random functions replay fresh draws)")
            # Tensors the call assigned to attributes and left there: extra results, which
            # every replay assigns again (pytree.AttrWrites)
            written = [(ref, name, t) for ref, name, t in tracer.attr_writes.values()
                       if ref() is not None and pytree.slot_value(ref(), name) is t]
            traced = pytree.AttrWrites(result, written) if written else result
            out_leaves, out_spec = pytree.flatten(traced, results=True)
            items = {}   # result leaf -> the tensor of the item() it returns ("S")
            if ctx.made:
                out_leaves, result, items = self._plain_results(ctx, out_leaves, out_spec,
                                                                result)
                traced = None   # (the escape check counts what still holds a symbol)
                self._close_symbols(tracer, ctx)
            for path, v in out_leaves:
                if not isinstance(v, (Tensor, _ATOMS)):
                    tracer.fail(f"the result holds a {type(v).__name__} (at result{path}): a "
                                "compiled replay would hand back the traced call's object")
            tensors = result_tensors(out_leaves)
            if tracer.fresh_leaves and tracer.leaves_reach(tensors, [t for _, _, t in written]):
                tracer.fail("the call made a tensor that requires grad (a new leaf) and a "
                            "result or a kept tensor may come from it: a replay would not "
                            "make it")
            for t in tensors:   # (``y.tag = ...`` on a result: a replay's is a new tensor)
                if t.__dict__ and id(t) not in tracer.input_of:
                    tracer.fail(f"a result tensor has attributes set ({', '.join(t.__dict__)})"
                                ": a replay's result would not have them")
                    break
            tensors += [t for t in {id(t): t for t in items.values()}.values()
                        if all(t is not u for u in tensors)]
            graph = tracer.finish(tensors)
            fed, read = _read_from_slots(tracer, graph, written, slots)
        events.publish("traced", self.owner, self, events.clock() - t0)
        # One graph output per distinct tensor: a tensor returned twice comes back as
        # one object twice, as in eager (an in-place update through one shows in both).
        position = {id(t): k for k, t in enumerate(tensors)}
        template = [("S", position[id(items[k])]) if k in items
                    else ("T", position[id(v)]) if isinstance(v, Tensor) else ("V", v)
                    for k, (_, v) in enumerate(out_leaves)]
        snapshot.update(tracer.snapshots)
        trace = Trace(graph, tracer.observations, out_spec, template, tracer.captured, arg_paths,
                      tracer.failed, tracer.failed_at,
                      tuple(i for i, t in enumerate(tensors) if t.requires_grad),
                      tuple(i for i, t in enumerate(tensors) if t._retains_grad),
                      frozenset(i for i, t in enumerate(tracer.captured) if t.requires_grad),
                      tuple(tracer.none_grads.values()), frozenset(tracer.values),
                      written=tuple((ref, name) for ref, name, _ in written), fed=fed,
                      read_slots=read, first_item=ctx.first_item)
        return result, trace, snapshot

    @staticmethod
    def _plain_results(ctx: Context, out_leaves: list, out_spec, result):
        """A result traced with stand-ins: its leaves and itself with the plain numbers,
        and the item() tensors it returns (read at every replay: "S" leaves)."""
        items = {}
        for k, (_, v) in enumerate(out_leaves):
            if type(v) is ItemProxy:
                items[k] = v.tensor
            elif type(v) is SymScalar:   # an argument's: the value, no symbol
                ctx.specialize("the result holds a symbolic argument")
        if items or any(type(v) is SymScalar for _, v in out_leaves):
            out_leaves = [(p, v.value if isinstance(v, SymScalar) else v)
                          for p, v in out_leaves]
            result = pytree.unflatten(out_spec, [v for _, v in out_leaves])
        return out_leaves, result, items

    def _close_symbols(self, tracer: Tracer, ctx: Context) -> None:
        """The stand-ins' trace ended (the caller holds none of them any more): whether
        it depends on a number's value (``specialized``: a first trace is not kept, a
        later one fails), else the branches it took (``predicates``)."""
        reason = ctx.close()
        if reason and self.traces:
            tracer.fail(f"the trace depends on the value: {reason}")
        self.specialized = reason
        if not reason:   # (the calls this entry serves: compile._lookup)
            self.predicates += ctx.predicates

    def _raised_with_symbols(self, e: BaseException) -> None:
        """The traced call raised while stand-ins for numbers were about: they may be why
        (a C function wanting an exact int, ``decimal.Decimal(t)``), so they are given up
        and the exception says so. (Running the call again eagerly would repeat what it
        did before it raised, a file written, random numbers drawn, unseen by ember.)"""
        symbols = self.owner.symbols
        paths = symbols.give_up()
        if symbols.items is True:
            symbols.items, symbols.flush = False, True
        note = (f"{self.owner.__name__} raised while traced with stand-ins for "
                f"{', '.join(paths) or 'item() values'}; from now on they are plain")
        self.owner.notes.append(note)
        e.add_note(f"ember.compile: {note}")

    def _after_call(self, tracer: Tracer, args, kwargs, leaves, hyper: list,
                    slots: dict) -> None:
        """What the traced call changed that a replay would not see: the optimizers'
        settings (``hyper``, as they were before), the lists and dicts it was given; and
        the tensors it assigned to attributes of objects that are not Modules (``slots``,
        as they were before), which replays assign too."""
        if hyper:   # (read at every call: a write in the call is not replayed)
            changed = [w for (w, a), (_, b) in zip(hyper, self.guards.hyperparameters())
                       if a is not b and a != b]
            if changed:
                tracer.fail(f"the function changes {changed[0]} (an lr scheduler stepped "
                            "inside it?), which a compiled replay would not; this signature "
                            "runs eagerly")
        if any(isinstance(a, (list, dict, tuple)) for a in (*args, *kwargs.values())):
            changed = pytree.changed_leaf(leaves, pytree.flatten_call(args, kwargs)[0])
            if changed:   # (whisper's kv cache: ``cache[k] = cat([cache[k], new])``)
                tracer.fail(f"the function changes its argument {changed} (stores into a "
                            "list or dict it was given), which a compiled replay would not "
                            "do; this signature runs eagerly")
        for refs in slots.values():   # (a Module's writes reached the tracer as they came)
            for ref, name, module, old in refs:
                obj = ref()
                now = None if module or obj is None else pytree.slot_value(obj, name, None)
                if isinstance(now, Tensor) and now is not old:
                    tracer.attr_write(obj, name, now, old)

    def first_call(self, args, kwargs, leaves):
        owner = self.owner
        result, trace, snapshot = self._trace(args, kwargs, leaves)
        owner.counters["compiles"] += 1
        if self.specialized:   # not kept: its symbols compile per value (symbolic.py)
            self.state = "eager"
            return result
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
        self.captured_meta = [meta(t) for t in self.captured]
        self.captured_data = [array_of(t) for t in self.captured]   # checked by identity first
        self.captured_rg = [t.requires_grad for t in self.captured]
        self._rg_seen = STRUCTURE_VERSION[0]   # requires_grad changes move it (tensor.py)
        self.none_grads = trace.none_grads
        self.fed = []   # the slots read at every call ("attr" inputs), of every path
        if self.guards is not None and (trace.runtime_values or self.guards.optimizers
                                        or trace.written or trace.read_slots):
            self.guards.settle(trace.runtime_values,
                               {id(t) for t in trace.captured} - trace.fed,
                               {(id(ref()), name) for ref, name in trace.written}
                               | trace.read_slots)
        for o in trace.observations:
            if (f"{o.how}() reads a tensor value", o.location) not in owner.breaks:
                owner.breaks.append((f"{o.how}() reads a tensor value", o.location))
            events.publish("graph_break", owner, o.how, o.location)
        self._compile_path(trace, snapshot, result)

    def _compile_path(self, trace: Trace, snapshot: dict, result, quiet: bool = False) -> None:
        """Build the plans of ``trace``'s path. If that fails (the first-call check found a
        difference, or the compiler itself failed), this signature runs eagerly from now
        on: a compile failure costs speed, never correctness."""
        try:
            with COMPILE_LOCK:
                self._add_path(trace, snapshot, result)
            release_free_memory()   # the build's freed arrays: no lasting growth
        except CompileError:   # fullgraph=True: already explained
            self.state = "eager"
            raise
        except Exception as e:
            self.state = "eager"
            if not quiet:
                self.owner._fallback(str(e) if isinstance(e, Mismatch) else
                                     f"building the compiled code failed ({type(e).__name__}: "
                                     f"{e}); this signature runs eagerly")

    def second_call(self, args, kwargs, leaves):
        """Trace once more and compare: Python state that changed would be frozen."""
        if not self.traces:   # the first call raised (a bad target, say): it traced nothing
            return self.first_call(args, kwargs, leaves)
        result, trace, snapshot = self._trace(args, kwargs, leaves)
        first = self.traces[0]
        upto = divergence(first, trace)
        a, b = first.signature(upto), trace.signature(upto)
        if a == b and not _same_captured(first, trace, upto):
            a, b = a + ["captured"], b + ["another captured tensor"]
        if a != b:
            n = next((x[0] for x, y in zip(a, b) if x != y), min(len(a), len(b)))
            loc = (trace.graph[n].src if isinstance(n, int) and n in trace.graph
                   else "")
            if self.warmups < 1 and not trace.failed:
                # State created lazily on the first call (an optimizer's momentum buffers,
                # gradients that did not exist yet) makes call 1 differ from call 2: start
                # over from call 2, and compare it with call 3.
                self.owner.notes.append(f"call 1 differed from call 2 (at {loc or 'the end'});"
                                        " compiled from call 2 on")
                return self._restart(trace, snapshot, result)
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
        if upto < max(first.graph.next_id, trace.graph.next_id) and self.warmups < 1:
            # The two calls took different values at a graph break, so they were compared
            # only up to it: what call 1 did after it (an optimizer making its state) was
            # never checked, and a replay reaching call 1's value replayed that (nflows'
            # spline flow with Adam: the state reset on the first replay, loss 4.73 against
            # 4.78). Call 1's path goes; later values trace their own, as any new branch.
            return self._restart(trace, snapshot, result)
        if not has_path(self.root, trace):
            self.owner.counters["compiles"] += 1
            self.traces.append(trace)
            self._compile_path(trace, snapshot, result)
        return result

    def _restart(self, trace: Trace, snapshot: dict, result):
        """Forget call 1's trace and start over from ``trace`` (call 2's), once."""
        self.warmups += 1
        old = self.root   # alive until call 2's build: its kernels stay in the cache
        self.root, self.traces = None, []
        self._start(trace, snapshot, result)
        del old
        return result

    def _new_branch(self, args, kwargs, leaves, quiet: bool = False):
        """A replay reached a value not seen yet: trace this call (it runs eagerly) and
        add its path to the tree."""
        result, trace, snapshot = self._trace(args, kwargs, leaves)
        if not quiet:
            self.owner.counters["compiles"] += 1
            if trace.failed:
                self.owner._fallback(trace.failed, trace.failed_at)
                return result
        self.traces.append(trace)
        if not trace.failed:
            self._compile_path(trace, snapshot, result, quiet=quiet)
        return result

    def _too_many_branches(self, seg: Segment, args, kwargs):
        """A graph break that keeps meeting new values (a logged loss, a mask's count on
        random data) would trace every call: past ``MAX_BRANCHES`` the calls with a new
        value run eagerly (the ones seen keep their compiled paths)."""
        self.owner._fallback(f"more than {MAX_BRANCHES} values of {seg.obs.how}() at "
                             f"{seg.obs.location}: a call with a new one runs eagerly")
        return self.owner._eager(args, kwargs)

    def updates_in_place(self) -> bool:
        """Whether a kernel of this entry writes a caller's tensor while the plan runs
        (``memory.InPlace``: a parameter updated in place), not in the write-backs at the
        end. (Asked when a replay raised: only then is its memory possibly half written.)"""
        plans = [s.plan for s in segments(self.root) if s.plan is not None]
        if self.autograd_plans:
            plans += [s.plan for s in (self.autograd_plans.fwd, self.autograd_plans.bwd)
                      if s.plan is not None]
        return any(type(b) is InPlace for p in plans for step in p.steps
                   for b in getattr(step, "buffers", ()))

    def captured_need_grad(self) -> bool:
        """Whether a captured tensor requires grad that did not when the call was traced:
        then this replay's results may need gradients the trace's did not have (an
        optimizer's update of parameters that require grad needs none)."""
        # (with several traces (branches), any: their results may differ)
        was = self.traces[0].captured_grad if len(self.traces) == 1 else frozenset()
        return any(t.requires_grad and i not in was for i, t in enumerate(self.captured))

    def captured_changed(self) -> str:
        data = self.captured_data
        if STRUCTURE_VERSION[0] != self._rg_seen:   # (code may branch on requires_grad)
            for i, t in enumerate(self.captured):
                if t.requires_grad is not self.captured_rg[i]:
                    return f"captured tensor {i}'s requires_grad changed to {t.requires_grad}"
            self._rg_seen = STRUCTURE_VERSION[0]
        for i, t in enumerate(self.captured):
            if array_of(t) is data[i]:   # same array object: same shape, dtype and strides
                continue
            m, now = self.captured_meta[i], meta(t)
            if now != m:
                return f"captured tensor {i} changed {m} -> {now}"
            data[i] = array_of(t)
        for reader in self.fed:   # tensors read from slots at every call: laid out as traced
            t = reader()
            if t is None:
                return f"{reader.name!r} no longer holds a tensor"
            a = array_of(t)
            if reader.checked is None or reader.checked() is not a:
                if meta(t) != reader.meta:
                    return f"{reader.name!r} changed {reader.meta} -> {meta(t)}"
                reader.checked = weakref.ref(a)
        for t in self.none_grads:
            if t._grad is not None:
                return f"the .grad of a {list(t.shape)} tensor was None when traced, now is set"
        return ""

    # ---- building segments --------------------------------------------------------------
    def _add_path(self, trace: Trace, snapshot: dict, result) -> None:
        """Insert ``trace`` into the segment tree, (re)build plans along it, check them."""
        g = trace.graph
        self.fed += [s.getter for s in g.sources.values() if s.kind == "attr"]
        self.root, path = insert_path(self.root, trace)
        escapes = escaping(g)
        env = dict(snapshot)
        self.built_code = False   # code_builds counts each path that generated code
        # Sizes that data-dependent ops gave (x[mask]) vary like dynamic dims: the kernels
        # over them are size-generic, so the next size makes no new code.
        observed = frozenset(n for o in trace.observations if o.how == "shape"
                             for n in o.value)
        with preserved_rng():  # the traced call already drew this call's random numbers
            for seg in path:
                if seg.plan is None:
                    self.build_segment(seg, g, env, escapes, observed)
                else:
                    seg.plan.run(env)
        check_against_eager(trace, env, result)

    def build_segment(self, seg: Segment, g: Graph, env: dict, escapes: set,
                      observed: frozenset = frozenset()) -> None:
        """Optimize and compile the nodes of ``seg`` in ``g`` into ``seg.plan``, running it
        once on ``env`` (which receives the values the segment hands on)."""
        # (explain re-derives the graph as traced from ``source`` when asked: a copy kept
        # per segment was a quarter of an entry's objects and ~1 MB of a transformer's)
        seg.source = (g, sorted(seg.needs), list(g.writebacks) if seg.obs is None else [])
        sg = segment_graph(g, seg.lo, seg.hi, *seg.source[1:])
        reference = self.owner.dynamic.reference(sg)   # (before the passes change sg)
        t0, passlog = events.clock(), events.ask("pass_log", self.owner)
        with phases.collecting() as acc:   # seconds per phase, for explain() and logs
            sg = run_pipeline(sg, log=passlog)
            seg.graph = sg
            seg.captured = [(n, s, _traced_meta(s, env[n], sg[n]))
                            for n, s in sg.sources.items()
                            if s.kind in ("captured", "grad", "value", "attr")]
            seg.checked = [None] * len(seg.captured)   # (none compared to the new meta)
            inputs = {n: env[n] for n in sg.inputs}
            # What the segment hands on, and what that views, as the passes left it: cse
            # may have made a handed-on view one of another node (``b = x * 2`` merged
            # into ``a``), whose bytes would otherwise be pooled and overwritten.
            escapes = escapes | escaping(sg)
            plan, local = build_plan(sg, inputs, escapes, arena=self.arena,
                                     dynamic=self._dynamic_sizes(observed),
                                     reference=reference,
                                     on_fallback=lambda r, loc: self.owner._fallback(
                                         f"a kernel runs eagerly: {r}", loc))
        if ("llvm" in acc or "cuda" in acc) and not self.built_code:   # once per path
            self.built_code = True
            self.owner.counters["code_builds"] += 1
        if "codegen" in acc:
            acc["codegen"] -= acc.get("llvm", 0.0)
        plan.phase_seconds = acc
        plan.exports = list(zip(sorted(seg.needs), sg.outputs))
        for trace_id, nid in plan.exports:
            env[trace_id] = local[nid]
        seg.plan = plan
        events.publish("segment_built", self.owner, seg, env, passlog, events.clock() - t0)

    def _dynamic_sizes(self, observed: frozenset) -> frozenset:
        """The varying sizes a plan's kernels are made size-generic over: the call's
        dynamic dims, and the sizes data-dependent ops gave (unless ``dynamic=False``)."""
        if self.owner.dynamic.mode is False or not observed:
            return self.dynamic
        return self.dynamic | observed

    # ---- replay -------------------------------------------------------------------------
    def run(self, args, kwargs, leaves):
        for t in self.traces:
            if t.graph.writebacks:
                # (before either replay: a state read from a module slot may now be the
                # memory another input is written in, as after ``m.h = m.h0``)
                if shares_written_memory(self.traces, leaves):
                    self.owner._fallback("a call ran eagerly: an argument or a state read "
                                         "from a slot shares memory with a tensor the call "
                                         "writes in place")
                    return self.owner._eager(args, kwargs)
                break
        # A call that ran backward itself (a training step) has consumed its graph: its
        # outputs are returned without one, like values read after ``loss.backward()``.
        # (Outputs made under enable_grad() inside a no_grad call need gradients too.)
        if not self.traces[0].graph.grad_writes and (self.traces[0].grad_outputs or (
                autograd.is_grad_enabled() and (
                    any(isinstance(v, Tensor) and v.requires_grad for _, v in leaves)
                    or self.captured_need_grad()))):
            plans = self._autograd_plans(leaves)
            if plans is None:
                return self._run_with_autograd(args, kwargs, leaves)
            trace = self.root.trace
            outs = plans.forward(leaves)
            return pytree.unflatten(trace.out_spec, [out_value(kind, v, outs)
                                                     for kind, v in trace.out_leaves])
        env = {}
        trace0 = self.traces[0]
        for nid, i in trace0.arg_paths.items():
            env[nid] = array_of(leaves[i][1])
        try:
            seg, value = walk(self.root, self._run_segment, env)
        except Stale as e:  # e.g. a gradient set to None outside: run this call eagerly
            self.owner._fallback(f"a call ran eagerly: {e}")
            return self.owner._eager(args, kwargs)
        if value is not END:  # a branch not seen yet: trace it (this call runs eagerly)
            return self._branch_or_eager(seg, value, args, kwargs, leaves)
        self.replays += 1
        return outputs(seg.trace, env, leaves)

    def _branch_or_eager(self, seg: Segment, value, args, kwargs, leaves, quiet: bool = False):
        """A replay met a value not seen at ``seg``'s break: compile a path for it, or
        run this call eagerly where a break keeps meeting new values (``MAX_BRANCHES``)
        or the paths compiled for new values have not been replayed enough to pay
        (``FREE_BRANCHES``, ``BRANCH_PAYBACK``)."""
        if len(seg.children) >= MAX_BRANCHES:
            return self._too_many_branches(seg, args, kwargs)
        if (self.branch_builds >= FREE_BRANCHES
                and self.replays < BRANCH_PAYBACK * self.branch_builds):
            self.owner._fallback("a call with a new value at a graph break ran eagerly: the "
                                 "paths compiled for new values were replayed too rarely to "
                                 "pay for another", seg.obs.location)
            return self.owner._eager(args, kwargs)
        self.branch_builds += 1
        if not quiet:
            self.owner._recompiled(
                f"new value {_short(value)} of {seg.obs.how}() at {seg.obs.location}")
        return self._new_branch(args, kwargs, leaves, quiet=quiet)

    def _autograd_plans(self, leaves):
        """The compiled forward/backward pair (built on first need), or None where the
        call has graph breaks or the build failed: then the trace replays eagerly."""
        if self.autograd_plans is None:
            seg = self.root
            self.autograd_plans = False
            if seg is not None and seg.obs is None and seg.trace is not None:
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

    def _run_segment(self, seg: Segment, env: dict) -> None:
        """One segment of a compiled replay: read the captured tensors, run the plan."""
        self._fill_captured(seg, env)
        if self.owner.mode == "verify":
            verify_segment(self.owner, seg, env)
        seg.plan.run(env)

    def _fill_captured(self, seg: Segment, env: dict) -> None:
        checked = seg.checked
        for k, (nid, source, m) in enumerate(seg.captured):  # read every call: optimizers
            kind = source.kind                               # update them
            if kind == "captured":   # the tensor itself (its changes: captured_changed)
                env[nid] = array_of(source.tensor)
                continue
            if kind == "value":      # a Python number read now: a 0-dim array, as traced
                env[nid] = source.value_array()
                continue
            t = source.current()     # a .grad: backward may have assigned another
            a = None if t is None else array_of(t)
            ref = checked[k]
            if a is None or ref is None or ref() is not a:
                # (the same array object keeps its shape, dtype and strides: the
                # metadata is compared once per array, not per call)
                if t is None or meta(t) != m:
                    raise Stale(f"{source.path} is {'None' if t is None else meta(t)}, "
                                f"was {m} when compiled")
                checked[k] = weakref.ref(a)
            env[nid] = a

    def _replay_segment(self, seg: Segment, tenv: dict) -> None:
        """One segment replayed through dispatch: its nodes of a trace through it."""
        g = trace_through(self.root, self.traces, seg)
        _ReplayInterpreter(g).run(tenv, [n for n in g.nodes() if seg.lo <= n < seg.hi])

    def _run_with_autograd(self, args, kwargs, leaves):
        """Replay the traced ops through dispatch, so the autograd tape is recorded."""
        tenv: dict[int, Tensor] = {}
        for nid, i in self.traces[0].arg_paths.items():
            tenv[nid] = leaves[i][1]

        seg, value = walk(self.root, self._replay_segment, tenv, tensors=True)
        if value is not END:
            return self._branch_or_eager(seg, value, args, kwargs, leaves, quiet=True)
        self.replays += 1
        return tensor_outputs(seg.trace, tenv, leaves)


class _ReplayInterpreter(TensorInterpreter):
    """A trace replayed on the caller's tensors with gradients recorded. Grad mode is on:
    where the traced call had it off, the trace has ``detach`` nodes, and they cut the
    tape as eager did. Inputs are read from their sources (parameters, captured tensors)."""

    __slots__ = ()

    def run_node(self, nid: int, env: dict):
        d = self.graph[nid]
        if d.op == "input":
            return self.graph.sources[nid].current()
        if d.op == "const":
            return Tensor._wrap(self.graph.const_array(nid))
        with autograd.enable_grad():
            return super().run_node(nid, env)


def _short(v) -> str:
    if isinstance(v, tuple) and len(v) == 3 and isinstance(v[2], bytes):
        return f"<array {v[0]}>"
    return repr(v)
