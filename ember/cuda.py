"""``ember.cuda``: the GPU, as ``torch.cuda`` offers it (through CuPy).

>>> device = ember.device("cuda" if ember.cuda.is_available() else "cpu")
>>> ember.cuda.synchronize()      # before reading a clock around GPU work
"""
from __future__ import annotations

from ember.runtime.device import array_module, as_device
from ember.runtime.device import device_count  # noqa: F401  (the public API)
from ember.runtime.device import is_cuda_available as is_available  # noqa: F401


def _cupy(device=None):
    d = as_device("cuda" if device is None else device)
    if d.type != "cuda":
        raise ValueError(f"Expected a cuda device, but got: {d}")
    return array_module(d), d.index or 0


def synchronize(device=None) -> None:
    """Wait until every kernel queued on the device has finished (``torch.cuda.synchronize``)."""
    cp, index = _cupy(device)
    with cp.cuda.Device(index):
        cp.cuda.runtime.deviceSynchronize()


def current_device() -> int:
    """The index of the device ``"cuda"`` means (always 0: ember uses the first GPU)."""
    _cupy()
    return 0


def get_device_name(device=None) -> str:
    """The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    cp, index = _cupy(device)
    name = cp.cuda.runtime.getDeviceProperties(index)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def manual_seed(seed: int) -> None:
    """Seed the random generators (ember seeds every device's at once)."""
    from ember.ops.random import manual_seed as seed_all
    seed_all(seed)


manual_seed_all = manual_seed
