"""Data-parallel training of an MLP with ember.distributed, on 1 to N processes.

    python examples/ddp_mlp.py                                  # one process
    ember-run --nproc-per-node 2 examples/ddp_mlp.py --compile  # two, compiled step
    mpiexec -n 3 python examples/ddp_mlp.py

The global batch is fixed (``--batch``); each rank trains on its share, chosen by a
DistributedSampler, so the trained weights do not depend on the number of processes.
It prints the loss, the step throughput and the time spent waiting for communication.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import ember
import ember.distributed as dist
import ember.nn as nn
from ember.nn.parallel import DistributedDataParallel as DDP
from ember.ops import collective
from ember.utils.data.distributed import DistributedSampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256, help="global batch size")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0)
    opts = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if opts.batch % world:
        raise SystemExit(f"--batch {opts.batch} must be divisible by {world} processes")

    # A synthetic classification problem, the same on every rank.
    rng = np.random.default_rng(0)
    n = opts.batch * 8
    X = rng.standard_normal((n, 64)).astype(np.float32)
    labels = (X[:, :10].argmax(1)).astype(np.int64)

    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, opts.hidden), nn.ReLU(),
                          nn.Linear(opts.hidden, opts.hidden), nn.ReLU(),
                          nn.Linear(opts.hidden, 10))
    ddp = DDP(model, bucket_cap_mb=opts.bucket_cap_mb)
    opt = ember.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    sampler = DistributedSampler(range(n), shuffle=True, seed=0)
    local = opts.batch // world

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(ddp(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    if opts.compile:
        step = ember.compile(step)

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            idx = list(sampler)
            for i in range(0, len(idx) - local + 1, local):
                j = idx[i:i + local]
                yield ember.tensor(X[j]), ember.tensor(labels[j])
            epoch += 1

    data = batches()
    warmup = 3
    for _ in range(warmup):
        step(*next(data))
    dist.barrier()
    comm0 = ddp.reducer.comm_seconds + collective.stats["seconds"]
    t0 = time.perf_counter()
    for i in range(opts.steps):
        loss = step(*next(data))
    dist.barrier()
    elapsed = time.perf_counter() - t0
    comm = ddp.reducer.comm_seconds + collective.stats["seconds"] - comm0
    dist.all_reduce(loss, op=dist.ReduceOp.AVG)   # the global batch's loss
    if rank == 0:
        print(f"{world} process(es){' compiled' if opts.compile else ''}: loss {float(loss):.4f}, "
              f"{opts.steps / elapsed:.1f} steps/s, {opts.steps * opts.batch / elapsed:.0f} "
              f"samples/s, {1e3 * elapsed / opts.steps:.2f} ms/step of which "
              f"{1e3 * comm / opts.steps:.2f} ms waiting for gradient all-reduces")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
