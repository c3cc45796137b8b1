"""Dead-code removal: drop nodes that no output, write-back or check needs."""
from __future__ import annotations


from ember.ops.registry import OPS


def dce(graph):
    """One walk back from every root together: linear in the graph however many roots
    (outputs, write-backs, checks) it has."""
    live = set(graph.outputs) | {v for _, v in graph.writebacks} | {i for i, _ in graph.writebacks}
    # A check's result is never read, but the error it raises on a bad value must be.
    live |= {n for n in graph.nodes() if graph[n].op in OPS and OPS[graph[n].op].effect}
    stack = list(live)
    while stack:
        for a in graph[stack.pop()].args:
            if a not in live:
                live.add(a)
                stack.append(a)
    for nid in graph.nodes():
        if nid not in live and graph[nid].op != "input":
            graph.remove(nid)
    return graph
