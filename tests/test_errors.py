"""Errors name the op, the shapes and the user's line; bad input never corrupts state."""
from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.devices import Device

HERE = os.path.basename(__file__)


def _raises(fn, *words):
    """fn() raises ember.OpError whose message holds every word and this file's name."""
    with pytest.raises(ember.OpError) as info:
        fn()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert HERE in msg, msg
    assert HERE in info.value.location
    return info.value


@pytest.mark.parametrize("fn,words", [
    (lambda: ember.zeros(2, 3) + ember.zeros(4), ("add", "[2, 3]", "[4]", "broadcast")),
    (lambda: ember.zeros(2, 3) * ember.zeros(3, 2), ("mul", "[2, 3]", "[3, 2]")),
    (lambda: ember.where(ember.zeros(2, dtype=ember.bool), ember.zeros(3), 1.0),
     ("where", "[2]", "[3]")),
    (lambda: ember.zeros(2, 3) @ ember.zeros(2, 3), ("matmul", "[2, 3]")),
    (lambda: ember.zeros(4, 2, 3).matmul(ember.zeros(5, 3, 2)),
     ("matmul", "[4, 2, 3]", "[5, 3, 2]")),
    (lambda: ember.zeros(6).reshape(4, 2), ("reshape", "[6]", "[4, 2]")),
    (lambda: ember.zeros(2, 3).expand(4, 3), ("expand", "[2, 3]")),
    (lambda: ember.cat([ember.zeros(2, 3), ember.zeros(2, 4)]), ("cat", "[2, 3]", "[2, 4]")),
    (lambda: ember.stack([ember.zeros(2), ember.zeros(3)]), ("stack", "[2]", "[3]")),
    (lambda: ember.zeros(2, 3).permute(0, 0), ("permute", "[2, 3]")),
    (lambda: ember.tensor([1, 2]).mean(), ("mean", "int64")),
    (lambda: ember.zeros(2, 2, 2).t(), ("t", "[2, 2, 2]")),
])
def test_shape_and_dtype_errors_name_op_shapes_and_line(fn, words):
    _raises(fn, *words)


_F = ember.nn.functional
_X64 = ember.randn(2, 3, 4, 4, dtype=ember.float64)
_M64 = ember.randn(2, 3, dtype=ember.float64)


@pytest.mark.parametrize("name,fn", [
    ("linear", lambda: _F.linear(_M64, ember.randn(3, 3))),
    ("linear", lambda: _F.linear(_M64, ember.randn(3, 3).double(), ember.zeros(3))),
    ("matmul", lambda: _M64 @ ember.randn(3, 3)),
    ("matmul", lambda: ember.einsum("ij,jk->ik", _M64, ember.randn(3, 3))),
    ("dot", lambda: ember.dot(_M64[0], ember.randn(3))),
    ("conv2d", lambda: _F.conv2d(_X64, ember.randn(3, 3, 1, 1))),
    ("conv1d", lambda: _F.conv1d(_X64[:, :, 0], ember.randn(3, 3, 1))),
    ("conv_transpose2d", lambda: _F.conv_transpose2d(_X64, ember.randn(3, 3, 1, 1))),
    ("batch_norm", lambda: ember.nn.BatchNorm2d(3)(_X64)),
    ("layer_norm", lambda: ember.nn.LayerNorm(4)(_X64)),
    ("group_norm", lambda: ember.nn.GroupNorm(1, 3)(_X64)),
    ("instance_norm", lambda: ember.nn.InstanceNorm2d(3, affine=True)(_X64)),
    ("prelu", lambda: _F.prelu(_M64, ember.ones(1))),
    ("cross_entropy", lambda: _F.cross_entropy(_M64, ember.tensor([0, 1]),
                                               weight=ember.ones(3))),
    ("scaled_dot_product_attention",
     lambda: _F.scaled_dot_product_attention(_M64[None], ember.randn(1, 2, 3),
                                             ember.randn(1, 2, 3))),
])
def test_mixed_dtypes_are_refused_as_torch(name, fn):
    """A float64 batch through float32 layers: torch raises (pytorch-cifar's models on a
    double input); NumPy promoted it silently, so ember returned float64 results."""
    _raises(fn, name, "float64", "float32")


def test_mixed_dtypes_torch_allows_still_work():
    """What torch accepts: a half input to float32 norm parameters, anything under
    autocast, integer and float arithmetic."""
    h = ember.randn(2, 3, 4, 4).to(ember.bfloat16)
    for norm in (ember.nn.LayerNorm(4), ember.nn.BatchNorm2d(3), ember.nn.GroupNorm(1, 3)):
        assert norm(h).dtype is ember.bfloat16
    with ember.autocast("cpu", dtype=ember.bfloat16):
        assert ember.nn.Linear(3, 3)(_M64.float()).dtype is ember.bfloat16
        ember.nn.Conv2d(3, 3, 1)(_X64.float())
    assert (ember.ones(2, dtype=ember.int64) + ember.ones(2)).dtype is ember.float32


def test_where_needs_bool_condition():
    _raises(lambda: ember.where(ember.zeros(2), ember.zeros(2), ember.ones(2)), "where",
            "bool")


def test_backward_gradient_shape_mismatch():
    x = ember.ones(3, requires_grad=True)
    _raises(lambda: (x * 2).backward(ember.ones(4)), "backward", "[4]", "[3]")


def _fake_cuda(t):
    """A tensor that claims to live on another device: enough to test the device check
    without a GPU (dispatch must refuse before touching the data)."""
    t._device = Device("cuda", 0)
    return t


def test_device_mismatch():
    a, b = ember.ones(3), _fake_cuda(ember.ones(3))
    err = _raises(lambda: a + b, "add", "cpu", "cuda")
    assert "same device" in str(err)
    _raises(lambda: ember.where(ember.ones(3) > 0, a, b), "where", "device")


def test_cuda_without_gpu_is_a_clear_runtime_error():
    if ember.cuda.is_available():   # with a GPU the same calls make CUDA tensors
        assert ember.zeros(2, device="cuda").device.type == "cuda"
        assert ember.ones(2).cuda().device.type == "cuda"
        return
    with pytest.raises(RuntimeError, match="cuda") as info:
        ember.zeros(2, device="cuda")
    msg = str(info.value)
    assert "CuPy" in msg or "CUDA" in msg
    with pytest.raises(RuntimeError, match="cuda"):
        ember.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        ember.tensor([1.0], device="cuda:0")
    with pytest.raises(RuntimeError):
        ember.ones(2).cuda()


def test_bad_device_string():
    with pytest.raises(RuntimeError, match="device"):
        ember.zeros(2, device="tpu")


# ---- failed in-place ops leave the tensor unchanged ------------------------------------

def _unchanged(t, before, version):
    assert t.tolist() == before
    assert t._version == version


@pytest.mark.parametrize("bad", [
    lambda x: x.add_(ember.ones(4)),
    lambda x: x.mul_(ember.ones(3, 3)),
    lambda x: x.__setitem__(0, ember.ones(5)),
    lambda x: x.__setitem__((slice(None), 1), ember.ones(3)),
    lambda x: x.__setitem__(ember.tensor([0, 7]), 1.0),
    lambda x: x.copy_(ember.ones(3, 2)),
    lambda x: x.clamp_(),
])
def test_failed_inplace_leaves_tensor_unchanged(bad):
    x = ember.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises((ember.OpError, RuntimeError, IndexError)):
        bad(x)
    _unchanged(x, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 0)


def test_failed_inplace_dtype_leaves_tensor_unchanged():
    y = ember.tensor([1, 2])
    err = _raises(lambda: y.add_(1.5), "add_", "int64")
    assert "float32" in str(err)
    _unchanged(y, [1, 2], 0)
    _raises(lambda: y.mul_(ember.tensor([0.5, 0.5])), "mul_")
    _unchanged(y, [1, 2], 0)


def test_failed_inplace_on_graph_keeps_graph():
    w = ember.tensor([1.0, 2.0], requires_grad=True)
    h = w * 3
    node = h.grad_fn
    with pytest.raises(ember.OpError):
        h.add_(ember.ones(3))
    assert h.grad_fn is node and h._version == 0
    h.sum().backward()  # the graph still works
    assert w.grad.tolist() == [3.0, 3.0]


def test_failed_inplace_on_view_leaves_base_unchanged():
    x = ember.zeros(2, 3)
    row = x[0]
    with pytest.raises(ember.OpError):
        row.add_(ember.ones(2))
    assert x.tolist() == [[0.0] * 3] * 2


def test_error_is_runtime_error_subclass():
    assert issubclass(ember.OpError, RuntimeError)
    with pytest.raises(RuntimeError):
        ember.zeros(2) + ember.zeros(3)


def test_integer_division_by_zero_raises():
    with pytest.raises(ember.OpError, match="ZeroDivision"):
        ember.tensor([1, 2]) // ember.tensor([0, 1])
    # Float division by zero is inf/nan, silently (pyproject turns RuntimeWarning into errors).
    r = ember.tensor([1.0, 0.0]) / 0.0
    assert np.isinf(r[0].item()) and np.isnan(r[1].item())


# ---- the IR interpreter (ember/ir/interpreter.py) ----------------------------------------

def _traced_graph():
    x = ember.randn(3, 4)
    report = ember.explain(lambda t: (t * 2).exp().sum(-1), x)
    g = report.graphs[0].traced
    env = {n: x._data for n in g.inputs}
    env.update(g.device_consts())
    return x, g, env


def test_interpreters_agree_with_eager():
    """The array interpreter (the passes' oracle) and the dispatch one (the replays) compute
    what eager computes, node by node."""
    from ember.ir.interpreter import Interpreter, TensorInterpreter

    x, g, env = _traced_graph()
    want = (x * 2).exp().sum(-1).numpy()
    arrays = Interpreter(g).run(dict(env))
    np.testing.assert_allclose(arrays[g.outputs[0]], want, rtol=1e-6)
    tensors = TensorInterpreter(g).run({n: ember.from_numpy(a) for n, a in env.items()})
    np.testing.assert_allclose(tensors[g.outputs[0]].numpy(), want, rtol=1e-6)


def test_interpreter_errors_name_the_node_and_the_users_line():
    """A node that fails (here an overridden run_node, as a subclass may) names itself and
    the line of user code that made it; the dispatch interpreter keeps the error's type."""
    from ember.ir.interpreter import Interpreter, TensorInterpreter

    _, g, env = _traced_graph()
    exp = next(n for n in g.nodes() if g[n].op == "exp")

    class Broken(Interpreter):
        def call_op(self, d, args):
            if d.op == "exp":
                raise ValueError("boom")
            return super().call_op(d, args)

    with pytest.raises(ember.OpError) as info:
        Broken(g).run(dict(env))
    msg = str(info.value)
    assert f"%{exp}" in msg and "boom" in msg and HERE in msg

    class BrokenTensors(TensorInterpreter):
        def call_op(self, d, args):
            if d.op == "exp":
                raise ValueError("boom")
            return super().call_op(d, args)

    with pytest.raises(ValueError) as info:
        BrokenTensors(g).run({n: ember.from_numpy(a) for n, a in env.items()})
    note = " ".join(getattr(info.value, "__notes__", []))
    assert f"%{exp} = exp" in note and HERE in note


def test_a_failing_replay_leaves_what_eager_leaves():
    # The replay wrote nothing before the gather raised (write-backs come last), while
    # eager had incremented x: on an error, a call whose plans write nothing in place runs
    # again eagerly, so it raises eager's error after eager's effects.
    def f(x, idx):
        x.add_(1)
        return x[idx] * 2

    compiled = ember.compile(f)
    for _ in range(3):
        compiled(ember.zeros(4), ember.tensor([0, 1]))
    for _ in range(2):   # (the generic hit, then the fast path's)
        x = ember.zeros(4)
        with pytest.raises(IndexError, match=r"out of bounds[\s\S]*test_errors.py"):
            compiled(x, ember.tensor([0, 7]))
        assert x.tolist() == [1.0] * 4
        compiled(ember.zeros(4), ember.tensor([0, 1]))
