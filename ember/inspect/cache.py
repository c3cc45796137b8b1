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

from ember.tracer.key import CallKey, ScalarKey, TensorKey, leaf
from ember.tracer.segments import segments

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
             f" (limit {cf.limit()}); {c['calls']} calls, {c['compiles']} compiles, "
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


def describe_key(key: CallKey) -> str:
    """A call key in words: each argument leaf, grad mode, and which tensor arguments
    alias (see ember/tracer/key.py)."""
    key = CallKey(*key)   # the fields, named (a plain tuple on the hot path)
    leaves = [_leaf(leaf(part)) for part in key.leaves]
    rest = []
    alias = key.aliasing
    if alias is not None:
        rest.append(f"tensor arguments alias: same tensor {list(alias.same_tensor)}, "
                    f"same memory {list(alias.same_memory)}")
    text = (f"args {', '.join(leaves) if leaves else '(none)'}; "
            f"grad mode {'on' if key.grad_enabled else 'off'}")
    return "; ".join([text] + rest)


def _leaf(part) -> str:
    if isinstance(part, TensorKey):
        npd = np.dtype(part.dtype)
        elems = tuple(s // npd.itemsize for s in part.strides)
        text = (f"{_SHORT.get(npd.name, npd.name)}[{','.join(map(str, part.shape))}] "
                f"strides ({','.join(map(str, elems))}) {part.device}")
        return text + (" requires_grad" if part.requires_grad else "")
    if isinstance(part, ScalarKey):
        return f"{part.type_name} {part.value!r}"
    return f"a {part.type.__name__} (its contents are guards)"


def _graphs(entry) -> int:
    return sum(seg.graph is not None for seg in segments(entry.root))
