"""Tables (Markdown, readable in a terminal) and the JSON file of a suite run.

Ratios are a peer's median time over ember's, measured in the same run: above 1, ember
is faster; below 1, the peer is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import BUSY_MACHINE, UNIT_SCALE

PEER_COLUMNS = ["ember eager", "numpy", "cupy", "torch", "torch.compile", "numba", "jax.jit"]
MEMORY_NOTE = ("Memory: the process's resident-size growth over a cell (set-up, checks and "
               "timing, with the cell's objects still alive) / its peak growth, both from "
               "/proc after handing free heap pages back; 'vs torch': ember's resident "
               "growth / torch eager's (below 1: ember holds less).")
RATIO_NOTE = ("Columns after ember: the peer's median time / ember's median time, same run "
              "(> 1: ember is faster). ember = `ember.compile` (for op_*: ember eager); "
              "cupy = the NumPy code on CuPy arrays (*_cuda rows); *_cuda rows' torch "
              "columns are torch on cuda. "
              "*: other processes used more than 15% of the CPUs while that was timed.")


def fmt_time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "—"
    v = seconds * UNIT_SCALE[unit]
    digits = 3 if v < 10 else (1 if v < 1000 else 0)
    return f"{v:.{digits}f} {unit.replace('us', 'µs')}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def fmt_rate(cell: dict) -> str:
    if "gbps" in cell:
        return f"{cell['gbps']:.1f} GB/s"
    if "gflops" in cell:
        return f"{cell['gflops']:.1f} GFLOP/s"
    return "—"


def fmt_mb(nbytes: int | None) -> str:
    if nbytes is None:
        return "—"
    return f"{nbytes / 2**20:.0f} MB" if abs(nbytes) >= 10 * 2**20 else f"{nbytes / 2**20:.1f} MB"


def fmt_memory(cell: dict) -> str:
    """"resident growth / peak growth" of a cell, e.g. "12 MB / 40 MB"."""
    if "rss_growth_bytes" not in cell:
        return "—"
    return f"{fmt_mb(cell['rss_growth_bytes'])} / {fmt_mb(cell.get('peak_growth_bytes'))}"


def memory_ratio(result: dict, peer: str = "torch") -> str:
    """The subject's resident growth over ``peer``'s (below 1: ember holds less)."""
    a = result["impls"].get(result["subject"], {}).get("rss_growth_bytes")
    b = result["impls"].get(peer, {}).get("rss_growth_bytes")
    if a is None or not b or b <= 0:
        return "—"
    return f"{a / b:.2f}x"


def status_text(cell: dict | None) -> str:
    """What a cell without a time shows: why it has none."""
    if cell is None:
        return "—"
    if cell.get("status") == "error":
        return "ERROR"
    return cell.get("status", "—")


def ratio_cell(result: dict, name: str) -> str:
    cell = result["impls"].get(name)
    if name == result["subject"]:
        return "(ember)"
    if cell is None or "median_s" not in cell:
        return status_text(cell)
    subject = result["impls"].get(result["subject"], {})
    if "median_s" not in subject:
        return fmt_time(cell["median_s"], result["unit"]) + _busy_mark(cell)
    text = fmt_ratio(result["ratios"].get(name)) + _busy_mark(cell, subject)
    return text + (" MISMATCH" if cell.get("agree") is False else "")


def _busy_mark(*cells: dict) -> str:
    """"*" when other processes took CPUs while any of these cells was timed."""
    return "*" if any((c.get("other_load") or 0) > BUSY_MACHINE for c in cells) else ""


def peer_columns(results: list[dict]) -> list[str]:
    """The peers any of these workloads has a cell for (a GPU-only run has no numpy
    column, a CPU-only run no cupy column)."""
    return [c for c in PEER_COLUMNS if any(c in r["impls"] for r in results)]


def summary_table(results: list[dict]) -> str:
    """One row per workload: ember's time, every peer's ratio, ember's rate, agreement."""
    columns = peer_columns(results)
    head = (["workload", "ember"] + columns
            + ["ember rate", "of roofline", "ember memory", "vs torch", "agree"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        subject = r["impls"].get(r["subject"], {})
        if "median_s" in subject:
            ember = fmt_time(subject["median_s"], r["unit"]) + _busy_mark(subject)
            if _fell_back(subject):
                ember += " (eager fallback)"
        else:
            ember = status_text(subject)
        roof = f"{subject['fraction']:.0%}" if "fraction" in subject else "—"
        agree = "yes" if r["agree"] else "NO: " + ", ".join(r["disagree"])
        row = [r["name"], ember] + [ratio_cell(r, c) for c in columns] + [
            fmt_rate(subject), roof, fmt_memory(subject), memory_ratio(r), agree]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def aim_text(aim: dict) -> str:
    """"81% (2712.0 of 3348.2 GB/s): met" for a workload's aim."""
    if aim.get("fraction") is None:
        return "not measured"
    met = {True: "met", False: "NOT met", None: "not judged (ember disagrees)"}[aim["met"]]
    return (f"{aim['fraction']:.0%} ({aim['rate']:.1f} of {aim['reference_rate']:.1f} "
            f"{aim['unit']}): {met}")


def aims_table(results: list[dict]) -> str:
    """The workloads that carry an aim (the GPU chain: 80% of a device-to-device copy)."""
    rows = [r for r in results if r.get("aim")]
    if not rows:
        return ""
    lines = ["| workload | aim | result |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['aim']['text']} | {aim_text(r['aim'])} |")
    return "\n".join(lines)


def _fell_back(cell: dict) -> bool:
    """ember.compile ran (some) calls eagerly instead of replaying compiled code."""
    return any(n.startswith("ember.compile stats") for n in cell.get("notes", []))


def detail_table(r: dict) -> str:
    """Every implementation of one workload: spread, ratio, rate, agreement, notes."""
    roof = r.get("roofline") or {}
    if "gbps" in roof:
        ref = f"roofline: {roof['kind']} of the same bytes, {roof['gbps']:.1f} GB/s"
    elif "gflops" in roof:
        ref = f"roofline: {roof['kind']} of the same GEMMs, {roof['gflops']:.1f} GFLOP/s"
    elif "error" in roof:
        ref = f"roofline: could not be measured ({roof['error']})"
    else:
        ref = "no roofline (fixed costs)"
    aim = r.get("aim")
    lines = [f"### {r['name']}: {r['title']}", "",
             f"{ref}; agreement checked against {r.get('checked_against') or 'nothing'} "
             f"(rtol/atol of np.allclose in the JSON)", ""]
    if aim:
        lines += [f"Aim: {aim['text']}. Result: {aim_text(aim)}.", ""]
    lines += ["| implementation | median | IQR | min | max | runs | vs ember | rate | "
              "of roofline | resident / peak | agrees | notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    u = r["unit"]
    for name, cell in r["impls"].items():
        if "median_s" in cell:
            iqr = fmt_time(cell["q75_s"] - cell["q25_s"], u)
            runs = f"{cell['repeats']}x{cell.get('number', 1)}"
            vs = "(ember)" if name == r["subject"] else fmt_ratio(r["ratios"].get(name))
            row = [name, fmt_time(cell["median_s"], u), iqr, fmt_time(cell["min_s"], u),
                   fmt_time(cell["max_s"], u), runs, vs, fmt_rate(cell),
                   f"{cell['fraction']:.0%}" if "fraction" in cell else "—",
                   fmt_memory(cell)]
        else:
            row = [name, status_text(cell)] + ["—"] * 8
        agree = {True: "yes", False: "**NO**", None: "—"}[cell.get("agree")]
        notes = list(cell.get("notes", []))
        if cell.get("status") == "error":
            notes.insert(0, cell["error"])
        if cell.get("mismatch"):
            notes.insert(0, "MISMATCH: " + cell["mismatch"])
        row += [agree, "; ".join(_short(n) for n in notes)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit] + " ..."


def problems(results: list[dict]) -> list[str]:
    """Errors, disagreements and eager fallbacks, one line each, for the end of a run."""
    out = []
    for r in results:
        for name, cell in r["impls"].items():
            if cell.get("agree") is False:
                out.append(f"!! {r['name']} / {name}: DISAGREES with "
                           f"{r['checked_against']}: {cell.get('mismatch')}")
            if cell.get("status") == "error":
                out.append(f"!! {r['name']} / {name}: {cell['error']}")
            if name.startswith("ember") and _fell_back(cell):
                reasons = [n for n in cell["notes"] if not n.startswith("ember.compile stats")]
                out.append(f"!  {r['name']} / {name}: ember.compile did not replay every "
                           f"call: " + _short("; ".join(reasons) or "see notes", 400))
    return out


def markdown(meta: dict, results: list[dict]) -> str:
    """The whole report: where it ran, the summary, the problems, then every workload."""
    m = meta["machine"]
    lines = ["# ember benchmark results", "",
             f"`{meta['command']}` at {meta['created']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB; "
             f"GPU: {m['gpu']}; Python {m['python']}; ember {m['ember_commit']}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
             "", "Threads: " + "; ".join(meta["threads"]) + ".", ""]
    if meta.get("gpu_settings"):
        lines += ["GPU settings: " + "; ".join(meta["gpu_settings"]) + ".", ""]
    if meta.get("other_load") is not None:
        lines += [f"Other processes used {meta['other_load']:.0%} of the CPUs during the run "
                  f"({meta['seconds']} s).", ""]
    if meta.get("incomplete"):
        lines += [f"**Incomplete**: {meta['incomplete']}.", ""]
    if meta.get("skipped"):
        lines += ["Skipped: " + "; ".join(meta["skipped"]) + ".", ""]
    lines += [RATIO_NOTE, "", MEMORY_NOTE, "", summary_table(results), ""]
    aims = aims_table(results)
    if aims:
        lines += ["Aims:", "", aims, ""]
    found = problems(results)
    if found:
        lines += ["Problems:", ""] + [f"- {p}" for p in found] + [""]
    for r in results:
        lines += [detail_table(r), ""]
    return "\n".join(lines)


def write(out_dir: Path, meta: dict, results: list[dict]) -> dict[str, Path]:
    """results.json and results.md in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    doc: dict[str, Any] = dict(meta, workloads=results)
    paths["json"].write_text(json.dumps(doc, indent=1, default=str) + "\n")
    paths["markdown"].write_text(markdown(meta, results))
    return paths
