"""A trace keeps alive only what it must (ember/tracer/trace.py): a tensor the traced
function drops is freed during the first call, as in eager, and a new tensor that takes
a dead one's id is never mistaken for it. The compiled-autograd build still checks every
saved value and gradient against eager (ember/tracer/autograd_plan.py)."""
from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.tensor import Tensor
from ember.tracer.autograd_plan import CompiledAutograd
from ember.tracer.trace import Tracer, tracing


def _x(*shape, seed=0, grad=False):
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return ember.tensor(a, requires_grad=grad)


def _watch_trace(monkeypatch):
    """Weak references to every traced op's result, and whether each still lived (and
    the tracemalloc peak) when the trace finished, after the function returned. Recorded
    by hooks on the Tracer, so the function itself stays pure (no guard sees them)."""
    seen = {"refs": [], "ids": [], "alive_at_finish": [], "peak": []}
    record, finish = Tracer.record, Tracer.finish

    def rec(self, op, args, attrs, result):
        record(self, op, args, attrs, result)
        seen["refs"].append((op.name, weakref.ref(result)))
        seen["ids"].append(id(result))

    def fin(self, outputs):
        gc.collect()
        seen["alive_at_finish"].append([(n, r() is not None) for n, r in seen["refs"]])
        if tracemalloc.is_tracing():
            seen["peak"].append(tracemalloc.get_traced_memory()[1])
        return finish(self, outputs)

    monkeypatch.setattr(Tracer, "record", rec)
    monkeypatch.setattr(Tracer, "finish", fin)
    return seen


@pytest.mark.parametrize("grad", [False, True])
def test_an_intermediate_dies_inside_the_traced_call(monkeypatch, grad):
    """A big intermediate the function drops is freed on the first call (the trace) as
    in eager, with and without an autograd graph: only what the result needs lives on."""
    seen = _watch_trace(monkeypatch)

    def f(x):
        t = x * 2.0        # add's backward reads neither input: the graph keeps no t
        u = t.exp() + 1.0  # (exp's Node keeps its output's array, not the tensor)
        return u.sum()

    cf = ember.compile(f)
    x = _x(512, 512, grad=grad)
    got = cf(x)
    np.testing.assert_allclose(got.item(), f(x).item(), rtol=1e-5)
    alive = dict(seen["alive_at_finish"][0])
    assert set(alive) >= {"mul", "exp", "add", "sum"}
    assert not alive["mul"] and not alive["add"] and not alive["exp"] and alive["sum"]
    for _ in range(3):
        np.testing.assert_allclose(cf(x).item(), f(x).item(), rtol=1e-5)
    assert cf.stats()["cache_hits"] >= 1 and not cf.stats()["fallbacks"], cf.stats()


def test_a_chain_of_temporaries_peaks_like_eager(monkeypatch):
    """Ten 4 MB values in a chain (two temporaries a step): the trace holds a few, not
    all twenty. The peak is read when the trace finishes, before any build."""
    seen = _watch_trace(monkeypatch)
    n = 1 << 20                         # float32: 4 MB a tensor
    x = _x(n)

    def f(x):
        y = x
        for i in range(10):
            y = y * 1.0001 + float(i)   # the previous y dies
        return y

    cf = ember.compile(f)
    gc.collect()
    tracemalloc.start()
    try:
        got = cf(x)   # the trace: f runs eagerly under the tracer
    finally:
        tracemalloc.stop()
    assert cf.stats()["compiles"] == 1 and len(seen["peak"]) == 1
    np.testing.assert_allclose(got.numpy(), f(x).numpy(), rtol=1e-5)
    # The argument's snapshot, the previous y, the product, the sum, and slack.
    assert seen["peak"][0] < 5 * 4 * n, f"the trace peaked at {seen['peak'][0] / 2**20:.1f} MB"


def test_reused_ids_never_alias_a_dead_tensor(monkeypatch):
    """CPython gives a new tensor the id of one just freed: the trace must treat it as new.
    Temporaries die in a loop (their ids are reused, checked), some written in place and
    some views; the compiled result equals eager on new values at every call."""
    seen = _watch_trace(monkeypatch)

    def f(x, w):
        acc = x * 0.0
        for i in range(12):
            t = x * float(i + 1)
            if i % 3 == 0:
                t.add_(w)               # an in-place write of a temporary
            v = t[1:]                   # a view of it, dropped with it
            acc = acc + v.sum() + t.mean()
            del t, v
        return acc

    cf = ember.compile(f)
    for seed in range(5):
        x, w = _x(6, 5, seed=seed), _x(6, 5, seed=seed + 10)
        got = cf(x, w).numpy()
        if seed == 0:   # the trace ran: ids of dead temporaries were reused
            ids = seen["ids"]
            assert len(set(ids)) < len(ids), "CPython reused no id: the test proves nothing"
        np.testing.assert_allclose(got, f(x, w).numpy(), rtol=1e-5, atol=1e-5)
    assert cf.stats()["cache_hits"] >= 1 and not cf.stats()["fallbacks"], cf.stats()


def test_a_dead_tensors_entries_go_and_a_live_ones_stay():
    """The tracer forgets a tensor's node when it dies; inputs are held."""
    tracer = Tracer()
    x = Tensor._wrap(np.ones(3, np.float32))
    with tracing(tracer):
        tracer.add_arg(x, "x")
        t = x * 2
        k = id(t)
        assert k in tracer.env and k in tracer.arrays
        del t
        assert k not in tracer.env and k not in tracer.arrays and k not in tracer.live
        u = x + 1
    assert id(x) in tracer.env and tracer.env[id(u)] in tracer.graph
    assert [t for t in tracer.live_tensors() if t is x] == [x]


def test_data_set_to_a_dropped_temporary_is_followed():
    """``p.data = f(p)`` drops ``f(p)`` at once; the rebinding is still replayed (the
    tracer holds the source while ``p`` lives)."""
    p = _x(4, 3)
    ref = _x(4, 3)

    def step(p, g):
        p.data = p.data - 0.1 * g
        return p * 1.0

    g = _x(4, 3, seed=5)
    cf = ember.compile(step)
    for _ in range(4):
        got = cf(p, g).numpy()
        want = step(ref, g).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_allclose(p.numpy(), ref.numpy(), rtol=1e-6)
    assert not cf.stats()["fallbacks"], cf.stats()


def _mlp_step(model, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.mark.parametrize("which", ["forward", "backward"])
def test_the_first_call_check_compares_every_saved_value_and_gradient(monkeypatch, which):
    """A wrong compiled value anywhere among the forward's saved values (or the
    gradients) is caught by the compiled-autograd build: nothing needed is skipped now
    that the joint eager run frees what it no longer needs."""
    import ember.tracer.entry as entry_mod

    original = entry_mod.Entry.build_segment
    x, y = _x(8, 20), ember.tensor(np.random.default_rng(1).integers(0, 4, 8))

    def make():
        ember.manual_seed(0)
        return nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 4))

    # The values each half hands on, found with a correct build.
    counts = {}

    def counting(self, seg, g, env, escapes, observed=frozenset()):
        original(self, seg, g, env, escapes, observed)
        if isinstance(self.autograd_plans, bool):   # (False while CompiledAutograd builds)
            counts.setdefault(seg.lo == 0, len(seg.needs))

    monkeypatch.setattr(entry_mod.Entry, "build_segment", counting)
    model = ember.compile(make())
    for _ in range(3):   # traced twice, then built
        _mlp_step(model, x, y)
    (entry,) = model._compiled_forward.cache.values()
    assert isinstance(entry.autograd_plans, CompiledAutograd)
    n = counts[which == "forward"]
    assert n >= (3 if which == "forward" else 4)

    for k in range(n):   # each value, one at a time, made wrong
        def wrong(self, seg, g, env, escapes, observed=frozenset(), k=k):
            original(self, seg, g, env, escapes, observed)
            if isinstance(self.autograd_plans, bool) and (seg.lo == 0) == (which == "forward"):
                nid = sorted(seg.needs)[k]
                env[nid] = env[nid] + 1.0

        monkeypatch.setattr(entry_mod.Entry, "build_segment", wrong)
        model = ember.compile(make())
        reference = make()
        with pytest.warns(UserWarning, match="differs from eager"):
            for _ in range(3):
                a = _mlp_step(model, x, y)
                b = _mlp_step(reference, x, y)
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)
        (entry,) = model._compiled_forward.cache.values()
        assert entry.autograd_plans is False


def test_the_joint_eager_run_of_compiled_autograd_frees_as_eager(monkeypatch):
    """The compiled-autograd build replays the trace eagerly with its backward: a chain
    of ten 4 MB values whose backward saves none of them peaks at a few, not twenty (the
    forward values and the backward's gradients). Read when the first build starts."""
    import ember.tracer.entry as entry_mod

    n = 1 << 20
    original = entry_mod.Entry.build_segment
    peaks = []

    def build(self, seg, g, env, escapes, observed=frozenset()):
        if isinstance(self.autograd_plans, bool) and not peaks and tracemalloc.is_tracing():
            peaks.append(tracemalloc.get_traced_memory()[1])
        original(self, seg, g, env, escapes, observed)

    monkeypatch.setattr(entry_mod.Entry, "build_segment", build)

    def f(x):
        y = x
        for i in range(10):
            y = y + float(i)    # add's backward reads nothing: eager saves no y
        return y

    cf = ember.compile(f)
    x = _x(n, grad=True)
    for _ in range(2):          # traced twice; the third call builds the plans
        cf(x).sum().backward()
    x.grad = None
    gc.collect()
    tracemalloc.start()
    try:
        cf(x).sum().backward()
    finally:
        tracemalloc.stop()
    assert isinstance(next(iter(cf.cache.values())).autograd_plans, CompiledAutograd)
    np.testing.assert_allclose(x.grad.numpy(), np.ones(n, np.float32))
    # The seed, the output, the input's gradient and what passes between: a few.
    assert len(peaks) == 1 and peaks[0] < 5 * 4 * n, f"{peaks[0] / 2**20:.1f} MB"


@pytest.mark.parametrize("shape", [(1000, 700), (3, 1, 400000), (1, 1 << 21), (600000,)])
def test_the_check_compares_big_values_block_by_block_and_whole(shape):
    """``close`` goes block by block (so a check allocates little), and still sees a
    difference anywhere, its tolerance, NaNs and layouts as before."""
    from ember.tracer.checks import close

    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert close(a, a.copy()) and close(a, a * (1 + 1e-6))
    for where in (0, a.size // 2, a.size - 1):
        b = a.copy()
        b.reshape(-1)[where] += 1e-2
        assert not close(a, b), where
    b = a.copy()
    b.reshape(-1)[-1] = np.nan
    assert not close(a, b) and close(b, b.copy())
    assert not close(a, a.astype(np.float64)) and not close(a, a.reshape(-1)[:-1])
    i = np.arange(a.size).reshape(shape)
    j = i.copy()
    j.reshape(-1)[-1] += 1
    assert close(i, i.copy()) and not close(i, j)
    if a.ndim == 2:   # a transposed (strided) view
        c = np.array(a.T, order="C", copy=True)
        assert close(a.T, c)
        c[-1, -1] += 1
        assert not close(a.T, c)
