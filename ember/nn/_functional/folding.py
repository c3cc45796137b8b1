"""unfold (im2col), fold (col2im), pixel_shuffle and pixel_unshuffle, as
torch.nn.functional. unfold and fold are the ``unfold2d``/``fold2d`` primitives (each the
other's gradient); the pixel shuffles are a reshape and a permute.

>>> import ember.nn.functional as F
>>> F.unfold(ember.zeros(1, 2, 4, 4), 2).shape
ember.Size([1, 8, 9])
"""
from __future__ import annotations

from ember.dispatch import dispatch
from ember.tensor import Tensor

__all__ = ["unfold", "fold", "pixel_shuffle", "pixel_unshuffle"]


def _pair(v, name: str) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a tuple of two ints, got {v}")
    return tuple(int(i) for i in t)


def _check(kernel, dilation, padding, stride, fn) -> None:
    if min(kernel) <= 0:
        raise RuntimeError(f"{fn}: kernel size should be greater than zero, but got "
                           f"kernel_height: {kernel[0]} kernel_width: {kernel[1]}")
    if min(dilation) <= 0:
        raise RuntimeError(f"{fn}: dilation should be greater than zero, but got "
                           f"dilation_height: {dilation[0]} dilation_width: {dilation[1]}")
    if min(padding) < 0:
        raise RuntimeError(f"{fn}: padding should be non-negative, but got pad_height: "
                           f"{padding[0]} pad_width: {padding[1]}")
    if min(stride) <= 0:
        raise RuntimeError(f"{fn}: stride should be greater than zero, but got "
                           f"stride_height: {stride[0]} stride_width: {stride[1]}")


def _blocks(size, k, d, p, s) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sliding local blocks of a [N, C, H, W] (or [C, H, W]) input as columns
    [N, C*kh*kw, L].

    >>> F.unfold(ember.ones(1, 1, 3, 3), 2).shape
    ember.Size([1, 4, 4])
    """
    k, d = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    p, s = _pair(padding, "padding"), _pair(stride, "stride")
    _check(k, d, p, s, "im2col")
    if input.ndim not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to im2col, but got "
                           f"input of size: {list(input.shape)}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    oh = _blocks(x.shape[2], k[0], d[0], p[0], s[0])
    ow = _blocks(x.shape[3], k[1], d[1], p[1], s[1])
    if oh < 1 or ow < 1:
        raise RuntimeError(f"Given input with spatial size ({x.shape[2]}, {x.shape[3]}), "
                           f"kernel_size=({k[0]}, {k[1]}), dilation=({d[0]}, {d[1]}), "
                           f"padding=({p[0]}, {p[1]}), calculated shape of the array of "
                           f"sliding blocks as ({oh}, {ow}), but its components must be at "
                           "least one.")
    out = dispatch("unfold2d", x, kernel=k, stride=s, padding=p, dilation=d, pad_value=0)
    return out.squeeze(0) if input.ndim == 3 else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sum columns [N, C*kh*kw, L] (or [C*kh*kw, L]) back into a [N, C, H, W] image;
    overlapping blocks add up.

    >>> F.fold(ember.ones(1, 4, 4), (3, 3), 2)[0, 0, 1, 1]
    tensor(4.)
    """
    o, k = _pair(output_size, "output_size"), _pair(kernel_size, "kernel_size")
    d, p, s = _pair(dilation, "dilation"), _pair(padding, "padding"), _pair(stride, "stride")
    _check(k, d, p, s, "col2im")
    if input.ndim not in (2, 3):
        raise RuntimeError("Expected 2D or 3D (batch mode) tensor for input with possibly 0 "
                           f"batch size and non-zero dimensions for input, but got: "
                           f"{list(input.shape)}")
    x = input.unsqueeze(0) if input.ndim == 2 else input
    n, ck, length = x.shape
    if ck % (k[0] * k[1]):
        raise RuntimeError("Expected size of input's dimension 1 to be divisible by the "
                           f"product of kernel_size, but got input.size(1)={ck} and "
                           f"kernel_size=({k[0]}, {k[1]})")
    oh = _blocks(o[0], k[0], d[0], p[0], s[0])
    ow = _blocks(o[1], k[1], d[1], p[1], s[1])
    if oh * ow != length:
        raise RuntimeError(f"Given output_size=({o[0]}, {o[1]}), kernel_size=({k[0]}, {k[1]}), "
                           f"dilation=({d[0]}, {d[1]}), padding=({p[0]}, {p[1]}), "
                           f"stride=({s[0]}, {s[1]}), expected size of input's dimension 2 to "
                           f"match the calculated number of sliding blocks {oh} * {ow} = "
                           f"{oh * ow}, but got input.size(2)={length}.")
    out = dispatch("fold2d", x, shape=(n, ck // (k[0] * k[1]), o[0], o[1]), kernel=k,
                   stride=s, padding=p, dilation=d)
    return out.squeeze(0) if input.ndim == 2 else out


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """[*, C*r*r, H, W] -> [*, C, H*r, W*r].

    >>> F.pixel_shuffle(ember.zeros(1, 4, 3, 3), 2).shape
    ember.Size([1, 1, 6, 6])
    """
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but "
                           f"got input with {input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError("pixel_shuffle expects its input's 'channel' dimension to be "
                           f"divisible by the square of upscale_factor, but input.size(-3)={c}"
                           f" is not divisible by {r * r}")
    nl = len(lead)
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.permute(*range(nl), nl, nl + 3, nl + 1, nl + 4, nl + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """[*, C, H*r, W*r] -> [*, C*r*r, H, W], the inverse of pixel_shuffle.

    >>> F.pixel_unshuffle(ember.zeros(1, 1, 6, 6), 2).shape
    ember.Size([1, 4, 3, 3])
    """
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, "
                           f"but got input with {input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError("pixel_unshuffle expects height and width to be divisible by "
                           f"downscale_factor, but input.size(-2)={h} and input.size(-1)={w} "
                           f"are not divisible by {r}")
    nl = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    x = x.permute(*range(nl), nl, nl + 2, nl + 4, nl + 1, nl + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)
