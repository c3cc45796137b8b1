"""Stochastic gradient descent, with momentum, dampening, weight decay and Nesterov."""
from __future__ import annotations

from typing import Any, Callable

from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, _impl_options
from ember.tensor import Tensor


class SGD(Optimizer):
    """Stochastic gradient descent, step for step as ``torch.optim.SGD``.

    With momentum ``m``, dampening ``d``, weight decay ``wd``::

        g = grad + wd * p
        buf = g                          (first step)
        buf = m * buf + (1 - d) * g      (later steps)
        g = g + m * buf if nesterov else buf
        p = p - lr * g

    >>> opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        if not isinstance(lr, Tensor) and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        _impl_options(defaults, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr = self._lr(group)
            momentum = group["momentum"]
            dampening = group["dampening"]
            weight_decay = group["weight_decay"]
            nesterov = group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    # (read at every compiled call: OneCycleLR and CyclicLR change it)
                    m = self._hyper(group, "momentum")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buf.mul_(m).add_(grad, alpha=1 - dampening)
                    grad = grad.add(buf, alpha=m) if nesterov else buf
                # p - g * lr is bit-identical to p + g * (-lr), and works for a tensor lr too.
                p.sub_(grad * lr)
        return loss
