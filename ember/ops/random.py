"""Random and creation ops. Random ops are impure: never merged, folded or cached."""
from __future__ import annotations

import copy
import os

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
        self._saved = (_seed, {k: copy.deepcopy(g) for k, g in _generators.items()})
        return self

    def __exit__(self, *exc) -> None:
        global _seed
        _seed, saved = self._saved
        _generators.clear()
        _generators.update(saved)


def generator(xp):
    """The random generator of ``xp``'s device: NumPy's ``Generator`` on the CPU, a
    ``CupyGenerator`` on CUDA."""
    g = _generators.get(xp.__name__)
    if g is None:
        g = _generators[xp.__name__] = (np.random.default_rng(_seed) if xp is np
                                        else CupyGenerator(xp, _seed))
    return g


class CupyGenerator:
    """CuPy's own RandomState holds a cuRAND handle and a lock, so it can't be copied,
    and ``preserved_rng`` must copy. This one's state is two integers, the seed and the
    number of draws so far; each draw reseeds one Philox RandomState from both (Philox
    seeding is free: no generator state to set up)."""

    def __init__(self, cp, seed: int | None) -> None:
        self.cp = cp
        self.seed = (int.from_bytes(os.urandom(8), "little") if seed is None else seed) % (1 << 64)
        self.draws = 0
        self._state = None

    def _next(self):
        if self._state is None:
            self._state = self.cp.random.RandomState(
                0, method=self.cp.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
        self._state.seed((self.seed ^ (self.draws * 0x9E3779B97F4A7C15)) % (1 << 64))
        self.draws += 1
        return self._state

    def __deepcopy__(self, memo) -> "CupyGenerator":
        return copy.copy(self)   # shares the RandomState: every draw reseeds it

    def random(self, shape, dtype):
        return self._next().random_sample(shape, dtype=dtype)

    def standard_normal(self, shape, dtype):
        return self._next().standard_normal(shape, dtype=dtype)

    def integers(self, low, high, shape, dtype):
        return self._next().randint(low, high, shape).astype(dtype)

    def permutation(self, n: int):
        return self._next().permutation(n)


def _rand(xp, shape, dtype, device):
    return generator(xp).random(shape, dtype=dtype.np)


def _randn(xp, shape, dtype, device):
    return generator(xp).standard_normal(shape, dtype=dtype.np)


def _randint(xp, low, high, shape, dtype, device):
    return generator(xp).integers(low, high, shape, dtype=dtype.np)


defop("rand", RANDOM, _rand, impure=True)
defop("randn", RANDOM, _randn, impure=True)
defop("randint", RANDOM, _randint, impure=True)
defop("randperm", RANDOM,
      lambda xp, n, dtype, device: generator(xp).permutation(n).astype(dtype.np), impure=True)
defop("full", CREATION, lambda xp, shape, value, dtype, device: xp.full(shape, value, dtype.np))
defop("arange", CREATION,
      lambda xp, start, end, step, dtype, device: xp.arange(start, end, step, dtype=dtype.np))
