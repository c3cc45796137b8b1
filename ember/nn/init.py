"""ember.nn.init: in-place weight initializations with PyTorch's names and formulas.

Each function fills its tensor under ``no_grad`` (a parameter is a leaf that requires
grad, which may not be changed in place while recording) and returns it.

>>> w = ember.empty(3, 4)
>>> nn.init.xavier_uniform_(w).shape
ember.Size([3, 4])
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ember.autograd import no_grad
from ember.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "zeros_", "ones_",
           "constant_", "eye_", "dirac_", "kaiming_uniform_", "kaiming_normal_",
           "xavier_uniform_", "xavier_normal_", "orthogonal_", "sparse_",
           "_calculate_fan_in_and_fan_out"]


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (``calculate_gain("relu")`` is sqrt(2)).

    >>> nn.init.calculate_gain("tanh")
    1.6666666666666667
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight [out, in, *kernel]: in*kernel and out*kernel.

    >>> nn.init._calculate_fan_in_and_fan_out(ember.empty(6, 3, 5, 5))
    (75, 150)
    """
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         "2 dimensions")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _gen(generator) -> dict:
    """``generator=`` for the random fills (None: the default generator)."""
    return {} if generator is None else {"generator": generator}


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with U(a, b). ``nn.init.uniform_(w, -0.1, 0.1)``."""
    with no_grad():
        return tensor.uniform_(a, b, **_gen(generator))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with N(mean, std^2). ``nn.init.normal_(w, 0.0, 0.02)``."""
    with no_grad():
        return tensor.normal_(mean, std, **_gen(generator))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None) -> Tensor:
    """Fill with N(mean, std^2) truncated to [a, b] (inverse-CDF sampling, as PyTorch:
    uniform values mapped through erfinv, so every value is inside the bounds).

    >>> bool(nn.init.trunc_normal_(ember.empty(1000), a=-0.5, b=0.5).abs().max() <= 0.5)
    True
    """
    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    with no_grad():
        tensor.uniform_(2 * lo - 1, 2 * hi - 1, **_gen(generator))
        u = tensor.detach().cpu().numpy().astype(np.float64)
        values = np.clip(_erfinv(u) * std * math.sqrt(2.0) + mean, a, b)
        return _write(tensor, values)


def _erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function in float64: Giles' approximation refined by two Newton steps
    on ember's ``erf`` (ember has no erfinv op, and NumPy none at all)."""
    from ember.tensor import tensor as make
    with np.errstate(divide="ignore", invalid="ignore"):
        w = -np.log((1.0 - y) * (1.0 + y))
        small = w - 2.5
        big = np.sqrt(np.maximum(w, 5.0)) - 3.0
        p_small = np.full_like(y, 2.81022636e-08)
        for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                  -0.00125372503, -0.00417768164, 0.246640727, 1.50140941):
            p_small = c + p_small * small
        p_big = np.full_like(y, -0.000200214257)
        for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                  -0.0076224613, 0.00943887047, 1.00167406, 2.83297682):
            p_big = c + p_big * big
        x = np.where(w < 5.0, p_small, p_big) * y
        for _ in range(2):
            finite = np.isfinite(x)
            err = make(np.where(finite, x, 0.0)).erf().numpy() - y
            step = err / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
            x = np.where(finite & np.isfinite(step), x - step, x)
    return x


def _write(tensor: Tensor, values: np.ndarray) -> Tensor:
    """Copy host values into ``tensor`` (any device, its dtype) in place."""
    from ember.tensor import tensor as make
    tensor.copy_(make(values, dtype=tensor.dtype, device=tensor.device))
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``. ``nn.init.constant_(b, 0.1)``."""
    with no_grad():
        return tensor.fill_(val)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity. ``nn.init.eye_(ember.empty(3, 5))``."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    with no_grad():
        return _write(tensor, np.eye(*tensor.shape))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill a 3/4/5-D convolution weight with the Dirac delta (an identity convolution,
    per group). ``nn.init.dirac_(conv.weight)``."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    sizes = tensor.shape
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    per_group = sizes[0] // groups
    values = np.zeros(tuple(sizes))
    centre = tuple(k // 2 for k in sizes[2:])
    for g in range(groups):
        for d in range(min(per_group, sizes[1])):
            values[(g * per_group + d, d) + centre] = 1
    with no_grad():
        return _write(tensor, values)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Fill with a (semi-)orthogonal matrix (QR of a normal sample, signs fixed so the
    result is uniformly distributed), reshaped to the tensor's shape.

    >>> w = nn.init.orthogonal_(ember.empty(4, 4))
    >>> bool(((w @ w.T) - ember.eye(4)).abs().max() < 1e-5)
    True
    """
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with no_grad():
        from ember.tensor import empty
        sample = empty(rows, cols).normal_(0.0, 1.0, **_gen(generator)).numpy()
        flat = sample.astype(np.float64)
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return _write(tensor, (q * gain).reshape(tuple(tensor.shape)))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator=None) -> Tensor:
    """Fill a 2-D tensor with N(0, std^2) values, then zero a ``sparsity`` fraction of each
    column. ``nn.init.sparse_(w, sparsity=0.1)``."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    zeros = int(math.ceil(sparsity * rows))
    with no_grad():
        tensor.normal_(0.0, std, **_gen(generator))
        if zeros:
            from ember.tensor import rand
            values = tensor.detach().cpu().numpy().copy()
            order = np.argsort(rand(rows, cols, **_gen(generator)).numpy(), axis=0)
            for c in range(cols):
                values[order[:zeros, c], c] = 0
            _write(tensor, values)
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0. ``nn.init.zeros_(layer.bias)``."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1. ``nn.init.ones_(norm.weight)``."""
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """He initialization: U(-b, b) with b = gain * sqrt(3 / fan).

    >>> nn.init.kaiming_uniform_(ember.empty(4, 8), a=math.sqrt(5)).abs().max() <= 0.5
    tensor(True)
    """
    if 0 in tensor.shape:   # (nn.Linear(0, n): torch warns and leaves it)
        warnings.warn("Initializing zero-element tensors is a no-op")
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """He initialization: N(0, std^2) with std = gain / sqrt(fan). ``kaiming_normal_(w)``."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op")
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot initialization: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot initialization: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


# ---- PyTorch's private helpers some programs call, and its deprecated spellings ----------

def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    """fan_in or fan_out of a weight (``mode``)."""
    return _fan(tensor, mode.lower())


def _no_grad_uniform_(tensor: Tensor, a: float, b: float, generator=None) -> Tensor:
    return uniform_(tensor, a, b, generator)


def _no_grad_normal_(tensor: Tensor, mean: float, std: float, generator=None) -> Tensor:
    return normal_(tensor, mean, std, generator)


def _no_grad_trunc_normal_(tensor: Tensor, mean: float, std: float, a: float, b: float,
                           generator=None) -> Tensor:
    return trunc_normal_(tensor, mean, std, a, b, generator)


def _no_grad_fill_(tensor: Tensor, val: float) -> Tensor:
    return constant_(tensor, val)


def _no_grad_zero_(tensor: Tensor) -> Tensor:
    return zeros_(tensor)


def _deprecated(fn):
    old = fn.__name__[:-1]

    def deprecated(*args, **kwargs):
        import warnings
        warnings.warn(f"`nn.init.{old}` is now deprecated in favor of `nn.init.{fn.__name__}`.",
                      FutureWarning, stacklevel=2)
        return fn(*args, **kwargs)
    deprecated.__name__ = deprecated.__qualname__ = old
    deprecated.__doc__ = f"Deprecated: use ``{fn.__name__}``."
    return deprecated


uniform = _deprecated(uniform_)
normal = _deprecated(normal_)
constant = _deprecated(constant_)
xavier_uniform = _deprecated(xavier_uniform_)
xavier_normal = _deprecated(xavier_normal_)
kaiming_uniform = _deprecated(kaiming_uniform_)
kaiming_normal = _deprecated(kaiming_normal_)
orthogonal = _deprecated(orthogonal_)
sparse = _deprecated(sparse_)
eye = _deprecated(eye_)
dirac = _deprecated(dirac_)
