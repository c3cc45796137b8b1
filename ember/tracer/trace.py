"""The tracer: records what a function really executes, op by op, into a Graph.

Tracing runs the user's function eagerly (its results are real), with
``ember.dispatch.tracer`` set so that every primitive, constant, in-place update and
read of a Python value (``bool(t)``, ``t.item()`` ...) is reported here.

Tensors reached that were not made during the trace (parameters, closures, globals)
become graph inputs read at every call, never constants: an optimizer updating a weight
must reach the next compiled call.

In-place updates are recorded against the memory they write (a ``Storage``), whatever
alias wrote it: the storage's new value is a pure node (``strided_scatter`` for a write
through a view, see ``ember/ir/views.py``), and a later read of any alias of that memory
is a view of the new value. Storages of the caller's tensors are written back at the end
of the call; the graph itself holds no mutation.

The tracer keys what it knows of a tensor by ``id(tensor)``, yet keeps alive only the
tensors it must (inputs, captured tensors, gradient owners, ``.data`` sources): a
tensor the traced function drops is freed as in eager, and a weak reference's callback
forgets its entries as it dies, before a new tensor can take its id (which would
otherwise read the dead one's node: a wrong graph). So a training step's first call
peaks near its eager run, not at the sum of every value it made.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember import dispatch as _dispatch
from ember.errors import user_frame
from ember.ir.graph import Graph, InputSource
from ember.ir.views import IDENTITY, address, layout_in, overlaps, root
from ember.devices import array_module, device_of_array
from ember.tracer.options import CompileError
from ember.tensor import Tensor as _Tensor, array_of


# The path suffix of a captured input that is a NumPy array made a tensor inside the call.
ARRAY_INPUT = " (a NumPy array)"


@dataclass
class Observation:
    """A Python value read from a tensor: the trace splits here and guards on the value."""
    node: int          # the node whose value was read
    how: str           # "bool", "item", "tolist", "numpy" or "shape" (a data-dependent
                       # shape: the node's result size, known only from the values)
    value: Any         # the value seen (hashable)
    cut: int           # nodes created before the read (the split point)
    location: str


def observed_value(array, how: str):
    """The hashable Python value a read produces, computed from an array."""
    if how == "shape":
        return tuple(array.shape)
    a = np.asarray(array) if not hasattr(array, "get") or isinstance(array, np.generic) else array.get()
    if how == "bool":
        return bool(a.reshape(()))
    if how == "item":
        return a.reshape(()).item()
    return (a.shape, a.dtype.str, a.tobytes())


class Storage:
    """Memory written during the trace. ``array`` fixes the coordinates (the caller's
    tensor for an input, else the biggest tensor seen of it), ``node`` holds its current
    value, ``version`` counts writes (a tensor's node older than that is re-derived)."""

    __slots__ = ("array", "node", "version", "input")

    def __init__(self, array, node: int, input: int | None) -> None:
        self.array, self.node, self.version, self.input = array, node, 0, input


class _Ref(weakref.ref):
    """A weak reference to a traced tensor that knows the id it was filed under."""

    __slots__ = ("key",)


def _forgetter(live: dict, maps: tuple):
    """The callback of a tensor's ``_Ref``: drop the dead tensor's entries. It runs while
    the tensor is deallocated (or collected with a cycle), before its id can be reused.
    Closes over the dicts only, not the Tracer (no reference cycle)."""
    def forget(ref) -> None:
        k = ref.key
        if live.get(k) is ref:   # (a newer tensor under that id has a ref of its own)
            del live[k]
            for m in maps:
                m.pop(k, None)
    return forget


class Tracer:
    """Collects one trace. Keys tensors by id; a tensor the function drops is freed, and
    its entries go with it (see the module docstring)."""

    def __init__(self, fullgraph: bool = False) -> None:
        self.fullgraph = fullgraph
        self.symbols = None    # the trace's symbolic numbers (symbolic.Context), if any
        self.failed = ""       # why this trace can't be replayed ("" if it can)
        self.failed_at = ""
        self.snapshots: dict[int, object] = {}  # captured input -> its value before the call
        self.graph = Graph()
        self.env: dict[int, int] = {}      # id(tensor) -> node id holding its current value
        self.live: dict[int, _Ref] = {}    # id(tensor) -> weak reference, while it lives
        self.observations: list[Observation] = []
        self.storages: dict[int, Storage] = {}  # id(root array) -> memory written in place
        self.version: dict[int, int] = {}   # id(tensor) -> storage version its node shows
        self.arrays: dict[int, Any] = {}    # id(tensor) -> its array when its node was set
        self.input_arrays: dict[int, Any] = {}   # input node -> its tensor's array then
        self.input_tensors: dict[int, Any] = {}  # input node -> the tensor
        self.input_grad_nodes: dict[int, Any] = {}   # input node -> its grad_fn when read
        self.captured: list = []
        self.input_of: dict[int, int] = {}  # id(tensor) -> its input node
        self.grad_owner: dict[int, Any] = {}   # id(a .grad tensor read) -> its owner
        self.grads: dict[int, tuple] = {}      # id(owner) -> (owner, assigned .grad or None)
        self.none_grads: dict[int, Any] = {}   # id(t) -> t made before the call, read t.grad None
        self.values: dict[tuple, Any] = {}     # (id(dict), key, index) -> tensor of a Python input
        self.detached: dict[int, int] = {}     # node -> its ``detach`` node (made once)
        self.data_sources: dict[int, Any] = {}  # id(t) -> the tensor ``t.data`` was set to
        # (id(module), name) -> (weakref to it, name, tensor made by this call) for plain
        # module attributes assigned such a tensor (Module.__setattr__): replays assign them
        self.attr_writes: dict[tuple, tuple] = {}
        self.input_writes = 0   # in-place writes into memory from before the call
        self.attr_old: dict[tuple, Any] = {}   # (id(module), name) -> its value at the call's start
        self.fresh_leaves: list = []   # weak references to the leaves the call made
        # Entries keyed by a tensor's id go when it dies. Inputs (``input_tensors``),
        # captured tensors, gradient owners (``grad_owner``'s and ``grads``' values) and
        # ``.data`` sources are held strongly, so their entries stay.
        self._forget = _forgetter(self.live, (self.env, self.arrays, self.version,
                                              self.grad_owner, self.data_sources))

    # ---- called by the compile front end ----------------------------------------------
    def add_arg(self, t, path: str) -> None:
        if id(t) in self.env:  # the same tensor passed twice: one input
            return
        nid = self.graph.add_input(InputSource("arg", path), t.shape, t.dtype, t.device)
        self.env[id(t)] = self.input_of[id(t)] = nid
        self._new_input(t, nid)

    def array_input(self, t) -> int:
        """``t`` wraps a NumPy array the call made a tensor (``from_numpy``): a captured
        input like any other, marked so that the second trace may match it by value."""
        nid = self.env.get(id(t))
        return nid if nid is not None else self.node_of(t, ARRAY_INPUT)

    def node_of(self, t, label: str = "") -> int:
        nid = self.env.get(id(t))
        if nid is None:
            src = user_frame()
            desc = f"captured[{len(self.captured)}]{label}"
            owner = self.grad_owner.get(id(t))
            if owner is not None and owner._grad is t:
                # A gradient made before this call: read ``owner.grad`` at every call,
                # since backward assigns a new tensor each time.
                self.node_of(owner)
                source = InputSource("grad", f"{desc}.grad", owner)
            else:
                source = InputSource("captured", desc, t)
            nid = self.graph.add_input(source, t.shape, t.dtype, t.device, src)
            self.env[id(t)] = self.input_of[id(t)] = nid
            self._new_input(t, nid)
            self.captured.append(t)
            self.snapshots[nid] = copy_same_layout(array_of(t))
            if self.storages and id(root(array_of(t))) in self.storages:
                self.fail("a tensor first read after memory it shares was updated in place "
                          "(a captured view of a written tensor)")
            return nid
        if self.arrays.get(id(t)) is not array_of(t):   # ``t.data = other`` rebound it
            nid = self._rebound(t)
        if self.storages:
            s = self.storages.get(id(root(array_of(t))))
            if s is not None and self.version.get(id(t), 0) != s.version:
                nid = self._rederive(t, s)
        return nid

    def _new_input(self, t, nid: int) -> None:
        self.arrays[id(t)] = self.input_arrays[nid] = array_of(t)
        self.input_tensors[nid] = t   # (held: an input's entries never go)
        self.input_grad_nodes[nid] = t._node
        self._watch(t)

    def _set(self, t, nid: int) -> None:
        """``t``'s value is node ``nid``, as of now."""
        self.env[id(t)] = nid
        self.arrays[id(t)] = array_of(t)
        if self.storages:
            s = self.storages.get(id(root(array_of(t))))
            if s is not None:
                self.version[id(t)] = s.version
        if id(t) not in self.live:
            self._watch(t)

    def _watch(self, t) -> None:
        """Forget ``t``'s entries when it dies (its id may then be reused)."""
        r = _Ref(t, self._forget)
        r.key = id(t)
        self.live[id(t)] = r

    def live_tensors(self) -> list:
        """The tensors seen that still live, most recently first seen first."""
        out = []
        for r in list(self.live.values())[::-1]:   # (a copy: a death edits ``live``)
            t = r()
            if t is not None:
                out.append(t)
        return out

    def fail(self, reason: str) -> None:
        """Stop recording: the function finishes eagerly, and this trace is not replayed."""
        location = user_frame()
        if self.fullgraph:
            _dispatch.tracer = None
            raise CompileError(f"ember.compile(fullgraph=True): {reason} (at {location})")
        if not self.failed:
            self.failed, self.failed_at = reason, location
        _dispatch.tracer = None

    # ---- hooks called by ember.dispatch / ember.tensor --------------------------------
    def record(self, op, args, attrs, result) -> None:
        split = op.data_dependent_shape is not None and op.data_dependent_shape(*args)
        if split and self.fullgraph:
            self.fail(f"{op.name} gives a shape that depends on its inputs' values "
                      "(e.g. indexing with a boolean mask)")
            return
        ins = tuple(self.node_of(a) for a in args)
        if op.vjp is not None and not result.requires_grad and any(a.requires_grad for a in args):
            # Run with grad mode off: a replay with autograd (the compiled backward) must
            # not differentiate through it either, so it reads detached inputs.
            ins = tuple(self.stop_grad(n) if a.requires_grad else n for a, n in zip(args, ins))
        nid = self.graph.add(op.name, ins, attrs, result.shape, result.dtype, result.device,
                             user_frame())
        self._set(result, nid)
        node = result._node
        if node is not None and op.saves_out:   # backward inside the trace reads the
            self.alias(node.out, result)         # saved output
        if split:
            # The result's size is known only from the values (x[mask], nonzero): the
            # trace splits after it, and its shape picks the segment that follows, as a
            # value read by bool() does. Each size is traced once; kernels over it are
            # size-generic, so a new size makes no new code.
            self.observations.append(Observation(nid, "shape", tuple(result.shape),
                                                 self.graph.next_id, user_frame()))

    def constant(self, t, value) -> None:
        self._set(t, self.graph.add_const(t._host().copy(), t.dtype, t.device, user_frame()))

    def alias(self, t, src) -> None:
        """``t`` holds the same value as ``src`` (detach, .data, saved outputs)."""
        self._set(t, self.node_of(src))

    def detach(self, t, src) -> None:
        """``t = src.detach()`` (or ``src.data``, or ``src.detach_()`` when ``t is src``):
        the same value, with no gradient."""
        if t is src and src.requires_grad and id(src) in self.input_of:
            # The caller's tensor stops requiring grad: a replay could not do that.
            self.fail("detach_() of an input or parameter changes it outside the graph")
            return
        n = self.node_of(src)
        self._set(t, self.stop_grad(n) if src.requires_grad else n)

    def stop_grad(self, n: int) -> int:
        """A ``detach`` node of node ``n``: gradients stop there, values pass."""
        d = self.detached.get(n)
        if d is None:
            x = self.graph[n]
            d = self.detached[n] = self.graph.add("detach", (n,), {}, x.shape, x.dtype,
                                                  x.device, user_frame())
        return d

    def mutate(self, t, result) -> None:
        """``t`` was updated in place to ``result``'s value: a new value of its storage."""
        if id(t) not in self.env:   # a tensor from outside, written before it was read
            self.node_of(t)
        value = self.node_of(result)
        a = array_of(t)
        if result.dtype != t.dtype:
            value = self.graph.add("cast", (value,), {"dtype": t.dtype}, t.shape, t.dtype,
                                   t.device, user_frame())
        if t.requires_grad and not result.requires_grad:  # updated under no_grad: the
            # value is new, the gradient still flows to what t was (as eager keeps its node)
            value = self.graph.add("data_update", (self.node_of(t), value), {}, t.shape,
                                   t.dtype, t.device, user_frame())
        if a.size:
            s = self._storage(a)
            if s is None:
                return
            if s.input is not None:
                self.input_writes += 1
            lay = layout_in(a, s.array)
            if lay is None:
                return self.fail("an in-place update writes memory shared with another "
                                 "tensor in a way the compiler cannot follow")
            old = s.node
            if lay is IDENTITY:
                s.node = value
            elif overlaps(lay[0], lay[1]):
                return self.fail("an in-place update writes through a view whose elements "
                                 "share memory (an expanded or overlapping view)")
            else:
                s.node = self.graph.add("strided_scatter", (s.node, value),
                                        {"shape": lay[0], "strides": lay[1], "offset": lay[2]},
                                        s.array.shape, t.dtype, t.device, user_frame())
            if not result.requires_grad:
                # A write autograd did not record (under no_grad, or through a detached
                # alias: ``y.detach().mul_(3)``, ``y.data[0] = 1``) leaves every tensor's
                # grad_fn: the memory's new value takes its gradient to the old one (to
                # what a detached alias detached, if the memory was known by one).
                while self.graph[old].op == "detach":
                    old = self.graph[old].args[0]
                s.node = self.graph.add("data_update", (old, s.node), {}, s.array.shape,
                                        t.dtype, t.device, user_frame())
            s.version += 1
        self._set(t, value)

    def _storage(self, a) -> Storage | None:
        """The Storage of the memory ``a`` views, made at its first write."""
        r = root(a)
        s = self.storages.get(id(r))
        if s is not None:
            return s
        inputs = [n for n, arr in self.input_arrays.items()
                  if self.graph.sources[n].kind != "value" and root(arr) is r]
        if len(inputs) > 1:
            paths = ", ".join(self.graph.sources[n].path for n in inputs)
            self.fail(f"tensors {paths} share memory and one is updated in place")
            return None
        if inputs:
            s = Storage(self.input_arrays[inputs[0]], inputs[0], inputs[0])
        else:   # memory made during the call: the biggest live tensor of it gives
            # coordinates. One that died can be read no more; an alias of memory outside
            # every live tensor's span (its view-base died, a NumPy view lives on) finds
            # no layout in ``s.array`` later and fails the trace: eager, never wrong.
            best = None   # (of equal spans, one that requires grad: a detached alias's
            for k in self.live_tensors():   # node would cut the gradient data_update keeps)
                if self.arrays.get(id(k)) is array_of(k) and root(array_of(k)) is r and (
                        best is None or (_span(array_of(k)), k.requires_grad)
                        > (_span(array_of(best)), best.requires_grad)):
                    best = k
            if best is None:
                self.fail("an in-place update of memory the trace has not seen")
                return None
            s = Storage(array_of(best), self.node_of(best), None)
        self.storages[id(r)] = s
        return s

    def _rederive(self, t, s: Storage) -> int:
        """``t``'s value as a view of its storage's current value."""
        lay = layout_in(array_of(t), s.array)
        if lay is None:
            self.fail("a tensor is read after memory it shares with another was updated in "
                      "place, through an alias the compiler cannot express as a view")
            return self.env[id(t)]
        nid = s.node if lay is IDENTITY else self.graph.add(
            "strided_view", (s.node,), {"shape": lay[0], "strides": lay[1], "offset": lay[2]},
            t.shape, t.dtype, t.device, user_frame())
        self.env[id(t)] = nid
        self.version[id(t)] = s.version
        return nid

    def _rebound(self, t) -> int:
        """``t.data = other`` happened: ``t`` now shows the memory of a tensor seen before."""
        a = array_of(t)
        for k in self.live_tensors():   # (``set_data`` holds the source while ``t`` lives)
            if k is not t and self.arrays.get(id(k)) is array_of(k) and root(array_of(k)) is root(a):
                lay = layout_in(a, array_of(k))
                if lay is None:
                    continue
                nid = self.node_of(k)
                if lay is not IDENTITY:
                    nid = self.graph.add("strided_view", (nid,), {"shape": lay[0],
                                         "strides": lay[1], "offset": lay[2]},
                                         t.shape, t.dtype, t.device, user_frame())
                self._set(t, nid)
                return nid
        self.fail("a tensor's .data was set to memory the compiled function has not seen")
        return self.env[id(t)]

    def set_data(self, t, other) -> None:
        """``t.data = other`` is about to happen (called by the ``Tensor.data`` setter):
        ``t`` must be known with its old memory for ``finish`` to replay the rebinding,
        even if the call never read it."""
        if id(t) not in self.env:
            self.node_of(t)
        # ``t.data = f(x)`` drops ``f(x)`` at once: it must stay findable by ``_rebound``
        # (at no cost in memory: ``t`` now holds the same array).
        self.data_sources[id(t)] = other

    def python_input(self, container: dict, key: str, index: int | None = None):
        """A 0-dim float64 tensor holding ``container[key]`` (``[index]`` of it, for a
        tuple such as ``betas``), as a graph input that is read again at every call (one
        per container, key and index). ``values`` says which were read so."""
        from ember.tensor import Tensor

        cached = self.values.get((id(container), key, index))
        if cached is not None:
            return cached
        if index is None:
            getter = lambda: container[key]   # noqa: E731
        else:
            getter = lambda: container[key][index]   # noqa: E731
        # Made directly, not with ember.tensor(): that would record a constant.
        t = Tensor._wrap(np.asarray(float(getter()), dtype=np.float64))
        name = key if index is None else f"{key}[{index}]"
        source = InputSource("value", f"{name}#{len(self.values)}", t, getter=getter)
        nid = self.graph.add_input(source, t.shape, t.dtype, t.device, user_frame())
        self.env[id(t)] = self.input_of[id(t)] = nid
        self._new_input(t, nid)
        self.snapshots[nid] = array_of(t).copy()
        self.values[(id(container), key, index)] = t
        return t

    def attr_write(self, obj, name: str, value, old=None) -> None:
        """``obj.name = value`` on a module (a plain attribute or a buffer), or, seen after
        the call, on another object the function reaches: a tensor this call made (not an
        argument or a tensor from before the call, whose replay would need another
        source), or None, is assigned again by each replay; anything else ends the record
        for that slot. ``old``: what the slot held (kept from the first write: the value a
        replay finds there when it starts)."""
        key = (id(obj), name)
        self.attr_old.setdefault(key, old)   # (every slot the call assigned has a key here)
        if value is None or (isinstance(value, _Tensor) and id(value) in self.env
                             and id(value) not in self.input_of):
            self.attr_writes[key] = (weakref.ref(obj), name, value)
        else:
            self.attr_writes.pop(key, None)

    def new_leaf(self, t) -> None:
        """``t.requires_grad = True``: for a tensor the call made, a new leaf, which a
        replay would not make (``leaves_reach``)."""
        if id(t) not in self.input_of:
            self.fresh_leaves.append(weakref.ref(t))

    def leaves_reach(self, results: list, kept: list) -> bool:
        """Whether the call made a leaf and a result requires grad (through it, perhaps:
        a replay's graph holds it as a constant), or a tensor the call kept in a slot is
        one (a replay would assign one that does not require grad)."""
        fresh = {id(t) for t in (r() for r in self.fresh_leaves) if t is not None}
        return bool(self.fresh_leaves) and any(t.requires_grad for t in results) or any(
            id(t) in fresh for t in kept)

    def read_grad(self, owner, g) -> None:
        """``owner.grad`` was read and gave ``g``."""
        self.grad_owner[id(g)] = owner   # (holds the owner)
        if id(g) not in self.live:
            self._watch(g)

    def read_none_grad(self, owner) -> None:
        """``owner.grad`` was read and was None. Unless this call assigned it or made
        ``owner``, a replay is right only while it still is None when a call starts
        (the entry checks it with the captured tensors)."""
        if id(owner) in self.grads or (id(owner) in self.env and id(owner) not in self.input_of):
            return
        self.none_grads[id(owner)] = owner   # (holds it)

    def set_grad(self, owner, value) -> None:
        """``owner.grad = value``: replayed at the end of every compiled call."""
        if value is not None:
            self.node_of(value)
        self.node_of(owner)
        self.grads[id(owner)] = (owner, value)   # (holds both)

    def observe(self, t, how: str) -> None:
        if self.fullgraph:
            self.fail(f"graph break: {how}() reads a tensor's value")
        nid = self.node_of(t)
        self.observations.append(Observation(nid, how, observed_value(array_of(t), how),
                                             self.graph.next_id, user_frame()))

    # ---- results ------------------------------------------------------------------------
    def _check_saved_values(self, outputs: list) -> None:
        """A value an output's backward reads was changed in place during the call: eager's
        backward raises there, a compiled backward (which keeps what it saved) would not.
        Or that backward goes through a custom ``autograd.Function``. Such a signature
        runs eagerly."""
        from ember import autograd

        for t in outputs:
            root_node = t._node
            if root_node is None or getattr(root_node, "freed", False):
                continue
            for node in autograd._toposort(root_node):
                if getattr(node, "freed", False):
                    continue
                if getattr(node.op, "custom_function", False):
                    # Its forward ran under no_grad: the trace holds no gradient for it,
                    # so a result whose backward runs after the call would not require
                    # grad (a backward inside the call frees the node: fine).
                    self.fail("a result's backward, run after the call, goes through a "
                              "custom autograd.Function, which the compiled backward "
                              "cannot reproduce; this signature runs eagerly")
                    return
                try:
                    autograd._check_saved(node)
                except RuntimeError as e:
                    self.fail("a value saved for backward was changed in place during the call, "
                              f"so eager's backward raises ({str(e).split(';')[0][:120]}...); "
                              "this signature runs eagerly")
                    return

    def finish(self, output_tensors: list) -> Graph:
        self._check_saved_values(output_tensors)
        g = self.graph
        g.outputs = [self.node_of(t) for t in output_tensors]
        handed = list(output_tensors)
        # Gradients assigned during the call become extra outputs (fresh every call).
        for owner, value in self.grads.values():
            orig = self.input_of.get(id(owner))
            if orig is None:  # a tensor made during the call: nothing to replay
                continue
            if value is None:
                g.grad_writes.append((orig, None))
            else:
                g.grad_writes.append((orig, len(g.outputs)))
                g.outputs.append(self.node_of(value))
                handed.append(value)
        # ``t.data = other`` on a tensor from outside: replayed as the same rebinding.
        for nid, arr in self.input_arrays.items():
            t = self.input_tensors[nid]
            if array_of(t) is not arr and g.sources[nid].kind in ("arg", "captured"):
                g.rebinds.append((nid, len(g.outputs)))
                g.outputs.append(self.node_of(t))
                handed.append(t)
        # What each handed-on tensor is eagerly: an input itself, a view of the caller's
        # memory (then so it is at every call), or memory of its own.
        for i, t in enumerate(handed):
            how = self._caller_alias(t)
            if how is not None:
                g.aliases[i] = how
        for s in self.storages.values():
            if s.input is not None and s.node != s.input:
                g.writebacks.append((s.input, s.node))
        for nid in self.input_tensors:
            if self.input_tensors[nid]._node is not self.input_grad_nodes[nid]:
                # x.mul_(2) of a non-leaf input, or x.mul_(w) with w requiring grad: eager
                # gives x a new grad_fn; a replay writes x's values, not its history.
                self.fail(f"an input ({g.sources[nid].path}) was changed in place with "
                          "gradient recording on, so its grad_fn changed; a replay writes "
                          "its values but cannot give it that history")
                break
        return g

    def _caller_alias(self, t):
        a = array_of(t)
        n = self.input_of.get(id(t))
        if n is not None and self.input_arrays[n] is a:
            return ("input", n)
        r = root(a)
        for n, arr in self.input_arrays.items():
            if g_kind(self.graph, n) not in ("arg", "captured", "grad") or root(arr) is not r:
                continue
            lay = layout_in(a, arr)
            if lay is IDENTITY:
                lay = (tuple(a.shape), _c_strides(a.shape), 0)
            if lay is not None:
                return ("view", n, tuple(a.shape), tuple(a.strides), address(a) - address(arr),
                        tuple(lay[1]), lay[2])
        return None

def copy_same_layout(a):
    """A copy with the same strides: compiled kernels are specialized to input layouts."""
    if a.flags.c_contiguous or a.size == 0:
        return a.copy()
    xp = array_module(device_of_array(a))
    extent = 1 + sum((n - 1) * s for n, s in zip(a.shape, a.strides)) // a.itemsize
    out = xp.lib.stride_tricks.as_strided(xp.empty(extent, a.dtype), a.shape, a.strides)
    out[...] = a
    return out


def g_kind(graph: Graph, nid: int) -> str:
    return graph.sources[nid].kind


def _c_strides(shape) -> tuple:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= max(n, 1)
    return tuple(reversed(out))


def _span(a) -> int:
    """Bytes from ``a``'s first element to one past its last."""
    if a.size == 0:
        return 0
    return a.itemsize + sum((n - 1) * abs(s) for n, s in zip(a.shape, a.strides))


class tracing:
    """Context manager installing a Tracer as ember's active tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __enter__(self) -> Tracer:
        _dispatch.tracer = self.tracer
        return self.tracer

    def __exit__(self, *exc) -> None:
        _dispatch.tracer = None
