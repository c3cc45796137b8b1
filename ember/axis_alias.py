"""NumPy's ``axis=`` and ``keepdims=`` as names for ``dim=`` and ``keepdim=``, where torch
takes them: ``torch.cat(xs, axis=-1)`` (guided-diffusion's attention pooling),
``x.sum(axis=1, keepdims=True)`` (mamba-minimal's ``generate``), ``x.max(axis=1)``.

torch's argument parser accepts both for its native functions; ember's are Python, so
the ones torch accepts them for are wrapped here once, at import.

>>> ember.cat([ember.ones(1), ember.zeros(1)], axis=0)
tensor([1., 0.])
"""
from __future__ import annotations

import functools
from typing import Callable

# Tensor methods and their top-level forms, and top-level functions without a method,
# whose ``dim`` torch also calls ``axis``
METHODS = ("sum", "mean", "nansum", "nanmean", "max", "min", "amax", "amin", "argmax",
           "argmin", "std", "var", "prod", "cumsum", "cumprod", "logsumexp", "all", "any",
           "median", "nanmedian", "mode", "squeeze", "unsqueeze", "softmax", "log_softmax",
           "sort", "argsort", "topk", "kthvalue", "count_nonzero", "chunk", "unbind")
FUNCTIONS = ("cat", "concat", "concatenate", "stack", "std_mean", "var_mean")


def with_axis(fn: Callable) -> Callable:
    """``fn`` also taking ``axis=`` for ``dim=`` and ``keepdims=`` for ``keepdim=``."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if kwargs:
            for alias, name in (("axis", "dim"), ("keepdims", "keepdim")):
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got both '{name}' and its alias "
                                        f"'{alias}'")
                    kwargs[name] = kwargs.pop(alias)
        return fn(*args, **kwargs)
    return call


def install(ember_module, tensor_class) -> None:
    for name in METHODS:
        method = getattr(tensor_class, name, None)
        if callable(method):
            setattr(tensor_class, name, with_axis(method))
    for name in METHODS + FUNCTIONS:
        fn = getattr(ember_module, name, None)
        if callable(fn):
            setattr(ember_module, name, with_axis(fn))
