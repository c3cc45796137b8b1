"""Walk the op registry: every primitive, forward and gradient, against PyTorch (when
installed) and against NumPy references and float64 finite differences (always).

Each registry op needs an entry in CASES; the coverage test fails otherwise, so a new
primitive cannot land untested.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.dispatch import dispatch
from ember.ops import OPS
from ember.ops.index import build_key
from ember.devices import CPU

from conftest import assert_close, check_against_torch, check_grad_fd, to_np
from linalg_registry_cases import linalg_cases, spectral_cases

rng = np.random.default_rng(1234)


def f64(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape)


def away_from_zero(*shape):
    """Values with |x| in [0.3, 2]: kinks at 0 (abs, relu, sign) stay out of the FD stencil."""
    return rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def distinct(*shape):
    """A shuffled grid: no ties, so max/argmax gradients are well defined."""
    n = math.prod(shape)
    return rng.permutation(np.linspace(-2.0, 2.0, n)).reshape(shape)


def transposed(a):
    """A non-contiguous view with the same values laid out differently."""
    return np.ascontiguousarray(a.T).T


class Case:
    """One sample: NumPy inputs (arrays or Python scalars), attributes, the matching torch
    call and a NumPy reference (``ref``). ``grad=False`` for non-differentiable samples."""

    def __init__(self, inputs, torch_fn, ref=None, attrs=None, id="", grad=True, eattrs=None):
        self.inputs = inputs
        self.torch_fn = torch_fn
        self.ref = ref
        self.attrs = attrs or {}
        self.eattrs = eattrs  # attributes for ember when they differ from the torch ones
        self.id = id
        self.grad = grad

    def ember_fn(self, name):
        attrs = self.eattrs if self.eattrs is not None else self.attrs
        return lambda *xs: dispatch(name, *xs, **attrs)


def _np_float(a):
    """What PyTorch's float-rule ops compute in: ints become the default float32."""
    return a if np.asarray(a).dtype.kind == "f" else np.asarray(a, dtype=np.float32)


def unary_cases(torch_name, np_ref, make=f64, int_input=True):
    cases = [
        Case([make(3, 4)], lambda a: getattr(a, torch_name)(), np_ref, id="2d"),
        Case([np.asarray(make(1)[0])], lambda a: getattr(a, torch_name)(), np_ref, id="0d"),
        Case([transposed(make(4, 3))], lambda a: getattr(a, torch_name)(), np_ref, id="noncontig"),
        Case([make(5, 4)[::2, 1:]], lambda a: getattr(a, torch_name)(), np_ref, id="sliced"),
        Case([make(3, 2).astype(np.float32)], lambda a: getattr(a, torch_name)(), np_ref, id="f32"),
    ]
    if int_input:
        cases.append(Case([np.array([1, 2, 3], dtype=np.int64)],
                          lambda a: getattr(a, torch_name)(), None, id="int64", grad=False))
        cases.append(Case([np.array([[1, 2], [3, 4]], dtype=np.int32)],
                          lambda a: getattr(a, torch_name)(), None, id="int32", grad=False))
    return cases


def _pos(*shape):
    return f64(*shape, lo=0.3, hi=2.0)


def _sigmoid_ref(a):
    with np.errstate(over="ignore"):  # exp(800) = inf gives the right limit, 0
        return 1 / (1 + np.exp(-a))


def _softplus_ref(a):
    return np.logaddexp(0, a)


def _softplus_cases():
    # Its own generator: drawing from the shared one would change every later op's inputs.
    r = np.random.default_rng(29)
    x = r.uniform(-4, 4, (5, 4))
    return [Case([x[:3]], _torch_softplus, _softplus_ref, id="2d"),
            Case([np.asarray(x[0, 0])], _torch_softplus, _softplus_ref, id="0d"),
            Case([transposed(x[:4, :3])], _torch_softplus, _softplus_ref, id="noncontig"),
            Case([x[::2, 1:]], _torch_softplus, _softplus_ref, id="sliced"),
            Case([x[:3, :2].astype(np.float32)], _torch_softplus, _softplus_ref, id="f32")]


def _torch_softplus(a):
    import torch
    # The registry op has no threshold (F.softplus applies it); above 30 the exact value
    # is x to 1e-14, where torch returns x.
    return torch.nn.functional.softplus(a, threshold=30)


def _erf_ref(a):
    return np.vectorize(math.erf)(a)


def binary_cases(torch_fn, np_ref, make=f64, make_b=None, ints=True, scalar=1.5):
    make_b = make_b or make
    cases = [
        Case([make(3, 4), make_b(3, 4)], torch_fn, np_ref, id="same"),
        Case([make(3, 1, 4), make_b(2, 4)], torch_fn, np_ref, id="broadcast"),
        Case([make(2, 3), np.asarray(make_b(1)[0])], torch_fn, np_ref, id="dim-0d"),
        Case([np.asarray(make(1)[0]), make_b(2, 3)], torch_fn, np_ref, id="0d-dim"),
        Case([transposed(make(4, 3)), make_b(5, 3)[1:5]], torch_fn, np_ref, id="noncontig"),
        Case([make(3, 4), scalar], torch_fn, np_ref, id="scalar"),
        Case([scalar, make_b(3, 4)], torch_fn, np_ref, id="rscalar"),
        Case([make(2, 3).astype(np.float32), make_b(2, 3)], torch_fn, np_ref, id="f32-f64"),
        Case([make(2, 3).astype(np.float32), np.asarray(make_b(1)[0])], torch_fn, np_ref,
             id="f32-0d-f64"),
    ]
    if ints:
        ia = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
        ib = np.array([3, 2, 1], dtype=np.int64)
        cases += [
            Case([ia, ib], torch_fn, None, id="i32-i64", grad=False),
            Case([ia, 2], torch_fn, None, id="i32-int", grad=False),
            Case([ib, 0.5], torch_fn, None, id="int-float", grad=False),
            Case([ia, make_b(2, 3).astype(np.float32)], torch_fn, None, id="int-f32"),
            Case([np.array([True, False, True]), ib], torch_fn, None, id="bool-int", grad=False),
            Case([np.asarray(2, np.int64), ia], torch_fn, None, id="0d-int64-int32",
                 grad=False),
        ]
    return cases


def _cmp_cases(op):
    import operator
    pyop = getattr(operator, op)
    ref = getattr(np, {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                       "eq": "equal", "ne": "not_equal"}[op])
    grid = lambda *s: rng.integers(-2, 3, size=s).astype(np.float64)  # noqa: E731 (ties matter)
    return [Case(c.inputs, lambda a, b: pyop(a, b), ref, id=c.id, grad=False)
            for c in binary_cases(None, None, make=grid, scalar=1.0)]


def _bool_cases(torch_name, ref):
    b = lambda *s: rng.integers(0, 2, size=s).astype(bool)  # noqa: E731
    fn = lambda a, b: getattr(__import__("torch"), torch_name)(a, b)  # noqa: E731
    return [
        Case([b(3, 4), b(3, 4)], fn, ref, id="bool", grad=False),
        Case([b(3, 1, 4), b(2, 4)], fn, ref, id="broadcast", grad=False),
        Case([f64(2, 3), b(2, 3)], fn, ref, id="float-bool", grad=False),
    ]


def _where_cases():
    c = rng.integers(0, 2, size=(3, 1, 4)).astype(bool)
    fn = lambda c, a, b: __import__("torch").where(c, a, b)  # noqa: E731
    return [
        Case([c, f64(3, 2, 4), f64(2, 4)], fn, np.where, id="broadcast"),
        Case([c, f64(3, 1, 4), 0.0], fn, np.where, id="scalar"),
        Case([c, 1.0, transposed(f64(4, 3))[:, :1].T.reshape(1, 4) * np.ones((2, 1))], fn,
             np.where, id="rscalar-noncontig"),
        Case([c, f64(4).astype(np.float32), np.asarray(f64(1)[0])], fn, None, id="f32-0d"),
        Case([c, np.arange(4), 0.5], fn, None, id="int-float", grad=False),
        Case([np.array(True), f64(2, 2), f64(2, 2)], fn, np.where, id="0d-cond"),
    ]


def _key_torch(key, idx):
    return build_key(key, idx)


def _index_cases():
    import_torch = lambda: __import__("torch")  # noqa: E731
    x = f64(4, 5)
    i = np.array([2, 0, 2, 3])
    m = np.array([True, False, True, False, True])

    def tfn(key):
        return lambda a, *idx: a[_key_torch(key, idx)]

    def ref(key):
        return lambda a, *idx: a[build_key(key, idx)]

    cases = [
        Case([x, i], tfn(("t0",)), ref(("t0",)), {"key": ("t0",)}, id="rows-dup"),
        Case([x, i[:2]], tfn(((0, 4, 1), "t0")), ref(((0, 4, 1), "t0")),
             {"key": ((0, 4, 1), "t0")}, id="cols"),
        Case([x, m], tfn(((0, 4, 1), "t0")), ref(((0, 4, 1), "t0")),
             {"key": ((0, 4, 1), "t0")}, id="bool-mask"),
        Case([x, np.array([[0, 1], [3, 3]])], tfn(("t0", 1)), ref(("t0", 1)),
             {"key": ("t0", 1)}, id="2d-index-int"),
        Case([transposed(f64(5, 4)), np.array([1, 1]), np.array([0, 3])], tfn(("t0", "t1")),
             ref(("t0", "t1")), {"key": ("t0", "t1")}, id="pair-noncontig"),
        Case([x, np.array([-1, 0], dtype=np.int32)], tfn(("t0",)), ref(("t0",)),
             {"key": ("t0",)}, id="neg-int32"),
    ]
    return cases


def _index_put_torch(key, accumulate):
    def fn(a, v, *idx):
        return a.index_put(tuple(build_key(key, idx)), v, accumulate=accumulate) \
            if all(isinstance(k, str) for k in key) else _setitem(a, key, v, idx)
    return fn


def _setitem(a, key, v, idx):
    out = a.clone()
    out[build_key(key, idx)] = v
    return out


def _index_put_ref(key, accumulate):
    def ref(a, v, *idx):
        out = a.astype(np.result_type(a), copy=True)
        if accumulate:
            np.add.at(out, build_key(key, idx), v)
        else:
            out[build_key(key, idx)] = v
        return out
    return ref


def _index_put_cases():
    cases = []
    for acc in (True, False):
        i = np.array([3, 0, 3]) if acc else np.array([3, 0, 1])
        for key, v, idx, id in [
            (("t0",), f64(3, 5), [i], "rows"),
            (("t0",), f64(5), [i], "rows-bcast"),
            (((0, 4, 1), "t0"), f64(4, 3), [i], "cols"),
            (("t0",), f64(2, 5), [np.array([True, False, False, True])], "mask"),
            ((1, (0, 5, 2)), f64(3), [], "basic"),
        ]:
            if acc and not idx:
                continue
            tfn = _index_put_torch(key, acc)
            if acc and id == "cols":  # torch's index_put takes index tensors only
                tfn = lambda a, v, i: a.index_put(  # noqa: E731
                    (__import__("torch").arange(4)[:, None], i), v, accumulate=True)
            cases.append(Case([f64(4, 5), v] + idx, tfn,
                              _index_put_ref(key, acc), {"key": key, "accumulate": acc},
                              id=f"{id}-{'acc' if acc else 'set'}"))
    return cases


def _torch_dtype(d):
    import torch
    return getattr(torch, d.name)


def _unfold_cases():
    F = lambda: __import__("torch").nn.functional  # noqa: E731
    cases = []
    for k, s, p, d in [((2, 2), (1, 1), (0, 0), (1, 1)), ((3, 2), (2, 1), (1, 0), (1, 2))]:
        attrs = dict(kernel=k, stride=s, padding=p, dilation=d)
        cases.append(Case([f64(2, 3, 5, 6)],
                          lambda a, k=k, s=s, p=p, d=d: F().unfold(a, k, d, p, s),
                          _unfold_ref(attrs),
                          dict(attrs, pad_value=0.0), id=f"k{k}s{s}p{p}d{d}"))
    return cases


def _unfold_ref(attrs):
    def ref(a, **_):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (attrs[k] for k in ("kernel", "stride", "padding",
                                                                     "dilation"))
        n, c, h, w = a.shape
        ap = np.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        out = np.zeros((n, c, kh, kw, oh, ow))
        for i in range(kh):
            for j in range(kw):
                out[:, :, i, j] = ap[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw]
        return out.reshape(n, c * kh * kw, oh * ow)
    return ref


def _fold_cases():
    F = lambda: __import__("torch").nn.functional  # noqa: E731
    cases = []
    for k, s, p, d, hw in [((2, 2), (1, 1), (0, 0), (1, 1), (4, 5)),
                           ((3, 2), (2, 1), (1, 0), (1, 2), (5, 6))]:
        n, c = 2, 3
        oh = (hw[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        ow = (hw[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        attrs = dict(shape=(n, c) + hw, kernel=k, stride=s, padding=p, dilation=d)
        cases.append(Case([f64(n, c * k[0] * k[1], oh * ow)],
                          lambda a, k=k, s=s, p=p, d=d, hw=hw: F().fold(a, hw, k, d, p, s),
                          None, attrs, id=f"k{k}s{s}p{p}d{d}"))
    return cases


def _conv_cases():
    """im2col/col2im (one row per output pixel) and the max-pooling primitives."""
    F = lambda: __import__("torch").nn.functional  # noqa: E731
    geoms = [((2, 2), (1, 1), (0, 0), (1, 1)), ((3, 2), (2, 1), (1, 0), (1, 2)),
             ((3, 3), (2, 2), (1, 1), (1, 1))]
    out = {k: [] for k in ("im2col", "col2im", "max_pool2d", "max_pool2d_backward",
                           "max_pool2d_indices", "pool_gather", "pool_scatter")}
    for k, s, p, d in geoms:
        attrs = dict(kernel=k, stride=s, padding=p, dilation=d)
        tag = f"k{k}s{s}p{p}d{d}"

        def rows(t, k=k, s=s, p=p, d=d):   # torch's unfold, one row per output pixel
            u = F().unfold(t, k, d, p, s)
            return u.transpose(1, 2).reshape(-1, u.shape[1])

        def ref(a, attrs=attrs):
            u = _unfold_ref(attrs)(a)
            return u.transpose(0, 2, 1).reshape(-1, u.shape[1])

        for x, xid in [(f64(2, 3, 5, 6), ""), (transposed(f64(2, 3, 5, 6)), "-noncontig"),
                       (f64(2, 3, 5, 6).astype(np.float32), "-f32")]:
            out["im2col"].append(Case([x], rows, ref, attrs, id=tag + xid))
        n, c, hw = 2, 3, (5, 6)
        oh = (hw[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        ow = (hw[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        out["col2im"].append(Case(
            [f64(n * oh * ow, c * k[0] * k[1])],
            lambda a, k=k, s=s, p=p, d=d, hw=hw, L=oh * ow: F().fold(
                a.reshape(2, L, -1).transpose(1, 2), hw, k, d, p, s),
            None, dict(attrs, shape=(n, c) + hw), id=tag))
        pool = lambda a, k=k, s=s, p=p, d=d: F().max_pool2d(a, k, s, p, d)  # noqa: E731
        x = distinct(2, 3, 7, 6)
        out["max_pool2d"] += [Case([x], pool, None, attrs, id=tag),
                              Case([transposed(distinct(2, 3, 7, 6))], pool, None, attrs,
                                   id=tag + "-noncontig"),
                              Case([x.astype(np.float32)], pool, None, attrs, id=tag + "-f32")]
        g = f64(*pool(__import__("torch").tensor(x)).shape) if _has_torch() else None
        if g is not None:
            def pool_grad(g, x, k=k, s=s, p=p, d=d):
                return __import__("torch").ops.aten.max_pool2d_with_indices_backward(
                    g, x, k, s, p, d, False, F().max_pool2d(
                        x.detach(), k, s, p, d, return_indices=True)[1])
            out["max_pool2d_backward"].append(Case([g, x], pool_grad, None, attrs, id=tag))
            # relu=True: relu's mask (x > 0) applied too (x has both signs, no zeros)
            out["max_pool2d_backward"].append(Case(
                [g, x], lambda g, x, f=pool_grad: f(g, x) * (x > 0), None,
                dict(attrs, relu=True), id=tag + "-relu"))
            out["max_pool2d_backward"].append(Case(
                [g.astype(np.float32), x.astype(np.float32)],
                lambda g, x, f=pool_grad: f(g, x) * (x > 0), None,
                dict(attrs, relu=True), id=tag + "-relu-f32"))
        out["max_pool2d_indices"].append(Case(
            [x], lambda a, k=k, s=s, p=p, d=d: F().max_pool2d(a, k, s, p, d,
                                                             return_indices=True)[1],
            None, attrs, id=tag, grad=False))
    # Ties and a NaN: PyTorch takes the first maximum, and a NaN over anything.
    tie = np.array([[[[1.0, 1.0, 0.0], [1.0, np.nan, 2.0], [2.0, 0.0, 2.0]]]])
    tattrs = dict(kernel=(2, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    out["max_pool2d_indices"].append(Case(
        [tie], lambda a: F().max_pool2d(a, 2, 1, return_indices=True)[1], None, tattrs,
        id="ties-nan", grad=False))
    out["avg_pool2d"], out["avg_pool2d_backward"] = [], []
    for k, s, p, div in [((2, 2), (2, 2), (0, 0), 4), ((3, 2), (2, 1), (1, 1), 6),
                         ((3, 3), (2, 2), (1, 1), 0), ((2, 3), (1, 2), (1, 1), 5)]:
        attrs = dict(kernel=k, stride=s, padding=p, divisor=div)
        kw = dict(count_include_pad=div != 0, divisor_override=div if div == 5 else None)
        pool = lambda a, k=k, s=s, p=p, kw=kw: F().avg_pool2d(a, k, s, p, **kw)  # noqa: E731
        tag = f"k{k}s{s}p{p}div{div}"
        out["avg_pool2d"] += [Case([f64(2, 3, 7, 6)], pool, None, attrs, id=tag),
                              Case([transposed(f64(2, 3, 7, 6)).astype(np.float32)], pool,
                                   None, attrs, id=tag + "-noncontig-f32")]
        if _has_torch():
            import torch
            gshape = tuple(pool(torch.zeros(2, 3, 7, 6)).shape)
            out["avg_pool2d_backward"].append(Case(
                [f64(*gshape)], lambda g, k=k, s=s, p=p, kw=kw: torch.ops.aten.avg_pool2d_backward(
                    g, torch.zeros(2, 3, 7, 6, dtype=g.dtype), k, s, p, False,
                    kw["count_include_pad"], kw["divisor_override"]),
                None, dict(attrs, shape=(2, 3, 7, 6)), id=tag))
    idx = rng.integers(0, 16, size=(2, 3, 2, 2))
    out["pool_gather"].append(Case(
        [f64(2, 3, 4, 4), idx],
        lambda a, i: a.flatten(2).gather(2, i.flatten(2)).reshape(i.shape),
        lambda a, i: np.take_along_axis(a.reshape(2, 3, 16), i.reshape(2, 3, 4), 2)
        .reshape(i.shape), id="4x4"))
    out["pool_scatter"].append(Case(
        [f64(2, 3, 2, 2), idx],
        lambda g, i: __import__("torch").zeros(2, 3, 16, dtype=g.dtype).scatter_add(
            2, i.flatten(2), g.flatten(2)).reshape(2, 3, 4, 4),
        None, dict(shape=(2, 3, 4, 4)), id="4x4"))
    # The direct convolution and its weight gradient (torch's conv2d / conv2d_weight).
    out["conv2d_direct"], out["conv2d_weight_direct"] = [], []
    for k, s, p, d in [((3, 2), (2, 1), (1, 0), (1, 2)), ((3, 3), (1, 1), (1, 1), (1, 1))]:
        attrs = dict(stride=s, padding=p, dilation=d)
        tag = f"k{k}s{s}p{p}d{d}"
        conv = lambda a, w, s=s, p=p, d=d: F().conv2d(a, w, None, s, p, d)  # noqa: E731
        for x, xid in [(f64(2, 3, 7, 6), ""), (transposed(f64(2, 3, 7, 6)), "-noncontig"),
                       (f64(2, 3, 7, 6).astype(np.float32), "-f32")]:
            w = f64(4, 3, *k).astype(x.dtype)
            out["conv2d_direct"].append(Case([x, w], conv, None, attrs, id=tag + xid))
            # The epilogue fuse_conv_epilogue moves in: + bias, then relu (or either).
            b = f64(4).astype(x.dtype)
            out["conv2d_direct"] += [
                Case([x, w, b], lambda a, w, b, s=s, p=p, d=d: F().relu(
                    F().conv2d(a, w, b, s, p, d)), None, dict(attrs, relu=True),
                    id=tag + xid + "-bias-relu"),
                Case([x, w, b], lambda a, w, b, s=s, p=p, d=d: F().conv2d(a, w, b, s, p, d),
                     None, attrs, id=tag + xid + "-bias"),
                Case([x, w], lambda a, w, s=s, p=p, d=d: F().relu(F().conv2d(a, w, None, s,
                                                                              p, d)),
                     None, dict(attrs, relu=True), id=tag + xid + "-relu"),
                # ... and 2x2 max pooling after it (distinct sums: no ties)
                Case([x, w, b], lambda a, w, b, s=s, p=p, d=d: F().max_pool2d(F().relu(
                    F().conv2d(a, w, b, s, p, d)), 2), None,
                    dict(attrs, relu=True, pool=True), id=tag + xid + "-bias-relu-pool"),
                Case([x, w], lambda a, w, s=s, p=p, d=d: F().max_pool2d(
                    F().conv2d(a, w, None, s, p, d), 2), None, dict(attrs, pool=True),
                    id=tag + xid + "-pool")]
        if _has_torch():
            import torch
            gshape = tuple(conv(torch.zeros(2, 3, 7, 6), torch.zeros(4, 3, *k)).shape)
            out["conv2d_weight_direct"].append(Case(
                [f64(*gshape), f64(2, 3, 7, 6)],
                lambda g, x, k=k, s=s, p=p, d=d: torch.nn.grad.conv2d_weight(
                    x, (4, 3, *k), g, s, p, d),
                None, dict(attrs, kernel=k), id=tag))
    return out


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _slice_ref(key):
    from ember.ops.movement import numpy_key
    return lambda a: a[numpy_key(key)]


def _slice_torch(key):
    def fn(a):
        # torch has no None in slices of canonical form and rejects negative steps; the
        # canonical keys only hold positive steps.
        from ember.ops.movement import numpy_key
        return a[numpy_key(key)]
    return fn


def _unslice_ref(shape, key):
    from ember.ops.movement import numpy_key

    def ref(g):
        z = np.zeros(shape, dtype=g.dtype)
        z[numpy_key(key)] = g
        return z
    return ref


def _unslice_torch(shape, key):
    def fn(g):
        import torch
        from ember.ops.movement import numpy_key
        z = torch.zeros(shape, dtype=g.dtype)
        z[numpy_key(key)] = g
        return z
    return fn


def _reduce_cases(torch_name, np_name, make):
    def tfn(axes, keepdim):
        def fn(a):
            import torch
            if torch_name == "sum":
                return torch.sum(a, dim=axes, keepdim=keepdim) if axes else a.sum()
            return torch.amax(a, dim=axes, keepdim=keepdim)
        return fn

    def ref(axes, keepdim):
        return lambda a: getattr(np, np_name)(a, axis=axes, keepdims=keepdim)

    cases = []
    for shape, axes, keepdim, id in [((3, 4), (0, 1), False, "all"), ((3, 4), (1,), False, "dim1"),
                                     ((2, 3, 4), (0, 2), True, "keepdim"),
                                     ((), (), False, "0d")]:
        cases.append(Case([make(*shape)], tfn(axes, keepdim), ref(axes, keepdim),
                          {"axes": axes, "keepdim": keepdim}, id=id))
    cases.append(Case([transposed(make(4, 3))], tfn((0,), False), ref((0,), False),
                      {"axes": (0,), "keepdim": False}, id="noncontig"))
    if torch_name == "sum":
        cases.append(Case([np.arange(6).reshape(2, 3)], tfn((1,), True), ref((1,), True),
                          {"axes": (1,), "keepdim": True}, id="int64", grad=False))
    else:
        cases.append(Case([np.array([[1, 5, 2], [7, 0, 3]], np.int32)], tfn((1,), False),
                          ref((1,), False), {"axes": (1,), "keepdim": False}, id="int32",
                          grad=False))
    return cases


def _argmax_cases():
    def tfn(axis, keepdim):
        return lambda a: a.argmax(dim=axis, keepdim=keepdim) if axis is not None else a.argmax()

    def ref(axis, keepdim):
        return lambda a: (np.argmax(a, axis=axis, keepdims=keepdim) if axis is not None
                          else np.argmax(a.reshape(-1)))
    return [Case([a], tfn(axis, kd), ref(axis, kd), {"axis": axis, "keepdim": kd}, id=id,
                 grad=False)
            for a, axis, kd, id in [(distinct(3, 4), None, False, "all"),
                                    (distinct(3, 4), 1, False, "dim1"),
                                    (distinct(2, 3, 4), 0, True, "keepdim"),
                                    (transposed(distinct(4, 3)), 0, False, "noncontig"),
                                    (np.array([[1, 3, 3], [2, 2, 0]]), 1, False, "ties-int")]]


def _matmul_cases():
    fn = lambda a, b: a @ b  # noqa: E731
    return [
        Case([f64(3, 4), f64(4, 5)], fn, np.matmul, id="2d"),
        Case([f64(2, 3, 4), f64(4, 5)], fn, np.matmul, id="batch-2d"),
        Case([f64(2, 1, 3, 4), f64(5, 4, 2)], fn, np.matmul, id="broadcast-batch"),
        Case([transposed(f64(4, 3)), f64(5, 4)[1:4, ::-1]], fn, np.matmul, id="noncontig"),
        Case([f64(3, 4).astype(np.float32), f64(4, 2).astype(np.float32)], fn, np.matmul,
             id="f32"),
        Case([np.arange(6).reshape(2, 3), np.arange(3).reshape(3, 1)], fn, np.matmul, id="int64",
             grad=False),
    ]


def _cast_cases():
    cases = []
    for src, dst in [(f64(3, 4), ember.float32), (f64(3, 4).astype(np.float32), ember.float64),
                     (f64(2, 3) * 3, ember.int64), (f64(2, 3), ember.bool),
                     (np.array([0, 2, -1]), ember.float32), (np.array([0, 1, 3]), ember.bool),
                     (np.array([True, False]), ember.int32),
                     (transposed(f64(3, 2)), ember.float64)]:
        grad = src.dtype.kind == "f" and dst.is_floating_point
        ref = lambda a, dst=dst: a.astype(dst.np)  # noqa: E731
        cases.append(Case([src], lambda a, dst=dst: a.to(_torch_dtype(dst)), ref, {"dtype": dst},
                          id=f"{src.dtype}-{dst.name}", grad=grad))
    return cases


def _creation_cases():
    def tfull(shape, value, dtype):
        return lambda: __import__("torch").full(shape, value, dtype=_torch_dtype(dtype))

    def tarange(start, end, step, dtype):
        return lambda: __import__("torch").arange(start, end, step, dtype=_torch_dtype(dtype))

    full = [Case([], tfull(s, v, d), lambda s=s, v=v, d=d: np.full(s, v, d.np),
                 dict(shape=s, value=v, dtype=d, device=CPU), id=f"{d.name}-{s}", grad=False)
            for s, v, d in [((2, 3), 1.5, ember.float32), ((), 7, ember.int64),
                            ((4,), True, ember.bool), ((2, 0), 0.0, ember.float64)]]
    arange = [Case([], tarange(a, b, st, d), lambda a=a, b=b, st=st, d=d: np.arange(a, b, st, d.np),
                   dict(start=a, end=b, step=st, dtype=d, device=CPU), id=f"{d.name}-{a}-{b}-{st}",
                   grad=False)
              for a, b, st, d in [(0, 5, 1, ember.int64), (1, 10, 3, ember.int32),
                                  (0.0, 1.0, 0.25, ember.float32), (5, 0, -2, ember.int64)]]
    return full, arange


def _random_cases(name):
    def torch_like(shape, dtype):
        # Random streams differ by design; torch gives the expected shape and dtype.
        import torch
        return lambda: torch.zeros(shape, dtype=_torch_dtype(dtype))

    if name == "randint":
        return [Case([], torch_like((3, 4), ember.int64), None,
                     dict(low=-2, high=5, shape=(3, 4), dtype=ember.int64, device=CPU), grad=False,
                     id="int64")]
    if name == "randperm":
        return [Case([], torch_like((7,), ember.int64), None,
                     dict(n=7, dtype=ember.int64, device=CPU), grad=False, id="int64")]
    if name == "multinomial":
        return [Case([np.array([[0.2, 0.0, 0.8], [1.0, 2.0, 3.0]])], torch_like((2, k), ember.int64),
                     None, dict(num_samples=k, replacement=r, device=CPU), grad=False, id=f"{r}")
                for k, r in ((5, True), (2, False))] + [
                Case([np.array([0.5, 0.0, 0.25, 0.25])], torch_like((3,), ember.int64), None,
                     dict(num_samples=3, replacement=False, device=CPU), grad=False, id="1d")]
    return [Case([], torch_like((3, 4), d), None, dict(shape=(3, 4), dtype=d, device=CPU),
                 grad=False, id=d.name) for d in (ember.float32, ember.float64)]


def _off_integers(*shape):
    """Values at least 0.1 from any integer: floor and % have jumps there."""
    return np.floor(f64(*shape, lo=-3, hi=3)) + rng.uniform(0.1, 0.9, size=shape)


def _non_dividing(*shape):
    """Divisors whose multiples stay off the dividends of _off_integers (% jumps there)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.choice([1.0, 2.0, 3.0], size=shape) \
        if shape else np.asarray(2.0)


def _shifted(*shape):
    """distinct() moved off its grid, so it never ties with another distinct() sample."""
    return distinct(*shape) + 0.0123


def _no_scalars(cases):
    # torch.maximum/minimum take tensors only.
    return [c for c in cases if all(isinstance(x, np.ndarray) for x in c.inputs)]


def _torch_true(*a):
    return __import__("torch").tensor(True)


def _np_true(*a):
    return np.array(True)


def _build_cases():
    torch_op = lambda name: (lambda *xs: getattr(__import__("torch"), name)(*xs))  # noqa: E731
    import operator as op
    cases = {
        "neg": unary_cases("neg", np.negative),
        "exp": unary_cases("exp", np.exp),
        "log": unary_cases("log", np.log, make=_pos),
        "sqrt": unary_cases("sqrt", np.sqrt, make=_pos),
        "abs": unary_cases("abs", np.abs, make=away_from_zero),
        "sign": [Case(c.inputs, c.torch_fn, np.sign, id=c.id, grad=False)
                 for c in unary_cases("sign", np.sign, make=away_from_zero)]
        + [Case([np.array([-1.0, 0.0, 2.0])], lambda a: a.sign(), np.sign, id="zero", grad=False)],
        "sin": unary_cases("sin", np.sin),
        # floor's gradient is zero everywhere FD can see (inputs stay off the integers).
        "floor": unary_cases("floor", np.floor, make=_off_integers)
        + [Case([np.array([-1.0, 0.0, 2.5, -2.5])], lambda a: a.floor(), np.floor, id="edges",
                grad=False)],
        "floor_divide": [Case(c.inputs, c.torch_fn, c.ref, id=c.id, grad=False)
                         for c in binary_cases(op.floordiv, np.floor_divide, make=_off_integers,
                                               make_b=away_from_zero)],
        # torch has no derivative for scalar % tensor.
        "remainder": [Case(c.inputs, c.torch_fn, c.ref, id=c.id, grad=c.grad and c.id != "rscalar")
                      for c in binary_cases(op.mod, np.remainder, make=_off_integers,
                                            make_b=_non_dividing)],
        "cos": unary_cases("cos", np.cos),
        "tanh": unary_cases("tanh", np.tanh),
        "sigmoid": unary_cases("sigmoid", _sigmoid_ref)
        + [Case([np.array([-800.0, -30.0, 0.0, 30.0, 800.0])], lambda a: a.sigmoid(), _sigmoid_ref,
                id="extreme", grad=False)],
        "erf": unary_cases("erf", _erf_ref),
        "softplus": _softplus_cases()
        + [Case([np.array([-800.0, -30.0, -1e-9, 0.0, 30.0, 800.0])], _torch_softplus,
                _softplus_ref, id="extreme", grad=False)],
        "relu": unary_cases("relu", lambda a: np.maximum(a, 0), make=away_from_zero),
        "logical_not": [Case([rng.integers(0, 2, (3, 4)).astype(bool)], torch_op("logical_not"),
                             np.logical_not, id="bool", grad=False),
                        Case([f64(3)], torch_op("logical_not"), np.logical_not, id="float",
                             grad=False)],
        "cast": _cast_cases(),
        "add": binary_cases(op.add, np.add),
        # PyTorch refuses bool operands of subtraction; ember need not match an error.
        "sub": [c for c in binary_cases(op.sub, np.subtract) if c.id != "bool-int"],
        "mul": binary_cases(op.mul, np.multiply),
        "div": binary_cases(op.truediv, np.true_divide, make_b=away_from_zero),
        "pow": binary_cases(op.pow, np.power, make=_pos, scalar=2.0)
        + [Case([np.arange(4), 2], op.pow, None, id="int-int", grad=False),
           Case([f64(3), 3], op.pow, np.power, id="float-int"),
           Case([np.array([0.0, 1.0, 2.0]), f64(3)], op.pow, np.power, id="zero-base", grad=False)],
        "maximum": _no_scalars(binary_cases(torch_op("maximum"), np.maximum, make=distinct,
                                            make_b=_shifted, ints=False))
        + [Case([np.arange(6).reshape(2, 3), np.array([1, 3, 5], np.int32)], torch_op("maximum"),
                np.maximum, id="int", grad=False)],
        "minimum": _no_scalars(binary_cases(torch_op("minimum"), np.minimum, make=distinct,
                                            make_b=_shifted, ints=False))
        + [Case([np.arange(6).reshape(2, 3), np.array([1, 3, 5], np.int32)], torch_op("minimum"),
                np.minimum, id="int", grad=False)],
        "logical_and": _bool_cases("logical_and", np.logical_and),
        "logical_or": _bool_cases("logical_or", np.logical_or),
        "where": _where_cases(),
        "index": _index_cases(),
        "index_put": _index_put_cases(),
        "one_hot": [Case([np.array([[0, 3], [2, 1]])],
                         lambda a: __import__("torch").nn.functional.one_hot(a, 5),
                         lambda a: np.eye(5, dtype=np.int64)[a], {"num_classes": 5}, id="2d",
                         grad=False),
                    Case([np.array(2)], lambda a: __import__("torch").nn.functional.one_hot(a, 3),
                         lambda a: np.eye(3, dtype=np.int64)[a], {"num_classes": 3}, id="0d",
                         grad=False)],
        # A check: True when every index is in range (and raises otherwise, see
        # tests/test_checked_replays.py); torch's only counterpart is its own raising.
        "check_index": [Case([np.array([[0, 3], [-100, 1]])], _torch_true, _np_true,
                             {"bound": 4, "ignore": -100, "name": "t", "message": "{}"},
                             id="ignore", grad=False),
                        Case([np.zeros((0,), np.int64)], _torch_true, _np_true,
                             {"bound": 1, "name": "t", "message": "{}"}, id="empty",
                             grad=False)],
        "matmul": _matmul_cases(),
        "reshape": [Case([f64(3, 4)], lambda a: a.reshape(2, 6), lambda a: a.reshape(2, 6),
                         {"shape": (2, 6)}, id="2d"),
                    Case([transposed(f64(4, 3))], lambda a: a.reshape(12), lambda a: a.reshape(12),
                         {"shape": (12,)}, id="noncontig"),
                    Case([np.asarray(f64(1)[0])], lambda a: a.reshape(1, 1),
                         lambda a: a.reshape(1, 1), {"shape": (1, 1)}, id="0d")],
        "permute": [Case([f64(2, 3, 4)], lambda a: a.permute(2, 0, 1),
                         lambda a: a.transpose(2, 0, 1), {"dims": (2, 0, 1)}, id="3d"),
                    Case([f64(5, 4)[::2]], lambda a: a.permute(1, 0), lambda a: a.T,
                         {"dims": (1, 0)}, id="sliced")],
        "diagonal": [Case([f64(3, 4)], lambda a: a.diagonal(1), lambda a: a.diagonal(1),
                          {"offset": 1, "dim1": 0, "dim2": 1}, id="offset"),
                     Case([f64(2, 3, 4)], lambda a: a.diagonal(-1, 2, 0),
                          lambda a: a.diagonal(-1, 2, 0), {"offset": -1, "dim1": 2, "dim2": 0},
                          id="3d")],
        "expand": [Case([f64(3, 1)], lambda a: a.expand(2, 3, 4),
                        lambda a: np.broadcast_to(a, (2, 3, 4)), {"shape": (2, 3, 4)}, id="3d"),
                   Case([np.asarray(f64(1)[0])], lambda a: a.expand(3),
                        lambda a: np.broadcast_to(a, (3,)), {"shape": (3,)}, id="0d")],
        "contiguous": [Case([transposed(f64(4, 3))], lambda a: a.contiguous(), lambda a: a,
                            id="noncontig"),
                       Case([np.arange(5)], lambda a: a.contiguous(), lambda a: a, id="int",
                            grad=False)],
        "to_device": [Case([f64(3, 2)], lambda a: a.to("cpu"), lambda a: a, {"device": CPU},
                           id="cpu")],
        "detach": [Case([f64(3, 2)], lambda a: a.detach(), lambda a: a, id="2d", grad=False)],
        "data_update": [Case([f64(3, 2), f64(3, 2) + 1], lambda a, b: a + (b - a).detach(),
                             lambda a, b: b, id="2d", grad=False)],
        "slice": [Case([f64(5, 6)], _slice_torch(((1, 4, 2), 3)), _slice_ref(((1, 4, 2), 3)),
                       {"key": ((1, 4, 2), 3)}, id="step-int"),
                  Case([f64(3, 4)], _slice_torch((None, (0, 3, 1), None, 2)),
                       _slice_ref((None, (0, 3, 1), None, 2)), {"key": (None, (0, 3, 1), None, 2)},
                       id="newaxis"),
                  Case([transposed(f64(4, 5))], _slice_torch(((1, 5, 3),)),
                       _slice_ref(((1, 5, 3),)), {"key": ((1, 5, 3),)}, id="noncontig"),
                  Case([f64(4)], _slice_torch((2,)), _slice_ref((2,)), {"key": (2,)}, id="to-0d")],
        "unslice": [Case([f64(2, 6)], _unslice_torch((5, 6), ((1, 4, 2),)),
                         _unslice_ref((5, 6), ((1, 4, 2),)), {"shape": (5, 6), "key": ((1, 4, 2),)},
                         id="rows"),
                    Case([f64(3)], _unslice_torch((3, 4), ((0, 3, 1), 2)),
                         _unslice_ref((3, 4), ((0, 3, 1), 2)),
                         {"shape": (3, 4), "key": ((0, 3, 1), 2)}, id="col")],
        # Views of a storage as pure values (ember/ir/views.py): what a compiled call's
        # in-place update through an alias becomes. torch.as_strided on contiguous input.
        "strided_view": [
            Case([f64(3, 4)], lambda a: __import__("torch").as_strided(a, (2, 2), (4, 2), 5),
                 lambda a: a.reshape(-1)[[[5, 7], [9, 11]]],
                 {"shape": (2, 2), "strides": (4, 2), "offset": 5}, id="rows-step"),
            Case([f64(3, 4)], lambda a: __import__("torch").as_strided(a, (4, 3), (1, 4), 0),
                 lambda a: a.T, {"shape": (4, 3), "strides": (1, 4), "offset": 0}, id="t"),
            Case([f64(2, 3)], lambda a: __import__("torch").as_strided(a, (2, 3), (0, 1), 3),
                 lambda a: np.broadcast_to(a[1], (2, 3)),
                 {"shape": (2, 3), "strides": (0, 1), "offset": 3}, id="expanded")],
        "strided_scatter": [
            Case([f64(3, 4), f64(2, 2)],
                 _torch_scatter((2, 2), (4, 2), 5),
                 lambda a, v: _np_scatter(a, v, (2, 2), (4, 2), 5),
                 {"shape": (2, 2), "strides": (4, 2), "offset": 5}, id="rows-step"),
            Case([f64(3, 4), f64(4)],
                 _torch_scatter((4,), (1,), 8),
                 lambda a, v: _np_scatter(a, v, (4,), (1,), 8),
                 {"shape": (4,), "strides": (1,), "offset": 8}, id="last-row")],
        "cat": [Case([f64(2, 3), f64(4, 3)], lambda *a: __import__("torch").cat(a, 0),
                     lambda *a: np.concatenate(a, 0), {"dim": 0}, id="dim0"),
                Case([f64(2, 3), transposed(f64(2, 4)), f64(2, 1)],
                     lambda *a: __import__("torch").cat(a, 1), lambda *a: np.concatenate(a, 1),
                     {"dim": 1}, id="dim1-noncontig")],
        "unfold2d": _unfold_cases(),
        "fold2d": _fold_cases(),
        **_conv_cases(),
        "sum": _reduce_cases("sum", "sum", f64),
        "amax": _reduce_cases("amax", "max", distinct),
        "argmax": _argmax_cases(),
        "rand": _random_cases("rand"),
        "randn": _random_cases("randn"),
        "randint": _random_cases("randint"),
        "randperm": _random_cases("randperm"),
        "multinomial": _random_cases("multinomial"),
    }
    cases["full"], cases["arange"] = _creation_cases()
    cases.update(_tensor_function_cases())
    cases.update(_math_cases())
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        cases[name] = _cmp_cases(name)
    return cases


def _torch(name, **kw):
    return lambda *xs: getattr(__import__("torch"), name)(*xs, **kw)


def _np_gather(dim):
    return lambda a, i: np.take_along_axis(a[tuple(slice(0, n) if d != dim else slice(None)
                                                    for d, n in enumerate(i.shape))], i, dim)


def _np_scatter_along(dim, accumulate):
    def ref(a, i, src):
        out = a.copy()
        for pos in np.ndindex(i.shape):
            tgt = list(pos)
            tgt[dim] = i[pos]
            if accumulate:
                out[tuple(tgt)] += src[pos]
            else:
                out[tuple(tgt)] = src[pos]
        return out
    return ref


def _np_argsort_desc(dim):
    # Stable descending: ascending of the reversed dim, reversed back.
    def ref(a):
        n = a.shape[dim]
        return n - 1 - np.flip(np.argsort(np.flip(a, dim), axis=dim, kind="stable"), dim)
    return ref


def _math_cases():
    """ember/ops/mathops.py: the inverse trig functions, atan2 (inputs of one shape: its
    callers broadcast), gcd and lcm."""
    ia = np.array([[12, -9, 0], [7, 20, -15]], dtype=np.int64)
    ib = np.array([[8, 6, 5], [0, -4, 10]], dtype=np.int64)
    inside = lambda *s: f64(*s, lo=-0.9, hi=0.9)  # noqa: E731
    return {
        "atan": [Case([f64(3, 4)], lambda a: a.atan(), np.arctan, id="2d")],
        "asin": [Case([inside(3, 4)], lambda a: a.asin(), np.arcsin, id="2d")],
        "acos": [Case([inside(3, 4)], lambda a: a.acos(), np.arccos, id="2d")],
        "atan2": [Case([f64(3, 4), f64(3, 4)], lambda y, x: y.atan2(x), np.arctan2, id="2d")],
        "gcd": [Case([ia, ib], lambda a, b: a.gcd(b), np.gcd, id="int", grad=False)],
        "lcm": [Case([ia, ib], lambda a, b: a.lcm(b), np.lcm, id="int", grad=False)],
    }


def _tensor_function_cases():
    """The primitives under the tensor functions (issue 14): log1p, expm1, round, fmod,
    bitwise ops, gather/scatter, nonzero, argsort, cumsum/cumprod, flip."""
    ia = np.array([[1, 2, 12], [-4, 5, 7]], dtype=np.int64)
    ib = np.array([3, 6, 1], dtype=np.int64)
    b = lambda *s: rng.integers(0, 2, size=s).astype(bool)  # noqa: E731
    perm_rows = np.stack([rng.permutation(4)[:3] for _ in range(5)], axis=1)  # (3, 5) unique
    bitwise = {}
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        ref = getattr(np, name)
        bitwise[name] = [Case([ia, ib], _torch(name), ref, id="i64", grad=False),
                         Case([ia.astype(np.int32), 6], _torch(name), ref, id="i32-int",
                              grad=False),
                         Case([b(2, 3), b(3)], _torch(name), ref, id="bool", grad=False),
                         Case([np.asarray(5, np.int64), ia.astype(np.int32)], _torch(name), None,
                              id="0d-i64-i32", grad=False)]
    counts = np.array([[0, 3, 63], [64, -1, 2]], dtype=np.int64)   # the width and beyond

    def shift_ref(left):
        def ref(a, c):
            a, c = np.broadcast_arrays(np.asarray(a), np.asarray(c))
            ok = (c >= 0) & (c < a.dtype.itemsize * 8)
            c = np.where(ok, c, 0).astype(a.dtype)
            if left:
                return np.where(ok, np.left_shift(a, c), 0).astype(a.dtype)
            return np.where(ok, np.right_shift(a, c), np.where(a < 0, -1, 0)).astype(a.dtype)
        return ref

    for name, left in (("bitwise_left_shift", True), ("bitwise_right_shift", False)):
        bitwise[name] = [Case([ia, counts], _torch(name), shift_ref(left), id="i64", grad=False),
                         Case([ia.astype(np.int32), 2], _torch(name), shift_ref(left),
                              id="i32-int", grad=False),
                         Case([ia.astype(np.uint8), np.array([1, 7, 9], np.uint8)],
                              _torch(name), shift_ref(left), id="u8", grad=False)]
    return dict(bitwise, **{
        "bitwise_not": [Case([ia], _torch("bitwise_not"), np.invert, id="i64", grad=False),
                        Case([b(4)], _torch("bitwise_not"), np.invert, id="bool", grad=False)],
        "logical_xor": _bool_cases("logical_xor", np.logical_xor),
        "log1p": unary_cases("log1p", np.log1p, make=_pos)
        + [Case([np.array([1e-10, -1e-9, 1e-5, 3e-8])], lambda a: a.log1p(), np.log1p, id="tiny"),
           Case([np.array([1e-8, -3e-8], np.float32)], lambda a: a.log1p(), np.log1p,
                id="tiny-f32")],
        "expm1": unary_cases("expm1", np.expm1)
        + [Case([np.array([1e-10, -1e-9, 1e-5])], lambda a: a.expm1(), np.expm1, id="tiny")],
        "round": [Case([f64(3, 4) * 10], lambda a: __import__("torch").round(a), np.round,
                       {"decimals": 0}, id="2d"),
                  Case([np.array([0.5, 1.5, 2.5, -0.5, -1.5])], lambda a: a.round(), np.round,
                       {"decimals": 0}, id="half-even", grad=False),
                  Case([f64(5)], lambda a: a.round(decimals=2), lambda a: np.round(a, 2),
                       {"decimals": 2}, id="decimals", grad=False),
                  Case([ia], lambda a: a.round(), lambda a: a, {"decimals": 0}, id="int",
                       grad=False)],
        "fmod": [c for c in binary_cases(_torch("fmod"), np.fmod, make=_off_integers,
                                         make_b=_non_dividing) if c.id != "rscalar"],
        "gather": [Case([f64(3, 4), rng.integers(0, 4, (3, 2))], lambda a, i: a.gather(1, i), _np_gather(1), {"dim": 1}, id="dim1"),
                   Case([transposed(f64(4, 5)), rng.integers(0, 4, (6, 3))],
                        lambda a, i: a.gather(0, i), _np_gather(0), {"dim": 0},
                        id="dim0-smaller-noncontig"),
                   Case([np.arange(6).reshape(2, 3), np.array([[2, 0]])],
                        lambda a, i: a.gather(1, i), _np_gather(1), {"dim": 1}, id="int",
                        grad=False)],
        "scatter": [Case([f64(4, 5), perm_rows, f64(3, 5)],
                         lambda a, i, s: a.scatter(0, i, s), _np_scatter_along(0, False),
                         {"dim": 0, "accumulate": False}, id="unique"),
                    # torch 2.13's backward fails when src is larger than the index.
                    Case([f64(4, 5), perm_rows, f64(3, 6)],
                         lambda a, i, s: a.scatter(0, i, s), _np_scatter_along(0, False),
                         {"dim": 0, "accumulate": False}, id="src-larger", grad=False),
                    Case([f64(3, 4), rng.integers(0, 4, (3, 6)), f64(3, 6)],
                         lambda a, i, s: a.scatter_add(1, i, s), _np_scatter_along(1, True),
                         {"dim": 1, "accumulate": True}, id="add-repeated"),
                    Case([np.zeros((2, 3), np.int64), np.array([[1, 1, 0]]),
                          np.array([[5, 6, 7]])], lambda a, i, s: a.scatter_add(0, i, s),
                         _np_scatter_along(0, True), {"dim": 0, "accumulate": True}, id="int",
                         grad=False)],
        "nonzero": [Case([np.array([[0, 3, 0], [4, 0, 5]])], _torch("nonzero"), np.argwhere,
                         id="int", grad=False),
                    Case([np.array([0.0, -1.5, np.nan, 0.0])], _torch("nonzero"), np.argwhere,
                         id="float-nan", grad=False),
                    Case([np.asarray(2.0)], _torch("nonzero"), np.argwhere, id="0d", grad=False),
                    Case([np.zeros((2, 0, 3))], _torch("nonzero"), np.argwhere, id="empty",
                         grad=False)],
        # ember/ops/valueops.py (helper api2)
        "bincount": [Case([np.array([1, 4, 1, 0])], lambda a: a.bincount(minlength=6),
                          lambda a: np.bincount(a, minlength=6), {"minlength": 6}, grad=False),
                     Case([np.array([2, 0, 2]), f64(3)], lambda a, w: a.bincount(w),
                          lambda a, w: np.bincount(a, w), {"minlength": 0}, id="weights",
                          grad=False)],
        "unique": [Case([np.array([[3, 1], [1, 3]])], lambda a: a.unique(), np.unique,
                        {"part": "values", "dim": None}, grad=False),
                   Case([np.array([[3, 1], [1, 2]])],
                        lambda a: a.unique(return_inverse=True)[1],
                        lambda a: np.unique(a, return_inverse=True)[1].reshape(a.shape),
                        {"part": "inverse", "dim": None}, id="inverse", grad=False),
                   Case([np.array([[3, 1], [3, 1], [0, 2]])],
                        lambda a: a.unique(dim=0, return_counts=True)[1],
                        lambda a: np.unique(a, axis=0, return_counts=True)[1],
                        {"part": "counts", "dim": 0}, id="counts-dim0", grad=False)],
        "scatter_reduce_np": [
            Case([f64(3, 4), np.array([[0, 2, 2, 1], [0, 0, 1, 1]]), f64(2, 4)],
                 lambda a, i, s, r=r, inc=inc: a.scatter_reduce(0, i, s, r, include_self=inc),
                 None, {"dim": 0, "reduce": r, "include_self": inc}, id=f"{r}-{inc}",
                 grad=False)
            for r in ("prod", "amax", "amin") for inc in (True, False)],
        "argsort": [Case([distinct(3, 4)], lambda a: a.argsort(1),
                         lambda a: np.argsort(a, 1, kind="stable"),
                         {"dim": 1, "descending": False}, id="asc"),
                    Case([rng.integers(0, 3, (4, 5))], lambda a: a.argsort(dim=0, descending=True,
                                                                           stable=True),
                         _np_argsort_desc(0), {"dim": 0, "descending": True}, id="desc-ties"),
                    Case([np.array([2.0, np.nan, -1.0, np.nan, 5.0])],
                         lambda a: a.argsort(dim=0, stable=True),
                         lambda a: np.argsort(a, kind="stable"),
                         {"dim": 0, "descending": False}, id="nan", grad=False),
                    Case([np.array([True, False, True])],
                         lambda a: a.argsort(dim=0, descending=True, stable=True),
                         _np_argsort_desc(0), {"dim": 0, "descending": True}, id="bool-desc",
                         grad=False)],
        "cumsum": [Case([f64(3, 4)], lambda a: a.cumsum(1), lambda a: np.cumsum(a, 1),
                        {"dim": 1}, id="dim1"),
                   Case([transposed(f64(4, 3))], lambda a: a.cumsum(0), lambda a: np.cumsum(a, 0),
                        {"dim": 0}, id="dim0-noncontig"),
                   Case([ia], lambda a: a.cumsum(1), lambda a: np.cumsum(a, 1), {"dim": 1},
                        id="int", grad=False)],
        "cumprod": [Case([away_from_zero(3, 4)], lambda a: a.cumprod(1),
                         lambda a: np.cumprod(a, 1), {"dim": 1}, id="dim1"),
                    Case([np.array([[2.0, 0.0, 3.0, 4.0], [1.5, 2.0, 0.0, 0.0]])],
                         lambda a: a.cumprod(1), lambda a: np.cumprod(a, 1), {"dim": 1},
                         id="zeros"),
                    Case([transposed(away_from_zero(4, 3))], lambda a: a.cumprod(0),
                         lambda a: np.cumprod(a, 0), {"dim": 0}, id="dim0-noncontig")],
        "flip": [Case([f64(2, 3, 4)], lambda a: a.flip(0, 2), lambda a: np.flip(a, (0, 2)),
                      {"dims": (0, 2)}, id="3d"),
                 Case([transposed(f64(4, 3))], lambda a: a.flip(1), lambda a: np.flip(a, 1),
                      {"dims": (1,)}, id="noncontig"),
                 Case([np.arange(5)], lambda a: a.flip(0), lambda a: a[::-1], {"dims": (0,)},
                      id="int", grad=False)],
    })


def _torch_scatter(shape, strides, offset):
    """torch.as_strided_scatter's forward, by index_put: its gradient for the base (torch
    2.13) is the view's region instead of the rest."""
    def fn(a, v):
        import torch
        idx = np.lib.stride_tricks.as_strided(np.arange(a.numel())[offset:], shape,
                                              [s * 8 for s in strides]).reshape(-1)
        flat = a.reshape(-1).index_put((torch.tensor(idx),), v.reshape(-1))
        return flat.reshape(a.shape)
    return fn


def _np_scatter(a, v, shape, strides, offset):
    out = a.copy()
    flat = out.reshape(-1)[offset:]
    np.lib.stride_tricks.as_strided(flat, shape, [s * flat.itemsize for s in strides])[...] = v
    return out


CASES = _build_cases()
CASES.update(linalg_cases(Case))   # ember/ops/linalg.py (tests/linalg_registry_cases.py)
CASES.update(spectral_cases(Case))   # ember/ops/spectral.py (same file)
# The ops of ember.special, ember.tensor_more and ember.distributions.
from registry_cases_special import special_cases  # noqa: E402
CASES.update(special_cases(Case, unary_cases))
PARAMS = [pytest.param(name, case, id=f"{name}-{case.id or i}")
          for name in sorted(CASES) for i, case in enumerate(CASES[name])]


def test_every_registry_op_has_cases():
    missing = sorted(set(OPS) - set(CASES))
    assert not missing, f"registry ops without test cases in CASES: {missing}"
    stale = sorted(set(CASES) - set(OPS))
    assert not stale, f"CASES names ops that are not registered: {stale}"


def _differentiable(name, case):
    return OPS[name].vjp is not None and case.grad and OPS[name].kind not in ("random", "creation")


@pytest.mark.parametrize("name,case", PARAMS)
def test_op_against_torch(name, case):
    torch = pytest.importorskip("torch")
    op = OPS[name]
    if op.kind in ("random", "creation"):
        out, expected = case.ember_fn(name)(*map(ember.from_numpy, case.inputs)), case.torch_fn()
        assert out.shape == tuple(expected.shape)
        assert out.dtype.name == str(expected.dtype).replace("torch.", "")
        if op.kind == "creation":
            assert_close(out, expected)
        return
    grad = _differentiable(name, case)
    tol = {}
    if name in _VECTOR_SUMS and any(getattr(x, "dtype", None) == np.float32
                                    for x in case.inputs):
        # float32 sums whose order follows the CPU's vector width (directconv.VECTOR):
        # on AVX2 one gradient element differed from torch's by 2.2e-5 relative.
        tol = dict(rtol=1e-4, atol=1e-5)
    with torch.no_grad() if not grad else _null():
        check_against_torch(case.ember_fn(name), case.torch_fn, case.inputs, grad=grad,
                            **tol)


_VECTOR_SUMS = {"conv2d_direct", "conv2d_weight_direct"}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("name,case", PARAMS)
def test_op_against_numpy(name, case):
    """Forward against a NumPy reference; gradients against float64 central differences."""
    op = OPS[name]
    if op.kind == "random":
        _check_random(name, case)
        return
    if case.ref is not None:
        out = case.ember_fn(name)(*[ember.from_numpy(x) if isinstance(x, np.ndarray) else x
                                    for x in case.inputs])
        expected = case.ref(*case.inputs)
        assert out.shape == np.shape(expected)
        rtol = 1e-5 if (out.dtype is ember.float32 or name == "erf") else 1e-12
        if out.dtype.is_floating_point:
            np.testing.assert_allclose(to_np(out), expected, rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(to_np(out), expected)
    if _differentiable(name, case) and any(isinstance(x, np.ndarray) and x.dtype == np.float64
                                           for x in case.inputs):
        rtol = 1e-5
        if name == "erf":  # the polynomial erf is exact to ~1e-7, and so is its FD slope
            rtol = 1e-4
            check_grad_fd(case.ember_fn(name), case.inputs, rtol=rtol, atol=1e-5)
        else:
            check_grad_fd(case.ember_fn(name), case.inputs, rtol=rtol)


def _check_random(name, case):
    attrs = case.attrs
    inputs = list(map(ember.from_numpy, case.inputs))
    a = case.ember_fn(name)(*inputs)
    ember.manual_seed(7)
    b = case.ember_fn(name)(*inputs)
    ember.manual_seed(7)
    c = case.ember_fn(name)(*inputs)
    assert a.dtype is attrs.get("dtype", ember.int64)
    np.testing.assert_array_equal(to_np(b), to_np(c))  # seeding reproduces the stream
    v = to_np(b)
    if name == "rand":
        assert v.shape == attrs["shape"] and (v >= 0).all() and (v < 1).all()
    elif name == "randn":
        big = dispatch(name, shape=(20000,), dtype=attrs["dtype"], device=CPU)
        assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1) < 0.05
    elif name == "randint":
        assert v.shape == attrs["shape"] and v.min() >= attrs["low"] and v.max() < attrs["high"]
    elif name == "randperm":
        assert sorted(v.tolist()) == list(range(attrs["n"]))
    elif name == "multinomial":
        p = case.inputs[0].reshape(-1, case.inputs[0].shape[-1])
        rows = v.reshape(p.shape[0], -1)
        assert v.dtype == np.int64 and rows.shape[1] == attrs["num_samples"]
        for r, row in zip(p, rows):   # only categories of positive weight are drawn
            assert (r[row] > 0).all()
            if not attrs["replacement"]:
                assert len(set(row.tolist())) == len(row)
