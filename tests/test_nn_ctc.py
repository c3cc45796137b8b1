"""F.ctc_loss / nn.CTCLoss against torch, a brute-force NumPy enumeration of alignments,
and a compiled training step."""
import itertools

import numpy as np
import pytest

import ember
from conftest import compiled_steps_agree
import ember.nn as nn
import ember.nn.functional as F


def _np(t):
    return t.detach().numpy()


def _brute_force(lp, target, blank=0):
    """-log of the summed probability of every path collapsing to ``target``."""
    steps, classes = lp.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=steps):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == list(target):
            total += np.exp(sum(lp[t, c] for t, c in enumerate(path)))
    return -np.log(total)


@pytest.mark.parametrize("target", [[1], [1, 2], [2, 2], [], [1, 2, 1]])
def test_ctc_brute_force(target):
    rs = np.random.RandomState(len(target))
    logits = rs.randn(5, 3)
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = _brute_force(lp, target)
    got = F.ctc_loss(ember.tensor(lp[:, None]), ember.tensor([target + [1] * (3 - len(target))]),
                     [5], [len(target)], reduction="none")
    np.testing.assert_allclose(_np(got)[0], want, rtol=1e-9)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("form", ["padded", "concatenated"])
@pytest.mark.parametrize("blank", [0, 4])
def test_ctc_matches_torch(reduction, form, blank):
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(0)
    steps, batch, classes = 12, 4, 5
    x = rs.randn(steps, batch, classes).astype(np.float32)
    labels = [c for c in range(classes) if c != blank]
    tg = rs.choice(labels, (batch, 4))
    tg[1, 1] = tg[1, 0]                                   # a repeated label
    il, tl = [12, 10, 7, 12], [4, 2, 3, 0]
    if form == "padded":
        targets = tg
    else:
        targets = np.concatenate([tg[n, :tl[n]] for n in range(batch)])
    tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    t = torch.nn.functional.ctc_loss(tx.log_softmax(2), torch.tensor(targets), torch.tensor(il),
                                     torch.tensor(tl), blank, reduction)
    e = nn.CTCLoss(blank, reduction)(ex.log_softmax(2), ember.tensor(targets), ember.tensor(il),
                                     ember.tensor(tl))
    np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5, atol=1e-5)
    t.sum().backward()
    e.sum().backward()
    np.testing.assert_allclose(_np(ex.grad), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_ctc_impossible_and_zero_infinity():
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(1)
    x = rs.randn(6, 2, 4).astype(np.float32)
    tg, il, tl = [[1, 1, 2], [1, 2, 3]], [3, 6], [3, 3]   # sample 0 needs 4 steps, has 3
    for zero_infinity in (False, True):
        tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
        t = torch.nn.functional.ctc_loss(tx.log_softmax(2), torch.tensor(tg), torch.tensor(il),
                                         torch.tensor(tl), reduction="none",
                                         zero_infinity=zero_infinity)
        e = F.ctc_loss(ex.log_softmax(2), ember.tensor(tg), ember.tensor(il), ember.tensor(tl),
                       reduction="none", zero_infinity=zero_infinity)
        np.testing.assert_allclose(_np(e), t.detach().numpy(), rtol=1e-5)
        if zero_infinity:
            t.sum().backward()
            e.sum().backward()
            np.testing.assert_allclose(_np(ex.grad), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert np.isinf(_np(F.ctc_loss(ember.tensor(x).log_softmax(2), ember.tensor(tg), il, tl,
                                   reduction="none"))[0])
    with pytest.raises(RuntimeError, match="blank must be in label range"):
        F.ctc_loss(ember.tensor(x), ember.tensor(tg), il, tl, blank=4)
    with pytest.raises(RuntimeError, match="at most 6"):
        F.ctc_loss(ember.tensor(x), ember.tensor(tg), [7, 6], tl)


def test_ctc_compiled_training_step_equals_eager():
    feats = ember.randn(10, 3, 6)
    targets = ember.tensor([[1, 2, 3], [2, 2, 0], [4, 1, 0]])
    il, tl = ember.tensor([10, 9, 8]), ember.tensor([3, 2, 2])
    ctc = nn.CTCLoss(zero_infinity=True)
    compiled_steps_agree(lambda: nn.Linear(6, 5),
                         lambda m, f, t, a, b: ctc(m(f).log_softmax(2), t, a, b),
                         (feats, targets, il, tl))