"""``torch.autograd.functional``: vector-Jacobian and Jacobian-vector products,
Jacobians and Hessians of a function of tensors, on ember's autograd (torchdiffeq
imports ``vjp`` from here).

>>> out, g = ember.autograd.functional.vjp(lambda x: (x ** 2).sum(), ember.ones(3))
>>> g
tensor([2., 2., 2.])
>>> ember.autograd.functional.jacobian(lambda x: x * 2, ember.ones(2))
tensor([[2., 0.],
        [0., 2.]])
"""
from __future__ import annotations

from typing import Callable

__all__ = ["vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"]


def _tuple(x) -> tuple:
    from ember.tensor import Tensor
    return (x,) if isinstance(x, Tensor) else tuple(x)


def _prepare(inputs, create_graph: bool) -> tuple:
    """Inputs that require grad: the same graph with create_graph, else fresh leaves."""
    return tuple(t if create_graph and t.requires_grad else t.detach().requires_grad_(True)
                 for t in _tuple(inputs))


def _grads(outputs: tuple, inputs: tuple, seeds: tuple, create_graph: bool) -> tuple:
    from ember.autograd import grad
    from ember.tensor import zeros_like
    need = [o for o in outputs if o.requires_grad]
    got = grad([o for o in outputs if o.requires_grad],
               inputs, [s for o, s in zip(outputs, seeds) if o.requires_grad],
               create_graph=create_graph, allow_unused=True) if need else (None,) * len(inputs)
    return tuple(zeros_like(i) if g is None else g for g, i in zip(got, inputs))


def _out(x, is_tuple: bool, create_graph: bool):
    xs = tuple(t if create_graph else t.detach() for t in _tuple(x))
    return xs if is_tuple else xs[0]


def vjp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), v^T J)``; ``v`` may be omitted for a one-element output."""
    from ember.autograd import enable_grad
    from ember.tensor import Tensor, ones_like
    ins = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*ins)
        outs = _tuple(out)
        if v is None:
            if len(outs) != 1 or outs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided "
                                   "function returns a single Tensor with a single element.")
            seeds = (ones_like(outs[0]),)
        else:
            seeds = _tuple(v)
        g = _grads(outs, ins, seeds, create_graph)
    return (_out(out, not isinstance(out, Tensor), create_graph),
            _out(g, not isinstance(inputs, Tensor), create_graph))


def jvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), J v)``, by the double-vjp trick (reverse mode twice)."""
    from ember.autograd import enable_grad
    from ember.tensor import Tensor, ones_like, zeros_like
    ins = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*ins)
        outs = _tuple(out)
        dummies = tuple(zeros_like(o).requires_grad_(True) for o in outs)
        g = _grads(outs, ins, dummies, create_graph=True)   # u -> J^T u, linear in u
        seeds = (tuple(ones_like(i) for i in ins) if v is None else _tuple(v))
        jv = _grads(g, dummies, seeds, create_graph)
    return (_out(out, not isinstance(out, Tensor), create_graph),
            _out(jv, not isinstance(out, Tensor), create_graph))


def jacobian(func: Callable, inputs, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode"):
    """d func(*inputs) / d inputs, of shape output.shape + input.shape (nested tuples
    for several outputs or inputs, as torch's)."""
    from ember.autograd import enable_grad
    from ember.tensor import Tensor, stack, zeros_like
    ins = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*ins)
        outs = _tuple(out)
        rows = []
        for o in outs:
            flat = o.reshape(-1)
            per_input = [[] for _ in ins]
            for k in range(flat.numel()):
                seed = zeros_like(flat)
                seed[k] = 1.0
                g = _grads((flat,), ins, (seed,), create_graph or True)
                for j, gi in enumerate(g):
                    per_input[j].append(gi)
            rows.append(tuple(
                (stack(p) if p else zeros_like(i).reshape(0, *i.shape))
                .reshape(*o.shape, *i.shape) for p, i in zip(per_input, ins)))
    rows = tuple(tuple(r if create_graph else r.detach() for r in row) for row in rows)
    in_tuple, out_tuple = not isinstance(inputs, Tensor), not isinstance(out, Tensor)
    rows = tuple(row if in_tuple else row[0] for row in rows)
    return rows if out_tuple else rows[0]


def hessian(func: Callable, inputs, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode"):
    """The Jacobian of the gradient of a function with one-element output."""
    from ember.tensor import Tensor
    is_tuple = not isinstance(inputs, Tensor)

    def gradient(*xs):
        _, g = vjp(func, xs if len(xs) > 1 else xs[0], create_graph=True)
        return g
    return jacobian(gradient, inputs if is_tuple else inputs, create_graph=create_graph)


def vhp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), v^T H)`` for a function with one-element output."""
    from ember.autograd import enable_grad
    from ember.tensor import Tensor, ones_like
    ins = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*ins)
        g = _grads(_tuple(out), ins, (ones_like(out),), create_graph=True)
        seeds = tuple(ones_like(i) for i in ins) if v is None else _tuple(v)
        h = _grads(g, ins, seeds, create_graph)
    return (_out(out, False, create_graph), _out(h, not isinstance(inputs, Tensor), create_graph))


def hvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), H v)``: the Hessian is symmetric, so H v is v^T H."""
    return vhp(func, inputs, v, create_graph, strict)
