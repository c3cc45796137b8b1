"""torch.func over trees: vmap of dict/list arguments and results (per-sample gradients
of a params dict), stack_module_state (model ensembling) and
replace_all_batch_norm_modules_, against PyTorch and a loop."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.func import (functional_call, grad, replace_all_batch_norm_modules_,
                        stack_module_state, vmap)


def test_vmap_of_grad_over_a_params_dict_gives_per_sample_dicts():
    rng = np.random.default_rng(0)
    w = {"a": ember.tensor(rng.standard_normal(3).astype(np.float32)), "b": ember.ones(())}
    x = ember.tensor(rng.standard_normal((4, 3)).astype(np.float32))

    def loss(p, xi):
        return ((p["a"] * xi).sum() + p["b"]) ** 2

    per_sample = vmap(grad(loss), in_dims=(None, 0))(w, x)
    assert set(per_sample) == {"a", "b"} and per_sample["a"].shape == (4, 3)
    for i in range(4):
        one = grad(loss)(w, x[i])
        np.testing.assert_allclose(per_sample["a"][i].numpy(), one["a"].numpy(), rtol=1e-6)
    out = vmap(lambda v: {"y": [v * 2, v.sum()]})(x)
    assert out["y"][0].shape == (4, 3) and out["y"][1].shape == (4,)
    mapped = vmap(lambda p, b, v: p["a"] * v, in_dims=({"a": 0}, None, 0))({"a": x}, {}, x)
    np.testing.assert_allclose(mapped.numpy(), (x * x).numpy(), rtol=1e-6)


def test_model_ensembling_as_torch():
    torch = pytest.importorskip("torch")
    models = [nn.Linear(3, 2) for _ in range(4)]
    params, buffers = stack_module_state(models)
    assert params["weight"].shape == (4, 2, 3) and params["weight"].is_leaf
    assert params["weight"].requires_grad and buffers == {}
    base = copy.deepcopy(models[0])
    x = ember.randn(5, 3)
    out = vmap(lambda p, b, v: functional_call(base, (p, b), (v,)),
               in_dims=(0, 0, None))(params, buffers, x)
    np.testing.assert_allclose(out.detach().numpy(),
                               ember.stack([m(x) for m in models]).detach().numpy(), rtol=1e-6)
    out.sum().backward()
    assert params["weight"].grad.shape == (4, 2, 3)
    tm = [torch.nn.Linear(3, 2) for _ in range(2)]
    tp, _ = torch.func.stack_module_state(tm)
    assert tp["weight"].shape == stack_module_state([nn.Linear(3, 2)] * 2)[0]["weight"].shape
    with pytest.raises(RuntimeError, match="same class"):
        stack_module_state([nn.Linear(2, 2), nn.Tanh()])


def test_replace_all_batch_norm_modules_uses_batch_statistics():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert replace_all_batch_norm_modules_(net) is net
    assert net[1].running_mean is None and not net[1].track_running_stats
    x = ember.randn(6, 2)
    y = net.eval()(x)   # batch statistics even in eval mode, as torch's
    np.testing.assert_allclose(y.mean(0).detach().numpy(), net[1].bias.detach().numpy(),
                               atol=1e-5)


def test_jacrev_of_tuple_outputs_and_hessian_of_two_arguments_as_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w, b, x = (rng.standard_normal(s) for s in [(4, 3), (4,), (3,)])

    def f(mod, tw, tb):
        return mod.nn.functional.linear(mod.tensor(x), tw, tb).tanh().sum()

    he = ember.func.hessian(lambda a, c: f(ember, a, c), argnums=(0, 1))(
        ember.tensor(w), ember.tensor(b))
    ht = torch.func.hessian(lambda a, c: f(torch, a, c), argnums=(0, 1))(
        torch.tensor(w), torch.tensor(b))
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(he[i][j].numpy(), ht[i][j].numpy(), rtol=1e-10)
    je = ember.func.jacrev(lambda a: (a.sin(), {"c": a.cos()}))(ember.tensor(x))
    jt = torch.func.jacrev(lambda a: (a.sin(), {"c": a.cos()}))(torch.tensor(x))
    np.testing.assert_allclose(je[1]["c"].numpy(), jt[1]["c"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(je[0].numpy(), jt[0].numpy(), rtol=1e-12)
