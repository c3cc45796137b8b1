"""``ember.amp.GradScaler``: loss scaling for float16 training, as ``torch.amp.GradScaler``.

``scale(loss)`` multiplies the loss by the scale, so small float16 gradients don't
underflow; ``step(optimizer)`` unscales the gradients (unless ``unscale_`` already did),
skips the step when any is inf or NaN, and ``update()`` halves the scale after such a
step or doubles it after ``growth_interval`` clean ones. On "cuda" without a GPU it
warns and is disabled (``scale`` returns the loss, ``step`` just steps), as PyTorch's.

The scale, the count of clean steps and the inf flag are 0-dim tensors updated in place,
as PyTorch keeps them: a compiled training step reads them as tensors (a Python float
would be frozen into its code and change every few steps); it splits only where
``step`` decides to skip, as PyTorch's does.

>>> scaler = ember.amp.GradScaler("cpu")
>>> scaler.scale(loss).backward()
>>> scaler.step(opt); scaler.update()
"""
from __future__ import annotations

import warnings

from ember.devices import is_cuda_available

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Dynamic loss scaling (see the module docstring)."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        self._device = device
        self._enabled = bool(enabled)
        if self._enabled and device == "cuda":
            if not is_cuda_available():
                warnings.warn("ember.cuda.amp.GradScaler is enabled, but CUDA is not "
                              "available.  Disabling.", stacklevel=2)
                self._enabled = False
        if growth_factor <= 1.0:
            raise ValueError("The growth factor must be > 1.0.")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError("The backoff factor must be < 1.0.")
        self._init_scale = float(init_scale)
        self._init_growth_tracker = 0
        self._scale = None            # 0-dim float32, made on the first loss's device
        self._growth_tracker = None   # 0-dim int32: clean steps since the last change
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._per_optimizer: dict[int, dict] = {}

    def _lazy_init(self, device) -> None:
        from ember import full
        from ember.dtypes import float32, int32
        self._scale = full((), self._init_scale, dtype=float32, device=device)
        self._growth_tracker = full((), self._init_growth_tracker, dtype=int32, device=device)

    # ---- scaling ------------------------------------------------------------------------
    def scale(self, outputs):
        """``outputs`` (a tensor, or lists/tuples/dicts of them) times the scale."""
        if not self._enabled:
            return outputs
        from ember.tensor import Tensor
        if isinstance(outputs, Tensor):
            if self._scale is None:
                self._lazy_init(outputs.device)
            return outputs * self._scale.to(outputs.device)
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if isinstance(outputs, dict):
            return {k: self.scale(v) for k, v in outputs.items()}
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by the scale, in place
        (before clipping them), and note whether any is inf or NaN."""
        if not self._enabled:
            return
        st = self._state(optimizer)
        if st["stage"] is _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since "
                               "the last update().")
        if st["stage"] is _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        if self._scale is None:
            raise AssertionError("Attempted unscale_ but _scale is None.  This may indicate "
                                 "your script did not use scaler.scale(loss or outputs) "
                                 "earlier in the iteration.")
        from ember import no_grad, zeros
        from ember.dtypes import float32, float64
        with no_grad():
            # (the reciprocal in float64, as PyTorch: exact for the powers of 2 it holds)
            inv = self._scale.to(float64).reciprocal().to(float32)
            found = zeros((), dtype=float32, device=self._scale.device)
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    p.grad.mul_(inv.to(p.grad.dtype))
                    found.logical_or_(~p.grad.isfinite().all())   # (stays float32)
        st["found_inf"], st["stage"] = found, _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()`` unless the unscaled gradients hold inf or NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        st = self._state(optimizer)
        if st["stage"] is _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st["stage"] is _READY:
            self.unscale_(optimizer)
        # One value read: the skip is Python control flow (a compiled step splits here).
        result = None if st["found_inf"].item() else optimizer.step(*args, **kwargs)
        st["stage"] = _STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """Back off after a skipped step, grow after ``growth_interval`` clean ones (in
        place, as ``torch._amp_update_scale_``); or set ``new_scale`` (a float or a
        0-dim tensor)."""
        if not self._enabled or self._scale is None:
            return
        from ember import no_grad, where
        from ember.tensor import Tensor
        with no_grad():
            if new_scale is not None:
                if isinstance(new_scale, Tensor):
                    self._scale.copy_(new_scale.reshape(()))
                else:
                    self._scale.fill_(float(new_scale))
            else:
                found = [s["found_inf"] for s in self._per_optimizer.values()
                         if "found_inf" in s]
                if not found:
                    raise AssertionError("No inf checks were recorded prior to update.")
                inf = found[0]
                for f in found[1:]:
                    inf = inf + f.to(inf.device)
                inf = inf > 0
                clean = self._growth_tracker + 1
                grow = clean == self._growth_interval
                grown = self._scale * self._growth_factor
                grown = where(grow & grown.isfinite(), grown, self._scale)
                self._scale.copy_(where(inf, self._scale * self._backoff_factor, grown))
                self._growth_tracker.copy_(where(inf | grow, 0, clean))
        self._per_optimizer.clear()

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY})

    # ---- settings and state ----------------------------------------------------------------
    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else self._scale.item()

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def _get_growth_tracker(self) -> int:
        if self._growth_tracker is None:
            return self._init_growth_tracker
        return int(self._growth_tracker.item())

    def state_dict(self) -> dict:
        """The scale and growth settings (empty when disabled), as PyTorch's."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was "
                               "saved from a disabled instance of GradScaler.")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._scale is not None:
            self._scale.fill_(self._init_scale)
            self._growth_tracker.fill_(self._init_growth_tracker)
