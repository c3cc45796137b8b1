"""nn.RNN / LSTM / GRU and their cells against PyTorch: outputs, final states, and the
gradients of the input, the initial state and every parameter; plus compiled == eager."""
import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")


def _copy(torch_mod, ember_mod):
    sd = {k: ember.tensor(v.detach().numpy()) for k, v in torch_mod.state_dict().items()}
    ember_mod.load_state_dict(sd)
    assert list(dict(ember_mod.named_parameters())) == [n for n, _ in torch_mod.named_parameters()]


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [y for o in out for y in _flat(o)]
    return [out]


def _close(a, b, tol=1e-9):
    np.testing.assert_allclose(np.asarray(a.detach().numpy()), b.detach().numpy(),
                               rtol=tol, atol=tol)


def _check(cls_name, args, kwargs, x_shape, state_shapes=None, rng=None):
    """Run torch and ember (float64) on the same data and weights; compare everything."""
    rng = rng or np.random.default_rng(0)
    tm = getattr(torch.nn, cls_name)(*args, **kwargs).double()
    em = getattr(nn, cls_name)(*args, **kwargs).double()
    _copy(tm, em)
    x = rng.standard_normal(x_shape)
    states = [rng.standard_normal(s) for s in state_shapes or []]
    tx = torch.tensor(x, requires_grad=True)
    ex = ember.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    es = [ember.tensor(s, requires_grad=True) for s in states]
    targs = [tx] + ([tuple(ts) if len(ts) == 2 else ts[0]] if ts else [])
    eargs = [ex] + ([tuple(es) if len(es) == 2 else es[0]] if es else [])
    tout, eout = _flat(tm(*targs)), _flat(em(*eargs))
    assert len(tout) == len(eout)
    weights = [rng.standard_normal(tuple(o.shape)) for o in tout]
    for t, e in zip(tout, eout):
        assert tuple(e.shape) == tuple(t.shape)
        _close(e, t)
    sum((t * torch.tensor(w)).sum() for t, w in zip(tout, weights)).backward()
    sum((e * ember.tensor(w)).sum() for e, w in zip(eout, weights)).backward()
    _close(ex.grad, tx.grad)
    for e, t in zip(es, ts):
        _close(e.grad, t.grad)
    tparams = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        _close(p.grad, tparams[name].grad)


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent_matches_torch(cls_name, num_layers, bidirectional, batch_first):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    L, N, H_in, H = 4, 2, 3, 5
    x_shape = (N, L, H_in) if batch_first else (L, N, H_in)
    _check(cls_name, (H_in, H), kwargs, x_shape)


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
def test_recurrent_initial_state(cls_name):
    D = 2
    shapes = [(2 * D, 3, 5)] * (2 if cls_name == "LSTM" else 1)
    _check(cls_name, (4, 5), dict(num_layers=2, bidirectional=True), (6, 3, 4), shapes)


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
def test_recurrent_unbatched(cls_name):
    _check(cls_name, (3, 4), dict(num_layers=2), (5, 3))
    shapes = [(2, 4)] * (2 if cls_name == "LSTM" else 1)
    _check(cls_name, (3, 4), dict(num_layers=1, bidirectional=True), (5, 3), shapes)


def test_rnn_relu_no_bias_and_lstm_proj():
    _check("RNN", (3, 4), dict(nonlinearity="relu", bias=False, num_layers=2), (4, 2, 3))
    _check("LSTM", (3, 6), dict(proj_size=2, num_layers=2, bidirectional=True), (4, 2, 3),
           [(4, 2, 2), (4, 2, 6)])


@pytest.mark.parametrize("cls_name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(cls_name):
    n_states = 2 if cls_name == "LSTMCell" else 1
    _check(cls_name, (3, 4), {}, (2, 3))
    _check(cls_name, (3, 4), {}, (2, 3), [(2, 4)] * n_states)
    _check(cls_name, (3, 4), dict(bias=False), (3,), [(4,)] * n_states)


def test_rnn_cell_relu():
    _check("RNNCell", (3, 4), dict(nonlinearity="relu"), (2, 3), [(2, 4)])


def test_parameter_names_shapes_and_init():
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    ref = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    assert [(n, tuple(p.shape)) for n, p in lstm.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
    bound = 1 / np.sqrt(5)
    for p in lstm.parameters():
        assert np.abs(p.detach().numpy()).max() <= bound
    assert repr(lstm) == repr(ref)
    assert repr(nn.GRUCell(3, 4, bias=False)) == repr(torch.nn.GRUCell(3, 4, bias=False))


def test_errors_match_torch():
    rnn = nn.GRU(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. "
                                           "Expected 3, got 5"):
        rnn(ember.randn(2, 1, 5))
    with pytest.raises(RuntimeError, match="Expected hidden size \\(2, 1, 4\\), got \\[1, 1, 4\\]"):
        rnn(ember.randn(2, 1, 3), ember.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        rnn(ember.randn(2, 1, 3, 1))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D"):
        rnn(ember.randn(2, 3), ember.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=2.0)
    with pytest.raises(RuntimeError, match="Expected hidden\\[1\\] size \\(2, 1, 4\\), got"):
        nn.LSTM(3, 4, 2)(ember.randn(2, 1, 3), (ember.zeros(2, 1, 4), ember.zeros(2, 2, 4)))
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size: got 5"):
        nn.GRUCell(3, 4)(ember.randn(2, 3), ember.zeros(2, 5))
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D, got 3D"):
        nn.LSTMCell(3, 4)(ember.randn(1, 2, 3))


def test_dropout_between_layers_only_in_training():
    ember.manual_seed(0)
    rnn = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = ember.randn(3, 2, 3)
    rnn.eval()
    a, _ = rnn(x)
    b, _ = rnn(x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    rnn.train()
    c, _ = rnn(x)
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("grad", [False, True])
def test_compiled_equals_eager(cls_name, grad):
    ember.manual_seed(0)
    model = getattr(nn, cls_name)(3, 4, num_layers=2, bidirectional=True).eval()
    f = ember.compile(model)
    for i in range(4):
        x = ember.randn(5, 2, 3)
        if grad:
            e_out = _flat(model(x))
            c_out = _flat(f(x))
            for a, b in zip(c_out, e_out):
                np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(),
                                           rtol=1e-5, atol=1e-5)
            sum(o.sum() for o in c_out).backward()
            c_grads = [p.grad.numpy().copy() for p in model.parameters()]
            model.zero_grad()
            sum(o.sum() for o in e_out).backward()
            for p, g in zip(model.parameters(), c_grads):
                np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-5)
            model.zero_grad()
        else:
            with ember.no_grad():
                e_out, c_out = _flat(model(x)), _flat(f(x))
            for a, b in zip(c_out, e_out):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_cell_compiled_equals_eager():
    cell = nn.LSTMCell(3, 4)
    f = ember.compile(cell)
    with ember.no_grad():
        for _ in range(4):
            x, h, c = ember.randn(2, 3), ember.randn(2, 4), ember.randn(2, 4)
            for a, b in zip(f(x, (h, c)), cell(x, (h, c))):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
def test_float32_matches_torch(cls_name):
    rng = np.random.default_rng(1)
    tm = getattr(torch.nn, cls_name)(3, 8, num_layers=2, bidirectional=True)
    em = getattr(nn, cls_name)(3, 8, num_layers=2, bidirectional=True)
    _copy(tm, em)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    w = rng.standard_normal((6, 2, 16)).astype(np.float32)
    tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    to, eo = tm(tx)[0], em(ex)[0]
    assert eo.dtype == ember.float32
    (to * torch.tensor(w)).sum().backward()
    (eo * ember.tensor(w)).sum().backward()
    pairs = [(eo, to), (ex.grad, tx.grad)] + [(p.grad, q.grad) for p, q in
                                              zip(em.parameters(), tm.parameters())]
    for e, t in pairs:
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-5)
