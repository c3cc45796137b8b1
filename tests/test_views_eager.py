"""Views, aliases and in-place updates in eager ember, against PyTorch and NumPy.

Every view shares its base's memory and version counter; writes through any view reach
the base and the other views; autograd follows in-place updates of views as PyTorch does
(the base's history becomes CopySlices); a saved tensor changed through any alias is
reported at backward with the op and the line that saved it. A seeded fuzzer runs random
chains of views and in-place ops on ember and torch side by side.
"""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest

import ember


# ---- each view op: (name, ember/torch function, NumPy function giving the same view) ----
# The NumPy function is the reference without torch: NumPy's basic indexing, transpose and
# reshape of a C-contiguous array are views too.
VIEWS = [
    ("int-index", lambda x: x[1], lambda a: a[1]),
    ("two-ints", lambda x: x[1, 2], lambda a: a[1, 2, ...]),
    ("slice", lambda x: x[:, 1:3], lambda a: a[:, 1:3]),
    ("step", lambda x: x[::2, 1::2], lambda a: a[::2, 1::2]),
    ("newaxis", lambda x: x[None, 1], lambda a: a[None, 1]),
    ("view", lambda x: x.view(12), lambda a: a.reshape(12)),
    ("view-2d", lambda x: x.view(2, 6), lambda a: a.reshape(2, 6)),
    ("view_as", lambda x: x.view_as(x.new_zeros(4, 3)), lambda a: a.reshape(4, 3)),
    ("reshape", lambda x: x.reshape(4, 3), lambda a: a.reshape(4, 3)),
    ("flatten", lambda x: x.flatten(), lambda a: a.reshape(-1)),
    ("t", lambda x: x.t(), lambda a: a.T),
    ("transpose", lambda x: x.transpose(0, 1), lambda a: a.T),
    ("permute", lambda x: x.permute(1, 0), lambda a: a.T),
    ("T", lambda x: x.T, lambda a: a.T),
    ("narrow", lambda x: x.narrow(1, 1, 2), lambda a: a[:, 1:3]),
    ("unsqueeze", lambda x: x.unsqueeze(1), lambda a: a[:, None]),
    ("squeeze", lambda x: x[:1].squeeze(0), lambda a: a[0]),
    ("diagonal", lambda x: x.diagonal(), lambda a: np.einsum("ii->i", a[:, :3])),
    ("diagonal-offset", lambda x: x.diagonal(1), lambda a: np.einsum("ii->i", a[:, 1:4])),
    ("unbind", lambda x: x.unbind(0)[1], lambda a: a[1]),
    ("unbind-1", lambda x: x.unbind(1)[2], lambda a: a[:, 2]),
    ("split", lambda x: x.split(2, 1)[1], lambda a: a[:, 2:4]),
    ("chunk", lambda x: x.chunk(3, 0)[2], lambda a: a[2:3]),
    ("expand", lambda x: x[:1].expand(3, 4), lambda a: np.broadcast_to(a[:1], (3, 4))),
    ("detach", lambda x: x.detach(), lambda a: a),
    ("data", lambda x: x.data, lambda a: a),
]
VIEW_IDS = [v[0] for v in VIEWS]
NOT_VIEWS = ("detach", "data")   # share memory, but ``_base`` is None (as in torch)


def _base_data(T):
    return T.arange(12, dtype=T.float64).reshape(3, 4) * 1


@pytest.mark.parametrize("name,fn,ref", VIEWS, ids=VIEW_IDS)
def test_view_shares_memory_and_version_with_its_base(name, fn, ref):
    x = _base_data(ember)
    v = fn(x)
    a = x.numpy().copy()
    assert np.shares_memory(v.numpy(), x.numpy())
    assert (v._base is x) == (name not in NOT_VIEWS)
    np.testing.assert_array_equal(v.numpy(), ref(a))
    before = v._version
    x.add_(100)                      # a write to the base: the view sees it ...
    np.testing.assert_array_equal(v.numpy(), ref(a + 100))
    if name == "data":               # ... and its version, except through .data
        assert v._version == before
    else:
        assert v._version == x._version == before + 1
    if name != "expand":             # ... and a write through the view reaches the base
        v.mul_(2)
        expect = (a + 100).reshape(-1)
        expect[ref(np.arange(12).reshape(3, 4))] *= 2   # the positions the view covers
        np.testing.assert_array_equal(x.numpy(), expect.reshape(3, 4))


@pytest.mark.parametrize("name,fn,ref", VIEWS, ids=VIEW_IDS)
def test_view_matches_torch(name, fn, ref):
    torch = pytest.importorskip("torch")
    xs = [_base_data(T) for T in (ember, torch)]
    vs = [fn(x) for x in xs]
    for (x, v) in zip(xs, vs):
        x.add_(1)
    assert [v._base is x for x, v in zip(xs, vs)] == [vs[1]._base is xs[1]] * 2
    assert vs[0]._version == vs[1]._version
    assert tuple(vs[0].shape) == tuple(vs[1].shape)
    np.testing.assert_array_equal(vs[0].numpy(), vs[1].numpy())
    if name != "expand":
        for x, v in zip(xs, vs):
            v.sub_(3)
            v[...] = v * 2
        np.testing.assert_array_equal(xs[0].numpy(), xs[1].numpy())
        assert xs[0]._version == xs[1]._version


WRITES = [
    ("add_", lambda v, T: v.add_(T.ones(v.shape, dtype=T.float64))),
    ("add_alpha", lambda v, T: v.add_(2.0, alpha=3)),
    ("sub_", lambda v, T: v.sub_(1.5)),
    ("mul_", lambda v, T: v.mul_(-2)),
    ("div_", lambda v, T: v.div_(4)),
    ("copy_", lambda v, T: v.copy_(T.arange(v.numel(), dtype=T.float64).reshape(v.shape))),
    ("copy_broadcast", lambda v, T: v.copy_(T.tensor([7.0], dtype=T.float64))),
    ("fill_", lambda v, T: v.fill_(9)),
    ("zero_", lambda v, T: v.zero_()),
    ("setitem", lambda v, T: v.__setitem__((slice(None), 0), -1.0)),
    ("setitem-all", lambda v, T: v.__setitem__(Ellipsis, 5.0)),
    ("clamp_", lambda v, T: v.clamp_(3, 8)),
    ("masked_fill_", lambda v, T: v.masked_fill_(v > 6, -4.0)),
    ("iadd", lambda v, T: v.__iadd__(1)),
]


def _write_model(name, a):
    """The NumPy reference of each write, on a view ``a``."""
    if name == "add_":
        a += 1
    elif name == "add_alpha":
        a += 6
    elif name == "sub_":
        a -= 1.5
    elif name == "mul_":
        a *= -2
    elif name == "div_":
        a /= 4
    elif name == "copy_":
        a[...] = np.arange(a.size).reshape(a.shape)
    elif name == "copy_broadcast":
        a[...] = 7
    elif name == "fill_":
        a[...] = 9
    elif name == "zero_":
        a[...] = 0
    elif name == "setitem":
        a[:, 0] = -1
    elif name == "setitem-all":
        a[...] = 5
    elif name == "clamp_":
        np.clip(a, 3, 8, out=a)
    elif name == "masked_fill_":
        a[a > 6] = -4
    elif name == "iadd":
        a += 1


@pytest.mark.parametrize("name,write", WRITES, ids=[w[0] for w in WRITES])
def test_writes_through_a_view_reach_the_base_and_other_views(name, write):
    x = ember.arange(20, dtype=ember.float64).reshape(4, 5) * 1
    v = x[1:, ::2]          # 3x3, strided
    other = x.t()           # overlaps v
    a = x.numpy().copy()
    out = write(v, ember)
    _write_model(name, a[1:, ::2])
    assert out is v or name.startswith("setitem")
    np.testing.assert_array_equal(x.numpy(), a)
    np.testing.assert_array_equal(other.numpy(), a.T)
    assert x._version == v._version == other._version >= 1


@pytest.mark.parametrize("name,write", WRITES, ids=[w[0] for w in WRITES])
def test_writes_through_a_view_match_torch(name, write):
    torch = pytest.importorskip("torch")
    res = []
    for T in (ember, torch):
        x = T.arange(20, dtype=T.float64).reshape(4, 5) * 1
        v = x.t()[::2, 1:]
        write(v, T)
        res.append((x.numpy().copy(), x._version))
    np.testing.assert_array_equal(res[0][0], res[1][0])


def test_integer_index_is_a_view():
    y = ember.zeros(3, 4)
    y[1, 2].add_(5)         # was lost when integer indexing copied
    y[2][3].fill_(7)
    assert y[1, 2].item() == 5 and y[2, 3].item() == 7
    assert y[1, 2]._base is y and y[1][2]._base is y


def test_setitem_drops_a_values_leading_ones_as_torch():
    """cleanrl's GAE loop writes ``advantages[t] = ...`` with a [1, num_envs] value."""
    a = ember.zeros(3, 2)
    a[0] = ember.ones(1, 2)
    a[1:3] = ember.ones(1, 2, 2) * 2
    a[ember.tensor([0])] = ember.ones(1, 1, 2) * 5
    assert a.tolist() == [[5.0, 5.0], [2.0, 2.0], [2.0, 2.0]]
    with pytest.raises(ember.OpError):
        a[0] = ember.ones(2, 2)   # a leading dim that is not 1 still does not fit
    v = ember.ones(1, 2, requires_grad=True)
    y = ember.zeros(3, 2, requires_grad=True) * 1
    y[0] = v * 2
    y.sum().backward()
    assert v.grad.tolist() == [[2.0, 2.0]]


def test_a_device_equals_no_string_that_names_no_device():
    """cleanrl's ``get_device`` compares a device with "auto": False, as torch."""
    assert not ember.device("cpu") == "auto" and ember.device("cpu") != "auto"


def test_range_index_is_a_list_index():
    """``input[range(n), target]`` (PyTorch's "What is torch.nn really?" tutorial's nll)."""
    x = ember.arange(12.).view(3, 4)
    assert x[range(3), ember.tensor([0, 1, 2])].tolist() == [0.0, 5.0, 10.0]
    assert x[:, range(1, 3)].tolist() == x[:, [1, 2]].tolist()
    x[range(2)] = 0
    assert x.sum().item() == 38.0
    f = ember.compile(lambda x, t: -x[range(t.shape[0]), t].mean())
    for t in ([0, 1, 2], [3, 1, 0]):
        assert f(ember.arange(12.).view(3, 4), ember.tensor(t)).item() == pytest.approx(
            -np.arange(12.).reshape(3, 4)[range(3), t].mean())


def test_view_of_an_incompatible_layout_raises_and_reshape_copies():
    x = ember.arange(12.0).reshape(3, 4) * 1
    with pytest.raises(RuntimeError, match=r"view size is not compatible with input tensor's "
                                           r"size and stride.*Use \.reshape\(\.\.\.\) instead"):
        x.t().view(-1)
    r = x.t().reshape(-1)   # must copy: not a view
    assert r._base is None and not np.shares_memory(r.numpy(), x.numpy())
    assert x.reshape(2, 6)._base is x and x.t().reshape(4, 3, 1)._base is x
    assert x[:, :2].view(3, 2, 1)._base is x          # dims that stay apart keep a view
    assert x[:, ::2].reshape(6)._base is x             # evenly spaced: still a view
    assert x[:, :2].reshape(6)._base is None


def test_view_compatibility_matches_torch():
    torch = pytest.importorskip("torch")
    rng = random.Random(0)
    for _ in range(300):
        shape = [rng.randint(1, 4) for _ in range(rng.randint(1, 4))]
        n = int(np.prod(shape))
        xs = [T.arange(n, dtype=T.float64).reshape(shape) for T in (ember, torch)]
        perm = list(range(len(shape)))
        rng.shuffle(perm)
        key = tuple(slice(0, rng.randint(1, s), rng.randint(1, 2)) for s in shape)
        ys = [x.permute(perm)[key] for x in xs]
        m = ys[1].numel()
        target = [m] if rng.random() < 0.5 else [1, m, 1]
        outcome = []
        for y in ys:
            try:
                v = y.view(target)
                outcome.append(v._base is not None)
            except RuntimeError as e:
                assert "view size is not compatible" in str(e)
                outcome.append("raised")
            outcome.append(y.reshape(target)._base is not None)
        assert outcome[:2] == outcome[2:], (shape, perm, key, target)


def test_data_has_its_own_version_and_data_assignment_rebinds():
    x = ember.zeros(3)
    d = x.data
    d.add_(1)
    assert x._version == 0 and x.tolist() == [1.0, 1.0, 1.0]
    det = x.detach()
    det.add_(1)
    assert x._version == 1 and x.tolist() == [2.0, 2.0, 2.0]
    y = ember.ones(3)
    x.data = y
    x.add_(1)
    assert y.tolist() == [2.0, 2.0, 2.0]


def test_detach_in_place_of_a_view_raises():
    x = ember.zeros(3)
    with pytest.raises(RuntimeError, match="Can't detach views in-place"):
        x[1:].detach_()


# ---- autograd through in-place updates of views ----------------------------------------

def _grad_case(T, case):
    """Gradient patterns; returns the tensors whose .grad are compared."""
    x = T.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]], dtype=T.float64, requires_grad=True)
    w = T.tensor([2.0, -3.0, 0.25], dtype=T.float64, requires_grad=True)
    W = T.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=T.float64)
    y = x * 2
    if case == "slice-mul":
        y[:, 1:].mul_(x[:, :2])
        out = (y * W).sum()
    elif case == "row-add-leaf":
        y[1].add_(w)
        out = (y * W).sum()
    elif case == "int-index":
        y[0, 1].mul_(w[2])
        y[1, 2].add_(w[0] * w[1])
        out = (y * W).sum()
    elif case == "transpose-view":
        v = y.t()
        v[1].mul_(w[:2])
        out = (v * W.t()).sum() + (y ** 2).sum()
    elif case == "view-of-view":
        v = y.view(6)[1:5].view(2, 2)
        v.mul_(v.detach() + 1)
        v[0].add_(w[:2])
        out = (y * W).sum() + v.sum()
    elif case == "base-then-view":
        v = y[:, 0]
        y.mul_(x)            # in place on the base, then read the view
        out = (v * w[:2]).sum()
    elif case == "view-then-other-view":
        a = y[0]
        b = y[:, 1]
        a.mul_(w)
        out = (b * b).sum()
    elif case == "chain":
        y[1:].mul_(3)
        y.t()[2].add_(w[:2])
        y.diagonal().mul_(w[1:])
        y[0].clamp_(-2, 5)
        out = (y * W).sum()
    elif case == "copy-into-view":
        y[:, 2].copy_(w[:2] * 5)
        y[0].fill_(1.5)
        out = (y * W).sum()
    elif case == "setitem":
        y[1, :2] = w[1:] ** 2
        y[y > 5] = 0.0
        out = (y * W).sum()
    elif case == "masked-fill":
        m = T.tensor([True, False, True])
        y[1].masked_fill_(m, 3.0)
        y[0].mul_(w)
        out = (y * W).sum()
    elif case == "plain-base":
        z = T.zeros(2, 3, dtype=T.float64)
        z[0].add_(w)
        z[:, 1].mul_(x[:, 0])
        out = (z * W).sum()
    elif case == "expand-row":
        e = T.zeros(3, dtype=T.float64).expand(2, 3)
        e[0].add_(w)          # no two elements of e[0] share memory: allowed
        out = (e * W).sum()
    elif case == "diagonal":
        d = y.diagonal(1)
        d.mul_(w[:2])
        out = (y * W).sum() + d.sum()
    elif case == "unsqueeze-squeeze":
        v = y.unsqueeze(0)[:, 1].squeeze(0)
        v.mul_(w)
        out = (y * W).sum()
    else:
        raise KeyError(case)
    out.backward()
    return [x.grad, w.grad]


GRAD_CASES = ["slice-mul", "row-add-leaf", "int-index", "transpose-view", "view-of-view",
              "base-then-view", "view-then-other-view", "chain", "copy-into-view", "setitem",
              "masked-fill", "plain-base", "expand-row", "diagonal", "unsqueeze-squeeze"]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_through_in_place_view_updates_match_torch(case):
    torch = pytest.importorskip("torch")
    ge = _grad_case(ember, case)
    gt = _grad_case(torch, case)
    for a, b in zip(ge, gt):
        if b is None:
            assert a is None or not a.numpy().any()
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


def test_gradient_without_torch_slice_mul():
    # y = 2x; y[1:] *= x[:2]  =>  y = [2x0, 2x1*x0, 2x2*x1]
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    y[1:].mul_(x[:2])
    y.sum().backward()
    # d/dx0 = 2 + 2x1, d/dx1 = 2x0 + 2x2, d/dx2 = 2x1
    assert x.grad.tolist() == [6.0, 8.0, 4.0]
    assert y.grad_fn.name() == "CopySlices"


def test_view_history_follows_base_updates():
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    v = y[:2]
    w = ember.tensor([5.0, 6.0, 7.0], requires_grad=True)
    y.mul_(w)
    assert v.requires_grad and v._base is y
    v.sum().backward()
    assert x.grad.tolist() == [5.0, 6.0, 0.0] and w.grad.tolist() == [1.0, 2.0, 0.0]
    z = ember.zeros(3)
    u = z[1:]
    assert not u.requires_grad
    z.add_(w)                # the base starts requiring grad: so does its view
    assert u.requires_grad and u.grad_fn is not None


def test_leaf_view_in_place_raises():
    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being "
                                           "used in an in-place operation"):
        x[:2].add_(1)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        x.add_(1)
    with ember.no_grad():
        x[:2].add_(1)        # an optimizer's update is fine
    assert x.tolist() == [2.0, 2.0, 1.0]


def test_multi_output_and_no_grad_views_refuse_tracked_writes():
    w = ember.ones(2, requires_grad=True)
    for views in (lambda t: t.split(2), lambda t: t.chunk(2), lambda t: t.unbind(0)):
        a = views(ember.zeros(4))[0]
        with pytest.raises(RuntimeError, match="output of a function that returns multiple views"):
            a.mul_(w[0])
        with ember.no_grad():
            a.mul_(w[0])     # untracked: allowed
    with ember.no_grad():
        v = (w * 1)[:1]
    with pytest.raises(RuntimeError, match="A view was created in no_grad mode"):
        v.mul_(w[:1])


def test_overlapping_write_raises():
    e = ember.zeros(3).expand(2, 3)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        e.add_(1)
    e[1].add_(1)
    assert e.tolist() == [[1.0, 1.0, 1.0]] * 2


def test_version_error_names_the_op_and_the_line():
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    z_line = sys._getframe().f_lineno + 1
    z = y[1:].exp()                   # exp saves its output
    line = sys._getframe().f_lineno + 1
    q = y * y                         # mul saves y
    y.t()[0].add_(1)                  # an in-place write through another view of y
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: the input \d of "
                       rf"MulBackward0 \(the mul recorded at .*test_views_eager.py:{line}\)"):
        q.sum().backward()
    zv = z.view(2)                    # the output of exp, written through a view
    zv[0] = 0.0
    with pytest.raises(RuntimeError, match=rf"the output 0 of ExpBackward0 \(the exp recorded at "
                                           rf".*test_views_eager.py:{z_line}\)"):
        z.sum().backward()


def test_write_to_a_view_of_an_input_mul_does_not_need_is_allowed():
    # ``y[0] * 3`` needs only the constant 3 for its gradient, as in PyTorch.
    x = ember.tensor([1.0, -2.0], requires_grad=True)
    y = x * 2
    s = y[0] * 3
    y[1] = s
    y.sum().backward()
    assert x.grad.tolist() == [8.0, 0.0]


# ---- a random-program fuzzer against torch -----------------------------------------------

class _Pair:
    def __init__(self, e, t, root: int, multi: bool = False):
        self.e, self.t, self.root, self.multi = e, t, root, multi


def _rand_key(rng, shape):
    key = []
    for s in shape:
        r = rng.random()
        if r < 0.2:
            key.append(rng.randrange(-s, s))
        elif r < 0.35:
            key.append(slice(None))
        else:
            start = rng.randrange(0, s)
            stop = rng.randrange(start + 1, s + 1)
            key.append(slice(start, stop, rng.randint(1, 3)))
    if rng.random() < 0.15:
        key.insert(rng.randint(0, len(key)), None)
    return tuple(key)


def _view_step(rng, t):
    """A random view op for a tensor of shape ``t.shape``: (description, function)."""
    shape = tuple(t.shape)
    nd = len(shape)
    n = int(np.prod(shape)) if shape else 1
    choices = ["key", "reshape", "view", "unsqueeze", "expand", "detach"]
    if nd:
        choices += ["narrow", "split", "unbind", "chunk"]
    if nd >= 2:
        choices += ["t", "transpose", "permute", "diagonal"]
    if 1 in shape:
        choices.append("squeeze")
    kind = rng.choice(choices)
    if kind == "key":
        key = _rand_key(rng, shape)
        return f"[{key}]", lambda x: x[key]
    if kind in ("reshape", "view"):
        dims = []
        m = n
        for f in (2, 3, 2, 5):
            if m % f == 0 and rng.random() < 0.5:
                dims.append(f)
                m //= f
        dims.append(m)
        rng.shuffle(dims)
        if rng.random() < 0.3:
            dims.insert(rng.randint(0, len(dims)), 1)
        if rng.random() < 0.3 and dims:
            dims[rng.randrange(len(dims))] = -1
        dims = tuple(dims)
        return f".{kind}{dims}", lambda x: getattr(x, kind)(dims)
    if kind == "unsqueeze":
        d = rng.randint(-nd - 1, nd)
        return f".unsqueeze({d})", lambda x: x.unsqueeze(d)
    if kind == "squeeze":
        d = rng.choice([i for i, s in enumerate(shape) if s == 1])
        return f".squeeze({d})", lambda x: x.squeeze(d)
    if kind == "expand":
        sizes = [rng.choice([s, 2]) if s == 1 else s for s in shape]
        if rng.random() < 0.5 or not nd:
            sizes.insert(0, rng.randint(1, 2))
        sizes = tuple(sizes)
        return f".expand{sizes}", lambda x: x.expand(sizes)
    if kind == "detach":
        return ".detach()", lambda x: x.detach()
    if kind == "narrow":
        d = rng.randrange(nd)
        start = rng.randrange(shape[d])
        length = rng.randint(1, shape[d] - start)
        return f".narrow({d},{start},{length})", lambda x: x.narrow(d, start, length)
    if kind in ("split", "chunk", "unbind"):
        d = rng.randrange(nd)
        if kind == "unbind":
            i = rng.randrange(shape[d])
            return f".unbind({d})[{i}]", lambda x: x.unbind(d)[i]
        k = rng.randint(1, shape[d])
        parts = -(-shape[d] // k) if kind == "split" else None
        if kind == "chunk":
            size = -(-shape[d] // k)
            parts = -(-shape[d] // size)
        i = rng.randrange(parts)
        return f".{kind}({k},{d})[{i}]", lambda x: getattr(x, kind)(k, d)[i]
    if kind == "t":
        if nd == 2:
            return ".t()", lambda x: x.t()
        kind = "transpose"
    if kind == "transpose":
        a, b = rng.randrange(nd), rng.randrange(nd)
        return f".transpose({a},{b})", lambda x: x.transpose(a, b)
    if kind == "permute":
        p = list(range(nd))
        rng.shuffle(p)
        p = tuple(p)
        return f".permute{p}", lambda x: x.permute(p)
    a, b = rng.sample(range(nd), 2)
    # Offsets that leave a non-empty diagonal (the programs never make empty tensors).
    off = rng.choice([o for o in (-1, 0, 1) if min(shape[a] - max(-o, 0), shape[b] - max(o, 0)) > 0])
    return f".diagonal({off},{a},{b})", lambda x: x.diagonal(off, a, b)


def _write_step(rng, shape, leaves):
    """A random in-place op: (description, function of (tensor, lib, operands))."""
    kind = rng.choice(["add_s", "mul_s", "add_t", "mul_t", "copy_", "fill_", "zero_", "clamp_",
                       "setitem", "masked_fill_", "sub_t", "div_s"])
    if kind in ("add_t", "mul_t", "copy_", "sub_t") or (kind == "setitem" and rng.random() < 0.5):
        arr = np.round(np.random.default_rng(rng.randrange(1 << 30)).uniform(-2, 2, shape), 2)
        grad = rng.random() < 0.7
        leaves.append((arr, grad))
        idx = len(leaves) - 1
    else:
        idx = None
    key = _rand_key(rng, shape) if kind == "setitem" else None
    scal = rng.choice([-1.5, 0.5, 2.0, 3.0])

    def run(x, ops):
        o = None if idx is None else ops[idx]
        if kind == "add_s":
            return x.add_(scal)
        if kind == "mul_s":
            return x.mul_(scal)
        if kind == "div_s":
            return x.div_(scal)
        if kind == "add_t":
            return x.add_(o * 1)
        if kind == "sub_t":
            return x.sub_(o, alpha=scal)
        if kind == "mul_t":
            return x.mul_(o * 1)
        if kind == "copy_":
            return x.copy_(o * 1)
        if kind == "fill_":
            return x.fill_(scal)
        if kind == "zero_":
            return x.zero_()
        if kind == "clamp_":
            return x.clamp_(-1.0, 1.5)
        if kind == "masked_fill_":
            if any(st == 0 and n > 1 for st, n in zip(x.stride(), x.shape)) if hasattr(
                    x, "stride") else False:
                raise RuntimeError("PyTorch allows this overlapping write (deprecated): skipped")
            return x.masked_fill_(x > 0.5, scal)
        val = scal if o is None else o[key]
        x[key] = val
        return x

    return f"{kind}{'' if key is None else key}{'' if idx is None else f' leaf{idx}'}", run


def _same_outcome(fe, ft, log):
    """Run one step on both sides: both must succeed, or both raise."""
    try:
        re = fe()
        ee = None
    except (RuntimeError, IndexError, ValueError) as e:
        re, ee = None, e
    try:
        rt = ft()
        et = None
    except (RuntimeError, IndexError, ValueError) as e:
        rt, et = None, e
    if (ee is None) != (et is None):
        raise AssertionError(f"ember {'raised ' + repr(ee) if ee else 'ran'}, torch "
                             f"{'raised ' + repr(et) if et else 'ran'}\n" + "\n".join(log))
    return re, rt, ee is None


def _check_values(pairs, log):
    for i, p in enumerate(pairs):
        a, b = p.e.detach().numpy(), p.t.detach().numpy()
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True):
            raise AssertionError(f"tensor {i} differs: ember {a.tolist()} torch {b.tolist()}\n"
                                 + "\n".join(log))


def run_program(seed: int, steps: int = 14) -> None:
    """One random program of views and in-place ops, on ember and torch side by side."""
    import torch

    rng = random.Random(seed)
    grad = rng.random() < 0.6
    leaf_base = grad and rng.random() < 0.15
    shape = tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 3)))
    init = np.round(np.random.default_rng(seed).uniform(-2, 2, shape), 2)
    log = [f"seed {seed}: base {shape} grad={grad} leaf_base={leaf_base}"]
    x0 = [T.tensor(init, dtype=T.float64, requires_grad=grad) for T in (ember, torch)]
    bases = x0 if leaf_base or not grad else [x * 1 for x in x0]
    pairs = [_Pair(bases[0], bases[1], 0)]
    leaves: list = []                  # (array, requires grad) of operands of writes
    ops = {ember: [], torch: []}
    results = []                       # out-of-place results that save their inputs
    for _ in range(steps):
        r = rng.random()
        p = rng.choice(pairs)
        if r < 0.45:
            desc, fn = _view_step(rng, p.t)
            log.append(f"v{len(pairs)} = v{pairs.index(p)}{desc}")
            ve, vt, ok = _same_outcome(lambda: fn(p.e), lambda: fn(p.t), log)
            if ok:
                if tuple(ve.shape) != tuple(vt.shape):
                    raise AssertionError("shapes differ\n" + "\n".join(log))
                if (ve._base is None) != (vt._base is None):
                    raise AssertionError(f"ember view={ve._base is not None}, torch "
                                         f"view={vt._base is not None}\n" + "\n".join(log))
                pairs.append(_Pair(ve, vt, p.root))
        elif r < 0.85:
            desc, fn = _write_step(rng, tuple(p.t.shape), leaves)
            for T in (ember, torch):
                while len(ops[T]) < len(leaves):
                    arr, g = leaves[len(ops[T])]
                    ops[T].append(T.tensor(arr, dtype=T.float64, requires_grad=g))
            log.append(f"v{pairs.index(p)}.{desc}")
            _same_outcome(lambda: fn(p.e, ops[ember]), lambda: fn(p.t, ops[torch]), log)
            # PyTorch makes a view's new history when its grad_fn is read, and some of its
            # checks look before that: read every grad_fn now, so both sides are up to date.
            for q in pairs:
                _same_outcome(lambda: q.e.grad_fn, lambda: q.t.grad_fn, log)
        elif r < 0.93:   # mul saves its inputs: later writes to them must be noticed
            log.append(f"r{len(results)} = v{pairs.index(p)} * v{pairs.index(p)}")
            re, rt, ok = _same_outcome(lambda: p.e * p.e, lambda: p.t * p.t, log)
            if ok:
                results.append((re, rt))
        else:            # tanh saves its output: a new base (bounded, unlike exp)
            log.append(f"v{len(pairs)} = v{pairs.index(p)}.tanh()")
            re, rt, ok = _same_outcome(lambda: p.e.tanh(), lambda: p.t.tanh(), log)
            if ok:
                pairs.append(_Pair(re, rt, len(pairs)))
        _check_values(pairs, log)
    for p in pairs:
        if p.e._version != p.t._version:
            raise AssertionError(f"versions differ: {p.e._version} vs {p.t._version}\n"
                                 + "\n".join(log))
    if not grad and not any(g for _, g in leaves):
        return
    weights = [np.random.default_rng(seed + i).uniform(-1, 1, tuple(p.t.shape))
               for i, p in enumerate(pairs)]

    terms = []   # (ember term, torch term) of the loss: weighted sums of what needs grad
    for i, (w, p) in enumerate(zip(weights, pairs)):
        if p.e.requires_grad != p.t.requires_grad:
            raise AssertionError(f"v{i}.requires_grad differs\n" + "\n".join(log))
        log.append(f"loss term v{i}")
        te, tt, ok = _same_outcome(lambda: (p.e * ember.tensor(w, dtype=ember.float64)).sum(),
                                   lambda: (p.t * torch.tensor(w, dtype=torch.float64)).sum(),
                                   log)
        if ok and tt.requires_grad:
            terms.append((te, tt))
    terms += [(re.sum(), rt.sum()) for re, rt in results if rt.requires_grad]
    if not terms:
        return
    le, lt = sum(t[0] for t in terms), sum(t[1] for t in terms)
    log.append("backward")
    try:
        lt.backward()
    except RuntimeError as e:
        if "more than one element of the written-to tensor" in str(e):
            return   # PyTorch's CopySlices cannot write a gradient into an expanded view
        raise_ = e
    else:
        raise_ = None
    try:
        le.backward()
    except RuntimeError as e:
        if raise_ is None:
            raise AssertionError(f"ember raised {e!r} at backward, torch ran\n" + "\n".join(log))
        return   # both raised (a saved tensor was written in place, say)
    if raise_ is not None:
        raise AssertionError(f"ember ran backward, torch raised {raise_!r}\n" + "\n".join(log))
    for k, (a, b) in enumerate(zip([x0[0]] + ops[ember], [x0[1]] + ops[torch])):
        if not b.is_leaf:   # the base, given a history by a write through a view
            continue
        ga = None if a.grad is None else a.grad.numpy()
        gb = None if b.grad is None else b.grad.numpy()
        if ga is None or gb is None:
            if not ((ga is None or not ga.any()) and (gb is None or not gb.any())):
                raise AssertionError(f"grad of leaf {k - 1} None on one side: {ga} {gb}\n" + "\n".join(log))
            continue
        if not np.allclose(ga, gb, rtol=1e-9, atol=1e-9):
            raise AssertionError(f"grads of leaf {k - 1} differ: ember {ga.tolist()} torch {gb.tolist()}\n"
                                 + "\n".join(log))


def test_fuzz_views_against_torch():
    pytest.importorskip("torch")
    for seed in range(200):
        run_program(seed)


@pytest.mark.fuzz
def test_fuzz_views_against_torch_many():
    """``EMBER_VIEW_FUZZ=20000 pytest -m fuzz -k many tests/test_views_eager.py``."""
    pytest.importorskip("torch")
    n = int(os.environ.get("EMBER_VIEW_FUZZ", "3000"))
    for seed in range(1000, 1000 + n):
        run_program(seed)
