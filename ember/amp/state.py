"""The autocast state of this thread, read on the hot path of matmul (no imports, so
``ember.tensor`` can import it). ``modes`` maps a device type to the dtype matmul-like
ops compute in there; it is empty outside ``ember.amp.autocast``."""
from __future__ import annotations

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
