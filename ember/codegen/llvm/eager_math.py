"""Eager transcendental functions on the compiled kernels' machine code.

NumPy has no erf (ember's was a dozen NumPy passes), sigmoid and softplus are several
passes each. The compiled kernels compute these ops from ``codegen/mathlib.py``'s
programs, vectorized. ``unary(op, a)`` runs that code on an eager float32 array (and
float64 erf), so an eager op and its compiled form give the same numbers, and the eager
op runs 2-9x faster than its NumPy form (80k elements, one thread: erf 383 -> 43 us,
sigmoid 674 -> 75 us, tanh 284 -> 85 us, exp 172 -> 48 us; float64 erf 3.7 -> 1.4 ms).

One kernel per (op, dtype) serves every length: a kernel's loop runs over the rows
``[start, end)`` it is called with, the bounds the thread pool splits, so a 1-D kernel
compiled for ``_N`` elements computes any shorter array (``native.compiled`` keeps it,
and the persistent cache keeps its machine code across processes).

>>> import numpy as np
>>> float(unary("erf", np.array([0.5], np.float32))[0])
0.5204998850822449
"""
from __future__ import annotations

import numpy as np

from ember import dtypes
from ember.codegen.kernel import Expr, Kernel, Load, Store
from ember.codegen.llvm import native
from ember.codegen.llvm.loops import _Layout, _build_module
from ember.codegen.mathlib import DECOMPOSED

# The registry's one-operand ops computed by a mathlib program.
OPS = frozenset(op for op, operands in DECOMPOSED.items() if operands == 1)
_N = 1 << 40              # the length compiled in: any array is shorter
_PARALLEL_MIN = 1 << 18   # elements from which a call splits across the pool (~0.1 ms)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def unary(op: str, a) -> np.ndarray | None:
    """``op`` of every element of ``a`` (a new C-ordered array), or None where this does
    not apply: not a NumPy float32 array, or float64 other than erf (the float64 programs
    are within 2 ulp, NumPy's libm within 1, and float64 is asked for for precision; the
    compiled float64 erf is libm's, and NumPy has none)."""
    if type(a) is not np.ndarray or not (a.dtype == _F32 or a.dtype == _F64 and op == "erf"):
        return None
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    out = np.empty(a.shape, a.dtype)
    if a.size:
        _kernel(op, a.dtype)([a, out], a.size, a.size)
    return out


def _kernel(op: str, dtype: np.dtype) -> native._Native:
    def build(name: str) -> tuple[str, int]:
        dt = dtypes.from_numpy_dtype(dtype)
        k = Kernel(name, (_N,), [Load(0, dt, (1,))],
                   [Expr("load", (0,), dt), Expr(op, (0,), dt)], [Store(1, (1,))])
        return _build_module(k, name, _Layout.of(k)), 2
    return native.compiled(("math", op, dtype.str), build, _PARALLEL_MIN)
