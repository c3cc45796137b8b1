"""The rest of ember.nn against PyTorch (issue 14 item 4): activations, Conv1d,
ConvTranspose1d/2d, BatchNorm1d, GroupNorm, AdaptiveAvgPool2d, Upsample/interpolate, pad,
the losses and their modules, parameter containers, nn.utils, nn.init, Embedding options,
PyTorch's import paths; forward values, input and parameter gradients (float64, copied
weights), reprs, state_dict keys, errors, and compiled == eager."""
import math
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)

# PyTorch's note that an even 'same' padding copies the input (ember pads the same way).
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _close(e, t, tol=1e-9):
    np.testing.assert_allclose(_np(e), _np(t), rtol=tol, atol=tol)


def _compare_fn(tfn, efn, arrays, consts=(), tol=1e-9):
    """``fn(*float inputs, *consts)`` in both libraries on the same float64 data: values and
    the gradients of every float input under a random output weighting."""
    tin = [torch.tensor(a, requires_grad=True) for a in arrays]
    ein = [ember.tensor(a, requires_grad=True) for a in arrays]
    tc = [torch.tensor(c) if isinstance(c, np.ndarray) else c for c in consts]
    ec = [ember.tensor(c) if isinstance(c, np.ndarray) else c for c in consts]
    tout, eout = tfn(*tin, *tc), efn(*ein, *ec)
    assert tuple(eout.shape) == tuple(tout.shape)
    _close(eout, tout, tol)
    w = RNG.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w)).sum().backward()
    (eout * ember.tensor(w)).sum().backward()
    for e, t in zip(ein, tin):
        assert (e.grad is None) == (t.grad is None)
        if t.grad is not None:
            _close(e.grad, t.grad, tol)
    return eout


def _pair_modules(name, *args, **kwargs):
    """The same module in both libraries (float64), ember's holding torch's weights."""
    tm = getattr(torch.nn, name)(*args, **kwargs).double()
    em = getattr(nn, name)(*args, **kwargs).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, em


def _compare_module(name, args, kwargs, shape, tol=1e-9, train=True, call=None):
    tm, em = _pair_modules(name, *args, **kwargs)
    tm.train(train)
    em.train(train)
    assert repr(em) == repr(tm).replace("torch.", "ember.")
    x = RNG.standard_normal(shape)
    call = call or (lambda m, x: m(x))
    _compare_fn(lambda x: call(tm, x), lambda x: call(em, x), [x], tol=tol)
    for (n, tp), ep in zip(tm.named_parameters(), em.parameters()):
        assert ep.grad is not None, n
        _close(ep.grad, tp.grad, tol)
    for (n, tb), eb in zip(tm.named_buffers(), em.buffers()):
        _close(eb, tb, tol)
    return tm, em


# ---- activations ----------------------------------------------------------------------

ACTIVATIONS = [
    ("ELU", (), {}), ("ELU", (0.5,), {}), ("CELU", (1.5,), {}), ("SELU", (), {}),
    ("Softplus", (), {}), ("Softplus", (2.0, 3.0), {}), ("Mish", (), {}),
    ("Hardtanh", (), {}), ("Hardtanh", (-2.0, 0.5), {}), ("ReLU6", (), {}),
    ("Hardswish", (), {}), ("Hardsigmoid", (), {}), ("LogSigmoid", (), {}),
    ("Softsign", (), {}), ("Tanhshrink", (), {}), ("Softmin", (1,), {}), ("GLU", (), {}),
    ("Threshold", (0.1, 20.0), {}), ("LeakyReLU", (0.2,), {}), ("SiLU", (), {}),
    ("GELU", ("tanh",), {}), ("GELU", (), {}), ("Tanh", (), {}), ("Sigmoid", (), {}),
    ("Softmax", (-1,), {}), ("LogSoftmax", (1,), {}), ("Identity", (), {}), ("ReLU", (), {}),
    ("PReLU", (), {}), ("PReLU", (4,), {"init": 0.1}),
]


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 6)])
def test_activation_modules_match_torch(name, args, kwargs, shape):
    # Values spread wide enough to reach every branch (thresholds at +-3, 6, 20).
    x = RNG.standard_normal(shape) * 8
    tm, em = _pair_modules(name, *args, **kwargs)
    assert repr(em) == repr(tm)
    # PyTorch's hardsigmoid/hardswish gradients use a float32 1/6 even in float64.
    _compare_fn(tm, em, [x], tol=1e-7 if name.startswith("Hards") else 1e-9)


@pytest.mark.parametrize("fn", ["elu", "selu", "celu", "hardtanh", "relu6", "hardswish",
                                "hardsigmoid", "mish", "leaky_relu", "silu", "threshold"])
def test_inplace_activations(fn):
    args = (0.5, 2.0) if fn == "threshold" else ()
    x = RNG.standard_normal((3, 5)) * 4
    t, e = torch.tensor(x), ember.tensor(x)
    tr = getattr(torch.nn.functional, fn)(t, *args, inplace=True)
    er = getattr(F, fn)(e, *args, inplace=True)
    assert er is e and tr is t
    _close(e, t)


def test_activation_edges():
    # The exponentials never see large inputs: no inf/nan in either branch's gradient.
    x = ember.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], requires_grad=True)
    for f in (F.elu, F.selu, F.celu, F.softplus, F.mish, F.logsigmoid):
        x.grad = None
        f(x).sum().backward()
        assert np.isfinite(x.grad.numpy()).all(), f.__name__
        assert np.isfinite(f(x).detach().numpy()).all(), f.__name__
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(ember.zeros(2, 3))
    with pytest.raises(TypeError, match="argument 'input'"):
        F.elu(np.zeros(3))


# ---- convolutions ---------------------------------------------------------------------

CONV1D = [
    ((3, 4, 3), {}), ((3, 6, 5), {"stride": 2, "padding": 2, "dilation": 2}),
    ((4, 6, 3), {"groups": 2, "bias": False}), ((3, 4, 3), {"padding": "same"}),
    ((3, 4, 4), {"padding": "valid"}), ((3, 4, 4), {"padding": "same"}),
    ((3, 4, 3), {"padding": "same", "dilation": 3}),
]


@pytest.mark.parametrize("args,kwargs", CONV1D)
def test_conv1d_matches_torch(args, kwargs):
    _compare_module("Conv1d", args, kwargs, (2, args[0], 11))
    _compare_module("Conv1d", args, kwargs, (args[0], 9))   # unbatched


CONV_T2D = [
    ((4, 6, 3), {}), ((4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((4, 6, (2, 3)), {"stride": (2, 1), "padding": (0, 1), "groups": 2}),
    ((2, 3, 3), {"dilation": 2, "stride": 3, "padding": 2, "output_padding": 2}),
    ((4, 4, 4), {"stride": 2, "padding": 1, "bias": False, "groups": 4}),
]


@pytest.mark.parametrize("args,kwargs", CONV_T2D)
def test_conv_transpose2d_matches_torch(args, kwargs):
    _compare_module("ConvTranspose2d", args, kwargs, (2, args[0], 5, 4))
    _compare_module("ConvTranspose2d", args, kwargs, (args[0], 3, 3))   # unbatched


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 1, "output_padding": 1},
                                    {"groups": 2, "dilation": 2}])
def test_conv_transpose1d_matches_torch(kwargs):
    _compare_module("ConvTranspose1d", (4, 6, 3), kwargs, (2, 4, 7))


def test_conv_transpose_output_size_and_errors():
    tm, em = _pair_modules("ConvTranspose2d", 3, 2, 3, stride=2, padding=1)
    x = RNG.standard_normal((1, 3, 4, 4))
    for size in ([7, 7], [8, 8], [1, 2, 8, 7]):
        _close(em(ember.tensor(x), output_size=size), tm(torch.tensor(x), output_size=size))
    with pytest.raises(ValueError, match="valid sizes range from 7 to 8"):
        em(ember.tensor(x), output_size=[9, 9])
    with pytest.raises(ember.OpError, match="output padding must be smaller"):
        F.conv_transpose2d(ember.ones(1, 2, 3, 3), ember.ones(2, 2, 3, 3), output_padding=1)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="does not support string padding"):
        nn.ConvTranspose2d(3, 4, 3, padding="same")
    with pytest.raises(ember.OpError, match="expected input of shape"):
        em(ember.ones(1, 4, 3, 3, dtype=ember.float64))


def test_conv_weight_shapes_and_init_bounds():
    for name, args in (("Conv1d", (3, 8, 5)), ("ConvTranspose2d", (3, 8, 5)),
                       ("ConvTranspose1d", (6, 4, 3, 1, 0, 0, 2))):
        tm, em = getattr(torch.nn, name)(*args), getattr(nn, name)(*args)
        assert tuple(em.weight.shape) == tuple(tm.weight.shape)
        fan_in = em.weight.shape[1] * math.prod(em.weight.shape[2:])
        # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as the bias
        bound = 1 / math.sqrt(fan_in)
        assert em.weight.abs().max().item() <= bound + 1e-7
        assert em.bias.abs().max().item() <= bound + 1e-7
        assert em.weight.abs().max().item() > bound * 0.5


# ---- normalization and pooling --------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 7)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm1d_matches_torch(shape, train):
    tm, em = _pair_modules("BatchNorm1d", 4)
    with torch.no_grad():
        tm.running_mean.uniform_(-1, 1)
        tm.running_var.uniform_(0.5, 2)
    em.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    tm.train(train)
    em.train(train)
    for _ in range(2):
        x = RNG.standard_normal(shape)
        _compare_fn(tm, em, [x])
    for (n, tb), eb in zip(tm.named_buffers(), em.buffers()):
        _close(eb, tb)
    assert repr(em) == repr(tm)


@pytest.mark.parametrize("groups,channels,shape", [(2, 4, (3, 4, 5)), (1, 6, (2, 6, 3, 3)),
                                                   (6, 6, (2, 6, 4)), (3, 6, (2, 6))])
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_matches_torch(groups, channels, shape, affine):
    tm, em = _pair_modules("GroupNorm", groups, channels, affine=affine)
    if affine:
        with torch.no_grad():
            tm.weight.uniform_(0.5, 1.5)
            tm.bias.uniform_(-1, 1)
        em.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    assert repr(em) == repr(tm)
    _compare_fn(tm, em, [RNG.standard_normal(shape)])
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        nn.GroupNorm(4, 6)


@pytest.mark.parametrize("out", [1, (2, 3), (3, 5), (5, 2), (7, 7), (None, 2)])
def test_adaptive_avg_pool2d_matches_torch(out):
    tm, em = torch.nn.AdaptiveAvgPool2d(out), nn.AdaptiveAvgPool2d(out)
    assert repr(em) == repr(tm)
    _compare_fn(tm, em, [RNG.standard_normal((2, 3, 7, 6))])
    _compare_fn(tm, em, [RNG.standard_normal((3, 5, 5))])


INTERP = [
    ({"scale_factor": 2}, (1, 2, 3, 4)), ({"size": (5, 7)}, (2, 1, 3, 4)),
    ({"scale_factor": 1.7}, (1, 2, 4, 5)), ({"size": (2, 3)}, (1, 1, 5, 7)),
    ({"scale_factor": 2, "mode": "bilinear"}, (1, 2, 3, 4)),
    ({"size": (5, 7), "mode": "bilinear", "align_corners": True}, (2, 1, 3, 4)),
    ({"size": (2, 3), "mode": "bilinear"}, (1, 2, 5, 7)),
    ({"scale_factor": (1.5, 2.5), "mode": "bilinear"}, (1, 1, 4, 3)),
    ({"scale_factor": 1.5, "mode": "bilinear", "recompute_scale_factor": True}, (1, 1, 5, 5)),
    ({"size": 1, "mode": "bilinear", "align_corners": True}, (1, 1, 3, 3)),
    ({"scale_factor": 3, "mode": "linear"}, (2, 3, 4)),
    ({"size": 9, "mode": "linear", "align_corners": True}, (2, 3, 4)),
    ({"size": 7, "mode": "nearest"}, (2, 3, 4)),
    ({"size": (3, 5), "mode": "nearest-exact"}, (1, 2, 4, 7)),
    ({"size": (3, 4, 5), "mode": "trilinear"}, (1, 1, 2, 3, 4)),
    ({"size": (3, 2), "mode": "area"}, (1, 2, 7, 5)),
    ({"scale_factor": 1.7, "mode": "bicubic"}, (1, 2, 5, 7)),
    ({"size": (9, 4), "mode": "bicubic", "align_corners": True}, (2, 1, 5, 7)),
    ({"size": (2, 3), "mode": "bicubic"}, (1, 1, 5, 7)),
]


@pytest.mark.parametrize("kwargs,shape", INTERP)
def test_interpolate_matches_torch(kwargs, shape):
    _compare_fn(lambda x: torch.nn.functional.interpolate(x, **kwargs),
                lambda x: F.interpolate(x, **kwargs), [RNG.standard_normal(shape)])


def test_upsample_modules():
    for args in ({"scale_factor": 2}, {"size": (3, 4), "mode": "bilinear", "align_corners": True},
                 {"scale_factor": (2.0, 3.0), "mode": "bilinear"}):
        tm, em = torch.nn.Upsample(**args), nn.Upsample(**args)
        assert repr(em) == repr(tm)
        _compare_fn(tm, em, [RNG.standard_normal((1, 2, 3, 3))])
    for name in ("UpsamplingNearest2d", "UpsamplingBilinear2d"):
        tm, em = getattr(torch.nn, name)(scale_factor=2), getattr(nn, name)(scale_factor=2)
        assert repr(em) == repr(tm)
        _compare_fn(tm, em, [RNG.standard_normal((1, 2, 3, 3))])
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(ember.zeros(1, 1, 2, 2), size=3, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        F.interpolate(ember.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(ember.zeros(1, 1, 2, 2), size=3, align_corners=True)
    with pytest.raises(NotImplementedError, match="bilinear mode needs 4D input"):
        F.interpolate(ember.zeros(1, 1, 2), size=3, mode="bilinear")
    with pytest.raises(NotImplementedError, match="bicubic mode needs 4D input"):
        F.interpolate(ember.zeros(1, 1, 2), size=3, mode="bicubic")


@pytest.mark.parametrize("pad,mode", [((1, 2), "constant"), ((1, 1, 2, 0), "constant"),
                                      ((-1, 2), "constant"), ((2, 1, 1, 2), "reflect"),
                                      ((2, 3, 1, 0), "replicate"), ((1, 2, 2, 1), "circular")])
def test_pad_matches_torch(pad, mode):
    _compare_fn(lambda x: torch.nn.functional.pad(x, pad, mode),
                lambda x: F.pad(x, pad, mode), [RNG.standard_normal((1, 2, 4, 5))])
    if mode == "constant":
        _close(F.pad(ember.ones(2, 3), pad, value=2.5),
               torch.nn.functional.pad(torch.ones(2, 3), pad, value=2.5))


# ---- losses ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,kwargs", [("smooth_l1_loss", {}), ("smooth_l1_loss", {"beta": 0.3}),
                                         ("smooth_l1_loss", {"beta": 0.0}),
                                         ("huber_loss", {}), ("huber_loss", {"delta": 0.4}),
                                         ("l1_loss", {}), ("mse_loss", {}),
                                         ("soft_margin_loss", {})])
def test_regression_losses_match_torch(name, kwargs, reduction):
    x, y = RNG.standard_normal((4, 5)), RNG.standard_normal((4, 5))
    arrays, consts = [x, y], ()
    if name == "soft_margin_loss":   # not differentiable in its target (in PyTorch)
        arrays, consts = [x], (np.sign(y),)
    _compare_fn(lambda a, b: getattr(torch.nn.functional, name)(a, b, reduction=reduction,
                                                                 **kwargs),
                lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kwargs), arrays,
                consts)


@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction, log_target):
    x = np.log(RNG.dirichlet(np.ones(5), size=3))
    p = RNG.dirichlet(np.ones(5), size=3)
    y = np.log(p) if log_target else p
    tfn = lambda a, b: torch.nn.functional.kl_div(a, b, reduction=reduction,  # noqa: E731
                                                  log_target=log_target)
    efn = lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare_fn(tfn, efn, [x, y])
        if not log_target:
            # A zero probability: xlogy's 0 * log 0 = 0. (PyTorch's target gradient there is
            # nan, ember's the finite limit's other term: compared for the input only.)
            p[0, 1] = 0.0
            _compare_fn(tfn, efn, [x], consts=(p,))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(weighted, pos_weight, reduction):
    x = RNG.standard_normal((4, 3)) * 10
    y = RNG.uniform(size=(4, 3))
    consts = (RNG.uniform(0.5, 2, size=(3,)) if weighted else None,
              RNG.uniform(0.5, 3, size=(3,)) if pos_weight else None)
    tkw = {"weight": None if consts[0] is None else torch.tensor(consts[0]),
           "pos_weight": None if consts[1] is None else torch.tensor(consts[1])}
    ekw = {k: None if v is None else ember.tensor(v.numpy()) for k, v in tkw.items()}
    _compare_fn(lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
                    a, b, reduction=reduction, **tkw),
                lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **ekw),
                [x, y])
    tm = torch.nn.BCEWithLogitsLoss(reduction=reduction, **tkw)
    em = nn.BCEWithLogitsLoss(reduction=reduction, **ekw)
    _close(em(ember.tensor(x), ember.tensor(y)), tm(torch.tensor(x), torch.tensor(y)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [-100, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)])
def test_cross_entropy_matches_torch(smoothing, weighted, ignore, reduction, shape):
    x = RNG.standard_normal(shape)
    target = RNG.integers(0, 4, size=(shape[0],) + shape[2:])
    target.flat[0] = ignore if ignore >= 0 else -100
    target.flat[-1] = 3 - max(ignore, 0) % 4   # never all ignored (a 0/0 mean, in both)
    w = RNG.uniform(0.5, 2, size=4) if weighted else None
    tw, ew = (None, None) if w is None else (torch.tensor(w), ember.tensor(w))
    _compare_fn(lambda a, t: torch.nn.functional.cross_entropy(
                    a, t, weight=tw, ignore_index=ignore, reduction=reduction,
                    label_smoothing=smoothing),
                lambda a, t: F.cross_entropy(a, t, weight=ew, ignore_index=ignore,
                                             reduction=reduction, label_smoothing=smoothing),
                [x], consts=(target,))
    tm = torch.nn.CrossEntropyLoss(weight=tw, ignore_index=ignore, reduction=reduction,
                                   label_smoothing=smoothing)
    em = nn.CrossEntropyLoss(weight=ew, ignore_index=ignore, reduction=reduction,
                             label_smoothing=smoothing)
    _close(em(ember.tensor(x), ember.tensor(target)), tm(torch.tensor(x), torch.tensor(target)))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(smoothing):
    x = RNG.standard_normal((5, 3))
    p = RNG.dirichlet(np.ones(3), size=5)
    _compare_fn(lambda a, b: torch.nn.functional.cross_entropy(a, b, label_smoothing=smoothing),
                lambda a, b: F.cross_entropy(a, b, label_smoothing=smoothing), [x, p])


LOSS_MODULES = [
    ("SmoothL1Loss", {"beta": 0.5}), ("HuberLoss", {"delta": 2.0}), ("L1Loss", {}),
    ("KLDivLoss", {"reduction": "batchmean"}), ("KLDivLoss", {"log_target": True}),
    ("SoftMarginLoss", {}), ("MSELoss", {"reduction": "sum"}),
    ("PoissonNLLLoss", {}), ("PoissonNLLLoss", {"log_input": False, "full": True}),
]


@pytest.mark.parametrize("name,kwargs", LOSS_MODULES)
def test_loss_modules_match_torch(name, kwargs):
    tm, em = getattr(torch.nn, name)(**kwargs), getattr(nn, name)(**kwargs)
    assert repr(em) == repr(tm)
    assert em.reduction == tm.reduction
    x = RNG.standard_normal((4, 6))
    y = RNG.uniform(0.1, 3, size=(4, 6))
    if name == "KLDivLoss":
        x = np.log(RNG.dirichlet(np.ones(6), size=4))
    if name == "PoissonNLLLoss" and not kwargs.get("log_input", True):
        x = np.abs(x)
    arrays, consts = [x, y], ()
    if name == "SoftMarginLoss":
        arrays, consts = [x], (np.sign(y - 1),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare_fn(tm, em, arrays, consts)


def test_pair_losses_match_torch():
    a, b = RNG.standard_normal((5, 4)), RNG.standard_normal((5, 4))
    y = np.where(RNG.uniform(size=5) > 0.5, 1.0, -1.0)
    for name, kw in (("cosine_embedding_loss", {"margin": 0.2}),
                     ("margin_ranking_loss", {"margin": 0.1})):
        if name == "margin_ranking_loss":
            a1, b1 = a[:, 0], b[:, 0]
        else:
            a1, b1 = a, b
        _compare_fn(lambda p, q: getattr(torch.nn.functional, name)(p, q, torch.tensor(y), **kw),
                    lambda p, q: getattr(F, name)(p, q, ember.tensor(y), **kw), [a1, b1])
    _compare_fn(lambda p: torch.nn.functional.hinge_embedding_loss(p, torch.tensor(y[:, None]
                                                                                  * np.ones(4))),
                lambda p: F.hinge_embedding_loss(p, ember.tensor(y[:, None] * np.ones(4))), [a])
    _compare_fn(lambda p, q: torch.nn.functional.cosine_similarity(p, q),
                lambda p, q: F.cosine_similarity(p, q), [a, b])
    _compare_fn(lambda p, q, r: torch.nn.functional.triplet_margin_loss(p, q, r),
                lambda p, q, r: F.triplet_margin_loss(p, q, r),
                [a, b, RNG.standard_normal((5, 4))])
    var = RNG.uniform(0.5, 2, size=(5, 4))
    _compare_fn(lambda p, q, v: torch.nn.functional.gaussian_nll_loss(p, q, v, full=True),
                lambda p, q, v: F.gaussian_nll_loss(p, q, v, full=True), [a, b, var])
    _compare_fn(lambda p: torch.nn.functional.normalize(p, dim=-1),
                lambda p: F.normalize(p, dim=-1), [a])


def test_loss_errors():
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.smooth_l1_loss(ember.zeros(2), ember.zeros(2), reduction="avg")
    with pytest.raises(RuntimeError, match="negative values for beta"):
        F.smooth_l1_loss(ember.zeros(2), ember.zeros(2), beta=-1.0)
    with pytest.raises(TypeError, match="argument 'target'"):
        F.huber_loss(ember.zeros(2), [0.0, 1.0])
    with pytest.warns(UserWarning, match="different to the input size"):
        F.smooth_l1_loss(ember.zeros(2, 3), ember.zeros(3))
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(ember.zeros(2, 3), ember.zeros(2, 3))


# ---- embedding ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"padding_idx": 0}, {"padding_idx": -2},
                                    {"max_norm": 1.0}, {"max_norm": 0.5, "norm_type": 1.0},
                                    {"scale_grad_by_freq": True},
                                    {"scale_grad_by_freq": True, "padding_idx": 3}])
def test_embedding_options_match_torch(kwargs):
    tm, em = _pair_modules("Embedding", 7, 3, **kwargs)
    assert repr(em) == repr(tm)
    idx = np.array([[0, 1, 5], [5, 5, 3]])
    if "padding_idx" in kwargs:
        assert np.all(em.weight[kwargs["padding_idx"]].detach().numpy() == 0)
    w = RNG.standard_normal((2, 3, 3))
    tout, eout = tm(torch.tensor(idx)), em(ember.tensor(idx))
    _close(eout, tout)
    _close(em.weight, tm.weight)   # max_norm renormalized the looked-up rows in place
    (tout * torch.tensor(w)).sum().backward()
    (eout * ember.tensor(w)).sum().backward()
    _close(em.weight.grad, tm.weight.grad)
    if "padding_idx" in kwargs:
        assert np.all(em.weight.grad[kwargs["padding_idx"]].numpy() == 0)


def test_embedding_errors():
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(4, 2, padding_idx=4)


def test_sparse_embeddings_train_as_torchs_sparse_ones_with_sgd():
    # DLRM's EmbeddingBag(sparse=True) raised; the gradient is dense here (no sparse
    # layout), with the same values, so an SGD step with momentum equals torch's
    for make in ("embedding", "bag"):
        ours = (nn.Embedding(6, 3, sparse=True) if make == "embedding"
                else nn.EmbeddingBag(6, 3, mode="sum", sparse=True))
        theirs = (torch.nn.Embedding(6, 3, sparse=True) if make == "embedding"
                  else torch.nn.EmbeddingBag(6, 3, mode="sum", sparse=True))
        ours.weight.data.copy_(ember.tensor(theirs.weight.detach().numpy()))
        oo = ember.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
        ot = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
        for idx in ([1, 2, 2], [4, 1, 0]):
            index = [idx] if make == "bag" else idx
            ours(ember.tensor(index)).pow(2).sum().backward()
            theirs(torch.tensor(index)).pow(2).sum().backward()
            assert theirs.weight.grad.is_sparse
            oo.step()
            ot.step()
            oo.zero_grad()
            ot.zero_grad()
        np.testing.assert_allclose(ours.weight.detach().numpy(),
                                   theirs.weight.detach().numpy(), rtol=1e-6)


# ---- containers and import paths --------------------------------------------------------

def test_parameter_list():
    values = [RNG.standard_normal((2, 3)), RNG.standard_normal(4)]
    tl = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(v)) for v in values])
    el = nn.ParameterList([nn.Parameter(ember.tensor(v)) for v in values])
    el.append(ember.zeros(5))            # a plain tensor becomes a Parameter
    tl.append(torch.zeros(5))
    assert isinstance(el[2], nn.Parameter) and el[2].requires_grad
    assert list(el.state_dict()) == list(tl.state_dict()) == ["0", "1", "2"]
    assert len(el) == 3 and len(list(el.parameters())) == 3
    assert repr(el) == repr(tl).replace("torch.", "ember.")
    assert [tuple(p.shape) for p in el[1:]] == [(4,), (5,)]
    assert el[-1] is el[2]
    el[0] = nn.Parameter(ember.ones(1))
    assert tuple(el.state_dict()["0"].shape) == (1,)
    el += [ember.ones(2)]
    assert len(el) == 4
    with pytest.raises(IndexError):
        el[4]
    with pytest.raises(TypeError, match="should be called with an iterable"):
        el.extend(ember.ones(2))


def test_parameter_dict():
    td = torch.nn.ParameterDict({"b": torch.nn.Parameter(torch.zeros(2, 3)),
                                 "a": torch.nn.Parameter(torch.ones(1))})
    ed = nn.ParameterDict({"b": nn.Parameter(ember.zeros(2, 3)), "a": nn.Parameter(ember.ones(1))})
    assert list(ed.keys()) == list(td.keys())
    assert list(ed.state_dict()) == list(td.state_dict())
    assert repr(ed) == repr(td).replace("torch.", "ember.")
    ed["c"] = ember.ones(4)
    assert isinstance(ed["c"], nn.Parameter) and "c" in ed and len(ed) == 3
    assert ed.pop("c").shape == (4,) and "c" not in ed
    ed.update([("z", ember.ones(1))])
    assert list(ed) == ["a", "b", "z"]
    assert len(list(ed.parameters())) == 3
    del ed["z"]
    assert ed.get("z") is None and ed.setdefault("y", ember.ones(2)).shape == (2,)
    model = nn.Module()
    model.params = ed
    assert sorted(model.state_dict()) == ["params.a", "params.b", "params.y"]


def test_module_dict_and_identity():
    md = nn.ModuleDict({"lin": nn.Linear(2, 3), "act": nn.Identity()})
    assert list(md.state_dict()) == ["lin.weight", "lin.bias"]
    assert repr(nn.Identity()) == "Identity()"
    x = ember.ones(3)
    assert nn.Identity(54, unused="x")(x) is x


def test_every_torch_nn_modules_file_holds_its_classes():
    # super_resolution's safe_globals named nn.modules.pixelshuffle; SAM's bypass_bn
    # imports nn.modules.batchnorm._BatchNorm; fold, instancenorm were missing too
    import importlib
    import inspect
    import pkgutil
    torch_modules = pytest.importorskip("torch.nn.modules")
    for info in pkgutil.iter_modules(torch_modules.__path__):
        if info.name.startswith("_") or info.name == "utils" or info.name.startswith("linear_"):
            continue
        theirs = importlib.import_module(f"torch.nn.modules.{info.name}")
        ours = importlib.import_module(f"ember.nn.modules.{info.name}")
        for name, cls in vars(theirs).items():
            if (inspect.isclass(cls) and cls.__module__ == theirs.__name__
                    and hasattr(nn, name)):
                assert getattr(ours, name) is getattr(nn, name), (info.name, name)


def test_import_paths():
    from ember.nn.modules.loss import _Loss, _WeightedLoss  # noqa: F401
    from ember.nn.modules.module import Module
    from ember.nn.modules.batchnorm import BatchNorm1d
    from ember.nn.parameter import Parameter
    from ember.nn.modules import Linear
    import ember.nn.modules.activation as act
    assert Module is nn.Module and Parameter is nn.Parameter and BatchNorm1d is nn.BatchNorm1d
    assert Linear is nn.Linear and act.ReLU is nn.ReLU
    assert issubclass(nn.SmoothL1Loss, _Loss)
    assert ember.nn.modules.conv.Conv1d is nn.Conv1d
    from ember.nn.utils import clip_grad_norm_
    assert clip_grad_norm_ is ember.nn.utils.clip_grad_norm_
    # the classes word_language_model lists for torch.load(weights_only=True)
    M = ember.nn.modules
    for mod, name in (("activation", "MultiheadAttention"), ("container", "ModuleList"),
                      ("dropout", "Dropout"), ("linear", "Linear"),
                      ("linear", "NonDynamicallyQuantizableLinear"),
                      ("normalization", "LayerNorm"), ("sparse", "Embedding"),
                      ("transformer", "TransformerEncoder"),
                      ("transformer", "TransformerEncoderLayer"), ("rnn", "GRU"), ("rnn", "LSTM"),
                      ("rnn", "RNN"), ("upsampling", "Upsample"), ("padding", "ZeroPad2d"),
                      ("distance", "CosineSimilarity"), ("batchnorm", "BatchNorm2d")):
        assert hasattr(getattr(torch.nn.modules, mod), name)
        assert getattr(getattr(M, mod), name) is getattr(nn, name, None) or name.startswith("Non")
    assert M.linear.NonDynamicallyQuantizableLinear is type(nn.MultiheadAttention(4, 2).out_proj)


@pytest.mark.parametrize("name,arg", [("ZeroPad2d", (1, 1, 2, 0)), ("ZeroPad1d", 2),
                                      ("ConstantPad2d", ((1, 0, 2, 1), 1.5)),
                                      ("ReflectionPad2d", 1), ("ReflectionPad1d", (2, 1)),
                                      ("ReplicationPad2d", (1, 2, 0, 1)),
                                      ("ReplicationPad1d", 2), ("CircularPad2d", 1)])
def test_padding_modules_match_torch(name, arg):
    args = arg if name.startswith("ConstantPad") else (arg,)
    tm, em = getattr(torch.nn, name)(*args), getattr(nn, name)(*args)
    assert repr(em) == repr(tm)
    shape = (2, 3, 5) if name.endswith("1d") else (1, 2, 4, 5)
    _compare_fn(tm, em, [RNG.standard_normal(shape)])


def test_distance_modules_match_torch():
    a, b = RNG.standard_normal((4, 6)), RNG.standard_normal((4, 6))
    for name, kw in (("CosineSimilarity", {"dim": 1}), ("PairwiseDistance", {"p": 3.0}),
                     ("PairwiseDistance", {"keepdim": True})):
        tm, em = getattr(torch.nn, name)(**kw), getattr(nn, name)(**kw)
        assert repr(em) == repr(tm)
        _compare_fn(tm, em, [a, b])


# ---- nn.utils -------------------------------------------------------------------------

def _grads_pair(shapes, scale=1.0):
    tps, eps_ = [], []
    for s in shapes:
        v, g = RNG.standard_normal(s), RNG.standard_normal(s) * scale
        tp, ep = torch.nn.Parameter(torch.tensor(v)), nn.Parameter(ember.tensor(v))
        tp.grad, ep.grad = torch.tensor(g), ember.tensor(g)
        tps.append(tp)
        eps_.append(ep)
    return tps, eps_


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, 0])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    tps, eps_ = _grads_pair([(3, 4), (5,), (2, 2, 2)])
    tt = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
    et = nn.utils.clip_grad_norm_(iter(eps_), max_norm, norm_type, foreach=True)
    _close(et, tt)
    for e, t in zip(eps_, tps):
        _close(e.grad, t.grad)


def test_clip_grad_norm_edges():
    p = nn.Parameter(ember.ones(3))
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == 0.0          # no grad: norm 0
    p.grad = ember.tensor([float("inf"), 1.0, 1.0])
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    tps, eps_ = _grads_pair([(4,)])
    _close(nn.utils.get_total_norm([e.grad for e in eps_]),
           torch.nn.utils.get_total_norm([t.grad for t in tps]))


def test_clip_grad_value_and_vectors():
    tps, eps_ = _grads_pair([(3, 4), (5,)], scale=3.0)
    torch.nn.utils.clip_grad_value_(tps, 1.5)
    nn.utils.clip_grad_value_(eps_, 1.5)
    for e, t in zip(eps_, tps):
        _close(e.grad, t.grad)
    tv = torch.nn.utils.parameters_to_vector(tps)
    ev = nn.utils.parameters_to_vector(eps_)
    _close(ev, tv)
    before = [e.grad.numpy().copy() for e in eps_]
    (ev * ember.arange(17.0, dtype=ember.float64)).sum().backward()   # differentiable
    np.testing.assert_array_equal(eps_[0].grad.numpy() - before[0],
                                  np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(eps_[1].grad.numpy() - before[1], np.arange(12.0, 17.0))
    new = RNG.standard_normal(17)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), tps)
    nn.utils.vector_to_parameters(ember.tensor(new), eps_)
    for e, t in zip(eps_, tps):
        _close(e, t)
    with pytest.raises(TypeError, match="expected torch.Tensor, but got"):
        nn.utils.vector_to_parameters(new, eps_)


# ---- nn.init --------------------------------------------------------------------------

def test_init_deterministic_fills_match_torch():
    for shape in ((3, 5), (4, 4)):
        te, ee = torch.empty(shape), ember.empty(*shape)
        _close(nn.init.eye_(ee), torch.nn.init.eye_(te))
    for shape, groups in (((4, 2, 3), 1), ((6, 3, 3, 3), 2), ((4, 4, 1, 3, 3), 4)):
        te, ee = torch.empty(shape), ember.empty(*shape)
        _close(nn.init.dirac_(ee, groups), torch.nn.init.dirac_(te, groups))
    _close(nn.init.constant_(ember.empty(3), 0.3), torch.full((3,), 0.3))
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        nn.init.eye_(ember.empty(2, 2, 2))
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions"):
        nn.init.dirac_(ember.empty(2, 2))
    for name in ("linear", "sigmoid", "tanh", "relu", "selu", "conv_transpose2d"):
        assert nn.init.calculate_gain(name) == torch.nn.init.calculate_gain(name)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain(
        "leaky_relu", 0.2)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")


def test_init_random_fills_have_the_right_distribution():
    ember.manual_seed(0)
    w = nn.init.trunc_normal_(ember.empty(200000), mean=1.0, std=2.0, a=-1.0, b=2.0).numpy()
    assert w.min() >= -1.0 and w.max() <= 2.0
    # mean of N(1, 4) truncated to [-1, 2] (alpha=-1, beta=0.5)
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)       # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2                 # noqa: E731
    mean = 1.0 + 2.0 * (phi(-1.0) - phi(0.5)) / (cdf(0.5) - cdf(-1.0))
    assert abs(w.mean() - mean) < 0.01
    for shape in ((4, 6), (6, 4), (3, 2, 2)):
        q = nn.init.orthogonal_(ember.empty(*shape), gain=2.0).numpy().reshape(shape[0], -1)
        small = q @ q.T if shape[0] <= q.shape[1] else q.T @ q
        np.testing.assert_allclose(small, 4.0 * np.eye(len(small)), atol=1e-5)
    s = nn.init.sparse_(ember.empty(10, 6), sparsity=0.3, std=0.5).numpy()
    assert all((s[:, c] == 0).sum() >= 3 for c in range(6))
    w = nn.init.kaiming_normal_(ember.empty(400, 500), mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2.0 / 400)) < 0.002
    w = nn.init.kaiming_uniform_(ember.empty(300, 200), a=0.0, nonlinearity="relu")
    assert abs(w.abs().max().item() - math.sqrt(6.0 / 200)) < 0.003
    w = nn.init.xavier_normal_(ember.empty(300, 200), gain=2.0)
    assert abs(w.numpy().std() - 2.0 * math.sqrt(2.0 / 500)) < 0.002
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        nn.init.kaiming_uniform_(ember.empty(2, 2), mode="fan_avg")
    # generator= is accepted everywhere
    g = ember.Generator().manual_seed(3) if hasattr(ember, "Generator") else None
    for fn in (nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_,
               nn.init.xavier_uniform_, nn.init.kaiming_normal_, nn.init.orthogonal_):
        fn(ember.empty(3, 3), generator=g)


# ---- compiled == eager ----------------------------------------------------------------

def _compiled_cases():
    ember.manual_seed(1)
    return {
        "conv1d": (nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ELU(), nn.Conv1d(4, 2, 3)),
                   (2, 3, 9)),
        "convT": (nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                   output_padding=1), nn.Mish()), (2, 3, 4, 4)),
        "groupnorm": (nn.Sequential(nn.GroupNorm(2, 4), nn.Hardtanh(), nn.Softplus()),
                      (2, 4, 3)),
        "batchnorm1d": (nn.Sequential(nn.BatchNorm1d(4), nn.ReLU6(), nn.Hardswish()), (6, 4)),
        "upsample": (nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(scale_factor=2, mode="bilinear"),
                                   nn.AdaptiveAvgPool2d((3, 5)), nn.SELU()), (1, 2, 3, 4)),
        "nearest": (nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(size=(5, 3)), nn.LeakyReLU(0.1)),
                    (1, 2, 3, 4)),
    }


@pytest.mark.parametrize("name", ["conv1d", "convT", "groupnorm", "batchnorm1d", "upsample",
                                  "nearest"])
def test_compiled_modules_equal_eager(name):
    model, shape = _compiled_cases()[name]
    f = ember.compile(lambda x: model(x))
    for _ in range(3):
        x = ember.randn(*shape)
        c = f(x)
        c.sum().backward()
        c_grads = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        e = model(x)
        e.sum().backward()
        np.testing.assert_allclose(c.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=1e-5)
        for p, g in zip(model.parameters(), c_grads):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-5)
        model.zero_grad()


@pytest.mark.parametrize("loss", ["smooth_l1", "huber", "kl", "bce_logits", "ce_smooth",
                                  "clip"])
def test_compiled_losses_and_clipping_equal_eager(loss):
    ember.manual_seed(2)
    lin = nn.Linear(5, 4)
    fns = {
        "smooth_l1": lambda o, y, t: F.smooth_l1_loss(o, y, beta=0.5),
        "huber": lambda o, y, t: nn.HuberLoss(delta=0.7)(o, y),
        "kl": lambda o, y, t: F.kl_div(o.log_softmax(-1), y.softmax(-1), reduction="batchmean"),
        "bce_logits": lambda o, y, t: F.binary_cross_entropy_with_logits(
            o, y.sigmoid(), pos_weight=ember.full((4,), 2.0)),
        "ce_smooth": lambda o, y, t: F.cross_entropy(o, t, label_smoothing=0.1, ignore_index=1,
                                                     weight=ember.tensor([1.0, 2.0, 0.5, 1.0])),
        "clip": lambda o, y, t: o.pow(2).sum() * 10,
    }

    def step(x, y, t):
        out = fns[loss](lin(x), y, t)
        out.backward()
        total = nn.utils.clip_grad_norm_(lin.parameters(), 0.5) if loss == "clip" else None
        return out, total

    f = ember.compile(step)
    for _ in range(4):
        x, y, t = ember.randn(6, 5), ember.randn(6, 4), ember.randint(0, 4, (6,))
        c_out, c_total = f(x, y, t)
        c_grads = [p.grad.numpy().copy() for p in lin.parameters()]
        lin.zero_grad()
        e_out, e_total = step(x, y, t)
        np.testing.assert_allclose(c_out.item(), e_out.item(), rtol=1e-5)
        if loss == "clip":
            np.testing.assert_allclose(c_total.item(), e_total.item(), rtol=1e-5)
        for p, g in zip(lin.parameters(), c_grads):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-6)
        lin.zero_grad()


def test_gaussian_nll_variance_shapes():
    a, b = RNG.standard_normal((5, 4)), RNG.standard_normal((5, 4))
    for var in (RNG.uniform(0.5, 2, size=(5,)), RNG.uniform(0.5, 2, size=(5, 1))):
        _compare_fn(lambda p, q, v: torch.nn.functional.gaussian_nll_loss(p, q, v),
                    lambda p, q, v: F.gaussian_nll_loss(p, q, v), [a, b, var])
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(ember.zeros(5, 4), ember.zeros(5, 4), ember.ones(3))
    with pytest.raises(ValueError, match="var has negative entry"):
        F.gaussian_nll_loss(ember.zeros(5, 4), ember.zeros(5, 4), -ember.ones(5, 4))


@pytest.mark.parametrize("kwargs", [{"max_norm": 1.0}, {"scale_grad_by_freq": True},
                                    {"padding_idx": 1}])
def test_compiled_embedding_options_equal_eager(kwargs):
    ember.manual_seed(3)
    ce, ee = nn.Embedding(6, 3, **kwargs), nn.Embedding(6, 3, **kwargs)
    ee.load_state_dict(ce.state_dict())
    f = ember.compile(lambda idx: (ce(idx) * ember.arange(3.0)).sum())
    for step in range(4):
        idx = ember.tensor([[0, 1, 1], [5, step, 1]])
        c = f(idx)
        c.backward()
        e = (ee(idx) * ember.arange(3.0)).sum()
        e.backward()
        np.testing.assert_allclose(c.item(), e.item(), rtol=1e-6)
        np.testing.assert_allclose(ce.weight.detach().numpy(), ee.weight.detach().numpy(),
                                   rtol=1e-6)
        np.testing.assert_allclose(ce.weight.grad.numpy(), ee.weight.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"scale_factor": 1.7, "mode": "bilinear"},
                                    {"scale_factor": (0.6, 2.9), "mode": "bilinear"},
                                    {"scale_factor": 2.3}, {"size": (3, 11),
                                                            "mode": "nearest-exact"}])
def test_interpolate_float32_picks_torchs_pixels(kwargs):
    # float32: the same source pixels (nearest) and weights to float32 rounding (linear)
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    a = F.interpolate(ember.tensor(x), **kwargs).numpy()
    b = torch.nn.functional.interpolate(torch.tensor(x), **kwargs).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-6)
    if "mode" not in kwargs or kwargs["mode"].startswith("nearest"):
        np.testing.assert_array_equal(a, b)


def test_init_private_helpers_and_deprecated_names():
    w = ember.empty(6, 4, 3)
    assert nn.init._calculate_correct_fan(w, "fan_out") == torch.nn.init._calculate_correct_fan(
        torch.empty(6, 4, 3), "fan_out") == 18
    assert nn.init._no_grad_fill_(w, 2.0).numpy().max() == 2.0
    with pytest.warns(FutureWarning, match="nn.init.constant_"):
        nn.init.constant(w, 1.0)
    assert w.numpy().min() == 1.0
    with pytest.warns(FutureWarning, match="nn.init.xavier_uniform_"):
        nn.init.xavier_uniform(ember.empty(3, 3))


@pytest.mark.parametrize("name,args,shape", [
    ("MaxPool1d", (3,), (2, 3, 10)), ("MaxPool1d", (3, 2, 1), (2, 3, 9)),
    ("MaxPool1d", (2, 1, 0, 2), (3, 8)), ("AvgPool1d", (2,), (2, 3, 9)),
    ("AvgPool1d", (3, 2, 1), (2, 3, 9)), ("AvgPool1d", (3, 2, 1, False, False), (2, 3, 8)),
    ("AdaptiveAvgPool1d", (4,), (2, 3, 10)), ("AdaptiveAvgPool1d", (1,), (3, 7)),
    ("AdaptiveMaxPool1d", (3,), (2, 3, 10)), ("AdaptiveMaxPool2d", ((2, 3),), (2, 3, 7, 8)),
    ("AdaptiveMaxPool2d", (1,), (3, 5, 5)), ("AdaptiveMaxPool2d", ((None, 2),), (1, 2, 4, 6)),
])
def test_pooling_1d_and_adaptive_max_match_torch(name, args, shape):
    tm, em = getattr(torch.nn, name)(*args), getattr(nn, name)(*args)
    assert repr(em) == repr(tm)
    _compare_fn(tm, em, [RNG.standard_normal(shape)])
    assert getattr(ember.nn.modules.pooling, name) is getattr(nn, name)


@pytest.mark.parametrize("args,kwargs,shape", [((4,), {}, (2, 3, 4)),
                                               (([3, 4],), {"eps": 1e-6}, (2, 3, 4)),
                                               ((5,), {"elementwise_affine": False}, (7, 5))])
def test_rmsnorm_matches_torch(args, kwargs, shape):
    tm, em = _pair_modules("RMSNorm", *args, **kwargs)
    if tm.weight is not None:
        with torch.no_grad():
            tm.weight.uniform_(0.5, 1.5)
        em.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    assert repr(em) == repr(tm)
    _compare_fn(tm, em, [RNG.standard_normal(shape)])
    x = RNG.standard_normal(shape).astype(np.float32)   # default eps: float32's epsilon
    norm_shape = tuple(args[0]) if isinstance(args[0], list) else (args[0],)
    np.testing.assert_allclose(F.rms_norm(ember.tensor(x), norm_shape).numpy(),
                               torch.nn.functional.rms_norm(torch.tensor(x), norm_shape).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input")
@pytest.mark.parametrize("name,shape", [("Dropout1d", (8, 16, 5)), ("Dropout2d", (8, 16, 3, 3)),
                                        ("Dropout3d", (4, 16, 2, 2, 2)),
                                        ("Dropout2d", (16, 3, 3))])
def test_channel_dropout_drops_whole_channels(name, shape):
    m = getattr(nn, name)(0.4)
    assert repr(m) == repr(getattr(torch.nn, name)(0.4))
    x = ember.ones(*shape)
    y = m(x).numpy()
    # (a 3-D input to Dropout2d is read as [N, C, L], as PyTorch does, with its warning)
    chan = y.reshape(shape[0], shape[1], -1)
    for c in chan.reshape(-1, chan.shape[-1]):
        assert set(np.unique(c)) <= {0.0, np.float32(1 / 0.6)} and len(np.unique(c)) == 1
    dropped = (chan[..., 0] == 0).mean()
    assert 0.15 < dropped < 0.65
    m.eval()
    assert m(x) is x
    with pytest.raises(ember.OpError, match="Expected"):
        getattr(nn, name)(0.4)(ember.ones(2))


def test_alpha_dropout_keeps_mean_and_variance():
    ember.manual_seed(0)
    x = ember.randn(200000)
    for m in (nn.AlphaDropout(0.2), nn.FeatureAlphaDropout(0.2)):
        inp = x.reshape(2000, 100, 1) if isinstance(m, nn.FeatureAlphaDropout) else x
        y = m(inp).numpy()
        assert abs(y.mean()) < 0.02 and abs(y.std() - 1.0) < 0.02
        m.eval()
        assert m(inp) is inp
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        F.alpha_dropout(x, 1.5, True)


@pytest.mark.parametrize("geom", [(5, 5, 2, 2, 0, 1), (7, 6, 3, 2, 1, 1), (10, 7, 3, 2, 1, 2),
                                  (4, 4, 2, 3, 1, 1), (8, 8, 3, 2, 1, 1), (5, 5, 3, 3, 1, 1)])
@pytest.mark.parametrize("kind", ["max", "max_idx", "avg_inc", "avg_exc", "avg_div"])
def test_ceil_mode_pooling_matches_torch(geom, kind):
    # ceil_mode=True raised NotImplementedError (GoogLeNet, SqueezeNet and many CNNs use it).
    torch = pytest.importorskip("torch")
    h, w, k, s, p, d = geom
    if kind.startswith("avg") and d != 1:
        pytest.skip("average pooling has no dilation")
    a = np.random.default_rng(h * w + k).standard_normal((2, 3, h, w)).astype(np.float32)

    def pool(lib, x):
        f = lib.nn.functional
        if kind.startswith("max"):
            return f.max_pool2d(x, k, s, p, d, ceil_mode=True, return_indices=kind == "max_idx")
        return f.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=kind == "avg_inc",
                            divisor_override=3 if kind == "avg_div" else None)

    xe, xt = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    oe, ot = pool(ember, xe), pool(torch, xt)
    if kind == "max_idx":
        np.testing.assert_array_equal(oe[1].numpy(), ot[1].numpy())
        oe, ot = oe[0], ot[0]
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-6, atol=1e-6)
    g = np.random.default_rng(1).standard_normal(tuple(ot.shape)).astype(np.float32)
    (oe * ember.tensor(g)).sum().backward()
    (ot * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    compiled = ember.compile(lambda x: pool(ember, x)[0] if kind == "max_idx" else pool(ember, x))
    for _ in range(3):
        np.testing.assert_allclose(compiled(xe.detach()).numpy(), ot.detach().numpy(),
                                   rtol=1e-6, atol=1e-6)


def test_ceil_mode_output_sizes_follow_the_last_window_rule():
    from ember.nn._functional.ceil_pool import out_size
    # floor((5 + 2 - 2) / 2) + 1 = 3, ceil would be 4 but its window starts in the padding
    assert out_size(5, 2, 2, 1) == 3
    assert out_size(5, 2, 2, 0) == 3 and out_size(6, 3, 2, 0) == 3 and out_size(7, 3, 2, 1) == 4
    assert ember.nn.MaxPool1d(2, ceil_mode=True)(ember.randn(1, 2, 5)).shape == (1, 2, 3)
    assert ember.nn.AvgPool1d(3, 2, ceil_mode=True)(ember.randn(1, 2, 6)).shape == (1, 2, 3)


def test_gumbel_softmax_samples_and_straight_through_gradient():
    ember.manual_seed(0)
    logits = ember.tensor(np.log([[0.7, 0.2, 0.1]]).repeat(4000, 0).astype(np.float32),
                          requires_grad=True)
    soft = F.gumbel_softmax(logits, tau=0.5)
    np.testing.assert_allclose(soft.sum(1).detach().numpy(), 1.0, rtol=1e-5)
    hard = F.gumbel_softmax(logits, tau=0.5, hard=True)
    h = hard.detach().numpy()
    assert set(np.unique(h)) == {0.0, 1.0} and (h.sum(1) == 1).all()
    # The argmax of logits + Gumbel noise is a sample of softmax(logits): 4000 draws.
    np.testing.assert_allclose(h.mean(0), [0.7, 0.2, 0.1], atol=0.03)
    w = ember.tensor(np.arange(3, dtype=np.float32))
    (hard * w).sum().backward()   # straight-through: the soft sample's gradient
    assert np.abs(logits.grad.numpy()).sum() > 0
    assert torch.cosine_similarity is not None and ember.cosine_similarity is F.cosine_similarity


def test_detect_anomaly_names_the_backward_that_made_a_nan():
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    with pytest.warns(UserWarning, match="Anomaly Detection"):
        guard = ember.autograd.detect_anomaly()
    with guard:
        assert ember.autograd.is_anomaly_enabled()
        with pytest.raises(RuntimeError, match="Function 'SqrtBackward0' returned nan values in "
                                               "its 0th output"):
            (x.sqrt() * 0).sum().backward()
    assert not ember.autograd.is_anomaly_enabled()
    (x.sqrt() * 0).sum().backward()   # off: the NaN gradient is accumulated, as torch's
    assert np.isnan(x.grad.numpy()[0])
    with ember.autograd.set_detect_anomaly(True):
        assert ember.autograd.is_anomaly_enabled()
    assert not ember.autograd.is_anomaly_enabled()


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_interpolate_keeps_torchs_layout(mode):
    """DINO's interpolate_pos_encoding permutes a channels_last result back to NHWC and
    calls view: torch keeps a channels_last input's layout (ember returned NCHW, and the
    view raised); any other input gives a contiguous result (nearest gave a strided view)."""
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((1, 4, 4, 8)).astype(np.float32)
    e = F.interpolate(ember.tensor(a).permute(0, 3, 1, 2), scale_factor=(0.55, 0.55), mode=mode)
    t = torch.nn.functional.interpolate(torch.tensor(a).permute(0, 3, 1, 2),
                                        scale_factor=(0.55, 0.55), mode=mode)
    assert e.stride() == t.stride()
    np.testing.assert_allclose(e.permute(0, 2, 3, 1).view(1, -1, 8).numpy(),
                               t.permute(0, 2, 3, 1).reshape(1, -1, 8).numpy(), atol=1e-6)
    x = ember.ones(1, 2, 3, 3)
    assert F.interpolate(x, scale_factor=2, mode=mode).is_contiguous()


def test_repeat_makes_memory_of_its_own():
    # repeats over sizes of 1 returned a stride-0 view of the input: writing the result
    # wrote the input (and ``div_`` on it raised), where torch's repeat copies
    x = ember.arange(6.0).reshape(1, 2, 3)
    y = x.repeat(2, 1, 1)
    y[0, 0, 0] = 5.0
    assert float(x[0, 0, 0]) == 0.0 and float(y[1, 0, 0]) == 0.0
    a = ember.ones(3, 1)
    b = a.repeat(1, 4)
    b.div_(2.0)
    assert a.flatten().tolist() == [1.0] * 3 and b.stride() == (4, 1)
    c = x.repeat(1, 1, 1)
    c.add_(1.0)
    assert float(x.sum()) == 15.0


def test_dropout2d_on_2d_input_warns_and_drops_elements():
    x = ember.ones(64, 32)
    with pytest.warns(UserWarning, match="2-D input to dropout2d"):
        y = F.dropout2d(x, 0.5, training=True)
    kept = (y != 0).float()
    assert 0.3 < float(kept.mean()) < 0.7 and 0 < float(kept[:, 0].mean()) < 1
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    with pytest.warns(UserWarning):
        assert nn.Dropout2d(0.5).eval()(x) is x


def test_is_device_flags_of_devices_ember_lacks():
    x = ember.ones(2)
    assert not (x.is_xpu or x.is_mps or x.is_meta or x.is_xla)


def test_a_module_under_two_names_is_in_the_state_dict_twice():
    # (TCN's conv1 is also net[0]; BYOL's net is also online_encoder.net): torch lists
    # both names, so its checkpoints did not load ("Unexpected key(s)")
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Linear(2, 2)
            self.net = nn.Sequential(self.conv1, nn.ReLU())

    block = Block()
    assert list(block.state_dict()) == ["conv1.weight", "conv1.bias", "net.0.weight",
                                        "net.0.bias"]
    other = Block()
    assert not other.load_state_dict(block.state_dict()).missing_keys
    np.testing.assert_array_equal(other.net[0].weight.detach().numpy(),
                                  block.conv1.weight.detach().numpy())
    assert len(list(block.parameters())) == 2


@pytest.mark.parametrize("name", ["silu", "mish", "hardswish", "hardsigmoid", "elu", "relu6",
                                  "leaky_relu", "selu", "celu", "hardtanh"])
def test_inplace_activations_backward_as_torch(name):
    # torchvision's Conv2dNormActivation makes Hardswish/SiLU(inplace=True): silu, mish
    # and hardswish raised "modified by an inplace operation" in backward
    torch = pytest.importorskip("torch")
    values = [[1.0, -2.0, 0.5, 4.0, -4.0]]
    w, wt = ember.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y = getattr(F, name)(w * 3.0, inplace=True)
    yt = getattr(torch.nn.functional, name)(wt * 3.0, inplace=True)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_masked_fill_takes_the_value_in_the_tensors_dtype():
    # float64 went through the default dtype: 0.1 became 0.10000000149 and
    # -finfo(float64).max became -inf (x-transformers' float64 attention: NaN rows)
    m = ember.tensor([True, False])
    x = ember.zeros(2, dtype=ember.float64)
    assert x.masked_fill(m, 0.1).tolist() == [0.1, 0.0]
    big = -ember.finfo(ember.float64).max
    assert x.masked_fill(m, big).tolist() == [big, 0.0]
    x.masked_fill_(m, 0.1)
    assert x.tolist() == [0.1, 0.0]
    compiled = ember.compile(lambda t, k: t.masked_fill(k, 0.1))
    for _ in range(3):
        assert compiled(ember.zeros(2, dtype=ember.float64), m).tolist() == [0.1, 0.0]
    with pytest.raises(RuntimeError, match="without overflow"):
        ember.zeros(2).masked_fill(m, big)   # as torch: not silently -inf
    assert ember.zeros(2).masked_fill(m, float("-inf")).tolist()[0] == float("-inf")


def test_tensors_take_attributes_as_torchs():
    # BERT-pytorch's positional embedding sets ``pe.require_grad = False`` (a typo torch
    # takes); programs mark parameters (``p.is_shared = True``)
    import copy
    t = ember.ones(2)
    t.require_grad = False
    t.tag = {"k": 1}
    assert t.tag == {"k": 1} and not t.requires_grad
    c = copy.deepcopy(t)
    assert c.tag == {"k": 1} and c.tag is not t.tag
    p = nn.Parameter(ember.ones(2))
    p.is_shared = True
    assert copy.deepcopy(p).is_shared
