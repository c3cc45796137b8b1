"""Warm start: the MLP training step's first three calls in a fresh process, with
ember's persistent kernel cache warm against empty (issue 17: aim at most 30% of the
cold time, goal 10%).

Each repeat starts a new Python process that imports ember, builds the MLP
(784-512-256-10) and its SGD step, then times the first three calls (trace, compile
and check; trace again; the first replay). The subject ("ember") runs with a cache
that one earlier process filled; "ember, cold cache" with an empty folder each time.
Imports and process start are outside the timing. The child prints the phases of the
time (tracing, plans, kernel loads) so the report can say where a warm start goes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks.harness import Impl, Prepared, Timed, Workload
from benchmarks.workloads.common import parse_count

SIZES = ["128"]
QUICK_SIZES = ["8"]
CALLS = 3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, sys, time
import numpy as np
import ember
from benchmarks.workloads import mlp
from benchmarks.workloads.models import LR, MOMENTUM, initial_weights, make_train_step
from benchmarks.workloads.warm_start import phase_timers

batch, calls = int(sys.argv[1]), int(sys.argv[2])
model = mlp.make_mlp(ember)
model.load_state_dict({k: ember.tensor(v) for k, v in initial_weights(mlp.SPEC).items()})
rng = np.random.default_rng(3)
x = ember.tensor(rng.standard_normal((batch, 784), dtype=np.float32))
y = ember.tensor(rng.integers(0, 10, batch).astype(np.int64))
step = ember.compile(make_train_step(ember, model,
                                     ember.optim.SGD(model.parameters(), lr=LR,
                                                     momentum=MOMENTUM)))
phases = phase_timers()
t0 = time.perf_counter()
losses = [step(x, y).item() for _ in range(calls)]
seconds = time.perf_counter() - t0
from ember.diskcache import default_cache
stats = default_cache().stats
print(json.dumps({"seconds": seconds, "losses": losses, "hits": stats.hits,
                  "writes": stats.writes, "phases": {k: v[0] for k, v in phases.items()}}))
"""


def phase_timers() -> dict[str, list[float]]:
    """Wrap the phases of a compiled call with timers (seconds, summed): tracing (the
    traced call runs its ops eagerly), the passes, building plans (kernel compiles or
    cache loads, and running the new plan once), kernel compiles/loads alone."""
    import time

    import ember.codegen.llvm.kernels as kernels
    import ember.tracer.entry as entry
    totals: dict[str, list[float]] = {}

    def wrap(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)
        totals[label] = [0.0]

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label][0] += time.perf_counter() - t
        setattr(owner, name, timed)

    wrap(entry.Entry, "_trace_locked", "trace")
    wrap(entry, "run_pipeline", "passes")
    wrap(entry, "build_plan", "plans")
    wrap(kernels.CompiledKernel, "__init__", "kernels")
    wrap(kernels.CompiledKernels, "__init__", "kernels_batched")
    wrap(entry, "check_against_eager", "check")
    return totals


def run_child(batch: int, cache_dir: str, calls: int = CALLS) -> dict:
    """One fresh process's first ``calls`` calls with ``EMBER_CACHE_DIR=cache_dir``."""
    env = dict(os.environ, EMBER_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(batch), str(calls)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"the warm-start child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        batch = parse_count(text)
        out.append(Workload(
            f"warm_start_mlp_train_b{batch}", "warm",
            f"MLP training step (batch {batch}), first {CALLS} calls in a fresh process: "
            "warm kernel cache vs empty", impls(batch), reference="ember, cold cache",
            unit="s", cold=True, rtol=1e-6, atol=1e-7))
    return out


def impls(batch: int) -> list[Impl]:
    def setup(warm: bool):
        def prepare() -> Prepared:
            root = tempfile.mkdtemp(prefix="ember-warm-start-")
            if warm:
                run_child(batch, root)      # fills the cache
            seen: list[dict] = []

            def call() -> Timed:
                folder = root
                if not warm:
                    shutil.rmtree(root, ignore_errors=True)
                    folder = tempfile.mkdtemp(prefix="ember-cold-start-")
                try:
                    got = run_child(batch, folder)
                finally:
                    if not warm:
                        shutil.rmtree(folder, ignore_errors=True)
                if warm and got["writes"]:
                    raise RuntimeError(f"a warm start compiled {got['writes']} kernels")
                seen.append(got)
                return Timed(got["seconds"], got["losses"])

            def notes() -> list[str]:
                if not seen:
                    return []
                last = seen[-1]
                phases = ", ".join(f"{k} {v:.3f}s" for k, v in last["phases"].items())
                return [f"cache hits {last['hits']}, writes {last['writes']}; {phases}"]
            return Prepared(call, lambda v: [np.asarray(v, np.float64)], notes=notes)
        return prepare

    return [Impl("ember", "ember", setup(True)),
            Impl("ember, cold cache", "ember", setup(False))]
