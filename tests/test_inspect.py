"""Seeing inside the compiler: log channels, dump folders, pictures, the HTML report in a
browser, the ``ember inspect`` command, cache reports, the exit summary, eager and verify."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.inspect import dump, logs
from ember.tracer import admission

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "inspect_example.py"
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _quiet():
    """Every test starts and ends with no log channel and no dump directory."""
    logs.set_logs("")
    dump.set_dump_dir(None)
    yield
    logs.set_logs("")
    dump.set_dump_dir(None)
    ember.set_eager(False)


def _run(cf, *args, calls=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallback warnings are checked elsewhere
        for _ in range(calls):
            out = cf(*args)
    return out


def _env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for k in ("EMBER_LOGS", "EMBER_DUMP_DIR", "EMBER_EAGER"):
        if k not in extra:
            env.pop(k, None)
    return env


def _python(*argv, cwd=ROOT, timeout=120, **env):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _svg_root(text: str):
    root = ET.fromstring(text)
    assert root.tag == f"{SVG_NS}svg", root.tag
    return root


# ---- log channels ----------------------------------------------------------------------------

def test_graph_channel_prints_each_captured_graph(capsys):
    ember.set_logs("graph")
    _run(ember.compile(lambda x: (x * 2).relu()), ember.randn(3, 5), calls=1)
    err = capsys.readouterr().err
    assert "[ember:graph] <lambda>: segment [0," in err
    assert re.search(r"%\d+:f32\[3,5\] = relu %\d+", err)


def test_passes_channel_counts_nodes_and_shows_what_changed(capsys):
    ember.set_logs("passes")

    def twice(x):
        return (x * 2) + (x * 2)          # cse merges the two products

    _run(ember.compile(twice), ember.randn(4), calls=1)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "pass cse:" in x)
    before, after = map(int, re.search(r"(\d+) -> (\d+) nodes", line).groups())
    assert after < before
    assert re.search(r"^\s+- %\d+:f32\[4\] = mul", err, re.M)  # the removed duplicate
    assert "pass fold:" in err and "pass dce:" in err


def test_fusion_channel_names_groups_and_why_neighbours_stay_apart(capsys):
    ember.set_logs("fusion")
    w = ember.randn(4, 4)

    def mlp(x):
        return ((x * 2).exp() @ w).tanh()

    _run(ember.compile(mlp), ember.randn(4, 4), calls=1)
    err = capsys.readouterr().err
    assert "[ember:fusion] mlp: graph [0," in err
    assert re.search(r"kernel\d+\s+llvm\s+%\d+ mul, %\d+ exp", err)
    assert re.search(r"not fused: %\d+ exp -> %\d+ matmul: matmul runs as a BLAS call", err)


def test_fusion_names_the_cycle_a_merge_would_make():
    from ember.inspect.fusion import explain_fusion

    w = ember.randn(4, 4)

    def f(x):
        a = x.exp()
        return a + a @ w          # merging exp and add would run the matmul inside a kernel

    report = ember.explain(f, ember.randn(4, 4))
    g = report.graphs[0]
    text = str(explain_fusion(g.graph, g.kernels))
    assert re.search(r"not fused: %\d+ exp -> %\d+ add: merging would make a cycle through "
                     r"%\d+ matmul", text), text


def test_kernels_channel_prints_llvm_ir(capsys):
    ember.set_logs("kernels")
    _run(ember.compile(lambda x: x.sigmoid() * 3), ember.randn(8), calls=1)
    err = capsys.readouterr().err
    assert "[ember:kernels] kernel0 (sigmoid+mul)" in err and "define void" in err


def test_recompiles_channel_names_the_failed_guard(capsys, rent_new_sizes, monkeypatch):
    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)   # a new size compiles on call 2
    ember.set_logs("recompiles")
    f = ember.compile(lambda x: x + 1)
    _run(f, ember.ones(2, 3), calls=1)
    _run(f, ember.ones(4, 3), calls=2)   # a new size: eagerly, then compiled
    err = capsys.readouterr().err
    assert ("[ember:recompiles] <lambda>: a new size runs eagerly (call 1 at it; it compiles "
            "once such calls cost what a compile does): argument 0 shape [2,3] -> [4,3]") in err
    assert "[ember:recompiles] <lambda>: recompiling: argument 0 shape [2,3] -> [4,3]" in err


def test_recompiles_channel_logs_a_new_branch_value(capsys):
    ember.set_logs("recompiles")

    def sign_scale(x):
        return x * 2 if x.sum() > 0 else x * 3

    f = ember.compile(sign_scale)
    _run(f, ember.ones(3), calls=3)
    _run(f, -ember.ones(3), calls=1)
    err = capsys.readouterr().err
    assert re.search(r"recompiling: new value False of bool\(\) at .*test_inspect\.py:\d+", err)


def test_breaks_channel_names_the_users_line(capsys):
    ember.set_logs("breaks")

    def branchy(x):
        if x.sum() > 0:
            return x * 2
        return x

    _run(ember.compile(branchy), ember.ones(3), calls=1)
    err = capsys.readouterr().err
    line = branchy.__code__.co_firstlineno + 1
    assert f"[ember:breaks] branchy: graph break: bool() at {__file__}:{line}" in err


def test_perf_channel_times_stages_and_kernels(capsys):
    from ember.inspect import perf

    ember.set_logs("perf")

    def perf_probe(x):
        return (x * 2).exp().sum()

    f = ember.compile(perf_probe)
    _run(f, ember.randn(64), calls=6)
    err = capsys.readouterr().err
    assert re.search(r"perf_probe: traced call [\d.]+ ms", err)
    assert re.search(r"perf_probe: graph \[0, \d+\): compiled in [\d.]+ ms: passes [\d.]+ ms "
                     r"\(fold [\d.]+, simplify", err)
    perf.print_kernel_times()
    table = capsys.readouterr().err
    row = next(x for x in table.splitlines() if x.strip().startswith("perf_probe"))
    calls = int(row.split()[6])  # function, graph "[0," "n)", kernel, shape, backend, calls
    assert calls == 4, (table, f.stats())  # calls 3-6 replay the plan; build runs don't count


def test_summary_lists_calls_hits_recompiles_and_an_estimate(capsys, rent_new_sizes,
                                                             monkeypatch):
    from ember.inspect import summary

    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)   # a new size compiles on call 2

    def summarized(x):
        return (x * 3).tanh()

    f = ember.compile(summarized)
    _run(f, ember.randn(5), calls=4)
    _run(f, ember.randn(7), calls=2)   # a new size: eagerly, then compiled (admission.py)
    ember.set_logs("summary")
    summary.print_summary()
    err = capsys.readouterr().err
    block = err[err.index("summarized:"):].split("\n")
    assert block[0].startswith("summarized: 6 calls, 2 compiles, 2 cache hits, 1 eager calls")
    assert "recompile: argument 0 shape [5] -> [7]" in block[1]
    assert "compiled calls" in block[2] and "each over 2 cache hits" in block[2]
    assert block[3].strip().startswith("saved ~") and "(estimate)" in block[3]
    eager, hits, hit_s = summary.estimate(f.record)
    assert hits == 2 and eager > 0 and hit_s > 0


def test_unknown_channel_is_refused_and_all_includes_summary():
    with pytest.raises(ValueError, match="unknown EMBER_LOGS channel"):
        ember.set_logs("graph,nope")
    ember.set_logs("all")
    assert all(logs.enabled(c) for c in ("fusion", "perf", "summary"))


def test_summary_and_dump_dir_from_the_environment(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import ember\n"
                      "@ember.compile\n"
                      "def envprog(x):\n"
                      "    return (x + 1).exp()\n"
                      "for _ in range(4):\n"
                      "    envprog(ember.ones(3))\n")
    done = _python(script, EMBER_LOGS="summary", EMBER_DUMP_DIR=tmp_path / "dumps")
    assert done.returncode == 0, done.stderr
    assert "[ember:summary]" in done.stderr
    assert "envprog: 4 calls, 1 compiles, 2 cache hits" in done.stderr
    assert [p.name for p in (tmp_path / "dumps").iterdir()] == ["000_envprog"]


# ---- the dump folder -------------------------------------------------------------------------

def test_dump_folder_holds_ir_kernels_pictures_and_a_repro_that_runs(tmp_path):
    ember.set_dump_dir(tmp_path)

    def dumped(x, y):
        z = (x * y).relu() + 1
        if z.sum() > 0:                 # a graph break: two compiled graphs
            return z.exp()
        return z

    _run(ember.compile(dumped), ember.randn(4, 4), ember.randn(4), calls=1)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["000_dumped", "001_dumped"]
    d = tmp_path / "000_dumped"
    assert "mul" in (d / "traced.txt").read_text()
    assert [p.name for p in sorted((d / "passes").iterdir())] == [
        "01_fold.txt", "02_simplify.txt", "03_cse.txt", "04_unslice_cat.txt",
        "05_fuse_pool_relu.txt", "06_fuse_conv_epilogue.txt", "07_dce.txt"]
    assert (d / "optimized.txt").read_text().startswith("%0:f32[4,4] = input args[0]")
    assert "kernel0" in (d / "fusion.txt").read_text()
    assert "define void" in (d / "kernels" / "kernel0.ll").read_text()
    assert "define" in (d / "kernels" / "kernel0.opt.ll").read_text()
    assert re.search(r"^\s+(v?mov|ret)", (d / "kernels" / "kernel0.s").read_text(), re.M)
    for name in ("graph_before_fusion.svg", "graph_after_fusion.svg"):
        _svg_root((d / name).read_text())
    assert "subgraph cluster_0" in (d / "graph.dot").read_text()
    assert "<svg" in (d / "report.html").read_text()
    done = _python(d / "repro.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"kernel0\s+llvm\s+mul\+relu\+add", done.stdout)
    assert "every kernel matches the interpreter" in done.stdout
    assert (tmp_path / "001_dumped" / "repro.py").exists()


def test_a_failing_dump_is_a_warning_not_an_error(tmp_path, monkeypatch):
    from ember.inspect import draw

    def broken(*a, **k):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(draw, "graph_svg", broken)
    ember.set_dump_dir(tmp_path)
    f = ember.compile(lambda x: x * 2 + 1)
    with pytest.warns(UserWarning, match="could not write the dump.*no pictures today"):
        out = f(ember.ones(3))
    assert out.tolist() == [3.0, 3.0, 3.0]


# ---- pictures --------------------------------------------------------------------------------

def _report():
    w = ember.randn(4, 4)

    def picture(x, y):
        z = (x * y).relu() + 1
        return (z.exp() @ w).tanh() + z.sum()

    return ember.explain(picture, ember.randn(4, 4), ember.randn(4))


def test_python_picture_draws_kernels_as_clusters_with_shapes_on_edges():
    from ember.inspect.draw import graph_svg

    g = _report().graphs[0]
    # Generated kernels, including a matmul's epilogue (drawn with the matmul, "extern").
    groups = [k for k in g.kernels if k.kernel is not None]
    after = _svg_root(graph_svg(g.graph, g.kernels, title="after", engine="python"))
    clusters = [e for e in after.iter(f"{SVG_NS}g") if e.get("class") == "cluster"]
    assert len(clusters) == len(groups) >= 2
    labels = {"".join(c.itertext()) for c in clusters}
    assert {f"{k.name} ({k.backend})" for k in groups} <= labels
    nodes = [e for e in after.iter(f"{SVG_NS}g") if e.get("class") == "node"]
    assert len(nodes) == len(g.graph)
    edge_text = [t.text for e in after.iter(f"{SVG_NS}g") if e.get("class") == "edge"
                 for t in e.iter(f"{SVG_NS}text")]
    assert "f32[4,4]" in edge_text and "f32[4]" in edge_text
    before = _svg_root(graph_svg(g.graph, None, engine="python"))
    assert not [e for e in before.iter(f"{SVG_NS}g") if e.get("class") == "cluster"]


def test_python_picture_keeps_clusters_apart():
    from ember.inspect.draw import graph_svg

    g = _report().graphs[0]
    root = _svg_root(graph_svg(g.graph, g.kernels, engine="python"))
    boxes = []
    for c in root.iter(f"{SVG_NS}g"):
        if c.get("class") == "cluster":
            r = c.find(f"{SVG_NS}rect")
            x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
            boxes.append((x, y, x + w, y + h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_auto_picture_falls_back_to_python_without_dot(monkeypatch):
    from ember.inspect import draw

    g = _report().graphs[0]
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    assert not draw.have_dot()
    svg = draw.graph_svg(g.graph, g.kernels)
    assert 'class="cluster"' in svg  # the Python writer's markup
    _svg_root(svg)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_dot_picture_is_valid_svg_with_clusters():
    from ember.inspect.draw import graph_svg

    g = _report().graphs[0]
    root = _svg_root(graph_svg(g.graph, g.kernels, engine="dot"))
    titles = [t.text for t in root.iter(f"{SVG_NS}title")]
    assert "cluster_0" in titles and "cluster_1" in titles


# ---- the HTML report, in a real browser -------------------------------------------------------

def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium/Chrome found")
def test_html_report_renders_in_a_headless_browser(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(_report().to_html())
    base = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1280,900"]
    shot = tmp_path / "shot.png"
    done = subprocess.run(base + [f"--screenshot={shot}", page.as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 900)
    assert len(set(pixels[::7])) > 40  # drawn content, not a blank page
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "ember.explain(picture)" in dom and "IR after passes" in dom
    assert dom.count("<svg") >= 2 and "kernel0" in dom and "define void" in dom


def test_html_report_is_self_contained():
    html = _report().to_html()
    assert html.startswith("<!doctype html>")
    assert "<script" not in html and 'src="http' not in html and "<link" not in html
    for block in re.findall(r"<svg.*?</svg>", html, re.S):
        _svg_root(block)  # every inlined picture is well-formed SVG


# ---- the command-line inspector --------------------------------------------------------------

def test_inspect_command_on_the_example_script(tmp_path):
    html, svg, dumps = tmp_path / "r.html", tmp_path / "g.svg", tmp_path / "dumps"
    done = _python("-m", "ember", "inspect", f"{EXAMPLE}:loss_fn", "--arg", "f32[4,8]",
                   "--arg", "i64[4]", "--call", "f32[2,8] i64[2]", "--cache",
                   "--html", html, "--svg", svg, "--dump", dumps)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("ember.explain(loss_fn): 2 graph(s)")
    assert re.search(r"break: bool\(\) reads a tensor value at .*inspect_example\.py:\d+", out)
    assert "loss_fn: 2 cache entries" in out
    assert "[0] first call" in out and "[1] recompile: argument 0 shape [4,8] -> [2,8]" in out
    assert "guard: args f32[4,8] strides (8,1) cpu, i64[4] strides (1) cpu" in out
    assert "<svg" in html.read_text()
    _svg_root(svg.read_text())
    _svg_root((tmp_path / "g_1.svg").read_text())   # the second graph (after the break)
    assert sorted(p.name for p in dumps.iterdir()) == ["000_loss_fn", "001_loss_fn"]


def test_inspect_command_is_registered():
    from ember.__main__ import COMMANDS

    assert "inspect" in COMMANDS


def test_inspect_reads_argument_specs():
    from ember.inspect.cli import SpecError, make_args, parse_spec

    assert parse_spec("f32[4,8]") == ("float32", (4, 8), None)
    assert parse_spec("i64[4]<10") == ("int64", (4,), 10)
    assert parse_spec("b8[]") == ("bool", (), None)
    assert parse_spec("0.5") == 0.5 and parse_spec("'mean'") == "mean"
    with pytest.raises(SpecError, match="unknown dtype"):
        parse_spec("q7[3]")
    x, t, k = make_args(["f64[3,5]", "i64[3]", "2"], seed=0)
    assert x.dtype is ember.float64 and tuple(x.shape) == (3, 5)
    assert t.dtype is ember.int64 and 0 <= t.min().item() and t.max().item() < 3  # valid index
    assert k == 2


def test_inspect_reports_bad_usage(capsys, tmp_path):
    from ember.inspect.cli import main

    assert main([f"{EXAMPLE}:loss_fn", "--arg", "f32[4,x]"]) == 2
    assert "cannot read argument 'f32[4,x]'" in capsys.readouterr().err
    assert main([f"{tmp_path / 'missing.py'}:f"]) == 2
    assert "no such script" in capsys.readouterr().err


def test_cache_report_gives_each_entry_its_reason():
    import ember.nn as nn

    f = ember.compile(lambda x: x * 2)
    _run(f, ember.ones(2, 3), calls=3)
    _run(f, ember.ones(2, 3, dtype=ember.float64), calls=1)
    text = f.cache_report()
    assert "<lambda>: 2 cache entries (limit 8); 4 calls" in text
    assert "[0] first call" in text and "state: compiled; 1 graph(s); 1 hit(s)" in text
    assert "[1] recompile: argument 0 dtype float32 -> float64" in text
    assert "guard: args f64[2,3] strides (3,1) cpu; grad mode on" in text
    model = ember.compile(nn.Linear(3, 2))
    with ember.no_grad():
        _run(model, ember.ones(1, 3), calls=1)
    assert "Linear.forward: 1 cache entry" in model.cache_report()
    assert "Linear.training == True" in model.cache_report()


# ---- eager debugging ---------------------------------------------------------------------------

def test_print_in_a_compiled_function_runs_every_call_in_eager_mode(capsys):
    def shout(x):
        print("inside shout")
        return x + 1

    for make_eager in ("mode", "set_eager", "context"):
        f = ember.compile(shout, mode="eager") if make_eager == "mode" else ember.compile(shout)
        if make_eager == "set_eager":
            ember.set_eager(True)
        if make_eager == "context":
            with ember.eager_mode():
                _run(f, ember.ones(2), calls=3)
        else:
            _run(f, ember.ones(2), calls=3)
        ember.set_eager(False)
        assert capsys.readouterr().out.count("inside shout") == 3, make_eager
    f = ember.compile(shout)   # compiled: a print makes the signature run eagerly
    _run(f, ember.ones(2), calls=5)
    assert capsys.readouterr().out.count("inside shout") == 5
    assert "print()" in f.stats()["fallbacks"][0]


def test_ember_eager_environment_variable(tmp_path):
    script = tmp_path / "eager.py"
    script.write_text("import ember\n"
                      "f = ember.compile(lambda x: (print('called'), x * 2)[1])\n"
                      "for _ in range(4):\n"
                      "    f(ember.ones(2))\n")
    done = _python(script, EMBER_EAGER="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("called") == 4


# ---- verify mode -------------------------------------------------------------------------------

def _break_first_kernel(f, x):
    _run(f, x, calls=2)
    seg = next(iter(f.cache.values())).root
    good = seg.plan.steps[0]

    def broken(env):
        good(env)
        for n in seg.plan.kernels[0].nodes:
            if n in env:
                env[n] = env[n] + 1.0
    seg.plan.steps[0] = broken


def test_verify_mode_writes_a_repro_the_error_names(tmp_path):
    ember.set_dump_dir(tmp_path)
    f = ember.compile(lambda x: (x * 2).exp() + 1, mode="verify")
    x = ember.ones(4)
    _break_first_kernel(f, x)
    with pytest.raises(ember.VerificationError) as info:
        f(x)
    message = str(info.value)
    assert "kernel kernel0 (llvm: mul+exp+add) computed" in message
    script = Path(re.search(r"repro: python (\S+)", message).group(1))
    assert script.parent.parent == tmp_path.resolve() and script.parent.name.endswith("_verify")
    assert "kernel kernel0" in (script.parent / "recorded.txt").read_text()
    assert np.load(script.parent / "inputs.npz")["n0"].tolist() == [1.0] * 4
    done = _python(script, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded when this repro was written" in done.stdout
    assert re.search(r"kernel0\s+llvm\s+mul\+exp\+add .* ok", done.stdout)
    assert "did not reproduce" in done.stdout  # the break was a patch in this process


def test_verify_repro_goes_to_a_temp_dir_without_a_dump_dir():
    f = ember.compile(lambda x: x.sigmoid() - 1, mode="verify")
    _break_first_kernel(f, ember.ones(3))
    with pytest.raises(ember.VerificationError, match=r"repro: python \S+repro\.py") as info:
        f(ember.ones(3))
    script = Path(re.search(r"repro: python (\S+)", str(info.value)).group(1))
    try:
        assert script.exists() and Path(tempfile.gettempdir()) in script.parents
    finally:
        shutil.rmtree(script.parent, ignore_errors=True)


# ---- the tracer's events; one-way layers --------------------------------------------------

def test_tracer_publishes_events_to_subscribers(rent_new_sizes, monkeypatch):
    """What the compiler does reaches any subscriber (as it reaches ember.inspect): one
    function, two traced calls (trace, check), one built segment, then hits."""
    from ember.tracer import events

    monkeypatch.setattr(admission, "RENT_FACTOR", 0.0)   # a new size compiles on call 2

    seen: list[str] = []

    class Watch(events.Listener):
        def function_created(self, cf):
            seen.append("created")

        def traced(self, cf, entry, seconds):
            seen.append("traced")

        def segment_built(self, cf, seg, env, passlog, seconds):
            assert seg.plan is not None and seconds >= 0
            seen.append("built")

        def hit(self, cf, entry, seconds):
            seen.append("hit")

        def recompiled(self, cf, reason):
            seen.append("recompiled: " + reason)

        def rented(self, cf, reason, n):
            seen.append(f"rented ({n}): " + reason)

    watch = Watch()
    events.subscribe(watch)
    try:
        f = ember.compile(lambda x: (x * 2).exp())
        for _ in range(4):
            f(ember.ones(3))
        f(ember.ones(5))
        f(ember.ones(5))
    finally:
        events.unsubscribe(watch)
    assert seen[:6] == ["created", "traced", "built", "traced", "hit", "hit"]
    assert seen[6] == "rented (1): argument 0 shape [3] -> [5]"
    assert seen[7] == "recompiled: argument 0 shape [3] -> [5]"
    assert f.record.entries[0].hits == 2    # ember.inspect subscribed as well


def test_the_tracer_does_not_import_inspect():
    """Layers go one way: ember.inspect imports the tracer, never the reverse."""
    import ast

    for path in (ROOT / "ember" / "tracer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("ember.inspect") for n in names), path.name


def test_fusion_reports_refused_merges_as_data():
    """fuse() hands back the merges it refused and why; explain_fusion shows those."""
    from ember.inspect.fusion import explain_fusion
    from ember.ir.passes.fuse import Refused, fuse

    x, u = ember.randn(4, 4), ember.randn(3, 4)   # row sums of x: [4], broadcast on [3, 4]
    report = ember.explain(lambda t, v: t.exp().sum(-1) + v.exp(), x, u)
    g = report.graphs[0].graph
    refused: list = []
    groups = fuse(g, refused)
    assert groups == fuse(g)      # asking for the decisions changes nothing
    sums = [n for n in g.nodes() if g[n].op == "sum"]
    assert any(isinstance(r, Refused) and r.producer in sums and r.reason == "spaces"
               for r in refused)
    text = str(explain_fusion(g, report.graphs[0].kernels))
    assert f"%{sums[0]} sum -> " in text and "iteration spaces differ" in text
