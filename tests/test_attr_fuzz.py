"""Random modules that keep tensors on themselves (``self.a = ...``), compiled against eager.

Each generated ``forward`` assigns some attributes a tensor it made or None, reads some
(by name, through a method, by a computed name with getattr, as a branch on None, as
data), and the calls pass a target or not at random. After every call the compiled
module's results and attributes must equal those of an eager twin. A fast slice runs
here; ``python tests/test_attr_fuzz.py FIRST COUNT`` runs more seeds.
"""
from __future__ import annotations

import copy
import random
import sys
import warnings

import numpy as np

import ember
import ember.nn as nn

NAMES = ("a", "b", "c")


def _header(rng: random.Random) -> list[str]:
    """A module, or a plain object with ``__call__`` (nn-zero-to-hero's layer classes keep
    ``self.out`` on themselves): only a Module's attribute writes reach the tracer as
    they happen; a plain object's are found after the call."""
    if rng.random() < 0.7:
        return ["class M(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    return ["class M:", "    def __call__(self, *args):", "        return self.forward(*args)",
            "    def register_buffer(self, name, t):", "        setattr(self, name, t)",
            "    def __init__(self):"]


def _program(rng: random.Random) -> str:
    lines = _header(rng) + ["        self.lin = nn.Linear(3, 3)"]
    lines += [f"        self.{n} = None" for n in NAMES]
    lines += ["    def get(self, name):", "        return getattr(self, name)",
              "    def put(self, name, v):", "        setattr(self, name, v)",
              "    def forward(self, x, t=None):", "        y = self.lin(x)"]
    for _ in range(rng.randint(2, 6)):
        n = rng.choice(NAMES)
        r = rng.random()
        if r < 0.3:
            lines.append(f"        self.{n} = {rng.choice(['y.relu()', 'y * 2', 'x.sum(1)', 'None', 'y.softmax(-1)'])}")
        elif r < 0.4:
            lines.append(f"        self.put({n!r}, y.tanh())")
        elif r < 0.55:
            lines.append(f"        y = y + (1.0 if self.{n} is None else 2.0)")
        elif r < 0.65:
            lines.append(f"        y = y * (3.0 if self.get({n!r}) is None else 0.5)")
        elif r < 0.75:
            lines.append(f"        if self.{n} is not None and self.{n}.dim() == 2:\n"
                         f"            y = y + self.{n}")
        elif r < 0.85:
            lines.append("        if t is not None:\n"
                         f"            self.{n} = (y - t).pow(2).mean()")
        else:
            lines.append(f"        y = self.lin(y)")
    lines.append("        return y")
    return "\n".join(lines) + "\n"


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, ember.Tensor) != isinstance(b, ember.Tensor):
        return False
    if not isinstance(a, ember.Tensor):
        return a == b
    return a.shape == b.shape and np.allclose(a.detach().numpy(), b.detach().numpy(),
                                              rtol=1e-5, atol=1e-6)


def _build(src: str, seed: int, label: str):
    """The program's module, an eager twin, the compiled module and the data source."""
    ns = {"nn": nn, "ember": ember, "__name__": "attr_fuzz_program"}   # (user code)
    exec(compile(src, f"<{label} {seed}>", "exec"), ns)
    ember.manual_seed(seed)
    m = ns["M"]()
    return m, copy.deepcopy(m), ember.compile(m), np.random.default_rng(seed)


def _run(seed: int) -> list[str]:
    rng = random.Random(seed)
    src = _program(rng)
    m, twin, cm, data = _build(src, seed, "attr fuzz")
    bad = []
    for call in range(8):
        x = ember.tensor(data.standard_normal((2, 3)).astype(np.float32))
        t = (ember.tensor(data.standard_normal((2, 3)).astype(np.float32))
             if rng.random() < 0.5 else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, want = cm(x, t), twin(x, t)
        if not _same(got, want):
            bad.append(f"seed {seed} call {call}: result differs\n{src}")
        for n in NAMES:
            if not _same(getattr(m, n), getattr(twin, n)):
                bad.append(f"seed {seed} call {call}: self.{n} differs\n{src}")
        if bad:
            break
    return bad


STATE_OPS = [
    "self.h = self.h * 0.5 + y.detach()",
    "self.h = self.h.tanh() + 0.1",
    "with ember.no_grad():\n            self.s = self.s * 0.9 + y.mean(0) * 0.1",
    "y = y + self.h",
    "y = y * self.s",
    "y = y + self.h0",
    "self.h0 = self.h",
    "with ember.no_grad():\n            self.h.mul_(0.5)",
    "self.h = self.h * 0.5 + y",                        # a state that needs gradients
    "if self.h.sum() > 0:\n            y = y * 2.0",    # a branch on the state
    "self.h = self.h[:, [1, 0, 2]]",
    "with ember.no_grad():\n            self.s.add_(1.0)",
    "prev = self.h\n        self.h = prev + 1.0\n        y = y + prev",
    "self.c = self.h",
    "y = y + self.c",
]
OUTSIDE = [
    "m.h = ember.zeros(2, 3)",
    "m.h = m.h0",
    "m.h.add_(1.0)",
    "m.s = m.s * 0.0",
    "m.h = m.h.t().contiguous().t()",   # (another layout: kernels are specialized to one)
    "m.h = m.h.t().contiguous().t()",
    "m.h0 = ember.ones(2, 3)",
    "m.c = ember.full((2, 3), 0.3)",    # a new tensor in a slot the call only reads
    "m.c = ember.arange(6.0).reshape(3, 2).t()",
    "m.c = ember.ones(3)",
]


def _state_program(rng: random.Random) -> str:
    """A module whose forward reads states it keeps and assigns them anew (a hidden state
    fed back, a running buffer), some aliased (``self.h0``), some changed in place."""
    lines = _header(rng) + [
             "        self.lin = nn.Linear(3, 3)",
             "        self.h = ember.zeros(2, 3)",
             "        self.register_buffer('s', ember.zeros(3))",
             f"        self.h0 = {rng.choice(['self.h', 'ember.ones(2, 3)'])}",
             "        self.c = ember.ones(2, 3)",
             "    def forward(self, x):",
             "        y = self.lin(x)"]
    lines += ["        " + rng.choice(STATE_OPS) for _ in range(rng.randint(2, 6))]
    lines.append("        return y")
    return "\n".join(lines) + "\n"


def _run_state(seed: int) -> tuple[list[str], int]:
    rng = random.Random(seed)
    src = _state_program(rng)
    m, twin, cm, data = _build(src, seed, "state fuzz")
    for call in range(12):
        if call > 2 and rng.random() < 0.4:   # the caller changes a state between calls
            change = rng.choice(OUTSIDE)
            with ember.no_grad():
                for mod in (m, twin):
                    exec(change, {"m": mod, "ember": ember})
        x = ember.tensor(data.standard_normal((2, 3)).astype(np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, want = cm(x), twin(x)
        if not _same(got, want):
            return [f"seed {seed} call {call}: result differs\n{src}"], 0
        for n in ("h", "s", "h0", "c"):
            if not _same(getattr(m, n), getattr(twin, n)):
                return [f"seed {seed} call {call}: self.{n} differs\n{src}"], 0
    return [], cm.stats()["cache_hits"]


def test_fed_back_states_fuzz_fast():
    runs = [_run_state(seed) for seed in range(40)]
    bad = [b for r, _ in runs for b in r]
    assert not bad, bad[0]
    assert sum(h for _, h in runs) > 40   # (most programs replay: the states are inputs)


def test_attribute_writes_fuzz_fast():
    bad = [b for seed in range(40) for b in _run(seed)]
    assert not bad, bad[0]


if __name__ == "__main__":
    first, count = int(sys.argv[1]), int(sys.argv[2])
    failures = [b for seed in range(first, first + count) for b in _run(seed)]
    print(f"attribute writes: {count} programs, {len(failures)} mismatches")
    runs = [_run_state(seed) for seed in range(first, first + count)]
    failures += [b for r, _ in runs for b in r]
    print(f"fed-back states: {count} programs, {sum(len(r) for r, _ in runs)} mismatches, "
          f"{sum(h for _, h in runs)} of {12 * count} calls replayed")
    for b in failures[:5]:
        print(b)
