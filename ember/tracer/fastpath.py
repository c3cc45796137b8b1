"""The shortest path of a cache hit: one generated Python function per cache entry.

A generic hit flattens the arguments, builds the key tuple (``key.py``), hashes it, looks
up the entry, checks its guards, checks the captured tensors, walks the segment tree,
runs the plan and wraps the outputs through ``writeback.outputs``. For the common entry
(plain positional arguments, one segment, no autograd plans) all of this
is decided once: ``build`` writes a function that checks exactly the fields the key
holds, straight on the arguments, in the cheapest order, then runs the plan and wraps the
results. Anything it does not expect returns ``MISS`` before it has changed anything, and
the call takes the generic path, which decides as before. So every check of the generic
path still happens; a fast function is only ever stricter (a ``Parameter`` where the
entry saw a ``Tensor`` is a ``MISS``, then a generic hit).

>>> fast = build(compiled_function, entry, key, leaves)      # None: the entry is not eligible
>>> out = fast(args)                                  # MISS, or the call's result
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ember import autograd
from ember import autograd_hooks as _hooks
from ember import devices as _devices
from ember import dispatch as _dispatch
from ember import dtypes as _dtypes
from ember.amp import state as _amp
from ember.errors import OpError
from ember.ir.views import root
from ember.runtime.memory import Buffer
from ember.runtime.steps import KernelStep
from ember.tensor import Tensor
from ember.tracer import events, pytree
from ember.tracer import key as _key
from ember.tracer.events import clock
from ember.tracer.options import global_eager
from ember.tracer.symbolic import INT_BOUND, hold
from ember.tracer.writeback import PURE, outputs, shares_written_memory

MISS = object()   # "not this entry's call, or not the common case: take the generic path"
MAX_ARGS = 32     # beyond that the pairwise aliasing test is no cheaper than the key's


def build(owner, entry, key: tuple, leaves: list) -> Callable[[tuple], Any] | None:
    """The fast hit function of ``entry`` (for ``key``, the plain key tuple, of a call
    with argument ``leaves`` that hit it), or None when this entry needs the generic path
    (see ``eligible``)."""
    why = eligible(owner, entry, key)
    if why:
        return None
    return _Writer(owner, entry, key, leaves).function()


def eligible(owner, entry, key: tuple) -> str:
    """Why ``entry`` takes the generic path at every hit ("" if it need not)."""
    structure, grad, modes, leaves, alias = key
    if owner.mode != "default" or entry.state != "ready":
        return "mode or state"
    if alias is not None:
        return "aliasing arguments"
    if len(leaves) > MAX_ARGS or structure != _positional(len(leaves)):
        return "keyword or nested arguments"
    seg = entry.root
    if seg is None or seg.obs is not None or seg.plan is None or len(entry.traces) != 1:
        return "graph breaks"
    trace = entry.traces[0]
    if seg.trace is not trace:
        return "segment trace"
    if trace.effects is None and _autograd(entry, key) != "always":
        return "effects not known yet"
    if any(kind == "S" for kind, _ in trace.out_leaves):
        return "a returned item()"
    return ""


def _autograd(entry, key: tuple) -> str:
    """Whether a hit of ``entry`` runs its compiled forward/backward pair, as
    ``Entry.run`` decides: "always", "never", or "captured" (when a captured tensor
    requires grad that did not when traced, read at each call)."""
    trace = entry.traces[0]
    if trace.graph.grad_writes:   # a call that runs backward itself
        return "never"
    grad = key[1]
    if trace.grad_outputs or grad and any(p[0] == "T" and p[4] for p in key[3]):
        return "always"
    return "captured" if grad and entry.captured else "never"


def _positional(n: int):
    """The structure key of a call with ``n`` plain positional arguments."""
    args = tuple((None,) * n)
    leaves, spec = pytree.flatten_call(args, {})
    return pytree.spec_key(spec)


class _Writer:
    """Writes the source of one entry's fast function and its namespace."""

    def __init__(self, owner, entry, key: tuple, leaves: list) -> None:
        self.owner, self.entry, self.key = owner, entry, key
        self.types = [type(v) for _, v in leaves]   # Tensor, or a subclass (Parameter)
        self.arrays = [type(v._data) if isinstance(v, Tensor) else None for _, v in leaves]
        self.ns: dict[str, Any] = {}
        self.lines: list[str] = []
        self.extra: list[str] = []   # a second function (autograd_lines)

    def name(self, value, hint: str) -> str:
        """A namespace name bound to ``value``."""
        n = f"{hint}{len(self.ns)}"
        self.ns[n] = value
        return n

    def plan_lines(self, plan, args: set, pad: str) -> None:
        """``plan.run(env)``'s work as straight-line code over ``env`` (Plan.run copies
        env and exports; here the plan's own ids are used as they are). Steps are called
        from the plan's live list, so a step replaced there later (the perf channel times
        steps by wrapping them) is the one that runs; a kernel step is inlined as its
        direct call while it is still the step in its place."""
        L = self.lines
        ready = set(args)   # values known to be exactly NumPy arrays
        steps = self.name(plan.steps, "STEPS")
        if plan.consts:
            L.append(f"{pad}env.update({self.name(plan.consts, 'CONSTS')})")
            ready |= {n for n, c in plan.consts.items() if type(c) is np.ndarray}
        if plan.fresh:
            L.append(f"{pad}{self.name(plan.fresh_constants, 'FRESH')}(env)")
        for i, step in enumerate(plan.steps):
            call = _direct(step, ready)
            if call is None:
                L.append(f"{pad}{steps}[{i}](env)")
                writes = getattr(step, "writes", None)
                if writes is None:   # a wrapped step: nothing known after it
                    ready.clear()
                else:
                    ready -= set(writes)
                continue
            # (the namespace keeps the step, so the kernel's machine code, alive)
            keep = self.name(step, "KEEP")
            L.append(f"{pad}if {steps}[{i}] is {keep}:")
            outs = [f"o{len(self.ns)}_{j}" for j in range(len(step.buffers))]
            for o, b in zip(outs, step.buffers):
                L.append(f"{pad}    {o} = {self.name(b, 'B')}.get(env)")
            ins = ", ".join(f"env[{r!r}]" for r in step.reads)
            L.append(f"{pad}    {self.name(call, 'K')}({ins}, {', '.join(outs)})")
            for w, o in zip(step.writes, outs):
                L.append(f"{pad}    env[{w!r}] = {o}")
            L.append(f"{pad}else:")
            L.append(f"{pad}    {steps}[{i}](env)")
            ready |= set(step.writes)

    def function(self) -> Callable[[tuple], Any]:
        owner, entry = self.owner, self.entry
        _, grad, _, leaves, _ = self.key
        seg, trace = entry.root, entry.traces[0]
        n = len(leaves)
        L = self.lines
        miss = "return MISS"
        ns = self.ns
        ns.update(MISS=MISS, G=global_eager, LOCAL=_dispatch._local, root=root,
                  GRAD=autograd._state, AMP=_amp.state, HOOKV=_hooks.LEAF_HOOKS_VERSION,
                  ENTRY=entry, OWNER=owner, C=owner.counters, LOCK=owner._lock, EV=events,
                  clock=clock, OpError=OpError, copysign=math.copysign, WRAP=Tensor._wrap,
                  AMPKEY=_amp.key, DT=_dtypes, F32=_dtypes.float32, DEV=_devices._DEFAULT,
                  CPU=_devices.CPU, DEFAULTS=_key.defaults, ASARRAY=np.asarray)
        L.append("def fast(args):")
        segn, plan, steps = (self.name(seg, "SEG"), self.name(seg.plan, "PLAN"),
                             self.name(seg.plan.steps, "SL"))
        L.append(f"    if len(args) != {n} or G[0] or LOCAL.tracer is not None "
                 f"or OWNER.mode != 'default' or ENTRY.state != 'ready' or ENTRY.root is not {segn} "
                 f"or {segn}.plan is not {plan} or {plan}.steps is not {steps}: {miss}")
        names = [f"a{i}" for i in range(n)]
        if n:
            L.append(f"    {', '.join(names)}{',' if n == 1 else ''} = args")
        arrays = []
        # Symbolic numbers (symbolic.py): the call gives the number, the plans its array
        symbolic = {i for i, _ in owner.symbols.positions}
        if symbolic:
            L.append(f"    if OWNER.symbols.positions is not "
                     f"{self.name(owner.symbols.positions, 'POS')}: {miss}")
        for i, part in enumerate(leaves):
            a = names[i]
            if i in symbolic and part[0] == "T":
                d = f"d{i}"
                arrays.append(d)
                if part[2] == np.int64:
                    L.append(f"    if type({a}) is not int or not -{INT_BOUND} <= {a} <= "
                             f"{INT_BOUND}: {miss}")
                else:
                    L.append(f"    if type({a}) is not float: {miss}")
                L.append(f"    {d} = ASARRAY({a}, {self.name(part[2], 'DT')})")
            elif part[0] == "T":
                _, shape, dtype, device, rg, strides = part
                t = self.types[i]
                d = f"d{i}"
                arrays.append(d)
                L.append(f"    if type({a}) is not {self.name(t, 'T')}: {miss}")
                L.append(f"    {d} = {a}._data")
                L.append(f"    if type({d}) is not {self.name(self.arrays[i], 'AT')}: {miss}")
                dt, dv = self.name(dtype, "DT"), self.name(device, "DV")
                L.append(f"    if ({d}.shape != {shape!r} or {d}.strides != {strides!r} or "
                         f"({d}.dtype is not {dt} and {d}.dtype != {dt}) or "
                         f"({a}._device is not {dv} and {a}._device != {dv})): {miss}")
                L.append(f"    if ({a}._rg if {a}._base is None else {a}.requires_grad) "
                         f"!= {rg!r}: {miss}")
            elif part[0] == "V":
                L.append(f"    if not ({_scalar_test(a, part, self)}): {miss}")
            else:
                L.append(f"    if type({a}) is not {self.name(part[1], 'O')}: {miss}")
        if len(arrays) > 1:
            # The key's aliasing field is None: no two tensor arguments share memory.
            roots = [f"r{d[1:]}" for d in arrays]
            for r, d in zip(roots, arrays):
                L.append(f"    {r} = {d} if {d}.base is None else root({d})")
            pairs = [f"{x} is {y}" for j, x in enumerate(roots) for y in roots[j + 1:]]
            L.append(f"    if {' or '.join(pairs)}: {miss}")
        L.append(f"    if GRAD.__dict__.get('grad', True) is not {bool(grad)!r}: {miss}")
        modes = self.key[2]
        if modes is None:
            L.append(f"    if AMP.modes or HOOKV[0] or DT._default_float is not F32 or "
                     f"DEV[0] is not CPU: {miss}")
        else:   # (autocast key, leaf-hook version, defaults): as in key_fields
            L.append(f"    if HOOKV[0] != {modes[1]!r} or AMPKEY() != "
                     f"{self.name(modes[0], 'AK')} or DEFAULTS() != {modes[2:]!r}: {miss}")
        guards = entry.guards
        g = trace.graph
        pure = trace.effects is PURE
        auto = _autograd(entry, self.key)
        leaves_used = not pure or auto != "never" or (guards is not None and guards.where
                                                      and "L[" in guards.source)
        if leaves_used or symbolic:   # the (path, value) leaves, as the generic path has
            paths = self.name([p for p, _ in pytree.flatten_call((None,) * n, {})[0]], "P")
            values = ", ".join(f"WRAP(d{i})" if i in symbolic else names[i] for i in range(n))
            L.append(f"    L = list(zip({paths}, ({values}{',' if n == 1 else ''})))")
        else:
            L.append("    L = None")
        if entry.predicates is not None and symbolic:   # (a list that later traces extend)
            L.append(f"    if {self.name(hold, 'HOLD')}({self.name(entry.predicates, 'PR')}, "
                     f"L): {miss}")
        if guards is not None and guards.where:
            L.append(f"    if {self.name(guards.check, 'GC')}(L) != -1: {miss}")
        if entry.captured or entry.none_grads:
            L.append(f"    if {self.name(entry.captured_changed, 'CC')}(): {miss}")
        if g.writebacks:   # Entry.run runs such a call eagerly (the generic path says why)
            L.append(f"    if {self.name(shares_written_memory, 'SHARES')}"
                     f"({self.name(entry.traces, 'TRACES')}, L): {miss}")
        if auto == "always":
            self.autograd_lines(trace)
            return self.finish()
        if auto == "captured":   # gradients flow from a captured tensor: the pair runs
            L.append(f"    if {self.name(entry.captured_need_grad, 'CNG')}():")
            L.append("        return autograd(args, L)")
            self.autograd_lines(trace, name="autograd")
        if trace.effects is None:
            L.append(f"    {miss}")   # (not known yet: the generic path finds out)
            return self.finish()
        # From here on the call is this entry's hit: what _hit and Entry.run do.
        L.append("    with LOCK:")
        L.append("        C['calls'] += 1")
        L.append("        C['cache_hits'] += 1")
        L.append("        H = EV.HANDLERS.get('hit')")
        L.append("        if H: t0 = clock()")
        env = ", ".join(f"{nid!r}: {arrays[_tensor_index(leaves, i)]}"
                        for nid, i in trace.arg_paths.items())
        L.append(f"        env = {{{env}}}")
        L.append("        try:")
        if seg.captured:
            L.append(f"            {self.name(entry._fill_captured, 'FILL')}"
                     f"({self.name(seg, 'SEG')}, env)")
        exports = dict(seg.plan.exports)
        if pure and all(g.outputs[v] in exports for kind, v in trace.out_leaves
                        if kind == "T"):
            # The plan's steps, inlined (the values stay in ``env``: plan node ids)
            exact = {nid for nid, i in trace.arg_paths.items() if self.arrays[i] is np.ndarray}
            before = len(L)
            self.plan_lines(seg.plan, exact, "            ")
            if len(L) == before:   # no steps (the result is Python values or the inputs)
                L.append("            pass")
            result = {t: n for t, n in exports.items()}
        else:
            L.append(f"            {self.name(seg.plan.run, 'RUN')}(env)")
            result = {n: n for n in g.outputs}
        if seg.captured:
            from ember.tracer.entry import Stale
            L.append(f"        except {self.name(Stale, 'STALE')} as e:")
            L.append("            OWNER._fallback(f'a call ran eagerly: {e}')")
            L.append("            return OWNER._eager(args, {})")
        L.append("        except Exception as e:   # (CompiledFunction._hit)")
        L.append("            if not OWNER._can_rerun(ENTRY, e): raise")
        L.append("            return OWNER._rerun_eagerly(args, {}, e)")
        wrapped = sorted({v for kind, v in trace.out_leaves if kind == "T"})
        for v in wrapped:   # once per output: a tensor returned twice is one object
            L.append(f"        o{v} = WRAP(env[{result[g.outputs[v]]!r}])")
        # (a value by name, not repr: a dtype, a device or float('nan') has no literal)
        values = [self.name(v, "V") if kind == "V" else f"o{v}" for kind, v in trace.out_leaves]
        if not pure:   # write-backs, .grad and .data assignments, aliased results
            L.append(f"        out = {self.name(outputs, 'OUTPUTS')}"
                     f"({self.name(trace, 'TRACE')}, env, L)")
        elif trace.out_spec == ("leaf", None, None):
            L.append(f"        out = {values[0]}")
        else:
            spec = self.name(trace.out_spec, "SPEC")
            L.append(f"        out = {self.name(pytree.unflatten, 'UNF')}({spec}, "
                     f"[{', '.join(values)}])")
        L.append("        if H:")
        L.append("            s = clock() - t0")
        L.append("            for h in H: h(OWNER, ENTRY, s)")
        L.append("        return out")
        return self.finish()

    def autograd_lines(self, trace, name: str = "") -> None:
        """The hit through the compiled forward/backward pair (``Entry.run``): inline, or
        as a second function ``name`` of the namespace (``AUTOGRAD``)."""
        L = self.extra if name else self.lines
        pad = "    "
        if name:
            L.append(f"def {name}(args, L):")
        plans = self.name(self.entry, "E")
        L.append(f"{pad}P = {plans}.autograd_plans")
        L.append(f"{pad}if not P: return MISS   # not built yet, or unavailable: generic")
        L.append(f"{pad}with LOCK:")
        L.append(f"{pad}    C['calls'] += 1")
        L.append(f"{pad}    C['cache_hits'] += 1")
        L.append(f"{pad}    H = EV.HANDLERS.get('hit')")
        L.append(f"{pad}    if H: t0 = clock()")
        L.append(f"{pad}    try:")
        L.append(f"{pad}        outs = P.forward(L)")
        L.append(f"{pad}    except Exception as e:   # (CompiledFunction._hit)")
        L.append(f"{pad}        if not OWNER._can_rerun(ENTRY, e): raise")
        L.append(f"{pad}        return OWNER._rerun_eagerly(args, {{}}, e)")
        values = ", ".join(self.name(v, "V") if kind == "V" else f"outs[{v!r}]"
                           for kind, v in trace.out_leaves)
        spec = self.name(trace.out_spec, "SPEC")
        L.append(f"{pad}    out = {self.name(pytree.unflatten, 'UNF')}({spec}, [{values}])")
        L.append(f"{pad}    if H:")
        L.append(f"{pad}        s = clock() - t0")
        L.append(f"{pad}        for h in H: h(OWNER, ENTRY, s)")
        L.append(f"{pad}    return out")

    def finish(self) -> Callable[[tuple], Any]:
        source = "\n".join(self.lines + self.extra) + "\n"
        code = compile(source, f"<ember fast hit of {getattr(self.owner, '__name__', 'fn')}>",
                       "exec")
        exec(code, self.ns)
        fast = self.ns["fast"]
        fast.source = source
        return fast


def _direct(step, ready: set):
    """``f(*inputs, *outputs)`` to call kernel step ``step`` straight
    (``CompiledKernel.direct``)
    when its checks in ``run`` are sure to pass: it reads only arrays in ``ready`` (known
    NumPy arrays), its buffers are NumPy buffers of the kernel's output dtypes and sizes.
    Else None (the step is called as it is)."""
    if type(step) is not KernelStep or not all(r in ready for r in step.reads):
        return None
    direct = getattr(step.compiled, "direct", None)
    call = direct() if direct is not None else None
    if call is None or len(step.reads) != step.compiled.num_inputs:
        return None
    outs = zip(step.buffers, step.compiled._out_np, step.compiled.out_sizes)
    if len(step.buffers) != step.compiled.num_outputs or not all(
            type(b) is Buffer and b.xp is np and b.dtype == d and math.prod(b.shape) == n
            for b, d, n in outs):
        return None
    return call


def _tensor_index(leaves: tuple, i: int) -> int:
    """Position of leaf ``i`` among the tensor leaves."""
    return sum(1 for p in leaves[:i] if p[0] == "T")


def _scalar_test(a: str, part: tuple, w: _Writer) -> str:
    """The test that Python scalar ``a`` gives the key's ``ScalarKey`` fields ``part``
    (stricter: the exact type, where the key holds its name)."""
    _, type_name, value = part[:3]
    if type_name == "NoneType":
        return f"{a} is None"
    if type_name == "bool":
        return f"{a} is {value!r}"
    if type_name == "float":
        if value == "nan":
            return f"type({a}) is float and {a} != {a}"
        if value == 0.0:
            return (f"type({a}) is float and {a} == 0.0 and "
                    f"copysign(1.0, {a}) == {part[3]!r}")
        return f"type({a}) is float and {a} == {w.name(value, 'F')}"
    if type_name in ("int", "str"):
        return f"type({a}) is {type_name} and {a} == {w.name(value, 'K')}"
    return "False"   # a subclass of a scalar type: the generic key decides
