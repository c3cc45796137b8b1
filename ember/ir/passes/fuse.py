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
path leaves the group and re-enters it (``_can_merge``), which would make a cycle, and
(4) the group stays within ``MAX_GROUP_WEIGHT`` scalar ops (LLVM compile time). Each
merge checks only what joins two groups, so fusion is linear in the graph.
Movement ops need no fusion: they run as NumPy views that kernels read through strides.
The exception is an ``expand`` between two fusible ops (a row sum's gradient), which
joins the group as broadcasting (``_fusible_expand``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ember.codegen.backend import backend_for
from ember.codegen.mathlib import DECOMPOSED, cost
from ember.codegen.policy import FUSIBLE, REDUCE_OPS  # noqa: F401  (re-exported)
from ember.ops.registry import OPS

# The most scalar ops one kernel holds (a decomposed op weighs its program: exp 19):
# LLVM's O3 (its loop vectorizer) grows faster than linearly in a loop body's size.
# CPU time per op of a chain kernel (build, O3, machine code; best of 3): 0.29 ms at
# 128 ops, 0.23-0.24 at 256-512, 0.29 at 768, 0.31 at 1,024, 0.51 at 2,048, 1.08 at
# 4,096 (half of O3's time at 512 ops is LoopVectorizePass). A longer chain is split
# into kernels of this size, each one more pass over memory.
MAX_GROUP_WEIGHT = 512


_cost = functools.lru_cache(maxsize=None)(cost)


@dataclass
class Group:
    """A fused group: members in order, the iteration space and each member's role."""
    nodes: list[int]
    full: tuple[int, ...]
    rdims: frozenset[int] = frozenset()
    role: dict[int, str] = field(default_factory=dict)
    # The first and last member ids (kept up to date by ``_merge``: bounds its walks).
    lo: int = field(default=-1, repr=False, compare=False)
    hi: int = field(default=-1, repr=False, compare=False)
    weight: int = field(default=0, repr=False, compare=False)   # scalar ops, see above

    def __post_init__(self) -> None:
        if self.nodes:
            self.lo, self.hi = min(self.nodes), max(self.nodes)
        if not self.weight:
            self.weight = len(self.nodes)

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
        # Reductions along a tensor's rows fuse, and sums down its columns (a bias
        # gradient, over the batch dim) where the backend reduces neighbouring columns
        # together (``Backend.column_reductions``); else they stay with NumPy, which adds
        # whole contiguous rows at a time, where a kernel walking each column with a
        # stride was measured 10x slower.
        ndim = len(graph[d.args[0]].shape)
        axes = {a % max(ndim, 1) for a in d.attrs["axes"]}
        return (bool(axes) and (ndim - 1 in axes or ndim == 0 or backend.column_reductions)
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
    and re-enter it), "broadcast" (a value would be read at another loop point) or
    "size" (the kernel would exceed ``MAX_GROUP_WEIGHT`` ops)."""
    producer: int
    consumer: int
    reason: str


def fuse(graph, refused: list | None = None) -> list[Group]:
    """The fused groups of ``graph`` (singletons included), ordered by first member.
    Each refused merge is appended to ``refused`` (``Refused``) when a list is given.

    Linear in the graph (n log n at worst): a merge checks only the edges between its
    two parts and walks only from the smaller part (each node is on the smaller side
    O(log n) times), folds the smaller group into the larger one in place, and members
    are sorted once at the end."""
    group_of: dict[int, Group] = {}
    members = {n for n in graph.nodes() if fusible(graph, n)}
    deferred = _deferred(graph, members)
    for nid in graph.nodes():
        if nid not in members:
            continue
        g = group_of[nid] = _single(graph, nid)
        if nid not in deferred:
            g = _join_args(graph, nid, g, group_of, refused)
    for nid in deferred:   # where its users' group can join its producers', it does
        _join_args(graph, nid, group_of[nid], group_of, refused)
    unique = {id(g): g for g in group_of.values()}
    for g in unique.values():
        g.nodes.sort()
    return _break_cycles(graph, sorted(unique.values(), key=lambda g: g.nodes[0]), refused)


def _join_args(graph, nid: int, g: Group, group_of: dict, refused: list | None) -> Group:
    """``g`` (node ``nid``'s group) merged with each of its operands' groups that it can
    share a loop nest with."""
    seen = []
    for a in graph[nid].args:
        cand = group_of.get(a)
        if cand is None or cand is g or any(cand is s for s in seen):
            continue
        seen.append(cand)
        merged = _merge(graph, g, cand, group_of)
        if isinstance(merged, Group):
            g = merged
        elif refused is not None:
            refused.append(Refused(a, nid, merged))
    return g


def _deferred(graph, members: set[int]) -> list[int]:
    """Cheap elementwise nodes that join their users' kernel before their producers':
    those whose operands are all stored anyway (graph inputs, constants, outputs, or
    values a non-kernel op such as a matmul or a pooling reads) and whose users all fuse.
    Such a node costs nothing to recompute where it is used; joined to its producer it is
    stored there and read back, when the user cannot share the producer's kernel. ReLU's
    gradient mask ``cast(out > 0)`` is the case: its product with the gradient comes
    after the pooling or matmul backward that reads ``out``, so it could never join the
    forward kernel, and the forward stored the mask (a full float array) only for the
    backward to read it once."""
    outs = set(graph.outputs) | {v for _, v in graph.writebacks}

    def stored(a: int) -> bool:
        return (graph[a].op in ("input", "const") or a in outs
                or any(u not in members for u in graph.users(a)))

    return [n for n in graph.nodes()
            if n in members and OPS[graph[n].op].elementwise and graph[n].op not in DECOMPOSED
            and n not in outs and graph.users(n)
            and all(u in members for u in graph.users(n))
            and all(stored(a) for a in graph[n].args)]


def _single(graph, nid: int) -> Group:
    """Node ``nid`` as a group of its own."""
    d = graph[nid]
    if d.op in REDUCE_OPS:
        full = tuple(graph[d.args[0]].shape)
        return Group([nid], full, frozenset(a % max(len(full), 1) for a in d.attrs["axes"]),
                     {nid: "red"})
    return Group([nid], tuple(d.shape), role={nid: "point"},
                 weight=_cost(d.op) if d.op in DECOMPOSED else 1)


def _break_cycles(graph, groups: list[Group], refused: list | None) -> list[Group]:
    """``groups`` with any cycle among whole groups broken. ``_can_merge`` sees paths
    between the two groups it joins, not a path that runs through a third group: A's
    node -> B -> A's other node, where B's members are joined to each other only inside
    B (minGPT-like attention with a fused NLL made one). Such a pair could not be run in
    any order, so the smaller group of each cycle goes back to one kernel per node."""
    while True:
        unit = {n: i for i, g in enumerate(groups) for n in g.nodes}
        succ: dict = {}   # the graph of whole groups (a node outside any: ("n", id))
        for a, b in graph.edges():
            ua, ub = unit.get(a, ("n", a)), unit.get(b, ("n", b))
            if ua != ub:
                succ.setdefault(ua, set()).add(ub)
        cycle = _find_cycle(succ)
        if cycle is None:
            return groups
        # The smallest group of the cycle with more than one node: splitting a single
        # node changes nothing (picking one looped forever: grad fuzzer, seed 80064). A
        # cycle has one, since the graph itself has no cycle.
        members = [u for u in cycle if not isinstance(u, tuple) and len(groups[u].nodes) > 1]
        if not members:
            raise AssertionError(f"fusion: a cycle among single nodes {cycle}")
        victim = min(members, key=lambda i: len(groups[i].nodes))
        if refused is not None:
            refused.append(Refused(groups[victim].nodes[0], groups[victim].nodes[-1], "cycle"))
        split = [_single(graph, n) for n in groups[victim].nodes]
        groups = sorted(groups[:victim] + groups[victim + 1:] + split,
                        key=lambda g: g.nodes[0])


def _find_cycle(succ: dict) -> list | None:
    """The nodes of a cycle of the directed graph ``succ`` (node -> successors), or None.
    An iterative depth-first search: networkx's ``find_cycle`` on the same graph took
    20-50x longer (31 ms for a 1,000-op transformer step: most of ``fuse``)."""
    state: dict = {}   # 1: on the current path, 2: done
    for root in succ:
        if root in state:
            continue
        state[root], path, stack = 1, [root], [iter(succ[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succ.get(nxt, ())))
    return None


def _merge(graph, a: Group, b: Group, group_of: dict | None = None) -> Group | str:
    """``a`` and ``b`` as one group, or why they cannot share a loop nest (``Refused``).

    On success the larger of the two groups becomes the merged one (its members, roles
    and space updated in place, ``group_of`` pointed at it for the smaller's members)
    and is returned; on refusal neither changes. Both must be groups ``fuse`` made:
    each consistent and cycle-free on its own, so only what joins them is checked."""
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
    if a.weight + b.weight > MAX_GROUP_WEIGHT:
        return "size"
    small, large = (a, b) if len(a.nodes) <= len(b.nodes) else (b, a)
    if not _can_merge(graph, small, large):
        return "cycle"
    if not _consistent(graph, base, other, other_role, small, large):
        return "broadcast"
    # Fold the smaller group into the larger (each node moves O(log n) times). A
    # member's role is rewritten only when an elementwise group joins a reduction's
    # (its members become "point"/"row" once: a group with rdims keeps them).
    if other_role == "row":
        for m in other.nodes:
            other.role[m] = other_role
    large.role.update(small.role)
    large.nodes.extend(small.nodes)
    large.full, large.rdims = base.full, base.rdims
    large.lo, large.hi = min(large.lo, small.lo), max(large.hi, small.hi)
    large.weight += small.weight
    if group_of is not None:
        for m in small.nodes:
            group_of[m] = large
    return large


def _consistent(graph, base: Group, other: Group, other_role: str | None,
                small: Group, large: Group) -> bool:
    """Every member would read every other member's value at the iteration point NumPy's
    broadcasting means: e.g. an [N] row sum feeding an [N, C] op broadcasts along the
    rows, not the columns, so it cannot come from the same loop nest. Only edges between
    the two parts need checking: within a part, roles and the space stay as they were
    (a part's members that become "row" all have one shape: a group without reductions
    has every member at its full shape)."""
    full, rdims = base.full, base.rdims
    nfull = len(full)
    row_map = [d for d in range(nfull) if d not in rdims]

    def role(n: int) -> str:
        return other_role if other_role is not None and n in other.role else (
            base.role[n] if n in base.role else other.role[n])

    def dim_map(n: int, shape: tuple) -> list[int]:
        if role(n) == "point" or len(shape) == nfull:
            return list(range(len(shape)))
        return row_map

    def edge_ok(n: int, a: int) -> bool:
        d = graph[n]
        rn = role(n)
        use_shape = full if rn == "red" else tuple(d.shape)
        use_map = list(range(nfull)) if rn == "red" else dim_map(n, use_shape)
        if rn == "red" and a == d.args[0] and role(a) != "point":
            return False
        shape = tuple(graph[a].shape)
        amap = dim_map(a, shape)
        lead = len(use_shape) - len(shape)
        if lead < 0:
            return False
        for j, size in enumerate(shape):
            if size != 1 and use_map[lead + j] != amap[j]:
                return False
        return True

    lg = large.role
    for n in small.nodes:
        for a in graph[n].args:          # small reads large
            if a in lg and not edge_ok(n, a):
                return False
        for u in graph.users(n):         # large reads small
            if u in lg and not edge_ok(u, n):
                return False
    return True


def _can_merge(graph, small: Group, large: Group) -> bool:
    """True if no path leaves the two groups' union and re-enters it (which would make
    a cycle). Each part is cycle-free on its own, so such a path runs from one part to
    the other through outside nodes: walk backwards from the smaller part's outside
    operands (to find the larger part) and forwards from its outside users (likewise).
    Node ids are topological, so a walk stops below the larger part's first member
    (backwards) or above its last (forwards)."""
    lm, sm = large.role, small.role
    lo, hi = large.lo, large.hi

    def reaches(starts: list[int], step, inside) -> bool:
        stack, seen = list(starts), set()
        while stack:
            n = stack.pop()
            if n in seen or not inside(n):
                continue
            seen.add(n)
            for a in step(n):
                if a in lm:
                    return True
                if a not in sm:
                    stack.append(a)
        return False

    back = [a for m in small.nodes for a in graph[m].args if a not in sm and a not in lm]
    fwd = [u for m in small.nodes for u in graph.users(m) if u not in sm and u not in lm]
    return not (reaches(back, lambda n: graph[n].args, lambda n: n >= lo)
                or reaches(fwd, graph.users, lambda n: n <= hi))
