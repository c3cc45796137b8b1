"""Compiled == eager when the Python state a trace read changes between calls (issue 13):
globals, closures, attributes of modules and argument objects, scalar values, argument
aliasing, new objects with a dead one's id(); and the cache stays sound when calls raise."""
import gc
import math
import threading
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn

CALLS = 5


def _same(a, b):
    np.testing.assert_allclose(np.asarray(a.tolist(), dtype=np.float64),
                               np.asarray(b.tolist(), dtype=np.float64), rtol=1e-6, atol=1e-6)


SCALE = 0.5
W = ember.tensor([1.0, 2.0, 3.0])


def _uses_globals(x):
    return x * SCALE + W


def test_global_float_and_global_tensor_rebound():
    global SCALE, W
    f = ember.compile(_uses_globals)
    x = ember.ones(3)
    try:
        for scale, w in [(0.5, [1.0, 2.0, 3.0]), (0.25, [1.0, 2.0, 3.0]), (0.25, [7.0, 8.0, 9.0])]:
            SCALE, W = scale, ember.tensor(w)
            for _ in range(CALLS):
                _same(f(x), _uses_globals(x))
        reasons = f.stats()["recompile_reasons"]
        assert any(r.startswith("global 'SCALE' 0.5 -> 0.25 (test_guards.py:") for r in reasons)
        assert any(r.startswith("global 'W' a tensor [3]") for r in reasons)
    finally:
        SCALE, W = 0.5, ember.tensor([1.0, 2.0, 3.0])


def test_closure_variable_changed():
    k = 2.0

    def g(x):
        return x * k

    f = ember.compile(g)
    x = ember.ones(2)
    for value in (2.0, 3.0, -1.0, 3.0):
        k = value
        for _ in range(CALLS):
            assert f(x).tolist() == [value, value]
    assert "closure variable 'k' 2.0 -> 3.0" in f.stats()["recompile_reasons"][0]


class Cfg:
    def __init__(self, scale, square=False):
        self.scale = scale
        self.square = square


def _with_cfg(x, cfg):
    y = x * cfg.scale
    return y * y if cfg.square else y


def test_attribute_of_an_argument_object_changed():
    f = ember.compile(_with_cfg)
    x = ember.tensor([1.0, 2.0])
    cfg = Cfg(2.0)
    for scale, square in [(2.0, False), (3.0, False), (3.0, True), (2.0, False)]:
        cfg.scale, cfg.square = scale, square
        for _ in range(CALLS):
            _same(f(x, cfg), _with_cfg(x, cfg))


def test_new_objects_do_not_reuse_a_dead_ones_entry():
    # A new Cfg often gets the id() of the one just freed: identity is by weak reference.
    f = ember.compile(_with_cfg)
    x = ember.tensor([1.0, 2.0])
    wrong = 0
    for i in range(28):
        cfg = Cfg(float(i % 7), square=bool(i % 2))
        out = f(x, cfg)
        wrong += out.tolist() != _with_cfg(x, cfg).tolist()
        del cfg
        gc.collect()
    assert wrong == 0
    assert f.stats()["cache_entries"] <= 2 and not f.stats()["fallbacks"]


class Holder:
    def __init__(self, k):
        self.k = k

    @ember.compile
    def run(self, x):
        return x * self.k


def test_compiled_method_sees_self_attributes_and_new_objects():
    x = ember.ones(2)
    h = Holder(2.0)
    for k in (2.0, 5.0):
        h.k = k
        for _ in range(CALLS):
            assert h.run(x).tolist() == [k, k]
    for i in range(20):
        h = Holder(float(i))
        assert h.run(x).tolist() == [float(i)] * 2
    assert not Holder.run.stats()["fallbacks"]


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.scale = 1.0
        self.use_bias = True

    def forward(self, x):
        y = self.fc(x) * self.scale
        return y + 1 if self.use_bias else y


def test_module_attributes_submodules_and_parameters_changed():
    ember.manual_seed(0)
    m = Scaled()
    cm = ember.compile(m)
    x = ember.randn(4, 3)

    def check():
        for _ in range(CALLS):
            with ember.no_grad():
                _same(cm(x), m(x))

    check()
    cm.scale = 0.5
    check()
    m.use_bias = False
    check()
    m.fc = nn.Linear(3, 2)
    check()
    m.fc.weight = nn.Parameter(ember.randn(2, 3))
    check()
    m.eval()
    check()
    reasons = " | ".join(cm.stats()["recompile_reasons"])
    assert "Scaled.scale 1.0 -> 0.5" in reasons and "Scaled.use_bias True -> False" in reasons


def test_argument_aliasing_is_part_of_the_key():
    @ember.compile
    def f(a, b):
        a.add_(1)
        return a + b

    def eager(a, b):
        a.add_(1)
        return a + b

    x, x2 = ember.zeros(3), ember.zeros(3)
    for _ in range(3):
        _same(f(x, x), eager(x2, x2))
    y, y2 = ember.zeros(3), ember.zeros(3)
    for _ in range(3):
        _same(f(x, y), eager(x2, y2))
    _same(x, x2)
    _same(y, y2)


def test_signed_zero_and_nan_scalars():
    f = ember.compile(lambda x, s: 1 / (x * s))
    x = ember.ones(2)
    for _ in range(3):
        assert f(x, 0.0).tolist() == [math.inf, math.inf]
    for _ in range(3):
        assert f(x, -0.0).tolist() == [-math.inf, -math.inf]
    g = ember.compile(lambda x, s: x + s)
    for _ in range(6):
        assert all(math.isnan(v) for v in g(x, math.nan).tolist())
    assert g.stats()["compiles"] <= 3   # NaN equals NaN in the key: no compile per call


def test_numpy_argument_mutated_in_place():
    f = ember.compile(lambda x, a: x * ember.tensor(a))
    x = ember.ones(3)
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    for step in range(6):
        a[0] = step
        assert f(x, a).tolist() == [float(step), 2.0, 3.0]


def test_exception_on_a_first_call_leaves_no_broken_entry():
    def g(x, boom):
        if boom:
            raise ValueError("boom")
        return x * 2

    f = ember.compile(g)
    x = ember.ones(2)
    with pytest.raises(ValueError, match="boom"):
        f(x, True)
    assert f.stats()["cache_entries"] == 0
    for _ in range(CALLS):
        assert f(x, False).tolist() == [2.0, 2.0]
        with pytest.raises(ValueError, match="boom"):
            f(x, True)


def test_integer_division_by_zero_and_keyboard_interrupt_on_first_calls():
    state = {"interrupt": True}

    def g(x):
        if state["interrupt"]:
            raise KeyboardInterrupt
        return x // 2

    f = ember.compile(g)
    x = ember.tensor([4, 6])
    with pytest.raises(KeyboardInterrupt):
        f(x)
    state["interrupt"] = False
    for _ in range(CALLS):
        assert f(x).tolist() == [2, 3]


def test_wrong_arity_adds_no_entry():
    f = ember.compile(lambda x, y: x + y)
    for _ in range(5):
        with pytest.raises(TypeError):
            f(ember.ones(2))
    assert f.stats()["cache_entries"] == 0


def test_fallback_record_counts_instead_of_growing():
    # (dynamic=False: new sizes compile at once, so each finds the cache full)
    f = ember.compile(lambda x: x * 2, cache_limit=1, dynamic=False)
    f(ember.ones(1))
    with pytest.warns(UserWarning, match="cache limit"):
        for n in range(2, 200):
            f(ember.ones(n))
    s = f.stats()
    assert len(s["fallbacks"]) == 1
    assert s["fallback_counts"][s["fallbacks"][0]] == 198


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), (" Yes ", True),
                                          ("ON", True), ("0", False), ("false", False),
                                          ("no", False), ("Off ", False), ("", False)])
def test_env_flags(monkeypatch, raw, expected):
    from ember.tracer.compile import env_flag
    monkeypatch.setenv("EMBER_TEST_FLAG", raw)
    assert env_flag("EMBER_TEST_FLAG") is expected


def test_env_flag_rejects_other_words(monkeypatch):
    from ember.tracer.compile import env_flag
    monkeypatch.setenv("EMBER_TEST_FLAG", "maybe")
    with pytest.raises(ValueError, match="EMBER_TEST_FLAG='maybe'"):
        env_flag("EMBER_TEST_FLAG")


def test_threads_on_one_warm_function_and_on_first_calls():
    f = ember.compile(lambda x, k: (x * k + 1).relu().sum())
    for k in range(8):
        for _ in range(3):
            f(ember.ones(16), float(k))
    wrong = []

    def worker(k, fn):
        x = ember.full((16,), float(k % 3))
        for i in range(500):
            got = fn(x, float(k)).item()
            want = 16 * max(float(k % 3) * k + 1, 0.0)
            if got != want:
                wrong.append((k, i, got, want))

    def run(fns):
        threads = [threading.Thread(target=worker, args=(k, fns[k])) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run([f] * 8)
    assert wrong == []
    assert f.stats()["calls"] == 8 * 3 + 8 * 500
    # First calls at once: each thread compiles its own function (and one shared).
    fresh = [ember.compile(lambda x, k: (x * k + 1).relu().sum()) for _ in range(8)]
    run(fresh)
    shared = ember.compile(lambda x, k: (x * k + 1).relu().sum())
    run([shared] * 8)
    assert wrong == []


def test_dump_folders_are_private(tmp_path, monkeypatch):
    import os
    import stat
    from ember.inspect import dump
    monkeypatch.setitem(dump._state, "dir", str(tmp_path))
    folder = dump.new_folder("f")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_kernels_of_dead_functions_are_freed():
    from ember.codegen import llvm
    x = ember.ones(32)
    gc.collect()
    before = len(llvm._CACHE)
    for i in range(30):
        f = ember.compile(lambda x, k=float(i) + 0.125: (x * k + 1).exp().sum())
        for _ in range(3):
            f(x)
        del f
    gc.collect()
    assert len(llvm._CACHE) <= before
    g = ember.compile(lambda x: (x * 3.5 + 1).exp().sum())   # and code still runs after
    assert all(abs(g(x).item() - 32 * math.exp(4.5)) < 1e-2 for _ in range(3))


# ---- the call key (ember/tracer/key.py) -------------------------------------------------

def _key(*args, **kwargs):
    from ember.tracer import pytree
    from ember.tracer.key import make_key
    return make_key(*pytree.flatten_call(args, kwargs))


def test_call_key_fields_and_diff():
    """The key is typed (named fields, not positions) and ``diff`` names the field that
    changed, as the recompile reason shows it."""
    from ember.tracer.key import ScalarKey, TensorKey, leaf

    x = ember.ones(2, 3)
    k = _key(x, 0.5)
    t, v = leaf(k.leaves[0]), leaf(k.leaves[1])
    assert isinstance(t, TensorKey) and t.shape == (2, 3) and not t.requires_grad
    assert isinstance(v, ScalarKey) and v.value == 0.5 and v.type_name == "float"
    assert k == _key(ember.zeros(2, 3), 0.5) and hash(k) == hash(_key(ember.zeros(2, 3), 0.5))
    assert k.aliasing is None
    assert _key(ember.ones(4, 3), 0.5).diff(k) == "argument 0 shape [2,3] -> [4,3]"
    assert _key(ember.ones(2, 3, dtype=ember.float64), 0.5).diff(k).startswith(
        "argument 0 dtype float32 -> float64")
    assert _key(x.t(), 0.5).diff(k).startswith("argument 0 shape [2,3] -> [3,2]")
    assert _key(x, 0.25).diff(k) == "argument 1 changed: 0.5 -> 0.25"
    assert _key(x, 0.5, 1).diff(k) == "argument structure changed"
    with ember.no_grad():
        assert _key(x, 0.5).diff(k) == "grad mode changed (True -> False)"
    assert k.diff(None) == ""
    # The cache looks up the plain fields on every call: equal to the key, same hash.
    from ember.tracer import pytree
    from ember.tracer.key import key_fields
    fields = key_fields(*pytree.flatten_call((x, 0.5), {}))
    assert type(fields) is tuple and fields == k and hash(fields) == hash(k)
    assert {k: "entry"}[fields] == "entry"


def test_call_key_scalars_and_aliasing():
    """-0.0 and 0.0 are different keys, every NaN the same; aliasing of tensor arguments
    is part of the key and of its diff."""
    x, y = ember.ones(3), ember.ones(3)
    assert _key(x, 0.0) != _key(x, -0.0)
    assert _key(x, float("nan")) == _key(x, float("nan"))
    apart, same = _key(x, y), _key(x, x)
    assert apart.aliasing is None and same.aliasing.same_tensor == (0, 0)
    assert same.diff(apart) == "which tensor arguments are the same tensor or share memory changed"
    view = _key(x, x[1:])
    assert view.aliasing.same_tensor == (0, 1) and view.aliasing.same_memory == (0, 0)


def _helper_with_default(a, *, table={"k": 1.0}):   # noqa: B006  (the state under test)
    return a * table["k"]


def test_default_arguments_are_guarded():
    """A mutable default (a config dict) changed between calls was replayed with the
    traced value; defaults of the function and of user functions it calls are guarded."""
    def f(a, cfg={"s": 1.0}):   # noqa: B006
        return _helper_with_default(a * cfg["s"])

    cf = ember.compile(f)
    x = ember.ones(2)
    for s, k in [(1.0, 1.0), (2.0, 1.0), (2.0, 1.0), (3.0, 1.0), (3.0, 5.0), (3.0, 5.0)]:
        f.__defaults__[0]["s"] = s
        _helper_with_default.__kwdefaults__["table"]["k"] = k
        np.testing.assert_array_equal(cf(x).numpy(), np.full(2, s * k))
    assert any("default" in r for r in cf.stats()["recompile_reasons"])


class _Config:
    scale = 1.0


_BIG = np.ones(100_000, np.float32)   # over guards.MAX_ARRAY_BYTES: not compared by value


def test_class_attributes_large_arrays_and_iterators_are_not_frozen():
    """Found by probing state a replay could freeze: a class attribute (``Cfg.scale``),
    a large NumPy array written in place (its literal was copied once), a tensor or an
    array taken from an iterator (a captured input named by position only)."""
    x = ember.ones(2)
    f = ember.compile(lambda a: a * _Config.scale)
    g = ember.compile(lambda a: a * ember.from_numpy(_BIG[:2]) + ember.tensor(_BIG[2:4]))
    for v in (1.0, 1.0, 2.0, 2.0, 3.0, 3.0):
        _Config.scale = v
        _BIG[:] = v
        np.testing.assert_array_equal(f(x).numpy(), np.full(2, v))
        np.testing.assert_array_equal(g(x).numpy(), np.full(2, 2 * v))
    assert not g.stats()["fallbacks"] and g.stats()["cache_hits"] >= 3
    tensors = iter([ember.full((2,), float(i)) for i in range(8)])
    arrays = iter([np.full(2, float(i), np.float32) for i in range(8)])
    h = ember.compile(lambda a: a * next(tensors))
    k = ember.compile(lambda a: a * ember.from_numpy(next(arrays)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(6):
            np.testing.assert_array_equal(h(x).numpy(), np.full(2, float(i)))
            np.testing.assert_array_equal(k(x).numpy(), np.full(2, float(i)))


def test_a_numpy_table_made_in_the_call_still_compiles():
    """A table computed with NumPy inside the call is a new array each call: the second
    trace matches it by value (as the literal it used to be), so the call compiles."""
    def f(a):
        table = np.sin(np.arange(a.shape[0])[:, None] / 10.0).astype(np.float32)
        return a + ember.tensor(table) + ember.from_numpy(table)

    cf = ember.compile(f)
    x = ember.ones(4, 3)
    for _ in range(4):
        np.testing.assert_allclose(cf(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert not cf.stats()["fallbacks"] and cf.stats()["cache_hits"] == 2


_W = ember.randn(3, requires_grad=True)
_P = ember.randn(3, requires_grad=True)


def _branch_on_requires_grad(x):
    return x * 2 if _W.requires_grad else x * 3


def _branch_on_grad(x):
    return x + 1 if _P.grad is None else x + _P.grad


def test_a_tensors_requires_grad_and_grad_presence_are_guarded():
    # Both were replayed as traced: flipping requires_grad, or a gradient appearing
    # where the traced call read None, gave the other branch's value.
    f, g = ember.compile(_branch_on_requires_grad), ember.compile(_branch_on_grad)
    x = ember.ones(3)
    try:
        for rg in (True, False, True):
            _W.requires_grad_(rg)
            for _ in range(CALLS):
                _same(f(x), _branch_on_requires_grad(x))
        for grad in (None, ember.full((3,), 5.0), None):
            _P.grad = grad
            for _ in range(CALLS):
                _same(g(x), _branch_on_grad(x))
    finally:
        _W.requires_grad_(True)
        _P.grad = None
    assert any("requires_grad" in r for r in f.stats()["recompile_reasons"])
    assert any(".grad of a [3] tensor was None" in r for r in g.stats()["recompile_reasons"])


class _Frozen(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = ember.nn.Linear(3, 3)

    def forward(self, x):
        y = self.fc(x)
        return y if self.fc.weight.requires_grad else y * 10


def test_freezing_a_module_parameter_recompiles():
    m = _Frozen()
    f = ember.compile(m)
    x = ember.ones(2, 3)
    for rg in (True, False, True):
        m.fc.weight.requires_grad_(rg)
        for _ in range(CALLS):
            _same(f(x), m(x))


_G = ember.ones(2)


def _reads_a_shape(x):
    return x * _G.shape[0]


def _makes_zeros(x):
    return x.sum() + ember.zeros(2).sum(), ember.zeros(2).dtype


def test_default_dtype_and_a_rebound_tensors_shape_are_not_frozen():
    x = ember.ones(3)
    f = ember.compile(_makes_zeros)
    try:
        for d in (ember.float32, ember.float64, ember.float32):
            ember.set_default_dtype(d)
            for _ in range(CALLS):
                assert f(x.to(d))[1] == d
    finally:
        ember.set_default_dtype(ember.float32)
    assert any("default dtype" in r for r in f.stats()["recompile_reasons"])
    g = ember.compile(_reads_a_shape)
    try:
        for n in (2, 5, 2):
            _G.data = ember.ones(n)
            for _ in range(CALLS):
                _same(g(x), _reads_a_shape(x))
    finally:
        _G.data = ember.ones(2)


def test_print_and_logging_inside_run_eagerly_every_call(capsys, caplog):
    # A replay printed nothing: the output stopped silently after the traced calls.
    import logging

    def f(x):
        print("step")
        return x * 2

    log = logging.getLogger("ember-test-train")

    def g(x):
        log.debug("hidden below the level: not output")
        return x * 3

    def h(x):
        log.warning("shown")
        return x * 4

    cf, cg, ch = ember.compile(f), ember.compile(g), ember.compile(h)
    x = ember.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(CALLS):
            cf(x), cg(x), ch(x)
    assert capsys.readouterr().out.count("step") == CALLS
    assert [r.message for r in caplog.records].count("shown") == CALLS
    assert "print()" in cf.stats()["fallbacks"][0]
    assert "logging (warning" in ch.stats()["fallbacks"][0]
    assert not cg.stats()["fallbacks"] and cg.stats()["cache_hits"] >= 1


def test_a_value_deep_in_a_nested_config_dict_is_guarded():
    # Five levels down, past the walk's depth limit, the value was not guarded: changed
    # between calls, the replay multiplied by the old one, silently. Dict items whose
    # keys the code names as constants are followed to their end.
    cfg = {"model": {"block": {"attn": {"proj": {"scale": 1.5}}}}}
    compiled = ember.compile(lambda x: x * cfg["model"]["block"]["attn"]["proj"]["scale"])
    x = ember.ones(3)
    for _ in range(CALLS):
        assert compiled(x).tolist() == [1.5] * 3
    cfg["model"]["block"]["attn"]["proj"]["scale"] = 7.0
    assert compiled(x).tolist() == [7.0] * 3
    assert any("scale" in r for r in compiled.stats()["recompile_reasons"])


@pytest.mark.parametrize("store", ["dict", "list", "nested", "append", "number"])
def test_a_store_into_a_container_argument_is_never_skipped(store):
    # whisper's kv cache: ``cache[k] = cat([cache[k], new])`` into a dict the caller
    # passes. The argument's leaves were flattened, so nothing saw the store, and from
    # the third call on replays skipped it: the cache stayed one step behind, silently.
    def step(x, box):
        if store == "dict":
            box["k"] = ember.cat([box["k"], x], 1)
        elif store == "list":
            box[0] = box[0] + x
        elif store == "nested":
            box[0]["k"] = box[0]["k"] * 2
        elif store == "append":
            box.append(x * 2)
        else:
            box["n"] = box["n"] + 1
        return x.sum()

    f = ember.compile(step)
    seen = []
    for _ in range(4):
        box = {"dict": lambda: {"k": ember.zeros(2, 3)},
               "list": lambda: [ember.zeros(2, 1)],
               "nested": lambda: ({"k": ember.ones(2, 1)},),
               "append": lambda: [ember.zeros(2, 1)],
               "number": lambda: {"n": 1, "t": ember.zeros(2, 1)}}[store]()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            f(ember.ones(2, 1), box)
        seen += [str(m.message) for m in w]
        want = {"dict": lambda: box["k"].shape[1] == 4,
                "list": lambda: float(box[0].sum()) == 2.0,
                "nested": lambda: float(box[0]["k"].sum()) == 4.0,
                "append": lambda: len(box) == 2,
                "number": lambda: box["n"] == 2}[store]
        assert want()
    assert f.stats()["cache_hits"] == 0
    assert any("changes its argument" in m for m in seen), seen


def test_a_compiled_callable_object_is_guarded():
    # ember.compile(obj) of an object with __call__: its attributes were not walked at
    # all, so a replay kept the traced self.scale and self.w after the caller changed
    # them, silently; and a fallback's warning raised (no __name__)
    class Scaler:
        def __init__(self):
            self.scale, self.w = 2.0, ember.ones(3)

        def __call__(self, x):
            if self.scale > 5:
                print("large")   # a fallback: its warning names the object's class
            return x * self.scale + self.w

    s = Scaler()
    f = ember.compile(s)
    x = ember.ones(3)
    for i in range(5):
        if i == 3:
            s.scale, s.w = 10.0, ember.zeros(3)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert f(x).tolist() == s(x).tolist()
        if i == 3:
            assert any("ember.compile of Scaler" in str(m.message) for m in w)


def test_a_deque_the_code_reads_is_guarded():
    # the DQN tutorial's optimize_model starts ``if len(memory) < BATCH_SIZE: return``
    # over a deque: its length was not guarded, so the early return replayed forever
    # and the policy never trained, silently
    import collections
    memory = collections.deque([], maxlen=100)
    w = ember.ones(2)

    def optimize():
        if len(memory) < 3:
            return None
        return (w * len(memory)).sum()

    f = ember.compile(optimize)
    for i in range(6):
        memory.append(i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, want = f(), optimize()
        assert (got is None) == (want is None) and (got is None or got.item() == want.item())


def test_an_attribute_name_does_not_guard_a_global_of_that_name():
    # ``batch.action`` put "action" in co_names, so the DQN tutorial's global loop
    # variable ``action``, rebound every step, was guarded: a recompile per call
    import collections
    batch_type = collections.namedtuple("Batch", ("action",))
    ns = {"ember": ember, "action": ember.zeros(1)}
    exec("def step(batch, x):\n    return (x * batch.action).sum()\n", ns)
    f = ember.compile(ns["step"])
    b, x = batch_type(ember.ones(3)), ember.ones(3)
    for i in range(6):
        ns["action"] = ember.tensor([float(i)])
        assert f(b, x).item() == 3.0
    assert f.stats()["compiles"] == 1


def test_globals_read_through_globals_are_still_guarded():
    ns = {"ember": ember, "scale": 2.0}
    exec("def g(x):\n    return x * globals()['scale']\n", ns)
    f = ember.compile(ns["g"])
    x = ember.ones(2)
    assert f(x).tolist() == [2.0, 2.0] and f(x).tolist() == [2.0, 2.0]
    ns["scale"] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f(x).tolist() == [5.0, 5.0]
