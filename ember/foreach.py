"""torch's ``_foreach_*`` functions: one op over lists of tensors, as optimizers and EMA
helpers call them (timm's ``ModelEmaV3``: ``_foreach_lerp_``; lion-pytorch's foreach
step). Each is the Tensor method applied per item, giving a tuple; the ``_``-suffixed
forms update the first list in place and return it. The second operand may be a list of
tensors, a list of numbers, one number or one tensor (broadcast to every item).

>>> import ember
>>> xs = [ember.ones(2), ember.zeros(3)]
>>> _ = ember._foreach_mul_(xs, 2.0)
>>> [x.tolist() for x in xs]
[[2.0, 2.0], [0.0, 0.0, 0.0]]
"""
from __future__ import annotations

from typing import Any, Callable

from ember.tensor import Tensor

UNARY = ("abs", "acos", "asin", "atan", "ceil", "cos", "cosh", "erf", "erfc", "exp", "expm1",
         "floor", "frac", "lgamma", "log", "log10", "log1p", "log2", "neg", "reciprocal",
         "round", "sigmoid", "sign", "sin", "sinh", "sqrt", "tan", "tanh", "trunc")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "clamp_min", "clamp_max")
TERNARY = ("addcmul", "addcdiv", "lerp")


def _items(other: Any, n: int, name: str) -> list:
    """``other`` as one operand per item."""
    if isinstance(other, (list, tuple)):
        if len(other) != n:
            raise RuntimeError(f"_foreach_{name}: Tensor lists must have the same number of "
                               f"tensors, got {n} and {len(other)}")
        return list(other)
    return [other] * n


def _method(t: Tensor, name: str, inplace: bool) -> Callable:
    if inplace and name in ("maximum", "minimum"):   # (no in-place methods: copy back)
        return lambda o: t.copy_(getattr(t, name)(o))
    return getattr(t, name + "_" if inplace else name)


def _unary(name: str, inplace: bool) -> Callable:
    def fn(self: list):
        out = [_method(t, name, inplace)() for t in self]
        return self if inplace else tuple(out)
    fn.__name__ = f"_foreach_{name}{'_' if inplace else ''}"
    return fn


def _binary(name: str, inplace: bool) -> Callable:
    def fn(self: list, other, *, alpha=None):
        kw = {} if alpha is None else {"alpha": alpha}
        out = [_method(t, name, inplace)(o, **kw)
               for t, o in zip(self, _items(other, len(self), name))]
        return self if inplace else tuple(out)
    fn.__name__ = f"_foreach_{name}{'_' if inplace else ''}"
    return fn


def _ternary(name: str, inplace: bool) -> Callable:
    def fn(self: list, tensor1, tensor2=None, value=1, *, weight=None):
        n = len(self)
        if name == "lerp":   # lerp(self, end, weight): weight a number, a tensor or lists
            w = _items(tensor2 if weight is None else weight, n, name)
            out = [_method(t, name, inplace)(e, wi)
                   for t, e, wi in zip(self, _items(tensor1, n, name), w)]
        else:
            out = [_method(t, name, inplace)(a, b, value=v) for t, a, b, v in zip(
                self, _items(tensor1, n, name), _items(tensor2, n, name), _items(value, n, name))]
        return self if inplace else tuple(out)
    fn.__name__ = f"_foreach_{name}{'_' if inplace else ''}"
    return fn


def _foreach_zero_(self: list) -> list:
    for t in self:
        t.zero_()
    return self


def _foreach_copy_(self: list, src: list, non_blocking: bool = False) -> list:
    for t, s in zip(self, _items(src, len(self), "copy_")):
        t.copy_(s)
    return self


def _foreach_norm(self: list, ord: float = 2, dtype=None) -> tuple:
    from ember.linalg import vector_norm
    return tuple(vector_norm(t, ord, dtype=dtype) for t in self)


def _build() -> dict:
    made = {"_foreach_zero_": _foreach_zero_, "_foreach_copy_": _foreach_copy_,
            "_foreach_norm": _foreach_norm}
    for names, make in ((UNARY, _unary), (BINARY, _binary), (TERNARY, _ternary)):
        for name in names:
            for inplace in (False, True):
                fn = make(name, inplace)
                made[fn.__name__] = fn
    return made


FUNCTIONS = _build()
globals().update(FUNCTIONS)
__all__ = sorted(FUNCTIONS)
