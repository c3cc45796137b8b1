"""``ember.autograd.Function``: custom differentiable operations, as ``torch.autograd.Function``.

A subclass defines ``forward(ctx, *args)`` (run without recording: its ops are not
differentiated) and ``backward(ctx, *grad_outputs)`` (one gradient per ``forward``
argument, None for those without one); ``Cls.apply(*args)`` runs it and attaches one
autograd Node whose gradient is ``backward``. The new style, ``forward(*args)`` plus
``setup_context(ctx, inputs, output)``, works too. Inside ``ember.compile`` the ops of
``forward`` and ``backward`` are traced like any others.

>>> class Clip(ember.autograd.Function):        # a straight-through estimator
...     @staticmethod
...     def forward(ctx, x):
...         return x.clamp(-1, 1)
...     @staticmethod
...     def backward(ctx, g):
...         return g
>>> x = ember.tensor([3.0], requires_grad=True)
>>> Clip.apply(x).sum().backward(); x.grad
tensor([1.])
"""
from __future__ import annotations

import functools
from typing import Any

from ember import autograd
from ember.autograd import Node, Unsaved, no_grad

__all__ = ["Function", "FunctionCtx", "once_differentiable"]


class FunctionCtx:
    """What ``forward`` leaves for ``backward``: saved tensors, which inputs need a
    gradient, attributes set on it."""

    def __init__(self, needs_input_grad: tuple) -> None:
        self.needs_input_grad = needs_input_grad
        self.materialize_grads = True
        self._saved: tuple = ()
        self._versions: tuple = ()
        self._non_differentiable: set = set()

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors for ``backward`` (``saved_tensors``); an in-place write to one
        before backward makes reading them raise, as PyTorch."""
        self._saved = tensors
        self._versions = tuple(None if t is None else t._version for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        for t, v in zip(self._saved, self._versions):
            if t is not None and t._version != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: a tensor of shape {list(t.shape)} saved with "
                    f"save_for_backward is at version {t._version}; expected version {v} "
                    "instead.")
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        """False: ``backward`` gets None (not zeros) for outputs without a gradient."""
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors) -> None:
        raise NotImplementedError("ember.autograd.Function: mark_dirty (a forward that "
                                  "writes its inputs in place) is not supported; return a "
                                  "new tensor instead")


class _FunctionOp:
    """The Node's op for one ``apply``: its vjp calls the user's ``backward``."""

    keeps_inputs = True   # (backward reads ctx.saved_tensors, not the Node's inputs)
    custom_function = True   # (a trace cannot compile its backward: trace.py)
    saves_out = False
    saves_any = False
    needs_saved = None

    def __init__(self, cls, ctx: FunctionCtx, positions: list[int], nargs: int) -> None:
        self.name = f"{cls.__name__}Backward"
        self.cls, self.ctx, self.positions, self.nargs = cls, ctx, positions, nargs

    @staticmethod
    def saves_input(i: int) -> bool:
        return False

    def vjp(self, g, out, *inputs):
        ctx = self.ctx
        if g is None and ctx.materialize_grads:
            g = out.new_zeros(out.shape)
        grads = self.cls.backward(ctx, g)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) < self.nargs:   # PyTorch allows dropping trailing Nones
            grads = grads + (None,) * (self.nargs - len(grads))
        elif len(grads) > self.nargs and any(x is not None for x in grads[self.nargs:]):
            raise RuntimeError(f"function {self.name} returned an incorrect number of "
                               f"gradients (expected {self.nargs}, got {len(grads)})")
        out_grads = []
        for i, t in zip(self.positions, inputs):
            gi = grads[i]
            if gi is not None and tuple(gi.shape) != tuple(t.shape):
                raise RuntimeError(f"Function {self.name} returned an invalid gradient at "
                                   f"index {i} - got {list(gi.shape)} but expected shape "
                                   f"compatible with {list(t.shape)}")
            out_grads.append(gi)
        return tuple(out_grads)


class Function:
    """Base class of custom differentiable operations (see the module docstring)."""

    @staticmethod
    def forward(ctx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method "
                                  "for your custom autograd.Function to use it with "
                                  "backward mode AD.")

    vjp = backward

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        from ember.tensor import Tensor

        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        new_style = cls.setup_context is not Function.setup_context
        with no_grad():
            if new_style:
                output = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args, **kwargs)
        if not (any(needs) and autograd.is_grad_enabled()):
            return output
        outs = output if isinstance(output, tuple) else (output,)
        differentiable = [k for k, o in enumerate(outs) if isinstance(o, Tensor)
                          and o.is_floating_point() and id(o) not in ctx._non_differentiable]
        if len(differentiable) != 1:
            raise NotImplementedError(
                f"ember.autograd.Function: {cls.__name__}.forward returns "
                f"{len(differentiable)} differentiable tensors; one is supported (mark the "
                "others with ctx.mark_non_differentiable)")
        k = differentiable[0]
        out = outs[k]
        if out._base is not None or any(out is a for a in args):
            out = out.detach()   # an input (or a view) returned as is: a tensor of its own
        op = _FunctionOp(cls, ctx, positions, len(args))
        saved = Unsaved.output(out._data, out._device, out._vc)
        inputs = tuple(args[i] for i in positions)
        out._rg = True
        out._node = Node(op, inputs, {}, saved)
        if k == 0 and not isinstance(output, tuple):
            return out
        return tuple(out if j == k else o for j, o in enumerate(outs))


def once_differentiable(backward):
    """``backward`` runs without recording (its result cannot be differentiated again)."""
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with no_grad():
            return backward(ctx, *grads)
    return wrapper
