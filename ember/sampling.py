"""Sampling functions beyond the random primitives: ``multinomial``, ``bernoulli``,
``normal`` and the in-place fills ``bernoulli_``, ``exponential_``, ``random_``.

Each takes PyTorch's ``generator=`` (an ``ember.Generator``; the default generator of
the tensor's device otherwise) and is composed from the random primitives in
``ops/random.py``, so it traces, replays compiled with the same numbers as eager, and
advances the generator it was given. The Tensor methods are attached at the end of
this file (tensor.py stays free of sampling code).

>>> g = ember.Generator().manual_seed(0)
>>> ember.multinomial(ember.tensor([0., 1., 0.]), 2, replacement=True, generator=g)
tensor([1, 1])
"""
from __future__ import annotations

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.tensor import Tensor, rand_like, randint, randn


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    """Indices drawn from the categories of ``input``'s last dim, weighted by its values
    (1-D: ``[num_samples]``, 2-D: one row of draws per row), as int64.

    >>> ember.multinomial(ember.tensor([[1., 0.], [0., 1.]]), 1)
    tensor([[0],
            [1]])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"multinomial(): argument 'input' (position 1) must be Tensor, "
                        f"not {type(input).__name__}")
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not (input.is_floating_point()):
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, "
                           f"got: {input.dtype}")
    n = input.shape[-1]
    if num_samples <= 0:
        raise RuntimeError(f"cannot sample n_sample <= 0 samples, got {num_samples}")
    if not replacement and num_samples > n:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without "
                           "replacement")
    p = input.detach()
    # Value checks as PyTorch makes them; they read the values, so a compiled call
    # splits here and the check runs at every call.
    if not bool(((p >= 0) & (p < float("inf"))).all()):   # NaN fails both
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if not bool((p.sum(-1) > 0).all()):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    return dispatch("multinomial", p, num_samples=int(num_samples),
                    replacement=bool(replacement), device=input.device, generator=generator)


def bernoulli(input: Tensor, p: float | None = None, *, generator=None) -> Tensor:
    """1 with probability ``input`` (or ``p`` where given), else 0, in ``input``'s dtype.

    >>> ember.bernoulli(ember.tensor([0., 1.]))
    tensor([0., 1.])
    """
    probs = input.detach() if p is None else p
    return (rand_like(input, dtype=_draw_dtype(input), generator=generator) < probs).to(input.dtype)


def poisson(input: Tensor, generator=None) -> Tensor:
    """A Poisson draw per element with rate ``input``, in ``input``'s dtype (no gradient).

    >>> ember.poisson(ember.zeros(2))
    tensor([0., 0.])
    """
    from ember.distributions import poisson as _  # noqa: F401  (defines the op)
    return dispatch("poisson_sample", input.detach(), device=input.device,
                    generator=generator)


def binomial(count: Tensor, prob: Tensor, generator=None) -> Tensor:
    """A binomial draw per element: ``count`` trials of probability ``prob`` (no gradient).

    >>> ember.binomial(ember.tensor([3.0]), ember.tensor([1.0]))
    tensor([3.])
    """
    from ember.distributions import binomial as _  # noqa: F401  (defines the op)
    return dispatch("binomial_sample", count.detach(), prob.detach(), device=count.device,
                    generator=generator)


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """Normal samples with the given mean and standard deviation (tensors broadcast;
    two numbers need ``size``).

    >>> ember.normal(ember.zeros(3), 0.0)
    tensor([0., 0., 0.])
    """
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor):
        if size is None:
            raise TypeError("normal(): with a float mean and std, 'size' is required")
        out = randn(size, generator=generator, dtype=dtype, device=device) * std + mean
        return out.requires_grad_(True) if requires_grad else out
    if isinstance(std, (int, float)) and std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    like = mean if isinstance(mean, Tensor) else std
    mean, std = (x.detach() if isinstance(x, Tensor) else x for x in (mean, std))
    shape = np.broadcast_shapes(*(x.shape for x in (mean, std) if isinstance(x, Tensor)))
    return randn(shape, generator=generator, dtype=_float_of(like), device=like.device) * std + mean


def _float_of(t: Tensor):
    return t.dtype if (t.is_floating_point() or t.is_complex()) else dtypes.get_default_dtype()


def _draw_dtype(t: Tensor):
    """What a coin flip compares in: float32 at least (a bfloat16 uniform has only 256
    values, which would round every probability to a multiple of 1/256)."""
    return dtypes.float64 if t.dtype is dtypes.float64 else dtypes.float32


# ---- in-place fills (Tensor methods) -----------------------------------------------------

def bernoulli_(self: Tensor, p=0.5, *, generator=None) -> Tensor:
    """Fill with 1 (probability ``p``, a number or a tensor) or 0."""
    if isinstance(p, Tensor):
        p = p.detach().to(self.device)
    elif not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
    return self._inplace(lambda s: rand_like(s, dtype=_draw_dtype(s), generator=generator) < p,
                         (), "bernoulli_", cast=True)


def exponential_(self: Tensor, lambd: float = 1.0, *, generator=None) -> Tensor:
    """Fill with exponential samples of rate ``lambd``: -log(1 - U) / lambd."""
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
    if not self.is_floating_point():
        raise RuntimeError(f"exponential_ not implemented for '{self.dtype}'")
    return self._inplace(lambda s: (1 - rand_like(s, generator=generator)).log() * (-1.0 / lambd),
                         (), "exponential_", cast=True)


def random_(self: Tensor, from_=0, to=None, *, generator=None, **kwargs) -> Tensor:
    """Fill with integers drawn uniformly from [from, to); without ``to``, up to the
    largest integer the dtype holds exactly (2**mantissa for floats), as PyTorch."""
    from_ = kwargs.pop("from", from_)
    if kwargs:
        raise TypeError(f"random_() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if not isinstance(from_, int) or not isinstance(to, (int, type(None))):
        raise TypeError("random_(): 'from' and 'to' must be ints")
    if to is None:
        if self.dtype is dtypes.bool_:
            from_, to = 0, 2
        elif self.is_floating_point():
            from_, to = (0, 2 ** (_mantissa(self.dtype) + 1) + 1) if from_ == 0 else (0, from_)
        else:
            from_, to = (0, dtypes.iinfo(self.dtype).max) if from_ == 0 else (0, from_)
    if from_ >= to:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got "
                           f"from={from_} >= to={to}")
    return self._inplace(lambda s: randint(from_, to, s.shape, generator=generator,
                                           device=s.device), (), "random_", cast=True)


def _mantissa(dt) -> int:
    return {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}[dt.name]


for _name, _fn in {"bernoulli_": bernoulli_, "exponential_": exponential_, "random_": random_,
                   "multinomial": multinomial}.items():
    setattr(Tensor, _name, _fn)


def _bernoulli_method(self: Tensor, p: float | None = None, *, generator=None) -> Tensor:
    """``t.bernoulli()``: 1 with probability ``t`` (or ``p``), else 0."""
    return bernoulli(self, p, generator=generator)


Tensor.bernoulli = _bernoulli_method
