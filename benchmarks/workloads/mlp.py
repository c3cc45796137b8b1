"""The MLP 784-512-256-10 (ReLU): forward and training step, by default at batch 128."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from benchmarks.harness import Workload
from benchmarks.workloads.common import parse_count
from benchmarks.workloads.models import LR, MOMENTUM, ModelSpec, Weights, model_workloads

SIZES = ["128"]
QUICK_SIZES = ["8"]
WIDTHS = [784, 512, 256, 10]
LINEARS = ["0", "2", "4"]  # the Linear layers' names inside the Sequential


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    return [w for text in sizes for w in model_workloads(SPEC, parse_count(text), device)]


def make_mlp(lib: Any) -> Any:
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def forward_gemms(batch: int) -> list[tuple[int, int, int]]:
    return [(batch, k, n) for k, n in zip(WIDTHS, WIDTHS[1:])]


def numpy_forward(weights: Weights, xp: Any = np) -> Callable[[Any], Any]:
    """The forward in NumPy (``xp=cupy``: CuPy, with ``weights`` on the device)."""
    layers = [(weights[f"{n}.weight"], weights[f"{n}.bias"]) for n in LINEARS]

    def forward(x):
        for i, (w, b) in enumerate(layers):
            x = x @ w.T + b
            if i < len(layers) - 1:
                x = xp.maximum(x, 0)
        return x
    return forward


def numpy_train(weights: Weights, xp: Any = np) -> tuple[Callable, Callable]:
    """Forward, cross entropy, backward by hand, SGD with momentum, in place (``xp=cupy``:
    on the device)."""
    params = [weights[f"{n}.{k}"] for n in LINEARS for k in ("weight", "bias")]
    bufs = [xp.zeros_like(p) for p in params]

    def step(x, y):
        acts = [x]
        for i in range(len(LINEARS)):
            h = acts[-1] @ params[2 * i].T + params[2 * i + 1]
            acts.append(xp.maximum(h, 0) if i < len(LINEARS) - 1 else h)
        z = acts[-1]
        rows = xp.arange(len(y))
        shifted = z - z.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        loss = -(shifted[rows, y] - xp.log(s[:, 0])).mean()
        dz = e / s
        dz[rows, y] -= 1
        dz /= len(y)
        grads = [None] * len(params)
        for i in reversed(range(len(LINEARS))):
            grads[2 * i] = dz.T @ acts[i]
            grads[2 * i + 1] = dz.sum(axis=0)
            if i:
                dz = (dz @ params[2 * i]) * (acts[i] > 0)
        for p, g, buf in zip(params, grads, bufs):
            buf *= MOMENTUM
            buf += g
            p -= LR * buf
        return loss

    return step, lambda: [p.copy() for p in params]


def jax_forward(params: dict, x: Any) -> Any:
    import jax.numpy as jnp
    for i, n in enumerate(LINEARS):
        x = x @ params[f"{n}.weight"].T + params[f"{n}.bias"]
        if i < len(LINEARS) - 1:
            x = jnp.maximum(x, 0)
    return x


SPEC = ModelSpec("mlp", "MLP 784-512-256-10", make_mlp, (784,), 10, forward_gemms,
                 jax_forward, numpy_forward, numpy_train)
