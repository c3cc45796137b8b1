"""Real PyTorch programs, unchanged, run on ember: minGPT, mnist, word_language_model,
makemore's six models.

The programs are vendored verbatim under ``tests/clients/`` (see SOURCES.md there).
``tests/clients/drive.py`` runs each one in a fresh process, once on torch and once with
``torch`` mapped to ``ember``, from the same initial weights and synthetic data; here
the two runs must agree (losses within 1e-5, final weights), and the program's training
step compiled by ember must equal the same step run eagerly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # seconds per test: left out by the fast lane

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "clients", "drive.py")
PROGRAMS = ["mnist", "wlm_LSTM", "wlm_GRU", "wlm_Transformer", "mingpt"] + [
    f"makemore_{m}" for m in ("bigram", "mlp", "rnn", "gru", "bow", "transformer")]


def drive(program: str, framework: str, outdir) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, EMBER_LOGS="")
    proc = subprocess.run([sys.executable, DRIVER, program, framework, str(outdir)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{program} on {framework} failed:\n{proc.stderr[-3000:]}"
    with open(os.path.join(outdir, f"{program}_{framework}.json")) as f:
        return json.load(f)


def assert_weights_close(a: dict, b: dict, rtol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_matches_torch_and_compiles(program, tmp_path):
    if program.startswith("makemore"):   # it imports torch.utils.tensorboard at the top
        pytest.importorskip("tensorboard")
    ref = drive(program, "torch", tmp_path)   # torch 2.13 comes with the test extra
    got = drive(program, "ember", tmp_path)   # starts from the weights the torch run wrote

    assert len(got["losses"]) == len(ref["losses"]) > 0
    np.testing.assert_allclose(got["losses"], ref["losses"], rtol=0, atol=1e-5)
    assert_weights_close(got["weights"], ref["weights"], rtol=1e-4)
    if "greedy" in ref:
        assert got["greedy"] == ref["greedy"]
    if "trainer" in ref:
        assert got["trainer"]["iters"] == ref["trainer"]["iters"]
        assert got["trainer"]["sampled_shape"] == ref["trainer"]["sampled_shape"]
        assert np.isfinite(got["trainer"]["losses"]).all()

    compiled = got["compiled"]
    assert compiled["fallbacks"] == [], compiled["fallbacks"]
    np.testing.assert_allclose(compiled["compiled"]["losses"], compiled["eager"]["losses"],
                               rtol=0, atol=1e-5)
    assert_weights_close(compiled["compiled"]["weights"], compiled["eager"]["weights"],
                         rtol=1e-5)
