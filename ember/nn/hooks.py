"""Module hooks: what ``Module.__call__`` does when a module has any (PyTorch's
``_call_impl``), and the full backward hooks.

Forward pre-hooks ``hook(module, args)`` (``with_kwargs``: ``hook(module, args, kwargs)``)
run before ``forward`` and may return replacement arguments; forward hooks
``hook(module, args, output)`` (``with_kwargs``: ``hook(module, args, kwargs, output)``)
run after it and may return a replacement output; ``always_call`` hooks also run when
``forward`` raised.

Full backward hooks are tensor gradient hooks (``ember/autograd_hooks.py``) on identity
views placed around the module: each tensor input that requires grad and each output
tensor goes through a ``reshape`` to its own shape, so it gets its own tape node.
``hook(module, grad_input, grad_output)`` runs once the input gradients have arrived and
may return replacement input gradients; ``pre_hook(module, grad_output)`` runs when the
output gradient arrives and may replace it. Both are exact for the usual module with
one output tensor and one input that needs a gradient. With several outputs, each
output's gradient is seen as it arrives (the others None at that moment); with several
inputs needing gradients, the hook runs when the last one arrives, and replacing the
input gradients then raises NotImplementedError (the earlier ones have already gone on).

Backward hooks reach ``__call__`` through two internal forward hooks (one pre-hook that
wraps the inputs, one forward hook that wraps the output, kept after the user's hooks as
PyTorch orders them), re-inserted whenever a backward hook is added or removed. So every
hook a module has shows in ``_forward_pre_hooks``/``_forward_hooks``, the dicts that
compiled functions guard: adding or removing any hook recompiles, and a trace that would
wrap tensors for backward hooks runs eagerly (the hooks are Python code run by backward).

>>> seen = []
>>> layer = nn.Linear(3, 2)
>>> h = layer.register_forward_hook(lambda m, args, out: seen.append(out.shape))
>>> _ = layer(ember.randn(4, 3)); seen
[ember.Size([4, 2])]
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any

from ember.autograd_hooks import RemovableHandle
from ember.dispatch import dispatch
from ember.tensor import Tensor


def add_hook(module, registry: str, hook, prepend: bool, flags: dict) -> RemovableHandle:
    """Register a forward (pre-)hook with its flags; the flag dicts are made when a flag is
    first set."""
    from ember.nn.module import _Registry
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    d = module.__dict__
    for name, on in flags.items():
        if on and name not in d:
            object.__setattr__(module, name, _Registry())
    hooks = d[registry]
    handle = RemovableHandle(hooks, extra_dict=[d[n] for n in flags if n in d])
    for name, on in flags.items():
        if on:
            d[name][handle.id] = True
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    else:
        wrappers = d.get("_backward_wrapper_ids")
        if wrappers:   # the backward hooks' wrappers stay last
            hooks.move_to_end(wrappers[0 if registry == "_forward_pre_hooks" else 1])
    return handle


class _BackwardHookHandle(RemovableHandle):
    """Removing a backward hook also re-inserts (or drops) the module's wrappers."""

    def __init__(self, hooks: dict, module) -> None:
        super().__init__(hooks)
        self.module_ref = weakref.ref(module)

    def remove(self) -> None:
        super().remove()
        module = self.module_ref()
        if module is not None:
            _install_wrappers(module)


def add_backward_hook(module, registry: str, hook, prepend: bool) -> RemovableHandle:
    """Register a full backward (pre-)hook; see the module docstring."""
    from ember.nn.module import _Registry
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    d = module.__dict__
    if registry not in d:
        object.__setattr__(module, registry, _Registry())
    hooks = d[registry]
    handle = _BackwardHookHandle(hooks, module)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    _install_wrappers(module)
    return handle


def _install_wrappers(module) -> None:
    """(Re-)insert fresh wrapper hooks, under new ids, when the module has backward hooks;
    drop them when it has none."""
    d = module.__dict__
    old = d.get("_backward_wrapper_ids")
    if old:
        d["_forward_pre_hooks"].pop(old[0], None)
        d["_forward_hooks"].pop(old[1], None)
    if not (d.get("_backward_hooks") or d.get("_backward_pre_hooks")):
        object.__setattr__(module, "_backward_wrapper_ids", None)
        return
    state = [None]   # this call's BackwardHook, from the pre-hook to the forward hook

    def wrap_inputs(mod, args):
        state[0] = BackwardHook(mod)
        return state[0].setup_input_hook(args)

    def wrap_outputs(mod, args, output):
        bw, state[0] = state[0], None
        return None if bw is None else bw.setup_output_hook(output)

    pre_id, post_id = RemovableHandle._next_id, RemovableHandle._next_id + 1
    RemovableHandle._next_id += 2
    d["_forward_pre_hooks"][pre_id] = wrap_inputs
    d["_forward_hooks"][post_id] = wrap_outputs
    object.__setattr__(module, "_backward_wrapper_ids", (pre_id, post_id))


def call_with_hooks(module, args: tuple, kwargs: dict) -> Any:
    """``module(*args, **kwargs)`` with its hooks (PyTorch's order and rules)."""
    d = module.__dict__
    pre_kwargs = d.get("_forward_pre_hooks_with_kwargs", ())
    with_kwargs = d.get("_forward_hooks_with_kwargs", ())
    always = d.get("_forward_hooks_always_called", ())
    for hook_id, hook in list(d["_forward_pre_hooks"].items()):
        if hook_id in pre_kwargs:
            res = hook(module, args, kwargs)
            if res is not None:
                if isinstance(res, tuple) and len(res) == 2:
                    args, kwargs = res
                else:
                    raise RuntimeError("forward pre-hook must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {res}.")
        else:
            res = hook(module, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
    result = None
    called_always = set()
    try:
        result = module._call_forward(args, kwargs)
        for hook_id, hook in list(d["_forward_hooks"].items()):
            if hook_id in always:
                called_always.add(hook_id)
            if hook_id in with_kwargs:
                res = hook(module, args, kwargs, result)
            else:
                res = hook(module, args, result)
            if res is not None:
                result = res
    except Exception:
        for hook_id, hook in list(d["_forward_hooks"].items()):
            if hook_id not in always or hook_id in called_always:
                continue
            try:
                if hook_id in with_kwargs:
                    res = hook(module, args, kwargs, result)
                else:
                    res = hook(module, args, result)
                if res is not None:
                    result = res
            except Exception as e:  # the forward's error is the one to report
                warnings.warn("module forward hook with ``always_call=True`` raised an exception "
                              f"that was silenced as another error was raised in forward: {e}")
        raise
    return result


def _identity(t: Tensor) -> Tensor:
    """A view of ``t`` with a tape node of its own (reshape to the same shape)."""
    return dispatch("reshape", t, shape=tuple(t.shape))


class BackwardHook:
    """One forward call's full backward hooks: collects that call's output and input
    gradients and calls the module's hooks with them."""

    def __init__(self, module) -> None:
        self.module = module
        self.hooks = list(module.__dict__.get("_backward_hooks", {}).values())
        self.pre_hooks = list(module.__dict__.get("_backward_pre_hooks", {}).values())
        self.arrived_inputs = 0
        self.arrived_outputs = 0
        self.n_inputs = 0
        self.input_slots: list[int] = []
        self.grad_inputs: list = []
        self.grad_outputs: list | None = None
        self.n_outputs = 0

    # ---- inputs ---------------------------------------------------------------------
    def setup_input_hook(self, args: tuple) -> tuple:
        self.n_inputs = len(args)
        self.grad_inputs = [None] * len(args)
        out = list(args)
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and a.requires_grad:
                out[i] = _identity(a)
                out[i].register_hook(self._input_hook(i))
                self.input_slots.append(i)
        return tuple(out)

    def _input_hook(self, i: int):
        def hook(grad: Tensor):
            self.grad_inputs[i] = grad
            self.arrived_inputs += 1
            if self.arrived_inputs < len(self.input_slots):
                return None
            given = tuple(self.grad_inputs)
            new = self._call_hooks(given)
            if new is None:
                return None
            changed = [j for j in self.input_slots if new[j] is not given[j]]
            if any(j != i for j in changed):
                raise NotImplementedError(
                    f"{type(self.module).__name__}: a full backward hook returned new input "
                    "gradients for a module with several inputs that need gradients; ember "
                    "delivers those gradients one at a time and the others have gone on")
            return new[i]
        return hook

    def _call_hooks(self, grad_inputs: tuple):
        grad_outputs = tuple(self.grad_outputs or ())
        result = None
        for hook in self.hooks:
            res = hook(self.module, grad_inputs if result is None else result, grad_outputs)
            if res is None:
                continue
            res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
            if len(res) != len(grad_inputs):
                raise RuntimeError(f"Backward hook returned an invalid number of grad_input, "
                                   f"got {len(res)}, but expected {len(grad_inputs)}")
            result = res
        return result

    # ---- outputs --------------------------------------------------------------------
    def setup_output_hook(self, result: Any) -> Any:
        single = isinstance(result, Tensor)
        outputs = [result] if single else list(result) if isinstance(result, tuple) else None
        if outputs is None:
            return result
        self.grad_outputs = [None] * len(outputs)
        self.n_outputs = sum(isinstance(o, Tensor) and o.requires_grad for o in outputs)
        for i, o in enumerate(outputs):
            if isinstance(o, Tensor) and o.requires_grad:
                outputs[i] = _identity(o)
                outputs[i].register_hook(self._output_hook(i))
        return outputs[0] if single else tuple(outputs)

    def _output_hook(self, i: int):
        def hook(grad: Tensor):
            self.grad_outputs[i] = grad
            for pre in self.pre_hooks:
                res = pre(self.module, tuple(self.grad_outputs))
                if res is None:
                    continue
                res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
                if len(res) != len(self.grad_outputs):
                    raise RuntimeError(f"Backward pre hook returned an invalid number of "
                                       f"grad_output, got {len(res)}, but expected "
                                       f"{len(self.grad_outputs)}")
                self.grad_outputs = list(res)
            self.arrived_outputs += 1
            if not self.input_slots and self.arrived_outputs == self.n_outputs and self.hooks:
                # No input needs a gradient: PyTorch calls the hook with None for each.
                warnings.warn("Full backward hook is firing when gradients are computed with "
                              "respect to module outputs since no inputs require gradients. "
                              "See https://docs.pytorch.org/docs/main/generated/torch.nn."
                              "Module.html#torch.nn.Module.register_full_backward_hook for "
                              "more details.", stacklevel=2)
                self._call_hooks((None,) * self.n_inputs)
            return self.grad_outputs[i]
        return hook
