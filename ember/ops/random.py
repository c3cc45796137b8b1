"""Random generators and the random and creation ops. Random ops are impure: never
merged, folded or cached.

Every random op takes a ``generator`` attribute: ``None`` draws from the default
generator of the op's device (``ember.default_generator`` on the CPU), a ``Generator``
draws from that one. The generator is read when the op runs, so a compiled plan that
replays the op draws from (and advances) the same generator as eager code does: the same
seed gives the same numbers, eager or compiled.

>>> g = ember.Generator().manual_seed(0)
>>> a = ember.rand(3, generator=g)
>>> g.manual_seed(0); bool((ember.rand(3, generator=g) == a).all())
True
"""
from __future__ import annotations

import os
import weakref

import numpy as np

from ember.ops.registry import CREATION, RANDOM, defop
from ember.devices import Device, array_module, as_device

# PyTorch's default seed (c10's default_rng_seed_val): an unseeded program is
# reproducible from run to run, as it is in PyTorch.
DEFAULT_SEED = 67280421310721
_U64 = 1 << 64

# Every live generator, so that ``preserved_rng`` can put them all back.
_ALL: "weakref.WeakSet[Generator]" = weakref.WeakSet()


def _seed_value(seed) -> int:
    """PyTorch's seed rule: any int in [-2**63, 2**64); negatives wrap to uint64."""
    seed = int(seed)
    if not -(1 << 63) <= seed < _U64:
        raise ValueError("Overflow when unpacking long long")
    return seed % _U64


class Generator:
    """A random number generator for one device, as ``torch.Generator``.

    Pass it as ``generator=`` to ``rand``, ``randn``, ``randint``, ``randperm``,
    ``multinomial``, ``normal``, ``bernoulli`` and the in-place fills; it never touches
    the default generator. Its state is a uint8 tensor (``get_state``/``set_state``).
    On the CPU it is NumPy's PCG64; on CUDA, cuRAND's Philox keyed by (seed, draws).

    >>> g = ember.Generator(device="cpu")
    >>> g.manual_seed(42).initial_seed()
    42
    >>> s = g.get_state(); x = ember.randn(2, generator=g)
    >>> g.set_state(s); bool((ember.randn(2, generator=g) == x).all())
    True
    """

    __slots__ = ("device", "_seed", "_engine", "__weakref__")

    def __init__(self, device="cpu") -> None:
        self.device: Device = as_device(device)
        self._seed = DEFAULT_SEED
        self._engine = None   # made at the first draw (a CUDA one needs CuPy)
        _ALL.add(self)

    def __repr__(self) -> str:
        return f"<ember.Generator device='{self.device}' initial_seed={self._seed}>"

    # ---- seeding ------------------------------------------------------------------------
    def manual_seed(self, seed: int) -> "Generator":
        """Seed it; returns the generator (``g = Generator().manual_seed(0)``)."""
        _untraceable("manual_seed")
        self._seed = _seed_value(seed)
        self._engine = None
        return self

    def seed(self) -> int:
        """Seed it from the operating system's entropy and return that seed."""
        self.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        return self._seed

    def initial_seed(self) -> int:
        """The seed it was last seeded with."""
        return self._seed

    # ---- state as a uint8 tensor ----------------------------------------------------------
    def get_state(self):
        """The generator's state as a uint8 CPU tensor, for ``set_state``."""
        from ember.tensor import from_numpy
        return from_numpy(np.frombuffer(self._state_bytes(), np.uint8).copy())

    def set_state(self, new_state) -> "Generator":
        """Restore a state from ``get_state`` (a uint8 tensor)."""
        from ember.tensor import Tensor
        if not isinstance(new_state, Tensor) or new_state.dtype.name != "uint8":
            raise TypeError("RNG state must be a ember.ByteTensor (a uint8 tensor)")
        _untraceable("set_state")
        raw = new_state.detach().cpu().numpy().tobytes()
        size = sum(n for _, n in (_CPU_LAYOUT if self.device.type == "cpu" else _CUDA_LAYOUT))
        if len(raw) != size:
            raise RuntimeError(f"Expected a {self.device.type} generator state of size {size} "
                               f"but found the input RNG state size to be {len(raw)}")
        self._set_state_bytes(raw)
        return self

    def _state_bytes(self) -> bytes:
        e = self.engine()
        if self.device.type == "cpu":
            s = e.bit_generator.state
            return _pack(_CPU_LAYOUT, state=s["state"]["state"], inc=s["state"]["inc"],
                         has_uint32=s["has_uint32"], uinteger=s["uinteger"], seed=self._seed)
        return _pack(_CUDA_LAYOUT, seed=e.seed, draws=e.draws)

    def _set_state_bytes(self, raw: bytes) -> None:
        if self.device.type == "cpu":
            v = _unpack(_CPU_LAYOUT, raw)
            bg = np.random.PCG64()
            bg.state = {"bit_generator": "PCG64",
                        "state": {"state": v["state"], "inc": v["inc"]},
                        "has_uint32": v["has_uint32"], "uinteger": v["uinteger"]}
            self._seed, self._engine = v["seed"], np.random.Generator(bg)
        else:
            v = _unpack(_CUDA_LAYOUT, raw)
            self._seed, self._engine = v["seed"], None
            self.engine().draws = v["draws"]

    # ---- drawing ------------------------------------------------------------------------
    def engine(self):
        """What draws the numbers: a NumPy ``Generator`` or a ``CupyGenerator``."""
        if self._engine is None:
            if self.device.type == "cpu":
                self._engine = np.random.Generator(np.random.PCG64(self._seed))
            else:
                self._engine = CupyGenerator(self.device, self._seed)
        return self._engine

    def _snapshot(self):
        """Everything needed to put it back (``preserved_rng``); cheap, no tensors."""
        e = self._engine
        if e is None:
            return (self._seed, None)
        if self.device.type == "cpu":
            return (self._seed, e.bit_generator.state)
        return (self._seed, e.draws)

    def _restore(self, snap) -> None:
        self._seed, s = snap
        if s is None:
            self._engine = None
        elif self.device.type == "cpu":
            if self._engine is None:
                self._engine = np.random.Generator(np.random.PCG64())
            self._engine.bit_generator.state = s
        else:
            self.engine().draws = s

    def __reduce__(self):  # pickles with its state (DataLoader workers, checkpoints)
        return (_rebuild, (str(self.device), self._state_bytes()))


# State layouts (little-endian fields and their bytes). CPU, 48 bytes: NumPy's PCG64
# state and increment, its cached 32-bit half, and the seed. CUDA, 16 bytes, as PyTorch's:
# the seed and the number of draws (Philox's offset).
_CPU_LAYOUT = (("state", 16), ("inc", 16), ("has_uint32", 4), ("uinteger", 4), ("seed", 8))
_CUDA_LAYOUT = (("seed", 8), ("draws", 8))


def _pack(layout, **values) -> bytes:
    return b"".join(int(values[name]).to_bytes(size, "little") for name, size in layout)


def _unpack(layout, raw: bytes) -> dict:
    out, at = {}, 0
    for name, size in layout:
        out[name] = int.from_bytes(raw[at:at + size], "little")
        at += size
    return out


def _untraceable(what: str) -> None:
    """Seeding is Python state a trace can't record: a replay would not reseed, so a
    compiled function that seeds runs eagerly (with this reason)."""
    from ember import dispatch
    tracer = dispatch.tracer
    if tracer is not None:
        tracer.fail(f"{what}() on a random generator inside the function: a compiled replay "
                    "would not repeat it")


def _rebuild(device: str, raw: bytes) -> Generator:
    g = Generator(device)
    g._set_state_bytes(raw)
    return g


class CupyGenerator:
    """CuPy's own RandomState holds a cuRAND handle and a lock, so it can't be copied,
    and ``preserved_rng`` must put a state back. This one's state is two integers, the
    seed and the number of draws so far; each draw reseeds one Philox RandomState from
    both (Philox seeding is free: no generator state to set up)."""

    def __init__(self, device: Device, seed: int | None) -> None:
        self.device = device   # CuPy is looked up at the first draw: seeding needs no GPU
        self.seed = (int.from_bytes(os.urandom(8), "little") if seed is None else seed) % _U64
        self.draws = 0
        self._state = None

    def _next(self):
        if self._state is None:
            cp = array_module(self.device)
            self._state = cp.random.RandomState(
                0, method=cp.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
        self._state.seed((self.seed ^ (self.draws * 0x9E3779B97F4A7C15)) % _U64)
        self.draws += 1
        return self._state

    def random(self, shape, dtype):
        return self._next().random_sample(shape, dtype=dtype)

    def standard_normal(self, shape, dtype):
        return self._next().standard_normal(shape, dtype=dtype)

    def integers(self, low, high, shape, dtype):
        return self._next().randint(low, high, shape).astype(dtype)

    def permutation(self, n: int):
        return self._next().permutation(n)


# ---- the default generators ---------------------------------------------------------------

default_generator = Generator("cpu")
_cuda_defaults: dict[int, Generator] = {}
# Seed of CUDA default generators not made yet (``ember.cuda.manual_seed`` needs no GPU).
_cuda_seed = DEFAULT_SEED


def cuda_default(index: int | None = 0) -> Generator:
    """The default generator of ``cuda:index`` (made, not drawn from, without a GPU)."""
    index = index or 0
    g = _cuda_defaults.get(index)
    if g is None:
        g = _cuda_defaults[index] = Generator(Device("cuda", index))
        g._seed = _cuda_seed   # not manual_seed: made on first use, maybe inside a trace
    return g


def seed_cuda(seed: int) -> None:
    """Seed every CUDA default generator, made or still to be made."""
    global _cuda_seed
    _cuda_seed = _seed_value(seed)
    for g in _cuda_defaults.values():
        g.manual_seed(_cuda_seed)


def manual_seed(seed: int) -> Generator:
    """Seed every device's default generator; returns ``ember.default_generator``.

    >>> ember.manual_seed(0); a = ember.rand(2); ember.manual_seed(0)
    >>> bool((ember.rand(2) == a).all())
    True
    """
    seed = _seed_value(seed)
    seed_cuda(seed)
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed every default generator from the system's entropy; returns that seed."""
    s = default_generator.seed()
    seed_cuda(s)
    return s


def initial_seed() -> int:
    """The seed of the CPU default generator."""
    return default_generator.initial_seed()


def generator(xp, device=None):
    """The default generator's engine for ``xp``'s device: NumPy's ``Generator`` on the
    CPU, a ``CupyGenerator`` on CUDA."""
    if xp is np:
        return default_generator.engine()
    return cuda_default(getattr(device, "index", 0)).engine()


def _engine(xp, generator_, device):
    if generator_ is None:
        return generator(xp, device)
    kind = device.type if device is not None else ("cpu" if xp is np else "cuda")
    if generator_.device.type != kind:
        raise RuntimeError(f"Expected a '{kind}' device type for generator but found "
                           f"'{generator_.device.type}'")
    return generator_.engine()


def drop_cuda_handles() -> None:
    """Forget the CuPy RandomState objects the CUDA generators hold (they belong to one
    CuPy module: tests swap CuPy for a stand-in); seeds and draw counts stay."""
    for g in list(_ALL):
        if g._engine is not None and g.device.type == "cuda":
            g._engine._state = None


class preserved_rng:
    """Context manager: random draws inside it leave every generator as it was (the
    compiler runs a plan once while building it; that must not shift the user's stream)."""

    def __enter__(self):
        self._saved = (_cuda_seed, [(g, g._snapshot()) for g in list(_ALL)])
        return self

    def __exit__(self, *exc) -> None:
        global _cuda_seed
        _cuda_seed, saved = self._saved
        for g, snap in saved:
            g._restore(snap)


# ---- the ops ------------------------------------------------------------------------------

def _rand(xp, shape, dtype, device, generator=None):
    return _floats(_engine(xp, generator, device).random, shape, dtype, uniform=True)


def _randn(xp, shape, dtype, device, generator=None):
    return _floats(_engine(xp, generator, device).standard_normal, shape, dtype, uniform=False)


def _floats(draw, shape, dtype, uniform: bool):
    """NumPy draws float32 and float64 only: narrower floats are drawn in float32 and
    rounded, complex ones as two real parts (each of variance 1/2 for randn, as PyTorch)."""
    if dtype.np in (np.float32, np.float64):
        return draw(shape, dtype=dtype.np)
    if dtype.is_complex:
        real = dtype.to_real().np
        re_im = draw((2,) + tuple(shape), dtype=real)
        scale = 1.0 if uniform else 0.5 ** 0.5
        return ((re_im[0] + 1j * re_im[1]) * scale).astype(dtype.np)
    out = draw(shape, dtype=np.float32)
    if uniform:   # rounding can reach 1.0: stay in [0, 1) as PyTorch does
        out = out.clip(0, 1 - dtype.eps / 2)
    return out.astype(dtype.np)


def _randint(xp, low, high, shape, dtype, device, generator=None):
    e = _engine(xp, generator, device)
    if dtype.np.kind in "iub" and dtype.np.itemsize >= 4:
        return e.integers(low, high, shape, dtype=dtype.np)
    return e.integers(low, high, shape, dtype=np.int64).astype(dtype.np)


def _randperm(xp, n, dtype, device, generator=None):
    return _engine(xp, generator, device).permutation(n).astype(dtype.np)


def _multinomial(xp, probs, num_samples, replacement, device=None, generator=None):
    """Indices drawn with the rows of ``probs`` as weights (1-D or 2-D), as int64."""
    e = _engine(xp, generator, device)
    p = probs.astype(np.float64).reshape(-1, probs.shape[-1])
    rows, n = p.shape
    if replacement:
        cdf = xp.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]   # the last is exactly 1: every u < 1 lands in a category
        u = e.random((rows, num_samples), dtype=np.float64)
        # One searchsorted for all rows: row r's values are shifted up by r.
        shift = xp.arange(rows, dtype=np.float64)[:, None]
        idx = xp.searchsorted((cdf + shift).ravel(), (u + shift).ravel(), side="right")
        out = idx.reshape(rows, num_samples) - xp.arange(rows)[:, None] * n
        out = xp.minimum(out, n - 1)
    else:
        # The exponential race: category i wins at time E_i / p_i, E_i ~ Exp(1); the
        # first k to finish are a weighted draw without replacement (PyTorch's way too).
        u = e.random((rows, n), dtype=np.float64)
        with np.errstate(divide="ignore"):
            t = -xp.log1p(-u) / p
        t = xp.where(p > 0, t, np.inf)
        out = xp.argsort(t, axis=1, kind="stable")[:, :num_samples]
    return out.astype(np.int64).reshape(probs.shape[:-1] + (num_samples,))


defop("rand", RANDOM, _rand, impure=True)
defop("randn", RANDOM, _randn, impure=True)
defop("randint", RANDOM, _randint, impure=True)
defop("randperm", RANDOM, _randperm, impure=True)
defop("multinomial", RANDOM, _multinomial, impure=True)
defop("full", CREATION, lambda xp, shape, value, dtype, device: xp.full(shape, value, dtype.np))
defop("arange", CREATION,
      lambda xp, start, end, step, dtype, device: xp.arange(start, end, step, dtype=dtype.np))
