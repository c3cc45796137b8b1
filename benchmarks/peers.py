"""The libraries ember is measured against: which are installed, their versions, threads.

Every peer is optional except NumPy (ember's own CPU backend). A peer that is missing is
reported as "not installed"; one left out on purpose (``--skip``, quick mode) as
"skipped"; GPU workloads need CuPy with a device (and torch.cuda for the torch cells).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

# peer name -> the module it needs
PEER_MODULES = {"ember": "ember", "numpy": "numpy", "torch": "torch",
                "torch.compile": "torch", "numba": "numba", "jax": "jax"}


def threads() -> int:
    """The worker threads ember's kernels use (its pool has os.cpu_count() workers)."""
    return os.cpu_count() or 1


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEER_MODULES[peer]) is not None


def unavailable(peer: str, skip: frozenset[str] | set[str], device: str = "cpu") -> str:
    """Why ``peer`` can't run here ("" when it can)."""
    if peer in skip:
        return "skipped"
    if not installed(peer):
        return "not installed"
    if device != "cpu":
        if peer in ("numpy", "numba", "jax"):
            return "n/a on GPU"
        if peer == "ember" and not cuda_available():
            return "skipped: no CUDA GPU"
        if peer.startswith("torch") and not torch_cuda_available():
            return "skipped: torch has no CUDA"
    return ""


@lru_cache(maxsize=None)
def cuda_available() -> bool:
    """A CUDA device that CuPy can reach (ember's GPU backend)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, no device: all mean "no GPU here"
        return False


@lru_cache(maxsize=None)
def torch_cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def configure_threads(n: int) -> list[str]:
    """Give every peer that lets us choose the same thread count as ember; say what was set."""
    said = [f"ember: {n} threads (os.cpu_count())"]
    if installed("torch"):
        import torch
        torch.set_num_threads(n)
        said.append(f"torch: torch.set_num_threads({n})")
    if installed("numba"):
        try:
            import numba
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            said.append(f"numba: numba.set_num_threads({numba.get_num_threads()})")
        except Exception as e:  # a broken numba install is reported, not fatal
            said.append(f"numba: threads not set ({type(e).__name__}: {e})")
    said.append("numpy BLAS and jax (XLA): their own defaults (all cores)")
    return said


def versions() -> dict[str, str]:
    """Installed version of each peer, or "not installed"."""
    out = {}
    for peer, module in PEER_MODULES.items():
        if peer == "torch.compile":
            continue
        if not installed(peer):
            out[peer] = "not installed"
            continue
        try:
            out[peer] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as e:  # importable spec, broken import
            out[peer] = f"broken ({type(e).__name__})"
    return out


def machine() -> dict[str, str | int]:
    """CPU model (from /proc/cpuinfo), cores, Python, and ember's git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, str | int] = {
        "cpu": cpu, "cores": os.cpu_count() or 1,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1,
        "python": platform.python_version(), "platform": platform.platform()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info["ember_commit"] = _git_commit()
    info["gpu"] = _gpu_name()
    return info


def _git_commit() -> str:
    """HEAD of the repository holding ember, marked "+dirty" with local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ember"], cwd=root,
                               text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _gpu_name() -> str:
    if not cuda_available():
        return "none"
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # the name is decoration; the device itself was found
        return "CUDA device"
