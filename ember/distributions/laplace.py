"""The Laplace (double exponential) distribution."""
from __future__ import annotations


from ember import dtypes
from ember.distributions import constraints
from ember.distributions.loc_scale import LocScale
from ember.tensor import Tensor, rand

__all__ = ["Laplace"]


class Laplace(LocScale):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

    >>> ember.distributions.Laplace(0.0, 1.0).variance
    tensor(2.)
    """
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    @property
    def variance(self) -> Tensor:
        return 2 * self.scale.pow(2)

    @property
    def stddev(self) -> Tensor:
        return 2 ** 0.5 * self.scale

    def rsample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        eps = dtypes.finfo(self.loc.dtype).eps
        # u uniform on (eps - 1, 1): log1p(-|u|) stays finite.
        u = rand(shape, dtype=self.loc.dtype, device=self.loc.device) * (2 - eps) + (eps - 1)
        return self.loc - self.scale * u.sign() * (-u.abs()).log1p()

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -(2 * self.scale).log() - (value - self.loc).abs() / self.scale

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        z = value - self.loc
        return 0.5 - 0.5 * z.sign() * (-z.abs() / self.scale).expm1()

    def icdf(self, value: Tensor) -> Tensor:
        term = value - 0.5
        return self.loc - self.scale * term.sign() * (-2 * term.abs()).log1p()

    def entropy(self) -> Tensor:
        return 1 + (2 * self.scale).log()
