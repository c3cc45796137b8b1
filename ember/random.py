"""``ember.random``: the default generators, as ``torch.random``.

>>> ember.random.manual_seed(0)
>>> state = ember.random.get_rng_state()
>>> a = ember.rand(2); ember.random.set_rng_state(state)
>>> bool((ember.rand(2) == a).all())
True
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from ember.ops import random as _random
from ember.ops.random import Generator, default_generator, initial_seed, manual_seed, seed
from ember.devices import as_device

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed",
           "get_rng_state", "set_rng_state", "fork_rng"]


def get_rng_state():
    """The CPU default generator's state, a uint8 tensor."""
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    """Restore the CPU default generator's state from ``get_rng_state``."""
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices: Iterable | None = None, enabled: bool = True,
             _caller: str = "fork_rng", _devices_kw: str = "devices",
             device_type: str = "cuda") -> Iterator[None]:
    """Draws inside the block leave the CPU generator (and the generators of
    ``devices`` of ``device_type``, all known ones by default) as they were.

    >>> with ember.random.fork_rng():
    ...     ember.manual_seed(1); _ = ember.rand(3)
    """
    if not enabled:
        yield
        return
    gens = [default_generator]
    if device_type == "cuda":
        known = dict(_random._cuda_defaults)
        chosen = known.keys() if devices is None else [
            d if isinstance(d, int) else (as_device(d).index or 0) for d in devices]
        gens += [_random.cuda_default(i) for i in chosen]
    saved = [(g, g._snapshot()) for g in gens]
    cuda_seed = _random._cuda_seed
    try:
        yield
    finally:
        _random._cuda_seed = cuda_seed
        for g, snap in saved:
            g._restore(snap)
