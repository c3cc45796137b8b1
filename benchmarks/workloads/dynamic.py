"""Size-generic kernels against static ones: the chain and row softmax compiled with
``dynamic=True`` (loop bounds and strides read at run time, one machine code for every
size) beside ``dynamic=False`` (sizes compiled in), in one process.

The ember cell is the dynamic one, so the "ember static" column is static time over
dynamic time: the aim is at least 0.95 (size-generic code within 5% of static code).
Before it is timed, the dynamic cell (``dynamic=None``, torch.compile's default) runs
at two other row counts, so its rows are dynamic and it is timed on code that was not
compiled for its size.
"""
from __future__ import annotations

from typing import Any, Callable

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads import chain, norms
from benchmarks.workloads.common import (Lazy, arrays, count_label, ember_compiled_notes,
                                         ember_tensors, parse_count, plain_impl, resolve)

SIZES = ["chain:1M", "softmax:4096x1024"]
QUICK_SIZES = ["chain:4K", "softmax:64x32"]
AIM = 0.95   # "ember static" / "ember": read off the ratio column


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        kind, _, size = text.partition(":")
        if kind == "chain":
            n = parse_count(size)
            args = Lazy(lambda n=n: chain.inputs(n))
            other = Lazy(lambda n=n: [chain.inputs(n // 2 + 1), chain.inputs(n // 3 + 1)])
            name, title = f"dynamic_chain_{count_label(n)}", f"the chain, {n:,} float32"
            make, np_fn, nbytes = chain.make_chain, chain.numpy_chain, 8 * n
        else:
            rows, cols = (int(v) for v in size.split("x"))
            args = Lazy(lambda r=rows, c=cols: [norms.inputs(r, c)["x"]])
            other = Lazy(lambda r=rows, c=cols: [[norms.inputs(r // 2 + 1, c)["x"]],
                                                 [norms.inputs(r // 3 + 1, c)["x"]]])
            name, title = (f"dynamic_softmax_{rows}x{cols}",
                           f"row softmax, [{rows}, {cols}] float32")
            make, np_fn, nbytes = norms.make_softmax, norms.numpy_softmax, 8 * rows * cols
        out.append(Workload(
            name, "dynamic", f"{title}: size-generic (dynamic=True) vs static kernels",
            [_ember(make, args, other, True), _ember(make, args, other, False),
             plain_impl("numpy", "numpy", np_fn, args)],
            nbytes=nbytes, device=device))
    return out


def _ember(make: Callable[[Any], Callable], args: Lazy, other: Lazy, dynamic: bool) -> Impl:
    def setup() -> Prepared:
        import ember
        cf = ember.compile(make(ember), dynamic=None if dynamic else False)
        if dynamic:   # two other sizes first: the timed size reuses their code
            for np_args in other():
                _until_replayed(cf, ember_tensors(np_args, "cpu"))
        xs = ember_tensors(resolve(args), "cpu")
        if dynamic:
            _until_replayed(cf, xs)
        return Prepared(lambda: cf(*xs), arrays, notes=ember_compiled_notes(cf))
    return Impl("ember" if dynamic else "ember static", "ember", setup)


def _until_replayed(cf: Any, xs: list) -> None:
    """Call ``cf`` until a call replays compiled code: a new size runs eagerly until
    compiling it pays (ember/tracer/admission.py); this cell times the compiled code."""
    for _ in range(10_000):
        hits = cf.stats()["cache_hits"]
        cf(*xs)
        if cf.stats()["cache_hits"] > hits:
            return
    raise RuntimeError("the dynamic cell never replayed compiled code")
