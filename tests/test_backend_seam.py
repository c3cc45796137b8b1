"""The backend seam: the registry, the shared lowering policy, and mathlib's programs
computing the same numbers on the CPU (LLVM) and the GPU (CUDA C, run on the emulator)."""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import tokenize

import numpy as np
import pytest

import ember
from ember import dtypes as dt
from ember.codegen import backend, cuda, llvm, mathlib, policy
from ember.codegen.kernel import Expr, Kernel, Load, Store

import cuda_emulator  # noqa: E402  (tests/ is on sys.path under pytest)

F32, F64 = dt.float32, dt.float64
LIMITS = cuda.DeviceLimits(sm_count=2, max_threads_per_block=1024, max_threads_per_sm=2048)


def unary_kernel(op: str, d: dt.DType, n: int) -> Kernel:
    return Kernel(f"{op}_{d.name}", (n,), [Load(0, d, (1,))],
                  [Expr("load", (0,), d), Expr(op, (0,), d)], [1])


def op_kernel(op: str, d: dt.DType, n: int) -> Kernel:
    """``op`` over its operands (each an input array of ``n`` values)."""
    nargs = mathlib.DECOMPOSED[op]
    return Kernel(f"{op}_{d.name}", (n,), [Load(i, d, (1,)) for i in range(nargs)],
                  [Expr("load", (i,), d) for i in range(nargs)]
                  + [Expr(op, tuple(range(nargs)), d)], [nargs])


def op_inputs(op: str, d: dt.DType) -> list[np.ndarray]:
    x = probe_values(d)
    if mathlib.DECOMPOSED[op] == 1:
        return [x]
    # pow: bases of every size and sign against small and integral exponents, and the
    # special pairs (0, inf, NaN, -1, 1 on both sides).
    rng = np.random.default_rng(11)
    base = np.concatenate([x, rng.uniform(-3, 3, 2000)]).astype(d.np)
    expo = np.where(rng.random(base.size) < 0.4, rng.integers(-8, 9, base.size),
                    rng.uniform(-6, 6, base.size)).astype(d.np)
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.0, -2.0, 0.5], d.np)
    b2, e2 = np.meshgrid(special, special)
    return [np.concatenate([base, b2.ravel()]), np.concatenate([expo, e2.ravel()])]


def probe_values(d: dt.DType) -> np.ndarray:
    """Every binade from the subnormals to overflow, both signs, dense [-20, 20], and the
    special values."""
    rng = np.random.default_rng(7)
    top = 127 if d is F32 else 1023
    low = -149 if d is F32 else -1074
    mags = np.exp2(rng.uniform(low, top, 3000))
    dense = rng.uniform(-20, 20, 2000)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 88.0, -88.0, 89.0, -104.0,
               709.0, -745.0, 1e-40, -1e-40, 5e-324, 20.0, -20.0, 40.0, 1e-8, -1e-8]
    with np.errstate(over="ignore", under="ignore"):
        return np.concatenate([mags, -mags, dense, special]).astype(d.np)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place (NaN to NaN is 0, NaN to a number huge)."""
    ib = np.int32 if a.dtype == np.float32 else np.int64
    def ordered(x):
        i = x.view(ib).astype(np.int64)
        return np.where(i < 0, np.iinfo(ib).min - i, i)
    d = np.abs(ordered(a) - ordered(b))
    both_nan = np.isnan(a) & np.isnan(b)
    one_nan = np.isnan(a) ^ np.isnan(b)
    return np.where(both_nan, 0, np.where(one_nan, np.iinfo(np.int64).max, d))


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="ember-backend-seam-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_emulated(emu, ck: cuda.CudaKernel, xs: list[np.ndarray]) -> np.ndarray:
    out = np.full(xs[0].shape, np.nan, xs[0].dtype)
    ptrs = [x.ctypes.data for x in xs] + [out.ctypes.data]
    launches, slots = ck.launches(LIMITS, ptrs)
    assert slots == 0
    for ln in launches:
        assert emu.launch(ln.entry, ln.grid, ln.block, ptrs) == 0
    return out


def test_mathlib_programs_agree_bit_for_bit_on_cpu_and_emulated_gpu(workdir):
    """The CUDA C of every decomposed function, compiled by g++ on the emulator, gives the
    LLVM backend's bits: both render one program, every FMA explicit."""
    cases = []
    for op in sorted(mathlib.DECOMPOSED):
        for d in (F32, F64):
            if not mathlib.decomposes(op, d):   # float64 pow, erf: each backend's libm
                continue
            xs = op_inputs(op, d)
            cases.append((op, d, xs, cuda.CudaKernel(op_kernel(op, d, xs[0].size))))
    emu = cuda_emulator.Emulator([ck.source for *_, ck in cases],
                                 [e for *_, ck in cases for e in ck.entries], workdir)
    checked = 0
    for op, d, xs, ck in cases:
        want = np.empty_like(xs[0])
        llvm.compile_kernel(op_kernel(op, d, xs[0].size)).run(xs, [want])
        got = run_emulated(emu, ck, xs)
        dist = ulp_distance(got, want)
        bad = np.flatnonzero(dist > 0)
        assert bad.size == 0, (f"{op} {d.name}: GPU != CPU at {[x[bad[:5]] for x in xs]}: "
                               f"{got[bad[:5]]} vs {want[bad[:5]]}")
        checked += xs[0].size
    assert checked > 60_000 and len(cases) == 2 * len(mathlib.DECOMPOSED) - 2


@pytest.mark.parametrize("op,ref", [
    ("exp", np.exp), ("log", np.log), ("tanh", np.tanh),
    ("sigmoid", lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                   np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))),
    ("softplus", lambda x: np.logaddexp(0, x)),
])
def test_mathlib_float32_accuracy_against_float64_numpy(op, ref):
    """float32 programs within a few ulps of the correctly rounded float64 reference."""
    x = probe_values(F32)
    with np.errstate(all="ignore"):
        x = x[(np.abs(x) < 1e30) | ~np.isfinite(x)]
        want = ref(x.astype(np.float64)).astype(np.float32)
    if op == "log":   # log of a negative is NaN; the rest compare as numbers
        x = x[~(x < 0)]
        with np.errstate(all="ignore"):
            want = ref(x.astype(np.float64)).astype(np.float32)
    got = np.empty_like(x)
    llvm.compile_kernel(unary_kernel(op, F32, x.size)).run([x], [got])
    dist = ulp_distance(got, want)
    # Results in the subnormal range carry fewer digits: compare them absolutely.
    tiny = np.abs(want) < np.finfo(np.float32).tiny
    assert dist[~tiny].max() <= 4, (op, x[~tiny][np.argmax(dist[~tiny])])
    assert np.all(np.abs(got[tiny] - want[tiny]) <= 2 * np.finfo(np.float32).smallest_subnormal)


def test_accumulator_policy_is_shared():
    """float32 row sums accumulate in float32 up to SUM_F32_MAX points, in float64
    beyond, on both backends."""
    def sum_kernel(n):
        return Kernel("s", (2, n), [Load(0, F32, (n, 1))],
                      [Expr("load", (0,), F32), Expr("reduce_sum", (0,), F32)],
                      [Store(1, (1, 0))], reduce_dims=1)

    def body(k):   # the kernel's own code, after the shared prelude
        return cuda.cuda_source(k).split("#endif  // EMBER_CUDA_PRELUDE")[1]

    short, long = sum_kernel(1024), sum_kernel(policy.SUM_F32_MAX + 1)
    assert policy.accumulator_dtype(short, short.exprs[1]) is F32
    assert policy.accumulator_dtype(long, long.exprs[1]) is F64
    assert "ember_red_sum_f32" in body(short) and "ember_red_sum_f64" not in body(short)
    assert "ember_red_sum_f64" in body(long) and "ember_red_sum_f32" not in body(long)
    cpu_short = llvm.compile_kernel(short).source
    cpu_long = llvm.compile_kernel(long).source
    assert "fadd reassoc nsz contract float" in cpu_short
    assert "fadd reassoc nsz contract double" not in cpu_short
    assert "fadd reassoc nsz contract double" in cpu_long
    # And the sum is right on both sides of the cut.
    rng = np.random.default_rng(0)
    for k, n in ((short, 1024), (long, policy.SUM_F32_MAX + 1)):
        x = rng.standard_normal((2, n)).astype(np.float32)
        out = np.empty(2, np.float32)
        llvm.compile_kernel(k).run([x], [out])
        np.testing.assert_allclose(out, x.astype(np.float64).sum(1), rtol=2e-6, atol=2e-4)


def test_registry_and_fusible_set():
    cpu, gpu = backend.backend_for("cpu"), backend.backend_for("cuda")
    assert (cpu.name, cpu.device_type, gpu.name, gpu.device_type) == ("llvm", "cpu", "cuda", "cuda")
    assert backend.backend_for("meta") is None
    assert isinstance(cpu, llvm.LLVMBackend) and isinstance(gpu, cuda.CudaBackend)
    for op in policy.FUSIBLE:
        assert op in ember.ops.OPS and ember.ops.OPS[op].elementwise, op
        assert cpu.supports(op, F32) and gpu.supports(op, F64)
    assert cpu.supports("reduce_sum", F32) and not cpu.supports("matmul", F32)
    assert policy.FUSIBLE >= set(mathlib.DECOMPOSED)


def string_literals(path: str) -> set[str]:
    with open(path) as f:
        toks = tokenize.generate_tokens(io.StringIO(f.read()).readline)
        return {t.string.strip("\"'") for t in toks if t.type == tokenize.STRING}


def test_plan_and_fusion_name_no_device_or_backend():
    """The plan builder and the fusion pass ask the registry: no device or backend names
    in their code (docstrings aside)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for rel in ("ember/runtime/plan.py", "ember/ir/passes/fuse.py"):
        lits = string_literals(os.path.join(root, rel))
        assert not lits & {"cpu", "cuda", "llvm"}, (rel, lits & {"cpu", "cuda", "llvm"})
        with open(os.path.join(root, rel)) as f:
            src = f.read()
        assert "device.type ==" not in src and "import cuda" not in src


class CountingBackend(llvm.LLVMBackend):
    """The LLVM backend under another name, counting what the plan asks of it."""
    name = "counting"

    def __init__(self):
        self.kernels = 0
        self.batches = 0

    def compile_kernel(self, kernel):
        self.kernels += 1
        return super().compile_kernel(kernel)

    def compile_batch(self, kernels, name):
        self.batches += 1
        return super().compile_batch(kernels, name)


def test_a_registered_backend_is_what_the_plan_uses(monkeypatch):
    counting = CountingBackend()
    monkeypatch.setitem(backend._REGISTRY, "cpu", counting)

    @ember.compile
    def f(x, y):
        return (x.exp() * 2).sum(1), (y + 1).tanh()

    x = ember.tensor(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32))
    y = ember.tensor(np.random.default_rng(2).standard_normal(5).astype(np.float32))
    for _ in range(3):
        a, b = f(x, y)
    np.testing.assert_allclose(a.numpy(), (np.exp(x.numpy()) * 2).sum(1), rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), np.tanh(y.numpy() + 1), rtol=1e-6)
    assert counting.kernels >= 2 and counting.batches >= 1
    kernels = f.kernels()
    assert kernels and {k.backend for k in kernels} == {"counting"}


def test_a_device_without_backend_runs_eagerly(monkeypatch):
    monkeypatch.setitem(backend._REGISTRY, "cpu", None)

    @ember.compile
    def f(x):
        return (x.exp() * 2).sum(1)

    x = ember.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    for _ in range(3):
        out = f(x)
    np.testing.assert_allclose(out.numpy(), (np.exp(x.numpy()) * 2).sum(1), rtol=1e-6)
    kernels = f.kernels()
    assert kernels and all(k.backend != "llvm" for k in kernels)
