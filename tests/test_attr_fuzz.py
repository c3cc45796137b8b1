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


def _program(rng: random.Random) -> str:
    lines = ["class M(nn.Module):",
             "    def __init__(self):",
             "        super().__init__()",
             "        self.lin = nn.Linear(3, 3)"]
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


def _run(seed: int) -> list[str]:
    rng = random.Random(seed)
    src = _program(rng)
    ns = {"nn": nn, "__name__": "attr_fuzz_program"}   # (user code, not "builtins")
    exec(compile(src, f"<attr fuzz {seed}>", "exec"), ns)
    ember.manual_seed(seed)
    m = ns["M"]()
    twin = copy.deepcopy(m)
    cm = ember.compile(m)
    data = np.random.default_rng(seed)
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


def test_attribute_writes_fuzz_fast():
    bad = [b for seed in range(40) for b in _run(seed)]
    assert not bad, bad[0]


if __name__ == "__main__":
    first, count = int(sys.argv[1]), int(sys.argv[2])
    failures = [b for seed in range(first, first + count) for b in _run(seed)]
    print(f"{count} programs, {len(failures)} mismatches")
    for b in failures[:5]:
        print(b)
