"""Per-op dispatch cost of tiny ops: ember eager vs NumPy vs PyTorch eager, in one process.

With 8-element float32 tensors the arithmetic is free, so what is measured is the fixed
cost of one op call: argument checks, dtype promotion, output allocation, autograd
recording. Run with ``python -m benchmarks.dispatch_overhead``.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import timeit

import numpy as np

import ember

# name -> (ember setup, numpy setup, torch setup, statement); each setup defines a and b.
CASES: dict[str, tuple[str, str, str, str]] = {
    "add": (
        "a = ember.randn(8); b = ember.randn(8)",
        "a = np.random.randn(8).astype(np.float32); b = np.random.randn(8).astype(np.float32)",
        "a = torch.randn(8); b = torch.randn(8)",
        "a + b",
    ),
    "add, requires_grad": (
        "a = ember.randn(8, requires_grad=True); b = ember.randn(8)",
        "a = np.random.randn(8).astype(np.float32); b = np.random.randn(8).astype(np.float32)",
        "a = torch.randn(8, requires_grad=True); b = torch.randn(8)",
        "a + b",
    ),
    "mul by Python float": (
        "a = ember.randn(8)",
        "a = np.random.randn(8).astype(np.float32)",
        "a = torch.randn(8)",
        "a * 0.5",
    ),
    "add_ in place": (
        "a = ember.randn(8); b = ember.randn(8)",
        "a = np.random.randn(8).astype(np.float32); b = np.random.randn(8).astype(np.float32)",
        "a = torch.randn(8); b = torch.randn(8)",
        "a += b",
    ),
}


def measure(stmt: str, setup: str, env: dict, number: int, repeat: int) -> float:
    """Median seconds per call over ``repeat`` runs of ``number`` calls each."""
    times = timeit.repeat(stmt, setup=setup, globals=env, number=number, repeat=repeat)
    return statistics.median(times) / number


def run(number: int = 20000, repeat: int = 7) -> list[dict]:
    """Measure every case; returns rows with microseconds per call (None: torch missing)."""
    try:
        import torch
        torch.set_num_threads(1)  # tiny ops: threads only add noise
    except ImportError:
        torch = None
    env: dict = {"ember": ember, "np": np, "torch": torch}
    rows = []
    for name, (e_setup, n_setup, t_setup, stmt) in CASES.items():
        row = {"op": name,
               "ember": measure(stmt, e_setup, env, number, repeat) * 1e6,
               "numpy": measure(stmt, n_setup, env, number, repeat) * 1e6,
               "torch": (measure(stmt, t_setup, env, number, repeat) * 1e6
                         if torch is not None else None)}
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    def cell(v):
        return "      n/a" if v is None else f"{v:9.2f}"

    head = (f"{'op (8 x float32)':<22}{'ember us':>10}{'numpy us':>10}{'torch us':>10}"
            f"{'ember/numpy':>13}{'ember/torch':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        vs_torch = "n/a" if r["torch"] is None else f"{r['ember'] / r['torch']:.1f}x"
        lines.append(f"{r['op']:<22} {cell(r['ember'])} {cell(r['numpy'])} {cell(r['torch'])}"
                     f"{r['ember'] / r['numpy']:>12.1f}x{vs_torch:>13}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs (the median is shown)")
    args = parser.parse_args(argv)
    rows = run(args.number, args.repeat)
    try:
        import torch
        versions = f"torch {torch.__version__}"
    except ImportError:
        versions = "torch not installed"
    print(f"dispatch overhead, median of {args.repeat} x {args.number} calls "
          f"(python {platform.python_version()}, numpy {np.__version__}, {versions})")
    print(format_table(rows))


if __name__ == "__main__":
    main()
