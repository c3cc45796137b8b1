"""Adam and AdamW (decoupled weight decay), with optional AMSGrad."""
from __future__ import annotations

import math
from typing import Any, Callable

from ember import dispatch as _dispatch
from ember import dtypes
from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, _impl_options
from ember.tensor import Tensor, zeros, zeros_like


class Adam(Optimizer):
    """Adam, step for step as ``torch.optim.Adam`` (its single-tensor implementation)::

        t += 1
        g = grad + wd * p                       (Adam; AdamW instead does p *= 1 - lr * wd)
        m = m + (g - m) * (1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v)                     (amsgrad: v below means vmax)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``state["step"]`` is a 0-dim float32 tensor, and the bias corrections are computed
    from it with tensor ops, so a compiled ``step()`` sees the count advance.

    >>> opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    _decoupled_weight_decay = False

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        if not isinstance(lr, Tensor) and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        _impl_options(defaults, foreach=foreach, capturable=capturable,
                      differentiable=differentiable, fused=fused)
        # AdamW is Adam(decoupled_weight_decay=True), as in torch 2.13
        defaults["decoupled_weight_decay"] = bool(decoupled_weight_decay
                                                  or self._decoupled_weight_decay)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            # beta1 is read at every compiled call (OneCycleLR and CyclicLR cycle it)
            beta1, beta2 = self._hyper(group, "betas", 0), group["betas"][1]
            lr = self._lr(group)
            eps = group["eps"]
            weight_decay = group["weight_decay"]
            amsgrad = group["amsgrad"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if not state:
                    state["step"] = zeros((), dtype=dtypes.float32, device=p.device)
                    state["exp_avg"] = zeros_like(p)
                    state["exp_avg_sq"] = zeros_like(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = zeros_like(p)
                step_t = state["step"]
                exp_avg = state["exp_avg"]
                exp_avg_sq = state["exp_avg_sq"]
                step_t.add_(1)

                if weight_decay != 0:
                    if group.get("decoupled_weight_decay", self._decoupled_weight_decay):
                        p.mul_(1 - lr * weight_decay)
                    else:
                        grad = grad.add(p, alpha=weight_decay)

                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

                # PyTorch does this scalar math in Python doubles. Eagerly, so does this;
                # traced, float64 0-dim tensors give the same numbers (and don't promote
                # the float32 tensors they touch), and the compiled call sees the count
                # advance.
                if _dispatch.tracer is None and not isinstance(lr, Tensor):
                    step = step_t.item()
                    bias_correction1 = 1 - beta1 ** step
                    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
                else:
                    step = step_t.to(dtypes.float64)
                    bias_correction1 = 1 - beta1 ** step
                    bias_correction2_sqrt = (1 - beta2 ** step).sqrt()
                step_size = lr / bias_correction1

                if amsgrad:
                    max_exp_avg_sq = state["max_exp_avg_sq"]
                    max_exp_avg_sq.copy_(max_exp_avg_sq.maximum(exp_avg_sq))
                    denom = (max_exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                else:
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the update),
    step for step as ``torch.optim.AdamW``.

    >>> opt = ember.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    """

    _decoupled_weight_decay = True

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused)
