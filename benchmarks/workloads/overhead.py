"""Fixed per-call costs on 8 float32 elements, where the arithmetic is free.

``call_8``: a cache hit of a compiled function (the chain), against each library's own
call path (eager dispatch, torch.compile's guards, Numba's and jax.jit's dispatch).
``op_*``: one eager op (argument checks, dtype promotion, allocation, autograd
recording), ember eager against NumPy and torch eager.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads.chain import chain_impls
from benchmarks.workloads.common import arrays, parse_count


def _add(a, b):
    return a + b


def _mul_scalar(a, b):
    return a * 0.5


def _iadd(a, b):
    a += b
    return a


# name -> (title, op, a requires grad, changes a in place)
OPS: dict[str, tuple[str, Callable, bool, bool]] = {
    "add": ("a + b", _add, False, False),
    "add_grad": ("a + b, a.requires_grad", _add, True, False),
    "mul_scalar": ("a * 0.5 (Python float)", _mul_scalar, False, False),
    "iadd": ("a += b (in place)", _iadd, False, True),
}
SIZES = ["8"]
QUICK_SIZES = ["8"]


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        n = parse_count(text)
        out.append(Workload(f"call_{n}", "overhead",
                            f"cache-hit call of the compiled chain, {n} float32",
                            chain_impls(n), unit="us"))
        for name, (title, op, grad, inplace) in OPS.items():
            out.append(Workload(
                f"op_{name}_{n}", "overhead", f"eager op {title}, {n} float32",
                op_impls(op, n, grad), subject="ember eager", unit="us",
                stateful=inplace, check_calls=1))
    return out


def op_impls(op: Callable, n: int, requires_grad: bool) -> list[Impl]:
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal(n, dtype=np.float32) for _ in range(2))

    def setup_for(lib_name: str) -> Callable[[], Prepared]:
        def setup() -> Prepared:
            if lib_name == "numpy":
                ta, tb = a.copy(), b.copy()
            else:
                lib: Any = __import__(lib_name)
                ta, tb = lib.tensor(a), lib.tensor(b)
                if requires_grad:
                    ta.requires_grad_(True)
            return Prepared(lambda: op(ta, tb), arrays)
        return setup

    return [Impl("ember eager", "ember", setup_for("ember")),
            Impl("numpy", "numpy", setup_for("numpy")),
            Impl("torch", "torch", setup_for("torch"))]
