"""``ember.compiler``: asking about and steering ``ember.compile`` from user code, as
``torch.compiler``.

>>> ember.compiler.is_compiling()
False
"""
from __future__ import annotations

import functools
from typing import Callable

__all__ = ["is_compiling", "is_dynamo_compiling", "disable", "allow_in_graph", "reset"]


def is_compiling() -> bool:
    """True while ``ember.compile`` traces the calling code in this thread. A branch on
    it is fixed in the trace: compiled replays take the traced side."""
    from ember import dispatch
    return dispatch.tracer is not None


is_dynamo_compiling = is_compiling


def disable(fn: Callable | None = None, recursive: bool = True, *, reason: str | None = None):
    """Keep ``fn`` out of compiled code, as ``torch.compiler.disable``: where a compiled
    function calls it, that signature runs eagerly (its Python, side effects included, at
    every call), with the reason in ``stats()["fallbacks"]``; ``fullgraph=True`` raises.
    torch compiles the code around it instead; ember's trace has no place to resume
    Python in the middle of a replay, so the whole call runs as written.

    >>> @ember.compiler.disable
    ... def log(x):
    ...     print(float(x.sum()))
    ...     return x
    """
    if fn is None:
        return lambda f: disable(f, recursive, reason=reason)
    what = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def run_as_written(*args, **kwargs):
        from ember import dispatch
        tracer = dispatch.tracer
        if tracer is not None:
            tracer.fail(f"{what} is marked ember.compiler.disable"
                        + (f" ({reason})" if reason else ""))
        return fn(*args, **kwargs)
    return run_as_written


def allow_in_graph(fn: Callable) -> Callable:
    """``fn`` unchanged, as ``torch.compiler.allow_in_graph`` asks: torch then puts the
    call in its graph without tracing into it; ember records what every call really
    executes, ``fn``'s ops included, so it needs no mark (einops registers its functions
    so).

    >>> f = ember.compiler.allow_in_graph(lambda x: x * 2)
    """
    return fn


def reset() -> None:
    """Forget every compiled function's entries (``torch.compiler.reset``): the next call
    of each traces and compiles again; machine code already made is reused."""
    from ember.tracer.compile import reset_all
    reset_all()
