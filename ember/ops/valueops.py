"""Ops whose results are read off the values with NumPy: unique, bincount and the
prod/amax/amin forms of scatter_reduce. unique and bincount have value-dependent sizes,
so a compiled call runs them eagerly (``data_dependent_shape``), as ``nonzero``.
"""
from __future__ import annotations

import numpy as np

from ember.ops.registry import INDEX, defop


def _host(a) -> np.ndarray:
    """A NumPy copy of a CuPy array (these ops read values on the host), or ``a``."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _unique(xp, a, part, dim):
    a = _host(a)
    if dim is None:
        vals, inv, counts = np.unique(a.reshape(-1), return_inverse=True, return_counts=True)
        inv = inv.reshape(a.shape)
    else:
        vals, inv, counts = np.unique(a, axis=dim, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
    out = {"values": vals, "inverse": inv.astype(np.int64),
           "counts": counts.astype(np.int64)}[part]
    return xp.asarray(out)


def _bincount(xp, a, *w, minlength):
    a = _host(a)
    weights = _host(w[0]) if w else None
    out = np.bincount(a, weights=weights, minlength=minlength)
    return xp.asarray(out if w else out.astype(np.int64))


def _scatter_reduce(xp, a, index, src, dim, reduce, include_self):
    out = _host(a).copy()
    index, src = _host(index), _host(src)
    ufunc = {"prod": np.multiply, "amax": np.maximum, "amin": np.minimum}[reduce]
    grid = list(np.indices(index.shape, sparse=True))
    grid[dim] = index
    pos = tuple(np.broadcast_arrays(*grid))
    vals = src[tuple(slice(0, s) for s in index.shape)]
    if not include_self:
        # Rows that some index reaches start from the reduction's identity instead.
        ident = {"prod": 1, "amax": -np.inf, "amin": np.inf}[reduce]
        if out.dtype.kind in "iub" and reduce != "prod":
            info = np.iinfo(out.dtype)
            ident = info.min if reduce == "amax" else info.max
        out[pos] = ident
    ufunc.at(out, pos, vals)
    return xp.asarray(out)


defop("unique", INDEX, _unique,
      data_dependent_shape=lambda *a: True)
defop("bincount", INDEX, _bincount, data_dependent_shape=lambda *a: True)
defop("scatter_reduce_np", INDEX, _scatter_reduce)
