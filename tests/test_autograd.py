"""Autograd semantics, compared with PyTorch where it is installed."""
from __future__ import annotations

import numpy as np
import pytest

import ember

from conftest import assert_close, check_grad_fd


def test_pytorch_intro_example():
    a = ember.tensor([2.0, 3.0], requires_grad=True)
    (a ** 2).backward(ember.tensor([1.0, 1.0]))
    assert a.grad.tolist() == [4.0, 6.0]
    assert a.grad.dtype is ember.float32


def test_next_functions_walk_the_graph_as_torch():
    """``loss.grad_fn.next_functions[0][0]`` (PyTorch's "Neural Networks" tutorial)."""
    x = ember.ones(2, requires_grad=True)
    loss = (x * 2 + ember.ones(2)).sum()
    (add, i), = loss.grad_fn.next_functions
    assert i == 0 and add.name() == "AddBackward0"
    (mul, _), (const, _) = add.next_functions
    assert mul.name() == "MulBackward0" and const is None
    (acc, _), (scalar, _) = mul.next_functions
    assert acc.name() == "AccumulateGrad" and acc.variable is x and scalar is None
    assert mul.next_functions[0][0] is acc and acc.next_functions == ()


def test_requires_grad_flags():
    x = ember.ones(2)
    assert not x.requires_grad and x.is_leaf and x.grad_fn is None
    w = ember.ones(2, requires_grad=True)
    y = x * w
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    assert not (x * 2).requires_grad
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(RuntimeError):
        ember.tensor([1, 2]).requires_grad_()  # only floating point tensors
    with pytest.raises(RuntimeError):
        y.requires_grad_(False)  # not a leaf
    assert ember.tensor([1.0], requires_grad=True).requires_grad


def test_backward_default_gradient_scalar_only():
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    with pytest.raises(RuntimeError):
        ember.ones(1).backward()  # does not require grad


def test_grad_accumulates_over_two_backward_calls():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_grad_not_aliased_to_upstream():
    # The first accumulation must not store a tensor that later in-place accumulation
    # (optimizers' grad.add_) would write through to someone else.
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    g = ember.tensor([1.0, 1.0])
    x.backward(g)
    x.grad.add_(1)
    assert g.tolist() == [1.0, 1.0]


def test_shared_input_and_fanout():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * x + x * 2 + x
    y.sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]  # 2x + 3


def test_no_grad_and_enable_grad():
    x = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        y = x * 2
        assert not ember.is_grad_enabled()
        with ember.enable_grad():
            z = x * 2
    assert ember.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @ember.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad
    assert ember.is_grad_enabled()
    ember.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    ember.set_grad_enabled(True)


def test_no_grad_restores_on_exception():
    with pytest.raises(ValueError):
        with ember.no_grad():
            raise ValueError
    assert ember.is_grad_enabled()


def test_detach():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    z = (y * d).sum()  # d is a constant: dz/dx = 2 * d
    z.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    d2 = (x * 1).detach_()
    assert not d2.requires_grad and d2.is_leaf


def test_retain_graph():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_grad_on_intermediate():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [6.0, 12.0]
    assert x.grad.tolist() == [18.0, 36.0]


def test_broadcast_gradients_match_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).normal(size=(3, 1, 4))
    b = np.random.default_rng(1).normal(size=(2, 4))
    c = np.random.default_rng(2).normal(size=())
    grads = []
    for T in (ember, torch):
        ta = T.tensor(a, requires_grad=True)
        tb = T.tensor(b, requires_grad=True)
        tc = T.tensor(c, requires_grad=True)
        out = ((ta * tb + tc) / (tb * tb + 1) - ta.exp() * tc).sum()
        out.backward()
        grads.append((ta.grad, tb.grad, tc.grad))
    for e, t in zip(*grads):
        assert_close(e, t)


def test_broadcast_gradients_fd():
    rng = np.random.default_rng(3)
    check_grad_fd(lambda a, b: (a - b) ** 2 * a.sigmoid() + b.tanh(),
                  [rng.normal(size=(3, 1, 4)), rng.normal(size=(2, 4))])
    check_grad_fd(lambda x: x.softmax(-1) * x.log_softmax(0), [rng.normal(size=(3, 5))])
    check_grad_fd(lambda x, w: (x @ w).relu().var(0), [rng.normal(size=(4, 3)) + 0.1,
                                                       rng.normal(size=(3, 2))])


def test_deep_graph_has_no_recursion_limit():
    x = ember.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000], rtol=1e-3)


def test_inplace_on_leaf_requiring_grad_raises():
    w = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w.add_(1)
    with pytest.raises(RuntimeError, match="leaf"):
        w[0] = 5.0
    assert w.tolist() == [1.0, 1.0, 1.0]
    with ember.no_grad():  # optimizers update parameters this way
        w.add_(1)
        w[0] = 0.0
    assert w.tolist() == [0.0, 2.0, 2.0] and w.is_leaf and w.requires_grad


def test_modifying_saved_input_then_backward_raises():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = h * h  # mul saves h
    h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_modifying_saved_output_then_backward_raises():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()  # exp's gradient reads its output
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_non_leaf_is_differentiated():
    torch = pytest.importorskip("torch")
    grads = []
    for T in (ember, torch):
        x = T.tensor([1.0, -2.0, 3.0], requires_grad=True)
        y = x * 2  # mul does not need its output: in-place on it is fine
        y.mul_(x)
        y.add_(1)
        y[1] = y[0] * 3
        y.sum().backward()
        grads.append(x.grad)
    assert_close(*grads)


def test_gradient_dtype_follows_leaf():
    x = ember.tensor([1.0, 2.0], dtype=ember.float64, requires_grad=True)
    (x.float() * 2).sum().backward()
    assert x.grad.dtype is ember.float64 and x.grad.tolist() == [2.0, 2.0]


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph:UserWarning")
def test_create_graph_second_derivative():
    torch = pytest.importorskip("torch")
    out = []
    for T in (ember, torch):
        x = T.tensor([0.5, 1.5], requires_grad=True)
        y = (x ** 3).sum()
        y.backward(create_graph=True)
        g = x.grad
        x.grad = None
        g.sum().backward()
        out.append(x.grad)  # d2/dx2 x^3 = 6x
    assert_close(*out)


def test_inplace_through_a_view_with_grad_rewrites_the_base_history():
    # Was refused before views shared their base's history; now as in PyTorch (CopySlices).
    w = ember.ones(3, requires_grad=True)
    x = w * 1
    x[0:2].mul_(2)
    assert x.grad_fn.name() == "CopySlices"
    (x * ember.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert w.grad.tolist() == [2.0, 4.0, 3.0]
    with ember.no_grad():  # optimizer-style updates of views stay allowed
        v = ember.zeros(4)
        v[0:2].add_(1)
        assert v.tolist() == [1.0, 1.0, 0.0, 0.0]


# ---- what a recorded op keeps --------------------------------------------------------

def test_a_value_no_gradient_reads_is_freed_during_the_forward():
    import weakref
    from ember.tensor import array_of
    a = ember.randn(300, 300, requires_grad=True)
    h = a * 2                      # add's gradient reads no value of h
    data = weakref.ref(array_of(h))
    out = (h + 1).sum()
    del h
    assert data() is None          # PyTorch frees it too; before, add's Node kept it
    out.backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.full((300, 300), 2, np.float32))


def test_saved_values_are_released_by_backward_while_the_loss_lives():
    import weakref
    from ember.tensor import array_of
    a = ember.randn(200, 200, requires_grad=True)
    h = a.exp()                    # exp's gradient reads its output: saved
    data = weakref.ref(array_of(h))
    loss = h.sum()
    del h
    assert data() is not None
    loss.backward()
    assert data() is None          # the loss still lives; its saved values do not
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_retain_grad_after_the_op_that_read_it_still_works():
    a = ember.randn(5, 4, requires_grad=True)
    h = a * 3
    z = (h + 1).sum()              # add keeps only h's metadata and a weak reference
    h.retain_grad()
    z.backward()
    np.testing.assert_array_equal(h.grad.numpy(), np.ones((5, 4), np.float32))
    torch = pytest.importorskip("torch")
    ta = torch.tensor(a.detach().numpy(), requires_grad=True)
    th = ta * 3
    tz = (th + 1).sum()
    th.retain_grad()
    tz.backward()
    np.testing.assert_array_equal(h.grad.numpy(), th.grad.numpy())
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())
