"""Timing, agreement checks, roofline references and ratios for the benchmark suite.

A ``Workload`` is one measured task (the chain at 1M elements, the MLP training step...)
with one ``Impl`` per library that can run it. ``run_workload`` sets each implementation
up, warms it up, times it over repeats with ``time.perf_counter``, checks its numbers
against the reference implementation, and returns a plain dict (the JSON's shape):

>>> result = run_workload(workload, Config(repeat=5))
>>> result["ratios"]["numpy"]      # NumPy's median time / ember's: > 1 means ember is faster

On a GPU each repeat is bracketed by device synchronizations (``Prepared.sync``:
cudaDeviceSynchronize through CuPy or torch): nothing queued before the repeat is
counted in it, its calls are queued back to back, as a program queues them, and all of
them have finished when the clock stops. Device memory pools are emptied between cells.

Nothing here raises for a failing implementation: its error goes into its cell.
"""
from __future__ import annotations

import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from benchmarks import peers


@dataclass
class Timed:
    """A result that carries its own measured time (cold compiles time only the compile)."""

    seconds: float
    value: Any


@dataclass
class Prepared:
    """One implementation, set up and ready to be called."""

    call: Callable[[], Any]                    # one unit of timed work
    output: Callable[[Any], list[np.ndarray]]  # a call's result as NumPy arrays to check
    state: Callable[[], list[np.ndarray]] | None = None  # stateful: arrays after the checks
    notes: Callable[[], list[str]] | None = None  # read after timing (ember's fallbacks)
    sync: Callable[[], None] | None = None     # GPU: wait for queued work


@dataclass
class Impl:
    """How one library runs a workload; ``peer`` names the package it needs."""

    name: str
    peer: str
    setup: Callable[[], Prepared]
    warmup: int = 0  # extra warm-up calls (torch.compile recompiles on its first steps)


@dataclass
class Workload:
    """One measured task and every implementation of it."""

    name: str
    family: str
    title: str
    impls: list[Impl]
    subject: str = "ember"          # ratios are other implementations' times over this one's
    reference: str = "numpy"        # agreement is checked against this implementation
    reference_fallbacks: tuple[str, ...] = ()  # ... or the first of these that ran
    unit: str = "ms"                # how times are shown: "s", "ms" or "us"
    nbytes: int = 0                 # memory one call must move (read + write)
    gemms: list[tuple[int, int, int]] = field(default_factory=list)  # (M, K, N) per call
    stateful: bool = False          # calls change state: check fresh state over check_calls
    check_calls: int = 1
    rtol: float = 1e-4
    atol: float = 1e-5
    cold: bool = False              # calls return Timed: no warm-up, one call per repeat
    device: str = "cpu"
    aim: float | None = None        # the subject's aimed fraction of the roofline (0.8: 80%)

    @property
    def flops(self) -> int:
        return sum(2 * m * k * n for m, k, n in self.gemms)


@dataclass
class Config:
    """How hard to measure: warm-up calls, repeats and time limits per implementation."""

    repeat: int = 15
    warmup: int = 3          # >= 3: ember traces two calls and replays from the third
    min_repeat_s: float = 0.05   # calls are batched until one repeat takes this long
    max_impl_s: float = 8.0      # repeats are cut (to at least 3) past this much time
    cold_repeat: int = 3
    pause_s: float = 0.2  # idle time before each cell (see _run_impl)
    retries: int = 2      # re-timings of a cell that other processes disturbed
    skip: frozenset[str] = frozenset()


UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}
BUSY_MACHINE = 0.15  # other processes' share of the CPUs above which a cell says so
# Warnings about a library's own API (torch.compile's imports raise some): not results.
_LIBRARY_NOISE = (DeprecationWarning, PendingDeprecationWarning)


def run_workload(w: Workload, cfg: Config) -> dict:
    """Measure every implementation of ``w``; failures become cells, never exceptions."""
    result: dict[str, Any] = {
        "name": w.name, "family": w.family, "title": w.title, "unit": w.unit,
        "device": w.device, "subject": w.subject, "reference": w.reference,
        "bytes": w.nbytes, "flops": w.flops, "rtol": w.rtol, "atol": w.atol,
        "check_calls": w.check_calls if w.stateful else 1, "impls": {}, "roofline": None}
    try:
        result["roofline"] = measure_roofline(w, cfg)
    except Exception as e:  # a reference that can't be measured leaves the fractions out
        result["roofline"] = {"error": _error_text(e)}
    release_device_memory(w.device)
    outputs: dict[str, list[np.ndarray]] = {}
    for impl in w.impls:
        reason = peers.unavailable(impl.peer, cfg.skip, w.device)
        if reason:
            result["impls"][impl.name] = {"status": reason}
            continue
        cell, arrays = _run_impl(w, impl, cfg)
        # The next library starts on an empty device (256M floats are 1 GiB an array).
        release_device_memory(w.device)
        result["impls"][impl.name] = cell
        if arrays is not None:
            outputs[impl.name] = arrays
    _check_agreement(w, result, outputs)
    _add_rates_and_ratios(w, result)
    return result


def release_device_memory(device: str) -> None:
    """On a GPU: collect the last cell's garbage and hand CuPy's and torch's cached device
    memory back, so one library's pool doesn't crowd out the next (no-op on the CPU)."""
    if device == "cpu":
        return
    import gc
    import sys
    gc.collect()
    cupy = sys.modules.get("cupy")
    try:
        if cupy is not None:
            cupy.get_default_memory_pool().free_all_blocks()
    except Exception:  # a CuPy without pools (a stand-in): nothing to hand back
        pass
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _run_impl(w: Workload, impl: Impl, cfg: Config) -> tuple[dict, list[np.ndarray] | None]:
    """Set up, check and time one implementation; returns its cell and checked arrays."""
    cell: dict[str, Any] = {"status": "ok", "notes": []}
    arrays = None
    # OpenMP workers of the previous library (torch's, Numba's) spin for a while after
    # their last parallel region; on a machine with few cores they would take the cores
    # this library is about to be timed on.
    time.sleep(cfg.pause_s)
    meter = MemoryMeter()
    with warnings.catch_warnings(record=True) as caught:
        # Recorded, not raised: an implementation's warnings (ember falling back to eager)
        # belong in its cell, each once (a warning per call would pile up by thousands).
        warnings.simplefilter("default")
        try:
            prep = impl.setup()
            if w.cold:
                samples, arrays = _time_cold(prep, cfg)
            else:
                arrays = _check_run(w, impl, prep, cfg)
                samples, number, other = _time_steady(prep, cfg)
                # On a shared machine another process can take a core mid-measurement:
                # time again, and keep the attempt that was disturbed least.
                for _ in range(cfg.retries):
                    if other is None or other <= BUSY_MACHINE:
                        break
                    again = _time_steady(prep, cfg)
                    if again[2] is not None and again[2] < other:
                        samples, number, other = again
                cell["number"] = number
                cell["other_load"] = other
                if other is not None and other > BUSY_MACHINE:
                    cell["notes"].append(f"other processes used {other:.0%} of the CPUs "
                                         f"while this was timed: numbers are disturbed")
            cell.update(summarize(samples))
            # While ``prep`` (the model, the compiled entry and its buffers) is alive.
            cell.update(meter.read())
            if prep.notes is not None:
                cell["notes"].extend(prep.notes())
        except Exception as e:
            cell = {"status": "error", "error": _error_text(e), "notes": [],
                    "traceback": traceback.format_exc(limit=-12)}
            arrays = None
    for msg in dict.fromkeys(f"{c.category.__name__}: {c.message}" for c in caught
                             if not issubclass(c.category, _LIBRARY_NOISE)):
        cell["notes"].append(msg)
    return cell, arrays


def _invoke(prep: Prepared) -> Any:
    out = prep.call()
    if prep.sync is not None:
        prep.sync()
    return out


def _batch(prep: Prepared, number: int) -> float:
    """Seconds per call over ``number`` calls. With a device, it is synchronized before
    the clock starts and before it stops, and not between the calls."""
    if prep.sync is not None:
        prep.sync()
    t = time.perf_counter()
    for _ in range(number):
        prep.call()
    if prep.sync is not None:
        prep.sync()
    return (time.perf_counter() - t) / number


def _check_run(w: Workload, impl: Impl, prep: Prepared, cfg: Config) -> list[np.ndarray]:
    """Warm up and collect the arrays the agreement check compares."""
    if w.stateful:
        # Training steps change weights: compare from the same start over the same steps.
        arrays: list[np.ndarray] = []
        for _ in range(w.check_calls):
            arrays.extend(_copy(prep.output(_invoke(prep))))
        if prep.state is not None:
            arrays.extend(_copy(prep.state()))
        for _ in range(cfg.warmup + impl.warmup):
            _invoke(prep)
        return arrays
    out = None
    for _ in range(max(1, cfg.warmup + impl.warmup)):
        out = _invoke(prep)
    # The last warm-up call's output: for ember that is a replay of compiled code.
    return _copy(prep.output(out))


def _copy(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.array(_host(a), copy=True) for a in arrays]


def _host(a: Any) -> Any:
    """A CuPy array's data on the host (CuPy refuses implicit conversion to NumPy)."""
    if type(a).__module__.startswith("cupy") and hasattr(a, "get"):
        return a.get()
    return a


def _time_steady(prep: Prepared, cfg: Config) -> tuple[list[float], int, float | None]:
    """Per-call seconds over repeats; short calls are batched so the clock can see them."""
    one = math.inf
    for _ in range(3):  # the fastest of three: one call that met a busy core misleads
        t = time.perf_counter()
        _invoke(prep)
        one = min(one, time.perf_counter() - t)
    one = max(one, 1e-9)
    number = max(1, math.ceil(cfg.min_repeat_s / one)) if one < cfg.min_repeat_s else 1
    repeat = cfg.repeat
    if repeat * number * one > cfg.max_impl_s:
        repeat = max(min(3, cfg.repeat), int(cfg.max_impl_s / (number * one)))
    samples = []
    load = LoadMeter()
    # Unlike timeit, the garbage collector stays on: a library whose calls leave cyclic
    # garbage pays for collecting it, as its users do.
    for _ in range(repeat):
        samples.append(_batch(prep, number))
    return samples, number, load.other()


def _time_cold(prep: Prepared, cfg: Config) -> tuple[list[float], list[np.ndarray]]:
    """Each call builds and compiles afresh and reports its own time."""
    samples, arrays = [], None
    for _ in range(max(1, cfg.cold_repeat)):
        r = _invoke(prep)
        if not isinstance(r, Timed):
            raise TypeError("a cold workload's call must return Timed")
        samples.append(r.seconds)
        if arrays is None:
            arrays = _copy(prep.output(r.value))
    return samples, arrays


class MemoryMeter:
    """This process's memory over one cell, from /proc (Linux, no dependency): resident
    growth (RSS now minus RSS at the start, the cell's objects still alive) and peak
    growth (the highest RSS since the start minus RSS at the start).

    The start hands free C-heap pages back (glibc's ``malloc_trim``) and resets the
    kernel's peak-RSS mark (``/proc/self/clear_refs``), so the memory earlier cells freed
    neither hides this cell's growth nor stands for its peak. NumPy, torch and the JIT
    all allocate from the same heap: the figures cover every library alike.
    """

    def __init__(self) -> None:
        import gc
        gc.collect()
        _malloc_trim()
        self.peak_reset = _reset_peak_rss()
        self.start = _rss_bytes()

    def read(self) -> dict:
        """{"rss_growth_bytes", "peak_growth_bytes"} (None where /proc can't say)."""
        import gc
        gc.collect()
        now, peak = _rss_bytes(), _peak_rss_bytes()
        if self.start is None or now is None:
            return {}
        out = {"rss_growth_bytes": now - self.start}
        if self.peak_reset and peak is not None:
            out["peak_growth_bytes"] = max(peak, now) - self.start
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_bytes() -> int | None:
    """VmHWM: the highest resident size since the process started or the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


class LoadMeter:
    """How busy the machine was with other processes' work since it was made: CPU time
    of the whole machine (/proc/stat) minus this process's, over wall time x cores."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.mine = time.process_time()
        self.machine = _machine_cpu_seconds()

    def other(self) -> float | None:
        now = _machine_cpu_seconds()
        if now is None or self.machine is None:
            return None
        wall = time.perf_counter() - self.wall
        if wall < 0.2:  # /proc/stat counts in 10 ms ticks: too coarse for less
            return None
        busy = (now - self.machine) - (time.process_time() - self.mine)
        return max(0.0, busy / (wall * (os.cpu_count() or 1)))


def _machine_cpu_seconds() -> float | None:
    """CPU seconds all processes have used (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    ticks = sum(int(v) for v in fields[1:4] + fields[6:9])
    return ticks / os.sysconf("SC_CLK_TCK")


def summarize(samples: list[float]) -> dict:
    """Median, quartiles, extremes (seconds) of the repeats."""
    a = np.asarray(samples, dtype=np.float64)
    q25, med, q75 = np.percentile(a, [25, 50, 75])
    return {"median_s": float(med), "q25_s": float(q25), "q75_s": float(q75),
            "min_s": float(a.min()), "max_s": float(a.max()), "repeats": len(samples),
            "samples_s": [float(s) for s in a]}


def _check_agreement(w: Workload, result: dict, outputs: dict[str, list[np.ndarray]]) -> None:
    """np.allclose of each implementation against the reference; mismatches are loud."""
    ref_name = next((n for n in (w.reference, *w.reference_fallbacks) if n in outputs),
                    next(iter(outputs), None))
    result["checked_against"] = ref_name
    disagree = []
    for name, cell in result["impls"].items():
        if name not in outputs:
            cell["agree"] = None
            continue
        if name == ref_name:
            cell["agree"] = True
            continue
        ok, detail = compare(outputs[name], outputs[ref_name], w.rtol, w.atol)
        cell["agree"] = ok
        cell["max_abs_err"] = detail.get("max_abs_err")
        if not ok:
            cell["mismatch"] = detail["text"]
            disagree.append(name)
    result["agree"] = not disagree
    result["disagree"] = disagree


def compare(got: list[np.ndarray], want: list[np.ndarray], rtol: float, atol: float
            ) -> tuple[bool, dict]:
    """Whether two lists of arrays agree, and the worst difference found (np.allclose in
    float64, a block of COMPARE_BLOCK values at a time: 256M-element outputs stay cheap)."""
    if len(got) != len(want):
        return False, {"text": f"{len(got)} arrays vs {len(want)}"}
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, want)):
        g, r = np.asarray(g), np.asarray(r)
        if g.shape != r.shape:
            return False, {"text": f"array {i}: shape {g.shape} vs {r.shape}"}
        gf, rf = g.reshape(-1), r.reshape(-1)
        bad_count, first = 0, None
        for start in range(0, gf.size, COMPARE_BLOCK):
            g64 = gf[start:start + COMPARE_BLOCK].astype(np.float64)
            r64 = rf[start:start + COMPARE_BLOCK].astype(np.float64)
            with np.errstate(invalid="ignore"):
                err = np.abs(g64 - r64)
            finite = np.isfinite(err)
            if finite.any():
                worst = max(worst, float(err[finite].max()))
            bad = ~np.isclose(g64, r64, rtol=rtol, atol=atol, equal_nan=True)
            n_bad = int(np.count_nonzero(bad))
            if n_bad:
                if first is None:
                    j = int(np.argmax(bad))
                    first = (start + j, g64[j], r64[j])
                bad_count += n_bad
        if first is not None:
            flat, gv, rv = first
            at = tuple(map(int, np.unravel_index(flat, g.shape))) if g.ndim else ()
            return False, {"max_abs_err": worst,
                           "text": f"array {i}: {bad_count} of {g.size} values differ, "
                                   f"e.g. {gv:.6g} vs {rv:.6g} at {at}"}
    return True, {"max_abs_err": worst}


COMPARE_BLOCK = 1 << 16


def _add_rates_and_ratios(w: Workload, result: dict) -> None:
    """GB/s or GFLOP/s, the roofline fraction, and every time over the subject's time."""
    roof = result["roofline"] or {}
    for cell in result["impls"].values():
        if "median_s" not in cell:
            continue
        t = cell["median_s"]
        if w.gemms:
            cell["gflops"] = w.flops / t / 1e9
            if "gflops" in roof:
                cell["fraction"] = cell["gflops"] / roof["gflops"]
        elif w.nbytes:
            cell["gbps"] = w.nbytes / t / 1e9
            if "gbps" in roof:
                cell["fraction"] = cell["gbps"] / roof["gbps"]
    subject = result["impls"].get(w.subject, {})
    base = subject.get("median_s")
    result["ratios"] = {name: (cell["median_s"] / base if base and "median_s" in cell else None)
                        for name, cell in result["impls"].items() if name != w.subject}
    if w.aim is not None:
        result["aim"] = aim_result(w, result)


def aim_result(w: Workload, result: dict) -> dict:
    """The subject's fraction of the roofline against the workload's aim (the GPU chain:
    80% of a device-to-device copy of the same bytes)."""
    roof = result["roofline"] or {}
    subject = result["impls"].get(w.subject, {})
    rate = "GFLOP/s" if w.gemms else "GB/s"
    what = (f"{roof.get('kind', 'the reference')} of the same GEMMs" if w.gemms else
            f"a {'device-to-device' if w.device != 'cpu' else 'memory'} copy of the same "
            f"bytes ({roof.get('kind', 'the reference')})")
    aim = {"target": w.aim, "metric": f"{w.subject}'s {rate} / {what}",
           "text": f"{w.subject} at least {w.aim:.0%} of the bandwidth of {what}"
           if not w.gemms else f"{w.subject} at least {w.aim:.0%} of {what}",
           "fraction": subject.get("fraction"),
           "rate": subject.get("gflops" if w.gemms else "gbps"),
           "reference_rate": roof.get("gflops" if w.gemms else "gbps"),
           "unit": rate}
    aim["met"] = (None if aim["fraction"] is None or subject.get("agree") is False
                  else aim["fraction"] >= w.aim)
    return aim


def measure_roofline(w: Workload, cfg: Config) -> dict | None:
    """The machine's reference rate for this workload, measured now in this process:
    np.copyto of the same bytes (bandwidth-bound work) or np.matmul over the workload's
    GEMM shapes (compute-bound work). On a GPU the same through CuPy."""
    if w.cold or not (w.gemms or w.nbytes):
        return None
    xp = np
    sync = None
    if w.device != "cpu":
        import cupy
        xp = cupy
        sync = cupy.cuda.runtime.deviceSynchronize
    if w.gemms:
        mats = [(xp.ones((m, k), xp.float32), xp.ones((k, n), xp.float32),
                 xp.empty((m, n), xp.float32)) for m, k, n in w.gemms]

        def call() -> None:
            for a, b, out in mats:
                xp.matmul(a, b, out=out)
    else:
        # A copy reads n and writes n bytes: copy half the workload's bytes.
        src = xp.ones(max(1, w.nbytes // 8), xp.float32)
        dst = xp.empty_like(src)

        def call() -> None:
            xp.copyto(dst, src)
    prep = Prepared(call, lambda _: [], sync=sync)
    for _ in range(max(1, cfg.warmup)):
        _invoke(prep)
    samples, _, _ = _time_steady(prep, cfg)
    t = float(np.median(samples))
    if w.gemms:
        return {"kind": "np.matmul" if w.device == "cpu" else "cupy.matmul",
                "median_s": t, "gflops": w.flops / t / 1e9}
    return {"kind": "np.copyto" if w.device == "cpu" else "cupy.copyto",
            "median_s": t, "gbps": 2 * int(src.nbytes) / t / 1e9}


def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 600 else text[:600] + " ..."
