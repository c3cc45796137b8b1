"""The shortest paths: a cache hit's generated function (tracer/fastpath.py) and the eager
operator fast paths (dispatch.binary, dispatch.iadd). Each must give what the generic
path gives, and hand every case it does not expect to that path."""
import math
import warnings

import numpy as np
import pytest

import ember
from ember import dispatch as D
from ember.tracer.fastpath import MISS

torch = pytest.importorskip("torch")


def _arr(t):
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t)


def _compiled(fn):
    c = ember.compile(fn)
    return c


def _hot(c, *args):
    """Call until the fast function is in place; return the last result."""
    for _ in range(4):
        out = c(*args)
    return out


def _chain(x, a, b):
    return ember.nn.functional.gelu(x * a + b) * ember.sigmoid(x) + x * x


def _np_chain(x, a, b):
    t = torch.nn.functional.gelu(torch.tensor(x) * torch.tensor(a) + torch.tensor(b))
    return (t * torch.sigmoid(torch.tensor(x)) + torch.tensor(x) ** 2).numpy()


def _inputs(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n, dtype=np.float32), np.array(1.1, np.float32),
            np.array(0.1, np.float32))


def test_hit_takes_fast_function_and_counts():
    c = _compiled(_chain)
    xs = _inputs()
    args = [ember.tensor(v) for v in xs]
    _hot(c, *args)
    assert c._fast is not None and "def fast" in c._fast.source
    before = c.stats()
    out = c(*args)
    after = c.stats()
    assert after["cache_hits"] == before["cache_hits"] + 1
    assert after["calls"] == before["calls"] + 1
    np.testing.assert_allclose(_arr(out), _np_chain(*xs), rtol=1e-5, atol=1e-6)
    # new values in the same tensors: read at every call
    args[0]._data[...] = -args[0]._data
    np.testing.assert_allclose(_arr(c(*args)), _np_chain(-xs[0], *xs[1:]), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("change", ["shape", "dtype", "strides", "requires_grad",
                                    "no_grad", "alias", "parameter", "type"])
def test_every_key_field_is_checked(change):
    def f(x, y):
        return x * 2 + y

    c = _compiled(f)
    x = ember.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = ember.tensor(np.ones((2, 3), np.float32))
    _hot(c, x, y)
    fast = c._fast
    assert fast is not None
    if change == "shape":
        args = (ember.ones(3, 2), ember.ones(3, 2))
    elif change == "dtype":
        args = (x.double(), y.double())
    elif change == "strides":
        args = (ember.tensor(np.arange(6, dtype=np.float32).reshape(3, 2)).t(), y)
    elif change == "requires_grad":
        args = (x.clone().requires_grad_(True), y)
    elif change == "no_grad":
        args = (x, y)
    elif change == "alias":
        args = (x, x)
    elif change == "parameter":
        args = (ember.nn.Parameter(x.clone()), y)
    else:
        args = (x, 2.0)
    if change != "no_grad":
        assert fast(args) is MISS   # never answers a call it was not made for
    if change == "no_grad":
        with ember.no_grad():
            assert fast(args) is MISS
            out = c(*args)
    else:
        out = c(*args)
    ref = _arr(args[0]) * 2 + _arr(args[1])
    np.testing.assert_allclose(_arr(out), ref)
    if change == "requires_grad":
        out.sum().backward()
        np.testing.assert_allclose(_arr(args[0].grad), np.full((2, 3), 2.0))


@pytest.mark.parametrize("old,new", [(0.5, 0.25), (0.0, -0.0), (1, 1.0), (2, True),
                                     (float("nan"), float("nan")), (None, None), ("a", "b")])
def test_scalar_arguments(old, new):
    def f(x, s):
        if s is None or isinstance(s, str):
            return x + (1.0 if s in (None, "a") else 2.0)
        return x * s

    c = _compiled(f)
    x = ember.tensor(np.array([1.0, -2.0, 3.0], np.float32))
    _hot(c, x, old)
    for s in (new, old):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = c(x, s)
        ref = _arr(f(x, s))   # eager
        np.testing.assert_array_equal(np.signbit(_arr(out)), np.signbit(ref))
        np.testing.assert_allclose(_arr(out), ref, equal_nan=True)


def test_guard_on_global_still_checked():
    g = {"scale": 0.5}
    exec("def f(x):\n    return x * scale\n", g)
    c = _compiled(g["f"])
    x = ember.ones(3)
    _hot(c, x)
    assert c._fast is not None
    g["scale"] = 3.0
    np.testing.assert_allclose(_arr(c(x)), [3.0, 3.0, 3.0])
    assert any("scale" in r for r in c.stats()["recompile_reasons"])


def test_captured_tensor_update_and_requires_grad():
    w = ember.tensor(np.array([1.0, 2.0, 3.0], np.float32))

    def f(x):
        return x * w + 1

    c = _compiled(f)
    x = ember.ones(3)
    _hot(c, x)
    with ember.no_grad():
        w.mul_(2.0)   # in place: the next hit reads the new values
    np.testing.assert_allclose(_arr(c(x)), [3.0, 5.0, 7.0])
    w.requires_grad_(True)   # now gradients flow to w: not the fast (no-autograd) path
    out = c(x)
    out.sum().backward()
    np.testing.assert_allclose(_arr(w.grad), [1.0, 1.0, 1.0])
    w.requires_grad_(False)
    w.data = ember.ones(4)   # a captured tensor of another shape: compiled again
    np.testing.assert_allclose(_arr(c(ember.ones(4))), [2.0] * 4)


def test_several_outputs_and_python_values():
    def f(x, y):
        return x + y, 3, {"p": x * y}

    c = _compiled(f)
    x, y = ember.tensor([1.0, 2.0]), ember.tensor([3.0, 4.0])
    a, k, d = _hot(c, x, y)
    assert c._fast is not None and k == 3
    np.testing.assert_allclose(_arr(a), [4.0, 6.0])
    np.testing.assert_allclose(_arr(d["p"]), [3.0, 8.0])
    a2, _, _ = c(x, y)
    assert a2 is not a and not np.shares_memory(_arr(a2), _arr(a))


def test_inside_a_trace_and_global_eager():
    inner = _compiled(lambda x: x * 2)
    x = ember.ones(2)
    _hot(inner, x)
    assert inner._fast is not None
    outer = _compiled(lambda x: inner(x) + 1)   # traced inline: never the fast function
    for _ in range(3):
        np.testing.assert_allclose(_arr(outer(x)), [3.0, 3.0])
    hits = inner.stats()["cache_hits"]
    ember.set_eager(True)
    try:
        np.testing.assert_allclose(_arr(inner(x)), [2.0, 2.0])
    finally:
        ember.set_eager(False)
    assert inner.stats()["cache_hits"] == hits   # eager: no hit was counted


def test_hook_version_and_autocast_miss():
    c = _compiled(lambda x: x * 2)
    x = ember.ones(2)
    _hot(c, x)
    leaf = ember.ones(2, requires_grad=True)
    h = leaf.register_hook(lambda g: g)
    try:
        assert c._fast((x,)) is MISS
        np.testing.assert_allclose(_arr(c(x)), [2.0, 2.0])
    finally:
        h.remove()
    # the hook version has moved for good: keys carry it, and the fast path checks it
    _hot(c, x)
    assert c._fast is not None and c._fast((x,)) is not MISS
    if hasattr(ember, "autocast"):
        with ember.autocast("cpu", dtype=ember.bfloat16):
            assert c._fast((x,)) is MISS
            np.testing.assert_allclose(_arr(c(x)).astype(np.float32), [2.0, 2.0])


def test_index_error_raises_as_eager():
    def f(x, i):
        return x[i] * 2

    c = _compiled(f)
    x = ember.tensor([1.0, 2.0, 3.0])
    i = ember.tensor([0, 2])
    _hot(c, x, i)
    i._data[...] = [0, 7]
    with pytest.raises(Exception) as fast_err:
        c(x, i)
    with pytest.raises(Exception) as eager_err:
        f(x, i)
    assert type(fast_err.value) is type(eager_err.value)


# ---- eager ------------------------------------------------------------------------------

_DTYPES = [np.float32, np.float64, np.int64, np.int32, np.bool_]
_OPS = ["__add__", "__sub__", "__mul__", "__truediv__", "__radd__", "__rsub__", "__rmul__",
        "__rtruediv__"]


_NAMES = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div"}


def _generic(op, a, o):
    """The same operator through the generic dispatch."""
    name = _NAMES[op.strip("_").lstrip("r")] if op.startswith("__r") else _NAMES[op.strip("_")]
    return D.dispatch(name, o, a) if op.startswith("__r") else D.dispatch(name, a, o)


@pytest.mark.parametrize("op", _OPS)
@pytest.mark.parametrize("dt", _DTYPES)
def test_binary_matches_dispatch_and_torch(op, dt):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((3, 4)) * 4).astype(dt)
    b = (rng.standard_normal((3, 4)) * 4 + 9).astype(dt)
    for other in (b, b[0], 2.5, 3, -0.0):
        ea = ember.tensor(a)
        eo = ember.tensor(other) if isinstance(other, np.ndarray) else other
        try:
            ref = _generic(op, ea, eo)
        except Exception as e:
            with pytest.raises(type(e)):
                getattr(ea, op)(eo)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = getattr(ea, op)(eo)
        assert out.dtype is ref.dtype
        np.testing.assert_array_equal(_arr(out), _arr(ref))
        np.testing.assert_array_equal(np.signbit(_arr(out)), np.signbit(_arr(ref)))
        ta = torch.tensor(a)
        to = torch.tensor(other) if isinstance(other, np.ndarray) else other
        try:
            tref = getattr(ta, op)(to)
        except RuntimeError:   # torch refuses bool subtraction; ember's dispatch allows it
            continue
        assert str(out.dtype).split(".")[-1] == str(tref.dtype).split(".")[-1]
        np.testing.assert_allclose(_arr(out).astype(np.float64),
                                   tref.numpy().astype(np.float64), rtol=1e-6)


def test_binary_same_as_dispatch_errors():
    a, b = ember.ones(2), ember.ones(3)
    with pytest.raises(ember.errors.OpError) as fast:
        a + b
    with pytest.raises(ember.errors.OpError) as slow:
        D.dispatch("add", a, b)
    assert str(fast.value).splitlines()[0] == str(slow.value).splitlines()[0]
    with pytest.raises(TypeError):
        a + "x"


def test_binary_gradients_finite_differences():
    rng = np.random.default_rng(1)
    xa = rng.standard_normal(5)
    ya = rng.standard_normal(5) + 3

    def f(x, y):
        return ((x * y - 2.0) / y + 1.5 * x - x / 3.0 + (2.0 - y) * 0.5).sum()

    x = ember.tensor(xa, requires_grad=True)
    y = ember.tensor(ya, requires_grad=True)
    f(x, y).backward()
    eps = 1e-6
    for t, arr, other in ((x, xa, ya), (y, ya, xa)):
        num = np.zeros(5)
        for i in range(5):
            p, m = arr.copy(), arr.copy()
            p[i] += eps
            m[i] -= eps
            if t is x:
                fp, fm = f(ember.tensor(p), ember.tensor(other)), f(ember.tensor(m),
                                                                     ember.tensor(other))
            else:
                fp, fm = f(ember.tensor(other), ember.tensor(p)), f(ember.tensor(other),
                                                                     ember.tensor(m))
            num[i] = (fp.item() - fm.item()) / (2 * eps)
        np.testing.assert_allclose(_arr(t.grad), num, rtol=1e-5, atol=1e-7)


def test_binary_view_history_synced():
    leaf = ember.tensor(np.arange(4.0), requires_grad=True)
    base = leaf.clone()
    v = base[1:3]
    base.mul_(2.0)   # v's history is stale: the fast path syncs it as dispatch does
    (v * 3.0 + v).sum().backward()
    tleaf = torch.arange(4.0, dtype=torch.float64, requires_grad=True)
    tbase = tleaf.clone()
    tv = tbase[1:3]
    tbase.mul_(2.0)
    (tv * 3.0 + tv).sum().backward()
    np.testing.assert_allclose(_arr(leaf.grad), tleaf.grad.numpy())


def test_scalar_cache_keeps_sign_and_is_read_only():
    x = ember.tensor([1.0, -1.0])
    np.testing.assert_array_equal(np.signbit(_arr(x * -0.0)), [True, False])
    np.testing.assert_array_equal(np.signbit(_arr(x * 0.0)), [False, True])
    np.testing.assert_array_equal(np.signbit(_arr(x * -0.0)), [True, False])
    y = x * 0.5
    y2 = x * 0.5
    y2 += 1.0
    np.testing.assert_allclose(_arr(y), [0.5, -0.5])
    np.testing.assert_allclose(_arr(x * 0.5), [0.5, -0.5])
    assert all(not a.flags.writeable for a in D._SCALARS.values())


def test_iadd_in_place_and_versions():
    a = ember.tensor(np.arange(4, dtype=np.float32))
    b = ember.ones(4)
    view = a[1:]
    mem = _arr(a)
    v0 = a._version
    a += b
    a += 2.0
    assert _arr(a) is mem and a._version == v0 + 2
    np.testing.assert_allclose(_arr(a), [3, 4, 5, 6])
    np.testing.assert_allclose(_arr(view), [4, 5, 6])
    a += ember.tensor([1.0])   # broadcast: the generic add_
    np.testing.assert_allclose(_arr(a), [4, 5, 6, 7])
    view += 1.0                # a view: the generic add_, the base sees it
    np.testing.assert_allclose(_arr(a), [4, 6, 7, 8])
    ta = torch.arange(4.0)
    ta += ta.flip(0)           # overlapping memory: as torch
    c = ember.tensor(np.arange(4, dtype=np.float32))
    c += c.flip(0)
    np.testing.assert_allclose(_arr(c), ta.numpy())


def test_iadd_errors_as_add_():
    leaf = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        leaf += 1.0
    with ember.no_grad():
        leaf += 1.0    # allowed without gradients (an optimizer step)
    np.testing.assert_allclose(_arr(leaf), [2.0] * 3)
    a = ember.ones(2)
    with pytest.raises(ember.errors.OpError):
        a += ember.ones(3)
    i = ember.tensor([1, 2])
    with pytest.raises(ember.errors.OpError):
        i += 0.5          # float into an integer tensor: torch raises too
    e = ember.ones(1).expand(3)
    with pytest.raises(ember.errors.OpError, match="single memory location"):
        e += ember.ones(3)
    ro = ember.tensor(np.ones(2, np.float32))
    ro._data.flags.writeable = False
    with pytest.raises(ember.errors.OpError):
        ro += ember.ones(2)


def test_iadd_records_gradient():
    x = ember.ones(3, requires_grad=True)
    y = x * 2.0
    y += x
    y.sum().backward()
    np.testing.assert_allclose(_arr(x.grad), [3.0] * 3)


# ---- effects, training steps, kernel launchers ---------------------------------------------

def _mlp_step():
    ember.manual_seed(0)
    m = ember.nn.Sequential(ember.nn.Linear(8, 16), ember.nn.ReLU(), ember.nn.Linear(16, 4))
    opt = ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = ember.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss
    return m, step


def test_training_step_fast_equals_eager():
    x = ember.tensor(np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32))
    y = ember.tensor(np.array([0, 1, 2, 3]))
    m1, s1 = _mlp_step()
    m2, s2 = _mlp_step()
    c = ember.compile(s1)
    for i in range(7):
        a, b = c(x, y), s2(x, y)
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)
    assert c._fast is not None and "OUTPUTS" in c._fast.source   # effects: writeback.outputs
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(_arr(p1), _arr(p2), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_arr(p1.grad), _arr(p2.grad), rtol=1e-5, atol=1e-6)


def test_argument_sharing_written_memory_runs_eagerly():
    w = ember.zeros(4)

    def f(x):
        w.add_(x)
        return w * 2

    c = ember.compile(f)
    x = ember.ones(4)
    for _ in range(4):
        c(x)
    assert c._fast is not None
    np.testing.assert_allclose(_arr(w), [4.0] * 4)
    view = w[:]   # the argument is the memory the call writes: eager order matters
    assert c._fast((view,)) is MISS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = c(view)
    np.testing.assert_allclose(_arr(w), [8.0] * 4)
    np.testing.assert_allclose(_arr(out), [16.0] * 4)


def test_builtin_launcher_matches_ctypes():
    from ember.codegen.llvm import fastcall
    if not fastcall.available():
        pytest.skip("no builtin launcher on this Python")

    def f(x, y):
        return (x * y).exp() - y

    c = ember.compile(f)
    rng = np.random.default_rng(5)
    x = ember.tensor(rng.standard_normal((3, 5), dtype=np.float32))
    y = ember.tensor(rng.standard_normal((3, 5), dtype=np.float32))
    out = _hot(c, x, y)
    np.testing.assert_allclose(_arr(out), np.exp(_arr(x) * _arr(y)) - _arr(y), rtol=1e-6)
    ns = c._fast.__globals__
    step = next(v for k, v in ns.items() if k.startswith("KEEP"))
    k = step.compiled
    f_direct = k.direct()
    assert type(f_direct).__name__ == "builtin_function_or_method"
    a = np.empty(15, np.float32).reshape(3, 5)
    b = np.empty_like(a)
    f_direct(x._data, y._data, a)
    k._cfunc(x._data, y._data, b, 0, k._outer)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SystemError):
        f_direct(x._data, y._data)             # wrong count: refused, nothing run
    with pytest.raises(SystemError):
        f_direct(x._data, [1.0], a)            # not an ndarray: refused
    m = np.zeros_like(a).view(np.memmap)        # run() takes subclasses (through ctypes)
    k.run([x._data, y._data], [m])
    np.testing.assert_array_equal(np.asarray(m), b)


def test_fast_hits_from_threads():
    import threading

    c = ember.compile(lambda x, s: x * s + 1)
    xs = [ember.tensor(np.full(8, float(i), np.float32)) for i in range(4)]
    _hot(c, xs[0], 2.0)
    errors = []

    def worker(i):
        try:
            for _ in range(200):
                out = c(xs[i], 2.0)
                if not np.array_equal(_arr(out), np.full(8, 2.0 * i + 1, np.float32)):
                    errors.append(i)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---- fuzz: a fast hit answers only the calls the generic path would answer the same ------

SCALE = [0.5]


def _fuzz_fn(x, y, s):
    return (x * s + y).relu() * SCALE[0] - y


def _fuzz_args(rng):
    """Arguments that vary one key field at a time around a common signature."""
    kind = rng.integers(0, 9)
    base = rng.standard_normal((3, 4)).astype(np.float32)
    x = ember.tensor(base)
    y = ember.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    s = 1.5
    if kind == 1:
        x = ember.tensor(base.astype(np.float64))
        y = y.double()
    elif kind == 2:
        x = ember.tensor(np.ascontiguousarray(base.T)).t()      # other strides
    elif kind == 3:
        x = x.requires_grad_(True)
    elif kind == 4:
        y = x                                                    # the same tensor twice
    elif kind == 5:
        s = float(rng.choice([0.0, -0.0, 2.0, float("nan")]))
    elif kind == 6:
        s = int(rng.integers(-2, 3))
    elif kind == 7:
        y = x[:, :]                                              # a view of x
    elif kind == 8:
        x = ember.nn.Parameter(x)
    return x, y, s


def _fuzz(n_calls: int, seed: int, dynamic: bool | None = False) -> None:
    rng = np.random.default_rng(seed)
    # (dynamic=False: the scalar argument's values stay in the key, which the fast path
    # checks; None: it turns symbolic, which the fast path converts: symbolic.py)
    c = ember.compile(_fuzz_fn, dynamic=dynamic)
    SCALE[0] = 0.5
    fast_answers = 0
    for i in range(n_calls):
        if rng.random() < 0.05:
            SCALE[0] = float(rng.choice([0.5, 0.25]))     # a guarded global's contents
        x, y, s = _fuzz_args(rng)
        grad = rng.random() < 0.85
        with ember.set_grad_enabled(grad):
            fast = c._fast
            answer = fast((x, y, s)) if fast is not None else MISS
            if answer is not MISS:
                fast_answers += 1
                # it answered: the generic path must agree (values and requires_grad)
                ref = _fuzz_fn(x, y, s)
                np.testing.assert_allclose(_arr(answer), _arr(ref), rtol=1e-5, atol=1e-6,
                                           equal_nan=True)
                assert answer.requires_grad == ref.requires_grad
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = c(x, y, s)
            ref = _fuzz_fn(x, y, s)
        # (a fused kernel may round differently from eager by an ulp)
        np.testing.assert_allclose(_arr(out), _arr(ref), rtol=1e-5, atol=1e-6, equal_nan=True)
        assert out.requires_grad == ref.requires_grad
        if out.requires_grad:
            out.sum().backward()
            g = x.grad
            x.grad = None
            ref.sum().backward()
            np.testing.assert_allclose(_arr(g), _arr(x.grad), rtol=1e-5, atol=1e-6)
    assert fast_answers > 0


def test_fastpath_fuzz_short():
    _fuzz(150, 0)


def test_fastpath_fuzz_with_a_symbolic_number():
    _fuzz(150, 1, dynamic=None)


@pytest.mark.slow
def test_fastpath_fuzz_long():
    for seed in range(1, 9):
        _fuzz(600, seed)


def test_compiled_module_forward_with_autograd_plans():
    ember.manual_seed(3)
    m = ember.nn.Sequential(ember.nn.Linear(4, 6), ember.nn.Tanh(), ember.nn.Linear(6, 2))
    c = ember.compile(m)
    x = ember.randn(5, 4)
    for _ in range(3):
        c(x)
    cf = c._compiled_forward
    assert cf._fast is not None and "P.forward" in cf._fast.source
    for _ in range(2):
        m.zero_grad()
        out = c(x)
        (out * out).sum().backward()
        got = [_arr(p.grad).copy() for p in m.parameters()]
        m.zero_grad()
        ref = m(x)
        (ref * ref).sum().backward()
        np.testing.assert_allclose(_arr(out), _arr(ref), rtol=1e-5, atol=1e-6)
        for a, p in zip(got, m.parameters()):
            np.testing.assert_allclose(a, _arr(p.grad), rtol=1e-5, atol=1e-6)
    with ember.no_grad():   # another key: no gradients, the plain plan
        out = c(x)
    assert not out.requires_grad


def test_steps_replaced_later_still_run():
    """The perf channel wraps a plan's steps in place: a fast function built before must
    run the wrappers (it calls steps from the plan's live list)."""
    c = ember.compile(lambda x: (x * 2).exp() + 1)
    x = ember.tensor(np.linspace(-1, 1, 6, dtype=np.float32))
    _hot(c, x)
    plan = c._fast.__globals__["ENTRY"].root.plan
    calls = []

    def wrap(step):
        def run(env):
            calls.append(1)
            step(env)
        return run

    plan.steps[:] = [wrap(s) for s in plan.steps]
    out = c(x)
    assert len(calls) == len(plan.steps) and calls
    np.testing.assert_allclose(_arr(out), np.exp(_arr(x) * 2) + 1, rtol=1e-6)


def test_two_entries_of_one_key_use_the_generic_order():
    """Two entries of one key (a guarded global changed and back): the generic lookup's
    order decides, never a fast function of the entry hit last."""
    g = {"scale": 0.5}
    exec("def f(x):\n    return x * scale\n", g)
    c = ember.compile(g["f"])
    x = ember.ones(2)
    _hot(c, x)
    g["scale"] = 2.0
    for _ in range(4):
        np.testing.assert_allclose(_arr(c(x)), [2.0, 2.0])
    assert c._fast is None     # two entries now: no fast function for either
    g["scale"] = 0.5
    for _ in range(2):
        np.testing.assert_allclose(_arr(c(x)), [0.5, 0.5])
    assert c._fast is None


def test_mode_switched_to_eager_after_compiling_is_obeyed():
    f = ember.compile(lambda x: x * 2.0 + 1.0)
    x = ember.ones(4)
    for _ in range(4):
        f(x)
    hits = f.counters["cache_hits"]
    f.mode = "eager"
    np.testing.assert_array_equal(f(x).numpy(), np.full(4, 3.0, np.float32))
    assert f.counters["cache_hits"] == hits   # ran the Python function, not the plan


def test_results_that_are_not_tensors_and_have_no_literal():
    # The fast path wrote repr(value) into its source: nan, inf, a dtype or a device
    # raised NameError from the third call on.
    def f(x):
        return x * 2, float("nan"), math.inf, x.dtype, x.device

    cf = ember.compile(f)
    for x in (ember.ones(2), ember.ones(2, requires_grad=True)):
        for _ in range(5):
            y, nan, inf, dt, dev = cf(x)
            assert y.tolist() == [2.0, 2.0] and nan != nan and inf == math.inf
            assert dt == ember.float32 and dev == ember.device("cpu")
