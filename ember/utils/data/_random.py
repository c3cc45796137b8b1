"""Random draws for samplers and loaders, from a ``generator=`` argument or ember's own.

Every random choice of the data pipeline (a shuffled order, a split, a worker's base seed)
starts from one 63-bit integer drawn with ``ember.randint(..., generator=generator)``; a
NumPy generator seeded from it draws the rest (a permutation of a million indices is one
NumPy call). So ``ember.manual_seed`` makes every order reproducible, and a seeded
``generator`` gives the same order whatever ember's global generator did before.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

_TOP = (1 << 63) - 1


def seed_from(generator: Any = None) -> int:
    """One random integer in [0, 2**63 - 1) drawn from ``generator``.

    ``generator`` may be None (ember's global generator), anything ``ember.randint``
    accepts as ``generator=`` (``ember.Generator``), or an object with NumPy's
    ``integers(low, high)`` method. Anything else falls back to the global generator.
    """
    import ember
    if generator is not None:
        if _randint_takes_generator():
            return int(ember.randint(0, _TOP, (1,), generator=generator).item())
        integers = getattr(generator, "integers", None)
        if callable(integers):
            return int(integers(0, _TOP))
    return int(ember.randint(0, _TOP, (1,)).item())


def numpy_rng(generator: Any = None) -> np.random.Generator:
    """A NumPy generator seeded by one draw from ``generator`` (see ``seed_from``)."""
    return np.random.default_rng(seed_from(generator))


_TAKES: list[bool] = []


def _randint_takes_generator() -> bool:
    if not _TAKES:
        import ember
        try:
            params = inspect.signature(ember.randint).parameters
        except (TypeError, ValueError):
            params = {}
        _TAKES.append("generator" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()))
    return _TAKES[0]
