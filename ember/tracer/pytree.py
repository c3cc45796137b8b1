"""Flatten nested call arguments and results (tuples, lists, dicts) into leaves."""
from __future__ import annotations

from typing import Any


def flatten(tree, path: str = "") -> tuple[list[tuple[str, Any]], Any]:
    """Leaves as (path, value) and a spec that ``unflatten`` rebuilds the tree from."""
    leaves: list[tuple[str, Any]] = []
    spec = _walk(tree, path, leaves)
    return leaves, spec


def _walk(x, p: str, leaves: list) -> Any:
    # Not a self-calling closure: that would be a reference cycle keeping the leaves
    # (the call's tensors) alive until the garbage collector runs.
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("namedtuple", type(x),
                [_walk(v, f"{p}.{f}", leaves) for f, v in zip(x._fields, x)])
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, None, [_walk(v, f"{p}[{i}]", leaves) for i, v in enumerate(x)])
    if isinstance(x, dict):
        keys = list(x)
        return ("dict", keys, [_walk(x[k], f"{p}[{k!r}]", leaves) for k in keys])
    leaves.append((p, x))
    return ("leaf", None, None)


_POSITIONAL: dict[int, tuple] = {}   # n -> (spec, paths) of a call with n plain arguments
_KEYS: dict[int, Any] = {}            # id(spec) -> spec_key, for those shared specs


def flatten_call(args: tuple, kwargs: dict) -> tuple[list[tuple[str, Any]], Any]:
    """Leaves of a call's arguments, with paths such as ``args[0]`` and ``kwargs['x']``."""
    if not kwargs and not any(isinstance(a, (tuple, list, dict)) for a in args):
        # The common call f(x, y): one shared spec per arity, no walk (a cache hit's
        # guard check is on every call's path).
        shared = _POSITIONAL.get(len(args))
        if shared is None:
            spec = ("tuple", None, [("tuple", None, [("leaf", None, None)] * len(args)),
                                    ("dict", [], [])])
            shared = _POSITIONAL[len(args)] = (spec, [f"args[{i}]" for i in range(len(args))])
            _KEYS[id(spec)] = spec_key(spec)
        return list(zip(shared[1], args)), shared[0]
    leaves, spec = flatten((args, kwargs))
    named = [(("args" + p[3:]) if p.startswith("[0]") else ("kwargs" + p[3:]), v)
             for p, v in leaves]
    return named, spec


def unflatten(spec, leaves: list) -> Any:
    # A module-level helper, not a closure that calls itself: such a closure is a
    # reference cycle that kept every returned tensor alive until the garbage collector
    # ran, so output buffers could not be recycled between calls.
    return _build(spec, iter(leaves))


def _build(s, it) -> Any:
    kind, meta, children = s
    if kind == "leaf":
        return next(it)
    vals = [_build(c, it) for c in children]
    if kind == "namedtuple":
        return meta(*vals)
    if kind == "dict":
        return dict(zip(meta, vals))
    return tuple(vals) if kind == "tuple" else vals


def spec_key(spec) -> Any:
    """A hashable form of a spec (the structure part of a cache key)."""
    known = _KEYS.get(id(spec))
    if known is not None:
        return known
    kind, meta, children = spec
    if kind == "leaf":
        return "L"
    m = tuple(meta) if kind == "dict" else (meta.__name__ if kind == "namedtuple" else None)
    return (kind, m, tuple(spec_key(c) for c in children))
