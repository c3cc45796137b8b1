"""``nn.DataParallel`` / ``nn.parallel.data_parallel``: the module runs on its own device
(one device, as torch with one GPU or none); ``.module`` and the ``module.`` prefix of
the state dict are what programs and their checkpoints rely on."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn


def test_wraps_the_module_with_torch_keys_and_values():
    torch = pytest.importorskip("torch")
    inner = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    dp = nn.DataParallel(inner, device_ids=[0])
    tdp = torch.nn.DataParallel(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
                                                    torch.nn.Linear(3, 2)))
    assert list(dp.state_dict()) == list(tdp.state_dict())
    tdp.load_state_dict({k: torch.tensor(v.numpy()) for k, v in dp.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(dp(ember.tensor(x)).detach().numpy(),
                               tdp(torch.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-6)
    assert dp.module is inner


def test_trains_compiles_and_loads_a_checkpoint_back_into_the_bare_module():
    dp = nn.DataParallel(nn.Linear(3, 1))
    opt = ember.optim.SGD(dp.parameters(), lr=0.1)
    x, y = ember.randn(8, 3), ember.randn(8, 1)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.mse_loss(dp(x), y)
        loss.backward()
        opt.step()
        return loss

    compiled = ember.compile(step)
    losses = [compiled(x, y).item() for _ in range(5)]
    assert losses[-1] < losses[0]
    bare = nn.Linear(3, 1)
    state = dp.state_dict()
    nn.parallel.consume_prefix_in_state_dict_if_present(state, "module.")
    bare.load_state_dict(state)
    np.testing.assert_array_equal(bare(x).detach().numpy(), dp(x).detach().numpy())
    out = nn.parallel.data_parallel(bare, x, device_ids=range(1))
    np.testing.assert_array_equal(out.detach().numpy(), bare(x).detach().numpy())
