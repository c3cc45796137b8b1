"""Constant folding: evaluate ops whose operands are all constants, at compile time."""
from __future__ import annotations

import numpy as np

from ember.ir.interpreter import run_node
from ember.ops.registry import OPS

MAX_FOLD_ELEMENTS = 1 << 16  # folding a huge constant trades compile time and memory for little


def fold(graph):
    for nid in graph.nodes():
        d = graph[nid]
        op = d.op
        if op in ("input", "const") or OPS[op].impure:
            continue
        if not all(graph[a].op == "const" for a in d.args):
            continue
        size = 1
        for s in d.shape:
            size *= s
        if size > MAX_FOLD_ELEMENTS:
            continue
        value = run_node(graph, nid, graph.consts, np)   # constants live on the host
        graph.make_const(nid, value)
    return graph
