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
from ember.amp import state as _amp
from ember.dispatch import binary, dispatch, iadd
from ember.errors import OpError, OpTypeError, shape_str
from ember.tensor_common import _dims, values_indices
from ember.tensor_create import _as_tensor_like, arange, where

if TYPE_CHECKING:
    from ember.tensor import Tensor


class TensorMath:
    """Arithmetic, elementwise functions, reductions and matmul of ``Tensor``."""

    __slots__ = ()

    # ---- arithmetic (elementwise primitives) ------------------------------------------
    def __add__(self, o):
        return binary("add", self, o)

    def __radd__(self, o):
        return binary("add", self, o, True)

    def __sub__(self, o):
        return binary("sub", self, o)

    def __rsub__(self, o):
        return binary("sub", self, o, True)

    def __mul__(self, o):
        return binary("mul", self, o)

    def __rmul__(self, o):
        return binary("mul", self, o, True)

    def __truediv__(self, o):
        return binary("div", self, o)

    def __rtruediv__(self, o):
        return binary("div", self, o, True)

    def __pow__(self, o):
        if type(o) is int and o < 0 and not self.is_floating_point() and not self.is_complex():
            # (before the exponent is cast to the tensor's dtype: uint8 ** -2 was ** 254)
            raise OpError("pow", "Integers to negative integer powers are not allowed.",
                          (self,))
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

    def __iadd__(self, o):
        # ``add_`` unless the common case (dispatch.iadd) wrote it in one NumPy call
        done = iadd(self, o)
        return done if done is not None else self.add_(o)

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
        if o is None:   # torch: ``state == None`` is False (RWKV's ``if state == None``)
            return False
        return dispatch("eq", self, o)

    def __ne__(self, o):  # type: ignore[override]
        if o is None:
            return True
        return dispatch("ne", self, o)

    # & | ^ ~ are bitwise on integers and logical on bools (the same thing there, and the
    # logical ops are the ones compiled kernels fuse); floats raise, as in PyTorch.
    def __and__(self, o):
        return _bitwise("and", self, o)

    def __rand__(self, o):
        return _bitwise("and", o, self)

    def __or__(self, o):
        return _bitwise("or", self, o)

    def __ror__(self, o):
        return _bitwise("or", o, self)

    def __xor__(self, o):
        return _bitwise("xor", self, o)

    def __rxor__(self, o):
        return _bitwise("xor", o, self)

    def __lshift__(self, o):
        return dispatch("bitwise_left_shift", self, o)

    def __rlshift__(self, o):
        return dispatch("bitwise_left_shift", o, self)

    def __rshift__(self, o):
        return dispatch("bitwise_right_shift", self, o)

    def __rrshift__(self, o):
        return dispatch("bitwise_right_shift", o, self)

    def bitwise_left_shift(self, other):
        """``self << other``: 0 where shifted by the width or more, as PyTorch.

        >>> ember.tensor([3, -8]).bitwise_left_shift(2)
        tensor([ 12, -32])
        """
        return self << other

    def bitwise_right_shift(self, other):
        return self >> other

    def __invert__(self):
        if self.is_floating_point():
            raise OpTypeError("invert", "~ (operator.invert) is only implemented on integer and "
                              "Boolean-type tensors", (self,))
        return self.bitwise_not()

    def bitwise_and(self, other):
        return _bitwise("and", self, other)

    def bitwise_or(self, other):
        return _bitwise("or", self, other)

    def bitwise_xor(self, other):
        return _bitwise("xor", self, other)

    def bitwise_not(self):
        """``~x``: bitwise on integers, logical on bools.

        >>> ~ember.tensor([0, 5])
        tensor([-1, -6])
        """
        if self.dtype is dtypes.bool_:
            return dispatch("logical_not", self)
        return dispatch("bitwise_not", self)

    def logical_and(self, other):
        return dispatch("logical_and", self, other)

    def logical_or(self, other):
        return dispatch("logical_or", self, other)

    def logical_xor(self, other):
        return dispatch("logical_xor", self, other)

    def add(self, o, alpha=1):
        return self + (o * alpha if alpha != 1 else o)

    def sub(self, o, alpha=1):
        return self - (o * alpha if alpha != 1 else o)

    def mul(self, o):
        return self * o

    def div(self, o, *, rounding_mode: str | None = None):
        """``self / o``; ``rounding_mode="floor"`` or ``"trunc"`` rounds the quotient.

        >>> ember.tensor([-7, 7]).div(2, rounding_mode="trunc")
        tensor([-3,  3])
        """
        if rounding_mode is None:
            return self / o
        from ember.functions_math import divide
        return divide(self, o, rounding_mode=rounding_mode)

    def pow(self, o):
        return self ** o

    def neg(self):
        return -self

    def floor_divide(self, o):
        return self // o

    def remainder(self, o):
        return self % o

    def fmod(self, o):
        """Remainder with the dividend's sign (C's fmod), unlike ``%``.

        >>> ember.tensor([-3., 3.]).fmod(2)
        tensor([-1.,  1.])
        """
        return dispatch("fmod", self, o)

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
        if self.dtype is dtypes.bool_:   # torch's square is pow(x, 2): bools become int64
            self = self.to(dtypes.int64)
        return self * self

    def reciprocal(self):
        return 1 / self

    def log1p(self):
        """log(1 + x), exact for small x (``log1p(1e-8)`` is 1e-8, not 0)."""
        return dispatch("log1p", self)

    def expm1(self):
        """exp(x) - 1, exact for small x."""
        return dispatch("expm1", self)

    def round(self, decimals: int = 0):
        """Round half to even, to ``decimals`` places (as torch.round).

        >>> ember.tensor([0.5, 1.5, 1.234]).round(decimals=0)
        tensor([0., 2., 1.])
        """
        if decimals and self.dtype.itemsize == 2 and self.is_floating_point():
            # x * 10**decimals in float32, as torch: 1234.5678 * 100 overflowed float16
            return dispatch("round", self.float(), decimals=int(decimals)).to(self.dtype)
        return dispatch("round", self, decimals=int(decimals))

    def isnan(self) -> Tensor:
        return self != self

    def isinf(self) -> Tensor:
        if not self.is_floating_point():
            return _tensor.zeros_like(self, dtype=dtypes.bool_)
        return self.abs() == math.inf

    def isfinite(self) -> Tensor:
        if not self.is_floating_point():
            return _tensor.ones_like(self, dtype=dtypes.bool_)
        return (self == self) & (self.abs() != math.inf)

    def nan_to_num(self, nan: float = 0.0, posinf: float | None = None,
                   neginf: float | None = None) -> Tensor:
        """NaN to ``nan``, +inf to ``posinf``, -inf to ``neginf`` (by default the dtype's
        largest and lowest finite values); the gradient passes where ``self`` is finite.

        >>> ember.tensor([float("nan"), float("inf"), -1.0]).nan_to_num()
        tensor([ 0.0000e+00,  3.4028e+38, -1.0000e+00])
        """
        if not self.is_floating_point():
            return self.clone()
        info = dtypes.finfo(self.dtype)
        posinf = info.max if posinf is None else posinf
        neginf = info.min if neginf is None else neginf
        out = where(self != self, nan, self)
        out = where(self == math.inf, posinf, out)
        return where(self == -math.inf, neginf, out)

    def isclose(self, other, rtol: float = 1e-05, atol: float = 1e-08,
                equal_nan: bool = False) -> Tensor:
        """Elementwise ``|self - other| <= atol + rtol * |other|`` (equal infinities are
        close; NaNs are close to each other only with ``equal_nan``).

        >>> ember.tensor([1.0, 2.0]).isclose(ember.tensor([1.0 + 1e-9, 2.1]))
        tensor([ True, False])
        """
        other = _as_tensor_like(other, self)
        if self.dtype is not other.dtype:
            raise OpError("isclose", f"{self.dtype.name} did not match {other.dtype.name}",
                          (self, other))
        if rtol < 0 or atol < 0:
            raise OpError("isclose", f"rtol and atol must be non-negative, got rtol={rtol}, "
                          f"atol={atol}", (self, other))
        close = self == other
        if self.dtype is dtypes.bool_:
            return close
        if equal_nan and self.is_floating_point():
            close = close | (self.isnan() & other.isnan())
        # Only finite pairs are compared by distance (inf - inf would be nan).
        both = self.isfinite() & other.isfinite()
        a, b = where(both, self, 0), where(both, other, 0)
        return close | (both & ((a - b).abs() <= (b * rtol).abs() + atol))

    def allclose(self, other, rtol: float = 1e-05, atol: float = 1e-08,
                 equal_nan: bool = False) -> bool:
        return bool(self.isclose(other, rtol, atol, equal_nan).all())

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
        if isinstance(value, int) and self.dtype.np.kind in "iu":   # (a symbolic int too:
            from ember.dispatch import check_fits                     # its range is guarded)
            check_fits("masked_fill", value, self.dtype)
        # (isinstance, not type(): a symbolic number, tracer/symbolic.py, takes this path)
        if isinstance(value, (bool, int, float)) and self.dtype.np.kind == "f":
            # In this dtype at once, as torch: through the default dtype, a float64
            # tensor's 0.1 became 0.10000000149 and -finfo(float64).max became -inf
            # (x-transformers masks float64 attention so), and too large a value for
            # this dtype raises instead of becoming inf.
            if math.isfinite(value) and abs(value) > dtypes.finfo(self.dtype).max:
                raise RuntimeError(f"masked_fill: value cannot be converted to type "
                                   f"{self.dtype.name} without overflow")
            from ember.dispatch import constant
            return where(mask, constant(value, self.dtype, self.device), self)
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
        if x.dtype.category < 2:
            raise OpError("mean", "could not infer output dtype. Input dtype must be either a "
                          f"floating point or complex dtype. Got: {x.dtype.name}", (x,))
        if x.dtype.itemsize == 2 and x.is_floating_point():
            # in float32, rounded once, as torch: the float16 sum of 70000 ones was inf
            return x.float().mean(dim, keepdim).to(x.dtype)
        axes = _dims(dim, x.ndim, "mean")
        n = math.prod(x.shape[a] for a in axes)
        return x.sum(axes, keepdim) / n if n else x.sum(axes, keepdim) * float("nan")

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        if self.dtype.itemsize == 2 and self.is_floating_point():   # (as mean)
            return self.float().var(dim, unbiased, keepdim, correction).to(self.dtype)
        axes = _dims(dim, self.ndim, "var")
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        n = math.prod(self.shape[a] for a in axes)
        centered = self - self.mean(axes, keepdim=True)
        return (centered * centered).sum(axes, keepdim) / builtins.max(n - correction, 0)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> Tensor:
        if self.dtype.itemsize == 2 and self.is_floating_point():   # (as mean)
            return self.float().std(dim, unbiased, keepdim, correction).to(self.dtype)
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        axes = _dims(dim, self.ndim, "amax")
        if self.numel() == 0:   # torch: fine over non-empty dims of an empty tensor
            if dim is None:
                raise OpError("amax", "Expected reduction dim to be specified for "
                              "input.numel() == 0", (self,))
            for a in axes:
                if self.shape[a] == 0:
                    raise OpError("amax", f"Expected reduction dim {a} to have non-zero size",
                                  (self,))
        return dispatch("amax", self, axes=axes, keepdim=keepdim)

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        if not self.dtype.is_floating_point and not self.dtype.is_complex:
            # ~x reverses the order of bools and ints without overflow (-x wraps uint8
            # and INT_MIN: min of uint8 [5, 0, 3] was 3)
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
        x = -self if self.dtype.is_floating_point or self.dtype.is_complex else ~self
        return x.argmax(dim, keepdim)

    def all(self, dim=None, keepdim: bool = False) -> Tensor:
        return self.bool().logical_not().sum(dim, keepdim) == 0

    def any(self, dim=None, keepdim: bool = False) -> Tensor:
        return self.bool().sum(dim, keepdim) > 0

    def cumsum(self, dim: int, *, dtype=None) -> Tensor:
        """Running sums along ``dim`` (integers and bools sum as int64).

        >>> ember.tensor([1, 2, 3]).cumsum(0)
        tensor([1, 3, 6])
        """
        return _scan(self, "cumsum", dim, dtype)

    def cumprod(self, dim: int, *, dtype=None) -> Tensor:
        """Running products along ``dim``."""
        return _scan(self, "cumprod", dim, dtype)

    def softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        if x.dtype.itemsize == 2:   # float16/bfloat16: in float32, rounded once, as torch
            return x.float().softmax(dim).to(x.dtype)
        if x.numel() == 0:   # (empty rows: nothing to normalize, as torch)
            return x * 1
        e = (x - x.amax(dim, keepdim=True).detach()).exp()
        # times the sum's reciprocal, as torch's kernels: one division a row, not one an
        # element, in eager and in compiled code alike
        return e * e.sum(dim, keepdim=True).reciprocal()

    def log_softmax(self, dim: int, dtype=None) -> Tensor:
        x = self.to(dtype) if dtype is not None else self
        if not x.is_floating_point():
            x = x.float()
        if x.dtype.itemsize == 2:
            return x.float().log_softmax(dim).to(x.dtype)
        if x.numel() == 0:
            return x * 1
        shifted = x - x.amax(dim, keepdim=True).detach()
        return shifted - shifted.exp().sum(dim, keepdim=True).log()

    def logsumexp(self, dim=None, keepdim: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``dim``, without overflow; rows of -inf give -inf.

        >>> ember.tensor([0.0, 0.0]).logsumexp(0)
        tensor(0.6931)
        """
        x = self if self.is_floating_point() else self.to(dtypes.get_default_dtype())
        axes = _dims(dim, x.ndim, "logsumexp")
        if x.numel() == 0:
            return x.exp().sum(axes, keepdim).log()
        m = x.amax(axes, keepdim=True).detach()
        m = where(m.isinf(), 0.0, m)   # all -inf (or an inf): shift by 0, not by inf
        out = (x - m).exp().sum(axes, keepdim=True).log() + m
        return out if keepdim else out.squeeze(axes)

    def norm(self, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        """torch.norm: the vector p-norm over ``dim`` (all elements when None); "fro" is
        the 2-norm, and over two dims the Frobenius norm.

        >>> ember.tensor([3.0, 4.0]).norm()
        tensor(5.)
        """
        from ember import linalg
        if dtype is None and self.dtype.itemsize == 2 and self.is_floating_point():
            return linalg.legacy_norm(self.float(), p, dim, keepdim, None).to(self.dtype)
        return linalg.legacy_norm(self, p, dim, keepdim, dtype)

    def inverse(self) -> Tensor:
        """torch's ``Tensor.inverse``: ``ember.linalg.inv(self)``."""
        from ember import linalg
        return linalg.inv(self)

    def det(self) -> Tensor:
        from ember import linalg
        return linalg.det(self)

    def logdet(self) -> Tensor:
        from ember import linalg
        return linalg.logdet(self)

    def slogdet(self):
        from ember import linalg
        return linalg.slogdet(self)

    def cholesky(self, upper: bool = False) -> Tensor:
        from ember import linalg
        return linalg.cholesky(self, upper=upper)

    def pinverse(self, rcond: float = 1e-15) -> Tensor:
        from ember import linalg
        return linalg.pinv(self, rtol=rcond)

    def matrix_power(self, n: int) -> Tensor:
        from ember import linalg
        return linalg.matrix_power(self, n)

    @property
    def real(self) -> Tensor:
        """The real part (a copy, not PyTorch's view); the tensor itself when real."""
        from ember import complex_numbers
        return complex_numbers.real(self)

    @property
    def imag(self) -> Tensor:
        from ember import complex_numbers
        return complex_numbers.imag(self)

    def conj(self) -> Tensor:
        from ember import complex_numbers
        return complex_numbers.conj(self)

    def angle(self) -> Tensor:
        from ember import complex_numbers
        return complex_numbers.angle(self)

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
        if _amp.state.modes:   # inside ember.amp.autocast: a lower precision
            a, b = _amp.cast_operands(a, b)
        if a.dtype is not b.dtype:   # PyTorch refuses; NumPy would promote silently
            raise OpError("matmul", f"expected m1 and m2 to have the same dtype, but got: "
                          f"{a.dtype.name} != {b.dtype.name}", (self, other))
        out = dispatch("matmul", a, b)
        if other.ndim == 1:
            out = out.squeeze(-1)
        if self.ndim == 1:  # vector @ vector is 0-dim: the -2 axis moved to -1 above
            out = out.squeeze(-2 if other.ndim > 1 else -1)
        return out

    def mm(self, mat2) -> Tensor:
        """The product of two matrices (2-D only; ``matmul`` broadcasts)."""
        if _amp.state.modes and isinstance(mat2, _tensor.Tensor):  # under autocast
            self, mat2 = _amp.cast_operands(self, mat2)
        _check_matrices("mm", self, mat2, 2, "self", "mat2")
        if self.shape[1] != mat2.shape[0]:
            raise OpError("mm", f"mat1 and mat2 shapes cannot be multiplied ({self.shape[0]}x"
                          f"{self.shape[1]} and {mat2.shape[0]}x{mat2.shape[1]})", (self, mat2))
        return dispatch("matmul", self, mat2)

    def bmm(self, mat2) -> Tensor:
        """Batched matrix product of two 3-D tensors with the same batch size."""
        if _amp.state.modes and isinstance(mat2, _tensor.Tensor):  # under autocast
            self, mat2 = _amp.cast_operands(self, mat2)
        _check_matrices("bmm", self, mat2, 3, "batch1", "batch2")
        b, n, k = self.shape
        if mat2.shape[0] != b or mat2.shape[1] != k:
            raise OpError("bmm", f"Expected size for first two dimensions of batch2 tensor to be: "
                          f"[{b}, {k}] but got: [{mat2.shape[0]}, {mat2.shape[1]}].", (self, mat2))
        return dispatch("matmul", self, mat2)

    def addmm(self, mat1, mat2, *, beta=1, alpha=1) -> Tensor:
        """``beta * self + alpha * (mat1 @ mat2)`` (self broadcasts; beta=0 ignores it)."""
        if _amp.state.modes:  # autocast runs addmm, self included, in its dtype
            self = _amp.cast_operands(self)[0]
        return _scaled_sum(self, mat1.mm(mat2), beta, alpha, "addmm")

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
        """``beta * self + alpha * bmm(batch1, batch2)``."""
        if _amp.state.modes:
            self = _amp.cast_operands(self)[0]
        return _scaled_sum(self, batch1.bmm(batch2), beta, alpha, "baddbmm")

    def outer(self, vec2) -> Tensor:
        """The outer product of two vectors.

        >>> ember.tensor([1, 2]).outer(ember.tensor([1, 10]))
        tensor([[ 1, 10],
                [ 2, 20]])
        """
        for name, v in (("self", self), ("vec2", vec2)):
            if not isinstance(v, _tensor.Tensor):
                raise TypeError(f"outer(): argument 'vec2' (position 1) must be Tensor, not "
                                f"{type(v).__name__}")
            if v.ndim != 1:
                raise OpError("outer", f"outer: Expected 1-D argument {name}, but got {v.ndim}-D",
                              (self, vec2))
        return self.unsqueeze(1) * vec2.unsqueeze(0)

    ger = outer

    def dot(self, other: Tensor) -> Tensor:
        if isinstance(other, _tensor.Tensor) and other.dtype is not self.dtype:
            raise OpError("dot", f"dot : expected both vectors to have same dtype, but found "
                          f"{self.dtype.name} and {other.dtype.name}", (self, other))
        return (self * other).sum()


def _bitwise(name: str, a, b):
    """a & b, a | b, a ^ b: logical where both are bool, else bitwise (integers only)."""
    if _is_bool(a) and _is_bool(b):
        return dispatch("logical_" + name, a, b)
    return dispatch("bitwise_" + name, a, b)


def _is_bool(v) -> bool:
    return isinstance(v, bool) or getattr(v, "dtype", None) is dtypes.bool_


def _check_matrices(op: str, a, b, nd: int, name_a: str, name_b: str) -> None:
    for name, v in ((name_a, a), (name_b, b)):
        if not isinstance(v, _tensor.Tensor):
            raise TypeError(f"{op}(): argument '{name}' must be Tensor, not {type(v).__name__}")
        if v.ndim != nd:
            what = "matrix" if nd == 2 else f"{nd}D tensor"
            raise OpError(op, f"{name} must be a {what}", (a, b))
    if a.dtype is not b.dtype:
        raise OpError(op, f"expected m1 and m2 to have the same dtype, but got: {a.dtype.name} "
                      f"!= {b.dtype.name}", (a, b))


def _scaled_sum(input, product, beta, alpha, op: str):
    """beta * input + alpha * product, as addmm/baddbmm: ``input`` broadcasts to the
    product's shape, and beta == 0 drops it (its NaNs too)."""
    try:
        shape = _tensor.broadcast_shapes(input.shape, product.shape)
    except RuntimeError:
        shape = None
    if shape != tuple(product.shape):
        raise OpError(op, f"the input of shape {shape_str(input)} can't be broadcast to the "
                      f"product's shape {shape_str(product)}", (input, product))
    out = product if alpha == 1 else product * alpha
    if beta == 0:
        return out
    return out + (input if beta == 1 else input * beta)


def _scan(x, op: str, dim, dtype):
    if dtype is not None:
        x = x.to(dtype)
    elif x.dtype.category < 2:   # as sum: integers and bools accumulate in int64
        x = x.to(dtypes.int64)
    d = _dims(dim, x.ndim, op)
    if x.ndim == 0:
        return dispatch(op, x.reshape(1), dim=0).reshape(())
    return dispatch(op, x, dim=d[0])
