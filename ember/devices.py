"""Devices and the array-module switch: "cpu" runs on NumPy, "cuda" on CuPy."""
from __future__ import annotations

import numpy as np

_cupy = None
_cupy_error: str | None = None


def _load_cupy():
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                _cupy_error = "CuPy is installed but sees no CUDA device"
            else:
                _cupy = cupy
        except ImportError:
            _cupy_error = "CuPy is not installed (pip install 'ember[cuda]')"
        except Exception as e:  # driver missing, no device, ...
            _cupy_error = f"CuPy could not reach a CUDA device: {e}"
    return _cupy


class Device:
    """Where a tensor lives: ``Device("cpu")`` or ``Device("cuda", 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: str | Device = "cpu", index: int | None = None) -> None:
        if isinstance(type, Device):
            type, index = type.type, type.index
        if ":" in type:
            type, idx = type.split(":", 1)
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        self.type = type
        self.index = index if type == "cuda" else None

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (RuntimeError, ValueError):   # ``device == "auto"`` (cleanrl): not equal
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))


    def __enter__(self) -> Device:
        """``with ember.device("cuda"):`` makes factory functions default to it."""
        _DEFAULT_STACK.append(_DEFAULT[0])
        _DEFAULT[0] = CPU if self == CPU else self   # (CPU itself: compiled keys test ``is``)
        return self

    def __exit__(self, *exc) -> None:
        _DEFAULT[0] = _DEFAULT_STACK.pop()


CPU = Device("cpu")
_DEFAULT = [CPU]           # where factory functions put tensors given no device
_DEFAULT_STACK: list = []  # the defaults that ``with device:`` blocks replaced


def set_default_device(device) -> None:
    """Make factory functions (zeros, randn, tensor, arange, ...) create tensors on
    ``device`` when none is given; ``None`` goes back to the CPU (torch's function).

    >>> ember.set_default_device("cpu")
    >>> ember.zeros(2).device
    device(type='cpu')
    """
    d = CPU if device is None else as_device(device)
    _DEFAULT[0] = CPU if d == CPU else d   # (CPU itself: compiled keys test ``is``)


def get_default_device() -> Device:
    """Where factory functions create tensors given no device (torch's function)."""
    d = _DEFAULT[0]
    return Device("cuda", 0) if d.type == "cuda" and d.index is None else d


def factory_device(device) -> Device:
    """``device`` as a Device, or the default device when it is None."""
    return _DEFAULT[0] if device is None else as_device(device)


def as_device(d) -> Device:
    if d is None:
        return CPU
    if isinstance(d, Device):
        return d
    if isinstance(d, int):
        return Device("cuda", d)
    return Device(d)


def array_module(device: Device):
    """NumPy for the CPU, CuPy for CUDA; a clear error when CUDA can't be had."""
    if device.type == "cpu":
        return np
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(f"device '{device}' was asked for but {_cupy_error}")
    return cp


def add_at(xp, out, index, values) -> None:
    """``out[index] += values`` with repeated indices summed (NumPy's and CuPy's ``add.at``).

    CuPy 14 deprecates ``cupyx.scatter_add`` for ``cupy.add.at``; CuPy before 13 has only
    the former."""
    at = getattr(xp.add, "at", None)
    if at is not None:
        at(out, index, values)
    else:   # CuPy < 13
        import cupyx
        cupyx.scatter_add(out, index, values)


def device_of_array(a) -> Device:
    if isinstance(a, np.ndarray):
        return CPU
    return Device("cuda", a.device.id)


def is_cuda_available() -> bool:
    return _load_cupy() is not None


def device_count() -> int:
    cp = _load_cupy()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()
