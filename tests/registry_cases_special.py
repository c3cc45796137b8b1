"""Registry-test cases (``tests/test_registry_ops.py``) for the ops of ember.special,
ember.tensor_more and ember.distributions: forward and gradient against torch, and
against standard-library references or finite differences."""
from __future__ import annotations

import math
import statistics

import numpy as np

import ember
from ember.devices import CPU

_rng = np.random.default_rng(77)   # its own: the shared one feeds the other ops' cases


def _u(lo, hi, *shape):
    return _rng.uniform(lo, hi, size=shape)


def _torch():
    import torch
    return torch


def _vec(fn):
    return lambda a: np.vectorize(fn, otypes=[np.float64])(a)


def _off_int(lo, hi, *shape):
    return np.floor(_u(lo, hi, *shape)) + _u(0.15, 0.85, *shape)


def _spd(n, batch=()):
    a = _rng.standard_normal(batch + (n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def special_cases(Case, unary_cases) -> dict:
    T = _torch
    pos = lambda *s: _u(0.2, 6.0, *s)   # noqa: E731
    cases = {
        "lgamma": unary_cases("lgamma", _vec(math.lgamma), make=pos) + [
            Case([_off_int(-4, 0, 3, 4)], lambda a: a.lgamma(), _vec(math.lgamma), id="neg"),
            Case([_u(10, 200, 5)], lambda a: a.lgamma(), _vec(math.lgamma), id="big")],
        # torch's trigamma (digamma's gradient) is good to about 5e-10 relative only: the
        # float64 gradient checks are against finite differences (and scipy in
        # test_special.py), the torch ones in float32.
        "digamma": [Case([pos(3, 4)], lambda a: a.digamma(), None, id="2d", grad=False),
                    Case([_off_int(-4, 0, 3, 4)], lambda a: a.digamma(), None, id="neg",
                         grad=False),
                    Case([pos(3, 4).astype(np.float32)], lambda a: a.digamma(), None, id="f32"),
                    Case([np.array([1, 2, 3])], lambda a: a.digamma(), None, id="int",
                         grad=False)],
        "polygamma": [Case([pos(3, 4)], lambda a, n=n: T().polygamma(n, a), None, {"n": n},
                           id=f"n{n}") for n in (2, 3)] + [
            Case([pos(3, 4).astype(np.float32)], lambda a: T().polygamma(0, a), None, {"n": 0},
                 id="n0-f32"),
            Case([pos(3, 4).astype(np.float32)], lambda a: T().polygamma(1, a), None, {"n": 1},
                 id="n1-f32"),
            Case([_off_int(-3, 0, 6).astype(np.float32)], lambda a: T().polygamma(1, a), None,
                 {"n": 1}, id="neg-f32")],
        "erfc": unary_cases("erfc", _vec(math.erfc)) + [
            Case([_u(-6, 26, 12)], lambda a: T().special.erfc(a), _vec(math.erfc), id="tail")],
        "erfinv": unary_cases("erfinv", None, make=lambda *s: _u(-0.98, 0.98, *s)) + [
            Case([np.array([1 - 1e-12, -1 + 1e-9, 1e-10, 0.5])], lambda a: a.erfinv(), None,
                 id="edges", grad=False)],
        "ndtri": [Case([_u(0.01, 0.99, 3, 4)], lambda a: T().special.ndtri(a),
                       _vec(statistics.NormalDist().inv_cdf), id="2d"),
                  Case([np.array([1e-300, 1e-20, 1e-5, 1 - 1e-12])],
                       lambda a: T().special.ndtri(a), _vec(statistics.NormalDist().inv_cdf),
                       id="tails", grad=False),
                  Case([_u(0.01, 0.99, 5).astype(np.float32)], lambda a: T().special.ndtri(a),
                       None, id="f32")],
        "log_ndtr": [Case([_u(-8, 8, 3, 4)], lambda a: T().special.log_ndtr(a),
                          _vec(lambda x: math.log(0.5 * math.erfc(-x / math.sqrt(2)))), id="2d"),
                     Case([np.array([-40.0, -20.0, 5.0, 30.0])],
                          lambda a: T().special.log_ndtr(a), None, id="tails")],
    }
    for name in ("i0", "i0e", "i1", "i1e"):
        fn = (lambda n: lambda a: getattr(T().special, n)(a))(name)
        cases[name] = [Case([_u(-8, 8, 3, 4)], fn, None, id="2d"),
                       Case([_u(-30, 30, 3, 4)], fn, None, id="wide", grad=False),
                       Case([_u(-3, 3, 5).astype(np.float32)], fn, None, id="f32"),
                       Case([np.array([0.0, 1e-3, -19.99, 20.01, 600.0])], fn, None,
                            id="edges", grad=False)]
    cases["signbit"] = [
        Case([np.array([-0.0, 0.0, -1.5, 2.0, -np.inf])], lambda a: T().signbit(a), np.signbit,
             id="float", grad=False),
        Case([np.array([-3, 0, 4], dtype=np.int64)], lambda a: T().signbit(a), np.signbit,
             id="int", grad=False)]
    cases["logcumsumexp"] = [
        Case([_u(-3, 3, 3, 4)], lambda a: T().logcumsumexp(a, 1),
             lambda a: np.logaddexp.accumulate(a, 1), {"dim": 1}, id="dim1"),
        Case([_u(-3, 3, 4, 3)], lambda a: T().logcumsumexp(a, 0),
             lambda a: np.logaddexp.accumulate(a, 0), {"dim": 0}, id="dim0"),
        Case([np.array([-1000.0, 0.0, 800.0, -5.0])], lambda a: T().logcumsumexp(a, 0),
             lambda a: np.logaddexp.accumulate(a, 0), {"dim": 0}, id="wide")]
    ties = np.array([[1.0, 3.0, 3.0, 2.0, 5.0], [np.nan, 1.0, np.nan, 0.0, 7.0]])
    cases["cumarg"] = [
        Case([ties], lambda a: T().cummax(a, 1).indices, None, {"dim": 1, "largest": True},
             id="max", grad=False),
        Case([ties], lambda a: T().cummin(a, 1).indices, None, {"dim": 1, "largest": False},
             id="min", grad=False),
        Case([_rng.integers(0, 4, (5, 3))], lambda a: T().cummax(a, 0).indices, None,
             {"dim": 0, "largest": True}, id="int", grad=False)]
    counts = _rng.integers(0, 4, (4, 9))
    cases["mode_index"] = [
        Case([counts], lambda a: T().mode(a, 1).indices, None, {"dim": 1}, id="int", grad=False),
        Case([counts.T.astype(np.float64)], lambda a: T().mode(a, 0).indices, None, {"dim": 0},
             id="dim0", grad=False)]
    alpha = _u(0.3, 5.0, 3, 4)
    cases["standard_gamma"] = [
        Case([alpha], lambda: T()._standard_gamma(T().tensor(alpha)), None,
             {"dtype": ember.float64}, eattrs={"device": CPU}, id="f64", grad=False)]
    # torch's own gradient is an approximation (about 1e-4 relative); the reference here is
    # torch's incomplete gamma differentiated in alpha by central differences.
    def _gamma_grad_ref(x, a):
        torch = T()
        h = 1e-3 * a
        dp = (torch.special.gammainc(a.double() + h.double(), x.double())
              - torch.special.gammainc(a.double() - h.double(), x.double())) / (2 * h.double())
        pdf = ((a.double() - 1) * x.double().log() - x.double() - torch.lgamma(a.double())).exp()
        return (-dp / pdf).float()
    cases["standard_gamma_grad"] = [
        Case([_u(0.2, 6, 6).astype(np.float32), _u(0.5, 4, 6).astype(np.float32)],
             _gamma_grad_ref, None, id="f32", grad=False)]
    spd = _spd(3, (2,))
    low = np.linalg.cholesky(_spd(3))
    cases["mvn_cholesky"] = [Case([spd], lambda a: T().linalg.cholesky(a), np.linalg.cholesky,
                                  id="batched", grad=False)]

    def _chol_grad_ref(g, lower):
        torch = T()
        with torch.enable_grad():   # the harness runs non-gradient cases under no_grad
            a = (lower @ lower.mT).detach().requires_grad_(True)
            out = torch.linalg.cholesky(a)
            return torch.autograd.grad(out, a, g)[0]
    cases["mvn_cholesky_grad"] = [Case([_rng.standard_normal((3, 3)), low], _chol_grad_ref,
                                       None, id="3x3", grad=False)]
    b = _rng.standard_normal((2, 3, 2))
    cases["mvn_trisolve"] = [
        Case([low, b], lambda m, v: T().linalg.solve_triangular(m, v, upper=False),
             lambda m, v: np.linalg.solve(m, v), {"transpose": False}, id="plain"),
        Case([low, b], lambda m, v: T().linalg.solve_triangular(m.mT, v, upper=True),
             lambda m, v: np.linalg.solve(m.T, v), {"transpose": True}, id="transposed")]
    cases["dist_check"] = [Case([np.array([True, True])], lambda a: T().ones((), dtype=T().bool),
                                None, id="pass", grad=False)]
    # Poisson's and Binomial's sampling ops (ember/distributions/poisson.py, binomial.py).
    rate = _u(0.5, 8.0, 3, 4)
    cases["poisson_sample"] = [
        Case([rate], lambda: T().poisson(T().tensor(rate)), None, {"dtype": ember.float64},
             eattrs={"device": CPU}, id="f64", grad=False)]
    count, prob = np.full((3, 4), 7.0), _u(0.1, 0.9, 3, 4)
    cases["binomial_sample"] = [
        Case([count, prob], lambda: T().binomial(T().tensor(count), T().tensor(prob)), None,
             {"dtype": ember.float64}, eattrs={"device": CPU}, id="f64", grad=False)]
    return cases
