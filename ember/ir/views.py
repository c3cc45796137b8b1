"""Views of a storage as pure ops: how an in-place update through an alias enters the IR.

The tracer records a write through any alias of a storage (``x[1:].add_(5)``,
``p.data.add_(...)``, ``x.t().mul_(2)``) as a pure op producing the storage's new value,
and later reads of any alias as views of that value (the analogue of torch's
functionalization). So passes never see a mutation; a write-back at the end of the call
puts the final value into the caller's memory.

A view's place in its storage is an affine map of element indices: ``shape``,
``strides`` and ``offset`` count elements of the base value flattened in C order.

- ``strided_view(base)``: the view's value, e.g. ``x[1:, ::2]`` of a ``[3, 4]`` ``x`` is
  ``strided_view(x, shape=(2, 2), strides=(4, 2), offset=4)``.
- ``strided_scatter(base, value)``: ``base`` with that view replaced by ``value``
  (same dtype, the view's shape); never overlapping (writes through an expanded view
  are refused at trace time).
"""
from __future__ import annotations

import numpy as np

from ember.dispatch import dispatch
from ember.ops.registry import INDEX, MOVEMENT, OPS, defop
from ember.devices import add_at, array_module, device_of_array


def view_of(xp, base, shape, strides, offset):
    """The array ``strided_view`` computes: a view of ``base`` where NumPy can flatten it
    without a copy (then the flat array may itself be strided), else of a flat copy."""
    flat = base.reshape(-1)   # a view where the layout allows: then strided itself
    unit = flat.strides[0] if flat.size > 1 else flat.itemsize
    if not shape or 0 not in shape:
        flat = flat[offset:]
    return xp.lib.stride_tricks.as_strided(flat, tuple(shape), tuple(s * unit for s in strides))


def _scatter(xp, base, value, shape, strides, offset, accumulate=False):
    out = xp.array(base, copy=True, order="C")
    if accumulate:   # the gradient of a read through an overlapping (expanded) view
        index = view_of(np, np.arange(out.size), shape, strides, offset)
        flat = out.reshape(-1)
        value = xp.broadcast_to(value, tuple(shape)).astype(out.dtype, copy=False)
        add_at(xp, flat, xp.asarray(index), value)
        return out
    view_of(xp, out, shape, strides, offset)[...] = value
    return out


def _view_vjp(g, out, base, shape, strides, offset):
    zeros = base.new_zeros(base.shape)
    return (dispatch("strided_scatter", zeros, g, shape=shape, strides=strides, offset=offset,
                     accumulate=True),)


def _scatter_vjp(g, out, base, value, shape, strides, offset, accumulate=False):
    gb = None
    if base.requires_grad:
        gb = g if accumulate else dispatch(
            "strided_scatter", g, g.new_zeros(tuple(shape)), shape=shape, strides=strides,
            offset=offset)
    gv = None
    if value.requires_grad:
        gv = dispatch("contiguous", dispatch("strided_view", g, shape=shape, strides=strides,
                                             offset=offset))
    return gb, gv


if "strided_view" not in OPS:
    defop("strided_view", MOVEMENT, view_of, _view_vjp)
    defop("strided_scatter", INDEX, _scatter, _scatter_vjp)


# ---- where a view sits in its storage ----------------------------------------------------

IDENTITY = "identity"
_PAINT_LIMIT = 1 << 22   # elements: mapping a strided base's memory costs O(its extent)


def address(a) -> int:
    """The address of ``a``'s first element (NumPy or CuPy)."""
    if type(a) is np.ndarray:
        return a.__array_interface__["data"][0]
    return a.data.ptr


def root(a):
    """The object owning ``a``'s memory: every view of one storage has the same root."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def layout_in(a, base):
    """Where array ``a`` sits in array ``base`` (which shares its memory): IDENTITY,
    ``(shape, strides, offset)`` as ``strided_view`` takes them, or None if some element
    of ``a`` is not an element of ``base``, or the map is not affine."""
    if a.dtype != base.dtype:
        return None
    pa, pb = address(a), address(base)
    if pa == pb and a.shape == base.shape and (a.strides == base.strides or a.size <= 1):
        return IDENTITY
    it = base.itemsize
    off = pa - pb
    if off % it or any(s % it for s in a.strides):
        return None
    off //= it
    strides = tuple(s // it for s in a.strides)
    if a.size == 0:
        return (a.shape, tuple(0 for _ in strides), 0)
    if base.flags.c_contiguous:
        lo = off + sum((n - 1) * s for n, s in zip(a.shape, strides) if s < 0)
        hi = off + sum((n - 1) * s for n, s in zip(a.shape, strides) if s > 0)
        if lo < 0 or hi >= base.size:
            return None
        return (a.shape, strides, off)
    return _painted_layout(a.shape, strides, off, base)


def _painted_layout(shape, strides, off, base):
    """``layout_in`` for a base that is not C-contiguous: paint each of its elements'
    memory with its logical index, then read that memory through the view."""
    it = base.itemsize
    if base.size == 0 or any(s % it or s < 0 for s in base.strides):
        return None
    bst = tuple(s // it for s in base.strides)
    extent = 1 + sum((n - 1) * s for n, s in zip(base.shape, bst))
    if extent > _PAINT_LIMIT:
        return None
    mem = np.full(extent, -1, np.int64)
    as_strided = np.lib.stride_tricks.as_strided
    as_strided(mem, base.shape, tuple(s * 8 for s in bst))[...] = \
        np.arange(base.size).reshape(base.shape)
    if int((mem >= 0).sum()) != base.size:   # the base overlaps itself (expanded)
        return None
    lo = off + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = off + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    if lo < 0 or hi >= extent:
        return None
    idx = as_strided(mem[off:], shape, tuple(s * 8 for s in strides))
    if (idx < 0).any():
        return None
    start = int(idx[(0,) * len(shape)])
    lstr = tuple(int(idx[tuple(1 if j == k else 0 for j in range(len(shape)))]) - start
                 if n > 1 else 0 for k, n in enumerate(shape))
    expect = start + sum(np.arange(n).reshape((-1,) + (1,) * (len(shape) - k - 1)) * s
                         for k, (n, s) in enumerate(zip(shape, lstr)))
    if not np.array_equal(idx, np.broadcast_to(expect, shape)):
        return None
    return (tuple(shape), lstr, start)


def overlaps(shape, strides) -> bool:
    """True unless the view's elements are provably distinct memory."""
    if 0 in shape:
        return False
    dims = sorted((abs(s), n) for n, s in zip(shape, strides) if n > 1)
    reach = 0
    for s, n in dims:
        if s <= reach:
            return True
        reach += (n - 1) * s
    return False


def byte_view(a, shape, strides, offset):
    """The view of ``a``'s memory at byte ``offset`` from its first element, with byte
    ``strides`` (a result that is a view of a caller's tensor, made again at each call)."""
    as_strided = (np if type(a) is np.ndarray else _module(a)).lib.stride_tricks.as_strided
    it = a.itemsize
    start = as_strided(a, (offset // it + 1,), (it,))[offset // it:]
    return as_strided(start, tuple(shape), tuple(strides))


def _module(a):
    return array_module(device_of_array(a))
