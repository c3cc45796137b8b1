"""``torch.sparse``'s entry points, over dense storage.

ember has no sparse layout. A sparse COO tensor is made dense (duplicate entries summed,
as coalescing sums them), ``to_sparse`` copies, and the sparse products are dense
products with the same values. A program that builds a sparse matrix and multiplies by
it (a graph network's normalised adjacency) runs and gets torch's numbers, with the
memory of the dense matrix; ``is_sparse`` is False and ``layout`` is ``ember.strided``,
so nothing claims a sparse tensor, and the accessors of one (``indices()``,
``values()``, ``coalesce()``) are not there.

>>> a = ember.sparse_coo_tensor([[0, 1, 1], [2, 0, 0]], [3.0, 4.0, 5.0], (2, 3))
>>> a
tensor([[0., 0., 3.],
        [9., 0., 0.]])
>>> ember.spmm(a, ember.ones(3, 1)).flatten()
tensor([3., 9.])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ember import dtypes
from ember.tensor import Tensor, tensor, zeros

__all__ = ["mm", "addmm", "sum", "sparse_coo_tensor", "spmm", "strided", "sparse_coo",
           "FloatTensor", "DoubleTensor", "LongTensor"]


class layout:  # noqa: N801  (torch's class name)
    """A tensor layout (torch.layout): ``ember.strided`` is the only storage."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ember.{self.name}"


strided = layout("strided")
sparse_coo = layout("sparse_coo")


def sparse_coo_tensor(indices: Any, values: Any, size: Any = None, *, dtype: Any = None,
                      device: Any = None, pin_memory: bool = False,
                      requires_grad: bool = False, check_invariants: Any = None,
                      is_coalesced: Any = None) -> Tensor:
    """torch.sparse_coo_tensor as the dense tensor it stands for: ``values[k]`` at
    ``indices[:, k]``, repeated indices summed; differentiable in ``values``.

    >>> ember.sparse_coo_tensor([[0, 0]], [1.0, 2.0], (3,))
    tensor([3., 0., 0.])
    """
    idx = indices if isinstance(indices, Tensor) else tensor(np.asarray(indices))
    vals = values if isinstance(values, Tensor) else tensor(values)
    if idx.dtype.is_floating_point or idx.ndim != 2:
        raise RuntimeError(f"sparse_coo_tensor: indices must be an integer tensor of two "
                           f"dimensions [sparse dims, nnz], got {idx.dtype.name} of shape "
                           f"{list(idx.shape)}")
    nsparse, nnz = idx.shape
    if vals.ndim < 1 or vals.shape[0] != nnz:
        count = vals.shape[0] if vals.ndim else 0
        raise RuntimeError(f"sparse_coo_tensor: number of values {count} does not match the "
                           f"{nnz} indices")
    top = idx.max(1).values.tolist() if nnz else [-1] * nsparse
    if size is None:
        size = [v + 1 for v in top] + list(vals.shape[1:])
    size = tuple(int(s) for s in size)
    if len(size) != nsparse + vals.ndim - 1:
        raise RuntimeError(f"sparse_coo_tensor: number of dimensions must be sparse dims "
                           f"({nsparse}) + dense dims ({vals.ndim - 1}), but got {len(size)}")
    if nnz and (bool((idx < 0).any()) or any(m >= s for m, s in zip(top, size))):
        raise RuntimeError(f"sparse_coo_tensor: size {list(size)} is inconsistent with "
                           f"indices (an index is negative or past its dimension)")
    dtype = dtype or vals.dtype
    out = zeros(size, dtype=dtype, device=device or vals.device)
    if nnz:
        out = out.index_put(tuple(idx.to(dtypes.int64)), vals.to(dtype), accumulate=True)
    if requires_grad:
        out.requires_grad_(True)
    return out


def _legacy(name: str, dtype) -> type:
    """``torch.sparse.FloatTensor(indices, values, size)``, the old constructors (pygcn)."""
    def make(cls, indices, values, size=None, *, device=None):
        import warnings
        warnings.warn(f"torch.sparse.{name}(indices, values, shape) is deprecated. Please use "
                      "torch.sparse_coo_tensor(indices, values, shape, dtype=, device=).",
                      UserWarning, stacklevel=2)
        return sparse_coo_tensor(indices, values, size, dtype=dtype, device=device)
    return type(name, (), {"__new__": make, "__doc__": make.__doc__})


FloatTensor = _legacy("FloatTensor", dtypes.float32)
DoubleTensor = _legacy("DoubleTensor", dtypes.float64)
LongTensor = _legacy("LongTensor", dtypes.int64)


def mm(mat1: Tensor, mat2: Tensor) -> Tensor:
    """torch.sparse.mm: the product (dense here)."""
    return mat1.mm(mat2)


spmm = mm


def addmm(mat: Tensor, mat1: Tensor, mat2: Tensor, beta: float = 1.0,
          alpha: float = 1.0) -> Tensor:
    """torch.sparse.addmm: ``beta * mat + alpha * mat1 @ mat2``."""
    return mat.addmm(mat1, mat2, beta=beta, alpha=alpha)


def sum(input: Tensor, dim: Any = None, dtype: Any = None) -> Tensor:  # noqa: A001
    """torch.sparse.sum: the sum (every element, or over ``dim``)."""
    out = input.sum() if dim is None else input.sum(dim)
    return out if dtype is None else out.to(dtype)


def _to_sparse(self: Tensor, sparse_dim: Any = None, *, layout: Any = None,
               blocksize: Any = None, dense_dim: Any = None) -> Tensor:
    """A copy (storage stays dense: see ``ember.sparse``)."""
    return self.clone()


def _to_dense(self: Tensor, dtype: Any = None, *, masked_grad: Any = None) -> Tensor:
    """The tensor itself (already dense), or a copy in ``dtype``."""
    return self if dtype is None else self.to(dtype)


Tensor.to_sparse = _to_sparse
Tensor.to_sparse_coo = _to_sparse
Tensor.to_dense = _to_dense
Tensor.is_sparse = property(lambda self: False)
Tensor.layout = property(lambda self: strided)
