"""How long NumPy's OpenBLAS threads spin after a GEMM, so that ember's kernels get the cores.

OpenBLAS (NumPy's BLAS from PyPI) keeps each worker thread spinning on its core for
2^28 cycles (~0.1 s) after a threaded GEMM before it sleeps. ember's own parallel
kernels (fused loops, direct convolutions, pooling, im2col) run between the GEMMs of a
step on those same cores, and the spinning worker took half of one: in the CIFAR CNN's
compiled forward (2 cores), the second convolution took 2.47 ms against 1.31 ms with
the worker asleep, the first 1.14 against 0.50 ms, and the GEMM after them 0.65 against
0.32 ms (waking a worker that its own spinning had pushed off the core).

So at import, unless the user set ``OPENBLAS_THREAD_TIMEOUT`` (OpenBLAS's own variable:
log2 of the cycles a worker spins), ember sets it to ``SPIN_LOG2_CYCLES`` (2^20 cycles,
~0.4 ms: long enough for the GEMMs of one training step to find their workers awake;
2^16 made the MLP's step 15-20% slower) and restarts OpenBLAS's thread server, which
reads it when it starts (at the next threaded BLAS call; the restart is what OpenBLAS
does itself before a ``fork``). Other BLAS libraries, or an OpenBLAS without these entry
points, are left as they are. (The figures above are for 2^16; 2^20 gave 1.30 ms for
the second convolution.)

>>> from ember import blas_spin
>>> blas_spin.STATE in ("shortened", "user-set", "not OpenBLAS")
True
"""
from __future__ import annotations

import ctypes
import os

SPIN_LOG2_CYCLES = 20
STATE = "not OpenBLAS"   # what ``shorten`` did: "shortened", "user-set" or "not OpenBLAS"


def _openblases() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries this process loaded (NumPy's, SciPy's), from its mappings."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:   # not Linux: left alone
        return []
    found = []
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)   # already loaded: the same instance
        except OSError:
            continue
        if all(hasattr(lib, s) for s in ("openblas_read_env", "openblas_thread_timeout",
                                         "blas_thread_shutdown_")):
            found.append(lib)
    return found


def _openblas() -> ctypes.CDLL | None:
    """NumPy's OpenBLAS (the first found), or None."""
    libs = _openblases()
    return libs[0] if libs else None


def shorten() -> str:
    """Make OpenBLAS's workers sleep ~0.4 ms after a job instead of ~0.1 s (see the
    module docstring); returns what was done."""
    global STATE
    import numpy  # noqa: F401  (loads the BLAS this looks for)
    libs = _openblases()
    if not libs:
        STATE = "not OpenBLAS"
    elif os.environ.get("OPENBLAS_THREAD_TIMEOUT", "") == str(SPIN_LOG2_CYCLES):
        STATE = "shortened"   # by ember in a parent process: read when OpenBLAS loaded
    elif os.environ.get("OPENBLAS_THREAD_TIMEOUT"):
        STATE = "user-set"
    else:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(SPIN_LOG2_CYCLES)
        for lib in libs:
            lib.openblas_read_env()
            lib.blas_thread_shutdown_()   # restarted, with the new timeout, when needed
        STATE = "shortened"
    return STATE
