"""ember.optim.lr_scheduler against torch.optim.lr_scheduler, value for value, and a
compiled training step that follows a scheduler without recompiling."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.optim import lr_scheduler as ls

STEPS = 100

# Each maker gets (optim module, lr_scheduler module, optimizer) and builds a scheduler:
# the same code for torch and ember.
SCHEDULERS = {
    "step": lambda o, s, opt: s.StepLR(opt, step_size=7, gamma=0.5),
    "multistep": lambda o, s, opt: s.MultiStepLR(opt, milestones=[10, 25, 25, 60], gamma=0.3),
    "exponential": lambda o, s, opt: s.ExponentialLR(opt, gamma=0.97),
    "cosine": lambda o, s, opt: s.CosineAnnealingLR(opt, T_max=30, eta_min=0.001),
    "cosine_long": lambda o, s, opt: s.CosineAnnealingLR(opt, T_max=STEPS),
    "lambda": lambda o, s, opt: s.LambdaLR(opt, lambda e: 1.0 / (1 + 0.1 * e)),
    "lambda_per_group": lambda o, s, opt: s.LambdaLR(
        opt, [lambda e: 0.9 ** e, lambda e: 1.0 if e < 40 else 0.1]),
    "linear": lambda o, s, opt: s.LinearLR(opt, start_factor=0.1, total_iters=20),
    "linear_down": lambda o, s, opt: s.LinearLR(opt, start_factor=1.0, end_factor=0.25,
                                                total_iters=50),
    "onecycle": lambda o, s, opt: s.OneCycleLR(opt, max_lr=0.5, total_steps=STEPS + 1),
    "onecycle_3phase_linear": lambda o, s, opt: s.OneCycleLR(
        opt, max_lr=[0.4, 0.2], epochs=11, steps_per_epoch=10, pct_start=0.25,
        anneal_strategy="linear", three_phase=True, cycle_momentum=False),
    "cyclic": lambda o, s, opt: s.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=7),
    "cyclic2_down": lambda o, s, opt: s.CyclicLR(opt, 0.001, [0.2, 0.1], step_size_up=5,
                                                 step_size_down=9, mode="triangular2"),
    "cyclic_exp": lambda o, s, opt: s.CyclicLR(opt, 0.01, 0.3, step_size_up=4,
                                               mode="exp_range", gamma=0.97,
                                               base_momentum=0.7, max_momentum=0.95),
    "cyclic_fn": lambda o, s, opt: s.CyclicLR(opt, 0.01, 0.1, step_size_up=3,
                                              scale_fn=lambda x: 1 / (1 + 0.1 * x),
                                              scale_mode="iterations", cycle_momentum=False),
    "sequential": lambda o, s, opt: s.SequentialLR(
        opt, [s.LinearLR(opt, start_factor=0.1, total_iters=10),
              s.CosineAnnealingLR(opt, T_max=40), s.ExponentialLR(opt, gamma=0.95)],
        milestones=[10, 50]),
}


def _optimizers(torch, cls="SGD"):
    kwargs = dict(lr=0.1, momentum=0.9) if cls == "SGD" else dict(lr=0.1)
    pe = [ember.zeros(3, requires_grad=True), ember.zeros(2, requires_grad=True)]
    pt = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    oe = getattr(ember.optim, cls)([{"params": [pe[0]]}, {"params": [pe[1]], "lr": 0.05}],
                                   **kwargs)
    ot = getattr(torch.optim, cls)([{"params": [pt[0]]}, {"params": [pt[1]], "lr": 0.05}],
                                   **kwargs)
    return oe, ot


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_trajectory_matches_torch(name):
    torch = pytest.importorskip("torch")
    oe, ot = _optimizers(torch)
    se = SCHEDULERS[name](ember.optim, ls, oe)
    st = SCHEDULERS[name](torch.optim, torch.optim.lr_scheduler, ot)
    _close(se.get_last_lr(), st.get_last_lr())
    for epoch in range(STEPS):
        oe.step()
        ot.step()
        se.step()
        st.step()
        _close(se.get_last_lr(), st.get_last_lr())
        _close([g["lr"] for g in oe.param_groups], [g["lr"] for g in ot.param_groups])
        assert [g["momentum"] for g in oe.param_groups] == pytest.approx(
            [g["momentum"] for g in ot.param_groups], rel=1e-12), f"epoch {epoch}"
        assert se.last_epoch == st.last_epoch


@pytest.mark.parametrize("make", [
    lambda s, opt: s.OneCycleLR(opt, max_lr=0.3, total_steps=50),
    lambda s, opt: s.CyclicLR(opt, 0.01, 0.3, step_size_up=6, mode="triangular2"),
], ids=["onecycle", "cyclic"])
def test_cycles_adam_beta1(make):
    torch = pytest.importorskip("torch")
    oe, ot = _optimizers(torch, "Adam")
    se = make(ls, oe)
    st = make(torch.optim.lr_scheduler, ot)
    for _ in range(49):
        oe.step()
        ot.step()
        se.step()
        st.step()
        _close(se.get_last_lr(), st.get_last_lr())
        _close([g["betas"] for g in oe.param_groups], [g["betas"] for g in ot.param_groups])
    if isinstance(se, ls.OneCycleLR):
        with pytest.raises(ValueError, match="Tried to step 51 times"):
            se.step()
            se.step()


@pytest.mark.parametrize("kwargs", [
    dict(patience=3),
    dict(mode="max", factor=0.5, patience=2, cooldown=3, threshold=0.05),
    dict(threshold_mode="abs", threshold=0.01, patience=1, min_lr=[0.02, 0.001]),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    oe, ot = _optimizers(torch)
    se = ls.ReduceLROnPlateau(oe, **kwargs)
    st = torch.optim.lr_scheduler.ReduceLROnPlateau(ot, **kwargs)
    rng = np.random.default_rng(0)
    metric = 1.0
    for epoch in range(STEPS):
        metric = metric * 0.99 + float(rng.uniform(-0.02, 0.02))
        given = ember.tensor(metric) if epoch % 2 else metric   # a tensor metric, too
        se.step(given)
        st.step(float(given))
        _close(se.get_last_lr(), st.get_last_lr())
        assert (se.num_bad_epochs, se.cooldown_counter, se.best) == (
            st.num_bad_epochs, st.cooldown_counter, st.best)


@pytest.mark.parametrize("name", ["step", "cosine", "onecycle", "sequential", "lambda"])
def test_state_dict_round_trip(name):
    torch = pytest.importorskip("torch")
    oe, ot = _optimizers(torch)
    se = SCHEDULERS[name](ember.optim, ls, oe)
    st = SCHEDULERS[name](torch.optim, torch.optim.lr_scheduler, ot)
    for _ in range(35):
        oe.step()
        se.step()
    sd = copy.deepcopy(se.state_dict())
    assert "optimizer" not in sd and sd["last_epoch"] == 35
    # Resume: a new optimizer and scheduler, loaded, continue as the original.
    oe2, _ = _optimizers(torch)
    se2 = SCHEDULERS[name](ember.optim, ls, oe2)
    oe2.load_state_dict(oe.state_dict())
    se2.load_state_dict(sd)
    for _ in range(30):
        for o, s in ((oe, se), (oe2, se2)):
            o.step()
            s.step()
        assert se2.get_last_lr() == se.get_last_lr()
    # The keys are torch's (what a checkpoint of a torch program holds).
    assert set(sd) - {"_is_initial", "_get_lr_called_within_step"} <= set(st.state_dict())


def test_closed_form_with_epoch_argument_warns():
    torch = pytest.importorskip("torch")
    oe, ot = _optimizers(torch)
    se, st = ls.StepLR(oe, 5, 0.5), torch.optim.lr_scheduler.StepLR(ot, 5, 0.5)
    with pytest.warns(UserWarning, match="epoch parameter"):
        se.step(12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st.step(12)
    _close(se.get_last_lr(), st.get_last_lr())


def test_tensor_lr_is_filled_in_place():
    p = ember.zeros(2, requires_grad=True)
    lr = ember.tensor(0.1)
    opt = ember.optim.SGD([p], lr=lr)
    sched = ls.ExponentialLR(opt, gamma=0.5)
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.05)


@pytest.mark.parametrize("make, match", [
    (lambda opt: ls.StepLR(object(), 3), "is not an Optimizer"),
    (lambda opt: ls.StepLR(opt, 3, last_epoch=4), "initial_lr"),
    (lambda opt: ls.LinearLR(opt, start_factor=0.0), "Starting multiplicative factor"),
    (lambda opt: ls.ReduceLROnPlateau(opt, factor=1.0), "Factor should be < 1.0"),
    (lambda opt: ls.ReduceLROnPlateau(opt, mode="up"), "mode up is unknown"),
    (lambda opt: ls.OneCycleLR(opt, max_lr=0.1), "total_steps OR"),
    (lambda opt: ls.SequentialLR(opt, [ls.StepLR(opt, 3)], milestones=[2]), "one more"),
    (lambda opt: ls.LambdaLR(opt, [lambda e: 1.0] * 3), "Expected 1 lr_lambdas"),
])
def test_bad_arguments(make, match):
    opt = ember.optim.SGD([ember.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises((TypeError, ValueError, KeyError), match=match):
        make(opt)


# ---- a compiled step follows the scheduler --------------------------------------------------

@pytest.mark.parametrize("opt_name, sched_name", [
    ("SGD", "onecycle_3phase_linear"), ("Adam", "cosine"), ("RMSprop", "step"),
    ("NAdam", "sequential"), ("RAdam", "linear"), ("Adagrad", "exponential"),
])
def test_compiled_step_follows_scheduler_without_recompiling(opt_name, sched_name):
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((16, 8)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 3, 16))
    results = []
    for compiled in (False, True):
        ember.manual_seed(0)
        body, head = nn.Linear(8, 16), nn.Linear(16, 3)
        groups = [{"params": body.parameters()}, {"params": head.parameters(), "lr": 0.005}]
        extra = {"momentum": 0.9} if opt_name == "SGD" else {}
        opt = getattr(ember.optim, opt_name)(groups, lr=0.01, **extra)
        sched = SCHEDULERS[sched_name](ember.optim, ls, opt)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(head(body(x).tanh()), y)
            loss.backward()
            opt.step()
            return loss
        step = ember.compile(step) if compiled else step
        losses, lrs = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i in range(40):
                losses.append(step(x, y).item())
                sched.step()
                lrs.append(sched.get_last_lr())
                if compiled and i == 3:
                    compiles = step.stats()["compiles"]
        results.append((losses, lrs, [p.detach().numpy().copy() for p in
                                      [*body.parameters(), *head.parameters()]]))
    assert len({tuple(l) for l in results[1][1]}) > 5   # the lr did change
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[1][2], results[0][2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    stats = step.stats()
    assert stats["compiles"] == compiles and stats["eager_calls"] == 0, stats
    assert not math.isnan(results[1][0][-1])


@pytest.mark.parametrize("opt_name, make", [
    ("SGD", lambda opt: ls.OneCycleLR(opt, max_lr=0.5, total_steps=30)),
    ("Adam", lambda opt: ls.OneCycleLR(opt, max_lr=0.05, total_steps=30)),
    ("RMSprop", lambda opt: ls.CyclicLR(opt, 0.001, 0.01, step_size_up=4)),
    ("AdamW", lambda opt: ls.CyclicLR(opt, 0.001, 0.02, step_size_up=5, mode="exp_range",
                                      gamma=0.99)),
])
def test_cycling_momentum_under_compile_is_read_at_every_call(opt_name, make):
    # OneCycleLR and CyclicLR change momentum (SGD, RMSprop) or beta1 (Adam, AdamW) every
    # step: a compiled step reads them at every call, as it reads lr. They used to be
    # constants of the step: a recompile per step, then eager calls past the cache limit.
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((16, 8)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 3, 16))
    results = []
    for compiled in (False, True):
        ember.manual_seed(0)
        model = nn.Linear(8, 3)
        extra = {"momentum": 0.9} if opt_name in ("SGD", "RMSprop") else {}
        opt = getattr(ember.optim, opt_name)(model.parameters(), lr=0.1, **extra)
        sched = make(opt)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        step = ember.compile(step) if compiled else step
        losses = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(29):
                losses.append(step(x, y).item())
                sched.step()
        results.append((losses, model.weight.detach().numpy().copy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)
    stats = step.stats()
    assert stats["compiles"] == 1 and stats["eager_calls"] == 0, stats


class _PlainSGD(ember.optim.Optimizer):
    """A user's optimizer, as written for torch: it reads ``group["lr"]`` as a float."""

    def __init__(self, params, lr=0.1, momentum=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @ember.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                d = p.grad
                if group["momentum"]:
                    d = d * (1 + group["momentum"])
                p.sub_(d * group["lr"])


def test_a_custom_optimizer_reading_lr_as_a_float_recompiles():
    # Guards skipped lr for every optimizer: a user's optimizer that multiplies by
    # group["lr"] froze the traced value, and a StepLR decay was silently ignored.
    results = []
    for compiled in (False, True):
        w = ember.ones(3, requires_grad=True)
        opt = _PlainSGD([w], lr=0.1, momentum=0.5)
        sched = ls.StepLR(opt, step_size=4, gamma=0.5)

        def step():
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        step = ember.compile(step) if compiled else step
        for i in range(12):
            step()
            sched.step()
            if i == 6:
                opt.param_groups[0]["momentum"] = 0.0   # a sign the code branches on
        results.append(w.detach().numpy().copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)
    assert any("['lr']" in r for r in step.stats()["recompile_reasons"])
