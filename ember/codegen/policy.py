"""Lowering policy shared by every backend, beside ``Kernel``: which ops a kernel may
hold, which dtypes, and how sums accumulate. (Dimension collapsing is
``kernel.collapse_dims``; transcendental functions are ``mathlib``'s programs.)

    >>> from ember import dtypes
    >>> "exp" in FUSIBLE, REDUCE_OPS["sum"]
    (True, 'reduce_sum')
"""
from __future__ import annotations

from ember import dtypes
from ember.codegen.kernel import Expr, Kernel
from ember.codegen.mathlib import DECOMPOSED
from ember.dtypes import DType

__all__ = ["FUSIBLE", "PRIMITIVE_OPS", "REDUCE_OPS", "KERNEL_DTYPES", "accumulator_dtype",
           "SUM_F32_MAX"]

# Registry elementwise ops each backend renders with its own op table.
PRIMITIVE_OPS = frozenset("""neg sqrt abs sign sin cos relu cast add sub mul div pow maximum
minimum lt le gt ge eq ne logical_and logical_or logical_not where""".split())
# The elementwise registry ops a fused kernel may hold: the primitives, and the ops that
# ``mathlib`` decomposes into them (exp, log, tanh, sigmoid, erf, softplus).
FUSIBLE = PRIMITIVE_OPS | frozenset(DECOMPOSED)
# Registry reductions a kernel may hold, as the Kernel expr each becomes.
REDUCE_OPS = {"sum": "reduce_sum", "amax": "reduce_max"}
# The value dtypes kernels compute in (float16 and the small integers run eagerly).
KERNEL_DTYPES = frozenset((dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64,
                           dtypes.bool_))

# float32 sums of rows up to this many points accumulate in float32, longer ones in
# float64. NumPy (eager) and torch sum float32 in float32 too, in pairwise/cascaded
# partial sums; the CPU's vectorized loop keeps 64 partial sums and a GPU thread sums
# its share of a row before a tree across threads, so each partial sees few additions
# (measured: mean 0.4-1.7 ulp from NumPy's result over rows of 64..65536 points, 0.3 ulp
# in float64). float64 accumulation would halve the CPU's vector width for the whole
# loop (a [64, 1024] softmax ran 27 -> 53 us), so it is kept for rows where float32
# partial sums would grow long.
SUM_F32_MAX = 65536


def accumulator_dtype(kernel: Kernel, e: Expr) -> DType:
    """The dtype reduction ``e`` of ``kernel`` accumulates in (both backends use it)."""
    if e.op == "reduce_sum" and e.dtype is dtypes.float32:
        inner = 1
        for n in kernel.inner_shape:
            inner *= n
        return dtypes.float64 if inner > SUM_F32_MAX else dtypes.float32
    return e.dtype
