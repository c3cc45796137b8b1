"""SimpleCNN (PyTorch's "Training a classifier" tutorial, 2-class head, as in
tests/test_ported_programs.py) on 3x32x32 images: forward and training step, batch 64.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from benchmarks.harness import Workload
from benchmarks.workloads.common import parse_count
from benchmarks.workloads.models import ModelSpec, Weights, model_workloads

SIZES = ["64"]
QUICK_SIZES = ["2"]


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    return [w for text in sizes for w in model_workloads(SPEC, parse_count(text), device)]


def make_cnn(lib: Any) -> Any:
    """SimpleCNN in PyTorch's words, for ``lib`` = ember or torch."""
    nn, F = lib.nn, lib.nn.functional

    class SimpleCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 2)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = lib.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return SimpleCNN()


def forward_gemms(batch: int) -> list[tuple[int, int, int]]:
    """Convolutions as the GEMMs of their unfolded inputs, then the three Linears."""
    return [(batch * 28 * 28, 3 * 25, 6), (batch * 10 * 10, 6 * 25, 16),
            (batch, 400, 120), (batch, 120, 84), (batch, 84, 2)]


def numpy_forward(weights: Weights, xp: Any = np) -> Callable[[Any], Any]:
    """im2col convolutions through np.matmul, max pooling by reshaping (``xp=cupy``: the
    same on the device)."""
    as_strided = xp.lib.stride_tricks.as_strided

    def conv(x, w, b):
        n, c, h, wd = x.shape
        o, _, k, _ = w.shape
        s = x.strides  # the k x k windows as a view: [n, c, h', w', k, k]
        cols = as_strided(x, shape=(n, c, h - k + 1, wd - k + 1, k, k),
                          strides=(s[0], s[1], s[2], s[3], s[2], s[3]))
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * (h - k + 1) * (wd - k + 1), -1)
        out = cols @ w.reshape(o, -1).T + b
        return out.reshape(n, h - k + 1, wd - k + 1, o).transpose(0, 3, 1, 2)

    def pool(x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    p = weights

    def forward(x):
        x = pool(xp.maximum(conv(x, p["conv1.weight"], p["conv1.bias"]), 0))
        x = pool(xp.maximum(conv(x, p["conv2.weight"], p["conv2.bias"]), 0))
        x = x.reshape(len(x), -1)
        x = xp.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
        x = xp.maximum(x @ p["fc2.weight"].T + p["fc2.bias"], 0)
        return x @ p["fc3.weight"].T + p["fc3.bias"]
    return forward


def jax_forward(params: dict, x: Any) -> Any:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, name):
        y = lax.conv_general_dilated(x, params[f"{name}.weight"], (1, 1), "VALID",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + params[f"{name}.bias"][None, :, None, None]

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    x = pool(jax.nn.relu(conv(x, "conv1")))
    x = pool(jax.nn.relu(conv(x, "conv2")))
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ params["fc1.weight"].T + params["fc1.bias"])
    x = jax.nn.relu(x @ params["fc2.weight"].T + params["fc2.bias"])
    return x @ params["fc3.weight"].T + params["fc3.bias"]


SPEC = ModelSpec("cnn", "SimpleCNN", make_cnn, (3, 32, 32), 2, forward_gemms, jax_forward,
                 numpy_forward)
