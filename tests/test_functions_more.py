"""lerp..kron, cdist..unique, median/quantile, scatter_reduce/index_add, unfold/fold,
pixel shuffles, pad_sequence, PolynomialLR and swa_utils: values, gradients and errors
against PyTorch (where installed) and NumPy."""
import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")
rng = np.random.default_rng(0)


def E(a, rg=False):
    return ember.tensor(np.array(a), requires_grad=rg)


def T(a, rg=False):
    return torch.tensor(np.array(a), requires_grad=rg)


def close(e, t, tol=1e-5):
    e = e.detach().numpy() if isinstance(e, ember.Tensor) else np.asarray(e)
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    assert e.shape == t.shape, (e.shape, t.shape)
    np.testing.assert_allclose(e, t, rtol=tol, atol=tol, equal_nan=True)


def grads_match(fe, ft, *arrays, tol=1e-5):
    """Forward values and input gradients (of sum(out * w)) agree with torch."""
    es = [E(a, True) for a in arrays]
    ts = [T(a, True) for a in arrays]
    oe, ot = fe(*es), ft(*ts)
    close(oe, ot, tol)
    w = rng.standard_normal(tuple(ot.shape))
    (oe * E(w)).sum().backward()
    (ot * T(w)).sum().backward()
    for e, t in zip(es, ts):
        close(e.grad, t.grad, tol)


def test_lerp_addcmul_addcdiv_with_grad():
    a, b, c = (rng.standard_normal((3, 4)) for _ in range(3))
    grads_match(lambda x, y: ember.lerp(x, y, 0.3), lambda x, y: torch.lerp(x, y, 0.3), a, b)
    grads_match(lambda x, y, w: ember.lerp(x, y, w), lambda x, y, w: torch.lerp(x, y, w),
                a, b, c)
    grads_match(lambda x, y, z: ember.addcmul(x, y, z, value=0.5),
                lambda x, y, z: torch.addcmul(x, y, z, value=0.5), a, b, c)
    grads_match(lambda x, y, z: x.addcdiv(y, z + 3, value=2),
                lambda x, y, z: x.addcdiv(y, z + 3, value=2), a, b, c)
    x = E(a.copy())
    x.lerp_(E(b), 0.25)
    close(x, torch.tensor(a).lerp(torch.tensor(b), 0.25))
    with pytest.raises(RuntimeError, match="Integer division"):
        ember.addcdiv(E([1, 2]), E([1, 2]), E([1, 1]))


@pytest.mark.parametrize("n,dim", [(1, -1), (2, 1), (1, 0), (3, -1)])
def test_diff(n, dim):
    a = rng.standard_normal((4, 5))
    grads_match(lambda x: ember.diff(x, n, dim), lambda x: torch.diff(x, n, dim), a)
    p = rng.standard_normal((4, 5))
    close(ember.diff(E(a), n, dim, prepend=E(p), append=E(p)),
          torch.diff(T(a), n, dim, prepend=T(p), append=T(p)))
    close(E(a).diff(), T(a).diff())
    close(ember.diff(E([True, False, False])), torch.diff(T([True, False, False])))


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_cartesian_prod(indexing):
    xs = [np.arange(2), np.arange(3) * 10, np.arange(4) * 100]
    for k in (1, 2, 3):
        ge = ember.meshgrid(*[E(x) for x in xs[:k]], indexing=indexing)
        gt = torch.meshgrid(*[T(x) for x in xs[:k]], indexing=indexing)
        assert len(ge) == len(gt)
        for e, t in zip(ge, gt):
            close(e, t)
        close(ember.cartesian_prod(*[E(x) for x in xs[:k]]),
              torch.cartesian_prod(*[T(x) for x in xs[:k]]))
    with pytest.raises(ValueError):
        ember.meshgrid(E([1]), indexing="yx")


def test_take_along_dim_count_nonzero_kron():
    a = rng.standard_normal((3, 4))
    idx = np.argsort(a, axis=1)
    grads_match(lambda x: ember.take_along_dim(x, E(idx), 1),
                lambda x: torch.take_along_dim(x, T(idx), 1), a)
    close(ember.take_along_dim(E(a), E(idx[:, :1]), 1),
          torch.take_along_dim(T(a), T(idx[:, :1]), 1))
    close(ember.take_along_dim(E(a), E([0, 5, 11])), torch.take_along_dim(T(a), T([0, 5, 11])))
    i32 = np.array([0, 5], np.int32)
    close(ember.take_along_dim(E(a), E(i32)), torch.take_along_dim(T(a), T(i32)))
    b = np.array([[0, 1, 0], [2, 0, 3]])
    close(ember.count_nonzero(E(b)), torch.count_nonzero(T(b)))
    close(E(b).count_nonzero(1), T(b).count_nonzero(1))
    assert ember.count_nonzero(E(b)).dtype == ember.int64
    for sa, sb in [((2, 3), (4, 5)), ((2,), (3, 2)), ((2, 1, 3), (2, 2))]:
        grads_match(ember.kron, torch.kron, rng.standard_normal(sa), rng.standard_normal(sb))
    close(E(np.eye(2)).kron(E(np.ones((2, 2)))),
          torch.kron(torch.eye(2).double(), torch.ones(2, 2).double()))


@pytest.mark.parametrize("r,c,off", [(3, 3, 0), (4, 2, 1), (2, 5, -1), (0, 3, 0)])
def test_tri_indices(r, c, off):
    close(ember.tril_indices(r, c, off), torch.tril_indices(r, c, off))
    close(ember.triu_indices(r, c, off), torch.triu_indices(r, c, off))
    assert ember.tril_indices(r, c, off).dtype == ember.int64


def test_std_mean_var_mean():
    a = rng.standard_normal((3, 4))
    for kw in ({}, {"dim": 1}, {"dim": 0, "keepdim": True}, {"dim": 1, "correction": 0}):
        for fe, ft in ((ember.std_mean, torch.std_mean), (ember.var_mean, torch.var_mean)):
            for e, t in zip(fe(E(a), **kw), ft(T(a), **kw)):
                close(e, t)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, float("inf"), 0.0])
def test_cdist(p):
    a, b = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3))
    b[0, 0] = a[0, 0]          # a zero distance: its gradient must not be NaN
    if p == 0:
        close(ember.cdist(E(a), E(b), p), torch.cdist(T(a), T(b), p))
    else:
        grads_match(lambda x, y: ember.cdist(x, y, p), lambda x, y: torch.cdist(x, y, p), a, b)
    ref = (np.abs(a[:, :, None] - b[:, None]) ** 2).sum(-1) ** 0.5
    close(ember.cdist(E(a), E(b)), ref)
    with pytest.raises(RuntimeError):
        ember.cdist(E(a), E(rng.standard_normal((2, 5, 2))))


def test_isin_bucketize_searchsorted():
    x = np.array([[1, 5, 3], [7, 2, 2]])
    t = np.array([2, 3, 9])
    for inv in (False, True):
        close(ember.isin(E(x), E(t), invert=inv), torch.isin(T(x), T(t), invert=inv))
    close(ember.isin(E(x), 3), torch.isin(T(x), 3))
    seq = np.array([0.0, 1.0, 1.0, 2.5])
    v = np.array([[-1.0, 1.0, 2.0], [2.5, 3.0, 0.0]])
    for right in (False, True):
        close(ember.searchsorted(E(seq), E(v), right=right),
              torch.searchsorted(T(seq), T(v), right=right))
        close(ember.bucketize(E(v), E(seq), right=right),
              torch.bucketize(T(v), T(seq), right=right))
    close(ember.searchsorted(E(seq), E(v), side="right"),
          torch.searchsorted(T(seq), T(v), side="right"))
    seq2 = np.sort(rng.standard_normal((2, 5)), 1)
    v2 = rng.standard_normal((2, 3))
    close(ember.searchsorted(E(seq2), E(v2)), torch.searchsorted(T(seq2), T(v2)))
    close(ember.searchsorted(E(seq), 1.0), torch.searchsorted(T(seq), 1.0))
    assert ember.searchsorted(E(seq), E(v), out_int32=True).dtype == ember.int32
    np.testing.assert_array_equal(ember.searchsorted(E(seq), E(v)).numpy(),
                                  np.searchsorted(seq, v))
    with pytest.raises(RuntimeError, match="opposites"):
        ember.searchsorted(E(seq), E(v), right=True, side="left")


def test_bincount_unique():
    x = np.array([1, 4, 1, 0, 4, 4])
    w = rng.standard_normal(6)
    close(ember.bincount(E(x)), torch.bincount(T(x)))
    close(ember.bincount(E(x), E(w), minlength=8), torch.bincount(T(x), T(w), minlength=8))
    close(E(x).bincount(minlength=2), T(x).bincount(minlength=2))
    assert ember.bincount(E(x)).dtype == ember.int64
    with pytest.raises(RuntimeError):
        ember.bincount(E([-1, 2]))
    y = np.array([[3, 1], [1, 3], [3, 1]])
    for inv in (False, True):
        for cnt in (False, True):
            re = ember.unique(E(y), return_inverse=inv, return_counts=cnt)
            rt = torch.unique(T(y), return_inverse=inv, return_counts=cnt)
            for e, t in zip(re if isinstance(re, tuple) else (re,),
                            rt if isinstance(rt, tuple) else (rt,)):
                close(e, t)
    for e, t in zip(ember.unique(E(y), dim=0, return_inverse=True, return_counts=True),
                    torch.unique(T(y), dim=0, return_inverse=True, return_counts=True)):
        close(e, t)
    close(E(y).unique(), T(y).unique())


def test_unique_compiled_runs_eagerly():
    @ember.compile
    def f(x):
        return ember.unique(x * 2, return_counts=True)
    x = np.array([3, 1, 3, 2])
    for e, t in zip(f(E(x)), torch.unique(T(x) * 2, return_counts=True)):
        close(e, t)


def test_median_quantile():
    a = rng.standard_normal((4, 7))
    close(ember.median(E(a)), torch.median(T(a)))
    close(ember.median(E(a[:, :6])), torch.median(T(a[:, :6])))
    for keep in (False, True):
        ve, ie = ember.median(E(a), 1, keepdim=keep)
        vt, it = torch.median(T(a), 1, keepdim=keep)
        close(ve, vt)
        close(ie[:3], it[:3])      # which NaN an all-NaN row names is PyTorch's detail
    grads_match(lambda x: x.median(0).values, lambda x: x.median(0).values, a)
    n = a.copy()
    n[1, 3] = n[1, 5] = np.nan
    n[3, :] = np.nan
    close(ember.median(E(n)), torch.median(T(n)))
    close(ember.nanmedian(E(n)), torch.nanmedian(T(n)))
    for fe, ft in ((ember.median, torch.median), (ember.nanmedian, torch.nanmedian)):
        ve, ie = fe(E(n), 1)
        vt, it = ft(T(n), 1)
        close(ve, vt)
        close(ie[:3], it[:3])      # which NaN an all-NaN row names is PyTorch's detail
    for interp in ("linear", "lower", "higher", "midpoint", "nearest"):
        for q in (0.3, [0.0, 0.25, 0.5, 1.0]):
            qe = q if isinstance(q, float) else E(q)
            qt = q if isinstance(q, float) else T(q)
            close(ember.quantile(E(a), qe, interpolation=interp),
                  torch.quantile(T(a), qt, interpolation=interp))
            for dim, keep in ((1, False), (0, True), (-1, True)):
                close(ember.quantile(E(a), qe, dim, keep, interpolation=interp),
                      torch.quantile(T(a), qt, dim, keep, interpolation=interp))
    grads_match(lambda x: ember.quantile(x, 0.37, 1), lambda x: torch.quantile(x, 0.37, 1), a)
    b = a.copy()
    b[0, 2] = np.nan
    b[2, :] = np.nan
    close(ember.quantile(E(b), 0.4, 1), torch.quantile(T(b), 0.4, 1))
    close(ember.nanquantile(E(b), E([0.1, 0.9]), 1), torch.nanquantile(T(b), T([0.1, 0.9]), 1))
    close(ember.nanquantile(E(b), 0.5), torch.nanquantile(T(b), 0.5))
    close(ember.quantile(E(a), 0.5), np.quantile(a, 0.5))
    with pytest.raises(RuntimeError):
        ember.quantile(E(a), 1.5)


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce(reduce, include_self):
    base = rng.standard_normal((3, 4))
    src = rng.standard_normal((5, 4))
    idx = np.array([[0, 1, 2, 0], [2, 2, 0, 1], [0, 0, 0, 0], [1, 2, 2, 0], [0, 1, 1, 1]])
    e = E(base).scatter_reduce(0, E(idx), E(src), reduce, include_self=include_self)
    t = T(base).scatter_reduce(0, T(idx), T(src), reduce, include_self=include_self)
    close(e, t)
    if reduce in ("sum", "mean"):
        grads_match(lambda b, s: b.scatter_reduce(0, E(idx), s, reduce, include_self=include_self),
                    lambda b, s: b.scatter_reduce(0, T(idx), s, reduce, include_self=include_self),
                    base, src)
    x = E(base.copy())
    x.scatter_reduce_(0, E(idx), E(src), reduce, include_self=include_self)
    close(x, t)
    ie = E(np.array([5, 1, 7])).scatter_reduce(0, E([0, 0, 2]), E([2, 3, 4]), reduce,
                                                include_self=include_self)
    it = T(np.array([5, 1, 7])).scatter_reduce(0, T([0, 0, 2]), T([2, 3, 4]), reduce,
                                                include_self=include_self)
    close(ie, it)


def test_index_add():
    base, src = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    idx = np.array([2, 0])
    grads_match(lambda b, s: b.index_add(1, E(idx), s, alpha=2.0),
                lambda b, s: b.index_add(1, T(idx), s, alpha=2.0), base, src[:, :2])
    x = E(np.zeros((3, 5)))
    a = rng.standard_normal((4, 5))
    x.index_add_(0, E([0, 2, 0, 1]), E(a))
    close(x, torch.zeros(3, 5, dtype=torch.float64).index_add_(0, T([0, 2, 0, 1]), T(a)))
    close(ember.index_add(E(np.zeros(3)), 0, E([1, 1]), E([1.0, 2.0])),
          torch.index_add(torch.zeros(3, dtype=torch.float64), 0, T([1, 1]), T([1.0, 2.0])))


@pytest.mark.parametrize("k,d,p,s", [(2, 1, 0, 1), ((2, 3), 1, 1, 2), (3, 2, 1, 1), (2, 1, 0, 2)])
def test_unfold_fold(k, d, p, s):
    a = rng.standard_normal((2, 3, 7, 6))
    TF = torch.nn.functional
    grads_match(lambda x: F.unfold(x, k, d, p, s), lambda x: TF.unfold(x, k, d, p, s), a)
    cols = TF.unfold(T(a), k, d, p, s).detach().numpy()
    grads_match(lambda c: F.fold(c, (7, 6), k, d, p, s),
                lambda c: TF.fold(c, (7, 6), k, d, p, s), cols)
    close(nn.Unfold(k, d, p, s)(E(a[0])), torch.nn.Unfold(k, d, p, s)(T(a[0])))
    close(nn.Fold((7, 6), k, d, p, s)(E(cols[0])), torch.nn.Fold((7, 6), k, d, p, s)(T(cols[0])))
    with pytest.raises(RuntimeError):
        F.fold(E(cols), (8, 8), k, d, p, s)


def test_pixel_shuffle():
    a = rng.standard_normal((2, 18, 3, 4))
    TF = torch.nn.functional
    grads_match(lambda x: F.pixel_shuffle(x, 3), lambda x: TF.pixel_shuffle(x, 3), a)
    grads_match(lambda x: F.pixel_unshuffle(x, 2), lambda x: TF.pixel_unshuffle(x, 2),
                rng.standard_normal((2, 3, 4, 6)))
    close(nn.PixelShuffle(3)(E(a[0])), torch.nn.PixelShuffle(3)(T(a[0])))
    close(nn.PixelUnshuffle(3)(nn.PixelShuffle(3)(E(a))), a)
    with pytest.raises(RuntimeError):
        F.pixel_shuffle(E(a), 4)


def test_compiled_matches_eager():
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    img = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)

    def f(x, y, im):
        return (ember.cdist(x, y).sum() + ember.lerp(x, x * 2, 0.3).sum()
                + ember.quantile(x, 0.4, 1).sum() + ember.diff(x).sum()
                + ember.kron(x, y).sum() + F.unfold(im, 2).sum()
                + F.pixel_shuffle(im, 2).mean() + x.index_add(0, E([0, 0]), x[:2]).sum()
                + ember.searchsorted(ember.tensor([0.0, 0.5]), x).sum())
    cf = ember.compile(f)
    for _ in range(2):
        close(cf(E(a), E(b), E(img)), f(E(a), E(b), E(img)), 1e-4)


def test_pad_sequence():
    seqs = [rng.standard_normal((n, 2)) for n in (3, 1, 4)]
    for bf in (False, True):
        for side in ("right", "left"):
            e = nn.utils.rnn.pad_sequence([E(s) for s in seqs], batch_first=bf,
                                          padding_value=-1.0, padding_side=side)
            t = torch.nn.utils.rnn.pad_sequence([T(s) for s in seqs], batch_first=bf,
                                                padding_value=-1.0, padding_side=side)
            close(e, t)
    xs = [E(s, True) for s in seqs]
    nn.utils.rnn.pad_sequence(xs, True).sum().backward()
    close(xs[0].grad, np.ones((3, 2)))
    with pytest.raises(ValueError):
        nn.utils.rnn.pad_sequence(xs, padding_side="middle")


def _lrs(sched_e, opt_e, sched_t, opt_t, steps=8):
    for _ in range(steps):
        opt_e.step(); opt_t.step()
        sched_e.step(); sched_t.step()
        assert opt_e.param_groups[0]["lr"] == pytest.approx(opt_t.param_groups[0]["lr"])


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_polynomial_lr(power):
    oe = ember.optim.SGD([ember.zeros(1, requires_grad=True)], lr=0.1)
    ot = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    _lrs(ember.optim.lr_scheduler.PolynomialLR(oe, total_iters=5, power=power), oe,
         torch.optim.lr_scheduler.PolynomialLR(ot, total_iters=5, power=power), ot)


@pytest.mark.parametrize("strategy,epochs", [("cos", 3), ("linear", 4), ("cos", 0)])
def test_swalr(strategy, epochs):
    oe = ember.optim.SGD([ember.zeros(1, requires_grad=True)], lr=0.5)
    ot = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    _lrs(ember.optim.swa_utils.SWALR(oe, 0.05, epochs, strategy), oe,
         torch.optim.swa_utils.SWALR(ot, 0.05, epochs, strategy), ot)


@pytest.mark.parametrize("kind", ["swa", "ema_multi", "ema", "swa_fn"])
def test_averaged_model(kind):
    fns = {"swa": {}, "ema_multi": {"multi_avg_fn": "get_ema_multi_avg_fn"},
           "ema": {"avg_fn": "get_ema_avg_fn"}, "swa_fn": {"avg_fn": "get_swa_avg_fn"}}[kind]

    def kw(mod):
        return {k: getattr(mod, v)(*([0.9] if "ema" in v else [])) for k, v in fns.items()}
    me, mt = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ae = ember.optim.swa_utils.AveragedModel(me, **kw(ember.optim.swa_utils))
    at = torch.optim.swa_utils.AveragedModel(mt, **kw(torch.optim.swa_utils))
    for _ in range(4):
        w, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
        with ember.no_grad():
            me.weight.copy_(E(w).float()); me.bias.copy_(E(b).float())
        with torch.no_grad():
            mt.weight.copy_(T(w)); mt.bias.copy_(T(b))
        ae.update_parameters(me)
        at.update_parameters(mt)
        close(ae.module.weight, at.module.weight)
        close(ae.module.bias, at.module.bias)
    assert int(ae.n_averaged.item()) == 4
    x = rng.standard_normal((5, 3)).astype(np.float32)
    close(ae(E(x)), at(T(x)))


def test_update_bn_as_torch():
    def net(mod):
        return mod.nn.Sequential(mod.nn.Linear(3, 4), mod.nn.BatchNorm1d(4), mod.nn.ReLU())
    me, mt = net(ember), net(torch)
    me.load_state_dict({k: E(v.detach().numpy()) for k, v in mt.state_dict().items()})
    batches = [rng.standard_normal((6, 3)).astype(np.float32) for _ in range(3)]
    ember.optim.swa_utils.update_bn([(E(b), 0) for b in batches], me)
    torch.optim.swa_utils.update_bn([(T(b), 0) for b in batches], mt)
    close(me[1].running_mean, mt[1].running_mean)
    close(me[1].running_var, mt[1].running_var)
    assert me[1].momentum == 0.1 and me.training


def test_a_compiled_average_update_replays():
    # update_parameters read the count as an int: every call was a new value at a graph
    # break, so a compiled EMA step recompiled until it ran eagerly
    model = nn.Linear(3, 2)
    avg = ember.optim.swa_utils.AveragedModel(model)
    twin = ember.optim.swa_utils.AveragedModel(model)
    step = ember.compile(lambda: avg.update_parameters(model))
    for _ in range(6):
        with ember.no_grad():
            model.weight.add_(0.5)
        step()
        twin.update_parameters(model)
        close(avg.module.weight, twin.module.weight)
    assert step.stats()["cache_hits"] >= 2 and not step.stats()["fallbacks"]


def test_compiled_value_checks_and_data_dependent():
    x = E(rng.standard_normal((3, 5)).astype(np.float32))
    q = E(np.array([0.2, 0.7], np.float32))
    f = ember.compile(lambda x, q: ember.quantile(x, q, 1) + x.median(1).values)
    for _ in range(2):
        close(f(x, q), ember.quantile(x, q, 1) + x.median(1).values)
    g = ember.compile(lambda i: ember.bincount(i + 1, minlength=3) * 2)
    for v in ([0, 2, 2], [0, 2, 2], [1, 1, 5]):
        close(g(E(v)), torch.bincount(T(v) + 1, minlength=3) * 2)
    with pytest.raises(NotImplementedError, match="'Double'"):
        ember.bincount(E([0.5, 1.0]))


def test_histc_block_diag_tensor_unfold():
    a = rng.standard_normal(50)
    for bins, lo, hi in ((10, 0, 0), (7, -1.0, 1.0), (3, 0.5, 0.5)):
        close(ember.histc(E(a), bins, lo, hi), torch.histc(T(a), bins, lo, hi))
    close(E(np.ones(4)).histc(4), T(np.ones(4)).histc(4))
    counts, _ = np.histogram(a, bins=5, range=(-1, 1))
    close(ember.histc(E(a), 5, -1, 1), counts.astype(np.float64))
    f = ember.compile(lambda x: ember.histc(x * 2, 6))
    for _ in range(2):
        close(f(E(a)), torch.histc(T(a) * 2, 6))
    with pytest.raises(NotImplementedError):
        ember.histc(E([1, 2]))
    blocks = [rng.standard_normal((2, 3)), np.array(4.0), rng.standard_normal(2)]
    grads_match(lambda *t: ember.block_diag(*t), lambda *t: torch.block_diag(*t), *blocks)
    close(ember.block_diag(E([[1, 2]]), E([3.5])), torch.block_diag(T([[1, 2]]), T([3.5])))
    x = rng.standard_normal((3, 7, 2))
    for dim, size, step in ((1, 3, 2), (0, 1, 1), (-1, 2, 1), (1, 7, 3)):
        grads_match(lambda t: t.unfold(dim, size, step), lambda t: t.unfold(dim, size, step), x)
    with pytest.raises(RuntimeError, match="maximum size"):
        E(x).unfold(0, 4, 1)
