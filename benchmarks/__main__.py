"""ember's benchmark suite: ember against NumPy, torch, torch.compile, Numba and JAX.

    python -m benchmarks                      # full mode: every workload, default sizes
    python -m benchmarks --quick              # CI: tiny sizes, 2 repeats, checks it runs
    python -m benchmarks --only chain mlp_train --sizes chain=1M,4M --repeat 9
    PYTHONPATH=. python -m benchmarks --gpu-only   # the GPU variants alone (CuPy + a GPU)

Every library runs in this one process, on the same inputs, with the same thread count
where it can be set. Writes results.json, results.md and ratios.png to --out.

On a machine with a CUDA GPU that CuPy reaches, the GPU variants run after the CPU
workloads (``--no-gpu``: never; ``--gpu-only``: alone, into --out's default
benchmarks/results/gpu/): the chain at 16M and 256M elements, softmax, log_softmax +
NLL and layer_norm at 4096x1024 and 32768x4096, a copy, the MLP and SimpleCNN forward
and training step, each for ember (compiled and eager), CuPy eager (the NumPy code on
CuPy arrays), torch and torch.compile (where torch has CUDA); the chain's bandwidth is
reported as a fraction of a device-to-device copy of the same bytes (aim: 80%). The
full GPU-only run takes about 4 to 7 minutes on an H100, most of it torch.compile
compiling (``--skip torch.compile`` saves 2 to 3 minutes).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from benchmarks import peers, plot, report
from benchmarks.harness import Config, LoadMeter, run_workload
from benchmarks.workloads import DEVICES, FAMILIES, build

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="tiny sizes and 2 repeats: checks that the suite runs (CI)")
    mode.add_argument("--full", action="store_true", help="the default: full sizes")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="families (" + ", ".join(FAMILIES) + "), workload names or prefixes, "
                        "or glob patterns")
    p.add_argument("--sizes", nargs="+", default=[], metavar="FAMILY=S1,S2",
                   help="sizes per family: chain=1M,16M norms=4096x1024 copy=16M mlp=128 "
                        "cnn=64 overhead=8 compile=128 (the MLP batch); FAMILY@cuda=... "
                        "or FAMILY@cpu=... for one device only (GPU defaults: "
                        "chain@cuda=16M,256M norms@cuda=4096x1024,32768x4096)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"where the files go (default {DEFAULT_OUT}, with --gpu-only "
                        f"{DEFAULT_OUT / 'gpu'})")
    p.add_argument("--repeat", type=int, help="timed repeats per cell (full 15, quick 2)")
    p.add_argument("--warmup", type=int, help="warm-up calls per cell (at least 3 for "
                                              "ember to replay; default 3)")
    p.add_argument("--skip", nargs="+", default=None, metavar="PEER",
                   help="peers to leave out: " + ", ".join(peers.PEER_MODULES)
                        + " (quick mode skips torch.compile)")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--no-gpu", action="store_true", help="leave out the GPU variants")
    gpu.add_argument("--gpu-only", action="store_true",
                     help="run the GPU variants alone (needs CuPy and a CUDA GPU); --out "
                          "defaults to benchmarks/results/gpu")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p.parse_args(argv)


def parse_sizes(items: list[str]) -> dict[str, list[str]]:
    sizes = {}
    for item in items:
        key, _, values = item.partition("=")
        family, at, device = key.partition("@")
        if family not in FAMILIES or not values or (at and device not in DEVICES):
            raise SystemExit(f"--sizes {item!r}: expected FAMILY=S1,S2 or FAMILY@DEVICE=S1,S2 "
                             f"with FAMILY one of " + ", ".join(FAMILIES)
                             + " and DEVICE one of " + ", ".join(DEVICES))
        sizes[key] = [v for v in values.split(",") if v]
    return sizes


def make_config(args: argparse.Namespace) -> Config:
    skip = set(args.skip if args.skip is not None else (["torch.compile"] if args.quick else []))
    if args.quick:
        cfg = Config(repeat=2, min_repeat_s=0.002, max_impl_s=0.5, cold_repeat=1, pause_s=0.0,
                     retries=0)
    else:
        cfg = Config()
    if args.repeat:
        cfg.repeat = args.repeat
        # Each cold repeat compiles from scratch (seconds for torch.compile): at most 3.
        cfg.cold_repeat = min(cfg.cold_repeat, args.repeat)
    if args.warmup is not None:
        cfg.warmup = args.warmup
    cfg.skip = frozenset(skip)
    return cfg


def main(argv: list[str] | None = None) -> dict:
    """Run the suite; returns the metadata, the results and the paths written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cfg = make_config(args)
    gpu = not args.no_gpu and peers.cuda_available()
    if args.gpu_only and not gpu:
        raise SystemExit("--gpu-only: no CUDA GPU reachable through CuPy: "
                         + peers.cuda_unavailable_reason())
    out_dir = args.out or (DEFAULT_OUT / "gpu" if args.gpu_only else DEFAULT_OUT)
    workloads = build(args.only, parse_sizes(args.sizes), args.quick, gpu,
                      cpu=not args.gpu_only)
    if args.list:
        for w in workloads:
            print(f"{w.name:32s} {w.title}")
        return {"workloads": [w.name for w in workloads]}
    skipped = []
    if args.gpu_only:
        skipped.append("CPU workloads (--gpu-only)")
    if not gpu:
        skipped.append("GPU variants (" + ("--no-gpu" if args.no_gpu else
                                           peers.cuda_unavailable_reason()) + ")")
    if cfg.skip:
        skipped.append("peers " + ", ".join(sorted(cfg.skip)) + " (--skip or quick mode)")
    threads = peers.configure_threads(peers.threads())
    gpu_settings = peers.configure_gpu() if gpu else []
    meta = {"suite": "ember benchmarks", "mode": "quick" if args.quick else "full",
            "command": " ".join(["python -m benchmarks"] + argv),
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": peers.machine(), "versions": peers.versions(), "threads": threads,
            "gpu_settings": gpu_settings, "skipped": skipped,
            "config": {"repeat": cfg.repeat, "warmup": cfg.warmup,
                       "min_repeat_s": cfg.min_repeat_s, "max_impl_s": cfg.max_impl_s,
                       "cold_repeat": cfg.cold_repeat, "pause_s": cfg.pause_s,
                       "retries": cfg.retries,
                       "skip": sorted(cfg.skip)}}
    m = meta["machine"]
    print(f"ember benchmarks ({meta['mode']}): {m['cpu']}, {m['cores']} cores, GPU {m['gpu']}")
    print("threads: " + "; ".join(threads))
    for line in gpu_settings:
        print(f"GPU: {line}")
    for line in skipped:
        print(f"skipped: {line}")
    results = []
    start = time.perf_counter()
    load = LoadMeter()
    for i, w in enumerate(workloads, 1):
        print(f"\n[{i}/{len(workloads)}] {w.name}: {w.title}", flush=True)
        t = time.perf_counter()
        results.append(run_workload(w, cfg))
        print(report.detail_table(results[-1]).split("\n", 2)[2])
        print(f"({time.perf_counter() - t:.1f} s)", flush=True)
        if i < len(workloads):
            # What is done so far, in case the run is cut off (a time-limited GPU session).
            meta["seconds"] = round(time.perf_counter() - start, 1)
            meta["incomplete"] = f"{i} of {len(workloads)} workloads (run still going or cut off)"
            report.write(out_dir, meta, results)
    meta.pop("incomplete", None)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    meta["other_load"] = load.other()
    paths = report.write(out_dir, meta, results)
    why_not = plot.plot(results, out_dir / "ratios.png")
    if not why_not:
        paths["plot"] = out_dir / "ratios.png"
    print("\n" + report.RATIO_NOTE + "\n")
    print(report.summary_table(results))
    aims = report.aims_table(results)
    if aims:
        print("\n" + aims)
    for line in report.problems(results):
        print(line)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}"
          + (f"; {why_not}" if why_not else "") + f" ({meta['seconds']} s)")
    return {"meta": meta, "results": results, "paths": paths, "plot_skipped": why_not}


if __name__ == "__main__":
    main()
