"""``ember.jit``: torch.jit's names, so programs that script, trace or annotate for
TorchScript port by changing the import; what they compile, ember.compile compiles."""
from __future__ import annotations

import typing
from typing import List

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

rng = np.random.default_rng(5)


def _x(*shape):
    return ember.tensor(rng.standard_normal(shape).astype(np.float32))


def test_script_compiles_a_function_and_keeps_its_branches():
    def f(x):
        return x * 2 if bool(x.sum() > 0) else x - 1

    g = ember.jit.script(f)
    for x in (_x(3).abs(), -_x(3).abs(), _x(3).abs()):
        np.testing.assert_array_equal(g(x).numpy(), f(x).numpy())
    assert g.stats()["compiles"] >= 1


def test_script_compiles_a_module_in_place():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    keys = list(m.state_dict())
    x = _x(5, 4)
    want = m(x).detach().numpy()
    s = ember.jit.script(m)
    assert s is m and list(s.state_dict()) == keys
    for _ in range(3):
        np.testing.assert_allclose(s(x).detach().numpy(), want, rtol=1e-6, atol=1e-6)
    assert m._compiled_call.stats()["compiles"] == 1
    assert not isinstance(m, ember.jit.ScriptModule)


def test_trace_runs_the_example_and_stays_right_on_other_branches():
    # torch.jit.trace keeps the example's branch for every input (with a warning);
    # ember's guards see the branch.
    def f(x):
        return x.relu() if bool(x.mean() > 0) else -x

    g = ember.jit.trace(f, (_x(4).abs(),))
    assert g.stats()["calls"] == 1
    for x in (-_x(4).abs(), _x(4).abs()):
        np.testing.assert_array_equal(g(x).numpy(), f(x).numpy())
    bn = nn.BatchNorm1d(3)
    ember.jit.trace(bn, _x(8, 3))   # tracing runs the module: training statistics move
    assert bn.num_batches_tracked.item() == 1
    m = ember.jit.trace_module(nn.Linear(3, 2), {"forward": _x(2, 3)})
    assert m(_x(1, 3)).shape == (1, 2)


def test_annotations_leave_the_python_as_written():
    class Net(nn.Module):
        scale: ember.jit.Final[float]

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.scale = ember.jit.Attribute(2.0, float)

        @ember.jit.ignore
        def helper(self, x):
            return x + 1

        @ember.jit.unused
        def unused(self, x):
            return x - 1

        @ember.jit.ignore(drop=True)
        def dropped(self, x):
            return x * 3

        @ember.jit.export
        def extra(self, x):
            return self.fc(x)

        def forward(self, x):
            outs = ember.jit.annotate(List[ember.Tensor], [])
            if not ember.jit.is_scripting() and not ember.jit.is_tracing():
                outs.append(self.helper(self.fc(x)) * self.scale)
            outs.append(self.unused(self.dropped(x)))
            return ember.cat(outs, 1)

    net = Net()
    x = _x(2, 3)
    want = net(x).detach().numpy()
    np.testing.assert_allclose(ember.jit.script(net)(x).detach().numpy(), want, rtol=1e-6)
    assert net.extra(x).shape == (2, 3)


def test_fork_wait_and_isinstance():
    fut = ember.jit.fork(lambda a, b: a + b, ember.ones(2), b=ember.ones(2))
    assert fut.done()
    np.testing.assert_array_equal(ember.jit.wait(fut).numpy(), [2.0, 2.0])
    assert ember.jit.isinstance([1, 2], List[int])
    assert not ember.jit.isinstance([1, "a"], List[int])
    assert ember.jit.isinstance({"a": (1, 2.0)}, typing.Dict[str, typing.Tuple[int, float]])
    assert ember.jit.isinstance(None, typing.Optional[int])
    assert ember.jit.isinstance((1, 2, 3), typing.Tuple[int, ...])


def test_save_and_load_give_a_compiled_module(tmp_path):
    m = ember.jit.script(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    x = _x(2, 3)
    want = m(x).detach().numpy()
    path = tmp_path / "m.pt"
    ember.jit.save(m, str(path))
    loaded = ember.jit.load(str(path))
    for _ in range(3):
        np.testing.assert_allclose(loaded(x).detach().numpy(), want, rtol=1e-6)
    assert loaded._compiled_call.stats()["compiles"] == 1
    assert ember.jit.freeze(loaded) is loaded
    assert ember.jit.optimize_for_inference(loaded) is loaded


def test_old_style_script_module_subclass():
    class M(ember.jit.ScriptModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        @ember.jit.script_method
        def forward(self, x):
            return F.relu(self.fc(x))

    m = M()
    assert isinstance(m, ember.jit.ScriptModule) and isinstance(m, nn.Module)
    assert m(_x(3, 2)).shape == (3, 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch: jit is deprecated
def test_a_program_using_torch_jit_ports_by_changing_the_import():
    torch = pytest.importorskip("torch")

    def program(lib, w, x):
        @lib.jit.script
        def gelu_ish(v):
            return v * lib.sigmoid(1.702 * v)

        lin = lib.nn.Linear(4, 4)
        with lib.no_grad():
            lin.weight.copy_(lib.tensor(w))
            lin.bias.zero_()
        traced = lib.jit.trace(lin, lib.tensor(x))
        out = gelu_ish(traced(lib.tensor(x)))
        return out.detach().numpy()

    w = rng.standard_normal((4, 4)).astype(np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(program(ember, w, x), program(torch, w, x), rtol=1e-5,
                               atol=1e-6)
