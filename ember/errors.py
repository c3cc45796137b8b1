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


def check_same_dtype(op: str, input, half_input_float_params: bool = False,
                     **others) -> None:
    """Refuse, as PyTorch does, a layer whose tensors (``others`` by name, None
    skipped) differ in dtype from ``input`` (a float64 batch through float32 weights),
    where NumPy would silently promote. ``half_input_float_params``: torch's norms also
    take a float16/bfloat16 input with float32 parameters (what autocast hands them).

    >>> check_same_dtype("conv2d", ember.ones(1, dtype=ember.float64), weight=ember.ones(1))
    Traceback (most recent call last):
    OpError: conv2d: mixed dtypes (input float64, weight float32): ...
    """
    dt = input.dtype
    given = {k: t for k, t in others.items() if t is not None}
    if all(t.dtype is dt for t in given.values()):
        return
    if (half_input_float_params and dt.is_floating_point and dt.itemsize == 2
            and all(t.dtype.name == "float32" for t in given.values())):
        return
    listing = ", ".join(f"{k} {t.dtype.name}" for k, t in given.items())
    raise OpError(op, f"mixed dtypes (input {dt.name}, {listing}): all inputs must share the "
                      f"same dtype, as in PyTorch; convert them with .to(dtype)",
                  (input, *given.values()))
