"""``out=``: a function's result written into a tensor the caller gave, as PyTorch's.

``ember.add(a, b, out=c)`` computes ``a + b`` and copies it into ``c`` (cast to ``c``'s
dtype where PyTorch allows the cast), resizing ``c`` when its shape differs (with
PyTorch's warning if ``c`` held elements), and returns ``c``. Forms that return
(values, indices) take a pair of tensors. As in PyTorch, ``out=`` does not record
gradients: with an argument that requires grad it raises.

>>> c = ember.empty(3)
>>> ember.add(ember.ones(3), 1, out=c) is c
True
"""
from __future__ import annotations

import warnings

from ember.autograd import is_grad_enabled, no_grad
from ember.tensor import Tensor


def write_out(name: str, out, result):
    """Copy ``result`` (a tensor, or a tuple of them) into ``out``; returns ``out``."""
    if isinstance(result, tuple):
        if not isinstance(out, (tuple, list)) or len(out) != len(result):
            raise TypeError(f"{name}(): argument 'out' must be a tuple of {len(result)} "
                            f"Tensors, not {type(out).__name__}")
        written = [write_out(name, o, r) for o, r in zip(out, result)]
        return type(result)(*written) if hasattr(result, "_fields") else tuple(written)
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if not isinstance(result, Tensor):
        raise TypeError(f"{name}() does not take out=")
    if is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support "
                           "automatic differentiation, but one of the arguments requires grad.")
    from ember.functions_math import can_cast   # (it imports the functions: not at import)
    if not can_cast(result.dtype, out.dtype):
        raise RuntimeError(f"{name}(): result type {result.dtype.name.capitalize()} can't be "
                           f"cast to the desired output type {out.dtype.name.capitalize()}")
    with no_grad():
        if out.shape != result.shape:
            if out.numel():
                warnings.warn(
                    f"An output with one or more elements was resized since it had shape "
                    f"{list(out.shape)}, which does not match the required output shape "
                    f"{list(result.shape)}. This behavior is deprecated, and in a future "
                    "PyTorch release outputs will not be resized unless they have zero "
                    "elements.", UserWarning, stacklevel=3)
            out.data = result.to(out.dtype, copy=True)   # new memory of the new shape
        else:
            out.copy_(result)
    return out
