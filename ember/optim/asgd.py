"""ASGD: averaged stochastic gradient descent."""
from __future__ import annotations

from typing import Any, Callable

from ember import dispatch as _dispatch
from ember import dtypes
from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, _impl_options, check_lr
from ember.tensor import Tensor, ones, where, zeros, zeros_like


class ASGD(Optimizer):
    """Averaged SGD, step for step as ``torch.optim.ASGD`` (single-tensor version)::

        t += 1
        g = grad + wd * p
        p = p * (1 - lambd * eta) - eta * g
        ax = p                    if mu == 1
        ax = ax + (p - ax) * mu   otherwise
        eta = lr / (1 + lambd * lr * t) ** alpha;  mu = 1 / max(1, t - t0)

    ``state`` holds ``step``, ``eta``, ``mu`` (0-dim float32 tensors) and ``ax`` (the
    running average of the parameter), as in PyTorch. Eagerly the scalar math runs in
    Python doubles, as PyTorch's; traced by ``ember.compile`` it runs on float64 0-dim
    tensors, so the compiled call sees the count and the new eta and mu.

    >>> opt = ember.optim.ASGD(model.parameters(), lr=1e-2, t0=100)
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-2, lambd: float = 1e-4,
                 alpha: float = 0.75, t0: float = 1e6, weight_decay: float = 0,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        check_lr(lr)
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                        weight_decay=weight_decay, maximize=maximize)
        _impl_options(defaults, foreach=foreach, differentiable=differentiable,
                      capturable=capturable)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr = self._lr(group)
            lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
            weight_decay = group["weight_decay"]
            for p, grad, state in self._with_grads(group):
                if p.is_complex():
                    raise RuntimeError("ember's ASGD does not support complex parameters")
                if not state:
                    lr0 = group["lr"]
                    state["step"] = zeros((), dtype=dtypes.float32, device=p.device)
                    eta = zeros((), dtype=dtypes.float32, device=p.device)
                    state["eta"] = eta.copy_(lr0.detach().reshape(())) \
                        if isinstance(lr0, Tensor) else eta.fill_(lr0)
                    state["mu"] = ones((), dtype=dtypes.float32, device=p.device)
                    state["ax"] = zeros_like(p)
                step_t, eta, mu, ax = state["step"], state["eta"], state["mu"], state["ax"]
                step_t.add_(1)
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                if _dispatch.tracer is None and not isinstance(lr, Tensor):
                    eta_value = eta.item()
                    p.mul_(1 - lambd * eta_value)
                    p.add_(grad, alpha=-eta_value)
                    if mu.item() != 1:
                        ax.add_(p.sub(ax).mul_(mu))
                    else:
                        ax.copy_(p)
                    step = step_t.item()
                    eta.fill_(lr / ((1 + lambd * lr * step) ** alpha))
                    mu.fill_(1 / max(1, step - t0))
                else:
                    # Tensor math (PyTorch's capturable form): no .item() to stop a trace,
                    # and ``where`` in place of the Python ``if`` on mu.
                    eta64 = eta.to(dtypes.float64)
                    p.mul_(1 - lambd * eta64)
                    p.sub_(grad * eta64)
                    ax.copy_(where(mu == 1, p, ax + (p - ax) * mu))
                    step = step_t.to(dtypes.float64)
                    eta.copy_(lr / ((1 + lambd * lr * step) ** alpha))
                    mu.copy_(1 / (step - t0).clamp(min=1))
        return loss
