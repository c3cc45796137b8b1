"""dispatch(op, *args, **attrs): the single path every primitive op takes.

It applies the op's dtype rule (casting inputs as PyTorch would), checks devices, runs
the eager implementation on NumPy or CuPy, records an autograd Node when gradients are
needed, and tells the tracer (when ``@ember.compile`` is tracing) what ran.
"""
from __future__ import annotations

import sys
import threading
import types

import numpy as np

from ember import autograd, dtypes
from ember.errors import OpError, OpTypeError, shape_str, type_name
from ember.ops.registry import OPS, OpDef
from ember.devices import array_module

Tensor = None  # bound by ember.tensor at import (the two modules need each other)


class _TracerState(threading.local):
    """The active tracer (ember.tracer) of this thread, or None. It sees every op,
    constant and mutation. Per thread: a trace in one thread must not record the ops
    another thread runs at the same time."""
    tracer = None


_local = _TracerState()


class _Module(types.ModuleType):
    """Makes ``ember.dispatch.tracer`` read and set this thread's tracer, so the hooks in
    tensor.py and the optimizers keep writing ``_dispatch.tracer``."""

    @property
    def tracer(self):
        return _local.tracer

    @tracer.setter
    def tracer(self, value) -> None:
        _local.tracer = value


sys.modules[__name__].__class__ = _Module

_NP_ARRAY = np.ndarray


def _bind(tensor_cls) -> None:
    global Tensor
    Tensor = tensor_cls


def dispatch(op: OpDef | str, *args, **attrs):
    """Run primitive ``op`` on tensors (and Python scalars, for elementwise ops)."""
    if type(op) is str:
        op = OPS[op]
    if op.kind in ("unary", "binary", "ternary"):
        args = _prepare_elementwise(op, args)
    try:
        if args:
            dev = args[0]._device
            for a in args:
                if a._device is not dev and a._device != dev:
                    args = _same_device(op, args)
                    break
            arrays = [a._data for a in args]
            out = op.eager(args[0]._xp, *arrays, **attrs)
        else:
            out = op.eager(array_module(attrs["device"]), **attrs)
    except OpError:
        raise
    except Exception as e:
        raise _explain(op, args, attrs, e) from None
    if type(out) is not _NP_ARRAY and not hasattr(out, "__cuda_array_interface__"):
        out = np.asarray(out)
    needs_grad = False
    if op.vjp is not None and autograd._state.__dict__.get("grad", True):
        for a in args:
            if a._base is not None and a._vver != a._vc[0]:
                a._sync_view()   # its base was written in place since: a new history
            if a._rg:
                needs_grad = True
    result = Tensor._wrap(out, needs_grad)
    if op.view:
        result._view_of(args[0], op, attrs)
    if needs_grad:
        saved = Tensor._wrap(out, False)
        saved._vc = result._vc
        result._node = autograd.Node(op, args, attrs, saved)
    tracer = _local.tracer
    if tracer is not None:
        tracer.record(op, args, attrs, result)
    return result


def constant(value, dtype: dtypes.DType, device):
    """A 0-dim tensor for a Python scalar taking part in an op (a literal in traces)."""
    t = Tensor._wrap(array_module(device).asarray(value, dtype=dtype.np), False)
    tracer = _local.tracer
    if tracer is not None:
        tracer.constant(t, value)
    return t


def _prepare_elementwise(op: OpDef, args):
    """Cast inputs to the op's computation dtype and turn Python scalars into 0-dim tensors."""
    rule = op.dtype_rule
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not tensors:
        raise OpError(op.name, "needs at least one tensor argument", args)
    first = tensors[0]
    operands = args[1:] if rule == "where" else args
    if len(tensors) == len(args) and rule != "where":
        dt0 = first._data.dtype
        if all(a._data.dtype == dt0 for a in args):  # fast path: nothing to promote
            if rule == "float" and dt0.kind in "biu":   # bfloat16's kind is "V"
                return tuple(a.to(dtypes.get_default_dtype()) for a in args)
            return args
    dim = zero = wrapped = None
    for a in operands:
        if isinstance(a, Tensor):
            d = a.dtype
            if a._data.ndim:
                dim = d if dim is None else dtypes.promote(dim, d)
            else:
                zero = d if zero is None else dtypes.promote(zero, d)
        elif isinstance(a, (bool, int, float, complex, np.number, np.bool_)):
            d = dtypes.scalar_dtype(a.item() if isinstance(a, (np.number, np.bool_)) else a)
            wrapped = d if wrapped is None else dtypes.promote(wrapped, d)
        else:   # reached only by an operand of an unexpected type: not on the hot path
            return _prepare_elementwise(op, _arrays_as_tensors(op, args, first))
    dt = dtypes.result_type(dim, zero, wrapped)
    if rule == "float" and dt.category < 2:   # complex stays complex
        dt = dtypes.get_default_dtype()
    out = []
    for i, a in enumerate(args):
        if i == 0 and rule == "where":
            if not isinstance(a, Tensor) or a.dtype is not dtypes.bool_:
                raise OpError(op.name, "condition must be a bool tensor", tensors)
            out.append(a)
        elif isinstance(a, Tensor):
            out.append(a if a.dtype is dt else a.to(dt))
        else:
            out.append(constant(a, dt, first._device))
    return tuple(out)


def _arrays_as_tensors(op: OpDef, args, like) -> tuple:
    """NumPy arrays as tensors on ``like``'s device (``x + np.ones(3)`` is a tensor in
    PyTorch too); any other operand that is neither a tensor nor a number is a TypeError
    naming the op and the argument, in PyTorch's words."""
    from ember.tensor import tensor

    names = ("condition", "input", "other") if op.dtype_rule == "where" else ("input", "other")
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray) and a.dtype.kind in "biuf":
            if _local.tracer is not None:   # a trace would freeze the array's values
                _local.tracer.fail(f"{op.name}: a NumPy array operand would become a constant; "
                            "pass ember.tensor(array) as an argument instead")
            a = tensor(a, device=like.device)
        elif not isinstance(a, (Tensor, bool, int, float, np.number, np.bool_)):
            name = names[i] if i < len(names) else f"arg{i}"
            raise OpTypeError(op.name, f"argument '{name}' (position {i + 1}) must be Tensor, "
                              f"not {type_name(a)}")
        out.append(a)
    return tuple(out)


def _same_device(op: OpDef, args):
    """``args`` on one device, or an error. As in PyTorch, a 0-dim CPU tensor may take part
    in an elementwise op on another device (it is a scalar, e.g. a learning rate)."""
    moved = args
    if op.kind in ("unary", "binary", "ternary"):
        dev = next((a._device for a in args if a._device.type != "cpu" or a._data.ndim), None)
        if dev is not None and dev.type != "cpu":
            moved = tuple(a.to(dev) if a._device.type == "cpu" and not a._data.ndim else a
                          for a in args)
    devices = list(dict.fromkeys(a._device for a in moved))
    if len(devices) > 1:
        raise OpError(op.name, "expected all tensors to be on the same device, but found at "
                      f"least two devices, {devices[0]} and {devices[1]}", args)
    return moved


def _explain(op: OpDef, args, attrs, e: Exception) -> OpError:
    """Turn a NumPy/CuPy failure into an error naming the op, the shapes and the user's line."""
    msg = str(e)
    if "broadcast" in msg:
        shapes = " and ".join(shape_str(a) for a in args)
        msg = f"shapes {shapes} are not broadcastable"
    elif "matmul" in msg or "mismatch in its core dimension" in msg:
        msg = f"shapes {' and '.join(shape_str(a) for a in args)} cannot be multiplied"
    else:
        msg = f"{type(e).__name__}: {msg}"
    shown = {k: v for k, v in attrs.items() if k not in ("device",)}
    if shown:
        msg += f" (attributes {shown})"
    return OpError(op.name, msg, args)
