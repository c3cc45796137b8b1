"""The digits demo trains to >= 95% held-out accuracy, and its commands work."""
from __future__ import annotations

import sys

import pytest

import ember

pytestmark = pytest.mark.slow  # seconds per test: left out by the fast lane


def test_demo_reaches_95_percent():
    pytest.importorskip("sklearn")
    from ember.demo import train

    lines: list[str] = []
    result = train(epochs=10, log=lines.append)
    assert result["test_accuracy"] >= 0.95
    assert len(result["history"]) == 10
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert any(line.startswith("epoch  10/10") and "train acc" in line for line in lines)
    assert "test accuracy" in lines[-2]
    assert lines[-1].startswith("compiled step:") and "speed of the eager step" in lines[-1]
    assert result["kernels"] > 0 and result["speedup"] > 0


def test_demo_is_reproducible():
    pytest.importorskip("sklearn")
    from ember.demo import train

    a = train(epochs=2, verbose=False)
    b = train(epochs=2, verbose=False)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_held_out_split():
    pytest.importorskip("sklearn")
    from ember.demo import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert x_train.dtype.name == "float32" and y_train.dtype.name == "int64"
    assert set(y_test.tolist()) == set(range(10))


def test_missing_sklearn_message(monkeypatch, capsys):
    from ember import demo

    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes "import sklearn..." fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert demo.main(["--epochs", "1"]) == 1
    assert "pip install 'ember[demo]'" in capsys.readouterr().err


def test_cli_dispatch(monkeypatch, capsys):
    from ember import __main__ as cli

    calls = []
    monkeypatch.setitem(cli.COMMANDS, "demo", (lambda argv: calls.append(argv) or 0, "demo"))
    assert cli.main(["demo", "--epochs", "3"]) == 0
    assert calls == [["--epochs", "3"]]
    assert cli.main([]) == 0 and "demo" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli.main(["--version"]) == 0 and ember.__version__ in capsys.readouterr().out
