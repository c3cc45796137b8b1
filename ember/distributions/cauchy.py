"""The Cauchy (Lorentz) distribution and the half-Cauchy |X| of one centred at 0
(torch.distributions.Cauchy, HalfCauchy).

>>> ember.distributions.Cauchy(0.0, 1.0).cdf(ember.tensor(1.))
tensor(0.75)
"""
from __future__ import annotations

import math

from ember.distributions import constraints
from ember.distributions.loc_scale import LocScale
from ember.distributions.transformed_distribution import TransformedDistribution
from ember.distributions.transforms import AbsTransform
from ember.tensor import Tensor, rand, where

__all__ = ["Cauchy", "HalfCauchy"]


class Cauchy(LocScale):
    """Cauchy(loc, scale): median ``loc``, half width at half maximum ``scale``."""
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    @property
    def mean(self) -> Tensor:
        return self.loc.new_full(tuple(self._extended_shape()), math.nan)

    @property
    def variance(self) -> Tensor:
        return self.loc.new_full(tuple(self._extended_shape()), math.inf)

    def rsample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        u = rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (math.pi * (u - 0.5)).tan() * self.scale   # inverse cdf

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (-math.log(math.pi) - self.scale.log()
                - (((value - self.loc) / self.scale) ** 2).log1p())

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return ((value - self.loc) / self.scale).atan() / math.pi + 0.5

    def icdf(self, value: Tensor) -> Tensor:
        return (math.pi * (value - 0.5)).tan() * self.scale + self.loc

    def entropy(self) -> Tensor:
        return math.log(4 * math.pi) + self.scale.log()


class HalfCauchy(TransformedDistribution):
    """HalfCauchy(scale): Y = |X| with X ~ Cauchy(0, scale)."""
    arg_constraints = {"scale": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, scale, validate_args: bool | None = None) -> None:
        base_dist = Cauchy(0, scale, validate_args=False)
        super().__init__(base_dist, AbsTransform(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(HalfCauchy, _instance)
        return super().expand(batch_shape, _instance=new)

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    @property
    def mean(self) -> Tensor:
        return self.scale.new_full(tuple(self._extended_shape()), math.inf)

    @property
    def mode(self) -> Tensor:
        return self.scale.new_zeros(tuple(self.scale.shape))

    @property
    def variance(self) -> Tensor:
        return self.base_dist.variance

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_prob = self.base_dist.log_prob(value) + math.log(2)
        return where(value >= 0, log_prob, -math.inf)

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return 2 * self.base_dist.cdf(value) - 1

    def icdf(self, prob: Tensor) -> Tensor:
        return self.base_dist.icdf((prob + 1) / 2)

    def entropy(self) -> Tensor:
        return self.base_dist.entropy() - math.log(2)
