"""``ember.special``: torch.special's functions.

The ones NumPy lacks (lgamma, digamma, polygamma, erfc, erfinv, ndtri, log_ndtr, the
Bessel functions) are primitives in ``special_ops.py``; the rest are compositions of
ember ops, so autograd and ``ember.compile`` work for all of them. The top-level
``ember.lgamma``, ``ember.digamma``, ... and the Tensor methods are attached here too.

>>> ember.special.expit(ember.tensor([0.]))
tensor([0.5])
>>> ember.special.gammaln(ember.tensor([4.]))
tensor([1.7918])
"""
from __future__ import annotations

import math

from ember import dtypes
from ember import special_ops  # noqa: F401  (registers the primitives)
from ember.dispatch import dispatch
from ember.tensor import Tensor, tensor, where

__all__ = ["erf", "erfc", "erfinv", "expit", "logit", "xlogy", "xlog1py", "gammaln",
           "digamma", "psi", "polygamma", "multigammaln", "i0", "i0e", "i1", "i1e", "ndtr",
           "ndtri", "log_ndtr", "sinc", "entr", "logsumexp", "softmax", "log_softmax",
           "round", "exp2", "expm1", "log1p"]


def _float(x) -> Tensor:
    """A tensor of a floating dtype (integers and bools become the default float)."""
    if not isinstance(x, Tensor):
        x = tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return x
    return x.to(dtypes.get_default_dtype())


def _pair(a, b) -> tuple[Tensor, Tensor]:
    """Two operands, one of which may be a Python number, as float tensors."""
    if not isinstance(a, Tensor):
        b = _float(b)
        a = tensor(a, dtype=b.dtype, device=b.device)
    elif not isinstance(b, Tensor):
        a = _float(a)
        b = tensor(b, dtype=a.dtype, device=a.device)
    dt = dtypes.promote_types(a.dtype, b.dtype)
    if not dt.is_floating_point:
        dt = dtypes.get_default_dtype()
    return a.to(dt), b.to(dt)


# ---- error functions and the normal distribution ----------------------------------------

def erf(input: Tensor) -> Tensor:
    """The error function."""
    return dispatch("erf", input)


def erfc(input: Tensor) -> Tensor:
    """1 - erf(x), exact in the tail (erfc(10) = 2.1e-45, not 0).

    >>> ember.special.erfc(ember.tensor([0.]))
    tensor([1.])
    """
    return dispatch("erfc", input)


def erfinv(input: Tensor) -> Tensor:
    """The inverse of erf on (-1, 1); +-inf at +-1, nan outside.

    >>> ember.special.erfinv(ember.tensor([0.]))
    tensor([0.])
    """
    return dispatch("erfinv", input)


def ndtr(input: Tensor) -> Tensor:
    """The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2.

    >>> ember.special.ndtr(ember.tensor([0.]))
    tensor([0.5])
    """
    return erfc(_float(input) * -math.sqrt(0.5)) * 0.5


def ndtri(input: Tensor) -> Tensor:
    """The inverse of ndtr (the normal quantile function).

    >>> ember.special.ndtri(ember.tensor([0.5]))
    tensor([0.])
    """
    return dispatch("ndtri", input)


def log_ndtr(input: Tensor) -> Tensor:
    """log Phi(x), finite far into the left tail (log_ndtr(-40) = -804.6).

    >>> ember.special.log_ndtr(ember.tensor([0.]))
    tensor([-0.6931])
    """
    return dispatch("log_ndtr", input)


# ---- logistic ---------------------------------------------------------------------------

def expit(input: Tensor) -> Tensor:
    """The logistic sigmoid."""
    return _float(input).sigmoid()


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """log(p / (1 - p)); with ``eps``, p is first clamped to [eps, 1 - eps].

    >>> ember.special.logit(ember.tensor([0.5]))
    tensor([0.])
    """
    x = _float(input)
    if eps is not None:
        x = x.clamp(eps, 1 - eps)
    return (x / (1 - x)).log()


# ---- logs that are 0 where their factor is ----------------------------------------------

def xlogy(input, other) -> Tensor:
    """x * log(y), taken as 0 where x == 0 (unless y is nan).

    >>> ember.special.xlogy(ember.tensor([0., 2.]), ember.tensor([0., 1.]))
    tensor([0., 0.])
    """
    x, y = _pair(input, other)
    # Where x == 0 and log y is not finite, log y is replaced by 0: the product is then 0
    # and its gradient in x too; elsewhere the gradient in x is log y (torch's formula).
    skip = (x == 0) & ((y <= 0) | (y == math.inf))
    return x * where(skip, 1.0, y).log()


def xlog1py(input, other) -> Tensor:
    """x * log1p(y), taken as 0 where x == 0 (unless y is nan).

    >>> ember.special.xlog1py(ember.tensor([0.]), ember.tensor([-1.]))
    tensor([0.])
    """
    x, y = _pair(input, other)
    skip = (x == 0) & ((y <= -1) | (y == math.inf))
    return x * where(skip, 0.0, y).log1p()


def entr(input: Tensor) -> Tensor:
    """-x log x for x > 0, 0 at 0, -inf for x < 0.

    >>> ember.special.entr(ember.tensor([0., 1.]))
    tensor([ 0., -0.])
    """
    x = _float(input)
    pos = x > 0
    val = -x * where(pos, x, 1.0).log()
    return where(pos, val, where(x == 0, 0.0, where(x.isnan(), x, -math.inf)))


def sinc(input: Tensor) -> Tensor:
    """sin(pi x) / (pi x), 1 at 0.

    >>> ember.special.sinc(ember.tensor([0., 0.5]))
    tensor([1.0000, 0.6366])
    """
    x = _float(input)
    zero = x == 0
    px = where(zero, 1.0, x) * math.pi
    return where(zero, 1.0, px.sin() / px)


# ---- gamma family -----------------------------------------------------------------------

def gammaln(input: Tensor) -> Tensor:
    """log |Gamma(x)| (torch.lgamma)."""
    return dispatch("lgamma", input)


def digamma(input: Tensor) -> Tensor:
    """d/dx log Gamma(x); -inf at 0, nan at the negative integers."""
    return dispatch("digamma", input)


psi = digamma


def polygamma(n: int, input: Tensor) -> Tensor:
    """The n-th derivative of digamma.

    >>> ember.special.polygamma(1, ember.tensor([1.]))
    tensor([1.6449])
    """
    if int(n) != n or n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    return dispatch("polygamma", input, n=int(n))


def multigammaln(input: Tensor, p: int) -> Tensor:
    """The multivariate log-gamma function of dimension ``p``.

    >>> ember.special.multigammaln(ember.tensor([2.]), 1)
    tensor([0.])
    """
    x = _float(input)
    if p < 1:
        raise RuntimeError("p has to be greater than or equal to 1")
    if bool((x <= (p - 1) / 2).any()):
        raise RuntimeError("All elements must be greater than (p-1)/2")
    out = gammaln(x)
    for j in range(1, p):
        out = out + gammaln(x - j / 2)
    return out + p * (p - 1) / 4 * math.log(math.pi)


# ---- Bessel functions -------------------------------------------------------------------

def i0(input: Tensor) -> Tensor:
    """The modified Bessel function of the first kind, order 0."""
    return dispatch("i0", input)


def i0e(input: Tensor) -> Tensor:
    """i0(x) exp(-|x|)."""
    return dispatch("i0e", input)


def i1(input: Tensor) -> Tensor:
    """The modified Bessel function of the first kind, order 1."""
    return dispatch("i1", input)


def i1e(input: Tensor) -> Tensor:
    """i1(x) exp(-|x|)."""
    return dispatch("i1e", input)


# ---- the ones torch.special re-exports ------------------------------------------------------

def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``dim``."""
    return input.logsumexp(dim, keepdim)


def softmax(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Softmax along ``dim``."""
    return input.softmax(dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """log(softmax(x)) along ``dim``."""
    return input.log_softmax(dim, dtype=dtype)


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even."""
    return input.round(decimals=decimals)


def exp2(input: Tensor) -> Tensor:
    """2 ** x, exact at the integers.

    >>> ember.special.exp2(ember.tensor([3.]))
    tensor([8.])
    """
    x = _float(input)
    return tensor(2.0, dtype=x.dtype, device=x.device) ** x


def expm1(input: Tensor) -> Tensor:
    """exp(x) - 1, exact for small x."""
    return dispatch("expm1", input)


def log1p(input: Tensor) -> Tensor:
    """log(1 + x), exact for small x."""
    return dispatch("log1p", input)


# ---- top-level functions and Tensor methods, as torch has them ----------------------------

def _attach() -> None:
    top = {"lgamma": gammaln, "digamma": digamma, "polygamma": polygamma, "erfc": erfc,
           "erfinv": erfinv, "i0": i0, "sinc": sinc, "xlogy": xlogy, "logit": logit,
           "exp2": exp2, "mvlgamma": multigammaln}
    for name, fn in top.items():
        if not hasattr(Tensor, name):
            if name == "polygamma":
                def method(self, n, _fn=fn):
                    return _fn(n, self)
            elif name == "mvlgamma":
                def method(self, p, _fn=fn):
                    return _fn(self, p)
            else:
                def method(self, *args, _fn=fn, **kwargs):
                    return _fn(self, *args, **kwargs)
            method.__name__ = method.__qualname__ = name
            method.__doc__ = fn.__doc__
            setattr(Tensor, name, method)
    # In-place forms (x.lgamma_(), ...): computed out of place, written into x.
    for name in ("lgamma", "digamma", "polygamma", "erfc", "erfinv", "i0", "sinc", "xlogy",
                 "logit", "exp2", "mvlgamma"):
        if not hasattr(Tensor, name + "_"):
            def inplace(self, *args, _name=name, **kwargs):
                others = tuple(a for a in args if isinstance(a, Tensor))
                return self._inplace(lambda s: getattr(s, _name)(*args, **kwargs), others,
                                     _name + "_")
            inplace.__name__ = inplace.__qualname__ = name + "_"
            inplace.__doc__ = f"``x.{name}_(...)`` writes ``x.{name}(...)`` into x."
            setattr(Tensor, name + "_", inplace)
    _TOP.update(top)


_TOP: dict = {}
_attach()
