"""Compiled-program cases (``tests/test_compile.py``) for the registry ops of
ember.special, ember.tensor_more and ember.distributions: each runs compiled (trace,
re-trace, replay) and must equal eager. None of them has a backend rendering, so each
runs as an eager step inside the plan, between fused kernels."""
from __future__ import annotations

import numpy as np

import ember
from ember.dispatch import dispatch


def _x(*shape, pos=False):
    a = np.random.default_rng(sum(shape) + 17).standard_normal(shape).astype(np.float32)
    return ember.tensor(np.abs(a) + 0.5 if pos else a)


def _spd():
    a = np.random.default_rng(3).standard_normal((3, 3))
    return ember.tensor(a @ a.T + 3 * np.eye(3), dtype=ember.float32)


SPECIAL_PROGRAMS = {
    "lgamma": lambda: (lambda x: (x * 2).lgamma() + 1, _x(3, 4, pos=True)),
    "digamma": lambda: (lambda x: (x + 1).digamma() * 2, _x(3, 4, pos=True)),
    "polygamma": lambda: (lambda x: (x * 2).polygamma(1) - 1, _x(3, 4, pos=True)),
    "erfc": lambda: (lambda x: (x * 3).erfc() + 1, _x(3, 4)),
    "erfinv": lambda: (lambda x: (x.tanh() * 0.9).erfinv() * 2, _x(3, 4)),
    "ndtri": lambda: (lambda x: ember.special.ndtri(x.sigmoid()) + 1, _x(3, 4)),
    "log_ndtr": lambda: (lambda x: ember.special.log_ndtr(x * 5) * 2, _x(3, 4)),
    "i0": lambda: (lambda x: ember.special.i0(x * 3) + 1, _x(3, 4)),
    "i0e": lambda: (lambda x: ember.special.i0e(x * 3) + 1, _x(3, 4)),
    "i1": lambda: (lambda x: ember.special.i1(x * 3) + 1, _x(3, 4)),
    "i1e": lambda: (lambda x: ember.special.i1e(x * 3) + 1, _x(3, 4)),
    "signbit": lambda: (lambda x: (x - 0.1).signbit() | (x > 1), _x(3, 4)),
    "logcumsumexp": lambda: (lambda x: (x * 2).logcumsumexp(1) + 1, _x(3, 4)),
    "cumarg": lambda: (lambda x: (x * 2).cummax(0).values + x.cummin(1).indices, _x(3, 4)),
    "mode_index": lambda: (lambda x: ((x * 2).round().mode(1).values + 1,
                                      x.round().mode(0).indices), _x(3, 6)),
    "standard_gamma_grad": lambda: (
        lambda x, a: dispatch("standard_gamma_grad", x + 0.5, a * 2) + 1,
        _x(6, pos=True), _x(6, pos=True)),
    "mvn_cholesky": lambda: (lambda a: dispatch("mvn_cholesky", a * 2) + 1, _spd()),
    "mvn_cholesky_grad": lambda: (
        lambda g, a: dispatch("mvn_cholesky_grad", g * 2, dispatch("mvn_cholesky", a)), _x(3, 3),
        _spd()),
    "mvn_trisolve": lambda: (
        lambda a, b: dispatch("mvn_trisolve", dispatch("mvn_cholesky", a), b * 2,
                              transpose=True) + 1, _spd(), _x(3, 2)),
    "dist_check": lambda: (lambda x: dispatch("dist_check", x > -10) & (x > 0), _x(3, 4)),
}
SPECIAL_RANDOM_MAKERS = {
    "standard_gamma": lambda x: x + ember.distributions.gamma.standard_gamma(ember.ones(4) * 2),
    "poisson_sample": lambda x: x + ember.distributions.Poisson(ember.full((4,), 20.0)).sample(),
    "binomial_sample": lambda x: x + ember.distributions.Binomial(
        100, probs=ember.full((4,), 0.5)).sample(),
}
