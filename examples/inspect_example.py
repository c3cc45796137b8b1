"""Functions to look at with ``ember inspect`` (see docs/inspecting.md).

    python -m ember inspect examples/inspect_example.py:loss_fn --arg "f32[4,8]" --arg "i64[4]"
    python -m ember inspect examples/inspect_example.py:loss_fn --arg "f32[4,8]" \\
        --arg "i64[4]" --call "f32[2,8] i64[2]" --cache
    python -m ember inspect examples/inspect_example.py:mlp_block --arg "f32[16,8]" \\
        --html report.html --svg block.svg --dump dump/

Run as a script, it compiles ``loss_fn`` and calls it a few times.
"""
from __future__ import annotations

import ember
import ember.nn.functional as F

ember.manual_seed(0)
WEIGHT = ember.randn(8, 32) * 0.3   # a captured tensor: a graph input read at every call
BIAS = ember.zeros(32)


def loss_fn(logits: ember.Tensor, target: ember.Tensor) -> ember.Tensor:
    """Cross entropy of temperature-scaled logits, softened when the loss is large."""
    scaled = logits * 0.5 + 0.1            # elementwise: fused into the softmax kernel
    loss = F.cross_entropy(scaled, target)
    if loss > 2.0:                         # reads a tensor's value: a graph break
        loss = loss.sqrt() * 2.0 ** 0.5
    return loss


def mlp_block(x: ember.Tensor) -> ember.Tensor:
    """A linear layer (BLAS), then a tanh GELU and a residual-style scale (one fused kernel)."""
    h = x @ WEIGHT + BIAS
    return F.gelu(h, approximate="tanh") * 0.5 + h.sigmoid()


if __name__ == "__main__":
    compiled = ember.compile(loss_fn)
    for _ in range(5):
        print(compiled(ember.randn(4, 8), ember.randint(0, 8, (4,))))
    print(compiled.stats())
