"""ember.distributed and DistributedDataParallel, on 1, 2 and 3 MPI processes.

Each multi-process test starts ``mpiexec`` (or ``ember-run``) on this very file, whose
``__main__`` part is the worker: every rank checks its results against NumPy and prints
"OK <case> <rank>"; a failed check raises, which aborts the whole job. Every launch has
a timeout, so nothing hangs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.abspath(__file__)


def _launcher_available() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'ember[distributed]')"
    from ember.distributed.run import find_mpiexec
    try:
        find_mpiexec()
    except SystemExit as e:
        return str(e)
    return None


_why = _launcher_available() if __name__ != "__main__" else None
needs_mpi = pytest.mark.skipif(_why is not None, reason=_why or "")


def launch(n: int, case: str, *args: str, timeout: float = 90, runner: str = "mpiexec",
           env: dict | None = None) -> subprocess.CompletedProcess:
    from ember.distributed.run import find_mpiexec
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             PYTHONUNBUFFERED="1")
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    e.update(env or {})
    if runner == "mpiexec":
        cmd = [find_mpiexec(), "-n", str(n), sys.executable, HERE, case, *args]
    else:
        cmd = [sys.executable, "-m", "ember.distributed.run", "--nproc-per-node", str(n),
               HERE, case, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)


def assert_ok(p: subprocess.CompletedProcess, n: int, case: str) -> None:
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for r in range(n):
        assert f"OK {case} {r}" in p.stdout, out[-4000:]


# ---- tests ----------------------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_collectives_against_numpy(n):
    p = launch(n, "collectives", env={"EMBER_DISTRIBUTED_DEBUG": "1"})
    assert_ok(p, n, "collectives")


def _reference_training(steps: int) -> list[np.ndarray]:
    """One process, the whole batch, no DDP: the weights every split must reach."""
    model, opt, x, y = _problem(0, 1)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.detach().numpy() for p in model.parameters()]


@needs_mpi
@pytest.mark.parametrize("n,runner", [(1, "mpiexec"), (2, "ember-run"), (3, "mpiexec")])
def test_training_matches_one_process(n, runner, tmp_path):
    ref = _reference_training(TRAIN_STEPS)
    out = str(tmp_path / "w")
    p = launch(n, "train", out, runner=runner)
    assert_ok(p, n, "train")
    for mode in TRAIN_MODES:
        got = np.load(f"{out}_{mode}.npz")
        for i, r in enumerate(ref):
            np.testing.assert_allclose(got[f"arr_{i}"], r, atol=1e-5, rtol=0,
                                       err_msg=f"{mode}, {n} processes, parameter {i}")


@needs_mpi
def test_no_sync_and_unused_parameters():
    p = launch(2, "ddp_features")
    assert_ok(p, 2, "ddp_features")


@needs_mpi
@pytest.mark.parametrize("blocking", ["0", "1"])
def test_nccl_code_path_on_the_cupy_standin(blocking, tmp_path):
    """No GPU here: ember's NCCL backend runs against a fake ``cupy.cuda.nccl`` (MPI
    underneath) on the CuPy stand-in, with stream-ordered and host-blocking waits. What
    stays unverified: real NCCL and CuPy calls, streams, timeouts of hung NCCL kernels."""
    ref = _reference_training(TRAIN_STEPS)
    out = str(tmp_path / "nccl.npz")
    p = launch(2, "nccl", out, env={"EMBER_NCCL_BLOCKING_WAIT": blocking})
    assert_ok(p, 2, "nccl")
    got = np.load(out)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(got[f"arr_{i}"], r, atol=1e-5, rtol=0)


@needs_mpi
def test_failing_rank_ends_the_job_with_its_message():
    t0 = time.monotonic()
    p = launch(3, "fail", runner="ember-run", timeout=60)
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "ValueError: rank 1 gives up" in out, out[-3000:]
    assert took < 20, f"the job took {took:.1f} s to end"


@needs_mpi
def test_collective_timeout_names_the_collective():
    p = launch(2, "timeout", timeout=60)
    assert_ok(p, 2, "timeout")


def test_distributed_sampler_partitions():
    torch = pytest.importorskip("torch")
    from ember.utils.data.distributed import DistributedSampler
    for size in (10, 11, 12, 1):
        for n in (1, 2, 3):
            for drop_last in (False, True):
                if drop_last and size < n:
                    continue
                ours = [list(DistributedSampler(range(size), n, r, shuffle=False,
                                                drop_last=drop_last)) for r in range(n)]
                theirs = [list(torch.utils.data.DistributedSampler(
                    range(size), n, r, shuffle=False, drop_last=drop_last)) for r in range(n)]
                assert ours == theirs, (size, n, drop_last)
                assert len({len(o) for o in ours}) == 1
                flat = sorted(i for o in ours for i in o)
                if drop_last:
                    assert len(set(flat)) == len(flat) == (size // n) * n
                else:
                    assert set(flat) == set(range(size))
    # Shuffled: the ranks partition one permutation, which set_epoch changes.
    n, size = 3, 20
    samplers = [DistributedSampler(range(size), n, r, seed=7) for r in range(n)]
    first = [list(s) for s in samplers]
    assert sorted(i for o in first for i in o) == sorted(list(range(size)) + [first[0][0]])
    assert [list(s) for s in samplers] == first            # same epoch, same order
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert second != first
    assert set(i for o in second for i in o) == set(range(size))
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(range(4), 3, 3)


def test_single_process_group_and_errors():
    """A plain python process is a group of one (MPI singleton); errors as PyTorch's.
    Run in a child process: MPI stays initialized until a process exits."""
    pytest.importorskip("mpi4py")
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for v in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE"):
        e.pop(v, None)
    p = subprocess.run([sys.executable, HERE, "single"], capture_output=True, text=True,
                       timeout=60, env=e, cwd=ROOT)
    assert p.returncode == 0 and "OK single 0" in p.stdout, (p.stdout + p.stderr)[-3000:]


def _single_process_checks() -> None:
    import ember
    import ember.distributed as dist
    assert dist.is_available() and dist.is_mpi_available()
    os.environ.update(RANK="1", WORLD_SIZE="2")   # torchrun's variables, no MPI launcher
    with pytest.raises(RuntimeError, match="ember-run --nproc-per-node"):
        dist.init_process_group("gloo")
    del os.environ["RANK"], os.environ["WORLD_SIZE"]
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        dist.all_reduce(ember.ones(2))
    with pytest.raises(ValueError, match="Invalid backend"):
        dist.init_process_group("tpu")
    dist.init_process_group("gloo")
    assert (dist.get_rank(), dist.get_world_size(), dist.is_initialized()) == (0, 1, True)
    t = ember.tensor([1.0, 2.0])
    assert dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True).wait()
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    out = ember.zeros(2)
    with pytest.raises(ValueError, match="world_size"):
        dist.all_gather_into_tensor(ember.zeros(3), t)
    dist.all_gather_into_tensor(out, t)
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="AVG needs a floating-point"):
        dist.all_reduce(ember.tensor([1, 2]), op=dist.ReduceOp.AVG)
    with pytest.raises(RuntimeError, match="twice"):
        dist.init_process_group("gloo")
    dist.destroy_process_group()
    assert not dist.is_initialized()
    print("OK single 0", flush=True)


# ---- the worker (run by mpiexec on every rank) ----------------------------------------
TRAIN_STEPS = 5
# eager; the whole step compiled (all-reduces in its graph); a compiled DDP forward with
# an eager backward; DDP around a compiled model.
TRAIN_MODES = ("eager", "compiled", "compiled_ddp", "ddp_of_compiled")


def _problem(rank: int, n: int):
    """The MLP, its optimizer and this rank's share of a fixed global batch of 12."""
    import ember
    import ember.nn as nn
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 3))
    if rank:   # other ranks start elsewhere: DDP must broadcast rank 0's weights
        with ember.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 6)).astype(np.float32)
    Y = rng.standard_normal((12, 3)).astype(np.float32)
    b = 12 // n
    x, y = ember.tensor(X[rank * b:(rank + 1) * b]), ember.tensor(Y[rank * b:(rank + 1) * b])
    return model, ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x, y


def _w_train(dist, r, n, out):
    import ember
    from ember.nn.parallel import DistributedDataParallel as DDP
    for mode in TRAIN_MODES:
        model, _, x, y = _problem(r, n)
        if mode == "ddp_of_compiled":              # nanoGPT's order: compile, then wrap
            ddp = DDP(ember.compile(model), bucket_cap_mb=0.0005)
        else:
            ddp = DDP(model, bucket_cap_mb=0.0005)    # 3 buckets: several in flight
        assert len(ddp.reducer.buckets) == 3
        opt = ember.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        fwd = ember.compile(ddp) if mode == "compiled_ddp" else ddp

        def step(x, y):
            opt.zero_grad()
            loss = ((fwd(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss.detach()
        f = ember.compile(step) if mode == "compiled" else step
        for _ in range(TRAIN_STEPS):
            f(x, y)
        if mode == "compiled":
            s = f.stats()
            assert s["eager_calls"] == 0 and not s["fallbacks"], s
            assert s["cache_hits"] >= TRAIN_STEPS - 3, s   # calls 1-2 trace, then replays
        if r == 0:
            np.savez(f"{out}_{mode}.npz", *[p.detach().numpy() for p in model.parameters()])


def _w_ddp_features(dist, r, n, out):
    import ember
    import ember.nn as nn
    from ember.nn.parallel import DistributedDataParallel as DDP

    # no_sync: two micro-batches accumulated locally, then one averaged gradient.
    model, _, x, y = _problem(r, n)
    ddp = DDP(model)
    ref = _problem(0, 1)[0]                          # rank 0's weights, the whole batch
    rng = np.random.default_rng(1)
    X2 = ember.tensor(rng.standard_normal((12, 6)).astype(np.float32))
    Y2 = ember.tensor(rng.standard_normal((12, 3)).astype(np.float32))
    b = 12 // n
    x2, y2 = X2[r * b:(r + 1) * b], Y2[r * b:(r + 1) * b]
    with ddp.no_sync():
        ((ddp(x) - y) ** 2).mean().backward()
    local = [p.grad.numpy().copy() for p in model.parameters()]
    ((ddp(x2) - y2) ** 2).mean().backward()
    xa, ya = _problem(0, 1)[2:]
    (((ref(xa) - ya) ** 2).mean() + ((ref(X2) - Y2) ** 2).mean()).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6)
    # Inside no_sync nothing was communicated: the first micro-batch's gradient was local.
    assert not np.allclose(local[0], next(ref.parameters()).grad.numpy())

    # The same accumulation with a compiled micro-step: no_sync is guarded (its own
    # entry, no all-reduce in its graph), the synchronized one averages the sum.
    def micro(a, b):
        loss = ((ddp(a) - b) ** 2).mean()
        loss.backward()
        return loss.detach()
    cm = ember.compile(micro)
    for _ in range(4):
        model.zero_grad()
        with ddp.no_sync():
            cm(x, y)
        cm(x2, y2)
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6)
    s = cm.stats()
    assert s["eager_calls"] == 0 and not s["fallbacks"] and s["cache_hits"] >= 4, s

    # find_unused_parameters: rank 0 uses branch a only, rank 1 uses a and b; c is unused.
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x, use_b):
            return self.a(x) + (self.b(x) if use_b else 0)
    ember.manual_seed(3)
    net = Branches()
    ddp = DDP(net, find_unused_parameters=True)
    xin = ember.ones(4, 3) * (r + 1)
    ddp(xin, r == 1).sum().backward()
    # Local gradients of each rank, computed here without DDP, averaged by hand.
    grads = []
    for rr in range(n):
        ember.manual_seed(3)
        solo = Branches()
        solo(ember.ones(4, 3) * (rr + 1), rr == 1).sum().backward()
        grads.append({k: (v.grad.numpy() if v.grad is not None else np.zeros(v.shape))
                      for k, v in solo.named_parameters()})
    for name, p in net.named_parameters():
        if name.startswith("c."):
            assert p.grad is None, name            # unused on every rank: left alone
        else:
            want = sum(g[name] for g in grads) / n
            np.testing.assert_allclose(p.grad.numpy(), want, atol=1e-6, err_msg=name)

    # Compiled, find_unused_parameters runs eagerly (the usage map is data the ranks
    # exchange), with that reason, and the same gradients.
    def fstep(a):
        net.zero_grad()
        ddp(a, r == 1).sum().backward()
    cf = ember.compile(fstep)
    for _ in range(3):
        cf(xin)
        for name, p in net.named_parameters():
            if not name.startswith("c."):
                want = sum(g[name] for g in grads) / n
                np.testing.assert_allclose(p.grad.numpy(), want, atol=1e-6, err_msg=name)
    assert any("find_unused_parameters" in str(f) for f in cf.stats()["fallbacks"]), \
        cf.stats()

    # Without find_unused_parameters an unused parameter is PyTorch's error, next forward.
    ddp = DDP(Branches())
    ddp(xin, True).sum().backward()
    try:
        ddp(xin, True)
    except RuntimeError as e:
        assert "find_unused_parameters=True" in str(e) and "c.weight" in str(e), e
    else:
        raise AssertionError("an unused parameter was not reported")

    # Buffers (BatchNorm's running stats) are broadcast from rank 0 at every forward, a
    # graph op when compiled: compiled equals eager, parameters and buffers.
    res = {}
    for mode in ("eager", "compiled"):
        ember.manual_seed(0)
        bn = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
        bddp = DDP(bn)
        bopt = ember.optim.SGD(bddp.parameters(), lr=0.1)

        def bstep(a):
            bopt.zero_grad()
            ((bddp(a) - 1) ** 2).mean().backward()
            bopt.step()
        f = ember.compile(bstep) if mode == "compiled" else bstep
        brng = np.random.default_rng(r)
        for _ in range(4):
            f(ember.tensor(brng.standard_normal((4, 6)).astype(np.float32)))
        res[mode] = [t.detach().numpy().copy() for t in list(bn.parameters()) + list(bn.buffers())]
    assert not f.stats()["fallbacks"], f.stats()
    for a, b in zip(res["eager"], res["compiled"]):
        np.testing.assert_allclose(a, b, atol=1e-6)

    # Ranks wrapping different models: every rank raises at construction.
    try:
        DDP(nn.Linear(3, 2 + r))
    except RuntimeError as e:
        assert "models differ" in str(e) and "rank 1" in str(e), e
    else:
        raise AssertionError("different models were not reported")

    # state_dict: PyTorch's "module." keys; the wrapped module's own have none, and
    # load_state_dict takes both.
    sd = ddp.state_dict()
    assert all(k.startswith("module.") for k in sd)
    ddp.load_state_dict(ddp.module.state_dict())
    ddp.load_state_dict(sd)


def _w_collectives(dist, r, n, out):
    import ember
    R = dist.ReduceOp

    def data(rank, shape=(2, 3), dtype=np.float32):
        return (np.random.default_rng(rank).standard_normal(shape) * 3).astype(dtype)

    every = [data(k) for k in range(n)]
    for op, ref in ((R.SUM, sum(every)), (R.AVG, sum(every) / n),
                    (R.MAX, np.max(every, axis=0)), (R.MIN, np.min(every, axis=0)),
                    (R.PRODUCT, np.prod(every, axis=0))):
        t = ember.tensor(data(r))
        dist.all_reduce(t, op=op)
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, err_msg=str(op))
    ints = ember.tensor(np.arange(6).reshape(2, 3) * (r + 1))
    w = dist.all_reduce(ints, op=R.MAX, async_op=True)
    w.wait()
    assert w.is_completed()
    np.testing.assert_array_equal(ints.numpy(), np.arange(6).reshape(2, 3) * n)
    # A strided view: written back into the base's memory, the rest untouched.
    base = ember.tensor(np.ones((2, 4), np.float32) * (r + 1))
    dist.all_reduce(base[:, ::2])
    np.testing.assert_array_equal(base.numpy()[:, ::2], n * (n + 1) / 2)
    np.testing.assert_array_equal(base.numpy()[:, 1::2], r + 1)

    src = n - 1
    t = ember.tensor(data(r))
    dist.broadcast(t, src=src)
    np.testing.assert_array_equal(t.numpy(), every[src])

    outs = [ember.zeros(2, 3) for _ in range(n)]
    dist.all_gather(outs, ember.tensor(data(r)))
    for k in range(n):
        np.testing.assert_array_equal(outs[k].numpy(), every[k])
    cat = ember.zeros(2 * n, 3)
    dist.all_gather_into_tensor(cat, ember.tensor(data(r)))
    np.testing.assert_array_equal(cat.numpy(), np.concatenate(every))
    stacked = ember.zeros(n, 2, 3)
    dist.all_gather_into_tensor(stacked, ember.tensor(data(r)), async_op=True).wait()
    np.testing.assert_array_equal(stacked.numpy(), np.stack(every))

    big = [data(10 + k, (n * 2, 3)) for k in range(n)]
    for op, ref in ((R.SUM, sum(big)), (R.AVG, sum(big) / n)):
        o = ember.zeros(2, 3)
        dist.reduce_scatter_tensor(o, ember.tensor(big[r]), op=op)
        np.testing.assert_allclose(o.numpy(), ref[2 * r:2 * r + 2], rtol=1e-5)

    dst = 1 % n
    t = ember.tensor(data(r))
    dist.reduce(t, dst=dst, op=R.SUM)
    np.testing.assert_allclose(t.numpy(), sum(every) if r == dst else every[r], rtol=1e-5)

    gl = [ember.zeros(2, 3) for _ in range(n)] if r == 0 else None
    dist.gather(ember.tensor(data(r)), gl, dst=0)
    if r == 0:
        for k in range(n):
            np.testing.assert_array_equal(gl[k].numpy(), every[k])
    sl = [ember.tensor(data(20 + k)) for k in range(n)] if r == src else None
    t = ember.zeros(2, 3)
    dist.scatter(t, sl, src=src)
    np.testing.assert_array_equal(t.numpy(), data(20 + r))

    # A ring of send/recv; recv with no src reports the sender.
    nxt, prv = (r + 1) % n, (r - 1) % n
    w = dist.isend(ember.tensor(data(r)), nxt)
    t = ember.zeros(2, 3)
    assert dist.recv(t) == prv
    w.wait()
    np.testing.assert_array_equal(t.numpy(), every[prv])
    w = dist.isend(ember.tensor(data(r)), nxt, tag=5)
    t = ember.zeros(2, 3)
    dist.irecv(t, src=prv, tag=5).wait()
    w.wait()
    np.testing.assert_array_equal(t.numpy(), every[prv])
    dist.barrier()

    objs = [{"rank": r}] if r == 0 else [None]
    dist.broadcast_object_list(objs, src=0)
    assert objs == [{"rank": 0}]
    got = [None] * n
    dist.all_gather_object(got, ("r", r))
    assert got == [("r", k) for k in range(n)]

    # Ranks that disagree: every rank raises, naming the collective, ranks and shapes.
    for bad in ("shape", "kind"):
        try:
            if bad == "shape":
                dist.all_reduce(ember.ones(2 + r))
            elif r == 0:
                dist.broadcast(ember.ones(3), src=0)
            else:
                dist.all_reduce(ember.ones(3))
        except RuntimeError as e:
            msg = str(e)
            assert "disagree" in msg and "rank 0" in msg, msg
            if bad == "shape":
                assert "shape=[2]" in msg and "shape=[3]" in msg, msg
            else:
                assert "broadcast(" in msg and "all_reduce(" in msg, msg
        else:
            raise AssertionError(f"no error for disagreeing ranks ({bad})")

    # Compiled: all_reduce and broadcast are graph ops and replay; all_gather runs eagerly.
    def f(x):
        y = x * 2
        dist.all_reduce(y)
        dist.broadcast(x, src=0)
        return y + x
    cf = ember.compile(f)
    for step in range(4):
        v = [data(30 + 10 * step + k) for k in range(n)]
        x = ember.tensor(v[r])
        res = cf(x)
        np.testing.assert_allclose(res.numpy(), 2 * sum(v) + v[0], rtol=1e-5)
        np.testing.assert_array_equal(x.numpy(), v[0])
    s = cf.stats()
    assert s["eager_calls"] == 0 and s["cache_hits"] >= 1 and not s["fallbacks"], s

    def g(x):
        outs = [ember.zeros(2, 3) for _ in range(n)]
        dist.all_gather(outs, x * 1)
        return ember.stack(outs).sum(0)
    cg = ember.compile(g)
    for _ in range(3):
        np.testing.assert_allclose(cg(ember.tensor(data(r))).numpy(), sum(every), rtol=1e-5)
    assert any("all_gather" in str(fb) for fb in cg.stats()["fallbacks"]), cg.stats()


def _fake_nccl(cupy):
    """A ``cupy.cuda.nccl`` for the CuPy stand-in (whose device memory is host memory):
    each NCCL call becomes the MPI call on the arrays at the given pointers, so
    ``ember.distributed.nccl`` runs its real code (pointers, counts, dtypes, roots,
    grouped send/recv for gather/scatter, event-polled requests) without a GPU."""
    import ctypes
    import types

    from mpi4py import MPI
    nccl = types.ModuleType("cupy.cuda.nccl")
    types_ = {0: np.int8, 1: np.uint8, 2: np.int32, 4: np.int64, 6: np.float16,
              7: np.float32, 8: np.float64}
    for name, v in (("NCCL_INT8", 0), ("NCCL_UINT8", 1), ("NCCL_INT32", 2), ("NCCL_INT64", 4),
                    ("NCCL_FLOAT16", 6), ("NCCL_FLOAT32", 7), ("NCCL_FLOAT64", 8)):
        setattr(nccl, name, v)
    ops = {0: MPI.SUM, 1: MPI.PROD, 2: MPI.MAX, 3: MPI.MIN}
    nccl.NCCL_SUM, nccl.NCCL_PROD, nccl.NCCL_MAX, nccl.NCCL_MIN = 0, 1, 2, 3
    nccl.available = True
    pending: list = []
    grouped = [0]
    calls: list = []

    def arr(ptr, count, dt):
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(
            np.ctypeslib.as_ctypes_type(types_[dt]))), shape=(count,))

    class NcclCommunicator:
        def __init__(self, ndev, uid, rank):
            assert uid == ("fake-uid",) and ndev == MPI.COMM_WORLD.size
            self.c = MPI.COMM_WORLD.Dup()

        def allReduce(self, s, d, count, dt, op, stream):
            calls.append("allReduce")
            a, b = arr(s, count, dt), arr(d, count, dt)
            self.c.Allreduce(a.copy(), b, ops[op])

        def broadcast(self, s, d, count, dt, root, stream):
            calls.append("broadcast")
            b = arr(d, count, dt)
            if self.c.rank == root:
                b[...] = arr(s, count, dt)
            self.c.Bcast(b, root=root)

        def reduce(self, s, d, count, dt, op, root, stream):
            calls.append("reduce")
            a = arr(s, count, dt).copy()
            self.c.Reduce(a, arr(d, count, dt) if self.c.rank == root else None, ops[op], root)

        def allGather(self, s, d, count, dt, stream):
            calls.append("allGather")
            self.c.Allgather(arr(s, count, dt).copy(), arr(d, count * self.c.size, dt))

        def reduceScatter(self, s, d, count, dt, op, stream):
            calls.append("reduceScatter")
            self.c.Reduce_scatter_block(arr(s, count * self.c.size, dt).copy(),
                                        arr(d, count, dt), ops[op])

        def send(self, s, count, dt, peer, stream):
            calls.append("send")
            pending.append(self.c.Isend(arr(s, count, dt).copy(), dest=peer))
            if not grouped[0]:
                MPI.Request.Waitall(pending)
                pending.clear()

        def recv(self, d, count, dt, peer, stream):
            calls.append("recv")
            pending.append(self.c.Irecv(arr(d, count, dt), source=peer))
            if not grouped[0]:
                MPI.Request.Waitall(pending)
                pending.clear()

        def abort(self):
            pass

        def destroy(self):
            self.c.Free()

    def group_start():
        grouped[0] += 1

    def group_end():
        grouped[0] -= 1
        if not grouped[0]:
            MPI.Request.Waitall(pending)
            pending.clear()

    nccl.NcclCommunicator = NcclCommunicator
    nccl.get_unique_id = lambda: ("fake-uid",)
    nccl.groupStart, nccl.groupEnd = group_start, group_end
    nccl.calls = calls
    cupy.cuda.nccl = nccl
    cupy.cuda.get_current_stream = lambda: types.SimpleNamespace(ptr=0)
    cupy.cuda.Event.done = property(lambda self: True)   # the fake calls are synchronous
    import sys as _sys
    _sys.modules["cupy.cuda"], _sys.modules["cupy.cuda.nccl"] = cupy.cuda, nccl
    return nccl


def _w_nccl(dist, r, n, out):
    """CUDA tensors over the nccl backend (and over MPI through host memory), on the
    CuPy stand-in with a fake NCCL: checks ember's NCCL code path, not NCCL itself."""
    import ember
    from cupy_standin import installed
    from ember.nn.parallel import DistributedDataParallel as DDP
    dist.destroy_process_group()
    R = dist.ReduceOp
    with installed() as cupy:
        nccl = _fake_nccl(cupy)
        dist.init_process_group("nccl", device_id=ember.device("cuda:0"))
        cuda = ember.device("cuda")

        def data(k, shape=(2, 3)):
            return (np.random.default_rng(k).standard_normal(shape) * 3).astype(np.float32)
        every = [data(k) for k in range(n)]
        gloo = dist.new_group(backend="gloo")     # CUDA tensors staged through host memory
        for grp in (None, gloo):
            for op, ref in ((R.SUM, sum(every)), (R.AVG, sum(every) / n),
                            (R.MAX, np.max(every, axis=0))):
                t = ember.tensor(data(r), device=cuda)
                dist.all_reduce(t, op=op, group=grp)
                np.testing.assert_allclose(t.cpu().numpy(), ref, rtol=1e-5)
            t = ember.tensor(data(r), device=cuda)
            dist.broadcast(t, src=n - 1, group=grp)
            np.testing.assert_array_equal(t.cpu().numpy(), every[n - 1])
        calls_before = len(nccl.calls)
        cat = ember.zeros(2 * n, 3, device=cuda)
        dist.all_gather_into_tensor(cat, ember.tensor(data(r), device=cuda))
        np.testing.assert_array_equal(cat.cpu().numpy(), np.concatenate(every))
        big = [data(10 + k, (2 * n, 3)) for k in range(n)]
        o = ember.zeros(2, 3, device=cuda)
        dist.reduce_scatter_tensor(o, ember.tensor(big[r], device=cuda))
        np.testing.assert_allclose(o.cpu().numpy(), sum(big)[2 * r:2 * r + 2], rtol=1e-5)
        t = ember.tensor(data(r), device=cuda)
        dist.reduce(t, dst=0)
        np.testing.assert_allclose(t.cpu().numpy(), sum(every) if r == 0 else every[r],
                                   rtol=1e-5)
        gl = [ember.zeros(2, 3, device=cuda) for _ in range(n)] if r == 0 else None
        dist.gather(ember.tensor(data(r), device=cuda), gl, dst=0)
        if r == 0:
            for k in range(n):
                np.testing.assert_array_equal(gl[k].cpu().numpy(), every[k])
        sl = [ember.tensor(data(20 + k), device=cuda) for k in range(n)] if r == 0 else None
        t = ember.zeros(2, 3, device=cuda)
        dist.scatter(t, sl, src=0)
        np.testing.assert_array_equal(t.cpu().numpy(), data(20 + r))
        assert {"allGather", "reduceScatter", "reduce", "send", "recv"} <= \
            set(nccl.calls[calls_before:]), nccl.calls

        # DDP on CUDA parameters: buckets all-reduced by NCCL, weights as one process's.
        model, _, x, y = _problem(r, n)
        model.to(cuda)
        ddp = DDP(model, bucket_cap_mb=0.0005)
        opt = ember.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        x, y = x.to(cuda), y.to(cuda)
        before = nccl.calls.count("allReduce")
        for _ in range(TRAIN_STEPS):
            opt.zero_grad()
            ((ddp(x) - y) ** 2).mean().backward()
            opt.step()
        assert nccl.calls.count("allReduce") - before == 3 * TRAIN_STEPS
        if r == 0:
            np.savez(out, *[p.detach().cpu().numpy() for p in model.parameters()])
        dist.destroy_process_group(gloo)


def _w_fail(dist, r, n, out):
    import ember
    t = ember.ones(3)
    dist.all_reduce(t)
    if r == 1:
        raise ValueError("rank 1 gives up")
    for _ in range(3):
        dist.all_reduce(t)      # the others wait here: the abort must end them


def _w_timeout(dist, r, n, out):
    import ember
    if r == 0:
        try:
            dist.all_reduce(ember.ones(3))
        except dist.DistTimeoutError as e:
            assert "all_reduce" in str(e) and "timed out" in str(e), e
        else:
            raise AssertionError("no timeout")
        print(f"OK timeout {r}", flush=True)
        time.sleep(3)   # the launcher ends the job when one rank exits: let rank 1 report
    else:
        time.sleep(2.5)
        print(f"OK timeout {r}", flush=True)
        time.sleep(5)
    os._exit(0)    # rank 0 left a collective unmatched: skip MPI's finalization


def _worker(case: str, args: list[str]) -> None:
    import datetime
    sys.path.insert(0, ROOT)
    import ember.distributed as dist
    timeout = datetime.timedelta(seconds=1.5 if case == "timeout" else 60)
    dist.init_process_group("gloo", timeout=timeout)
    r, n = dist.get_rank(), dist.get_world_size()
    globals()[f"_w_{case}"](dist, r, n, args[0] if args else "")
    print(f"OK {case} {r}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "single":
        sys.path.insert(0, ROOT)
        _single_process_checks()
    else:
        _worker(sys.argv[1], sys.argv[2:])
