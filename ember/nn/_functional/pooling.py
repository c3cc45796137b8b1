"""1-D pooling and adaptive max pooling, from the 2-D pooling in functional.py.

A 1-D pooling is the 2-D one over a height of 1; adaptive max pooling takes PyTorch's
windows (window i spans floor(i*H/oh) .. ceil((i+1)*H/oh)) with ``amax``.

>>> import ember.nn.functional as F
>>> F.max_pool1d(ember.arange(6.).reshape(1, 1, 6), 2)
tensor([[[1., 3., 5.]]])
"""
from __future__ import annotations

from ember.errors import OpError, shape_str
from ember.tensor import Tensor, stack

__all__ = ["max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d",
           "adaptive_max_pool2d"]


def _one(v, name: str):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"expected a single int for {name}, got {v!r}")
        return v[0]
    return v


def _check_1d(op: str, input) -> None:
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor(op, input=input)
    if input.ndim not in (2, 3):
        raise OpError(op, f"expected a 2-D [C, L] or 3-D [N, C, L] input, got "
                      f"{shape_str(input)}", (input,))


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """Max over each window of [N, C, L]. ``F.max_pool1d(x, 3, stride=2)``."""
    from ember.nn.functional import max_pool2d
    _check_1d("max_pool1d", input)
    stride = _one(kernel_size if stride is None or stride == [] else stride, "stride")
    out = max_pool2d(input.unsqueeze(-2), (1, _one(kernel_size, "kernel_size")), (1, stride),
                     (0, _one(padding, "padding")), (1, _one(dilation, "dilation")),
                     ceil_mode, return_indices)
    if return_indices:   # an index into the [1, L] plane is one into the row
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """Mean over each window of [N, C, L]. ``F.avg_pool1d(x, 2)``."""
    from ember.nn.functional import avg_pool2d
    _check_1d("avg_pool1d", input)
    stride = _one(kernel_size if stride is None or stride == [] else stride, "stride")
    out = avg_pool2d(input.unsqueeze(-2), (1, _one(kernel_size, "kernel_size")), (1, stride),
                     (0, _one(padding, "padding")), ceil_mode, count_include_pad)
    return out.squeeze(-2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Average-pool [N, C, L] down to ``output_size``. ``F.adaptive_avg_pool1d(x, 4)``."""
    from ember.nn.functional import adaptive_avg_pool2d
    _check_1d("adaptive_avg_pool1d", input)
    out = adaptive_avg_pool2d(input.unsqueeze(-2), (1, _one(output_size, "output_size")))
    return out.squeeze(-2)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool [N, C, L] down to ``output_size``. ``F.adaptive_max_pool1d(x, 4)``."""
    _check_1d("adaptive_max_pool1d", input)
    out = adaptive_max_pool2d(input.unsqueeze(-2), (1, _one(output_size, "output_size")),
                              return_indices)
    return out.squeeze(-2)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool [N, C, H, W] (or [C, H, W]) down to ``output_size``.

    >>> F.adaptive_max_pool2d(ember.arange(16.).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor("adaptive_max_pool2d", input=input)
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices is not supported")
    if input.ndim not in (3, 4):
        raise OpError("adaptive_max_pool2d", f"expected a 3-D or 4-D input, got "
                      f"{shape_str(input)}", (input,))
    oh, ow = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    h, w = input.shape[-2:]
    oh, ow = oh or h, ow or w
    if h % oh == 0 and w % ow == 0:   # equal windows: one reshape and a max
        x = input.reshape(*input.shape[:-2], oh, h // oh, ow, w // ow)
        return x.amax((-3, -1))
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        cols = [input[..., h0:h1, (j * w) // ow:-(-((j + 1) * w) // ow)].amax((-2, -1))
                for j in range(ow)]
        rows.append(stack(cols, -1))
    return stack(rows, -2)
