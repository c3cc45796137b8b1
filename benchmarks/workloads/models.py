"""Forward and training-step workloads for a model written once for ember and torch.

Every cell starts from the same weights (drawn once by ember's initializers) and the
same batch. The training step is the one a PyTorch user writes::

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

with SGD(lr=0.01, momentum=0.9); ember's compiled cell is ``ember.compile(step)``,
torch's ``torch.compile(step)``. The agreement check runs four steps from the same start
and compares the four losses and the final weights. On cuda the NumPy cells' code runs
on CuPy arrays as the "cupy" cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Impl, Prepared, Workload
from benchmarks.workloads.common import arrays, ember_compiled_notes, gpu_sync, to_np

LR, MOMENTUM = 0.01, 0.9
TRAIN_CHECK_STEPS = 4  # ember traces steps 1 and 2 and replays from step 3

Weights = dict[str, np.ndarray]
Gemm = tuple[int, int, int]


@dataclass
class ModelSpec:
    """What the generic model workloads need to know about one model."""

    family: str
    title: str
    make_model: Callable[[Any], Any]            # lib -> nn.Module
    sample_shape: tuple[int, ...]                # one input, without the batch dim
    classes: int
    forward_gemms: Callable[[int], list[Gemm]]   # batch -> (M, K, N) of each forward GEMM
    jax_forward: Callable[[dict, Any], Any] | None  # (params, x) -> logits, pure
    # (weights, xp) -> forward / (step, state); xp is numpy, or cupy for the GPU cells
    numpy_forward: Callable[..., Callable] | None = None
    numpy_train: Callable[..., tuple[Callable, Callable]] | None = None
    # (batch, rng) -> (x, y) where the input is not a float sample of sample_shape (tokens)
    make_batch: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]] | None = None


def model_workloads(spec: ModelSpec, batch: int, device: str = "cpu") -> list[Workload]:
    """The forward (inference, no_grad) and the training-step workloads of ``spec``."""
    weights = initial_weights(spec)
    rng = np.random.default_rng(3)
    if spec.make_batch is not None:
        x, y = spec.make_batch(batch, rng)
    else:
        x = rng.standard_normal((batch,) + spec.sample_shape, dtype=np.float32)
        y = rng.integers(0, spec.classes, batch).astype(np.int64)
    fwd = spec.forward_gemms(batch)
    suffix = "" if device == "cpu" else f"_{device}"
    where = "" if device == "cpu" else f" on {device}"
    ref = "torch"

    forward = [Impl(name, peer, setup, warmup=2 if peer == "torch.compile" else 0)
               for name, peer, setup in (
                   ("ember", "ember", _ember_forward(spec, weights, x, device, True)),
                   ("ember eager", "ember", _ember_forward(spec, weights, x, device, False)),
                   ("torch", "torch", _torch_forward(spec, weights, x, device, False)),
                   ("torch.compile", "torch.compile",
                    _torch_forward(spec, weights, x, device, True)))]
    train = [Impl(name, peer, setup, warmup=2 if peer == "torch.compile" else 0)
             for name, peer, setup in (
                 ("ember", "ember", _ember_train(spec, weights, x, y, device, True)),
                 ("ember eager", "ember", _ember_train(spec, weights, x, y, device, False)),
                 ("torch", "torch", _torch_train(spec, weights, x, y, device, False)),
                 ("torch.compile", "torch.compile",
                  _torch_train(spec, weights, x, y, device, True)))]
    if spec.numpy_forward is not None:
        forward.append(_numpy_forward(spec, weights, x, device))
    if spec.numpy_train is not None:
        train.append(_numpy_train(spec, weights, x, y, device))
    if device == "cpu" and spec.jax_forward is not None:
        forward.append(_jax_forward(spec, weights, x))
        train.append(_jax_train(spec, weights, x, y))
    fallbacks = () if device == "cpu" else ("cupy",)
    return [
        Workload(f"{spec.family}_forward_b{batch}{suffix}", spec.family,
                 f"{spec.title} forward (no_grad), batch {batch}{where}", forward,
                 gemms=fwd, reference=ref, reference_fallbacks=fallbacks, device=device),
        Workload(f"{spec.family}_train_b{batch}{suffix}", spec.family,
                 f"{spec.title} training step (cross entropy, SGD momentum), batch "
                 f"{batch}{where}", train, gemms=train_gemms(fwd), reference=ref,
                 reference_fallbacks=fallbacks, stateful=True,
                 check_calls=TRAIN_CHECK_STEPS, rtol=1e-3, atol=1e-5, device=device),
    ]


def train_gemms(forward: list[Gemm]) -> list[Gemm]:
    """Forward GEMMs plus backward ones: dW for every layer, dX for all but the first
    (the input needs no gradient)."""
    dw = [(k, m, n) for m, k, n in forward]
    dx = [(m, n, k) for m, k, n in forward[1:]]
    return forward + dw + dx


def initial_weights(spec: ModelSpec) -> Weights:
    """One set of weights for every cell, from ember's (PyTorch's) default initializers."""
    import ember
    ember.manual_seed(0)
    model = spec.make_model(ember)
    return {k: to_np(v).copy() for k, v in model.state_dict().items()}


def make_train_step(lib: Any, model: Any, opt: Any) -> Callable[..., Any]:
    """The training step as a PyTorch user writes it."""
    F = lib.nn.functional

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


# ---- ember and torch cells --------------------------------------------------------------

def _load(lib: Any, spec: ModelSpec, weights: Weights, device: str) -> Any:
    model = spec.make_model(lib)
    if lib.__name__ == "torch":
        import torch
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    else:
        model.load_state_dict({k: v.copy() for k, v in weights.items()})
    return model.to(device)


def _params(model: Any) -> list[np.ndarray]:
    return [to_np(v) for v in model.state_dict().values()]


def _ember_forward(spec, weights, x, device, compiled) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import ember
        model = _load(ember, spec, weights, device).eval()
        fn = ember.compile(model) if compiled else model
        xt = ember.tensor(x, device=device)

        def call() -> Any:
            with ember.no_grad():
                return fn(xt)
        return Prepared(call, arrays, sync=gpu_sync("ember", device),
                        notes=ember_compiled_notes(fn) if compiled else None)
    return setup


def _torch_forward(spec, weights, x, device, compiled) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import torch
        model = _load(torch, spec, weights, device).eval()
        fn = torch.compile(model) if compiled else model
        xt = torch.from_numpy(x.copy()).to(device)

        def call() -> Any:
            with torch.no_grad():
                return fn(xt)
        return Prepared(call, arrays, sync=gpu_sync("torch", device))
    return setup


def _ember_train(spec, weights, x, y, device, compiled) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import ember
        model = _load(ember, spec, weights, device)
        opt = ember.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        step = make_train_step(ember, model, opt)
        fn = ember.compile(step) if compiled else step
        xt, yt = ember.tensor(x, device=device), ember.tensor(y, device=device)
        return Prepared(lambda: fn(xt, yt), arrays, state=lambda: _params(model),
                        sync=gpu_sync("ember", device),
                        notes=ember_compiled_notes(fn) if compiled else None)
    return setup


def _torch_train(spec, weights, x, y, device, compiled) -> Callable[[], Prepared]:
    def setup() -> Prepared:
        import torch
        model = _load(torch, spec, weights, device)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        step = make_train_step(torch, model, opt)
        fn = torch.compile(step) if compiled else step
        xt, yt = torch.from_numpy(x.copy()).to(device), torch.from_numpy(y.copy()).to(device)
        return Prepared(lambda: fn(xt, yt), arrays, state=lambda: _params(model),
                        sync=gpu_sync("torch", device))
    return setup


# ---- NumPy (CuPy on cuda) and JAX cells ---------------------------------------------------

def _xp(device: str) -> Any:
    if device == "cpu":
        return np
    import cupy
    return cupy


def _numpy_forward(spec: ModelSpec, weights: Weights, x: np.ndarray, device: str = "cpu"
                   ) -> Impl:
    def setup() -> Prepared:
        xp = _xp(device)
        fn = spec.numpy_forward({k: xp.asarray(v.copy()) for k, v in weights.items()}, xp)
        xs = xp.asarray(x.copy())
        return Prepared(lambda: fn(xs), arrays, sync=gpu_sync("cupy", device))
    return Impl("numpy", "numpy", setup) if device == "cpu" else Impl("cupy", "cupy", setup)


def _numpy_train(spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray,
                 device: str = "cpu") -> Impl:
    def setup() -> Prepared:
        xp = _xp(device)
        step, state = spec.numpy_train(
            {k: xp.asarray(v.copy()) for k, v in weights.items()}, xp)
        xs, ys = xp.asarray(x.copy()), xp.asarray(y.copy())
        return Prepared(lambda: step(xs, ys), arrays, state=lambda: [to_np(p) for p in state()],
                        sync=gpu_sync("cupy", device),
                        notes=lambda: ["backward written by hand"])
    return Impl("numpy", "numpy", setup) if device == "cpu" else Impl("cupy", "cupy", setup)


def _jax_forward(spec: ModelSpec, weights: Weights, x: np.ndarray) -> Impl:
    def setup() -> Prepared:
        import jax
        params = {k: jax.device_put(v) for k, v in weights.items()}
        fn = jax.jit(spec.jax_forward)
        xs = jax.device_put(x)
        return Prepared(lambda: jax.block_until_ready(fn(params, xs)), arrays)
    return Impl("jax.jit", "jax", setup)


def jax_sgd_step(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A jitted SGD-momentum cross-entropy step ``(params, bufs, x, y) -> (loss, params,
    bufs)`` around ``forward(params, x)`` (a fresh jit each call: a cold compile)."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params, x, y):
        logp = jax.nn.log_softmax(forward(params, x), axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params, bufs, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        # torch's first step sets buf = grad; from zeros, m * 0 + g is the same.
        bufs = jax.tree_util.tree_map(lambda b, g: MOMENTUM * b + g, bufs, grads)
        params = jax.tree_util.tree_map(lambda p, b: p - LR * b, params, bufs)
        return loss, params, bufs
    return step


def _jax_train(spec: ModelSpec, weights: Weights, x: np.ndarray, y: np.ndarray) -> Impl:
    def setup() -> Prepared:
        import jax
        import jax.numpy as jnp

        step = jax_sgd_step(spec.jax_forward)
        state = {"params": {k: jax.device_put(v) for k, v in weights.items()}}
        state["bufs"] = {k: jnp.zeros_like(v) for k, v in state["params"].items()}
        xs, ys = jax.device_put(x), jax.device_put(y.astype(np.int32))

        def call() -> Any:
            loss, state["params"], state["bufs"] = step(state["params"], state["bufs"], xs, ys)
            return jax.block_until_ready(loss)
        return Prepared(call, arrays,
                        state=lambda: [np.asarray(state["params"][k]) for k in weights])
    return Impl("jax.jit", "jax", setup)
