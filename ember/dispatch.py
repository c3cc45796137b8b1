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
SymScalar = None  # bound by ember.tracer.symbolic: a symbolic Python-number argument


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

# NumPy warns on inf/NaN arithmetic (sin(inf), log(-1), 0/0, asin(2)); torch never does,
# and compiled kernels cannot. Arithmetic ops run with NumPy's floating-point errors
# ignored: ``quiet()`` sets its error state through the context variable np.errstate uses,
# ``loud(token)`` puts it back; the user's own NumPy code keeps its settings. It costs
# ~1 us a call with the garbage collector on (the context's new mappings), which doubled
# an eager ``a + b`` on 8 floats (2.9 -> 5.3 us in the benchmark): the hottest ops, which
# warn only on inf/huge inputs (add, sub, mul's overflow and inf - inf, 0 * inf), and
# those that never warn skip it (``LOUD_OK``). Compiled plans' eager steps are always
# quiet (runtime/steps.py).
try:
    from numpy._core._ufunc_config import _extobj_contextvar as _NP_ERRORS
    with np.errstate(all="ignore"):
        _NP_IGNORE = _NP_ERRORS.get()

    def quiet():
        return _NP_ERRORS.set(_NP_IGNORE)

    def loud(token) -> None:
        _NP_ERRORS.reset(token)
except (ImportError, AttributeError):   # another NumPy: the public, slower way
    def quiet():
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def loud(token) -> None:
        token.__exit__(None, None, None)

LOUD_OK = frozenset("""add sub mul neg abs relu sign where maximum minimum eq ne lt le gt ge
logical_not logical_and logical_or logical_xor floor ceil round trunc isnan isinf
isfinite signbit bitwise_and bitwise_or bitwise_xor bitwise_not""".split())


_QUIETS: dict = {}   # OpDef -> bool, filled as ops are first run


def _quiets(op) -> bool:
    """Whether ``op`` runs with NumPy's float warnings off: arithmetic (elementwise,
    reductions, extern math), not in LOUD_OK; views, indexing and factories never warn."""
    q = _QUIETS.get(op)
    if q is None:
        q = _QUIETS[op] = (op.kind in ("unary", "binary", "ternary", "reduce", "extern")
                           and op.name not in LOUD_OK)
    return q


def _bind(tensor_cls) -> None:
    global Tensor
    Tensor = tensor_cls


def dispatch(op: OpDef | str, *args, **attrs):
    """Run primitive ``op`` on tensors (and Python scalars, for elementwise ops)."""
    if type(op) is str:
        op = OPS[op]
    if op.kind in ("unary", "binary", "ternary"):
        if op.scalar_in_float32:
            out = _scalar_in_float32(op, args, attrs)
            if out is not None:
                return out
        args = _prepare_elementwise(op, args)
    try:
        if args:
            dev = args[0]._device
            for a in args:
                if a._device is not dev and a._device != dev:
                    args = _same_device(op, args)
                    break
            arrays = [a._data for a in args]
            if _quiets(op):
                token = quiet()
                try:
                    out = op.eager(args[0]._xp, *arrays, **attrs)
                finally:
                    loud(token)
            else:
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
        if op.saves_out:
            saved = Tensor._wrap(out, False)
            saved._vc = result._vc
        else:   # the gradient reads only its metadata
            saved = autograd.Unsaved.output(out, result._device, result._vc)
        result._node = autograd.Node(op, args, attrs, saved)
    tracer = _local.tracer
    if tracer is not None:
        tracer.record(op, args, attrs, result)
    return result


# 0-dim arrays of Python scalars in a dtype, made by ``_scalar_array`` for the fast paths
# below (read-only, so sharing them is safe; they never reach a user or a Node).
_SCALARS: dict = {}
_SCALARS_MAX = 256


def _scalar_array(v, dt):
    """``np.asarray(v, dtype=dt)``, read-only, cached for a repeated scalar (``x * 0.5``)."""
    key = (v, dt)
    a = _SCALARS.get(key)
    if a is None:
        a = np.asarray(v, dtype=dt)
        if v == 0:   # 0.0 == -0.0 share a key: keep the sign of the one asked for
            return a
        a.flags.writeable = False
        if len(_SCALARS) >= _SCALARS_MAX:
            _SCALARS.clear()
        _SCALARS[key] = a
    return a


def binary(name: str, a, b, reflected: bool = False):
    """``dispatch(name, a, b)`` (``dispatch(name, b, a)`` when ``reflected``) for a
    ``Tensor`` operator, with the same result and errors: ``a`` is a Tensor, ``b`` a
    Tensor or a Python number.

    The common case is taken here without the generic work: no tracer, NumPy arrays,
    ``b`` a tensor of ``a``'s dtype and device, or a Python float/int with a floating
    ``a`` (whose dtype is then the result's, as PyTorch promotes). Everything else, and
    any failure, goes through ``dispatch``, which decides and raises as always.

    >>> binary("add", ember.ones(2), 1.0)
    tensor([2., 2.])
    """
    op = OPS[name]
    if _local.tracer is None and not op.view:
        da = a._data
        dt = da.dtype
        if type(da) is _NP_ARRAY:
            tb = type(b)
            if tb is Tensor or isinstance(b, Tensor):
                db = b._data
                if (db.dtype is dt and a._device is b._device and type(db) is _NP_ARRAY
                        and not (op.dtype_rule == "float" and dt.kind in "biu")):
                    if reflected:
                        return _apply(op, b, a, db, da, (b, a))
                    return _apply(op, a, b, da, db, (a, b))
            elif ((tb is float or tb is int) and dt.kind == "f"
                  and (dt.itemsize > 2 or not op.scalar_in_float32)):
                c = _scalar_array(b, dt)
                if reflected:
                    return _apply(op, None, a, c, da, (b, a))
                return _apply(op, a, None, da, c, (a, b))
    if reflected and name == "div" and a.dtype in _HALVES and not (type(b) is int and b == 1):
        return dispatch("mul", dispatch(op, 1, a), b)   # PyTorch's s / x: x.reciprocal() * s
    return dispatch(op, b, a) if reflected else dispatch(op, a, b)


# PyTorch's float16/bfloat16 kernels of the ops marked ``scalar_in_float32`` (mul, div,
# floor_divide) read a scalar second operand (a Python number or a 0-dim tensor) in
# float32 and compute in float32, rounding once: bfloat16 [3.] * 257 is 772 (771
# rounded), not 3 * 256. Other ops cast the scalar first, as ember does
# (BinaryOpsKernel.cpp's reduced-float scalar paths).
_HALVES = (dtypes.float16, dtypes.bfloat16)


def _scalar_in_float32(op: OpDef, args, attrs):
    """``op(x, s)`` computed in float32 and rounded to x's float16/bfloat16, where PyTorch
    does so (above); None where the rule does not apply."""
    if len(args) != 2:
        return None
    x, s = args
    if not isinstance(x, Tensor) and op.name == "mul":   # s * x is x * s in PyTorch
        x, s = s, x
    if not isinstance(x, Tensor) or x.dtype not in _HALVES:
        return None
    if isinstance(s, Tensor):
        if s._data.ndim or not x._data.ndim or s.dtype is x.dtype or s.dtype.category > 2:
            return None   # not a scalar, or promotion decides (both 0-dim), or exact
        s = s.to(dtypes.float32)
    elif type(s) is not float and type(s) is not int and type(s) is not SymScalar:
        return None
    return dispatch(op, x.to(dtypes.float32), s, **attrs).to(x.dtype)


def _apply(op: OpDef, x, y, dx, dy, args):
    """The end of ``dispatch`` for two NumPy operands (``x``/``y`` None: a Python scalar,
    ``args`` the call as given, for the generic path to redo on a failure)."""
    token = quiet() if _quiets(op) else None
    try:
        out = op.eager(np, dx, dy)
    except Exception:   # the generic path raises what it raises (the op is pure)
        return dispatch(op, *args)
    finally:
        if token is not None:
            loud(token)
    if type(out) is not _NP_ARRAY:
        out = np.asarray(out)
    needs_grad = False
    if op.vjp is not None and autograd._state.__dict__.get("grad", True):
        for t in (x, y):
            if t is not None:
                if t._base is not None and t._vver != t._vc[0]:
                    t._sync_view()   # its base was written in place since: a new history
                if t._rg:
                    needs_grad = True
    result = Tensor._wrap(out, needs_grad)
    if needs_grad:
        # The Node saves its inputs: a scalar becomes the fresh 0-dim tensor dispatch makes.
        if x is None:
            x = Tensor._wrap(np.asarray(args[0], dtype=dx.dtype), False)
        elif y is None:
            y = Tensor._wrap(np.asarray(args[1], dtype=dy.dtype), False)
        if op.saves_out:
            saved = Tensor._wrap(out, False)
            saved._vc = result._vc
        else:
            saved = autograd.Unsaved.output(out, result._device, result._vc)
        result._node = autograd.Node(op, (x, y), {}, saved)
    return result


def iadd(t, o):
    """``t += o`` (``Tensor.add_``) in the common case, written in place by one NumPy call:
    no tracer, no gradient recorded, ``t`` not a view, ``o`` a tensor of its dtype and
    device (or a Python number, ``t`` floating), the result of ``t``'s shape. Else
    ``add_`` decides and raises as always. Returns None when it did not do it."""
    if _local.tracer is not None or t._base is not None:
        return None
    da = t._data
    if type(da) is not _NP_ARRAY:
        return None
    dt = da.dtype
    grad = autograd._state.__dict__.get("grad", True)
    if isinstance(o, Tensor):
        db = o._data
        if (db.dtype is not dt or o._device is not t._device or type(db) is not _NP_ARRAY
                or (grad and (t._rg or o.requires_grad))):
            return None
    elif (type(o) is float or type(o) is int) and dt.kind == "f":
        if grad and t._rg:
            return None
        db = _scalar_array(o, dt)
    else:
        return None
    # Elements sharing memory (an expanded tensor) are an error of add_'s to raise.
    if (db.shape != da.shape and db.ndim) or not da.flags.c_contiguous \
            or not da.flags.writeable:
        return None
    np.add(da, db, out=da)   # NumPy copies first where db overlaps da
    t._vc[0] += 1
    return t


def constant(value, dtype: dtypes.DType, device):
    """A 0-dim tensor for a Python scalar taking part in an op (a literal in traces)."""
    if type(value) is SymScalar:   # a symbolic argument: the graph reads it (symbolic.py)
        t = value.operand(dtype, device)
        if t is not None:
            return t
        value = value.value
    xp = array_module(device)
    try:
        array = xp.asarray(value, dtype=dtype.np)
    except OverflowError:
        # An int outside an integer dtype's range wraps as PyTorch casts it (uint8 * -1
        # is uint8 * 255); NumPy refuses it. Beyond 64 bits PyTorch refuses too.
        if not (type(value) is int and dtype.np.kind in "iu" and -2 ** 63 <= value < 2 ** 64):
            raise
        wide = np.asarray(value, dtype=np.int64 if value < 2 ** 63 else np.uint64)
        array = xp.asarray(wide.astype(dtype.np))
        value = array.item()
    t = Tensor._wrap(array, False)
    tracer = _local.tracer
    if tracer is not None:
        tracer.constant(t, value)
    return t


def check_fits(name: str, value: int, dtype: dtypes.DType) -> None:
    """PyTorch's checked conversion of a Python int to an integer dtype: an error unless
    it fits (an unsigned dtype also takes the negatives down to -max, which wrap)."""
    info = np.iinfo(dtype.np)
    lo = -info.max if info.min == 0 else info.min
    if not lo <= value <= info.max:
        raise OpError(name, f"value cannot be converted to type {dtype.np.name}_t without "
                            "overflow")


def _prepare_elementwise(op: OpDef, args):
    """Cast inputs to the op's computation dtype and turn Python scalars into 0-dim tensors."""
    rule = op.dtype_rule
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not tensors:
        raise OpError(op.name, "needs at least one tensor argument", args)
    if op.refuses_bool and any(type(a) is bool or isinstance(a, Tensor)
                               and a.dtype is dtypes.bool_ for a in args):
        raise OpError(op.name, op.refuses_bool, tensors)
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
    if op.checks_scalars and dt.np.kind in "iu":
        for a in operands:
            if type(a) is int:
                check_fits(op.name, a, dt)
            elif type(a) is SymScalar and type(a.value) is int:   # (in range: symbolic.py)
                check_fits(op.name, a.value, dt)
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
