"""RAdam: Adam with a rectified adaptive learning rate."""
from __future__ import annotations

from typing import Any, Callable

from ember import dtypes
from ember.autograd import no_grad
from ember.optim.optimizer import (Optimizer, ParamsT, _impl_options, check_betas,
                                   check_lr)
from ember.tensor import Tensor, where


class RAdam(Optimizer):
    """RAdam, step for step as ``torch.optim.RAdam``::

        t += 1
        g = grad + wd * p                  (decoupled_weight_decay: p *= 1 - lr * wd)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        p -= lr * m / (1 - beta1^t) * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)  (rho_t > 5)
        p -= lr * m / (1 - beta1^t)                                               (otherwise)

    PyTorch picks the branch with a Python ``if`` on the step count; here both updates
    are computed and ``where`` selects, so a compiled step has no data-dependent branch.

    >>> opt = ember.optim.RAdam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        check_betas(betas)
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
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
            rho_inf = 2 / (1 - beta2) - 1
            for p, grad, state in self._with_grads(group):
                self._init_state(state, p, "exp_avg", "exp_avg_sq")
                step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
                step_t.add_(1)
                step = step_t.to(dtypes.float64)
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        grad = grad.add(p, alpha=weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                bias_corrected_exp_avg = exp_avg / bias_correction1
                rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
                # Clamped at 0: where rho_t <= 5 (not selected) the root would be a NaN
                # and a floating-point warning.
                rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t)).clamp(min=0.0) ** 0.5
                adaptive_lr = (bias_correction2 ** 0.5) / exp_avg_sq.sqrt().add_(eps)
                plain = bias_corrected_exp_avg * lr
                p.sub_(where(rho_t > 5.0, plain * adaptive_lr * rect, plain))
        return loss
