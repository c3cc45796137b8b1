"""Graph: ember's IR, a networkx MultiDiGraph of primitive ops.

A node is a ``Node`` (a small slotted record): ``id`` (ints in creation order), ``op`` (a
registry op name, or "input" / "const"), ``args`` (ordered tuple of node ids),
``attrs``, ``shape``, ``dtype``, ``device`` and ``src`` (the user's file:line that made
it). ``graph[nid]`` is the node; ``nodes()`` lists ids in creation order (a topological
order), ``users(nid)`` and ``inputs_of(nid)`` follow the edges. The edges also live in a
networkx MultiDiGraph (both edges of ``x + x``; the edge key is the operand position),
which the passes and pictures use through ``to_networkx()``; nothing outside ``ir/``
reaches into it.

Graph inputs say where their values come from (``args[0]``, ``kwargs['x']``, or a
captured tensor such as a parameter); outputs are node ids, and ``writebacks`` map
captured or argument tensors whose memory was written in place (through any alias) to
the node holding its new value. The graph itself is pure: an in-place update is a new
value (``ember/ir/views.py``), so passes never reason about mutation.

Text form, one node a line:  ``%7:f32[128,512] = add %5, %6        # model.py:14``
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from ember.dtypes import DType
from ember.devices import array_module


@dataclass
class InputSource:
    """Where a graph input comes from at call time.

    kinds: "arg" (a path into the call's arguments), "env" (a value computed by an earlier
    segment of the same call), "captured" (a tensor reached from
    the function: a parameter, a closure, a global), "grad" (``tensor.grad`` of a
    captured tensor, re-read each call since backward assigns new ones), "value" (a
    Python number read through ``getter`` each call, e.g. an optimizer's learning rate),
    "attr" (a module attribute or buffer that the call reads and then assigns anew, a
    state fed back as ``self.h = f(self.h)``: ``getter()`` reads the slot each call).
    """
    kind: str
    path: str          # "args[0]", "kwargs['x']", or a description of the captured tensor
    tensor: Any = None  # the captured Tensor (kept for the entry's lifetime), None for args
    getter: Any = None  # kind "value": returns the current Python number

    def current(self):
        """The tensor this input reads at this moment (None if a gradient is missing)."""
        if self.kind == "grad":
            return self.tensor._grad
        if self.kind == "value":
            return self.tensor._wrap(self.value_array())
        if self.kind == "attr":
            return self.getter()
        return self.tensor

    def value_array(self):
        """Kind "value": the number read now, as the 0-dim array of the traced dtype."""
        return np.asarray(float(self.getter()), self.tensor.dtype.np)


class Node:
    """One IR node: ``op`` applied to the values of the earlier nodes ``args``.

    >>> g = Graph(); x = g.add_input(InputSource("arg", "args[0]"), (2,), float32, cpu)
    >>> g[g.add("exp", (x,), {}, (2,), float32, cpu)].op
    'exp'
    """

    __slots__ = ("id", "op", "args", "attrs", "shape", "dtype", "device", "src")

    def __init__(self, nid: int, op: str, args: tuple, attrs: dict, shape: tuple,
                 dtype: DType, device, src: str = "") -> None:
        self.id, self.op, self.args, self.attrs = nid, op, args, attrs
        self.shape, self.dtype, self.device, self.src = shape, dtype, device, src

    def copy(self) -> Node:
        return Node(self.id, self.op, self.args, dict(self.attrs), self.shape, self.dtype,
                    self.device, self.src)

    def __repr__(self) -> str:
        return f"Node(%{self.id} = {self.op} {self.args})"


_DT_SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8"}


class Graph:
    """A traced program: nodes in creation order over a networkx MultiDiGraph."""

    def __init__(self) -> None:
        self._nodes: dict[int, Node] = {}   # creation order, which is a topological order
        self._nx = nx.MultiDiGraph()         # the edges, for networkx's algorithms
        self.inputs: list[int] = []
        self.sources: dict[int, InputSource] = {}
        self.consts: dict[int, Any] = {}       # node id -> array value
        self.outputs: list[int] = []
        self.writebacks: list[tuple[int, int]] = []  # (input node id, node with its new value)
        # ``tensor.grad = ...`` done by the call: (input node of the tensor, index into
        # ``outputs`` of the new gradient, or None for ``.grad = None``).
        self.grad_writes: list[tuple[int, int | None]] = []
        # ``tensor.data = value`` done by the call: (input node, index into ``outputs``).
        self.rebinds: list[tuple[int, int]] = []
        # Index into ``outputs`` -> what that tensor is eagerly when it is not memory of its
        # own: ("input", input node) the input tensor itself, or ("view", input node, shape,
        # byte strides, byte offset, element strides, element offset) a view of the caller's
        # memory (the last two as ``strided_view`` of the input takes them).
        self.aliases: dict[int, tuple] = {}
        self.next_id = 0   # the id the next node gets

    # ---- building -------------------------------------------------------------------
    def add(self, op: str, args: tuple[int, ...], attrs: dict, shape: tuple, dtype: DType,
            device, src: str = "") -> int:
        nid = self.next_id
        self.next_id += 1
        self._nodes[nid] = Node(nid, op, tuple(args), dict(attrs), tuple(shape), dtype, device,
                                src)
        self._nx.add_node(nid)
        for pos, a in enumerate(args):
            self._nx.add_edge(a, nid, key=pos)
        return nid

    def add_input(self, source: InputSource, shape, dtype, device, src: str = "") -> int:
        nid = self.add("input", (), {"path": source.path}, shape, dtype, device, src)
        self.inputs.append(nid)
        self.sources[nid] = source
        return nid

    def add_const(self, value, dtype, device, src: str = "") -> int:
        nid = self.add("const", (), {}, value.shape, dtype, device, src)
        self.consts[nid] = value
        return nid

    def const_array(self, nid: int):
        """Constant ``nid`` as an array on its node's device (``consts`` holds host
        copies: they are hashed, printed and folded on the host)."""
        v, device = self.consts[nid], self[nid].device
        return v if device.type == "cpu" else array_module(device).asarray(v)

    def device_consts(self) -> dict:
        """Node id -> ``const_array(nid)``, for every constant."""
        return {n: self.const_array(n) for n in self.consts}

    def set_node(self, nid: int, op: str, args: tuple, attrs: dict) -> None:
        """Make ``nid`` the node ``op(args, attrs)`` in place (its id keeps its place in
        the order, so every argument must be an earlier node)."""
        self._cut_inputs(nid)
        d = self[nid]
        d.op, d.args, d.attrs = op, tuple(args), dict(attrs)
        for pos, a in enumerate(d.args):
            self._nx.add_edge(a, nid, key=pos)

    def make_const(self, nid: int, value) -> None:
        """Turn node ``nid`` into a constant in place (keeping its id keeps the order)."""
        self.set_node(nid, "const", (), {})
        self.consts[nid] = value

    def make_input(self, nid: int, source: InputSource) -> None:
        """Turn node ``nid`` into a graph input (a value computed elsewhere)."""
        self.set_node(nid, "input", (), {"path": source.path})
        self.consts.pop(nid, None)
        self.inputs.append(nid)
        self.sources[nid] = source

    def _cut_inputs(self, nid: int) -> None:
        for u, _, k in list(self._nx.in_edges(nid, keys=True)):
            self._nx.remove_edge(u, nid, key=k)

    # ---- queries --------------------------------------------------------------------
    def __getitem__(self, nid: int) -> Node:
        return self._nodes[nid]

    def __contains__(self, nid) -> bool:
        return nid in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def nodes(self) -> list[int]:
        """Node ids in a topological order (creation order is one)."""
        return list(self._nodes)

    toposort = nodes

    def users(self, nid: int) -> list[int]:
        """The nodes reading ``nid``'s value, in creation order."""
        return sorted(set(self._nx.successors(nid)))

    def inputs_of(self, nid: int) -> list[int]:
        """The distinct nodes ``nid`` reads, in creation order."""
        return sorted(set(self._nx.predecessors(nid)))

    def edges(self) -> list[tuple[int, int]]:
        """(producer, consumer) per operand (twice for ``x + x``)."""
        return [(a, b) for a, b in self._nx.edges()]

    def ancestors(self, nid: int) -> set[int]:
        """Every node ``nid``'s value depends on."""
        return nx.ancestors(self._nx, nid)

    def to_networkx(self) -> nx.MultiDiGraph:
        """The graph as networkx sees it: node ids, one edge per operand keyed by its
        position, each node's ``Node`` under the ``node`` attribute. A copy: changing it
        does not change the graph."""
        g = nx.MultiDiGraph()
        g.add_nodes_from((n, {"node": d}) for n, d in self._nodes.items())
        g.add_edges_from(self._nx.edges(keys=True))
        return g

    def op_nodes(self) -> list[int]:
        return [n for n, d in self._nodes.items() if d.op not in ("input", "const")]

    def replace_uses(self, old: int, new: int) -> None:
        """Point every use of ``old`` (args, outputs, writebacks) at ``new``."""
        g = self._nx
        for user in self.users(old):
            d = self[user]
            # move just the edges of the operands that change (keyed by position)
            for pos, a in enumerate(d.args):
                if a == old:
                    g.remove_edge(old, user, key=pos)
                    g.add_edge(new, user, key=pos)
            d.args = tuple(new if a == old else a for a in d.args)
        self.outputs = [new if o == old else o for o in self.outputs]
        self.writebacks = [(i, new if v == old else v) for i, v in self.writebacks]

    def remove(self, nid: int) -> None:
        del self._nodes[nid]
        self._nx.remove_node(nid)
        self.consts.pop(nid, None)
        if nid in self.sources:
            self.inputs.remove(nid)
            del self.sources[nid]

    def copy(self) -> Graph:
        g = Graph()
        g._nodes = {n: d.copy() for n, d in self._nodes.items()}
        g._nx = self._nx.copy()
        g.inputs = list(self.inputs)
        g.sources = dict(self.sources)
        g.consts = dict(self.consts)
        g.outputs = list(self.outputs)
        g.writebacks = list(self.writebacks)
        g.grad_writes = list(self.grad_writes)
        g.rebinds = list(self.rebinds)
        g.aliases = dict(self.aliases)
        g.next_id = self.next_id
        return g

    # ---- text -----------------------------------------------------------------------
    def type_str(self, nid: int) -> str:
        d = self[nid]
        return f"{_DT_SHORT.get(d.dtype.name, d.dtype.name)}[{','.join(map(str, d.shape))}]"

    def node_str(self, nid: int) -> str:
        d = self[nid]
        op = d.op
        if op == "input":
            rhs = f"input {d.attrs['path']}"
        elif op == "const":
            v = self.consts[nid]
            rhs = f"const {v.item()!r}" if v.size == 1 else f"const <{v.size} values>"
        else:
            args = ", ".join(f"%{a}" for a in d.args)
            attrs = ", ".join(f"{k}={_attr_str(v)}" for k, v in d.attrs.items()
                              if k != "device")
            rhs = f"{op} {args}" + (f" {{{attrs}}}" if attrs else "")
        line = f"%{nid}:{self.type_str(nid)} = {rhs}"
        if d.src:
            line = f"{line:<60} # {_short_src(d.src)}"
        return line

    def text(self) -> str:
        lines = [self.node_str(n) for n in self.nodes()]
        lines.append("return " + ", ".join(f"%{o}" for o in self.outputs))
        for i, v in self.writebacks:
            lines.append(f"writeback {self[i].attrs['path']} <- %{v}")
        for i, k in self.grad_writes:
            if k is None or k < len(self.outputs):
                value = "None" if k is None else f"%{self.outputs[k]}"
                lines.append(f"{self[i].attrs['path']}.grad <- {value}")
        for i, k in self.rebinds:
            if k < len(self.outputs):
                lines.append(f"{self[i].attrs['path']}.data <- %{self.outputs[k]}")
        return "\n".join(lines)

    __str__ = text


def _attr_str(v) -> str:
    if hasattr(v, "name") and not isinstance(v, (tuple, str)):
        return v.name
    return repr(v)


def _short_src(src: str) -> str:
    import os
    path, _, line = src.rpartition(":")
    return f"{os.path.basename(path)}:{line}"
