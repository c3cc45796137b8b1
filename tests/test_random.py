"""Random numbers: ember.Generator, generator= on every random function, the default
generators and their state, multinomial and the other samplers, and the same numbers
eager and compiled for the same seed. PyTorch's streams differ by design; what is
compared with torch is the API (seeds, state types, errors, shapes and dtypes)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from conftest import to_np


@pytest.fixture(autouse=True)
def _seeded():
    ember.manual_seed(0)
    yield
    ember.manual_seed(0)


# ---- every random function: generator= reproduces its stream, leaves the default alone ------

DRAWS = {
    "rand": lambda g: ember.rand(3, 4, generator=g),
    "randn": lambda g: ember.randn(5, generator=g, dtype=ember.float64),
    "randint": lambda g: ember.randint(-3, 9, (6,), generator=g),
    "randint_high": lambda g: ember.randint(7, (2, 3), generator=g),
    "randperm": lambda g: ember.randperm(9, generator=g),
    "rand_like": lambda g: ember.rand_like(ember.zeros(4), generator=g),
    "randn_like": lambda g: ember.randn_like(ember.zeros(4), generator=g),
    "randint_like": lambda g: ember.randint_like(ember.zeros(4), 0, 5, generator=g),
    "multinomial": lambda g: ember.multinomial(ember.tensor([0.2, 0.3, 0.5]), 6, True, generator=g),
    "multinomial_norep": lambda g: ember.multinomial(ember.ones(2, 5), 3, generator=g),
    "normal_tensors": lambda g: ember.normal(ember.zeros(3), ember.ones(3), generator=g),
    "normal_floats": lambda g: ember.normal(2.0, 3.0, (4,), generator=g),
    "normal_": lambda g: ember.zeros(5).normal_(1.0, 2.0, generator=g),
    "uniform_": lambda g: ember.zeros(5).uniform_(-1, 1, generator=g),
    "bernoulli": lambda g: ember.bernoulli(ember.full((8,), 0.5), generator=g),
    "bernoulli_method": lambda g: ember.full((8,), 0.5).bernoulli(generator=g),
    "bernoulli_float": lambda g: ember.zeros(8).bernoulli_(0.3, generator=g),
    "bernoulli_tensor": lambda g: ember.zeros(8).bernoulli_(ember.full((8,), 0.7), generator=g),
    "exponential_": lambda g: ember.zeros(6).exponential_(2.0, generator=g),
    "random_": lambda g: ember.zeros(6, dtype=ember.int64).random_(3, 11, generator=g),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_generator_reproduces_and_leaves_default_alone(name):
    draw = DRAWS[name]
    ember.manual_seed(1)
    expected_default = ember.rand(4).numpy()
    g = ember.Generator().manual_seed(5)
    first = to_np(draw(g))
    second = to_np(draw(g))
    g.manual_seed(5)
    ember.manual_seed(1)
    again = to_np(draw(g))
    # Draws from g between seeding and drawing from the default change nothing there.
    assert np.array_equal(ember.rand(4).numpy(), expected_default)
    assert np.array_equal(first, again)
    if name not in ("bernoulli", "bernoulli_method"):   # 8 coin flips may repeat
        assert not np.array_equal(first, second), "the generator did not advance"


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_default_generator_when_none(name):
    ember.manual_seed(11)
    a = to_np(DRAWS[name](None))
    ember.manual_seed(11)
    assert np.array_equal(to_np(DRAWS[name](None)), a)
    # and the default generator object is the one ember.manual_seed seeds
    ember.default_generator.manual_seed(11)
    assert np.array_equal(to_np(DRAWS[name](ember.default_generator)), a)


def test_generator_api_matches_torch():
    torch = pytest.importorskip("torch")
    g, tg = ember.Generator(), torch.Generator()
    assert g.initial_seed() == tg.initial_seed() == 67280421310721
    assert g.manual_seed(3) is g and g.initial_seed() == 3
    for seed in (-1, -(1 << 63), (1 << 64) - 1, 12345):
        assert g.manual_seed(seed).initial_seed() == tg.manual_seed(seed).initial_seed()
    for seed in (1 << 64, -(1 << 63) - 1):
        with pytest.raises(ValueError):
            tg.manual_seed(seed)
        with pytest.raises(ValueError):
            g.manual_seed(seed)
    assert str(g.device) == str(tg.device) == "cpu"
    s = g.seed()
    assert isinstance(s, int) and g.initial_seed() == s and 0 <= s < 1 << 64
    assert isinstance(ember.manual_seed(4), ember.Generator)
    assert ember.initial_seed() == 4


def test_state_round_trip_and_errors():
    torch = pytest.importorskip("torch")
    g = ember.Generator().manual_seed(9)
    ember.rand(3, generator=g)
    state = g.get_state()
    assert state.dtype is ember.uint8 and state.ndim == 1
    a = ember.randn(10, generator=g).numpy()
    b = ember.randn(10, generator=g).numpy()
    g.set_state(state)
    assert np.array_equal(ember.randn(10, generator=g).numpy(), a)
    # a state carries the seed: another generator continues the same stream
    h = ember.Generator().set_state(state)
    assert h.initial_seed() == 9
    ember.randn(10, generator=h)
    assert np.array_equal(ember.randn(10, generator=h).numpy(), b)
    # the errors PyTorch gives: a non-byte tensor is a TypeError, a wrong size a RuntimeError
    tg = torch.Generator()
    bad_states = ((ember.zeros(48), TypeError), (ember.zeros(3, dtype=ember.uint8), RuntimeError))
    for bad, err in bad_states:
        with pytest.raises(err):
            g.set_state(bad)
        with pytest.raises(err):
            tg.set_state(torch.from_numpy(bad.numpy()))
    # a failed set_state leaves the generator as it was
    g.set_state(state)
    with pytest.raises(RuntimeError):
        g.set_state(ember.zeros(3, dtype=ember.uint8))
    assert np.array_equal(ember.randn(10, generator=g).numpy(), a)


def test_default_rng_state_functions():
    ember.manual_seed(2)
    state = ember.get_rng_state()
    assert state.dtype is ember.uint8
    a = ember.rand(5).numpy()
    ember.set_rng_state(state)
    assert np.array_equal(ember.rand(5).numpy(), a)
    ember.random.set_rng_state(state)
    assert np.array_equal(ember.random.get_rng_state().numpy(), state.numpy())
    assert ember.random.manual_seed is ember.manual_seed
    assert ember.random.default_generator is ember.default_generator


def test_seed_draws_a_fresh_seed():
    s1 = ember.seed()
    s2 = ember.random.seed()
    assert ember.initial_seed() == s2 and s1 != s2


def test_fork_rng_restores_the_stream():
    ember.manual_seed(3)
    a = ember.rand(4).numpy()
    ember.manual_seed(3)
    with ember.random.fork_rng():
        ember.manual_seed(99)
        ember.rand(100)
    assert np.array_equal(ember.rand(4).numpy(), a)
    # CUDA generators named by index, string or device are put back too (no GPU needed)
    ember.cuda.manual_seed(5)
    before = ember.cuda.get_rng_state().numpy()
    for devices in ([0], ["cuda:0"], [ember.device("cuda")]):
        with ember.random.fork_rng(devices=devices):
            ember.cuda.manual_seed(77)
        assert np.array_equal(ember.cuda.get_rng_state().numpy(), before)
    ember.manual_seed(3)
    with ember.random.fork_rng(enabled=False):   # then the draws inside do count
        ember.rand(1)
    assert not np.array_equal(ember.rand(4).numpy(), a)


def test_pickled_generator_continues_the_stream():
    g = ember.Generator().manual_seed(21)
    ember.rand(2, generator=g)
    h = pickle.loads(pickle.dumps(g))
    assert h.initial_seed() == 21
    assert np.array_equal(ember.rand(6, generator=g).numpy(), ember.rand(6, generator=h).numpy())


def test_unseeded_start_is_pytorchs_default_seed():
    import subprocess
    import sys
    code = "import ember; print(ember.initial_seed(), ember.rand(3).tolist())"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert outs[0] == outs[1] and outs[0].startswith("67280421310721")


def test_cuda_seeding_needs_no_gpu_and_leaves_cpu_alone():
    ember.manual_seed(5)
    a = ember.rand(3).numpy()
    ember.manual_seed(5)
    ember.cuda.manual_seed(123)
    ember.cuda.manual_seed_all(123)
    assert ember.cuda.initial_seed() == 123
    assert ember.initial_seed() == 5
    assert np.array_equal(ember.rand(3).numpy(), a)
    state = ember.cuda.get_rng_state()
    assert state.dtype is ember.uint8 and state.shape == (16,)   # seed and offset, as torch
    ember.manual_seed(8)
    assert ember.cuda.initial_seed() == 8    # ember.manual_seed seeds every device


def test_generator_device_must_match():
    torch = pytest.importorskip("torch")
    from cupy_standin import installed
    with installed():
        g = ember.Generator("cuda")
        a = ember.rand(4, device="cuda", generator=g).cpu().numpy()
        state = g.get_state()
        b = ember.rand(4, device="cuda", generator=g).cpu().numpy()
        g.set_state(state)
        assert np.array_equal(ember.rand(4, device="cuda", generator=g).cpu().numpy(), b)
        g.manual_seed(g.initial_seed())
        assert np.array_equal(ember.rand(4, device="cuda", generator=g).cpu().numpy(), a)
        m = ember.multinomial(ember.tensor([0.0, 1.0, 2.0], device="cuda"), 5, True, generator=g)
        assert m.device.type == "cuda" and (m.cpu().numpy() > 0).all()
        with pytest.raises(RuntimeError, match="device type for generator"):
            ember.rand(2, generator=g)
        with pytest.raises(RuntimeError, match="device type for generator"):
            ember.rand(2, device="cuda", generator=ember.Generator())
    with pytest.raises(RuntimeError):
        torch.rand(2, generator=torch.Generator("meta"))


# ---- the samplers: distributions, shapes, dtypes, errors ----------------------------------------

def test_rand_randn_statistics_all_float_dtypes():
    g = ember.Generator().manual_seed(0)
    for dt in (ember.float16, ember.bfloat16, ember.float32, ember.float64):
        u = ember.rand(20000, generator=g, dtype=dt)
        n = ember.randn(20000, generator=g, dtype=dt)
        assert u.dtype is dt and n.dtype is dt
        uv, nv = u.float().numpy(), n.float().numpy()
        assert uv.min() >= 0 and uv.max() < 1
        assert abs(uv.mean() - 0.5) < 0.01 and abs(nv.mean()) < 0.03 and abs(nv.std() - 1) < 0.03
    c = ember.randn(20000, generator=g, dtype=ember.complex64).numpy()
    # PyTorch's complex normal: each part has variance 1/2
    assert abs(c.real.var() - 0.5) < 0.03 and abs(c.imag.var() - 0.5) < 0.03


def test_multinomial_frequencies_and_shapes():
    torch = pytest.importorskip("torch")
    g = ember.Generator().manual_seed(0)
    p = np.array([0.1, 0.0, 0.6, 0.3])
    draws = ember.multinomial(ember.tensor(p), 40000, replacement=True, generator=g).numpy()
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, p, atol=0.01)
    # unnormalized weights, 2-D, shapes and dtypes as torch's
    w = np.array([[1.0, 2.0, 0.0, 1.0], [0.0, 0.0, 5.0, 0.0]])
    for k, rep in ((3, True), (1, False), (2, False)):
        e = ember.multinomial(ember.tensor(w), k, rep, generator=g)
        t = torch.multinomial(torch.tensor(w), k, rep)
        assert e.shape == tuple(t.shape) and e.dtype.name == str(t.dtype)[6:]
        assert (w[np.arange(2)[:, None], e.numpy()][:, :1] > 0).all()
    # without replacement: distinct, and the first draw follows the weights
    rows = ember.multinomial(ember.tensor(np.tile(p, (20000, 1))), 3, generator=g).numpy()
    assert all(len(set(r)) == 3 for r in rows[:200])
    assert (rows != 1).all()    # zero weight is never drawn while others remain
    np.testing.assert_allclose(np.bincount(rows[:, 0], minlength=4) / len(rows), p, atol=0.015)


@pytest.mark.parametrize("probs,k,rep", [
    ([1.0, -1.0, 0.0], 1, True), ([0.0, 0.0], 1, True), ([1.0, 1.0], 3, False),
    ([float("nan"), 1.0], 1, True), ([float("inf"), 1.0], 1, True), ([[[1.0]]], 1, True),
    ([1.0, 2.0], 0, True)])
def test_multinomial_errors_as_torch(probs, k, rep):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as te:
        torch.multinomial(torch.tensor(probs), k, rep)
    with pytest.raises(RuntimeError) as ee:
        ember.multinomial(ember.tensor(probs), k, rep)
    words = {"prob_dist": "prob_dist", "inf": "`inf`", "sum of": "sum of",
             "n_sample >": "n_sample >"}
    for key, word in words.items():
        if key in str(te.value):
            assert word in str(ee.value), (te.value, ee.value)


def test_bernoulli_exponential_random_distributions():
    torch = pytest.importorskip("torch")
    g = ember.Generator().manual_seed(0)
    p = ember.tensor([0.0, 0.25, 1.0]).expand(20000, 3)
    b = ember.bernoulli(p, generator=g)
    assert b.dtype is ember.float32
    np.testing.assert_allclose(b.numpy().mean(0), [0.0, 0.25, 1.0], atol=0.01)
    assert ember.bernoulli(ember.full((3,), 0.5), 0.0).numpy().tolist() == [0, 0, 0]
    # a bfloat16 tensor's flips are drawn in float32: p = 0.999 is not rounded up to 1
    hb = ember.zeros(100000, dtype=ember.bfloat16).bernoulli_(0.999, generator=g)
    assert hb.dtype is ember.bfloat16 and 0.998 < hb.float().numpy().mean() < 0.9995
    i = ember.zeros(20000, dtype=ember.int64).bernoulli_(0.5, generator=g)
    assert i.dtype is ember.int64 and abs(i.numpy().mean() - 0.5) < 0.02
    with pytest.raises(RuntimeError):
        torch.zeros(3).bernoulli_(1.5)
    with pytest.raises(RuntimeError):
        ember.zeros(3).bernoulli_(1.5)
    e = ember.zeros(20000, dtype=ember.float64).exponential_(4.0, generator=g).numpy()
    assert e.min() >= 0 and abs(e.mean() - 0.25) < 0.01
    with pytest.raises(RuntimeError):
        ember.zeros(2).exponential_(-1.0)
    # random_: [from, to), [0, to), and the full default ranges of each dtype
    r = ember.zeros(5000, dtype=ember.int64).random_(3, 7, generator=g).numpy()
    assert set(r.tolist()) == {3, 4, 5, 6}
    assert set(ember.zeros(5000).random_(4, generator=g).numpy().tolist()) == {0, 1, 2, 3}
    r8 = ember.zeros(5000, dtype=ember.int8).random_(generator=g).numpy()
    assert r8.min() >= 0 and r8.max() > 100 and r8.dtype == np.int8
    rf = ember.zeros(5000).random_(generator=g).numpy()
    assert rf.min() >= 0 and rf.max() <= 2 ** 24 and rf.max() > 2 ** 23
    with pytest.raises(RuntimeError):
        ember.zeros(3).random_(5, 5)


def test_normal_forms_match_torch_shapes_and_dtypes():
    torch = pytest.importorskip("torch")
    g = ember.Generator().manual_seed(0)
    cases = [
        (lambda m: m.normal(m.zeros(3, 1, dtype=m.float64), m.ones(4)), ),
        (lambda m: m.normal(m.zeros(2, 3), 2.0), ),
        (lambda m: m.normal(1.0, m.ones(5)), ),
        (lambda m: m.normal(0.0, 1.0, (2, 2)), ),
    ]
    for (fn,) in cases:
        e, t = fn(ember), fn(torch)
        assert e.shape == tuple(t.shape) and e.dtype.name == str(t.dtype)[6:]
    big = ember.normal(ember.full((20000,), 3.0), ember.full((20000,), 2.0), generator=g).numpy()
    assert abs(big.mean() - 3.0) < 0.05 and abs(big.std() - 2.0) < 0.05
    with pytest.raises(RuntimeError):
        ember.normal(ember.zeros(2), -1.0)


def test_dropout_reproducible_with_seed():
    x = ember.ones(1000)
    ember.manual_seed(4)
    a = F.dropout(x, 0.3).numpy()
    ember.manual_seed(4)
    b = F.dropout(x, 0.3).numpy()
    assert np.array_equal(a, b) and 0.2 < (a == 0).mean() < 0.4


# ---- compiled == eager for the same seed; a compiled generator advances -------------------------

def _runs(fn, args_for_call, n=5):
    return [to_np(fn(*args_for_call())) for _ in range(n)]


def test_compiled_default_generator_same_numbers_as_eager():
    def step(x):
        h = F.dropout(x * 2, 0.5) + ember.randn(4)
        return h + ember.multinomial(ember.ones(4), 4).to(ember.float32)

    cf = ember.compile(step)
    x = ember.ones(4)
    ember.manual_seed(7)
    eager = _runs(step, lambda: (x,))
    after_eager = ember.rand(2).numpy()
    ember.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = _runs(cf, lambda: (x,))
    assert all(np.array_equal(a, b) for a, b in zip(eager, compiled))
    assert np.array_equal(ember.rand(2).numpy(), after_eager)   # the stream is where eager left it
    assert cf.stats()["cache_hits"] >= 2 and cf.stats()["eager_calls"] == 0


def test_compiled_generator_argument_is_used_and_advanced():
    def f(x, g):
        return x + ember.rand(4, generator=g) + ember.randn(4, generator=g)

    cf = ember.compile(f)
    x = ember.zeros(4)
    g1, g2 = ember.Generator().manual_seed(3), ember.Generator().manual_seed(3)
    eager = _runs(f, lambda: (x, g1))
    compiled = _runs(cf, lambda: (x, g2))
    assert all(np.array_equal(a, b) for a, b in zip(eager, compiled))
    assert np.array_equal(g1.get_state().numpy(), g2.get_state().numpy())
    # another generator object is not the traced one: guarded, so its own stream is used
    g3, g4 = ember.Generator().manual_seed(50), ember.Generator().manual_seed(50)
    assert np.array_equal(to_np(cf(x, g3)), to_np(f(x, g4)))
    # a state set between calls is read at the next call
    state = g2.get_state()
    a = to_np(cf(x, g2))
    g2.set_state(state)
    assert np.array_equal(to_np(cf(x, g2)), a)
    # the default generator was not touched by any of it
    ember.manual_seed(0)
    d = ember.rand(3).numpy()
    ember.manual_seed(0)
    cf(x, g2)
    assert np.array_equal(ember.rand(3).numpy(), d)


def test_compiled_generator_from_closure_and_in_place_fills():
    g = ember.Generator().manual_seed(1)

    def f(x):
        y = x.clone().normal_(0.0, 1.0, generator=g)
        return y + ember.zeros(4).bernoulli_(0.5, generator=g)

    cf = ember.compile(f)
    x = ember.zeros(4)
    eager = _runs(f, lambda: (x,))
    g.manual_seed(1)
    compiled = _runs(cf, lambda: (x,))
    assert all(np.array_equal(a, b) for a, b in zip(eager, compiled))


def test_compiled_training_with_dropout_matches_eager():
    def make():
        ember.manual_seed(0)
        nn = ember.nn
        model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 1))
        return model, ember.optim.SGD(model.parameters(), lr=0.1)

    x, y = ember.randn(16, 6), ember.randn(16, 1)

    def step(model, opt):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    losses = []
    for compiled in (False, True):
        model, opt = make()
        fn = ember.compile(step) if compiled else step
        ember.manual_seed(42)
        losses.append([float(fn(model, opt)) for _ in range(6)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)


def test_seeding_inside_a_compiled_function_runs_eagerly_with_the_reason():
    def f(x):
        ember.manual_seed(0)
        return x + ember.rand(3)

    def h(x, g, state):
        g.set_state(state)
        return x + ember.randn(3, generator=g)

    cf, ch = ember.compile(f), ember.compile(h)
    x = ember.zeros(3)
    with pytest.warns(UserWarning, match="manual_seed"):
        outs = [to_np(cf(x)) for _ in range(4)]
    assert all(np.array_equal(o, to_np(f(x))) for o in outs)   # reseeded at every call
    assert any("manual_seed" in r for r in cf.stats()["fallbacks"])
    g = ember.Generator().manual_seed(2)
    state = g.get_state()
    with pytest.warns(UserWarning, match="set_state"):
        outs = [to_np(ch(x, g, state)) for _ in range(4)]
    assert all(np.array_equal(o, outs[0]) for o in outs)
    with pytest.raises(ember.CompileError, match="manual_seed"):
        ember.compile(f, fullgraph=True)(x)


def test_compiled_cuda_draws_equal_eager_with_the_standin():
    from cupy_standin import installed
    from ember.ops import random as rnd
    with installed():
        rnd._cuda_defaults.clear()   # made on first use: inside the trace below
        def f(x):
            return x + ember.rand(4, device="cuda") * 2

        cf = ember.compile(f)
        x = ember.zeros(4, device="cuda")
        ember.manual_seed(6)
        eager = [to_np(f(x)) for _ in range(4)]
        ember.manual_seed(6)
        rnd._cuda_defaults.clear()
        compiled = [to_np(cf(x)) for _ in range(4)]
        assert all(np.array_equal(a, b) for a, b in zip(eager, compiled))
        assert not cf.stats()["fallbacks"] and cf.stats()["eager_calls"] == 0


@pytest.mark.parametrize("init", ["uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_",
                                  "xavier_uniform_", "xavier_normal_"])
def test_nn_init_uses_the_generator(init):
    fn = getattr(ember.nn.init, init)
    ember.manual_seed(0)
    d = ember.rand(3).numpy()
    ember.manual_seed(0)
    a = fn(ember.empty(4, 5), generator=ember.Generator().manual_seed(1)).numpy()
    b = fn(ember.empty(4, 5), generator=ember.Generator().manual_seed(1)).numpy()
    assert np.array_equal(a, b)
    assert np.array_equal(ember.rand(3).numpy(), d)   # the default stream was not used
