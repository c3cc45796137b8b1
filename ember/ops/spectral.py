"""Fourier transforms and the complex-number primitives they need (extern ops: NumPy's
pocketfft on the CPU, cuFFT through CuPy).

The transforms are PyTorch's three internal ones: complex to complex (``fft_c2c``), real
to complex (``fft_r2c``, the half spectrum when ``onesided``) and the half spectrum back
to real (``fft_c2r``); ``ember.fft`` pads or trims the inputs to ``n``/``s`` around them.
``norm`` is NumPy's and PyTorch's: "backward" scales the inverse by 1/n, "forward" the
forward transform, "ortho" both by 1/sqrt(n).

Gradients follow PyTorch's convention for complex tensors: for a real loss, the gradient
of a complex ``z`` is dL/d(Re z) + i dL/d(Im z), so a linear map's vjp is its conjugate
transpose (the adjoint of a transform is the inverse one with the other ``norm``).
"""
from __future__ import annotations

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.ops.registry import EXTERN, defop

# The adjoint of a transform scaled one way is the opposite transform scaled the other.
SWAP = {"backward": "forward", "forward": "backward", "ortho": "ortho"}


def complex_of(np_dtype):
    """The complex NumPy dtype holding values of a real (or complex) one."""
    return np.dtype(np.complex128 if np_dtype in (np.float64, np.complex128) else np.complex64)


def real_of(np_dtype):
    return np.dtype(np.float64 if np_dtype in (np.float64, np.complex128) else np.float32)


# ---- transforms ------------------------------------------------------------------------

def _c2c(xp, z, dims, norm, forward):
    f = xp.fft.fftn if forward else xp.fft.ifftn
    return f(z, axes=dims, norm=norm).astype(z.dtype, copy=False)


def _as_complex(g):
    return g if g.dtype.is_complex else dispatch("complex", g, g.new_zeros(g.shape))


def _c2c_vjp(g, out, z, dims, norm, forward):
    return (dispatch("fft_c2c", _as_complex(g), dims=dims, norm=SWAP[norm], forward=not forward),)


defop("fft_c2c", EXTERN, _c2c, _c2c_vjp)


def _r2c(xp, x, dims, norm, onesided):
    f = xp.fft.rfftn if onesided else xp.fft.fftn
    return f(x, axes=dims, norm=norm).astype(complex_of(x.dtype), copy=False)


def _r2c_vjp(g, out, x, dims, norm, onesided):
    g = _as_complex(g)
    last = dims[-1]
    n = x.shape[last]
    if onesided and g.shape[last] < n:   # the half spectrum: the rest had no effect
        pad = list(g.shape)
        pad[last] = n - g.shape[last]
        g = dispatch("cat", g, g.new_zeros(tuple(pad)), dim=last)
    full = dispatch("fft_c2c", g, dims=dims, norm=SWAP[norm], forward=False)
    return (dispatch("complex_real", full),)


defop("fft_r2c", EXTERN, _r2c, _r2c_vjp)


def _c2r(xp, z, dims, norm, last_dim_size):
    s = [z.shape[d] for d in dims[:-1]] + [last_dim_size]
    return xp.fft.irfftn(z, s=s, axes=dims, norm=norm).astype(real_of(z.dtype), copy=False)


def _c2r_vjp(g, out, z, dims, norm, last_dim_size):
    gz = dispatch("fft_r2c", g, dims=dims, norm=SWAP[norm], onesided=True)
    # Bins 1 .. n - m (m = n // 2 + 1) stand for themselves and their mirror images in the
    # Hermitian spectrum irfft sums over: their gradient counts twice.
    last = dims[-1]
    m = z.shape[last]
    twice = last_dim_size - m
    if twice > 0:
        # slices of gz, not a constant tensor made here: a tensor from NumPy inside a vjp
        # is unknown to the compiled backward's plan (its backward then ran eagerly)
        from ember.tensor_create import cat
        gz = cat([gz.narrow(last, 0, 1), gz.narrow(last, 1, twice) * 2,
                  gz.narrow(last, 1 + twice, m - 1 - twice)], dim=last)
    return (gz,)


defop("fft_c2r", EXTERN, _c2r, _c2r_vjp)


# ---- complex numbers -------------------------------------------------------------------

def _real_vjp(g, out, z):
    return (dispatch("complex", g, g.new_zeros(g.shape)),)


def _imag_vjp(g, out, z):
    return (dispatch("complex", g.new_zeros(g.shape), g),)


defop("complex_real", EXTERN, lambda xp, z: xp.ascontiguousarray(z.real), _real_vjp)
defop("complex_imag", EXTERN, lambda xp, z: xp.ascontiguousarray(z.imag), _imag_vjp)


def _complex(xp, re, im):
    dt = complex_of(np.result_type(re.dtype, im.dtype))
    out = xp.empty(np.broadcast_shapes(re.shape, im.shape), dtype=dt)
    out.real, out.imag = re, im
    return out


def _complex_vjp(g, out, re, im):
    from ember.ops.elementwise import sum_to
    return (sum_to(dispatch("complex_real", g), re.shape) if re.requires_grad else None,
            sum_to(dispatch("complex_imag", g), im.shape) if im.requires_grad else None)


defop("complex", EXTERN, _complex, _complex_vjp)
defop("conj", EXTERN, lambda xp, z: xp.conj(z), lambda g, out, z: (dispatch("conj", g),))


def to_complex_dtype(dt):
    """ember's complex dtype for a real (or complex) one: float64 -> complex128, else complex64."""
    return dtypes.complex128 if dt in (dtypes.float64, dtypes.complex128) else dtypes.complex64


def _angle(xp, z):
    return xp.angle(z).astype(real_of(z.dtype), copy=False)


def _angle_vjp(g, out, z):
    # d angle = (x dy - y dx) / |z|^2: as a complex gradient, g i z / |z|^2 (0 at z = 0)
    if not z.dtype.is_complex:
        return (g * 0,)
    mag2 = dispatch("complex_real", z * dispatch("conj", z))
    safe = dispatch("where", mag2 == 0, 1.0, mag2)
    zi = dispatch("complex", -dispatch("complex_imag", z), dispatch("complex_real", z))
    return (zi * dispatch("where", mag2 == 0, 0.0, g / safe),)


defop("complex_angle", EXTERN, _angle, _angle_vjp)
