"""The multivariate normal distribution, parametrized by a covariance matrix, a
precision matrix or a lower-triangular scale (Cholesky factor).

Cholesky factors and triangular solves are two private ops here with NumPy kernels and
gradients (``ember.linalg.cholesky`` is used instead when it exists).
"""
from __future__ import annotations

import math

import numpy as np

from ember.dispatch import dispatch
from ember.distributions import constraints
from ember.distributions.distribution import Distribution, _size
from ember.distributions.utils import lazy_property
from ember.ops.elementwise import sum_to
from ember.ops.registry import EXTERN, defop
from ember.tensor import Tensor, eye, randn

__all__ = ["MultivariateNormal"]


# ---- private linear algebra ----------------------------------------------------------------

def _cholesky_np(xp, a):
    try:
        return xp.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        raise RuntimeError("linalg.cholesky: The factorization could not be completed "
                           "because the input is not positive-definite.") from None


def _cholesky_grad_np(xp, g, lower):
    """dA from dL for A = L L^T: sym(L^-T Phi(L^T dL) L^-1), Phi = tril, half diagonal."""
    lt = xp.swapaxes(lower, -1, -2)
    p = xp.tril(lt @ g)
    p = p - 0.5 * xp.eye(p.shape[-1], dtype=p.dtype) * p
    s = xp.linalg.solve(lt, p)
    s = xp.swapaxes(xp.linalg.solve(lt, xp.swapaxes(s, -1, -2)), -1, -2)
    return 0.5 * (s + xp.swapaxes(s, -1, -2))


defop("mvn_cholesky_grad", EXTERN, _cholesky_grad_np)
defop("mvn_cholesky", EXTERN, _cholesky_np,
      lambda g, out, a: (dispatch("mvn_cholesky_grad", g, out),))


def _trisolve_np(xp, lower, b, transpose):
    # Only the lower triangle counts (as torch's solve_triangular): the gradient is lower.
    lower = xp.tril(lower)
    m = xp.swapaxes(lower, -1, -2) if transpose else lower
    shape = np.broadcast_shapes(m.shape[:-2], b.shape[:-2])
    m = xp.broadcast_to(m, shape + m.shape[-2:])
    b = xp.broadcast_to(b, shape + b.shape[-2:])
    return xp.linalg.solve(m, b)


def _trisolve_vjp(g, out, lower, b, transpose):
    y = dispatch("mvn_trisolve", lower, g, transpose=not transpose)
    gl = -(out @ y.mT if transpose else y @ out.mT)
    return sum_to(gl.tril(), lower.shape), sum_to(y, b.shape)


defop("mvn_trisolve", EXTERN, _trisolve_np, _trisolve_vjp)


def _cholesky(a: Tensor) -> Tensor:
    from ember import linalg
    if hasattr(linalg, "cholesky"):
        return linalg.cholesky(a)
    return dispatch("mvn_cholesky", a)


def _solve_lower(lower: Tensor, b: Tensor, transpose: bool = False) -> Tensor:
    """X with L X = B (L^T X = B when ``transpose``); L lower triangular."""
    return dispatch("mvn_trisolve", lower, b, transpose=transpose)


def _bshape(*shapes) -> tuple:
    return tuple(np.broadcast_shapes(*shapes))


# ---- the distribution --------------------------------------------------------------------

class MultivariateNormal(Distribution):
    """MultivariateNormal(loc, covariance_matrix=None, precision_matrix=None,
    scale_tril=None): exactly one of the three matrices.

    >>> d = ember.distributions.MultivariateNormal(ember.zeros(2), ember.eye(2))
    >>> d.log_prob(ember.zeros(2))
    tensor(-1.8379)
    """
    arg_constraints = {"loc": constraints.real_vector,
                       "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite,
                       "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, covariance_matrix=None, precision_matrix=None,
                 scale_tril=None, validate_args: bool | None = None) -> None:
        if loc.ndim < 1:
            raise ValueError("loc must be at least one-dimensional.")
        if (covariance_matrix is not None) + (scale_tril is not None) + (
                precision_matrix is not None) != 1:
            raise ValueError("Exactly one of covariance_matrix or precision_matrix or "
                             "scale_tril may be specified.")
        given = next(m for m in (scale_tril, covariance_matrix, precision_matrix)
                     if m is not None)
        name = ("scale_tril" if scale_tril is not None else "covariance_matrix"
                if covariance_matrix is not None else "precision_matrix")
        if given.ndim < 2:
            raise ValueError(f"{name} matrix must be at least two-dimensional, with optional "
                             "leading batch dimensions")
        batch_shape = _bshape(tuple(given.shape[:-2]), tuple(loc.shape[:-1]))
        setattr(self, name, given.expand(batch_shape + (-1, -1)))
        self.loc = loc.expand(batch_shape + (-1,))
        event_shape = self.loc.shape[-1:]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        if scale_tril is not None:
            self._unbroadcasted_scale_tril = scale_tril
        elif covariance_matrix is not None:
            self._unbroadcasted_scale_tril = _cholesky(covariance_matrix)
        else:
            self._unbroadcasted_scale_tril = _precision_to_scale_tril(precision_matrix)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MultivariateNormal, _instance)
        batch_shape = _size(batch_shape)
        n = self.event_shape[0]
        new.loc = self.loc.expand(tuple(batch_shape) + (n,))
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril
        for name in ("covariance_matrix", "scale_tril", "precision_matrix"):
            if name in self.__dict__:
                setattr(new, name, getattr(self, name).expand(tuple(batch_shape) + (n, n)))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def scale_tril(self) -> Tensor:
        return self._unbroadcasted_scale_tril.expand(
            tuple(self._batch_shape) + tuple(self._event_shape) * 2)

    @lazy_property
    def covariance_matrix(self) -> Tensor:
        lower = self._unbroadcasted_scale_tril
        return (lower @ lower.mT).expand(tuple(self._batch_shape) + tuple(self._event_shape) * 2)

    @lazy_property
    def precision_matrix(self) -> Tensor:
        lower = self._unbroadcasted_scale_tril
        n = lower.shape[-1]
        inv = _solve_lower(lower, eye(n, dtype=lower.dtype, device=lower.device))
        return (inv.mT @ inv).expand(tuple(self._batch_shape) + tuple(self._event_shape) * 2)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self._unbroadcasted_scale_tril.pow(2).sum(-1).expand(
            tuple(self._batch_shape) + tuple(self._event_shape))

    def rsample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        eps = randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self._unbroadcasted_scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def _half_log_det(self) -> Tensor:
        return self._unbroadcasted_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        diff = value - self.loc
        z = _solve_lower(self._unbroadcasted_scale_tril, diff.unsqueeze(-1)).squeeze(-1)
        m = z.pow(2).sum(-1)
        n = self._event_shape[0]
        half_log_det = self._half_log_det()
        return -0.5 * (n * math.log(2 * math.pi) + m) - half_log_det

    def entropy(self) -> Tensor:
        n = self._event_shape[0]
        h = 0.5 * n * (1.0 + math.log(2 * math.pi)) + self._half_log_det()
        if len(self._batch_shape) == 0:
            return h
        return h.expand(tuple(self._batch_shape))


def _precision_to_scale_tril(p: Tensor) -> Tensor:
    # With F the flip of both matrix dims: chol(F P F) = F U F for the upper factor U of
    # P = U^T U, so L^-1 = (F chol(F P F) F)^T is lower triangular and L = solve(L^-1, I).
    lf = _cholesky(p.flip([-2, -1]))
    l_inv = lf.flip([-2, -1]).mT
    n = p.shape[-1]
    return _solve_lower(l_inv, eye(n, dtype=p.dtype, device=p.device))
