"""``ember.autograd.Function`` (custom differentiable ops) against torch's."""
from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
rng = np.random.default_rng(0)


def _functions(lib):
    class MulExp(lib.autograd.Function):   # saves inputs and output; two tensor args
        @staticmethod
        def forward(ctx, x, w, scale: float):
            y = (x * w).exp() * scale
            ctx.save_for_backward(x, w, y)
            ctx.scale = scale
            return y

        @staticmethod
        def backward(ctx, g):
            x, w, y = ctx.saved_tensors
            gy = g * y
            return (gy * w if ctx.needs_input_grad[0] else None,
                    (gy * x).sum(0) if ctx.needs_input_grad[1] else None, None)

    class GradReverse(lib.autograd.Function):   # returns its input; the new style
        @staticmethod
        def forward(x, alpha):
            return x

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.alpha = inputs[1]

        @staticmethod
        def backward(ctx, g):
            return -ctx.alpha * g, None

    class Square(lib.autograd.Function):   # differentiable backward: second derivatives
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * x * g

    return MulExp, GradReverse, Square


def _both(shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def test_custom_functions_match_torch():
    (xe, xt), (we, wt) = _both((4, 3)), _both((3,))
    for lib, x, w in ((ember, xe, we), (torch, xt, wt)):
        MulExp, GradReverse, Square = _functions(lib)
        y = MulExp.apply(x, w, 0.5)
        z = GradReverse.apply(y, 2.0)
        loss = (Square.apply(z) * z).sum()
        loss.backward()
    for e, t in ((xe, xt), (we, wt)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert "MulExpBackward" in repr(_functions(ember)[0].apply(xe, we, 1.0).grad_fn)


def test_second_derivative_through_a_custom_backward():
    (xe, xt), = [_both((5,))]
    for lib, x in ((ember, xe), (torch, xt)):
        Square = _functions(lib)[2]
        g, = lib.autograd.grad(Square.apply(x).sum(), x, create_graph=True)
        (g ** 2).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5)


def test_saved_tensor_modified_in_place_raises_and_needs_input_grad():
    MulExp = _functions(ember)[0]
    x, w = ember.randn(2, 3, requires_grad=True), ember.randn(3)
    y = MulExp.apply(x, w, 1.0)
    with ember.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    y = MulExp.apply(x, ember.randn(3), 1.0)   # w needs no gradient: backward skips it
    y.sum().backward()
    assert x.grad is not None
    with ember.no_grad():   # no graph under no_grad
        assert MulExp.apply(x, w, 1.0).grad_fn is None


def test_custom_function_inside_compiled_code_equals_eager():
    MulExp, GradReverse, _ = _functions(ember)
    w = ember.randn(3, requires_grad=True)

    def step(x):
        w.grad = None
        loss = GradReverse.apply(MulExp.apply(x, w, 0.5), 3.0).sum()
        loss.backward()
        return loss.detach(), w.grad.clone()

    compiled = ember.compile(step)
    for _ in range(4):
        x = ember.randn(4, 3)
        got, want = compiled(x), step(x)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)
    assert not compiled.stats()["fallbacks"]


def test_unsupported_uses_say_so():
    class Two(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, a, b):
            return a * 2 + b * 3

    with pytest.raises(NotImplementedError, match="one is supported"):
        Two.apply(ember.randn(2, requires_grad=True))
