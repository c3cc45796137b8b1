"""Rprop, ASGD, Adafactor against PyTorch (eager step for step, and compiled equal to
eager); ConstantLR, MultiplicativeLR, ChainedScheduler lr sequences against PyTorch;
autograd.Variable, gradcheck/gradgradcheck and the top-level anomaly switches."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.autograd import GradcheckError, Variable, gradcheck, gradgradcheck

torch = pytest.importorskip("torch")


# ---- optimizers ------------------------------------------------------------------------

def _init() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w1": rng.standard_normal((4, 6)) * 0.5, "b1": rng.standard_normal(6) * 0.1,
            "w2": rng.standard_normal((6, 2)) * 0.5, "x": rng.standard_normal((16, 4)),
            "t": rng.standard_normal((16, 2))}


def _problem(lib, dtype):
    data = {k: v.astype(dtype) for k, v in _init().items()}
    params = [lib.tensor(data[k], requires_grad=True) for k in ("w1", "b1", "w2")]
    return params, lib.tensor(data["x"]), lib.tensor(data["t"])


def _loss(lib, params, x, t):
    """A two-layer tanh net with a squared error: the same code for ember and torch."""
    w1, b1, w2 = params
    return ((lib.tanh(x @ w1 + b1) @ w2 - t) ** 2).mean()


CASES = [
    ("Rprop", {}, np.float32),
    ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1), maximize=True),
     np.float32),
    ("ASGD", {}, np.float32),
    ("ASGD", dict(lr=0.05, lambd=1e-2, alpha=0.5, t0=5, weight_decay=0.1), np.float32),
    ("ASGD", dict(lr=0.1, t0=0, maximize=True), np.float64),   # (ascent: diverges)
    ("Adafactor", {}, np.float32),
    ("Adafactor", dict(maximize=True, weight_decay=0.05), np.float32),
    # small eps1 and a faster beta2 amplify float32 rounding: compared in float64
    ("Adafactor", dict(lr=0.05, beta2_decay=-0.5, eps=(1e-30, 1e-2), d=1.2,
                       weight_decay=0.1), np.float64),
]


@pytest.mark.parametrize("name,kwargs,dtype", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_optimizer_matches_torch(name, kwargs, dtype):
    pe, xe, te = _problem(ember, dtype)
    pt, xt, tt = _problem(torch, dtype)
    oe = getattr(ember.optim, name)(pe, **kwargs)
    ot = getattr(torch.optim, name)(pt, **kwargs)
    # (float64: the loss's BLAS and tanh still differ in the last bits)
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-8, 1e-10)
    for step in range(25):
        for opt, lib, params, x, t in ((oe, ember, pe, xe, te), (ot, torch, pt, xt, tt)):
            opt.zero_grad()
            _loss(lib, params, x, t).backward()
            opt.step()
        for a, b in zip(pe, pt):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol,
                                       atol=atol, err_msg=f"{name} step {step + 1}")
    # the same state entries (names, dtypes, values) and group options as torch's
    se, st = oe.state_dict(), ot.state_dict()
    assert se["state"].keys() == st["state"].keys()
    for i, entries in st["state"].items():
        assert se["state"][i].keys() == entries.keys()
        for k, v in entries.items():
            e = se["state"][i][k]
            assert str(e.dtype).split(".")[-1] == str(v.dtype).split(".")[-1], k
            np.testing.assert_allclose(e.numpy(), v.numpy(), rtol=rtol, atol=atol, err_msg=k)
    for ge, gt in zip(se["param_groups"], st["param_groups"]):
        assert ge == gt


@pytest.mark.parametrize("name", ["Rprop", "ASGD", "Adafactor"])
def test_state_dict_round_trip(name):
    kwargs = {"ASGD": dict(t0=3, lr=0.05)}.get(name, {})

    def run(opt, params, steps):
        x, t = _problem(ember, np.float32)[1:]
        for _ in range(steps):
            opt.zero_grad()
            _loss(ember, params, x, t).backward()
            opt.step()

    pa = _problem(ember, np.float32)[0]
    oa = getattr(ember.optim, name)(pa, **kwargs)
    run(oa, pa, 4)
    pb = [p.detach().clone().requires_grad_(True) for p in pa]
    ob = getattr(ember.optim, name)(pb, **kwargs)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    run(oa, pa, 4)
    run(ob, pb, 4)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    # a torch optimizer accepts ember's state (as tensors) and continues identically
    pt = [torch.tensor(p.detach().numpy(), requires_grad=True) for p in pa]
    ot = getattr(torch.optim, name)(pt, **kwargs)
    sd = oa.state_dict()
    ot.load_state_dict({"state": {i: {k: torch.tensor(v.numpy()) for k, v in s.items()}
                                  for i, s in sd["state"].items()},
                        "param_groups": copy.deepcopy(sd["param_groups"])})
    xt, tt = _problem(torch, np.float32)[1:]
    run(oa, pa, 3)
    for _ in range(3):
        ot.zero_grad()
        _loss(torch, pt, xt, tt).backward()
        ot.step()
    for a, b in zip(pa, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_optimizer_argument_checks_and_flags():
    p = [ember.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="eta"):
        ember.optim.Rprop(p, etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="learning rate"):
        ember.optim.ASGD(p, lr=-1.0)
    with pytest.raises(ValueError, match="beta2_decay"):
        ember.optim.Adafactor(p, beta2_decay=0.5)
    with pytest.raises(ValueError, match="Clipping threshold"):
        ember.optim.Adafactor(p, d=0.5)
    # torch's implementation switches are accepted and recorded as torch records them
    for name, kw in [("Rprop", dict(foreach=True, differentiable=False, capturable=True)),
                     ("ASGD", dict(foreach=False, capturable=True)),
                     ("Adafactor", dict(foreach=True))]:
        ge = getattr(ember.optim, name)(p, **kw).param_groups[0]
        gt = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)],
                                        **kw).param_groups[0]
        assert {k: v for k, v in ge.items() if k != "params"} == \
            {k: v for k, v in gt.items() if k != "params"}


def test_adafactor_factored_state_shapes():
    w = ember.zeros(2, 3, 4, requires_grad=True)
    opt = ember.optim.Adafactor([w])
    w.grad = ember.ones(2, 3, 4)
    opt.step()
    assert tuple(opt.state[w]["row_var"].shape) == (2, 3, 1)
    assert tuple(opt.state[w]["col_var"].shape) == (2, 1, 4)


# ---- the same optimizers inside ember.compile ------------------------------------------

def _train(make_opt, compiled: bool, steps: int = 20, between=None):
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((16, 8)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 3, 16))
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = make_opt(model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    fn = ember.compile(step) if compiled else step
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no fallback may hide a difference
        for i in range(steps):
            opt.param_groups[0]["lr"] *= 0.97   # a schedule: no recompile for it
            if between is not None:
                between(i, opt)
            losses.append(fn(x, y).item())
    return losses, [p.detach().numpy().copy() for p in model.parameters()], fn, opt


COMPILED = [
    ("Rprop", dict(lr=0.01)),
    ("ASGD", dict(lr=0.05, t0=8, lambd=1e-3, weight_decay=0.01)),
    ("Adafactor", dict(lr=0.05, weight_decay=0.01)),
]


@pytest.mark.parametrize("name,kwargs", COMPILED)
def test_compiled_training_step_equals_eager(name, kwargs):
    make = lambda p: getattr(ember.optim, name)(p, **kwargs)  # noqa: E731
    eager = _train(make, False)
    compiled = _train(make, True)
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(compiled[1], eager[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    stats = compiled[2].stats()
    assert stats["compiles"] == 1 and stats["eager_calls"] == 0, stats


@pytest.mark.parametrize("name,kwargs", COMPILED)
def test_load_state_dict_reaches_a_step_compiled_before(name, kwargs):
    # the loaded state (ASGD's eta and mu, Adafactor's factors...) is written into the
    # state tensors the compiled step updates
    make = lambda p: getattr(ember.optim, name)(p, **kwargs)  # noqa: E731
    checkpoint = copy.deepcopy(_train(make, False, steps=4)[3].state_dict())

    def load(i, opt):
        if i == 5:
            opt.load_state_dict(checkpoint)
    eager = _train(make, False, steps=12, between=load)
    compiled = _train(make, True, steps=12, between=load)
    for a, b in zip(compiled[1], eager[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert compiled[2].stats()["compiles"] == 1, compiled[2].stats()


# ---- lr schedulers ---------------------------------------------------------------------

def _lrs(lib, make, steps=20):
    ps = [lib.zeros(2, requires_grad=True) for _ in range(2)]
    opt = lib.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.03}], lr=0.1)
    sched = make(lib.optim.lr_scheduler, opt)
    out = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
    return np.array(out, dtype=np.float64), sched, opt


SCHEDULES = {
    "multiplicative": lambda S, o: S.MultiplicativeLR(o, lambda e: 0.9 if e % 3 else 1.1),
    "multiplicative_per_group": lambda S, o: S.MultiplicativeLR(
        o, [lambda e: 0.9, lambda e: 0.95]),
    "constant": lambda S, o: S.ConstantLR(o, factor=0.25, total_iters=4),
    "constant_default": lambda S, o: S.ConstantLR(o),
    "constant_zero_iters": lambda S, o: S.ConstantLR(o, factor=0.5, total_iters=0),
    "chained": lambda S, o: S.ChainedScheduler([S.ConstantLR(o, factor=0.1, total_iters=2),
                                                S.ExponentialLR(o, gamma=0.9)]),
    "chained_optimizer_arg": lambda S, o: S.ChainedScheduler(
        [S.LinearLR(o, 0.2, total_iters=5), S.MultiStepLR(o, [3, 8], 0.5),
         S.CosineAnnealingLR(o, T_max=7)], optimizer=o),
    "sequential_of_new": lambda S, o: S.SequentialLR(
        o, [S.ConstantLR(o, factor=0.1, total_iters=3),
            S.MultiplicativeLR(o, lambda e: 0.97)], milestones=[5]),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_scheduler_lrs_match_torch(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, se, oe = _lrs(ember, SCHEDULES[name])
        want, st, ot = _lrs(torch, SCHEDULES[name])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    np.testing.assert_allclose([g["lr"] for g in oe.param_groups],
                               [g["lr"] for g in ot.param_groups], rtol=1e-12)
    assert sorted(se.state_dict()) == sorted(st.state_dict())


def test_scheduler_state_dict_round_trip():
    class Factor:     # a callable object: its state is saved (a lambda's isn't)
        def __init__(self):
            self.f = 0.8

        def __call__(self, epoch):
            return self.f

    for make in (lambda S, o: S.MultiplicativeLR(o, Factor()),
                 lambda S, o: S.ChainedScheduler([S.ConstantLR(o, factor=0.5, total_iters=6),
                                                  S.MultiplicativeLR(o, Factor())])):
        _, sched, opt = _lrs(ember, make, steps=3)
        sd = copy.deepcopy(sched.state_dict())
        opt_sd = copy.deepcopy(opt.state_dict())
        later = []
        for _ in range(5):
            opt.step()
            sched.step()
            later.append(sched.get_last_lr())
        _, sched2, opt2 = _lrs(ember, make, steps=0)
        opt2.load_state_dict(opt_sd)
        sched2.load_state_dict(sd)
        again = []
        for _ in range(5):
            opt2.step()
            sched2.step()
            again.append(sched2.get_last_lr())
        np.testing.assert_allclose(again, later, rtol=1e-12)


def test_chained_scheduler_checks():
    S = ember.optim.lr_scheduler
    o1 = ember.optim.SGD([ember.zeros(1, requires_grad=True)], lr=0.1)
    o2 = ember.optim.SGD([ember.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="at least one"):
        S.ChainedScheduler([])
    with pytest.raises(ValueError, match="same optimizer"):
        S.ChainedScheduler([S.ExponentialLR(o1, 0.9), S.ExponentialLR(o2, 0.9)])
    with pytest.raises(ValueError, match="same optimizer"):
        S.ChainedScheduler([S.ExponentialLR(o1, 0.9)], optimizer=o2)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        S.ChainedScheduler([S.ReduceLROnPlateau(o1)])
    with pytest.raises(ValueError, match="between 0 and 1"):
        S.ConstantLR(o1, factor=2.0)
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        S.MultiplicativeLR(o1, 0.5)


# ---- autograd.Variable ----------------------------------------------------------------

def test_variable_is_the_tensor_type():
    t = ember.ones(2)
    v = Variable(t)
    assert type(v) is ember.Tensor and v is not t and not v.requires_grad
    v.add_(1)                           # same memory and version counter, as detach()
    assert t.tolist() == [2.0, 2.0] and t._version == 1
    w = Variable(t, requires_grad=True)
    assert w.requires_grad and w.is_leaf and not t.requires_grad
    assert Variable(t, True).requires_grad
    y = ember.ones(2, requires_grad=True) * 2
    assert Variable(y).grad_fn is None
    assert isinstance(ember.ones(1), Variable) and not isinstance(3.0, Variable)
    assert not issubclass(ember.Tensor, Variable)
    assert Variable().shape == (0,)
    with pytest.warns(UserWarning, match="volatile was removed"):
        Variable(t, volatile=True)
    with pytest.raises(TypeError, match="Variable data has to be a tensor"):
        Variable(3.0)
    with pytest.raises(RuntimeError):
        Variable(ember.ones(2, dtype=ember.int64), requires_grad=True)
    from ember.autograd.variable import Variable as legacy
    assert legacy is Variable


# ---- gradcheck / gradgradcheck ---------------------------------------------------------

def _double(*shape, seed=0):
    g = np.random.default_rng(seed)
    return ember.tensor(g.standard_normal(shape), dtype=ember.float64, requires_grad=True)


class _WrongSquare(ember.autograd.Function):
    """x * x with the backward of x * x / 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x


class _RightSquare(_WrongSquare):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x


class _NotScaled(ember.autograd.Function):
    """2 x, whose backward is right except for an all-zero incoming gradient."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2 if bool((g != 0).any()) else ember.ones_like(g)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradcheck_passes_on_correct_functions(fast_mode):
    x, a, b = _double(4), _double(2, 3, seed=1), _double(3, 2, seed=2)
    assert gradcheck(lambda x: x.sin() * x, (x,), fast_mode=fast_mode) is True
    assert gradcheck(lambda x: x.sin() * x, x, fast_mode=fast_mode) is True   # one tensor
    assert gradcheck(ember.matmul, (a, b), fast_mode=fast_mode)
    # several outputs, a non-tensor argument, an input without grad
    c = ember.tensor([0.5, 2.0, 1.0], dtype=ember.float64)
    assert gradcheck(lambda x, k, c: (x[:3] * c * k, x.exp().sum()), (x, 3.0, c),
                     fast_mode=fast_mode)
    # through a custom Function whose backward is right
    assert gradcheck(_RightSquare.apply, (x,), fast_mode=fast_mode)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradcheck_catches_a_wrong_backward(fast_mode):
    x = _double(3)
    with pytest.raises(GradcheckError) as info:
        gradcheck(_WrongSquare.apply, (x,), fast_mode=fast_mode)
    msg = str(info.value)
    assert "Jacobian mismatch for output 0 with respect to input 0" in msg
    assert "numerical:" in msg and "analytical:" in msg
    assert isinstance(info.value, RuntimeError)
    assert gradcheck(_WrongSquare.apply, (x,), raise_exception=False,
                     fast_mode=fast_mode) is False
    # the torch spelling of the exception's home
    from ember.autograd.gradcheck import GradcheckError as err
    assert err is GradcheckError


def test_gradcheck_names_the_failing_pair_as_torch_does():
    # output 1 wrong with respect to input 1: the same indices as torch's message
    def build(lib, sq):
        return lambda x, y: (x * 2, sq(y) + x.sum())

    class TorchWrongSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x

    xe, ye = _double(2), _double(3, seed=1)
    xt, yt = (torch.tensor(v.detach().numpy(), requires_grad=True) for v in (xe, ye))
    with pytest.raises(GradcheckError) as e:
        gradcheck(build(ember, _WrongSquare.apply), (xe, ye))
    from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError
    with pytest.raises(TorchGradcheckError) as t:
        torch.autograd.gradcheck(build(torch, TorchWrongSquare.apply), (xt, yt))
    assert str(e.value).splitlines()[0] == str(t.value).splitlines()[0]


def test_gradcheck_other_failures_and_input_checks():
    x = _double(3)
    with pytest.raises(GradcheckError, match="backward not multiplied by grad_output"):
        gradcheck(_NotScaled.apply, (x,), check_undefined_grad=False, eps=1e-6)
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda x: x * 2, (x.detach(),))
    with pytest.warns(UserWarning, match="not a double precision"):
        assert gradcheck(lambda x: x * 2, (ember.ones(3, requires_grad=True),),
                         eps=1e-3, atol=1e-3, rtol=1e-3)
    with pytest.raises(RuntimeError, match="stride 0"):
        gradcheck(lambda x: x * 2, (ember.ones(3, 1, dtype=ember.float64)
                                    .expand(3, 2).requires_grad_(True),))
    # no differentiable output: fine while it doesn't depend on the input
    assert gradcheck(lambda x: (x > 0).double(), (x,))
    with pytest.raises(NotImplementedError):
        gradcheck(lambda x: x, (x,), check_forward_ad=True)


def test_gradgradcheck():
    x, a, b = _double(3), _double(2, 3, seed=1), _double(3, 2, seed=2)
    assert gradgradcheck(lambda x: (x.sin() * x).exp(), (x,))
    assert gradgradcheck(lambda a, b: (a @ b).tanh(), (a, b))
    assert gradgradcheck(lambda a, b: (a @ b).tanh(), (a, b), fast_mode=True,
                         gen_non_contig_grad_outputs=True)
    g = ember.tensor(np.ones((2, 2)), dtype=ember.float64, requires_grad=True)
    assert gradgradcheck(lambda a, b: (a @ b) ** 3, (a, b), (g,))

    class OnceWrong(ember.autograd.Function):
        """x ** 3 whose backward is right but not differentiable correctly."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x.detach() ** 2 + (x - x.detach()) * g   # 2nd derivative wrong

    assert gradcheck(OnceWrong.apply, (x,))
    assert gradgradcheck(OnceWrong.apply, (x,), raise_exception=False) is False


# ---- anomaly switches ------------------------------------------------------------------

def test_top_level_anomaly_switches():
    try:
        ember.set_anomaly_enabled(True)
        assert ember.is_anomaly_enabled() and ember.is_anomaly_check_nan_enabled()
        assert ember.autograd.is_anomaly_enabled()
        ember.set_anomaly_enabled(True, check_nan=False)
        assert ember.is_anomaly_enabled() and not ember.is_anomaly_check_nan_enabled()
        x = ember.tensor([0.0], requires_grad=True)
        (x / x).sum().backward()          # NaN gradient, but NaN checks are off
        ember.set_anomaly_enabled(True)
        x.grad = None
        with pytest.raises(RuntimeError, match="nan"):
            (x / x).sum().backward()
    finally:
        ember.set_anomaly_enabled(False)
    assert not ember.is_anomaly_enabled() and ember.is_anomaly_check_nan_enabled()
