"""A compiled kernel as a builtin function: ``f(*inputs, *outputs)`` in ~0.1 us.

A ctypes call costs ~1 us (argument conversion, a GIL release and reacquire); on 8
elements that is most of a cache hit. ``launcher`` gives the kernel's ``name_py`` entry
(which takes the ndarray objects and reads their data pointers) as a ``METH_FASTCALL``
builtin, made by ``PyCFunction_NewEx`` around a small generated trampoline: one per
argument count, for the process. The trampoline checks the argument count and that each
argument is exactly a ``numpy.ndarray`` (else ``SystemError``: callers pass checked
arrays), then calls the kernel with the GIL held: only kernels of a few microseconds use
it (longer ones keep ctypes, which lets other threads run meanwhile).

The kernel's address and loop bound travel in the builtin's ``self``, an int64 array, so
the trampoline's code holds no address of this process.

>>> f = launcher(kernel_address, nargs=3, outer=8)     # None where unavailable
>>> f(x, y, out)
"""
from __future__ import annotations

import ctypes
import sys
import sysconfig
import threading

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np

from ember.codegen.llvm.jit import _DATA_OFFSET, _jit

METH_FASTCALL = 0x80
# Kernels estimated below this (ns) hold the GIL while they run; longer ones use ctypes.
MAX_NS = 20_000


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_LOCK = threading.Lock()
_TRAMPOLINES: dict[int, tuple] = {}   # nargs -> (engine, method def): kept for the process
_I64 = ir.IntType(64)
_P = ir.IntType(8).as_pointer()


def _type_offset() -> int | None:
    """Where ``ob_type`` sits in an object header (8 with the GIL: after the refcount),
    checked on live objects; None on builds this does not know (free-threaded)."""
    if sysconfig.get_config_var("Py_GIL_DISABLED") or _DATA_OFFSET is None:
        return None
    probes = [np.ones(2), np.zeros((2, 2), np.int32), object()]
    for p in probes:
        if ctypes.c_void_p.from_address(id(p) + 8).value != id(type(p)):
            return None
    return 8


_TYPE_OFFSET = _type_offset()
_NEW = None
if _TYPE_OFFSET is not None:
    _NEW = ctypes.pythonapi.PyCFunction_NewEx
    _NEW.restype = ctypes.py_object
    _NEW.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    _INCREF = ctypes.cast(ctypes.pythonapi.Py_IncRef, ctypes.c_void_p).value


def launcher(address: int, nargs: int, outer: int):
    """A builtin ``f(*arrays)`` that calls ``address(*arrays, 0, outer)`` (a kernel's
    ``name_py`` entry), or None where this Python can't make one."""
    if _NEW is None:
        return None
    with _LOCK:
        found = _TRAMPOLINES.get(nargs)
        if found is None:
            found = _TRAMPOLINES[nargs] = _trampoline(nargs)
    # self: [kernel, outer, ndarray type, None, Py_IncRef] (read by the trampoline)
    info = np.array([address, outer, id(np.ndarray), id(None), _INCREF], np.int64)
    return _NEW(ctypes.addressof(found[1]), info, None)


def _trampoline(n: int) -> tuple:
    """``PyObject* ember_fastcall_n(PyObject* self, PyObject** args, Py_ssize_t nargs)``."""
    module = ir.Module(name=f"ember_fastcall_{n}")
    module.triple = llvm.get_process_triple()
    fnty = ir.FunctionType(_P, [_P, _P.as_pointer(), _I64])
    fn = ir.Function(module, fnty, name=f"ember_fastcall_{n}")
    self_obj, argv, count = fn.args
    entry, check, call, fail = (fn.append_basic_block(x) for x in
                                ("entry", "check", "call", "fail"))
    b = ir.IRBuilder(entry)
    info = b.bitcast(b.load(b.bitcast(b.gep(self_obj, [ir.Constant(_I64, _DATA_OFFSET)]),
                                      _P.as_pointer())), _I64.as_pointer())
    word = [b.load(b.gep(info, [ir.Constant(_I64, k)])) for k in range(5)]
    b.cbranch(b.icmp_signed("==", count, ir.Constant(_I64, n)), check, fail)
    b = ir.IRBuilder(check)
    objs = [b.load(b.gep(argv, [ir.Constant(_I64, k)])) for k in range(n)]
    ok = ir.Constant(ir.IntType(1), 1)
    for o in objs:
        t = b.load(b.bitcast(b.gep(o, [ir.Constant(_I64, _TYPE_OFFSET)]), _I64.as_pointer()))
        ok = b.and_(ok, b.icmp_unsigned("==", t, word[2]))
    b.cbranch(ok, call, fail)
    b = ir.IRBuilder(call)
    kty = ir.FunctionType(ir.VoidType(), [_P] * n + [_I64, _I64])
    b.call(b.inttoptr(word[0], kty.as_pointer()), objs + [ir.Constant(_I64, 0), word[1]])
    none = b.inttoptr(word[3], _P)
    b.call(b.inttoptr(word[4], ir.FunctionType(ir.VoidType(), [_P]).as_pointer()), [none])
    b.ret(none)
    b = ir.IRBuilder(fail)
    b.ret(ir.Constant(_P, None))   # NULL without an exception: SystemError
    # Through the persistent cache like every kernel: compiling it cost ~6 ms per
    # argument count in every process (30 ms of a warm start's 136).
    engine, _ = _jit(str(module))
    addr = engine.get_function_address(f"ember_fastcall_{n}")
    mdef = _MethodDef(f"kernel{n}".encode(), addr, METH_FASTCALL, None)
    return engine, mdef


def available() -> bool:
    """Whether kernels can be called as builtins here."""
    return _NEW is not None and sys.implementation.name == "cpython"
