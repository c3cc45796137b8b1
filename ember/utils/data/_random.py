"""Random draws for samplers and loaders, from a ``generator=`` argument or ember's own.

Every random choice of the data pipeline (a shuffled order, a split, a worker's base seed)
starts from one 63-bit integer drawn with ``ember.randint(..., generator=generator)``; a
NumPy generator seeded from it draws the rest (a permutation of a million indices is one
NumPy call). So ``ember.manual_seed`` makes every order reproducible, and a seeded
``generator`` gives the same order whatever ember's global generator did before.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_TOP = (1 << 63) - 1


def seed_from(generator: Any = None) -> int:
    """One random integer in [0, 2**63 - 1) drawn from ``generator`` (an
    ``ember.Generator``; None: ember's global generator)."""
    import ember
    return int(ember.randint(0, _TOP, (1,), generator=generator).item())


def numpy_rng(generator: Any = None) -> np.random.Generator:
    """A NumPy generator seeded by one draw from ``generator`` (see ``seed_from``)."""
    return np.random.default_rng(seed_from(generator))
