"""ember.profiler (torch.profiler's names): eager ops and record_function ranges timed,
schedules, traces; nothing changed outside a profile."""
from __future__ import annotations

import json

import ember
from ember.ops.registry import OPS
from ember.profiler import ProfilerActivity, profile, record_function, schedule


def test_ops_and_ranges_are_timed_and_nothing_stays_wrapped():
    eager = OPS["matmul"].eager
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        with record_function("forward"):
            (ember.ones(8, 8) @ ember.ones(8, 8)).relu()
    rows = {r.key: r for r in prof.key_averages()}
    assert {"forward", "matmul", "relu"} <= set(rows)
    assert rows["full"].count == 2 and rows["forward"].cpu_time_total >= rows["matmul"].cpu_time_total
    shaped = prof.key_averages(group_by_input_shape=True)
    assert [[8, 8], [8, 8]] in [r.input_shapes for r in shaped if r.key == "matmul"]
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=2)
    assert table.count("\n") == 7 and "forward" in table
    assert OPS["matmul"].eager is eager   # unwrapped on exit


def test_schedule_spans_and_chrome_trace(tmp_path):
    spans = []
    with profile(schedule=schedule(wait=1, warmup=1, active=2, repeat=1),
                 on_trace_ready=lambda p: spans.append([e.name for e in p.events])) as prof:
        for _ in range(6):
            ember.ones(3).exp()
            prof.step()
    assert spans == [["full", "exp"] * 2]   # the two active steps only
    with profile() as prof:
        ember.ones(3).exp()
    prof.export_chrome_trace(str(tmp_path / "t.json"))
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert [e["name"] for e in events] == ["full", "exp"] and all(e["dur"] >= 0 for e in events)


def test_autograd_profiler_names():
    from ember.autograd.profiler import profile as old_profile, record_function as rf
    with old_profile(use_cuda=False) as prof, rf("x"):
        ember.ones(2).sum()
    assert [r.key for r in prof.key_averages()] == ["full", "sum", "x"]
