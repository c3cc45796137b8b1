"""The autocast state of this thread, read on the hot path of matmul (no imports, so
``ember.tensor`` can import it). ``modes`` maps a device type to the dtype matmul-like
ops compute in there; it is empty outside ``ember.amp.autocast``."""
from __future__ import annotations

import functools
import threading


class _State(threading.local):
    modes: dict = {}   # device type ("cpu", "cuda") -> DType, for enabled autocast only


state = _State()


def cast_operands(*tensors):
    """The operands of a matmul-like op under autocast: floating tensors (float64
    excepted, as in PyTorch) on an autocast device, in that device's autocast dtype."""
    out = []
    for t in tensors:
        dt = state.modes.get(t.device.type)
        if dt is not None and t.dtype is not dt and t.dtype.is_floating_point \
                and t.dtype.name != "float64":
            t = t.to(dt)
        out.append(t)
    return tuple(out)


def key():
    """What a compiled function's cache key holds of the autocast state."""
    return tuple(sorted((k, v.name) for k, v in state.modes.items()))


def fp32_op(fn):
    """Decorator for ops PyTorch's autocast runs in float32 (the losses): inside
    autocast, their float16/bfloat16 tensor arguments on an autocast device become
    float32 first, so a loss of bfloat16 logits is computed and returned in float32."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if state.modes:
            args = tuple(_to_fp32(a) for a in args)
            kwargs = {k: _to_fp32(v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    return wrapper


def _to_fp32(a):
    from ember.tensor import Tensor
    if isinstance(a, Tensor) and a.device.type in state.modes and a.dtype.itemsize == 2 \
            and a.dtype.is_floating_point:
        from ember.dtypes import float32
        return a.to(float32)
    return a
