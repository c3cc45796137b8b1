"""Seeing inside the compiler (docs/inspecting.md).

explain.py   ember.explain(fn, *args): graphs, kernels, breaks (and .to_html())
logs.py      EMBER_LOGS channels; ember.set_logs
hooks.py     the subscriber to the compiler's events (ember/tracer/events.py)
record.py    per compiled function: times, cache entries and why each exists
passes.py    the ``passes`` channel: node counts and IR diffs per pass
fusion.py    the fused groups and why neighbours were not fused
perf.py      compile time per stage, time per kernel
summary.py   EMBER_LOGS=summary: calls, hits, recompiles, time saved, at exit
cache.py     CompiledFunction.cache_report(): guard keys and recompile reasons
dump.py      EMBER_DUMP_DIR: a folder per compiled graph; ember.set_dump_dir
repro.py     the runnable repro.py of a dumped graph
draw.py      pictures of a graph (Graphviz dot, or SVG written in Python)
html.py      the one-page HTML report
cli.py       ``ember inspect script.py:function --arg "f32[4,8]" ...``
"""
from ember.inspect import hooks as _hooks  # noqa: E402,F401  (subscribes to the tracer)
