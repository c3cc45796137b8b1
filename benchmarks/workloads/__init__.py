"""The workload families, one module each; ``build`` makes the selected workloads.

Each family module has ``SIZES`` (full mode), ``QUICK_SIZES`` (CI: tiny, only checks
that everything runs) and ``workloads(sizes, device) -> list[Workload]``; a family with
GPU variants may set ``GPU_SIZES`` / ``GPU_QUICK_SIZES`` for cuda (else the CPU's).
"""
from __future__ import annotations

from fnmatch import fnmatch
from types import ModuleType

from benchmarks.harness import Workload
from benchmarks.workloads import chain, cnn, compile_time, copy, dynamic, gpt, mlp, norms
from benchmarks.workloads import overhead, sampling, varlen, warm_start

FAMILIES: dict[str, ModuleType] = {
    "chain": chain, "norms": norms, "copy": copy, "mlp": mlp, "cnn": cnn, "gpt": gpt,
    "overhead": overhead, "compile": compile_time, "warm": warm_start, "dynamic": dynamic,
    "varlen": varlen, "sampling": sampling}
GPU_FAMILIES = ("chain", "norms", "copy", "mlp", "cnn")
DEVICES = ("cpu", "cuda")


def build(only: list[str] | None = None, sizes: dict[str, list[str]] | None = None,
          quick: bool = False, gpu: bool = False, cpu: bool = True) -> list[Workload]:
    """Workloads of the chosen families and sizes, CPU first, then GPU variants.

    ``sizes`` maps a family to its sizes on every device, or ``"family@cuda"`` (or
    ``@cpu``) to its sizes on one device; the rest take the family's defaults."""
    sizes = sizes or {}
    out: list[Workload] = []
    devices = (["cpu"] if cpu else []) + (["cuda"] if gpu else [])
    for device in devices:
        for family, module in FAMILIES.items():
            if device != "cpu" and family not in GPU_FAMILIES:
                continue
            chosen = (sizes.get(f"{family}@{device}") or sizes.get(family)
                      or default_sizes(module, quick, device))
            for w in module.workloads(chosen, device):
                if selected(w, only):
                    out.append(w)
    return out


def default_sizes(module: ModuleType, quick: bool, device: str = "cpu") -> list[str]:
    cpu = module.QUICK_SIZES if quick else module.SIZES
    if device == "cpu":
        return cpu
    return getattr(module, "GPU_QUICK_SIZES" if quick else "GPU_SIZES", cpu)


def selected(w: Workload, only: list[str] | None) -> bool:
    """``--only`` takes family names, workload names, their prefixes, or glob patterns."""
    if not only:
        return True
    return any(pat == w.family or w.name.startswith(pat) or fnmatch(w.name, pat)
               for pat in only)
