"""Reverse-mode autograd: a tape of Nodes and an iterative backward sweep.

Each differentiable op result carries a ``Node`` (its ``grad_fn``) that remembers the
op, its input tensors and attributes. ``backward`` orders the nodes topologically with
an explicit stack (deep graphs don't hit Python's recursion limit) and calls each op's
registry ``vjp``, which is written with ember ops.
"""
from __future__ import annotations

import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad", True)


def set_grad_enabled(mode: bool) -> None:
    _state.grad = bool(mode)


class _GradMode:
    _mode: bool

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc) -> None:
        set_grad_enabled(self._prev)

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator that turns gradient recording off.

    >>> with ember.no_grad():
    ...     y = x * 2          # y.requires_grad is False
    """
    _mode = False


class enable_grad(_GradMode):
    """Context manager and decorator that turns gradient recording back on."""
    _mode = True


class Node:
    """One recorded op application: what backward needs to send gradients to inputs."""

    __slots__ = ("op", "inputs", "attrs", "out", "versions", "parents", "freed", "__weakref__")

    def __init__(self, op, inputs, attrs, out) -> None:
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.out = out  # a detached Tensor sharing the result's data (no reference cycle)
        self.versions = tuple(t._version for t in inputs)
        # Where each input's gradient goes, fixed now: the producing Node, True for a leaf
        # that requires grad, None for a constant. Looking at ``t._node`` at backward
        # time would be wrong once an in-place op has given ``t`` a newer node.
        self.parents = tuple(t._node if t._node is not None else (t.requires_grad or None)
                             for t in inputs)
        self.freed = False

    def name(self) -> str:
        return f"{self.op.name.capitalize()}Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"


def _toposort(root: Node) -> list[Node]:
    """Nodes reachable from root, each after every node that consumes it."""
    order: list[Node] = []
    seen = {id(root)}
    stack = [(root, 0)]
    while stack:
        node, i = stack.pop()
        parents = node.parents
        while i < len(parents):
            child = parents[i]
            i += 1
            if type(child) is Node and id(child) not in seen:
                seen.add(id(child))
                stack.append((node, i))
                stack.append((child, 0))
                break
        else:
            order.append(node)
    order.reverse()
    return order


def backward(root, grad, retain_graph: bool = False, create_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * grad into every leaf's ``.grad``."""
    from ember.tensor import Tensor

    node = root._node
    if node is None:
        if root.requires_grad:  # a leaf: its gradient is the seed itself
            _accumulate(root, grad)
            return
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    grads: dict[int, Tensor] = {id(node): grad}
    with (enable_grad() if create_graph else no_grad()):
        for node in _toposort(node):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.freed:
                raise RuntimeError(
                    "Trying to backward through the graph a second time (or directly access saved "
                    "tensors after they have already been freed). Specify retain_graph=True if you "
                    "need to backward through the graph a second time.")
            if node.out._version and node.op.saves_out:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: the output 0 of {node.name()} of shape "
                    f"{list(node.out.shape)} is at version {node.out._version}; expected version 0 "
                    f"instead.")
            for i, (t, v) in enumerate(zip(node.inputs, node.versions)):
                if t._version != v and node.op.saves_input(i):
                    raise RuntimeError(
                        f"one of the variables needed for gradient computation has been modified by "
                        f"an inplace operation: the input of {node.name()} of shape {list(t.shape)} is "
                        f"at version {t._version}; expected version {v} instead.")
            in_grads = node.op.vjp(g, node.out, *node.inputs, **node.attrs)
            for t, child, ig in zip(node.inputs, node.parents, in_grads):
                if ig is None or child is None:
                    continue
                if ig.shape != t.shape:  # a vjp must undo broadcasting itself
                    raise AssertionError(f"{node.name()}: gradient shape {ig.shape} != input {t.shape}")
                if child is True or (t._retains_grad and t._node is child):
                    _accumulate(t, ig)
                if child is not True:
                    key = id(child)
                    prev = grads.get(key)
                    grads[key] = ig if prev is None else prev + ig
            if not retain_graph:
                node.freed = True


def _accumulate(t, g) -> None:
    g = g.detach() if not is_grad_enabled() else g
    if g.dtype != t.dtype:
        g = g.to(t.dtype)
    if t.grad is None:
        # A fresh tensor: later in-place accumulation must not write into someone's data.
        t.grad = g if g._node is not None else g._fresh_copy()
    else:
        t.grad = t.grad + g
