"""A whole training step under @ember.compile: zero_grad, forward, loss.backward() and
optimizer.step() in one graph give eager's losses and weights, step after step."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


class SimpleCNN(nn.Module):
    """PyTorch's "Training a classifier" CNN."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = ember.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


OPTIMIZERS = {
    "sgd": lambda p: ember.optim.SGD(p, lr=0.05),
    "sgd-momentum-wd": lambda p: ember.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda p: ember.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: ember.optim.Adam(p, lr=1e-3),
    "adamw": lambda p: ember.optim.AdamW(p, lr=1e-3, weight_decay=1e-2),
}


def make_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def run_steps(make_model, opt_name, x, y, steps, compiled):
    ember.manual_seed(0)
    model = make_model()
    opt = OPTIMIZERS[opt_name](model.parameters())
    step = make_step(model, opt)
    if compiled:
        step = ember.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no fallback may hide a difference
        losses = [step(x, y).item() for _ in range(steps)]
    return losses, [p.detach().numpy().copy() for p in model.parameters()], step


def assert_same_training(a, b, tol=2e-4):
    (la, wa), (lb, wb) = a[:2], b[:2]
    np.testing.assert_allclose(la, lb, rtol=tol, atol=tol)
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def _data(shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    return (ember.tensor(rng.standard_normal(shape).astype(np.float32)),
            ember.tensor(rng.integers(0, classes, shape[0])))


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_mlp_50_compiled_steps_equal_eager(opt_name):
    x, y = _data((32, 784), 10)
    eager = run_steps(mlp, opt_name, x, y, 50, compiled=False)
    compiled = run_steps(mlp, opt_name, x, y, 50, compiled=True)
    # 50 steps on one batch of 32 amplify rounding: in eager alone, one input element
    # moved by one ulp moves plain SGD's final weights by up to 2.1e-4 (and its last
    # loss by 2.7e-5), so the bound sits above that.
    assert_same_training(compiled, eager, tol=5e-4)
    stats = compiled[2].stats()
    assert stats["cache_hits"] >= 47 and stats["eager_calls"] == 0, stats


@pytest.mark.parametrize("opt_name", ["sgd-momentum-wd", "adam"])
def test_cnn_50_compiled_steps_equal_eager(opt_name):
    x, y = _data((8, 3, 32, 32), 10)
    eager = run_steps(SimpleCNN, opt_name, x, y, 50, compiled=False)
    compiled = run_steps(SimpleCNN, opt_name, x, y, 50, compiled=True)
    assert_same_training(compiled, eager)


def test_compiled_steps_match_pytorch():
    torch = pytest.importorskip("torch")
    x, y = _data((32, 784), 10)
    losses, weights, _ = run_steps(mlp, "sgd-momentum-wd", x, y, 20, compiled=True)
    ember.manual_seed(0)
    reference = mlp()
    tmodel = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                 torch.nn.Linear(512, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 10))
    with torch.no_grad():
        for tp, p in zip(tmodel.parameters(), reference.parameters()):
            tp.copy_(torch.from_numpy(p.detach().numpy()))
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    tx, ty = torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
    tlosses = []
    for _ in range(20):
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        loss.backward()
        topt.step()
        tlosses.append(loss.item())
    np.testing.assert_allclose(losses, tlosses, rtol=2e-4, atol=2e-4)
    for w, tp in zip(weights, tmodel.parameters()):
        np.testing.assert_allclose(w, tp.detach().numpy(), rtol=2e-4, atol=2e-4)


def test_gradients_after_a_compiled_step_are_the_current_ones():
    # The bug this guards against: .grad assigned inside the compiled call was frozen at
    # its traced value, so later steps silently applied stale gradients.
    x, y = _data((8, 20), 4)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = ember.optim.SGD(model.parameters(), lr=0.5)
    step = ember.compile(make_step(model, opt))
    for _ in range(5):
        before = copy.deepcopy(model)
        for q in before.parameters():
            q.grad = None
        step(x, y)
        F.cross_entropy(before(x), y).backward()
        for p, q in zip(model.parameters(), before.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_learning_rate_changed_through_param_groups_takes_effect():
    x, y = _data((16, 20), 4)
    results = []
    for compiled in (False, True):
        ember.manual_seed(1)
        model = nn.Linear(20, 4)
        opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = make_step(model, opt)
        step = ember.compile(step) if compiled else step
        losses = []
        for i in range(12):
            opt.param_groups[0]["lr"] = 0.1 / (1 + i)      # a scheduler, by hand
            losses.append(step(x, y).item())
        results.append((losses, model.weight.detach().numpy().copy(), step))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)
    stats = results[1][2].stats()
    assert stats["cache_entries"] == 1 and stats["cache_hits"] >= 9, stats   # no recompiles


def test_changed_momentum_is_read_at_every_call_and_zero_recompiles():
    # A new momentum is read by the compiled step (schedulers cycle it); momentum 0 takes
    # another path in SGD (no buffer update): that recompiles, with the reason.
    x, y = _data((16, 20), 4)
    weights = []
    for compiled in (False, True):
        ember.manual_seed(0)
        model = nn.Linear(20, 4)
        opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = make_step(model, opt)
        step = ember.compile(step) if compiled else step
        for m in (0.9, 0.9, 0.9, 0.5, 0.5, 0.0, 0.0, 0.7):
            opt.param_groups[0]["momentum"] = m
            step(x, y)
        weights.append(model.weight.detach().numpy().copy())
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-6, atol=1e-7)
    reasons = step.stats()["recompile_reasons"]
    # Once, to 0 (the sign, not the value); back to 0.7, the first entry serves again.
    assert len(reasons) == 1, reasons
    assert "['momentum'] a float of sign 1 (read at every call) -> 0.0" in reasons[0], reasons


def test_gradient_accumulation_over_two_micro_batches():
    x, y = _data((16, 20), 4)
    results = []
    for compiled in (False, True):
        ember.manual_seed(2)
        model = nn.Sequential(nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 4))
        opt = ember.optim.Adam(model.parameters(), lr=1e-2)

        def step(x, y):
            opt.zero_grad(set_to_none=False)
            for part in range(2):
                xs, ys = x[part * 8:(part + 1) * 8], y[part * 8:(part + 1) * 8]
                (F.cross_entropy(model(xs), ys) / 2).backward()
            opt.step()
            return model(x).sum()
        step = ember.compile(step) if compiled else step
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            outs = [step(x, y).item() for _ in range(10)]
        results.append((outs, [p.detach().numpy().copy() for p in model.parameters()]))
    assert_same_training(results[1], results[0], tol=1e-5)


def test_batchnorm_and_dropout_step_in_train_mode():
    x, y = _data((16, 12), 3)
    results = []
    for compiled in (False, True):
        ember.manual_seed(3)
        model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(),
                              nn.Dropout(0.3), nn.Linear(16, 3))
        opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = make_step(model, opt)
        step = ember.compile(step) if compiled else step
        ember.manual_seed(4)   # the same dropout masks in both runs
        losses = [step(x, y).item() for _ in range(8)]
        bn = model[1]
        results.append((losses, [p.detach().numpy().copy() for p in model.parameters()]
                        + [bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()]))
    assert_same_training(results[1], results[0], tol=1e-5)
    # Fresh random numbers every call: consecutive losses are not a replay of one mask.
    assert len(set(np.round(results[1][0], 6))) == len(results[1][0])


@pytest.mark.parametrize("opt_name", ["sgd-momentum-wd", "adam"])
def test_all_parameter_updates_run_as_one_call(opt_name):
    x, y = _data((16, 20), 4)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = OPTIMIZERS[opt_name](model.parameters())
    step = ember.compile(make_step(model, opt))
    for _ in range(4):
        step(x, y)
    # The last steps of the plan are the updates: one horizontally fused call covers a
    # kernel per parameter (4 parameters here).
    multi = [k for k in step.kernels() if len(k.parts) >= 4]
    assert multi, step.kernels()


def _eager_and_compiled(make_opt, step_of, steps: int, before=None) -> list:
    """(losses, weights, step) of a 20-8-4 MLP trained eagerly, then compiled, with
    ``before(i, model, opt)`` run before step ``i``; no warning (fallback) allowed."""
    x, y = _data((16, 20), 4)
    results = []
    for compiled in (False, True):
        ember.manual_seed(5)
        model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 4))
        opt = make_opt(model.parameters())
        step = step_of(model, opt)
        step = ember.compile(step) if compiled else step
        losses = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i in range(steps):
                if before is not None:
                    before(i, model, opt)
                losses.append(step(x, y).item())
        results.append((losses, [p.detach().numpy().copy() for p in model.parameters()],
                        step))
    return results


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_outside_the_compiled_step(set_to_none):
    def step_of(model, opt):
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    results = _eager_and_compiled(lambda p: ember.optim.SGD(p, lr=0.1, momentum=0.9),
                                  step_of, 8,
                                  lambda i, model, opt: opt.zero_grad(set_to_none=set_to_none))
    assert_same_training(results[1], results[0], tol=1e-5)
    assert results[1][2].stats()["cache_hits"] >= 5, results[1][2].stats()


def test_gradients_handed_out_are_c_order_as_eager_leaves_them():
    # A GRU's recurrent weight gradient is computed as [6, 18] and permuted: the replay
    # handed out that F-order view as .grad, so the next call (which guards the .grad's
    # layout it reads) ran eagerly, with a warning; eager's .grad is a fresh C-order array.
    # (Found by tests/test_train_fuzz.py, seed 1129.)
    ember.manual_seed(0)
    gru, head = nn.GRU(4, 6, batch_first=True), nn.Linear(6, 3)
    params = list(gru.parameters()) + list(head.parameters())
    opt = ember.optim.SGD(params, lr=0.05)

    def step(x):
        opt.zero_grad(set_to_none=False)
        loss = head(gru(x)[0].mean(1)).square().mean()
        loss.backward()
        opt.step()
        return loss

    compiled = ember.compile(step)
    x = ember.randn(5, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(6):
            compiled(x)
            assert all(p.grad.is_contiguous() for p in params)
    assert compiled.stats()["eager_calls"] == 0 and compiled.stats()["cache_hits"] >= 2


@pytest.mark.parametrize("opt_name", ["sgd-momentum-wd", "adam"])
def test_optimizer_state_reset_between_compiled_steps(opt_name):
    # opt.state.clear() (a reset of momentum) left the replay updating the old state
    # tensors, which the trace captured: silently other weights than eager's. The
    # optimizer's state is guarded to still hold the tensors a trace read.
    def reset(i, model, opt):
        if i == 4:
            opt.state.clear()
        elif i == 7:
            opt.state.pop(model[0].weight)

    results = _eager_and_compiled(OPTIMIZERS[opt_name], make_step, 10, reset)
    assert_same_training(results[1], results[0], tol=1e-5)
    assert results[1][2].stats()["eager_calls"] == 0


def test_call_2_of_a_training_step_reuses_call_1s_kernels(monkeypatch):
    # The optimizer makes its state at call 1, so the entry starts over from call 2's
    # trace; call 1's plans were dropped before call 2 built, and with them (the kernel
    # cache holds code weakly) every kernel: a training step compiled all its code twice
    # (the diffusion UNet: 67 s, then 89 s). Only the kernels that differ build again.
    from ember.codegen.llvm import kernels
    monkeypatch.setenv("EMBER_CACHE_DIR", "")   # no persistent cache to hide it
    built = []
    real = kernels.CompiledKernel.__init__
    monkeypatch.setattr(kernels.CompiledKernel, "__init__",
                        lambda self, k: (built.append(k.name), real(self, k))[1])
    ember.manual_seed(0)
    model = SimpleCNN()
    step = ember.compile(make_step(model, OPTIMIZERS["adam"](model.parameters())))
    x, y = _data((4, 3, 32, 32), 10)
    counts = []
    for _ in range(3):
        built.clear()
        step(x, y)
        counts.append(len(built))
    # call 2 rebuilds Adam's updates (call 1 made the state: zeros folded in), one per
    # parameter, and the step count; the forward and backward kernels are call 1's
    assert counts[0] > 0 and counts[1] <= len(list(model.parameters())) + 1 < counts[0]
    assert counts[2] == 0


SCHEDULERS = {
    "step": lambda o: ember.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "linear": lambda o: ember.optim.lr_scheduler.LinearLR(o, 1.0, 0.1, total_iters=5),
    "onecycle": lambda o: ember.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=20),
    "lambda": lambda o: ember.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9 ** e),
    "warm_restarts": lambda o: ember.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 2),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_a_scheduler_stepped_inside_the_compiled_step(name):
    # Replays skipped sched.step(): the lr froze from call 3 on (LinearLR: 0.46 where
    # eager goes on to 0.28, 0.1), silently; StepLR's lr does not even change in calls 1
    # and 2, so only its own counter shows the call has state. Both are checked now.
    runs = []
    for compiled in (False, True):
        ember.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = SCHEDULERS[name](opt)

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            sched.step()
            return loss

        f = ember.compile(step) if compiled else step
        x = ember.ones(4, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lrs = [(f(x).item(), opt.param_groups[0]["lr"])[1] for _ in range(8)]
        runs.append((lrs, model.weight.detach().numpy().copy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-6)


def test_results_of_a_step_that_ran_backward_require_grad_as_eager():
    # pix2pix keeps ``self.fake_B = netG(real_A)`` and returns the loss: eagerly both
    # require grad (a grad_fn whose graph the step's backward freed); replays handed out
    # plain tensors, and the next call's guard saw requires_grad change
    model = nn.Linear(4, 4)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    kept = {}

    def step(x):
        opt.zero_grad()
        model.out = model(x)
        loss = model.out.sum()
        loss.backward()
        opt.step()
        return loss

    compiled = ember.compile(step)
    x = ember.randn(2, 4)
    for _ in range(5):
        loss = compiled(x)
        assert loss.requires_grad and loss.grad_fn is not None
        assert model.out.requires_grad and not model.out.is_leaf
        with pytest.raises(RuntimeError, match="a second time"):
            loss.backward()
        kept["stats"] = compiled.stats()
    assert kept["stats"]["cache_hits"] >= 2 and not kept["stats"]["fallbacks"]


def test_zero_grad_at_the_end_of_a_step_that_found_gradients():
    # a .grad that existed when the call started and is None when it ends (zero_grad at
    # the end of the step) failed the build ("'NoneType' object has no attribute
    # 'shape'"): eager, with an internal error as the reason
    model = nn.Linear(3, 2)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    twin = copy.deepcopy(model)
    topt = ember.optim.SGD(twin.parameters(), lr=0.1)

    def make(m, o):
        def step(x):
            m(x).sum().backward()   # onto the gradients left from before
            o.step()
            o.zero_grad(set_to_none=True)
        return step

    compiled, eager = ember.compile(make(model, opt)), make(twin, topt)
    x = ember.ones(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            for m in (model, twin):
                m(x).pow(2).sum().backward()   # gradients from outside the step
            compiled(x)
            eager(x)
    np.testing.assert_allclose(model.weight.detach().numpy(), twin.weight.detach().numpy(),
                               rtol=1e-6)
    assert compiled.stats()["cache_hits"] >= 1


def test_a_numpy_learning_rate_is_read_at_every_call_too():
    # BERT-pytorch's ScheduledOptim computes its lr with np.power: a np.float64, which
    # was guarded by value, so every lr change recompiled (then the cache filled)
    w = nn.Parameter(ember.ones(3))
    opt = ember.optim.Adam([w], lr=1e-3)

    @ember.compile
    def step(x):
        opt.zero_grad()
        (w * x).sum().backward()
        opt.step()

    for i in range(1, 9):
        opt.param_groups[0]["lr"] = np.float64(1e-3 * i)
        step(ember.ones(3))
    assert step.stats()["compiles"] == 1 and step.stats()["cache_hits"] >= 5
