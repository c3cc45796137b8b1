"""The LLVM JIT: target machine, O3 pipeline, MCJIT engines, the ndarray data pointer
and the thread pool that kernels split their rows across."""
from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import llvmlite.binding as llvm
import numpy as np

from ember import threads as _threads
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
    triple, cpu, features = _host()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(
        cpu=cpu,
        # LLVM's Intel tuning caps vectors at 256 bits; 512-bit zmm code runs the
        # exp/erf polynomials ~1.3x faster here (measured), so lift the cap.
        features=features + ",-prefer-256-bit",
        # Small code model + PIC: constants become RIP-relative memory operands
        # ({1to16} broadcasts) instead of a movabs + broadcast per use inside the
        # loop (JIT default "large"); erf ran 1.4x faster. llvmlite's memory manager
        # keeps one module's sections together, and libm calls go through stubs.
        opt=3, reloc="pic", codemodel="small", jit=True)


_HOST: tuple[str, str, str] | None = None


def _host() -> tuple[str, str, str]:
    """(triple, CPU name, CPU features) of this machine, asked of LLVM once: the
    features string alone costs ~0.4 ms, and every engine and cache key needs them."""
    global _HOST
    if _HOST is None:
        _HOST = (llvm.get_process_triple(), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten())
    return _HOST


def vector_registers() -> tuple[int, int]:
    """(bytes per vector register, how many) on this CPU, for kernels that block their
    work into registers by hand (``directconv``): AVX-512 64 x 32, AVX/AVX2 32 x 16,
    AArch64 16 x 32, else SSE's 16 x 16. A tile sized for 32 zmm registers spills on a
    16-register AVX2 machine: CIFAR's 32->64 3x3 convolution ran there at 12 GFLOP/s a
    thread, 56 with tiles sized to it.

    >>> vector_registers() in ((64, 32), (32, 16), (16, 32), (16, 16))
    True
    """
    features = set(_host()[2].split(","))
    if "+avx512f" in features:
        return 64, 32
    if "+avx" in features:
        return 32, 16
    if "+neon" in features:   # AArch64: 32 128-bit registers
        return 16, 32
    return 16, 16


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
    return cache.key("llvm", source, *_host())


def _jit(source: str, cache: DiskCache | None | bool = True):
    """MCJIT-compile ``source``: the machine code comes from the persistent cache
    (``ember/diskcache.py``) when an earlier process compiled the same IR on this CPU,
    else from the O3 pipeline and codegen, and is then stored there. Returns the engine
    and the optimized module (None when the code came from the cache: nothing was
    optimized; ``optimized_module`` makes it on demand)."""
    # Each engine gets its own target machine: an MCJIT engine owns the one it is made
    # with and destroys it when freed (a shared one crashed every later engine).
    if cache is True:
        cache = default_cache()
    key = _cache_key(cache, source) if cache is not None else None
    code = cache.get(key) if cache is not None else None
    if code is not None:
        return _load_object(code, source), None
    with phase("llvm"):
        tm = _new_target_machine()
        mod = _optimize(source, tm)
        engine = llvm.create_mcjit_compiler(mod, tm)
        if cache is not None:
            engine.set_object_cache(notify_func=lambda _m, buf: cache.put(key, bytes(buf),
                                                                          "llvm"))
        engine.finalize_object()
    # The engine (and its machine code) lives as long as the compiled kernel holding it:
    # only that object calls into the code (worker threads finish before run() returns).
    return engine, mod


def jit_described(description: str, build_source: Callable[[], str]
                  ) -> tuple[llvm.ExecutionEngine, llvm.ModuleRef | None, str]:
    """MCJIT-compile the code that ``build_source()`` makes, looking the persistent cache
    up by ``description`` first (a text that determines the IR, e.g. a kernel's
    signature and name): a hit skips building, printing and parsing the IR and the O3
    pipeline, which is most of a warm start's compile time. The entry keeps the IR text
    beside the machine code, so ``source`` (dumps, explain) is the same either way.
    The key also covers a hash of the code generator's own source files
    (``_codegen_fingerprint``): a changed generator never meets code from an old one.
    Returns the engine, the optimized module (None on a hit) and the IR text.

        >>> engine, _, ir = jit_described("ret", lambda: "define void @f() { ret void }")
        >>> engine.get_function_address("f") != 0
        True
    """
    cache = default_cache()
    if cache is None:
        source = build_source()
        engine, mod = _jit(source, cache=None)
        return engine, mod, source
    key = cache.key("llvm-described", description, _codegen_fingerprint(), *_host(),
                    str(_DATA_OFFSET))
    blob = cache.get(key)
    entry = _split_entry(blob) if blob is not None else None
    if entry is not None:
        source, code = entry
        return _load_object(code, source), None, source
    source = build_source()
    with phase("llvm"):
        tm = _new_target_machine()
        mod = _optimize(source, tm)
        engine = llvm.create_mcjit_compiler(mod, tm)
        engine.set_object_cache(notify_func=lambda _m, buf: cache.put(
            key, _join_entry(source, bytes(buf)), "llvm"))
        engine.finalize_object()
    return engine, mod, source


_ENTRY_MAGIC = b"ember-llvm-ir+obj 1\n"


def _join_entry(source: str, code: bytes) -> bytes:
    text = source.encode()
    return _ENTRY_MAGIC + len(text).to_bytes(8, "little") + text + code


def _split_entry(blob: bytes) -> tuple[str, bytes] | None:
    """(IR text, object code) of a described entry; None if it is not one. The store
    already checked the checksum and key, so this only guards against a format change."""
    n = len(_ENTRY_MAGIC)
    if not blob.startswith(_ENTRY_MAGIC) or len(blob) < n + 8:
        return None
    size = int.from_bytes(blob[n:n + 8], "little")
    if n + 8 + size >= len(blob):
        return None
    try:
        source = blob[n + 8:n + 8 + size].decode()
    except UnicodeDecodeError:
        return None
    return source, blob[n + 8 + size:]


def _load_object(code: bytes, source: str) -> "_Library":
    """The machine code of a cache entry, linked into the process's ORC JIT as a library
    of its own: ~0.3 ms, where a new MCJIT engine (target machine, and a codegen run over
    an empty module at finalization) cost ~2.5-4 ms a kernel (measured). ``source`` is
    the IR the code was made from; its function definitions are the exports."""
    global _LLJIT
    names = [a or b for a, b in _DEFINED.findall(source)]
    with _LLJIT_LOCK:
        if _LLJIT is None:
            _LLJIT = llvm.create_lljit_compiler(_new_target_machine())
        builder = llvm.JITLibraryBuilder().add_object_img(code).add_current_process()
        for name in names:
            builder.export_symbol(name)
        # A library's name can never be reused, even after its tracker is freed.
        tracker = builder.link(_LLJIT, f"ember-cached-{next(_LIBRARY_IDS)}")
    return _Library(tracker, _LLJIT)


class _Library:
    """Code loaded from the cache; it stays mapped while this object lives (the
    compiled kernel holding it is the only caller), as an MCJIT engine's does. It
    holds the JIT too, so the JIT is never disposed of before its libraries."""

    def __init__(self, tracker, lljit) -> None:
        self._tracker, self._jit = tracker, lljit

    def get_function_address(self, name: str) -> int:
        return self._tracker[name]


_LLJIT = None
_LLJIT_LOCK = threading.Lock()
_LIBRARY_IDS = itertools.count()
_DEFINED = re.compile(r'^define [^@]*@(?:"([^"]+)"|([-\w.$]+))\(', re.M)


_FINGERPRINT: str | None = None


def _codegen_fingerprint() -> str:
    """A hash of the files whose code decides what a kernel description compiles to
    (``ember/codegen``, ``ember/dtypes.py`` and ``ember/ops/elementwise.py``, whose erf
    coefficients ``codegen/mathlib.py`` compiles in), so that an edited generator with an
    unchanged version number never loads code an older one made (~2 ms, once)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import ember
        root = os.path.dirname(os.path.abspath(ember.__file__))
        files = [os.path.join(root, "dtypes.py"), os.path.join(root, "ops", "elementwise.py")]
        for folder, dirs, names in os.walk(os.path.join(root, "codegen")):
            dirs.sort()
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
        h = hashlib.sha256()
        for path in files:
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


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
    """The kernel thread pool, sized by ``ember.set_num_threads`` (a new setting gets a
    new pool; the old one finishes what it was given)."""
    global _POOL
    pool = _POOL
    if pool is None or pool._max_workers != _threads._num_threads:
        with _POOL_LOCK:
            if _POOL is None or _POOL._max_workers != _threads._num_threads:
                if _POOL is not None:
                    _POOL.shutdown(wait=False)
                _POOL = ThreadPoolExecutor(max_workers=_threads._num_threads,
                                           thread_name_prefix="ember-cpu")
            pool = _POOL
    return pool


def _forget_pool() -> None:
    """In a forked child: only the forking thread exists there, so the parent's pool
    threads are gone while their executor still counts them as idle, and a kernel's
    share submitted to it would wait forever (a ``multiprocessing`` worker, fork being
    Linux's default, hung on its first parallel kernel). The child starts its own."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
