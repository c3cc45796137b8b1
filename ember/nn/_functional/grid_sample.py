"""grid_sample and affine_grid (2-D and 3-D), composed from registry ops.

Sampling positions are computed from the grid with elementwise ops (unnormalize, then
clip or reflect for the padding modes), and the input is read with one ``gather`` per
corner from its flattened spatial dims; out-of-range corners read index 0 and are
multiplied by zero. So the gradient reaches the input (gather's scatter-add) and the grid
(through the interpolation weights, and the clip/reflect functions) exactly as PyTorch's
kernels compute them, and ``ember.compile`` traces it.

>>> import ember.nn.functional as F
>>> theta = ember.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
>>> grid = F.affine_grid(theta, (1, 1, 4, 4), align_corners=False)
>>> F.grid_sample(ember.randn(1, 1, 4, 4), grid, align_corners=False).shape
ember.Size([1, 1, 4, 4])
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from ember import dtypes
from ember.tensor import Tensor, tensor, where
from ember.tensor_create import linspace_values

__all__ = ["grid_sample", "affine_grid"]

_ALIGN_WARNING = ("Default grid_sample and affine_grid behavior has changed to "
                  "align_corners=False since 1.3.0. Please specify align_corners=True if the "
                  "old behavior is desired. See the documentation of grid_sample for details.")


def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    if align_corners:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _reflect(x: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """Reflect x into [twice_low/2, twice_high/2], as PyTorch's reflect_coordinates."""
    if twice_low == twice_high:
        return x * 0.0
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    x = (x - low).abs()
    flips = (x / span).floor().detach()
    extra = x - flips * span
    even = (flips.remainder(2) == 0)
    return where(even, extra + low, span - extra + low)


def _source_index(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    x = _unnormalize(coord, size, align_corners)
    if padding_mode == "border":
        x = x.clamp(0, size - 1)
    elif padding_mode == "reflection":
        x = (_reflect(x, 0, 2 * (size - 1)) if align_corners
             else _reflect(x, -1, 2 * size - 1))
        x = x.clamp(0, size - 1)
    return x


def grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear",
                padding_mode: str = "zeros", align_corners: Optional[bool] = None) -> Tensor:
    """Sample ``input`` [N, C, H, W] (or [N, C, D, H, W]) at the grid's positions
    [N, H_out, W_out, 2] ((x, y) in [-1, 1]; 3-D: (x, y, z)), bilinearly or nearest.

    >>> F.grid_sample(ember.ones(1, 1, 3, 3), ember.zeros(1, 2, 2, 2),
    ...               align_corners=True).shape
    ember.Size([1, 1, 2, 2])
    """
    from ember.nn.functional import _not_tensor
    if not isinstance(input, Tensor) or not isinstance(grid, Tensor):
        raise _not_tensor("grid_sample", input=input, grid=grid)
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', "
                         f"'nearest' or 'bicubic', but got: '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError("nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
                         f"'border', or 'reflection', but got: '{padding_mode}'")
    if mode == "bicubic":
        raise NotImplementedError("grid_sample: mode='bicubic' is not supported")
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    if input.ndim not in (4, 5):
        raise RuntimeError(f"grid_sampler(): expected 4D or 5D input and grid with same "
                           f"number of dimensions, but got input with sizes "
                           f"{list(input.shape)} and grid with sizes {list(grid.shape)}")
    spatial = input.ndim - 2
    if (grid.ndim != input.ndim or grid.shape[0] != input.shape[0]
            or grid.shape[-1] != spatial):
        raise RuntimeError(f"grid_sampler(): expected grid to have size {spatial} in last "
                           f"dimension and the same batch size and number of dimensions as "
                           f"input, but got input with sizes {list(input.shape)} and grid "
                           f"with sizes {list(grid.shape)}")
    n, c = input.shape[:2]
    sizes = tuple(input.shape[2:])                 # (H, W) or (D, H, W)
    out_sizes = tuple(grid.shape[1:-1])
    points = int(np.prod(out_sizes))
    flat = input.reshape(n, c, -1)
    # grid[..., 0] indexes the last (W) dim, grid[..., 1] H, grid[..., 2] D.
    coords = [_source_index(grid[..., spatial - 1 - d].reshape(n, points), sizes[d],
                            padding_mode, align_corners) for d in range(spatial)]
    strides = [int(np.prod(sizes[d + 1:])) for d in range(spatial)]

    def read(index: list) -> Tensor:
        """input at integer positions (float tensors [N, P]); 0 outside (zeros padding)."""
        inside = None
        lin = None
        for d, i in enumerate(index):
            ok = (i >= 0) & (i <= sizes[d] - 1)
            inside = ok if inside is None else inside & ok
            term = i.clamp(0, sizes[d] - 1) * strides[d]
            lin = term if lin is None else lin + term
        lin = lin.to(dtypes.int64).unsqueeze(1).expand(n, c, points)
        vals = flat.gather(2, lin)
        return vals * inside.unsqueeze(1).to(vals.dtype)

    if mode == "nearest":
        out = read([x.round().detach() for x in coords])
    else:
        lows = [x.floor().detach() for x in coords]
        fracs = [x - lo for x, lo in zip(coords, lows)]
        out = None
        for corner in range(2 ** spatial):
            idx, weight = [], None
            for d in range(spatial):
                hi = (corner >> (spatial - 1 - d)) & 1
                idx.append(lows[d] + hi)
                w = fracs[d] if hi else 1 - fracs[d]
                weight = w if weight is None else weight * w
            term = read(idx) * weight.unsqueeze(1)
            out = term if out is None else out + term
    return out.reshape((n, c) + out_sizes)


def _base_coords(steps: int, align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """torch's points along one axis, rounded as torch rounds them in float32/float64
    (an identity ``theta`` must land exactly where torch's does: ``grid_sample`` floors
    them)."""
    if steps <= 1:
        return np.zeros(max(steps, 0), dtype)
    if dtype not in (np.float32, np.float64):
        lin = np.linspace(-1.0, 1.0, steps)
        return (lin if align_corners else lin * (steps - 1) / steps).astype(dtype)
    lin = linspace_values(-1.0, 1.0, steps, dtype)
    return lin if align_corners else lin * dtype.type(steps - 1) / dtype.type(steps)


def affine_grid(theta: Tensor, size, align_corners: Optional[bool] = None) -> Tensor:
    """The sampling grid [N, H, W, 2] (or [N, D, H, W, 3]) of the affine maps ``theta``
    [N, 2, 3] (or [N, 3, 4]) for an output of ``size`` (N, C, H, W) (or (N, C, D, H, W)).

    >>> F.affine_grid(ember.eye(2, 3).unsqueeze(0), (1, 1, 2, 2), align_corners=True)[0, 0]
    tensor([[-1., -1.],
            [ 1., -1.]])
    """
    if not isinstance(theta, Tensor):
        raise TypeError(f"affine_grid(): argument 'theta' must be Tensor, not "
                        f"{type(theta).__name__}")
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got "
                         f"{theta.dtype}")
    size = tuple(int(s) for s in size)
    if len(size) == 4:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (2, 3):
            raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size "
                             f"{size}. Got {list(theta.shape)}.")
        spatial = size[-2:]
    elif len(size) == 5:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (3, 4):
            raise ValueError(f"Expected a batch of 3D affine matrices of shape Nx3x4 for size "
                             f"{size}. Got {list(theta.shape)}.")
        spatial = size[-3:]
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D "
                                  f"affine transforms, respectively. Got size {size}.")
    if min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    if theta.shape[0] != size[0]:
        raise ValueError(f"Expected theta batch size {theta.shape[0]} to equal size[0] "
                         f"{size[0]}")
    # Base points (x, y[, z], 1), x varying fastest (the last spatial dim).
    axes = [_base_coords(s, align_corners, theta.dtype.np) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")              # each [H, W] (or [D, H, W])
    base = np.stack(list(mesh[::-1]) + [np.ones_like(mesh[0])], -1).reshape(-1, len(spatial) + 1)
    base_t = tensor(base, dtype=theta.dtype, device=theta.device)
    grid = base_t.matmul(theta.transpose(1, 2))           # [N, P, k]
    return grid.reshape((size[0],) + tuple(spatial) + (len(spatial),))
