"""Errors that name the op, the shapes and the user's line."""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frame(skip_ember: bool = True) -> str:
    """'file:line' of the innermost frame outside the ember package (the user's line)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        inside = _IN_PKG.get(fn)
        if inside is None:   # abspath per frame cost ~20 ms a trace of the MLP step
            inside = _IN_PKG[fn] = os.path.abspath(fn).startswith(_PKG_DIR)
        if not (skip_ember and inside):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


_IN_PKG: dict[str, bool] = {}   # code file name -> inside the ember package


def shape_str(t) -> str:
    shape = getattr(t, "shape", None)
    if shape is None:
        return repr(t)
    return "[" + ", ".join(str(s) for s in shape) + "]"


def describe(x) -> str:
    """How an argument is shown in an error: tensors as dtype[shape] on device."""
    if hasattr(x, "_data") and hasattr(x, "dtype"):
        return f"{x.dtype.name}{shape_str(x)} on {x.device}"
    return repr(x)


class OpError(RuntimeError):
    """An op was given inputs it cannot work on (shapes, dtypes, devices, values)."""

    # Raised by a check op (``OpDef.effect``), which a compiled plan runs before any step
    # that writes state: the call can then be run again eagerly, from unchanged state.
    from_check = False

    def __init__(self, op: str, message: str, inputs=(), location: str | None = None) -> None:
        self.op = op
        self.message = message
        self.location = location or user_frame()
        self.shown = ", ".join(describe(i) for i in inputs)
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"{self.op}: {self.message}"
        if self.shown:
            text += f"\n  inputs: {self.shown}"
        return text + f"\n  at {self.location}"

    def relocated(self, location: str) -> OpError:
        """The same error reported at ``location``: a compiled replay names the line that
        made the failing node, as eager would, rather than the compiled function's call."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        err.location = location
        err.args = (err._text(),)
        return err


class OpIndexError(OpError, IndexError):
    """A value out of range (an index, a class target): an ``IndexError``, as in PyTorch,
    that still names the op and the user's line."""


class OpTypeError(OpError, TypeError):
    """An argument of the wrong type (a list where a tensor goes): a ``TypeError``, as in
    PyTorch, that still names the op and the user's line."""


def type_name(x) -> str:
    """A value's type as PyTorch's argument errors write it: ``float``, ``numpy.ndarray``."""
    kind = type(x)
    if kind.__module__ == "builtins":
        return kind.__name__
    return f"{kind.__module__.split('.')[0]}.{kind.__name__}"


def op_error(op: str, message: str, inputs=()) -> OpError:
    return OpError(op, message, inputs)
