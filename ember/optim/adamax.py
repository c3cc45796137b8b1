"""Adamax: Adam with the infinity norm in place of the second moment."""
from __future__ import annotations

from typing import Any, Callable

from ember import dtypes
from ember.autograd import no_grad
from ember.optim.optimizer import (Optimizer, ParamsT, _impl_options, check_betas,
                                   check_lr)
from ember.tensor import Tensor


class Adamax(Optimizer):
    """Adamax, step for step as ``torch.optim.Adamax``::

        t += 1
        g = grad + wd * p
        m = lerp(m, g, 1 - beta1)
        u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1^t) * m / u

    >>> opt = ember.optim.Adamax(model.parameters(), lr=2e-3)
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        check_betas(betas)
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        _impl_options(defaults, foreach=foreach, capturable=capturable,
                      differentiable=differentiable)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr = self._lr(group)
            beta1, beta2 = group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p, grad, state in self._with_grads(group):
                self._init_state(state, p, "exp_avg", "exp_inf")
                step_t = state["step"]
                step_t.add_(1)
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_inf.copy_(exp_inf.mul_(beta2).maximum(grad.abs().add_(eps)))
                clr = lr / (1 - beta1 ** step_t.to(dtypes.float64))
                p.addcdiv_(exp_avg, exp_inf, value=-clr)
        return loss
