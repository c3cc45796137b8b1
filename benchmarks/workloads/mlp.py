"""The MLP 784-512-256-10 (ReLU): forward and training step, by default at batch 128."""
from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads.common import parse_count, to_np
from benchmarks.workloads.models import LR, MOMENTUM, ModelSpec, Weights, model_workloads

SIZES = ["128"]
QUICK_SIZES = ["8"]
WIDTHS = [784, 512, 256, 10]
LINEARS = ["0", "2", "4"]  # the Linear layers' names inside the Sequential


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = [w for text in sizes for w in model_workloads(SPEC, parse_count(text), device)]
    if device == "cpu" and sizes:
        out.append(update_workload())
    return out


# ---- the optimizer update alone: its GB/s against the copy's --------------------------

def update_workload() -> Workload:
    """SGD with momentum over the MLP's parameters, gradients fixed: each call reads the
    parameters, gradients and momentum buffers and writes parameters and buffers, 20
    bytes per float32 parameter, so its rate compares with ``copy_16M``'s bandwidth."""
    sizes = [m * n + n for m, n in zip(WIDTHS, WIDTHS[1:])]
    nbytes = 20 * sum(sizes)
    return Workload("mlp_sgd_update", "mlp",
                    f"SGD momentum update of the MLP's {sum(sizes)} parameters "
                    "(gradients fixed)",
                    [Impl("ember", "ember", _update_setup("ember", True)),
                     Impl("ember eager", "ember", _update_setup("ember", False)),
                     Impl("torch", "torch", _update_setup("torch", False)),
                     Impl("numpy", "numpy", _numpy_update_setup)],
                    nbytes=nbytes, stateful=True, check_calls=3, reference="numpy",
                    rtol=1e-5, atol=1e-6)


def _update_inputs() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(7)
    shapes = [s for m, n in zip(WIDTHS, WIDTHS[1:]) for s in ((n, m), (n,))]
    params = [(0.05 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
    grads = [(0.01 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
    return params, grads


def _update_setup(name: str, compiled: bool) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        lib = importlib.import_module(name)
        params, grads = _update_inputs()
        ps = [lib.tensor(p.copy(), requires_grad=True) for p in params]
        for p, g in zip(ps, grads):
            p.grad = lib.tensor(g.copy())
        opt = lib.optim.SGD(ps, lr=LR, momentum=MOMENTUM)

        def update():
            opt.step()
        fn = lib.compile(update) if compiled else update
        state = lambda: [to_np(p.detach()) for p in ps]   # noqa: E731
        return Prepared(fn, lambda _: [], state=state)
    return setup


def _numpy_update_setup() -> Prepared:
    params, grads = _update_inputs()
    bufs = [np.zeros_like(p) for p in params]

    def update():
        for p, g, buf in zip(params, grads, bufs):
            buf *= MOMENTUM
            buf += g
            p -= np.float32(LR) * buf
    return Prepared(update, lambda _: [], state=lambda: [p.copy() for p in params])


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
