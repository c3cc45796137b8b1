"""``ceil_mode=True`` for max and average pooling, from the floor-mode kernels.

With ``ceil_mode`` the output size rounds up, except that the last window must start
inside the input or its left/top padding (PyTorch's rule). Padding the input at the
end by just enough makes the floor formula give that size: with ``-inf`` for max
pooling (the extra cells never win: each window holds a real cell), with zeros for
average pooling, whose windows are then summed and divided by PyTorch's divisor (a
window's part inside the padded input, or its real cells with
``count_include_pad=False``). Gradients flow through the pad and the division.

>>> F.max_pool2d(ember.arange(25.).reshape(1, 1, 5, 5), 2, ceil_mode=True).shape
ember.Size([1, 1, 3, 3])
"""
from __future__ import annotations

import numpy as np

from ember.tensor import Tensor, tensor


def out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """The ceil-mode output length of one dim."""
    span = d * (k - 1) + 1
    out = -(-(size + 2 * p - span) // s) + 1
    if (out - 1) * s >= size + p:   # the last window would start in the right padding
        out -= 1
    return out


def extra(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Cells to pad at the end so that the floor formula gives ``out_size``."""
    span = d * (k - 1) + 1
    return max(0, (out_size(size, k, s, p, d) - 1) * s + span - (size + 2 * p))


def max_pool(x: Tensor, k, s, p, d, return_indices: bool):
    """Ceil-mode max pooling of a 4-D ``x`` (geometry as pairs)."""
    from ember.nn.functional import max_pool2d, pad

    h, w = x.shape[2:]
    eh, ew = extra(h, k[0], s[0], p[0], d[0]), extra(w, k[1], s[1], p[1], d[1])
    xp = pad(x, (0, ew, 0, eh), value=float("-inf")) if eh or ew else x
    out = max_pool2d(xp, k, s, p, d, return_indices=return_indices)
    if not return_indices or not ew:
        return out
    values, idx = out   # flat indices into the padded [H+eh, W+ew] plane: into [H, W]
    return values, (idx // (w + ew)) * w + idx % (w + ew)


def avg_pool(x: Tensor, k, s, p, count_include_pad: bool, divisor_override) -> Tensor:
    """Ceil-mode average pooling of a 4-D ``x`` (geometry as pairs)."""
    from ember.nn.functional import avg_pool2d, pad

    h, w = x.shape[2:]
    eh, ew = extra(h, k[0], s[0], p[0]), extra(w, k[1], s[1], p[1])
    sums = avg_pool2d(pad(x, (0, ew, 0, eh)), k, s, p, divisor_override=1)
    if divisor_override:
        return sums / divisor_override
    rows = _divisors(h, sums.shape[2], k[0], s[0], p[0], count_include_pad)
    cols = _divisors(w, sums.shape[3], k[1], s[1], p[1], count_include_pad)
    return sums / tensor(np.outer(rows, cols), dtype=sums.dtype, device=sums.device)


def _divisors(size: int, n: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    """Per output position of one dim, how many cells its window counts."""
    start = np.arange(n) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)
