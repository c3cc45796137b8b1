"""A replay's effects on the caller, applied as eager applies them.

The IR is pure: a traced call's in-place writes are write-backs of whole storages at the
end, its ``.grad`` and ``.data`` assignments are recorded apart, and results that are
(views of) the caller's tensors are recorded as aliases. After a replay computed the
values, these functions write the caller's memory in place, redo the assignments and
hand back the results: the caller's own tensors and views of their memory where eager
would, fresh arrays otherwise.

>>> out = outputs(trace, env, leaves)     # after the plans ran over env
"""
from __future__ import annotations

import weakref

from ember import autograd
from ember.devices import array_module, device_of_array
from ember.ir.graph import Graph
from ember.ir.views import byte_view, overlaps, root
from ember.ops.registry import OPS
from ember.tensor import Tensor, array_of
from ember.tracer import pytree
from ember.tracer.segments import out_value

# Ops whose result may be a view of their first argument (besides those with OpDef.view).
MOVEMENT_VIEWS = frozenset(("reshape", "permute", "expand", "slice", "detach", "strided_view",
                            "to_device", "unfold2d"))


def outputs(trace, env: dict, leaves):
    """Apply the call's effects as eager would and return its result: memory written
    in place is written back into the caller's tensors, ``.grad`` and ``.data``
    assignments are redone, and results that are (views of) the caller's tensors
    are those tensors (views of that memory); the rest are fresh arrays."""
    g = trace.graph
    fx = trace.effects
    if fx is None:
        fx = trace.effects = effects(g, env)
    if fx is PURE:   # fresh results only, nothing to write: the common case
        made = [Tensor._wrap(env[n]) for n in g.outputs]   # (one per output: see entry.py)
        if trace.grad_outputs:
            _consumed(g, made, trace.grad_outputs)
        return pytree.unflatten(trace.out_spec, [out_value(kind, v, made)
                                                 for kind, v in trace.out_leaves])
    copies, staged, needed = fx
    tensors = {n: input_tensor(g, n, trace, leaves) for n in needed}
    values = [None if i in g.aliases else env[n] for i, n in enumerate(g.outputs)]
    for i in copies:          # fresh results the plan computed in someone's memory
        values[i] = values[i].copy()
    early = {v: env[v].copy() for v in staged}
    for inp, val in g.writebacks:
        new, mem = early.get(val, env[val]), env[inp]
        if new is not mem:    # else the kernel already wrote it in place
            mem[...] = new
        tensors[inp]._version += 1
    handed = [_handed(g, i, values[i], env, tensors) for i in range(len(g.outputs))]
    if trace.grad_outputs:
        _consumed(g, handed, [i for i in trace.grad_outputs if i not in g.aliases])
    for inp, out in g.grad_writes:
        tensors[inp]._grad = None if out is None else handed[out]
    for inp, out in g.rebinds:
        _rebind(tensors[inp], handed[out])
    outs = [out_value(kind, v, handed) for kind, v in trace.out_leaves]
    return pytree.unflatten(trace.out_spec, outs)


class _UsedGraph:
    """The op of a result's node in a call that ran backward through it itself."""

    __slots__ = ("name",)
    keeps_inputs, saves_out, saves_any = True, False, False

    def __init__(self, name: str) -> None:
        self.name = name


def _consumed(g: Graph, tensors: list, positions) -> None:
    """Results that required grad in a call that ran its own backward (a training
    step's loss, pix2pix's ``self.fake_B``): eager's still require grad and have a
    ``grad_fn``, whose graph that backward freed, so they do here too (a second
    backward raises as eager's does; a guard on ``requires_grad`` sees what eager has)."""
    for i in positions:
        t = tensors[i]
        node = autograd.Node(_UsedGraph(g[g.outputs[i]].op), (), {}, t)
        node.freed = True
        t._node, t._rg = node, True


def tensor_outputs(trace, tenv: dict, leaves):
    """``outputs`` for a replay that ran through dispatch (``tenv``: node -> Tensor, with
    autograd history): the results keep their history, write-backs and assignments do
    not record any."""
    g = trace.graph
    tensors = {n: input_tensor(g, n, trace, leaves) for n in effect_inputs(g)}
    memory = {n: array_of(tensors[n]) for n in tensors}   # before any .data rebinding
    with autograd.no_grad():
        new = {inp: array_of(tenv[val]).copy() for inp, val in g.writebacks}
        for inp, val in g.writebacks:
            memory[inp][...] = new[inp]
            tensors[inp]._version += 1
        handed = []
        for i, n in enumerate(g.outputs):
            how = g.aliases.get(i)
            if how is not None and (how[0] == "input" or any(
                    how[1] == inp for inp, _ in g.writebacks)):
                handed.append(_handed(g, i, None, memory, tensors))
            else:
                handed.append(tenv[n])
        for inp, out in g.grad_writes:
            tensors[inp]._grad = None if out is None else handed[out].detach()
        for inp, out in g.rebinds:
            _rebind(tensors[inp], handed[out].detach())
    for i in trace.retained_outputs:   # retain_grad() in the call, as eager's result has
        if handed[i].requires_grad:
            handed[i].retain_grad()
    outs = [out_value(kind, v, handed) for kind, v in trace.out_leaves]
    return pytree.unflatten(trace.out_spec, outs)


def effect_inputs(g: Graph) -> set:
    """Input nodes whose tensors a call's effects and results refer to."""
    ins = {i for i, _ in g.writebacks} | {i for i, _ in g.grad_writes} | {i for i, _ in g.rebinds}
    return ins | {how[1] for how in g.aliases.values()}


def effects(g: Graph, env: dict) -> tuple[list, list, set]:
    """Which values a replay must copy before it writes back: fresh results the plan
    computed as (views of) an input's memory (``y = x + 0`` simplified to ``x``, two
    results merged into one), and written-back values read from memory that another
    write-back overwrites first. Decided once: a plan's aliasing is the same every call."""
    input_roots = {id(root(env[n])) for n in g.inputs if n in env}
    written = {id(root(env[i])) for i, _ in g.writebacks}
    # Results share memory as eager's do only if they view one traced value: the passes
    # merge others (``u * 1`` and ``x * 1`` both became ``x``, one array), so a result
    # the caller writes into would change another. And a fresh result is not an
    # expanded view (``x.expand(2, 4) * 1`` became the expand), which refuses writes.
    # One traced value returned twice (``return y, y``; ``y.detach()`` of a y that needs
    # no grad is y's node) is one memory, as in eager: a write to one shows in the other.
    copies, owner = [], {}
    for i, n in enumerate(g.outputs):
        if i in g.aliases:
            continue
        a, base = env[n], _viewed(g, n)
        r = id(root(a))
        if (r in input_roots or owner.setdefault(r, base) != base
                or base == n and overlaps(a.shape, a.strides)):
            copies.append(i)
    # A gradient eager accumulates is a fresh C-order array (``_accumulate``); the plan's
    # may be a view (a weight's gradient computed transposed): copied, so that the next
    # call's trace of ``.grad`` (its layout is guarded) finds what eager would have left.
    for _, i in g.grad_writes:
        a = None if i is None else env[g.outputs[i]]
        if a is not None and i not in g.aliases and i not in copies \
                and not a.flags.c_contiguous:
            copies.append(i)
    staged = [v for i, v in g.writebacks
              if env[v] is not env[i] and id(root(env[v])) in written]
    needed = effect_inputs(g)
    if not (copies or staged or needed or g.writebacks or g.grad_writes or g.rebinds):
        return PURE
    return copies, staged, needed


PURE = ([], [], set())


def shares_written_memory(traces: list, leaves) -> bool:
    """True when an argument shares memory with another argument or captured tensor that
    the call writes in place: the traces assumed separate memory (running them would
    read values before the write that eager reads after it)."""
    for trace in traces:
        g = trace.graph
        if not g.writebacks:
            continue
        written = {i for i, _ in g.writebacks}
        arrays = [array_of(leaves[i][1]) for i in trace.arg_paths.values()]
        flags = [n in written for n in trace.arg_paths]
        for n in written:
            if g.sources[n].kind != "arg":
                t = g.sources[n].current()
                if t is not None:
                    arrays.append(array_of(t))
                    flags.append(True)
        if trace.fed:   # states read from module slots: whatever the user left there
            for n, src in g.sources.items():
                if src.kind == "attr" and n not in written and src.current() is not None:
                    arrays.append(array_of(src.current()))
                    flags.append(False)
        # The same array objects as at the last check have the same roots: the answer
        # is that check's (an optimizer step's parameters are the same every call).
        last = trace.unshared
        if len(last) == len(arrays) and all(r() is a for r, a in zip(last, arrays)):
            continue
        # Views of one storage share memory only where their bytes overlap: the
        # ``.grad``s a replay handed out are slices of one buffer, zeroed in place by the
        # next ``zero_grad`` (by storage alone, that call ran eagerly for nothing).
        seen: dict[int, list] = {}
        for a, w in zip(arrays, flags):
            same = seen.setdefault(id(root(a)), [])
            if any((w or w2) and _overlap(a, b) for b, w2 in same):
                return True
            same.append((a, w))
        try:
            trace.unshared = [weakref.ref(a) for a in arrays]
        except TypeError:   # an array type without weak references: check every call
            trace.unshared = []
    return False


def _overlap(a, b) -> bool:
    """Whether two views of one storage may share an element (their byte ranges meet)."""
    return type(a) is type(b) and array_module(device_of_array(a)).may_share_memory(a, b)


def _viewed(g: Graph, n: int) -> int:
    """The traced value whose memory ``n`` is: itself, or what it is a view of."""
    while _is_view(g, n) and g[n].args:
        n = g[n].args[0]
    return n


def _is_view(g: Graph, n: int) -> bool:
    op = g[n].op
    return op in MOVEMENT_VIEWS or op in OPS and getattr(OPS[op], "view", False)


def escaping(g: Graph) -> set[int]:
    """Values handed to the user (outputs, and what they view): never reused buffers."""
    out = set()
    stack = list(g.outputs)
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        if _is_view(g, n):
            stack.extend(g[n].args)
    return out


def input_tensor(g: Graph, nid: int, trace, leaves):
    """The caller's tensor behind input node ``nid``: an argument, or a captured one."""
    src = g.sources[nid]
    if src.kind != "arg":
        return src.current()
    return leaves[trace.arg_paths[nid]][1]


def meta(t) -> tuple:
    """What a plan built for a captured tensor assumed: shape, dtype, device, strides."""
    return (tuple(t.shape), t.dtype.name, str(t.device), array_of(t).strides)


def _handed(g: Graph, i: int, value, memory: dict, tensors: dict):
    """Output ``i`` as the tensor a caller gets."""
    how = g.aliases.get(i)
    if how is None:
        return Tensor._wrap(value)
    if how[0] == "input":
        return tensors[how[1]]
    _, n, shape, strides, offset, lstrides, loffset = how
    t = Tensor._wrap(byte_view(memory[n], shape, strides, offset))
    link = getattr(t, "_view_of", None)
    if link is not None:   # a view of the caller's tensor: one version counter, as eager
        link(tensors[n], OPS["strided_view"],
             {"shape": shape, "strides": lstrides, "offset": loffset})
    return t


def _rebind(t: Tensor, value: Tensor) -> None:
    """``t.data = value`` as a replay of the traced call does it."""
    if value is not t:
        t.data = value
