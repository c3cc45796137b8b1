"""A seeded fuzzer for guards: random programs reading globals, closure variables,
attributes of a config object and of a module, scalar and tensor arguments; between
calls it changes what users change (those values, including -0.0/NaN/inf, objects
replaced by new ones, submodules, train/eval, argument aliasing, dtypes, grad mode,
requires_grad). Every compiled call must equal the same call run eagerly.

The fast slice runs in CI; ``EMBER_FUZZ_GUARDS=10000 pytest -m fuzz -k guards_fuzz``
runs a large one.
"""
import math
import os
import random
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn

_UNARY = ["{a}.relu()", "({a} * 0.5).tanh()", "{a}.abs()", "({a} - 1)", "({a} * {a})",
          "{a}.sigmoid()", "(-{a})"]
_BINARY = ["({a} + {b})", "({a} * {b})", "({a} - {b})", "ember.maximum({a}, {b})"]
_SCALARS = [0.0, -0.0, 1.0, -2.5, 3.0, math.inf, -math.inf, math.nan, 0.5]
_READS = ["G_S", "G_T", "c", "cfg.a", "self_m.scale", "s"]


class Cfg:
    def __init__(self, a):
        self.a = a


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = 1.0
        self.flag = True


def _program(rng: random.Random) -> str:
    """Source of ``make(c)`` returning ``f(x, y, s, cfg, self_m)``."""
    lines = ["def make(c):", "    def f(x, y, s, cfg, self_m):", "        v0 = x"]
    n = 1
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        a = f"v{rng.randrange(n)}"
        if r < 0.3:
            expr = rng.choice(_UNARY).format(a=a)
        elif r < 0.6:
            expr = rng.choice(_BINARY).format(a=a, b=rng.choice([f"v{rng.randrange(n)}", "y"]))
        elif r < 0.85:
            expr = f"({a} * {rng.choice(_READS)})"
        else:
            expr = f"self_m.lin({a})"
        lines.append(f"        v{n} = {expr}")
        n += 1
    if rng.random() < 0.5:
        lines.append(f"        if self_m.flag:\n            v{n - 1} = v{n - 1} + 1")
    if rng.random() < 0.3:
        lines.append("        if G_FLAG:\n            v0 = v0 * 2")
    lines.append(f"        return v{n - 1} + v0")
    lines.append("    return f")
    return "\n".join(lines) + "\n"


def _same(a, b) -> bool:
    a = np.asarray(a.detach().tolist(), dtype=np.float64)
    b = np.asarray(b.detach().tolist(), dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))


def _run_program(seed: int, calls: int = 6) -> list[str]:
    """Mismatches of one random program (empty when compiled == eager on every call)."""
    rng = random.Random(seed)
    ember.manual_seed(seed)
    src = _program(rng)
    glb = {"ember": ember, "G_S": rng.choice(_SCALARS), "G_T": ember.randn(4),
           "G_FLAG": True}
    exec(compile(src, f"<fuzz {seed}>", "exec"), glb)
    c = [rng.choice(_SCALARS)]
    fn = glb["make"](c[0])
    compiled = ember.compile(fn)
    cfg, m = Cfg(rng.choice(_SCALARS)), M()
    x = ember.randn(3, 4)
    y = ember.randn(3, 4)
    s = rng.choice(_SCALARS)
    dtype, grad_mode, alias = ember.float32, True, False
    bad = []
    for call in range(calls):
        if call:  # change one or two things users change
            for _ in range(rng.randint(1, 2)):
                what = rng.randrange(12)
                if what == 0:
                    glb["G_S"] = rng.choice(_SCALARS)
                elif what == 1:
                    glb["G_T"] = ember.randn(4)
                elif what == 2:   # a new closure: the function is made again
                    c[0] = rng.choice(_SCALARS)
                    fn = glb["make"](c[0])
                    compiled = ember.compile(fn)
                elif what == 3:
                    cfg.a = rng.choice(_SCALARS)
                elif what == 4:
                    cfg = Cfg(rng.choice(_SCALARS))
                elif what == 5:
                    m.scale = rng.choice(_SCALARS)
                elif what == 6:
                    m.flag = not m.flag
                elif what == 7:
                    m.lin = nn.Linear(4, 4).to(dtype)
                elif what == 8:
                    s = rng.choice(_SCALARS)
                elif what == 9:
                    alias = not alias
                elif what == 10:
                    dtype = ember.float64 if dtype is ember.float32 else ember.float32
                    m.to(dtype)   # (a float64 batch through float32 layers raises, as torch)
                else:
                    glb["G_FLAG"] = not glb["G_FLAG"]
                    grad_mode = rng.random() < 0.5
        xs = x.to(dtype)
        ys = xs if alias else y.to(dtype)
        want_grad = grad_mode and rng.random() < 0.5
        x_e = xs.detach().clone().requires_grad_(want_grad)
        x_c = xs.detach().clone().requires_grad_(want_grad)
        y_e = x_e if alias else ys.detach().clone()
        y_c = x_c if alias else ys.detach().clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with (ember.enable_grad() if grad_mode else ember.no_grad()):
                eager = fn(x_e, y_e, s, cfg, m)
                got = compiled(x_c, y_c, s, cfg, m)
                if want_grad and eager.requires_grad:
                    eager.sum().backward()
                    got.sum().backward()
        if not _same(got, eager):
            bad.append(f"seed {seed} call {call}: output differs\n{src}")
        elif want_grad and eager.requires_grad and not _same(x_c.grad, x_e.grad):
            bad.append(f"seed {seed} call {call}: x.grad differs\n{src}")
    return bad


def test_guards_fuzz_fast():
    bad = [b for seed in range(60) for b in _run_program(seed)]
    assert not bad, bad[0]


@pytest.mark.fuzz
def test_guards_fuzz_large():
    n = int(os.environ.get("EMBER_FUZZ_GUARDS", "2000"))
    bad = [b for seed in range(1000, 1000 + n) for b in _run_program(seed)]
    assert not bad, f"{len(bad)} mismatches; first: {bad[0]}"
