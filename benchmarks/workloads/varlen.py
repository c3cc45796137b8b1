"""Variable-length training: a small transformer language model trained on a stream of
batches whose sequence length changes at every step, the way bucketless NLP training runs.

Each repeat builds the model afresh (the same initial weights), wraps its training step
(SGD with momentum) and runs ``STEPS`` steps at lengths drawn from ``DISTINCT`` values in
[8, 64] (seeded: every implementation sees the same stream), and reports the total time,
compiles included: the whole cost a user pays. For ember that is the rule of
``ember/tracer/admission.py`` (a new length runs eagerly until compiling it pays) over
per-size entries; torch.compile (``dynamic=None``) turns the length dynamic after it
sees it change and compiles one symbolic graph. The result checked is the last steps'
losses (against ember eager).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.harness import Prepared, Timed, Workload
from benchmarks.workloads.common import cold_impls, cold_workload

SIZES = ["120"]        # steps per repeat
QUICK_SIZES = ["6"]
DISTINCT = 40          # lengths the stream draws from (each recurs ~3 times in 120 steps)
BATCH, VOCAB, WIDTH, HEADS = 8, 100, 64, 4
LR, MOMENTUM = 0.05, 0.9


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    if device != "cpu":
        return []
    out = []
    for text in sizes:
        steps = int(text)
        impls = cold_impls(lambda lib, compiled, steps=steps: _setup(lib, compiled, steps))
        out.append(cold_workload(
            f"varlen_train_{steps}_steps", "varlen",
            f"transformer LM training, {steps} steps at lengths changing every step "
            f"({DISTINCT} distinct in [8, 64], batch {BATCH}): total time, compiles included",
            impls))
    return out


def stream(steps: int) -> list[np.ndarray]:
    """The token batches, one per step (inputs and targets are the same tokens)."""
    rng = np.random.default_rng(7)
    lengths = rng.choice(np.arange(8, 65), size=DISTINCT, replace=False)
    return [rng.integers(0, VOCAB, (BATCH, int(rng.choice(lengths)))) for _ in range(steps)]


def make_model(lib: Any) -> Any:
    """Embedding, one pre-norm transformer block, the vocabulary head; PyTorch's words."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.att = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
            self.ff = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(),
                                    nn.Linear(4 * WIDTH, WIDTH))

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.att(h, h, h, need_weights=False)[0]
            return x + self.ff(self.ln2(x))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.block = nn.Embedding(VOCAB, WIDTH), Block()
            self.head = nn.Linear(WIDTH, VOCAB)

        def forward(self, tokens):
            return self.head(self.block(self.emb(tokens)))

    return LM()


def _weights() -> dict[str, np.ndarray]:
    import ember
    ember.manual_seed(0)
    return {k: v.detach().numpy().copy() for k, v in make_model(ember).state_dict().items()}


def _setup(lib_name: str, compiled: bool, steps: int):
    def setup() -> Prepared:
        if lib_name == "torch":
            import torch as lib
        else:
            import ember as lib
        weights, batches = _weights(), stream(steps)
        tensors = [lib.tensor(b) for b in batches]

        def call() -> Timed:
            model = make_model(lib)
            model.load_state_dict({k: lib.tensor(v.copy()) for k, v in weights.items()})
            opt = lib.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
            F = lib.nn.functional

            def step(tokens):
                opt.zero_grad()
                loss = F.cross_entropy(model(tokens).reshape(-1, VOCAB), tokens.reshape(-1))
                loss.backward()
                opt.step()
                return loss

            fn = lib.compile(step) if compiled else step
            losses = []
            t0 = time.perf_counter()
            for t in tensors:
                losses.append(fn(t).detach())
            seconds = time.perf_counter() - t0
            return Timed(seconds, [float(v) for v in losses[-5:]])

        return Prepared(call, lambda v: [np.asarray(v, dtype=np.float64)])
    return setup
