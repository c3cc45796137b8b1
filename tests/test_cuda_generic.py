"""Size-generic CUDA kernels (``Kernel.generic``, dynamic shapes): one source, and so one
compiled module, for every size of a kernel's structure.

Each family below builds the same kernel at several sizes. Without a GPU:

- the generic CUDA source is byte-identical across the sizes (and differs from the static
  source, which has the sizes compiled in), and only the ``dims`` values differ;
- every family's source compiles to sm_90 with NVRTC, every entry point present;
- each distinct source is built once for the g++ CUDA emulator, and every size runs on
  it with its own ``dims`` and launches: the outputs equal NumPy, and equal bit for bit
  the static kernel of the same size emulated with the same launches;
- on the CuPy stand-in, ``CudaKernel.run`` at every size compiles one module.

On a GPU (marked ``gpu``) a generic kernel runs at two sizes from one module.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pytest

import ember
from ember import dtypes as dt
from ember.codegen import cuda, nvrtc
from ember.codegen.kernel import Expr, Kernel, Load, Store

sys.path.insert(0, os.path.dirname(__file__))
import cuda_emulator  # noqa: E402

F32, F64, I32, B = dt.float32, dt.float64, dt.int32, dt.bool_
SMALL = cuda.DeviceLimits(sm_count=1, max_threads_per_block=64, max_threads_per_sm=64)
MEDIUM = cuda.DeviceLimits(sm_count=2, max_threads_per_block=128, max_threads_per_sm=256)
WIDE = cuda.DeviceLimits(sm_count=4, max_threads_per_block=256, max_threads_per_sm=512)


@dataclass
class Case:
    """A kernel at one size: its inputs (NumPy arrays whose data pointers the loads index
    from) and the NumPy reference of its outputs (flat, one per store)."""
    kernel: Kernel
    inputs: list[np.ndarray]
    expected: list[np.ndarray]
    run_time: tuple = ()    # const exprs the generic kernel reads at run time ("scalar")

    def generic(self) -> Kernel:
        exprs, scalars = list(self.kernel.exprs), []
        for j in self.run_time:
            scalars.append(exprs[j].args[0])
            exprs[j] = Expr("scalar", (len(scalars) - 1,), exprs[j].dtype)
        return replace(self.kernel, generic=True, exprs=exprs, scalars=tuple(scalars))


def _aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A copy of ``a`` whose data pointer is ``align``-byte aligned (the vector entries
    run only on aligned pointers)."""
    raw = np.empty(a.nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _rng(*sizes) -> np.random.Generator:
    return np.random.default_rng(abs(hash(sizes)) % (1 << 32))


# ---- the families: each ``family(*sizes)`` is one Case --------------------------------------

def broadcast_add(n: int, m: int) -> Case:
    """z = x * s + b: x [n, m], a bias row b [m] (stride 0 on the batch), a scalar s."""
    rng = _rng(n, m)
    x = rng.standard_normal((n, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    s = np.array([1.5], np.float32)
    k = Kernel("broadcast_add", (n, m),
               [Load(0, F32, (m, 1)), Load(1, F32, (0, 0)), Load(2, F32, (0, 1))],
               [Expr("load", (0,), F32), Expr("load", (1,), F32), Expr("mul", (0, 1), F32),
                Expr("load", (2,), F32), Expr("add", (2, 3), F32)], [4])
    return Case(k, [x, s, b], [(x * s[0] + b).ravel()])


def permuted_exp(a: int, b: int, c: int) -> Case:
    """y = exp(x.permute(2, 0, 1)) for x [a, b, c]: every load stride a size."""
    x = _rng(a, b, c).standard_normal((a, b, c)).astype(np.float32)
    k = Kernel("permuted_exp", (c, a, b), [Load(0, F32, (1, b * c, c))],
               [Expr("load", (0,), F32), Expr("exp", (0,), F32)], [1])
    return Case(k, [x], [np.exp(x.transpose(2, 0, 1)).ravel()])


def sliced_where(r: int, c: int) -> Case:
    """y = where(x > 0, x, 2 * x) over the slice x[1:, 2:] of x [r, c] (a load offset),
    as float64."""
    x = _rng(r, c).standard_normal((r, c))
    k = Kernel("sliced_where", (r - 1, c - 2), [Load(0, F64, (c, 1), offset=c + 2)],
               [Expr("load", (0,), F64), Expr("const", (0.0,), F64), Expr("gt", (0, 1), B),
                Expr("const", (2.0,), F64), Expr("mul", (0, 3), F64),
                Expr("where", (2, 0, 4), F64)], [5])
    v = x[1:, 2:]
    return Case(k, [x], [np.where(v > 0, v, 2 * v).ravel()])


def contiguous_mix(n: int, offset: int) -> Case:
    """y = x[offset:offset + n] * s (float32, vector entries: aligned when ``offset`` is a
    multiple of 4) and its int32 cast (a second store)."""
    rng = _rng(n, offset)
    x = _aligned(rng.standard_normal(n + offset).astype(np.float32) * 10)
    s = np.array([0.5], np.float32)
    k = Kernel("contiguous_mix", (n,), [Load(0, F32, (1,), offset=offset), Load(1, F32, (0,))],
               [Expr("load", (0,), F32), Expr("load", (1,), F32), Expr("mul", (0, 1), F32),
                Expr("cast", (2,), I32)], [2, 3])
    y = x[offset:] * s[0]
    return Case(k, [x, s], [y, y.astype(np.int32)])


def softmax_rows(rows: int, n: int) -> Case:
    """Row softmax of x [rows, n], storing the row maxima too (a row-level store)."""
    x = _rng(rows, n).standard_normal((rows, n)).astype(np.float32) * 3
    f = F32
    k = Kernel("softmax", (rows, n), [Load(0, f, (n, 1))],
               [Expr("load", (0,), f), Expr("reduce_max", (0,), f), Expr("sub", (0, 1), f),
                Expr("exp", (2,), f), Expr("reduce_sum", (3,), f), Expr("div", (3, 4), f)],
               [Store(5, (n, 1)), Store(1, (1, 0))], reduce_dims=1)
    m = x.max(axis=1, keepdims=True, initial=-np.inf)   # (-inf for empty rows)
    e = np.exp(x - m)
    return Case(k, [x], [(e / e.sum(axis=1, keepdims=True)).ravel(), m.ravel()])


def column_sums(a: int, b: int, c: int) -> Case:
    """x.sum((0, 2)) and x.abs().amax((0, 2)) for x [a, b, c]: a reduction over two
    non-adjacent dims (a 2-D inner loop with a size stride)."""
    x = _rng(a, b, c).standard_normal((a, b, c)).astype(np.float32)
    f = F32
    k = Kernel("column_sums", (b, a, c), [Load(0, f, (c, b * c, 1))],
               [Expr("load", (0,), f), Expr("reduce_sum", (0,), f), Expr("abs", (0,), f),
                Expr("reduce_max", (2,), f)],
               [Store(1, (1, 0, 0)), Store(3, (1, 0, 0))], reduce_dims=2)
    return Case(k, [x], [x.sum(axis=(0, 2)), np.abs(x).max(axis=(0, 2))])


def int_row_max(rows: int, n: int) -> Case:
    """Row maxima of an int32 x [rows, n] (an accumulator that is never widened)."""
    x = _rng(rows, n).integers(-1000, 1000, (rows, n)).astype(np.int32)
    k = Kernel("int_row_max", (rows, n), [Load(0, I32, (n, 1))],
               [Expr("load", (0,), I32), Expr("reduce_max", (0,), I32)], [Store(1, (1, 0))],
               reduce_dims=1)
    return Case(k, [x], [x.max(axis=1)])


def full_sum(n: int) -> Case:
    """sum(x * x) of a float32 x [n] as one row: long rows split across blocks, and
    past 65536 points summed in float64 (as the policy says for the static kernel)."""
    x = _rng(n).standard_normal(n).astype(np.float32)
    f = F32
    k = Kernel("full_sum", (1, n), [Load(0, f, (n, 1))],
               [Expr("load", (0,), f), Expr("mul", (0, 0), f), Expr("reduce_sum", (1,), f)],
               [Store(2, (1, 0))], reduce_dims=1)
    return Case(k, [x], [np.array([np.sum(x.astype(np.float64) ** 2)], np.float32)])


def row_mean(rows: int, n: int) -> Case:
    """x.mean(1) of a float32 x [rows, n]: the row sum times 1/n, a number made from a size
    that the generic kernel reads at run time (a "scalar" expr, Kernel.scalars)."""
    x = _rng(rows, n).standard_normal((rows, n)).astype(np.float32)
    f = F32
    k = Kernel("row_mean", (rows, n), [Load(0, f, (n, 1))],
               [Expr("load", (0,), f), Expr("reduce_sum", (0,), f),
                Expr("const", (1.0 / n,), f), Expr("mul", (1, 2), f)],
               [Store(3, (1, 0))], reduce_dims=1)
    return Case(k, [x], [x.astype(np.float64).mean(1).astype(np.float32)], run_time=(2,))


# family -> its sizes (each keeps the collapsed layout's form: no dim becomes 1 and no
# two dims merge, so all share one template)
FAMILIES: dict[Callable[..., Case], list[tuple]] = {
    broadcast_add: [(64, 32), (48, 32), (17, 5)],
    permuted_exp: [(4, 3, 5), (2, 7, 3), (6, 2, 9)],
    sliced_where: [(9, 12), (5, 40), (17, 7)],
    contiguous_mix: [(1023, 8), (4099, 4), (8, 3)],
    softmax_rows: [(64, 100), (48, 100), (5, 1500), (3, 17), (2, 20000), (2, 70000)],
    column_sums: [(4, 3, 5), (2, 7, 3), (6, 2, 9)],
    int_row_max: [(64, 9), (7, 300), (2, 2000)],
    full_sum: [(20000,), (70000,), (5,)],
    row_mean: [(64, 100), (48, 37), (3, 2000)],
}


def all_cases() -> list[tuple[str, list[Case]]]:
    return [(f.__name__, [f(*sizes) for sizes in sizes_list])
            for f, sizes_list in FAMILIES.items()]


# ---- one source per structure ------------------------------------------------------------

def test_generic_source_is_the_same_for_every_size():
    for name, cases in all_cases():
        sources = {cuda.cuda_source(c.generic()) for c in cases}
        assert len(sources) == 1, name
        source = sources.pop()
        static = [cuda.cuda_source(c.kernel) for c in cases]
        assert source not in static and len(set(static)) == len(cases), name
        assert "const long long* __restrict__ dims" in source
        body = source[source.index("// ember size-generic kernel"):]
        assert not any(f"for (int {v} " in body for v in "ijvg") and "const int o" not in body
        # Nothing of the sizes is baked in: no loop bound, no name, no comment.
        cks = [cuda.CudaKernel(c.generic()) for c in cases]
        assert len({ck.name for ck in cks}) == 1 and name not in source
        assert all(ck.index_bits == 64 for ck in cks)
        assert len({tuple(ck.dims) for ck in cks}) == len(cases), name
        for c, ck in zip(cases, cks):
            assert ck.dims.dtype == np.int64
            assert all(f"dims[{i}]" in source for i in range(len(ck.dims)))


def test_sizes_are_read_from_dims_in_layout_order():
    case = softmax_rows(48, 100)
    ck = cuda.CudaKernel(case.generic())
    # rows, row length, the input's row stride, the output's row stride
    assert list(ck.dims) == [48, 100, 100, 100]
    src = ck.source
    assert "const long long n_rows = D0;" in src and "const long long n_inner = D1;" in src
    assert "j < n_inner" in src and "row * D2" in src and "row * D3" in src
    sl = cuda.CudaKernel(sliced_where(9, 12).generic())
    assert list(sl.dims) == [8, 10, 12, 10, 14]   # ..., the load's offset 12 + 2
    assert "in0[o0]" in sl.source and "const long long o0 = D4 + " in sl.source


def test_structure_changes_give_other_sources():
    """What the code depends on changes the source: a dtype, a broadcast (stride 0),
    a zero offset (strides and offsets 0 and 1 are literal), another op."""
    base = cuda.cuda_source(softmax_rows(8, 50).generic())
    x64 = softmax_rows(8, 50).generic()
    x64 = replace(x64, loads=[Load(0, F64, (50, 1))],
                  exprs=[replace(e, dtype=F64) for e in x64.exprs])
    assert cuda.cuda_source(x64) != base
    a = cuda.cuda_source(contiguous_mix(100, 4).generic())
    assert a == cuda.cuda_source(contiguous_mix(100, 8).generic())
    assert a != cuda.cuda_source(contiguous_mix(100, 0).generic())
    assert a != cuda.cuda_source(contiguous_mix(100, 1).generic())


def test_generic_kernels_launch_alone_and_share_a_program():
    f32 = [c.generic() for c in (broadcast_add(64, 32), broadcast_add(48, 32))]
    static = broadcast_add(8, 8).kernel
    assert cuda.launch_groups([static, f32[0], static, f32[1]]) == [[1], [3], [0, 2]]
    assert cuda.CudaBackend().batch_groups(f32) == [[0], [1]]
    with pytest.raises(ValueError, match="size-generic"):
        cuda.CudaKernels([static, f32[0]], "m")
    a, b = (cuda.compile_kernel(k) for k in f32)
    assert a is not b and a._program is b._program   # one module for both sizes
    assert cuda.compile_kernel(f32[0]) is a            # cached by signature, as before
    # An elementwise layout with a size-1 store stride falls back to no vector entry.
    one = broadcast_add(1, 1).generic()
    assert cuda.CudaKernel(one).vector_entry is None


def test_launches_follow_each_instances_sizes():
    """Per instance: warp per row for short rows, a block per row for long ones, split
    rows and float64 sums past 65536 points (the same choices as the static kernel)."""
    for n, entry_suffix in ((100, "_w"), (1500, ""), (70000, "_xp0")):
        case = full_sum(n) if n == 70000 else softmax_rows(3, n)
        ck, st = cuda.CudaKernel(case.generic()), cuda.CudaKernel(case.kernel)
        launches, slots = ck.launches(WIDE)
        assert launches[0].entry == ck.name + entry_suffix
        static_launches, static_slots = st.launches(WIDE)
        assert slots == static_slots
        assert [(ln.grid, ln.block, ln.nsplit) for ln in launches] == [
            (ln.grid, ln.block, ln.nsplit) for ln in static_launches]
        assert all(ln.entry in ck.entries for ln in launches)
    # Only float32 sums get a float64 layout.
    assert not any(e.endswith(("_x", "_xp0"))
                   for e in cuda.CudaKernel(int_row_max(4, 9).generic()).entries)
    assert cuda.CudaKernel(softmax_rows(4, 9).generic()).entries[-1].endswith("_xp2")


def test_kernels_without_points_keep_static_code():
    """A zero size gives a layout whose strides are all 0 (as if every load were
    broadcast along the row): such a kernel keeps its static code, and runs right."""
    import cupy_standin

    case = softmax_rows(3, 0)
    ck = cuda.CudaKernel(case.generic())
    assert ck.dims is None and not ck.generic and "__restrict__ dims" not in ck.source
    assert ck.source == cuda.CudaKernel(case.kernel).source
    with cupy_standin.installed() as cp:
        ck = cuda.compile_kernel(case.generic())
        outs = [cp.empty(n, d.np) for n, d in zip(ck.out_sizes, ck.out_dtypes)]
        ck.run([cp.asarray(a) for a in case.inputs], outs)
        assert outs[0].size == 0
        np.testing.assert_array_equal(cp.asnumpy(outs[1]), case.expected[1])


# ---- NVRTC -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nvrtc_ready():
    nvrtc.find_nvrtc()   # the test extra installs nvidia-cuda-nvrtc: missing is a failure


def test_nvrtc_compiles_every_generic_source(nvrtc_ready):
    cks = [cuda.CudaKernel(cases[0].generic()) for _, cases in all_cases()]
    source = "".join(ck.source for ck in cks)   # the prelude is include-guarded
    cubin = nvrtc.compile_entry_points(source, [e for ck in cks for e in ck.entries],
                                       arch="sm_90")
    assert cubin[:4] == b"\x7fELF"
    names = nvrtc.cubin_functions(cubin)
    # Every layout is there: vector entries, warp and block rows, split phases, wide sums.
    for suffix in ("_v", "_w", "_p0", "_x", "_xp1"):
        assert any(n.endswith(suffix) for n in names), suffix


# ---- the emulator: every size from one build ---------------------------------------------

@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="ember-cuda-generic-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _emulate(emu: cuda_emulator.Emulator, ck: cuda.CudaKernel, case: Case,
             limits: cuda.DeviceLimits, policy: int) -> tuple[list[np.ndarray], list]:
    """``ck``'s outputs on ``case`` with the launches chosen for ``limits`` (its ``dims``
    after the outputs when generic), as ``CudaKernel.run`` does on a device."""
    emu.lib.emu_set_policy(policy)
    outs = [np.empty(n, d.np) for n, d in zip(ck.out_sizes, ck.out_dtypes)]
    for o in outs:
        o.view(np.uint8)[:] = 0x5A   # an element the kernel skips shows up
    ptrs = [a.ctypes.data for a in (*case.inputs, *outs)]
    launches, slots = ck.launches(limits, ptrs)
    ws = np.full(max(slots, 1), 0x7FF4DEADBEEF0000, np.uint64)
    if ck.dims is not None:
        ptrs.append(ck.dims.ctypes.data)
    for ln in launches:
        nsplit = ctypes.c_int(ln.nsplit or 0)
        args = ptrs + ([ws.ctypes.data, ctypes.addressof(nsplit)] if ln.nsplit else [])
        rc = emu.launch(ln.entry, ln.grid, ln.block, args)
        assert rc == 0, f"{ln}: emulated launch failed ({rc}: 3 is a deadlock)"
    return outs, launches


def _tolerance(d) -> dict:
    return dict(rtol=2e-5, atol=2e-6) if d == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_emulated_generic_kernels_equal_numpy_and_the_static_ones(workdir):
    assert shutil.which("g++"), "the CUDA emulator needs g++"
    families = all_cases()
    generic = [[cuda.CudaKernel(c.generic()) for c in cases] for _, cases in families]
    # (each size's static kernel named apart: they are built into one library)
    static = [[cuda.CudaKernel(replace(c.kernel, name=f"{name}_{i}"))
               for i, c in enumerate(cases)] for name, cases in families]
    # One build for every size: the distinct generic sources, one per family.
    sources = {ck.source: ck.entries for cks in generic for ck in cks}
    assert len(sources) == len(families)
    emu = cuda_emulator.Emulator(list(sources), [e for es in sources.values() for e in es],
                                 workdir)
    static_emu = cuda_emulator.Emulator([ck.source for cks in static for ck in cks],
                                        [e for cks in static for ck in cks for e in ck.entries],
                                        workdir)
    seen = set()
    for (name, cases), gcks, scks in zip(families, generic, static):
        for case, gck, sck in zip(cases, gcks, scks):
            for limits, policy in ((SMALL, 1), (MEDIUM, 2), (WIDE, 0)):
                got, launches = _emulate(emu, gck, case, limits, policy)
                what = f"{name}{case.kernel.shape} on {limits}"
                for g, want in zip(got, case.expected):
                    np.testing.assert_allclose(g, want, err_msg=what, **_tolerance(g.dtype))
                # The static kernel with the same launches computes the same bits.
                ref, _ = _emulate(static_emu, sck, case, limits, policy)
                for g, r in zip(got, ref):
                    np.testing.assert_array_equal(g, r, err_msg=what)
                seen.update(ln.entry[len(gck.name):] for ln in launches)
    # Every kind of entry ran: scalar and vector elementwise, block and warp rows,
    # split rows, float64 sums of long rows.
    assert {"", "_v", "_w", "_p0", "_p2", "_xp0", "_xp2"} <= seen, seen


@pytest.mark.slow
def test_stand_in_runs_every_size_from_one_module():
    """``CudaKernel.run`` on the CuPy stand-in (its RawKernel builds each distinct source
    once for the emulator): every size equals NumPy, one build for all of them."""
    import cupy_standin

    families = [(f, FAMILIES[f]) for f in (softmax_rows, sliced_where, contiguous_mix)]
    with cupy_standin.installed() as cp:
        for family, sizes in families:
            built = len(cupy_standin._LIBS)
            cks = []
            for s in sizes:
                case = family(*s)
                ck = cuda.compile_kernel(case.generic())
                outs = [cp.empty(n, d.np) for n, d in zip(ck.out_sizes, ck.out_dtypes)]
                ck.run([cp.asarray(a) for a in case.inputs], outs)
                for o, want in zip(outs, case.expected):
                    np.testing.assert_allclose(cp.asnumpy(o), want, **_tolerance(want.dtype))
                cks.append(ck)
            assert len(cupy_standin._LIBS) == built + 1, family.__name__
            assert len({id(ck._program) for ck in cks}) == 1
            assert all(ck._dims_on for ck in cks)


# ---- on a GPU ----------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_runs_a_generic_kernel_at_two_sizes_from_one_module(monkeypatch):
    import cupy as cp
    from ember.codegen.cuda import launch

    made = []
    real = nvrtc.cached_cubin
    monkeypatch.setattr(nvrtc, "cached_cubin", lambda *a, **k: made.append(a) or real(*a, **k))
    for family, sizes in ((softmax_rows, [(64, 100), (48, 1500), (3, 20000)]),
                          (contiguous_mix, [(1 << 20, 8), (4099, 3)]),
                          (full_sum, [(70000,), (5000,)])):
        made.clear()
        cks = []
        for s in sizes:
            case = family(*s)
            ck = launch.CudaKernel(case.generic())   # fresh: nothing cached before
            outs = [cp.empty(n, d.np) for n, d in zip(ck.out_sizes, ck.out_dtypes)]
            ck.run([cp.asarray(a) for a in case.inputs], outs)
            for o, want in zip(outs, case.expected):
                np.testing.assert_allclose(cp.asnumpy(o), want, rtol=1e-4, atol=1e-5,
                                           err_msg=f"{family.__name__}{s}")
            cks.append(ck)
        program = cks[0]._program
        assert all(ck._program is program for ck in cks)
        assert len(program._modules) == 1
        assert len(made) <= 1, family.__name__   # one CUBIN (or none: CuPy compiles)
