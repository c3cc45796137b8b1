"""The ember demo: train a small MLP on scikit-learn's handwritten digits.

Run it with ``python -m ember.demo``, ``python -m ember demo`` or ``ember demo``.
The digits (1797 8x8 images, 10 classes) ship with scikit-learn, so nothing is
downloaded; it needs ``pip install 'ember[demo]'``.

>>> from ember.demo import train
>>> result = train(epochs=20, verbose=False)
>>> result["test_accuracy"] >= 0.95
True
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import numpy as np

import ember
import ember.nn as nn
from ember.optim import Adam
from ember.utils.data import DataLoader, TensorDataset

MISSING_SKLEARN = ("the ember demo needs scikit-learn for its dataset: "
                   "pip install 'ember[demo]'  (or: pip install scikit-learn)")


def load_digits_split(test_fraction: float = 0.2, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as standardized float32 features and int64 labels, split
    into train and held-out test sets (stratified, fixed by ``seed``).

    >>> x_train, y_train, x_test, y_test = load_digits_split()
    >>> x_train.shape, x_test.shape
    ((1437, 64), (360, 64))
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError(MISSING_SKLEARN) from e
    digits = load_digits()
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, y, test_size=test_fraction, random_state=seed, stratify=y)
    # Standardize with train statistics only (the test set stays unseen). Some border
    # pixels are always 0: the added 0.1 keeps them from dividing by zero.
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 0.1
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    return x_train, y_train, x_test, y_test


def build_model() -> nn.Module:
    """The demo's MLP: 64 pixels -> 128 -> 64 -> 10 classes, with ReLUs."""
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def accuracy(model: nn.Module, x: ember.Tensor, y: ember.Tensor) -> float:
    """The fraction of rows of ``x`` that ``model`` classifies as ``y``."""
    model.eval()
    with ember.no_grad():
        predicted = model(x).argmax(dim=1)
    model.train()
    return (predicted == y).float().mean().item()


def train(epochs: int = 20, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
          verbose: bool = True, log: Callable[[str], None] = print,
          compiled: bool = True) -> dict:
    """Train the MLP on the digits and return its test accuracy and per-epoch history.

    >>> train(epochs=20, verbose=False)["test_accuracy"] >= 0.95
    True
    """
    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)
    ember.manual_seed(seed)  # weights and shuffling are reproducible
    model = build_model()
    optimizer = Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(ember.from_numpy(x_train), ember.from_numpy(y_train)),
                        batch_size=batch_size, shuffle=True)
    if verbose:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"digits: {len(x_train)} train / {len(x_test)} test images (8x8), 10 classes")
        log(f"model: MLP 64-128-64-10, {n_params} parameters; Adam lr={lr}, "
            f"batch {batch_size}, {epochs} epochs")
    def train_step(xb, yb):
        optimizer.zero_grad()
        logits = model(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        optimizer.step()
        return loss, (logits.argmax(dim=1) == yb).sum()

    # The whole step (forward, backward, Adam) is one compiled graph.
    step = ember.compile(train_step) if compiled else train_step
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total_loss = 0.0
        correct = 0
        for xb, yb in loader:
            loss, hits = step(xb, yb)
            total_loss += loss.item() * len(yb)
            correct += hits.item()
        record = {"epoch": epoch, "loss": total_loss / len(x_train),
                  "train_accuracy": correct / len(x_train), "seconds": time.perf_counter() - t0}
        history.append(record)
        if verbose:
            log(f"epoch {epoch:3d}/{epochs}  loss {record['loss']:.4f}  "
                f"train acc {record['train_accuracy']:6.2%}  {record['seconds'] * 1e3:6.0f} ms")
    test_accuracy = accuracy(model, ember.from_numpy(x_test), ember.from_numpy(y_test))
    seconds = time.perf_counter() - start
    result = {"test_accuracy": test_accuracy, "history": history, "seconds": seconds,
              "model": model}
    if verbose:
        log(f"test accuracy: {test_accuracy:.2%} on {len(x_test)} held-out images "
            f"(trained in {seconds:.1f} s)")
    if compiled:
        kernels = step.kernels()
        llvm = sum(k.backend == "llvm" for k in kernels)
        result["kernels"] = len(kernels)
        result["speedup"] = _step_speedup(batch_size, lr, x_train, y_train)
        if verbose:
            log(f"compiled step: {len(kernels)} plan steps ({llvm} fused LLVM kernels, the "
                f"rest BLAS matmuls and views) over {len(step.cache)} batch shapes; "
                f"{result['speedup']:.2f}x the speed of the eager step")
    return result


def _step_speedup(batch_size: int, lr: float, x_train, y_train, steps: int = 30) -> float:
    """Eager step time / compiled step time, same model and batch, measured alternately."""
    xb = ember.from_numpy(x_train[:batch_size])
    yb = ember.from_numpy(y_train[:batch_size])
    times = []
    for compiled in (False, True):
        model = build_model()
        optimizer = Adam(model.parameters(), lr=lr)

        def step(xb, yb):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        step = ember.compile(step) if compiled else step
        for _ in range(3):   # warm up (a compiled step traces its first two calls)
            step(xb, yb)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(xb, yb)
        times.append(time.perf_counter() - t0)
    return times[0] / times[1]


def main(argv: list[str] | None = None) -> int:
    """Command line entry: ``python -m ember.demo [--epochs N] [--lr LR] ...``."""
    parser = argparse.ArgumentParser(prog="ember demo", description=(
        "Train a small MLP on scikit-learn's handwritten digits with ember."))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eager", action="store_true",
                        help="train with the plain eager step instead of @ember.compile")
    args = parser.parse_args(argv)
    try:
        train(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
              compiled=not args.eager)
    except ImportError as e:
        if str(e) != MISSING_SKLEARN:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
