"""``torch.func``'s transforms, built on ember's autograd.

``grad``, ``grad_and_value``, ``vjp``, ``jvp``, ``jacrev``, ``jacfwd`` and ``hessian`` run
the function under autograd and differentiate with ``autograd.grad`` (``create_graph``,
so the transforms nest: ``grad(grad(f))``); ``jacfwd`` and ``jvp`` give forward-mode's
values through reverse mode (ember has no dual numbers). ``vmap`` maps the function over
a dim by calling it once per index and stacking the results: torch's semantics for
functions that treat samples independently, at the cost of a Python loop.
``functional_call`` runs a module with other tensors in place of its parameters and
buffers.

>>> import ember
>>> from ember.func import grad
>>> grad(lambda x: (x ** 3).sum())(ember.tensor([1.0, 2.0]))
tensor([ 3., 12.])
>>> grad(grad(lambda x: x.sin()))(ember.tensor(0.5))   # -sin(0.5)
tensor(-0.4794)
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

from ember import autograd
from ember.tracer.pytree import flatten, unflatten
from ember.tensor import Tensor, stack, zeros_like

__all__ = ["functional_call", "grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd",
           "hessian", "vmap", "stack_module_state", "replace_all_batch_norm_modules_"]


# ---- functional_call ------------------------------------------------------------------

def functional_call(module: Any, parameter_and_buffer_dicts: Any, args: Any = (),
                    kwargs: dict | None = None, *, tie_weights: bool = True,
                    strict: bool = False) -> Any:
    """``module(*args, **kwargs)`` with the tensors of ``parameter_and_buffer_dicts`` (a
    dict by dotted name, or several) in place of its parameters and buffers; the module
    is unchanged afterwards.

    >>> lin = ember.nn.Linear(2, 1)
    >>> w = {"weight": ember.ones(1, 2), "bias": ember.zeros(1)}
    >>> functional_call(lin, w, (ember.tensor([[1.0, 2.0]]),))
    tensor([[3.]])
    """
    dicts = parameter_and_buffer_dicts
    if isinstance(dicts, dict):
        dicts = (dicts,)
    merged: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if k in merged:
                raise ValueError(f"functional_call: {k!r} appeared in more than one dict")
            merged[k] = v
    if strict:
        known = {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_buffers()}
        missing, unexpected = sorted(known - set(merged)), sorted(set(merged) - known)
        if missing or unexpected:
            raise RuntimeError(f"functional_call: missing keys {missing}, unexpected keys "
                               f"{unexpected}")
    if not isinstance(args, tuple):
        args = (args,)
    with _swapped(module, merged):
        return module(*args, **(kwargs or {}))


@contextlib.contextmanager
def _swapped(module: Any, tensors: dict[str, Any]):
    """Each dotted name's tensor set on its owner as a plain attribute (shadowing the
    registered parameter or buffer), restored after."""
    saved = []
    try:
        for name, value in tensors.items():
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            for registry in ("_parameters", "_buffers"):
                reg = owner.__dict__.get(registry)
                if reg is not None and attr in reg:
                    saved.append((reg, attr, reg[attr]))
                    reg[attr] = value
                    break
            else:
                saved.append((owner.__dict__, attr, owner.__dict__.get(attr, _MISSING)))
                owner.__dict__[attr] = value
        yield
    finally:
        for reg, attr, old in reversed(saved):
            if old is _MISSING:
                reg.pop(attr, None)
            else:
                reg[attr] = old


_MISSING = object()


# ---- reverse mode ---------------------------------------------------------------------

def _argnums(argnums: int | Sequence[int], n: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -n <= a < n:
            raise RuntimeError(f"Got argnums={a} but only {n} positional inputs")
    return tuple(a % n for a in nums)


def _top(xs: Sequence[Any]) -> bool:
    """Whether a transform is the outermost: none of its inputs carries a gradient from
    an enclosing transform or from the caller's own autograd. The outermost one returns
    plain tensors (no history), as torch.func's do."""
    return not any(isinstance(x, Tensor) and x.requires_grad for x in xs)


def _plain(x: Any, top: bool) -> Any:
    if not top:
        return x
    if isinstance(x, (tuple, list)):
        return type(x)(_plain(v, top) for v in x)
    return x.detach() if isinstance(x, Tensor) else x


def _tracked(x: Any) -> Tensor:
    """``x`` as a tensor the call's gradient can be taken with respect to: a fresh leaf,
    or (inside an outer transform) a view that keeps x's own history."""
    if not isinstance(x, Tensor):
        raise RuntimeError(f"grad: expected the differentiated inputs to be tensors, got "
                           f"{type(x).__name__}")
    if not x.is_floating_point() and not x.is_complex():
        raise RuntimeError("grad: only floating point inputs can be differentiated")
    return x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)


def _grads(out: Any, inputs: list[Tensor], grad_out: Any = None,
           graph: bool = True) -> list[Tensor]:
    """d out / d inputs (zeros where an input does not reach the output); ``graph``: with
    a graph, so that an enclosing transform can differentiate again. The graph of ``out``
    is kept (a Jacobian takes one pass per output element)."""
    got = autograd.grad(out, inputs, grad_outputs=grad_out, create_graph=graph,
                        retain_graph=True, allow_unused=True)
    return [zeros_like(x) if g is None else g for g, x in zip(got, inputs)]


def grad_and_value(func: Callable, argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable:
    """``f(*args) -> (gradient, value)`` (``((gradient, (value, aux))`` with ``has_aux``);
    the function must return a one-element tensor.

    >>> grad_and_value(lambda x: (x * x).sum())(ember.tensor([3.0]))
    (tensor([6.]), tensor(9.))
    """
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args))
        args = list(args)
        # (torch.func differentiates with respect to nests too: a dict of parameters)
        trees = [flatten(args[a]) for a in nums]
        top = _top([x for leaves, _ in trees for _, x in leaves])
        tracked = []
        for a, (leaves, spec) in zip(nums, trees):
            leaves = [_tracked(x) for _, x in leaves]
            tracked.append(leaves)
            args[a] = unflatten(spec, leaves)
        with autograd.enable_grad():
            result = func(*args, **kwargs)
        out, aux = result if has_aux else (result, None)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise RuntimeError("grad: expected the function to return a tensor with a single "
                               "element")
        flat = _plain(_grads(out, [x for leaves in tracked for x in leaves], graph=not top),
                      top)
        gs, i = [], 0
        for leaves, (_, spec) in zip(tracked, trees):
            gs.append(unflatten(spec, flat[i:i + len(leaves)]))
            i += len(leaves)
        g = gs[0] if isinstance(argnums, int) else tuple(gs)
        out = _plain(out, top)
        return (g, (out, _plain(aux, top))) if has_aux else (g, out)
    return wrapper


def grad(func: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """``f(*args) ->`` the gradient of ``func`` (a one-element output) with respect to
    ``args[argnums]`` (a tuple of them for a sequence of argnums); ``(gradient, aux)``
    with ``has_aux``."""
    both = grad_and_value(func, argnums, has_aux)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g, value = both(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def vjp(func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(func(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` gives one gradient per primal.

    >>> out, f = vjp(lambda x: x * 2, ember.ones(2)); f(ember.tensor([1.0, 3.0]))
    (tensor([2., 6.]),)
    """
    top = _top(primals)
    xs = [_tracked(p) for p in primals]
    with autograd.enable_grad():
        result = func(*xs)
    out, aux = result if has_aux else (result, None)

    def vjp_fn(cotangents: Any) -> tuple:
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        cots = list(cotangents) if isinstance(cotangents, (tuple, list)) else [cotangents]
        return tuple(_plain(_grads(outs, xs, cots, graph=not top), top))
    if has_aux:
        return _plain(out, top), vjp_fn, _plain(aux, top)
    return _plain(out, top), vjp_fn


def jvp(func: Callable, primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False) -> tuple:
    """``(func(*primals), J @ tangents)``: the directional derivative, computed as the
    derivative of a vector-Jacobian product (reverse mode twice).

    >>> jvp(lambda x: x ** 2, (ember.tensor([3.0]),), (ember.tensor([1.0]),))
    (tensor([9.]), tensor([6.]))
    """
    top = _top(primals)
    xs = [_tracked(p) for p in primals]
    with autograd.enable_grad():
        result = func(*xs)
        out, aux = result if has_aux else (result, None)
        u = zeros_like(out).requires_grad_(True)   # J^T u is linear in u
        back = _grads(out, xs, u)
        dot = sum((b * t).sum() for b, t in zip(back, tangents))
    (tangent_out,) = _grads(dot, [u], graph=not top)
    out, tangent_out = _plain(out, top), _plain(tangent_out, top)
    return (out, tangent_out, _plain(aux, top)) if has_aux else (out, tangent_out)


def jacrev(func: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """``f(*args) ->`` the Jacobian of ``func``'s output with respect to ``args[argnums]``,
    shaped output.shape + input.shape (one backward pass per output element).

    >>> jacrev(lambda x: x ** 2)(ember.tensor([1.0, 2.0]))
    tensor([[2., 0.],
            [0., 4.]])
    """
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args))
        top = _top([args[a] for a in nums])
        args = list(args)
        for a in nums:
            args[a] = _tracked(args[a])
        from ember.utils._pytree import tree_flatten, tree_unflatten
        with autograd.enable_grad():
            result = func(*args, **kwargs)
            out, aux = result if has_aux else (result, None)
            outs, spec = tree_flatten(out)   # (a tuple of outputs: one Jacobian each)
            rows = [[flat[i] for i in range(flat.shape[0])]
                    for flat in (o.reshape(-1) for o in outs)]
        xs = [args[a] for a in nums]
        per_output = []
        for o, o_rows in zip(outs, rows):
            grads = [_plain(_grads(r, xs, graph=not top), top) for r in o_rows]
            jacs = []
            for k, x in enumerate(xs):
                shape = tuple(o.shape) + tuple(x.shape)
                jacs.append(stack([g[k] for g in grads]).reshape(shape) if grads
                            else o.new_zeros(shape))
            per_output.append(jacs[0] if isinstance(argnums, int) else tuple(jacs))
        j = tree_unflatten(per_output, spec)
        return (j, _plain(aux, top)) if has_aux else j
    return wrapper


def jacfwd(func: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
           *, randomness: str = "error") -> Callable:
    """The Jacobian, as ``jacrev`` computes it (the same values as forward mode)."""
    return jacrev(func, argnums, has_aux)


def hessian(func: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Hessian of a one-element output: the Jacobian of its gradient.

    >>> hessian(lambda x: (x ** 3).sum())(ember.tensor([1.0, 2.0]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    return jacfwd(jacrev(func, argnums), argnums)


# ---- vmap -----------------------------------------------------------------------------

def vmap(func: Callable, in_dims: Any = 0, out_dims: Any = 0, randomness: str = "error",
         *, chunk_size: int | None = None) -> Callable:
    """``func`` mapped over dim ``in_dims`` of its arguments (None: not mapped; a tuple:
    one per argument, each an int, None, or a tree of them matching that argument), the
    results stacked along ``out_dims``. Arguments and results may be nested tuples,
    lists and dicts of tensors (torch.func's per-sample gradients: ``vmap(grad(f),
    in_dims=(None, 0))(params, x)`` gives a dict). Each index is one call of ``func``
    (see the module docstring).

    >>> vmap(lambda v: v.dot(v))(ember.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([ 5., 25.])
    """
    from ember.utils._pytree import tree_flatten, tree_unflatten

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dims = in_dims if isinstance(in_dims, (tuple, list)) else (in_dims,) * len(args)
        if len(dims) != len(args):
            raise ValueError(f"vmap: in_dims has {len(dims)} entries for {len(args)} "
                             f"arguments")
        leaves, specs = [], []
        for k, (a, d) in enumerate(zip(args, dims)):
            flat, spec = tree_flatten(a)
            flat_dims = [d] * len(flat) if d is None or isinstance(d, int) else tree_flatten(d)[0]
            if len(flat_dims) != len(flat):
                raise ValueError(f"vmap: in_dims[{k}] does not match the structure of "
                                 f"argument {k}")
            leaves.append(list(zip(flat, flat_dims)))
            specs.append(spec)
        sizes = {x.shape[d] for arg in leaves for x, d in arg
                 if d is not None and isinstance(x, Tensor)}
        if not sizes:
            raise ValueError("vmap: at least one argument must be mapped over (in_dims all "
                             "None)")
        if len(sizes) > 1:
            raise ValueError(f"vmap: the mapped dims have different sizes {sorted(sizes)}")
        (n,) = sizes

        def call(i: int) -> Any:
            sliced = [tree_unflatten([x if d is None or not isinstance(x, Tensor) else
                                      x[(slice(None),) * (d % x.ndim) + (i,)]
                                      for x, d in arg], spec)
                      for arg, spec in zip(leaves, specs)]
            return func(*sliced, **kwargs)
        return _stack_outputs([call(i) for i in range(n)], out_dims)
    return wrapper


def _stack_outputs(results: list, out_dims: Any) -> Any:
    """The per-index results (trees of tensors or numbers) stacked leaf by leaf."""
    from ember.utils._pytree import tree_flatten, tree_unflatten
    flat, spec = tree_flatten(results[0])
    dims = [out_dims] * len(flat) if isinstance(out_dims, int) else tree_flatten(out_dims)[0]
    if len(dims) != len(flat):
        raise ValueError("vmap: out_dims does not match the structure of the result")
    columns = zip(*[tree_flatten(r)[0] for r in results])
    stacked = []
    for column, d in zip(columns, dims):
        if not isinstance(column[0], Tensor):
            from ember.tensor import tensor
            column = [tensor(v) for v in column]
        stacked.append(stack(list(column), d))
    return tree_unflatten(stacked, spec)


def stack_module_state(models: Sequence[Any]) -> tuple[dict, dict]:
    """The parameters and buffers of same-class ``models``, each stacked along a new
    first dim (new leaves that require grad where the originals do), for ``vmap`` over
    ``functional_call``: torch.func's model ensembling.

    >>> params, buffers = stack_module_state([nn.Linear(2, 2) for _ in range(3)])
    >>> params["weight"].shape
    ember.Size([3, 2, 2])
    """
    if not models:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    if len({m.training for m in models}) != 1:
        raise RuntimeError("stack_module_state: Expected all models to have the same "
                           "training/eval mode.")
    if len({type(m) for m in models}) != 1:
        raise RuntimeError("stack_module_state: Expected all models to be of the same class.")

    def stacked(named: list[dict]) -> dict:
        out = {}
        for key in named[0]:
            ts = [n[key] for n in named]
            grads = {t.requires_grad for t in ts}
            if len(grads) != 1:
                raise RuntimeError(f"Expected {key} from each model to have the same "
                                   ".requires_grad")
            t = stack([x.detach() for x in ts])
            out[key] = t.requires_grad_() if grads == {True} else t
        return out
    return (stacked([dict(m.named_parameters()) for m in models]),
            stacked([dict(m.named_buffers()) for m in models]))


def replace_all_batch_norm_modules_(root: Any) -> Any:
    """Make every batch norm of ``root`` use batch statistics only (no running
    statistics), in place, so that ``vmap`` over it updates no state; returns ``root``."""
    from ember.nn.norm import _BatchNorm
    for module in root.modules():
        if isinstance(module, _BatchNorm):
            module.running_mean = module.running_var = module.num_batches_tracked = None
            module.track_running_stats = False
    return root
