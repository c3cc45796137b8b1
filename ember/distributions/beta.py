"""The beta distribution on [0, 1]."""
from __future__ import annotations

import numbers

from ember import dtypes, special
from ember.distributions import constraints
from ember.distributions.distribution import Distribution, _size
from ember.distributions.gamma import standard_gamma
from ember.distributions.utils import broadcast_all
from ember.tensor import Size, Tensor, where

__all__ = ["Beta"]


class Beta(Distribution):
    """Beta(concentration1, concentration0): density x^(a-1) (1-x)^(b-1) / B(a, b)
    with a = concentration1, b = concentration0.

    >>> ember.distributions.Beta(2.0, 2.0).mean
    tensor(0.5)
    """
    arg_constraints = {"concentration1": constraints.positive,
                       "concentration0": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, concentration1, concentration0, validate_args: bool | None = None):
        self.concentration1, self.concentration0 = broadcast_all(concentration1, concentration0)
        if isinstance(concentration1, numbers.Number) and isinstance(concentration0,
                                                                     numbers.Number):
            batch_shape = Size(())
        else:
            batch_shape = self.concentration1.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Beta, _instance)
        batch_shape = _size(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def mode(self) -> Tensor:
        # As torch (Dirichlet's mode): (a-1)+ / ((a-1)+ + (b-1)+), and where both are
        # below 1 the larger concentration's end (0 or 1).
        a, b = self.concentration1, self.concentration0
        a1, b1 = (a - 1).clamp(min=0), (b - 1).clamp(min=0)
        both = (a < 1) & (b < 1)
        return where(both, (a >= b).to(a.dtype), a1 / (a1 + b1))

    @property
    def variance(self) -> Tensor:
        total = self.concentration1 + self.concentration0
        return self.concentration1 * self.concentration0 / (total.pow(2) * (total + 1))

    def rsample(self, sample_shape=()) -> Tensor:
        # X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b): each reparameterized in its alpha.
        shape = tuple(self._extended_shape(sample_shape))
        x = standard_gamma(self.concentration1.expand(shape))
        y = standard_gamma(self.concentration0.expand(shape))
        tiny = dtypes.finfo(x.dtype).tiny
        out = x / (x + y).clamp(min=tiny)
        eps = dtypes.finfo(x.dtype).eps
        return out.clamp(min=tiny, max=1 - eps)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        return (special.xlogy(a - 1, value) + special.xlog1py(b - 1, -value)
                - special.gammaln(a) - special.gammaln(b) + special.gammaln(a + b))

    def entropy(self) -> Tensor:
        a, b = self.concentration1, self.concentration0
        total = a + b
        lbeta = special.gammaln(a) + special.gammaln(b) - special.gammaln(total)
        return (lbeta - (a - 1) * special.digamma(a) - (b - 1) * special.digamma(b)
                + (total - 2) * special.digamma(total))
