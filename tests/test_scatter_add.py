"""The row scatter-add kernel behind ``index_put(..., accumulate=True)`` (an embedding's
gradient): np.add.at's sums in np.add.at's order, bit for bit, and np.add.at's errors."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.codegen.llvm import native

rng = np.random.default_rng(7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ishape", [((65, 192), (8, 64)), ((5,), (20,)),
                                         ((7, 3, 2), (4, 5)), ((4, 4), ()),
                                         ((10, 4), (0,)), ((3, 0), (6,))])
def test_rows_add_as_np_add_at(shape, ishape, dtype):
    for negative in (False, True):
        idx = rng.integers(-shape[0] if negative else 0, shape[0], ishape)
        for vshape in (ishape + shape[1:], shape[1:], ()):
            out = rng.standard_normal(shape).astype(dtype)
            v = rng.standard_normal(vshape).astype(dtype)
            want = out.copy()
            np.add.at(want, (idx,), v)
            assert native.scatter_add_rows(out, idx, v)
            assert out.tobytes() == want.tobytes(), (negative, vshape)


def test_values_that_alias_the_output_are_read_before_the_adds():
    out = np.arange(12, dtype=np.float32).reshape(4, 3)
    want = out.copy()
    np.add.at(want, (np.array([0, 0, 3]),), want[1:].copy())
    assert native.scatter_add_rows(out, np.array([0, 0, 3]), out[1:])
    np.testing.assert_array_equal(out, want)


def test_what_it_does_not_take_is_left_to_np_add_at():
    out = np.zeros((4, 3), np.float32)
    assert not native.scatter_add_rows(out, np.array([4]), np.ones(3, np.float32))  # range
    assert not native.scatter_add_rows(out, np.array([True, False, True, False]),
                                       np.ones(3, np.float32))                     # a mask
    assert not native.scatter_add_rows(out, np.array([1]), np.ones(4, np.float32))  # shape
    assert not native.scatter_add_rows(out.T, np.array([1]), np.ones(4, np.float32))
    assert not native.scatter_add_rows(np.zeros((4, 3), np.int64), np.array([1]),
                                       np.ones(3, np.int64))
    assert not out.any()


def test_index_put_out_of_range_raises_as_before():
    a, v = ember.zeros(4, 3), ember.ones(2, 3)
    with pytest.raises(IndexError, match="index 4 is out of bounds"):
        ember.dispatch.dispatch("index_put", a, v, ember.tensor([1, 4]), key=("t0",),
                                accumulate=True)


def test_embedding_gradient_eager_and_compiled_match_torch():
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((65, 24)).astype(np.float32)
    tokens = rng.integers(0, 65, (8, 64))
    g = rng.standard_normal((8, 64, 24)).astype(np.float32)
    tw = torch.tensor(w, requires_grad=True)
    (torch.nn.functional.embedding(torch.tensor(tokens), tw) * torch.tensor(g)).sum().backward()

    emb = nn.Embedding(65, 24)
    emb.weight.data = ember.tensor(w)

    def step(t, g):
        emb.weight.grad = None
        (emb(t) * g).sum().backward()
        return emb.weight.grad

    eager = step(ember.tensor(tokens), ember.tensor(g)).numpy().copy()
    compiled = ember.compile(step)
    for _ in range(3):
        got = compiled(ember.tensor(tokens), ember.tensor(g)).numpy()
        np.testing.assert_array_equal(got, eager)
    np.testing.assert_allclose(eager, tw.grad.numpy(), rtol=1e-5, atol=1e-5)
