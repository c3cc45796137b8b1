"""Fusion: group ops that can share one loop nest into one kernel.

A group iterates over a ``full`` shape and reduces the dims ``rdims`` (none for a plain
elementwise group). Each member has a role:

- ``point``: an elementwise op over the full shape (its inputs may broadcast);
- ``red``: a ``sum``/``amax`` over exactly ``rdims`` of a full-shape value;
- ``row``: an elementwise op over the reduced shape (keepdim or not), one value per row.

So softmax (``amax``, ``sub``, ``exp``, ``sum``, ``div``) and layer_norm become one
kernel each: the producers of a reduction, the reduction, and the consumers that come
back over the same rows. Nodes are visited in order and merged greedily with the groups
of their operands when (1) the iteration spaces agree, (2) every value used inside the
group is indexed the way NumPy broadcasting indexes it (``_consistent``), and (3) no
path leaves the group and re-enters it (``_can_merge``), which would make a cycle.
Movement ops need no fusion: they run as NumPy views that kernels read through strides.
The exception is an ``expand`` between two fusible ops (a row sum's gradient), which
joins the group as broadcasting (``_fusible_expand``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.codegen.backend import backend_for
from ember.codegen.policy import FUSIBLE, REDUCE_OPS  # noqa: F401  (re-exported)
from ember.ops.registry import OPS


@dataclass
class Group:
    """A fused group: members in order, the iteration space and each member's role."""
    nodes: list[int]
    full: tuple[int, ...]
    rdims: frozenset[int] = frozenset()
    role: dict[int, str] = field(default_factory=dict)

    def row_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The reduced shape with reduced dims kept as 1, and with them dropped."""
        keep = tuple(1 if d in self.rdims else n for d, n in enumerate(self.full))
        drop = tuple(n for d, n in enumerate(self.full) if d not in self.rdims)
        return keep, drop

    def dim_map(self, nid: int, shape: tuple[int, ...]) -> list[int]:
        """For each dim of member ``nid``'s value: the iteration dim it runs along."""
        if self.role[nid] == "point" or len(shape) == len(self.full):
            return list(range(len(shape)))
        return [d for d in range(len(self.full)) if d not in self.rdims]


def fusible(graph, nid: int) -> bool:
    """Whether node ``nid`` can be a member of a kernel: its device's backend (if any)
    renders its op on its dtypes (``Backend.supports``)."""
    d = graph[nid]
    backend = backend_for(d.device.type)
    if backend is None or any(graph[a].dtype not in backend.dtypes for a in d.args):
        return False
    if d.op in REDUCE_OPS:
        # Reductions along a tensor's rows fuse; sums down its columns (a bias gradient,
        # over the batch dim) stay with NumPy, which adds whole contiguous rows at a time,
        # where a fused kernel would walk each column with a stride (measured 10x slower).
        ndim = len(graph[d.args[0]].shape)
        axes = {a % max(ndim, 1) for a in d.attrs["axes"]}
        return (bool(axes) and (ndim - 1 in axes or ndim == 0)
                and backend.supports(REDUCE_OPS[d.op], d.dtype))
    if d.op == "contiguous":   # a copy: in a kernel, just the value stored again
        return True
    if d.op == "expand":
        return _fusible_expand(graph, nid)
    return backend.supports(d.op, d.dtype) and OPS[d.op].elementwise


def _fusible_expand(graph, nid: int) -> bool:
    """An expand between two kernel ops is NumPy broadcasting, which a kernel does by
    index arithmetic: the gradient of a row sum (``sum(keepdim) -> expand -> mul``)
    then stays in the row kernel. Only when it joins a producer and consumers that
    fuse: alone it would copy what a view gives for free."""
    d = graph[nid]
    src = d.args[0]
    users = list(graph.users(nid))
    return (bool(users) and graph[src].op not in ("input", "const", "expand")
            and fusible(graph, src) and graph[src].dtype == d.dtype
            and all(graph[u].op != "expand" and graph[u].op not in REDUCE_OPS
                    and fusible(graph, u) for u in users))


@dataclass(frozen=True)
class Refused:
    """A merge fusion tried and refused: ``consumer``'s group with ``producer``'s, and
    why: "spaces" (iteration spaces differ), "cycle" (a path would leave the merged group
    and re-enter it) or "broadcast" (a value would be read at another loop point)."""
    producer: int
    consumer: int
    reason: str


def fuse(graph, refused: list | None = None) -> list[Group]:
    """The fused groups of ``graph`` (singletons included), ordered by first member.
    Each refused merge is appended to ``refused`` (``Refused``) when a list is given."""
    group_of: dict[int, Group] = {}
    for nid in graph.nodes():
        if not fusible(graph, nid):
            continue
        d = graph[nid]
        if d.op in REDUCE_OPS:
            full = tuple(graph[d.args[0]].shape)
            g = Group([nid], full, frozenset(a % max(len(full), 1) for a in d.attrs["axes"]),
                      {nid: "red"})
        else:
            g = Group([nid], tuple(d.shape), role={nid: "point"})
        seen = []
        for a in d.args:
            cand = group_of.get(a)
            if cand is None or any(cand is s for s in seen):
                continue
            seen.append(cand)
            merged = _merge(graph, g, cand)
            if isinstance(merged, Group):
                g = merged
            elif refused is not None:
                refused.append(Refused(a, nid, merged))
        for m in g.nodes:
            group_of[m] = g
    unique = {id(g): g for g in group_of.values()}
    return sorted(unique.values(), key=lambda g: g.nodes[0])


def _merge(graph, a: Group, b: Group) -> Group | str:
    """``a`` and ``b`` as one group, or why they cannot share a loop nest (``Refused``)."""
    if a.rdims and b.rdims:
        if a.full != b.full or a.rdims != b.rdims:
            return "spaces"
        base, other, other_role = a, b, None
    elif a.rdims or b.rdims:
        base, other = (a, b) if a.rdims else (b, a)
        keep, drop = base.row_shapes()
        if other.full == base.full:
            other_role = "point"
        elif other.full in (keep, drop):
            other_role = "row"
        else:
            return "spaces"
    else:
        if a.full != b.full:
            return "spaces"
        base, other, other_role = a, b, None
    role = dict(base.role)
    role.update(other.role if other_role is None else {m: other_role for m in other.nodes})
    merged = Group(sorted(set(a.nodes) | set(b.nodes)), base.full, base.rdims, role)
    if not _consistent(graph, merged):
        return "cycle" if not _can_merge(graph, set(merged.nodes)) else "broadcast"
    if not _can_merge(graph, set(merged.nodes)):
        return "cycle"
    return merged


def _consistent(graph, g: Group) -> bool:
    """Every member reads every other member's value at the iteration point NumPy's
    broadcasting means: e.g. an [N] row sum feeding an [N, C] op broadcasts along the
    rows, not the columns, so it cannot come from the same loop nest."""
    for n in g.nodes:
        d = graph[n]
        # A reduction reads its operand over the full shape; other ops at their own shape.
        use_shape = g.full if g.role[n] == "red" else tuple(d.shape)
        use_map = (list(range(len(g.full))) if g.role[n] == "red"
                   else g.dim_map(n, use_shape))
        if g.role[n] == "red" and d.args[0] in g.role and g.role[d.args[0]] != "point":
            return False
        for a in d.args:
            if a not in g.role:
                continue
            shape = tuple(graph[a].shape)
            amap = g.dim_map(a, shape)
            lead = len(use_shape) - len(shape)
            if lead < 0:
                return False
            for j, size in enumerate(shape):
                if size != 1 and use_map[lead + j] != amap[j]:
                    return False
    return True


def _can_merge(graph, merged: set) -> bool:
    """True if no path leaves ``merged`` and re-enters it (which would make a cycle)."""
    lo = min(merged)
    # Walk backwards from the merged set's external operands; node ids are topological,
    # so nothing below ``lo`` can lead back into the set.
    stack = [a for m in merged for a in graph[m].args if a not in merged]
    seen = set()
    while stack:
        n = stack.pop()
        if n in seen or n < lo:
            continue
        seen.add(n)
        for a in graph[n].args:
            if a in merged:
                return False
            stack.append(a)
    return True
