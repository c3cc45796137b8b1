"""Process-wide switches of ``ember.compile``: eager mode, the compile lock, its errors.

>>> ember.set_eager(True)          # every compiled function runs as plain Python
>>> with ember.eager_mode(): ...   # ... or only inside the block
"""
from __future__ import annotations

import os
import threading

DEFAULT_CACHE_LIMIT = 8
# Entries kept by default once a function's sizes vary (``dynamic``): they share machine
# code and working memory, ~1 MB each for an MLP training step, and a loop cycling
# through more distinct sizes than the limit would trace every call (as torch's
# accumulated_cache_size_limit lets more entries live than cache_size_limit).
DYNAMIC_CACHE_LIMIT = 64


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off, any case."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


global_eager = [env_flag("EMBER_EAGER")]
# Tracing and building plans touch process-wide state (the LLVM JIT, the random number
# generator saved around first runs, the inspector's records): one thread at a time.
COMPILE_LOCK = threading.RLock()


class CompileError(RuntimeError):
    """Raised with fullgraph=True where ember would otherwise fall back or split."""


class VerificationError(AssertionError):
    """mode="verify": a compiled kernel's output differs from eager."""


def set_eager(flag: bool = True) -> None:
    """Run every compiled function as plain Python (for debuggers and prints).

    >>> ember.set_eager(True)
    """
    global_eager[0] = bool(flag)


class eager_mode:
    """``with ember.eager_mode(): ...`` runs compiled functions eagerly inside the block."""

    def __enter__(self):
        self._prev = global_eager[0]
        global_eager[0] = True

    def __exit__(self, *exc):
        global_eager[0] = self._prev
