"""``ember.cuda``: the GPU, as ``torch.cuda`` offers it (through CuPy).

>>> device = ember.device("cuda" if ember.cuda.is_available() else "cpu")
>>> ember.cuda.synchronize()      # before reading a clock around GPU work
"""
from __future__ import annotations

import os

from ember.ops import random as _random
from ember.devices import array_module, as_device
from ember.devices import device_count  # noqa: F401  (the public API)
from ember.devices import is_cuda_available as is_available  # noqa: F401


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


def get_device_capability(device=None) -> tuple[int, int]:
    """The GPU's compute capability, e.g. ``(9, 0)`` for an H100."""
    cp, index = _cupy(device)
    cc = cp.cuda.Device(index).compute_capability   # "90"
    return int(cc[:-1]), int(cc[-1])


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Does the GPU compute in bfloat16 (compute capability 8.0 or newer)? False
    without a GPU, as in PyTorch."""
    if not is_available():
        return False
    return get_device_capability()[0] >= 8


# ---- random numbers: the CUDA default generators ----------------------------------------
# As in PyTorch, seeding needs no GPU (the seed is kept for when one is used).

def manual_seed(seed: int) -> None:
    """Seed the CUDA default generator (``ember.manual_seed`` seeds every device's)."""
    _random.seed_cuda(seed)


manual_seed_all = manual_seed


def seed() -> None:
    """Seed the CUDA default generator from the system's entropy."""
    _random.seed_cuda(int.from_bytes(os.urandom(8), "little") >> 1)


seed_all = seed


def initial_seed() -> int:
    """The seed of the CUDA default generator."""
    return _random.cuda_default(0).initial_seed()


def get_rng_state(device="cuda"):
    """The CUDA generator's state (seed and draws so far), a uint8 tensor."""
    return _random.cuda_default(as_device(device).index).get_state()


def set_rng_state(new_state, device="cuda") -> None:
    """Restore a CUDA generator's state from ``get_rng_state``."""
    _random.cuda_default(as_device(device).index).set_state(new_state)


def get_rng_state_all() -> list:
    return [get_rng_state()]


def set_rng_state_all(new_states) -> None:
    for state in new_states:
        set_rng_state(state)


def __getattr__(name: str):
    if name == "default_generators":   # one per GPU ember uses: the first
        return (_random.cuda_default(0),)
    raise AttributeError(f"module 'ember.cuda' has no attribute '{name}'")


from ember.cuda import amp  # noqa: E402,F401  (ember.cuda.amp.autocast, GradScaler)
