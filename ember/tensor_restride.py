"""In-place shape changes: ``squeeze_``, ``unsqueeze_``, ``t_``, ``transpose_``,
``swapaxes_`` and ``swapdims_`` make the tensor object itself show its memory with
another shape, as torch's do (same memory and version counter, a new autograd history:
the view op's).

How ember keeps a view consistent: a view records how it was made from its base, as
steps replayed on the base (for a new history after an in-place write). A base that
changes shape in place would make its older views' steps wrong, so those views get the
inverse step (back to the old shape) put in front of theirs. They are found with the
garbage collector's referrers, only when the tensor is referenced from more places than
the call itself (a fresh result being reshaped is not) and its version counter, which
views share, is held by something else too.

Under ``ember.compile``: a tensor made during the call is followed (the tracer sees the
view op). A tensor from outside the call (argument, parameter, captured) changing shape
makes that call run eagerly: a replay would rebind it without its view bookkeeping.

>>> x = ember.zeros(2, 1)
>>> x.squeeze_().shape
ember.Size([2])
"""
from __future__ import annotations

import gc
import sys
from typing import Callable

from ember import autograd, dispatch as _dispatch_mod
from ember.ops.registry import OPS
from ember.tensor import Tensor
from ember.tensor_common import STRUCTURE_VERSION, _dims
from ember.tensor_index import _check_view_write

# References to the tensor while ``_restride`` runs, besides the caller's own one: the
# method's ``self``, ``_restride``'s argument and getrefcount's argument.
_OWN_REFS = 3


def _restride(self: Tensor, make: Callable[[Tensor], Tensor], inverse: tuple, op: str,
              own: int = _OWN_REFS) -> Tensor:
    """Make ``self`` the view ``make(self)``; ``inverse`` is the (OpDef, attrs) step that
    takes the new shape back to the old one (for the views made before); ``own`` counts
    the references of the calls in between (``refs`` above it: someone else holds it)."""
    grad = autograd.is_grad_enabled()
    base = self._base
    if grad:
        if base is None and self._node is None and self._rg:
            raise RuntimeError(f"{op}: a leaf Variable that requires grad is being used in "
                               "an in-place operation.")
        if base is not None and self.requires_grad:
            _check_view_write(self, base, op)
    tracer = _dispatch_mod.tracer
    if tracer is not None:
        tracer.node_of(self)
        if id(self) in tracer.input_of:
            tracer.fail(f"{op}() changes the shape of a tensor from outside the call in "
                        "place")
    refs = sys.getrefcount(self)
    # Views share their base's version counter (Tensor._view_of): when nothing else holds
    # it, no view exists and the garbage collector's scan (~10 ms on a large heap) is
    # skipped. (Other holders, such as autograd's saved outputs, only cost the scan.)
    shared = sys.getrefcount(self._vc) > 2
    # The view is made of a stand-in with the old shape: autograd keeps the inputs of
    # the view's node, and their shapes must stay as they were.
    old = Tensor._wrap(self._data, self._rg)
    old._node, old._vc = self._node, self._vc
    if base is not None:
        old._base, old._view, old._vver, old._vmeta = base, self._view, self._vver, \
            self._vmeta
    if tracer is not None:
        tracer.alias(old, self)
    view = make(old)
    if view is old:
        return self
    if view._base is None:   # (squeeze, unsqueeze and transpose always give views)
        raise RuntimeError(f"{op}: the result is not a view of the tensor")
    if base is None and refs > own + 1 and shared:
        _prepend_to_views(self, inverse)
    self._data = view._data
    if base is not None:   # still a view of its base, one step further
        self._view, self._vver, self._vmeta = view._view, view._vver, view._vmeta
        self._rg = view._rg
    self._node = view._node if view._node is not None else self._node
    self._vc[0] += 1   # as torch: a shape change counts as a write
    STRUCTURE_VERSION[0] += 1   # compiled calls guard shapes: make them look again
    if tracer is not None and _dispatch_mod.tracer is tracer:
        tracer.alias(self, view)
    return self


def _prepend_to_views(t: Tensor, inverse: tuple) -> None:
    for r in gc.get_referrers(t):
        if isinstance(r, Tensor) and r._base is t:
            r._view = (inverse,) + r._view


def _back_to(shape: tuple) -> tuple:
    return (OPS["reshape"], {"shape": tuple(shape)})


def _squeeze_(self: Tensor, dim=None) -> Tensor:
    """Removes the dims of size 1 (those of ``dim`` only, when given) in place."""
    old = tuple(self.shape)
    return _restride(self, lambda t: t.squeeze() if dim is None else t.squeeze(dim),
                     _back_to(old), "squeeze_")


def _unsqueeze_(self: Tensor, dim: int) -> Tensor:
    """Inserts a dim of size 1 at ``dim`` in place."""
    old = tuple(self.shape)
    return _restride(self, lambda t: t.unsqueeze(dim), _back_to(old), "unsqueeze_")


def _transpose_(self: Tensor, dim0: int, dim1: int, _own: int = _OWN_REFS) -> Tensor:
    """Swaps dims ``dim0`` and ``dim1`` in place."""
    if self.ndim == 0:
        _dims(dim0, 0, "transpose_"), _dims(dim1, 0, "transpose_")
        return self
    d0, d1 = _dims(dim0, self.ndim, "transpose_")[0], _dims(dim1, self.ndim, "transpose_")[0]
    if d0 == d1:
        return self
    perm = list(range(self.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _restride(self, lambda t: t.transpose(d0, d1),
                     (OPS["permute"], {"dims": tuple(perm)}), "transpose_", _own)


def _t_(self: Tensor) -> Tensor:
    """Transposes a matrix in place (0-D and 1-D tensors stay as they are)."""
    if self.ndim > 2:
        raise RuntimeError(f"t_() expects a tensor with <= 2 dimensions, but self is "
                           f"{self.ndim}D")
    return self if self.ndim < 2 else _transpose_(self, 0, 1, _OWN_REFS + 1)


Tensor.squeeze_ = _squeeze_
Tensor.unsqueeze_ = _unsqueeze_
Tensor.transpose_ = _transpose_
Tensor.swapaxes_ = _transpose_
Tensor.swapdims_ = _transpose_
Tensor.t_ = _t_
