"""The tracer: records what a function really executes, op by op, into a Graph.

Tracing runs the user's function eagerly (its results are real), with
``ember.dispatch.tracer`` set so that every primitive, constant, in-place update and
read of a Python value (``bool(t)``, ``t.item()`` ...) is reported here.

Tensors reached that were not made during the trace (parameters, closures, globals)
become graph inputs read at every call, never constants: an optimizer updating a weight
must reach the next compiled call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ember import dispatch as _dispatch
from ember.errors import user_frame
from ember.ir.graph import Graph, InputSource
from ember.runtime.device import array_module, device_of_array


@dataclass
class Observation:
    """A Python value read from a tensor: the trace splits here and guards on the value."""
    node: int          # the node whose value was read
    how: str           # "bool", "item", "tolist" or "numpy"
    value: Any         # the value seen (hashable)
    cut: int           # nodes created before the read (the split point)
    location: str


def observed_value(array, how: str):
    """The hashable Python value a read produces, computed from an array."""
    a = np.asarray(array) if not hasattr(array, "get") or isinstance(array, np.generic) else array.get()
    if how == "bool":
        return bool(a.reshape(()))
    if how == "item":
        return a.reshape(()).item()
    return (a.shape, a.dtype.str, a.tobytes())


class Tracer:
    """Collects one trace. Keeps every tensor it saw alive so ids stay unique."""

    def __init__(self, fullgraph: bool = False) -> None:
        self.fullgraph = fullgraph
        self.failed = ""       # why this trace can't be replayed ("" if it can)
        self.failed_at = ""
        self.snapshots: dict[int, object] = {}  # captured input -> its value before the call
        self.graph = Graph()
        self.env: dict[int, int] = {}      # id(tensor) -> node id holding its current value
        self.keep: list = []
        self.observations: list[Observation] = []
        self.mutated: dict[int, Any] = {}  # id(tensor) -> tensor, for write-backs
        self.stale: set[int] = set()       # views whose memory was overwritten in place
        self.captured: list = []
        self.input_of: dict[int, int] = {}  # id(tensor) -> its input node
        self.grad_owner: dict[int, Any] = {}   # id(a .grad tensor read) -> its owner
        self.grads: dict[int, tuple] = {}      # id(owner) -> (owner, assigned .grad or None)
        self.values: dict[tuple, Any] = {}     # (id(dict), key) -> tensor of a Python input
        self.detached: dict[int, int] = {}     # node -> its ``detach`` node (made once)

    # ---- called by the compile front end ----------------------------------------------
    def add_arg(self, t, path: str) -> None:
        if id(t) in self.env:  # the same tensor passed twice: one input
            return
        nid = self.graph.add_input(InputSource("arg", path), t.shape, t.dtype, t.device)
        self.env[id(t)] = self.input_of[id(t)] = nid
        self.keep.append(t)

    def node_of(self, t) -> int:
        nid = self.env.get(id(t))
        if nid is None:
            src = user_frame()
            desc = f"captured[{len(self.captured)}]"
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
            self.keep.append(t)
            self.captured.append(t)
            self.snapshots[nid] = copy_same_layout(t._data)
        elif id(t) in self.stale:
            self.fail("a view is read after the tensor it views was updated in place")
        return nid

    def fail(self, reason: str) -> None:
        """Stop recording: the function finishes eagerly, and this trace is not replayed."""
        location = user_frame()
        if self.fullgraph:
            _dispatch.tracer = None
            from ember.tracer.compile import CompileError
            raise CompileError(f"ember.compile(fullgraph=True): {reason} (at {location})")
        if not self.failed:
            self.failed, self.failed_at = reason, location
        _dispatch.tracer = None

    # ---- hooks called by ember.dispatch / ember.tensor --------------------------------
    def record(self, op, args, attrs, result) -> None:
        if op.data_dependent_shape is not None and op.data_dependent_shape(*args):
            # A replay would not see the values the shape came from: run eagerly.
            self.fail(f"{op.name} gives a shape that depends on its inputs' values "
                      "(e.g. indexing with a boolean mask)")
            return
        ins = tuple(self.node_of(a) for a in args)
        if op.vjp is not None and not result.requires_grad and any(a.requires_grad for a in args):
            # Run with grad mode off: a replay with autograd (the compiled backward) must
            # not differentiate through it either, so it reads detached inputs.
            ins = tuple(self.stop_grad(n) if a.requires_grad else n for a, n in zip(args, ins))
        self.env[id(result)] = self.graph.add(op.name, ins, attrs, result.shape, result.dtype,
                                              result.device, user_frame())
        self.keep.append(result)
        node = result._node
        if node is not None:  # backward inside the trace reads the saved output
            self.alias(node.out, result)

    def constant(self, t, value) -> None:
        self.env[id(t)] = self.graph.add_const(t._host().copy(), t.dtype, t.device, user_frame())
        self.keep.append(t)

    def alias(self, t, src) -> None:
        """``t`` holds the same value as ``src`` (detach, .data, saved outputs)."""
        self.env[id(t)] = self.node_of(src)
        self.keep.append(t)

    def detach(self, t, src) -> None:
        """``t = src.detach()`` (or ``src.data``, or ``src.detach_()`` when ``t is src``):
        the same value, with no gradient."""
        if t is src and src.requires_grad and id(src) in self.input_of:
            # The caller's tensor stops requiring grad: a replay could not do that.
            self.fail("detach_() of an input or parameter changes it outside the graph")
            return
        n = self.node_of(src)
        self.env[id(t)] = self.stop_grad(n) if src.requires_grad else n
        self.keep.append(t)

    def stop_grad(self, n: int) -> int:
        """A ``detach`` node of node ``n``: gradients stop there, values pass."""
        d = self.detached.get(n)
        if d is None:
            x = self.graph[n]
            d = self.detached[n] = self.graph.add("detach", (n,), {}, x["shape"], x["dtype"],
                                                  x["device"], user_frame())
        return d

    def mutate(self, t, result) -> None:
        """``t`` was updated in place to ``result``'s value."""
        root = _root(t._data)
        for k in self.keep:
            if k is not t and _root(k._data) is root and id(k) in self.env:
                self.stale.add(id(k))
        self.stale.discard(id(t))
        self.stale.discard(id(result))
        new = self.node_of(result)
        if t.requires_grad and not result.requires_grad:  # updated under no_grad
            new = self.graph.add("data_update", (self.node_of(t), new), {}, t.shape, t.dtype,
                                 t.device, user_frame())
        self.env[id(t)] = new
        self.mutated[id(t)] = t
        self.keep.append(t)

    def python_input(self, container: dict, key: str):
        """A 0-dim float64 tensor holding ``container[key]``, as a graph input that is
        read again at every call (one per container and key)."""
        from ember.tensor import Tensor

        cached = self.values.get((id(container), key))
        if cached is not None:
            return cached
        # Made directly, not with ember.tensor(): that would record a constant.
        t = Tensor._wrap(np.asarray(float(container[key]), dtype=np.float64))
        source = InputSource("value", f"{key}#{len(self.values)}", t,
                             getter=lambda: container[key])
        nid = self.graph.add_input(source, t.shape, t.dtype, t.device, user_frame())
        self.env[id(t)] = self.input_of[id(t)] = nid
        self.keep.append(t)
        self.snapshots[nid] = t._data.copy()
        self.values[(id(container), key)] = t
        return t

    def read_grad(self, owner, g) -> None:
        """``owner.grad`` was read and gave ``g``."""
        self.grad_owner[id(g)] = owner
        self.keep.append(owner)

    def set_grad(self, owner, value) -> None:
        """``owner.grad = value``: replayed at the end of every compiled call."""
        if value is not None:
            self.node_of(value)
        self.node_of(owner)
        self.grads[id(owner)] = (owner, value)
        self.keep.append(owner)

    def observe(self, t, how: str) -> None:
        if self.fullgraph:
            self.fail(f"graph break: {how}() reads a tensor's value")
        nid = self.node_of(t)
        self.observations.append(Observation(nid, how, observed_value(t._data, how),
                                             self.graph._next, user_frame()))

    # ---- results ------------------------------------------------------------------------
    def finish(self, output_tensors: list) -> Graph:
        g = self.graph
        g.outputs = [self.node_of(t) for t in output_tensors]
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
        for t in self.mutated.values():
            orig = self.input_of.get(id(t))
            if orig is not None and self.env[id(t)] != orig:
                g.writebacks.append((orig, self.env[id(t)]))
        return g

def copy_same_layout(a):
    """A copy with the same strides: compiled kernels are specialized to input layouts."""
    if a.flags.c_contiguous or a.size == 0:
        return a.copy()
    xp = array_module(device_of_array(a))
    extent = 1 + sum((n - 1) * s for n, s in zip(a.shape, a.strides)) // a.itemsize
    out = xp.lib.stride_tricks.as_strided(xp.empty(extent, a.dtype), a.shape, a.strides)
    out[...] = a
    return out


def _root(a):
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


class tracing:
    """Context manager installing a Tracer as ember's active tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __enter__(self) -> Tracer:
        _dispatch.tracer = self.tracer
        return self.tracer

    def __exit__(self, *exc) -> None:
        _dispatch.tracer = None
