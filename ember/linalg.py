"""``ember.linalg``: norms (PyTorch's ``torch.linalg`` names and rules).

Norms are composed from registry ops, so they trace, run on CUDA and have gradients;
the 2-norm's gradient at zero is zero, as PyTorch's (not 0/0).

>>> ember.linalg.vector_norm(ember.tensor([3.0, 4.0]))
tensor(5.)
"""
from __future__ import annotations

import math

from ember import dtypes
from ember.dispatch import dispatch
from ember.errors import OpError
from ember.tensor import Tensor, _dims

__all__ = ["vector_norm", "matrix_norm", "norm"]


def vector_norm(x: Tensor, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The ``ord``-norm of ``x`` over ``dim`` (every element when None): ``inf`` is the
    largest magnitude, ``-inf`` the smallest, 0 counts the nonzero elements.

    >>> ember.linalg.vector_norm(ember.tensor([[1.0, -2.0]]), ord=1, dim=1)
    tensor([3.])
    """
    _check_float(x, "linalg.vector_norm", dtype)
    if dtype is not None:
        x = x.to(dtype)
    axes = _dims(dim, x.ndim, "linalg.vector_norm")
    if isinstance(ord, str):
        raise OpError("linalg.vector_norm", f"linalg.vector_norm: ord must be a number, got "
                      f"{ord!r}", (x,))
    if ord == math.inf:
        return x.abs().amax(axes, keepdim)
    if ord == -math.inf:
        return x.abs().amin(axes, keepdim)
    if ord == 0:
        return (x != 0).to(x.dtype).sum(axes, keepdim)
    if ord == 1:
        return x.abs().sum(axes, keepdim)
    if ord == 2:
        return _root((x * x).sum(axes, keepdim), 2)
    return _root((x.abs() ** ord).sum(axes, keepdim), ord)


def matrix_norm(A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False, *,
                dtype=None) -> Tensor:
    """The matrix norm of the last two dims (or ``dim``): 'fro', or the largest (``inf``,
    1) or smallest (``-inf``, -1) absolute row or column sum; 'nuc' (the sum of the
    singular values), 2 (the largest) or -2 (the smallest)."""
    _check_float(A, "linalg.matrix_norm", dtype)
    if A.ndim < 2:
        raise OpError("linalg.matrix_norm", "linalg.matrix_norm: The input tensor A must have "
                      "at least 2 dimensions.", (A,))
    if dtype is not None:
        A = A.to(dtype)
    d0, d1 = (_dims(d, A.ndim, "linalg.matrix_norm")[0] for d in dim)
    if d0 == d1:
        raise OpError("linalg.matrix_norm", "linalg.matrix_norm: dims must be different", (A,))
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):   # from the singular values of the (d0, d1) matrices
        from ember.linalg_decomp import svdvals
        s = svdvals(A.movedim((d0, d1), (-2, -1)))
        out = s.sum(-1) if ord == "nuc" else s.amax(-1) if ord == 2 else s.amin(-1)
        if keepdim:
            for d in sorted((d0, d1)):
                out = out.unsqueeze(d)
        return out
    if ord in (math.inf, -math.inf):   # over rows: the sum along the columns first
        summed, picked = d1, d0
    elif ord in (1, -1):
        summed, picked = d0, d1
    else:
        raise OpError("linalg.matrix_norm", f"linalg.matrix_norm: Order {ord} not supported.",
                      (A,))
    sums = A.abs().sum(summed, keepdim=True)
    out = sums.amax(picked, keepdim=True) if ord > 0 else sums.amin(picked, keepdim=True)
    return out if keepdim else out.squeeze((d0, d1))


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """``vector_norm`` over an int ``dim`` (or everything, when ``ord`` and ``dim`` are
    None); ``matrix_norm`` over a pair of dims or of a 2-D tensor."""
    if isinstance(dim, int):
        dim = (dim,)
    if dim is None:
        if ord is None:
            return vector_norm(A, 2, None, keepdim, dtype=dtype)
        if A.ndim not in (1, 2):
            raise OpError("linalg.norm", "linalg.norm: If dim is not specified but ord is, the "
                          f"input must be 1D or 2D. Got {A.ndim}D.", (A,))
        dim = tuple(range(A.ndim))
    if len(dim) == 1:
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if len(dim) == 2:
        return matrix_norm(A, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
    raise OpError("linalg.norm", f"linalg.norm: If dim is specified, it must be of length 1 or "
                  f"2. Got {list(dim)}", (A,))


def legacy_norm(x: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """``torch.norm`` / ``Tensor.norm``: "fro" (the default) and numbers are vector norms
    over ``dim`` (all elements when None); "nuc" the nuclear norm of matrices."""
    if p == "nuc":
        return matrix_norm(x, "nuc", (-2, -1) if dim is None else dim, keepdim, dtype=dtype)
    if isinstance(p, str) and p != "fro":
        raise OpError("norm", f"norm: unsupported p {p!r}", (x,))
    if not x.is_floating_point() and dtype is None:
        raise OpError("norm", "norm(): input dtype should be either floating point or complex. "
                      f"Got {_torch_name(x.dtype)} instead.", (x,))
    return vector_norm(x, 2 if p == "fro" else p, dim, keepdim, dtype=dtype)


def _root(s: Tensor, p) -> Tensor:
    """s ** (1/p), whose gradient at s == 0 is taken as 0 (PyTorch's) instead of inf * 0."""
    zero = s == 0
    safe = dispatch("where", zero, 1.0, s)
    root = safe.sqrt() if p == 2 else safe ** (1.0 / p)
    return dispatch("where", zero, 0.0, root)


def _check_float(x: Tensor, op: str, dtype) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(x).__name__}")
    dt = dtypes.as_dtype(dtype) if dtype is not None else x.dtype
    if not dt.is_floating_point:
        raise OpError(op, f"{op}: Expected a floating point or complex tensor as input. Got "
                      f"{_torch_name(dt)}", (x,))


def _torch_name(dt) -> str:
    return {"int64": "Long", "int32": "Int", "bool": "Bool", "int16": "Short", "int8": "Char",
            "uint8": "Byte"}.get(dt.name, dt.name)


# Solves, inverses, determinants and decompositions live in their own module.
from ember.linalg_decomp import *  # noqa: E402,F401,F403
from ember.linalg_decomp import __all__ as _decomp_all  # noqa: E402

__all__ += _decomp_all

# LU, eig, LDL and the tensor solves (ember/linalg_more.py).
from ember.linalg_more import *  # noqa: E402,F401,F403
from ember.linalg_more import __all__ as _more_all  # noqa: E402

__all__ += _more_all
