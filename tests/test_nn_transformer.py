"""scaled_dot_product_attention, MultiheadAttention and the Transformer modules against
PyTorch (float64, dropout off): outputs and the gradients of inputs and of every
parameter; plus compiled == eager over several calls."""
import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)

# torch warns about mixing bool padding masks with float attention masks (which both
# libraries accept) and about its nested-tensor fast path, which ember has no need for.
pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched:UserWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")]


def _to_torch(v):
    return torch.tensor(v) if isinstance(v, np.ndarray) else v


def _to_ember(v):
    return ember.tensor(v) if isinstance(v, np.ndarray) else v


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [y for o in out for y in _flat(o)]
    return [] if out is None else [out]


def _close(e, t, tol=1e-9):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def _compare(tfn, efn, inputs, kwargs=None, tparams=None, eparams=None):
    """Call ``tfn(*inputs, **kwargs)`` and ``efn`` on the same float64 data; compare the
    outputs, the input gradients and (given named parameters) the parameter gradients.
    Float arrays in ``inputs`` require grad; everything in ``kwargs`` does not."""
    kwargs = kwargs or {}
    tin = [torch.tensor(a, requires_grad=True) for a in inputs]
    ein = [ember.tensor(a, requires_grad=True) for a in inputs]
    tout = _flat(tfn(*tin, **{k: _to_torch(v) for k, v in kwargs.items()}))
    eout = _flat(efn(*ein, **{k: _to_ember(v) for k, v in kwargs.items()}))
    assert len(tout) == len(eout)
    for e, t in zip(eout, tout):
        assert tuple(e.shape) == tuple(t.shape)
        _close(e, t)
    weights = [RNG.standard_normal(tuple(t.shape)) for t in tout]
    # Rows that are fully masked are NaN in both; keep them out of the backward.
    tw = [torch.tensor(np.where(np.isnan(t.detach().numpy()), 0, w)) for t, w in zip(tout, weights)]
    ew = [ember.tensor(w.numpy()) for w in tw]
    sum((t.nan_to_num() * w).sum() for t, w in zip(tout, tw)).backward()
    sum((e * w).sum() for e, w in zip(eout, ew)).backward()
    for e, t in zip(ein, tin):
        _close(e.grad, t.grad)
    if tparams is not None:
        tp = dict(tparams)
        names = [n for n, _ in eparams]
        assert names == list(tp)
        for name, p in eparams:
            _close(p.grad, tp[name].grad)


def _pair(cls_name, *args, **kwargs):
    """The same module in torch and ember, float64, eval mode, identical weights."""
    tm = getattr(torch.nn, cls_name)(*args, **kwargs).double().eval()
    em = getattr(nn, cls_name)(*args, **kwargs).double().eval()
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, em


def _causal_bool(L, S):
    return np.tril(np.ones((L, S), dtype=bool))


# ---- scaled_dot_product_attention -----------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "causal", "bool", "float", "scale", "broadcast"])
def test_sdpa_matches_torch(case):
    q = RNG.standard_normal((2, 3, 4, 8))
    k = RNG.standard_normal((2, 3, 6, 8))
    v = RNG.standard_normal((2, 3, 6, 5))
    kwargs = {}
    if case == "causal":
        kwargs = dict(is_causal=True)
    elif case == "bool":
        mask = RNG.random((4, 6)) > 0.3
        mask[:, 0] = True   # no fully masked row
        kwargs = dict(attn_mask=mask)
    elif case == "float":
        kwargs = dict(attn_mask=RNG.standard_normal((2, 3, 4, 6)))
    elif case == "scale":
        kwargs = dict(scale=0.3)
    elif case == "broadcast":
        kwargs = dict(attn_mask=RNG.standard_normal((1, 3, 1, 6)), scale=2.0)
    _compare(torch.nn.functional.scaled_dot_product_attention,
             F.scaled_dot_product_attention, [q, k, v], kwargs)


def test_sdpa_float_mask_gradient_and_gqa():
    q, k, v = (RNG.standard_normal((1, 4, 3, 4)), RNG.standard_normal((1, 2, 5, 4)),
               RNG.standard_normal((1, 2, 5, 4)))
    _compare(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
                 q, k, v, enable_gqa=True),
             lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
             [q, k, v])
    mask = RNG.standard_normal((3, 5))
    _compare(lambda q, k, v, m: torch.nn.functional.scaled_dot_product_attention(
                 q, k, v, attn_mask=m),
             lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
             [q[:, :2], k, v, mask])


@pytest.mark.parametrize("kind", ["bool", "float", "compiled"])
def test_sdpa_fully_masked_query_gives_zeros_as_torch(kind):
    """A query whose every key is masked (NaViT's padding) gives zeros and zero
    gradients as torch 2.13 does; a softmax over -inf alone made NaN rows and NaN
    gradients in every parameter."""
    q, k, v = (RNG.standard_normal((2, 2, 3, 4)) for _ in range(3))
    mask = np.array([[True, True, False], [True, False, False], [False, False, False]])
    if kind == "float":
        mask = np.where(mask, 0.0, -np.inf)
    _compare(torch.nn.functional.scaled_dot_product_attention,
             F.scaled_dot_product_attention, [q, k, v], dict(attn_mask=mask))
    if kind == "compiled":
        f = ember.compile(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v,
                                                                            attn_mask=m))
        for _ in range(3):
            out = f(*(ember.tensor(a) for a in (q, k, v)), ember.tensor(mask))
        assert not f.stats()["fallbacks"]
        assert np.array_equal(out.numpy()[:, :, 2], np.zeros((2, 2, 4)))
        expect = torch.nn.functional.scaled_dot_product_attention(
            *(torch.tensor(a) for a in (q, k, v)), attn_mask=torch.tensor(mask))
        np.testing.assert_allclose(out.numpy(), expect.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["plain", "padding", "mask", "per_head", "bias_kv"])
def test_multi_head_attention_forward_matches_torch(case):
    """F.multi_head_attention_forward, as CLIP's AttentionPool2d calls it (query: the
    pooled token, keys: every position; separate q/k/v projections)."""
    E, H, L, S, N = 8, 2, 1, 5, 3
    q, k = RNG.standard_normal((L, N, E)), RNG.standard_normal((S, N, E))
    ws = [RNG.standard_normal((E, E)) * 0.3 for _ in range(3)]
    ws.append(RNG.standard_normal((E // 2, E)) * 0.3)   # CLIP projects to output_dim
    bias = RNG.standard_normal(3 * E) * 0.1
    ob = RNG.standard_normal(E // 2) * 0.1
    kwargs, extra = {}, []
    if case == "padding":
        pad = np.zeros((N, S), bool)
        pad[1, -2:] = True
        kwargs = dict(key_padding_mask=pad)
    elif case == "mask":
        kwargs = dict(attn_mask=RNG.standard_normal((L, S)))
    elif case == "per_head":
        kwargs = dict(average_attn_weights=False)
    elif case == "bias_kv":
        extra = [RNG.standard_normal((1, 1, E)) for _ in range(2)]

    def call(F_, q, k, wq, wk, wv, wo, bias, ob, *bkv, **kw):
        bk, bv = bkv if bkv else (None, None)
        return F_.multi_head_attention_forward(
            q, k, k, E, H, None, bias, bk, bv, False, 0.0, wo, ob,
            use_separate_proj_weight=True, q_proj_weight=wq, k_proj_weight=wk,
            v_proj_weight=wv, **kw)

    _compare(lambda *a, **kw: call(torch.nn.functional, *a, **kw),
             lambda *a, **kw: call(F, *a, **kw), [q, k, *ws, bias, ob, *extra], kwargs)


def test_sdpa_errors():
    q = ember.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=ember.ones(3, 3), is_causal=True)
    with pytest.raises(TypeError, match="argument 'key'"):
        F.scaled_dot_product_attention(q, np.zeros((2, 3, 4)), q)


# ---- MultiheadAttention ---------------------------------------------------------------

MHA_CASES = {
    "plain": (dict(), dict()),
    "bool_mask": (dict(), dict(attn_mask=~_causal_bool(4, 4))),
    "float_mask_3d": (dict(), dict(attn_mask=RNG.standard_normal((2 * 2, 4, 4)))),
    "padding": (dict(), dict(key_padding_mask=np.array([[False] * 3 + [True],
                                                         [False] * 4]))),
    "both_masks_no_weights": (dict(), dict(attn_mask=~_causal_bool(4, 4),
                                           key_padding_mask=np.array([[False, True] * 2] * 2),
                                           need_weights=False)),
    "per_head_weights": (dict(bias=False), dict(average_attn_weights=False)),
    "batch_first": (dict(batch_first=True), dict()),
    "bias_kv_zero_attn": (dict(add_bias_kv=True, add_zero_attn=True),
                          dict(key_padding_mask=np.array([[False] * 3 + [True]] * 2))),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_self(case):
    ctor, kwargs = MHA_CASES[case]
    tm, em = _pair("MultiheadAttention", 8, 2, **ctor)
    x = RNG.standard_normal((4, 2, 8))
    _compare(lambda x: tm(x, x, x, **{k: _to_torch(v) for k, v in kwargs.items()}),
             lambda x: em(x, x, x, **{k: _to_ember(v) for k, v in kwargs.items()}),
             [x], tparams=tm.named_parameters(), eparams=list(em.named_parameters()))


def test_multihead_attention_cross_kdim_vdim_and_unbatched():
    tm, em = _pair("MultiheadAttention", 8, 4, kdim=6, vdim=5)
    q, k, v = (RNG.standard_normal((3, 2, 8)), RNG.standard_normal((5, 2, 6)),
               RNG.standard_normal((5, 2, 5)))
    _compare(tm, em, [q, k, v], tparams=tm.named_parameters(),
             eparams=list(em.named_parameters()))
    tm, em = _pair("MultiheadAttention", 8, 2)
    q, kv = RNG.standard_normal((3, 8)), RNG.standard_normal((5, 8))
    _compare(tm, em, [q, kv, kv], dict(key_padding_mask=np.array([False] * 4 + [True]),
                                       attn_mask=RNG.standard_normal((3, 5))))


def test_multihead_attention_names_and_errors():
    em = nn.MultiheadAttention(8, 2)
    tm = torch.nn.MultiheadAttention(8, 2)
    assert [(n, tuple(p.shape)) for n, p in em.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    assert repr(em) == repr(tm)
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(6, 4)
    x = ember.randn(4, 2, 8)
    with pytest.raises(RuntimeError, match="The shape of the 2D attn_mask is"):
        em(x, x, x, attn_mask=ember.zeros(3, 4))
    with pytest.raises(AssertionError, match="Expected key_padded_mask.shape\\[1\\] to be 4"):
        em(x, x, x, key_padding_mask=ember.zeros(2, 3).bool())
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        em(x, x, x, is_causal=True)


# ---- encoder and decoder layers, stacks, Transformer ----------------------------------

def _mask_kwargs(L, S, N, prefix_mask, prefix_kpm):
    kpm = np.zeros((N, S), dtype=bool)
    kpm[0, -1] = True
    return {prefix_mask: np.where(_causal_bool(L, S), 0.0, -np.inf), prefix_kpm: kpm}


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer(norm_first, activation):
    tm, em = _pair("TransformerEncoderLayer", 8, 2, dim_feedforward=16, dropout=0.0,
                   activation=activation, norm_first=norm_first)
    x = RNG.standard_normal((5, 3, 8))
    _compare(tm, em, [x], _mask_kwargs(5, 5, 3, "src_mask", "src_key_padding_mask"),
             tm.named_parameters(), list(em.named_parameters()))


def test_encoder_layer_batch_first_callable_activation():
    tm = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, torch.nn.functional.gelu,
                                          batch_first=True).double()
    em = nn.TransformerEncoderLayer(8, 2, 16, 0.0, F.gelu, batch_first=True).double()
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    _compare(tm, em, [RNG.standard_normal((3, 5, 8))], tparams=tm.named_parameters(),
             eparams=list(em.named_parameters()))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_layer(norm_first, activation):
    tm, em = _pair("TransformerDecoderLayer", 8, 2, dim_feedforward=16, dropout=0.0,
                   activation=activation, norm_first=norm_first)
    tgt, mem = RNG.standard_normal((4, 3, 8)), RNG.standard_normal((5, 3, 8))
    kwargs = _mask_kwargs(4, 4, 3, "tgt_mask", "tgt_key_padding_mask")
    kwargs["memory_key_padding_mask"] = np.array([[False] * 4 + [True]] * 3)
    _compare(tm, em, [tgt, mem], kwargs, tm.named_parameters(), list(em.named_parameters()))


def test_encoder_and_decoder_stacks():
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    tm = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8),
                                     enable_nested_tensor=False).double().eval()
    em = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                               norm=nn.LayerNorm(8)).double().eval()
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    # Deep copies: each layer has its own parameters.
    assert em.layers[0].linear1.weight is not em.layers[1].linear1.weight
    _compare(tm, em, [RNG.standard_normal((5, 2, 8))],
             dict(mask=np.where(_causal_bool(5, 5), 0.0, -np.inf)),
             tm.named_parameters(), list(em.named_parameters()))
    tm = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0),
                                     2).double().eval()
    em = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2).double()
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    _compare(tm, em.eval(), [RNG.standard_normal((3, 2, 8)), RNG.standard_normal((5, 2, 8))],
             tparams=tm.named_parameters(), eparams=list(em.named_parameters()))


@pytest.mark.parametrize("batch_first,norm_first", [(False, False), (True, True)])
def test_transformer_end_to_end(batch_first, norm_first):
    tm, em = _pair("Transformer", d_model=8, nhead=2, num_encoder_layers=2,
                   num_decoder_layers=1, dim_feedforward=16, batch_first=batch_first,
                   norm_first=norm_first)
    S, T, N = 5, 4, 2
    src = RNG.standard_normal((N, S, 8) if batch_first else (S, N, 8))
    tgt = RNG.standard_normal((N, T, 8) if batch_first else (T, N, 8))
    kwargs = dict(tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(T).double()
                  .numpy(),
                  src_key_padding_mask=np.array([[False] * 4 + [True], [False] * 5]),
                  memory_key_padding_mask=np.array([[False] * 4 + [True], [False] * 5]))
    _compare(tm, em, [src, tgt], kwargs, tm.named_parameters(), list(em.named_parameters()))


def test_generate_square_subsequent_mask_and_errors():
    np.testing.assert_array_equal(nn.Transformer.generate_square_subsequent_mask(4).numpy(),
                                  torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    m = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                       dim_feedforward=8)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        m(ember.randn(3, 2, 8), ember.randn(3, 1, 8))
    with pytest.raises(RuntimeError, match="must be equal to d_model"):
        m(ember.randn(3, 2, 6), ember.randn(3, 2, 6))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")


# ---- compiled == eager ----------------------------------------------------------------

def _modules():
    ember.manual_seed(0)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    mha = nn.MultiheadAttention(8, 2)
    enc = nn.TransformerEncoderLayer(8, 2, 16, norm_first=True, activation="gelu")
    dec = nn.TransformerDecoderLayer(8, 2, 16)
    full = nn.Transformer(8, 2, 1, 1, 16)
    return {
        "mha": (mha, lambda m, x, y: m(x, y, y, attn_mask=mask[:, :3].bool())),
        "encoder_layer": (enc, lambda m, x, y: m(x, src_mask=mask)),
        "decoder_layer": (dec, lambda m, x, y: m(x, y, tgt_mask=mask)),
        "transformer": (full, lambda m, x, y: m(y, x, tgt_mask=mask)),
    }


@pytest.mark.parametrize("name", ["mha", "encoder_layer", "decoder_layer", "transformer"])
@pytest.mark.parametrize("grad", [False, True])
def test_compiled_equals_eager(name, grad):
    model, call = _modules()[name]
    model.eval()
    f = ember.compile(lambda x, y: _flat(call(model, x, y)))
    for _ in range(4):
        x, y = ember.randn(4, 2, 8), ember.randn(3, 2, 8)
        if not grad:
            with ember.no_grad():
                c_out, e_out = f(x, y), _flat(call(model, x, y))
            for a, b in zip(c_out, e_out):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
            continue
        c_out = f(x, y)
        sum(o.sum() for o in c_out).backward()
        c_grads = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        e_out = _flat(call(model, x, y))
        sum(o.sum() for o in e_out).backward()
        for a, b in zip(c_out, e_out):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(),
                                       rtol=1e-5, atol=1e-5)
        for p, g in zip(model.parameters(), c_grads):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-5)
        model.zero_grad()


@pytest.mark.parametrize("cls_name", ["TransformerEncoderLayer", "TransformerDecoderLayer"])
def test_float32_layers_match_torch(cls_name):
    tm = getattr(torch.nn, cls_name)(8, 2, 16, dropout=0.0).eval()
    em = getattr(nn, cls_name)(8, 2, 16, dropout=0.0).eval()
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = RNG.standard_normal((5, 2, 8)).astype(np.float32)
    w = RNG.standard_normal((5, 2, 8)).astype(np.float32)
    tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    extra = 1 if cls_name == "TransformerDecoderLayer" else 0
    to, eo = tm(*[tx] * (1 + extra)), em(*[ex] * (1 + extra))
    assert eo.dtype == ember.float32
    (to * torch.tensor(w)).sum().backward()
    (eo * ember.tensor(w)).sum().backward()
    pairs = [(eo, to), (ex.grad, tx.grad)] + [(p.grad, q.grad) for p, q in
                                              zip(em.parameters(), tm.parameters())]
    for e, t in pairs:
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-5)


def _softmax_kernels(report):
    return [k for k in report.kernels if "amax" in k.ops and "exp" in k.ops]


@pytest.mark.parametrize("form", ["sdpa", "mingpt"])
def test_attention_softmax_with_scale_and_mask_is_one_kernel(form):
    # Issue 14: attention compiles to matmuls around one fused kernel holding the scale,
    # the mask, and the whole softmax (max, exp, sum, division).
    import math
    q, k, v = (ember.randn(2, 4, 16, 8) for _ in range(3))
    bias = ember.tril(ember.ones(16, 16)).view(1, 1, 16, 16)

    def mingpt(q, k, v):
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(bias[:, :, :16, :16] == 0, float("-inf"))
        return F.softmax(att, dim=-1) @ v

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    fn = sdpa if form == "sdpa" else mingpt
    report = ember.explain(fn, q, k, v)
    fused = _softmax_kernels(report)
    assert len(fused) == 1, [(x.backend, x.ops) for x in report.kernels]
    assert fused[0].backend == "llvm"
    assert {"mul", "where", "amax", "sub", "exp", "sum", "div"} <= set(fused[0].ops)
    assert [x.backend for x in report.kernels].count("extern") == 2   # the two matmuls
    compiled = ember.compile(fn)
    for _ in range(3):
        out = compiled(q, k, v)
    np.testing.assert_allclose(out.numpy(), fn(q, k, v).numpy(), rtol=1e-5, atol=1e-6)
