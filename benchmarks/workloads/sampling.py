"""Diffusion sampling: a denoising step called with the timestep as a Python int.

The step is denoising-diffusion-pytorch's ``p_sample(x, t: int)`` in PyTorch's words: the
timestep becomes a tensor (``full((b,), t)``), its sinusoidal embedding and the schedule's
coefficients are gathered from it, and noise is added while ``t > 0``; the denoiser is a
small MLP. Each repeat runs the whole reverse process (``STEPS`` timesteps, every one a
new value of ``t``) from the same start and noise, and reports the total time, compiles
included. ember makes ``t`` a run-time input after two values (``tracer/symbolic.py``:
one entry for ``t > 0``, one for ``t == 0``); "ember dynamic=False" compiles once per
value, as ember did before, and runs eagerly past its cache limit. torch.compile
(``dynamic=None``) makes the int dynamic after it changes. The result checked is the
final sample (against ember eager).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from benchmarks.harness import Impl, Prepared, Timed, Workload
from benchmarks.workloads.common import cold_impls, cold_workload

SIZES = ["200"]        # timesteps per repeat
QUICK_SIZES = ["6"]
BATCH, DIM, WIDTH, EMB = 64, 32, 256, 32


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    if device != "cpu":
        return []
    out = []
    for text in sizes:
        steps = int(text)
        impls = cold_impls(lambda lib, compiled, steps=steps: _setup(lib, compiled, steps))
        # the number compiled once per value, as before it could be symbolic
        impls.insert(2, Impl("ember dynamic=False", "ember",
                             _setup("ember", True, steps, dynamic=False)))
        out.append(cold_workload(
            f"sampling_{steps}_steps", "sampling",
            f"diffusion sampling, {steps} steps of p_sample(x, t: int) (MLP denoiser, batch "
            f"{BATCH}, {DIM} features): total time, compiles included",
            impls))
    return out


def make_model(lib: Any) -> Any:
    """An MLP on the sample and the timestep's sinusoidal embedding."""
    nn = lib.nn

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(DIM + EMB, WIDTH), nn.SiLU(),
                                     nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, DIM))
            half = EMB // 2
            self.register_buffer("freqs", lib.exp(
                lib.arange(half, dtype=lib.float32) * -(math.log(10000.0) / (half - 1))))

        def forward(self, x, times):
            arg = times.float()[:, None] * self.freqs[None, :]
            return self.net(lib.cat([x, arg.sin(), arg.cos()], dim=-1))

    return Denoiser()


def _schedule(lib: Any, steps: int) -> dict:
    betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
    alphas = np.cumprod(1.0 - betas)
    prev = np.append(1.0, alphas[:-1])
    coef = {"recip": 1.0 / np.sqrt(1.0 - betas), "eps": betas / np.sqrt(1.0 - alphas),
            "sigma": np.sqrt(betas * (1.0 - prev) / (1.0 - alphas))}
    return {k: lib.tensor(v.astype(np.float32)) for k, v in coef.items()}


def _setup(lib_name: str, compiled: bool, steps: int, dynamic: bool | None = None):
    def setup() -> Prepared:
        if lib_name == "torch":
            import torch as lib
        else:
            import ember as lib
        rng = np.random.default_rng(3)
        start = lib.tensor(rng.standard_normal((BATCH, DIM)).astype(np.float32))
        noises = [lib.tensor(rng.standard_normal((BATCH, DIM)).astype(np.float32))
                  for _ in range(steps)]
        lib.manual_seed(0)
        model = make_model(lib)
        if lib_name == "torch":   # ember's weights, so both sample the same path
            import ember
            ember.manual_seed(0)
            weights = make_model(ember).state_dict()
            model.load_state_dict({k: lib.tensor(v.detach().numpy().copy())
                                   for k, v in weights.items()})
        coef = _schedule(lib, steps)

        def extract(a, times):
            return a.gather(-1, times)[:, None]

        def p_sample(x, t, noise):
            times = lib.full((x.shape[0],), t, dtype=lib.long)
            eps = model(x, times)
            mean = extract(coef["recip"], times) * (x - extract(coef["eps"], times) * eps)
            if t > 0:
                return mean + extract(coef["sigma"], times) * noise
            return mean

        def call() -> Timed:
            if lib_name == "torch" and compiled:
                import torch._dynamo
                torch._dynamo.reset()
            if not compiled:
                fn = p_sample
            elif lib_name == "ember":
                fn = lib.compile(p_sample, dynamic=dynamic)
            else:
                fn = lib.compile(p_sample)
            x = start
            t0 = time.perf_counter()
            with lib.no_grad():
                for t in reversed(range(steps)):
                    x = fn(x, t, noises[t])
            seconds = time.perf_counter() - t0
            return Timed(seconds, x.numpy().copy())

        return Prepared(call, lambda v: [np.asarray(v, dtype=np.float64)])
    return setup
