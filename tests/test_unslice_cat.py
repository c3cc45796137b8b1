"""The unslice_cat pass: a split's gradients summed become one cat."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ir.graph import Graph, InputSource
from ember.ir.passes.unslice_cat import unslice_cat
from ember.dtypes import float32 as F32

CPU = ember.device("cpu")


def _grads(fn, x, w):
    """w's gradient after fn, compiled (third call: a replay) and eager; the graph ops."""
    def step(x):
        w.grad = None
        loss = fn(x @ w)
        loss.backward()
        return loss

    cf = ember.compile(step)
    for _ in range(3):
        cf(x)
    got = w.grad.numpy().copy()
    assert not cf.stats()["fallbacks"]
    step(x)
    want = w.grad.numpy().copy()
    ops = [n for n in str(ember.explain(cf, x)).split() if n in ("cat", "unslice")]
    return got, want, ops


def _w(*shape):
    return ember.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32),
                        requires_grad=True)


@pytest.mark.parametrize("dim,sizes", [(1, 4), (1, [2, 7, 3]), (0, 3), (-1, 5)])
def test_a_split_whose_parts_all_get_gradients_backpropagates_through_one_cat(dim, sizes):
    x = ember.randn(6, 3)
    w = _w(3, 12)

    def fn(y):
        parts = y.split(sizes, dim=dim)
        return sum(((p * (i + 1)) ** 2).sum() for i, p in enumerate(parts))

    got, want, ops = _grads(fn, x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert "cat" in ops and "unslice" not in ops
    torch = pytest.importorskip("torch")
    tw = torch.tensor(w.detach().numpy(), requires_grad=True)
    ty = torch.tensor(x.numpy()) @ tw
    sum(((p * (i + 1)) ** 2).sum() for i, p in enumerate(ty.split(sizes, dim=dim))).backward()
    np.testing.assert_allclose(got, tw.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_parts_that_leave_a_gap_keep_their_unslices():
    x, w = ember.randn(6, 3), _w(3, 12)
    got, want, ops = _grads(lambda y: (y[:, :4] ** 2).sum() + (y[:, 8:] ** 2).sum(), x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert "cat" not in ops and "unslice" in ops


def test_overlapping_parts_keep_their_unslices():
    x, w = ember.randn(6, 3), _w(3, 12)
    got, want, ops = _grads(lambda y: (y[:, :8] ** 2).sum() + (y[:, 4:] ** 2).sum(), x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert "cat" not in ops


def _unslice(g, a, shape, key):
    return g.add("unslice", (a,), {"shape": shape, "key": key}, shape, F32, CPU)


def test_an_inner_sum_read_elsewhere_stays_and_the_tree_is_left():
    g = Graph()
    a, b, c = (g.add_input(InputSource("arg", f"args[{i}]"), (2, 3), F32, CPU)
               for i in range(3))
    ua = _unslice(g, a, (2, 9), ((0, 2, 1), (0, 3, 1)))
    ub = _unslice(g, b, (2, 9), ((0, 2, 1), (3, 6, 1)))
    uc = _unslice(g, c, (2, 9), ((0, 2, 1), (6, 9, 1)))
    s1 = g.add("add", (ua, ub), {}, (2, 9), F32, CPU)
    s2 = g.add("add", (s1, uc), {}, (2, 9), F32, CPU)
    g.outputs = [s2, s1]          # the partial sum is an output too: nothing to rewrite
    unslice_cat(g)
    assert g[s2].op == "add" and g[s1].op == "add"
    g.outputs = [s2]
    unslice_cat(g)
    assert g[s2].op == "cat" and g[s2].args == (a, b, c) and g[s2].attrs == {"dim": 1}
