"""Guards: the Python state a trace depends on, checked cheaply at every cache hit.

A trace freezes every Python value the function read: a global float, a closure
variable, ``self.scale``, which submodule ``self.fc`` is, the parameter bound to
``self.weight``. Before a cached trace replays, its guards check that all of this is
still what it was when the trace was recorded; a failed guard names what changed
(``global 'scale' 0.5 -> 0.25 (train.py:12)``) and the call compiles again.

What is guarded is what the function can reach: the globals its code names (and the
code of the user functions and user classes it reaches), its closure cells and default
arguments, ``self`` of a bound method, and the non-tensor arguments, followed through
attributes, list, tuple and dict items, to a bounded depth (deeper along dict keys the
code names: a nested config); a user class reached guards the class attributes the
code names (``Cfg.scale``). ember's nn.Modules are followed through all their
submodules. Objects are held by weak reference where Python allows it, never by a bare
``id()`` (a new object can get a dead one's id). Scalars compare by value with their
type, so ``-0.0`` differs from ``0.0`` and a NaN equals a NaN.

The checks are generated as one Python function per guard set (a hit runs straight-line
code, no interpretation). Module attributes change only through ``Module.__setattr__``
and the registry dicts, which count changes (with ``requires_grad`` assignments, also
guarded) in ``STRUCTURE_VERSION``: while it
has not moved, the (many) module guards are skipped as a block.

>>> scale = 0.5
>>> f = ember.compile(lambda x: x * scale)
>>> f(x); f(x); scale = 0.25; f(x)     # recompiles: global 'scale' 0.5 -> 0.25 (<stdin>:1)
"""
from __future__ import annotations

import collections
import dis
import itertools
import math
import types
import weakref
from typing import Any, Callable

import numpy as np

MISSING = type("MISSING", (), {"__repr__": lambda self: "<unset>"})()

# How far the walk follows plain objects and containers from a root, how many items of
# one container it looks at, and how many guards one function may have. Beyond them
# what is not guarded is said in ``GuardSet.notes`` (stats()["notes"]).
MAX_DEPTH = 4
# ... and how far it follows dict items whose keys the code names as constants
# (``cfg["model"]["attn"]["scale"]``): a nested config read by the code is guarded to its end.
MAX_NAMED_DEPTH = 12
MAX_ITEMS = 256
MAX_GUARDS = 4000
# NumPy arrays reached are compared by content up to this size; larger ones by identity,
# shape and dtype only (and said in the notes).
MAX_ARRAY_BYTES = 1 << 16

_SCALARS = (bool, int, float, complex, str, bytes, type(None))
# The number types of an optimizer setting read at every call (Optimizer._hyper): NumPy's
# too (BERT-pytorch's ScheduledOptim computes its lr with np.power: a np.float64)
RUNTIME_NUMBERS = (int, float, np.float64, np.float32, np.int64, np.int32)
_SKIP_MODULES = ("ember", "numpy", "cupy", "torch", "builtins", "functools", "typing",
                 "collections", "abc", "math", "threading", "weakref", "enum", "re")


def _library(obj_or_type) -> bool:
    """Code of ember, NumPy, the standard library...: trusted not to hide user state."""
    mod = getattr(obj_or_type, "__module__", None) or ""
    return mod.split(".")[0] in _SKIP_MODULES


class _Strong:
    """A reference callable like a weakref, for objects Python can't weakly reference."""
    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj

    def __call__(self):
        return self.obj


def _ref(obj) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return _Strong(obj)


class UninitializedTensor(Exception):
    """The call reaches a lazy module's uninitialized parameter or buffer (``where``):
    its shape is not known until an eager call initializes it."""


class GuardSet:
    """The guards of one trace. ``check(leaves)`` is -1 when all hold, else the index of
    the first that failed (``describe(i)`` says what changed)."""

    def __init__(self, fn: Callable, leaves: list, modules_version: list) -> None:
        b = self._builder = _Builder(fn, leaves)
        self.notes = b.notes
        self._codes = b.codes
        self._version = modules_version
        self._seen = [modules_version[0]]   # the structure version of the last full check
        self._failed = [None]
        self._roots = b.roots
        self.optimizers = bool(b.optimizers)   # (then settle again after the traced call)
        self.settle(frozenset())   # (every optimizer slot by value until a trace says)

    def settle(self, read: frozenset, captured: set = frozenset(),
               written: set = frozenset()) -> None:
        """Write the check function, with the optimizer slots that the trace read at every
        call (``Trace.runtime_values``) guarded by sign only (see ``_Builder.slot_guards``)
        and the optimizers' state tensors the trace read (``captured``: their ids).
        ``written``: (id(module), name) of the attributes the call assigns a new tensor
        or None and replays assign too (``Trace.written``); see ``source``."""
        b = self._builder
        n = len(b.where)
        self.source = b.source(read, captured, written)
        self.where, self.expected = list(b.where), list(b.expected)
        del b.where[n:], b.expected[n:]   # (settle may run again: the builder stays as it was)
        ns = {"M": MISSING, "copysign": math.copysign, "ndarray": np.ndarray,
              "array_equal": np.array_equal}
        exec(compile(self.source, "<ember guards>", "exec"), ns)
        self._check = ns["check"]

    def hyperparameters(self) -> list:
        """The optimizers' hyperparameters (lr, momentum, betas) as they are now, with
        where they are: a traced call compares them before and after (``Entry._trace``),
        since their guards check only a sign once a trace reads them at every call."""
        out = []
        for k, i, name, j, _, what in self._builder.slots:
            opt = self._builder.roots[k]()
            try:
                v = opt.param_groups[i].get(name, MISSING)
                out.append((what, v if j is None else v[j]))
            except Exception:   # (gone or reshaped: the guards see it)
                out.append((what, MISSING))
        return out

    def tensor_slots(self) -> dict:
        """id(tensor) -> [(weak reference to the object, name, a Module?, the tensor)] of the
        attributes
        (and module buffers) that hold a tensor now, of those whose guard can check a
        tensor by kind: a traced call reads such a slot at every call where it only read
        the tensor there, and assigns it where the call put a new one in an object that
        is not a Module (whose writes ``Module.__setattr__`` reports) (``entry.py``)."""
        from ember.tracer.pytree import slot_value
        b, out = self._builder, {}
        for (mid, name) in b.attr_slots:
            ref, module = b.owners.get(mid, (None, False))
            obj = None if ref is None else ref()
            v = None if obj is None else slot_value(obj, name, None)
            if _is_tensor(v):
                out.setdefault(id(v), []).append((weakref.ref(obj), name, module, v))
        return out

    def check(self, leaves: list) -> int:
        try:
            return self._check(self._roots, leaves, self._version, self._seen, self._failed)
        except Exception:   # a guarded object went away or changed shape: not a match
            return len(self.where)

    def alive(self) -> bool:
        """False once an object the guards hold weakly is gone: the entry can never match
        again (a new object may reuse the dead one's id, never its weak reference)."""
        return all(r() is not None for r in self._roots if type(r) is weakref.ref)

    def describe(self, i: int) -> str:
        """``global 'scale' 0.5 -> 0.25 (train.py:12)``: guard ``i`` and what it sees now."""
        if i >= len(self.where):
            return "a guarded object is gone or changed type"
        now = self._failed[0]
        text = f"{self.where[i]} {self.expected[i]} -> {_short(now)}"
        loc = _location(self._codes, self.where[i])
        return f"{text} ({loc})" if loc else text


class _Builder:
    """Walks what a function can reach and writes the check function's source.

    Each object reached gets a reference in ``roots`` (``R[k]`` in the check); the slot
    that holds it is guarded to still hold it, and its own slots are guarded where it is
    walked. Slots of nn.Modules (and their parameter, buffer and submodule dicts) go in
    the gated block; everything else is checked at every call.
    """

    def __init__(self, fn: Callable, leaves: list) -> None:
        self.where: list[str] = []
        self.expected: list[str] = []
        self.notes: list[str] = []
        self.codes: list[types.CodeType] = []
        self.roots: list = []        # R[...]: references the check function reads through
        self.seen: dict = {}         # id(object) -> its index in roots; walked markers
        self.plain: list[str] = []   # checks run at every call
        self.gated: list[str] = []   # module guards: run when a module changed
        self.names: set[str] = set()  # attribute and global names the code uses
        self.keys: set = set()        # its str and int constants (``cfg["lr"]``'s "lr")
        self.pending: list = []       # (object, path, depth, gated) still to walk
        self.slots: list = []         # optimizer hyperparameters: see ``_optimizer``
        self.optimizers: list = []    # (root index, path) of the optimizers reached
        # (id(module), name) -> (its guard list, line index, line by kind, root, old tensor)
        self.attr_slots: dict = {}
        self.buffers_of: dict = {}   # id(a module's _buffers dict) -> id(the module)
        self.owners: dict = {}       # id(an object walked) -> (its reference, a Module?)
        self._func(fn, getattr(fn, "__qualname__", "fn"), root=True)
        for i, (path, v) in enumerate(leaves):
            if not _is_tensor(v) and not isinstance(v, _SCALARS):  # scalars: in the key
                self._value(self.plain, f"L[{i}][1]", v, f"argument {path}", 0)
        while self.pending:
            self._walk(*self.pending.pop(0))

    # ---- the source ---------------------------------------------------------------------
    def source(self, read: frozenset = frozenset(), captured: set = frozenset(),
               written: set = frozenset()) -> str:
        # A slot the call assigns a new tensor (and replays assign one) held a tensor
        # before: it is guarded by kind (shape, dtype, requires_grad: all Python can have
        # decided on without using its values), not by identity, which every call
        # changes; where the trace used the old tensor's values (``captured``), or the
        # slot held something else (None), as it was. (Not guarding a slot no code seems
        # to read was tried: code the walk does not scan, a library's or one reached
        # through an imported module, may read it, and a fuzzer found such a replay wrong.)
        plain, gated = list(self.plain), list(self.gated)
        for slot in written:
            found = self.attr_slots.get(slot)
            if found is None or found[2] is None or id(found[4]()) in captured:
                continue
            where, i, line, k, _ = found
            (gated if where is self.gated else plain)[i] = line
            self.roots[k] = _Strong(None)   # the old tensor may go: replays replace it
        lines = ["def check(R, L, V, S, F):"]
        lines += ["    " + s for s in plain + self.slot_guards(read)
                  + self.state_lines(captured)]
        if gated:
            lines.append("    if V[0] != S[0]:")
            lines += ["        " + s for s in gated]
            lines.append("        S[0] = V[0]")
        lines.append("    return -1")
        return "\n".join(lines) + "\n"

    def _guard(self, out: list, cond: str, where: str, expected: str) -> None:
        if len(self.where) >= MAX_GUARDS:
            if not any(n.startswith("more than") for n in self.notes):
                self.notes.append(f"more than {MAX_GUARDS} Python values are reachable: "
                                  f"the rest (from {where} on) are not guarded")
            return
        i = len(self.where)
        self.where.append(where)
        self.expected.append(expected)
        out.append(f"if not ({cond}): F[0] = v; return {i}")

    def _root(self, obj) -> int:
        """The reference to a user's object (weak where possible), one per object."""
        k = self.seen.get(id(obj))
        if k is None:
            k = self.seen[id(obj)] = len(self.roots)
            self.roots.append(_ref(obj))
        return k

    def _const(self, value) -> int:
        """A value made here (an expected float, a copy of an array): held strongly."""
        self.roots.append(_Strong(value))
        return len(self.roots) - 1

    # ---- one value in one slot ----------------------------------------------------------
    def _value(self, out: list, expr: str, v, where: str, depth: int,
               registry: bool = False, named: bool = False, slot: tuple | None = None) -> None:
        """Guard that ``expr`` (evaluated in the check) still gives ``v``; walk into v.
        ``slot``: (id(module), name) of a plain module attribute (see ``source``)."""
        out.append(f"v = {expr}")
        cond = _scalar_condition(v, self)
        if cond is not None:
            self._guard(out, cond, where, _short(v))
            return
        if isinstance(v, np.ndarray):
            self._array(out, v, where)
            return
        if isinstance(v, (set, frozenset)) and all(isinstance(x, _SCALARS) for x in v):
            self._guard(out, f"v == R[{self._const(frozenset(v))}]()", where, _short(v))
            return
        # Any other object: the same object, then (walked later) what it holds. A tensor:
        # also what Python may decide on without using it in an op (``if w.requires_grad``,
        # ``x * W.shape[0]``); ``.data = other`` can change its shape and dtype.
        if getattr(v, "_uninitialized", False):   # a lazy module's (nn/lazy.py)
            raise UninitializedTensor(where)
        new = id(v) not in self.seen
        k = self._root(v)
        if _is_tensor(v):
            a = v._data
            kind = (f"v.requires_grad is {v.requires_grad} and v._data.shape == {a.shape!r} "
                    f"and v._data.dtype == R[{self._const(a.dtype)}]()")
            n = len(out)
            self._guard(out, f"v is R[{k}]() and {kind}", where,
                        f"{_describe_obj(v)} {a.dtype}, requires_grad={v.requires_grad}")
            if slot is not None and new and len(out) > n:
                line = out[-1].replace(f"v is R[{k}]() and ",
                                       f"type(v) is R[{self._const(type(v))}]() and ", 1)
                self.attr_slots[slot] = (out, len(out) - 1, line, k, weakref.ref(v))
        else:
            self._guard(out, f"v is R[{k}]()", where, _describe_obj(v))
        module = _is_module(v)
        if ("walked", id(v)) not in self.seen and _walkable(v):
            # Functions are followed at any depth: a forward hook four levels down (a
            # submodule's ``_forward_hooks``) that stores its output in a dict it closes
            # over changed that dict at every call, which a replay did not (stale
            # activations came back); followed, the change is seen and the call runs eagerly.
            code = isinstance(v, (types.FunctionType, types.MethodType))
            if (depth < MAX_DEPTH or module or registry or code
                    or named and depth < MAX_NAMED_DEPTH):
                self.seen[("walked", id(v))] = 1
                # A module's registry dicts change only through Module methods, which move
                # STRUCTURE_VERSION: they are checked with the module, in the gated block.
                self.pending.append((v, where, depth + 1, module or registry))
            elif named and len(self.notes) < 32:
                self.notes.append(f"{where}: deeper than {MAX_NAMED_DEPTH} levels; what it "
                                  "holds is not guarded")

    def _array(self, out: list, a: np.ndarray, where: str) -> None:
        # An argument is compared whatever its size: the caller handed it in to be used.
        if a.nbytes <= MAX_ARRAY_BYTES or where.startswith("argument"):
            k = self._const(a.copy())
            self._guard(out, f"type(v) is ndarray and v.shape == {a.shape!r} and v.dtype == "
                        f"R[{k}]().dtype and array_equal(v, R[{k}](), equal_nan=True)",
                        where, f"an array {list(a.shape)} (by value)")
        else:
            self._guard(out, f"v is R[{self._root(a)}]() and v.shape == {a.shape!r}", where,
                        f"an array {list(a.shape)}")
            self.notes.append(f"{where}: a NumPy array of {a.nbytes} bytes is guarded by "
                              "identity and shape only, not by its values")

    # ---- walking into an object ---------------------------------------------------------
    def _walk(self, obj, where: str, depth: int, gated: bool) -> None:
        k = self._root(obj)
        out = self.gated if gated else self.plain
        if isinstance(obj, (list, tuple, dict, collections.deque)):
            out.append(f"d = R[{k}]()")
            out.append("v = len(d)")
            self._guard(out, f"v == {len(obj)}", f"{where} length", str(len(obj)))
            if len(obj) > MAX_ITEMS:
                self.notes.append(f"{where}: only the first {MAX_ITEMS} of {len(obj)} items "
                                  "are guarded")
            if isinstance(obj, dict):
                owner = self.buffers_of.get(id(obj))
                for key, v in list(obj.items())[:MAX_ITEMS]:
                    if isinstance(key, (str, int)) and not isinstance(key, bool):
                        self._value(out, f"d.get({key!r}, M)", v, f"{where}[{key!r}]", depth,
                                    named=key in self.keys,
                                    slot=None if owner is None else (owner, key))
            else:
                for i, v in enumerate(itertools.islice(obj, MAX_ITEMS)):
                    self._value(out, f"d[{i}]", v, f"{where}[{i}]", depth)
            return
        if isinstance(obj, types.ModuleType):
            # Only the names the code uses, and only values (functions rarely change).
            d = vars(obj)
            out.append(f"d = R[{k}]().__dict__")
            for name in sorted(self.names & d.keys()):
                v = d[name]
                if isinstance(v, _SCALARS) or _is_tensor(v) or isinstance(v, np.ndarray):
                    self._value(out, f"d.get({name!r}, M)", v, f"{where}.{name}", depth)
            return
        if isinstance(obj, type):
            # A user class: the class attributes the code names (``Cfg.scale``), by value;
            # its methods are followed as code (their globals).
            self._class_code(obj)
            for name in sorted(self.names):
                v = next((vars(c)[name] for c in obj.__mro__ if name in vars(c)), MISSING)
                if isinstance(v, _SCALARS) or _is_tensor(v) or isinstance(v, np.ndarray):
                    self._value(out, f"getattr(R[{k}](), {name!r}, M)", v, f"{where}.{name}",
                                depth)
            return
        if isinstance(obj, types.FunctionType):
            self._func(obj, where)
            return
        if isinstance(obj, types.MethodType):
            self._value(out, f"R[{k}]().__self__", obj.__self__, f"{where}.__self__", depth)
            self._value(out, f"R[{k}]().__func__", obj.__func__, where, depth)
            return
        if _is_optimizer(obj):
            self._optimizer(obj, k, where)
            return
        if not _library(type(obj)):
            self._class_code(type(obj))
        d = obj.__dict__
        out.append(f"d = R[{k}]().__dict__")
        out.append("v = len(d)")
        self._guard(out, f"v == {len(d)}", f"{where} attribute count", str(len(d)))
        module = _is_module(obj)
        self.owners[id(obj)] = (self.roots[k], module)
        for name, v in list(d.items()):
            plain_attr = not module or name not in _REGISTRIES
            if module and name == "_buffers" and isinstance(v, dict):
                self.buffers_of[id(v)] = id(obj)   # (its buffers are slots like attributes)
            self._value(out, f"d.get({name!r}, M)", v, f"{where}.{name}", depth,
                        registry=module and name in _REGISTRIES,
                        slot=(id(obj), name) if plain_attr else None)

    def _optimizer(self, opt, k: int, where: str) -> None:
        """An optimizer's settings, but not its state (tensors, updated in place). The
        hyperparameters schedulers change (``RUNTIME``: lr, momentum, betas) become
        slots, settled after the trace: by value, or by sign where the trace read them
        at every call (``Optimizer._hyper``)."""
        out = self.plain
        out.append(f"v = R[{k}]().__dict__.get('_state_version', 0)")
        self._guard(out, f"v == {getattr(opt, '_state_version', 0)}", f"{where} state",
                    f"version {getattr(opt, '_state_version', 0)}")
        self.optimizers.append((k, where))   # its state: guarded as the call leaves it
        out.append(f"v = R[{k}]().param_groups")
        self._guard(out, f"len(v) == {len(opt.param_groups)}", f"{where}.param_groups",
                    f"{len(opt.param_groups)} groups")
        out.append("gs = v")
        for i, group in enumerate(opt.param_groups):
            for name, v in group.items():
                what = f"{where}.param_groups[{i}][{name!r}]"
                if name == "params":
                    continue
                if name in RUNTIME and type(v) is tuple:
                    self._value(out, f"len(gs[{i}].get({name!r}, ()))", len(v),
                                f"{what} length", MAX_DEPTH)
                    self.slots += [(k, i, name, j, x, f"{what}[{j}]") for j, x in enumerate(v)]
                elif name in RUNTIME:
                    self.slots.append((k, i, name, None, v, what))
                else:
                    self._value(out, f"gs[{i}].get({name!r}, M)", v, what, MAX_DEPTH)

    def state_lines(self, captured: set) -> list[str]:
        """The guards of the optimizers' state: that it still holds, for each parameter,
        the tensors the trace read (``captured``, ids) and updates in place; after
        ``opt.state.clear()`` or ``opt.state[p] = {}`` (a reset) the step must start
        again, not update the old ones. Written when the guards settle after the traced
        call. (A Python number a custom optimizer keeps there and reads is a constant in
        the trace: the second call's check sees it change and runs the key eagerly.)"""
        out: list[str] = []
        for k, where in self.optimizers:
            opt = self.roots[k]()
            if opt is not None and captured:
                self._optimizer_state(opt, k, where, out, captured)
        return out

    def _optimizer_state(self, opt, k: int, where: str, out: list, captured: set) -> None:
        state = opt.__dict__.get("state", MISSING)
        if not isinstance(state, dict):
            return
        params = [p for g in opt.param_groups for p in g["params"] if _is_tensor(p)]
        read = [(i, p, slots) for i, p in enumerate(params[:MAX_ITEMS])
                for slots in [state.get(p)] if isinstance(slots, dict)
                and any(id(v) in captured for v in slots.values())]
        if not read:
            return
        # (only the tensors, weakly: a dict held here would keep an old state alive)
        out.append(f"st = R[{k}]().__dict__.get('state', None) or {{}}")
        for i, p, slots in read:
            here = f"{where}.state[param {i}]"
            out.append(f"s = st.get(R[{self._root(p)}](), None) or {{}}")
            for name, v in slots.items():
                if isinstance(name, str) and id(v) in captured:
                    out.append(f"v = s.get({name!r}, M)")
                    self._guard(out, f"v is R[{self._root(v)}]()", f"{here}[{name!r}]",
                                _describe_obj(v))

    def slot_guards(self, read: frozenset) -> list[str]:
        """The guards of the optimizer slots: a slot this trace read at every call
        (``(id(group), name, index)`` in ``read``) keeps its type and sign (the Python
        decisions ember's optimizers make on it: ``if momentum != 0``), the others their
        value (a custom optimizer's ``p.grad * group["lr"]`` froze it)."""
        out = []
        for k, i, name, j, v, what in self.slots:
            group = self.roots[k]().param_groups[i]
            expr = f"R[{k}]().param_groups[{i}].get({name!r}, M)"
            if j is not None:
                expr = f"{expr}[{j}]"
            if (id(group), name, j) in read and type(v) in RUNTIME_NUMBERS:
                sign = int(v > 0) - int(v < 0)
                out.append(f"v = {expr}")
                self._guard(out, f"type(v) is R[{self._const(type(v))}]() and int(v > 0) - "
                            f"int(v < 0) == {sign}", what, f"a {type(v).__name__} of sign "
                            f"{sign} (read at every call)")
            else:
                self._value(out, expr, v, what, MAX_DEPTH)
        return out

    def _func(self, fn, where: str, root: bool = False) -> None:
        """A function: the globals its code names, its closure cells, its bound self."""
        if (root and not isinstance(fn, (types.FunctionType, types.MethodType))
                and isinstance(getattr(type(fn), "__call__", None), types.FunctionType)):
            # A callable object compiled: its state, then its ``__call__``'s code. (It was
            # not walked at all: ``self.scale`` changed, replays kept the traced value.)
            self._value(self.plain, f"R[{self._root(fn)}]()", fn, type(fn).__name__, 0)
            if _library(type(fn)):
                return
            self._func(type(fn).__call__, f"{type(fn).__qualname__}.__call__")
            return
        self_obj = getattr(fn, "__self__", None)
        if self_obj is not None and not isinstance(self_obj, types.ModuleType):
            if root:
                self._value(self.plain, f"R[{self._root(fn)}]().__self__", self_obj,
                            type(self_obj).__name__, 0)
            fn = getattr(fn, "__func__", fn)
        # ember's own code (Module.__call__ of a compiled module) hides no user state.
        if not isinstance(fn, types.FunctionType) or ((not root or self_obj is not None)
                                                      and _library(fn)):
            return
        k = self._root(fn)
        code = fn.__code__
        codes = _codes(code)
        self.codes.extend(codes)
        for c in codes:
            self.names.update(c.co_names)
            self.keys.update(k for k in c.co_consts if isinstance(k, (str, int)))
        glb = fn.__globals__
        gk = self._root(glb)
        for name in sorted(_global_names(codes)):
            if name in glb and ("global", gk, name) not in self.seen:
                self.seen[("global", gk, name)] = 1
                self._value(self.plain, f"R[{gk}]().get({name!r}, M)", glb[name],
                            f"global {name!r}", 1)
        for i, (name, cell) in enumerate(zip(code.co_freevars, fn.__closure__ or ())):
            try:
                v = cell.cell_contents
            except ValueError:   # not assigned yet
                continue
            self._value(self.plain, f"R[{k}]().__closure__[{i}].cell_contents", v,
                        f"closure variable {name!r}", 1)
        # Default arguments are state too: a mutable default (``cfg={"s": 1.0}``) changed
        # between calls was replayed with the traced value.
        if fn.__defaults__:
            self._value(self.plain, f"R[{k}]().__defaults__", fn.__defaults__,
                        f"default arguments of {fn.__qualname__}", 1)
        if fn.__kwdefaults__:
            self._value(self.plain, f"R[{k}]().__kwdefaults__", fn.__kwdefaults__,
                        f"keyword defaults of {fn.__qualname__}", 1)

    def _class_code(self, cls) -> None:
        """The methods of a user class (a model's forward): their globals are read too."""
        if ("class", id(cls)) in self.seen:
            return
        self.seen[("class", id(cls))] = 1
        for klass in cls.__mro__:
            if _library(klass) or klass is object:
                continue
            for v in vars(klass).values():
                f = v.__func__ if isinstance(v, (staticmethod, classmethod)) else v
                if isinstance(f, property):
                    f = f.fget
                if isinstance(f, types.FunctionType):
                    self._func(f, f.__qualname__)


# Optimizer hyperparameters that schedulers change between steps (``lr``; ``momentum`` and
# ``betas`` with OneCycleLR/CyclicLR's cycle_momentum): see ``_Builder._optimizer``.
RUNTIME = frozenset(("lr", "momentum", "betas"))

_REGISTRIES = frozenset(("_parameters", "_buffers", "_modules", "_forward_pre_hooks",
                         "_forward_hooks", "_non_persistent_buffers_set"))


# ---- helpers --------------------------------------------------------------------------

def _scalar_condition(v, b: _Builder) -> str | None:
    """The check that a slot still holds scalar ``v`` (by type and value), or None."""
    if v is None or v is True or v is False or v is MISSING:
        return "v is M" if v is MISSING else f"v is {v!r}"
    t = type(v)
    if t is int:
        return f"type(v) is int and v == {v!r}"
    if t is float:
        if v != v:
            return "type(v) is float and v != v"
        if v == 0.0:
            return f"type(v) is float and v == 0.0 and copysign(1.0, v) == {math.copysign(1.0, v)!r}"
        return f"type(v) is float and v == R[{b._const(v)}]()"
    if t in (str, bytes, complex):
        return f"type(v) is {t.__name__} and v == R[{b._const(v)}]()"
    if isinstance(v, np.generic):
        k = b._const(v)
        return f"type(v) is type(R[{k}]()) and (v == R[{k}]() or (v != v and R[{k}]() != R[{k}]()))"
    return None


def _codes(code: types.CodeType) -> list[types.CodeType]:
    """A code object and those nested in it (lambdas, comprehensions, inner functions)."""
    out, stack = [], [code]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(x for x in c.co_consts if isinstance(x, types.CodeType))
    return out


def _location(codes: list[types.CodeType], where: str) -> str:
    """file:line of the first use in the guarded code of the name a guard is about."""
    name = where.split("'")[1] if where.startswith(("global", "closure")) else \
        where.rsplit(".", 1)[-1].split("[")[0]
    for c in codes:
        for ins in dis.get_instructions(c):
            if ins.argval == name and ins.opname.startswith(("LOAD", "STORE")):
                line = ins.positions.lineno if ins.positions else None
                return f"{c.co_filename.rsplit('/', 1)[-1]}:{line or c.co_firstlineno}"
    return ""


def _is_tensor(v) -> bool:
    from ember.tensor import Tensor
    return isinstance(v, Tensor)


def _is_module(v) -> bool:
    from ember.nn.module import Module
    return isinstance(v, Module)


def _is_optimizer(v) -> bool:
    from ember.optim.optimizer import Optimizer
    return isinstance(v, Optimizer)


_GLOBAL_OPS = frozenset(("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME",
                         "STORE_NAME", "DELETE_NAME"))


def _global_names(codes: list) -> set:
    """The global names the code objects read or write: ``co_names`` also holds the
    attribute names (``batch.action``), whose globals of the same name (the DQN
    tutorial's loop variable ``action``) were guarded and recompiled every call. Code
    that reads globals some other way (``globals()["scale"]``) gets every name and string
    constant it has (such a read was not guarded at all)."""
    names = set()
    for c in codes:
        if "globals" in c.co_names or "vars" in c.co_names or "eval" in c.co_names:
            names.update(c.co_names)
            names.update(k for k in c.co_consts if isinstance(k, str))
            continue
        names.update(ins.argval for ins in dis.get_instructions(c)
                     if ins.opname in _GLOBAL_OPS)
    return names


def _is_scheduler(v) -> bool:
    # (ember's own, yet its counters are the user's state: a scheduler stepped inside
    # the call changes ``last_epoch``, which a replay would not)
    from ember.optim.lr_scheduler import LRScheduler
    return isinstance(v, LRScheduler)


def _walkable(v) -> bool:
    """Objects whose contents are followed: containers, user objects, ember modules,
    optimizers and lr schedulers, user functions, Python modules (the names used), bound
    methods."""
    if isinstance(v, type):   # a user class: its class attributes the code names
        return not _library(v)
    if _is_tensor(v):
        return False
    if type(v) in (list, tuple, dict) or isinstance(v, (dict, collections.deque)):
        # (a deque too: the DQN tutorial's replay memory; its length went unguarded and
        # a compiled ``if len(memory) < BATCH_SIZE: return`` kept returning)
        return True
    if _is_module(v) or _is_optimizer(v) or _is_scheduler(v):
        return True
    if isinstance(v, (types.FunctionType, types.MethodType)):
        return True
    if isinstance(v, types.ModuleType):
        return not _library_module(v)
    return hasattr(v, "__dict__") and not _library(type(v))


def _library_module(m: types.ModuleType) -> bool:
    return m.__name__.split(".")[0] in _SKIP_MODULES


def _describe_obj(v) -> str:
    if isinstance(v, types.ModuleType):
        return f"module {v.__name__}"
    if _is_tensor(v):
        return f"a tensor {list(v.shape)} at {id(v):#x}"
    name = getattr(v, "__qualname__", None) or type(v).__name__
    return f"<{name} at {id(v):#x}>"


def _short(v) -> str:
    if v is MISSING:
        return "absent"
    if _is_tensor(v):
        return f"a tensor {list(v.shape)} at {id(v):#x}"
    if isinstance(v, np.ndarray):
        return f"an array {list(v.shape)}"
    if isinstance(v, (list, tuple, dict)) and len(v) > 4:
        return f"a {type(v).__name__} of {len(v)}"
    if isinstance(v, _SCALARS) or isinstance(v, (list, tuple, dict, set, frozenset)):
        r = repr(v)
        return r if len(r) <= 60 else r[:57] + "..."
    return _describe_obj(v)
