"""``out=`` on ember's functions, against PyTorch's (ember/out_arg.py)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

A = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5


@pytest.mark.parametrize("call", [
    lambda M, x, out: M.add(x, x, alpha=2, out=out),
    lambda M, x, out: M.mul(x, 3, out=out),
    lambda M, x, out: M.exp(x, out=out),
    lambda M, x, out: M.clamp(x, -1, 1, out=out),
    lambda M, x, out: M.sum(x, 1, out=out),
    lambda M, x, out: M.matmul(x, x.t(), out=out),
    lambda M, x, out: M.cat([x, x], 0, out=out),
    lambda M, x, out: M.stack([x, x], 1, out=out),
])
@pytest.mark.parametrize("start", [(0,), (2, 3), (7,)])
def test_out_is_written_resized_and_returned(call, start):
    torch = pytest.importorskip("torch")
    got, want = ember.zeros(*start), torch.zeros(*start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (the resize warning: next test)
        g = call(ember, ember.tensor(A), got)
        w = call(torch, torch.tensor(A), want)
    assert g is got and w is want
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_out_pairs_casts_warnings_and_autograd():
    x = ember.tensor(A)
    v, i = ember.zeros(2), ember.zeros(2, dtype=ember.int64)
    r = ember.max(x, 1, out=(v, i))
    assert r[0] is v and r.indices is i and v.tolist() == [-0.5, 2.5] and i.tolist() == [2, 2]
    wide = ember.zeros(2, 3, dtype=ember.float64)
    ember.add(x, 1, out=wide)   # float32 -> float64: allowed
    assert wide.dtype == ember.float64 and wide[0, 0].item() == -1.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        ember.add(x, 1, out=ember.zeros(2, 3, dtype=ember.int64))
    with pytest.warns(UserWarning, match="was resized"):
        ember.add(x, 1, out=ember.zeros(5))
    with pytest.raises(RuntimeError, match="automatic differentiation"):
        ember.mul(ember.ones(2, requires_grad=True), 2, out=ember.zeros(2))
    with ember.no_grad():
        ember.mul(ember.ones(2, requires_grad=True), 2, out=ember.zeros(2))


def test_out_in_a_compiled_function_writes_the_callers_tensor():
    def f(x, buf):
        ember.mul(x, 2, out=buf)
        return buf.sum()

    compiled = ember.compile(f)
    for i in range(4):
        buf, ref = ember.zeros(3), ember.zeros(3)
        x = ember.full((3,), float(i))
        assert compiled(x, buf).item() == f(x, ref).item()
        assert buf.tolist() == ref.tolist() == [2.0 * i] * 3
    assert compiled.stats()["cache_hits"] >= 2
