"""The ``passes`` log channel: node counts before and after each pass, and what it changed.

``run_pipeline(graph, log=recorder)`` calls the recorder after every pass with the IR text
before and after. The recorder keeps those texts (the dump folder writes the IR after each
pass) and times (the ``perf`` channel), and logs a short diff.

>>> ember.set_logs("passes")
>>> ember.compile(lambda x: (x * 2) + (x * 2))(ember.ones(3))
[ember:passes] <lambda>: pass cse: 6 -> 4 nodes in 0.12 ms
    - %3:f32[] = const 2.0
    - %4:f32[3] = mul %0, %3
    - %5:f32[3] = add %2, %4
    + %5:f32[3] = add %2, %2
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from ember.inspect import logs

# Diff lines shown per pass: enough to see what a pass did without flooding the log.
MAX_DIFF_LINES = 12


@dataclass
class PassRun:
    name: str
    before: str
    after: str
    seconds: float

    @property
    def nodes_before(self) -> int:
        return count_nodes(self.before)

    @property
    def nodes_after(self) -> int:
        return count_nodes(self.after)


class PassRecorder:
    """Collects every pass of one pipeline run; logs each to the ``passes`` channel."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs: list[PassRun] = []

    def __call__(self, name: str, before: str, after: str, seconds: float) -> None:
        run = PassRun(name, before, after, seconds)
        self.runs.append(run)
        if logs.enabled("passes"):
            lines = [f"{self.name}: pass {name}: {run.nodes_before} -> {run.nodes_after} nodes "
                     f"in {seconds * 1e3:.2f} ms" + ("" if before != after else " (no change)")]
            lines += ["    " + d for d in diff_lines(before, after)]
            logs.log("passes", "\n".join(lines))

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)


def count_nodes(ir_text: str) -> int:
    """Nodes in a Graph.text() (one ``%id:type = ...`` line each)."""
    return sum(1 for line in ir_text.splitlines() if line.startswith("%"))


def diff_lines(before: str, after: str, limit: int = MAX_DIFF_LINES) -> list[str]:
    """The removed (-) and added (+) IR lines, at most ``limit`` of them."""
    out = [f"{line[0]} {line[1:]}".rstrip() for line in difflib.unified_diff(
        before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more changed lines"]
    return out
