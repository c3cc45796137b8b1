"""The gamma distribution, and ``standard_gamma``: the random op that draws
Gamma(alpha, 1) with a reparameterized (implicit) gradient in alpha.

The gradient of a draw x in alpha is -dP(alpha, x)/dalpha / p(x; alpha) (P the
regularized incomplete gamma function, p the density: "implicit reparameterization",
Figurnov et al. 2018, which torch uses too). P is computed in float64 by its series or
continued fraction and differentiated in alpha by a central difference (relative error
about 1e-9, far below the noise of any gradient estimate built on a draw).
"""
from __future__ import annotations

import numbers

import numpy as np

from ember import dtypes, special
from ember.dispatch import dispatch
from ember.distributions import constraints
from ember.distributions.distribution import Distribution, _size
from ember.distributions.utils import broadcast_all
from ember.ops.random import _engine
from ember.ops.registry import RANDOM, defop
from ember.special_ops import lgamma_kernel
from ember.tensor import Size, Tensor

__all__ = ["Gamma", "standard_gamma"]


def _standard_gamma(xp, alpha, device=None, generator=None):
    e = _engine(xp, generator, device)
    a = alpha.astype(np.float64)
    if xp is np:
        out = e.standard_gamma(a)
    else:   # a CupyGenerator: its Philox RandomState draws gamma variates itself
        out = e._next().standard_gamma(a)
    return xp.asarray(out).astype(alpha.dtype)


def _gammainc(xp, a, x):
    """The regularized lower incomplete gamma function P(a, x), float64, a > 0, x >= 0:
    its series where x < a + 1, else 1 - the continued fraction of Q (Numerical
    Recipes' split); each part only on its own elements, stopping once converged."""
    a, x = xp.broadcast_arrays(a, x)
    out = xp.zeros(a.shape, dtype=np.float64)
    pos = x > 0
    series_side = pos & (x < a + 1)
    cf_side = pos & ~series_side
    with np.errstate(all="ignore"):
        if series_side.any():
            out[series_side] = _gammainc_series(xp, a[series_side], x[series_side])
        if cf_side.any():
            out[cf_side] = 1.0 - _gammaincc_cf(xp, a[cf_side], x[cf_side])
    return out


def _gammainc_series(xp, a, x):
    # P = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n))
    term = xp.ones_like(a)
    acc = xp.ones_like(a)
    ap = a.copy()
    for i in range(1, 2000):
        ap = ap + 1
        term = term * x / ap
        acc = acc + term
        if i % 16 == 0 and bool((term < acc * 1e-17).all()):
            break
    return xp.exp(a * xp.log(x) - x - lgamma_kernel(xp, a + 1)) * acc


def _gammaincc_cf(xp, a, x):
    # Q = x^a e^-x / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...)), Lentz.
    tiny = 1e-300
    b = x + 1 - a
    c = xp.full_like(a, 1 / tiny)
    d = 1 / b
    h = d.copy()
    for i in range(1, 2000):
        an = -i * (i - a)
        b = b + 2
        d = an * d + b
        d = xp.where(xp.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = xp.where(xp.abs(c) < tiny, tiny, c)
        d = 1 / d
        delta = d * c
        h = h * delta
        if i % 16 == 0 and bool((xp.abs(delta - 1) < 1e-16).all()):
            break
    return xp.exp(a * xp.log(x) - x - lgamma_kernel(xp, a)) * h


def _standard_gamma_grad(xp, x, alpha):
    """d x / d alpha of a Gamma(alpha, 1) draw x, by implicit differentiation."""
    with np.errstate(all="ignore"):
        a, v = alpha.astype(np.float64), x.astype(np.float64)
        h = 1e-5 * xp.maximum(a, 1e-3)
        dp = (_gammainc(xp, a + h, v) - _gammainc(xp, a - h, v)) / (2 * h)
        log_pdf = (a - 1) * xp.log(v) - v - lgamma_kernel(xp, a)
        out = -dp / xp.exp(log_pdf)
        out = xp.where(xp.isfinite(out), out, 0.0)
    return out.astype(x.dtype)


defop("standard_gamma_grad", "index", lambda xp, x, alpha: _standard_gamma_grad(xp, x, alpha))


def _standard_gamma_vjp(g, out, alpha, device=None, generator=None):
    return (g * dispatch("standard_gamma_grad", out, alpha),)


defop("standard_gamma", RANDOM, _standard_gamma, _standard_gamma_vjp, impure=True)


def standard_gamma(alpha: Tensor, generator=None) -> Tensor:
    """Gamma(alpha, 1) draws of alpha's shape, differentiable in alpha (torch._standard_gamma).

    >>> ember.distributions.gamma.standard_gamma(ember.full((2,), 3.)).shape
    ember.Size([2])
    """
    return dispatch("standard_gamma", alpha, device=alpha.device, generator=generator)


class Gamma(Distribution):
    """Gamma(concentration, rate): density x^(a-1) e^(-rate x) rate^a / Gamma(a).

    >>> ember.distributions.Gamma(2.0, 4.0).mean
    tensor(0.5)
    """
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    _mean_carrier_measure = 0

    def __init__(self, concentration, rate, validate_args: bool | None = None) -> None:
        self.concentration, self.rate = broadcast_all(concentration, rate)
        if isinstance(concentration, numbers.Number) and isinstance(rate, numbers.Number):
            batch_shape = Size(())
        else:
            batch_shape = self.concentration.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Gamma, _instance)
        batch_shape = _size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.rate

    @property
    def mode(self) -> Tensor:
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self) -> Tensor:
        return self.concentration / self.rate.pow(2)

    def rsample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        value = standard_gamma(self.concentration.expand(shape)) / self.rate.expand(shape)
        # As torch: never exactly 0, whose log-density would be -inf or nan.
        return value.clamp(min=dtypes.finfo(value.dtype).tiny)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        a, r = self.concentration, self.rate
        return (special.xlogy(a, r) + special.xlogy(a - 1, value) - r * value
                - special.gammaln(a))

    def cdf(self, value: Tensor) -> Tensor:
        """P(concentration, rate * value) (no gradient: there is no gammainc op yet)."""
        if self._validate_args:
            self._validate_sample(value)
        a, z = broadcast_all(self.concentration.detach(), (self.rate * value).detach())
        out = _gammainc(np, a.cpu().numpy().astype(np.float64), z.cpu().numpy().astype(np.float64))
        from ember.tensor import tensor
        return tensor(out.astype(a.dtype.np), device=a.device)

    def entropy(self) -> Tensor:
        a = self.concentration
        return a - self.rate.log() + special.gammaln(a) + (1.0 - a) * special.digamma(a)
