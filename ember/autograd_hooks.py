"""Gradient hooks on tensors (``Tensor.register_hook``), as in PyTorch.

A hook ``hook(grad) -> Tensor | None`` runs when the gradient with respect to its tensor
has been computed during ``backward``; a returned tensor replaces that gradient for
everything upstream (and for the leaf's ``.grad``).

- On a non-leaf tensor the hooks live on the tape ``Node`` that produced it
  (``Node.hooks``); ``autograd.backward`` runs them on the node's total incoming
  gradient, before the node's vjp.
- On a leaf they live here, by the tensor's id (with a weak reference, so they go when
  the tensor goes). ``backward`` sums the leaf's contributions first, runs its hooks once
  on the sum, then accumulates into ``.grad``, as PyTorch's AccumulateGrad does.

A hook is Python code that runs inside ``backward``: a compiled function whose trace
would run one runs eagerly instead (the compiled backward could not call it).

>>> x = ember.ones(3, requires_grad=True)
>>> h = x.register_hook(lambda g: g * 2)
>>> (x * 3).sum().backward(); x.grad
tensor([6., 6., 6.])
>>> h.remove()
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable

__all__ = ["RemovableHandle", "register_hook", "LEAF_HOOKS", "run_hooks", "run_leaf_hooks"]

# id(leaf tensor) -> (weak reference to it, OrderedDict of hooks by handle id)
LEAF_HOOKS: dict[int, tuple[weakref.ref, OrderedDict]] = {}
# Moves when a leaf's hooks change. A compiled backward replays without Python, so an
# entry traced before a hook was put on a parameter it reads would skip the hook: the
# compile key holds this counter (tracer/key.py) while any leaf has hooks.
LEAF_HOOKS_VERSION = [0]


class RemovableHandle:
    """What ``register_*hook`` returns: ``handle.remove()`` unregisters the hook (also as a
    context manager). Holds the hook dicts weakly, as PyTorch's handle does.

    >>> with x.register_hook(print):
    ...     pass
    """

    _next_id = 0

    def __init__(self, hooks_dict: dict, *, extra_dict=None) -> None:
        self.hooks_dict_ref = _ref(hooks_dict)
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1
        extras = extra_dict if isinstance(extra_dict, (list, tuple)) else (
            [] if extra_dict is None else [extra_dict])
        self.extra_dict_ref = tuple(_ref(d) for d in extras)

    def remove(self) -> None:
        for ref in (self.hooks_dict_ref,) + self.extra_dict_ref:
            d = ref()
            if d is not None and self.id in d:
                del d[self.id]
        LEAF_HOOKS_VERSION[0] += 1   # a compiled backward traced with the hook must go

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _Strong:
    """A stand-in reference for a dict that can't be weakly referenced."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __call__(self):
        return self.obj


def _ref(d: dict):
    try:
        return weakref.ref(d)
    except TypeError:   # plain dicts can't be weakly referenced; ours (OrderedDict) can
        return _Strong(d)


def register_hook(tensor, hook: Callable) -> RemovableHandle:
    """``tensor.register_hook(hook)``: see the module docstring."""
    from ember import dispatch
    if not tensor.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    tracer = dispatch.tracer
    if tracer is not None:
        tracer.fail("Tensor.register_hook: a gradient hook is Python code run by backward, "
                    "which a compiled backward would not call")
    node = tensor.grad_fn
    if node is not None:
        if node.hooks is None:
            node.hooks = OrderedDict()
        hooks = node.hooks
    else:
        key = id(tensor)
        entry = LEAF_HOOKS.get(key)
        if entry is None or entry[0]() is not tensor:
            ref = weakref.ref(tensor, lambda _r, key=key: _drop(key, _r))
            entry = LEAF_HOOKS[key] = (ref, OrderedDict())
        hooks = entry[1]
        LEAF_HOOKS_VERSION[0] += 1
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def _drop(key: int, ref) -> None:
    entry = LEAF_HOOKS.get(key)
    if entry is not None and entry[0] is ref:
        del LEAF_HOOKS[key]


def leaf_hooks(tensor) -> OrderedDict | None:
    """The hooks of a leaf tensor, or None (the common case: one dict lookup)."""
    entry = LEAF_HOOKS.get(id(tensor))
    if entry is None or entry[0]() is not tensor or not entry[1]:
        return None
    return entry[1]


def run_hooks(hooks: OrderedDict, grad):
    """Run each hook on the gradient in order; a returned tensor replaces it."""
    from ember import dispatch
    from ember.tensor import Tensor
    tracer = dispatch.tracer
    if tracer is not None:
        tracer.fail("a tensor gradient hook runs in this backward: it is Python code that a "
                    "compiled backward would not call")
    for hook in list(hooks.values()):
        out = hook(grad)
        if out is None:
            continue
        if not isinstance(out, Tensor):
            raise TypeError(f"expected a Tensor or None from the hook, but got "
                            f"{type(out).__name__}")
        if tuple(out.shape) != tuple(grad.shape):
            raise RuntimeError(f"hook '{getattr(hook, '__name__', 'hook')}' has changed the "
                               f"size of value: expected {list(grad.shape)}, got "
                               f"{list(out.shape)}")
        grad = out
    return grad


def run_leaf_hooks(tensor, grad):
    """The gradient to accumulate into a leaf, after its hooks (if any)."""
    hooks = leaf_hooks(tensor)
    return grad if hooks is None else run_hooks(hooks, grad)
