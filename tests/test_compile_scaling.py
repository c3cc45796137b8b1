"""Compile time linear in the graph: long chains compile (no RecursionError, no eager
fallback) and equal eager; fusion does work proportional to the graph; fused groups keep
the invariants the merge checks only incrementally; verify and dce stay correct."""
from __future__ import annotations

import random
import sys
import time
import warnings

import networkx as nx
import numpy as np
import pytest

import ember
from ember import dtypes
from ember.ir.graph import Graph, InputSource
from ember.ir.passes import fuse as fuse_mod
from ember.ir.passes.dce import dce
from ember.ir.passes.fuse import MAX_GROUP_WEIGHT, fuse
from ember.ir.verify import GraphError, verify

CPU = ember.device("cpu")
F32 = dtypes.float32


def long_chain(n: int):
    """``n`` elementwise ops in one dependent chain, constants all different (no two
    kernels of it share code), values bounded."""
    def f(x):
        for i in range(n):
            r = i % 4
            if r == 0:
                x = x * (1.0 + ((i * 7919) % 1000) * 1e-6)
            elif r == 1:
                x = x + ((i * 104729) % 1000 - 500) * 1e-6
            elif r == 2:
                x = -x
            else:
                x = x.relu() if i % 8 == 3 else x - 1e-4
        return x
    return f


def _compile_chain(n: int, size: int = 1024):
    f = long_chain(n)
    x = ember.tensor(np.random.default_rng(n).standard_normal(size).astype(np.float32))
    g = ember.compile(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # an eager fallback warns: fail on it
        t0 = time.perf_counter()
        got = g(x)
        seconds = time.perf_counter() - t0
        for _ in range(2):                  # call 2 traces again, call 3 replays
            again = g(x)
    want = f(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    return g, x, seconds


def test_chain_of_2000_ops_compiles_into_kernels_and_equals_eager():
    g, x, seconds = _compile_chain(2000)
    report = ember.explain(long_chain(2000), x)
    kernels = report.graphs[0].kernels
    assert kernels and all(k.backend == "llvm" for k in kernels), kernels
    # Split at the group cap: every op is in a kernel, none longer than the cap.
    ops = sum(len(k.ops) for k in kernels)
    graph = report.graphs[0].graph     # (x * 1.0 and x + 0.0 simplify away)
    assert ops == len(graph.op_nodes()) > 1990
    assert all(len(k.ops) <= MAX_GROUP_WEIGHT for k in kernels)
    assert len(kernels) == -(-ops // MAX_GROUP_WEIGHT)
    print(f"2,000-op chain: first call {seconds:.2f} s")


@pytest.mark.slow
def test_chain_of_20000_ops_compiles_and_equals_eager():
    _, _, seconds = _compile_chain(20000)
    print(f"20,000-op chain: first call {seconds:.2f} s")


# ---- fusion: linear work, same invariants ----------------------------------------------

def _graph_chain(n: int) -> Graph:
    g = Graph()
    x = g.add_input(InputSource("arg", "args[0]"), (64,), F32, CPU)
    for i in range(n):
        c = g.add_const(np.asarray(1.0 + i * 1e-6, np.float32), F32, CPU)
        x = g.add("mul" if i % 2 else "add", (x, c), {}, (64,), F32, CPU)
    g.outputs = [x]
    return g


def _lookups_in_fuse(graph: Graph, monkeypatch) -> int:
    count = [0]
    get = Graph.__getitem__

    def counted(self, nid):
        count[0] += 1
        return get(self, nid)
    with monkeypatch.context() as m:
        m.setattr(Graph, "__getitem__", counted)
        fuse(graph)
    return count[0]


def test_fusion_work_grows_linearly_with_the_chain(monkeypatch):
    # Deterministic (node lookups, not seconds): the old merge re-scanned the whole group
    # on every merge, 4,000,000 dim maps at 2,000 ops.
    monkeypatch.setattr(fuse_mod, "MAX_GROUP_WEIGHT", 1 << 30)   # one group, no cap
    small = _lookups_in_fuse(_graph_chain(1000), monkeypatch)
    big = _lookups_in_fuse(_graph_chain(4000), monkeypatch)
    assert big < 4.5 * small, (small, big)
    groups = fuse(_graph_chain(4000))
    assert len(groups) == 1 and len(groups[0].nodes) == 4000
    assert groups[0].nodes == sorted(groups[0].nodes)


def test_the_cap_splits_a_chain_and_says_why():
    from ember.inspect.fusion import why_apart

    g = _graph_chain(3 * MAX_GROUP_WEIGHT + 5)
    refused: list = []
    groups = fuse(g, refused)
    assert [len(gr.nodes) for gr in groups] == [MAX_GROUP_WEIGHT] * 3 + [5]
    assert [r.reason for r in refused] == ["size"] * 3
    group_of = {n: gr for gr in groups for n in gr.nodes}
    r = refused[0]
    assert "too long" in why_apart(g, r.producer, r.consumer, group_of, r.reason)


def test_decomposed_ops_weigh_their_programs():
    from ember.codegen.mathlib import cost

    g = Graph()
    x = g.add_input(InputSource("arg", "args[0]"), (8,), F32, CPU)
    for _ in range(60):
        x = g.add("exp", (x,), {}, (8,), F32, CPU)
    g.outputs = [x]
    per = MAX_GROUP_WEIGHT // cost("exp")
    assert [len(gr.nodes) for gr in fuse(g)][0] == per


def _consistent_whole(graph, g) -> bool:
    """The original whole-group check (every member against every operand)."""
    for n in g.nodes:
        d = graph[n]
        use_shape = g.full if g.role[n] == "red" else tuple(d.shape)
        use_map = (list(range(len(g.full))) if g.role[n] == "red"
                   else g.dim_map(n, use_shape))
        if g.role[n] == "red" and d.args[0] in g.role and g.role[d.args[0]] != "point":
            return False
        for a in d.args:
            if a not in g.role:
                continue
            shape = tuple(graph[a].shape)
            amap = g.dim_map(a, shape)
            lead = len(use_shape) - len(shape)
            if lead < 0:
                return False
            for j, size in enumerate(shape):
                if size != 1 and use_map[lead + j] != amap[j]:
                    return False
    return True


def _no_cycle_whole(graph, members: set) -> bool:
    """No path leaves ``members`` and comes back (checked on the whole graph)."""
    nxg = graph.to_networkx()
    outside = nxg.subgraph([n for n in nxg if n not in members]).copy()
    out_of = {u for m in members for u in nxg.successors(m) if u not in members}
    for s in out_of:
        reach = nx.descendants(outside, s) | {s}
        if any(v in members for r in reach for v in nxg.successors(r)):
            return False
    return True


def _random_program(rng: random.Random):
    """Elementwise ops over [R, C], row reductions, broadcasts of rows and columns and
    matmuls (which fusion must keep outside a kernel), wired at random."""
    R, C = rng.choice([3, 4]), rng.choice([5, 6])
    w = ember.randn(C, C)
    steps = [rng.random() for _ in range(rng.randint(4, 14))]
    picks = [(rng.random(), rng.random()) for _ in steps]

    def program(x, col):
        vals = [x]
        rows = []
        for s, (p, q) in zip(steps, picks):
            a = vals[int(p * len(vals))]
            b = vals[int(q * len(vals))]
            if s < 0.3:
                vals.append(a * b + 1)
            elif s < 0.45:
                vals.append(a.exp() - b)
            elif s < 0.6:
                r = a.sum(-1, keepdim=True)
                rows.append(r)
                vals.append(b / (r.abs() + 1))
            elif s < 0.7:
                vals.append(a.amax(-1, keepdim=True) - b)
            elif s < 0.8:
                vals.append(a @ w + b)
            elif s < 0.9:
                vals.append(a * col + b.tanh())
            else:
                vals.append(a.relu() + (rows[-1] if rows else b))
        return vals[-1], vals[len(vals) // 2]

    return program, ember.randn(R, C), ember.randn(C)


@pytest.mark.parametrize("seed", range(30))
def test_fused_groups_keep_the_whole_group_invariants(seed):
    """The merge checks only what joins two groups; every group it builds still passes
    the whole-group checks, and the compiled program equals eager."""
    program, x, col = _random_program(random.Random(seed))
    graph = ember.explain(program, x, col).graphs[0].graph
    groups = fuse(graph)
    seen: set = set()
    for g in groups:
        assert g.nodes == sorted(g.nodes) and not seen & set(g.nodes)
        seen |= set(g.nodes)
        assert _consistent_whole(graph, g)
        assert _no_cycle_whole(graph, set(g.nodes))
    assert seen == {n for n in graph.nodes() if fuse_mod.fusible(graph, n)}
    cf = ember.compile(program)
    for _ in range(3):
        got = cf(x, col)
    want = program(x, col)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


# ---- codegen: no recursion as deep as the chain ---------------------------------------

def _chain_kernel(n: int):
    from ember.codegen.kernel import Expr, Kernel, Load

    ex = [Expr("load", (0,), F32)]
    for i in range(n):
        ex.append(Expr("const", (1.0 + i * 1e-6,), F32))
        ex.append(Expr("mul" if i % 2 else "add", (len(ex) - 2, len(ex) - 1), F32))
    return Kernel("k", (16,), [Load(0, F32, (1,))], ex, [len(ex) - 1])


def test_codegen_emits_a_deep_chain_without_recursion():
    from ember.codegen.cuda.source import _Generator
    from ember.codegen.llvm.loops import _build_module, _Layout

    k = _chain_kernel(3000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)     # far below the chain's depth
    try:
        ir_text = _build_module(k, "k", _Layout.of(k))
        cuda = _Generator(k).source()
    finally:
        sys.setrecursionlimit(limit)
    assert ir_text.count(" fadd ") == 1500 and ir_text.count(" fmul ") == 1500
    # One definition per expr, in operand order: each uses only names defined above it.
    defs = [line.split("=")[0].split()[-1] for line in cuda.splitlines()
            if line.strip().startswith("const float p")]
    assert len(defs) == len(k.exprs)
    assert defs == [f"p{j}" for j in range(len(k.exprs))]


def test_a_deep_chain_kernel_runs_on_the_cpu():
    from ember.codegen.llvm import compile_kernel

    k = _chain_kernel(1500)
    x = np.linspace(-1, 1, 16).astype(np.float32)
    y = np.empty_like(x)
    compile_kernel(k).run([x], [y])
    want = x.copy()
    for i in range(1500):
        c = np.float32(1.0 + i * 1e-6)
        want = want * c if i % 2 else want + c
    np.testing.assert_allclose(y, want, rtol=1e-5)


# ---- verify and dce --------------------------------------------------------------------

def test_verify_catches_broken_graphs():
    g = _graph_chain(5)
    verify(g)
    last = g.nodes()[-1]
    bad = g.copy()
    bad[last].args = (last + 1,)          # a later node: would be a cycle
    with pytest.raises(GraphError, match="not an earlier node"):
        verify(bad)
    bad = g.copy()
    bad._nx.remove_edge(bad[last].args[0], last, key=0)
    with pytest.raises(GraphError, match="edge for operand 0"):
        verify(bad)
    bad = g.copy()
    bad._nx.add_edge(0, last, key=7)
    with pytest.raises(GraphError, match="in-edges"):
        verify(bad)
    bad = g.copy()
    bad.outputs = [10 ** 6]
    with pytest.raises(GraphError, match="output"):
        verify(bad)


@pytest.mark.parametrize("seed", range(10))
def test_dce_keeps_exactly_what_the_roots_need(seed):
    rng = random.Random(seed)
    g = Graph()
    ids = [g.add_input(InputSource("arg", f"args[{i}]"), (4,), F32, CPU) for i in range(3)]
    for _ in range(60):
        a, b = rng.choice(ids), rng.choice(ids)
        ids.append(g.add("add", (a, b), {}, (4,), F32, CPU))
    g.outputs = rng.sample(ids[3:], 4)
    nxg = g.to_networkx()
    want = set(g.inputs) | set(g.outputs)
    for o in g.outputs:
        want |= nx.ancestors(nxg, o)
    dce(g)
    verify(g)
    assert set(g.nodes()) == want


# ---- compile time, reported -------------------------------------------------------------

def test_explain_and_the_perf_log_give_compile_time_by_phase(monkeypatch, capsys):
    monkeypatch.setenv("EMBER_CACHE_DIR", "")          # LLVM must really run
    c = 1.0 + random.random()                          # a kernel no earlier test made

    def f(x):
        return (x * c).exp().sum(-1)
    report = ember.explain(f, ember.randn(4, 8))
    g = report.graphs[0]
    assert {"passes", "fuse", "lower", "codegen", "llvm"} <= set(g.phase_seconds)
    assert all(v >= 0 for v in g.phase_seconds.values())
    assert sum(g.phase_seconds.values()) <= g.compile_seconds + 1e-6
    text = str(report)
    assert f"compiled in {g.compile_seconds:.3f} s (passes " in text
    assert "us per node" in text and "llvm " in text
    ember.set_logs("perf")
    try:
        ember.compile(lambda x: (x * (c + 1)).exp())(ember.randn(4))
    finally:
        ember.set_logs("")
    err = capsys.readouterr().err
    assert "compile phases" in err and "llvm " in err and "us per node" in err


def test_phases_count_batched_kernels_in_codegen(monkeypatch):
    """Independent kernels are compiled again as one batch (horizontal fusion): its LLVM
    time is inside "codegen", so codegen without LLVM stays >= 0."""
    monkeypatch.setenv("EMBER_CACHE_DIR", "")
    c = 1.0 + random.random()

    def f(x, y):
        return (x * c).exp(), (y.sum(-1) * c).tanh()
    report = ember.explain(f, ember.randn(64), ember.randn(8, 16))
    g = report.graphs[0]
    assert len(g.kernels) == 1 and len(g.kernels[0].parts) == 2, g.kernels
    assert g.phase_seconds["codegen"] >= 0 and g.phase_seconds["llvm"] > 0
