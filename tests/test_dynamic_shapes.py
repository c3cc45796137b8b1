"""Dynamic shapes: ``ember.compile(dynamic=...)``, ``mark_dynamic``/``mark_static`` and
size-generic kernels (one machine code for every size), checked against eager and NumPy.

``stats()["code_builds"]`` counts the entries whose plans generated machine code; a new
size whose kernels are all compiled already adds a cache entry (``compiles``) but no
build. The persistent cache is off here, so every build is a real one.
"""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember import dtypes as dt
from ember.codegen.kernel import Expr, Kernel, Load, Param, Store, collapse_dims
from ember.codegen.llvm import compile_kernel
from ember.codegen.llvm import kernels as llvm_kernels
from ember.tracer import admission
from test_train_step import make_step


@pytest.fixture(autouse=True)
def no_disk_cache(monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", "")


F32 = dt.float32


def _softmax(n: int, m: int, generic: bool = True) -> Kernel:
    return Kernel("sm", (n, m), loads=[Load(0, F32, (m, 1))],
                  exprs=[Expr("load", (0,), F32), Expr("reduce_max", (0,), F32),
                         Expr("sub", (0, 1), F32), Expr("exp", (2,), F32),
                         Expr("reduce_sum", (3,), F32), Expr("div", (3, 4), F32)],
                  stores=[5], reduce_dims=1, generic=generic)


def _bias_relu_t(n: int, m: int, generic: bool = True) -> Kernel:
    """relu(x.T + b) over [n, m] where x is [m, n] (a permuted load) and b is [m]."""
    return Kernel("br", (n, m), loads=[Load(0, F32, (1, n)), Load(1, F32, (0, 1))],
                  exprs=[Expr("load", (0,), F32), Expr("load", (1,), F32),
                         Expr("add", (0, 1), F32), Expr("relu", (2,), F32)],
                  stores=[3], generic=generic)


def _offset_rowsum(n: int, m: int, generic: bool = True) -> Kernel:
    """Row sums of x[:, 1:] for a [n, m + 1] x (a load with an offset), and x * 2."""
    return Kernel("os", (n, m), loads=[Load(0, F32, (m + 1, 1), offset=1)],
                  exprs=[Expr("load", (0,), F32), Expr("reduce_sum", (0,), F32),
                         Expr("const", (2.0,), F32), Expr("mul", (0, 2), F32)],
                  stores=[Store(1, (1, 0)), Store(3, (m, 1))], reduce_dims=1,
                  generic=generic)


SIZES = [(64, 10), (48, 10), (17, 3), (5, 33), (1, 7), (300, 200)]


@pytest.mark.parametrize("make", [_softmax, _bias_relu_t, _offset_rowsum])
def test_generic_kernel_runs_every_size_from_one_machine_code(make):
    rng = np.random.default_rng(0)
    kept = []
    for n, m in SIZES:
        k = make(n, m)
        ck = compile_kernel(k)
        if not (make is _bias_relu_t and n == 1):   # there x's stride n is a literal 1
            kept.append(ck)
        if make is _softmax:
            x = rng.standard_normal((n, m)).astype(np.float32)
            out = [np.empty((n, m), np.float32)]
            ck.run([x], out)
            e = np.exp(x - x.max(1, keepdims=True))
            refs = [e / e.sum(1, keepdims=True)]
        elif make is _bias_relu_t:
            x = rng.standard_normal((m, n)).astype(np.float32)
            b = rng.standard_normal(m).astype(np.float32)
            out = [np.empty((n, m), np.float32)]
            ck.run([x, b], out)
            refs = [np.maximum(x.T + b, 0)]
            y = np.empty((n, m), np.float32)
            direct = ck.direct()
            if direct is not None:   # the builtin launcher passes the sizes too
                direct(x, b, y)
                np.testing.assert_allclose(y, refs[0], rtol=1e-6)
        else:
            x = rng.standard_normal((n, m + 1)).astype(np.float32)
            out = [np.empty(n, np.float32), np.empty((n, m), np.float32)]
            ck.run([x], out)
            refs = [x[:, 1:].sum(1), x[:, 1:] * 2]
        for o, r in zip(out, refs):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)
    # Sizes differ, strides differ (n, m + 1), the code does not.
    assert all(ck._code is kept[0]._code for ck in kept)


def test_generic_and_static_kernels_differ_and_static_is_unchanged():
    static, generic = compile_kernel(_softmax(8, 4, False)), compile_kernel(_softmax(8, 4))
    assert static._code is not generic._code
    assert static.layout.dims is None and generic.layout.dims == (8, 4, 4, 4)
    assert all(type(n) is int for n in static.layout.outer_shape)
    assert isinstance(generic.layout.outer_shape[0], Param)


def test_collapse_keeps_unit_dims_only_when_asked():
    assert collapse_dims((1, 8), [(8, 1)]) == ((8,), [(1,)])
    assert collapse_dims((1, 8), [(8, 1)], keep_unit=True) == ((8,), [(1,)])
    assert collapse_dims((1, 8), [(0, 1), (8, 1)], keep_unit=True) == ((1, 8), [(0, 1), (8, 1)])


# ---- compiled functions -----------------------------------------------------------

def _mlp_pair():
    def make():
        ember.manual_seed(0)
        m = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 10))
        return m, make_step(m, ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    return make(), make()


BATCHES = [64, 64, 64, 48, 17, 64, 5, 33, 64, 1, 50]


def _train_over(batches, epochs: int = 1):
    """The MLP step compiled and eager over ``batches`` (``epochs`` times), equal at every
    step; the compiled function and its stats after each call."""
    (m_eager, eager_step), (m_comp, step) = _mlp_pair()
    compiled = ember.compile(step)
    counts = []
    for _ in range(epochs):
        for b in batches:
            x, y = ember.randn(b, 20), ember.randint(0, 10, (b,))
            got, want = compiled(x, y), eager_step(x, y)
            np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
            for p, q in zip(m_comp.parameters(), m_eager.parameters()):
                np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(),
                                           rtol=1e-5, atol=1e-6)
            counts.append(dict(compiled.stats()))
    return compiled, counts


def test_training_loop_with_varying_batch_sizes_builds_code_for_two_sizes():
    compiled, counts = _train_over(BATCHES)
    builds = [c["code_builds"] for c in counts]
    stats = compiled.stats()
    assert not stats["fallbacks"]
    # 64 (static), 48 (the batch dim turns dynamic: generic kernels); 17, 5, 33, 1 and
    # 50 reuse them.
    # (The step's first call differs from its second, momentum buffers appear: 64 builds
    # twice; that is the warm-up protocol, not sizes.)
    at64 = builds[2]
    assert builds[3] == at64 + 1
    for i, b in enumerate(BATCHES):
        if b in (17, 5, 33, 50):
            assert builds[i] == builds[i - 1], (b, builds)
    assert builds[-1] == at64 + 1   # 1 reuses the generic code too (_unexpanded_unit_strides)
    assert any("argument 0 dim 0 varies (64 -> 48)" in n for n in stats["notes"])



def test_training_loop_rents_sizes_seen_once_and_compiles_recurring_ones(monkeypatch,
                                                                       rent_new_sizes):
    # (sizes compile on their second call here; the ski-rental rule: the next test)
    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)
    compiled, counts = _train_over(BATCHES, epochs=4)
    builds = [c["code_builds"] for c in counts]
    stats = compiled.stats()
    assert not stats["fallbacks"]
    n = len(BATCHES)
    # Epoch 1: 64 compiles (twice: the step's first call differs from its second, momentum
    # buffers appear; the warm-up protocol, not sizes); 48, 17, 5, 33, 1 and 50 are new
    # sizes seen once: they run eagerly and build nothing (admission.py).
    at64 = builds[2]
    assert builds[n - 1] == at64
    assert counts[n - 1]["new_sizes_run_eagerly"] == 6 == counts[n - 1]["eager_calls"]
    # Epoch 2: they recur and compile; 48 (first) builds the size-generic kernels (unless
    # the test before made the same ones: machine code is shared in the process), the
    # others reuse them. Epoch 3: each one's second call is traced again and compared.
    assert builds[n + 3] <= at64 + 1 and builds[-1] == builds[n + 3]
    assert counts[2 * n - 1]["compiles"] == counts[n - 1]["compiles"] + 6
    assert any("argument 0 dim 0 varies (64 -> 48)" in n for n in stats["notes"])
    # Epoch 4: every call replays.
    assert stats["cache_hits"] == counts[3 * n - 1]["cache_hits"] + n
    assert stats["compiles"] == counts[3 * n - 1]["compiles"]
    assert stats["eager_calls"] == 6


def test_new_sizes_run_eagerly_until_compiling_them_pays(rent_new_sizes):
    def f(x):
        return (x * 2).relu().sum(-1)

    compiled = ember.compile(f)

    def call(b, times=1):
        for _ in range(times):
            x = ember.randn(b, 4)
            np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-6)

    call(5, 3)   # the first call compiles; its second is traced again and compared: with
    cost = compiled._sizes.cost   # the compile, less generating machine code, what a
    assert cost is not None and 0 < cost   # compile costs
    call(9)                     # a new size: eagerly, and said so (not a fallback)
    stats = compiled.stats()
    assert stats["new_sizes_run_eagerly"] == 1 and stats["eager_calls"] == 1
    assert any("runs eagerly until its eager calls have cost" in n for n in stats["notes"])
    assert not stats["fallbacks"]
    # Later sizes rent (run eagerly) until their eager time reaches that cost.
    compiled._sizes.cost = 1e9
    before = compiled.stats()
    call(11, 5)
    after = compiled.stats()
    assert after["compiles"] == before["compiles"]
    assert after["eager_calls"] == before["eager_calls"] + 5
    paid = compiled._sizes.seen[next(k for k in compiled._sizes.seen)][1]
    assert 0 < paid < 1e9
    compiled._sizes.cost = paid / 2   # what size 11 paid already exceeds it: compile
    call(11)
    assert compiled.stats()["compiles"] == after["compiles"] + 1
    call(11)   # its second call is checked: the cost becomes a moving mean
    assert compiled._sizes.cost != paid / 2
    # dynamic=False compiles every size at once (code of its own, as torch does)
    static = ember.compile(f, dynamic=False)
    for b in [5, 9]:
        static(ember.randn(b, 4))
    assert static.stats()["eager_calls"] == 0 and static.stats()["compiles"] == 2


def test_the_cost_of_a_compile_is_guessed_before_it_is_measured():
    sizes = admission.SizeAdmission()
    key = ("a new size",)
    sizes.sighting(key)
    sizes.sighting(key)
    assert sizes.worth_compiling(key)        # nothing known: a size compiles on its 2nd call
    sizes.compiled(("another",), 0.5)        # a compile took 0.5 s: the guess, until ...
    assert not sizes.worth_compiling(key)
    sizes.paid(key, 0.4)
    assert not sizes.worth_compiling(key)
    sizes.paid(key, 0.2)
    assert sizes.worth_compiling(key)        # 0.6 s of eager calls paid: compile
    sizes.checked(("another",), 0.3)         # ... its second call measures the whole cost
    assert sizes.cost == pytest.approx(0.8)
    assert not sizes.worth_compiling(key)


@pytest.mark.parametrize("policy", ["compile", "rent"])
def test_a_new_size_is_checked_though_another_size_passed(monkeypatch, policy):
    # Python state no guard covers (a set of the sizes seen, in a module attribute) makes
    # the first call at each size differ from the later ones: eager scales by 2 the first
    # time, by 1 after. Each size's second call is traced and compared with its first, so
    # no size replays the first call's constant. (Skipping that check when an entry at
    # another size had passed it, with the same ops, replayed 2.0 at every later size.)
    monkeypatch.setattr(admission, "NEW_SIZES", policy)
    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)

    class FirstTimeDoubled(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def forward(self, x):
            first = x.shape[0] not in self.seen
            self.seen.add(x.shape[0])
            return x * (2.0 if first else 1.0)

    compiled, eager = ember.compile(FirstTimeDoubled()), FirstTimeDoubled()
    for n in [4, 4, 4, 4, 6, 6, 6, 6, 7, 7, 7, 7, 7]:
        x = ember.randn(n, 3)
        np.testing.assert_array_equal(compiled(x).numpy(), eager(x).numpy())
    assert not compiled.stats()["fallbacks"]
    assert compiled.stats()["cache_hits"] >= 3


def test_transformer_forward_with_varying_sequence_lengths():
    ember.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0,
                                       batch_first=True)
    layer.eval()
    compiled = ember.compile(layer)
    builds = {}
    with ember.no_grad():
        for t in [16, 16, 12, 20, 7, 16, 1, 33, 12, 20, 7, 1, 33]:
            x = ember.randn(3, t, 16)
            mask = nn.Transformer.generate_square_subsequent_mask(t)
            got = compiled(x, src_mask=mask, is_causal=True)
            want = layer(x, src_mask=mask, is_causal=True)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
            builds[t] = compiled.stats()["code_builds"]
    assert not compiled.stats()["fallbacks"]
    # 12, 20, 7, 1, 33 run eagerly when first seen; the second 12 builds the size-generic
    # kernels, and 20, 7, 1 and 33 build nothing
    assert builds[12] == 2 and builds[33] == 2


def test_sizes_through_reshape_flatten_view_and_python_branches():
    def f(x):
        b = x.shape[0]
        h = x.view(b, x.shape[1] * x.shape[2]).relu()   # a view to expressions of sizes
        h = h.reshape(b, 2, h.shape[1] // 2).sum(1)
        if b > 8:                             # a branch on the size: exact per size
            h = h * 2
        return torch_like_flatten(h) + float(b)

    def torch_like_flatten(h):
        return ember.flatten(h, 0) / h.shape[0]

    compiled = ember.compile(f)
    for b in [10, 10, 12, 4, 9, 1, 0, 30]:
        x = ember.randn(b, 4, 6)
        np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert not compiled.stats()["fallbacks"]


def test_dynamic_false_keeps_code_per_size_and_true_shares_from_the_start():
    def f(x):
        return (x * 2).exp().sum(-1)

    static = ember.compile(f, dynamic=False)
    eager_builds = []
    for b in [6, 7, 8, 9]:
        x = ember.randn(b, 5)
        np.testing.assert_allclose(static(x).numpy(), f(x).numpy(), rtol=1e-6)
        eager_builds.append(static.stats()["code_builds"])
    assert eager_builds == [1, 2, 3, 4]
    assert not any("varies" in n for n in static.stats()["notes"])
    assert all(not k.kernel.generic for k in static.kernels() if k.kernel is not None)

    dynamic = ember.compile(f, dynamic=True)
    for b in [6, 7, 8, 9]:
        x = ember.randn(b, 11)
        np.testing.assert_allclose(dynamic(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert dynamic.stats()["code_builds"] == 1
    assert any(k.kernel.generic for k in dynamic.kernels() if k.kernel is not None)


def test_mark_dynamic_and_mark_static():
    def f(x):
        return (x + 1).tanh() * 3

    marked = ember.compile(f)
    for b in [6, 6, 7, 7, 8, 8]:   # (a new size compiles when it recurs: admission.py)
        x = ember.randn(b, 3)
        ember.mark_dynamic(x, 0)
        np.testing.assert_allclose(marked(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert marked.stats()["code_builds"] == 1 and marked.stats()["compiles"] == 3

    pinned = ember.compile(f)
    for b in [6, 6, 7, 7, 8, 8]:
        x = ember.randn(b, 3)
        ember.mark_static(x, 0)
        np.testing.assert_allclose(pinned(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert pinned.stats()["code_builds"] == 3
    assert not any("varies" in n for n in pinned.stats()["notes"])

    with pytest.raises(IndexError, match="mark_dynamic: dim 2 is out of range"):
        ember.mark_dynamic(ember.ones(2, 3), 2)
    with pytest.raises(TypeError, match="mark_static: expected a Tensor"):
        ember.mark_static([1, 2], 0)
    with pytest.raises(ValueError, match="dynamic must be None, True or False"):
        ember.compile(f, dynamic="auto")


def test_a_full_cache_keeps_the_sizes_hit_most(monkeypatch, rent_new_sizes):
    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)   # compile on a size's 2nd call
    def f(x):
        return x.softmax(-1) * 2

    compiled = ember.compile(f, cache_limit=3)

    def call(b, times=1):
        for _ in range(times):
            x = ember.randn(b, 16)
            np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-6)

    call(4, 6)           # compiled; 3 hits after the first-call check
    call(5, 3)           # first seen: eagerly, then compiled; 1 hit
    call(6, 3)
    assert compiled.stats()["cache_entries"] == 3
    call(7, 2)           # recurs into a full cache: replaces 5 (1 hit, least recent), not 4
    stats = compiled.stats()
    assert stats["cache_entries"] == 3 and not stats["fallbacks"]
    hits = stats["cache_hits"]
    call(4)              # LRU would have given up 4, the oldest: it is still compiled
    assert compiled.stats()["cache_hits"] == hits + 1
    call(6, 8)           # 6 and 4 are hit often now
    call(4, 8)
    call(7, 8)
    before = compiled.stats()
    call(9, 3)           # seen 3 times, less than any entry was hit: stays eager
    after = compiled.stats()
    assert after["compiles"] == before["compiles"]
    assert after["eager_calls"] == before["eager_calls"] + 3
    assert after["sizes_left_eager_cache_full"] == before["sizes_left_eager_cache_full"] + 2
    assert after["code_builds"] == 2   # 4 (static), then 5 made the size-generic kernels


def test_the_entry_used_by_fast_calls_is_not_evicted():
    def f(x):
        return x * 3 + 1

    compiled = ember.compile(f, cache_limit=2)
    big = ember.randn(8, 4)
    for x in [big, big, ember.randn(5, 4), big, ember.randn(6, 4), big]:
        np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-6, atol=1e-6)
    assert compiled.stats()["cache_entries"] <= 2


def test_a_loop_over_many_sizes_keeps_them_all_by_default():
    # 8 entries until a dim turns dynamic, then 64: a loop cycling through 20 sequence
    # lengths traces each once (twice: the first-call protocol), then only replays.
    def f(x):
        return (x.softmax(-1) * 2).sum(0)

    compiled = ember.compile(f)
    assert compiled.limit() == 8
    sizes = list(range(3, 23))
    for _ in range(2):
        for n in sizes:
            compiled(ember.randn(n, 16))
    assert compiled.limit() == 64
    before = compiled.stats()
    for n in sizes:
        x = ember.randn(n, 16)
        np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)
    after = compiled.stats()
    assert after["compiles"] == before["compiles"]
    assert after["cache_hits"] == before["cache_hits"] + len(sizes)
    assert after["cache_entries"] == len(sizes)
    assert ember.compile(f, cache_limit=5).limit() == 5   # an explicit limit is kept


def test_generic_kernels_match_torch():
    torch = pytest.importorskip("torch")

    def f(x, w):
        return F.gelu(F.layer_norm(x @ w, (w.shape[1],)))

    compiled = ember.compile(f, dynamic=True)
    w = ember.randn(12, 24)
    for b in [3, 9, 1, 40]:
        x = ember.randn(b, 12)
        want = torch.nn.functional.gelu(torch.nn.functional.layer_norm(
            torch.from_numpy(x.numpy()) @ torch.from_numpy(w.numpy()), (24,)))
        np.testing.assert_allclose(compiled(x, w).numpy(), want.numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_shared_code_is_freed_with_its_last_user():
    import gc
    import weakref

    k = _bias_relu_t(77, 3)
    k.exprs = k.exprs + [Expr("const", (0.123,), F32), Expr("mul", (3, 4), F32)]
    k.stores = [Store(5, (3, 1))]   # a structure no other test builds
    ck = compile_kernel(k)
    ref = weakref.ref(ck._code)
    assert compile_kernel(_relaid(k, 9))._code is ck._code
    del ck
    llvm_kernels._CACHE.clear()
    gc.collect()
    assert ref() is None


def _relaid(k: Kernel, n: int) -> Kernel:
    """``k`` over n rows instead of its own."""
    m = k.shape[1]
    return Kernel(k.name, (n, m), [Load(0, F32, (1, n)), Load(1, F32, (0, 1))], k.exprs,
                  [Store(5, (m, 1))], generic=True)


# ---- data-dependent sizes -------------------------------------------------------------

def test_boolean_mask_sizes_compile_once_and_replay_per_size():
    def f(x):
        kept = x[x > 0.5]                  # as many elements as the mask has True values
        # (a Python number made from the size, kept.shape[0], would be a constant in the
        # code: exact, but code of its own per size)
        return (kept * 2).exp().sum(), x.softmax(0)

    compiled = ember.compile(f)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(40).astype(np.float32) for _ in range(6)]
    for v in xs + xs:                       # every size twice: the second time replays
        x = ember.tensor(v)
        for got, want in zip(compiled(x), f(x)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    stats = compiled.stats()
    assert not stats["fallbacks"]
    assert stats["cache_hits"] >= 6
    # The path after the mask is traced per size; its kernels are size-generic from the
    # second size on, so later sizes make no code.
    assert stats["code_builds"] <= 2


def test_nonzero_then_more_work_compiles():
    def f(x):
        idx = (x > 0).nonzero()
        return idx.float().mean(0) + idx.shape[0], x * 3

    compiled = ember.compile(f)
    for v in ([[1., -2.], [3., 4.]], [[-1., -2.], [3., 4.]], [[1., -2.], [3., 4.]],
              [[0., 0.], [0., 1.]], [[-1., -2.], [3., 4.]]):
        x = ember.tensor(v)
        for got, want in zip(compiled(x), f(x)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    assert not compiled.stats()["fallbacks"]


def test_masked_loss_gradients_equal_eager():
    torch = pytest.importorskip("torch")
    ember.manual_seed(0)
    model = nn.Linear(4, 1)

    def loss_fn(x, y):
        pred = model(x).squeeze(1)
        mask = y > 0                      # only the labelled rows count
        return ((pred[mask] - y[mask]) ** 2).mean()

    compiled = ember.compile(loss_fn)
    w = torch.tensor(model.weight.detach().numpy(), requires_grad=True)
    b = torch.tensor(model.bias.detach().numpy(), requires_grad=True)
    rng = np.random.default_rng(2)
    for _ in range(5):
        xv = rng.standard_normal((12, 4)).astype(np.float32)
        yv = rng.standard_normal(12).astype(np.float32)
        model.zero_grad()
        loss = compiled(ember.tensor(xv), ember.tensor(yv))
        loss.backward()
        w.grad = b.grad = None
        tx, ty = torch.from_numpy(xv), torch.from_numpy(yv)
        m = ty > 0
        want = (((tx @ w.T + b).squeeze(1)[m] - ty[m]) ** 2).mean()
        want.backward()
        np.testing.assert_allclose(float(loss), float(want.detach()), rtol=1e-5)
        np.testing.assert_allclose(model.weight.grad.numpy(), w.grad.numpy(), rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(model.bias.grad.numpy(), b.grad.numpy(), rtol=1e-4,
                                   atol=1e-6)


def _positives(n: int):
    return ember.tensor([1.0] * n + [-1.0] * (30 - n))   # a size the values decide


def test_a_break_that_keeps_meeting_new_values_runs_them_eagerly():
    """New values whose paths are replayed often compile, up to MAX_BRANCHES per break."""
    from ember.tracer.entry import MAX_BRANCHES

    compiled = ember.compile(lambda x: x[x > 0].sum() * 2)
    with pytest.warns(UserWarning, match=f"more than {MAX_BRANCHES} values of shape"):
        for n in range(MAX_BRANCHES + 6):
            assert float(compiled(_positives(n))) == 2.0 * n
            for _ in range(3):   # paths that pay: replayed between the new values
                assert float(compiled(_positives(1))) == 2.0
    # the sizes seen before the limit still replay their compiled paths
    hits = compiled.stats()["cache_hits"]
    assert float(compiled(_positives(3))) == 6.0
    assert compiled.stats()["cache_hits"] == hits + 1
    assert compiled.stats()["eager_calls"] >= 5


def test_new_values_whose_paths_never_pay_run_eagerly():
    """An adaptive ODE solver meets a new value at a break almost every call: compiling
    a path for each (torchdiffeq's dopri5: 9 compiles in 10 calls, 15.8 s a call against
    0.13 s eagerly) never pays. Past FREE_BRANCHES paths replayed less than
    BRANCH_PAYBACK times each, new values run eagerly; seen ones still replay."""
    from ember.tracer.entry import FREE_BRANCHES

    compiled = ember.compile(lambda x: x[x > 0].sum() * 2)
    with pytest.warns(UserWarning, match="replayed too rarely"):
        for n in range(12):
            assert float(compiled(_positives(n))) == 2.0 * n
    stats = compiled.stats()
    assert stats["compiles"] <= FREE_BRANCHES + 3 and stats["eager_calls"] >= 4
    hits = stats["cache_hits"]
    assert float(compiled(_positives(2))) == 4.0   # a size compiled early replays
    assert compiled.stats()["cache_hits"] == hits + 1


def test_fullgraph_still_refuses_a_data_dependent_shape():
    with pytest.raises(ember.CompileError, match="boolean mask"):
        ember.compile(lambda x: x[x > 0].sum(), fullgraph=True)(ember.tensor([1., -2.]))


def test_the_sizes_of_a_function_share_one_working_memory():
    def f(x):
        h = (x * 2).exp().sum(-1, keepdim=True) + x      # intermediates in the arena
        return (h.softmax(-1) * x.sigmoid()).sum(0)

    many = ember.compile(f)
    for n in (300, 2000, 700, 1200):
        x = ember.randn(n, 64)
        np.testing.assert_allclose(many(x).numpy(), f(x).numpy(), rtol=1e-4, atol=1e-5)
    largest = ember.compile(f)
    for _ in range(2):
        largest(ember.randn(2000, 64))
    assert 0 < many.arena.nbytes <= largest.arena.nbytes * 1.05   # the max, not the sum


def test_the_sizes_of_a_training_step_share_the_gradient_arrays():
    # Every batch size's plan hands out gradients of the parameters' shapes: they come
    # from one set of spare arrays (the arena's), reused once nobody holds them, and a
    # gradient the user keeps is never overwritten by a later call.
    (m_eager, eager_step), (m_comp, step) = _mlp_pair()
    compiled = ember.compile(step)
    kept = []
    for b in (64, 64, 64, 48, 17, 33, 5, 64, 48):
        x, y = ember.randn(b, 20), ember.randint(0, 10, (b,))
        compiled(x, y)
        eager_step(x, y)
        p = next(m_comp.parameters())
        kept.append((p.grad, p.grad.numpy().copy()))
        for q, r in zip(m_comp.parameters(), m_eager.parameters()):
            np.testing.assert_allclose(q.grad.numpy(), r.grad.numpy(), rtol=1e-5, atol=1e-6)
    for g, values in kept:   # every gradient kept still holds its own call's values
        np.testing.assert_array_equal(g.numpy(), values)
    spares = compiled.arena.handed
    assert spares
    for entry in compiled.cache.values():
        for step_ in entry.root.plan.steps:
            for buf in getattr(step_, "buffers", ()):
                if type(buf).__name__ == "Buffer" and not buf.pooled:
                    assert buf.spare is spares[(buf.xp, buf.shape, buf.dtype)]


def _row_sum(n: int, m: int) -> Kernel:
    return Kernel("rs", (n, m), loads=[Load(0, F32, (m, 1))],
                  exprs=[Expr("load", (0,), F32), Expr("reduce_sum", (0,), F32)],
                  stores=[Store(1, (1, 0))], reduce_dims=1, generic=True)


def test_generic_sums_keep_the_accumulator_their_row_length_needs():
    from ember.codegen.policy import SUM_F32_MAX

    short, long = compile_kernel(_row_sum(2, 1000)), compile_kernel(_row_sum(2, SUM_F32_MAX * 2))
    assert short._code is not long._code   # float32 vs float64 accumulation
    x = np.full((2, SUM_F32_MAX * 2), 0.1, np.float32)
    out = np.empty(2, np.float32)
    long.run([x], [out])
    np.testing.assert_allclose(out, x.astype(np.float64).sum(1), rtol=1e-6)


def test_an_empty_generic_kernel_keeps_static_code():
    ck = compile_kernel(_row_sum(3, 0))
    assert ck.layout.dims is None
    out = np.full(3, 7.0, np.float32)
    ck.run([np.empty((3, 0), np.float32)], [out])
    np.testing.assert_array_equal(out, 0.0)


# ---- numbers made from sizes: run-time scalars ---------------------------------------------

@pytest.mark.parametrize("name,fn", [
    ("mean(0)", lambda x: (x * 2).mean(0)),
    ("var(0)", lambda x: x.var(0)),
    ("mse_loss", lambda x: F.mse_loss(x, x * 0.5)),
    ("batch_norm", lambda x: F.batch_norm(x, None, None, training=True)),
])
def test_a_mean_over_a_varying_dim_shares_code_across_sizes(name, fn):
    # mean's 1/N is a constant of the trace; a generic kernel reads it at run time (a
    # "scalar" expr) instead of compiling it in, so each size does not build code.
    torch = pytest.importorskip("torch")
    tfn = {"mean(0)": lambda x: (x * 2).mean(0), "var(0)": lambda x: x.var(0),
           "mse_loss": lambda x: torch.nn.functional.mse_loss(x, x * 0.5),
           "batch_norm": lambda x: torch.nn.functional.batch_norm(x, None, None,
                                                                  training=True)}[name]
    compiled = ember.compile(fn)
    builds = []
    for n in (64, 48, 17, 33, 5, 70, 48):
        x = ember.randn(n, 24)
        for _ in range(3):
            got = compiled(x)
        np.testing.assert_allclose(got.numpy(), fn(x).numpy(), rtol=1e-5, atol=1e-6)
        want = tfn(torch.from_numpy(x.numpy())).numpy()
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
        builds.append(compiled.stats()["code_builds"])
    assert not compiled.stats()["fallbacks"]
    assert builds[1] == builds[-1], builds   # 48 builds generic code; then none


def test_scalars_are_values_of_one_machine_code():
    def mean_rows(n: int, scale: float) -> Kernel:
        return Kernel("ms", (n, 16), loads=[Load(0, F32, (16, 1))],
                      exprs=[Expr("load", (0,), F32), Expr("reduce_sum", (0,), F32),
                             Expr("scalar", (0,), F32), Expr("mul", (1, 2), F32)],
                      stores=[Store(3, (1, 0))], reduce_dims=1, generic=True,
                      scalars=(scale,))
    a, b = mean_rows(40, 1 / 16), mean_rows(40, 0.25)
    assert a.structure() == b.structure() and a.signature() != b.signature()
    ka, kb = compile_kernel(a), compile_kernel(b)
    assert ka._code is kb._code          # one machine code ...
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    for k, scale in ((ka, 1 / 16), (kb, 0.25)):   # ... each instance its own value
        out = np.empty(40, np.float32)
        k.run([x], [out])
        np.testing.assert_allclose(out, x.sum(1) * np.float32(scale), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="generic"):
        Kernel("bad", (4,), [], [Expr("scalar", (0,), F32)], [0], scalars=(1.0,)).validate()
