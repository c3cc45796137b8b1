"""Fusion: group elementwise ops that share one iteration space into one kernel.

Chains and trees of elementwise ops of the same output shape merge (their inputs may
broadcast: a Load with zero strides). A merge is legal only if the groups stay acyclic:
no path may leave a group and come back into it through a node outside. Movement ops
need no fusion: they run as NumPy views, and kernels read views through their strides.
"""
from __future__ import annotations

from ember.ops.registry import OPS

# Elementwise ops the code generators can emit.
FUSIBLE = frozenset("""neg exp log sqrt abs sign sin cos tanh sigmoid erf relu cast add sub mul
div pow maximum minimum lt le gt ge eq ne logical_and logical_or logical_not where""".split())


def fusible(graph, nid: int) -> bool:
    d = graph[nid]
    return d["op"] in FUSIBLE and OPS[d["op"]].elementwise and d["device"].type == "cpu"


def fuse(graph) -> list[list[int]]:
    """Elementwise groups, each a list of node ids in order (singletons included)."""
    group_of: dict[int, int] = {}
    groups: dict[int, list[int]] = {}
    for nid in graph.nodes():
        if not fusible(graph, nid):
            continue
        shape = graph[nid]["shape"]
        candidates = []
        for a in graph[nid]["args"]:
            g = group_of.get(a)
            if g is not None and g not in candidates and graph[groups[g][0]]["shape"] == shape:
                candidates.append(g)
        members = {nid}
        for g in candidates:
            if _can_merge(graph, members | set(groups[g])):
                members |= set(groups[g])
                del groups[g]
        gid = nid
        groups[gid] = sorted(members)
        for m in members:
            group_of[m] = gid
    return [groups[g] for g in sorted(groups, key=lambda g: groups[g][0])]


def _can_merge(graph, merged: set) -> bool:
    """True if no path leaves ``merged`` and re-enters it (which would make a cycle)."""
    lo = min(merged)
    # Walk backwards from the merged set's external operands; node ids are topological,
    # so nothing below ``lo`` can lead back into the set.
    stack = [a for m in merged for a in graph[m]["args"] if a not in merged]
    seen = set()
    while stack:
        n = stack.pop()
        if n in seen or n < lo:
            continue
        seen.add(n)
        for a in graph[n]["args"]:
            if a in merged:
                return False
            stack.append(a)
    return True
