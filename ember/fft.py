"""``ember.fft``: discrete Fourier transforms with PyTorch's names, arguments and results.

``n``/``s`` trims or zero-pads the input along each transformed dim first; ``norm`` is
"backward" (the default: the inverse scales by 1/n), "ortho" or "forward". Real inputs
give complex results (complex64 from float32, complex128 from float64); every transform
is differentiable (ember/ops/spectral.py) and runs eagerly inside compiled functions.

>>> ember.fft.rfft(ember.tensor([1.0, 2.0, 3.0, 4.0]))
tensor([10.+0.j, -2.+2.j, -2.+0.j])
"""
from __future__ import annotations

from ember import dtypes
from ember.dispatch import dispatch
from ember.errors import OpError
from ember.ops import spectral as _spectral  # noqa: F401  (registers the ops)
from ember.tensor import Tensor

__all__ = ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn",
           "rfftn", "irfftn", "hfft", "ihfft", "fftfreq", "rfftfreq", "fftshift", "ifftshift"]


def fft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The 1-D discrete Fourier transform along ``dim``.

    >>> ember.fft.fft(ember.tensor([1.0, 0.0, 0.0, 0.0]))
    tensor([1.+0.j, 1.+0.j, 1.+0.j, 1.+0.j])
    """
    return _c2c("fft.fft", input, _one(n), (dim,), norm, True)


def ifft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The inverse of ``fft``."""
    return _c2c("fft.ifft", input, _one(n), (dim,), norm, False)


def fft2(input: Tensor, s=None, dim=(-2, -1), norm: str | None = None) -> Tensor:
    """``fftn`` over two dims (the last two by default)."""
    return fftn(input, s, dim, norm)


def ifft2(input: Tensor, s=None, dim=(-2, -1), norm: str | None = None) -> Tensor:
    return ifftn(input, s, dim, norm)


def fftn(input: Tensor, s=None, dim=None, norm: str | None = None) -> Tensor:
    """The N-D transform over ``dim`` (every dim, or the last ``len(s)``, when None)."""
    dims, sizes = _dims_sizes("fft.fftn", input, s, dim)
    return _c2c("fft.fftn", input, sizes, dims, norm, True)


def ifftn(input: Tensor, s=None, dim=None, norm: str | None = None) -> Tensor:
    dims, sizes = _dims_sizes("fft.ifftn", input, s, dim)
    return _c2c("fft.ifftn", input, sizes, dims, norm, False)


def rfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The transform of a real signal: the n // 2 + 1 non-negative frequencies."""
    return _r2c("fft.rfft", input, _one(n), (dim,), norm)


def rfft2(input: Tensor, s=None, dim=(-2, -1), norm: str | None = None) -> Tensor:
    return rfftn(input, s, dim, norm)


def rfftn(input: Tensor, s=None, dim=None, norm: str | None = None) -> Tensor:
    """``fftn`` of a real input, halved along the last of ``dim``."""
    dims, sizes = _dims_sizes("fft.rfftn", input, s, dim)
    return _r2c("fft.rfftn", input, sizes, dims, norm)


def irfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The real signal of length ``n`` (2 * (m - 1) by default) whose ``rfft`` is ``input``.

    >>> ember.fft.irfft(ember.fft.rfft(ember.tensor([1.0, 2.0, 3.0, 4.0])))
    tensor([1., 2., 3., 4.])
    """
    return _c2r("fft.irfft", input, _one(n), (dim,), norm)


def irfft2(input: Tensor, s=None, dim=(-2, -1), norm: str | None = None) -> Tensor:
    return irfftn(input, s, dim, norm)


def irfftn(input: Tensor, s=None, dim=None, norm: str | None = None) -> Tensor:
    """The inverse of ``rfftn``: ``s[-1]`` defaults to 2 * (m - 1) of the last dim's m."""
    dims, sizes = _dims_sizes("fft.irfftn", input, s, dim)
    return _c2r("fft.irfftn", input, sizes, dims, norm)


def hfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The transform of a Hermitian-symmetric signal given by its first half (real result)."""
    # hfft(x, norm) = irfft(conj(x)) with the opposite scaling: n * irfft for "backward".
    return _c2r("fft.hfft", _conj(_complex_input(input)), _one(n), (dim,),
                _spectral.SWAP[_norm("fft.hfft", input, norm)])


def ihfft(input: Tensor, n: int | None = None, dim: int = -1, norm: str | None = None) -> Tensor:
    """The inverse of ``hfft``: the conjugate of ``rfft`` with the opposite scaling."""
    return _conj(_r2c("fft.ihfft", input, _one(n), (dim,),
                      _spectral.SWAP[_norm("fft.ihfft", input, norm)]))


def fftfreq(n: int, d: float = 1.0, *, dtype=None, device=None,
            requires_grad: bool = False) -> Tensor:
    """The sample frequencies of an ``n``-point transform with sample spacing ``d``.

    >>> ember.fft.fftfreq(4)
    tensor([ 0.00,  0.25, -0.50, -0.25])
    """
    import numpy as np
    return _freqs(np.fft.fftfreq(n, d), dtype, device, requires_grad)


def rfftfreq(n: int, d: float = 1.0, *, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """The non-negative sample frequencies of ``rfft``."""
    import numpy as np
    return _freqs(np.fft.rfftfreq(n, d), dtype, device, requires_grad)


def fftshift(input: Tensor, dim=None) -> Tensor:
    """Rolls the zero frequency to the middle of each dim in ``dim`` (all by default).

    >>> ember.fft.fftshift(ember.fft.fftfreq(4))
    tensor([-0.50, -0.25,  0.00,  0.25])
    """
    dims = _shift_dims(input, dim)
    return input.roll([input.shape[d] // 2 for d in dims], dims) if dims else input


def ifftshift(input: Tensor, dim=None) -> Tensor:
    """The inverse of ``fftshift``."""
    dims = _shift_dims(input, dim)
    return input.roll([-(input.shape[d] // 2) for d in dims], dims) if dims else input


# ---- helpers ---------------------------------------------------------------------------

def _c2c(name, input, sizes, dims, norm, forward):
    norm = _norm(name, input, norm)
    dims = _wrap_dims(name, input, dims)
    x = _resize(name, _complex_input(input), dims, sizes)
    return dispatch("fft_c2c", x, dims=dims, norm=norm, forward=forward)


def _r2c(name, input, sizes, dims, norm):
    norm = _norm(name, input, norm)
    if input.dtype.is_complex:
        raise OpError(name, f"{name} expects a real input tensor, but got {input.dtype.name}",
                      (input,))
    dims = _wrap_dims(name, input, dims)
    x = _resize(name, _float_input(input), dims, sizes)
    return dispatch("fft_r2c", x, dims=dims, norm=norm, onesided=True)


def _c2r(name, input, sizes, dims, norm):
    norm = _norm(name, input, norm)
    dims = _wrap_dims(name, input, dims)
    last = input.shape[dims[-1]] if dims else 0
    n = sizes[-1] if sizes[-1] is not None else 2 * (last - 1)
    if n < 1:
        raise OpError(name, f"Invalid number of data points ({n}) specified", (input,))
    x = _resize(name, _complex_input(input), dims, list(sizes[:-1]) + [n // 2 + 1])
    return dispatch("fft_c2r", x, dims=dims, norm=norm, last_dim_size=n)


def _one(n):
    return [n]


def _norm(name, input, norm):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
    norm = "backward" if norm is None else norm
    if norm not in ("backward", "forward", "ortho"):
        raise OpError(name, f'Invalid normalization mode: "{norm}"', (input,))
    return norm


def _wrap_dims(name, input, dims):
    out = []
    for d in dims:
        if not -input.ndim <= d < max(input.ndim, 1):
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-input.ndim}, {input.ndim - 1}], but got {d})")
        out.append(d % input.ndim)
    if len(set(out)) != len(out):
        raise OpError(name, f"{name}: dims must be unique", (input,))
    return tuple(out)


def _dims_sizes(name, input, s, dim):
    """PyTorch's rule: ``dim`` None means all dims, or the last ``len(s)`` when ``s`` is
    given; ``s`` None keeps each dim's size (None entries: see ``_c2r``)."""
    if isinstance(dim, int):
        dim = (dim,)
    if s is not None:
        s = list(s)
        if dim is None:
            dim = tuple(range(input.ndim - len(s), input.ndim))
        if len(s) != len(dim):
            raise OpError(name, "When given, dim and shape arguments must have the same "
                          "length", (input,))
        return tuple(dim), [None if v == -1 else v for v in s]
    if dim is None:
        dim = tuple(range(input.ndim))
    return tuple(dim), [None] * len(dim)


def _resize(name, x, dims, sizes):
    """Trim or zero-pad ``x`` to ``sizes`` (None: keep) along ``dims``."""
    for d, n in zip(dims, sizes):
        if n is None or n == x.shape[d]:
            continue
        if n < 1:
            raise OpError(name, f"Invalid number of data points ({n}) specified", (x,))
        if n < x.shape[d]:
            x = x.narrow(d, 0, n)
        else:
            pad = list(x.shape)
            pad[d] = n - x.shape[d]
            x = dispatch("cat", x, x.new_zeros(tuple(pad)), dim=d)
    return x


def _float_input(x):
    """Integers and bools become the default float dtype; half precision float32."""
    if x.dtype in (dtypes.float32, dtypes.float64):
        return x
    return x.to(dtypes.float32 if x.is_floating_point() else dtypes.get_default_dtype())


def _complex_input(x):
    if x.dtype.is_complex:
        return x
    x = _float_input(x)
    return dispatch("complex", x, x.new_zeros(x.shape))


def _conj(z):
    return dispatch("conj", z)


def _freqs(values, dtype, device, requires_grad):
    from ember.tensor_create import tensor
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    return tensor(values, dtype=dt, device=device, requires_grad=requires_grad)


def _shift_dims(input, dim):
    if dim is None:
        return tuple(range(input.ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % input.ndim for d in dims)
