"""Activation functions beyond the basic ones in functional.py: ELU, SELU, CELU,
softplus, mish, hardtanh, relu6, hardswish, hardsigmoid, logsigmoid, softsign,
tanhshrink, softmin, glu, prelu, gumbel_softmax.

Each is a composition of registry ops (``where``, ``exp``, ``log1p``, ``tanh``), so it
traces, fuses and has PyTorch's gradient, including at the kinks: the branch ``where``
does not select gets a zero gradient, and the exponentials only see clamped inputs so
that an unselected branch never overflows into ``0 * inf = nan``.

>>> import ember.nn.functional as F
>>> F.elu(ember.tensor([-1.0, 2.0]))
tensor([-0.6321,  2.0000])
"""
from __future__ import annotations

from ember.dispatch import dispatch
from ember.errors import OpError
from ember.tensor import Tensor, where

__all__ = ["elu", "selu", "celu", "softplus", "mish", "hardtanh", "relu6", "hardswish",
           "hardsigmoid", "logsigmoid", "softsign", "tanhshrink", "softmin", "glu", "prelu",
           "elu_", "hardtanh_", "threshold", "gumbel_softmax"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _check(op: str, input) -> None:
    if not isinstance(input, Tensor):
        from ember.nn.functional import _not_tensor
        raise _not_tensor(op, input=input)


def _inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return input.copy_(out) if inplace else out


def _original(input: Tensor, inplace: bool) -> Tensor:
    """What a gradient that reads the input reads: a copy where the result overwrites an
    input that needs gradients (as torch saves the original for ``silu_``), since the
    in-place write would change the value it saved (torchvision's Conv2dNormActivation
    makes Hardswish and SiLU with inplace=True: mobilenet_v3 and efficientnet)."""
    return input.clone() if inplace and input.requires_grad else input


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1). ``F.elu(x, alpha=0.5)``."""
    _check("elu", input)
    neg = alpha * (input.clamp(max=0.0).exp() - 1.0)
    return _inplace(input, where(input > 0, input, neg), inplace)


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """In-place ``elu``."""
    return elu(input, alpha, inplace=True)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalizing constants. ``F.selu(x)``."""
    _check("selu", input)
    neg = _SELU_ALPHA * (input.clamp(max=0.0).exp() - 1.0)
    return _inplace(input, _SELU_SCALE * where(input > 0, input, neg), inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)). ``F.celu(x, alpha=2.0)``."""
    _check("celu", input)
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    neg = alpha * ((input.clamp(max=0.0) / alpha).exp() - 1.0)
    return _inplace(input, where(input > 0, input, neg), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear where beta * x > threshold (as PyTorch).

    >>> F.softplus(ember.tensor([0.0, 30.0]))
    tensor([ 0.6931, 30.0000])
    """
    _check("softplus", input)
    scaled = input if beta == 1 else input * beta
    smooth = dispatch("softplus", scaled)   # one fused primitive (codegen/mathlib.py)
    if beta != 1:
        smooth = smooth / beta
    return where(scaled > threshold, input, smooth)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x)). ``F.mish(x)``."""
    _check("mish", input)
    x = _original(input, inplace)
    return _inplace(input, x * softplus(x).tanh(), inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val]; the gradient is zero at and beyond the bounds, as
    PyTorch's.

    >>> F.hardtanh(ember.tensor([-2.0, 0.5, 3.0]))
    tensor([-1.0000,  0.5000,  1.0000])
    """
    _check("hardtanh", input)
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    out = where(input <= min_val, min_val, where(input >= max_val, max_val, input))
    return _inplace(input, out.to(input.dtype), inplace)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """In-place ``hardtanh``."""
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6). ``F.relu6(x)``."""
    _check("relu6", input)
    return hardtanh(input, 0.0, 6.0, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6. ``F.hardswish(x)``."""
    _check("hardswish", input)
    x = _original(input, inplace)
    gate = where(x <= -3.0, 0.0, where(x >= 3.0, 1.0, x / 6.0 + 0.5))
    return _inplace(input, x * gate, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6. ``F.hardsigmoid(x)``."""
    _check("hardsigmoid", input)
    out = where(input <= -3.0, 0.0, where(input >= 3.0, 1.0, input / 6.0 + 0.5))
    return _inplace(input, out.to(input.dtype), inplace)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), computed stably. ``F.logsigmoid(x)``."""
    _check("logsigmoid", input)
    # min(x, 0) - log1p(exp(-|x|)): no overflow on either side. minimum, not clamp: at
    # x = 0 its tie gives half the gradient (|x|'s is 0 there), so the total is torch's
    # sigmoid(-0) = 0.5; clamp's would be 1.
    return dispatch("minimum", input, input.new_zeros(())) - (-input.abs()).exp().log1p()


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|). ``F.softsign(x)``."""
    _check("softsign", input)
    return input / (input.abs() + 1.0)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x). ``F.tanhshrink(x)``."""
    _check("tanhshrink", input)
    return input - input.tanh()


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """softmax(-x) along ``dim``. ``F.softmin(x, dim=1)``."""
    _check("softmin", input)
    from ember.nn.functional import softmax
    return softmax(-input, dim, dtype=dtype)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b) where a, b are the two halves of ``input`` along ``dim``.

    >>> F.glu(ember.zeros(2, 4)).shape
    ember.Size([2, 2])
    """
    _check("glu", input)
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} "
                           f"is size {n}")
    a, b = input.split(n // 2, dim)
    return a * b.sigmoid()


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x if x >= 0 else weight * x, with one weight or one per channel (dim 1).

    >>> F.prelu(ember.tensor([-1.0, 2.0]), ember.tensor([0.25]))
    tensor([-0.2500,  2.0000])
    """
    _check("prelu", input)
    if isinstance(weight, Tensor) and weight.dtype is not input.dtype:
        raise OpError("prelu", f"prelu: Type promoting not supported. Got {input.dtype.name} "
                      f"and {weight.dtype.name}", (input, weight))
    if weight.numel() != 1:
        channels = input.shape[1] if input.ndim >= 2 else input.shape[0]
        if weight.ndim != 1 or weight.shape[0] != channels:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                               f"parameter numbers = {weight.numel()} and channel size = "
                               f"{channels}.")
        shape = [1] * input.ndim
        shape[1 if input.ndim >= 2 else 0] = channels
        weight = weight.reshape(tuple(shape))
    elif weight.ndim > 0 and input.ndim > 0:
        weight = weight.reshape(())
    return where(input > 0, input, weight * input)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x if x > threshold else value. ``F.threshold(x, 0.1, 20.0)``."""
    _check("threshold", input)
    out = where(input > threshold, input, value).to(input.dtype)
    return _inplace(input, out, inplace)


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> Tensor:
    """A sample of the Gumbel-softmax distribution over ``dim``: softmax of
    ``(logits + g) / tau`` with ``g`` Gumbel(0, 1) noise (ember's RNG). ``hard=True``
    gives one-hot vectors whose gradient is the soft sample's (straight-through), as
    PyTorch's. ``eps`` is unused, as in PyTorch.

    >>> F.gumbel_softmax(ember.zeros(2, 3), hard=True).sum(1)
    tensor([1., 1.])
    """
    _check("gumbel_softmax", logits)
    gumbels = -logits.new_empty(logits.shape).exponential_().log()
    y_soft = ((logits + gumbels) / tau).softmax(dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = logits.new_zeros(logits.shape).scatter_(dim, index, 1.0)
    return y_hard - y_soft.detach() + y_soft
