"""Eager exp, log, tanh, sigmoid, erf and softplus on float32 (and float64 erf) run the
compiled kernels' machine code (codegen/llvm/eager_math.py): the same numbers as compiled
code, close to NumPy's and PyTorch's, on every layout and size."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.codegen.llvm import eager_math
from ember.dispatch import dispatch

OPS = sorted(eager_math.OPS)
EDGES = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -3.0, 20.0, -20.0, 88.0, -88.0, 89.0,
         -104.0, 700.0, -745.0, 1e30, -1e30, math.inf, -math.inf, math.nan]


def _reference(op: str, x: np.ndarray) -> np.ndarray:
    """float64 NumPy, with math.erf for erf."""
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if op == "erf":
            return np.vectorize(math.erf, otypes=[np.float64])(x)
        if op == "sigmoid":
            return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                            np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
        if op == "softplus":
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        return getattr(np, op)(x)


def _apply(op: str, t):
    """The registry op (softplus has no Tensor method: F.softplus adds beta/threshold)."""
    return dispatch(op, t)


def _data(dtype, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n) * 4, np.array(EDGES)]).astype(dtype)
    return x


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eager_equals_compiled_and_the_reference(op, dtype):
    x = _data(dtype)
    eager = _apply(op, ember.tensor(x)).numpy()
    cf = ember.compile(lambda t: _apply(op, t))
    for _ in range(3):
        compiled = cf(ember.tensor(x)).numpy()
    if dtype == np.float32 or op == "erf":
        np.testing.assert_array_equal(eager, compiled)   # the same machine code
    else:   # float64 keeps NumPy's libm (1 ulp; the programs are within 2)
        np.testing.assert_allclose(eager, compiled, rtol=1e-15, atol=0, equal_nan=True)
    want = _reference(op, x)
    tol = 2e-6 if dtype == np.float32 else 1e-14
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(eager, want.astype(dtype), rtol=tol, atol=tol * 1e-3,
                                   equal_nan=True)


@pytest.mark.parametrize("op", OPS)
def test_eager_matches_torch(op):
    torch = pytest.importorskip("torch")
    x = _data(np.float32, seed=1)
    fn = {"erf": torch.special.erf, "softplus": torch.nn.functional.softplus}.get(op)
    fn = fn or getattr(torch, op)
    want = fn(torch.tensor(x)).numpy()
    np.testing.assert_allclose(_apply(op, ember.tensor(x)).numpy(), want, rtol=3e-6,
                               atol=1e-30, equal_nan=True)


def test_layouts_and_sizes():
    base = np.random.default_rng(2).standard_normal((7, 9)).astype(np.float32)
    for x in (base.T, np.asfortranarray(base), base[::2], base[:, 3]):
        got = ember.tensor(x).tanh().numpy()
        np.testing.assert_array_equal(got, eager_math.unary("tanh", np.ascontiguousarray(x)))
        np.testing.assert_allclose(got, np.tanh(x), rtol=2e-6)
    assert ember.tensor(np.float32(0.5)).exp().shape == ()
    assert ember.zeros(0, 3).sigmoid().shape == (0, 3)
    # integers become the default float, float16 keeps its own path
    np.testing.assert_allclose(ember.tensor([0, 1]).exp().numpy(), [1.0, math.e], rtol=1e-6)
    assert ember.tensor([0.5], dtype=ember.float16).erf().dtype == ember.float16


def test_large_arrays_split_across_threads_give_the_same_numbers():
    x = np.random.default_rng(3).standard_normal(eager_math._PARALLEL_MIN * 2 + 5)
    x = x.astype(np.float32)
    before = ember.get_num_threads()
    try:
        ember.set_num_threads(1)
        one = ember.tensor(x).erf().numpy()
        ember.set_num_threads(2)
        two = ember.tensor(x).erf().numpy()
    finally:
        ember.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_gradients_still_flow():
    x = ember.tensor(np.linspace(-3, 3, 2000, dtype=np.float64), requires_grad=True)
    ember.nn.functional.gelu(x).sum().backward()
    h = 1e-6
    xs = x.detach().numpy()
    gelu = lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))  # noqa: E731
    fd = (gelu(xs + h) - gelu(xs - h)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-6, atol=1e-8)
