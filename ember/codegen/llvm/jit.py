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
from ember.codegen.phases import phase
from ember.diskcache import DiskCache, default_cache


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


def _optimize(source: str, tm: llvm.TargetMachine) -> llvm.ModuleRef:
    """Parse, verify and optimize ``source`` at O3 (loop + SLP vectorization)."""
    mod = llvm.parse_assembly(source)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def optimized_module(source: str) -> llvm.ModuleRef:
    """``source`` after the O3 pipeline (for showing IR and assembly)."""
    return _optimize(source, _target_machine())


def _cache_key(cache: DiskCache, source: str) -> str:
    """The machine code depends on the IR, the LLVM in llvmlite and the host CPU."""
    return cache.key("llvm", source, llvm.get_process_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten())


def _jit(source: str):
    """MCJIT-compile ``source``: the machine code comes from the persistent cache
    (``ember/diskcache.py``) when an earlier process compiled the same IR on this CPU,
    else from the O3 pipeline and codegen, and is then stored there. Returns the engine
    and the optimized module (None when the code came from the cache: nothing was
    optimized; ``optimized_module`` makes it on demand)."""
    # Each engine gets its own target machine: an MCJIT engine owns the one it is made
    # with and destroys it when freed (a shared one crashed every later engine).
    tm = _new_target_machine()
    cache = default_cache()
    key = _cache_key(cache, source) if cache is not None else None
    code = cache.get(key) if cache is not None else None
    if code is not None:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        engine.add_object_file(llvm.ObjectFileRef.from_data(code))
        engine.finalize_object()
        return engine, None
    with phase("llvm"):
        mod = _optimize(source, tm)
        engine = llvm.create_mcjit_compiler(mod, tm)
        if cache is not None:
            engine.set_object_cache(notify_func=lambda _m, buf: cache.put(key, bytes(buf)))
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
