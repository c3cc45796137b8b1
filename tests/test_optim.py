"""ember.optim against PyTorch's optimizers, step for step, and against NumPy references."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import ember
from ember.optim import SGD, Adam, AdamW

RTOL, ATOL = 1e-4, 1e-5


# ---- a small problem, built identically in ember and in torch -------------------------------

def _init(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.standard_normal((4, 6)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(6).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((6, 2)).astype(np.float32) * 0.5,
        "x": rng.standard_normal((16, 4)).astype(np.float32),
        "t": rng.standard_normal((16, 2)).astype(np.float32),
    }


def _loss(lib, params, x, t):
    """A two-layer tanh net with a mean squared error: the same code runs on ember and torch."""
    w1, b1, w2 = params
    h = lib.tanh(x @ w1 + b1)
    return ((h @ w2 - t) ** 2).mean()


def _make(lib, data):
    params = [lib.tensor(data[k], requires_grad=True) for k in ("w1", "b1", "w2")]
    return params, lib.tensor(data["x"]), lib.tensor(data["t"])


def _np(t) -> np.ndarray:
    return t.detach().numpy()


def _trajectories(torch, ember_cls, torch_cls, kwargs, steps=50, groups=None, schedule=None):
    """Run both optimizers on the problem; check every parameter after every step."""
    data = _init()
    pe, xe, te = _make(ember, data)
    pt, xt, tt = _make(torch, data)

    def make_groups(params):
        if groups is None:
            return params
        return [dict(g, params=[params[i] for i in g["params"]]) for g in groups]

    oe = ember_cls(make_groups(pe), **kwargs)
    ot = torch_cls(make_groups(pt), **kwargs)
    for step in range(steps):
        if schedule is not None:
            schedule(step, oe)
            schedule(step, ot)
        for opt, lib, params, x, t in ((oe, ember, pe, xe, te), (ot, torch, pt, xt, tt)):
            opt.zero_grad()
            _loss(lib, params, x, t).backward()
            opt.step()
        for a, b in zip(pe, pt):
            np.testing.assert_allclose(_np(a), _np(b), rtol=RTOL, atol=ATOL,
                                       err_msg=f"step {step + 1}")
    return oe, ot, pe, pt


SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "everything": dict(lr=0.05, momentum=0.7, dampening=0.1, weight_decay=0.01),
    "nesterov_wd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02),
    "maximize": dict(lr=0.005, momentum=0.5, maximize=True),
}

ADAM_CONFIGS = {
    "default": dict(lr=0.01),
    "betas_eps": dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
    "amsgrad": dict(lr=0.01, amsgrad=True),
    "amsgrad_wd": dict(lr=0.01, amsgrad=True, weight_decay=0.05),
    "maximize": dict(lr=0.01, maximize=True),
}

ADAMW_CONFIGS = {
    "default": dict(lr=0.01),
    "weight_decay": dict(lr=0.01, weight_decay=0.3),
    "amsgrad": dict(lr=0.01, amsgrad=True, weight_decay=0.1),
}


@pytest.mark.parametrize("name", SGD_CONFIGS)
def test_sgd_matches_torch(name):
    torch = pytest.importorskip("torch")
    _trajectories(torch, SGD, torch.optim.SGD, SGD_CONFIGS[name])


@pytest.mark.parametrize("name", ADAM_CONFIGS)
def test_adam_matches_torch(name):
    torch = pytest.importorskip("torch")
    _trajectories(torch, Adam, torch.optim.Adam, ADAM_CONFIGS[name])


@pytest.mark.parametrize("name", ADAMW_CONFIGS)
def test_adamw_matches_torch(name):
    torch = pytest.importorskip("torch")
    _trajectories(torch, AdamW, torch.optim.AdamW, ADAMW_CONFIGS[name])


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_param_groups_with_own_options(cls):
    torch = pytest.importorskip("torch")
    groups = [{"params": [0, 1]}, {"params": [2], "lr": 0.003, "weight_decay": 0.1}]
    extra = {"momentum": 0.9} if cls == "SGD" else {}
    oe, ot, _, _ = _trajectories(torch, getattr(ember.optim, cls), getattr(torch.optim, cls),
                                 dict(lr=0.02, **extra), steps=30, groups=groups)
    assert oe.param_groups[1]["lr"] == 0.003 and oe.param_groups[0]["lr"] == 0.02
    assert oe.param_groups[0]["weight_decay"] == ot.param_groups[0]["weight_decay"]


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_lr_changed_between_steps(cls):
    torch = pytest.importorskip("torch")

    def schedule(step, opt):
        if step and step % 10 == 0:
            for g in opt.param_groups:
                g["lr"] *= 0.5
        if step == 25:
            opt.param_groups[0]["lr"] = 0.2

    extra = {"momentum": 0.9} if cls == "SGD" else {}
    _trajectories(torch, getattr(ember.optim, cls), getattr(torch.optim, cls),
                  dict(lr=0.05, **extra), steps=40, schedule=schedule)


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_state_dict_round_trip(cls):
    torch = pytest.importorskip("torch")
    kwargs = dict(lr=0.02, momentum=0.9) if cls == "SGD" else dict(lr=0.02, amsgrad=True)
    oe, ot, pe, pt = _trajectories(torch, getattr(ember.optim, cls), getattr(torch.optim, cls),
                                   kwargs, steps=10)
    sd = oe.state_dict()
    sdt = ot.state_dict()
    assert sd["state"].keys() == sdt["state"].keys()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in sdt["param_groups"]]
    for i in sd["state"]:
        assert sd["state"][i].keys() == sdt["state"][i].keys()
        for k in sd["state"][i]:
            np.testing.assert_allclose(_np(sd["state"][i][k]), sdt["state"][i][k].numpy(),
                                       rtol=RTOL, atol=ATOL)

    # A fresh optimizer on copies of the parameters continues exactly as the original.
    pe2 = [ember.tensor(_np(p), requires_grad=True) for p in pe]
    oe2 = getattr(ember.optim, cls)(pe2, lr=1.0)
    oe2.load_state_dict(sd)
    assert oe2.param_groups[0]["lr"] == 0.02
    data = _init()
    x, t = ember.tensor(data["x"]), ember.tensor(data["t"])
    for _ in range(10):
        for opt, params in ((oe, pe), (oe2, pe2)):
            opt.zero_grad()
            _loss(ember, params, x, t).backward()
            opt.step()
    for a, b in zip(pe, pe2):
        np.testing.assert_array_equal(_np(a), _np(b))
    # Loading copied the state: the two optimizers don't share buffers.
    for p, p2 in zip(pe, pe2):
        for k, v in oe.state[p].items():
            assert v is not oe2.state[p2][k]


def test_load_state_dict_rejects_mismatched_groups():
    a = ember.zeros(3, requires_grad=True)
    b = ember.zeros(2, requires_grad=True)
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    other = SGD([ember.zeros(3, requires_grad=True)], lr=0.5)
    with pytest.raises(ValueError, match="doesn't match"):
        opt.load_state_dict(other.state_dict())
    assert opt.param_groups[0]["lr"] == 0.1  # untouched


# ---- always-on NumPy references --------------------------------------------------------------

def _grads(seed: int, steps: int, shape) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]


def test_sgd_momentum_numpy_reference():
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    p = ember.tensor(w0, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)
    w, buf = w0.astype(np.float64), None
    for g in _grads(1, 50, 3):
        p.grad = ember.tensor(g)
        opt.step()
        d = g + 0.01 * w
        buf = d.copy() if buf is None else 0.9 * buf + 0.8 * d
        w = w - 0.1 * buf
    np.testing.assert_allclose(_np(p), w, rtol=1e-5, atol=1e-6)


def test_sgd_nesterov_numpy_reference():
    w0 = np.array([[0.3, -1.0], [2.0, 0.0]], np.float32)
    p = ember.tensor(w0, requires_grad=True)
    opt = SGD([p], lr=0.05, momentum=0.9, nesterov=True)
    w, buf = w0.astype(np.float64), None
    for g in _grads(2, 30, (2, 2)):
        p.grad = ember.tensor(g)
        opt.step()
        buf = g.copy() if buf is None else 0.9 * buf + g
        w = w - 0.05 * (g + 0.9 * buf)
    np.testing.assert_allclose(_np(p), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_numpy_reference(amsgrad, decoupled):
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-8, 0.05
    w0 = np.array([0.5, -1.5, 2.0, 0.0], np.float32)
    p = ember.tensor(w0, requires_grad=True)
    cls = AdamW if decoupled else Adam
    opt = cls([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=amsgrad)
    w = w0.astype(np.float64)
    m = np.zeros(4)
    v = np.zeros(4)
    vmax = np.zeros(4)
    for t, g in enumerate(_grads(3, 50, 4), start=1):
        p.grad = ember.tensor(g)
        opt.step()
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(vhat) + eps)
    np.testing.assert_allclose(_np(p), w, rtol=1e-5, atol=1e-6)


# ---- behaviour the compiler relies on ------------------------------------------------------

def test_adam_step_is_an_inplace_float32_tensor():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.grad = ember.tensor([0.5, -0.5])
    opt.step()
    step = opt.state[p]["step"]
    moments = (opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])
    arrays = [step._data] + [m._data for m in moments]
    for _ in range(4):
        opt.step()
    assert isinstance(step, ember.Tensor) and step.ndim == 0 and step.dtype is ember.float32
    assert opt.state[p]["step"] is step and step.item() == 5.0
    assert step._data is arrays[0]  # same memory, written in place
    assert all(m._data is a for m, a in zip(moments, arrays[1:]))


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_params_updated_in_place_without_graph(cls):
    p = ember.tensor([1.0, -2.0, 3.0], requires_grad=True)
    kwargs = {"momentum": 0.9} if cls is SGD else {}
    opt = cls([p], lr=0.1, **kwargs)
    memory = p._data
    for _ in range(3):
        p.grad = ember.tensor([1.0, 1.0, -1.0])
        opt.step()
    assert p._data is memory
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert p._version == 3 + (3 if cls is AdamW else 0)
    if cls is SGD:
        assert opt.state[p]["momentum_buffer"].grad_fn is None


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_tensor_lr_equals_float_lr(cls):
    a = ember.tensor([1.0, -2.0], requires_grad=True)
    b = ember.tensor([1.0, -2.0], requires_grad=True)
    oa = cls([a], lr=0.05)
    ob = cls([b], lr=ember.tensor(0.05))
    for g in _grads(4, 10, 2):
        a.grad = ember.tensor(g)
        b.grad = ember.tensor(g)
        oa.step()
        ob.step()
    np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)


# ---- zero_grad, groups, errors ---------------------------------------------------------------

def test_zero_grad_set_to_none():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = SGD([p], lr=0.1)
    (p * p).sum().backward()
    assert p.grad is not None
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing happens
    np.testing.assert_array_equal(_np(p), [1.0, 2.0])


def test_zero_grad_keeps_zeroed_tensor():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = SGD([p], lr=0.1)
    (p * p).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad
    np.testing.assert_array_equal(_np(p.grad), [0.0, 0.0])
    (p * 3).sum().backward()  # accumulates onto the zeros
    np.testing.assert_array_equal(_np(p.grad), [3.0, 3.0])


def test_step_skips_params_without_grad():
    a = ember.tensor([1.0], requires_grad=True)
    b = ember.tensor([1.0], requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    a.grad = ember.tensor([1.0])
    opt.step()
    assert b not in opt.state and _np(b)[0] == 1.0 and _np(a)[0] != 1.0


def test_closure_returns_loss():
    p = ember.tensor([3.0], requires_grad=True)
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0 and _np(p)[0] == pytest.approx(1.5)


def test_add_param_group_and_defaults():
    a = ember.zeros(2, requires_grad=True)
    b = ember.zeros(2, requires_grad=True)
    opt = Adam([a], lr=0.1, betas=(0.5, 0.6))
    opt.add_param_group({"params": b, "lr": 0.2})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["betas"] == (0.5, 0.6) and opt.param_groups[1]["lr"] == 0.2
    assert opt.defaults["lr"] == 0.1
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    assert "Parameter Group 1" in repr(opt)


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD([], lr=0.1), "empty parameter list"),
    (lambda p: SGD([p], lr=-1.0), "Invalid learning rate"),
    (lambda p: SGD([p], lr=0.1, nesterov=True), "Nesterov"),
    (lambda p: Adam([p], betas=(1.0, 0.9)), "beta parameter at index 0"),
    (lambda p: Adam([p], eps=-1.0), "epsilon"),
    (lambda p: SGD([p, p], lr=0.1), "duplicate"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(ember.zeros(2, requires_grad=True))


def test_params_must_be_iterable_of_leaf_tensors():
    p = ember.zeros(2, requires_grad=True)
    with pytest.raises(TypeError):
        SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([p * 2], lr=0.1)


def test_state_dict_deepcopy_is_a_snapshot():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.grad = ember.tensor([1.0, 1.0])
    opt.step()
    snap = copy.deepcopy(opt.state_dict())
    opt.step()
    assert snap["state"][0]["step"].item() == 1.0
    assert opt.state_dict()["state"][0]["step"].item() == 2.0


def test_state_under_other_keys_survives_a_round_trip():
    # alphadl's Lookahead keeps its slow weights in optimizer.state under id(param):
    # torch saves and loads them under that key, ember dropped them
    p = ember.nn.Parameter(ember.ones(2))
    opt = ember.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = ember.ones(2)
    opt.step()
    opt.state[id(p)] = {"slow": ember.full((2,), 3.0)}
    sd = opt.state_dict()
    assert set(sd["state"]) == {0, id(p)}
    other = ember.optim.SGD([p], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    assert other.state[id(p)]["slow"].tolist() == [3.0, 3.0]
    assert "momentum_buffer" in other.state[p]
