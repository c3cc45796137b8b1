"""More of ``torch.nn.functional``: power-average pooling, max pooling with indices (3-D
too), ``max_unpool3d`` and the in-place activation forms (``relu_``, ``selu_``, ...).

All of them are compositions of ember ops (no gradients of their own), so autograd and
``ember.compile`` see ordinary primitives.

>>> import ember.nn.functional as F
>>> F.lp_pool2d(ember.ones(1, 1, 4, 4), 2, 2)
tensor([[[[2., 2.],
          [2., 2.]]]])
"""
from __future__ import annotations

import math

from ember.nn._functional.conv3d import max_pool3d as _max_pool3d  # values, no indices
from ember.tensor import Tensor, arange

__all__ = ["lp_pool1d", "lp_pool2d", "lp_pool3d", "max_pool1d_with_indices",
           "max_pool2d_with_indices", "max_pool3d_with_indices", "max_unpool3d", "relu_",
           "leaky_relu_", "celu_", "selu_", "threshold_"]


# ---- power-average pooling --------------------------------------------------------------

def _lp_finish(out: Tensor, norm_type: float, kernel_numel: int) -> Tensor:
    # torch's formula: the window sums of x^p are avg * kernel size; sign * relu(abs)
    # keeps the sign of odd powers and gives a zero sum a zero gradient.
    return (out.sign() * out.abs().relu()).mul(kernel_numel).pow(1.0 / norm_type)


def _numel(kernel_size, n: int) -> int:
    k = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * n
    return math.prod(int(v) for v in k)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: int, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) over [N, C, L] (p = inf: max of |x|).

    >>> F.lp_pool1d(ember.tensor([[[3., 4.]]]), 2, 2)
    tensor([[[5.]]])
    """
    from ember.nn.functional import avg_pool1d, max_pool1d
    if norm_type == math.inf:
        return max_pool1d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -math.inf:
        return -max_pool1d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool1d(input.pow(norm_type), kernel_size,
                     stride if stride is not None else kernel_size, 0, ceil_mode)
    return _lp_finish(out, norm_type, _numel(kernel_size, 1))


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) over [N, C, H, W] (p = inf: max of |x|)."""
    from ember.nn.functional import avg_pool2d, max_pool2d
    if norm_type == math.inf:
        return max_pool2d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -math.inf:
        return -max_pool2d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool2d(input.pow(norm_type), kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, norm_type, _numel(kernel_size, 2))


def lp_pool3d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(sum of x^p over each window)^(1/p) over [N, C, D, H, W] (p = inf: max of |x|)."""
    from ember.nn.functional import avg_pool3d, max_pool3d
    if norm_type == math.inf:
        return max_pool3d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -math.inf:
        return -max_pool3d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool3d(input.pow(norm_type), kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, norm_type, _numel(kernel_size, 3))


# ---- max pooling with indices ------------------------------------------------------------

def max_pool1d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False):
    """``max_pool1d(..., return_indices=True)``: (values, flat indices into L)."""
    from ember.nn.functional import max_pool1d
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False):
    """``max_pool2d(..., return_indices=True)``: (values, flat indices into H*W)."""
    from ember.nn.functional import max_pool2d
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False):
    """``max_pool3d`` with each maximum's flat index into its [D, H, W] volume.

    The values are ``max_pool3d``'s (and so is their gradient); the indices come from the
    windows of a -inf padded copy (ties: the first maximum, as torch on the CPU).

    >>> out, idx = F.max_pool3d_with_indices(ember.arange(8.).reshape(1, 1, 2, 2, 2), 2)
    >>> idx
    tensor([[[[[7]]]]])
    """
    from ember import dtypes
    from ember.nn._functional.conv3d import _pool_out, _pool_setup
    from ember.nn.functional import pad
    out = _max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode)
    k, s, p, d = _pool_setup("max_pool3d", input, kernel_size, stride, padding, dilation)
    x = input.detach()
    sizes = tuple(x.shape[-3:])
    lens = [_pool_out(n, k[j], s[j], p[j], d[j], ceil_mode) for j, n in enumerate(sizes)]
    # each dim padded on the left by p and on the right as far as the last window reaches
    right = [max((lens[j] - 1) * s[j] + d[j] * (k[j] - 1) + 1 - sizes[j] - p[j], 0)
             for j in range(3)]
    widths = (p[2], right[2], p[1], right[1], p[0], right[0])
    xp = pad(x, widths, value=-math.inf)
    grid = arange(math.prod(sizes), dtype=dtypes.int64, device=x.device).reshape(sizes)
    gp = pad(grid, widths, value=-1)
    xw, gw = xp, gp
    for j in range(3):   # windows of the kernel's extent, then every d-th element of each
        span = d[j] * (k[j] - 1) + 1
        xw = xw.unfold(x.ndim - 3 + j, span, s[j]).narrow(x.ndim - 3 + j, 0, lens[j])
        gw = gw.unfold(j, span, s[j]).narrow(j, 0, lens[j])
        if d[j] > 1:
            xw = xw[..., ::d[j]]
            gw = gw[..., ::d[j]]
    # xw: [..., oD, oH, oW, kd, kh, kw]; gw: [oD, oH, oW, kd, kh, kw]
    local = xw.flatten(-3).argmax(-1, keepdim=True)
    table = gw.flatten(-3).expand(*local.shape[:-1], gw.shape[-3] * gw.shape[-2]
                                  * gw.shape[-1])
    return out, table.gather(-1, local).squeeze(-1)


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """3-D max pooling of [N, C, D, H, W]; with ``return_indices``, (values, indices) as
    ``max_pool3d_with_indices`` (what ``MaxUnpool3d`` takes).

    >>> F.max_pool3d(ember.randn(1, 2, 4, 4, 4), 2).shape
    ember.Size([1, 2, 2, 2, 2])
    """
    if return_indices:
        return max_pool3d_with_indices(input, kernel_size, stride, padding, dilation,
                                       ceil_mode)
    return _max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode)


# ---- unpooling ------------------------------------------------------------------------------

def max_unpool3d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The partial inverse of ``max_pool3d(..., return_indices=True)``: each value back
    at its index in a [D, H, W] volume of zeros."""
    from ember.nn._functional.extra import _tuple, _unpool_size
    k = _tuple(kernel_size, 3)
    s = _tuple(stride if stride is not None else kernel_size, 3)
    od, oh, ow = _unpool_size(input.shape[-3:], k, s, _tuple(padding, 3), output_size, 3)
    lead = tuple(input.shape[:-3])
    flat = input.reshape(*lead, -1)
    out = flat.new_zeros(*lead, od * oh * ow).scatter(-1, indices.reshape(*lead, -1), flat)
    return out.reshape(*lead, od, oh, ow)


# ---- in-place activations -------------------------------------------------------------------

def relu_(input: Tensor) -> Tensor:
    """``relu`` in place."""
    from ember.nn.functional import relu
    return relu(input, inplace=True)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``leaky_relu`` in place."""
    from ember.nn.functional import leaky_relu
    return leaky_relu(input, negative_slope, inplace=True)


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """``celu`` in place."""
    from ember.nn.functional import celu
    return celu(input, alpha, inplace=True)


def selu_(input: Tensor) -> Tensor:
    """``selu`` in place."""
    from ember.nn.functional import selu
    return selu(input, inplace=True)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    """``threshold`` in place: x where x > threshold, else ``value``."""
    from ember.nn.functional import threshold as _threshold
    return _threshold(input, threshold, value, inplace=True)
