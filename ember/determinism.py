"""``ember.use_deterministic_algorithms`` and its queries (PyTorch's names).

What ember guarantees without the switch: its CPU kernels (compiled, native and eager
NumPy) give bitwise equal results run to run. A parallel CPU kernel splits only its
outer loop over threads, every output element is written by one thread, and each
reduction runs in a fixed order inside one share, so results are also equal across
``ember.set_num_threads`` settings (tests/test_api_more.py checks both). On CUDA,
generated kernels use no atomics, but eager ops that CuPy runs with atomic adds
(scatter/index add, embedding backward) may round differently run to run; ember does
not refuse them when determinism is asked for, so the switch is recorded and reported
only, as ``warn_only=True`` would be in PyTorch minus the warning.

>>> import ember
>>> ember.use_deterministic_algorithms(True)
>>> ember.are_deterministic_algorithms_enabled()
True
"""
from __future__ import annotations

_enabled = False
_warn_only = False


def _bool_arg(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"_set_deterministic_algorithms(): argument '{name}' must be "
                        f"bool, not {type(value).__name__}")
    return value


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Ask for deterministic algorithms (torch.use_deterministic_algorithms).

    >>> ember.use_deterministic_algorithms(False)
    """
    global _enabled, _warn_only
    _enabled = _bool_arg(mode, "mode")
    _warn_only = _bool_arg(warn_only, "warn_only")


def are_deterministic_algorithms_enabled() -> bool:
    """Whether ``use_deterministic_algorithms(True)`` is in force."""
    return _enabled


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    """Whether the last ``use_deterministic_algorithms`` call passed ``warn_only=True``."""
    return _warn_only


def set_deterministic_debug_mode(debug_mode: str | int) -> None:
    """PyTorch's alternative switch: "default"/0 off, "warn"/1 warn only, "error"/2 on.

    >>> ember.set_deterministic_debug_mode("default")
    """
    names = {"default": 0, "warn": 1, "error": 2}
    if isinstance(debug_mode, str):
        if debug_mode not in names:
            raise RuntimeError("invalid value of debug_mode, expected one of `default`, "
                               f"`warn`, `error`, but got {debug_mode}")
        debug_mode = names[debug_mode]
    if isinstance(debug_mode, bool) or not isinstance(debug_mode, int):
        raise TypeError(f"debug_mode must be str or int, but got {type(debug_mode)}")
    if debug_mode not in (0, 1, 2):
        raise RuntimeError("invalid value of debug_mode, expected 0, 1, or 2, but got "
                           f"{debug_mode}")
    use_deterministic_algorithms(debug_mode != 0, warn_only=debug_mode == 1)


def get_deterministic_debug_mode() -> int:
    """0, 1 or 2 as ``set_deterministic_debug_mode`` takes them."""
    return 0 if not _enabled else (1 if _warn_only else 2)
