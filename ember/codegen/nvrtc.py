"""Compile CUDA C to GPU machine code without a GPU: NVRTC through ctypes.

The generated CUDA kernels (``ember.codegen.cuda``) are checked on machines without a
GPU by compiling them to SASS for a real architecture (sm_90 by default) and looking for
their entry points in the resulting CUBIN, an ELF file. NVRTC comes from the pip package
``nvidia-cuda-nvrtc`` (pinned in the ``test`` extra); CuPy's own compile helpers ask for
a device, this does not.

    >>> cubin, log = compile_cubin('extern "C" __global__ void k(float* y) { y[0] = 1; }')
    >>> "k" in cubin_functions(cubin)
    True
"""
from __future__ import annotations

import ctypes
import glob
import os
import struct
import threading
import warnings
from importlib import metadata

__all__ = ["NvrtcError", "cached_cubin", "compile_cubin", "compile_entry_points",
           "cubin_functions", "find_nvrtc", "nvrtc_version"]

DEFAULT_ARCH = "sm_90"
PACKAGE = "nvidia-cuda-nvrtc"
# Where else pip puts NVRTC: the CUDA 12 wheel CuPy's cupy-cuda12x pulls in.
PACKAGES = (PACKAGE, "nvidia-cuda-nvrtc-cu12")


class NvrtcError(RuntimeError):
    """NVRTC is missing, or it rejected a program (the message holds its log)."""


def compile_cubin(source: str, arch: str = DEFAULT_ARCH, name: str = "ember.cu",
                  options: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """Compile CUDA C ``source`` to a CUBIN for ``arch``; returns ``(cubin, log)``.

    Raises ``NvrtcError`` with NVRTC's log when the source does not compile.

        >>> cubin, _ = compile_cubin('extern "C" __global__ void k() {}', arch="sm_90")
        >>> cubin[:4]
        b'\\x7fELF'
    """
    lib = _library()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(),
                                       0, None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", "--std=c++17", *options]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        log = _log(lib, prog)
        if status != 0:
            raise NvrtcError(f"NVRTC could not compile {name} for {arch} "
                             f"({_error_string(lib, status)}):\n{log}")
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
        if size.value == 0:
            # A virtual architecture (compute_90) gives PTX only, no CUBIN.
            raise NvrtcError(f"NVRTC made no CUBIN for {arch}: name a real architecture "
                             "such as sm_90")
        buf = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
        return buf.raw, log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_entry_points(source: str, entries: list[str], arch: str = DEFAULT_ARCH) -> bytes:
    """Compile ``source`` to a CUBIN for ``arch`` and check that it defines every kernel
    named in ``entries`` (``extern "C"`` names); returns the CUBIN.

        >>> cubin = compile_entry_points('extern "C" __global__ void k() {}', ["k"])
    """
    cubin, _ = compile_cubin(source, arch)
    missing = [e for e in entries if e not in cubin_functions(cubin)]
    if missing:
        raise NvrtcError(f"the CUBIN for {arch} lacks the entry points {missing}")
    return cubin


def cubin_functions(cubin: bytes) -> set[str]:
    """Names of the functions (kernels and non-inlined device functions) a CUBIN defines,
    read from its ELF symbol table."""
    return {name for name, kind, defined in _elf_symbols(cubin) if kind == _STT_FUNC and defined}


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor) version."""
    lib = _library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def find_nvrtc() -> str:
    """Path of libnvrtc: ``$EMBER_NVRTC`` if set, else the one inside the pip package."""
    env = os.environ.get("EMBER_NVRTC")
    if env:
        return env
    for package in PACKAGES:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        found = _library_in(dist)
        if found:
            return found
    raise NvrtcError(f"NVRTC not found: pip install '{PACKAGE}' (or set EMBER_NVRTC to a "
                     "libnvrtc.so)")


def _library_in(dist: metadata.Distribution) -> str | None:
    # The package lays it out as nvidia/cu13/lib/libnvrtc.so.13 (CUDA 13) or
    # nvidia/cuda_nvrtc/lib/libnvrtc.so.12 (CUDA 12); libnvrtc-builtins sits beside it.
    for f in dist.files or []:
        base = os.path.basename(str(f))
        windows = base.startswith("nvrtc64_") and base.endswith(".dll")
        if base.startswith("libnvrtc.so") or windows:
            return str(dist.locate_file(f))
    root = str(dist.locate_file("nvidia"))
    found = sorted(glob.glob(os.path.join(root, "**", "libnvrtc.so*"), recursive=True))
    return found[0] if found else None


def cached_cubin(source: str, arch: str, entries: list[str],
                 options: tuple[str, ...] = ()) -> bytes:
    """The CUBIN of ``source`` for ``arch`` from ember's persistent cache
    (``ember/diskcache.py``), else compiled by NVRTC and stored there. The key covers
    the source, the architecture, the options and NVRTC's version (with ember's, as
    every key); an entry is checked (checksum, key) before it is used, and a CUBIN
    that is not an ELF file defining every name in ``entries`` is dropped and rebuilt
    with a warning, so nothing unchecked reaches the driver. Without a cache
    (``EMBER_CACHE_DIR=``) it just compiles. Raises ``NvrtcError`` as ``compile_cubin``.

        >>> cubin = cached_cubin('extern "C" __global__ void k() {}', "sm_90", ["k"])
        >>> "k" in cubin_functions(cubin)
        True
    """
    from ember.diskcache import CacheWarning, default_cache

    cache = default_cache()
    key = None
    if cache is not None:
        major, minor = nvrtc_version()
        key = cache.key("cuda-cubin", source, arch, f"nvrtc {major}.{minor}", *options)
        cubin = cache.get(key)
        if cubin is not None:
            if _defines(cubin, entries):
                return cubin
            cache.stats.rejected += 1
            warnings.warn(f"ember cache: the CUBIN under {key[:16]} lacks the entry points "
                          f"{entries}; rebuilding it", CacheWarning, stacklevel=2)
    from ember.codegen.phases import phase   # (here: the NVRTC worker loads this file alone)
    with phase("cuda"):   # a compile's share of the plan build (explain, code_builds)
        cubin, _ = compile_cubin(source, arch, options=options)
    if not _defines(cubin, entries):
        raise NvrtcError(f"the CUBIN for {arch} lacks the entry points {entries}")
    if cache is not None:
        cache.put(key, cubin, "cubin")
    return cubin


def _defines(cubin: bytes, entries: list[str]) -> bool:
    try:
        return set(entries) <= cubin_functions(cubin)
    except (ValueError, IndexError, struct.error):   # not an ELF64 file
        return False


# ---- plumbing -------------------------------------------------------------------------

_LIB: ctypes.CDLL | None = None
_LOCK = threading.Lock()


def _library() -> ctypes.CDLL:
    global _LIB
    with _LOCK:
        if _LIB is None:
            path = find_nvrtc()
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                raise NvrtcError(f"could not load NVRTC from {path}: {e}") from e
            vp, sz = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
            for fname, args in {
                    "nvrtcCreateProgram": [ctypes.POINTER(vp), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, vp, vp],
                    "nvrtcCompileProgram": [vp, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
                    "nvrtcDestroyProgram": [ctypes.POINTER(vp)],
                    "nvrtcGetProgramLogSize": [vp, sz],
                    "nvrtcGetProgramLog": [vp, ctypes.c_char_p],
                    "nvrtcGetCUBINSize": [vp, sz],
                    "nvrtcGetCUBIN": [vp, ctypes.c_char_p],
                    "nvrtcVersion": [ctypes.POINTER(ctypes.c_int)] * 2}.items():
                fn = getattr(lib, fname)
                fn.argtypes, fn.restype = args, ctypes.c_int
            lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            _LIB = lib
    return _LIB


def _check(lib: ctypes.CDLL, status: int, what: str) -> None:
    if status != 0:
        raise NvrtcError(f"{what} failed: {_error_string(lib, status)}")


def _error_string(lib: ctypes.CDLL, status: int) -> str:
    s = lib.nvrtcGetErrorString(status)
    return s.decode() if s else f"NVRTC error {status}"


def _log(lib: ctypes.CDLL, prog: ctypes.c_void_p) -> str:
    size = ctypes.c_size_t()
    if lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0 or size.value <= 1:
        return ""
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, buf)
    return buf.value.decode(errors="replace")


# ---- a minimal ELF64 symbol-table reader ----------------------------------------------

_SHT_SYMTAB = 2
_STT_FUNC = 2
_SHN_UNDEF = 0


def _elf_symbols(data: bytes) -> list[tuple[str, int, bool]]:
    """(name, symbol type, defined) for every entry of the ELF64 file's symbol tables."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    endian = "<" if data[5] == 1 else ">"
    (shoff,) = struct.unpack_from(endian + "Q", data, 0x28)
    shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x3A)
    sections = []
    for i in range(shnum):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, ...
        sections.append(struct.unpack_from(endian + "IIQQQQIIQQ", data, shoff + i * shentsize))
    out = []
    for _, sh_type, _, _, off, size, link, _, _, entsize in sections:
        if sh_type != _SHT_SYMTAB:
            continue
        str_off = sections[link][4]
        for pos in range(off, off + size, entsize or 24):
            # st_name, st_info, st_other, st_shndx, st_value, st_size
            st_name, st_info, _, st_shndx, _, _ = struct.unpack_from(endian + "IBBHQQ", data, pos)
            end = data.index(b"\0", str_off + st_name)
            name = data[str_off + st_name:end].decode(errors="replace")
            out.append((name, st_info & 0xF, st_shndx != _SHN_UNDEF))
    return out
