"""``skip_init``: build a module without running its parameter initialization, as
``torch.nn.utils.skip_init`` (its parameters hold unspecified values until set).

>>> m = nn.utils.skip_init(nn.Linear, 5, 1)
>>> m.weight.shape
ember.Size([1, 5])
"""
from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ember.nn.module import Module

__all__ = ["skip_init"]

_LOCK = threading.RLock()
_SKIPPING: set[int] = set()   # threads constructing a module under skip_init

# ember has no "meta" device to build on (torch's way), so ember.nn.init's in-place
# initializers return their tensor untouched while this thread runs the constructor.
_INITIALIZERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "eye_", "dirac_",
                 "orthogonal_", "sparse_", "zeros_", "ones_", "kaiming_uniform_",
                 "kaiming_normal_", "xavier_uniform_", "xavier_normal_")


def _skipping(fn):
    def wrapper(tensor, *args: Any, **kwargs: Any):
        if threading.get_ident() in _SKIPPING:
            return tensor
        return fn(tensor, *args, **kwargs)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


@contextmanager
def _no_init() -> Iterator[None]:
    from ember.nn import init
    with _LOCK:
        originals = {name: getattr(init, name) for name in _INITIALIZERS}
        for name, fn in originals.items():
            if not hasattr(fn, "__wrapped__"):
                setattr(init, name, _skipping(fn))
        _SKIPPING.add(threading.get_ident())
    try:
        yield
    finally:
        with _LOCK:
            _SKIPPING.discard(threading.get_ident())
            if not _SKIPPING:
                for name, fn in originals.items():
                    setattr(init, name, getattr(fn, "__wrapped__", fn))


def skip_init(module_cls: type, *args: Any, **kwargs: Any) -> Module:
    """``module_cls(*args, **kwargs)`` without initializing its parameters (the class
    must take a ``device`` argument, as torch requires).

    Buffers keep the values their constructor writes; the initializers skipped are the
    ``ember.nn.init`` functions the constructor calls through ``ember.nn.init``.
    """
    if not (isinstance(module_cls, type) and issubclass(module_cls, Module)):
        raise RuntimeError(f"Expected a Module; got {module_cls}")
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    kwargs["device"] = kwargs.pop("device", "cpu")
    with _no_init():
        return module_cls(*args, **kwargs)
