"""A warm start: a second process finds the CPU kernels in the persistent cache by their
description, builds no LLVM IR, links the cached object code into the ORC JIT, and
computes bit for bit what the first process computed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.codegen.llvm import jit, kernels, native
from ember.diskcache import default_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPS = r"""
import json, sys
import numpy as np
import ember
import ember.codegen.llvm.fastcall as fastcall
import ember.codegen.llvm.kernels as kernels
import ember.codegen.llvm.native as native
from ember.diskcache import default_cache

built = []   # kernel modules generated, builtin-call trampolines compiled
real_build, real_jit = kernels._build_module, fastcall._jit
kernels._build_module = lambda *a: built.append(a[1]) or real_build(*a)


def counted_jit(source):
    engine, module = real_jit(source)
    if module is not None:   # compiled here, not loaded from the cache
        built.append("trampoline")
    return engine, module


fastcall._jit = counted_jit
real_native_jit = native._jit


def counted_native_jit(source):   # native kernels (eager exp, erf, tanh: eager_math.py)
    engine, module = real_native_jit(source)
    if module is not None:
        built.append("native")
    return engine, module


native._jit = counted_native_jit
rng = np.random.default_rng(0)
x = ember.tensor(rng.standard_normal((37, 65)).astype(np.float32))
xi = ember.tensor(rng.integers(-50, 50, (37, 65)).astype(np.int64))

def softmax(a):
    e = (a - a.amax(dim=1, keepdim=True)).exp()
    return e / e.sum(dim=1, keepdim=True)

fns = {"trig": (lambda a: a.sin() * a.cos() + 1, x),          # libm calls (sinf, cosf)
       "pow": (lambda a: (a.abs() + 0.5) ** 1.7, x),
       "erf_tanh": (lambda a: ember.erf(a) + a.tanh(), x),
       "softmax": (softmax, x),
       "var_mean": (lambda a: a.var(dim=0) + a.mean(dim=0), x),
       "int": (lambda a: (a * 3 - 7) // 4 + a % 5, xi)}
out = {}
for name, (f, arg) in fns.items():
    c = ember.compile(f)
    results = [c(arg).numpy() for _ in range(3)]
    ref = f(arg).numpy()
    for r in results:
        np.testing.assert_allclose(r, ref, rtol=1e-5, atol=1e-6, err_msg=name)
    out[name] = [r.tobytes().hex() for r in results]
stats = default_cache().stats
print(json.dumps({"out": out, "built": len(built), "hits": stats.hits,
                  "writes": stats.writes, "rejected": stats.rejected}))
"""


def _run(script: str, cache_dir, *args: str) -> dict:
    env = dict(os.environ, EMBER_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_builds_no_ir_and_computes_bit_for_bit_the_same(tmp_path):
    first = _run(OPS, tmp_path)
    assert first["writes"] > 0 and first["built"] == first["writes"] and not first["hits"]
    second = _run(OPS, tmp_path)
    assert second["built"] == 0 and second["writes"] == 0
    assert second["hits"] == first["writes"] and second["rejected"] == 0
    assert second["out"] == first["out"]


def _kernel_fn(a):
    return (a * 1.5).exp() - a


def _forget_kernels() -> None:
    """This process's compiled kernels and the native kernels eager exp runs on: the
    next use finds them in the persistent cache or builds them. (Call trampolines stay:
    kernels keep launchers into them.)"""
    kernels._CACHE.clear()
    native._KERNELS.clear()


def test_an_edited_code_generator_never_loads_old_code(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    cache = default_cache()
    x = ember.randn(16, 8)
    _forget_kernels()
    ember.compile(_kernel_fn)(x)
    writes = cache.stats.writes
    assert writes > 0
    _forget_kernels()
    hits = cache.stats.hits
    ember.compile(_kernel_fn)(x)
    # the same code: hits (a trampoline written the first time stays in memory)
    assert cache.stats.writes == writes and cache.stats.hits - hits >= 2
    # Another generator (its files hash differently): the description alone must not hit.
    # (Native kernels and trampolines are found by their IR text, which is the code:
    # they stay loaded here.)
    monkeypatch.setattr(jit, "_FINGERPRINT", "an edited ember/codegen")
    kernels._CACHE.clear()
    hits = cache.stats.hits
    out = ember.compile(_kernel_fn)(x)
    assert cache.stats.hits == hits and cache.stats.writes > writes
    np.testing.assert_allclose(out.numpy(), _kernel_fn(x).numpy(), rtol=1e-6)


def test_the_fingerprint_covers_the_code_generator_files():
    fp = jit._codegen_fingerprint()
    assert len(fp) == 64 and fp == jit._codegen_fingerprint()


def test_cached_code_outlives_nothing_it_should_not(tmp_path, monkeypatch):
    # Libraries linked from the cache are freed with their kernels; later kernels (new
    # libraries, never a reused name) still load and run.
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    x = ember.randn(9, 7)
    for round_ in range(3):
        for scale in (1.5, 2.5, 3.5):
            kernels._CACHE.clear()
            fn = ember.compile(lambda a, s=scale: (a * s).tanh() + s)
            np.testing.assert_allclose(fn(x).numpy(), (x * scale).tanh().numpy() + scale,
                                       rtol=1e-6, atol=1e-6)
            del fn
    assert default_cache().stats.hits > 0


@pytest.mark.slow
def test_the_warm_start_workload_hits_the_cache_in_a_fresh_process(tmp_path):
    sys.path.insert(0, ROOT)
    from benchmarks.workloads.warm_start import run_child
    cold = run_child(8, str(tmp_path))
    warm = run_child(8, str(tmp_path))
    assert cold["writes"] > 0 and warm["writes"] == 0
    assert warm["hits"] >= cold["writes"] + cold["hits"]
    assert warm["losses"] == cold["losses"]
    assert set(warm["phases"]) >= {"trace", "plans", "kernels"}
