"""PackedSequence, pack/pad functions and the RNNs on packed input, against torch and NumPy."""
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.nn.utils.rnn import (PackedSequence, pack_padded_sequence, pack_sequence,
                                pad_packed_sequence, unpack_sequence)


def test_pack_layout_numpy():
    x = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)         # [T=3, B=4]
    p = pack_padded_sequence(ember.tensor(x), [1, 3, 2, 3], enforce_sorted=False)
    assert p.batch_sizes.tolist() == [4, 3, 2]
    assert p.sorted_indices.tolist() == [1, 3, 2, 0]
    assert p.unsorted_indices.tolist() == [3, 0, 2, 1]
    want = [x[0, 1], x[0, 3], x[0, 2], x[0, 0], x[1, 1], x[1, 3], x[1, 2], x[2, 1],
            x[2, 3]]
    np.testing.assert_array_equal(p.data.detach().numpy(), want)
    padded, lengths = pad_packed_sequence(p, padding_value=-1.0)
    assert lengths.tolist() == [1, 3, 2, 3]
    ref = np.where(np.arange(3)[:, None] < np.array([1, 3, 2, 3]), x, -1)
    np.testing.assert_array_equal(padded.detach().numpy(), ref)


def test_pack_errors():
    x = ember.zeros(3, 2)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        pack_padded_sequence(x, [1, 3])
    with pytest.raises(RuntimeError, match="batch_size"):
        pack_padded_sequence(x, [3])
    with pytest.raises(RuntimeError, match="greater than 0"):
        pack_padded_sequence(x, [3, 0])
    p = pack_padded_sequence(x, [3, 2])
    with pytest.raises(ValueError, match="total_length"):
        pad_packed_sequence(p, total_length=2)
    assert pad_packed_sequence(p, total_length=5)[0].shape == (5, 2)


def test_pack_gradients_roundtrip():
    x = ember.randn(2, 4, 3, requires_grad=True)
    p = pack_padded_sequence(x, [2, 4], batch_first=True, enforce_sorted=False)
    (p.data * ember.arange(p.data.shape[0]).float().reshape(-1, 1)).sum().backward()
    g = x.grad.numpy()
    assert (g[0, 2:] == 0).all() and (g[0, :2] > 0).all() and (g[1] >= 0).all()
    seqs = [ember.randn(n, 2) for n in (2, 5, 1)]
    back = unpack_sequence(pack_sequence(seqs, enforce_sorted=False))
    for a, b in zip(seqs, back):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def _copy(tm, em):
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


@pytest.mark.parametrize("kind,kw", [("LSTM", {}), ("GRU", {"bidirectional": True}),
                                     ("RNN", {"num_layers": 2}),
                                     ("LSTM", {"bidirectional": True, "num_layers": 2}),
                                     ("LSTM", {"proj_size": 3})])
@pytest.mark.parametrize("sort", [True, False])
def test_rnn_packed_matches_torch(kind, kw, sort):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as trnn
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(4, 5, batch_first=True, **kw)
    em = getattr(nn, kind)(4, 5, batch_first=True, **kw)
    _copy(tm, em)
    lengths = [5, 3, 3, 1] if sort else [2, 5, 1, 4]
    x = np.random.RandomState(1).randn(4, 5, 4).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ex = ember.tensor(x, requires_grad=True)
    tp = trnn.pack_padded_sequence(tx, lengths, batch_first=True, enforce_sorted=sort)
    ep = pack_padded_sequence(ex, lengths, batch_first=True, enforce_sorted=sort)
    tout, th = tm(tp)
    eout, eh = em(ep)
    assert isinstance(eout, PackedSequence)
    assert eout.batch_sizes.tolist() == tout.batch_sizes.tolist()
    np.testing.assert_allclose(eout.data.detach().numpy(), tout.data.detach().numpy(), atol=1e-5)
    th = th if isinstance(th, tuple) else (th,)
    eh = eh if isinstance(eh, tuple) else (eh,)
    for a, b in zip(eh, th):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-5)
    tpad, tl = trnn.pad_packed_sequence(tout, batch_first=True)
    epad, el = pad_packed_sequence(eout, batch_first=True)
    assert el.tolist() == tl.tolist()
    np.testing.assert_allclose(epad.detach().numpy(), tpad.detach().numpy(), atol=1e-5)
    w = np.random.RandomState(2).randn(*tpad.shape).astype(np.float32)
    ((tpad * torch.tensor(w)).sum() + sum((h ** 2).sum() for h in th)).backward()
    ((epad * ember.tensor(w)).sum() + sum((h ** 2).sum() for h in eh)).backward()
    np.testing.assert_allclose(ex.grad.detach().numpy(), tx.grad.numpy(), atol=1e-4)
    for (name, tp_), (_, ep_) in zip(tm.named_parameters(), em.named_parameters()):
        np.testing.assert_allclose(ep_.grad.detach().numpy(), tp_.grad.numpy(), atol=1e-4, err_msg=name)


def test_rnn_packed_hx_original_order():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as trnn
    tm = torch.nn.GRU(3, 4)
    em = nn.GRU(3, 4)
    _copy(tm, em)
    x = np.random.RandomState(3).randn(4, 3, 3).astype(np.float32)
    h0 = np.random.RandomState(4).randn(1, 3, 4).astype(np.float32)
    tout, th = tm(trnn.pack_padded_sequence(torch.tensor(x), [2, 4, 3], enforce_sorted=False),
                  torch.tensor(h0))
    eout, eh = em(pack_padded_sequence(ember.tensor(x), [2, 4, 3], enforce_sorted=False),
                  ember.tensor(h0))
    np.testing.assert_allclose(eh.detach().numpy(), th.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(eout.data.detach().numpy(), tout.data.detach().numpy(), atol=1e-5)


def test_rnn_packed_final_state_numpy():
    """Without torch: the packed run's final state equals each sequence run alone."""
    em = nn.RNN(2, 3)
    x = ember.randn(4, 3, 2)
    lengths = [4, 1, 3]
    _, h = em(pack_padded_sequence(x, lengths, enforce_sorted=False))
    for b, n in enumerate(lengths):
        _, hb = em(x[:n, b:b + 1])
        np.testing.assert_allclose(h[:, b].detach().numpy(), hb[:, 0].detach().numpy(), atol=1e-6)


def test_rnn_packed_compiled_step_equals_eager():
    em = nn.LSTM(3, 4, batch_first=True)
    x = ember.randn(3, 5, 3)

    def step(x):
        out, (h, c) = em(pack_padded_sequence(x, [5, 2, 4], batch_first=True,
                                              enforce_sorted=False))
        return (out.data ** 2).sum() + h.sum()

    eager = step(x)
    eager.backward()
    g_eager = [p.grad.numpy().copy() for p in em.parameters()]
    em.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # an eager fallback would be a warning
        loss = ember.compile(step)(x)
    loss.backward()
    np.testing.assert_allclose(loss.item(), eager.item(), rtol=1e-5)
    for a, p in zip(g_eager, em.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), a, rtol=1e-4, atol=1e-6)


def test_packed_sequence_argument_to_compiled_function():
    """A PackedSequence passed in: new lengths must not reuse the old layout."""
    lstm = nn.LSTM(3, 4)
    x = ember.randn(5, 3, 3)

    def f(p):
        out, (h, c) = lstm(p)
        return pad_packed_sequence(out)[0].sum() + h.sum()
    compiled = ember.compile(f)
    for lengths in ([5, 3, 2], [5, 3, 2], [4, 4, 1], [5, 3, 2]):
        p = pack_padded_sequence(x, lengths)
        np.testing.assert_allclose(compiled(p).item(), f(p).item(), rtol=1e-6)


def test_packed_sequence_methods():
    p = pack_sequence([ember.ones(3, 2), ember.ones(1, 2)])
    assert p.sorted_indices is None and p.unsorted_indices is None
    d = p.double()
    assert isinstance(d, PackedSequence) and d.data.dtype == ember.float64
    assert d.batch_sizes.tolist() == [2, 1, 1] and not d.is_cuda
    again = PackedSequence(p.data, p.batch_sizes)
    assert pad_packed_sequence(again)[1].tolist() == [3, 1]
