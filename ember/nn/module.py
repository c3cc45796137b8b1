"""Module and Parameter: the containers that hold a model's weights and sub-models.

A ``Module`` registers what is assigned to it: a ``Parameter`` goes to ``_parameters``,
a sub-``Module`` to ``_modules``, a ``register_buffer`` tensor to ``_buffers``. Everything
else (state_dict, to, train/eval, repr) walks those three dicts, as in PyTorch.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

import numpy as np

from ember import dispatch as _dispatch, dtypes
from ember.autograd import no_grad
from ember.errors import OpError, shape_str
from ember.autograd_hooks import RemovableHandle
from ember.nn import hooks as _hooks
from ember.tensor import Tensor, tensor, array_of
from ember.tensor_common import STRUCTURE_VERSION   # noqa: F401  (guards read it here)




class _Registry(OrderedDict):
    """A module's parameter, buffer, submodule or hook dict: counts its changes."""

    def __setitem__(self, key, value) -> None:
        STRUCTURE_VERSION[0] += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        STRUCTURE_VERSION[0] += 1
        super().__delitem__(key)

    def _changed(method):  # noqa: N805  (wraps the other mutating methods)
        def wrapper(self, *args, **kwargs):
            STRUCTURE_VERSION[0] += 1
            return method(self, *args, **kwargs)
        wrapper.__name__ = method.__name__
        return wrapper

    clear = _changed(OrderedDict.clear)
    pop = _changed(OrderedDict.pop)
    popitem = _changed(OrderedDict.popitem)
    update = _changed(OrderedDict.update)
    setdefault = _changed(OrderedDict.setdefault)
    move_to_end = _changed(OrderedDict.move_to_end)
    del _changed


class Parameter(Tensor):
    """A tensor that a ``Module`` treats as a weight: a leaf with ``requires_grad=True``.

    >>> p = nn.Parameter(ember.zeros(3))
    >>> p.requires_grad, isinstance(p, ember.Tensor)
    (True, True)
    """

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = tensor([])
        elif not isinstance(data, Tensor):
            data = tensor(data)
        if requires_grad and not data.is_floating_point():
            raise RuntimeError("Only Tensors of floating point dtype can require gradients")
        obj = object.__new__(cls)
        # Shares the data with ``data``, as torch.nn.Parameter shares storage.
        Tensor._init(obj, array_of(data), requires_grad)
        return obj

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        pass  # everything happens in __new__ (Tensor.__init__ would copy the data)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


# Returned by the register_*hook methods (``handle.remove()``); the old name stays.
_RemovableHandle = RemovableHandle


class Module:
    """Base class of every layer and model; subclasses define ``forward``.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x).relu()
    >>> Net()(ember.randn(3, 4)).shape
    ember.Size([3, 2])
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these dicts to exist first.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", _Registry())
        object.__setattr__(self, "_buffers", _Registry())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", _Registry())
        # The other hook dicts (flags, backward hooks) are made when first needed: compiled
        # functions guard what a module holds, and most modules never have hooks.
        object.__setattr__(self, "_forward_pre_hooks", _Registry())
        object.__setattr__(self, "_forward_hooks", _Registry())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  '"forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if d["_forward_pre_hooks"] or d["_forward_hooks"] or "_compiled_call" in d:
            compiled = d.get("_compiled_call")
            if compiled is not None:
                return compiled(*args, **kwargs)
            return _hooks.call_with_hooks(self, args, kwargs)
        try:   # inline, not _call_impl: this is every layer's call
            return self.forward(*args, **kwargs)
        except OpError as e:
            self._name_in_error(e)
            raise

    def _call_impl(self, *args: Any, **kwargs: Any) -> Any:
        """The call as written (hooks, then ``forward``): what ``compile()`` compiles."""
        d = self.__dict__
        if d["_forward_pre_hooks"] or d["_forward_hooks"]:
            return _hooks.call_with_hooks(self, args, kwargs)
        try:
            return self.forward(*args, **kwargs)
        except OpError as e:
            self._name_in_error(e)
            raise

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Compile this module's calls in place, as PyTorch's ``Module.compile``: the
        arguments are ``ember.compile``'s, and ``self(...)`` runs compiled from now on (the
        module stays itself: its type, ``state_dict`` keys and attributes are unchanged).

        >>> m = nn.Linear(4, 2); m.compile(); m(ember.randn(3, 4)).shape
        ember.Size([3, 2])
        """
        from ember.tracer.compile import compile as _compile

        def call(*a: Any, **k: Any) -> Any:
            return Module._call_impl(self, *a, **k)
        call.__name__ = call.__qualname__ = f"{type(self).__name__}.__call__"
        object.__setattr__(self, "_compiled_call", _compile(call, *args, **kwargs))
        object.__setattr__(self, "_compile_args", (args, kwargs))

    def __getstate__(self) -> dict:
        # A compiled call holds compiled code and locks: a copy compiles afresh.
        state = dict(self.__dict__)
        state.pop("_compiled_call", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_compile_args" in state:
            args, kwargs = state["_compile_args"]
            self.compile(*args, **kwargs)

    def _call_forward(self, args: tuple, kwargs: dict) -> Any:
        try:
            return self.forward(*args, **kwargs)
        except OpError as e:
            self._name_in_error(e)
            raise

    def _name_in_error(self, e: OpError) -> None:
        """Name the innermost module that failed (its repr line), once."""
        if not getattr(e, "module", None):
            e.module = f"{self._get_name()}({self.extra_repr()})"
            e.args = (f"{e.args[0]}\n  in module {e.module}",) + e.args[1:]

    # ---- hooks (ember/nn/hooks.py runs them) ------------------------------------------
    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """``hook(module, args)`` runs before forward and may return new args; with
        ``with_kwargs``, ``hook(module, args, kwargs)`` may return ``(args, kwargs)``."""
        return _hooks.add_hook(self, "_forward_pre_hooks", hook, prepend,
                               {"_forward_pre_hooks_with_kwargs": with_kwargs})

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False,
                              with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward and may return a new output
        (``with_kwargs``: ``hook(module, args, kwargs, output)``; ``always_call``: also
        when forward raised).

        >>> h = model.register_forward_hook(lambda m, args, out: print(out.shape))
        >>> h.remove()
        """
        return _hooks.add_hook(self, "_forward_hooks", hook, prepend,
                               {"_forward_hooks_with_kwargs": with_kwargs,
                                "_forward_hooks_always_called": always_call})

    def register_full_backward_hook(self, hook: Callable,
                                    prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs when the gradients with respect to
        the module's inputs are computed; it may return new ``grad_input``."""
        return _hooks.add_backward_hook(self, "_backward_hooks", hook, prepend)

    def register_full_backward_pre_hook(self, hook: Callable,
                                        prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_output)`` runs when the gradient with respect to the module's
        output arrives; it may return a new ``grad_output``."""
        return _hooks.add_backward_hook(self, "_backward_pre_hooks", hook, prepend)

    # ---- registration -----------------------------------------------------------------
    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder, as ``bias=False`` layers do)."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name(self, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (ember.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add state that is not a parameter (BatchNorm's running_mean); saved in state_dict
        unless ``persistent=False``, moved by ``.to()``."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name(self, name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(ember.Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if "_modules" not in self.__dict__:
            raise AttributeError("cannot assign module before Module.__init__() call")
        _check_name(self, name, "module")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        STRUCTURE_VERSION[0] += 1
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            _remove_from(self, name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(ember.nn.Parameter or None expected)")
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            if "_modules" not in self.__dict__:
                raise AttributeError("cannot assign module before Module.__init__() call")
            _remove_from(self, name, keep="_modules")
            self._modules[name] = value
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (ember.nn.Module or None expected)")
            self._modules[name] = value
        elif isinstance(value, Tensor) and getattr(value, "_is_buffer", False):
            # nn.Buffer / nn.UninitializedBuffer (ember/nn/lazy.py), as torch 2.5+
            self.register_buffer(name, value, getattr(value, "persistent", True))
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(ember.Tensor or None expected)")
            tracer = _dispatch._local.tracer
            if tracer is not None:   # (DINO's ``self.center = ...``): as a plain attribute
                tracer.attr_write(self, name, value, self._buffers[name])
            self._buffers[name] = value
        else:
            tracer = _dispatch._local.tracer
            if tracer is not None:   # a compiled replay must assign it too (pytree.AttrWrites)
                tracer.attr_write(self, name, value, self.__dict__.get(name))
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: look in the three registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        STRUCTURE_VERSION[0] += 1
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(super().__dir__())
        for registry in ("_parameters", "_buffers", "_modules"):
            keys += list(self.__dict__.get(registry, ()))
        return sorted(set(keys))

    # ---- iteration --------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(qualified name, module) for this module and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        # A weight shared by two layers (tied embeddings) is listed once, as in PyTorch.
        seen = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for mod_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(qualified name, parameter) pairs, e.g. ``("fc1.weight", Parameter)``."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter of this module (and its descendants, with ``recurse``).

        >>> sum(p.numel() for p in nn.Linear(4, 3).parameters())
        15
        """
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The descendant at a dotted path: ``model.get_submodule("features.0")``."""
        mod = self
        for item in target.split(".") if target else []:
            if item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    # ---- modes and gradients ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout drops, BatchNorm uses batch statistics)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        STRUCTURE_VERSION[0] += 1
        return self

    def eval(self) -> Module:
        """Set evaluation mode: ``model.eval()`` is ``model.train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (to None, or to zeros in place)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                g = p.grad.detach()
                g.zero_()
                p.grad = g

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every descendant, then on this module (custom initialization).

        >>> model.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- devices and dtypes -----------------------------------------------------------
    def _apply(self, fn: Callable[[Tensor], Tensor]) -> Module:
        """Replace every parameter's data (keeping the Parameter objects, which an
        optimizer may hold), its grad, and every buffer by ``fn`` of them."""
        for module in self.modules():
            with no_grad():
                for p in module._parameters.values():
                    if p is None:
                        continue
                    new = fn(p)
                    if new is not p:
                        p.data = new
                    if p.grad is not None:
                        g = fn(p.grad)
                        if g is not p.grad:
                            p.grad = g
                for name, b in module._buffers.items():
                    if b is not None:
                        module._buffers[name] = fn(b)
        return self

    def share_memory(self) -> Module:
        """Move parameters, their gradients and buffers into shared memory, for processes
        forked afterwards (Hogwild training; see ``ember.multiprocessing``)."""
        from ember.multiprocessing import share_memory_
        return self._apply(share_memory_)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move and/or cast parameters and buffers: ``to("cuda")``, ``to(ember.float64)``,
        ``to(memory_format=ember.channels_last)`` (4-D ones).

        Only floating-point tensors change dtype (``num_batches_tracked`` stays int64).
        """
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        fmt = kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, dtypes.DType):
                dtype = a
            elif isinstance(a, str) and a.replace("ember.", "") in dtypes._BY_NAME:
                dtype = dtypes.as_dtype(a)
            else:
                device = a
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if not dtype.is_floating_point:
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got "
                                f"desired dtype={dtype}")

        def convert(t: Tensor) -> Tensor:
            # memory_format applies to 4-D and 5-D tensors only (conv weights), as torch
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None,
                        memory_format=fmt if t.ndim in (4, 5) else None)
        return self._apply(convert)

    def cuda(self, device: int | None = None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self) -> Module:
        return self.to("cpu")

    def float(self) -> Module:
        return self.to(dtypes.float32)

    def double(self) -> Module:
        return self.to(dtypes.float64)

    def half(self) -> Module:
        """Cast floating-point parameters and buffers to float16 (in place, as torch).

        >>> model.half()
        """
        return self.to(dtypes.float16)

    def bfloat16(self) -> Module:
        """Cast floating-point parameters and buffers to bfloat16 (in place, as torch)."""
        return self.to(dtypes.bfloat16)

    def type(self, dst_type: Any) -> Module:
        """Cast every parameter and buffer, integer ones too, to ``dst_type`` (torch's
        ``Module.type``).

        >>> model.type(ember.float64)
        """
        return self._apply(lambda t: t.type(dst_type))

    # ---- state_dict -------------------------------------------------------------------
    def state_dict(self, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict:
        """Parameters and persistent buffers by qualified name; the tensors share memory
        with the module's (detached unless ``keep_vars``)."""
        out = OrderedDict() if destination is None else destination
        # (a module reachable under two names is listed under both, as torch's recursion
        # does: TCN's ``self.conv1`` is also ``self.net[0]``, and checkpoints have both)
        for mod_prefix, module in self.named_modules(prefix=prefix.rstrip("."),
                                                     remove_duplicate=False):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers_set:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy values (ember tensors or array-likes) into parameters and buffers.

        Every key and shape is checked before anything is written, so a failed load
        leaves the module unchanged.

        >>> model.load_state_dict(other.state_dict())
        <All keys matched successfully>
        """
        for mod_prefix, module in self.named_modules():
            hook = getattr(module, "_lazy_load_hook", None)   # lazy modules (nn/lazy.py)
            if hook is not None:
                hook(state_dict, mod_prefix + ("." if mod_prefix else ""))
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        updates = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                try:
                    value = tensor(np.asarray(value), device=target.device)
                except Exception as e:
                    errors.append(f'While copying the parameter named "{key}", expected '
                                  f"a tensor or array-like, got {type(value).__name__} ({e}).")
                    continue
            if tuple(value.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{shape_str(value)} from checkpoint, the shape in current model "
                              f"is {shape_str(target)}.")
                continue
            updates.append((key, target, value))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for key, target, value in updates:
                if assign:
                    self._assign(key, target, value)
                else:
                    target.copy_(value)
        return _IncompatibleKeys(missing, unexpected)

    def _assign(self, key: str, target: Tensor, value: Tensor) -> None:
        path, _, name = key.rpartition(".")
        mod = self.get_submodule(path)
        if name in mod._parameters:
            mod._parameters[name] = (value if isinstance(value, Parameter)
                                     else Parameter(value, target.requires_grad))
        else:
            mod._buffers[name] = value

    # ---- printing ---------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, module in self._modules.items():
            mod_str = _addindent(repr(module), 2)
            lines.append(f"({name}): {mod_str}")
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _check_name(module: Module, name: str, what: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} name should be a string. Got {type(name).__name__}")
    if "." in name or name == "":
        raise KeyError(f'{what} name can\'t contain "." and can\'t be empty, got "{name}"')
    registry = module.__dict__.get(f"_{what}s", ())
    others = [module.__dict__.get(r, ()) for r in ("_parameters", "_buffers", "_modules")
              if r != f"_{what}s"]
    if name not in registry and (hasattr(type(module), name) or name in module.__dict__
                                 or any(name in o for o in others)):
        raise KeyError(f"attribute '{name}' already exists")


def _remove_from(module: Module, name: str, keep: str) -> None:
    """An attribute lives in one registry only: drop other entries of the same name."""
    d = module.__dict__
    if name in d:
        del d[name]
    for registry in ("_parameters", "_buffers", "_modules"):
        if registry != keep and name in d.get(registry, ()):
            del d[registry][name]
            d["_non_persistent_buffers_set"].discard(name)


_IncompatibleKeys.__repr__ = (  # type: ignore[method-assign]
    lambda self: "<All keys matched successfully>" if not self.missing_keys
    and not self.unexpected_keys else
    f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
    f"unexpected_keys={self.unexpected_keys})")

__all__ = ["Module", "Parameter"]
