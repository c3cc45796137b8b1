"""ember.multiprocessing: shared-memory tensors across forked processes (Hogwild), spawn."""
import multiprocessing

import numpy as np
import pytest

import ember
import ember.multiprocessing as mp
import ember.nn as nn
import ember.nn.functional as F

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="needs the fork start method")


def _train(rank, model, steps):
    ember.manual_seed(rank)
    opt = ember.optim.SGD(model.parameters(), lr=0.05)
    x = ember.randn(32, 4)
    y = x.sum(1, keepdim=True)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


def _fails(rank):
    raise ValueError(f"rank {rank} fails")


def test_hogwild_children_train_the_parents_model():
    ember.manual_seed(0)
    model, plain = nn.Linear(4, 1), nn.Linear(4, 1)
    model.share_memory()
    assert all(p.is_shared() for p in model.parameters())
    assert not plain.weight.is_shared()
    before, plain_before = model.weight.detach().clone(), plain.weight.detach().clone()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_train, args=(r, m, 40)) for r, m in ((0, model), (1, model),
                                                                      (2, plain))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    # The shared model learned y = sum(x): its weights moved towards ones.
    w = model.weight.detach().numpy()
    assert np.abs(w - 1).max() < np.abs(before.numpy() - 1).max() / 2
    np.testing.assert_array_equal(plain.weight.detach().numpy(), plain_before.numpy())


def test_spawn_runs_ranks_raises_their_errors_and_refuses_to_copy_shared_tensors():
    model = nn.Linear(4, 1).share_memory()
    mp.spawn(_train, args=(model, 3), nprocs=2, start_method="fork")
    with pytest.raises(mp.ProcessRaisedException, match="rank 1 fails|rank 0 fails"):
        mp.spawn(_fails, nprocs=2, start_method="fork")
    with pytest.raises(RuntimeError, match="only by fork"):
        mp.spawn(_train, args=(model, 1), nprocs=1, start_method="spawn")
    t = ember.ones(3)
    assert t.share_memory_() is t and t.is_shared() and t.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(RuntimeError, match="view"):
        ember.ones(4)[:2].share_memory_()
