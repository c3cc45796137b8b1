"""The pass pipeline. A pass is a plain function Graph -> Graph in its own file."""
from __future__ import annotations

import time

from ember.codegen.phases import phase
from ember.ir.passes.cse import cse
from ember.ir.passes.dce import dce
from ember.ir.passes.fold import fold
from ember.ir.passes.fuse_conv_epilogue import fuse_conv_epilogue
from ember.ir.passes.fuse_pool_relu import fuse_pool_relu
from ember.ir.passes.simplify import simplify
from ember.ir.passes.unslice_cat import unslice_cat
from ember.ir.verify import verify

# The two fusions after cse (one node per value: a reader count is the real one).
PIPELINE = [fold, simplify, cse, unslice_cat, fuse_pool_relu, fuse_conv_epilogue, dce]


def run_pipeline(graph, *, check: bool = True, log=None):
    """Run every pass in order; ``log(name, before_text, after_text, seconds)`` sees each."""
    for p in PIPELINE:
        before = graph.text() if log else None
        t0 = time.perf_counter()
        with phase("passes"):
            graph = p(graph)
            if check:
                verify(graph)
        if log:
            log(p.__name__, before, graph.text(), time.perf_counter() - t0)
    return graph
