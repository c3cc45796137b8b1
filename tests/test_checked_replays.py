"""Checked replays: every check eager makes on values (an index or a class target out of
range) is made by a compiled replay too, with eager's error type and message and the
user's line, and a failing call leaves parameters, gradients and optimizer state as
they were."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

HERE = __file__


def _line(marker: str) -> str:
    """'this file:N' of the line that ends with ``marker`` (the user's line in errors)."""
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(marker) and "_line(" not in text:
                return f"{HERE}:{i}"
    raise AssertionError(marker)


def _run(fn, *args):
    """fn(*args), or the exception it raised."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - compared below
        return e


def _same(eager, compiled, err_type=IndexError, message=None, line=None):
    """Both results are equal tensors, or both the same kind of error."""
    if isinstance(eager, Exception) or isinstance(compiled, Exception):
        assert isinstance(eager, err_type), eager
        assert type(compiled) is type(eager), (eager, compiled)
        assert compiled.message == eager.message
        if message is not None:
            assert eager.message == message
        if line is not None:
            assert line in str(eager) and line in str(compiled), (str(eager), str(compiled))
        return
    np.testing.assert_allclose(compiled.detach().numpy(), eager.detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def _ce(x, t):
    return F.cross_entropy(x, t)  # CE-LINE


def _nll(x, t):
    return F.nll_loss(x.log_softmax(1), t, ignore_index=-100, reduction="none")  # NLL-LINE


def _ce_smooth(x, t):
    return F.cross_entropy(x, t, weight=ember.arange(1, 6).float(), label_smoothing=0.1)  # LS


# good batches, then bad ones (below 0, at C, above), then good again: the compiled
# function must replay every call after the second, checks included.
TARGETS = [[0, 1, 2, 3], [4, 3, 2, 1], [1, 1, 0, 0], [0, -1, 2, 3], [0, 5, 2, 3],
           [7, 5, -1, 3], [2, 2, 2, 2], [-100, 1, 2, 3]]


@pytest.mark.parametrize("fn,marker", [(_ce, "# CE-LINE"), (_nll, "# NLL-LINE"),
                                       (_ce_smooth, "# LS")])
def test_target_out_of_range_raises_on_every_replay(fn, marker):
    cf = ember.compile(fn)
    x = ember.randn(4, 5)
    line = _line(marker)
    for t in TARGETS:
        t = ember.tensor(t)
        bad = [v for v in t.tolist() if v != -100 and not 0 <= v < 5]
        eager, compiled = _run(fn, x, t), _run(cf, x, t)
        want = f"Target {bad[0]} is out of bounds." if bad else None
        if fn is not _nll and -100 in t.tolist():   # cross_entropy's ignore_index is -100 too
            want = None
        _same(eager, compiled, message=want, line=line)
        assert isinstance(eager, Exception) == bool(bad)
    assert cf.stats()["cache_hits"] >= 5 and not cf.stats()["fallbacks"]


@pytest.mark.filterwarnings("error")
def test_embedding_index_out_of_range_raises_on_every_replay():
    emb = nn.Embedding(10, 3)

    def fn(i):
        return emb(i) * 2  # EMB-LINE

    def functional(i):
        return F.embedding(i, emb.weight).sum()  # FEMB-LINE

    for f, marker in ((fn, "# EMB-LINE"), (functional, "# FEMB-LINE")):
        cf = ember.compile(f)
        for idx in ([0, 9], [3, 4], [[1, 2], [3, 4]], [0, 10], [-1, 2], [5, 5], [[1, 2], [3, 40]]):
            idx = ember.tensor(idx)
            eager, compiled = _run(f, idx), _run(cf, idx)
            bad = any(not 0 <= v < 10 for v in np.ravel(idx.tolist()))
            assert isinstance(eager, Exception) == bad
            _same(eager, compiled, message="index out of range in self" if bad else None,
                  line=_line(marker))


def test_indexing_out_of_range_is_an_index_error_eager_and_compiled():
    def gather(x, i):
        return x[i] + 1  # IDX-LINE

    def scatter(x, i):
        y = x * 1
        y[i] = 0.0  # PUT-LINE
        return y

    x = ember.randn(10, 3)
    for f, marker, op in ((gather, "# IDX-LINE", "index"), (scatter, "# PUT-LINE", "index_put")):
        cf = ember.compile(f)
        for idx in ([0, 9], [1, 2], [-1, 3], [0, 10], [4, 4], [-11, 0]):
            idx = ember.tensor(idx)
            eager, compiled = _run(f, x, idx), _run(cf, x, idx)
            bad = [v for v in idx.tolist() if not -10 <= v < 10]
            assert isinstance(eager, Exception) == bool(bad)
            want = f"index {bad[0]} is out of bounds for dimension 0 with size 10" if bad else None
            _same(eager, compiled, message=want, line=_line(marker))
            if bad:
                assert compiled.op == op


def test_messages_and_types_match_pytorch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    w = np.ones((10, 3), np.float32)
    cases = [
        (lambda m, f, t: f.cross_entropy(t(x), t(np.array([0, -1, 2, 3])))),
        (lambda m, f, t: f.cross_entropy(t(x), t(np.array([0, 5, -1, 3])))),
        (lambda m, f, t: f.nll_loss(t(x), t(np.array([0, 1, 2, 7])))),
        (lambda m, f, t: f.cross_entropy(t(x), t(np.array([0, 5, 2, 3])), label_smoothing=0.2)),
        (lambda m, f, t: f.embedding(t(np.array([0, 10])), t(w))),
        (lambda m, f, t: f.embedding(t(np.array([-1, 0])), t(w))),
        (lambda m, f, t: t(w)[t(np.array([0, 10]))]),
        (lambda m, f, t: t(w)[t(np.array([-11]))]),
    ]
    for case in cases:
        want = _run(case, torch, tf, torch.from_numpy)
        got = _run(case, ember, F, ember.from_numpy)
        cf = ember.compile(lambda xx, c=case: c(ember, F, ember.from_numpy))
        compiled = [_run(cf, ember.ones(1)) for _ in range(4)]   # traced twice, replayed twice
        assert isinstance(want, IndexError), want
        for e in [got] + compiled:
            assert isinstance(e, IndexError), e
            assert e.message == str(want)


def test_checks_hold_across_graph_breaks():
    """A check after a data-dependent branch lives in a later segment of the plan."""
    def fn(x, t):
        if x.sum() > 0:   # a graph break: each sign is its own segment
            x = x * 2
        return F.cross_entropy(x, t)  # BREAK-LINE

    cf = ember.compile(fn)
    for sign in (1, -1, 1, -1, 1, -1):
        x = ember.full((3, 4), 0.5 * sign)
        for t in ([0, 1, 3], [0, 4, 1], [2, 2, 2], [-1, 0, 0]):
            t = ember.tensor(t)
            _same(_run(fn, x, t), _run(cf, x, t), line=_line("# BREAK-LINE"))
    assert cf.stats()["cache_hits"] >= 8 and cf.stats()["breaks"]


def test_first_call_that_raises_does_not_break_the_cache():
    cf = ember.compile(_ce)
    x = ember.randn(4, 5)
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        cf(x, ember.tensor([0, 5, 1, 1]))
    good = ember.tensor([0, 4, 1, 1])
    for _ in range(3):
        np.testing.assert_allclose(cf(x, good).item(), _ce(x, good).item(), rtol=1e-6)
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        cf(x, ember.tensor([0, -1, 1, 1]))
    assert cf.stats()["cache_hits"] >= 1


# ---- a compiled training step fed a bad batch -------------------------------------------

class TextModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 8)
        self.norm = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, tokens):
        return self.fc(self.norm(self.emb(tokens).mean(1)))  # FWD-LINE


def _state(model, opt):
    """Every value a training step may change: parameters, buffers, grads, optimizer state."""
    out = {f"p{i}": p.detach().numpy().copy() for i, p in enumerate(model.parameters())}
    out.update({f"b{i}": b.numpy().copy() for i, b in enumerate(model.buffers())})
    out.update({f"g{i}": None if p.grad is None else p.grad.numpy().copy()
                for i, p in enumerate(model.parameters())})
    for i, s in enumerate(opt.state.values()):
        for k, v in s.items():
            out[f"s{i}{k}"] = v.numpy().copy() if isinstance(v, ember.Tensor) else v
    return out


def _assert_same_state(a, b, tol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None or b[k] is None:
            assert a[k] is None and b[k] is None, k
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adam"])
def test_training_step_with_a_bad_batch_changes_nothing(optimizer):
    def make():
        ember.manual_seed(0)
        model = TextModel()
        opt = (ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
               if optimizer == "sgd-momentum" else ember.optim.Adam(model.parameters(), lr=1e-2))

        def step(tokens, target):
            opt.zero_grad()
            loss = F.cross_entropy(model(tokens), target)  # STEP-LINE
            loss.backward()
            opt.step()
            return loss
        return model, opt, step

    rng = np.random.default_rng(0)
    good = [(ember.tensor(rng.integers(0, 12, (6, 4))), ember.tensor(rng.integers(0, 5, 6)))
            for _ in range(6)]
    bad_target = (good[0][0], ember.tensor([0, 1, 5, 2, 3, 4]))
    bad_token = (ember.tensor(np.where(np.arange(24).reshape(6, 4) == 13, 12, 1)), good[1][1])
    batches = good[:4] + [bad_target, bad_token] + good[4:]
    (em, eo, estep), (cm, co, cstep) = make(), make()
    cstep = ember.compile(cstep)
    for tokens, target in batches:
        before = _state(cm, co)
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # no fallback may hide a difference
            eager, compiled = _run(estep, tokens, target), _run(cstep, tokens, target)
        _same(eager, compiled,
              line=_line("# FWD-LINE" if target is good[1][1] else "# STEP-LINE"))
        after = _state(cm, co)
        if isinstance(compiled, Exception):
            # Nothing half-updated: no parameter or optimizer state changed. What eager
            # does before the failing line happens, as in eager and PyTorch: zero_grad()
            # set the gradients to None, and BatchNorm's forward updated its running
            # statistics when the bad value is the target.
            _assert_same_state({k: v for k, v in after.items() if k[0] in "ps"},
                               {k: v for k, v in before.items() if k[0] in "ps"})
            assert all(after[k] is None for k in after if k[0] == "g")
            if target is good[1][1]:   # the bad token: raised before BatchNorm
                _assert_same_state({k: v for k, v in after.items() if k[0] == "b"},
                                   {k: v for k, v in before.items() if k[0] == "b"})
        _assert_same_state(after, _state(em, eo), tol=2e-5)
    assert cstep.stats()["cache_hits"] >= 4
    # The checks run before any step of the plan, so before any in-place update.
    first = cstep.kernels()[0]
    assert first.ops == ["check_index"], [k.ops for k in cstep.kernels()]


def test_checks_survive_optimization_and_run_first():
    """DCE keeps a check nothing reads, and the plan runs it before any kernel that could
    update state in place: a failing check leaves the state as it was before the call, and
    the call then runs eagerly, changing what eager changes before its error (here ``w``),
    exactly once."""
    w = ember.zeros(5)

    def fn(x, t):
        w.add_(1.0)
        return F.nll_loss(x, t)  # W-LINE

    cf = ember.compile(fn)
    x = ember.randn(3, 5)
    for _ in range(3):
        cf(x, ember.tensor([0, 1, 2]))
    assert cf.stats()["cache_hits"] == 1
    np.testing.assert_array_equal(w.numpy(), np.full(5, 3.0))
    with pytest.raises(IndexError, match="Target 9 is out of bounds") as info:
        cf(x, ember.tensor([0, 9, 2]))
    assert _line("# W-LINE") in str(info.value)
    np.testing.assert_array_equal(w.numpy(), np.full(5, 4.0))   # as eager: w.add_ ran once
    cf(x, ember.tensor([0, 1, 2]))
    np.testing.assert_array_equal(w.numpy(), np.full(5, 5.0))
    ops = [k.ops for k in cf.kernels()]
    assert ops[0] == ["check_index"], ops


def test_call_ones_path_after_a_graph_break_is_not_replayed():
    """Calls 1 and 2 took different sizes at a graph break (rows chosen by value), so they
    were compared only up to it: call 1's path after it created Adam's state, and the
    first replay reaching call 1's size replayed that, resetting the state (nflows'
    spline flow: loss 4.73 against eager's 4.78). Call 1's path is no longer kept."""
    def run(compiled):
        ember.manual_seed(0)
        lin = nn.Linear(3, 1)
        opt = ember.optim.Adam(lin.parameters(), lr=0.1)
        for p in lin.parameters():
            p.grad = ember.zeros_like(p)   # (set before: no warm-up note to start over)

        def step(x):
            opt.zero_grad()
            loss = lin(x[x[:, 0] > 0]).pow(2).mean()
            loss.backward()
            opt.step()
            return loss

        f = ember.compile(step) if compiled else step
        rng = np.random.default_rng(0)
        losses = []
        for positives in (2, 3, 2, 3, 2):
            x = np.abs(rng.standard_normal((4, 3))).astype(np.float32)
            x[positives:, 0] *= -1
            losses.append(f(ember.tensor(x)).item())
        return losses, lin.weight.detach().numpy()

    (want, w_eager), (got, w_compiled) = run(False), run(True)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(w_compiled, w_eager, rtol=1e-5, atol=1e-7)
