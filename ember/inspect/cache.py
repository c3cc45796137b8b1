"""The cache of a compiled function: each entry's guard key and why the entry exists.

A compiled function keeps one entry per guard key (argument structure, tensor shapes,
dtypes, devices, strides and requires_grad, Python values, grad mode, train/eval). An
entry is made by the first call, or by a call whose key differs: the reason names the
guard that failed, as ``EMBER_LOGS=recompiles`` does.

>>> f = ember.compile(lambda x: x + 1)
>>> f(ember.ones(2, 3)); f(ember.ones(4, 3))
>>> print(f.cache_report())
<lambda>: 2 cache entries (limit 8); 2 calls, 2 compiles, 0 cache hits, 0 eager calls
  [0] first call
      guard: args f32[2,3] strides (3,1) cpu; grad mode on
      state: traced once (the next call traces again to check Python state)
  [1] recompile: argument 0 shape [2,3] -> [4,3]
  ...
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ember.tracer.compile import CompiledFunction

_SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8",
          "float16": "f16", "int8": "i8", "uint8": "u8", "int16": "i16"}
_STATES = {"second": "traced once (the next call traces again to check Python state)",
           "ready": "compiled", "eager": "runs eagerly (see the fallbacks)"}


_GUARDS_SHOWN = 6


def cache_report(cf: CompiledFunction) -> str:
    """Every cache entry of compiled function ``cf``: guard key, reason, state, hits."""
    c = cf.counters
    lines = [f"{cf.record.name}: {len(cf.cache)} cache entr{'y' if len(cf.cache) == 1 else 'ies'}"
             f" (limit {cf.cache_limit}); {c['calls']} calls, {c['compiles']} compiles, "
             f"{c['cache_hits']} cache hits, {c['eager_calls']} eager calls"]
    for i, ((key, _), entry) in enumerate(cf.cache.items()):
        rec = cf.record.entry_of(entry)
        reason = rec.reason if rec else "?"
        lines.append(f"  [{i}] {reason if reason == 'first call' else 'recompile: ' + reason}")
        lines.append(f"      guard: {describe_key(key)}")
        if entry.guards is not None and entry.guards.where:
            g = entry.guards
            shown = [f"{w} == {e}" for w, e in zip(g.where, g.expected)][:_GUARDS_SHOWN]
            more = len(g.where) - len(shown)
            lines.append(f"      python state ({len(g.where)} guards): {'; '.join(shown)}"
                         + (f"; ... {more} more (f.guards() lists all)" if more > 0 else ""))
        graphs = _graphs(entry)
        state = _STATES.get(entry.state, entry.state)
        lines.append(f"      state: {state}; {graphs} graph(s)"
                     + (f"; {rec.hits} hit(s)" if rec else ""))
    return "\n".join(lines)


def describe_key(key: tuple) -> str:
    """A guard key in words: each argument leaf, grad mode, train/eval of modules, and the
    other guards compile.py adds after the leaves (optimizer settings ...)."""
    leaves, rest = [], []
    for part in key[2:]:
        if isinstance(part, tuple) and part and part[0] in ("T", "V", "O") and len(part) > 1:
            leaves.append(_leaf(part))
        elif isinstance(part, tuple) and part and part[0] == "A":
            if part[1] != tuple(range(len(part[1]))) or part[2] != tuple(range(len(part[2]))):
                rest.append(f"tensor arguments alias: same tensor {list(part[1])}, "
                            f"same memory {list(part[2])}")
        elif isinstance(part, tuple) and all(isinstance(t, bool) for t in part):
            if part:
                rest.append(f"{len(part)} module(s), {sum(part)} in train mode")
        elif part not in ((), None):
            text = repr(part)
            rest.append(f"other guard {text if len(text) < 80 else text[:77] + '...'}")
    text = (f"args {', '.join(leaves) if leaves else '(none)'}; "
            f"grad mode {'on' if key[1] else 'off'}")
    return "; ".join([text] + rest)


def _leaf(part: tuple) -> str:
    kind = part[0]
    if kind == "T":
        shape, dtype_str, device, requires_grad, strides = part[1:6]
        npd = np.dtype(dtype_str)
        elems = tuple(s // npd.itemsize for s in strides)
        text = (f"{_SHORT.get(npd.name, npd.name)}[{','.join(map(str, shape))}] "
                f"strides ({','.join(map(str, elems))}) {device}")
        return text + (" requires_grad" if requires_grad else "")
    if kind == "V":
        return f"{part[1]} {part[2]!r}"
    return f"a {part[1].__name__} (its contents are guards)"


def _graphs(entry) -> int:
    count, stack = 0, [entry.root] if entry.root is not None else []
    while stack:
        seg = stack.pop()
        count += seg.graph is not None
        stack.extend(seg.children.values())
    return count
