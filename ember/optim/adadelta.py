"""Adadelta: step sizes from running averages of squared gradients and updates."""
from __future__ import annotations

from typing import Any, Callable

from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, check_lr, _impl_options
from ember.tensor import Tensor


class Adadelta(Optimizer):
    """Adadelta, step for step as ``torch.optim.Adadelta``::

        g = grad + wd * p
        v = rho * v + (1 - rho) * g * g
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p = p - lr * delta

    >>> opt = ember.optim.Adadelta(model.parameters())      # lr defaults to 1.0
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1.0, rho: float = 0.9,
                 eps: float = 1e-6, weight_decay: float = 0, *,
                 maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_lr(lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        _impl_options(defaults, foreach=foreach, capturable=capturable,
                      differentiable=differentiable)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr = self._lr(group)
            rho, eps, weight_decay = group["rho"], group["eps"], group["weight_decay"]
            for p, grad, state in self._with_grads(group):
                self._init_state(state, p, "square_avg", "acc_delta")
                state["step"].add_(1)
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                square_avg, acc_delta = state["square_avg"], state["acc_delta"]
                square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
                std = square_avg.add(eps).sqrt()
                delta = acc_delta.add(eps).sqrt()
                delta.div_(std).mul_(grad)
                acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
                p.sub_(delta * lr)
        return loss
