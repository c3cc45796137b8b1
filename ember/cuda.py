"""``ember.cuda``: is a GPU (through CuPy) available?"""
from ember.runtime.device import device_count, is_cuda_available as is_available  # noqa: F401


def manual_seed(seed: int) -> None:
    from ember.ops.random import manual_seed as seed_all
    seed_all(seed)
