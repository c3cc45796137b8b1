"""Python numbers given as arguments that change between calls: one entry for every value.

torch.compile's automatic dynamic for ints is the model. With ``dynamic=None`` (the
default), when a call differs from an earlier one only in the value of an ``int`` or a
``float`` passed as a top-level argument (a diffusion timestep, a position, a
temperature), that argument becomes *symbolic*: from then on every call hands it to the
compiled code as a 0-dim input (int64 or float64, which hold the Python number exactly),
so one entry serves every value instead of one entry, and one set of kernels, per value.
``dynamic=True`` does the same (the trace of the first value checks the symbolic one:
``same_path``); ``dynamic=False`` never makes a number symbolic.

Numbers turn symbolic in three steps, each falling back to one compile per value:

1. A missed call whose key differs from a traced one only in such numbers makes them
   candidates (``Symbols.learn``); that call is traced with the plain numbers while the
   code that runs is watched (``CodeWatch``): code outside ember, its dependencies and
   the standard library that calls the builtin ``type`` on a number (``type(t) is
   int``, which a stand-in fails) or on anything but a parameter keeps them per value.
2. From the next call on, the trace runs the function with a ``SymScalar`` standing for
   each. It records, as graph ops on the input, what it can compute exactly as Python
   does: ``+ - *`` with other numbers, ``//`` and ``%`` of an int by a constant, ``/``
   by a constant, ``-x``, ``abs(x)``; a tensor op that takes it as a scalar operand
   (``x * t``), ``full`` and ``tensor`` read it in the op's dtype, as eager's constant
   holds it. A truth value taken of it (``if t > 0``, ``min(t, 5)``) becomes a
   *predicate*: the entry serves only the calls whose numbers give the same outcomes, and
   another outcome traces an entry of its own. Everything else that needs the number
   itself (a shape, an index, ``float()``, formatting, NumPy, a division by it)
   *specializes*: it gets the plain value, and the trace is not kept. So is one where a
   symbol reaches the result or outlives the call (the plain number is put back where it
   was kept), or that raised.
3. The first symbolic trace must have run the tensor ops the probing call's trace ran
   (``same_path``).

Ranges are predicates too: an int result that could pass 2**53 (int64 would wrap where
Python does not), an int operand that must fit an integer dtype. While stand-ins are
about, every call of code outside ember is watched (``CodeWatch``): code that may test a
stand-in's type, and the standard library's, get the plain number (specializing it). A
trace that raised gives the stand-ins up. A float ``t.item()`` becomes the same kind of stand-in
(``ItemProxy``) once a trace that read one was watched: the trace splits on its value
only where Python needs the number, and a returned one is read from the graph at every
replay.

>>> f = ember.compile(lambda x, t: x * t + 1)
>>> out = [f(ember.ones(3), t) for t in range(5)]   # t=0; then one entry for every t
>>> f.stats()["cache_entries"]
1
"""
from __future__ import annotations

import collections
import collections.abc
import copy
import dis
import gc
import operator
import os
import sys
import sysconfig
import types
import weakref

import numpy as np

from ember import dispatch as _dispatch
from ember import dtypes
from ember.errors import user_frame
from ember.tensor import Tensor
from ember.tracer.key import differing_leaves, sizes_only

INT_BOUND = 2 ** 31   # |an int argument| taken as symbolic (else: compiled per value)
EXACT = 2 ** 53       # ints within this are exact in float64, and never overflow int64


class Context:
    """The symbols of one trace: why it specialized (empty: it did not), and weak
    references to every ``SymScalar`` made, to find one that outlives the call."""

    def __init__(self) -> None:
        self.active = True
        self.reasons: list[str] = []
        self.made: list[weakref.ref] = []
        # The branches the trace took on the numbers: (fn of the call's leaf values,
        # the outcome traced, what it was, in words): the entry serves the calls whose
        # numbers take the same ones (``hold``)
        self.predicates: list[tuple] = []
        self.items = False      # whether item() gives ItemProxy objects in this trace
        self.saw_item = False   # whether the trace read a float item()
        self.first_item: int | None = None   # the graph position of its first stand-in

    def item(self, t: Tensor, tracer) -> ItemProxy | None:
        """``t.item()`` in this trace: an ``ItemProxy`` for a float once the function's
        code was watched (``Symbols.items``); None: read it now."""
        if not self.active or not t.dtype.is_floating_point or tracer.fullgraph:
            return None
        self.saw_item = True
        if not self.items:
            return None
        if self.first_item is None:
            self.first_item = tracer.graph.next_id
        from ember import autograd
        with autograd.no_grad():   # (a copy: a later in-place write must not reach it)
            copy = t.detach().reshape(()).clone()
        return ItemProxy(copy, copy._host().item(), None, self, f"item() at {user_frame()}",
                         tracer)

    def specialize(self, what: str) -> None:
        if self.active and not self.reasons:
            self.reasons.append(f"{what} at {user_frame()}")

    def close(self) -> str:
        """End of the traced call: from now on the symbols act as plain numbers. Returns
        why the trace cannot serve other values ("" if it can). Call it once the caller
        dropped its own references to the symbols (the arguments it passed)."""
        if any(r() is not None for r in self.made):
            gc.collect()   # (only a cycle can still hold one: rare)
            kept = [s for s in (r() for r in self.made) if s is not None]
            for s in kept:   # (an argument's: specialized; an item()'s: read, a split)
                s._plain("kept after the call (in an object, a list or a closure)")
            _replace(kept)
            for s in kept:   # (one kept where it could not be replaced: a set, a cache
                if type(s) is ItemProxy:   # key; it must not hold the trace)
                    s.tracer = None
        self.active = False
        return self.reasons[0] if self.reasons else ""


def _replace(kept: list) -> None:
    """Put the plain number where the user's lists, dicts, tuples, objects and closures
    kept a symbol (a stored one would otherwise stay a ``SymScalar``, which acts as the
    number but is not one: ``type(x) is int`` fails)."""
    for sym in kept:
        _substitute(sym, sym.value)


def _substitute(old, new, depth: int = 0) -> None:
    """Replace object ``old`` by ``new`` in what refers to it: lists, deques, dicts (by
    their base class's methods: the same number, so a subclass's hooks need not run),
    cells, running frames' variables, slots and instance dicts; a tuple, immutable, is
    itself replaced by a new tuple in what refers to it, two levels deep. What cannot be
    changed keeps it (a set, a key)."""
    # (plain loops: a comprehension naming ``old`` would make it a cell of this frame)
    for holder in gc.get_referrers(old):
        try:
            _substitute_in(holder, old, new, depth)
        except Exception:   # (a holder that refuses: it keeps the stand-in)
            pass


def _substitute_in(holder, old, new, depth: int) -> None:
    if isinstance(holder, list):
        for i in range(len(holder)):
            if holder[i] is old:
                list.__setitem__(holder, i, new)
    elif isinstance(holder, collections.deque):
        for i in range(len(holder)):
            if holder[i] is old:
                collections.deque.__setitem__(holder, i, new)
    elif isinstance(holder, dict):
        for k, v in list(dict.items(holder)):
            if v is old:
                dict.__setitem__(holder, k, new)
    elif type(holder) is _CELL:
        holder.cell_contents = new
    elif type(holder) is _FRAME or type(holder) is types.GeneratorType:
        frame = holder if type(holder) is _FRAME else holder.gi_frame
        values = frame.f_locals if frame is not None else {}
        for k, v in list(values.items()):
            if v is old:
                values[k] = new
                _write_locals(frame, values)
    elif type(holder) is tuple:
        if depth < 3:
            items = []
            for v in holder:
                items.append(new if v is old else v)
            _substitute(holder, tuple(items), depth + 1)
    elif type(holder) is _TUPLE_ITERATOR and type(new) is tuple:
        if depth < 3:   # (an iteration over the tuple under way: ``for v in args``)
            _, (seq,), index = holder.__reduce__()
            it = iter(new)
            it.__setstate__(index)
            _substitute(holder, it, depth + 1)
    else:
        for cls in type(holder).__mro__:   # (__slots__ attributes)
            for name in getattr(cls, "__slots__", ()):
                if isinstance(name, str) and getattr(holder, name, None) is old:
                    object.__setattr__(holder, name, new)
        d = getattr(holder, "__dict__", None)   # (3.11 may keep an object's inline)
        if isinstance(d, dict):
            for k, v in list(d.items()):
                if v is old:
                    d[k] = new


def plain_everywhere(ctx: Context, why: str) -> None:
    """Specialize every live stand-in of ``ctx`` and put its number wherever it is held
    (running frames too): code that may test the type of anything is about to run."""
    for r in ctx.made:
        sym = r()
        if sym is not None:
            value = sym._plain(why)
            _substitute(sym, value)


_FRAME = type(sys._getframe())
_TUPLE_ITERATOR = type(iter(()))
_CELL = type((lambda x: lambda: x)(0).__closure__[0])


def _is_number(v) -> bool:
    return type(v) is int or type(v) is float


class SymScalar:
    """A Python int or float argument during a trace: the value, and the 0-dim tensor
    (int64/float64) that holds it in the graph. ``isinstance(s, int)`` holds as for the
    number; ``type(s)`` is this class."""

    __slots__ = ("tensor", "value", "bound", "ctx", "name", "fn", "__weakref__")

    def __init__(self, tensor: Tensor, value, bound, ctx: Context, name: str, fn) -> None:
        self.tensor, self.value, self.bound, self.ctx, self.name = tensor, value, bound, ctx, name
        self.fn = fn   # its value from a call's leaf values, as Python computes it
        ctx.made.append(weakref.ref(self))

    @property
    def __class__(self):   # isinstance(s, int / float / numbers.Number) as for the value
        return type(self.value)

    def _plain(self, what: str):
        self.ctx.specialize(f"{what} of the symbolic argument {self.name}")
        return self.value

    # ---- what a scalar operand of a tensor op reads (dispatch.constant) ---------------
    def operand(self, dt: dtypes.DType, device) -> Tensor | None:
        """This number as a 0-dim operand of dtype ``dt`` in a tensor op, read from the
        graph input; None where that would not equal eager's constant (then the value is
        specialized and the caller makes the constant)."""
        if not self.ctx.active:
            return None
        ok = dt in (dtypes.float64, dtypes.float32, dtypes.float16)
        if not ok and type(self.value) is int:
            if dt is dtypes.bfloat16:   # (ml_dtypes takes an int through float32)
                ok = self._within(-2 ** 24, 2 ** 24, "bfloat16")
            elif dt.np.kind in "iu":    # (what eager's constant and check_fits need)
                info = np.iinfo(dt.np)
                ok = self._within(int(info.min), int(info.max), dt.name)
        elif not ok:
            ok = dt is dtypes.bfloat16
        if not ok:
            self._plain(f"a {dt.name} operand")
            return None
        t = self.tensor
        return t if t.dtype is dt else t.to(dt)

    def _within(self, lo: int, hi: int, what: str) -> bool:
        """Whether this int is within [lo, hi] at every call the entry serves: by its
        bound, or by a predicate recorded now (False if it is not even now)."""
        if -self.bound >= lo and self.bound <= hi:
            return True
        if not lo <= self.value <= hi or self.fn is None:
            return False
        f, v = self.fn, self.value   # (not self: a predicate must not keep a symbol)
        self._branch(lambda vals: lo <= (v if vals is None else f(vals)) <= hi,
                     f"{self.name} within the range of {what}")
        return True

    # ---- arithmetic recorded in the graph ---------------------------------------------
    def _binary(self, other, name: str, reflected: bool):
        if isinstance(other, Tensor):
            return NotImplemented   # the tensor's own (reflected) operator does it
        if isinstance(other, SymScalar) and not other.ctx.active:
            other = other.value   # (a stand-in kept from a trace that ended: its number)
        if not self.ctx.active and isinstance(other, SymScalar):
            return other._binary(self.value, name, not reflected)
        a, b = (other, self) if reflected else (self, other)
        symbols = [x for x in (a, b) if isinstance(x, SymScalar)]
        va = a.value if isinstance(a, SymScalar) else a
        vb = b.value if isinstance(b, SymScalar) else b
        value = _PYTHON[name](va, vb)   # raises where Python raises (1 // 0)
        if not self.ctx.active:
            return value
        floats = type(value) is float
        divisor = b if name in ("div", "floor_divide", "remainder") else None
        why = ""
        if not (isinstance(other, SymScalar) or _is_number(other)):
            why = f"'{name}' with a {type(other).__name__}"
        elif divisor is not None and (divisor is self or isinstance(divisor, SymScalar)
                                      or name != "div" and floats):
            # A division by the symbol raises in Python at 0 where a kernel would not;
            # float // and % round as Python's fmod-based code, not as NumPy's.
            why = f"'{name}'"
        bound = None
        if not why and not floats:   # (how large it can be at any call the entry serves)
            ba = a.bound if isinstance(a, SymScalar) else abs(a)
            bb = b.bound if isinstance(b, SymScalar) else abs(b)
            bound = {"add": ba + bb, "sub": ba + bb, "mul": ba * bb,
                     "floor_divide": ba + 1, "remainder": bb}[name]
            if bound > EXACT and abs(value) > EXACT:
                why = f"'{name}' beyond 2**53"
        if why:   # the plain result, with every symbol in it specialized
            for x in symbols:
                x._plain(why)
            return value
        ta, tb = _graph_operand(a, floats), _graph_operand(b, floats)
        out = _dispatch.dispatch(name, ta, tb)
        item = next((x for x in symbols if type(x) is ItemProxy), None)
        if item is not None:   # (a value read from a tensor: never a predicate's)
            return ItemProxy(out, value, bound, self.ctx, item.name, item.tracer)
        fa, fb, py = _fn(a), _fn(b), _PYTHON[name]
        result = SymScalar(out, value, min(bound, EXACT) if bound is not None else None,
                           self.ctx, self.name, lambda vals: py(fa(vals), fb(vals)))
        if bound is not None and bound > EXACT:   # int64 must not wrap at another call
            result.bound = bound
            result._within(-EXACT, EXACT, "2**53")
            result.bound = EXACT
        return result

    def __add__(self, o): return self._binary(o, "add", False)
    def __radd__(self, o): return self._binary(o, "add", True)
    def __sub__(self, o): return self._binary(o, "sub", False)
    def __rsub__(self, o): return self._binary(o, "sub", True)
    def __mul__(self, o): return self._binary(o, "mul", False)
    def __rmul__(self, o): return self._binary(o, "mul", True)
    def __truediv__(self, o): return self._binary(o, "div", False)
    def __rtruediv__(self, o): return self._binary(o, "div", True)
    def __floordiv__(self, o): return self._binary(o, "floor_divide", False)
    def __rfloordiv__(self, o): return self._binary(o, "floor_divide", True)
    def __mod__(self, o): return self._binary(o, "remainder", False)
    def __rmod__(self, o): return self._binary(o, "remainder", True)

    def __neg__(self):
        if not self.ctx.active:
            return -self.value
        return self._unary("neg", -self.value, lambda v: -v)

    def _unary(self, op: str, value, py):
        out = _dispatch.dispatch(op, self.tensor)
        if type(self) is ItemProxy:
            return ItemProxy(out, value, self.bound, self.ctx, self.name, self.tracer)
        f = self.fn
        return SymScalar(out, value, self.bound, self.ctx, self.name, lambda vals: py(f(vals)))

    def __pos__(self):
        return self if self.ctx.active else +self.value

    def __abs__(self):
        if not self.ctx.active:
            return abs(self.value)
        return self._unary("abs", abs(self.value), abs)

    # ---- branches: the entry is guarded on their outcome --------------------------
    def _branch(self, fn, what: str):
        """A truth value the trace branches on (``bool(t)``, ``t > 3``): recorded with
        its outcome, so the entry serves only calls whose numbers give the same."""
        outcome = fn(None)
        if self.ctx.active:
            self.ctx.predicates.append((fn, outcome, f"{what} at {user_frame()}"))
        return outcome

    def __bool__(self):
        f, v = self.fn, self.value
        return self._branch(lambda vals: bool(v if vals is None else f(vals)),
                            f"bool({self.name})")

    # ---- everything else needs the number itself: specialize --------------------------
    def __index__(self): return operator.index(self._plain("use as an index or size"))
    def __int__(self): return int(self._plain("int()"))
    def __float__(self): return float(self._plain("float()"))
    def __complex__(self): return complex(self._plain("complex()"))
    def __hash__(self): return hash(self._plain("hash()"))
    def __repr__(self): return repr(self._plain("repr()"))
    def __str__(self): return str(self._plain("str()"))
    def __format__(self, spec): return format(self._plain("formatting"), spec)
    def __round__(self, n=None): return round(self._plain("round()"), n)
    def __trunc__(self): return self._plain("trunc()").__trunc__()
    def __floor__(self): return self._plain("floor()").__floor__()
    def __ceil__(self): return self._plain("ceil()").__ceil__()
    def __copy__(self): return self._plain("copy()")
    def __deepcopy__(self, memo): return copy.deepcopy(self._plain("deepcopy()"), memo)
    def __reduce_ex__(self, protocol): return (type(self.value), (self._plain("pickling"),))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._plain("conversion to a NumPy array"), dtype=dtype)

    def __getattr__(self, name):   # .real, .is_integer(), .bit_length() ...
        if name.startswith("__") or name in SymScalar.__slots__:
            raise AttributeError(name)
        return getattr(self._plain(f".{name}"), name)


def _compare(op, symbol: str):
    def method(self, other):
        if isinstance(other, Tensor):
            return NotImplemented   # the tensor's comparison takes the number as operand
        if isinstance(other, SymScalar) and not other.ctx.active:
            other = other.value   # (a stand-in kept from a trace that ended: its number)
        if not self.ctx.active:   # (this one is: the other, if live, records the branch)
            return op(self.value, other)
        if not (isinstance(other, SymScalar) or _is_number(other) or type(other) is bool):
            v = other.value if isinstance(other, SymScalar) else other
            return op(self._plain(f"comparison '{op.__name__}' with a "
                                  f"{type(other).__name__}"), v)
        if type(other) is ItemProxy:   # (read now: its value picks the path)
            other = other._plain("a comparison")
        if type(self) is ItemProxy:    # (so is this one's; an argument's is a predicate)
            return op(self._plain("a comparison"), other)
        fa, fb = self.fn, _fn(other)
        va, vb = self.value, other.value if isinstance(other, SymScalar) else other
        return self._branch(lambda vals: bool(op(va, vb) if vals is None
                                              else op(fa(vals), fb(vals))),
                            f"{self.name} {symbol} {other.name}"
                            if isinstance(other, SymScalar) else f"{self.name} {symbol} {other!r}")
    return method


def _specializing(op, what: str, reflected: bool = False):
    def method(self, other=None):
        v = other._plain(what) if isinstance(other, SymScalar) else other
        x = self._plain(what)
        return op(v, x) if reflected else op(x, v)
    return method


for _op, _symbol in ((operator.eq, "=="), (operator.ne, "!="), (operator.lt, "<"),
                     (operator.le, "<="), (operator.gt, ">"), (operator.ge, ">=")):
    setattr(SymScalar, f"__{_op.__name__}__", _compare(_op, _symbol))
for _name, _op in (("pow", pow), ("divmod", divmod), ("and", operator.and_),
                   ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
                   ("rshift", operator.rshift)):
    setattr(SymScalar, f"__{_name}__", _specializing(_op, f"'{_name}'"))
    setattr(SymScalar, f"__r{_name}__", _specializing(_op, f"'{_name}'", reflected=True))
SymScalar.__invert__ = lambda self: ~self._plain("'~'")
_dispatch.SymScalar = SymScalar


class ItemProxy(SymScalar):
    """A float ``t.item()`` during a trace: the number, and a copy of ``t`` in the graph.
    The trace splits on its value (``Tracer.observe``, as ``item()`` did at once) only
    when Python needs the number (a branch, ``float()``, formatting: ``_plain``);
    returned, or used in arithmetic and tensor ops, it is computed at every replay (a
    result leaf of kind "S"), so a step that returns ``loss.item()`` needs no split."""

    __slots__ = ("tracer", "observed")

    def __init__(self, tensor: Tensor, value, bound, ctx: Context, name: str, tracer) -> None:
        super().__init__(tensor, value, bound, ctx, name, None)
        self.tracer, self.observed = tracer, False

    def _plain(self, what: str):
        if self.ctx.active and not self.observed:
            self.observed = True
            self.tracer.observe(self.tensor, "item")
        return self.value

    def _branch(self, fn, what: str):
        self._plain(what)
        return fn(None)


_PYTHON = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
           "div": operator.truediv, "floor_divide": operator.floordiv,
           "remainder": operator.mod}


def _fn(x):
    """A SymScalar's value function, or a constant's."""
    return x.fn if isinstance(x, SymScalar) else (lambda vals: x)


def _graph_operand(x, floats: bool):
    """``x`` (a SymScalar or a plain number) as an operand of the graph op: the symbol's
    tensor (float64 where the result is a float, as Python converts), or the number."""
    if isinstance(x, SymScalar):
        t = x.tensor
        return t.to(dtypes.float64) if floats and t.dtype is not dtypes.float64 else t
    return float(x) if floats else x


# ---- the compiled function's side ----------------------------------------------------
def _top_level(path: str) -> bool:
    """``args[2]`` or ``kwargs['t']``: an argument itself, not a leaf inside a list or
    dict (substituting one of those would mean rebuilding the caller's container)."""
    if path.startswith("args["):
        return path.endswith("]") and path[5:-1].isdigit()
    return path.startswith("kwargs[") and path.count("[") == 1


class CodeWatch:
    """A ``sys.setprofile`` hook on the calls of code outside ember and its dependencies
    while a trace runs (``start`` says False where another profiler is on: nothing is
    watched then). ``type(t) is int`` fails for a stand-in, so such code must not test
    one:

    - for the numbers a trace has plain (``probe``), ``found`` lists the calls of code
      that calls the builtin ``type`` on a parameter bound to an int or float, or on
      anything but a parameter (``_type_uses``): those numbers then stay plain;
    - for the stand-ins of the trace (``ctx``), such a call's parameters bound to them
      get the plain numbers before its first line runs, and so do the standard library's
      (``json.dumps`` wants an exact float); each one so given is specialized (the trace
      is not replayed for other values). Code that calls ``type`` on anything but a
      parameter specializes every stand-in of the trace."""

    def __init__(self, ctx: Context, probe: bool) -> None:
        self.found: list[str] = []
        self.ctx, self.probe = ctx, probe

    def start(self) -> bool:
        if sys.getprofile() is not None:
            return False
        found, ctx, probe = self.found, self.ctx, self.probe

        def hook(frame, event, arg) -> None:
            if event == "c_call":   # (C code that wants exact numbers: pickle, marshal)
                if (ctx.active and ctx.made and getattr(arg, "__module__", None) in _EXACT_C
                        and _type_uses(frame.f_code, frame) is not _OURS):
                    plain_everywhere(ctx, f"alive while {arg.__module__}."
                                          f"{getattr(arg, '__name__', '?')} ran")
                return
            if event != "call":
                return
            uses = _type_uses(frame.f_code, frame)
            if uses is _OURS:
                return
            if probe and uses not in (None, _STD) and (uses == "?" or any(
                    type(frame.f_locals.get(n)) in (int, float) for n in uses)):
                c = frame.f_code
                found.append(f"{c.co_name} tests type() ({c.co_filename}:"
                             f"{c.co_firstlineno})")
            if ctx.active and ctx.made:
                _give_plain(frame, uses, ctx)
        sys.setprofile(hook)
        return True

    def stop(self) -> None:
        sys.setprofile(None)


def _give_plain(frame, uses, ctx: Context) -> None:
    """The parameters of ``frame`` (a call just starting) bound to stand-ins that its code
    may test the type of (``uses``; all of them for the standard library's code) get the
    plain numbers."""
    if uses is None:
        return
    code = frame.f_code
    locals_ = frame.f_locals
    names = _params(code, packed=True)
    stdlib = uses is _STD
    if uses == "?" or stdlib and any(isinstance(locals_.get(n), _OPAQUE) for n in names):
        # type() of something else, or the standard library given an iterator (whose
        # items it may test, as statistics does): any stand-in might reach it
        plain_everywhere(ctx, f"alive while {code.co_name}, which may test types, ran")
        return
    changed = False
    why = f"passed to {code.co_name}, which may test its type"
    for name in names:
        v = locals_.get(name)
        if stdlib or name in uses:
            plain = _plain_inside(v, why, 6)
            if plain is not v:
                locals_[name] = plain
                changed = True
    if changed:
        _write_locals(frame, locals_)


def _plain_inside(v, why: str, depth: int):
    """``v`` with the plain number for each stand-in in it: itself, or in the lists and
    dicts (changed in place) and tuples (a new one) it holds, ``depth`` levels down."""
    if isinstance(v, SymScalar):
        return v._plain(why)
    if depth <= 0:
        return v
    if type(v) is tuple:
        items = tuple(_plain_inside(x, why, depth - 1) for x in v)
        return items if any(a is not b for a, b in zip(items, v)) else v
    if isinstance(v, list):
        for i, x in enumerate(v):
            y = _plain_inside(x, why, depth - 1)
            if y is not x:
                list.__setitem__(v, i, y)   # (the same number: a subclass's hook need
    elif isinstance(v, dict):               # not run)
        for k, x in list(dict.items(v)):
            y = _plain_inside(x, why, depth - 1)
            if y is not x:
                dict.__setitem__(v, k, y)
    return v


# C modules whose functions serialize numbers by their exact type (pickle.dumps(t) would
# give other bytes for a stand-in, marshal would refuse it)
_EXACT_C = frozenset(("_pickle", "marshal"))
# what the standard library may iterate without ``_plain_inside`` seeing the items
_OPAQUE = (collections.abc.Iterator, set, frozenset)

if sys.version_info >= (3, 13):   # PEP 667: frame.f_locals writes through
    def _write_locals(frame, values: dict) -> None:
        for k, v in values.items():
            frame.f_locals[k] = v
else:
    import ctypes

    def _write_locals(frame, values: dict) -> None:
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


_STDLIB = sysconfig.get_paths()["stdlib"]
_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the ember package
# ember's dependencies run inside its ops, on arrays (the numbers reach them converted)
_DEPENDENCIES = tuple(os.sep + name + os.sep
                      for name in ("numpy", "llvmlite", "networkx", "ml_dtypes", "cupy"))
_TYPE_USES: dict = {}   # code -> its ``_type_uses``
_OURS, _STD = "ours", "std"   # (marks: ember's or a dependency's; the standard library's)


def _type_uses(code, frame):
    """What ``code`` does with the builtin ``type``: ``_OURS`` for ember's and its
    dependencies' code (ember calls it on numbers only where a stand-in takes the generic,
    hooked path; its dependencies see arrays), ``_STD`` for the standard library's; else
    None if it never calls it, the parameters it calls it on, or "?" where it calls it
    on anything else. ``type`` reached as ``builtins.type`` or through another global
    or closure name bound to it (in ``frame``, its first call) counts."""
    found = _TYPE_USES.get(code, 0)
    if found != 0:
        return found
    name = code.co_filename
    f = os.path.abspath(name)
    if f.startswith(_OWN) or any(d in f for d in _DEPENDENCIES):
        found = _OURS
    elif name.startswith("<frozen ") or f.startswith(_STDLIB) and "-packages" not in f:
        found = _STD
    else:
        import builtins
        cells = frame.f_locals if code.co_freevars else {}
        env = {n: cells[n] if n in code.co_freevars and n in cells
               else frame.f_globals.get(n, getattr(builtins, n, None))
               for n in code.co_names + code.co_freevars}
        env.update({n: frame.f_locals.get(n) for n in _params(code)})   # (``_type=type``)
        found = _type_calls(code, {n for n, v in env.items() if v is type},
                            {n for n, v in env.items() if v is builtins})
    _TYPE_USES[code] = found
    return found


def _params(code, packed: bool = False) -> tuple:
    """The parameter names of ``code`` (``packed``: with ``*args`` and ``**kwargs``)."""
    n = code.co_argcount + code.co_kwonlyargcount
    if packed:   # (CO_VARARGS, CO_VARKEYWORDS)
        n += bool(code.co_flags & 4) + bool(code.co_flags & 8)
    return code.co_varnames[:n]


_LOADS = ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_FAST")


def _type_calls(code, aliases: set, modules: set):
    """``_type_uses`` of user code, whose names ``aliases`` are the builtin ``type`` and
    ``modules`` the ``builtins`` module: None, the parameters, or "?"."""
    if not aliases and not modules:
        return None
    params = set(_params(code))
    ins = list(dis.get_instructions(code))
    names: set = set()
    for k, i in enumerate(ins):
        if i.opname in _LOADS and i.argval in modules:
            nxt = ins[k + 1] if k + 1 < len(ins) else None
            if nxt is not None and nxt.argval == "type":   # (builtins.type)
                return "?"
        if i.opname in _LOADS and i.argval in aliases:
            # ``type(p)``: the global, one parameter, the call (3.11: PRECALL, CALL)
            arg = ins[k + 1] if k + 1 < len(ins) else None
            call = ins[k + 2] if k + 2 < len(ins) else None
            if (arg is not None and arg.opname == "LOAD_FAST" and arg.argval in params
                    and call is not None and call.opname in ("PRECALL", "CALL")):
                names.add(arg.argval)
            else:
                return "?"
    return tuple(names) or None


class Symbols:
    """Which arguments of one compiled function are symbolic (see the module docstring):
    ``learn`` from each missed call, ``convert`` each call's leaves."""

    def __init__(self, mode: bool | None) -> None:
        self.mode = mode
        self.positions: list[tuple[int, str]] = []   # (leaf index, path), symbolic
        self.static: set[str] = set()                 # paths that specialized
        self.candidates: list[tuple[int, str]] = []   # seen varying: the call probes them
        # item() of floats: None (not seen yet), "probe" (the next trace is watched),
        # True (ItemProxy objects: the watched trace found no type() test), False
        self.items: bool | str | None = None if mode is not False else False
        self.flush = False   # the compiled function drops its entries after this call
        # The entry of the probing call (a trace with the plain number), until the first
        # symbolic trace is checked against it (``same_path``)
        self.reference = None
        self.reference_leaves: list = []
        self.reference_key: tuple = ()

    def probed(self, entry, found: list | None, leaves: list, key: tuple) -> str:
        """A call with the plain number traced while its code was watched (``entry``):
        the candidates turn symbolic from the next call on, unless code that ran tests
        ``type()`` or the trace was not kept. Returns what happened, in words."""
        paths = ", ".join(p for _, p in self.candidates)
        why = ("the call was not compiled" if not entry.traces
               else "another profiler is active (the check needs sys.setprofile)"
               if found is None else found[0] if found else "")   # (None: not watched)
        if why:
            self.static.update(p for _, p in self.candidates)
            self.candidates = []
            return f"{paths} varied; compiled once per value: {why}"
        self.positions += self.candidates
        self.candidates = []
        self.reference, self.reference_leaves, self.reference_key = entry, leaves, key
        return f"{paths} varied: from the next call on, read as run-time values"

    def learn(self, key: tuple, leaves: list, old_keys) -> list[int]:
        """The leaves that become symbolic with this call: those in which ``key`` differs
        from an earlier key (``old_keys``) only in an int or float value (tensors may
        differ in their sizes too). Returns their indices (known ones excluded). Also
        with ``dynamic=True``: the trace of the first value checks the symbolic one
        (``same_path``)."""
        if self.mode is False:
            return []
        known = {i for i, _ in self.positions}
        found = set()
        for old in old_keys:
            found.update(scalar_changes(old, key, leaves) or ())
        new = [i for i in sorted(found) if leaves[i][0] not in self.static and i not in known]
        self.candidates = [(i, leaves[i][0]) for i in new]
        return new

    def convert(self, leaves: list) -> list:
        """The leaves of a call with each symbolic int or float as a 0-dim tensor
        (``leaves`` itself when there is none to convert)."""
        out = None
        for i, path in self.positions:
            if i < len(leaves):
                p, v = leaves[i]
                if p == path and (type(v) is float or type(v) is int and -INT_BOUND <= v
                                  <= INT_BOUND):
                    if out is None:
                        out = list(leaves)
                    dt = np.int64 if type(v) is int else np.float64
                    out[i] = (p, Tensor._wrap(np.asarray(v, dtype=dt)))
        return leaves if out is None else out

    def substitute(self, args: tuple, kwargs: dict, leaves: list, ctx: Context):
        """The arguments to trace with: a ``SymScalar`` for each converted leaf."""
        if not self.positions:
            return args, kwargs
        args, kwargs = list(args), dict(kwargs)
        for i, path in self.positions:
            if i >= len(leaves) or leaves[i][0] != path or not isinstance(leaves[i][1],
                                                                          Tensor):
                continue
            t = leaves[i][1]
            if path.startswith("args["):
                k = int(path[5:-1])
                v = args[k]
                args[k] = SymScalar(t, v, INT_BOUND if type(v) is int else None, ctx, path,
                                    operator.itemgetter(i))
            else:
                name = next(n for n in kwargs if f"kwargs[{n!r}]" == path)
                v = kwargs[name]
                kwargs[name] = SymScalar(t, v, INT_BOUND if type(v) is int else None, ctx,
                                         path, operator.itemgetter(i))
        return tuple(args), kwargs

    def originals(self, leaves: list, args: tuple, kwargs: dict) -> list:
        """``leaves`` with the caller's own numbers where ``convert`` put tensors."""
        if not self.positions:
            return leaves
        from ember.tracer import pytree
        plain = pytree.flatten_call(args, kwargs)[0]
        return [plain[i] if isinstance(v, Tensor) and not isinstance(plain[i][1], Tensor)
                else (p, v) for i, (p, v) in enumerate(leaves)]

    def traced(self, ctx: Context, found: list | None, watched: bool) -> str:
        """After a trace: a float item() seen makes the next trace watched; a watched one
        that read one decides whether item() gives proxies from then on (the entries go,
        so that the next call traces with them). Returns a note ("" if none)."""
        if not ctx.saw_item or self.items in (True, False):
            return ""
        if not watched:
            self.items = "probe"
            return ""
        why = ("another profiler is active (the check needs sys.setprofile)"
               if found is None else found[0] if found else "")
        self.items = not why
        self.flush = not why
        return ("item() of a float is read when Python needs the number, from the next "
                "call on" if not why else f"item() is read at once: {why}")

    def give_up(self) -> list[str]:
        """A trace specialized: its symbolic arguments compile per value from now on."""
        paths = [p for _, p in self.positions]
        self.static.update(paths)
        self.positions = []
        self.reference = None
        return paths


class Values:
    """A call's leaf values by index, numbers read from the 0-dim tensors ``convert``
    made (what a predicate's function reads)."""

    __slots__ = ("leaves",)

    def __init__(self, leaves: list) -> None:
        self.leaves = leaves

    def __getitem__(self, i: int):
        v = self.leaves[i][1]
        return v._data.item() if isinstance(v, Tensor) else v


def hold(predicates: list, leaves: list) -> str:
    """"" if the call with ``leaves`` takes every branch the trace took on its numbers,
    else the first it does not take, in words."""
    vals = Values(leaves)
    for fn, outcome, what in predicates:
        try:
            if fn(vals) != outcome:
                return f"{what} was {outcome}, now {not outcome}"
        except Exception as e:   # (1 / (t - 3) at t=3: not this entry's call)
            return f"{what}: {type(e).__name__}"
    return ""


def tensor_ops(graph, symbolic: set, before: int | None = None) -> list:
    """The ops of a traced graph on its input tensors' values, in order, as (op, dtype,
    rank): not those computed from the ``symbolic`` input nodes, constants and factories
    alone (a trace with the plain number did that arithmetic in Python, or made
    constants of it)."""
    out, derived = [], set(symbolic)   # (and the values made of constants alone)
    for n in graph.nodes():
        if before is not None and n >= before:
            break
        d = graph[n]
        if d.op == "input":
            continue
        if all(a in derived for a in d.args if isinstance(a, int)):
            derived.add(n)   # (a constant, a factory, an op on those or on the symbols)
            continue
        out.append((d.op, d.dtype, len(d.shape)))
    return out


def same_path(trace, reference, symbolic: set) -> bool:
    """Whether a trace with the leaves ``symbolic`` as symbols ran the tensor ops that
    ``reference``, a trace of an earlier call with (some of) them as plain numbers, ran:
    a ``type(t) is int`` test (which a ``SymScalar`` fails) must not have sent it
    elsewhere. (A leaf that was symbolic already in the reference is an input there.)"""
    def ops(t):   # (up to its first value read from a tensor: there the two may part)
        cuts = [o.cut for o in t.observations] + (
            [t.first_item] if t.first_item is not None else [])
        cut = min(cuts, default=None)
        return tensor_ops(t.graph, {n for n, i in t.arg_paths.items() if i in symbolic}, cut)
    return ops(trace) == ops(reference)


def comparable(old: tuple, new: tuple, symbolic: set) -> bool:
    """Whether keys ``old`` and ``new`` differ only in the ``symbolic`` leaves and in
    tensor sizes: the calls' traces then run the same tensor ops (``same_path``)."""
    diffs = differing_leaves(old, new)
    return diffs is not None and all(i in symbolic or sizes_only(a, b) for i, a, b in diffs)


def scalar_changes(old: tuple, new: tuple, leaves: list) -> list | None:
    """Indices of the top-level int/float leaves whose values differ between two keys
    that are otherwise equal (tensors may differ in sizes only), else None."""
    diffs = differing_leaves(old, new)
    if diffs is None:
        return None
    out = []
    for i, a, b in diffs:
        if a[0] == "V" and b[0] == "V" and a[1] == b[1] and a[1] in ("int", "float"):
            if not _top_level(leaves[i][0]):
                return None
            out.append(i)
        elif not sizes_only(a, b):
            return None
    return out
