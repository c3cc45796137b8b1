"""SimpleCNN (PyTorch's "Training a classifier" tutorial, 2-class head, as in
tests/test_ported_programs.py) and the CIFAR CNN of issue 15 (3->32->64 3x3 convolutions,
2x2 max pooling, 2304-128-10) on 3x32x32 images: forward and training step, batch 64.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Workload
from benchmarks.workloads.common import parse_count
from benchmarks.workloads.models import ModelSpec, Weights, model_workloads

SIZES = ["64"]
QUICK_SIZES = ["2"]


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    out = []
    for text in sizes:
        out += model_workloads(SPEC, parse_count(text), device)
        # The CIFAR CNN is in this family too (names cnn_cifar_*).
        out += [dataclasses.replace(w, family=SPEC.family)
                for w in model_workloads(CIFAR_SPEC, parse_count(text), device)]
    return out


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


def _numpy_pool(x):
    """2x2 max pooling (floor mode) by reshaping."""
    n, c, h, w = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _numpy_conv(xp: Any) -> Callable:
    """A valid, stride-1 convolution as im2col and one np.matmul."""
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
    return conv


def _numpy_forward_of(fcs: list[str]) -> Callable[..., Callable[[Any], Any]]:
    """The NumPy forward of a net of two conv+ReLU+pool blocks, then the Linears named
    in ``fcs`` with ReLU between them: im2col convolutions through np.matmul, max
    pooling by reshaping (``xp=cupy``: the same on the device)."""
    def make(weights: Weights, xp: Any = np) -> Callable[[Any], Any]:
        conv, pool, p = _numpy_conv(xp), _numpy_pool, weights

        def forward(x):
            x = pool(xp.maximum(conv(x, p["conv1.weight"], p["conv1.bias"]), 0))
            x = pool(xp.maximum(conv(x, p["conv2.weight"], p["conv2.bias"]), 0))
            x = x.reshape(len(x), -1)
            for i, name in enumerate(fcs):
                x = x @ p[f"{name}.weight"].T + p[f"{name}.bias"]
                if i < len(fcs) - 1:
                    x = xp.maximum(x, 0)
            return x
        return forward
    return make


def _jax_forward_of(fcs: list[str]) -> Callable[[dict, Any], Any]:
    """``_numpy_forward_of``'s net in JAX (lax convolutions and reduce_window pooling)."""
    def forward(params: dict, x: Any) -> Any:
        import jax
        import jax.numpy as jnp
        from jax import lax

        def conv(x, name):
            y = lax.conv_general_dilated(x, params[f"{name}.weight"], (1, 1), "VALID",
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            return y + params[f"{name}.bias"][None, :, None, None]

        def pool(x):
            return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                     "VALID")

        x = pool(jax.nn.relu(conv(x, "conv1")))
        x = pool(jax.nn.relu(conv(x, "conv2")))
        x = x.reshape(x.shape[0], -1)
        for i, name in enumerate(fcs):
            x = x @ params[f"{name}.weight"].T + params[f"{name}.bias"]
            if i < len(fcs) - 1:
                x = jax.nn.relu(x)
        return x
    return forward


numpy_forward = _numpy_forward_of(["fc1", "fc2", "fc3"])
jax_forward = _jax_forward_of(["fc1", "fc2", "fc3"])


SPEC = ModelSpec("cnn", "SimpleCNN", make_cnn, (3, 32, 32), 2, forward_gemms, jax_forward,
                 numpy_forward)


# ---- the CIFAR CNN of issue 15 ---------------------------------------------------------

def make_cifar(lib: Any) -> Any:
    """A CIFAR-10 CNN (3->32->64, 3x3 convolutions, 2x2 max pooling, 2304-128-10)."""
    nn, F = lib.nn, lib.nn.functional

    class CifarCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(64 * 6 * 6, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = lib.flatten(x, 1)
            return self.fc2(F.relu(self.fc1(x)))

    return CifarCNN()


def cifar_forward_gemms(batch: int) -> list[tuple[int, int, int]]:
    return [(batch * 30 * 30, 3 * 9, 32), (batch * 13 * 13, 32 * 9, 64),
            (batch, 2304, 128), (batch, 128, 10)]


cifar_numpy_forward = _numpy_forward_of(["fc1", "fc2"])
cifar_jax_forward = _jax_forward_of(["fc1", "fc2"])


CIFAR_SPEC = ModelSpec("cnn_cifar", "CIFAR CNN", make_cifar, (3, 32, 32), 10,
                       cifar_forward_gemms, cifar_jax_forward, cifar_numpy_forward)
