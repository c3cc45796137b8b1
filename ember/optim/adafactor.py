"""Adafactor: Adam-like steps with a factored (row x column) second moment."""
from __future__ import annotations

import math
from typing import Any, Callable

from ember import dispatch as _dispatch
from ember import dtypes
from ember.autograd import no_grad
from ember.optim.optimizer import Optimizer, ParamsT, _impl_options
from ember.tensor import Tensor, zeros, zeros_like


class Adafactor(Optimizer):
    """Adafactor, step for step as ``torch.optim.Adafactor`` (torch >= 2.5)::

        t += 1
        beta2_hat = 1 - t ** beta2_decay
        rho = min(lr, 1 / sqrt(t));  alpha = max(eps2, RMS(p)) * rho
        p *= 1 - lr * weight_decay
        for a matrix (or batch of them), the factored second moment:
            R = lerp(R, mean(g * g, -1), 1 - beta2_hat)
            C = lerp(C, mean(g * g, -2), 1 - beta2_hat)
            V = R @ C / max(mean(R, -2), eps1)
        for a vector: V = lerp(V, g * g, 1 - beta2_hat)
        U = g / max(sqrt(V), eps1);  p -= alpha * U / max(1, RMS(U) / d)

    ``eps1=None`` means the machine epsilon of the parameters' dtype. ``state`` holds
    ``step`` and ``row_var`` and ``col_var`` (parameters with 2 or more dimensions) or
    ``variance``, as in PyTorch. Eagerly the scalar math runs in Python doubles as
    PyTorch's does; traced by ``ember.compile`` it runs on float64 0-dim tensors (the
    norms are not pulled out with ``.item()``, which would stop the trace).

    >>> opt = ember.optim.Adafactor(model.parameters(), lr=1e-2)
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-2,
                 beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= (lr.item() if isinstance(lr, Tensor) else lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                        weight_decay=weight_decay, maximize=maximize)
        _impl_options(defaults, foreach=foreach)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if any."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr = self._lr(group)
            eps1, eps2 = group["eps"]
            beta2_decay, d = group["beta2_decay"], group["d"]
            weight_decay = group["weight_decay"]
            for p, grad, state in self._with_grads(group):
                if p.is_complex():
                    raise RuntimeError("Adafactor does not support complex parameters")
                if not state:
                    state["step"] = zeros((), dtype=dtypes.float32, device=p.device)
                    if grad.dim() > 1:
                        # the row (column) factor: g*g averaged over the last (next to
                        # last) dimension, kept as a size-1 dimension
                        state["row_var"] = grad.new_zeros([*grad.shape[:-1], 1])
                        state["col_var"] = grad.new_zeros([*grad.shape[:-2], 1,
                                                           grad.shape[-1]])
                    else:
                        state["variance"] = zeros_like(grad)
                if eps1 is None:
                    # PyTorch sets it from the group's first parameter, and keeps it
                    eps1 = dtypes.finfo(p.dtype).eps
                step_t = state["step"]
                step_t.add_(1)
                eager = _dispatch.tracer is None and not isinstance(lr, Tensor)
                if eager:
                    step = step_t.item()
                    one_minus_beta2_t = step ** beta2_decay
                    rho_t = min(lr, 1 / (step ** 0.5))
                    alpha = max(eps2, p.norm(2).item() / (p.numel() ** 0.5)) * rho_t
                else:
                    step = step_t.to(dtypes.float64)
                    one_minus_beta2_t = step ** beta2_decay
                    inv_sqrt = step ** -0.5
                    rho_t = (inv_sqrt.minimum(lr.to(dtypes.float64)) if isinstance(lr, Tensor)
                             else inv_sqrt.clamp(max=lr))
                    rms = p.norm(2).to(dtypes.float64) / math.sqrt(p.numel())
                    alpha = rms.clamp(min=eps2) * rho_t

                if weight_decay != 0:
                    p.mul_(1 - lr * weight_decay)

                if grad.dim() > 1:
                    row_var, col_var = state["row_var"], state["col_var"]
                    # mean(g * g) as a squared norm over n: no g-sized temporary
                    row_mean = grad.norm(dim=-1, keepdim=True).square_().div_(grad.size(-1))
                    row_var.lerp_(row_mean, one_minus_beta2_t)
                    col_mean = grad.norm(dim=-2, keepdim=True).square_().div_(grad.size(-2))
                    col_var.lerp_(col_mean, one_minus_beta2_t)
                    var_estimate = row_var @ col_var
                    var_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
                else:
                    variance = state["variance"]
                    variance.lerp_(grad * grad, one_minus_beta2_t)
                    var_estimate = variance.clone()   # the update must not write into it

                # eps1 squared: it bounds sqrt(V) below by eps1
                update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_()
                update.mul_(grad)
                scale = math.sqrt(update.numel()) * d
                if eager:
                    denom = max(1.0, update.norm(2).item() / scale)
                    p.add_(update, alpha=-alpha / denom)
                else:
                    denom = (update.norm(2).to(dtypes.float64) / scale).clamp(min=1.0)
                    p.sub_(update * (alpha / denom))
        return loss
