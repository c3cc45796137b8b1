"""ember/functions_math.py against torch (values, gradients, compiled) and NumPy."""
import math

import numpy as np
import pytest

import ember

RNG = np.random.default_rng(0)


def _a(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


# name -> (arrays, call taking (lib, *tensors)); the same call runs on torch and ember.
UNARY_CASES = {
    "tan": (_a(7), lambda L, x: L.tan(x)),
    "atan": (_a(7), lambda L, x: L.atan(x)),
    "asin": (_a(7, lo=-0.9, hi=0.9), lambda L, x: L.asin(x)),
    "acos": (_a(7, lo=-0.9, hi=0.9), lambda L, x: x.acos()),
    "sinh": (_a(7), lambda L, x: L.sinh(x)),
    "cosh": (_a(7), lambda L, x: x.cosh()),
    "asinh": (_a(7, lo=-50, hi=50), lambda L, x: L.asinh(x)),
    "acosh": (_a(7, lo=1.1, hi=30), lambda L, x: L.acosh(x)),
    "atanh": (_a(7, lo=-0.9, hi=0.9), lambda L, x: L.atanh(x)),
    "log2": (_a(7, lo=0.1, hi=9), lambda L, x: L.log2(x)),
    "log10": (_a(7, lo=0.1, hi=9), lambda L, x: x.log10()),
    "deg2rad": (_a(7), lambda L, x: L.deg2rad(x) * 1),
    "rad2deg": (_a(7), lambda L, x: L.rad2deg(x) * 1),
    "frac": (_a(7, lo=-5, hi=5), lambda L, x: L.frac(x) * 1),
    "prod_all": (_a(2, 3, lo=0.5, hi=1.5), lambda L, x: L.prod(x)),
    "prod_dim": (_a(2, 3, 4, lo=0.5, hi=1.5), lambda L, x: x.prod(1, keepdim=True)),
    "prod_zero": (np.array([[1.0, 0.0, 3.0], [2.0, 2.0, 0.5]], np.float32),
                  lambda L, x: L.prod(x, 1)),
    "nansum": (np.array([1.0, np.nan, 2.0], np.float32), lambda L, x: L.nansum(x)),
    "nanmean_dim": (np.array([[1.0, np.nan], [2.0, 4.0]], np.float32),
                    lambda L, x: L.nanmean(x, 1)),
    "trace": (_a(4, 4), lambda L, x: L.trace(x)),
    "diag_vec": (_a(3), lambda L, x: L.diag(x, 1)),
    "diag_mat": (_a(3, 4), lambda L, x: L.diag(x, -1)),
    "diag_embed": (_a(2, 3), lambda L, x: L.diag_embed(x)),
    "diagflat": (_a(2, 2), lambda L, x: L.diagflat(x)),
    "kthvalue": (_a(3, 5), lambda L, x: L.kthvalue(x, 2, 1)[0]),
    "msort": (_a(4, 2), lambda L, x: L.msort(x)),
    "cov": (_a(3, 8), lambda L, x: L.cov(x)),
    "corrcoef": (_a(3, 8), lambda L, x: L.corrcoef(x)),
    "take": (_a(3, 3), lambda L, x: L.take(x, L.tensor([0, 4, 8]))),
    "index_fill": (_a(3, 4), lambda L, x: x.index_fill(1, L.tensor([0, 2]), -1.0)),
    "atleast_3d": (_a(3, 2), lambda L, x: L.atleast_3d(x) * 1),
    "tensordot": (_a(2, 3, 4), lambda L, x: L.tensordot(x, x, dims=([1, 2], [1, 2]))),
    "inner": (_a(2, 3), lambda L, x: L.inner(x, x)),
}

BINARY_CASES = {
    "atan2": (_a(5, 1), _a(1, 4), lambda L, y, x: L.atan2(y, x)),
    "hypot": (_a(5), _a(5), lambda L, a, b: L.hypot(a, b)),
    "logaddexp": (_a(5, lo=-30, hi=30), _a(5, lo=-30, hi=30), lambda L, a, b: L.logaddexp(a, b)),
    "logaddexp2": (_a(5), _a(5), lambda L, a, b: L.logaddexp2(a, b)),
    "copysign": (_a(5), _a(5), lambda L, a, b: L.copysign(a, b)),
    "fmax": (_a(5), _a(5), lambda L, a, b: L.fmax(a, b)),
    "fmin": (_a(5), _a(5), lambda L, a, b: a.fmin(b)),
    "float_power": (_a(5, lo=0.5, hi=2), _a(5), lambda L, a, b: L.float_power(a, b)),
    "divide": (_a(5), _a(5, lo=0.5, hi=2), lambda L, a, b: L.divide(a, b)),
    "subtract": (_a(5), _a(5), lambda L, a, b: L.subtract(a, b, alpha=2)),
    "dist": (_a(5), _a(5), lambda L, a, b: L.dist(a, b, 3)),
    "index_copy": (_a(4, 3), _a(2, 3), lambda L, a, s: a.index_copy(0, L.tensor([3, 1]), s)),
    "mv": (_a(3, 4), _a(4), lambda L, m, v: L.mv(m, v)),
    "addbmm": (_a(3, 5), _a(2, 3, 4), lambda L, i, b: L.addbmm(i, b, b.new_ones(2, 4, 5),
                                                               beta=0.5, alpha=2)),
}


def _check(fn, arrays, grad=True):
    torch = pytest.importorskip("torch")
    et = [ember.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    tt = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    oe, ot = fn(ember, *et), fn(torch, *tt)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=2e-5, atol=2e-6,
                               equal_nan=True)
    if grad and ot.requires_grad:
        g = RNG.standard_normal(tuple(ot.shape)).astype(np.float32)
        (oe * ember.tensor(g)).sum().backward()
        (ot * torch.tensor(g)).sum().backward()
        for e, t in zip(et, tt):
            if t.grad is not None:   # (torch's zero gradient is ember's None)
                eg = e.grad.numpy() if e.grad is not None else np.zeros(t.shape, np.float32)
                np.testing.assert_allclose(eg, t.grad.numpy(), rtol=1e-4, atol=1e-5,
                                           equal_nan=True)
    compiled = ember.compile(lambda *xs: fn(ember, *xs))
    for _ in range(3):
        out = compiled(*[t.detach() for t in et])
    np.testing.assert_allclose(out.numpy(), ot.detach().numpy(), rtol=2e-5, atol=2e-6,
                               equal_nan=True)


@pytest.mark.parametrize("name", UNARY_CASES)
def test_unary_matches_torch(name):
    a, fn = UNARY_CASES[name]
    _check(fn, [a], grad="nan" not in name)


@pytest.mark.parametrize("name", BINARY_CASES)
def test_binary_matches_torch(name):
    a, b, fn = BINARY_CASES[name]
    _check(fn, [a, b])


def test_edges_against_numpy():
    inf, nan = math.inf, math.nan
    x = ember.tensor([-inf, -1.0, 0.0, 1.0, inf, nan])
    np.testing.assert_array_equal(ember.isposinf(x).numpy(), [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(ember.isneginf(x).numpy(), [1, 0, 0, 0, 0, 0])
    a = ember.tensor([-inf, inf, 3.0, -inf])
    np.testing.assert_array_equal(ember.logaddexp(a, a).numpy(), np.logaddexp(a.numpy(), a.numpy()))
    np.testing.assert_array_equal(ember.copysign(ember.ones(2), ember.tensor([-0.0, 0.0])).numpy(),
                                  [-1.0, 1.0])
    assert ember.prod(ember.tensor([2, 3, 4])).item() == 24
    assert ember.prod(ember.tensor([2, 3])).dtype == ember.int64
    q = ember.divide(ember.tensor([-7, 7]), ember.tensor([2, 2]), rounding_mode="trunc")
    assert q.tolist() == [-3, 3] and q.dtype == ember.int64
    assert ember.gcd(ember.tensor([12, 9]), ember.tensor([8, 6])).tolist() == [4, 3]
    assert ember.lcm(ember.tensor([4, 3]), ember.tensor([6, 5])).tolist() == [12, 15]
    assert ember.result_type(ember.ones(2, dtype=ember.int32), 1.0) == ember.float32
    assert ember.result_type(ember.ones(2, dtype=ember.int32), ember.tensor(1.0,
                             dtype=ember.float64)) == ember.float64   # (a higher kind: its size)
    assert ember.result_type(ember.ones(2), ember.tensor(1.0, dtype=ember.float64)) == ember.float32
    assert ember.can_cast(ember.int32, ember.float32) and not ember.can_cast(ember.float32,
                                                                               ember.int32)
    mn, mx = ember.aminmax(ember.tensor([[3.0, 1.0], [2.0, 5.0]]), dim=1)
    assert mn.tolist() == [1.0, 2.0] and mx.tolist() == [3.0, 5.0]
    assert ember.equal(ember.ones(2), ember.ones(2)) and not ember.equal(ember.ones(2), ember.ones(3))
    assert ember.hstack([ember.ones(2), ember.zeros(1)]).tolist() == [1.0, 1.0, 0.0]
    assert ember.vstack([ember.ones(2), ember.zeros(2)]).shape == (2, 2)
    assert ember.column_stack([ember.ones(2), ember.zeros(2)]).shape == (2, 2)
    assert ember.dstack([ember.ones(2), ember.zeros(2)]).shape == (1, 2, 2)
    a, b = ember.broadcast_tensors(ember.ones(3, 1), ember.ones(1, 4))
    assert a.shape == b.shape == (3, 4)
    x = ember.tensor([0.5, 1.0])
    x.atan_()
    np.testing.assert_allclose(x.numpy(), np.arctan([0.5, 1.0]), rtol=1e-6)


def test_finite_differences_of_the_compositions():
    for fn, lo, hi in [(ember.asinh, -3, 3), (ember.atanh, -0.8, 0.8), (ember.acosh, 1.2, 4),
                       (ember.sinh, -2, 2), (ember.tan, -1, 1), (ember.atan, -2, 2)]:
        a = RNG.uniform(lo, hi, 5)
        x = ember.tensor(a, requires_grad=True)
        fn(x).sum().backward()
        h = 1e-6
        fd = (fn(ember.tensor(a + h)).numpy() - fn(ember.tensor(a - h)).numpy()) / (2 * h)
        np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-5, atol=1e-7)


def test_histogram_apply_and_map_match_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal(60).astype(np.float32)
    for kwargs in ({"bins": 5}, {"bins": 4, "range": (-1.0, 1.0)},
                   {"bins": 3, "weight": np.abs(x), "density": True}):
        ek = {k: ember.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        tk = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        e, t = ember.histogram(ember.tensor(x), **ek), torch.histogram(torch.tensor(x), **tk)
        np.testing.assert_allclose(e.hist.numpy(), t.hist.numpy(), rtol=1e-6)
        np.testing.assert_allclose(e.bin_edges.numpy(), t.bin_edges.numpy(), rtol=1e-6)
    a = ember.tensor([1.0, 2.0])
    assert a.apply_(lambda v: v * 3) is a and a.tolist() == [3.0, 6.0]
    assert a.map_(ember.tensor([1.0]), lambda u, v: u - v).tolist() == [2.0, 5.0]


@pytest.mark.parametrize("mode", [None, "trunc", "floor"])
def test_div_and_div__take_a_rounding_mode(mode):
    # torch.div(a, b, rounding_mode="floor") is the common index arithmetic
    torch = pytest.importorskip("torch")
    for a, b in [([-7, 7, 5, -9], [2, 2, -3, 4]),
                 ([-7.0, 7.5, 5.0, -0.5], [2.0, 2.0, -3.0, 4.0])]:
        want = torch.div(torch.tensor(a), torch.tensor(b), rounding_mode=mode)
        for got in (ember.div(ember.tensor(a), ember.tensor(b), rounding_mode=mode),
                    ember.tensor(a).div(ember.tensor(b), rounding_mode=mode)):
            assert got.tolist() == want.tolist() and str(got.dtype)[6:] == str(want.dtype)[6:]
        if mode is not None or isinstance(a[0], float):
            x = ember.tensor(a)
            x.div_(2, rounding_mode=mode)
            assert x.tolist() == torch.tensor(a).div_(2, rounding_mode=mode).tolist()


@pytest.mark.parametrize("name", ["hsplit", "vsplit", "dsplit"])
def test_hsplit_vsplit_dsplit_as_torch(name):
    torch = pytest.importorskip("torch")
    for shape, sections in [((2, 4, 6), 2), ((2, 4, 6), [1, 3]), ((4,), 2), ((2, 4, 6), 3)]:
        try:
            want = [tuple(t.shape) for t in getattr(torch, name)(torch.zeros(shape), sections)]
        except RuntimeError as e:
            with pytest.raises(RuntimeError, match=str(e)[:30]):
                getattr(ember, name)(ember.zeros(shape), sections)
            continue
        got = getattr(ember, name)(ember.zeros(shape), indices_or_sections=sections)
        assert [tuple(t.shape) for t in got] == want
