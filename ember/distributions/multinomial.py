"""The multinomial distribution: category counts of ``total_count`` categorical draws
(torch.distributions.Multinomial).

>>> d = ember.distributions.Multinomial(4, probs=ember.tensor([1., 1.]))
>>> d.mean
tensor([2., 2.])
"""
from __future__ import annotations

import math

from ember.distributions import constraints
from ember.distributions.binomial import Binomial
from ember.distributions.categorical import Categorical
from ember.distributions.distribution import Distribution, _size
from ember.distributions.utils import broadcast_all
from ember.nn import functional as F
from ember.tensor import Size, Tensor, tensor, where

__all__ = ["Multinomial"]


class _MultinomialConstraint(constraints.Constraint):
    """Nonnegative integer vectors summing to at most ``upper_bound`` (torch's
    ``constraints.multinomial``)."""
    is_discrete = True
    event_dim = 1

    def __init__(self, upper_bound: int) -> None:
        self.upper_bound = upper_bound

    def check(self, x: Tensor) -> Tensor:
        return (x >= 0).all(-1) & (x.sum(-1) <= self.upper_bound)

    def __repr__(self) -> str:
        return f"Multinomial(upper_bound={self.upper_bound})"


class Multinomial(Distribution):
    """Multinomial(total_count=1, probs=None, logits=None): counts over the last dim's
    categories (``probs`` are normalized, ``logits`` unnormalized log-probabilities)."""
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}

    def __init__(self, total_count: int = 1, probs=None, logits=None,
                 validate_args: bool | None = None) -> None:
        if not isinstance(total_count, int):
            raise NotImplementedError("inhomogeneous total_count is not supported")
        self.total_count = total_count
        self._categorical = Categorical(probs=probs, logits=logits)
        self._binomial = Binomial(total_count=total_count, probs=self.probs)
        batch_shape = self._categorical.batch_shape
        event_shape = self._categorical.param_shape[-1:]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Multinomial, _instance)
        batch_shape = _size(batch_shape)
        new.total_count = self.total_count
        new._categorical = self._categorical.expand(batch_shape)
        new._binomial = Binomial(total_count=self.total_count, probs=new._categorical.probs)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self):
        return _MultinomialConstraint(self.total_count)

    @property
    def mean(self) -> Tensor:
        return self.probs * self.total_count

    @property
    def variance(self) -> Tensor:
        return self.total_count * self.probs * (1 - self.probs)

    @property
    def logits(self) -> Tensor:
        return self._categorical.logits

    @property
    def probs(self) -> Tensor:
        return self._categorical.probs

    @property
    def param_shape(self) -> Size:
        return self._categorical.param_shape

    def sample(self, sample_shape=()) -> Tensor:
        # total_count categorical draws, one-hot and summed: counts per category.
        sample_shape = _size(sample_shape)
        idx = self._categorical.sample(Size((self.total_count,) + tuple(sample_shape)))
        k = self._categorical._num_events
        counts = F.one_hot(idx, k).sum(0) if self.total_count else idx.new_zeros(
            tuple(self._extended_shape(sample_shape)))
        return counts.to(self.probs.dtype)

    def entropy(self) -> Tensor:
        n = tensor(float(self.total_count), dtype=self.probs.dtype)
        cat_entropy = self._categorical.entropy()
        term1 = n * cat_entropy - (n + 1).lgamma()
        support = self._binomial.enumerate_support(expand=False)[1:]
        binomial_probs = self._binomial.log_prob(support).exp()
        weights = (support + 1).lgamma()
        term2 = (binomial_probs * weights).sum([0, -1])
        return term1 + term2

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        log_factorial_n = (value.sum(-1) + 1).lgamma()
        log_factorial_xs = (value + 1).lgamma().sum(-1)
        # A category of probability 0 drawn 0 times contributes 0 (not 0 * -inf).
        logits = where((value == 0) & (logits == -math.inf), 0.0, logits)
        log_powers = (logits * value).sum(-1)
        return log_factorial_n - log_factorial_xs + log_powers
