"""``torch.jit``'s names, for programs written against them.

ember has no TorchScript. What TorchScript is used for, running a function or module as
compiled code, ``ember.compile`` does: ``script`` and ``trace`` compile (a module in
place, so it keeps its type, ``state_dict`` keys and parameters); the annotations
TorchScript reads (``ignore``, ``unused``, ``export``, ``annotate``, ``Final``,
``Attribute``) leave the Python as it is; ``is_scripting()`` and ``is_tracing()`` are
False, so a model takes its eager branches, which ember records. Unlike
``torch.jit.trace``, a traced function stays correct for inputs that take another branch:
ember guards on what the trace depended on.

>>> import ember
>>> f = ember.jit.script(lambda x: x * 2 + 1)
>>> f(ember.ones(2))
tensor([3., 3.])
"""
from __future__ import annotations

import typing
import warnings
from typing import Any, Callable

__all__ = ["script", "trace", "trace_module", "script_if_tracing", "is_scripting",
           "is_tracing", "ignore", "unused", "export", "interface", "annotate", "Final",
           "Attribute", "isinstance", "fork", "wait", "Future", "save", "load", "freeze",
           "optimize_for_inference", "enable_onednn_fusion", "onednn_fusion_enabled",
           "ScriptModule", "ScriptFunction", "script_method", "TracerWarning"]

Final = typing.Final
_builtin_isinstance = isinstance


class TracerWarning(Warning):
    """torch.jit's warning category (programs filter it); ember never issues it."""


def _compiled(obj: Any) -> Any:
    """``obj`` compiled: a module in place (returned itself), a function wrapped."""
    from ember.nn.module import Module
    from ember.tracer.compile import compile as _compile
    if _builtin_isinstance(obj, type):
        return obj          # a scripted class: its methods run as written
    if _builtin_isinstance(obj, Module):
        obj.compile()
        return obj
    if not callable(obj):
        raise RuntimeError(f"jit: cannot compile an object of type {type(obj).__name__}")
    return _compile(obj)


def script(obj: Any = None, optimize: Any = None, _frames_up: int = 0, _rcb: Any = None,
           example_inputs: Any = None) -> Any:
    """``torch.jit.script``: ``obj`` (a function or module) compiled by ``ember.compile``.

    >>> m = ember.jit.script(ember.nn.Linear(3, 2)); list(m.state_dict())
    ['weight', 'bias']
    """
    if optimize is not None:
        warnings.warn("`optimize` is deprecated and has no effect", DeprecationWarning,
                      stacklevel=2)
    return _compiled(obj)


def trace(func: Any, example_inputs: Any = None, optimize: Any = None,
          check_trace: bool = True, check_inputs: Any = None, check_tolerance: float = 1e-5,
          strict: bool = True, _force_outplace: bool = False,
          _module_class: Any = None, _compilation_unit: Any = None,
          example_kwarg_inputs: dict | None = None, _store_inputs: bool = True) -> Any:
    """``torch.jit.trace``: ``func`` compiled, then run once on the example inputs (as
    tracing runs it: a module in training mode updates its batch-norm statistics).

    >>> f = ember.jit.trace(lambda x: x.relu(), ember.ones(2)); f(-ember.ones(2))
    tensor([0., 0.])
    """
    compiled = _compiled(func)
    if example_kwarg_inputs is not None:
        compiled(**example_kwarg_inputs)
    elif example_inputs is not None:
        compiled(*(example_inputs if _builtin_isinstance(example_inputs, tuple)
                   else (example_inputs,)))
    return compiled


def trace_module(mod: Any, inputs: dict, **kwargs: Any) -> Any:
    """``torch.jit.trace_module``: the module compiled, each method run once on its
    inputs (``{"forward": example}``)."""
    compiled = _compiled(mod)
    for name, args in inputs.items():
        method = compiled if name == "forward" else getattr(compiled, name)
        method(*(args if _builtin_isinstance(args, tuple) else (args,)))
    return compiled


def script_if_tracing(fn: Callable) -> Callable:
    """The function itself (ember never traces by TorchScript)."""
    return fn


def is_scripting() -> bool:
    """False: ember runs the Python (torch.jit.is_scripting)."""
    return False


def is_tracing() -> bool:
    """False: ember's tracing records what the Python does (torch.jit.is_tracing)."""
    return False


def _decorator(fn: Any = None, **_: Any) -> Any:
    """``@name`` and ``@name(...)``: the function unchanged."""
    if fn is None or not callable(fn):
        return lambda f: f
    return fn


ignore = unused = export = interface = script_method = _decorator
# ``@torch.jit._overload_method`` / ``_overload``: TorchScript's type overloads
# (torchvision's densenet): the Python body is what runs
_overload_method = _overload = _decorator


def annotate(the_type: Any, the_value: Any) -> Any:
    """The value (torch.jit.annotate tells TorchScript its type)."""
    return the_value


def Attribute(value: Any, type: Any = None) -> Any:  # noqa: N802,A002  (torch's names)
    """The value (torch.jit.Attribute declares a ScriptModule attribute's type)."""
    return value


def isinstance(obj: Any, target_type: Any) -> bool:  # noqa: A001  (torch's name)
    """``isinstance`` that also takes ``List[int]``-style containers, checked element by
    element (torch.jit.isinstance).

    >>> ember.jit.isinstance([1, 2], typing.List[int]), ember.jit.isinstance({}, dict)
    (True, True)
    """
    origin = typing.get_origin(target_type)
    if origin is None:
        return target_type is Any or _builtin_isinstance(obj, target_type)
    args = typing.get_args(target_type)
    if origin is typing.Union:
        return any(isinstance(obj, a) for a in args)
    if not _builtin_isinstance(obj, origin):
        return False
    if origin in (list, set, frozenset) and args:
        return all(isinstance(v, args[0]) for v in obj)
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return all(isinstance(v, args[0]) for v in obj)
        return len(obj) == len(args) and all(isinstance(v, a) for v, a in zip(obj, args))
    if origin is dict and args:
        return all(isinstance(k, args[0]) and isinstance(v, args[1]) for k, v in obj.items())
    return True


class Future:
    """What ``fork`` returns: the call already made (ember runs ops one after another)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def wait(self) -> Any:
        return self._value

    def value(self) -> Any:
        return self._value

    def done(self) -> bool:
        return True


def fork(func: Callable, *args: Any, **kwargs: Any) -> Future:
    """``torch.jit.fork``: ``func(*args, **kwargs)``, run now, as a ``Future``."""
    return Future(func(*args, **kwargs))


def wait(future: Future) -> Any:
    """``torch.jit.wait``: the forked call's result."""
    return future.wait()


def save(m: Any, f: Any, _extra_files: dict | None = None) -> None:
    """``torch.jit.save``: the module pickled with ``ember.save`` (its compiled code is
    not kept: ``load`` compiles it again)."""
    from ember.serialization import save as _save
    _save(m, f)


def load(f: Any, map_location: Any = None, _extra_files: dict | None = None) -> Any:
    """``torch.jit.load``: what ``save`` wrote, a module compiled again."""
    from ember.nn.module import Module
    from ember.serialization import load as _load
    obj = _load(f, map_location=map_location, weights_only=False)
    return _compiled(obj) if _builtin_isinstance(obj, Module) else obj


def freeze(mod: Any, preserved_attrs: Any = None, optimize_numerics: bool = True) -> Any:
    """The module itself (compiled code already treats its parameters as inputs)."""
    return mod


def optimize_for_inference(mod: Any, other_methods: Any = None) -> Any:
    """The module itself."""
    return mod


_onednn = False


def enable_onednn_fusion(enabled: bool) -> None:
    """Kept and reported only (ember generates its own kernels)."""
    global _onednn
    _onednn = bool(enabled)


def onednn_fusion_enabled() -> bool:
    return _onednn


_LATE: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    # Made on first use: nn imports much of ember, which imports this module.
    if name in ("ScriptModule", "RecursiveScriptModule", "TopLevelTracedModule"):
        if "ScriptModule" not in _LATE:
            from ember.nn.module import Module

            class ScriptModule(Module):
                """An nn.Module (old-style ``class M(jit.ScriptModule)`` with
                ``@jit.script_method`` methods runs as written); a plain module is
                not one, as in torch."""
            _LATE["ScriptModule"] = ScriptModule
        return _LATE["ScriptModule"]
    if name == "ScriptFunction":
        from ember.tracer.compile import CompiledFunction
        return CompiledFunction
    raise AttributeError(f"module 'ember.jit' has no attribute {name!r}")
