"""The DESIGN's elementwise chain as one generated LLVM kernel vs NumPy and torch.

    python -m benchmarks.codegen_chain [--sizes 1048576 16777216] [--no-torch-compile]

y = gelu(x * a + b) * sigmoid(x) + x * x on float32, with the exact (erf) GELU written out:
17 scalar exprs in one kernel, against NumPy eager (the registry's implementations, op by
op), torch eager and torch.compile, all in this process. Medians of repeats after a
warm-up; GB/s counts one read of x and one write of y, against np.copyto's bandwidth.
The generated kernel writes into a preallocated output, as ember's buffer pool lets it.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

import ember  # noqa: F401  (fills the op registry)
from ember import dtypes as dt
from ember.codegen.kernel import Expr, Kernel, Load
from ember.codegen.llvm import compile_kernel
from ember.ops import OPS


def chain_kernel(n: int) -> Kernel:
    """gelu(x * a + b) * sigmoid(x) + x * x over [n]; a and b are 0-dim (stride 0)."""
    f = dt.float32
    return Kernel("chain", (n,), [Load(0, f, (1,)), Load(1, f, (0,)), Load(2, f, (0,))],
                  [Expr("load", (0,), f), Expr("load", (1,), f), Expr("load", (2,), f),
                   Expr("mul", (0, 1), f), Expr("add", (3, 2), f),
                   Expr("const", (1 / math.sqrt(2),), f), Expr("mul", (4, 5), f),
                   Expr("erf", (6,), f), Expr("const", (1.0,), f), Expr("add", (7, 8), f),
                   Expr("mul", (4, 9), f), Expr("const", (0.5,), f), Expr("mul", (10, 11), f),
                   Expr("sigmoid", (0,), f), Expr("mul", (12, 13), f), Expr("mul", (0, 0), f),
                   Expr("add", (14, 15), f)],
                  stores=[16])


def numpy_eager(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The chain through the registry's eager implementations, one op at a time."""
    def op(name, *args):
        return OPS[name].eager(np, *args)
    u = op("add", op("mul", x, a), b)
    erf = op("erf", op("mul", u, np.float32(1 / math.sqrt(2))))
    gelu = op("mul", op("mul", u, op("add", erf, np.float32(1))), np.float32(0.5))
    return op("add", op("mul", gelu, op("sigmoid", x)), op("mul", x, x))


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1 << 20, 1 << 24])
    p.add_argument("--no-torch-compile", action="store_true")
    args = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:  # pragma: no cover
        torch = None
    rng = np.random.default_rng(0)
    print(f"cpus={os.cpu_count()}  numpy {np.__version__}"
          + (f"  torch {torch.__version__}" if torch else ""))
    for n in args.sizes:
        repeats = 50 if n <= 1 << 20 else 15
        x = rng.standard_normal(n).astype(np.float32)
        a, b = np.array(1.1, np.float32), np.array(0.1, np.float32)
        out = np.empty_like(x)
        nbytes = 2 * x.nbytes                       # read x, write y
        t0 = time.perf_counter()
        ck = compile_kernel(chain_kernel(n))
        compile_s = time.perf_counter() - t0
        rows: list[tuple[str, float]] = []
        rows.append(("ember llvm kernel", median_time(lambda: ck.run([x, a, b], [out]),
                                                      repeats)))
        ref = numpy_eager(x, a, b)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        rows.append(("numpy eager", median_time(lambda: numpy_eager(x, a, b),
                                                max(3, repeats // 5))))
        if torch is not None:
            tx, ta, tb = torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(b)

            def f(x, a, b):
                return torch.nn.functional.gelu(x * a + b) * torch.sigmoid(x) + x * x

            with torch.no_grad():
                rows.append(("torch eager", median_time(lambda: f(tx, ta, tb), repeats)))
                if not args.no_torch_compile:
                    try:
                        g = torch.compile(f)
                        g(tx, ta, tb)
                        rows.append(("torch.compile", median_time(lambda: g(tx, ta, tb),
                                                                  repeats)))
                    except Exception as e:  # pragma: no cover - no compiler, etc.
                        print(f"  torch.compile unavailable: {type(e).__name__}: {e}"[:200])
        dst = np.empty_like(x)
        copy_t = median_time(lambda: np.copyto(dst, x), repeats)
        base = rows[0][1]
        print(f"\nn = {n:,} float32 ({x.nbytes / 2**20:.0f} MiB), kernel {ck!r}, "
              f"compiled in {compile_s * 1e3:.0f} ms")
        print(f"  {'':20s} {'ms':>9s} {'x ember':>9s} {'GB/s':>8s}")
        for name, t in rows:
            print(f"  {name:20s} {t * 1e3:9.3f} {t / base:9.2f} {nbytes / t / 1e9:8.1f}")
        print(f"  {'np.copyto':20s} {copy_t * 1e3:9.3f} {copy_t / base:9.2f} "
              f"{nbytes / copy_t / 1e9:8.1f}   (memory bandwidth reference)")
        print(f"  ember kernel reaches {copy_t / base:.0%} of copy bandwidth")


if __name__ == "__main__":
    main(sys.argv[1:])
