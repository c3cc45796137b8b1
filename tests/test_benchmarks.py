"""The benchmark suite's quick mode runs in-process and writes a complete JSON (and PNG).

Only that the suite runs and reports is checked: speed is never asserted in tests.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ sits beside ember/, not inside the package
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.workloads import FAMILIES, build  # noqa: E402

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
    if importlib.util.find_spec("matplotlib") is None:
        assert "plot skipped" in run["plot_skipped"]
        pytest.skip("matplotlib is not installed")
    png = out / "ratios.png"
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
