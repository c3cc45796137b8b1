"""Random and creation ops. Random ops are impure: never merged, folded or cached."""
from __future__ import annotations

import numpy as np

from ember.ops.registry import CREATION, RANDOM, defop

_generators: dict = {}
_seed = None


def manual_seed(seed: int) -> None:
    """Seed every device's generator (``ember.manual_seed(0)``)."""
    global _seed
    _seed = int(seed)
    _generators.clear()


class preserved_rng:
    """Context manager: random draws inside it leave every generator as it was (the
    compiler runs a plan once while building it; that must not shift the user's stream)."""

    def __enter__(self):
        import copy
        self._saved = (_seed, {k: copy.deepcopy(g) for k, g in _generators.items()})
        return self

    def __exit__(self, *exc) -> None:
        global _seed
        _seed, saved = self._saved
        _generators.clear()
        _generators.update(saved)


def generator(xp):
    g = _generators.get(xp.__name__)
    if g is None:
        g = _generators[xp.__name__] = (np.random.default_rng(_seed) if xp is np
                                        else xp.random.RandomState(_seed))
    return g


def _rand(xp, shape, dtype, device):
    g = generator(xp)
    return g.random(shape, dtype=dtype.np) if xp is np else g.random_sample(shape, dtype=dtype.np)


def _randn(xp, shape, dtype, device):
    return generator(xp).standard_normal(shape, dtype=dtype.np)


def _randint(xp, low, high, shape, dtype, device):
    g = generator(xp)
    if xp is np:
        return g.integers(low, high, shape, dtype=dtype.np)
    return g.randint(low, high, shape).astype(dtype.np)


defop("rand", RANDOM, _rand, impure=True)
defop("randn", RANDOM, _randn, impure=True)
defop("randint", RANDOM, _randint, impure=True)
defop("randperm", RANDOM,
      lambda xp, n, dtype, device: generator(xp).permutation(n).astype(dtype.np), impure=True)
defop("full", CREATION, lambda xp, shape, value, dtype, device: xp.full(shape, value, dtype.np))
defop("arange", CREATION,
      lambda xp, start, end, step, dtype, device: xp.arange(start, end, step, dtype=dtype.np))
