"""The Tensor methods and top-level names of ``ember.tensor_extra`` and
``ember.functions_extra``, against torch: values, dtypes, shapes, gradients, errors, and
compiled == eager."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import ember
from conftest import assert_close

torch = pytest.importorskip("torch")
rng = np.random.default_rng(7)


def _pair(*shape, dtype=np.float32, grad=False):
    a = rng.standard_normal(shape).astype(dtype)
    e, t = ember.tensor(a), torch.tensor(a)
    if grad:
        e.requires_grad_(True)
        t.requires_grad_(True)
    return e, t


def _same(e, t, **kw):
    if isinstance(e, (tuple, list)):
        assert len(e) == len(t)
        for a, b in zip(e, t):
            _same(a, b, **kw)
        return
    assert_close(e.detach() if isinstance(e, ember.Tensor) else e,
                 t.detach() if isinstance(t, torch.Tensor) else t, **kw)


def _grads(fn_e, fn_t, *pairs, tol=1e-4):
    """fn's value and the gradients of its inputs agree with torch's."""
    ye, yt = fn_e(*(p[0] for p in pairs)), fn_t(*(p[1] for p in pairs))
    _same(ye, yt, rtol=tol, atol=tol)
    w = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    (ye * ember.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    for e, t in pairs:
        _same(e.grad, t.grad, rtol=tol, atol=tol)


def test_constants_and_metadata():
    for name in ("inf", "nan", "pi", "e", "newaxis"):
        a, b = getattr(ember, name), getattr(torch, name)
        assert a == b or (a != a and b != b)
    e, t = _pair(2, 3)
    assert e.is_cpu and e.get_device() == t.get_device() == -1
    assert e.ndimension() == 2 and not e.is_meta and not e.is_pinned()
    assert not e.is_conj() and not e.is_neg() and e.resolve_conj() is e and e.resolve_neg() is e
    for dt in ("uint8", "bool", "int8", "float32", "complex64"):
        assert (ember.zeros(1, dtype=getattr(ember, dt)).is_signed()
                == ember.is_signed(ember.zeros(1, dtype=getattr(ember, dt)))
                == torch.zeros(1, dtype=getattr(torch, dt)).is_signed())
    assert not e.is_inference()
    with ember.inference_mode():
        assert ember.zeros(2).is_inference()
    if not ember.cuda.is_available():
        with pytest.raises(RuntimeError, match="accelerator"):
            e.pin_memory()


def test_retains_grad_and_new():
    x = ember.ones(2, requires_grad=True)
    y = x * 2
    assert not y.retains_grad
    y.retain_grad()
    x.retain_grad()
    assert y.retains_grad and not x.retains_grad      # a leaf: no-op, as torch
    e, t = _pair(2)
    for args in ((), (2, 3), (ember.Size([4]),)):
        targs = tuple(torch.Size(a) if isinstance(a, ember.Size) else a for a in args)
        assert e.new(*args).shape == t.new(*targs).shape
        assert e.new(*args).dtype is ember.float32
    _same(e.new([1, 2]), t.new([1, 2]))
    _same(e.new((2, 3)), t.new((2, 3)))               # a tuple is data, not a size
    assert e.new(e) is e
    with pytest.raises(TypeError):
        e.new(ember.tensor([1, 2]))


def test_comparisons_in_place_and_aliases():
    e, t = _pair(3, 4)
    o = rng.standard_normal(4).astype(np.float32)
    for name in ("greater", "greater_equal", "less", "less_equal", "not_equal"):
        _same(getattr(e, name)(ember.tensor(o)), getattr(t, name)(torch.tensor(o)))
        _same(getattr(ember, name)(e, 0.1), getattr(torch, name)(t, 0.1))
    for name in ("eq_", "ne_", "lt_", "le_", "gt_", "ge_", "greater_", "less_equal_",
                 "not_equal_", "greater_equal_", "less_"):
        a, b = e.clone(), t.clone()
        ra, rb = getattr(a, name)(ember.tensor(o)), getattr(b, name)(torch.tensor(o))
        assert ra is a
        _same(a, b)
    i = ember.tensor([1, 5, 3])
    i.gt_(2)
    assert i.dtype is ember.int64 and i.tolist() == [0, 1, 1]


def test_shape_helpers():
    e, t = _pair(2, 3, 4)
    _same(e.ravel(), t.ravel())
    _same(ember.ravel(e.transpose(0, 2)), torch.ravel(t.transpose(0, 2)))
    assert e.ravel()._base is not None                  # a view when contiguous
    _same(e.split_with_sizes([1, 3], 2), t.split_with_sizes([1, 3], 2))
    _same(ember.split_with_sizes(e, [2, 1], dim=1), torch.split_with_sizes(t, [2, 1], dim=1))
    with pytest.raises(RuntimeError, match="sum exactly"):
        e.split_with_sizes([1, 2], 2)
    _same(e.unsafe_chunk(2, 2), t.unsafe_chunk(2, 2))
    _same(ember.unsafe_split(e, 2, 1), torch.unsafe_split(t, 2, 1))
    _same(ember.as_strided(e, (2, 2), (1, 2)), torch.as_strided(t, (2, 2), (1, 2)))
    m, tm = _pair(2, 3)
    _same(m.H, tm.H)
    _same(e.mH, t.mH)
    c = np.array([[1 + 2j, 3 - 1j]], dtype=np.complex64)
    _same(ember.tensor(c).H, torch.tensor(c).H.resolve_conj())
    _same(ember.tensor(c).mH, torch.tensor(c).mH.resolve_conj())
    with pytest.raises(RuntimeError, match="only supported on matrices"):
        e.H


def test_sum_to_size_with_grad():
    e, t = _pair(2, 3, 4, grad=True)
    for size in ((3, 1), (1, 3, 4), (4,), (2, 1, 1), (2, 3, 4)):
        e.grad = None
        t.grad = None
        _grads(lambda x: x.sum_to_size(*size), lambda x: x.sum_to_size(*size), (e, t))
    _same(e.sum_to_size((3, 4)), t.sum_to_size((3, 4)))
    with pytest.raises(RuntimeError, match="not expandable"):
        e.sum_to_size(2, 4)


def test_fill_diagonal():
    for shape, wrap in (((3, 3), False), ((7, 3), False), ((7, 3), True), ((3, 5), True),
                        ((3, 3, 3), False)):
        e, t = _pair(*shape)
        assert e.fill_diagonal_(2.5, wrap) is e
        t.fill_diagonal_(2.5, wrap)
        _same(e, t)
    with pytest.raises(RuntimeError):
        ember.zeros(3).fill_diagonal_(1)
    with pytest.raises(RuntimeError):
        ember.zeros(2, 3, 4).fill_diagonal_(1)


def test_cross_put_heaviside():
    (a, ta), (b, tb) = _pair(4, 3, grad=True), _pair(4, 3, grad=True)
    _grads(lambda x, y: x.cross(y), lambda x, y: x.cross(y, dim=1), (a, ta), (b, tb))
    _same(ember.cross(a, b, dim=1), torch.cross(ta, tb, dim=1))
    e, t = _pair(3, 4)
    idx = np.array([0, -1, 5, 5])
    src = rng.standard_normal(4).astype(np.float32)
    for acc in (False, True):
        _same(e.put(ember.tensor(idx), ember.tensor(src), acc),
              t.put(torch.tensor(idx), torch.tensor(src), acc))
    _same(ember.put(e, ember.tensor(idx[:2]), ember.tensor(src[:2])),
          torch.put(t, torch.tensor(idx[:2]), torch.tensor(src[:2])))
    a, b = e.clone(), t.clone()
    a.put_(ember.tensor(idx), ember.tensor(src), accumulate=True)
    b.put_(torch.tensor(idx), torch.tensor(src), accumulate=True)
    _same(a, b)
    with pytest.raises(IndexError):
        e.put(ember.tensor([12]), ember.tensor([1.0]))
    h, th = ember.tensor([-1., 0., 2.]), torch.tensor([-1., 0., 2.])
    h.heaviside_(ember.tensor([0.5]))
    th.heaviside_(torch.tensor([0.5]))
    _same(h, th)


def test_renorm_with_grad():
    e, t = _pair(3, 4, 2, grad=True)
    for p, dim, maxnorm in ((2, 0, 1.0), (1, 1, 0.5), (3.0, -1, 2.0)):
        e.grad = t.grad = None
        _grads(lambda x: x.renorm(p, dim, maxnorm), lambda x: x.renorm(p, dim, maxnorm),
               (e, t))
    _same(ember.renorm(e, 2, 0, 1.0), torch.renorm(t, 2, 0, 1.0))
    a, b = e.detach().clone(), t.detach().clone()
    a.renorm_(2, 1, 0.3)
    b.renorm_(2, 1, 0.3)
    _same(a, b)
    with pytest.raises(RuntimeError):
        ember.ones(3).renorm(2, 0, 1.0)


def test_index_reduce_with_grad():
    idx = np.array([0, 2, 0, 1])
    for reduce in ("prod", "mean", "amax", "amin"):
        for include_self in (True, False):
            (x, tx), (s, ts) = _pair(3, 2, grad=True), _pair(4, 2, grad=True)
            if reduce == "prod":   # zeros: one in a group, two in another, and in self
                s.data[1, 0] = ts.data[1, 0] = 0.0
                s.data[2, 1] = s.data[0, 1] = ts.data[2, 1] = ts.data[0, 1] = 0.0
                x.data[1, 1] = tx.data[1, 1] = 0.0
            _grads(lambda a, b: a.index_reduce(0, ember.tensor(idx), b, reduce,
                                               include_self=include_self),
                   lambda a, b: a.index_reduce(0, torch.tensor(idx), b, reduce,
                                               include_self=include_self),
                   (x, tx), (s, ts))
    e, t = _pair(2, 5)
    s = rng.standard_normal((2, 3)).astype(np.float32)
    i = np.array([4, 0, 4])
    a, b = e.clone(), t.clone()
    a.index_reduce_(1, ember.tensor(i), ember.tensor(s), "amax")
    b.index_reduce_(1, torch.tensor(i), torch.tensor(s), "amax")
    _same(a, b)
    _same(ember.index_reduce(e, 1, ember.tensor(i), ember.tensor(s), "mean"),
          torch.index_reduce(t, 1, torch.tensor(i), torch.tensor(s), "mean"))
    with pytest.raises(RuntimeError):
        e.index_reduce(1, ember.tensor(i), ember.tensor(s), "sum")


def test_scatter_functions_with_grad():
    (x, tx), (s, ts) = _pair(3, 4, grad=True), _pair(3, grad=True)
    _grads(lambda a, b: a.diagonal_scatter(b), lambda a, b: a.diagonal_scatter(b),
           (x, tx), (s, ts))
    (x, tx), (s, ts) = _pair(3, 4, grad=True), _pair(2, grad=True)
    _grads(lambda a, b: ember.diagonal_scatter(a, b, 2), lambda a, b: torch.diagonal_scatter(
        a, b, 2), (x, tx), (s, ts))
    (x, tx), (s, ts) = _pair(3, 4, grad=True), _pair(3, grad=True)
    _grads(lambda a, b: ember.select_scatter(a, b, 1, -1),
           lambda a, b: torch.select_scatter(a, b, 1, -1), (x, tx), (s, ts))
    (x, tx), (s, ts) = _pair(3, 6, grad=True), _pair(3, 2, grad=True)
    _grads(lambda a, b: a.slice_scatter(b, 1, 1, 5, 2),
           lambda a, b: a.slice_scatter(b, 1, 1, 5, 2), (x, tx), (s, ts))
    (x, tx), (s, ts) = _pair(4, 2, grad=True), _pair(2, 2, grad=True)
    _grads(lambda a, b: ember.slice_scatter(a, b, start=2),
           lambda a, b: torch.slice_scatter(a, b, start=2), (x, tx), (s, ts))
    with pytest.raises(RuntimeError, match="size"):
        ember.select_scatter(ember.zeros(3, 4), ember.zeros(4), 1, 0)


def test_unique_consecutive():
    a = np.array([[1, 1, 2], [1, 1, 2], [3, 1, 1], [3, 1, 1], [1, 1, 2]])
    e, t = ember.tensor(a), torch.tensor(a)
    for kw in ({}, {"return_inverse": True}, {"return_counts": True},
               {"return_inverse": True, "return_counts": True}):
        _same(e.unique_consecutive(**kw), t.unique_consecutive(**kw))
        for dim in (0, 1, -1):
            _same(ember.unique_consecutive(e, dim=dim, **kw),
                  torch.unique_consecutive(t, dim=dim, **kw))
    _same(ember.unique_consecutive(ember.tensor([], dtype=ember.int64), return_counts=True),
          torch.unique_consecutive(torch.tensor([], dtype=torch.int64), return_counts=True))


def test_frexp_ldexp_nextafter():
    vals = np.array([0., -0., 1., -1., 0.5, 3., -7.25, 1e-40, 2 ** -149, 1e30, 3.4e38,
                     np.inf, -np.inf, np.nan, 0.99999994, 1.0000001], dtype=np.float32)
    for dt in (np.float32, np.float64):
        e, t = ember.tensor(vals.astype(dt)), torch.tensor(vals.astype(dt))
        _same(e.frexp(), t.frexp())
        _same(ember.frexp(e), torch.frexp(t))
        for other in (np.inf, -np.inf, 0.0, 1.0, np.nan):
            _same(e.nextafter(ember.tensor(other, dtype=e.dtype)),
                  t.nextafter(torch.tensor(other, dtype=t.dtype)), rtol=0, atol=0)
        _same(ember.nextafter(e, e), torch.nextafter(t, t), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="floating"):
        ember.frexp(ember.tensor([1, 2]))
    e, t = _pair(5)
    n = np.array([0, 1, -2, 3, 10])
    _same(e.ldexp(ember.tensor(n)), t.ldexp(torch.tensor(n)))
    _same(ember.ldexp(ember.tensor(n), ember.tensor(n)), torch.ldexp(torch.tensor(n),
                                                                    torch.tensor(n)))
    a, b = e.clone(), t.clone()
    ember.ldexp_(a, ember.tensor(n))
    torch.ldexp_(b, torch.tensor(n))
    _same(a, b)
    a, b = e.clone(), t.clone()
    a.nextafter_(ember.tensor(1.0))
    b.nextafter_(torch.tensor(1.0))
    _same(a, b, rtol=0, atol=0)


def test_linalg_methods_and_matrix_exp():
    e, t = _pair(4, 3)
    u, s, v = e.svd()
    tu, ts, tv = t.svd()
    _same(s, ts)
    _same(u @ ember.diag(s) @ v.T, t, rtol=1e-4, atol=1e-5)
    assert v.shape == tv.shape and u.shape == tu.shape
    q, r = e.qr()
    _same(q @ r, t, rtol=1e-4, atol=1e-5)
    a = rng.standard_normal((3, 3)).astype(np.float64)
    spd = a @ a.T + 3 * np.eye(3)
    ltor = torch.linalg.cholesky(torch.tensor(spd))
    l = ember.tensor(ltor.numpy())
    b = rng.standard_normal((3, 2))
    _same(ember.tensor(b).cholesky_solve(l), torch.tensor(b).cholesky_solve(ltor))
    _same(l.cholesky_inverse(), ltor.cholesky_inverse())
    _same(ember.cholesky_inverse(l.T, upper=True), torch.cholesky_inverse(ltor.T, upper=True))
    _same(ember.tensor(b).triangular_solve(l, upper=False),
          torch.tensor(b).triangular_solve(ltor, upper=False))
    for scale in (0.1, 1.0, 20.0):
        m = (rng.standard_normal((2, 4, 4)) * scale / 4).astype(np.float64)
        x, tx = ember.tensor(m, requires_grad=True), torch.tensor(m, requires_grad=True)
        _grads(lambda z: z.matrix_exp(), lambda z: z.matrix_exp(), (x, tx), tol=1e-6)
    x = ember.tensor(rng.standard_normal((3, 3)).astype(np.float32))
    _same(ember.matrix_exp(x), torch.matrix_exp(torch.tensor(x.numpy())), rtol=1e-4,
          atol=1e-5)
    with pytest.raises(RuntimeError, match="square"):
        ember.matrix_exp(ember.zeros(2, 3))
    h, th = _pair(50)
    _same(h.histogram(5), th.histogram(5))


def test_creation_functions():
    with pytest.warns(UserWarning, match="deprecated"):
        r = ember.range(0, 1, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _same(r, torch.range(0, 1, 0.25))
        _same(ember.range(1, 4), torch.range(1, 4))
        _same(ember.range(5, 1, -2, dtype=ember.int64), torch.range(5, 1, -2,
                                                                    dtype=torch.int64))
        _same(ember.chain_matmul(*[ember.ones(2, 3), ember.ones(3, 4), ember.ones(4, 1)]),
              torch.chain_matmul(torch.ones(2, 3), torch.ones(3, 4), torch.ones(4, 1)))
    for args, kw in (((0, 2, 3), {}), ((0, 3, 4), {"base": 2}), ((-1, 1, 5), {}),
                     ((0, 2, 3), {"dtype": "int64"}), ((1, 0, 4), {"dtype": "float64"})):
        kw_e = {k: getattr(ember, v) if k == "dtype" else v for k, v in kw.items()}
        kw_t = {k: getattr(torch, v) if k == "dtype" else v for k, v in kw.items()}
        _same(ember.logspace(*args, **kw_e), torch.logspace(*args, **kw_t))
    for s in (3, 2.5, True):
        _same(ember.scalar_tensor(s), torch.scalar_tensor(s))
    _same(ember.scalar_tensor(2, dtype=ember.int32), torch.scalar_tensor(2, dtype=torch.int32))
    es = ember.empty_strided((2, 3), (1, 2))
    ts = torch.empty_strided((2, 3), (1, 2))
    assert es.shape == ts.shape and es.stride() == ts.stride() and es.dtype is ember.float32
    assert ember.empty_strided((2, 3), (3, 1)).is_contiguous()
    buf = bytearray(np.arange(6, dtype=np.int32).tobytes())
    fb = ember.frombuffer(buf, dtype=ember.int32, count=4, offset=4)
    _same(fb, torch.frombuffer(bytearray(buf), dtype=torch.int32, count=4, offset=4))
    fb[0] = 100                                           # shares the buffer's memory
    assert np.frombuffer(buf, dtype=np.int32)[1] == 100
    x = ember.arange(4.)
    y = ember.from_dlpack(ember.to_dlpack(x))
    y[0] = 9
    assert x[0].item() == 9
    _same(ember.from_dlpack(np.arange(3)), torch.arange(3))
    _same(torch.from_dlpack(ember.arange(3.)), torch.arange(3.))


def test_windows():
    for name in ("hann_window", "hamming_window", "blackman_window", "bartlett_window",
                 "kaiser_window"):
        for n in (0, 1, 2, 5, 16):
            for periodic in (True, False):
                _same(getattr(ember, name)(n, periodic), getattr(torch, name)(n, periodic),
                      atol=1e-6)
        _same(getattr(ember, name)(7, dtype=ember.float64),
              getattr(torch, name)(7, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="floating"):
            getattr(ember, name)(4, dtype=ember.int64)
    _same(ember.hamming_window(8, False, 0.5, 0.4), torch.hamming_window(8, False, 0.5, 0.4))
    _same(ember.kaiser_window(9, True, 5.0), torch.kaiser_window(9, True, 5.0))


def test_small_utilities():
    idx = np.array([[5, 0], [7, -1]])
    _same(ember.unravel_index(ember.tensor(idx), (2, 3)),
          torch.unravel_index(torch.tensor(idx), (2, 3)))
    _same(ember.unravel_index(ember.tensor(4), (5,)), torch.unravel_index(torch.tensor(4), (5,)))
    with pytest.raises(TypeError):
        ember.unravel_index(ember.tensor([1.0]), (2,))
    v, tv = ember.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 3, 4])
    for r in (0, 1, 2, 3, 5):
        for rep in (False, True):
            _same(ember.combinations(v, r, rep), torch.combinations(tv, r, rep))
    assert ember.is_nonzero(ember.tensor([1.5])) and not ember.is_nonzero(ember.tensor(0))
    with pytest.raises(RuntimeError, match="more than one"):
        ember.is_nonzero(ember.ones(2))
    assert ember.is_same_size(ember.ones(2, 3), ember.zeros(2, 3))
    assert not ember.is_same_size(ember.ones(2, 3), ember.zeros(3, 2))
    (a, ta), (b, tb) = _pair(2, 3), _pair(4, 3)
    _same(ember.concatenate([a, b]), torch.concatenate([ta, tb]))
    _same(ember.detach(a), torch.detach(ta))
    _same(ember.fill(a, 2.0), torch.fill(ta, 2.0))
    c, tc = a.clone(), ta.clone()
    ember.fill_(c, 3)
    torch.fill_(tc, 3)
    _same(c, tc)
    ember.zero_(c)
    torch.zero_(tc)
    _same(c, tc)
    mask = np.array([[True, False, True], [False, True, True]])
    _same(ember.masked_scatter(a, ember.tensor(mask), b),
          torch.masked_scatter(ta, torch.tensor(mask), tb))
    i = ember.tensor([0, 1])
    _same(ember.index_put(a, (i,), ember.tensor(1.0)),
          torch.index_put(ta, (torch.tensor([0, 1]),), torch.tensor(1.0)))
    (x, tx), (y, ty), (m, tm) = _pair(4, grad=True), _pair(3, grad=True), _pair(4, 3, grad=True)
    _grads(lambda m_, x_, y_: ember.addr(m_, x_, y_, beta=0.5, alpha=2),
           lambda m_, x_, y_: torch.addr(m_, x_, y_, beta=0.5, alpha=2),
           (m, tm), (x, tx), (y, ty))
    nanm = ember.full((4, 3), float("nan"))
    _same(nanm.addr(x.detach(), y.detach(), beta=0),
          torch.full((4, 3), float("nan")).addr(tx.detach(), ty.detach(), beta=0))
    z, tz = m.detach().clone(), tm.detach().clone()
    z.addr_(x.detach(), y.detach())
    tz.addr_(tx.detach(), ty.detach())
    _same(z, tz)
    p, tp = _pair(5, 3, grad=True)
    for pn in (2, 1, 3.5):
        p.grad = tp.grad = None
        _grads(lambda q: ember.pdist(q, pn), lambda q: torch.pdist(q, pn), (p, tp))


def test_set_default_tensor_type():
    try:
        with pytest.warns(UserWarning):
            ember.set_default_tensor_type("torch.DoubleTensor")
        assert ember.get_default_dtype() is ember.float64 and ember.zeros(1).dtype is ember.float64
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ember.set_default_tensor_type(ember.FloatTensor)
            assert ember.get_default_dtype() is ember.float32
            with pytest.raises(TypeError, match="floating-point"):
                ember.set_default_tensor_type(ember.LongTensor)
    finally:
        ember.set_default_dtype(ember.float32)
        ember.set_default_device("cpu")


def test_top_level_in_place_and_functional_forms():
    e, t = _pair(3, 4)
    for name in ("relu_", "sigmoid_", "tanh_", "exp_", "neg_", "abs_", "sin_", "cos_",
                 "ceil_", "floor_", "round_", "trunc_", "frac_", "reciprocal_", "erf_",
                 "selu_", "celu_"):
        a, b = e.clone(), t.clone()
        assert getattr(ember, name)(a) is a
        getattr(torch, name)(b)
        _same(a, b)
    a, b = e.clone(), t.clone()
    ember.clamp_(a, -0.5, 0.5)
    torch.clamp_(b, -0.5, 0.5)
    _same(a, b)
    ember.threshold_(a, 0.1, 20.0)
    torch.threshold_(b, 0.1, 20.0)
    _same(a, b)
    a = e.clone()
    assert ember.dropout_(a, 0.5, False) is a
    _same(a, t)
    (x, tx), (y, ty) = _pair(4, 3), _pair(4, 3)
    tgt = (rng.random((4, 3)) > 0.5).astype(np.float32)
    lbl = np.array([1., -1., 1., -1.], dtype=np.float32)
    for red in (0, 1, 2):
        _same(ember.binary_cross_entropy_with_logits(x, ember.tensor(tgt), None, None, red),
              torch.binary_cross_entropy_with_logits(tx, torch.tensor(tgt), None, None, red))
        _same(ember.kl_div(x, y.softmax(1), red), torch.kl_div(tx, ty.softmax(1), red))
        _same(ember.cosine_embedding_loss(x, y, ember.tensor(lbl), 0.1, red),
              torch.cosine_embedding_loss(tx, ty, torch.tensor(lbl), 0.1, red))
        _same(ember.hinge_embedding_loss(x, ember.tensor(np.sign(tgt - 0.5)), 1.0, red),
              torch.hinge_embedding_loss(tx, torch.tensor(np.sign(tgt - 0.5)), 1.0, red))
        _same(ember.margin_ranking_loss(x[:, 0], y[:, 0], ember.tensor(lbl), 0.2, red),
              torch.margin_ranking_loss(tx[:, 0], ty[:, 0], torch.tensor(lbl), 0.2, red))
        _same(ember.triplet_margin_loss(x, y, -x, 1.0, 2, 1e-6, False, red),
              torch.triplet_margin_loss(tx, ty, -tx, 1.0, 2, 1e-6, False, red))
        _same(ember.poisson_nll_loss(x, ember.tensor(tgt), True, False, 1e-8, red),
              torch.poisson_nll_loss(tx, torch.tensor(tgt), True, False, 1e-8, red))
    w, tw = _pair(5, 3)
    ids = np.array([[0, 4], [2, 2]])
    _same(ember.embedding(w, ember.tensor(ids)), torch.embedding(tw, torch.tensor(ids)))
    _same(ember.prelu(x, ember.tensor([0.2])), torch.prelu(tx, torch.tensor([0.2])))
    _same(ember.rms_norm(x, (3,)), torch.rms_norm(tx, (3,)))
    bw, tbw = _pair(2, 3, 3)
    _same(ember.bilinear(x, y, bw), torch.bilinear(tx, ty, tbw), rtol=1e-4, atol=1e-5)


def test_compiled_matches_eager():
    def f(x, y, idx):
        a = x.sum_to_size(1, 4).renorm(2, 1, 0.5)
        b = ember.select_scatter(x, y, 0, 1).slice_scatter((y[:2] * 2).expand(3, 2), 1, 2)
        c = x.index_reduce(0, idx, y.expand(2, 4), "amax", include_self=False)
        d = x.clone()
        d.fill_diagonal_(0.0)
        d.gt_(0.1)
        d.put_(ember.tensor([0, 5]), ember.tensor([7.0, 8.0]))
        e = ember.ldexp(x, ember.tensor(2)) + x.cross(ember.ones(3, 4), dim=0)
        return a, b, c, d, e, ember.hann_window(4) * y, x.ravel()

    cf = ember.compile(f)
    idx = ember.tensor([2, 0])
    for _ in range(3):
        x = ember.tensor(rng.standard_normal((3, 4)).astype(np.float32))
        y = ember.tensor(rng.standard_normal(4).astype(np.float32))
        _same(cf(x, y, idx), f(x, y, idx))
    stats = cf.stats()
    assert not stats["breaks"] and not stats["fallbacks"] and stats["eager_calls"] == 0

    def g(x, i):
        return x.clone().put_(i, ember.ones(2), accumulate=True) * 2

    cg = ember.compile(g)
    for _ in range(3):
        _same(cg(x, ember.tensor([1, -1])), g(x, ember.tensor([1, -1])))
    with pytest.raises(IndexError, match="out of range"):   # checked in a replay too
        cg(x, ember.tensor([1, 12]))


def test_compiled_in_place_methods_and_grad():
    def step(x, w):
        y = x * w
        y.renorm_(2, 0, 1.0)
        z = y.index_reduce(0, ember.tensor([1, 0]), y[:2] * 3, "prod")
        return z.diagonal_scatter(ember.zeros(2)).sum()

    cf = ember.compile(step)
    for _ in range(3):
        x = ember.tensor(rng.standard_normal((3, 2)).astype(np.float32))
        w1 = ember.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
        w2 = ember.tensor(w1.detach().numpy().copy(), requires_grad=True)
        l1, l2 = cf(x, w1), step(x, w2)
        l1.backward()
        l2.backward()
        _same(l1, l2)
        _same(w1.grad, w2.grad)


def _restride_steps(m, w):
    y = w * 2
    v = y[0]                      # a view made before the base changes shape
    y.t_()
    v.mul_(2)
    y.unsqueeze_(0)
    z = y.squeeze_(0).transpose_(0, 1).swapaxes_(0, 1).swapdims_(1, 0)
    r = (w * 3)[1]                # a view changing shape: still a view of its base
    r.unsqueeze_(1)
    r.mul_(5)
    return z * m.arange(6.).reshape(2, 3) + r.sum() + v.sum()


def test_in_place_shape_changes_with_grad():
    e, t = _pair(2, 3, grad=True)
    _grads(lambda w: _restride_steps(ember, w), lambda w: _restride_steps(torch, w), (e, t))
    x, tx = ember.zeros(2, 1), torch.zeros(2, 1)
    assert x.squeeze_(1) is x and x.shape == tx.squeeze_(1).shape
    assert x.squeeze_().shape == (2,) and ember.zeros(1, 2, 1).squeeze_().shape == (2,)
    assert ember.zeros(3).t_().shape == (3,)
    base = ember.arange(6.)
    v = base.view(2, 3)
    v.unsqueeze_(0)
    v[0, 0, 0] = 100.0            # the same memory
    assert base[0].item() == 100.0 and v._base is base
    with pytest.raises(RuntimeError, match="leaf Variable"):
        e.t_()
    with ember.no_grad():
        w = ember.ones(2, 3, requires_grad=True)
        w.t_()
    assert w.shape == (3, 2) and w.is_leaf
    with pytest.raises(RuntimeError, match="<= 2"):
        ember.zeros(2, 2, 2).t_()
    with pytest.raises(RuntimeError, match="multiple views"):
        (e * 1).split(1)[0].squeeze_(0)


def test_in_place_shape_changes_compiled():
    cf = ember.compile(lambda w: _restride_steps(ember, w))
    for _ in range(3):
        w1 = ember.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
        w2 = ember.tensor(w1.detach().numpy().copy(), requires_grad=True)
        a, b = cf(w1), _restride_steps(ember, w2)
        a.sum().backward()
        b.sum().backward()
        _same(a, b)
        _same(w1.grad, w2.grad)
    assert not cf.stats()["fallbacks"] and not cf.stats()["breaks"]

    def g(x):                      # a caller's tensor changing shape: the call runs eagerly
        x.t_()
        return x + 1

    cg = ember.compile(g)
    x1 = ember.arange(9.).reshape(3, 3).clone()
    x2 = x1.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            _same(cg(x1), g(x2))
            _same(x1, x2)
    assert "changes the shape" in cg.stats()["fallbacks"][0]
