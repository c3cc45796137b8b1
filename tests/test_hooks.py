"""Hooks against PyTorch: Tensor.register_hook (leaves and non-leaves, replacing the
gradient, order, removal, errors) and module hooks (forward pre-hooks and hooks with
with_kwargs/prepend/always_call, full backward hooks and pre-hooks), each scenario run
in both libraries on the same data; and hooks under ember.compile (compiled == eager,
adding or removing a hook recompiles, gradient hooks run eagerly with a reason)."""
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _np(t):
    return None if t is None else t.detach().numpy()


def _same(a, b, tol=1e-10):
    if a is None or b is None:
        assert a is None and b is None
        return
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


def _both(scenario):
    """Run ``scenario(lib, nnlib)`` with torch and with ember; return both results."""
    return scenario(torch, torch.nn), scenario(ember, nn)


def _tensor(lib, a, grad=False):
    return lib.tensor(np.array(a, dtype=np.float64), requires_grad=grad)


# ---- Tensor.register_hook ---------------------------------------------------------------

def test_leaf_hook_replaces_gradient_and_runs_once_on_the_sum():
    x0 = RNG.standard_normal(4)

    def scenario(lib, _):
        x = _tensor(lib, x0, True)
        seen = []
        x.register_hook(lambda g: seen.append(g.clone()))
        x.register_hook(lambda g: g * 2)
        x.register_hook(lambda g: seen.append(g.clone()))
        (x * 3 + x.exp() + x * x).sum().backward()   # three contributions, one hook call each
        return x.grad, seen

    (tg, ts), (eg, es) = _both(scenario)
    _same(eg, tg)
    assert len(es) == len(ts) == 2
    for a, b in zip(es, ts):
        _same(a, b)


def test_non_leaf_hook_sees_total_gradient_and_replaces_it():
    x0 = RNG.standard_normal((2, 3))

    def scenario(lib, _):
        x = _tensor(lib, x0, True)
        y = x.tanh()
        seen = []
        y.register_hook(lambda g: seen.append(g.clone()))
        y.register_hook(lambda g: g.clamp(max=0.5))
        z = y * y + y.sin()
        z.retain_grad()
        h = z.register_hook(lambda g: g * 10)
        h.remove()                                   # a removed hook does not run
        z.sum().backward()
        return x.grad, seen[0]

    (tg, ts), (eg, es) = _both(scenario)
    _same(eg, tg)
    _same(es, ts)


def test_hook_handle_as_context_manager_and_errors():
    def scenario(lib, _):
        x = _tensor(lib, [1.0, 2.0], True)
        with x.register_hook(lambda g: g * 100):
            pass
        (x * 2).sum().backward()
        return x.grad

    tg, eg = _both(scenario)
    _same(eg, tg)
    for lib in (torch, ember):
        with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't "
                                               "require gradient"):
            lib.ones(2).register_hook(lambda g: g)
    x = ember.ones(3, requires_grad=True)
    x.register_hook(lambda g: g[:2])
    with pytest.raises(RuntimeError, match="has changed the size of value"):
        (x * 2).sum().backward()


def test_hook_on_root_leaf_and_intermediate_used_twice():
    def scenario(lib, _):
        x = _tensor(lib, [0.5, -1.0, 2.0], True)
        x.register_hook(lambda g: g + 1)
        x.backward(_tensor(lib, [1.0, 2.0, 3.0]))       # the root is the leaf itself
        w = _tensor(lib, [1.0, 2.0, 3.0], True)
        h = w * 2
        calls = []
        h.register_hook(lambda g: calls.append(1))
        (h * h + h).sum().backward()
        return x.grad, w.grad, len(calls)

    (tx, tw, tc), (ex, ew, ec) = _both(scenario)
    _same(ex, tx)
    _same(ew, tw)
    assert ec == tc == 1


# ---- module forward hooks -----------------------------------------------------------------

def test_forward_hooks_order_kwargs_prepend_and_replacement():
    x0 = RNG.standard_normal((2, 3))

    def scenario(lib, nnl):
        lib.manual_seed(0)

        class Scale(nnl.Module):
            def forward(self, x, factor=1.0):
                return x * factor

        m = Scale()
        log = []
        m.register_forward_pre_hook(lambda mod, args: log.append("pre1") or (args[0] + 1,))
        m.register_forward_pre_hook(
            lambda mod, args, kw: log.append("pre0") or (args, {"factor": kw["factor"] * 2}),
            with_kwargs=True, prepend=True)
        m.register_forward_hook(lambda mod, args, out: log.append("post1") or out - 0.5)
        h = m.register_forward_hook(lambda mod, args, kw, out: log.append(("post0",
                                                                           kw["factor"])),
                                    with_kwargs=True, prepend=True)
        out1 = m(_tensor(lib, x0), factor=3.0)
        h.remove()
        out2 = m(_tensor(lib, x0), factor=3.0)
        return out1, out2, log

    (t1, t2, tl), (e1, e2, el) = _both(scenario)
    _same(e1, t1)
    _same(e2, t2)
    assert el == tl


def test_forward_hook_always_call_runs_when_forward_raises():
    def scenario(lib, nnl):
        class Boom(nnl.Module):
            def forward(self, x):
                raise ValueError("boom")

        m = Boom()
        log = []
        m.register_forward_hook(lambda mod, args, out: log.append(("always", out)),
                                always_call=True)
        m.register_forward_hook(lambda mod, args, out: log.append("normal"))
        with pytest.raises(ValueError, match="boom"):
            m(lib.ones(2))
        return log

    tl, el = _both(scenario)
    assert el == tl == [("always", None)]


def test_forward_pre_hook_bad_return():
    for lib, nnl in ((torch, torch.nn), (ember, nn)):
        m = nnl.Identity()
        m.register_forward_pre_hook(lambda mod, args, kw: 5, with_kwargs=True)
        with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple"):
            m(lib.ones(1))


# ---- full backward hooks ------------------------------------------------------------------

def _copy_module(tm, em):
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_full_backward_hooks_match_torch(input_grad):
    x0 = RNG.standard_normal((4, 3))
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                                 torch.nn.Linear(5, 2)).double()
    emodel = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    _copy_module(tmodel, emodel)

    def scenario(lib, model):
        record = {}

        def hook(mod, grad_input, grad_output):
            record["gi"] = grad_input
            record["go"] = grad_output

        h1 = model[0].register_full_backward_hook(hook)
        model[1].register_full_backward_hook(lambda mod, gi, go: (gi[0] * 0.5,))
        model[2].register_full_backward_pre_hook(lambda mod, go: (go[0] + 1.0,))
        x = _tensor(lib, x0, input_grad)
        model(x).pow(2).sum().backward()
        h1.remove()
        return [p.grad for p in model.parameters()], record, x.grad

    t_grads, t_rec, t_x = scenario(torch, tmodel)
    e_grads, e_rec, e_x = scenario(ember, emodel)
    for a, b in zip(e_grads, t_grads):
        _same(a, b)
    _same(e_x, t_x)
    # grad_input is (None,) when the input needs no gradient, in both (which warn)
    if not input_grad:
        with pytest.warns(UserWarning, match="Full backward hook is firing"):
            scenario(ember, emodel)
    assert len(e_rec["gi"]) == len(t_rec["gi"]) == 1
    _same(e_rec["gi"][0], t_rec["gi"][0])
    _same(e_rec["go"][0], t_rec["go"][0])


def test_backward_hook_removal_and_prepend():
    def scenario(lib, nnl):
        m = nnl.Linear(2, 2).double()
        m.load_state_dict({k: lib.tensor(v.detach().numpy())
                           for k, v in tm_ref.state_dict().items()})
        order = []
        h = m.register_full_backward_hook(lambda mod, gi, go: order.append("a"))
        m.register_full_backward_hook(lambda mod, gi, go: order.append("b"), prepend=True)
        x = _tensor(lib, [[1.0, 2.0]], True)
        m(x).sum().backward()
        h.remove()
        m(x).sum().backward()
        return order, x.grad

    tm_ref = torch.nn.Linear(2, 2).double()
    (to, tg), (eo, eg) = scenario(torch, torch.nn), scenario(ember, nn)
    assert eo == to == ["b", "a", "b"]
    _same(eg, tg)


# ---- compiled ------------------------------------------------------------------------------

def test_compiled_forward_hook_equals_eager_and_recompiles_on_change():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    f = ember.compile(lambda x: model(x))
    x = ember.randn(3, 4)
    for _ in range(3):
        base = f(x)
    compiles = f.stats()["compiles"]
    h = model[0].register_forward_hook(lambda m, a, o: o * 2)
    for _ in range(3):
        hooked = f(x)
        np.testing.assert_allclose(hooked.detach().numpy(), model(x).detach().numpy(),
                                   rtol=1e-6, atol=1e-6)
    assert f.stats()["compiles"] > compiles
    assert not np.allclose(hooked.detach().numpy(), base.detach().numpy())
    h.remove()
    for _ in range(3):
        again = f(x)
    np.testing.assert_allclose(again.detach().numpy(), base.detach().numpy(), rtol=1e-6)
    pre = model[2].register_forward_pre_hook(lambda m, a: (a[0] + 1,))
    np.testing.assert_allclose(f(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-6)
    pre.remove()


def test_compiled_backward_hooks_run_eagerly_and_correctly():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    x = ember.randn(5, 4)

    def step(x):
        out = model(x).sum()
        out.backward()
        return out

    f = ember.compile(step)
    f(x)
    f(x)                                       # compiled, no hooks yet
    calls = []
    h = model[2].register_full_backward_hook(lambda m, gi, go: calls.append(go[0].shape))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            model.zero_grad()
            f(x)
    assert len(calls) == 3                     # every call ran the hook
    assert any("register_hook" in str(w.message) for w in caught)
    g = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    step(x)                                    # eager, the hook's 4th call
    for a, p in zip(g, model.parameters()):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-6)
    h.remove()
    model.zero_grad()
    f(x)
    f(x)
    assert len(calls) == 4                     # removed: not called any more


def test_tensor_hook_inside_compiled_function():
    w = nn.Parameter(ember.randn(4))

    def step(x):
        y = x * w
        y.register_hook(lambda g: g * 3)
        y.sum().backward()
        return y

    f = ember.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            x = ember.randn(2, 4)
            w.grad = None
            f(x)
            np.testing.assert_allclose(w.grad.numpy(), 3 * x.sum(0).numpy(), rtol=1e-6)
    assert any("register_hook" in r for r in f.stats()["fallbacks"])


def test_backward_hook_with_several_inputs_and_outputs():
    # MultiheadAttention(x, x, x): three inputs needing gradients, two outputs (the
    # weights unused, so their grad_output is None in both libraries).
    tm = torch.nn.MultiheadAttention(4, 2).double()
    em = nn.MultiheadAttention(4, 2).double()
    _copy_module(tm, em)
    x0 = RNG.standard_normal((3, 2, 4))
    recs = []
    for lib, m in ((torch, tm), (ember, em)):
        rec = {}
        m.register_full_backward_hook(lambda mod, gi, go, rec=rec: rec.update(gi=gi, go=go))
        x = _tensor(lib, x0, True)
        out, _ = m(x, x, x)
        out.sum().backward()
        recs.append(rec)
    t_rec, e_rec = recs
    assert len(e_rec["gi"]) == len(t_rec["gi"]) == 3
    for a, b in zip(e_rec["gi"], t_rec["gi"]):
        _same(a, b)
    assert e_rec["go"][1] is None and t_rec["go"][1] is None
    _same(e_rec["go"][0], t_rec["go"][0])
    # Replacing several input gradients is not supported: an error, never a wrong answer.
    em.register_full_backward_hook(lambda mod, gi, go: tuple(g * 2 for g in gi))
    x = ember.tensor(x0, requires_grad=True)
    with pytest.raises(NotImplementedError, match="several inputs"):
        em(x, x, x)[0].sum().backward()


def test_backward_hook_may_return_unchanged_grads_with_several_inputs():
    em = nn.MultiheadAttention(4, 2)
    em.register_full_backward_hook(lambda mod, gi, go: gi)     # the same tensors: no change
    x = ember.randn(3, 2, 4, requires_grad=True)
    em(x, x, x)[0].sum().backward()
    y = x.detach().requires_grad_()
    em._backward_hooks.clear()
    em(y, y, y)[0].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-6)


def test_retained_gradient_is_the_hooked_one():
    def scenario(lib, _):
        x = _tensor(lib, [1.0, -2.0, 3.0], True)
        y = x * 2
        y.retain_grad()
        y.register_hook(lambda g: g * 2)
        z = x.exp()
        z.retain_grad()                              # retained, no hook
        (y * y + y + z).sum().backward()
        return y.grad, z.grad, x.grad

    t, e = _both(scenario)
    for a, b in zip(e, t):
        _same(a, b)


def test_leaf_hook_registered_after_compiling_is_not_skipped():
    # A replayed backward runs no Python: a hook put on a parameter after the step was
    # compiled must make the next call recompile (the key's leaf-hook version), not be lost.
    w = ember.ones(3, requires_grad=True)

    @ember.compile
    def step(x):
        w.grad = None
        (w * x).sum().backward()
        return w.grad * 1

    x = ember.tensor([1.0, 2.0, 3.0])
    for _ in range(3):
        assert step(x).tolist() == [1.0, 2.0, 3.0]
    handle = w.register_hook(lambda g: g * 10)
    for _ in range(3):
        assert step(x).tolist() == [10.0, 20.0, 30.0]
    assert any("gradient hook" in r for r in step.stats()["recompile_reasons"])
    handle.remove()
    for _ in range(3):
        assert step(x).tolist() == [1.0, 2.0, 3.0]


def test_a_hooked_tensor_dying_does_not_recompile():
    # Only adding or removing a hook changes the key; a hooked leaf garbage-collected
    # between two calls (an earlier test's, say) must not turn a cache hit into a miss.
    import gc
    doomed = ember.ones(2, requires_grad=True)
    doomed.register_hook(lambda g: g)
    f = ember.compile(lambda x: (x * 2).exp().sum())
    x = ember.randn(8)
    for _ in range(3):
        f(x)
    del doomed
    gc.collect()
    for _ in range(3):
        f(x)
    assert f.stats()["compiles"] == 1 and f.stats()["cache_hits"] == 4


def test_compiled_model_with_a_feature_hook_hands_back_each_calls_activation():
    """Grad-CAM and feature extraction keep a submodule's output from a forward hook.
    The hook sits four levels down (Sequential -> _modules -> ReLU -> _forward_hooks),
    below the guards' walk depth, so the dict it writes was not watched: from the third
    call the compiled model replayed and the dict kept the traced call's activation.
    Functions are now followed at any depth: the change is seen, the call runs eagerly."""
    ember.manual_seed(0)
    feats = {}
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))
    m[1].register_forward_hook(lambda mod, args, out: feats.__setitem__("act", out))
    cm = ember.compile(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5):
            x = ember.randn(2, 3, 8, 8)
            out = cm(x)
            want = m[0](x).relu()   # (not m[1]: its hook would overwrite feats)
            np.testing.assert_allclose(feats["act"].detach().numpy(), want.detach().numpy())
            (g,) = ember.autograd.grad(out[:, 0].sum(), feats["act"])
            assert g.shape == want.shape
    # A hook that only changes the output is code the trace records: it still compiles.
    pure = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    pure[1].register_forward_hook(lambda mod, args, out: out * 2)
    cp = ember.compile(pure)
    x = ember.randn(2, 3)
    for _ in range(4):
        np.testing.assert_allclose(cp(x).detach().numpy(), pure(x).detach().numpy(),
                                   rtol=1e-6)
    assert cp.stats()["cache_hits"] > 0
