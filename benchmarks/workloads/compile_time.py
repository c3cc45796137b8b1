"""Cold compile time: the chain, the MLP training step and long elementwise chains
(2,000 and 20,000 ops: compile time linear in the graph), each compiled afresh.

A cell's time is the wall time of the first two calls of a newly compiled function on
new state: ember traces, compiles and checks on call 1 and traces again on call 2 (it
replays from call 3); the peers compile on call 1 (torch.compile may recompile on call
2 once the optimizer's momentum buffers exist). One-time start-up costs (imports, LLVM
and inductor initialization, Numba's thread pool) are paid before timing by compiling
an unrelated function. torch.compile runs with its caches off, ember's kernel cache is
emptied and its persistent cache turned off, so every repeat compiles from nothing.

The long chains (``compile_chain_<n>``) time the first call alone: it traces, optimizes,
fuses, generates and compiles every kernel and checks the result against eager. Their
constants all differ, so no two kernels share machine code. torch eager (the same
Python, run once) is the reference; torch.compile runs on the 2,000-op chain only.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from benchmarks.harness import Impl, Prepared, Timed, Workload
from benchmarks.workloads import chain, mlp
from benchmarks.workloads.common import arrays, parse_count
from benchmarks.workloads.models import (LR, MOMENTUM, initial_weights, jax_sgd_step,
                                         make_train_step)

SIZES = ["128"]      # the MLP's batch; the chain runs on CHAIN_N elements
QUICK_SIZES = ["8"]
CHAIN_N = 4096
# Long elementwise chains (ops per chain) on LONG_CHAIN_N float32; the aims: under 1 s
# and under 10 s for the first call.
LONG_CHAINS = (2000, 20000)
QUICK_LONG_CHAINS = (200,)
LONG_CHAIN_N = 1024
TORCH_COMPILE_MAX_OPS = 2000   # inductor on 20,000 ops takes minutes


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = [Workload("compile_chain", "compile",
                    f"cold compile of the chain ({CHAIN_N} float32), first two calls",
                    chain_impls(), reference="torch.compile", unit="s", cold=True)]
    for text in sizes:
        batch = parse_count(text)
        out.append(Workload(f"compile_mlp_train_b{batch}", "compile",
                            f"cold compile of the MLP training step (batch {batch}), "
                            f"first two calls", mlp_train_impls(batch),
                            reference="torch.compile", unit="s", cold=True,
                            rtol=1e-3, atol=1e-5))
    quick = sizes == QUICK_SIZES
    for n in QUICK_LONG_CHAINS if quick else LONG_CHAINS:
        out.append(Workload(f"compile_chain_{n}", "compile",
                            f"cold compile of a {n:,}-op elementwise chain "
                            f"({LONG_CHAIN_N} float32), first call",
                            long_chain_impls(n), reference="torch", unit="s", cold=True,
                            rtol=1e-5, atol=1e-6))
    return out


def _timed(fn: Callable[[], Any], calls: int = 2) -> Timed:
    t = time.perf_counter()
    outs = [fn() for _ in range(calls)]
    return Timed(time.perf_counter() - t, outs)


@contextlib.contextmanager
def _ember_cold() -> Iterator[None]:
    """Empty ember's process-wide caches of compiled kernels (keyed by kernel signature,
    they outlive a CompiledFunction), so a new function compiles its kernels again."""
    if not _empty_ember_kernel_caches():
        raise RuntimeError("no ember kernel cache found to empty (ember.codegen.llvm._CACHE): "
                           "a cold compile could not be told from a cache hit")
    # The persistent cache too (EMBER_CACHE_DIR, read on each use): with it, every repeat
    # after the first loaded the machine code an earlier repeat stored.
    saved = os.environ.get("EMBER_CACHE_DIR")
    os.environ["EMBER_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["EMBER_CACHE_DIR"]
        else:
            os.environ["EMBER_CACHE_DIR"] = saved


def _empty_ember_kernel_caches() -> bool:
    import importlib
    emptied = False
    for name in ("ember.codegen.llvm", "ember.codegen.cuda"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        cache = getattr(module, "_CACHE", None)
        if hasattr(cache, "clear"):
            # Safe: the cache holds kernels weakly; the plans of live compiled functions
            # keep theirs (and their machine code) alive.
            cache.clear()
            emptied = emptied or name.endswith("llvm")
    return emptied


@contextlib.contextmanager
def _torch_cold() -> Iterator[None]:
    """Forget what dynamo compiled, and keep inductor from reusing anything on disk."""
    import torch
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()
    with inductor_config.patch(force_disable_caches=True), warnings.catch_warnings():
        # torch says it turned its profile-guided recompiles off: that is what we asked.
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")
        yield


# ---- the chain --------------------------------------------------------------------------

def chain_impls() -> list[Impl]:
    x, a, b = chain.inputs(CHAIN_N)

    def ember_setup() -> Prepared:
        import ember
        warm = ember.compile(lambda v: (v * 2).exp() + 1)
        for _ in range(3):
            warm(ember.ones(16))
        args = [ember.tensor(v) for v in (x, a, b)]

        def call() -> Timed:
            with _ember_cold():
                fn = ember.compile(chain.make_chain(ember))
                return _timed(lambda: fn(*args))
        return Prepared(call, arrays)

    def torch_setup() -> Prepared:
        import torch
        with _torch_cold():
            torch.compile(lambda v: (v * 2).exp() + 1)(torch.ones(16))
        args = [torch.from_numpy(v.copy()) for v in (x, a, b)]

        def call() -> Timed:
            with _torch_cold():
                fn = torch.compile(chain.make_chain(torch))
                return _timed(lambda: fn(*args))
        return Prepared(call, arrays)

    def numba_setup() -> Prepared:
        chain.numba_chain()(x, a, b)  # starts Numba's thread pool

        def call() -> Timed:
            fn = chain.numba_chain()  # a new dispatcher compiles anew
            return _timed(lambda: fn(x, a, b))
        return Prepared(call, arrays)

    def jax_setup() -> Prepared:
        import jax
        jax.block_until_ready(jax.jit(lambda v: v * 2 + 1)(np.ones(16, np.float32)))
        args = [jax.device_put(v) for v in (x, a, b)]

        def call() -> Timed:
            fn = jax.jit(chain.jax_chain())
            return _timed(lambda: jax.block_until_ready(fn(*args)))
        return Prepared(call, arrays)

    return [Impl("ember", "ember", ember_setup),
            Impl("torch.compile", "torch.compile", torch_setup),
            Impl("numba", "numba", numba_setup),
            Impl("jax.jit", "jax", jax_setup)]


# ---- long chains ------------------------------------------------------------------------

def make_long_chain(n: int) -> Callable[[Any], Any]:
    """``n`` dependent elementwise ops (mul, add, neg, relu, sub by constants that all
    differ), the same code for ember and torch tensors; values stay bounded."""
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


def long_chain_impls(n: int) -> list[Impl]:
    x = np.random.default_rng(5).standard_normal(LONG_CHAIN_N, dtype=np.float32)

    def ember_setup() -> Prepared:
        import ember
        warm = ember.compile(lambda v: (v * 2).exp() + 1)
        for _ in range(3):
            warm(ember.ones(16))
        xt = ember.tensor(x)

        def call() -> Timed:
            with _ember_cold():
                fn = ember.compile(make_long_chain(n))
                return _timed(lambda: fn(xt), calls=1)
        return Prepared(call, arrays)

    def torch_setup() -> Prepared:
        import torch
        xt = torch.from_numpy(x.copy())
        fn = make_long_chain(n)
        return Prepared(lambda: _timed(lambda: fn(xt), calls=1), arrays)

    def torch_compile_setup() -> Prepared:
        import torch
        with _torch_cold():
            torch.compile(lambda v: (v * 2).exp() + 1)(torch.ones(16))
        xt = torch.from_numpy(x.copy())

        def call() -> Timed:
            with _torch_cold():
                fn = torch.compile(make_long_chain(n))
                return _timed(lambda: fn(xt), calls=1)
        return Prepared(call, arrays)

    impls = [Impl("ember", "ember", ember_setup), Impl("torch", "torch", torch_setup)]
    if n <= TORCH_COMPILE_MAX_OPS:
        impls.append(Impl("torch.compile", "torch.compile", torch_compile_setup))
    return impls


# ---- the MLP training step ---------------------------------------------------------------

def mlp_train_impls(batch: int) -> list[Impl]:
    weights = initial_weights(mlp.SPEC)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)

    def lib_setup(lib_name: str) -> Callable[[], Prepared]:
        def setup() -> Prepared:
            lib: Any = __import__(lib_name)
            compile_ = lib.compile
            cold = _torch_cold if lib_name == "torch" else _ember_cold
            xt, yt = lib.tensor(x), lib.tensor(y)

            def fresh_step(model: Any) -> Callable[..., Any]:
                opt = lib.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
                return compile_(make_train_step(lib, model, opt))

            # A small model through the same step: backward and optimizer machinery
            # get loaded and initialized outside the timing.
            with cold():
                tiny = fresh_step(lib.nn.Linear(4, 2))
                for _ in range(3):
                    tiny(lib.ones(3, 4), lib.tensor(np.array([0, 1, 0])))

            def call() -> Timed:
                model = mlp.make_mlp(lib)
                model.load_state_dict({k: lib.tensor(v) for k, v in weights.items()})
                with cold():
                    step = fresh_step(model)
                    return _timed(lambda: step(xt, yt))
            return Prepared(call, arrays)
        return setup

    def jax_setup() -> Prepared:
        import jax
        import jax.numpy as jnp

        def make_step() -> Callable[..., Any]:
            return jax_sgd_step(mlp.jax_forward)

        xs, ys = jax.device_put(x), jax.device_put(y.astype(np.int32))
        params0 = {k: jax.device_put(v) for k, v in weights.items()}
        bufs0 = {k: jnp.zeros_like(v) for k, v in params0.items()}
        # Another batch size is another program: XLA's start-up is paid, nothing reused.
        jax.block_until_ready(make_step()(params0, bufs0, xs[:3], ys[:3]))

        def call() -> Timed:
            step = make_step()
            state = [params0, bufs0]

            def one() -> Any:
                loss, state[0], state[1] = step(state[0], state[1], xs, ys)
                return jax.block_until_ready(loss)
            return _timed(one)
        return Prepared(call, arrays)

    return [Impl("ember", "ember", lib_setup("ember")),
            Impl("torch.compile", "torch.compile", lib_setup("torch")),
            Impl("jax.jit", "jax", jax_setup)]
