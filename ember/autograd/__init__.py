"""Reverse-mode autograd: a tape of Nodes and an iterative backward sweep.

Each differentiable op result carries a ``Node`` (its ``grad_fn``) that remembers the
op, its input tensors and attributes. ``backward`` orders the nodes topologically with
an explicit stack (deep graphs don't hit Python's recursion limit) and calls each op's
registry ``vjp``, which is written with ember ops.
"""
from __future__ import annotations

import os
import sys
import threading
import weakref

from ember.size import Size as _Size   # (an import in Unsaved.shape cost 3% of a step)

_state = threading.local()
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # ember/
_inside_ember: dict[str, bool] = {}   # code file name -> is it part of ember
# Objects watching backward sweeps (DistributedDataParallel's reducers): ``begin(order)``
# with the nodes about to run, ``leaf(t)`` after a leaf's ``.grad`` changed, ``end()``.
backward_observers: list = []


def is_grad_enabled() -> bool:
    return getattr(_state, "grad", True)


def _set_grad(mode: bool) -> None:
    _state.grad = bool(mode)


class _GradMode:
    _mode: bool

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set_grad(self._mode)
        return self

    def __exit__(self, *exc) -> None:
        _set_grad(self._prev)

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator that turns gradient recording off.

    >>> with ember.no_grad():
    ...     y = x * 2          # y.requires_grad is False
    """
    _mode = False


class enable_grad(_GradMode):
    """Context manager and decorator that turns gradient recording back on."""
    _mode = True


class set_grad_enabled(_GradMode):
    """Turn gradient recording on or off: at once as a call, for the block as a context
    manager, for the call as a decorator (as ``torch.set_grad_enabled``).

    >>> with ember.set_grad_enabled(False):
    ...     y = x * 2          # y.requires_grad is False
    """

    def __init__(self, mode: bool) -> None:
        self._prev = is_grad_enabled()
        self._mode = bool(mode)
        _set_grad(self._mode)

    def __enter__(self):
        return self

    def __call__(self, fn):
        _set_grad(self._prev)   # as a decorator it changes nothing until fn runs
        mode = self._mode
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class inference_mode(_GradMode):
    """``no_grad`` for inference, as ``torch.inference_mode`` (context manager and
    decorator; ``inference_mode(False)`` is a no-op). ember has no separate inference
    tensors: results are plain tensors that don't require grad.

    >>> @ember.inference_mode()
    ... def predict(x): return model(x)
    """

    def __init__(self, mode: bool = True) -> None:
        self._on = bool(mode)

    def __enter__(self):
        self._prev = is_grad_enabled()
        self._was = getattr(_state, "inference", False)
        if self._on:
            _set_grad(False)
            _state.inference = True
        return self

    def __exit__(self, *exc) -> None:
        _set_grad(self._prev)
        _state.inference = self._was

    def __call__(self, fn):
        import functools
        on = self._on

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(on):
                return fn(*args, **kwargs)
        return wrapper


def is_inference_mode_enabled() -> bool:
    """Inside an enabled ``inference_mode`` block?"""
    return getattr(_state, "inference", False)


_new = object.__new__


class Unsaved:
    """What a Node keeps of a tensor whose values its gradient never reads
    (``OpDef.saves_input``/``saves_out``, found from the vjp's bytecode): the metadata
    the vjp may read (shape, dtype, device, ``new_zeros``), the version counter, and
    (for an input) a weak reference to the tensor. So an intermediate nobody needs (the
    input of a bias add, the output of a matmul whose gradient reads only its inputs) is
    freed as soon as the forward pass drops it, not kept to the end of backward, as in
    PyTorch. ``get()`` is the tensor while it lives (``retain_grad`` may come later)."""

    __slots__ = ("_shape", "_np", "device", "_rg", "_vc", "_ref")
    _retains_grad, _node = False, None   # (a tensor gone: nobody can read its .grad)

    @classmethod
    def output(cls, data, device, vc: list) -> "Unsaved":
        """Of an op's result, or of a value a Node no longer needs (no reference kept)."""
        u = _new(cls)
        u._shape, u._np, u.device, u._rg, u._vc, u._ref = (data.shape, data.dtype, device,
                                                            False, vc, None)
        return u

    @classmethod
    def input(cls, t) -> "Unsaved":
        """Of an input with a history (so one that requires grad)."""
        u = _new(cls)
        u._shape, u._np, u.device, u._rg, u._vc = (t._data.shape, t._data.dtype, t._device,
                                                    True, t._vc)
        u._ref = weakref.ref(t)
        return u

    def get(self):
        return None if self._ref is None else self._ref()

    @property
    def shape(self):
        return _Size(self._shape)

    @property
    def dtype(self):
        from ember.dtypes import from_numpy_dtype
        return from_numpy_dtype(self._np)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def requires_grad(self) -> bool:
        return self._rg

    @property
    def _version(self) -> int:
        return self._vc[0]

    def new_zeros(self, *size, **kwargs):
        from ember import zeros
        kwargs.setdefault("dtype", self.dtype)
        kwargs.setdefault("device", self.device)
        return zeros(*size, **kwargs)

    def __repr__(self) -> str:
        return f"<unsaved {self.dtype.name}{list(self._shape)}>"


def _kept(op, inputs: tuple) -> tuple:
    """What a Node keeps of its inputs: each tensor whose value the gradient reads, or
    that is a leaf (its ``.grad`` is set), else an ``Unsaved`` record."""
    saves = getattr(op, "saves_inputs", None)
    if saves is None:   # not an OpDef: it may say per input
        keep = getattr(op, "saves_input", None)
        if keep is None:
            return inputs
        saves = [keep(i) for i in range(len(inputs))]
    if len(inputs) == 1:   # (the common case, without the loop)
        t = inputs[0]
        read = saves[0] if saves else getattr(op, "saves_varargs", True)
        return inputs if t._node is None or read else (Unsaved.input(t),)
    kept = None
    n = len(saves)
    for i, t in enumerate(inputs):
        if t._node is not None and not (saves[i] if i < n else op.saves_varargs):
            if kept is None:
                kept = list(inputs)
            kept[i] = Unsaved.input(t)
    return inputs if kept is None else tuple(kept)


class Node:
    """One recorded op application: what backward needs to send gradients to inputs."""

    __slots__ = ("op", "inputs", "attrs", "out", "versions", "out_version", "parents", "freed",
                 "where", "hooks", "__weakref__")

    def __init__(self, op, inputs, attrs, out) -> None:
        self.op = op
        self.inputs = inputs if getattr(op, "keeps_inputs", False) else _kept(op, inputs)
        self.attrs = attrs
        # A detached Tensor sharing the result's data and version counter (no reference
        # cycle): an in-place write through any view of the result bumps that counter.
        # Only if the gradient reads the output's value (else its metadata: Unsaved).
        self.out = out if type(out) is Unsaved or getattr(op, "saves_out", True) else \
            Unsaved.output(out._data, out._device, out._vc)
        # (``_vc[0]`` is ``_version``; list comprehensions: a Node is made per recorded op)
        self.versions = tuple([t._vc[0] for t in inputs])
        self.out_version = out._vc[0]
        # For the error when a saved value was changed in place (only ops that save one).
        self.where = _user_line() if getattr(op, "saves_any", True) else None
        # Where each input's gradient goes, fixed now: the producing Node, True for a leaf
        # that requires grad, None for a constant. Looking at ``t._node`` at backward
        # time would be wrong once an in-place op has given ``t`` a newer node.
        # (``_rg`` is requires_grad for a tensor that is not a view, without the property)
        self.parents = tuple([t._node if t._node is not None else (
            (t._rg if t._base is None else t.requires_grad) or None) for t in inputs])
        self.freed = False
        self.hooks = None   # Tensor.register_hook on the output (ember/autograd_hooks.py)

    def release(self) -> None:
        """After its backward (without ``retain_graph``): drop the saved values, as
        PyTorch frees saved tensors, so a loss the user still holds does not keep every
        activation of its graph alive. Leaves stay (their ``.grad``); parents stay."""
        self.inputs = tuple([t if p is True or type(t) is Unsaved else
                             Unsaved.output(t._data, t._device, t._vc)
                             for t, p in zip(self.inputs, self.parents)])
        if type(self.out) is not Unsaved:
            self.out = Unsaved.output(self.out._data, self.out._device, self.out._vc)

    def name(self) -> str:
        """torch's grad_fn name: ``MulBackward0``, ``LogSoftmaxBackward0``; a custom
        Function's class name plus ``Backward``, as torch's."""
        name = self.op.name
        if name[0].isupper():
            return name
        return "".join(p.capitalize() for p in name.split("_")) + "Backward0"

    def recorded_at(self) -> str:
        return "<unknown>" if self.where is None else "%s:%d" % self.where

    @property
    def next_functions(self) -> tuple:
        """``((node, 0), ...)`` per input, as torch's ``grad_fn.next_functions``: the
        Node that made it, an ``AccumulateGrad`` for a leaf that requires grad, else
        None (ember's ops have one output each, so the index is always 0)."""
        return tuple([(AccumulateGrad.of(t) if p is True else p, 0)
                      for p, t in zip(self.parents, self.inputs)])

    def __repr__(self) -> str:
        return f"<{self.name()}>"


class AccumulateGrad:
    """What ``next_functions`` shows for a leaf: torch's ``AccumulateGrad`` node, with
    the leaf as ``variable``. One per leaf (graph walkers compare nodes by identity); it
    holds the leaf weakly, as torch's leaf holds its accumulator."""

    __slots__ = ("_leaf", "__weakref__")
    _of: dict[int, "AccumulateGrad"] = {}
    next_functions: tuple = ()

    def __init__(self, leaf) -> None:
        self._leaf = weakref.ref(leaf)

    @classmethod
    def of(cls, leaf) -> "AccumulateGrad":
        node = cls._of.get(id(leaf))
        if node is None or node._leaf() is not leaf:
            node = cls._of[id(leaf)] = cls(leaf)
            weakref.finalize(leaf, cls._of.pop, id(leaf), None)
        return node

    @property
    def variable(self):
        return self._leaf()

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return "<AccumulateGrad>"


def _user_line():
    """(file, line) of the innermost frame outside ember: where a Node was recorded.
    Kept as a tuple, formatted only when an error needs it (this runs for every Node)."""
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        inside = _inside_ember.get(fn)
        if inside is None:
            inside = _inside_ember[fn] = os.path.abspath(fn).startswith(_PKG_DIR)
        if not inside:
            return fn, f.f_lineno
        f = f.f_back
    return None


def _toposort(root: Node | list) -> list[Node]:
    """Nodes reachable from ``root`` (a Node, or a list of them), each after every node
    that consumes it."""
    roots = root if isinstance(root, list) else [root]
    order: list[Node] = []
    seen = {id(r) for r in roots}
    for r in roots:
        stack = [(r, 0)]
        while stack:
            node, i = stack.pop()
            parents = node.parents
            while i < len(parents):
                child = parents[i]
                i += 1
                if type(child) is Node and id(child) not in seen:
                    seen.add(id(child))
                    stack.append((node, i))
                    stack.append((child, 0))
                    break
            else:
                order.append(node)
    order.reverse()
    return order


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, grad_variables=None, inputs=None) -> None:
    """Accumulate d(root)/d(leaf) * grad into every leaf's ``.grad``, for a tensor or a
    sequence of them (one pass: a tensor reached from two roots gets its hooks once,
    with the sum), as ``torch.autograd.backward``.

    >>> a = ember.tensor([1., 2.], requires_grad=True)
    >>> ember.autograd.backward([a.sum(), (a * a).sum()]); a.grad
    tensor([3., 5.])
    """
    if inputs is not None:
        raise NotImplementedError("autograd.backward(inputs=...) is not implemented")
    grad_tensors = grad_variables if grad_tensors is None else grad_tensors
    pairs = [(r, g.to(r.dtype)) for r, g in _seeded(tensors, grad_tensors, "gradients")]
    _run(pairs, create_graph if retain_graph is None else retain_graph, create_graph, None)


def _seeded(roots, seeds, what: str) -> list:
    """(root, seed) pairs from a tensor or a sequence of them and their gradients, as
    ``backward`` and ``grad`` take them: every root requires grad; a seed None is ones
    (for a one-element root only); a number becomes a tensor like its root."""
    from ember.tensor import Tensor, ones_like, tensor as as_tensor

    roots = (roots,) if isinstance(roots, Tensor) else tuple(roots)
    if seeds is None:
        seeds = (None,) * len(roots)
    else:
        seeds = (seeds,) if isinstance(seeds, Tensor) else tuple(seeds)
    if len(seeds) != len(roots):
        raise RuntimeError(f"got {len(seeds)} {what} for {len(roots)} tensors")
    pairs = []
    for r, g in zip(roots, seeds):
        if not r.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not "
                               "have a grad_fn")
        if g is None:
            if r.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = ones_like(r)
        elif not isinstance(g, Tensor):
            g = as_tensor(g, dtype=r.dtype, device=r.device)
        pairs.append((r, g))
    return pairs


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         only_inputs: bool = True, is_grads_batched: bool = False,
         materialize_grads: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs``, returned instead of
    accumulated into ``.grad`` (no tensor's ``.grad`` changes), as ``torch.autograd.grad``.
    ``create_graph=True`` records them, for higher derivatives (a gradient penalty).

    >>> x = ember.tensor([1., 2.], requires_grad=True)
    >>> ember.autograd.grad((x ** 3).sum(), x)
    (tensor([ 3., 12.]),)
    """
    from ember.tensor import Tensor

    if is_grads_batched:
        raise NotImplementedError("autograd.grad(is_grads_batched=True) (vmap over the "
                                  "gradients) is not implemented")
    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when "
                         "materialize_grads=True, but got: allow_unused=False.")
    allow_unused = materialize_grads or bool(allow_unused)
    ins = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    for t in ins:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    pairs = []
    for o, g in _seeded(outputs, grad_outputs, "grad_outputs"):
        if g.shape != o.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output has a shape of "
                               f"{list(g.shape)} and output has a shape of {list(o.shape)}.")
        pairs.append((o, g.to(o.dtype)))
    capture = {id(t): [t, None] for t in ins}
    _run(pairs, create_graph if retain_graph is None else retain_graph, create_graph, capture)
    result = []
    for t in ins:
        g = capture[id(t)][1]
        if g is None:
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
            if materialize_grads:
                g = t.new_zeros(t.shape)
        result.append(g)
    return tuple(result)


def _run(pairs: list, retain_graph: bool, create_graph: bool, capture: dict | None) -> None:
    """Send each (root, seed) pair's gradient back through the graph. Without
    ``capture``, leaves' (and retained non-leaves') gradients accumulate into ``.grad``;
    with it (``grad``), only the tensors it names get theirs, into it: no ``.grad``
    changes and no DDP observer hears of it."""
    from ember.tensor import Tensor
    from ember import autograd_hooks as hooks

    grads: dict[int, Tensor] = {}
    roots = []
    for root, seed in pairs:
        node = root._node
        if node is None:
            if not root.requires_grad:
                raise RuntimeError("element 0 of tensors does not require grad and does not "
                                   "have a grad_fn")
            if capture is None:   # a leaf: its gradient is the seed itself
                _accumulate(root, hooks.run_leaf_hooks(root, seed))
            elif id(root) in capture:
                _add(capture[id(root)], seed)
            continue
        prev = grads.get(id(node))
        grads[id(node)] = seed if prev is None else prev + seed
        if all(r is not node for r in roots):
            roots.append(node)
    if not roots:
        return
    # Tensors asked for whose value a node made: their gradient is the node's total.
    at_node = {}
    if capture:
        for t, _ in capture.values():
            if t._node is not None:
                at_node.setdefault(id(t._node), []).append(t)
    # Leaves with hooks: summed first, hooked once, as PyTorch; and retained non-leaves
    # whose node has hooks, filled with the gradient after the hooks.
    hooked: dict[int, list | dict] = {}
    order = _toposort(roots)
    observers = [o for o in backward_observers if o.begin(order)] if capture is None else []
    with (enable_grad() if create_graph else no_grad()):
        for node in order:
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.freed:
                raise RuntimeError(
                    "Trying to backward through the graph a second time (or directly access saved "
                    "tensors after they have already been freed). Specify retain_graph=True if you "
                    "need to backward through the graph a second time.")
            _check_saved(node)
            if node.hooks:
                g = hooks.run_hooks(node.hooks, g)
                for t in hooked.pop(id(node), {}).values():  # retain_grad: the hooked grad
                    _accumulate(t, g)
            for t in at_node.get(id(node), ()):
                _add(capture[id(t)], g)
            out = node.out
            if create_graph and type(out) is not Unsaved:
                out = _attached(node)
            in_grads = node.op.vjp(g, out, *node.inputs, **node.attrs)
            if anomaly.ENABLED[0]:
                anomaly.check(node, in_grads)
            for t, child, ig in zip(node.inputs, node.parents, in_grads):
                if ig is None or child is None:
                    continue
                if type(t) is Unsaved:   # the tensor, if anyone still holds it
                    real = t.get()
                    t = real if real is not None else t
                # (the arrays' shapes: no Size objects made for every gradient)
                if ig._data.shape != (t._shape if type(t) is Unsaved else t._data.shape):
                    # a vjp must undo broadcasting itself
                    raise AssertionError(f"{node.name()}: gradient shape {ig.shape} != input {t.shape}")
                if ig._data.dtype.kind == "c" and not t.dtype.is_complex:   # a real input's
                    from ember.dispatch import dispatch   # gradient: its real part (PyTorch)
                    ig = dispatch("complex_real", ig)
                if capture is not None:
                    if child is True and id(t) in capture:
                        _add(capture[id(t)], ig)
                elif child is True and hooks.LEAF_HOOKS and hooks.leaf_hooks(t) is not None:
                    prev = hooked.setdefault(id(t), [t, None])
                    prev[1] = ig if prev[1] is None else prev[1] + ig
                elif child is not True and child.hooks and t._retains_grad and t._node is child:
                    hooked.setdefault(id(child), {})[id(t)] = t
                elif child is True or (t._retains_grad and t._node is child):
                    _accumulate(t, ig)
                    for o in observers:
                        o.leaf(t)
                if child is not True:
                    key = id(child)
                    prev = grads.get(key)
                    grads[key] = ig if prev is None else prev + ig
            if not retain_graph:
                node.freed = True
                node.release()
        for entry in hooked.values():
            if type(entry) is list:   # a leaf with hooks
                _accumulate(entry[0], hooks.run_leaf_hooks(entry[0], entry[1]))
                for o in observers:
                    o.leaf(entry[0])
        if capture:   # hooks of the leaves asked for run on their total, as PyTorch
            for slot in capture.values():
                t, g = slot
                if g is not None and t._node is None and hooks.LEAF_HOOKS \
                        and hooks.leaf_hooks(t) is not None:
                    slot[1] = hooks.run_leaf_hooks(t, g)
        for o in observers:
            o.end()


def _attached(node: Node):
    """The node's saved result as a tensor the node made, for a gradient recorded with
    ``create_graph``: one that reads it (tanh's ``1 - out**2``, exp's ``out``) is then
    differentiated through it, as PyTorch's saved outputs are. (``Node.out`` is detached:
    a second derivative through it was silently missing, or absent altogether.)"""
    from ember import dispatch
    from ember.tensor import Tensor

    saved = node.out
    t = Tensor._wrap(saved._data, True)
    t._vc = saved._vc
    t._node = node
    if dispatch.tracer is not None:   # a compiled call: the same value as the saved one
        dispatch.tracer.alias(t, saved)
    return t


def _add(slot: list, g) -> None:
    """Add gradient ``g`` to a ``grad`` result slot [tensor, total]."""
    g = _as_grad_of(slot[0], g)
    slot[1] = g if slot[1] is None else slot[1] + g


def _as_grad_of(t, g):
    """``g`` as a gradient of ``t``: its dtype, and detached unless graphs are recorded."""
    g = g.detach() if not is_grad_enabled() else g
    return g.to(t.dtype) if g.dtype != t.dtype else g


def _check_saved(node: Node) -> None:
    """Raise if a value this node's gradient reads was written in place since it was saved."""
    op = node.op
    changed = [i for i, (t, v) in enumerate(zip(node.inputs, node.versions)) if t._version != v]
    out_changed = op.saves_out and node.out._version != node.out_version
    if not changed and not out_changed:
        return
    wants = tuple(p is not None for p in node.parents)
    needs = getattr(op, "needs_saved", None)
    if out_changed and (needs is None or needs(None, wants)):
        raise _modified(node, "the output 0", node.out, node.out_version)
    for i in changed:
        if op.saves_input(i) and (needs is None or needs(i, wants)):
            raise _modified(node, f"the input {i}", node.inputs[i], node.versions[i])


def _modified(node: Node, what: str, t, expected: int) -> RuntimeError:
    return RuntimeError(
        f"one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: {what} of {node.name()} (the {node.op.name} recorded at "
        f"{node.recorded_at()}), of shape {list(t.shape)}, is at version {t._version}; expected "
        f"version {expected} instead. A tensor shares its version with every view of its "
        f"storage: an in-place write through any of them changes it.")


def _accumulate(t, g) -> None:
    g = _as_grad_of(t, g)
    if t.grad is None:
        # A fresh tensor: later in-place accumulation must not write into someone's data.
        t.grad = g if g._node is not None else g._fresh_copy()
    else:
        t.grad = t.grad + g


# torch.autograd.Function and torch.autograd.function (defined on top of Node above).
from ember import autograd_anomaly as anomaly  # noqa: E402
from ember.autograd_anomaly import (detect_anomaly, is_anomaly_check_nan_enabled,  # noqa: E402,F401
                                    is_anomaly_enabled, set_detect_anomaly)


def set_anomaly_enabled(enabled: bool, check_nan: bool = True) -> None:
    """Turn anomaly detection on or off for good, as ``torch.set_anomaly_enabled``
    (``set_detect_anomaly`` is the same as a context manager).

    >>> ember.set_anomaly_enabled(True); ember.is_anomaly_enabled()
    True
    >>> ember.set_anomaly_enabled(False)
    """
    anomaly.ENABLED[0], anomaly._CHECK_NAN[0] = bool(enabled), bool(check_nan)

from ember import autograd_function as function  # noqa: E402
from ember.autograd_function import Function, FunctionCtx, once_differentiable  # noqa: E402,F401
# torch.autograd.Variable (legacy: a Tensor) and torch.autograd.gradcheck. As in torch,
# ``ember.autograd.gradcheck`` is the function; the module is importable by its torch
# path (``from ember.autograd.gradcheck import GradcheckError``).
from ember import autograd_variable as variable  # noqa: E402
from ember.autograd_variable import Variable  # noqa: E402,F401
from ember import autograd_gradcheck as _gradcheck_module  # noqa: E402
from ember.autograd_gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: E402,F401
sys.modules[__name__ + ".variable"] = variable
sys.modules[__name__ + ".gradcheck"] = _gradcheck_module
sys.modules[__name__ + ".function"] = function
from ember.autograd import functional  # noqa: E402,F401  (torch.autograd.functional)
