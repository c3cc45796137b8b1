"""The compiled code checked against eager: once per plan, and kernel by kernel in verify mode.

A new plan's first run uses the inputs of the call that was just traced, so its results
must equal the eager results that call returned; if not, the signature runs eagerly
(``Mismatch``). ``mode="verify"`` runs every kernel beside the reference interpreter and
names the first that differs (``VerificationError``, with a repro script when the
inspector writes one).

>>> check_against_eager(trace, env, result)    # raises Mismatch
"""
from __future__ import annotations

import numpy as np

from ember.ir.interpreter import interpret
from ember.ops.registry import OPS
from ember.runtime.memory import release_when_freed
from ember.tensor import Tensor, array_of
from ember.tracer import events, pytree
from ember.tracer.options import VerificationError


class Mismatch(Exception):
    """A compiled result differed from eager's (the message says where)."""


# The first-run check's tolerance per type: float16/bfloat16 results of float32 kernels
# may round one ulp (2**-10, 2**-7 relative) away from NumPy's.
_CHECK_TOL = {"float16": 2e-3, "bfloat16": 2e-2, "float32": 1e-4, "float64": 1e-9,
              "complex64": 1e-4, "complex128": 1e-9}


def close(a, b, floor: float = 0.0) -> bool:
    """Equal arrays (floats within their dtype's tolerance, or ``floor`` if looser;
    NaNs equal)."""
    a, b = (np.asarray(x.get() if hasattr(x, "__cuda_array_interface__") else x)
            for x in (a, b))   # CuPy arrays come to the host to be compared
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    tol = _CHECK_TOL.get(a.dtype.name)
    if tol is None:
        return _close(a, b, None, None)
    tol = max(tol, floor)
    # The absolute tolerance scales with the largest magnitude: a sum's rounding error
    # follows its terms, not its result, so an element that cancels to near zero in a
    # weight gradient whose largest is 99 is off by 2e-4 (fast_neural_style's deconv),
    # well within float32's rounding of that sum, yet past a fixed 1e-4.
    scale = 1.0
    if a.size and a.dtype.kind in "fc":
        # (finite values only, without NumPy's all-NaN warning, which a caller's
        # warnings-as-errors filter turned into a failed build)
        mag = np.abs(b.astype(np.float32) if b.dtype.kind == "V" else b)
        scale = max(1.0, float(np.max(mag, initial=0.0, where=np.isfinite(mag))))
    return _close(a, b, tol, tol * scale)


def precision_floor(graph) -> float:
    """The loosest tolerance of the floating types a graph computes in: a float32 result
    that adds in a float16 value (autocast's residual ``x + mlp(x)``) is exact only to
    one float16 ulp, which a fused kernel may round differently from eager's per-op
    rounding (seen: 4.9e-4 at 1.42 on nanoGPT's Block, against float32's 1e-4)."""
    return max((_CHECK_TOL.get(graph[n].dtype.name, 0.0) for n in graph.nodes()),
               default=0.0)


_CHUNK = 1 << 18   # elements compared at once: allclose's temporaries stay ~1 MB each


def _close(a, b, tol, atol) -> bool:
    """``close`` block by block along the leading axes, so that checking a 100 MB saved
    value does not allocate several more of that size (a first call's peak)."""
    if a.size > _CHUNK and a.ndim:
        n = a.shape[0]
        if n == 1:
            return _close(a[0], b[0], tol, atol)
        step = max(1, n * _CHUNK // a.size)
        return all(_close(a[i:i + step], b[i:i + step], tol, atol) for i in range(0, n, step))
    if tol is not None:
        if a.dtype.kind == "V":   # bfloat16 (ml_dtypes): compared as float32
            a, b = a.astype(np.float32), b.astype(np.float32)
        return bool(np.allclose(a, b, rtol=tol, atol=atol, equal_nan=True))
    return bool(np.array_equal(a, b))


def result_tensors(leaves: list) -> list:
    """The distinct tensors among a result's leaves, in order (one graph output each)."""
    seen, out = set(), []
    for _, v in leaves:
        if isinstance(v, Tensor) and id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def check_against_eager(trace, env: dict, result) -> None:
    """The first compiled run must equal the eager result of the same call."""
    g = trace.graph
    if trace.written:   # the attributes the call assigned: outputs too
        result = pytree.AttrWrites(result, [(ref, name, ref().__dict__.get(name))
                                            for ref, name in trace.written])
    leaves, _ = pytree.flatten(result, results=True)
    tensors = result_tensors(leaves)
    for t in tensors:   # the eager result holds the traced run's graph until it goes
        release_when_freed(t)
    if any(g[n].op in OPS and OPS[g[n].op].impure for n in g.nodes()):
        return  # random draws differ between the two runs by design
    floor = precision_floor(g)
    for i, (t, nid) in enumerate(zip(tensors, g.outputs)):
        if nid in g.sources:
            continue
        if not close(env[nid], t._host(), floor):
            raise Mismatch(f"compiled output {i} differed from eager on the first call "
                           f"(node %{nid}, {g[nid].src}); this signature runs eagerly")


def verify_segment(owner, seg, env: dict) -> None:
    """mode="verify": run kernel by kernel beside the interpreter; name the first that differs."""
    g = seg.graph
    for nid in g.inputs:
        if nid not in env and g.sources[nid].kind == "captured":
            env[nid] = array_of(g.sources[nid].tensor)
    inputs = {n: env[n] for n in g.inputs}
    ref = interpret(g, inputs)
    local = dict(inputs)
    local.update(seg.plan.consts)
    for step, info in zip(seg.plan.steps, seg.plan.kernels):
        step(local)
        for n in info.nodes:
            if n in local and not close(local[n], ref[n]):
                diff = np.nanmax(np.abs(np.asarray(local[n], float) - np.asarray(ref[n], float)))
                msg = (f"ember.compile(mode='verify') of {owner.__name__}: kernel {info.name} "
                       f"({info.backend}: {'+'.join(info.ops)}) computed %{n} differently from "
                       f"eager; max abs diff {diff}"
                       f"\n  source lines: {', '.join(info.src) or '?'}")
                repro = events.ask("verify_failed", owner, seg, inputs, info, msg)
                raise VerificationError(f"{msg}\n  {repro or 'repro: none written'}")
