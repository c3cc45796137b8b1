"""The kernel thread pool in machine code: a parallel kernel's shares start in ~1-5 us.

Kernels split their outer loop into row ranges that several threads run (``kernels.py``,
``native.py``). With a ``ThreadPoolExecutor`` each split cost a futex wake of a pool
thread and another of the caller waiting for it: on this VM a round trip took ~140 us
(measured: submitting ``usleep(0)`` and waiting for it), so a kernel split only from
~250 us of work, and a 1M-element tanh (~1 ms) ran 2 threads in 0.85-0.91 ms against
one thread's 1.0 ms: most of the second core's half went to waking.

Here the workers are threads that live inside generated code (a ctypes call that never
returns, with the GIL released): after a job each spins on a shared sequence number for
about ``SPIN_CYCLES`` (``pause`` between reads, ``sched_yield`` now and then so a
runnable thread such as a BLAS worker gets the core), then sleeps on it with a futex.
``run`` publishes a job (the kernel, its argument vector, the row count) in a control
block, wakes sleepers if any, and takes chunks itself; every thread takes the next
chunk with a compare-and-swap on ``(job, chunk)``, so a worker that wakes late takes
nothing, and the caller waits only for chunks already running. Nothing here touches a
Python object: the argument vector is the item array of a tuple the caller keeps alive,
or raw pointers, and each kernel is called through a small generated ``call_n(fn,
argv, lo, hi)`` that passes ``argv[0..n-1]`` as its first ``n`` arguments.

One job runs at a time: a second Python thread that calls ``run`` while the pool is busy
runs its kernel alone on its own thread (a try-lock), never waits. Linux on x86-64 only
(the futex system call, the time stamp counter); elsewhere, or with
``EMBER_SPIN_POOL=0``, ``available()`` is False and callers keep the executor.

>>> run(kernel_address, nargs=3, argv=items_address, total=4096, shares=2)   # doctest: +SKIP
"""
from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading

import llvmlite.ir as ir
import numpy as np

from ember import threads as _threads

SPIN_CYCLES = 1 << 18       # ~90 us at 3 GHz: a step's next kernel finds the workers awake
CHUNKS_PER_SHARE = 4        # chunks a job is cut into, per thread taking part
_YIELD_EVERY = 64           # spinning reads between two sched_yield calls
_WAIT_SPINS = 1 << 12       # the caller's reads of ``done`` before it yields between them

# The control block: int64 slots, each group on a cache line of its own.
_BUSY, _SEQ, _NEXT, _DONE, _SLEEPERS, _STOP = 0, 8, 16, 24, 32, 40
_CALLER, _FN, _ARGV, _TOTAL, _CHUNKS, _ALLOWED = 48, 49, 50, 51, 52, 53
_SLOTS = 56

# Linux x86-64 only: the spin reads the time stamp counter (``llvm.readcyclecounter``,
# rdtsc), which on aarch64 becomes a read of PMCCNTR_EL0 that user space may not be
# allowed (SIGILL); aarch64 (futex 98) would need another clock and was never run.
_FUTEX = 202                          # its system call number there
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129   # the _PRIVATE forms

_I32, _I64, _P = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
_VOID = ir.VoidType()


def _c(v: int, t=_I64) -> ir.Constant:
    return ir.Constant(t, v)


def _pool_source() -> str:
    """The IR of ``ember_pool_run(ctl, caller, fn, argv, total, shares)`` and
    ``ember_pool_worker(ctl, index)``."""
    m = ir.Module(name="ember_pool")
    i64p = _I64.as_pointer()
    syscall = ir.Function(m, ir.FunctionType(_I64, [_I64], var_arg=True), name="syscall")
    sched_yield = ir.Function(m, ir.FunctionType(_I32, []), name="sched_yield")
    cycles = ir.Function(m, ir.FunctionType(_I64, []), name="llvm.readcyclecounter")
    pause = ir.Function(m, ir.FunctionType(_VOID, []), name="llvm.x86.sse2.pause")
    caller_t = ir.FunctionType(_VOID, [_P, _P, _I64, _I64])

    def slot(b, ctl, k):
        return b.gep(ctl, [_c(k)], inbounds=True)

    def seq_ptr(b, ctl):   # the futex word: the low half of the _SEQ slot (little endian)
        return b.bitcast(slot(b, ctl, _SEQ), _I32.as_pointer())

    def relax(b):
        b.call(pause, [])

    def take_chunks(fn_ir, b, ctl, s):
        """Run chunks of job ``s`` until none is left; returns the builder after."""
        f_caller = b.inttoptr(b.load(slot(b, ctl, _CALLER)), caller_t.as_pointer())
        f_fn = b.inttoptr(b.load(slot(b, ctl, _FN)), _P)
        f_argv = b.inttoptr(b.load(slot(b, ctl, _ARGV)), _P)
        total = b.load(slot(b, ctl, _TOTAL))
        chunks = b.load(slot(b, ctl, _CHUNKS))
        tag = b.shl(b.zext(s, _I64), _c(32))
        grab = fn_ir.append_basic_block("grab")
        work = fn_ir.append_basic_block("work")
        out = fn_ir.append_basic_block("out")
        b.branch(grab)
        b.position_at_end(grab)
        cur = b.load_atomic(slot(b, ctl, _NEXT), "acquire", 8)
        k = b.and_(cur, _c(0xFFFFFFFF))
        mine = b.and_(b.icmp_unsigned("==", b.and_(cur, _c(~0xFFFFFFFF)), tag),
                      b.icmp_unsigned("<", k, chunks))
        try_ = fn_ir.append_basic_block("try")
        b.cbranch(mine, try_, out)
        b.position_at_end(try_)
        pair = b.cmpxchg(slot(b, ctl, _NEXT), cur, b.add(cur, _c(1)), "acq_rel", "acquire")
        b.cbranch(b.extract_value(pair, 1), work, grab)
        b.position_at_end(work)
        lo = b.udiv(b.mul(total, k), chunks)
        hi = b.udiv(b.mul(total, b.add(k, _c(1))), chunks)
        b.call(f_caller, [f_fn, f_argv, lo, hi])
        b.atomic_rmw("add", slot(b, ctl, _DONE), _c(1), "release")
        b.branch(grab)
        b.position_at_end(out)
        return b

    # -- ember_pool_worker(ctl, index): never returns until _STOP is set
    w = ir.Function(m, ir.FunctionType(_VOID, [i64p, _I64]), name="ember_pool_worker")
    ctl, index = w.args
    b = ir.IRBuilder(w.append_basic_block("entry"))
    first = b.load_atomic(seq_ptr(b, ctl), "acquire", 4)
    loop = w.append_basic_block("loop")
    b.branch(loop)
    b.position_at_end(loop)
    my = b.phi(_I32)
    my.add_incoming(first, w.entry_basic_block)
    t0 = b.call(cycles, [])
    spin = w.append_basic_block("spin")
    entry_bb = b.block
    b.branch(spin)
    b.position_at_end(spin)
    n = b.phi(_I64)
    start = b.phi(_I64)
    n.add_incoming(_c(0), entry_bb)
    start.add_incoming(t0, entry_bb)
    stop_bb, check_bb, got_bb = (w.append_basic_block(x) for x in ("stop", "check", "got"))
    b.cbranch(b.icmp_unsigned("!=", b.load_atomic(slot(b, ctl, _STOP), "monotonic", 8), _c(0)),
              stop_bb, check_bb)
    b.position_at_end(stop_bb)
    b.ret_void()
    b.position_at_end(check_bb)
    s = b.load_atomic(seq_ptr(b, ctl), "acquire", 4)
    idle_bb = w.append_basic_block("idle")
    b.cbranch(b.icmp_unsigned("!=", s, my), got_bb, idle_bb)
    b.position_at_end(idle_bb)
    relax(b)
    n1 = b.add(n, _c(1))
    yield_bb, noyield_bb, after_yield = (w.append_basic_block(x) for x in
                                         ("yield", "noyield", "after_yield"))
    b.cbranch(b.icmp_unsigned("==", b.urem(n1, _c(_YIELD_EVERY)), _c(0)), yield_bb, noyield_bb)
    b.position_at_end(yield_bb)
    b.call(sched_yield, [])
    b.branch(after_yield)
    b.position_at_end(noyield_bb)
    b.branch(after_yield)
    b.position_at_end(after_yield)
    now = b.call(cycles, [])
    sleep_bb, back_bb = w.append_basic_block("sleep"), w.append_basic_block("back")
    b.cbranch(b.icmp_unsigned(">", b.sub(now, start), _c(SPIN_CYCLES)), sleep_bb, back_bb)
    b.position_at_end(back_bb)
    b.branch(spin)
    n.add_incoming(n1, back_bb)
    start.add_incoming(start, back_bb)
    # Sleep: announce it, look once more (seq_cst on both sides: the caller stores the
    # new job then reads the sleepers, a worker counts itself then reads the job, so one
    # of them sees the other), then wait while the word still holds ``my``.
    b.position_at_end(sleep_bb)
    b.atomic_rmw("add", slot(b, ctl, _SLEEPERS), _c(1), "seq_cst")
    again = b.load_atomic(seq_ptr(b, ctl), "seq_cst", 4)
    wait_bb, woke_bb = w.append_basic_block("wait"), w.append_basic_block("woke")
    stopping = b.icmp_unsigned("!=", b.load_atomic(slot(b, ctl, _STOP), "seq_cst", 8), _c(0))
    b.cbranch(b.and_(b.icmp_unsigned("==", again, my), b.not_(stopping)), wait_bb, woke_bb)
    b.position_at_end(wait_bb)
    # (every argument a full word: libc's syscall() reads each as a long)
    b.call(syscall, [_c(_FUTEX), b.ptrtoint(seq_ptr(b, ctl), _I64), _c(_FUTEX_WAIT),
                     b.zext(my, _I64), _c(0)])
    b.branch(woke_bb)
    b.position_at_end(woke_bb)
    b.atomic_rmw("sub", slot(b, ctl, _SLEEPERS), _c(1), "seq_cst")
    t1 = b.call(cycles, [])
    b.branch(spin)
    n.add_incoming(_c(0), woke_bb)
    start.add_incoming(t1, woke_bb)
    # A new job: take part if this worker's index is below the job's count.
    b.position_at_end(got_bb)
    join_bb = w.append_basic_block("join")
    b.cbranch(b.icmp_unsigned("<", index, b.load(slot(b, ctl, _ALLOWED))), join_bb, loop)
    my.add_incoming(s, got_bb)
    b.position_at_end(join_bb)
    b = take_chunks(w, b, ctl, s)
    my.add_incoming(s, b.block)
    b.branch(loop)

    # -- ember_pool_run(ctl, caller, fn, argv, total, shares)
    r = ir.Function(m, ir.FunctionType(_VOID, [i64p, _I64, _I64, _I64, _I64, _I64]),
                    name="ember_pool_run")
    ctl, caller, fn, argv, total, shares = r.args
    b = ir.IRBuilder(r.append_basic_block("entry"))
    alone_bb, lock_bb, go_bb = (r.append_basic_block(x) for x in ("alone", "lock", "go"))
    b.cbranch(b.icmp_signed(">=", shares, _c(2)), lock_bb, alone_bb)
    b.position_at_end(alone_bb)
    b.call(b.inttoptr(caller, caller_t.as_pointer()),
           [b.inttoptr(fn, _P), b.inttoptr(argv, _P), _c(0), total])
    b.ret_void()
    b.position_at_end(lock_bb)
    pair = b.cmpxchg(slot(b, ctl, _BUSY), _c(0), _c(1), "acquire", "monotonic")
    b.cbranch(b.extract_value(pair, 1), go_bb, alone_bb)
    b.position_at_end(go_bb)
    chunks = b.mul(shares, _c(CHUNKS_PER_SHARE))
    chunks = b.select(b.icmp_signed("<", total, chunks), total, chunks)
    s = b.add(b.load(seq_ptr(b, ctl)), _c(1, _I32))
    for k, v in ((_CALLER, caller), (_FN, fn), (_ARGV, argv), (_TOTAL, total),
                 (_CHUNKS, chunks), (_ALLOWED, b.sub(shares, _c(1)))):
        b.store(v, slot(b, ctl, k))
    b.store(_c(0), slot(b, ctl, _DONE))
    b.store_atomic(b.shl(b.zext(s, _I64), _c(32)), slot(b, ctl, _NEXT), "release", 8)
    b.store_atomic(s, seq_ptr(b, ctl), "seq_cst", 4)
    wake_bb, mine_bb = r.append_basic_block("wake"), r.append_basic_block("mine")
    sleepers = b.load_atomic(slot(b, ctl, _SLEEPERS), "seq_cst", 8)
    b.cbranch(b.icmp_unsigned("!=", sleepers, _c(0)), wake_bb, mine_bb)
    b.position_at_end(wake_bb)
    b.call(syscall, [_c(_FUTEX), b.ptrtoint(seq_ptr(b, ctl), _I64), _c(_FUTEX_WAKE),
                     _c(0x7FFFFFFF)])
    b.branch(mine_bb)
    b.position_at_end(mine_bb)
    b = take_chunks(r, b, ctl, s)
    # Wait for the chunks other threads are running.
    wait_bb, done_bb = r.append_basic_block("wait"), r.append_basic_block("done")
    before = b.block
    b.branch(wait_bb)
    b.position_at_end(wait_bb)
    i = b.phi(_I64)
    i.add_incoming(_c(0), before)
    finished = b.icmp_unsigned("==", b.load_atomic(slot(b, ctl, _DONE), "acquire", 8), chunks)
    more_bb = r.append_basic_block("more")
    b.cbranch(finished, done_bb, more_bb)
    b.position_at_end(more_bb)
    relax(b)
    y_bb, ny_bb, next_bb = (r.append_basic_block(x) for x in ("y", "ny", "next"))
    b.cbranch(b.icmp_unsigned(">", i, _c(_WAIT_SPINS)), y_bb, ny_bb)
    b.position_at_end(y_bb)
    b.call(sched_yield, [])
    b.branch(next_bb)
    b.position_at_end(ny_bb)
    b.branch(next_bb)
    b.position_at_end(next_bb)
    i.add_incoming(b.add(i, _c(1)), next_bb)
    b.branch(wait_bb)
    b.position_at_end(done_bb)
    b.store_atomic(_c(0), slot(b, ctl, _BUSY), "release", 8)
    b.ret_void()
    return str(m)


def _caller_source(n: int) -> str:
    """``ember_call_n(fn, argv, lo, hi)``: ``fn(argv[0], ..., argv[n-1], lo, hi)`` (every
    argument a pointer-sized value: objects, data pointers)."""
    m = ir.Module(name=f"ember_call_{n}")
    f = ir.Function(m, ir.FunctionType(_VOID, [_P, _P, _I64, _I64]), name=f"ember_call_{n}")
    fn, argv, lo, hi = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    words = b.bitcast(argv, _P.as_pointer())
    args = [b.load(b.gep(words, [_c(k)])) for k in range(n)]
    target = b.bitcast(fn, ir.FunctionType(_VOID, [_P] * n + [_I64, _I64]).as_pointer())
    b.call(target, args + [lo, hi])
    b.ret_void()
    return str(m)


class _Pool:
    """The control block, the workers and the generated functions of this process."""

    def __init__(self) -> None:
        from ember.codegen.llvm.jit import _jit
        # int64 slots on 64-byte lines (the array is over-allocated to align it)
        self._mem = np.zeros(_SLOTS + 8, np.int64)
        skip = (-self._mem.ctypes.data % 64) // 8
        self.ctl = self._mem[skip:skip + _SLOTS]
        self.ctl_addr = self.ctl.ctypes.data
        self._engine, _ = _jit(_pool_source())
        i64 = ctypes.c_int64
        self._run = ctypes.CFUNCTYPE(None, i64, i64, i64, i64, i64, i64)(
            self._engine.get_function_address("ember_pool_run"))
        self._worker = ctypes.CFUNCTYPE(None, i64, i64)(
            self._engine.get_function_address("ember_pool_worker"))
        self._callers: dict[int, tuple] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def caller(self, n: int) -> int:
        found = self._callers.get(n)
        if found is None:
            from ember.codegen.llvm.jit import _jit
            with self._lock:
                found = self._callers.get(n)
                if found is None:
                    engine, _ = _jit(_caller_source(n))
                    found = self._callers[n] = (engine,
                                                engine.get_function_address(f"ember_call_{n}"))
        return found[1]

    def workers(self, n: int) -> None:
        """Have at least ``n`` workers running."""
        if len(self._threads) >= n:
            return
        with self._lock:
            while len(self._threads) < n:
                t = threading.Thread(target=self._worker, name="ember-cpu",
                                     args=(self.ctl_addr, len(self._threads)), daemon=True)
                t.start()
                self._threads.append(t)

    def run(self, fn: int, nargs: int, argv: int, total: int, shares: int) -> None:
        self.workers(shares - 1)
        self._run(self.ctl_addr, self.caller(nargs), fn, argv, total, shares)

    def stop(self) -> None:
        """Let the workers return (at exit): they see the flag within their spin, or
        are woken from the futex."""
        self.ctl[_STOP] = 1
        if self._threads:
            lib = ctypes.CDLL(None, use_errno=True)
            word = ctypes.c_void_p(self.ctl_addr + 8 * _SEQ)
            lib.syscall(ctypes.c_long(_FUTEX), word, ctypes.c_int(_FUTEX_WAKE),
                        ctypes.c_int(0x7FFFFFFF))


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()
_DISABLED = os.environ.get("EMBER_SPIN_POOL", "1").strip() in ("0", "off", "false", "no")


def available() -> bool:
    """Whether kernels split through this pool here (else through the executor)."""
    return (not _DISABLED and platform.system() == "Linux" and platform.machine() == "x86_64"
            and sys.implementation.name == "cpython"
            and ctypes.sizeof(ctypes.c_void_p) == 8)


def _pool() -> _Pool:
    global _POOL
    pool = _POOL
    if pool is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = _Pool()
            pool = _POOL
    return pool


def run(fn: int, nargs: int, argv: int, total: int, shares: int | None = None) -> None:
    """Call ``fn(argv[0], ..., argv[nargs-1], lo, hi)`` over row ranges covering
    ``[0, total)``, on ``shares`` threads (default ``ember.get_num_threads()``): the
    calling thread and up to ``shares - 1`` workers. ``argv`` is the address of
    ``nargs`` pointer-sized words the caller keeps alive until this returns."""
    if shares is None:
        shares = _threads._num_threads
    _pool().run(fn, nargs, argv, total, min(shares, total))


def _forget() -> None:
    """In a forked child only the forking thread exists: start a new pool there (the
    parent's workers, and possibly its busy flag, were copied without their threads)."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


def _stop() -> None:
    if _POOL is not None:
        _POOL.stop()


os.register_at_fork(after_in_child=_forget)
atexit.register(_stop)
