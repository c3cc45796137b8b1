"""``ember.accelerator``: the current accelerator, as ``torch.accelerator`` (CUDA is
ember's only one).

>>> device = ember.accelerator.current_accelerator() or ember.device("cpu")
"""
from __future__ import annotations

from ember.devices import Device, as_device
from ember.devices import device_count as _cuda_count
from ember.devices import is_cuda_available


def is_available() -> bool:
    """Is there an accelerator (a CUDA GPU that CuPy reaches)?"""
    return is_cuda_available()


def current_accelerator(check_available: bool = False) -> Device | None:
    """``device(type='cuda')`` where ember can run on CUDA, else None."""
    return Device("cuda") if is_cuda_available() else None


def device_count() -> int:
    """How many accelerators there are (0 without one)."""
    return _cuda_count() if is_cuda_available() else 0


def current_device_index() -> int:
    """The index of the device ``"cuda"`` means: 0 (ember uses the first GPU)."""
    return 0


current_device_idx = current_device_index


def set_device_index(device) -> None:
    """Only device 0 is used by ember: another index is an error."""
    index = device if isinstance(device, int) else (as_device(device).index or 0)
    if index != 0:
        raise RuntimeError("ember uses the first GPU only (device index 0)")


set_device_idx = set_device_index


def synchronize(device=None) -> None:
    """Wait for the accelerator's queued work (nothing to wait for without one)."""
    if is_cuda_available():
        from ember import cuda
        cuda.synchronize(device)
