"""torch's top-level names added for ported programs (``ember.functions_toplevel``),
against torch."""
from __future__ import annotations

import numpy as np
import pytest

import ember

rng = np.random.default_rng(2)


def _pair(torch, *shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return ember.tensor(a), torch.tensor(a)


def _same(e, t, tol=1e-5):
    if isinstance(e, tuple):
        for a, b in zip(e, t):
            _same(a, b, tol)
        return
    assert tuple(e.shape) == tuple(t.shape)
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def test_select_tile_asarray_and_tensor_facts():
    torch = pytest.importorskip("torch")
    e, t = _pair(torch, 3, 4, 5)
    for dim, i in ((0, 1), (1, -1), (-1, 4)):
        _same(ember.select(e, dim, i), torch.select(t, dim, i))
        _same(e.select(dim, i), t.select(dim, i))
    s = e.select(1, 2)
    s.add_(1)                                   # a view: the base sees the write
    t.select(1, 2).add_(1)
    _same(e, t)
    with pytest.raises(IndexError, match="out of range"):
        e.select(1, 4)
    for dims in ((2,), (2, 1), (1, 2, 1, 3)):
        _same(ember.tile(e, dims), torch.tile(t, dims))
        _same(e.tile(dims), t.tile(dims))
    a = np.arange(4, dtype=np.float32)
    x = ember.asarray(a)
    a[0] = 9
    assert x[0].item() == 9                     # shares the array's memory
    assert ember.asarray(a, copy=True)[0].item() == 9
    assert ember.asarray([1, 2]).dtype is ember.int64
    with pytest.raises(ValueError, match="copy=False"):
        ember.asarray(a, dtype=ember.float64, copy=False)
    v = e[1:, 2:]
    tv = t[1:, 2:]
    assert v.storage_offset() == tv.storage_offset()
    assert (v.nbytes, v.itemsize) == (tv.nbytes, tv.itemsize)
    assert v.data_ptr() - e.data_ptr() == tv.data_ptr() - t.data_ptr()


def test_functional_forms_take_torchs_argument_orders():
    torch = pytest.importorskip("torch")
    x, tx = _pair(torch, 2, 4, 8, 8)
    w, tw = _pair(torch, 6, 4, 3, 3)
    _same(ember.conv2d(x, w, None, 1, 1), torch.conv2d(tx, tw, None, 1, 1))
    _same(ember.max_pool2d(x, 2), torch.max_pool2d(tx, 2))
    _same(ember.max_pool1d(x[0], 2, []), torch.max_pool1d(tx[0], 2, []))
    _same(ember.adaptive_avg_pool1d(x[0], 3), torch.adaptive_avg_pool1d(tx[0], 3))
    _same(ember.layer_norm(x, (8,), None, None, 1e-5, True),
          torch.layer_norm(tx, (8,), None, None, 1e-5, True))
    _same(ember.group_norm(x, 2), torch.group_norm(tx, 2))
    g, tg = _pair(torch, 4)
    b, tb = _pair(torch, 4)
    rm, rv = ember.zeros(4), ember.ones(4)
    trm, trv = torch.zeros(4), torch.ones(4)
    _same(ember.batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5, False),
          torch.batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5, False))
    _same(rm, trm)                               # the running statistics moved alike
    _same(ember.instance_norm(x, g, b, None, None, True, 0.1, 1e-5, False),
          torch.instance_norm(tx, tg, tb, None, None, True, 0.1, 1e-5, False))
    _same(ember.pixel_shuffle(x, 2), torch.pixel_shuffle(tx, 2))
    _same(ember.selu(x), torch.selu(tx))
    _same(ember.threshold(x, 0.1, 20.0), torch.threshold(tx, 0.1, 20.0))
    _same(ember.dropout(x, 0.5, False), torch.dropout(tx, 0.5, False))
    kept = ember.dropout(ember.ones(1000), 0.5, True)
    assert set(np.unique(kept.numpy())) <= {0.0, 2.0}
    _same(ember.vmap(lambda r: r.sum())(x.flatten(1)),
          torch.vmap(lambda r: r.sum())(tx.flatten(1)))
