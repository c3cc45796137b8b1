"""Lowering: a fused group of IR nodes -> a backend-neutral Kernel.

The kernel iterates over the group's full shape with the reduced dims moved last (so a
sum over dim 0 still reduces the kernel's trailing dims). Operands from outside the
group become Loads whose strides come from the arrays the group will read (views
included), broadcast to the member that reads them and mapped onto the iteration dims
that member runs along. Scalar constants become literals in the expression.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ember import dtypes
from ember.codegen.kernel import Expr, Kernel, Load, Store, _exact, contiguous_strides
from ember.codegen.policy import REDUCE_OPS
from ember.ops.elementwise import SPECIAL_POWERS

if TYPE_CHECKING:   # codegen never imports the IR at run time (the IR imports codegen)
    from ember.ir.passes.fuse import Group


def group_outputs(graph, group: Group, keep: set[int]) -> list[int]:
    """Members whose value is needed outside the group."""
    members = set(group.nodes)
    return [n for n in group.nodes
            if n in keep or any(u not in members for u in graph.users(n))]


def external_args(graph, group: Group) -> list[int]:
    members = set(group.nodes)
    out: dict[int, None] = {}   # ordered, with O(1) membership
    for n in group.nodes:
        for a in graph[n].args:
            if a not in members and a not in out and not _inline_const(graph, a):
                out[a] = None
    return list(out)


def _inline_const(graph, nid: int) -> bool:
    return graph[nid].op == "const" and graph.consts[nid].size == 1


def const_varies(graph, nid: int, reference: dict | None) -> bool:
    """Whether ``nid`` is a scalar float constant whose value differs in the ``reference``
    build (``DynamicDims.reference``): a number made from a size, as a mean's 1/N. A
    size-generic kernel reads it at run time (a "scalar" expr) instead of compiling it
    in, so that each size does not build code of its own."""
    if reference is None or not _inline_const(graph, nid):
        return False
    then = reference.get(("const", nid))
    now = graph.consts[nid].reshape(()).item()   # (a CuPy constant too)
    # (exactly: -0.0 is not 0.0; integers stay compiled in)
    return then is not None and isinstance(now, float) and _exact(then) != _exact(now)


def _iota(graph, nid: int) -> bool:
    """True for an integer constant holding 0, 1, ..., n-1 (``Load.iota``)."""
    if graph[nid].op != "const":
        return False
    c = graph.consts[nid]
    return (isinstance(c, np.ndarray) and c.ndim == 1 and c.size > 1 and c.dtype.kind in "iu"
            and bool((c == np.arange(c.size)).all()))


def varying_dims(graph, group: Group, reference: dict) -> list[bool]:
    """Per dim of ``group.full``: whether a member or an operand of the group has another
    size along it in the ``reference`` build (a value it lacks counts as varying)."""
    full = group.full
    varies = [False] * len(full)

    def note(nid: int, at: tuple, dims: list[int]) -> None:
        """Value ``nid`` read at shape ``at`` whose dims run along iteration ``dims``."""
        now, then = tuple(graph[nid].shape), reference.get(nid)
        lead = len(at) - len(now)
        for k, n in enumerate(now):
            if then is None or len(then) != len(now) or then[k] != n:
                varies[dims[lead + k]] = True

    for n in group.nodes:
        shape = tuple(graph[n].shape)
        note(n, shape, group.dim_map(n, shape))
        red = group.role[n] == "red"
        at = full if red else shape
        dims = list(range(len(full))) if red else group.dim_map(n, shape)
        for a in graph[n].args:
            if len(graph[a].shape) <= len(at):
                note(a, at, dims)
    return varies


def _unit_varies(graph, nid: int, reference: dict) -> bool:
    """Whether a size-1 dim of value ``nid`` may be a varying size at 1 (its size differs
    in the ``reference`` build), rather than a dim that broadcasts at every size."""
    now, then = tuple(graph[nid].shape), reference.get(nid)
    if then is None or len(then) != len(now):
        return True
    return any(n == 1 and m != 1 for n, m in zip(now, then))


def _unexpanded_unit_strides(graph, nid: int, at: tuple, st: tuple) -> tuple:
    """Strides of expand ``nid`` read at ``at`` with each size-1 dim that the expand kept
    (it was 1 in its input too) given its input's C-order stride: NumPy's broadcast_to
    sets it to 0, where a batch of 48 has the input's stride. Any stride reads a size-1
    dim the same, so this only makes a batch of 1 lay out like other sizes."""
    src = tuple(graph[graph[nid].args[0]].shape)
    out = tuple(graph[nid].shape)
    lead_src, lead_at = len(out) - len(src), len(at) - len(out)
    dense = contiguous_strides(src)
    fixed = list(st)
    for k, n in enumerate(out):
        j = k - lead_src
        if n == 1 and j >= 0 and src[j] == 1 and at[lead_at + k] == 1:
            fixed[lead_at + k] = dense[j]
    return tuple(fixed)


def broadcast_strides(array, shape: tuple, keep_unit: bool = False) -> tuple[int, ...]:
    """Element strides reading ``array`` broadcast to ``shape`` (0 on broadcast dims;
    on every size-1 dim unless ``keep_unit``, which keeps the array's own stride where
    ``shape`` is 1 too, as a size-generic kernel needs: see ``lower_group``)."""
    lead = len(shape) - array.ndim
    out = []
    for d, n in enumerate(shape):
        if d < lead:
            out.append(0)
            continue
        size = array.shape[d - lead]
        broadcast = size == 1 and not (keep_unit and n == 1)
        out.append(0 if broadcast else array.strides[d - lead] // array.itemsize)
    return tuple(out)


def lower_group(graph, group: Group, args: list[int], outputs: list[int], arrays: dict,
                name: str, generic: bool = False, dynamic: frozenset = frozenset(),
                reference: dict | None = None, scalars: bool = False) -> Kernel:
    """Build the Kernel of ``group``; ``arrays`` holds the operands' arrays (for strides).

    ``generic``: a size-generic kernel (``Kernel.generic``). Which of its dims vary comes
    from ``reference``, the node shapes of this graph built at other sizes (a dim whose
    size differs there), else from the call's varying sizes ``dynamic`` (by value). Its
    size-1 dims keep their strides where the size varies (a plain kernel gives every
    size-1 dim stride 0, a broadcast), so that a batch of 1 has the layout, and so the
    machine code, of a batch of 48. With ``scalars`` (the backend reads them) its float
    constants whose value differs from the reference build's become run-time "scalar"
    exprs (``const_varies``)."""
    full = group.full
    perm = [d for d in range(len(full)) if d not in group.rdims] + sorted(group.rdims)
    pos = {d: i for i, d in enumerate(perm)}
    varying = None
    if generic:
        varies = (varying_dims(graph, group, reference) if reference is not None
                  else [n in dynamic for n in full])
        varying = tuple(varies[d] for d in perm)

    def to_iteration(nid: int, shape: tuple, strides: tuple) -> tuple[int, ...]:
        """Per-dim strides of a value at ``nid``'s shape -> strides per iteration dim.
        (A generic kernel keeps a size-1 dim's stride where the full size is 1 too, but
        not on a reduced dim of a value with one value per row.)"""
        row = group.role.get(nid) in ("row", "red")
        out = [0] * len(full)
        for j, d in enumerate(group.dim_map(nid, shape)):
            if shape[j] != 1 or (generic and full[d] == 1
                                 and not (row and d in group.rdims)):
                out[pos[d]] = strides[j]
        return tuple(out)

    arg_index = {a: i for i, a in reversed(list(enumerate(args)))}   # first position
    loads: list[Load] = []
    exprs: list[Expr] = []
    load_ref: dict[tuple, int] = {}
    ref: dict[int, int] = {}
    values: list[float] = []        # the kernel's scalars

    def operand(user: int, a: int) -> int:
        if a in ref:
            return ref[a]
        d = graph[a]
        if _inline_const(graph, a):
            ref[a] = len(exprs)
            value = graph.consts[a].reshape(()).item()
            if generic and scalars and const_varies(graph, a, reference):
                exprs.append(Expr("scalar", (len(values),), d.dtype))
                values.append(float(value))
            else:
                exprs.append(Expr("const", (value,), d.dtype))
            return ref[a]
        # An outside value is read at the shape its user works at (a reduction reads
        # over the full shape); the same array read two ways is two Loads.
        red = group.role[user] == "red"
        at = full if red else tuple(graph[user].shape)
        unit = generic and (reference is None or _unit_varies(graph, a, reference))
        st = broadcast_strides(arrays[a], at, keep_unit=unit)
        if unit and d.op == "expand":
            st = _unexpanded_unit_strides(graph, a, at, st)
        it = (tuple(st[perm[i]] for i in range(len(full))) if red
              else to_iteration(user, at, st))
        key = (a, it)
        if key not in load_ref:
            load_ref[key] = len(exprs)
            loads.append(Load(arg_index[a], d.dtype, it, iota=_iota(graph, a)))
            exprs.append(Expr("load", (len(loads) - 1,), d.dtype))
        return load_ref[key]

    for n in group.nodes:
        d = graph[n]
        operands = tuple(operand(n, a) for a in d.args)
        if d.op in ("contiguous", "expand"):
            # The same value (an expand: read at the broadcast point, as NumPy would),
            # stored C-contiguously if an output.
            ref[n] = operands[0]
            continue
        op = REDUCE_OPS[d.op] if group.role[n] == "red" else d.op
        if op == "pow" and d.dtype.is_floating_point and exprs[operands[0]].dtype is d.dtype:
            e = exprs[operands[1]]
            if e.op == "const" and e.args[0] in SPECIAL_POWERS:   # as the registry and
                ref[n] = _special_power(exprs, operands[0], e.args[0], d.dtype)   # torch
                continue
            if graph[d.args[1]].shape == ():
                # A run-time scalar exponent (a symbolic Python number): the eager op
                # takes sqrt, 1/x, ... for the special values, so the kernel selects
                # them too ((-0.0) ** -0.5 is -inf there, inf through pow).
                ref[n] = _runtime_power(exprs, operands[0], operands[1], d.dtype)
                continue
        ref[n] = len(exprs)
        exprs.append(Expr(op, operands, d.dtype))
    stores = []
    for o in outputs:
        shape = tuple(graph[o].shape)
        stores.append(Store(ref[o], to_iteration(o, shape, contiguous_strides(shape))))
    kernel = Kernel(name, tuple(full[d] for d in perm), loads, exprs, stores,
                    reduce_dims=len(group.rdims), generic=generic, varying=varying,
                    scalars=tuple(values),
                    ops=[graph[n].op for n in group.nodes],
                    src=sorted({graph[n].src for n in group.nodes if graph[n].src}))
    _store_per_point(kernel)
    return kernel


def _special_power(exprs: list, x: int, v: float, dtype) -> int:
    """``x ** v`` for an exponent of ``SPECIAL_POWERS``, computed as the registry does
    (x * x, sqrt, 1 / ...): appends the exprs and returns the result's index."""
    def add(op, args):
        exprs.append(Expr(op, args, dtype))
        return len(exprs) - 1

    base = add("sqrt", (x,)) if abs(v) == 0.5 else x
    if abs(v) >= 2:
        base = add("mul", (x, x))
        if v == 3.0:
            base = add("mul", (base, x))
    if v > 0:
        return base
    return add("div", (add("const", (1.0,)), base))


def _runtime_power(exprs: list, x: int, p: int, dtype) -> int:
    """``x ** p`` for a uniform exponent ``p`` known only at run time: pow, but the
    registry's form (``_special_power``) wherever ``p`` is one of ``SPECIAL_POWERS``."""
    exprs.append(Expr("pow", (x, p), dtype))
    out = len(exprs) - 1
    for v in SPECIAL_POWERS:
        exprs.append(Expr("const", (v,), dtype))
        exprs.append(Expr("eq", (p, len(exprs) - 1), dtypes.bool_))
        cond = len(exprs) - 1
        special = _special_power(exprs, x, v, dtype)
        exprs.append(Expr("where", (cond, special, out), dtype))
        out = len(exprs) - 1
    return out


def _store_per_point(kernel: Kernel) -> None:
    """Give every full-shape output a per-point expr. An output computed from values
    broadcast along the reduced dims only (a bias expanded over the batch, in the kernel
    of the bias gradient's column sum) has one value per row, but is stored at every
    point: it is stored as ``where(ne(p, p), v, v)``, which is ``v`` whatever the
    per-point load ``p``, and which a backend computes and stores per point. (Where the
    reduced dims it is stored along have size 1, it is stored once per row.)"""
    if not kernel.reduce_dims:
        return
    nd, row = len(kernel.shape), kernel.row_level()
    lo = nd - kernel.reduce_dims
    cond = None
    for i, st in enumerate(kernel.stores):
        if not row[st.expr] or not any(st.strides[lo:]):
            continue
        if all(kernel.shape[d] == 1 for d in range(lo, nd) if st.strides[d]):
            kernel.stores[i] = Store(st.expr, st.strides[:lo] + (0,) * kernel.reduce_dims)
            continue
        if cond is None:
            point = next((j for j, e in enumerate(kernel.exprs)
                          if e.op == "load" and not row[j]), None)
            if point is None:   # validate() refuses it: it runs eagerly
                return
            cond = len(kernel.exprs)
            kernel.exprs.append(Expr("ne", (point, point), dtypes.bool_))
        kernel.exprs.append(Expr("where", (cond, st.expr, st.expr),
                                 kernel.exprs[st.expr].dtype))
        kernel.stores[i] = Store(len(kernel.exprs) - 1, st.strides)
