"""NumPy arrays and Python numbers where a tensor is expected: PyTorch's TypeError naming
the op and the argument, eager and compiled alike; accepted where PyTorch accepts them
(``x + array``, ``torch.add(2, x)``)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F

A = np.ones(3, np.float32)


def _x():
    return ember.ones(3)


# (call taking (module, functional, tensor maker), PyTorch's message)
REJECTED = [
    (lambda m, f, t: f.relu(A), "relu(): argument 'input' (position 1) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: m.exp(2.0), "exp(): argument 'input' (position 1) must be Tensor, not float"),
    (lambda m, f, t: m.exp(A), "exp(): argument 'input' (position 1) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: m.sigmoid(1.0), "sigmoid(): argument 'input' (position 1) must be Tensor, "
     "not float"),
    (lambda m, f, t: m.matmul(t(np.ones((3, 3), np.float32)), np.ones((3, 3))),
     "matmul(): argument 'other' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: m.mm(t(np.ones((3, 3), np.float32)), np.ones((3, 3))),
     "mm(): argument 'mat2' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: m.add(t(A), A), "add(): argument 'other' (position 2) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: m.maximum(t(A), 2.0), "maximum(): argument 'other' (position 2) must be "
     "Tensor, not float"),
    (lambda m, f, t: m.sum(A), "sum(): argument 'input' (position 1) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: f.linear(t(np.ones((2, 3), np.float32)), np.ones((4, 3), np.float32)),
     "linear(): argument 'weight' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.linear(np.ones((2, 3), np.float32), t(np.ones((4, 3), np.float32))),
     "linear(): argument 'input' (position 1) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.gelu(A), "gelu(): argument 'input' (position 1) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: f.dropout(A), "dropout(): argument 'input' (position 1) must be Tensor, "
     "not numpy.ndarray"),
    (lambda m, f, t: f.layer_norm(A, (3,)), "layer_norm(): argument 'input' (position 1) must "
     "be Tensor, not numpy.ndarray"),
]
# PyTorch names the loss functions' C++ entry points (cross_entropy_loss, nll_loss_nd) and
# embedding's arguments (indices, weight) in its own order; ember names the Python function
# and its parameters.
REJECTED_EMBER_WORDS = [
    (lambda m, f, t: f.embedding(t(np.array([0, 1])), np.ones((3, 3))), "embedding(): argument "
     "'weight' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.cross_entropy(t(np.zeros((4, 5), np.float32)), np.array([0, 1, 2, 3])),
     "cross_entropy(): argument 'target' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.cross_entropy(np.zeros((4, 5)), t(np.array([0, 1, 2, 3]))),
     "cross_entropy(): argument 'input' (position 1) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.nll_loss(t(np.zeros((4, 5), np.float32)), np.array([0, 1, 2, 3])),
     "nll_loss(): argument 'target' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.mse_loss(t(A), A),
     "mse_loss(): argument 'target' (position 2) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.conv2d(np.ones((1, 1, 3, 3)), t(np.ones((1, 1, 2, 2), np.float32))),
     "conv2d(): argument 'input' (position 1) must be Tensor, not numpy.ndarray"),
    (lambda m, f, t: f.softmax(A, 0),
     "softmax(): argument 'input' (position 1) must be Tensor, not numpy.ndarray"),
]


def _compiled(call):
    """``call`` inside a compiled function of a tensor argument: every call traces it (the
    trace raises), so each must raise as eager does."""
    return ember.compile(lambda x: call(ember, F, ember.from_numpy) + x)


@pytest.mark.parametrize("call,message", REJECTED + REJECTED_EMBER_WORDS)
def test_non_tensor_arguments_are_type_errors_eager_and_compiled(call, message):
    with pytest.raises(TypeError) as info:
        call(ember, F, ember.from_numpy)
    assert str(info.value) == message
    cf = _compiled(call)
    for _ in range(4):
        with pytest.raises(TypeError) as info:
            cf(_x())
        assert str(info.value) == message


@pytest.mark.parametrize("call,message", REJECTED)
def test_messages_match_pytorch(call, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError) as info:
        call(torch, torch.nn.functional, torch.from_numpy)
    assert str(info.value) == message


def test_operators_accept_numpy_arrays_as_pytorch_does():
    x = ember.tensor([1.0, 2.0, 3.0])
    for got, want in ((x + A, [2, 3, 4]), (A + x, [2, 3, 4]), (x * A, [1, 2, 3]),
                      (x - np.ones(3), [0, 1, 2]), (x / np.full(3, 2.0, np.float32), [.5, 1, 1.5]),
                      (x == np.array([1.0, 0.0, 3.0], np.float32), [True, False, True])):
        assert isinstance(got, ember.Tensor)
        np.testing.assert_array_equal(got.numpy(), want)
    assert (x + np.ones(3)).dtype is ember.float64   # float32 with a float64 array: float64
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # NumPy's __array_wrap__ deprecation, inside torch
        for op in (lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b):
            for arr in (A, np.ones(3), np.ones((2, 3), np.float32)):
                want, got = op(t, arr), op(x, arr)
                assert str(want.dtype).replace("torch.", "") == got.dtype.name
                np.testing.assert_allclose(got.numpy(), want.numpy())


def test_numbers_where_pytorch_takes_them():
    x = ember.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ember.add(2, x).numpy(), [3, 4, 5])
    np.testing.assert_array_equal(ember.mul(x, 2.0).numpy(), [2, 4, 6])
    np.testing.assert_array_equal(ember.pow(2.0, x).numpy(), [2, 4, 8])
    np.testing.assert_array_equal(ember.lt(x, 2.0).numpy(), [True, False, False])
    assert ember.add(2.0, 3.0).item() == 5.0
    for fn, args in ((ember.lt, (2.0, x)), (ember.fmod, (2.0, x)), (ember.maximum, (2.0, x))):
        with pytest.raises(TypeError, match=r"argument 'input' \(position 1\) must be Tensor, "
                                            r"not float"):
            fn(*args)


def test_unsupported_operands_name_the_op_and_argument():
    x = ember.ones(3)
    for other, kind in (([1, 2, 3], "list"), (None, "NoneType"), ("a", "str")):
        with pytest.raises(TypeError, match=f"add: argument 'other' \\(position 2\\) must be "
                                            f"Tensor, not {kind}") as info:
            x + other
        assert isinstance(info.value, ember.OpError) and "test_argument_types.py" in str(info.value)
    with pytest.raises(TypeError, match="where: argument 'input' .* not str"):
        ember.where(x > 0, "a", x)


def test_numpy_operand_in_a_compiled_function_runs_eagerly():
    """A trace would freeze the array's values: that function runs eagerly, correctly."""
    arr = np.ones(3, np.float32)
    cf = ember.compile(lambda x: (x + arr) * 2)
    x = ember.ones(3)
    with pytest.warns(UserWarning, match="NumPy array operand"):
        cf(x)
    for k in range(3):
        arr[:] = k
        np.testing.assert_array_equal(cf(x).numpy(), np.full(3, 2.0 * (1 + k)))
    with pytest.raises(ember.CompileError, match="NumPy array"):
        ember.compile(lambda x: x + arr, fullgraph=True)(x)
