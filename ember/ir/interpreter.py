"""The reference interpreter: runs a Graph op by op through the registry's eager code.

It is the oracle for passes (a pass must not change what it computes) and the executor
of ops that have no generated kernel.
"""
from __future__ import annotations

import numpy as np

from ember.errors import OpError
from ember.ops.registry import OPS
from ember.runtime.device import array_module


def run_node(graph, nid: int, env: dict, xp=None):
    """Compute one node's array from its arguments' arrays in ``env``, with the array
    module of the node's device unless ``xp`` is given."""
    d = graph[nid]
    op = OPS[d["op"]]
    arrays = [env[a] for a in d["args"]]
    xp = xp or array_module(d["device"])
    try:
        out = op.eager(xp, *arrays, **d["attrs"])
    except OpError as e:   # an op's own check (an index out of range): eager's error type
        raise e.relocated(d.get("src") or e.location) from None
    except Exception as e:
        raise OpError(d["op"], f"while executing %{nid}: {type(e).__name__}: {e}",
                      location=d.get("src") or None) from e
    if type(out) is not np.ndarray and not hasattr(out, "__cuda_array_interface__"):
        out = xp.asarray(out)  # NumPy returns scalars for 0-dim results
    return out


def dispatch_node(d: dict, args: list):
    """Replay a node (its data ``d``) on tensors through dispatch, so autograd records it;
    an op's own check reports the line that made the node, as eager did."""
    from ember.dispatch import dispatch

    try:
        return dispatch(OPS[d["op"]], *args, **d["attrs"])
    except OpError as e:
        raise e.relocated(d.get("src") or e.location) from None


def interpret(graph, inputs: dict[int, object], nodes=None) -> dict:
    """Evaluate ``nodes`` (default: all) given input arrays; returns node id -> array."""
    env = dict(inputs)
    env.update(graph.device_consts())
    for nid in (graph.nodes() if nodes is None else nodes):
        if nid not in env:
            env[nid] = run_node(graph, nid, env)
    return env
