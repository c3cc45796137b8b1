"""The workload families, one module each; ``build`` makes the selected workloads.

Each family module has ``SIZES`` (full mode), ``QUICK_SIZES`` (CI: tiny, only checks
that everything runs) and ``workloads(sizes, device) -> list[Workload]``.
"""
from __future__ import annotations

from fnmatch import fnmatch
from types import ModuleType

from benchmarks.harness import Workload
from benchmarks.workloads import chain, cnn, compile_time, copy, mlp, norms, overhead

FAMILIES: dict[str, ModuleType] = {
    "chain": chain, "norms": norms, "copy": copy, "mlp": mlp, "cnn": cnn,
    "overhead": overhead, "compile": compile_time}
GPU_FAMILIES = ("chain", "norms", "copy", "mlp", "cnn")


def build(only: list[str] | None = None, sizes: dict[str, list[str]] | None = None,
          quick: bool = False, gpu: bool = False) -> list[Workload]:
    """Workloads of the chosen families and sizes, CPU first, then GPU variants."""
    sizes = sizes or {}
    out: list[Workload] = []
    devices = ["cpu"] + (["cuda"] if gpu else [])
    for device in devices:
        for family, module in FAMILIES.items():
            if device != "cpu" and family not in GPU_FAMILIES:
                continue
            chosen = sizes.get(family) or (module.QUICK_SIZES if quick else module.SIZES)
            for w in module.workloads(chosen, device):
                if selected(w, only):
                    out.append(w)
    return out


def selected(w: Workload, only: list[str] | None) -> bool:
    """``--only`` takes family names, workload names, their prefixes, or glob patterns."""
    if not only:
        return True
    return any(pat == w.family or w.name.startswith(pat) or fnmatch(w.name, pat)
               for pat in only)
