"""Dynamic shapes: which sizes of a compiled function's calls vary.

torch.compile's automatic dynamic is the model. With ``dynamic=None`` (the default) the
first call compiles for its sizes; when a later call differs from an earlier one only
in some sizes (batch 64, then 48), those dims are dynamic from then on. With
``dynamic=True`` every dim of every tensor argument is; with ``dynamic=False`` none is.
``mark_dynamic(t, dim)`` and ``mark_static(t, dim)`` decide for one tensor's dim.

What a dynamic dim changes: the kernels that iterate over a varying size are compiled
*size-generic* (``Kernel.generic``: loop bounds and strides are run-time arguments), so
the machine code made for one size serves every other one. Each size is still traced
and planned as a cache entry of its own (about 15 ms for an MLP training step, where
generating its code costs 0.25 s), so whatever Python does with a size (a loop over it,
a branch on it, a reshape to it) is exactly what eager does for that size: no guess
about how a size flows through the program can make a replay wrong. So unlike
torch.compile, a size of 1 needs no code of its own either (generic kernels keep size-1
dims); only an empty tensor's kernels are compiled apart. Since that costs several
eager calls per size, a new size runs eagerly until compiling it pays (``admission.py``).

>>> x = ember.randn(8, 3)
>>> ember.mark_dynamic(x, 0)
"""
from __future__ import annotations

import weakref

from ember.tensor import Tensor
from ember.tracer.key import differing_leaves, sizes_only

_GRAPHS_KEPT = 64   # graph structures whose shapes ``reference`` keeps, per function
# id(tensor) -> (weak reference, {dim: True for dynamic, False for static})
_MARKS: dict[int, tuple[weakref.ref, dict[int, bool]]] = {}


def _mark(t: Tensor, dim: int, dynamic: bool, what: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(t).__name__}")
    dims = [dim] if isinstance(dim, int) else list(dim)
    for d in dims:
        if not -t.dim() <= d < t.dim():
            raise IndexError(f"{what}: dim {d} is out of range for a tensor of shape "
                             f"{list(t.shape)}")
    key = id(t)
    found = _MARKS.get(key)
    if found is None or found[0]() is not t:
        ref = weakref.ref(t, lambda _r, key=key: _MARKS.pop(key, None))
        found = _MARKS[key] = (ref, {})
    for d in dims:
        found[1][d % t.dim()] = dynamic


def mark_dynamic(t: Tensor, dim) -> None:
    """Compile the kernels over ``t``'s dim ``dim`` (an int or a list) size-generic
    from the first call, as ``torch._dynamo.mark_dynamic``.

    >>> x = ember.randn(64, 10); ember.mark_dynamic(x, 0)
    """
    _mark(t, dim, True, "mark_dynamic")


def mark_static(t: Tensor, dim) -> None:
    """Never treat ``t``'s dim ``dim`` as dynamic: a new size of it compiles code of
    its own, as ``torch._dynamo.mark_static``.

    >>> x = ember.randn(64, 10); ember.mark_static(x, 1)
    """
    _mark(t, dim, False, "mark_static")


def marks(t: Tensor) -> dict[int, bool]:
    found = _MARKS.get(id(t))
    return found[1] if found is not None and found[0]() is t else {}


class DynamicDims:
    """The dims of one compiled function's arguments that vary (see the module
    docstring): ``learn`` from each missed call, ``sizes`` of a call to compile."""

    def __init__(self, mode: bool | None) -> None:
        if mode not in (None, True, False):
            raise ValueError(f"ember.compile: dynamic must be None, True or False, got "
                             f"{mode!r}")
        self.mode = mode
        self.dims: dict[tuple[int, int], tuple[int, int]] = {}   # (leaf, dim) -> first change
        # graph structure -> the node shapes of up to two builds of different sizes
        self._seen: dict[int, list[dict[int, tuple]]] = {}

    def learn(self, key: tuple, leaves: list, old_keys) -> list[str]:
        """With ``dynamic=None``: the dims in which ``key`` differs from an earlier key
        that it equals in everything else become dynamic. Returns what became so."""
        if self.mode is not None:
            return []
        new = []
        for old in old_keys:
            changed = _size_changes(old, key)
            for leaf, d, a, b in changed or ():
                if (leaf, d) in self.dims or marks(leaves[leaf][1]).get(d) is False:
                    continue
                self.dims[(leaf, d)] = (a, b)
                new.append(f"argument {leaf} dim {d} varies ({a} -> {b}): the kernels "
                           "over it are compiled once for every size")
        return new

    def sizes(self, leaves: list) -> frozenset:
        """The sizes of this call that vary, and their products with the call's other
        sizes (a [batch x seq, d] view): the kernels over one are made size-generic. A
        size taken for varying when it does not, or the reverse, costs speed only."""
        if self.mode is False:
            return frozenset()
        varying, fixed = set(), set()
        for i, (_, v) in enumerate(leaves):
            if not isinstance(v, Tensor):
                continue
            m = marks(v)
            for d, n in enumerate(v.shape):
                dynamic = m.get(d)
                if dynamic is None:
                    dynamic = self.mode is True or (i, d) in self.dims
                if dynamic and n >= 1:   # (a size 0 kernel runs no code)
                    varying.add(n)
                elif n >= 2:
                    fixed.add(n)
        return frozenset(varying | {a * b for a in varying for b in fixed})

    def reference(self, graph) -> dict | None:
        """Node shapes (and scalar constants' values, keyed ``("const", id)``) of an
        earlier build of a graph with ``graph``'s structure (ops,
        operands, dtypes: the same program) at other sizes, or None if there is none
        (then its shapes are kept for the next). A kernel whose shapes differ from that
        build's iterates over a varying size: the plan compiles it size-generic."""
        if self.mode is not None:   # False: none varies; True: all do, from the start
            return None
        sig = hash(tuple((n, graph[n].op, graph[n].args, graph[n].dtype)
                         for n in graph.nodes()))
        shapes = {n: tuple(graph[n].shape) for n in graph.nodes()}
        # and the scalar constants (a mean's 1/N: lower.const_varies)
        shapes.update({("const", n): graph.consts[n].reshape(()).item()
                       for n in graph.nodes() if graph[n].op == "const"
                       and getattr(graph.consts[n], "size", 0) == 1})
        seen = self._seen.get(sig)
        if seen is None:
            if len(self._seen) < _GRAPHS_KEPT:
                self._seen[sig] = [shapes]
            return None
        other = next((s for s in seen if s != shapes), None)
        if other is None:    # only this size seen so far
            return None
        if shapes not in seen and len(seen) < 2:
            seen.append(shapes)
        return other

    def active(self) -> bool:
        return self.mode is True or bool(self.dims)


def _size_changes(old: tuple, new: tuple) -> list | None:
    """``[(leaf, dim, old size, new size)]`` if two keys differ only in tensor sizes
    (same structure, modes, aliasing, ranks, dtypes, devices, requires_grad), else
    None."""
    diffs = differing_leaves(old, new)
    if diffs is None or not all(sizes_only(a, b) for _, a, b in diffs):
        return None
    out = [(i, d, x, y) for i, a, b in diffs for d, (x, y) in enumerate(zip(a[1], b[1]))
           if x != y]
    return out or None
