"""The libraries ember is measured against: which are installed, their versions, threads.

Every peer is optional except NumPy (ember's own CPU backend). A peer that is missing is
reported as "not installed"; one left out on purpose (``--skip``, quick mode) as
"skipped"; GPU workloads need CuPy with a device (ember's GPU backend, and the "cupy"
cells: the NumPy cells' code on CuPy arrays) and torch.cuda for the torch cells.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

# peer name -> the module it needs
PEER_MODULES = {"ember": "ember", "numpy": "numpy", "cupy": "cupy", "torch": "torch",
                "torch.compile": "torch", "numba": "numba", "jax": "jax"}


def threads() -> int:
    """The worker threads ember's kernels use (its pool has os.cpu_count() workers)."""
    return os.cpu_count() or 1


def installed(peer: str) -> bool:
    module = PEER_MODULES[peer]
    if module in sys.modules:  # imported already (or a stand-in put there)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def unavailable(peer: str, skip: frozenset[str] | set[str], device: str = "cpu") -> str:
    """Why ``peer`` can't run here ("" when it can)."""
    if peer in skip:
        return "skipped"
    if not installed(peer):
        return "not installed"
    if device == "cpu" and peer == "cupy":
        return "n/a on CPU"
    if device != "cpu":
        if peer in ("numpy", "numba", "jax"):
            return "n/a on GPU"
        if peer in ("ember", "cupy") and not cuda_available():
            return "skipped: no CUDA GPU"
        if peer.startswith("torch") and not torch_cuda_available():
            return "skipped: torch has no CUDA"
    return ""


def cuda_available() -> bool:
    """A CUDA device that CuPy can reach (ember's GPU backend)."""
    return not cuda_unavailable_reason()


@lru_cache(maxsize=None)
def cuda_unavailable_reason() -> str:
    """Why there is no CUDA GPU for the GPU variants ("" when there is one)."""
    try:
        import cupy
    except Exception as e:  # not installed, or a CuPy built for another CUDA
        return f"CuPy does not import ({type(e).__name__}: {_first_line(e)})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        return f"CuPy finds no CUDA device ({type(e).__name__}: {_first_line(e)})"
    return "" if count > 0 else "CuPy finds no CUDA device (0 devices)"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


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


def configure_gpu() -> list[str]:
    """The same float32 arithmetic for every GPU peer: torch's TF32 off (cuDNN convolutions
    default to it; CuPy's cuBLAS and ember don't use it); say what was set."""
    said = []
    if installed("torch") and torch_cuda_available():
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        said.append("torch: TF32 off (torch.backends.cuda.matmul.allow_tf32 = "
                    "torch.backends.cudnn.allow_tf32 = False): full float32, as CuPy and ember")
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
    if not out.get("torch", "not").startswith(("not", "broken")) and torch_cuda_available():
        import torch
        out["torch"] += f" (CUDA {torch.version.cuda})"
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
    """The device's name, memory and CUDA versions (CuPy's runtime, the driver)."""
    if not cuda_available():
        return "none"
    import cupy
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        text = name.decode() if isinstance(name, bytes) else str(name)
        if props.get("totalGlobalMem"):
            text += f", {props['totalGlobalMem'] / 2**30:.0f} GiB"
    except Exception:  # the name is decoration; the device itself was found
        text = "CUDA device"
    try:
        rt = cupy.cuda.runtime.runtimeGetVersion()
        drv = cupy.cuda.runtime.driverGetVersion()
        text += (f"; CUDA runtime {rt // 1000}.{rt % 1000 // 10}, "
                 f"driver {drv // 1000}.{drv % 1000 // 10}")
    except Exception:
        pass
    return text
