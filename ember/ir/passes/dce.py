"""Dead-code removal: drop nodes that no output or write-back needs."""
from __future__ import annotations

import networkx as nx


def dce(graph):
    live = set(graph.outputs) | {v for _, v in graph.writebacks} | {i for i, _ in graph.writebacks}
    for root in list(live):
        live |= nx.ancestors(graph.nx, root)
    for nid in graph.nodes():
        if nid not in live and graph[nid]["op"] != "input":
            graph.remove(nid)
    return graph
