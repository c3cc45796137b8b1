"""The benchmark suite's quick mode runs in-process and writes a complete JSON (and PNG).

Only that the suite runs and reports is checked: speed is never asserted in tests.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ sits beside ember/, not inside the package
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.workloads import FAMILIES, build  # noqa: E402

pytestmark = pytest.mark.slow  # seconds per test: left out by the fast lane

# Peers that spend seconds compiling (torch.compile, Numba's parallel loops, XLA) are
# left out: the test checks that the suite runs and reports, on ember, NumPy and torch.
SKIP = ["torch.compile", "numba", "jax"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run = main(["--quick", "--no-gpu", "--out", str(out), "--skip", *SKIP])
    return out, run


def test_quick_mode_writes_every_workload_with_ratios_and_agreement(quick_run):
    out, run = quick_run
    doc = json.loads((out / "results.json").read_text())
    expected = {w.name for w in build(quick=True)}
    got = {w["name"] for w in doc["workloads"]}
    assert got == expected
    assert {w["family"] for w in doc["workloads"]} == set(FAMILIES)
    for w in doc["workloads"]:
        subject = w["impls"][w["subject"]]
        assert subject["status"] == "ok", (w["name"], subject)
        assert subject["median_s"] > 0 and subject["q25_s"] <= subject["q75_s"]
        assert isinstance(w["agree"], bool)
        assert w["ratios"], w["name"]
        for name, ratio in w["ratios"].items():
            cell = w["impls"][name]
            if cell["status"] == "ok":
                assert ratio is not None and ratio > 0, (w["name"], name)
            if cell["status"] in ("ok", "error"):
                assert "agree" in cell
    skipped = {name for w in doc["workloads"] for name, c in w["impls"].items()
               if c["status"] == "skipped"}
    assert skipped <= {"torch.compile", "numba", "jax.jit"}
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert (out / "results.md").read_text().count("| workload |") == 1


def test_plot_is_written_when_matplotlib_is_installed(quick_run):
    out, run = quick_run
    png = out / "ratios.png"
    if importlib.util.find_spec("matplotlib") is None:   # the report says why, no file
        assert "plot skipped" in run["plot_skipped"] and not png.exists()
    else:
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_implementation_becomes_a_cell_not_a_crash():
    from benchmarks.harness import Config, Impl, Prepared, Workload, run_workload

    def good() -> Prepared:
        return Prepared(lambda: np.ones(3), lambda out: [out])

    def wrong() -> Prepared:
        return Prepared(lambda: np.zeros(3), lambda out: [out])

    def broken() -> Prepared:
        raise ValueError("no kernel for this")

    w = Workload("toy", "toy", "toy", [Impl("ember", "ember", good),
                                       Impl("numpy", "numpy", wrong),
                                       Impl("torch", "torch", broken)], reference="ember")
    r = run_workload(w, Config(repeat=2, warmup=1, min_repeat_s=0.0, pause_s=0.0))
    assert r["impls"]["torch"]["status"] in ("error", "not installed")
    if r["impls"]["torch"]["status"] == "error":
        assert "no kernel for this" in r["impls"]["torch"]["error"]
    assert r["agree"] is False and r["disagree"] == ["numpy"]
    assert "values differ" in r["impls"]["numpy"]["mismatch"]
    assert r["ratios"]["numpy"] is not None


# ---- the GPU variants (issue 5): built and reported here, timed only on a GPU ----------

def test_gpu_variants_have_the_issue_sizes_and_peers_and_cpu_sizes_are_unchanged():
    gpu = {w.name: w for w in build(gpu=True, cpu=False)}
    for name in ("chain_16M_cuda", "chain_256M_cuda", "softmax_4096x1024_cuda",
                 "softmax_32768x4096_cuda", "layer_norm_4096x1024_cuda",
                 "layer_norm_32768x4096_cuda", "mlp_train_b128_cuda"):
        w = gpu[name]
        assert w.device == "cuda"
        assert {"ember", "ember eager", "cupy", "torch", "torch.compile"} <= {
            i.name for i in w.impls}, name
        assert not {"numpy", "numba", "jax.jit"} & {i.name for i in w.impls}, name
        assert w.reference == "torch" and w.reference_fallbacks == ("cupy",)
    assert gpu["chain_256M_cuda"].nbytes == 8 * 256 * 2**20
    assert gpu["chain_16M_cuda"].aim == gpu["chain_256M_cuda"].aim == 0.8
    cpu = {w.name for w in build()}
    assert {"chain_1M", "chain_16M", "softmax_4096x1024", "mlp_train_b128"} <= cpu
    assert not any("256M" in n or "32768" in n or n.endswith("_cuda") for n in cpu)
    both = {w.name for w in build(gpu=True, sizes={"chain@cuda": ["1M"]}, only=["chain"])}
    assert both == {"chain_1M", "chain_16M", "chain_1M_cuda"}


def test_gpu_only_lists_the_gpu_suite_or_says_why_not():
    from benchmarks import peers
    if peers.cuda_available():   # only the GPU variants
        names = main(["--gpu-only", "--list"])["workloads"]
        assert names and all(n.endswith("_cuda") for n in names)
    else:
        with pytest.raises(SystemExit, match="--gpu-only: no CUDA GPU"):
            main(["--gpu-only", "--list"])


def test_an_aim_is_reported_against_the_measured_copy(tmp_path):
    from benchmarks import report
    from benchmarks.harness import Config, Impl, Prepared, Workload, run_workload

    x = np.arange(1 << 16, dtype=np.float32)

    def setup() -> Prepared:
        return Prepared(lambda: x * 2, lambda out: [out])

    w = Workload("toy_chain", "chain", "toy", [Impl("ember", "ember", setup)],
                 reference="ember", nbytes=8 * x.size, aim=0.8)
    r = run_workload(w, Config(repeat=2, warmup=1, min_repeat_s=0.001, pause_s=0.0))
    aim = r["aim"]
    assert aim["target"] == 0.8 and aim["fraction"] == r["impls"]["ember"]["fraction"] > 0
    assert aim["met"] == (aim["fraction"] >= 0.8)
    assert aim["reference_rate"] == r["roofline"]["gbps"]
    meta = {"command": "toy", "created": "now", "versions": {}, "threads": [],
            "machine": {"cpu": "cpu", "cores": 1, "python": "3", "ember_commit": "x",
                        "gpu": "none"}}
    md = report.markdown(meta, [r])
    assert "Aims:" in md and "at least 80% of the bandwidth" in md


def test_compare_reports_the_first_difference_in_a_large_array():
    from benchmarks.harness import compare

    want = np.zeros((400, 500), np.float32)
    got = want.copy()
    got[300, 7] = 1.0
    got[399, 499] = np.nan
    ok, detail = compare([got], [want], 1e-4, 1e-5)
    assert not ok and detail["max_abs_err"] == 1.0
    assert detail["text"] == "array 0: 2 of 200000 values differ, e.g. 1 vs 0 at (300, 7)"
    assert compare([want], [want.copy()], 1e-4, 1e-5) == (True, {"max_abs_err": 0.0})


STANDIN = ROOT / "tests" / "cupy_standin.py"


@pytest.mark.skipif(not STANDIN.exists() or shutil.which("g++") is None,
                    reason="needs tests/cupy_standin.py and g++ (its CUDA emulator)")
def test_gpu_cells_run_on_the_cupy_standin(tmp_path):
    """The cuda cells' code paths (CuPy cells, device sync, copies back to the host)
    with CuPy replaced by the NumPy-backed stand-in, in a process of their own."""
    script = ("import sys; sys.path.insert(0, 'tests'); import cupy_standin; "
              "cupy_standin.install(); from benchmarks.__main__ import main; "
              f"main(['--quick', '--gpu-only', '--only', 'chain', 'softmax', 'copy', "
              f"'mlp_forward', '--skip', 'torch.compile', '--out', {str(tmp_path)!r}])")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    names = {w["name"] for w in doc["workloads"]}
    assert names == {"chain_4K_cuda", "softmax_64x128_cuda", "copy_4K_cuda",
                     "mlp_forward_b8_cuda"}
    for w in doc["workloads"]:
        assert w["device"] == "cuda" and w["agree"], (w["name"], w["disagree"])
        for name in ("ember", "ember eager", "cupy"):
            assert w["impls"][name]["status"] == "ok", (w["name"], name, w["impls"][name])
    assert "| cupy |" in (tmp_path / "results.md").read_text()
