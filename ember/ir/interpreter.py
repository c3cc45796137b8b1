"""Running a Graph node by node: the reference interpreter and the replays through dispatch.

``Interpreter`` is the one loop (as torch.fx's): ``run`` visits the nodes in order and
``run_node`` computes one from its arguments' values; a subclass overrides ``run_node``
(or ``call_op``, for the ops only) to change what a value is or how one node kind runs.
An error names the node and the user's line that made it.

- ``Interpreter``: arrays through the registry's eager code. It is the oracle for passes
  (a pass must not change what it computes) and the executor of ops that have no
  generated kernel (``run_node``).
- ``TensorInterpreter``: tensors through ``dispatch``, so autograd records the ops (the
  tracer's eager replays and its compiled-autograd build).

>>> env = Interpreter(graph).run({n: arrays[n] for n in graph.inputs})
"""
from __future__ import annotations

import numpy as np

from ember.errors import OpError
from ember.ops.registry import OPS
from ember.devices import array_module
from ember.dispatch import loud, quiet


class Interpreter:
    """Evaluates ``graph``'s nodes on arrays (see the module docstring). ``xp`` forces an
    array module (NumPy for constants); by default each node's device picks it."""

    __slots__ = ("graph", "xp")

    def __init__(self, graph, xp=None) -> None:
        self.graph = graph
        self.xp = xp

    def run(self, env: dict, nodes=None) -> dict:
        """Compute ``nodes`` (default: all, in order) not yet in ``env``; returns ``env``."""
        for nid in (self.graph.nodes() if nodes is None else nodes):
            if nid not in env:
                env[nid] = self.run_node(nid, env)
        return env

    def run_node(self, nid: int, env: dict):
        """The value of node ``nid`` from the values in ``env``."""
        d = self.graph[nid]
        try:
            return self.call_op(d, [env[a] for a in d.args])
        except OpError as e:   # an op's own check (an index out of range): eager's error type
            raise e.relocated(d.src or e.location) from None
        except Exception as e:
            raise self.node_error(nid, d, e)

    def call_op(self, d: dict, args: list):
        """Run the op of node data ``d`` on ``args`` (arrays)."""
        xp = self.xp or array_module(d.device)
        token = quiet()   # NumPy's inf/NaN warnings off, as in eager (dispatch.py)
        try:
            out = OPS[d.op].eager(xp, *args, **d.attrs)
        finally:
            loud(token)
        if type(out) is not np.ndarray and not hasattr(out, "__cuda_array_interface__"):
            out = xp.asarray(out)  # NumPy returns scalars for 0-dim results
        return out

    def node_error(self, nid: int, d: dict, e: Exception) -> Exception:
        """The exception to raise for ``e`` raised while running node ``nid``."""
        err = OpError(d.op, f"while executing %{nid}: {type(e).__name__}: {e}",
                      location=d.src or None)
        err.__cause__ = e
        return err


class TensorInterpreter(Interpreter):
    """Evaluates nodes on Tensors through ``dispatch`` (autograd records them as in eager).
    An error keeps its type (callers catch what eager raises), with a note naming the
    node and its line."""

    __slots__ = ()

    def call_op(self, d: dict, args: list):
        from ember.dispatch import dispatch   # dispatch sits above the IR
        return dispatch(OPS[d.op], *args, **d.attrs)

    def node_error(self, nid: int, d: dict, e: Exception) -> Exception:
        e.add_note(f"(while replaying %{nid} = {d.op}, traced at {d.src or '?'})")
        return e


def run_node(graph, nid: int, env: dict, xp=None):
    """Compute one node's array from its arguments' arrays in ``env``, with the array
    module of the node's device unless ``xp`` is given (the eager steps of a plan)."""
    return Interpreter(graph, xp).run_node(nid, env)


def interpret(graph, inputs: dict[int, object], nodes=None) -> dict:
    """Evaluate ``nodes`` (default: all) given input arrays; returns node id -> array."""
    env = dict(inputs)
    env.update(graph.device_consts())
    return Interpreter(graph).run(env, nodes)
