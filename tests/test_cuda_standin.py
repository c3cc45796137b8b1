"""ember's "cuda" device end to end without a GPU: test_gpu.py's tests, plus checks that
compiled programs really launch their generated CUDA C, with CuPy replaced by the
NumPy-backed stand-in of cupy_standin.py (strict like CuPy about host/device mixing and
its API; kernels compiled by g++ over the CUDA emulator). On a GPU, test_gpu.py runs the
same tests on the real device."""
from __future__ import annotations

import os
import re
import shutil
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import cupy_standin  # noqa: E402
from test_train_step import make_step  # noqa: E402

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
import ember.nn.functional as F  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator needs g++")]


@pytest.fixture(autouse=True, scope="module")
def standin():
    with cupy_standin.installed() as cp:
        yield cp


# test_gpu.py's tests, collected here too (its module-level GPU skip does not apply).
from test_gpu import (  # noqa: E402,F401
    test_compiled_training_step_on_cuda_matches_cpu,
    test_mixing_devices_is_a_clear_error,
    test_op_and_gradient_on_cuda_match_cpu,
    test_ported_program_on_cuda_matches_cpu,
    test_random_compiled_programs_on_cuda_match_cpu,
)


def _launched(fn):
    before = len(cupy_standin.launches)
    out = fn()
    return out, cupy_standin.launches[before:]


def test_arrays_stay_on_the_device_and_come_back_only_explicitly(standin):
    x = ember.randn(4, 5, device="cuda")
    assert x.device == ember.device("cuda") and x.is_cuda
    assert isinstance(x._data, standin.ndarray)
    with pytest.raises(TypeError, match="cuda tensor to numpy"):
        x.numpy()
    np.testing.assert_array_equal(x.cpu().numpy(), x._data.get())
    assert x.to("cpu").device.type == "cpu" and x.cpu().cuda().device.type == "cuda"
    assert float(x.sum()) == pytest.approx(float(x.cpu().numpy().sum()), rel=1e-5)
    # Fresh device memory is garbage, as on a GPU: code must not count on zeros.
    assert np.isnan(standin.empty((2,), np.float32).get()).all()
    assert standin.empty((), np.int64).get() == -1


def test_compiled_functions_launch_generated_cuda_kernels():
    def f(x, y):
        return (x * y + 1).relu().sum(-1), (x - y).exp()

    x, y = ember.randn(64, 100), ember.randn(64, 100)
    want = [t.numpy() for t in f(x, y)]
    cf = ember.compile(f, fullgraph=True)
    xc, yc = x.cuda(), y.cuda()
    for i in range(4):
        got, launched = _launched(lambda: cf(xc, yc))
        assert launched or i == 1, "no generated kernel ran"   # call 2 checks call 1's trace
        for g, w in zip(got, want):
            assert g.device.type == "cuda"
            np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-5, atol=1e-5)
    kinds = {k.backend for k in cf.kernels()}
    assert kinds == {"cuda"}, kinds
    assert cf.stats()["fallbacks"] == []


@pytest.mark.parametrize("shape", [(3, 7), (64, 2000), (2, 40000)])
def test_compiled_softmax_and_layer_norm_on_cuda(shape):
    """Warp rows, block rows and rows split over several blocks (few long rows)."""
    x = ember.randn(*shape)
    w, b = ember.randn(shape[-1]), ember.randn(shape[-1])

    def f(x, w, b):
        return F.softmax(x, -1), F.layer_norm(x, (shape[-1],), w, b), x.sum()

    want = [t.numpy() for t in f(x, w, b)]
    cf = ember.compile(f, fullgraph=True)
    got, launched = _launched(lambda: cf(x.cuda(), w.cuda(), b.cuda()))
    assert launched
    for g, v in zip(got, want):
        np.testing.assert_allclose(g.cpu().numpy(), v, rtol=1e-4, atol=1e-4)


def test_compiled_training_step_on_cuda_runs_kernels_and_matches_eager():
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 5))
    eager_model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.2),
                                nn.Linear(32, 5))
    eager_model.load_state_dict(model.state_dict())
    x, y = ember.randn(16, 20).cuda(), ember.randint(0, 5, (16,)).cuda()

    def cuda_step(m):
        m.to("cuda")
        return make_step(m, ember.optim.Adam(m.parameters(), lr=1e-2))

    compiled = ember.compile(cuda_step(model))
    eager = cuda_step(eager_model)
    losses = []
    for i in range(6):
        ember.manual_seed(100 + i)   # the same dropout masks in both
        _, launched = _launched(lambda: losses.append((compiled(x, y).item(),)))
        ember.manual_seed(100 + i)
        losses[-1] += (eager(x, y).item(),)
        if i >= 3:   # calls 1-3 trace (the first call's lazily made state differs)
            assert launched, "the compiled step ran no generated kernel"
    a, b = np.array(losses).T
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for p, q in zip(model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().cpu().numpy(),
                                   rtol=1e-4, atol=1e-5)
    assert compiled.stats()["fallbacks"] == []


def test_random_draws_on_cuda_are_reproducible_and_survive_compiling():
    ember.manual_seed(3)
    a = ember.rand(5, device="cuda").cpu().numpy()
    ember.manual_seed(3)
    assert np.array_equal(ember.rand(5, device="cuda").cpu().numpy(), a)

    def f(x):
        return F.dropout(x, 0.5, training=True) * 2

    x = ember.ones(1000, device="cuda")
    ember.manual_seed(7)
    eager = [f(x).cpu().numpy() for _ in range(4)]
    ember.manual_seed(7)
    cf = ember.compile(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = [cf(x).cpu().numpy() for _ in range(4)]
    for e, c in zip(eager, compiled):
        np.testing.assert_array_equal(c, e)
    assert not np.array_equal(eager[0], eager[1])


def test_zero_dim_cpu_tensors_join_cuda_ops_as_in_pytorch():
    x = ember.randn(3, device="cuda", requires_grad=True)
    lr = ember.tensor(0.5)
    y = x * lr + ember.tensor(1.0)
    assert y.device.type == "cuda"
    y.sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), [0.5] * 3)
    with pytest.raises(ember.OpError, match="same device.*cuda:0 and cpu"):
        x + ember.ones(3)
    with pytest.raises(ember.OpError, match="same device"):
        ember.matmul(ember.ones(3, 3, device="cuda"), ember.ones(3, 3))


def test_matmul_epilogues_and_transposed_products_on_cuda():
    """cuBLAS (CuPy's matmul) writes into a reused buffer and the elementwise consumer
    runs in the same step, as on the CPU."""
    lin = nn.Linear(30, 20)
    x = ember.randn(8, 30)
    want = F.gelu(lin(x)).detach().numpy()
    lin.to("cuda")
    cf = ember.compile(lambda x: F.gelu(lin(x)))
    xc = x.cuda()
    for _ in range(3):
        got = cf(xc)
    np.testing.assert_allclose(got.detach().cpu().numpy(), want, rtol=1e-5, atol=1e-5)
    steps = [(k.backend, k.ops) for k in cf.kernels()]
    assert any(b == "extern" and ops[0] == "matmul" and "erf" in ops for b, ops in steps), steps


def test_one_compiled_function_serves_both_devices_and_moves_between_them():
    def f(x):
        return (x.cuda() * 2).exp().cpu() + 1, (x * 3).sum()

    cf = ember.compile(f)
    x = ember.randn(50, 7)
    want = [t.numpy() for t in f(x)]
    for _ in range(3):
        for arg in (x, x.cuda()):
            got = cf(arg)
            assert got[0].device.type == "cpu" and got[1].device == arg.device
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-5, atol=1e-5)
    assert cf.stats()["cache_entries"] == 2
    assert {k.backend for k in cf.kernels()} >= {"cuda", "llvm"}


def test_dump_of_a_cuda_graph_has_its_cuda_c_and_a_repro_that_runs_on_either_device(
        tmp_path, capsys):
    import runpy

    ember.set_dump_dir(tmp_path)
    try:
        cf = ember.compile(lambda x, y: F.softmax(x * y, -1))
        x, y = ember.randn(6, 40).cuda(), ember.randn(40).cuda()
        for _ in range(3):
            cf(x, y)
    finally:
        ember.set_dump_dir(None)
    (d,) = tmp_path.iterdir()
    assert any('extern "C" __global__' in p.read_text() for p in (d / "kernels").glob("*.cu"))
    main = runpy.run_path(str(d / "repro.py"))["main"]
    for argv in ([], ["--device", "cpu"], ["--random"]):
        assert main(argv) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert re.search(r"kernel\d+\s+cuda\s+mul\+amax", out), out      # on the graph's device
    assert re.search(r"kernel\d+\s+llvm\s+mul\+amax", out), out      # --device cpu


def test_torch_cuda_helpers_and_a_gpu_training_script_as_written_for_pytorch():
    assert ember.cuda.is_available() and ember.cuda.device_count() == 1
    assert ember.cuda.current_device() == 0 and "stand-in" in ember.cuda.get_device_name()
    ember.cuda.manual_seed_all(0)
    device = ember.device("cuda" if ember.cuda.is_available() else "cpu")
    data = ember.utils.data.TensorDataset(ember.randn(64, 10), ember.randint(0, 3, (64,)))
    loader = ember.utils.data.DataLoader(data, batch_size=16, shuffle=True, num_workers=2,
                                         pin_memory=True)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3)).to(device)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    ember.cuda.synchronize()
    assert loss.device == device and np.isfinite(loss.item())
    with pytest.raises(ValueError, match="cuda device"):
        ember.cuda.synchronize("cpu")


# ---- horizontal fusion: independent kernels as one launch -------------------------------

def _entry(source: str) -> str:
    return re.search(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\(',
                     source).group(1)


@pytest.mark.parametrize("opt_name,levels", [("sgd-momentum", 1), ("adam", 2)])
def test_optimizer_updates_of_every_parameter_are_one_launch(opt_name, levels, monkeypatch):
    """A compiled training step matches eager step after step, and the updates of all
    parameters are one launch per dependency level (Adam: the bias corrections, then the
    updates): ``levels * (parameters - 1)`` launches fewer than one kernel each."""
    from ember.codegen import cuda

    make_opt = {"sgd-momentum": lambda p: ember.optim.SGD(p, lr=0.05, momentum=0.9),
                "adam": lambda p: ember.optim.Adam(p, lr=1e-2)}[opt_name]
    x, y = ember.randn(16, 20).cuda(), ember.randint(0, 4, (16,)).cuda()

    def fresh_step():
        ember.manual_seed(0)   # the same initial weights every time
        model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                              nn.Linear(8, 4)).to("cuda")
        return model, make_step(model, make_opt(model.parameters()))

    def run(step, launch_groups=None):
        losses, launched = [], []
        with monkeypatch.context() as m:
            if launch_groups is not None:
                m.setattr(cuda, "launch_groups", launch_groups)
            for _ in range(6):
                loss, ln = _launched(lambda: step(x, y).item())
                losses.append(loss)
                launched.append([e for e, _, _ in ln])
        return losses, launched

    model, step = fresh_step()
    eager, _ = run(step)
    compiled_model, step = fresh_step()
    cf = ember.compile(step)
    losses, launched = run(cf)
    np.testing.assert_allclose(losses, eager, rtol=1e-4, atol=1e-5)
    for p, q in zip(compiled_model.parameters(), model.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().cpu().numpy(),
                                   rtol=1e-4, atol=1e-5)
    assert cf.stats()["fallbacks"] == []
    nparams = len(list(model.parameters()))
    multi = [k for k in cf.kernels() if k.parts]
    assert len(multi) == levels, cf.kernels()
    for k in multi:
        assert k.backend == "cuda" and len(k.parts) == nparams
        assert all(p.backend == "cuda" and p.kernel is not None for p in k.parts)
        assert k.ops == [op for p in k.parts for op in p.ops]
    # Steady steps (calls 1-3 trace): each multi-kernel launches once.
    steady = launched[3:]
    for entries in steady:
        for k in multi:
            assert entries.count(_entry(k.source)) == 1, entries
    # Every kernel its own launch, as before horizontal fusion.
    _, step = fresh_step()
    _, unbatched = run(ember.compile(step), lambda ks: [[i] for i in range(len(ks))])
    for a, b in zip(steady, unbatched[3:]):
        assert len(b) - len(a) == levels * (nparams - 1), (a, b)


def test_horizontal_fusion_never_mixes_devices():
    """Independent kernels on the CPU and on the GPU: one call per device."""
    def f(a, b, c, d):
        return a.exp(), b.sin(), c.exp(), d.sin()

    a, b, c, d = (ember.randn(5, 7) for _ in range(4))
    want = [t.numpy() for t in f(a, b, c, d)]
    cf = ember.compile(f, fullgraph=True)
    for _ in range(3):
        got = cf(a, b, c.cuda(), d.cuda())
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-5, atol=1e-6)
    multi = sorted((k.backend, [p.backend for p in k.parts]) for k in cf.kernels() if k.parts)
    assert multi == [("cuda", ["cuda", "cuda"]), ("llvm", ["llvm", "llvm"])], cf.kernels()


def test_a_multi_kernel_that_fails_to_compile_keeps_the_separate_kernels(monkeypatch):
    from ember.codegen import cuda

    def fail(self):
        raise RuntimeError("NVRTC_ERROR_COMPILATION")
    monkeypatch.setattr(cuda.CudaKernels, "compile", fail)

    def f(c, d):
        return c.exp() * 2, d.sin() + 1

    c, d = ember.randn(5, 7), ember.randn(3)
    want = [t.numpy() for t in f(c, d)]
    for launches in (2, 1):   # compile fails; then (unpatched) it works
        cf = ember.compile(f, fullgraph=True)
        for _ in range(3):
            got, launched = _launched(lambda: cf(c.cuda(), d.cuda()))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-5, atol=1e-6)
        assert len(launched) == launches
        assert [len(k.parts) for k in cf.kernels() if k.parts] == ([2] if launches == 1 else [])
        monkeypatch.undo()


def test_varying_batch_sizes_on_cuda_share_generic_kernels():
    """Dynamic shapes on the GPU path: every batch size equals the CPU, and sizes after
    the second compile no new CUDA module."""
    lin = nn.Linear(12, 16)
    ref = lambda x: (F.gelu(lin(x)).softmax(-1) * 2).sum(0)  # noqa: E731
    wants = {}
    for b in (9, 7, 13, 20, 5):
        x = ember.randn(b, 12)
        wants[b] = (x, ref(x).detach().numpy())
    lin.to("cuda")
    cf = ember.compile(ref)
    builds = []
    for b, (x, want) in wants.items():
        got = cf(x.cuda())
        np.testing.assert_allclose(got.detach().cpu().numpy(), want, rtol=1e-5, atol=1e-5)
        builds.append(cf.stats()["code_builds"])
    assert not cf.stats()["fallbacks"]
    assert builds[0] >= 1 and builds[-1] == builds[1], builds   # 13, 20, 5: no new code
    generic = [k for k in cf.kernels() if k.kernel is not None and k.kernel.generic]
    assert generic and all(k.backend == "cuda" for k in generic)


def test_a_mean_over_varying_batches_on_cuda_shares_code():
    """mse_loss's 1/N is read at run time by the generic CUDA kernel (a "scalar" expr):
    no new module after the second size."""
    ref = lambda x, y: F.mse_loss(x * 2, y)  # noqa: E731
    cf = ember.compile(ref)
    builds = []
    for b in (9, 7, 13, 20, 5):
        x, y = ember.randn(b, 12), ember.randn(b, 12)
        want = ref(x, y).numpy()
        for _ in range(2):
            got = cf(x.cuda(), y.cuda())
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-6)
        builds.append(cf.stats()["code_builds"])
    assert not cf.stats()["fallbacks"]
    assert builds[-1] == builds[1], builds
    scalars = [k for k in cf.kernels() if k.kernel is not None and k.kernel.scalars]
    assert scalars and all(k.backend == "cuda" for k in scalars)
