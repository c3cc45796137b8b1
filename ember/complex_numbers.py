"""Complex tensors: ``real``, ``imag``, ``view_as_real``, ``view_as_complex``, ``complex``,
``polar``, ``conj``, ``angle`` (PyTorch's names), differentiable with PyTorch's convention
(the gradient of a complex z is dL/d(Re z) + i dL/d(Im z)).

Unlike PyTorch, ``real``, ``imag`` and ``view_as_real`` return copies, not views: writing
into them does not change the complex tensor.

>>> ember.view_as_real(ember.complex(ember.tensor([1.0]), ember.tensor([2.0])))
tensor([[1., 2.]])
"""
from __future__ import annotations

from ember.dispatch import dispatch
from ember.errors import OpError
from ember.tensor import Tensor

__all__ = ["real", "imag", "view_as_real", "view_as_complex", "complex", "polar", "conj",
           "angle", "is_complex"]


def real(input: Tensor) -> Tensor:
    """The real part (the tensor itself when it is real).

    >>> ember.real(ember.complex(ember.tensor([1.0]), ember.tensor([2.0])))
    tensor([1.])
    """
    return dispatch("complex_real", input) if input.dtype.is_complex else input


def imag(input: Tensor) -> Tensor:
    """The imaginary part; a real tensor raises, as in PyTorch."""
    if not input.dtype.is_complex:
        raise OpError("imag", "imag is not implemented for tensors with non-complex dtypes.",
                      (input,))
    return dispatch("complex_imag", input)


def view_as_real(input: Tensor) -> Tensor:
    """A complex tensor as real pairs on a new last dim of size 2 (a copy here)."""
    if not input.dtype.is_complex:
        raise OpError("view_as_real", "view_as_real is only supported for complex tensors",
                      (input,))
    from ember.tensor_create import stack
    return stack([real(input), imag(input)], -1)


def view_as_complex(input: Tensor) -> Tensor:
    """Real pairs on a last dim of size 2 as one complex tensor."""
    if input.dtype.is_complex or not input.is_floating_point() or input.ndim == 0 \
            or input.shape[-1] != 2:
        raise OpError("view_as_complex", "view_as_complex: Tensor must have a last dimension "
                      f"of size 2 and a float32 or float64 dtype, got {input.dtype.name} of "
                      f"shape {list(input.shape)}", (input,))
    return dispatch("complex", input[..., 0], input[..., 1])


def complex(real: Tensor, imag: Tensor) -> Tensor:
    """``real + i imag`` from two real tensors of the same float dtype (they broadcast).

    >>> ember.complex(ember.tensor([1.0]), ember.tensor([-1.0]))
    tensor([1.-1.j])
    """
    if real.dtype != imag.dtype or not real.is_floating_point():
        raise OpError("complex", f"complex: Expected both inputs to be Half, Float or Double "
                      f"tensors of one dtype but got {real.dtype.name} and {imag.dtype.name}",
                      (real, imag))
    return dispatch("complex", real, imag)


def polar(abs: Tensor, angle: Tensor) -> Tensor:
    """``abs * (cos(angle) + i sin(angle))``."""
    return complex(abs * angle.cos(), abs * angle.sin())


def conj(input: Tensor) -> Tensor:
    """The complex conjugate (the tensor itself when it is real)."""
    return dispatch("conj", input) if input.dtype.is_complex else input


def angle(input: Tensor) -> Tensor:
    """The argument of each element in radians (pi for negative reals, else 0)."""
    return dispatch("complex_angle", input)


def is_complex(input: Tensor) -> bool:
    return input.dtype.is_complex
