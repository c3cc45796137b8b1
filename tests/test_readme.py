"""Every code example in the README runs as written.

Each ```python block runs in a fresh interpreter; the GPU block runs only where CuPy sees
a device. Shell blocks that install packages or run the whole benchmark suite are covered
elsewhere (CI installs as the README says; tests/test_benchmarks.py runs the suite); the
inspector command runs here, in a scratch folder.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

import ember

pytestmark = pytest.mark.slow  # seconds per test: left out by the fast lane

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf8").read()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python" and '"cuda"' not in code]
GPU_PYTHON = [code for lang, code in BLOCKS if lang == "python" and '"cuda"' in code]
INSPECT = [line for lang, code in BLOCKS if lang == "bash"
           for line in [code.replace("\\\n", " ")] if "ember inspect" in line]


def run(cmd: list[str], cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_readme_has_examples():
    assert len(PYTHON) >= 4 and len(GPU_PYTHON) == 1 and len(INSPECT) == 1


@pytest.mark.parametrize("code", PYTHON, ids=[f"python{i}" for i in range(len(PYTHON))])
def test_python_block_runs(code, tmp_path):
    proc = run([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_gpu_block_runs(tmp_path):
    proc = run([sys.executable, "-c", GPU_PYTHON[0]], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_inspect_command_runs(tmp_path):
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    args = shlex.split(INSPECT[0].strip())
    assert args[:3] == ["python", "-m", "ember"]
    proc = run([sys.executable] + args[1:], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "graph.svg").stat().st_size > 0
    assert any((tmp_path / "dump").iterdir())
