"""Helpers shared by the workloads: inputs, conversions, and the ember / torch cells.

A workload's function is written once, the way a PyTorch user writes it, as
``make(lib)`` returning ``fn``; ``lib`` is ``ember`` or ``torch`` (ember mirrors
PyTorch), so both libraries run the very same source.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload

MakeFn = Callable[[Any], Callable[..., Any]]
# A workload's NumPy inputs, or what makes them on first use (see ``Lazy``).
Args = Union[list[np.ndarray], Callable[[], list[np.ndarray]]]


class Lazy:
    """Inputs made on first use and kept: building the workloads (``--list``, a GPU-only
    run) stays cheap even where an input is a 256M-element array (1 GiB, seconds)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None

    def __call__(self) -> Any:
        if self._value is None:
            self._value = self._make()
        return self._value


def resolve(np_args: Args) -> list[np.ndarray]:
    return np_args() if callable(np_args) else np_args


def parse_count(text: str) -> int:
    """'16M' -> 16777216, '4K' -> 4096, '128' -> 128 (binary multiples)."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def count_label(n: int) -> str:
    for suffix, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def parse_shape(text: str) -> tuple[int, ...]:
    """'4096x1024' -> (4096, 1024)."""
    return tuple(parse_count(p) for p in text.lower().split("x"))


def to_np(x: Any) -> np.ndarray:
    """An ember, torch, JAX, CuPy or NumPy value as a NumPy array (copied off a GPU).

    CuPy refuses implicit conversion (``np.asarray(cupy_array)`` raises TypeError): its
    arrays come back through ``.get()``."""
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu") and hasattr(x, "numpy"):  # ember and torch tensors
        return np.asarray(x.cpu().numpy())
    if type(x).__module__.startswith("cupy") or (
            hasattr(x, "get") and not isinstance(x, (np.ndarray, np.generic, dict))):
        return np.asarray(x.get())
    return np.asarray(x)


def arrays(out: Any) -> list[np.ndarray]:
    """A call's result (one value or a tuple of them) as a list of NumPy arrays."""
    if isinstance(out, (tuple, list)):
        return [to_np(o) for o in out]
    return [to_np(out)]


def gpu_sync(lib: str, device: str) -> Callable[[], None] | None:
    """What waits for a library's queued GPU work (None on the CPU). Both wait for the
    whole device (cudaDeviceSynchronize), whichever stream the work went to."""
    if device == "cpu":
        return None
    if lib in ("ember", "cupy"):  # ember's GPU backend is CuPy
        import cupy
        return cupy.cuda.runtime.deviceSynchronize
    import torch
    return torch.cuda.synchronize


def ember_compiled_notes(cf: Any) -> Callable[[], list[str]]:
    """After timing: whether ember.compile really replayed compiled code (the reasons,
    when it did not, arrive as ember's warnings in the same cell)."""
    before = cf.stats()["eager_calls"]   # the setup's calls (a new size's first ones
    # run eagerly by design: ember/tracer/admission.py) are not the timed ones

    def notes() -> list[str]:
        s = cf.stats()
        out = []
        if s["eager_calls"] > before or s["fallbacks"]:
            out.append(f"ember.compile stats: {s['calls']} calls, {s['cache_hits']} cache "
                       f"hits, {s['eager_calls']} eager calls, {len(s['fallbacks'])} fallbacks")
        out += [f"graph break: {b}" for b in dict.fromkeys(s["breaks"])]
        return out
    return notes


def ember_tensors(np_args: list[np.ndarray], device: str) -> list[Any]:
    import ember
    return [ember.tensor(a, device=device) for a in np_args]


def torch_tensors(np_args: list[np.ndarray], device: str) -> list[Any]:
    import torch
    return [torch.from_numpy(np.array(a, copy=True)).to(device) for a in np_args]


def library_impls(make: MakeFn, np_args: Args, device: str = "cpu") -> list[Impl]:
    """The four cells that run the shared source: ember (compiled), ember eager, torch
    and torch.compile, each on its own copy of the inputs."""
    def ember_setup(compiled: bool) -> Callable[[], Prepared]:
        def setup() -> Prepared:
            import ember
            fn = make(ember)
            cf = ember.compile(fn) if compiled else fn
            args = ember_tensors(resolve(np_args), device)
            return Prepared(lambda: cf(*args), arrays, sync=gpu_sync("ember", device),
                            notes=ember_compiled_notes(cf) if compiled else None)
        return setup

    def torch_setup(compiled: bool) -> Callable[[], Prepared]:
        def setup() -> Prepared:
            import torch
            fn = make(torch)
            cf = torch.compile(fn) if compiled else fn
            args = torch_tensors(resolve(np_args), device)
            return Prepared(lambda: cf(*args), arrays, sync=gpu_sync("torch", device))
        return setup

    return [Impl("ember", "ember", ember_setup(True)),
            Impl("ember eager", "ember", ember_setup(False)),
            Impl("torch", "torch", torch_setup(False)),
            # torch.compile may recompile on its second call (dynamic shapes): warm longer.
            Impl("torch.compile", "torch.compile", torch_setup(True), warmup=2)]


def jax_impl(fn_factory: Callable[[], Callable[..., Any]], np_args: Args) -> Impl:
    """A jax.jit cell; results are waited for with block_until_ready."""
    def setup() -> Prepared:
        import jax
        fn = jax.jit(fn_factory())
        # JAX runs 32-bit unless x64 is switched on: hand it int32 indices itself
        # instead of having it warn on every int64 array.
        args = [jax.device_put(a.astype(np.int32) if a.dtype == np.int64 else a)
                for a in resolve(np_args)]

        def call() -> Any:
            return jax.block_until_ready(fn(*args))
        return Prepared(call, arrays)
    return Impl("jax.jit", "jax", setup)


def plain_impl(name: str, peer: str, fn_factory: Callable[[], Callable[..., Any]],
               np_args: Args, notes: list[str] | None = None) -> Impl:
    """A cell for a function over NumPy arrays (NumPy itself, Numba)."""
    def setup() -> Prepared:
        fn = fn_factory()
        args = [np.array(a, copy=True) for a in resolve(np_args)]
        return Prepared(lambda: fn(*args), arrays,
                        notes=(lambda: list(notes)) if notes else None)
    return Impl(name, peer, setup)


def cupy_impl(fn_factory: Callable[[Any], Callable[..., Any]], np_args: Args,
              name: str = "cupy", notes: Callable[[], list[str]] | None = None) -> Impl:
    """The NumPy cell's code on the GPU: ``fn_factory(xp)`` with ``xp = cupy``, over
    device copies of the inputs (CuPy eager: one CuPy kernel per operation)."""
    def setup() -> Prepared:
        import cupy
        fn = fn_factory(cupy)
        args = [cupy.asarray(a) for a in resolve(np_args)]
        return Prepared(lambda: fn(*args), arrays, sync=gpu_sync("cupy", "cuda"), notes=notes)
    return Impl(name, "cupy", setup)


def cold_workload(name: str, family: str, title: str, impls: list[Impl]) -> Workload:
    """A workload whose calls time a whole run, compiles included, checked against ember
    eager (its results: a few losses or a final sample)."""
    return Workload(name, family, title, impls, reference="ember eager", unit="s", cold=True,
                    rtol=1e-3, atol=1e-4)


def cold_impls(setup: Callable[[str, bool], Callable[[], Prepared]]) -> list[Impl]:
    """ember compiled and eager, torch eager and torch.compile of a workload whose calls
    time a whole run, compiles included: ``setup(library, compiled)`` makes each."""
    return [Impl("ember", "ember", setup("ember", True)),
            Impl("ember eager", "ember", setup("ember", False)),
            Impl("torch", "torch", setup("torch", False)),
            Impl("torch.compile", "torch.compile", setup("torch", True))]
