"""EMBER_DUMP_DIR: one folder per compiled graph, with everything needed to look inside.

``EMBER_DUMP_DIR=dir`` (or ``ember.set_dump_dir("dir")``) makes every compiled graph
write ``dir/<NNN>_<function>/``:

    traced.txt                  the IR as traced
    passes/<k>_<pass>.txt       the IR after each pass
    optimized.txt               the IR the kernels were made from
    fusion.txt                  the fused groups and why neighbours were not fused
    kernels/<name>.ll           each generated kernel's LLVM IR (.cu for CUDA C),
    kernels/<name>.opt.ll, .s   and for CPU kernels the optimized IR and the assembly
    graph_before_fusion.svg     pictures (Graphviz when installed, else drawn in Python)
    graph_after_fusion.svg      fused kernels as colored clusters; graph.dot for Graphviz
    report.html                 pictures, IR and kernel sources side by side
    graph.pkl, inputs.npz       the graph and the values it first ran on
    repro.py                    re-runs the graph compiled and checks each kernel

Debug output never breaks a compile: a failing dump is a warning.

>>> ember.set_dump_dir("/tmp/ember-dump")
>>> ember.compile(lambda x: (x * 2).exp())(ember.ones(4))
"""
from __future__ import annotations

import itertools
import os
import tempfile
import threading
import warnings
from pathlib import Path

from ember.ir.graph import Graph

_state = {"dir": os.environ.get("EMBER_DUMP_DIR") or None}
_counters: dict = {}   # dump dir -> the numbers of its folders
_lock = threading.Lock()

README = """Written by ember for {name} ({why}).

traced.txt            the IR as traced
passes/               the IR after each pass, in order (written while compiling)
optimized.txt         the IR after passes: what became kernels
fusion.txt            the fused groups, and why neighbours were not fused
kernels/              each kernel's generated source (.ll LLVM IR, .cu CUDA C); for CPU
                      kernels also the optimized LLVM IR (.opt.ll) and assembly (.s)
graph_*.svg           the graph before and after fusion (kernels as colored clusters)
graph.dot             the same picture in Graphviz DOT
report.html           pictures, IR text and kernel sources side by side
repro.py              python repro.py  -- recompiles graph.pkl and checks every kernel
recorded.txt          (mode="verify" only) the difference that was seen
"""


def set_dump_dir(path: str | os.PathLike | None) -> None:
    """Write a folder per compiled graph under ``path`` (``None`` stops dumping).

    >>> ember.set_dump_dir("dumps")       # same as EMBER_DUMP_DIR=dumps
    """
    _state["dir"] = os.fspath(path) if path else None


def dump_dir() -> Path | None:
    """The current dump directory, or None."""
    return Path(_state["dir"]) if _state["dir"] else None


def new_folder(name: str, suffix: str = "") -> Path:
    """A fresh ``<NNN>_<name><suffix>`` folder under the dump dir (a temp dir if none)."""
    base = dump_dir()
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or "fn"
    if base is None:
        return Path(tempfile.mkdtemp(prefix=f"ember-{safe}{suffix}-"))
    with _lock:  # the counter and the folder check must agree between threads
        while True:
            n = next(_counters.setdefault(base.resolve(), itertools.count()))
            folder = base / f"{n:03d}_{safe}{suffix}"
            if not folder.exists():
                # Private (0700, as mkdtemp makes them): inputs.npz holds the user's data.
                folder.parent.mkdir(parents=True, exist_ok=True)
                folder.mkdir(mode=0o700)
                return folder


def dump_graph(name: str, graph: Graph, traced: Graph, kernels: list, inputs: dict,
               pass_runs: list = (), why: str = "EMBER_DUMP_DIR", suffix: str = "",
               recorded: str = "") -> Path | None:
    """Write one compiled graph's folder; returns it, or None (with a warning) on failure."""
    try:
        folder = new_folder(name, suffix)
        _write(folder, name, graph, traced, kernels, inputs, list(pass_runs), why, recorded)
        return folder
    except Exception as e:  # debug output must never break the program being debugged
        warnings.warn(f"ember: could not write the dump of {name}: {type(e).__name__}: {e}",
                      stacklevel=2)
        return None


def _write(folder: Path, name: str, graph, traced, kernels, inputs, pass_runs, why,
           recorded) -> None:
    from ember.inspect.draw import graph_dot, graph_svg
    from ember.inspect.explain import ExplainReport, GraphReport
    from ember.inspect.fusion import explain_fusion
    from ember.inspect.html import report_html
    from ember.inspect.repro import write_repro

    (folder / "README.txt").write_text(README.format(name=name, why=why))
    (folder / "traced.txt").write_text(traced.text() + "\n")
    if pass_runs:
        (folder / "passes").mkdir(exist_ok=True)
        for i, run in enumerate(pass_runs, 1):
            (folder / "passes" / f"{i:02d}_{run.name}.txt").write_text(run.after + "\n")
    (folder / "optimized.txt").write_text(graph.text() + "\n")
    (folder / "fusion.txt").write_text(str(explain_fusion(graph, kernels)) + "\n")
    (folder / "kernels").mkdir(exist_ok=True)
    for k in kernels:
        _write_kernel(folder / "kernels", k)
    (folder / "graph.dot").write_text(graph_dot(graph, kernels, title=f"{name} after fusion"))
    (folder / "graph_before_fusion.svg").write_text(
        graph_svg(graph, None, title=f"{name} before fusion"))
    (folder / "graph_after_fusion.svg").write_text(
        graph_svg(graph, kernels, title=f"{name} after fusion"))
    report = ExplainReport(name, [GraphReport(graph, traced, list(kernels))], list(kernels))
    (folder / "report.html").write_text(report_html(report))
    write_repro(folder, graph, inputs, name, why, len(kernels), recorded)


def _write_kernel(folder: Path, k) -> None:
    if not k.source:
        return
    stem = k.name.replace("%", "node")
    (folder / f"{stem}{'.cu' if k.backend == 'cuda' else '.ll'}").write_text(k.source)
    if k.backend == "llvm" and k.kernel is not None:
        from ember.codegen.llvm import compile_kernel

        compiled = compile_kernel(k.kernel)  # cached by signature: the same machine code
        (folder / f"{stem}.opt.ll").write_text(compiled.optimized_ir())
        (folder / f"{stem}.s").write_text(compiled.asm())
