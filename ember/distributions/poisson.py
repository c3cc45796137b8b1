"""The Poisson distribution (torch.distributions.Poisson), and the random op that
draws it (as ``torch.poisson``: no gradient).

>>> ember.distributions.Poisson(ember.tensor(2.)).log_prob(ember.tensor(0.))
tensor(-2.)
"""
from __future__ import annotations

import numbers

import numpy as np

from ember import autograd
from ember.dispatch import dispatch
from ember.distributions import constraints
from ember.distributions.distribution import Distribution, _size
from ember.distributions.utils import broadcast_all
from ember.ops.random import _engine
from ember.ops.registry import RANDOM, defop
from ember.tensor import Size, Tensor

__all__ = ["Poisson"]


def _poisson(xp, rate, device=None, generator=None):
    e = _engine(xp, generator, device)
    lam = rate.astype(np.float64)
    # NumPy's Generator draws directly; a CupyGenerator draws from its RandomState.
    out = e.poisson(lam) if xp is np else e._next().poisson(lam)
    return xp.asarray(out).astype(rate.dtype)


defop("poisson_sample", RANDOM, _poisson, impure=True)


class Poisson(Distribution):
    """Poisson(rate): P(k) = rate^k e^-rate / k!."""
    arg_constraints = {"rate": constraints.nonnegative}
    support = constraints.nonnegative_integer

    def __init__(self, rate, validate_args: bool | None = None) -> None:
        (self.rate,) = broadcast_all(rate)
        batch_shape = Size(()) if isinstance(rate, numbers.Number) else self.rate.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Poisson, _instance)
        batch_shape = _size(batch_shape)
        new.rate = self.rate.expand(tuple(batch_shape))
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.rate

    @property
    def mode(self) -> Tensor:
        return self.rate.floor()

    @property
    def variance(self) -> Tensor:
        return self.rate

    def sample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        with autograd.no_grad():
            rate = self.rate.detach().expand(shape)
            return dispatch("poisson_sample", rate, device=rate.device, generator=None)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        rate, value = broadcast_all(self.rate, value)
        return value.xlogy(rate) - rate - (value + 1).lgamma()
