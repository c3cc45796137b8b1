"""A seeded fuzzer of elementwise programs over every dtype: random chains of unary and
binary ops, comparisons, ``where`` and casts over float32/64, float16, bfloat16, int8/32/64,
uint8 and bool tensors of broadcasting shapes and Python scalars (including ones out of
an integer dtype's range, which wrap as PyTorch casts them). Each program runs in
PyTorch, in ember eagerly and compiled (three calls); results, dtypes and shapes must
agree, and where PyTorch raises ember must too.

The fast slice runs in CI; ``EMBER_DTYPE_FUZZ=2000 pytest -m fuzz -k dtype_fuzz`` runs a
large one (``EMBER_DTYPE_FUZZ_SEED`` moves the window).
"""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest

import ember

_DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "int8", "uint8",
           "bool"]
_UNARY = ["abs({a})", "-{a}", "({a}).exp()", "({a}).sigmoid()", "({a}).relu()",
          "({a}).float()", "({a}).to(M.int32)", "({a}).sqrt()", "({a}).floor()",
          "({a}).sign()", "({a}).tanh()", "~({a} > 0)", "({a}).clamp(-2, 3)",
          "({a}).square()", "({a}).log1p()", "({a}).round()", "({a}).trunc()",
          "({a}).reciprocal()"]
_BINARY = ["({a} + {b})", "({a} - {b})", "({a} * {b})", "({a} / {b})", "M.maximum({a}, {b})",
           "M.minimum({a}, {b})", "M.where({a} > {b}, {a}, {b})", "({a} > {b})",
           "({a} == {b})", "({a} ** 2)", "M.atan2(({a}).float(), M.as_tensor({b}).float())",
           "M.fmod({a}, 3)", "({a} % 3)", "({a} // 3)"]
_SCALARS = ["2", "-1", "0.5", "3.0", "True", "-2.5", "300"]
# Ops PyTorch refuses on bools and ember computes (ember is the more permissive): skipped.
_PERMISSIVE = ("not implemented for 'Bool'", "Boolean inputs not supported")


def program(seed: int) -> tuple[str, list, list]:
    """Source of ``f(M, x0, ...)``, the inputs' dtypes and shapes."""
    r = random.Random(seed)
    n = r.randint(1, 3)
    dtypes = [r.choice(_DTYPES) for _ in range(n)]
    shapes = [r.choice([(4,), (3, 4), (1, 4), (3, 1)]) for _ in range(n)]
    names = [f"x{i}" for i in range(n)]
    lines = []
    for k in range(r.randint(1, 5)):
        a = r.choice(names)
        if r.random() < 0.4:
            expr = r.choice(_UNARY).format(a=a)
        else:
            expr = r.choice(_BINARY).format(a=a, b=r.choice(names + _SCALARS))
        lines.append(f"    v{k} = {expr}\n")
        names.append(f"v{k}")
    src = (f"def f(M, {', '.join(f'x{i}' for i in range(n))}):\n" + "".join(lines)
           + f"    return {names[-1]}\n")
    return src, dtypes, shapes


def _inputs(seed: int, dtypes: list, shapes: list) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for dt, shape in zip(dtypes, shapes):
        if dt == "bool":
            a = rng.random(shape) < 0.5
        elif dt in ("int8", "int32", "int64", "uint8"):
            a = rng.integers(0 if dt == "uint8" else -5, 6, shape)
        else:
            a = rng.uniform(-3, 3, shape).round(2)
        out.append((a, dt))
    return out


def _tensor(M, a, dt):
    return M.tensor(a.astype(np.float32) if dt == "bfloat16" else a).to(getattr(M, dt))


def _value(t):
    if isinstance(t, (bool, int, float)):
        return np.array(t), "python"
    name = str(t.dtype).split(".")[-1]
    return (t.float() if name == "bfloat16" else t).numpy(), name


def _close(a, b) -> bool:
    (va, da), (vb, db) = a, b
    tol = 2e-2 if "16" in da else 1e-5
    return (da == db and va.shape == vb.shape
            and np.allclose(va.astype(np.float64), vb.astype(np.float64), rtol=tol, atol=tol,
                            equal_nan=True))


def check(seed: int, torch=None) -> list[str]:
    """What went wrong with program ``seed`` (empty: nothing)."""
    src, dtypes, shapes = program(seed)
    ns: dict = {}
    exec(src, ns)
    f = ns["f"]
    data = _inputs(seed, dtypes, shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (inf/NaN arithmetic: torch is silent, NumPy not)
        try:
            want = _value(f(ember, *[_tensor(ember, a, dt) for a, dt in data]))
            err = None
        except Exception as e:
            want, err = None, e
        if torch is not None:
            try:
                theirs, terr = _value(f(torch, *[_tensor(torch, a, dt) for a, dt in data])), None
            except Exception as e:
                theirs, terr = None, e
            if terr is not None and err is None and any(p in str(terr) for p in _PERMISSIVE):
                return []
            if (terr is None) != (err is None):
                return [f"seed {seed}: torch raised {terr!r}, ember {err!r}\n{src}"]
            if err is None and not _close(want, theirs):
                return [f"seed {seed}: eager {want} != torch {theirs}\n{src}"]
        if err is not None:
            return []
        compiled = ember.compile(lambda *xs: f(ember, *xs))
        for call in range(3):
            try:
                got = _value(compiled(*[_tensor(ember, a, dt) for a, dt in data]))
            except Exception as e:
                return [f"seed {seed}: compiled call {call} raised {e!r}\n{src}"]
            if not _close(got, want):
                return [f"seed {seed}: compiled call {call} {got} != eager {want}\n{src}"]
        if compiled.stats()["fallbacks"]:
            return [f"seed {seed}: fell back: {compiled.stats()['fallbacks'][0]}\n{src}"]
    return []


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


@pytest.mark.parametrize("chunk", range(4))
def test_dtype_fuzz_fast_slice(chunk):
    torch = _torch()
    bad = [b for seed in range(chunk * 25, chunk * 25 + 25) for b in check(seed, torch)]
    assert not bad, bad[:3]


@pytest.mark.fuzz
def test_dtype_fuzz_large():
    n = int(os.environ.get("EMBER_DTYPE_FUZZ", "0"))
    if not n:
        pytest.skip("set EMBER_DTYPE_FUZZ=N for a large run")
    lo = int(os.environ.get("EMBER_DTYPE_FUZZ_SEED", "1000"))
    torch = _torch()
    bad = [b for seed in range(lo, lo + n) for b in check(seed, torch)]
    assert not bad, bad[:5]
