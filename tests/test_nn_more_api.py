"""torch.nn names added in ember/nn/lazy.py, pooling_more.py, sync_batchnorm.py,
adaptive.py, _functional/more_api.py and nn/utils/{fusion,init,memory_format}.py, against
torch: values, gradients, state_dict keys, and compiled calls against eager ones."""
import copy
import math
import pickle

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from tests.conftest import assert_close, check_against_torch

torch = pytest.importorskip("torch")
TF = torch.nn.functional
RNG = np.random.default_rng(7)


def _a(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _load_from_torch(me, mt):
    me.load_state_dict({k: v.detach().numpy() for k, v in mt.state_dict().items()})


def _grads_match(me, mt, rtol=1e-4, atol=1e-5):
    pe, pt = dict(me.named_parameters()), dict(mt.named_parameters())
    assert sorted(pe) == sorted(pt)
    for name, p in pt.items():
        assert_close(pe[name].grad, p.grad, rtol, atol)


# ---- lazy modules ------------------------------------------------------------------------

LAZY = {
    "LazyLinear": (lambda nn: nn.LazyLinear(4), (3, 5)),
    "LazyLinear_nobias": (lambda nn: nn.LazyLinear(4, bias=False), (2, 3, 6)),
    "LazyConv1d": (lambda nn: nn.LazyConv1d(4, 3, padding=1), (2, 3, 7)),
    "LazyConv2d": (lambda nn: nn.LazyConv2d(4, 3, stride=2, groups=2), (2, 6, 7, 7)),
    "LazyConv3d": (lambda nn: nn.LazyConv3d(2, 2), (1, 3, 4, 4, 4)),
    "LazyConvTranspose1d": (lambda nn: nn.LazyConvTranspose1d(3, 3, stride=2), (2, 4, 5)),
    "LazyConvTranspose2d": (lambda nn: nn.LazyConvTranspose2d(3, 2, stride=2, bias=False),
                            (1, 4, 3, 3)),
    "LazyConvTranspose3d": (lambda nn: nn.LazyConvTranspose3d(2, 2), (1, 3, 2, 3, 2)),
    "LazyBatchNorm1d": (lambda nn: nn.LazyBatchNorm1d(), (6, 3)),
    "LazyBatchNorm2d": (lambda nn: nn.LazyBatchNorm2d(momentum=None), (4, 3, 3, 3)),
    "LazyBatchNorm3d": (lambda nn: nn.LazyBatchNorm3d(affine=False), (2, 3, 2, 2, 2)),
    "LazyInstanceNorm1d": (lambda nn: nn.LazyInstanceNorm1d(), (2, 3, 6)),
    "LazyInstanceNorm2d": (lambda nn: nn.LazyInstanceNorm2d(affine=False), (2, 3, 4, 4)),
    "LazyInstanceNorm3d": (lambda nn: nn.LazyInstanceNorm3d(track_running_stats=False),
                           (2, 3, 2, 3, 3)),
}


@pytest.mark.parametrize("name", LAZY)
def test_lazy_module_materializes_as_torch(name):
    make, shape = LAZY[name]
    me, mt = make(ember.nn), make(torch.nn)
    # (ember's InstanceNorm repr has no "bias=" entry, an older difference)
    assert repr(me) == repr(mt).replace(", bias=True, track", ", track").replace(
        ", bias=False, track", ", track") if "Instance" in name else repr(mt)
    assert list(me.state_dict()) == list(mt.state_dict())
    assert [repr(v) for v in me.state_dict().values()] == \
        [repr(v) for v in mt.state_dict().values()]
    assert me.has_uninitialized_params() == mt.has_uninitialized_params()
    becomes = mt.cls_to_become.__name__
    x = _a(*shape)
    out_e, out_t = me(ember.tensor(x)), mt(torch.tensor(x))
    assert type(me).__name__ == type(mt).__name__ == becomes
    assert type(me) is type(me).__mro__[0] and not isinstance(me, ember.nn.lazy.LazyModuleMixin)
    assert list(me.state_dict()) == list(mt.state_dict())
    for k, v in mt.state_dict().items():
        assert tuple(me.state_dict()[k].shape) == tuple(v.shape), k
        assert type(me.state_dict(keep_vars=True)[k]).__name__ in ("Parameter", "Tensor")
    assert out_e.shape == tuple(out_t.shape)
    # now with torch's values: outputs, gradients and running statistics agree
    _load_from_torch(me, mt)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    g = _a(*out_t.shape)
    oe, ot = me(xe), mt(xt)
    assert_close(oe, ot, 1e-4, 1e-5)
    (oe * ember.tensor(g)).sum().backward()
    (ot * torch.tensor(g)).sum().backward()
    assert_close(xe.grad, xt.grad, 1e-4, 1e-5)
    _grads_match(me, mt)
    for k, v in mt.state_dict().items():
        assert_close(me.state_dict()[k], v, 1e-4, 1e-5)


def test_lazy_initialization_follows_the_ordinary_layer():
    m = ember.nn.LazyLinear(50)
    m(ember.randn(3, 16))
    bound = 1 / math.sqrt(16)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and w.std() > bound / 3
    c = ember.nn.LazyConv2d(8, 3)
    c(ember.randn(1, 4, 5, 5))
    assert np.abs(c.weight.detach().numpy()).max() <= 1 / math.sqrt(36)
    bn = ember.nn.LazyBatchNorm2d()
    bn.eval()(ember.randn(2, 5, 3, 3))
    assert_close(bn.weight, np.ones(5, np.float32))
    assert_close(bn.running_var, np.ones(5, np.float32))
    assert int(bn.num_batches_tracked) == 0


def test_lazy_uninitialized_errors_and_state_dict_loading():
    m = ember.nn.LazyLinear(3)
    with pytest.raises(RuntimeError, match="Can't access the shape"):
        m.weight.shape
    # an initialized state_dict materializes the parameters; the class changes at forward
    src = torch.nn.Linear(4, 3)
    _load_from_torch(m, src)
    assert type(m) is ember.nn.LazyLinear and m.in_features == 0
    assert tuple(m.weight.shape) == (3, 4)
    x = _a(2, 4)
    assert_close(m(ember.tensor(x)), src(torch.tensor(x)), 1e-5, 1e-6)
    assert type(m) is ember.nn.Linear and m.in_features == 4
    # loading a lazy module's state into an initialized one fails as in torch
    with pytest.raises(RuntimeError, match="Can't access the shape"):
        ember.nn.Linear(4, 3).load_state_dict(ember.nn.LazyLinear(3).state_dict())


def test_lazy_optimizer_made_before_the_dry_run_steps_the_same_parameters():
    m = ember.nn.Sequential(ember.nn.LazyLinear(4), ember.nn.ReLU(), ember.nn.LazyLinear(2))
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    x = ember.randn(5, 3)
    m(x)
    params = list(m.parameters())
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in params]
    before = [p.detach().clone() for p in params]
    m(x).pow(2).sum().backward()
    opt.step()
    for p, b in zip(params, before):
        assert_close(p, b - 0.1 * p.grad.numpy())


def test_lazy_module_dtype_copy_and_pickle():
    m = ember.nn.LazyLinear(3).double()
    assert isinstance(m.weight, ember.nn.UninitializedParameter)
    m(ember.randn(2, 4, dtype=ember.float64))
    assert m.weight.dtype == ember.float64
    lazy = ember.nn.LazyConv1d(2, 3)
    for c in (copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert repr(c.weight) == "<UninitializedParameter>"
        c(ember.randn(1, 5, 8))
        assert type(c) is ember.nn.Conv1d and tuple(c.weight.shape) == (2, 5, 3)
    assert type(lazy) is ember.nn.LazyConv1d and lazy.has_uninitialized_params()
    lazy(ember.randn(1, 2, 8))
    assert tuple(lazy.weight.shape) == (2, 2, 3)


def test_uninitialized_tensors_materialize():
    p = ember.nn.UninitializedParameter(dtype=ember.float64)
    assert repr(p) == "<UninitializedParameter>" and p.requires_grad
    p.materialize((2, 3))
    assert type(p) is ember.nn.Parameter and p.shape == (2, 3) and p.dtype == ember.float64
    b = ember.nn.UninitializedBuffer(persistent=False)
    m = ember.nn.Module()
    m.b = b
    assert list(m.state_dict()) == [] and [n for n, _ in m.named_buffers()] == ["b"]
    b.materialize((4,))
    assert type(b) is ember.Tensor and b.shape == (4,) and not b.requires_grad


def test_lazy_compiled_after_the_dry_run_equals_eager():
    def make(nn):
        return nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.ReLU(),
                             nn.Flatten(), nn.LazyLinear(5))
    me, mt = make(ember.nn), make(torch.nn)
    x = _a(2, 3, 6, 6)
    mt(torch.tensor(x))
    me(ember.tensor(x))
    _load_from_torch(me, mt)
    me.eval(), mt.eval()
    compiled = ember.compile(me)
    for _ in range(3):
        out = compiled(ember.tensor(x))
    assert_close(out, me(ember.tensor(x)))
    assert_close(out, mt(torch.tensor(x)), 1e-4, 1e-5)


def test_lazy_compiled_before_the_dry_run_initializes_eagerly():
    """The first compiled call reaches uninitialized parameters: it runs eagerly (which
    initializes them, as torch.compile does) and says so; the next calls compile and
    equal eager, and a training step's optimizer holds the same parameters."""
    ember.manual_seed(0)
    m = ember.nn.Sequential(ember.nn.LazyLinear(4), ember.nn.ReLU(), ember.nn.LazyLinear(2))
    opt = ember.optim.SGD(m.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = m(x).square().mean()
        loss.backward()
        opt.step()
        return loss

    compiled = ember.compile(step)
    x = ember.tensor(_a(3, 5))
    compiled(x)
    stats = compiled.stats()
    assert stats["eager_calls"] == 1 and stats["compiles"] == 0
    assert any("uninitialized (lazy)" in n for n in stats["notes"])
    assert type(m[0]) is ember.nn.Linear and m[0].weight.shape == (4, 5)
    want = []   # eager steps of a copy
    twin = copy.deepcopy(m)
    topt = ember.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(4):
        got = float(compiled(x))
        topt.zero_grad()
        loss = twin(x).square().mean()
        loss.backward()
        topt.step()
        want.append(float(loss))
        assert abs(got - want[-1]) <= 1e-6 * max(1.0, abs(got))
    assert compiled.stats()["compiles"] == 1


# ---- Buffer ------------------------------------------------------------------------------

def test_buffer_registers_as_torch():
    for nn, lib in ((ember.nn, ember), (torch.nn, torch)):
        m = nn.Module()
        t = lib.zeros(2)
        m.x = nn.Buffer(t, persistent=False)
        m.y = nn.Buffer(lib.ones(3))
        assert [n for n, _ in m.named_buffers()] == ["x", "y"]
        assert list(m.state_dict()) == ["y"]
        m.x = lib.ones(2)          # an existing buffer stays non-persistent
        assert list(m.state_dict()) == ["y"]
        m.z = 3
        with pytest.raises(KeyError, match="already exists"):
            m.z = nn.Buffer(t)
        m.w = nn.Parameter(lib.zeros(1))
        with pytest.raises(TypeError):
            m.w = nn.Buffer(t)
        b = nn.Buffer(lib.ones(2, requires_grad=True))
        assert b.requires_grad and not b.grad_fn
        t.add_(1)                  # same memory as the tensor it was made from
        assert float(m.x.sum()) == 2.0 and float(nn.Buffer(t).sum()) == 2.0
    m = ember.nn.Module()
    m.buf = ember.nn.Buffer(ember.arange(3.0))
    m2 = pickle.loads(pickle.dumps(m))
    assert_close(m2.buf, np.arange(3.0, dtype=np.float32))
    assert list(m2.state_dict()) == ["buf"]


# ---- SyncBatchNorm -----------------------------------------------------------------------

def test_sync_batchnorm_is_local_batchnorm_as_torch():
    for shape in ((6, 3), (4, 3, 5), (2, 3, 4, 4)):
        me, mt = ember.nn.SyncBatchNorm(3, momentum=0.2), torch.nn.SyncBatchNorm(3, momentum=0.2)
        assert repr(me) == repr(mt)
        assert list(me.state_dict()) == list(mt.state_dict())
        with torch.no_grad():
            mt.weight.copy_(torch.tensor(_a(3))), mt.bias.copy_(torch.tensor(_a(3)))
        _load_from_torch(me, mt)
        check_against_torch(me, mt, [_a(*shape)], rtol=1e-4, atol=1e-5)
        for k, v in mt.state_dict().items():
            assert_close(me.state_dict()[k], v, 1e-5, 1e-6)
        me.eval(), mt.eval()
        check_against_torch(me, mt, [_a(*shape)], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2D"):
        ember.nn.SyncBatchNorm(3)(ember.randn(3))


def test_sync_batchnorm_refuses_to_train_unsynchronized(monkeypatch):
    m = ember.nn.SyncBatchNorm(3)
    monkeypatch.setattr(ember.nn.SyncBatchNorm, "_world_size", lambda self: 2)
    with pytest.raises(NotImplementedError, match="across processes"):
        m(ember.randn(4, 3))
    m.eval()(ember.randn(4, 3))   # running statistics need no synchronization


def test_convert_sync_batchnorm_keeps_state():
    def make(nn):
        return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3),
                             nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.InstanceNorm2d(3)))
    me, mt = make(ember.nn), make(torch.nn)
    me[1](ember.randn(4, 3, 2, 2))
    mt[1](torch.randn(4, 3, 2, 2))
    me.eval(), mt.eval()
    bn_weight, mean = me[1].weight, me[1].running_mean
    ce = ember.nn.SyncBatchNorm.convert_sync_batchnorm(me)
    ct = torch.nn.SyncBatchNorm.convert_sync_batchnorm(mt)
    assert ce is me and repr(ce[1]) == repr(ct[1]) and repr(ce[2][0]) == repr(ct[2][0])
    assert type(ce[2][1]) is ember.nn.InstanceNorm2d
    assert ce[1].weight is bn_weight and ce[1].running_mean is mean and not ce[1].training
    assert int(ce[1].num_batches_tracked) == 1
    assert list(ce.state_dict()) == list(ct.state_dict())
    single = ember.nn.SyncBatchNorm.convert_sync_batchnorm(ember.nn.BatchNorm1d(2))
    assert type(single) is ember.nn.SyncBatchNorm


# ---- LPPool ------------------------------------------------------------------------------

LP = {
    "1d_p2": (lambda nn: nn.LPPool1d(2, 3, 2), (2, 3, 9)),
    "1d_p3_ceil": (lambda nn: nn.LPPool1d(3, 2, ceil_mode=True), (2, 3, 7)),
    "2d_p2": (lambda nn: nn.LPPool2d(2, 3, 2), (2, 3, 7, 7)),
    "2d_p1_rect": (lambda nn: nn.LPPool2d(1, (2, 3), (1, 2)), (1, 2, 5, 7)),
    "2d_p3_odd": (lambda nn: nn.LPPool2d(3, 2), (2, 2, 4, 6)),
    "2d_inf": (lambda nn: nn.LPPool2d(float("inf"), 2), (1, 2, 4, 4)),
    "3d_p2": (lambda nn: nn.LPPool3d(2, 2), (1, 2, 4, 4, 4)),
    "3d_p1.5_ceil": (lambda nn: nn.LPPool3d(1.5, (2, 2, 3), 2, ceil_mode=True),
                     (1, 2, 5, 4, 5)),
}


@pytest.mark.parametrize("name", LP)
def test_lp_pool_matches_torch(name):
    make, shape = LP[name]
    me, mt = make(ember.nn), make(torch.nn)
    assert repr(me) == repr(mt)
    x = _a(*shape)
    if "1.5" in name:   # non-integer powers of negatives are NaN (in torch too)
        x = np.abs(x) + 0.1
    check_against_torch(me, mt, [x], rtol=1e-4, atol=1e-5)


def test_lp_pool_functional_and_compiled():
    x = _a(2, 3, 8, 8)
    check_against_torch(lambda t: F.lp_pool2d(t, 2.0, 2, 2),
                        lambda t: TF.lp_pool2d(t, 2.0, 2, 2), [x], rtol=1e-4, atol=1e-5)
    check_against_torch(lambda t: F.lp_pool1d(t, 2, 2), lambda t: TF.lp_pool1d(t, 2, 2),
                        [_a(2, 4, 6)], rtol=1e-4, atol=1e-5)
    pool = ember.nn.Sequential(ember.nn.Conv2d(3, 4, 3), ember.nn.LPPool2d(2, 2))
    compiled = ember.compile(pool)
    for _ in range(3):
        out = compiled(ember.tensor(x))
    assert_close(out, pool(ember.tensor(x)), 1e-5, 1e-6)


# ---- in-place activations ------------------------------------------------------------------

INPLACE = {
    "relu_": ((), ()),
    "leaky_relu_": ((0.2,), (0.2,)),
    "elu_": ((0.7,), (0.7,)),
    "celu_": ((1.3,), (1.3,)),
    "selu_": ((), ()),
    "threshold_": ((0.1, -2.0), (0.1, -2.0)),
    "hardtanh_": ((-0.5, 0.5), (-0.5, 0.5)),
}


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_activation_matches_torch(name):
    args_e, args_t = INPLACE[name]
    fe, ft = getattr(F, name), getattr(TF, name)
    x = _a(3, 5)

    def run_e(t):
        y = t * 1.0   # in place on a non-leaf, as torch requires under autograd
        out = fe(y, *args_e)
        assert out is y
        return out

    def run_t(t):
        y = t * 1.0
        out = ft(y, *args_t)
        assert out is y
        return out
    check_against_torch(run_e, run_t, [x])


def test_rrelu_inplace_eval_matches_torch():
    x = _a(4, 4)
    e, t = ember.tensor(x), torch.tensor(x)
    assert F.rrelu_(e, training=False) is e
    TF.rrelu_(t, training=False)
    assert_close(e, t)


# ---- max pooling with indices, MaxUnpool3d --------------------------------------------------

def test_max_pool_with_indices_match_torch():
    x1, x2 = _a(2, 3, 9), _a(2, 3, 7, 8)
    for fe, ft, x, args in ((F.max_pool1d_with_indices, TF.max_pool1d_with_indices, x1, (3, 2)),
                            (F.max_pool2d_with_indices, TF.max_pool2d_with_indices, x2,
                             (3, 2, 1))):
        oe, ie = fe(ember.tensor(x), *args)
        ot, it = ft(torch.tensor(x), *args)
        assert_close(oe, ot)
        assert_close(ie, it)
    x3 = _a(2, 2, 5, 6, 7)
    for args in [(2,), (3, 2, 1), ((2, 3, 2), (1, 2, 2), (1, 1, 0), (2, 1, 1)),
                 (3, 2, 1, 1, True), ((3, 2, 3), 2, (1, 0, 1), (1, 2, 1), True)]:
        check_against_torch(lambda t: F.max_pool3d_with_indices(t, *args),
                            lambda t: TF.max_pool3d_with_indices(t, *args), [x3])
    x4 = _a(2, 4, 4, 4)    # unbatched [C, D, H, W]
    check_against_torch(lambda t: F.max_pool3d(t, 2, return_indices=True),
                        lambda t: TF.max_pool3d(t, 2, return_indices=True), [x4])


def test_max_unpool3d_matches_torch():
    x = _a(2, 3, 4, 6, 6)
    for (k, s, p), size in (((2, None, 0), None), ((3, 2, 1), (4, 6, 6))):
        pe, ie = ember.nn.MaxPool3d(k, s, p, return_indices=True)(ember.tensor(x))
        pt, it = torch.nn.MaxPool3d(k, s, p, return_indices=True)(torch.tensor(x))
        ue = ember.nn.MaxUnpool3d(k, s, p)
        ut = torch.nn.MaxUnpool3d(k, s, p)
        assert repr(ue) == repr(ut)
        check_against_torch(lambda v: ue(v, ie, size), lambda v: ut(v, it, size),
                            [pt.detach().numpy()])
        assert_close(F.max_unpool3d(pe, ie, k, s, p, size), TF.max_unpool3d(pt, it, k, s, p,
                                                                             size))


# ---- fusion ------------------------------------------------------------------------------

def test_fuse_conv_bn_eval_matches_torch_and_compiles():
    x = _a(2, 3, 6, 6)
    cases = ((lambda nn: nn.Conv2d(3, 4, 3, bias=False), lambda nn: nn.BatchNorm2d(4), False),
             (lambda nn: nn.Conv2d(3, 4, 3), lambda nn: nn.BatchNorm2d(4, affine=False), False),
             (lambda nn: nn.ConvTranspose2d(3, 4, 2, stride=2), lambda nn: nn.BatchNorm2d(4),
              True))
    for make_conv, make_bn, transpose in cases:
        ct, bt = make_conv(torch.nn), make_bn(torch.nn)
        bt(ct(torch.tensor(x) * 2 + 1))          # non-trivial running statistics
        ce, be = make_conv(ember.nn), make_bn(ember.nn)
        _load_from_torch(ce, ct)
        _load_from_torch(be, bt)
        for m in (ce, be, ct, bt):
            m.eval()
        fe = ember.nn.utils.fuse_conv_bn_eval(ce, be, transpose)
        ft = torch.nn.utils.fuse_conv_bn_eval(ct, bt, transpose)
        assert type(fe) is type(ce) and fe is not ce and ce.bias is not fe.bias
        assert list(fe.state_dict()) == list(ft.state_dict())
        assert isinstance(fe.weight, ember.nn.Parameter) and fe.weight.requires_grad
        for k, v in ft.state_dict().items():
            assert_close(fe.state_dict()[k], v, 1e-5, 1e-6)
        assert_close(fe(ember.tensor(x)), be(ce(ember.tensor(x))), 1e-4, 1e-5)
        compiled = ember.compile(fe)
        for _ in range(3):
            out = compiled(ember.tensor(x))
        assert_close(out, fe(ember.tensor(x)), 1e-5, 1e-6)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        ember.nn.utils.fuse_conv_bn_eval(ember.nn.Conv2d(1, 1, 1), ember.nn.BatchNorm2d(1))


def test_fuse_linear_bn_matches_torch():
    x = _a(5, 6)
    for n in (4, 1):
        lt, bt = torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(n)
        bt(torch.randn(8, n) * 3 + 2)
        le, be = ember.nn.Linear(6, 4), ember.nn.BatchNorm1d(n)
        _load_from_torch(le, lt)
        _load_from_torch(be, bt)
        for m in (le, be, lt, bt):
            m.eval()
        fe = ember.nn.utils.fuse_linear_bn_eval(le, be)
        ft = torch.nn.utils.fuse_linear_bn_eval(lt, bt)
        for k, v in ft.state_dict().items():
            assert_close(fe.state_dict()[k], v, 1e-5, 1e-6)
        w, b = ember.nn.utils.fuse_linear_bn_weights(le.weight, None, be.running_mean,
                                                      be.running_var, be.eps, be.weight, be.bias)
        wt, btt = torch.nn.utils.fuse_linear_bn_weights(lt.weight, None, bt.running_mean,
                                                        bt.running_var, bt.eps, bt.weight,
                                                        bt.bias)
        assert_close(w, wt, 1e-5, 1e-6)
        assert_close(b, btt, 1e-5, 1e-6)
        assert not b.requires_grad and btt.requires_grad is False
    with pytest.raises(AssertionError, match="To fuse"):
        ember.nn.utils.fuse_linear_bn_eval(ember.nn.Linear(3, 4).eval(),
                                           ember.nn.BatchNorm1d(3).eval())


# ---- skip_init, memory format -------------------------------------------------------------

def test_skip_init():
    ember.manual_seed(3)
    expected = ember.rand(4)
    ember.manual_seed(3)
    m = ember.nn.utils.skip_init(ember.nn.Linear, 5, 2, bias=True)
    assert type(m) is ember.nn.Linear and m.weight.shape == (2, 5) and m.bias.shape == (2,)
    assert_close(ember.rand(4), expected)     # no random initialization ran
    m2 = ember.nn.utils.skip_init(ember.nn.Conv2d, in_channels=2, out_channels=3,
                                  kernel_size=2)
    assert m2.weight.shape == (3, 2, 2, 2)
    # the initializers work again afterwards
    w = ember.nn.init.ones_(ember.empty(3))
    assert_close(w, np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="Expected a Module"):
        ember.nn.utils.skip_init(int)
    with pytest.raises(RuntimeError, match="'device' arg"):
        ember.nn.utils.skip_init(ember.nn.ReLU)


def test_convert_conv_weight_memory_format_matches_torch():
    def make(nn):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 2), nn.Linear(2, 2),
                             nn.Sequential(nn.Conv3d(2, 2, 1)))
    me, mt = make(ember.nn), make(torch.nn)
    _load_from_torch(me, mt)
    ref = copy.deepcopy(me)
    weight = me[0].weight
    ember.nn.utils.convert_conv2d_weight_memory_format(me, ember.channels_last)
    torch.nn.utils.convert_conv2d_weight_memory_format(mt, torch.channels_last)
    ember.nn.utils.convert_conv3d_weight_memory_format(me, ember.channels_last_3d)
    torch.nn.utils.convert_conv3d_weight_memory_format(mt, torch.channels_last_3d)
    assert me[0].weight is weight
    for (k, pe), (_, pt) in zip(me.named_parameters(), mt.named_parameters()):
        assert tuple(pe.stride()) == tuple(pt.stride()), k
        assert_close(pe, pt)
    x = _a(1, 3, 5, 5)
    assert_close(me[:2](ember.tensor(x)), ref[:2](ember.tensor(x)), 1e-5, 1e-6)


# ---- AdaptiveLogSoftmaxWithLoss -------------------------------------------------------------

def _asm_pair(head_bias=False):
    mt = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 40, [6, 15, 30], div_value=2.0,
                                             head_bias=head_bias)
    me = ember.nn.AdaptiveLogSoftmaxWithLoss(16, 40, [6, 15, 30], div_value=2.0,
                                             head_bias=head_bias)
    assert list(me.state_dict()) == list(mt.state_dict())
    assert repr(me) == repr(mt)
    _load_from_torch(me, mt)
    return me, mt


def test_adaptive_log_softmax_matches_torch():
    me, mt = _asm_pair(head_bias=True)
    x = _a(7, 16)
    target = np.array([0, 5, 6, 14, 20, 39, 31])
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    oe, ot = me(xe, ember.tensor(target)), mt(xt, torch.tensor(target))
    assert oe._fields == ot._fields == ("output", "loss")
    assert_close(oe.output, ot.output, 1e-4, 1e-5)
    assert_close(oe.loss, ot.loss, 1e-4, 1e-5)
    oe.loss.backward()
    ot.loss.backward()
    assert_close(xe.grad, xt.grad, 1e-4, 1e-5)
    _grads_match(me, mt)
    lp_e, lp_t = me.log_prob(ember.tensor(x)), mt.log_prob(torch.tensor(x))
    assert_close(lp_e, lp_t, 1e-4, 1e-5)
    assert_close(me.predict(ember.tensor(x)), mt.predict(torch.tensor(x)))
    # rows all in the shortlist / all in clusters (predict's other branches), unbatched
    with torch.no_grad():
        mt.head.weight[:6].mul_(0.0)
        mt.head.bias.copy_(torch.tensor([5.0] * 6 + [-5.0] * 3))
    _load_from_torch(me, mt)
    assert_close(me.predict(ember.tensor(x)), mt.predict(torch.tensor(x)))
    with torch.no_grad():
        mt.head.bias.copy_(torch.tensor([-5.0] * 6 + [5.0] * 3))
    _load_from_torch(me, mt)
    assert_close(me.predict(ember.tensor(x)), mt.predict(torch.tensor(x)))
    one_e = me(ember.tensor(x[0]), ember.tensor(target[3]))
    one_t = mt(torch.tensor(x[0]), torch.tensor(target[3]))
    assert_close(one_e.output, one_t.output, 1e-4, 1e-5)
    with pytest.raises(RuntimeError, match="Target values should be in"):
        me(ember.tensor(x[:2]), ember.tensor([0, 40]))
    with pytest.raises(ValueError, match="cutoffs"):
        ember.nn.AdaptiveLogSoftmaxWithLoss(8, 10, [5, 3])


def test_adaptive_log_softmax_compiled_equals_eager():
    me, mt = _asm_pair()
    x = _a(6, 16)
    target = ember.tensor([0, 3, 7, 20, 39, 11])

    def step(inp, tgt):
        out = me(inp, tgt)
        return out.output, out.loss
    compiled = ember.compile(step)
    for _ in range(3):
        out, loss = compiled(ember.tensor(x), target)
    ref_out, ref_loss = step(ember.tensor(x), target)
    assert_close(out, ref_out, 1e-5, 1e-6)
    assert_close(loss, ref_loss, 1e-5, 1e-6)
    assert_close(loss, mt(torch.tensor(x), torch.tensor(target.numpy())).loss, 1e-4, 1e-5)
