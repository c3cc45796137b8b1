"""Plans: matmul epilogues and memory planning (buffers shared between values that are
never alive together) keep compiled results equal to eager, call after call."""
from __future__ import annotations

import numpy as np

import ember
import ember.nn as nn
import ember.nn.functional as F


def _x(*shape, seed=0):
    return ember.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _plans(cf):
    (entry,) = cf.cache.values()
    return entry.root.plan


def test_linear_relu_runs_as_matmul_with_epilogue():
    lin = nn.Linear(16, 8)
    fn = lambda x: F.relu(lin(x))  # noqa: E731
    kernels = ember.explain(fn, _x(4, 16)).kernels
    assert any(k.backend == "extern" and k.ops[0] == "matmul" and "relu" in k.ops
               for k in kernels), kernels


def test_memory_planning_shares_buffers_and_stays_correct():
    w = _x(32, 32, seed=1)

    def fn(x):
        # Reductions and matmuls between elementwise stages: many intermediates, each
        # dead soon after it is made.
        for _ in range(6):
            x = (x @ w).tanh()
            x = x - x.amax(0, keepdim=True).sum() * 0.01
        return x.sum(1)

    x = _x(64, 32)
    expected = fn(x).numpy()
    cf = ember.compile(fn)
    outs = [cf(x) for _ in range(4)]
    for o in outs:   # earlier outputs are not overwritten by later calls
        np.testing.assert_allclose(o.numpy(), expected, rtol=1e-4, atol=1e-5)
    mem = _plans(cf).memory
    assert mem["allocated_bytes"] < mem["pooled_bytes"], mem


def test_views_keep_their_buffer_alive():
    def fn(x):
        y = (x * 2).exp()          # a kernel output in a pooled buffer
        t = y.T                     # a view of it, read after other buffers are made
        z = (x + 1).sin() * 3       # another kernel: must not reuse y's buffer
        return (t @ z).sum(0) + z.sum()

    x = _x(8, 8)
    expected = fn(x).numpy()
    cf = ember.compile(fn)
    for _ in range(3):
        np.testing.assert_allclose(cf(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_outputs_are_recycled_only_after_the_user_drops_them():
    cf = ember.compile(lambda x: (x * 2).exp())
    x = _x(256)
    for _ in range(3):
        cf(x)
    held = cf(x)
    kept = held.numpy().copy()
    seen = set()
    for _ in range(5):
        out = cf(x + 1)            # different values: a reused held buffer would show
        seen.add(id(out.numpy()))
        del out                    # freed right away (no reference cycle keeps it)
    np.testing.assert_array_equal(held.numpy(), kept)
    assert len(seen) == 1          # the same freed array served every later call


def test_a_kernel_writing_a_parameter_in_place_is_not_batched_with_its_readers():
    """Horizontal fusion runs a level's kernels at the same time: one that overwrites a
    parameter in place must come a level after every kernel reading its old value."""
    w = ember.randn(50_000)

    def f(x):
        y = w * 2 + x              # reads the old w
        with ember.no_grad():
            w.mul_(0.5).add_(1)    # then updates w (in place: nothing later reads the old w)
        return y

    w0 = w.numpy().copy()
    x = ember.randn(50_000)
    cf = ember.compile(f)
    for i in range(4):
        got = cf(x).numpy()
        np.testing.assert_allclose(got, w0 * 2 + x.numpy(), rtol=1e-6)
        w0 = w0 * 0.5 + 1
        np.testing.assert_allclose(w.numpy(), w0, rtol=1e-6)
    # Two kernels, two calls (batched, they raced: threads split the parts' rows).
    assert [k.ops for k in cf.kernels()] == [["mul", "add"], ["mul", "add"]]
    assert not any(k.parts for k in cf.kernels())
