"""Tensor methods that compute values: arithmetic, elementwise functions, reductions
and matrix products (``TensorMath``, a base of ``Tensor``).

Primitives go through ``dispatch``; the rest (mean, var, softmax, clamp, min, ...) is
composed from primitives, so autograd and tracing get it for free.
"""
from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING

from ember import autograd, dtypes
from ember import tensor as _tensor  # Tensor itself (this module is a base of it)
from ember.dispatch import dispatch
from ember.errors import OpError, shape_str
from ember.tensor_common import _dims, values_indices
from ember.tensor_create import _as_tensor_like, arange, where

if TYPE_CHECKING:
    from ember.tensor import Tensor


class TensorMath:
    """Arithmetic, elementwise functions, reductions and matmul of ``Tensor``."""

    __slots__ = ()

    # ---- arithmetic (elementwise primitives) ------------------------------------------
    def __add__(self, o):
        return dispatch("add", self, o)

    def __radd__(self, o):
        return dispatch("add", o, self)

    def __sub__(self, o):
        return dispatch("sub", self, o)

    def __rsub__(self, o):
        return dispatch("sub", o, self)

    def __mul__(self, o):
        return dispatch("mul", self, o)

    def __rmul__(self, o):
        return dispatch("mul", o, self)

    def __truediv__(self, o):
        return dispatch("div", self, o)

    def __rtruediv__(self, o):
        return dispatch("div", o, self)

    def __pow__(self, o):
        return dispatch("pow", self, o)

    def __rpow__(self, o):
        return dispatch("pow", o, self)

    def __floordiv__(self, o):
        return dispatch("floor_divide", self, o)

    def __rfloordiv__(self, o):
        return dispatch("floor_divide", o, self)

    def __mod__(self, o):
        return dispatch("remainder", self, o)

    def __rmod__(self, o):
        return dispatch("remainder", o, self)

    def __matmul__(self, o):
        return self.matmul(o)

    def __rmatmul__(self, o):
        return _as_tensor_like(o, self).matmul(self)

    def __neg__(self):
        return dispatch("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return dispatch("abs", self)

    def __lt__(self, o):
        return dispatch("lt", self, o)

    def __le__(self, o):
        return dispatch("le", self, o)

    def __gt__(self, o):
        return dispatch("gt", self, o)

    def __ge__(self, o):
        return dispatch("ge", self, o)

    def __eq__(self, o):  # type: ignore[override]
        return dispatch("eq", self, o)

    def __ne__(self, o):  # type: ignore[override]
        return dispatch("ne", self, o)

    def __and__(self, o):
        return dispatch("logical_and", self, o)

    def __or__(self, o):
        return dispatch("logical_or", self, o)

    def __invert__(self):
        if self.dtype is not dtypes.bool_:
            raise OpError("invert", "only bool tensors are supported", (self,))
        return dispatch("logical_not", self)

    def add(self, o, alpha=1):
        return self + (o * alpha if alpha != 1 else o)

    def sub(self, o, alpha=1):
        return self - (o * alpha if alpha != 1 else o)

    def mul(self, o):
        return self * o

    def div(self, o):
        return self / o

    def pow(self, o):
        return self ** o

    def neg(self):
        return -self

    def floor_divide(self, o):
        return self // o

    def remainder(self, o):
        return self % o

    def fmod(self, o):
        """Remainder with the dividend's sign (C's fmod), unlike ``%``."""
        r = self % o
        return where((r != 0) & ((r < 0) != (self < 0)), r - o, r)

    def floor(self):
        return dispatch("floor", self)

    def ceil(self):
        return -dispatch("floor", -self)

    def trunc(self):
        return where(self < 0, self.ceil(), self.floor())

    def exp(self):
        return dispatch("exp", self)

    def log(self):
        return dispatch("log", self)

    def sqrt(self):
        return dispatch("sqrt", self)

    def rsqrt(self):
        return 1 / dispatch("sqrt", self)

    def abs(self):
        return dispatch("abs", self)

    def sign(self):
        return dispatch("sign", self)

    def sin(self):
        return dispatch("sin", self)

    def cos(self):
        return dispatch("cos", self)

    def tanh(self):
        return dispatch("tanh", self)

    def sigmoid(self):
        return dispatch("sigmoid", self)

    def erf(self):
        return dispatch("erf", self)

    def relu(self):
        return dispatch("relu", self)

    def square(self):
        return self * self

    def reciprocal(self):
        return 1 / self

    def log1p(self):
        return (self + 1).log()

    def maximum(self, o):
        return dispatch("maximum", self, o)

    def minimum(self, o):
        return dispatch("minimum", self, o)

    def lt(self, o):
        return self < o

    def le(self, o):
        return self <= o

    def gt(self, o):
        return self > o

    def ge(self, o):
        return self >= o

    def eq(self, o):
        return self == o

    def ne(self, o):
        return self != o

    def logical_not(self):
        return dispatch("logical_not", self)

    def clamp(self, min=None, max=None) -> Tensor:
        """Limit values to [min, max]; the gradient passes where min <= x <= max."""
        if min is None and max is None:
            raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
        out = self
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out

    clip = clamp

    def where(self, condition: Tensor, other) -> Tensor:
        """PyTorch's ``x.where(cond, y)``: x where cond holds, else y."""
        return where(condition, self, other)

    def masked_fill(self, mask: Tensor, value) -> Tensor:
        return where(mask, _as_tensor_like(value, self).to(self.dtype), self)

    # ---- reductions -------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        x = self
        if dtype is not None:
            x = x.to(dtype)
        elif x.dtype.category < 2:  # PyTorch sums integers and bools as int64
            x = x.to(dtypes.int64)
        return dispatch("sum", x, axes=_dims(dim, x.ndim, "sum"), keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            raise OpError("mean", "could not infer output dtype. Input dtype must be either a "
                          f"floating point or complex dtype. Got: {x.dtype.name}", (x,))
        axes = _dims(dim, x.ndim, "mean")
        n = math.prod(x.shape[a] for a in axes)
        return x.sum(axes, keepdim) / n if n else x.sum(axes, keepdim) * float("nan")

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        axes = _dims(dim, self.ndim, "var")
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        n = math.prod(self.shape[a] for a in axes)
        centered = self - self.mean(axes, keepdim=True)
        return (centered * centered).sum(axes, keepdim) / builtins.max(n - correction, 0)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        if self.numel() == 0:
            raise OpError("amax", "Expected reduction dim to be specified for input.numel() == 0",
                          (self,))
        return dispatch("amax", self, axes=_dims(dim, self.ndim, "amax"), keepdim=keepdim)

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        if self.dtype is dtypes.bool_:
            return ~((~self).amax(dim, keepdim))
        return -((-self).amax(dim, keepdim))

    def max(self, dim=None, keepdim: bool = False):
        """``x.max()``; ``x.max(dim)`` gives (values, indices); ``x.max(other)`` is maximum."""
        if isinstance(dim, _tensor.Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        return self._pick_along(dim, keepdim, self.argmax(dim, keepdim=True), True)

    def min(self, dim=None, keepdim: bool = False):
        if isinstance(dim, _tensor.Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        return self._pick_along(dim, keepdim, self.argmin(dim, keepdim=True), False)

    def _pick_along(self, dim, keepdim: bool, idx: Tensor, largest: bool):
        """(values, indices) of max/min over ``dim``. As in PyTorch, the gradient goes to
        the one element the index picks, not shared among ties as amax does."""
        if self.ndim == 0:
            _dims(dim, 0, "max")  # still checks the dim
            return values_indices(self, idx)
        d = _dims(dim, self.ndim, "max")[0]
        if self.requires_grad and autograd.is_grad_enabled():
            key = tuple(idx if i == d else arange(s, device=self.device).reshape(
                tuple(s if j == i else 1 for j in range(self.ndim)))
                for i, s in enumerate(self.shape))
            values = self[key]
        else:  # no gradient to route: the reduction is cheaper than a gather
            values = self.amax(d, keepdim=True) if largest else self.amin(d, keepdim=True)
        if not keepdim:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return values_indices(values, idx)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        axes = None if dim is None else _dims(dim, self.ndim, "argmax")  # () for 0-dim
        axis = axes[0] if axes else None
        return dispatch("argmax", self, axis=axis, keepdim=keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        x = self.logical_not() if self.dtype is dtypes.bool_ else -self
        return x.argmax(dim, keepdim)

    def all(self) -> Tensor:
        return self.bool().logical_not().sum() == 0

    def any(self) -> Tensor:
        return self.bool().sum() > 0

    def softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        e = (x - x.amax(dim, keepdim=True).detach()).exp()
        return e / e.sum(dim, keepdim=True)

    def log_softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        shifted = x - x.amax(dim, keepdim=True).detach()
        return shifted - shifted.exp().sum(dim, keepdim=True).log()

    def logsumexp(self, dim, keepdim: bool = False) -> Tensor:
        m = self.amax(dim, keepdim=True).detach()
        out = (self - m).exp().sum(dim, keepdim=True).log() + m
        return out if keepdim else out.squeeze(dim)

    def norm(self, p=2, dim=None, keepdim: bool = False) -> Tensor:
        if p == 2:
            return (self * self).sum(dim, keepdim).sqrt()
        return (self.abs() ** p).sum(dim, keepdim) ** (1.0 / p)

    # ---- matmul -----------------------------------------------------------------------
    def matmul(self, other):
        """PyTorch's matmul, including 1-D operands (treated as vectors)."""
        other = _as_tensor_like(other, self)
        if self.ndim == 0 or other.ndim == 0:
            raise OpError("matmul", "both arguments to matmul need to be at least 1D",
                          (self, other))
        a = self.unsqueeze(0) if self.ndim == 1 else self
        b = other.unsqueeze(-1) if other.ndim == 1 else other
        if a.shape[-1] != b.shape[-2]:
            raise OpError("matmul", f"shapes {shape_str(self)} and {shape_str(other)} cannot be "
                          f"multiplied ({a.shape[-1]} != {b.shape[-2]})", (self, other))
        if a.dtype is not b.dtype:
            dt = dtypes.promote(a.dtype, b.dtype)
            a, b = a.to(dt), b.to(dt)
        out = dispatch("matmul", a, b)
        if other.ndim == 1:
            out = out.squeeze(-1)
        if self.ndim == 1:  # vector @ vector is 0-dim: the -2 axis moved to -1 above
            out = out.squeeze(-2 if other.ndim > 1 else -1)
        return out

    mm = matmul
    bmm = matmul

    def dot(self, other: Tensor) -> Tensor:
        return (self * other).sum()
