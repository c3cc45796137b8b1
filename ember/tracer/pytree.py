"""Flatten nested call arguments and results (tuples, lists, dicts) into leaves.

A function's results may also be dataclasses and dict subclasses (an ``OrderedDict``,
a HuggingFace ``ModelOutput``): each call's result is a shallow copy of the traced one
with its values replaced, so its type and other attributes stay. (Arguments of those
types stay leaves: the cache key tells them apart as objects.)
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ember.tensor import Tensor


class AttrWrites:
    """A traced call's result with the tensors it assigned to module attributes
    (``self.attn = weights``, ``self.last_loss = loss``): flattened as the result's
    leaves, then those tensors; rebuilding it (every replay's result) assigns them
    again and gives the result alone, so a replay leaves the modules as eager does."""

    __slots__ = ("result", "writes")

    def __init__(self, result, writes: list) -> None:
        self.result = result
        self.writes = writes   # [(weakref to the module, attribute name, tensor)]


_NO_SLOT = object()


def slot_value(obj, name: str, default=_NO_SLOT):
    """What module ``obj``'s attribute or buffer ``name`` holds (``default`` if neither)."""
    v = obj.__dict__.get(name, _NO_SLOT)
    if v is _NO_SLOT:
        v = obj.__dict__.get("_buffers", {}).get(name, default)
    return v


def assign_slot(obj, name: str, value) -> None:
    """``obj.name = value`` as a replay does it: into the buffer of that name, else the
    plain attribute, without Module.__setattr__ (nothing registers; no guard re-runs)."""
    buffers = obj.__dict__.get("_buffers")
    if buffers is not None and name in buffers:
        buffers[name] = value
    else:
        object.__setattr__(obj, name, value)


class SlotReader:
    """The getter of an "attr" input (``ir.graph.InputSource``): the tensor the slot
    ``name`` of a module holds now, or None (gone, or not a tensor: the replay is stale)."""

    __slots__ = ("ref", "name", "meta", "checked")

    def __init__(self, ref, name: str) -> None:
        self.ref, self.name = ref, name   # (a weak reference to the module)

    def __call__(self):
        obj = self.ref()
        v = None if obj is None else slot_value(obj, self.name, None)
        return v if isinstance(v, Tensor) else None

    def same_slot(self, other) -> bool:
        return (isinstance(other, SlotReader) and other.name == self.name
                and other.ref() is self.ref() is not None)


def flatten(tree, path: str = "", results: bool = False) -> tuple[list[tuple[str, Any]], Any]:
    """Leaves as (path, value) and a spec that ``unflatten`` rebuilds the tree from;
    ``results``: a function's result (dataclasses and dict subclasses are opened too)."""
    leaves: list[tuple[str, Any]] = []
    spec = _walk(tree, path, leaves, results)
    return leaves, spec


def _walk(x, p: str, leaves: list, results: bool = False) -> Any:
    # Not a self-calling closure: that would be a reference cycle keeping the leaves
    # (the call's tensors) alive until the garbage collector runs.
    if type(x) is AttrWrites:
        return ("setattrs", [(ref, name) for ref, name, _ in x.writes],
                [_walk(x.result, p, leaves, results)]
                + [_walk(t, f"{p}<{name}>", leaves, results) for _, name, t in x.writes])
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("namedtuple", type(x),
                [_walk(v, f"{p}.{f}", leaves, results) for f, v in zip(x._fields, x)])
    if isinstance(x, (tuple, list)):   # (a subclass, such as ember.Size, is rebuilt as one)
        kind = "tuple" if isinstance(x, tuple) else "list"
        return (kind, None if type(x) in (tuple, list) else type(x),
                [_walk(v, f"{p}[{i}]", leaves, results) for i, v in enumerate(x)])
    if isinstance(x, dict):
        keys = list(x)
        if type(x) is not dict and results:
            template = _template(x, keys, lambda t, k: t.__setitem__(k, None))
            if template is not None:
                return ("mapping", (template, keys),
                        [_walk(x[k], f"{p}[{k!r}]", leaves, results) for k in keys])
        return ("dict", keys, [_walk(x[k], f"{p}[{k!r}]", leaves, results) for k in keys])
    if results and dataclasses.is_dataclass(x) and not isinstance(x, type):
        names = [f.name for f in dataclasses.fields(x)]
        template = _template(x, names, lambda t, k: object.__setattr__(t, k, None))
        if template is not None:
            return ("dataclass", (template, names),
                    [_walk(getattr(x, k), f"{p}.{k}", leaves, results) for k in names])
    leaves.append((p, x))
    return ("leaf", None, None)


def _template(x, keys: list, clear) -> Any:
    """A shallow copy of ``x`` with the values at ``keys`` set to None (the traced
    tensors are not kept alive by the spec), or None if ``x`` cannot be copied so."""
    try:
        template = copy.copy(x)
        for k in keys:
            clear(template, k)
    except Exception:   # (an object that refuses it stays a leaf: see entry.py)
        return None
    return template


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


def changed_leaf(before: list, after: list) -> str:
    """The path of the first argument leaf that a call replaced, added or removed (in a
    list or dict it was given), comparing ``flatten_call``'s leaves before and after it;
    "" if none. Tensors compare by identity, other values by type and value."""
    for (p, a), (q, b) in zip(before, after):
        if p != q:
            return min(p, q)
        if a is not b and (isinstance(a, Tensor) or isinstance(b, Tensor)
                           or type(a) is not type(b) or not _equal(a, b)):
            return p
    if len(before) != len(after):
        return (before if len(before) > len(after) else after)[min(len(before), len(after))][0]
    return ""


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:   # (an object whose == is not a truth value: take it as changed)
        return False


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
    if kind == "setattrs":
        for (ref, name), v in zip(meta, vals[1:]):
            obj = ref()
            if obj is not None:
                assign_slot(obj, name, v)
        return vals[0]
    if kind == "namedtuple":
        return meta(*vals)
    if kind in ("mapping", "dataclass"):
        template, keys = meta
        out = copy.copy(template)
        for k, v in zip(keys, vals):
            if kind == "mapping":
                out[k] = v
            else:
                object.__setattr__(out, k, v)
        return out
    if kind == "dict":
        return dict(zip(meta, vals))
    if meta is not None:
        try:
            return meta(vals)
        except Exception:   # a subclass made otherwise: the plain type
            pass
    return tuple(vals) if kind == "tuple" else vals


def spec_key(spec) -> Any:
    """A hashable form of a spec (the structure part of a cache key)."""
    known = _KEYS.get(id(spec))
    if known is not None:
        return known
    kind, meta, children = spec
    if kind == "leaf":
        return "L"
    m = (tuple(name for _, name in meta) if kind == "setattrs"
         else tuple(meta) if kind == "dict"
         else meta.__name__ if kind == "namedtuple" or kind in ("tuple", "list") and meta
         else (type(meta[0]).__name__, tuple(meta[1])) if kind in ("mapping", "dataclass")
         else None)
    return (kind, m, tuple(spec_key(c) for c in children))
