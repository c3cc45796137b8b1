"""The CPU thread count: one setting every parallel CPU kernel reads.

``set_num_threads(n)`` sizes the kernel thread pool (``codegen/llvm/jit.py``) and the
number of shares a compiled or native kernel splits its outer loop into; the default is
``os.cpu_count()``. NumPy's own BLAS (used by eager matmul) keeps its own threads.

>>> import ember
>>> ember.set_num_threads(1)     # kernels now run on the calling thread only
>>> ember.get_num_threads()
1
"""
from __future__ import annotations

import builtins
import os

_num_threads: int = os.cpu_count() or 1
_num_interop_threads: int = os.cpu_count() or 1
_interop_set = False


def _check(n, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, builtins.int):
        raise RuntimeError(f"{name} expects an int, but got {type(n).__name__}")


def set_num_threads(int: int) -> None:  # noqa: A002  (torch's parameter name)
    """Set how many threads ember's parallel CPU kernels use (torch.set_num_threads).

    >>> ember.set_num_threads(2)
    """
    global _num_threads
    _check(int, "set_num_threads")
    if int <= 0:
        raise RuntimeError("set_num_threads expects a positive integer")
    _num_threads = int


def get_num_threads() -> int:
    """The thread count parallel CPU kernels use (torch.get_num_threads).

    >>> ember.get_num_threads() >= 1
    True
    """
    return _num_threads


def set_num_interop_threads(int: int) -> None:  # noqa: A002
    """Set the inter-op thread count (torch.set_num_interop_threads). ember runs ops one
    after another, so the value is kept and reported only; as in torch, it can be set
    once.

    >>> ember.get_num_interop_threads() >= 1
    True
    """
    global _num_interop_threads, _interop_set
    _check(int, "set_num_interop_threads")
    if int <= 0:
        raise RuntimeError("Expected positive number of threads")
    if _interop_set:
        raise RuntimeError("Error: cannot set number of interop threads after parallel "
                           "work has started or set_num_interop_threads called")
    _num_interop_threads, _interop_set = int, True


def get_num_interop_threads() -> int:
    """The inter-op thread count (torch.get_num_interop_threads)."""
    return _num_interop_threads


def shares(total: int) -> int:
    """How many shares a kernel with ``total`` outer iterations splits into now."""
    return min(_num_threads, total)
