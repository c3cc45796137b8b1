"""What every part of ``Tensor`` shares: ``Size``, dim and shape arguments, and the
bookkeeping of views (how a view is made again from its base, and what autograd refuses).

A leaf among the tensor modules: it imports none of them.
"""
from __future__ import annotations

import builtins
from collections import namedtuple

import numpy as np

from ember import dispatch as _dispatch_mod
from ember.dispatch import dispatch
from ember.size import Size

_NP = np.ndarray

# Moves whenever any module's attributes or registry dicts change (assignment, deletion,
# train()/eval(), register_*, containers) or a tensor's ``requires_grad`` is set.
# Compiled functions skip re-checking module guards while it stands still (see
# ember/tracer/guards.py).
STRUCTURE_VERSION = [0]
values_indices = namedtuple("values_indices", ["values", "indices"])


class memory_format:
    """How a tensor's elements are laid out in memory (``ember.contiguous_format``,
    ``ember.preserve_format``), accepted where PyTorch takes ``memory_format=``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return self.name   # pickles as the module-level singleton


contiguous_format = memory_format("contiguous_format")
preserve_format = memory_format("preserve_format")
channels_last = memory_format("channels_last")        # 4-D, stored N, H, W, C
channels_last_3d = memory_format("channels_last_3d")  # 5-D, stored N, D, H, W, C


def _dims(dim, ndim: int, op: str) -> tuple[int, ...]:
    """Normalize a dim argument (int, tuple or None = all) to sorted non-negative ints."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    out = []
    for d in dim:
        nd = builtins.max(ndim, 1)
        if not -nd <= d < nd:
            raise IndexError(f"{op}: Dimension out of range (expected to be in range of "
                             f"[{-nd}, {nd - 1}], but got {d})")
        out.append(d % nd if ndim else 0)
    return tuple(sorted(set(out))) if ndim else ()


def _shape_arg(shape) -> tuple[int, ...]:
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _observe(t, how: str) -> None:
    """A Python value is read from a tensor: a compiled function's trace splits here."""
    if _dispatch_mod.tracer is not None:
        _dispatch_mod.tracer.observe(t, how)


def _aliases(out, a) -> bool:
    """Is array ``out`` a view of ``a``'s memory (and not a copy)? NumPy and CuPy point
    a view's ``base`` at the array owning the memory."""
    b = out.base
    return b is not None and (b is a or b is a.base)


def _replay(t, steps: tuple):
    """Make the view ``steps`` (a view's ``_view``) of ``t`` again, through dispatch."""
    for op, attrs in steps:
        t = dispatch(op, t, **attrs)
    return t


def _view_rebase_message(meta, what: str) -> str:
    if meta == "no_grad":
        return (f"A view was created in no_grad mode and {what} with grad mode enabled. Given "
                "that this use case is ambiguous and error-prone, it is forbidden. You can "
                "clarify your code by moving both the view and the inplace either both inside "
                "the no_grad block (if you don't want the inplace to be tracked) or both outside "
                "(if you want the inplace to be tracked).")
    return (f"Output {meta[1]} of {meta[0]} is a view and {what}. This view is the "
            "output of a function that returns multiple views. Such functions do not allow the "
            "output views to be modified inplace. You should replace the inplace operation by an "
            "out-of-place one.")
