"""Optimizer: the base class that holds parameter groups and per-parameter state.

Subclasses implement ``step()``. Two rules keep ``step()`` traceable by ``@ember.compile``:
state that changes from step to step (step counts, momentum, moments) lives in ember
tensors updated in place, and hyperparameters are read from ``param_groups`` on every
step, so that a compiled step sees the count advance and an lr change.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Callable, Iterable

from ember import dispatch as _dispatch
from ember.autograd import enable_grad, no_grad
from ember import dtypes
from ember.tensor import Tensor, zeros, zeros_like
from ember.tracer.guards import RUNTIME_NUMBERS

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


def _impl_options(defaults: dict[str, Any], **options: bool | None) -> None:
    """Record PyTorch's implementation switches (``foreach``, ``fused``, ``capturable``,
    ``differentiable``) in ``defaults`` as torch does, after torch's checks. They choose
    among torch's equal-result kernels; ember has one step (traceable, so
    ``ember.compile`` fuses it as a foreach/fused kernel would), so each gives the same
    result. ``differentiable=True`` is accepted, but the step runs under no_grad."""
    if options.get("fused") and options.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if options.get("fused") and options.get("differentiable"):
        raise RuntimeError("`fused` does not support `differentiable`")
    defaults.update(options)


class _RequiredParameter:
    """Marks a hyperparameter with no default (``SGD(params)`` without lr, say)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of tensors, or of dicts that each hold ``"params"`` and
    per-group options overriding ``defaults``.

    >>> opt = ember.optim.SGD([{"params": model.body.parameters()},
    ...                        {"params": model.head.parameters(), "lr": 1e-3}], lr=1e-2)
    >>> opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        # Keyed by the parameter tensor itself (Tensor hashes by identity, as in PyTorch).
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (fine-tuning a new layer, say).

        >>> opt.add_param_group({"params": new_layer.parameters(), "lr": 1e-4})
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. Please "
                            "use a list instead.")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    @staticmethod
    def _lr(group: dict[str, Any]):
        """The group's learning rate (see ``_hyper``)."""
        return Optimizer._hyper(group, "lr")

    @staticmethod
    def _hyper(group: dict[str, Any], name: str, index: int | None = None):
        """``group[name]`` (``[index]`` of it), a hyperparameter schedulers change: lr,
        momentum, betas (``guards.RUNTIME``). Inside ``@ember.compile`` it is a 0-dim
        float64 tensor read from the group at every call, so a scheduler's change (or a
        hand edit of ``param_groups``) takes effect without a recompile; float64 keeps
        PyTorch's Python-double arithmetic, and a 0-dim tensor does not promote the
        float32 tensors it touches. The compiled call's guards then check only its type
        and sign: code that reads a value through here may decide in Python on its sign
        (``if momentum != 0``), on nothing else."""
        v = group[name] if index is None else group[name][index]
        tracer = _dispatch.tracer
        if tracer is None or isinstance(v, Tensor) or type(v) not in RUNTIME_NUMBERS:
            return v
        return tracer.python_input(group, name, index)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized tensors.

        ``set_to_none=True`` (the default) drops ``.grad`` (cheaper, and ``step`` skips
        parameters without a gradient); ``False`` fills the existing gradients with zeros.

        >>> opt.zero_grad()
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None):
        """Update the parameters once; ``closure`` re-evaluates the model and returns the loss."""
        raise NotImplementedError

    def _eval_closure(self, closure: Callable[[], Any] | None):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ---- saving and loading ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state and options; parameters are referred to by their index.

        As in PyTorch, the state holds references to the live tensors: save it (or
        ``copy.deepcopy`` it) before stepping again if you need a snapshot.

        >>> sd = opt.state_dict(); opt2.load_state_dict(sd)
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        # (state under other keys than a parameter's is saved under that key, as torch's)
        state = {index[id(p)] if isinstance(p, Tensor) else p: s
                 for p, s in self.state.items() if not isinstance(p, Tensor) or id(p) in index}
        return {"state": state, "param_groups": groups}

    @staticmethod
    def _init_state(state: dict, p: Tensor, *buffers: str) -> None:
        """A parameter's state at its first step: a step counter and zero buffers shaped
        like it, all tensors (a compiled step updates them in place)."""
        if not state:
            state["step"] = zeros((), dtype=dtypes.float32, device=p.device)
            for name in buffers:
                state[name] = zeros_like(p)

    def _with_grads(self, group: dict):
        """(parameter, its gradient (negated with ``maximize``), its state dict) for each
        parameter of ``group`` that has a gradient: the loop every ``step()`` runs."""
        for p in group["params"]:
            if p.grad is not None:
                yield p, (-p.grad if group.get("maximize") else p.grad), self.state[p]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``, matching parameters by position within groups.

        Tensors are copied (to the parameter's device; floating state to its dtype, the
        step count kept float32), so the loaded optimizer never shares memory with the
        source. The group dicts and the state tensors already here are updated in place,
        not replaced: a compiled training step holds them (it reads ``lr`` from the group
        dict and replays updates of the state tensors), and must see what was loaded.
        """
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(groups, saved_groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
        id_map = {saved: p for g, sg in zip(groups, saved_groups)
                  for saved, p in zip(sg["params"], g["params"])}
        loaded: dict[int, dict[str, Any]] = {}
        foreign = {}
        for key, value in state_dict["state"].items():
            if key not in id_map:   # not a parameter's: kept under its key, as torch does
                foreign[key] = value   # (alphadl's Lookahead keys its slow weights by id)
                continue
            param = id_map[key]
            loaded[id(param)] = {k: _cast_state(param, k, v) for k, v in value.items()}
        new_groups = [copy.deepcopy({k: v for k, v in sg.items() if k != "params"})
                      for sg in saved_groups]
        # Change things only after everything above succeeded: bad input never corrupts state.
        for g, ng in zip(groups, new_groups):
            params = g["params"]
            g.clear()
            g.update(ng)
            g["params"] = params
        replaced = 0
        self.state.update(foreign)
        for p in [p for g in groups for p in g["params"]]:
            old = self.state.get(p)
            new = loaded.get(id(p))
            if new is None:
                replaced += bool(old)
                self.state.pop(p, None)
            elif not (old and _copy_in_place(old, new)):
                replaced += bool(old)
                self.state[p] = new
        if replaced:
            # New state tensors: a compiled step traced with the old ones recompiles (its
            # guards read this counter; see ember/tracer/guards.py).
            self._state_version = getattr(self, "_state_version", 0) + 1

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def check_lr(lr) -> None:
    """PyTorch's checks of a learning rate (a float, or a one-element tensor)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        lr = lr.item()
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_betas(betas) -> None:
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")


def _copy_in_place(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Write ``new`` into the tensors of ``old`` when both have the same entries, tensors
    of the same shape, dtype and device; False (and ``old`` untouched) otherwise."""
    if old.keys() != new.keys():
        return False
    for k, v in new.items():
        o = old[k]
        if isinstance(o, Tensor) != isinstance(v, Tensor):
            return False
        if isinstance(v, Tensor) and (o.shape != v.shape or o.dtype != v.dtype
                                      or o.device != v.device):
            return False
    with no_grad():
        for k, v in new.items():
            if isinstance(v, Tensor):
                old[k].copy_(v)
            else:
                old[k] = v
    return True


def _cast_state(param: Tensor, key: str, value: Any) -> Any:
    """A copy of one state value, placed like ``param`` (the step count stays as saved)."""
    if isinstance(value, Tensor):
        value = value.detach()
        if key == "step":
            return value.to(device=param.device, copy=True)
        if param.is_floating_point() and value.is_floating_point():
            return value.to(dtype=param.dtype, device=param.device, copy=True)
        return value.to(device=param.device, copy=True)
    if isinstance(value, dict):
        return {k: _cast_state(param, k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state(param, key, v) for v in value)
    return copy.deepcopy(value)
