"""A runnable repro of one compiled graph: ``graph.pkl``, ``inputs.npz`` and ``repro.py``.

The script loads the optimized IR, rebuilds the inputs (the values the graph first ran
on, or random arrays of the recorded shapes and dtypes), compiles the graph into a plan
again, and compares every kernel with the reference interpreter. It exits with status 1
when a kernel differs, so it can drive a bisection or a bug report.

>>> write_repro(Path("dump/000_f"), graph, inputs, "f", "EMBER_DUMP_DIR", kernels=3)
>>> subprocess.run([sys.executable, "dump/000_f/repro.py"])
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

import ember
from ember.ir.graph import Graph, InputSource

# Inputs larger than this are not saved: the script draws random ones of the same shapes.
MAX_SAVED_BYTES = 64 << 20

SCRIPT = '''"""Re-run a graph ember compiled: {name}, {nodes} nodes, {kernels} kernel(s).

Written by ember ({why}). Run it with the Python that has ember:
    python repro.py [--random] [--device cpu]
It loads the optimized IR (graph.pkl), rebuilds the inputs (inputs.npz holds the values the
graph first ran on; --random, or no inputs.npz, draws random arrays of the recorded shapes
and dtypes) on the graph's device (--device moves the whole graph, e.g. a CUDA graph to
the CPU backend), compiles the graph into a plan again, runs it, and compares every kernel
with ember's reference interpreter. The exit status is 1 if a kernel differs.
"""
import pathlib
import pickle
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
try:
    import ember  # noqa: F401
except ImportError:  # not installed: use the checkout this script was written from
    sys.path.insert(0, {root!r})
from ember.ir.interpreter import interpret  # noqa: E402
from ember.devices import Device, array_module  # noqa: E402
from ember.runtime.plan import build_plan  # noqa: E402


def make_inputs(graph, use_saved):
    path = HERE / "inputs.npz"
    saved = np.load(path) if use_saved and path.exists() else None
    rng = np.random.default_rng(0)
    inputs = {{}}
    for n in graph.inputs:
        d = graph[n]
        npd = d.dtype.np
        if saved is not None and f"n{{n}}" in saved:
            inputs[n] = saved[f"n{{n}}"]
        elif npd == np.bool_:
            inputs[n] = rng.random(d.shape) < 0.5
        elif np.issubdtype(npd, np.integer):  # small values: valid as indices too
            inputs[n] = rng.integers(0, 2, d.shape).astype(npd)
        else:
            inputs[n] = rng.standard_normal(d.shape).astype(npd)
        inputs[n] = array_module(d.device).asarray(inputs[n])
        print(f"input %{{n}}: {{graph.type_str(n)}}  {{graph.sources[n].path}}")
    return inputs


def compare(got, want):
    """(equal within ember's tolerance, max abs difference)"""
    got, want = (a.get() if hasattr(a, "__cuda_array_interface__") else np.asarray(a)
                 for a in (got, want))
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, float("inf")
    if got.size == 0:
        return True, 0.0
    diff = float(np.nanmax(np.abs(got.astype(float) - want.astype(float))))
    if got.dtype.kind == "f":
        tol = 1e-4 if got.dtype == np.float32 else 1e-9
        return bool(np.allclose(got, want, rtol=tol, atol=tol, equal_nan=True)), diff
    return bool(np.array_equal(got, want)), diff


def main(argv):
    recorded = HERE / "recorded.txt"
    if recorded.exists():
        print("recorded when this repro was written:\\n" + recorded.read_text())
    graph = pickle.loads((HERE / "graph.pkl").read_bytes())
    if "--device" in argv:
        device = Device(argv[argv.index("--device") + 1])
        for n in graph.nodes():
            graph[n].device = device
    inputs = make_inputs(graph, "--random" not in argv)
    want = interpret(graph, inputs)
    plan, got = build_plan(graph, inputs, set(graph.outputs))
    bad = 0
    for k in plan.kernels:
        same, worst = True, 0.0
        for n in k.nodes:
            if n in got:
                ok, d = compare(got[n], want[n])
                same, worst = same and ok, max(worst, d)
        bad += not same
        print(f"{{k.name:<10}} {{k.backend:<7}} {{'+'.join(k.ops):<32}} "
              f"max abs diff {{worst:.3g}}  {{'ok' if same else 'DIFFERS'}}")
    # A compiled function's later calls replay the plan's steps on new arrays: do that too.
    env = dict(inputs)
    env.update(plan.consts)
    for step in plan.steps:
        step(env)
    for o in graph.outputs:
        ok, d = compare(env[o], want[o])
        bad += not ok
        print(f"output %{{o}}: {{graph.type_str(o)}}  replayed, max abs diff {{d:.3g}}  "
              f"{{'ok' if ok else 'DIFFERS'}}")
    if bad:
        print(f"{{bad}} difference(s): reproduced")
    elif recorded.exists():
        print("every kernel matches the interpreter: the difference recorded above did not "
              "reproduce when the graph was compiled again (it came from the state of that "
              "process, e.g. a patched plan, not from compiling this graph)")
    else:
        print("every kernel matches the interpreter")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def write_repro(folder: Path, graph: Graph, inputs: dict, name: str, why: str,
                kernels: int, recorded: str = "") -> Path:
    """Write graph.pkl, inputs.npz (when small) and repro.py into ``folder``; returns the script."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.pkl").write_bytes(pickle.dumps(portable_graph(graph)))
    arrays = {f"n{n}": _host(inputs[n]) for n in graph.inputs if n in inputs}
    if arrays and sum(a.nbytes for a in arrays.values()) <= MAX_SAVED_BYTES:
        np.savez(folder / "inputs.npz", **arrays)
    if recorded:
        (folder / "recorded.txt").write_text(recorded + "\n")
    script = folder / "repro.py"
    root = str(Path(ember.__file__).resolve().parent.parent)
    script.write_text(SCRIPT.format(name=name, nodes=len(graph), kernels=kernels, why=why,
                                    root=root))
    return script


def portable_graph(graph: Graph) -> Graph:
    """A copy that pickles on its own: captured tensors (parameters) are left out."""
    g = graph.copy()
    g.sources = {n: InputSource(s.kind, s.path) for n, s in graph.sources.items()}
    g.consts = {n: _host(v) for n, v in graph.consts.items()}
    return g


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
