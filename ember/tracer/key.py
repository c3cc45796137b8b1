"""The cache key of a compiled call: what must be equal for a trace to be replayed.

A ``CallKey`` holds the pytree structure of the arguments, grad mode, one record per
argument leaf (a tensor's metadata, a Python scalar's type and value, another object's
type), and which tensor arguments alias; ``diff`` writes the reason a call missed the
cache, field by field. It is a ``NamedTuple``, so hashing and equality are the tuple's,
in C. Every call builds one, so ``key_fields`` builds it as a plain tuple (equal to the
``CallKey``, with the same hash: a tuple subclass costs about 0.2 us more to make, per
call) and a miss names it ``CallKey(*fields)``; likewise the leaf records are plain
tagged tuples that ``leaf(part)`` reads as a ``TensorKey``, ``ScalarKey`` or ``ObjectKey``.

>>> old = make_key(*pytree.flatten_call((ember.ones(2, 3),), {}))
>>> new = make_key(*pytree.flatten_call((ember.ones(4, 3),), {}))
>>> new.diff(old)
'argument 0 shape [2,3] -> [4,3]'
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from ember import autograd
from ember import devices as _devices
from ember import dtypes as _dtypes
from ember import autograd_hooks as _hooks
from ember.amp import state as _amp
from ember.ir.views import root
from ember.tensor import Tensor, array_of
from ember.tracer import pytree


class TensorKey(NamedTuple):
    """A tensor argument (``("T", ...)``): what a trace specialized on (its data is read
    at every call)."""
    kind: str               # "T"
    shape: tuple
    dtype: Any              # the NumPy dtype
    device: Any
    requires_grad: bool
    strides: tuple          # in bytes, as NumPy keeps them


class ScalarKey(NamedTuple):
    """A Python scalar argument (``("V", ...)``): its type and value (-0.0 apart from 0.0,
    NaNs alike)."""
    kind: str               # "V"
    type_name: str
    value: Any
    sign: float = 1.0       # for 0.0 and -0.0 only; part of the tuple to tell them apart


class ObjectKey(NamedTuple):
    """Another object (``("O", type)``): its type here; its identity and contents are the
    entry's guards."""
    kind: str               # "O"
    type: type


class AliasKey(NamedTuple):
    """Which tensor arguments are the same tensor, and which share memory (by position of
    the first tensor with that identity / memory)."""
    kind: str               # "A"
    same_tensor: tuple
    same_memory: tuple


_TENSOR_FIELDS = ("shape", "dtype", "device", "requires_grad", "strides")


class CallKey(NamedTuple):
    """The key of one call (see the module docstring). ``aliasing`` is None in the usual
    case, when no two tensor arguments share memory."""
    structure: Any
    grad_enabled: bool
    # None usually; else (autocast state, leaf-hook version, default dtype, default
    # device): autocast changes the dtypes a trace computes in, a gradient hook put on a
    # leaf after tracing must not be skipped by a replayed backward, and ``zeros(3)``
    # follows ``set_default_dtype``/``set_default_device``.
    modes: tuple | None
    leaves: tuple           # per argument leaf, a tagged tuple: see ``leaf``
    aliasing: AliasKey | None

    def diff(self, old: CallKey | None) -> str:
        """Why this key is not ``old``, in words ("" when there is no old key)."""
        if old is None:
            return ""
        if old.structure != self.structure:
            return "argument structure changed"
        if old.grad_enabled != self.grad_enabled:
            return f"grad mode changed ({old.grad_enabled} -> {self.grad_enabled})"
        if old.modes != self.modes:
            a_amp, b_amp = (old.modes or ((), 0))[0], (self.modes or ((), 0))[0]
            if a_amp != b_amp:
                return f"autocast changed ({a_amp or 'off'} -> {b_amp or 'off'})"
            a_def, b_def = (old.modes or STANDARD)[2:], (self.modes or STANDARD)[2:]
            if a_def != b_def:
                return f"default dtype/device changed ({', '.join(a_def)} -> {', '.join(b_def)})"
            return "a hook was registered or removed (a gradient hook must reach the backward)"
        if len(old.leaves) != len(self.leaves):
            return "number of arguments changed"
        for i, (a, b) in enumerate(zip(old.leaves, self.leaves)):
            if a == b:
                continue
            a, b = leaf(a), leaf(b)
            if type(a) is TensorKey and type(b) is TensorKey:
                for name in _TENSOR_FIELDS:
                    x, y = getattr(a, name), getattr(b, name)
                    if x != y:
                        return f"argument {i} {name} {_fmt(x)} -> {_fmt(y)}"
            return f"argument {i} changed: {_fmt_leaf(a)} -> {_fmt_leaf(b)}"
        if old.aliasing != self.aliasing:
            return "which tensor arguments are the same tensor or share memory changed"
        return "guards changed"


F32, CPU = _dtypes.float32, _devices.CPU


def defaults() -> tuple:
    """The default dtype and device, as a key holds them."""
    return (_dtypes._default_float.name, str(_devices._DEFAULT[0]))


STANDARD = ((), 0, "float32", "cpu")   # ``modes`` when it is None


def make_key(leaves: list, spec) -> CallKey:
    """The key of a call whose flattened arguments are ``leaves`` (pytree.flatten_call)."""
    return CallKey(*key_fields(leaves, spec))


def key_fields(leaves: list, spec) -> tuple:
    """``make_key``'s fields as a plain tuple (what the cache looks up on every call)."""
    parts = []
    tensors = []
    for _, v in leaves:
        if isinstance(v, Tensor):
            a = array_of(v)
            # ``_rg`` is requires_grad for a tensor that is not a view (the hot path)
            rg = v._rg if v._base is None else v.requires_grad
            parts.append(("T", a.shape, a.dtype, v._device, rg, a.strides))   # TensorKey
            tensors.append(v)
        elif isinstance(v, (int, float, bool, str, type(None))):
            parts.append(scalar_key(v))
        else:
            parts.append(("O", type(v)))                                       # ObjectKey
    alias = aliasing(tensors) if len(tensors) > 1 else None
    modes = None
    # The hook version moves only when a leaf hook is added or removed, not when a hooked
    # tensor dies (a garbage collection between two calls must not cause a recompile).
    if (_amp.state.modes or _hooks.LEAF_HOOKS_VERSION[0] or _dtypes._default_float is not F32
            or _devices._DEFAULT[0] is not CPU):
        modes = (_amp.key(), _hooks.LEAF_HOOKS_VERSION[0]) + defaults()
    return (pytree.spec_key(spec), autograd.is_grad_enabled(), modes, tuple(parts), alias)


def differing_leaves(old: tuple, new: tuple) -> list | None:
    """``[(index, old part, new part)]`` for the leaves in which two keys (as tuples)
    differ, or None where they differ in more than leaves (structure, grad mode, modes,
    aliasing, the number of leaves)."""
    if (old[0] != new[0] or old[1] != new[1] or old[2] != new[2] or old[4] != new[4]
            or len(old[3]) != len(new[3])):
        return None
    return [(i, a, b) for i, (a, b) in enumerate(zip(old[3], new[3])) if a != b]


def sizes_only(a: tuple, b: tuple) -> bool:
    """Whether two leaf parts are tensors that differ in sizes at most (rank, dtype,
    device and requires_grad alike)."""
    return a[0] == "T" and b[0] == "T" and len(a[1]) == len(b[1]) and a[2:5] == b[2:5]


def leaf(part: tuple) -> TensorKey | ScalarKey | ObjectKey:
    """A leaf record of a key, with named fields."""
    return _LEAVES[part[0]](*part)


def scalar_key(v) -> tuple:
    """A Python scalar in the key (a ``ScalarKey``'s fields): its type and value, with -0.0
    apart from 0.0 and every NaN alike (NaN != NaN would miss the cache at every call)."""
    if type(v) is float:
        if v != v:
            return ("V", "float", "nan")
        if v == 0.0:
            return ("V", "float", v, math.copysign(1.0, v))
    return ("V", type(v).__name__, v)


def aliasing(tensors: list) -> AliasKey | None:
    """Which tensor arguments are the same tensor, and which share memory: a trace of
    ``f(x, x)`` must not replay ``f(x, y)``. None in the usual case: no two do."""
    roots = []
    for t in tensors:
        a = array_of(t)
        roots.append(id(a) if a.base is None else id(root(a)))
    if len(set(roots)) == len(roots):   # distinct memory implies distinct tensors
        return None
    ids = [id(t) for t in tensors]
    return AliasKey("A", tuple(ids.index(i) for i in ids), tuple(roots.index(r) for r in roots))


_LEAVES = {"T": TensorKey, "V": ScalarKey, "O": ObjectKey}


def _fmt_leaf(part) -> str:
    if type(part) is ScalarKey:
        return repr(part.value)
    if type(part) is ObjectKey:
        return f"a {part.type.__name__}"
    return "a tensor"


def _fmt(x) -> str:
    if isinstance(x, tuple):
        return "[" + ",".join(map(str, x)) + "]"
    return str(x)
