"""Resident growth of four training steps, each cell in a fresh process (issue 15's figures).

CIFAR CNN (3->32->64 3x3 convs, 2x2 max pools, 2304-128-10) at batch 256 on 3x32x32 and
the MLP 784-512-256-10 at batch 512, SGD momentum 0.9, cross entropy; for ember compiled,
ember compiled with the compiler loaded first (what torch pays at import: llvmlite's
LLVM and the JIT), ember eager and torch eager. A cell measures, from /proc, the resident
size after four steps (the last loss still held) minus before the first, and the peak
(VmHWM, reset at the start) minus the same start, and what is in use (the resident size
after glibc's ``malloc_trim`` hands free heap pages back). Runs alternate; medians are
printed::

    python -m benchmarks.memory_growth --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CELL = r'''
import gc, json, os, sys
import numpy as np
lib_name, model_name, compiled, batch, warm = sys.argv[1:6]
compiled, batch = compiled == "1", int(batch)
page = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page


def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024


if lib_name == "torch":
    import torch as lib
    lib.set_num_threads(2)
else:
    import ember as lib
nn, F = lib.nn, lib.nn.functional


class Cifar(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(lib.flatten(x, 1))))


rng = np.random.default_rng(0)
if model_name == "cifar":
    model, shape = Cifar(), (batch, 3, 32, 32)
else:
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    shape = (batch, 784)
x = lib.from_numpy(rng.standard_normal(shape, dtype=np.float32))
y = lib.from_numpy(rng.integers(0, 10, batch).astype(np.int64))
opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


if compiled:
    step = lib.compile(step)
if warm == "warm":
    tiny = lib.compile(lambda a: (a * 2 + 1).relu())
    for _ in range(3):
        tiny(lib.ones(8))
gc.collect()
r0 = rss()
open("/proc/self/clear_refs", "w").write("5")
for _ in range(4):
    loss = step(x, y)
float(loss)
gc.collect()
r1 = rss()
peak = max(hwm(), r1)
try:   # what is in use, without the free heap pages glibc keeps for later allocations
    import ctypes
    ctypes.CDLL(None).malloc_trim(0)
except (OSError, AttributeError):
    pass
print(json.dumps({"rss": (r1 - r0) / 2**20, "peak": (peak - r0) / 2**20,
                  "in_use": (rss() - r0) / 2**20}))
'''

KINDS = [("ember compiled", "ember", True, False),
         ("ember compiled, compiler loaded first", "ember", True, True),
         ("ember eager", "ember", False, False),
         ("torch eager", "torch", False, False)]
MODELS = [("cifar", 256), ("mlp", 512)]


def cell(lib: str, model: str, compiled: bool, batch: int, warm: bool, root: str) -> dict:
    """One cell in a fresh process (ember imported from ``root``)."""
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CELL, lib, model, "1" if compiled else "0",
                          str(batch), "warm" if warm else "cold"],
                         capture_output=True, text=True, cwd=root, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="the checkout whose ember is measured")
    args = ap.parse_args(argv)
    print(f"ember from {args.root}; median of {args.repeats} processes per cell")
    for model, batch in MODELS:
        runs: dict[str, list[dict]] = {k[0]: [] for k in KINDS}
        for _ in range(args.repeats):
            for name, lib, compiled, warm in KINDS:
                runs[name].append(cell(lib, model, compiled, batch, warm, args.root))
        torch = statistics.median(r["rss"] for r in runs["torch eager"])
        for name, rs in runs.items():
            rss = statistics.median(r["rss"] for r in rs)
            peak = statistics.median(r["peak"] for r in rs)
            used = statistics.median(r["in_use"] for r in rs)
            print(f"{model} b{batch}  {name:38s} resident +{rss:7.1f} MB (x{rss / torch:.2f} "
                  f"torch's)  in use +{used:7.1f} MB  peak +{peak:7.1f} MB  runs: "
                  + ", ".join(f"{r['rss']:.0f}" for r in rs), flush=True)


if __name__ == "__main__":
    main()
