"""``torch.utils._pytree``: nested containers as a list of leaves and a spec to rebuild
them, the helpers libraries map over arguments with.

Containers are tuples, lists, dicts, namedtuples, ``OrderedDict``, ``defaultdict`` and
``deque``; everything else (tensors, numbers, None) is a leaf, as in torch.

>>> leaves, spec = tree_flatten({"a": [1, 2], "b": (3,)})
>>> leaves
[1, 2, 3]
>>> tree_unflatten([x * 10 for x in leaves], spec)
{'a': [10, 20], 'b': (30,)}
>>> tree_map(lambda x: x + 1, [1, (2, 3)])
[2, (3, 4)]
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Optional

__all__ = ["TreeSpec", "LeafSpec", "tree_flatten", "tree_unflatten", "tree_leaves",
           "tree_structure", "tree_map", "tree_map_only", "tree_all", "tree_any",
           "tree_all_only", "tree_any_only"]


class TreeSpec:
    """How a tree was built: its container type, context (dict keys, namedtuple class)
    and one spec per child."""

    def __init__(self, type: Any, context: Any, children_specs: list["TreeSpec"]) -> None:
        self.type = type
        self.context = context
        self.children_specs = children_specs
        self.num_leaves = sum(c.num_leaves for c in children_specs)
        self.num_children = len(children_specs)

    def is_leaf(self) -> bool:
        return self.type is None

    def __eq__(self, other) -> bool:
        return (isinstance(other, TreeSpec) and (self.type, self.context, self.children_specs)
                == (other.type, other.context, other.children_specs))

    def __repr__(self) -> str:
        if self.is_leaf():
            return "*"
        name = getattr(self.type, "__name__", str(self.type))
        return f"TreeSpec({name}, {self.context!r}, [{', '.join(map(repr, self.children_specs))}])"


class LeafSpec(TreeSpec):
    def __init__(self) -> None:
        super().__init__(None, None, [])
        self.num_leaves = 1


def _children(tree) -> Optional[tuple[Any, Any, list]]:
    """(type, context, children) of a container; None for a leaf."""
    t = type(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):   # a namedtuple
        return t, t, list(tree)
    if t in (tuple, list):
        return t, None, list(tree)
    if t is collections.defaultdict:
        return t, (tree.default_factory, list(tree)), list(tree.values())
    if t in (dict, collections.OrderedDict):
        return t, list(tree), list(tree.values())
    if t is collections.deque:
        return t, tree.maxlen, list(tree)
    return None


def _rebuild(spec: TreeSpec, children: list) -> Any:
    t, ctx = spec.type, spec.context
    if t in (tuple, list):
        return t(children)
    if t is collections.defaultdict:
        return collections.defaultdict(ctx[0], zip(ctx[1], children))
    if t in (dict, collections.OrderedDict):
        return t(zip(ctx, children))
    if t is collections.deque:
        return collections.deque(children, maxlen=ctx)
    return t(*children)   # a namedtuple


def tree_flatten(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None
                 ) -> tuple[list, TreeSpec]:
    """The leaves of ``tree`` in order, and the spec ``tree_unflatten`` rebuilds it from."""
    leaves: list = []

    def walk(node) -> TreeSpec:
        parts = None if is_leaf is not None and is_leaf(node) else _children(node)
        if parts is None:
            leaves.append(node)
            return LeafSpec()
        t, ctx, kids = parts
        return TreeSpec(t, ctx, [walk(k) for k in kids])

    return leaves, walk(tree)


def tree_unflatten(leaves: Iterable, treespec: TreeSpec) -> Any:
    """The tree of ``treespec`` with ``leaves`` in its places."""
    leaves = list(leaves)
    if len(leaves) != treespec.num_leaves:
        raise ValueError(f"treespec.unflatten(leaves): `leaves` has length {len(leaves)} but "
                         f"the spec refers to a pytree that holds {treespec.num_leaves} "
                         f"items ({treespec}).")
    it = iter(leaves)

    def build(spec: TreeSpec) -> Any:
        if spec.is_leaf():
            return next(it)
        return _rebuild(spec, [build(c) for c in spec.children_specs])

    return build(treespec)


def tree_leaves(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None) -> list:
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None) -> TreeSpec:
    return tree_flatten(tree, is_leaf)[1]


def tree_map(func: Callable, tree: Any, *rests: Any,
             is_leaf: Optional[Callable[[Any], bool]] = None) -> Any:
    """``func`` applied to every leaf (with the matching leaves of ``rests``, which must
    have ``tree``'s structure)."""
    leaves, spec = tree_flatten(tree, is_leaf)
    others = []
    for rest in rests:
        rleaves, rspec = tree_flatten(rest, is_leaf)
        if rspec != spec:
            raise ValueError(f"Tree structures do not match: {spec} and {rspec}")
        others.append(rleaves)
    return tree_unflatten([func(*xs) for xs in zip(leaves, *others)], spec)


def _only(types, func: Callable) -> Callable:
    return lambda x: func(x) if isinstance(x, types) else x


def tree_map_only(type_or_types, func: Callable, tree: Any,
                  is_leaf: Optional[Callable[[Any], bool]] = None) -> Any:
    """``tree_map`` over the leaves of the given type(s); the others stay."""
    return tree_map(_only(type_or_types, func), tree, is_leaf=is_leaf)


def tree_all(pred: Callable, tree: Any, is_leaf=None) -> bool:
    return all(map(pred, tree_leaves(tree, is_leaf)))


def tree_any(pred: Callable, tree: Any, is_leaf=None) -> bool:
    return any(map(pred, tree_leaves(tree, is_leaf)))


def tree_all_only(type_or_types, pred: Callable, tree: Any, is_leaf=None) -> bool:
    return all(pred(x) for x in tree_leaves(tree, is_leaf) if isinstance(x, type_or_types))


def tree_any_only(type_or_types, pred: Callable, tree: Any, is_leaf=None) -> bool:
    return any(pred(x) for x in tree_leaves(tree, is_leaf) if isinstance(x, type_or_types))
