"""``ember.backends.cpu``: what the CPU backend vectorizes for, as ``torch.backends.cpu``."""
from __future__ import annotations


def get_cpu_capability() -> str:
    """The widest vector instruction set the LLVM backend targets here ("AVX512",
    "AVX2" or "DEFAULT"), from LLVM's host features."""
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
    except Exception:   # a missing LLVM only costs this report
        return "DEFAULT"
    if features.get("avx512f"):
        return "AVX512"
    if features.get("avx2"):
        return "AVX2"
    return "DEFAULT"
