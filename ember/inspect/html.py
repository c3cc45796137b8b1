"""An explain report as one self-contained HTML page.

Each compiled graph gets a row of three columns: its picture (after fusion, with the
picture before fusion one click away), its IR text (after passes, as traced, and the
fusion decisions) and its kernels' sources. Breaks, fallbacks and counters sit on top.
No scripts, no external files: the page can be mailed or attached to a bug report.

>>> report = ember.explain(lambda x: (x * 2).exp().sum(), ember.randn(4, 8))
>>> open("report.html", "w").write(report_html(report))
"""
from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from ember.inspect.draw import graph_svg
from ember.inspect.fusion import explain_fusion

if TYPE_CHECKING:
    from ember.inspect.explain import ExplainReport

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1d1d1f; background: #f6f7f9; }
header { background: #23272f; color: #fff; padding: 14px 22px; }
header h1 { font-size: 20px; margin: 0 0 4px 0; font-family: monospace; }
header p { margin: 0; color: #c9ced6; }
main { padding: 12px 22px 30px 22px; }
ul.facts { margin: 6px 0 14px 0; padding-left: 20px; }
ul.facts li.break { color: #8a4b00; }
ul.facts li.fallback { color: #a40000; }
table.stats { border-collapse: collapse; margin-bottom: 16px; font-size: 13px; }
table.stats td { border: 1px solid #d5d8dd; padding: 3px 9px; background: #fff; }
section.graph { background: #fff; border: 1px solid #d5d8dd; border-radius: 8px;
                margin-bottom: 18px; padding: 10px 14px; }
section.graph h2 { font-size: 16px; margin: 4px 0 10px 0; }
.row { display: grid; grid-template-columns: minmax(0, 1.3fr) minmax(0, 1fr) minmax(0, 1fr);
       gap: 14px; align-items: start; }
.col { max-height: 88vh; overflow: auto; }
.col h3 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.04em; color: #555;
          margin: 4px 0 6px 0; }
.picture svg { display: block; max-width: 100%; height: auto; border: 1px solid #e3e5e8;
               border-radius: 6px; margin-bottom: 6px; }
pre { font-size: 11.5px; background: #f3f4f6; border: 1px solid #e3e5e8; border-radius: 6px;
      padding: 8px; overflow: auto; margin: 0 0 10px 0; }
details > summary { cursor: pointer; font-size: 13px; margin: 4px 0; color: #2b59c3; }
.kernel h4 { font-family: monospace; font-size: 13px; margin: 8px 0 2px 0; }
.kernel p { font-size: 12px; color: #555; margin: 0 0 4px 0; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 11px;
         font-family: sans-serif; margin-left: 6px; color: #fff; }
.llvm { background: #2f7d32; } .cuda { background: #2f7d32; } .eager { background: #777; }
.extern { background: #c46a00; }
"""


def report_html(report: ExplainReport, *, engine: str = "auto") -> str:
    """The page for an ``ExplainReport`` (``engine`` draws the pictures, see draw.py)."""
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>ember: {escape(report.name)}</title><style>{_CSS}</style></head><body>",
             f"<header><h1>ember.explain({escape(report.name)})</h1>"
             f"<p>{len(report.graphs)} graph(s), {len(report.kernels)} kernel(s), "
             f"{len(report.breaks)} graph break(s), {len(report.fallbacks)} fallback(s)</p>"
             "</header><main>"]
    facts = [f'<li class="break">graph break: {escape(str(b))}</li>' for b in report.breaks]
    facts += [f'<li class="fallback">fallback: {escape(f)}</li>' for f in report.fallbacks]
    if facts:
        parts.append(f'<ul class="facts">{"".join(facts)}</ul>')
    if report.stats:
        cells = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_fmt(v))}</td></tr>"
                        for k, v in report.stats.items())
        parts.append(f'<table class="stats">{cells}</table>')
    for i, g in enumerate(report.graphs):
        parts.append(_graph_section(i, g, engine))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _graph_section(i: int, g, engine: str) -> str:
    after = graph_svg(g.graph, g.kernels, title=f"graph {i} after fusion", engine=engine)
    before = graph_svg(g.graph, None, title=f"graph {i} before fusion", engine=engine)
    fusion = str(explain_fusion(g.graph, g.kernels)) if g.kernels else "(no kernels)"
    first = next((j for j, k in enumerate(g.kernels) if k.source), None)
    kernels = "\n".join(_kernel_card(k, open_=(j == first)) for j, k in enumerate(g.kernels))
    return (f'<section class="graph" id="graph{i}"><h2>graph {i}: {len(g.traced)} traced '
            f"nodes &rarr; {len(g.graph)} after passes, {len(g.kernels)} kernel(s)</h2>"
            '<div class="row">'
            f'<div class="col picture"><h3>picture</h3>{after}'
            f"<details><summary>before fusion</summary>{before}</details></div>"
            f'<div class="col ir"><h3>IR after passes</h3><pre>{escape(g.graph.text())}</pre>'
            f"<details><summary>IR as traced</summary><pre>{escape(g.traced.text())}</pre>"
            f"</details><h3>fusion</h3><pre>{escape(fusion)}</pre></div>"
            f'<div class="col kernels"><h3>kernels</h3>{kernels}</div>'
            "</div></section>")


def _kernel_card(k, open_: bool) -> str:
    where = ", ".join(escape(s) for s in k.src)
    head = (f'<div class="kernel"><h4>{escape(k.name)}<span class="badge {escape(k.backend)}">'
            f"{escape(k.backend)}</span></h4><p>{escape('+'.join(k.ops))}"
            + (f" &middot; {where}" if where else "") + "</p>")
    if k.reason:
        head += f"<p>fell back: {escape(k.reason)}</p>"
    if not k.source:
        return head + "</div>"
    return (head + f"<details{' open' if open_ else ''}><summary>source</summary>"
            f"<pre>{escape(k.source)}</pre></details></div>")


def _fmt(v) -> str:
    if isinstance(v, list):
        return "; ".join(map(str, v)) if v else "-"
    return str(v)
