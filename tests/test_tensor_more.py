"""rot90, vander, signbit, heaviside, logcumsumexp, cummax/cummin, mode, trapezoid,
cumulative_trapezoid, Tensor.as_strided, index_put(_), masked_scatter(_): against
torch, NumPy references and finite differences; one compiled use."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from conftest import check_against_torch, check_grad_fd, to_np

rng = np.random.default_rng(11)
A = rng.standard_normal((3, 4, 5))


def test_rot90_against_numpy_and_torch():
    for k in range(-5, 6):
        for dims in [(0, 1), (1, 2), (2, 0), (-1, -2)]:
            out = ember.rot90(ember.tensor(A), k, dims)
            np.testing.assert_array_equal(to_np(out), np.rot90(A, k, dims))
    check_grad_fd(lambda a: ember.rot90(a, 1, (0, 2)), [A])
    torch = pytest.importorskip("torch")
    check_against_torch(lambda a: a.rot90(3, [1, 2]), lambda a: a.rot90(3, [1, 2]), [A])
    for bad in [dict(dims=(0,)), dict(dims=(1, 1))]:
        with pytest.raises(RuntimeError) as e:
            ember.rot90(ember.tensor(A), **bad)
        with pytest.raises(RuntimeError) as t:
            torch.rot90(torch.tensor(A), **bad)
        assert str(e.value) == str(t.value)
    with pytest.raises(RuntimeError):
        ember.rot90(ember.ones(3))


def test_vander():
    x = np.array([1.0, 2.0, -3.0, 0.5])
    for n in (None, 0, 1, 3, 6):
        for inc in (False, True):
            np.testing.assert_allclose(to_np(ember.vander(ember.tensor(x), N=n, increasing=inc)),
                                       np.vander(x, n, increasing=inc))
    check_grad_fd(lambda a: ember.vander(a, 4), [x])
    torch = pytest.importorskip("torch")
    xi = np.array([1, 2, 3], dtype=np.int32)
    check_against_torch(lambda a: ember.vander(a), lambda a: torch.vander(a), [xi], grad=False)
    # (torch's own vander gradient fails: it writes in place into what cumprod saved.)
    check_against_torch(lambda a: ember.vander(a, 4, True), lambda a: torch.vander(a, 4, True),
                        [x], grad=False)


def test_signbit_and_heaviside():
    v = np.array([-0.0, 0.0, -2.0, 3.0, -math.inf, math.inf])
    np.testing.assert_array_equal(to_np(ember.signbit(ember.tensor(v))), np.signbit(v))
    assert ember.tensor([-1, 2]).signbit().dtype is ember.bool
    x = np.array([-1.5, 0.0, 2.0, 0.0])
    out = ember.heaviside(ember.tensor(x), ember.tensor([0.5, 0.25, 0.5, 0.75],
                                                        dtype=ember.float64))
    np.testing.assert_array_equal(to_np(out), np.heaviside(x, [0.5, 0.25, 0.5, 0.75]))
    torch = pytest.importorskip("torch")
    check_against_torch(lambda a: ember.heaviside(a, ember.tensor(0.5, dtype=ember.float64)),
                        lambda a: torch.heaviside(a, torch.tensor(0.5, dtype=torch.float64)),
                        [x], grad=False)
    with pytest.raises(RuntimeError) as e:
        ember.heaviside(ember.tensor(x), ember.tensor(0.5))
    with pytest.raises(RuntimeError) as t:
        torch.heaviside(torch.tensor(x), torch.tensor(0.5))
    assert str(e.value) == str(t.value)


def test_logcumsumexp():
    x = np.array([[-1000.0, 0.0, 700.0, 1.0], [3.0, -math.inf, 2.0, -1.0]])
    for d in (0, 1, -1):
        np.testing.assert_allclose(to_np(ember.logcumsumexp(ember.tensor(x), d)),
                                   np.logaddexp.accumulate(x, d % 2))
    check_grad_fd(lambda a: ember.logcumsumexp(a, 1), [A])
    check_grad_fd(lambda a: a.logcumsumexp(0), [A[0] * 30])
    torch = pytest.importorskip("torch")
    check_against_torch(lambda a: ember.logcumsumexp(a, 2), lambda a: torch.logcumsumexp(a, 2),
                        [A])
    check_against_torch(lambda a: ember.logcumsumexp(a, 0), lambda a: torch.logcumsumexp(a, 0),
                        [A.astype(np.float32)])


def test_cummax_cummin():
    torch = pytest.importorskip("torch")
    ties = np.array([[1.0, 3.0, 3.0, 2.0, 5.0, 5.0], [math.nan, 1.0, math.nan, 0.0, 7.0, 7.0]])
    for fn in ("cummax", "cummin"):
        for d in (0, 1):
            e = getattr(ember, fn)(ember.tensor(ties), d)
            t = getattr(torch, fn)(torch.tensor(ties), d)
            np.testing.assert_array_equal(to_np(e.values), t.values.numpy())
            np.testing.assert_array_equal(to_np(e.indices), t.indices.numpy())
        check_against_torch(lambda a: getattr(ember, fn)(a, 1).values,
                            lambda a: getattr(torch, fn)(a, 1).values, [A])
        ints = rng.integers(0, 3, (4, 6))
        check_against_torch(lambda a: tuple(getattr(a, fn)(1)), lambda a: tuple(getattr(a, fn)(1)),
                            [ints], grad=False)


def test_mode():
    torch = pytest.importorskip("torch")
    ints = rng.integers(0, 4, (3, 9))
    for d in (0, 1, -1):
        for keep in (False, True):
            e = ember.mode(ember.tensor(ints), d, keep)
            t = torch.mode(torch.tensor(ints), d, keep)
            np.testing.assert_array_equal(to_np(e.values), t.values.numpy())
            np.testing.assert_array_equal(to_np(e.indices), t.indices.numpy())
    f = np.round(rng.standard_normal((4, 7)), 0)
    check_against_torch(lambda a: tuple(a.mode(1)), lambda a: tuple(a.mode(1)), [f])
    e, t = ember.mode(ember.tensor([5.0])), torch.mode(torch.tensor([5.0]))
    assert to_np(e.values) == t.values.numpy() and to_np(e.indices) == t.indices.numpy()


def test_trapezoid():
    y = rng.standard_normal((3, 6))
    x = np.cumsum(rng.uniform(0.1, 1, 6))
    ref = lambda yy, xx=None, dx=1.0, axis=-1: np.trapezoid(yy, xx, dx=dx, axis=axis)  # noqa
    np.testing.assert_allclose(to_np(ember.trapezoid(ember.tensor(y))), ref(y))
    np.testing.assert_allclose(to_np(ember.trapezoid(ember.tensor(y), dx=0.5)), ref(y, dx=0.5))
    np.testing.assert_allclose(to_np(ember.trapz(ember.tensor(y), ember.tensor(x))), ref(y, x))
    np.testing.assert_allclose(to_np(ember.trapezoid(ember.tensor(y), dim=0)), ref(y, axis=0))
    check_grad_fd(lambda a, b: ember.trapezoid(a, b), [y, x])
    torch = pytest.importorskip("torch")
    check_against_torch(lambda a, b: ember.trapezoid(a, b), lambda a, b: torch.trapezoid(a, b),
                        [y, x])
    check_against_torch(lambda a, b: ember.cumulative_trapezoid(a, b),
                        lambda a, b: torch.cumulative_trapezoid(a, b), [y, x])
    check_against_torch(lambda a: ember.cumulative_trapezoid(a, dx=2.0, dim=0),
                        lambda a: torch.cumulative_trapezoid(a, dx=2.0, dim=0), [y])
    check_against_torch(lambda a: ember.trapezoid(a), lambda a: torch.trapezoid(a),
                        [np.array([1, 2, 4])], grad=False)
    xb = np.cumsum(rng.uniform(0.1, 1, (3, 6)), 1)
    check_against_torch(lambda a, b: ember.trapezoid(a, b), lambda a, b: torch.trapezoid(a, b),
                        [y, xb])


def test_as_strided():
    base = np.arange(12.0)
    x = ember.tensor(base)
    for size, stride, off in [((2, 2), (1, 1), None), ((3, 4), (4, 1), 0), ((2, 3), (1, 2), 3),
                              ((4,), (3,), 1)]:
        out = x.as_strided(size, stride, off)
        ref = np.lib.stride_tricks.as_strided(base[off or 0:], size, [s * 8 for s in stride])
        np.testing.assert_array_equal(to_np(out), ref)
    # A view reads its base's storage from its own offset, as torch.
    v = x.reshape(3, 4)[1:]
    np.testing.assert_array_equal(to_np(v.as_strided((2,), (1,))), [4.0, 5.0])
    torch = pytest.importorskip("torch")
    # Overlapping windows: the gradient sums, as torch's.
    check_against_torch(lambda a: a.as_strided((3, 3), (2, 1)),
                        lambda a: a.as_strided((3, 3), (2, 1)), [rng.standard_normal(8)])
    tv = torch.arange(12.0).reshape(3, 4)[1:]
    assert to_np(v.as_strided((3,), (2,))).tolist() == tv.as_strided((3,), (2,)).tolist()
    with pytest.raises(RuntimeError):
        x.as_strided((5,), (3,))


def test_index_put():
    torch = pytest.importorskip("torch")
    base = rng.standard_normal((3, 2))
    for acc, rows, cols in [(False, [0, 2, 1], [1, 0, 0]), (True, [0, 2, 2], [1, 0, 0])]:
        v = rng.standard_normal(3)
        check_against_torch(
            lambda a, b: a.index_put((ember.tensor(rows), ember.tensor(cols)), b,
                                     accumulate=acc),
            lambda a, b: a.index_put((torch.tensor(rows), torch.tensor(cols)), b,
                                     accumulate=acc), [base, v])
    x = ember.zeros(3)
    out = x.index_put_((ember.tensor([0, 2]),), ember.ones(2))
    assert out is x and to_np(x).tolist() == [1.0, 0.0, 1.0]
    m = ember.zeros(2, 3)
    m.index_put_((ember.tensor([[True, False, True], [False, False, True]]),),
                 ember.tensor(5.0), accumulate=True)
    assert to_np(m).tolist() == [[5.0, 0.0, 5.0], [0.0, 0.0, 5.0]]
    with pytest.raises(RuntimeError):
        ember.zeros(3).index_put_((ember.tensor([0]),), ember.ones(1, dtype=ember.float64))
    with pytest.raises(IndexError):
        ember.zeros(3).index_put_((ember.tensor([0.0]),), ember.ones(1))


def test_masked_scatter():
    torch = pytest.importorskip("torch")
    mask = rng.random((3, 4)) > 0.5
    src = rng.standard_normal((4, 4))
    base = rng.standard_normal((3, 4))
    check_against_torch(lambda a, s: a.masked_scatter(ember.tensor(mask), s),
                        lambda a, s: a.masked_scatter(torch.tensor(mask), s), [base, src])
    row = np.array([True, False, True, True])   # broadcast over the rows
    check_against_torch(lambda a, s: a.masked_scatter(ember.tensor(row), s),
                        lambda a, s: a.masked_scatter(torch.tensor(row), s), [base, src])
    x = ember.tensor(base)
    y = x.masked_scatter_(ember.tensor(mask), ember.tensor(src))
    assert y is x
    np.testing.assert_array_equal(
        to_np(x), torch.tensor(base).masked_scatter(torch.tensor(mask), torch.tensor(src)).numpy())
    with pytest.raises(RuntimeError):
        ember.zeros(3).masked_scatter(ember.tensor([True, True, True]), ember.ones(2))


def test_compiled_equals_eager():
    def f(x, m):
        return (ember.rot90(x, 1, (0, 1)).sum() + ember.logcumsumexp(x, 1).sum()
                + ember.cummax(x, 0).values.sum() + ember.trapezoid(x)
                + x.masked_scatter(m, x * 2).sum() + ember.vander(x[0], 3).sum())
    cf = ember.compile(f)
    x = ember.tensor(rng.standard_normal((4, 4)), dtype=ember.float32)
    m = ember.tensor(rng.random((4, 4)) > 0.5)
    for _ in range(2):
        np.testing.assert_allclose(to_np(cf(x, m)), to_np(f(x, m)), rtol=1e-5)
