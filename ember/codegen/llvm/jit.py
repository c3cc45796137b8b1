"""The LLVM JIT: target machine, O3 pipeline, MCJIT engines, the ndarray data pointer
and the thread pool that kernels split their rows across."""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import llvmlite.binding as llvm
import numpy as np

from ember.codegen.kernel import KernelCache


_CACHE = KernelCache()
_POOL_LOCK = threading.Lock()
_TM = None


def _target_machine() -> llvm.TargetMachine:
    """The host target machine (for printing assembly); without the host CPU name and
    features LLVM stops at SSE."""
    global _TM
    if _TM is None:
        _TM = _new_target_machine()
    return _TM


def _new_target_machine() -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        # LLVM's Intel tuning caps vectors at 256 bits; 512-bit zmm code runs the
        # exp/erf polynomials ~1.3x faster here (measured), so lift the cap.
        features=llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit",
        # Small code model + PIC: constants become RIP-relative memory operands
        # ({1to16} broadcasts) instead of a movabs + broadcast per use inside the
        # loop (JIT default "large"); erf ran 1.4x faster. llvmlite's memory manager
        # keeps one module's sections together, and libm calls go through stubs.
        opt=3, reloc="pic", codemodel="small", jit=True)


def _jit(source: str):
    """Verify, optimize at O3 (loop + SLP vectorization) and MCJIT-compile ``source``."""
    # Each engine gets its own target machine: an MCJIT engine owns the one it is made
    # with and destroys it when freed (a shared one crashed every later engine).
    tm = _new_target_machine()
    mod = llvm.parse_assembly(source)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    # The engine (and its machine code) lives as long as the compiled kernel holding it:
    # only that object calls into the code (worker threads finish before run() returns).
    return engine, mod


def _find_data_offset() -> int | None:
    """Byte offset of the data pointer inside an ndarray object, checked on live arrays
    (16 on 64-bit CPython: it follows the object header)."""
    probes = [np.arange(3.0), np.zeros((2, 3), np.int32)[:, 1:], np.ones(0)]
    for off in (16,):
        try:
            if all(ctypes.c_void_p.from_address(id(a) + off).value == a.ctypes.data
                   for a in probes):
                return off
        except Exception:  # pragma: no cover
            pass
    return None  # pragma: no cover


_DATA_OFFSET = _find_data_offset()
_NDARRAY = np.ndarray
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                           thread_name_prefix="ember-cpu")
    return _POOL
