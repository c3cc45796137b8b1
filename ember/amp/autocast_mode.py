"""``ember.amp.autocast``: matmul-like ops in a lower precision, as ``torch.autocast``.

Inside ``autocast(device_type, dtype)`` the operands of matmul, ``mm``, ``bmm``,
``F.linear`` and ``F.conv2d`` that live on ``device_type`` and are float32 (or float16 /
bfloat16) are cast to ``dtype`` first, so these ops return ``dtype``. The losses PyTorch
runs in float32 (``cross_entropy``, ``nll_loss``, ``mse_loss``, ``l1_loss``,
``binary_cross_entropy`` and its ``_with_logits`` form) take float32 copies of float16 /
bfloat16 arguments; other ops run in their inputs' types. Gradients flow back through
the casts to float32 weights.

On the CPU the default dtype is bfloat16 (float16 is allowed too), as in PyTorch. On
CUDA it is float16; without a GPU, ``autocast("cuda")`` warns and does nothing, as
PyTorch's does (CPU tensors are never touched by a CUDA autocast).

>>> with ember.amp.autocast("cpu"):
...     y = ember.ones(2, 2) @ ember.ones(2, 2)
>>> y.dtype
ember.bfloat16
"""
from __future__ import annotations

import functools
import warnings

from ember import dtypes
from ember.amp.state import state
from ember.devices import is_cuda_available

_DEFAULT = {"cpu": dtypes.bfloat16, "cuda": dtypes.float16}
_SUPPORTED = {"cpu": (dtypes.bfloat16, dtypes.float16),
              "cuda": (dtypes.float16, dtypes.bfloat16, dtypes.float32)}


def is_autocast_available(device_type: str) -> bool:
    """Does autocast know ``device_type`` ("cpu" or "cuda")?"""
    return device_type in _DEFAULT


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """Is an enabled autocast region active for ``device_type`` in this thread?"""
    return device_type in state.modes


def get_autocast_dtype(device_type: str):
    """The dtype autocast casts to on ``device_type`` (its default when not active)."""
    return state.modes.get(device_type, _DEFAULT.get(device_type))


class autocast:
    """Context manager and decorator: matmul-like ops on ``device_type`` compute in
    ``dtype`` (see the module docstring). ``enabled=False`` turns an outer one off."""

    def __init__(self, device_type: str, dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if device_type not in _DEFAULT:
            raise RuntimeError(f"User specified an unsupported autocast device_type "
                               f"'{device_type}'")
        self.device = device_type
        self.fast_dtype = _DEFAULT[device_type] if dtype is None else dtypes.as_dtype(dtype)
        self._enabled = bool(enabled)
        if self._enabled and self.fast_dtype not in _SUPPORTED[device_type]:
            names = ", ".join(f"ember.{d.name}" for d in _SUPPORTED[device_type])
            warnings.warn(f"In {device_type.upper()} autocast, but the target dtype is not "
                          f"supported. Disabling autocast.\n{device_type.upper()} Autocast only "
                          f"supports dtypes of {names} currently.", stacklevel=2)
            self._enabled = False
        if self._enabled and device_type == "cuda":
            if not is_cuda_available():
                warnings.warn("CUDA is not available. Disabling autocast.", stacklevel=2)
                self._enabled = False

    def __enter__(self) -> "autocast":
        self._prev = state.modes
        modes = dict(state.modes)   # a new dict: an outer region's stays as it was
        if self._enabled:
            modes[self.device] = self.fast_dtype
        else:
            modes.pop(self.device, None)
        state.modes = modes
        return self

    def __exit__(self, *exc) -> None:
        state.modes = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled):
                return fn(*args, **kwargs)
        return wrapper
