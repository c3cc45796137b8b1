"""``ember.sparse``: torch's sparse COO entry points over dense storage (graph networks
build a sparse normalised adjacency and multiply by it): the values and gradients are
torch's; nothing claims a sparse layout."""
from __future__ import annotations

import numpy as np
import pytest

import ember

rng = np.random.default_rng(3)


def test_coo_tensor_sums_duplicates_and_checks_its_indices():
    idx = [[0, 1, 1, 2], [2, 0, 0, 1]]
    a = ember.sparse_coo_tensor(idx, [3.0, 4.0, 5.0, 1.0], (3, 3))
    np.testing.assert_array_equal(a.numpy(), [[0, 0, 3], [9, 0, 0], [0, 1, 0]])
    assert not a.is_sparse and a.layout is ember.strided
    assert ember.sparse_coo_tensor(idx, ember.ones(4), dtype=ember.int64).shape == (3, 3)
    hybrid = ember.sparse_coo_tensor([[0, 2]], ember.ones(2, 4), (3, 4))   # a dense dim
    np.testing.assert_array_equal(hybrid.sum(1).numpy(), [4, 0, 4])
    with pytest.raises(RuntimeError, match="inconsistent with indices"):
        ember.sparse_coo_tensor(idx, ember.ones(4), (2, 3))
    with pytest.raises(RuntimeError, match="does not match"):
        ember.sparse_coo_tensor(idx, ember.ones(3), (3, 3))
    torch = pytest.importorskip("torch")
    t = torch.sparse_coo_tensor(idx, [3.0, 4.0, 5.0, 1.0], (3, 3), check_invariants=True)
    np.testing.assert_array_equal(a.numpy(), t.to_dense().numpy())


def test_a_graph_convolution_matches_torch_values_and_gradients():
    torch = pytest.importorskip("torch")
    n, f, h = 30, 12, 5
    edges = rng.integers(0, n, (2, 80))
    feats = (rng.random((n, f)) < 0.3).astype(np.float32)
    w = rng.standard_normal((f, h)).astype(np.float32)

    def gcn(lib, edges, feats, w):
        adj = lib.sparse_coo_tensor(lib.tensor(edges), lib.ones(edges.shape[1]), (n, n),
                                    dtype=lib.int64, check_invariants=True)
        adj = lib.eye(n) + adj
        deg = lib.diag(lib.sqrt(1 / lib.sum(adj, dim=1))).to_sparse()
        adj = (deg @ adj @ deg).to_sparse()
        kernel = lib.tensor(w, requires_grad=True)
        out = lib.spmm(adj, lib.mm(lib.tensor(feats).to_sparse(), kernel))
        out = lib.sparse.mm(adj, out.relu())
        (out.to_dense() ** 2).sum().backward()
        return out.detach().numpy(), kernel.grad.numpy()

    (eo, eg), (to, tg) = gcn(ember, edges, feats, w), gcn(torch, edges, feats, w)
    np.testing.assert_allclose(eo, to, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eg, tg, rtol=1e-4, atol=1e-4)


def test_values_take_gradients_and_compile():
    vals = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ember.sparse_coo_tensor([[0, 0, 1]], vals, (2,)).pow(2).sum().backward()
    np.testing.assert_array_equal(vals.grad.numpy(), [6.0, 6.0, 6.0])   # d(v0+v1)^2, 2*v2

    def f(adj, x):
        return ember.sparse.addmm(x, adj.to_sparse(), x, beta=0.5) + ember.sparse.sum(adj, 1)
    adj, x = ember.rand(4, 4), ember.rand(4, 4)
    c = ember.compile(f)
    for _ in range(3):
        np.testing.assert_allclose(c(adj, x).numpy(), f(adj, x).numpy(), rtol=1e-6)


def test_legacy_sparse_constructors_and_lr_scheduler_name():
    # pygcn: torch.sparse.FloatTensor(indices, values, shape); DLRM: _LRScheduler
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ember.sparse.FloatTensor(ember.tensor([[0, 1], [1, 0]]), ember.tensor([1.0, 2.0]),
                                     ember.Size([2, 2]))
    assert a.dtype == ember.float32 and a.tolist() == [[0.0, 1.0], [2.0, 0.0]]
    from ember.optim.lr_scheduler import LRScheduler, _LRScheduler
    assert _LRScheduler is LRScheduler
