"""Rprop: resilient backpropagation (per-element step sizes driven by gradient signs)."""
from __future__ import annotations

from typing import Any, Callable

from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, _impl_options, check_lr
from ember.tensor import Tensor, full_like, where


class Rprop(Optimizer):
    """Rprop, step for step as ``torch.optim.Rprop`` (its single-tensor implementation)::

        s = sign(g * g_prev)
        step_size = clamp(step_size * (etaplus if s > 0, etaminus if s < 0, 1 if s == 0),
                          *step_sizes)
        g = 0 where s < 0                  (a sign flip: skip this element once)
        p -= sign(g) * step_size;  g_prev = g

    ``lr`` is only the initial step size of every element (read at a parameter's first
    step), as in PyTorch. The elementwise choices are ``where``s, so a compiled step has
    no data-dependent branch.

    >>> opt = ember.optim.Rprop(model.parameters(), lr=1e-2, etas=(0.5, 1.2))
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-2,
                 etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *,
                 capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False) -> None:
        check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
        _impl_options(defaults, foreach=foreach, differentiable=differentiable,
                      capturable=capturable)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            # Read (unused after the first step) so that a compiled step treats lr as an
            # input: a scheduler changing it doesn't make it recompile.
            self._lr(group)
            etaminus, etaplus = group["etas"]
            step_size_min, step_size_max = group["step_sizes"]
            for p, grad, state in self._with_grads(group):
                if p.is_complex():
                    raise RuntimeError("ember's Rprop does not support complex parameters")
                if not state:
                    self._init_state(state, p, "prev")
                    lr = group["lr"]
                    state["step_size"] = full_like(p, lr.item() if isinstance(lr, Tensor)
                                                   else lr)
                prev, step_size = state["prev"], state["step_size"]
                state["step"].add_(1)
                sign = grad.mul(prev).sign()
                # PyTorch rewrites ``sign`` in place (>0 -> etaplus, <0 -> etaminus,
                # ==0 -> 1); a NaN stays NaN there, and here too.
                factor = where(sign > 0, etaplus,
                               where(sign < 0, etaminus, where(sign == 0, 1.0, sign)))
                step_size.mul_(factor).clamp_(step_size_min, step_size_max)
                # where the sign flipped, no step this time and no sign next time
                grad = where(sign < 0, 0.0, grad)
                p.addcmul_(grad.sign(), step_size, value=-1)
                prev.copy_(grad)
        return loss
