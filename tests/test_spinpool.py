"""The kernel thread pool in machine code (ember/codegen/llvm/spinpool.py): every row
range runs exactly once, from any number of Python threads, after sleeping, after a
fork, at any thread count, and a process using it exits."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import ember
from ember.codegen.llvm import spinpool
from ember.codegen.llvm.jit import _jit

pytestmark = pytest.mark.skipif(not spinpool.available(), reason="no spin pool here")

# out[i] += in[i] + 1 for i in [lo, hi): a range run twice, or not at all, shows.
_ADD = r"""
define void @ember_test_add(i8* %a, i8* %o, i64 %lo, i64 %hi) {
entry:
  %ap = bitcast i8* %a to float*
  %op = bitcast i8* %o to float*
  br label %loop
loop:
  %i = phi i64 [%lo, %entry], [%i1, %body]
  %c = icmp slt i64 %i, %hi
  br i1 %c, label %body, label %exit
body:
  %pa = getelementptr float, float* %ap, i64 %i
  %po = getelementptr float, float* %op, i64 %i
  %v = load float, float* %pa
  %w = load float, float* %po
  %s = fadd float %v, 1.0
  %t = fadd float %w, %s
  store float %t, float* %po
  %i1 = add i64 %i, 1
  br label %loop
exit:
  ret void
}
"""
_ENGINE, _ = _jit(_ADD)
_FN = _ENGINE.get_function_address("ember_test_add")


def _run(a: np.ndarray, o: np.ndarray, total: int, shares: int) -> None:
    words = (ctypes.c_int64 * 2)(a.ctypes.data, o.ctypes.data)
    spinpool.run(_FN, 2, ctypes.addressof(words), total, shares)


@pytest.mark.parametrize("shares", [1, 2, 3, 5])
def test_every_row_once(shares):
    rng = np.random.default_rng(shares)
    for total in [1, 2, 3, 7, 8, 63, 1000, 100_003]:
        a = rng.random(total + 5).astype(np.float32)
        o = np.zeros_like(a)
        _run(a, o, total, shares)
        np.testing.assert_array_equal(o[:total], a[:total] + 1)
        assert not o[total:].any()


def test_many_python_threads_at_once():
    """One job at a time: a thread that finds the pool busy runs its kernel alone."""
    errors = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            n = int(rng.integers(1, 50_000))
            a = rng.random(n).astype(np.float32)
            o = np.zeros_like(a)
            _run(a, o, n, 2)
            if not np.array_equal(o, a + 1):
                errors.append(seed)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)


def test_after_the_workers_slept():
    """Past their spin the workers wait on a futex: the next job wakes them (or runs
    without them), never hangs."""
    a = np.arange(4096, dtype=np.float32)
    for _ in range(5):
        time.sleep(0.02)   # ~200x the spin
        o = np.zeros_like(a)
        _run(a, o, a.size, 2)
        np.testing.assert_array_equal(o, a + 1)


def test_compiled_kernels_split_equal_one_thread():
    x = ember.randn(512, 768)
    fn = ember.compile(lambda x: (ember.tanh(x) * 2 + x).exp())
    before = ember.get_num_threads()
    try:
        ember.set_num_threads(1)
        one = [fn(x).numpy().copy() for _ in range(5)][-1]
        for n in (2, 3):
            ember.set_num_threads(n)
            for _ in range(5):
                np.testing.assert_array_equal(fn(x).numpy(), one)
    finally:
        ember.set_num_threads(before)


def _child(queue) -> None:
    a = np.arange(10_000, dtype=np.float32)
    o = np.zeros_like(a)
    _run(a, o, a.size, 2)
    queue.put(bool(np.array_equal(o, a + 1)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_pool():
    import multiprocessing
    a = np.ones(10_000, np.float32)
    _run(a, np.zeros_like(a), a.size, 2)   # the parent's workers exist
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) is True


def test_a_process_using_it_exits():
    code = ("import ember; x = ember.randn(512, 768); "
            "f = ember.compile(lambda x: ember.tanh(x).exp()); [f(x) for _ in range(6)]; "
            "from ember.codegen.llvm import spinpool; assert spinpool._POOL._threads; "
            "print('done')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]
