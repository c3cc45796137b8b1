"""Activation checkpointing (``torch.utils.checkpoint``): trade compute for memory.

``checkpoint(fn, *args)`` runs ``fn`` keeping none of its intermediate activations,
only its inputs. Backward runs ``fn`` again with gradients on, with the RNG state of
the first run (so dropout draws the same mask), and backpropagates through that.

Each tensor output gets its own tape node whose backward recomputes ``fn`` and
backpropagates that output's gradient: the usual single output costs one recompute,
``k`` outputs that all get gradients cost ``k`` (the sums are the same, by linearity).
Parameters used inside ``fn`` receive their gradients from that inner backward, as with
torch's reentrant variant. Under ``ember.compile`` tracing, ``fn`` is simply called:
the compiled step plans its own memory, and its gradients are the same.

>>> from ember.utils.checkpoint import checkpoint
>>> y = checkpoint(block, x, use_reentrant=False)
>>> y.sum().backward()
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable

from ember import autograd
from ember import dispatch as _dispatch
from ember.random import get_rng_state, set_rng_state
from ember.tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential"]

_REENTRANT_WARNING = (
    "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. "
    "use_reentrant=False is recommended, but if you need to preserve the current default "
    "behavior, you can pass use_reentrant=True.")


class _CheckpointBackward:
    """The tape op of checkpoint output ``k``: its vjp recomputes and backpropagates."""

    name = "CheckpointFunctionBackward"
    saves_out = False     # the gradient is recomputed; the output's value is not read
    keeps_inputs = True   # the inputs are what a checkpoint keeps

    def __init__(self, run: "_Run", k: int) -> None:
        self.run, self.k = run, k

    @staticmethod
    def saves_input(i: int) -> bool:
        return True

    def vjp(self, g, out, *inputs):
        return self.run.backward(self.k, g)


class _Run:
    """One checkpointed call: the function, its arguments and the RNG state before it."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, preserve_rng: bool) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.rng = _rng_states(args) if preserve_rng else None

    def forward(self, grad: bool):
        with autograd.set_grad_enabled(grad):
            return self.fn(*self.args, **self.kwargs)

    def backward(self, k: int, g) -> tuple:
        tensors = [a for a in self.args if isinstance(a, Tensor)]
        leaves = {id(a): a.detach().requires_grad_(a.requires_grad) for a in tensors}
        args = [leaves[id(a)] if isinstance(a, Tensor) else a for a in self.args]
        outer_rng = _rng_states(self.args) if self.rng is not None else None
        try:
            if self.rng is not None:
                _set_rng_states(self.rng)
            with autograd.enable_grad():
                outs = self.fn(*args, **self.kwargs)
        finally:
            if outer_rng is not None:   # the caller's stream goes on as if not rerun
                _set_rng_states(outer_rng)
        out = _tensor_outputs(outs)[k]
        if out.requires_grad:
            with autograd.enable_grad() if autograd.is_grad_enabled() else autograd.no_grad():
                out.backward(g)
        return tuple(leaves[id(a)].grad if a.requires_grad else None for a in tensors)


def checkpoint(function: Callable, *args: Any, use_reentrant: bool | None = None,
               context_fn: Callable | None = None, determinism_check: str = "default",
               debug: bool = False, early_stop: bool = True, **kwargs: Any) -> Any:
    """Run ``function(*args, **kwargs)`` without keeping its activations; recompute them
    in backward (torch.utils.checkpoint.checkpoint). ``preserve_rng_state=True`` (a
    keyword) replays the RNG so dropout matches.

    >>> y = checkpoint(layer, x, use_reentrant=False)
    """
    preserve = kwargs.pop("preserve_rng_state", True)
    if use_reentrant is None:
        warnings.warn(_REENTRANT_WARNING, UserWarning, stacklevel=2)
        use_reentrant = True
    if use_reentrant:
        if context_fn is not None or debug:
            raise ValueError("Passing `context_fn` or `debug` is only supported when "
                             "use_reentrant=False.")
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    if determinism_check not in ("default", "none"):
        raise ValueError("determinism_check should be one of ['default', 'none'], but "
                         f"got {determinism_check}")
    tracer = _dispatch.tracer
    if tracer is not None and autograd.is_grad_enabled():
        # Traced, the function runs once; eagerly its backward runs it again, and what it
        # updates in place (BatchNorm's running statistics: densenet's memory-efficient
        # blocks) is updated twice, as torch does. A replay would update it once: such a
        # call runs as eager does and its signature eagerly.
        why = ("a checkpointed function updates tensors from outside it in place (BatchNorm "
               "running statistics), which eager's backward does again when it recomputes "
               "the function; this signature runs eagerly")
        if _updates_statistics(function, args):
            tracer.fail(why)
        else:
            writes = tracer.input_writes
            out = function(*args, **kwargs)
            if tracer.input_writes != writes:
                tracer.fail(why)
            return out
    elif tracer is not None or not autograd.is_grad_enabled():
        return function(*args, **kwargs)
    tensors = [a for a in args if isinstance(a, Tensor)]
    if use_reentrant and not any(t.requires_grad for t in tensors):
        warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                      UserWarning, stacklevel=2)
    run = _Run(function, args, kwargs, preserve)
    # Reentrant: under no_grad, outputs need grad only through the inputs (torch's
    # rule). Otherwise with grad, to learn which outputs need it (parameters inside
    # count); the graph recorded there is dropped when this returns.
    outs = run.forward(grad=not use_reentrant)
    need = any(t.requires_grad for t in tensors)
    wrapped = {}
    for k, o in enumerate(_tensor_outputs(outs)):
        rg = o.requires_grad if not use_reentrant else need and o.is_floating_point()
        t = Tensor._wrap(o._data, rg)
        if rg:
            t._node = autograd.Node(_CheckpointBackward(run, k), tuple(tensors), {}, t)
        wrapped[id(o)] = t
    return _replace(outs, wrapped)


def _updates_statistics(function: Callable, args: tuple) -> bool:
    """Whether a module ``function`` reaches (itself, its ``self``, its closure's cells,
    a partial's arguments, the arguments) is a norm in training mode that keeps running
    statistics: what a recompute in backward updates again."""
    from ember.nn.module import Module
    seen = [function, getattr(function, "__self__", None), getattr(function, "func", None),
            *getattr(function, "args", ()), *args]
    for cell in getattr(getattr(function, "__func__", function), "__closure__", None) or ():
        try:
            seen.append(cell.cell_contents)
        except ValueError:   # (an empty cell)
            continue
    return any(getattr(m, "track_running_stats", False) and m.training
               and getattr(m, "running_mean", None) is not None
               for obj in seen if isinstance(obj, Module) for m in obj.modules())


def checkpoint_sequential(functions: Iterable[Callable] | Any, segments: int, input: Tensor,
                          use_reentrant: bool | None = None, **kwargs: Any) -> Tensor:
    """Split ``functions`` (a Sequential or a list of modules) into ``segments`` runs and
    checkpoint each but the last (torch.utils.checkpoint.checkpoint_sequential).

    >>> out = checkpoint_sequential(model, 2, x, use_reentrant=False)
    """
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    if use_reentrant is None:
        warnings.warn(_REENTRANT_WARNING, UserWarning, stacklevel=2)
        use_reentrant = True
    from ember.nn import Sequential
    if isinstance(functions, Sequential):
        functions = list(functions.children())
    functions = list(functions)

    def run_function(start: int, end: int):
        def forward(x):
            for j in range(start, end + 1):
                x = functions[j](x)
            return x
        return forward

    size = len(functions) // segments
    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run_function(start, end), input, use_reentrant=use_reentrant,
                           preserve_rng_state=preserve)
    return run_function(end + 1, len(functions) - 1)(input)


def _tensor_outputs(outs) -> list[Tensor]:
    if isinstance(outs, Tensor):
        return [outs]
    if isinstance(outs, (tuple, list)):
        return [o for o in outs if isinstance(o, Tensor)]
    return []


def _replace(outs, wrapped: dict):
    if isinstance(outs, Tensor):
        return wrapped[id(outs)]
    if isinstance(outs, (tuple, list)):
        return type(outs)(wrapped.get(id(o), o) if isinstance(o, Tensor) else o
                          for o in outs)
    return outs


def _rng_states(args: tuple) -> tuple:
    """The CPU generator's state, and the CUDA one where an argument lives there."""
    cuda = None
    if any(isinstance(a, Tensor) and a.device.type == "cuda" for a in args):
        from ember import cuda as _cuda
        getter = getattr(_cuda, "get_rng_state", None)
        cuda = getter() if getter is not None else None
    return get_rng_state(), cuda


def _set_rng_states(states: tuple) -> None:
    cpu, cuda = states
    set_rng_state(cpu)
    if cuda is not None:
        from ember import cuda as _cuda
        _cuda.set_rng_state(cuda)
