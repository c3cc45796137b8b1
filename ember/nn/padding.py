"""Padding layers: ConstantPad1d/2d/3d, ZeroPad1d/2d/3d, ReflectionPad1d/2d,
ReplicationPad1d/2d/3d, CircularPad1d/2d/3d (``F.pad`` with a fixed ``padding``).

>>> nn.ZeroPad2d((1, 1, 2, 0))(ember.ones(1, 1, 2, 2)).shape
ember.Size([1, 1, 4, 4])
"""
from __future__ import annotations

from ember.nn import functional as F
from ember.nn.module import Module
from ember.tensor import Tensor


class _PadNd(Module):
    _mode = "constant"
    _dims = 2

    def __init__(self, padding) -> None:
        super().__init__()
        if isinstance(padding, int):
            padding = (padding,) * (2 * self._dims)
        self.padding = tuple(padding)
        if len(self.padding) != 2 * self._dims:
            raise ValueError(f"{type(self).__name__}: expected padding of length "
                             f"{2 * self._dims}, got {self.padding}")

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    def __init__(self, padding, value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


def _classes(base, mode: str, prefix: str, dims=(1, 2, 3), value: bool = False):
    out = {}
    for d in dims:
        name = f"{prefix}{d}d"
        attrs = {"_mode": mode, "_dims": d, "__doc__": f"``F.pad(x, padding, {mode!r})`` over "
                 f"the last {d} dim{'s' if d > 1 else ''}."}
        if value is None:   # ZeroPad: a constant pad of 0
            attrs["__init__"] = lambda self, padding: _ConstantPadNd.__init__(self, padding, 0.0)
            attrs["extra_repr"] = lambda self: f"{self.padding}"
        out[name] = type(name, (base,), attrs)
        out[name].__module__ = __name__
    return out


globals().update(_classes(_ConstantPadNd, "constant", "ConstantPad"))
globals().update(_classes(_ConstantPadNd, "constant", "ZeroPad", value=None))
globals().update(_classes(_PadNd, "reflect", "ReflectionPad"))
globals().update(_classes(_PadNd, "replicate", "ReplicationPad"))
globals().update(_classes(_PadNd, "circular", "CircularPad"))

__all__ = [f"{p}{d}d" for p in ("ConstantPad", "ZeroPad", "ReflectionPad", "ReplicationPad",
                                 "CircularPad") for d in (1, 2, 3)]
