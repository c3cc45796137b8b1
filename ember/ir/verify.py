"""verify(graph): the checks the pass manager runs after each pass in debug mode."""
from __future__ import annotations

import networkx as nx

from ember.ops.registry import OPS


class GraphError(AssertionError):
    pass


def verify(graph) -> None:
    """Raise GraphError unless the graph is acyclic, typed, and every reference resolves."""
    g = graph._nx
    if not nx.is_directed_acyclic_graph(g):
        raise GraphError(f"graph has a cycle: {nx.find_cycle(g)}")
    for nid in graph.nodes():
        d = graph[nid]
        op = d.op
        if op not in ("input", "const") and op not in OPS:
            raise GraphError(f"%{nid}: unknown op {op!r}")
        for k in ("shape", "dtype", "device", "args", "attrs"):
            if getattr(d, k) is None:
                raise GraphError(f"%{nid}: missing {k}")
        for pos, a in enumerate(d.args):
            if a not in g or a >= nid:
                raise GraphError(f"%{nid}: argument %{a} is not an earlier node")
            if not g.has_edge(a, nid, key=pos):
                raise GraphError(f"%{nid}: edge for operand {pos} (%{a}) is missing")
        if g.in_degree(nid) != len(d.args):
            raise GraphError(f"%{nid}: {g.in_degree(nid)} in-edges for {len(d.args)} operands")
        if op == "const" and nid not in graph.consts:
            raise GraphError(f"%{nid}: const without a value")
    for o in graph.outputs:
        if o not in g:
            raise GraphError(f"output %{o} is not a node")
    for i, v in graph.writebacks:
        if i not in graph.sources or v not in g:
            raise GraphError(f"writeback %{i} <- %{v} does not resolve")
