"""ember.amp.GradScaler against torch.amp.GradScaler("cpu"), eagerly and in a compiled
training step: the same scales, skipped steps and weights."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

# The overflowing steps: eager add/sub/mul keep NumPy's overflow warning (dispatch.py).
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*encountered in (multiply|add|subtract):RuntimeWarning")


def _train(lib, compiled=False, steps=8, clip=False, bad=(2, 5)):
    """Losses, scales and weights of an MLP trained with loss scaling; the inputs of
    the steps in ``bad`` overflow (an inf loss and gradients: the step is skipped, the
    scale backs off); with ``growth_interval=2`` the scale grows between them."""
    nn = lib.nn
    lib.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    if lib is not ember:   # the same weights in both libraries
        ember.manual_seed(0)
        ref = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.Tanh(),
                                  ember.nn.Linear(8, 2))
        model.load_state_dict({k: lib.tensor(v.detach().numpy().copy())
                               for k, v in ref.state_dict().items()})
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = lib.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)

    def step(x, y):
        opt.zero_grad()
        loss = lib.nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(opt)
            lib.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        scaler.step(opt)
        scaler.update()
        return loss

    fn = ember.compile(step) if compiled else step
    rng = np.random.default_rng(0)
    losses, scales = [], []
    for i in range(steps):
        x = rng.standard_normal((8, 4)).astype(np.float32)
        y = np.full((8, 2), 3e38 if i in bad else 1.0, np.float32)   # inf gradients
        losses.append(float(fn(lib.tensor(x), lib.tensor(y)).detach()))
        scales.append((scaler.get_scale(), scaler.state_dict()["_growth_tracker"]))
    weights = [p.detach().numpy().copy() for p in model.parameters()]
    return losses, scales, weights, fn


@pytest.mark.parametrize("clip", [False, True])
def test_matches_torch(clip):
    torch = pytest.importorskip("torch")
    ours, theirs = _train(ember, clip=clip), _train(torch, clip=clip)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    assert ours[1] == theirs[1]   # scales and clean-step counts, step by step
    for a, b in zip(ours[2], theirs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_scale_history_without_torch():
    _, scales, weights, _ = _train(ember)
    # 1024; clean, clean -> 2048; inf -> 1024; clean; clean -> 2048; inf -> 1024; ...
    assert [s for s, _ in scales] == [1024, 2048, 1024, 1024, 2048, 1024, 1024, 2048]
    assert all(np.isfinite(w).all() for w in weights)   # the inf steps were skipped


@pytest.mark.parametrize("clip", [False, True])
def test_a_compiled_step_with_loss_scaling_compiles_and_equals_eager(clip):
    eager = _train(ember, clip=clip)
    with warnings.catch_warnings():
        # no fallback: the scale is a tensor, not a constant frozen into the code
        warnings.simplefilter("error", UserWarning)
        compiled = _train(ember, compiled=True, steps=12, clip=clip)
    np.testing.assert_allclose(compiled[0][:8], eager[0], rtol=1e-6)
    assert compiled[1][:8] == eager[1]
    stats = compiled[3].stats()
    assert stats["eager_calls"] == 0 and stats["cache_hits"] >= 6, stats


def test_update_with_a_new_scale_and_state_dict_round_trip():
    scaler = ember.amp.GradScaler("cpu", init_scale=8.0)
    assert scaler.get_scale() == 8.0   # before any loss: the initial scale
    loss = ember.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss).item() == 16.0
    scaler.update(4)   # (an int too)
    assert scaler.get_scale() == 4.0
    scaler.update(ember.tensor(2.0))
    assert scaler.get_scale() == 2.0
    state = scaler.state_dict()
    other = ember.amp.GradScaler("cpu")
    other.load_state_dict(state)
    assert other.get_scale() == 2.0 and other.state_dict() == state


def test_unscale_twice_and_step_twice_raise():
    w = ember.ones(2, requires_grad=True)
    opt = ember.optim.SGD([w], lr=0.1)
    scaler = ember.amp.GradScaler("cpu")
    scaler.scale((w * 2).sum()).backward()
    scaler.unscale_(opt)
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0])
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.step(opt)
