"""Lazy modules and the tensors they hold before their first call, as torch's.

``LazyLinear(out_features)`` and the other ``Lazy*`` layers leave their input size
(``in_features``, ``in_channels``, ``num_features``) open: their weights are
``UninitializedParameter``s until the first ``forward``, which reads the size from the
input, materializes and initializes the weights as the ordinary layer would, and turns
the module into that layer (``LazyLinear`` becomes ``Linear``: its ``__class__`` changes).
The parameter objects stay the same, so an optimizer made before that dry run works on
them afterwards, as in torch (whose docs still advise the dry run first). A compiled
function whose call reaches an uninitialized tensor runs that call eagerly, which
initializes it (as torch.compile does), and compiles from the next call.

``Buffer`` (torch 2.5+) marks a tensor that, assigned as a module attribute, is
registered as a buffer.

>>> m = nn.LazyLinear(3)
>>> m
LazyLinear(in_features=0, out_features=3, bias=True)
>>> m(ember.randn(2, 5)).shape
ember.Size([2, 3])
>>> m
Linear(in_features=5, out_features=3, bias=True)
"""
from __future__ import annotations

import weakref
from typing import Any

from ember.autograd import no_grad
from ember.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from ember.nn.conv3d import Conv3d, ConvTranspose3d
from ember.nn.linear import Linear
from ember.nn.module import Module, Parameter
from ember.nn.norm import BatchNorm1d, BatchNorm2d
from ember.nn.norm3d import BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from ember.tensor import Tensor, array_of, empty
from ember.tensor_common import STRUCTURE_VERSION

__all__ = ["Buffer", "UninitializedParameter", "UninitializedBuffer", "LazyModuleMixin",
           "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d",
           "LazyConvTranspose2d", "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
           "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d",
           "is_lazy"]


# ---- Buffer -------------------------------------------------------------------------------

class Buffer(Tensor):
    """A tensor that a module registers as a buffer when it is assigned as an attribute.

    >>> m = nn.Module(); m.steps = nn.Buffer(ember.zeros(1), persistent=False)
    >>> [name for name, _ in m.named_buffers()], list(m.state_dict())
    (['steps'], [])
    """

    _is_buffer = True   # what Module.__setattr__ looks for

    def __new__(cls, data: Tensor | None = None, *, persistent: bool = True) -> Buffer:
        if data is None:
            data = empty(0)
        obj = object.__new__(cls)
        # torch's data.detach().requires_grad_(data.requires_grad): same memory and
        # version counter, no history.
        Tensor._init(obj, array_of(data), data.requires_grad)
        obj._vc = data._vc
        obj.persistent = persistent
        return obj

    def __init__(self, data: Tensor | None = None, *, persistent: bool = True) -> None:
        pass  # everything happens in __new__ (Tensor.__init__ would copy the data)


# ---- uninitialized tensors ----------------------------------------------------------------

_NOT_PERSISTENT: set[int] = set()   # ids of UninitializedBuffer(persistent=False)s


def _not_persistent(buffer: Tensor) -> None:
    # A tensor that changes class has no room for attributes: its flag lives here.
    _NOT_PERSISTENT.add(id(buffer))
    weakref.finalize(buffer, _NOT_PERSISTENT.discard, id(buffer))


class _UninitializedMixin:
    """What UninitializedParameter and UninitializedBuffer share: no shape until
    ``materialize(shape)`` gives them memory and their ordinary class."""

    __slots__ = ()   # so that materialize can change __class__ to Parameter or Tensor
    cls_to_become: type
    _uninitialized = True   # ember.compile's guards run such a call eagerly (guards.py)

    def materialize(self, shape, device=None, dtype=None) -> None:
        """Give this tensor uninitialized memory of ``shape`` and its ordinary class."""
        self.data = empty(tuple(shape), device=device if device is not None else self.device,
                          dtype=dtype if dtype is not None else self.dtype)
        self.__class__ = self.cls_to_become

    @property
    def shape(self):
        raise RuntimeError(
            "Can't access the shape of an uninitialized parameter or buffer. This error "
            "usually happens in `load_state_dict` when trying to load an uninitialized "
            "parameter into an initialized one. Call `forward` to initialize the parameters "
            "before accessing their attributes.")

    def share_memory_(self):
        raise RuntimeError("Can't share memory on an uninitialized parameter or buffer. Call "
                           "`forward` to initialize the parameters before calling "
                           "`module.share_memory()`.")

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        # Module.to/.double()/.cuda() before the dry run: the materialized tensor gets the
        # new dtype and device, so the result stays uninitialized (torch's allowed methods).
        kwargs.pop("memory_format", None)
        out = Tensor.to(self, *args, **kwargs)
        if out is self:
            return self
        new = object.__new__(type(self))
        Tensor._init(new, array_of(out), self.requires_grad)
        if id(self) in _NOT_PERSISTENT:
            _not_persistent(new)
        return new

    def detach(self) -> Tensor:
        # state_dict() keeps the uninitialized tensor itself, as torch's lazy modules do.
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def __reduce_ex__(self, protocol):
        return (_rebuild_uninitialized, (type(self), self.requires_grad, str(self.device),
                                         self.dtype.name))


def _rebuild_uninitialized(cls: type, requires_grad: bool, device: str, dtype: str):
    from ember import dtypes
    return cls(requires_grad, device, dtypes.as_dtype(dtype))


class UninitializedParameter(_UninitializedMixin, Parameter):
    """A parameter whose shape is not known yet (a lazy module's weight before its first
    call); ``materialize(shape)`` makes it an ordinary ``Parameter``.

    >>> p = nn.UninitializedParameter(); p.materialize((2, 3)); type(p).__name__, p.shape
    ('Parameter', ember.Size([2, 3]))
    """

    __slots__ = ()
    cls_to_become = Parameter

    def __new__(cls, requires_grad: bool = True, device=None,
                dtype=None) -> UninitializedParameter:
        obj = object.__new__(cls)
        Tensor._init(obj, array_of(empty(0, device=device, dtype=dtype)), requires_grad)
        return obj

    def __init__(self, requires_grad: bool = True, device=None, dtype=None) -> None:
        pass


class UninitializedBuffer(_UninitializedMixin, Tensor):
    """A buffer whose shape is not known yet (a lazy BatchNorm's running statistics);
    ``materialize(shape)`` makes it an ordinary tensor."""

    __slots__ = ()
    cls_to_become = Tensor
    _is_buffer = True   # assigned as a module attribute, it is registered as a buffer

    def __new__(cls, requires_grad: bool = False, device=None, dtype=None,
                persistent: bool = True) -> UninitializedBuffer:
        obj = object.__new__(cls)
        Tensor._init(obj, array_of(empty(0, device=device, dtype=dtype)), requires_grad)
        if not persistent:
            _not_persistent(obj)
        return obj

    def __init__(self, requires_grad: bool = False, device=None, dtype=None,
                 persistent: bool = True) -> None:
        pass

    @property
    def persistent(self) -> bool:
        return id(self) not in _NOT_PERSISTENT


def is_lazy(param: Any) -> bool:
    """Whether ``param`` is an ``UninitializedParameter`` or ``UninitializedBuffer``."""
    return isinstance(param, _UninitializedMixin)


# ---- the mixin ----------------------------------------------------------------------------

class LazyModuleMixin:
    """Infers a module's parameter shapes from its first input (torch's mixin): a forward
    pre-hook calls ``initialize_parameters(*args, **kwargs)``, then the module becomes
    ``cls_to_become``. ``load_state_dict`` of initialized values materializes first."""

    cls_to_become: type | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._initialize_hook = self.register_forward_pre_hook(self._infer_parameters,
                                                               with_kwargs=True)

    def __getstate__(self) -> dict:
        # The hook handle holds weak references to this module's hook dicts: a copy (pickle,
        # deepcopy) leaves the hook out and registers its own in __setstate__.
        state = super().__getstate__()
        handle = state.pop("_initialize_hook", None)
        if handle is not None:
            for name in ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs"):
                if name in state:
                    hooks = type(state[name])(state[name])
                    hooks.pop(handle.id, None)
                    state[name] = hooks
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)   # still a Lazy* class: its first call is still to come
        if self.cls_to_become is not None:
            self._initialize_hook = self.register_forward_pre_hook(self._infer_parameters,
                                                                   with_kwargs=True)

    def _lazy_load_hook(self, state_dict: dict, prefix: str) -> None:
        """Called by ``Module.load_state_dict`` first: uninitialized tensors take the shape
        of the initialized values about to be loaded into them."""
        for name, t in list(self._parameters.items()) + list(self._buffers.items()):
            key = prefix + name
            if t is not None and key in state_dict and is_lazy(t):
                value = state_dict[key]
                if not is_lazy(value):
                    with no_grad():
                        t.materialize(tuple(value.shape))

    def initialize_parameters(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"initialize_parameters is not implemented for "
                                  f"{type(self).__name__}")

    def has_uninitialized_params(self) -> bool:
        """Whether a parameter or buffer is still uninitialized."""
        return any(is_lazy(t) for t in list(self._parameters.values())
                   + list(self._buffers.values()))

    def _infer_parameters(self, module: Module, args: tuple, kwargs: dict | None = None):
        module.initialize_parameters(*args, **(kwargs or {}))
        if module.has_uninitialized_params():
            raise RuntimeError(f"module {self._get_name()} has not been fully initialized")
        module._initialize_hook.remove()
        del module._initialize_hook
        if module.cls_to_become is not None:
            module.__class__ = module.cls_to_become
            STRUCTURE_VERSION[0] += 1   # compiled calls guard what a module is
        return None

    def _replicate_for_data_parallel(self):
        raise RuntimeError("Modules with uninitialized parameters can't be used with "
                           "`DataParallel`. Run a dummy forward pass to correctly initialize "
                           "the modules")


# ---- Linear -------------------------------------------------------------------------------

class LazyLinear(LazyModuleMixin, Linear):
    """``Linear`` whose ``in_features`` is the first input's last dimension.

    >>> m = nn.LazyLinear(4); m(ember.randn(2, 7)).shape, m.weight.shape
    (ember.Size([2, 4]), ember.Size([4, 7]))
    """

    cls_to_become = Linear

    def __init__(self, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        # bias=False: no tensors that are about to be replaced
        super().__init__(0, 0, False)
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        self.out_features = out_features
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor) -> None:
        if self.has_uninitialized_params():
            with no_grad():
                self.in_features = input.shape[-1]
                self.weight.materialize((self.out_features, self.in_features))
                if self.bias is not None:
                    self.bias.materialize((self.out_features,))
                self.reset_parameters()
        if self.in_features == 0:   # loaded from a state_dict: read the size off the weight
            if input.shape[-1] != self.weight.shape[-1]:
                raise AssertionError(f"The in_features inferred from input: {input.shape[-1]} "
                                     f"is not equal to in_features from self.weight: "
                                     f"{self.weight.shape[-1]}")
            self.in_features = input.shape[-1]


# ---- convolutions ---------------------------------------------------------------------------

class _LazyConvXdMixin(LazyModuleMixin):
    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor, *args: Any, **kwargs: Any) -> None:
        if self.has_uninitialized_params():
            self.in_channels = self._get_in_channels(input)
            if self.in_channels % self.groups != 0:
                raise ValueError("in_channels must be divisible by groups")
            with no_grad():
                if self.transposed:
                    self.weight.materialize((self.in_channels, self.out_channels // self.groups,
                                             *self.kernel_size))
                else:
                    self.weight.materialize((self.out_channels, self.in_channels // self.groups,
                                             *self.kernel_size))
                if self.bias is not None:
                    self.bias.materialize((self.out_channels,))
                self.reset_parameters()

    def _get_in_channels(self, input: Tensor) -> int:
        no_batch = self._dims + 1
        if input.ndim not in (no_batch, no_batch + 1):
            raise RuntimeError(f"Expected {no_batch}D (unbatched) or {no_batch + 1}D (batched) "
                               f"input to {type(self).__name__}, but got input of size: "
                               f"{input.shape}")
        return input.shape[1] if input.ndim == no_batch + 1 else input.shape[0]

    def _lazy_init(self, out_channels: int, bias: bool, device, dtype) -> None:
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        self.out_channels = out_channels
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)


class _LazyConv(_LazyConvXdMixin):
    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None,
                 dtype=None) -> None:
        # in/out channels 0 and no bias: placeholders until the first input; ember's
        # _ConvNd checks divisibility by groups, which 0 passes.
        super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode, device, dtype)
        self._lazy_init(out_channels, bias, device, dtype)


class _LazyConvTranspose(_LazyConvXdMixin):
    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__(0, 0, kernel_size, stride, padding, output_padding, groups, False,
                         dilation, padding_mode, device, dtype)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConv1d(_LazyConv, Conv1d):
    """``Conv1d`` whose ``in_channels`` is the first input's channel count."""

    cls_to_become = Conv1d


class LazyConv2d(_LazyConv, Conv2d):
    """``Conv2d`` whose ``in_channels`` is the first input's channel count.

    >>> m = nn.LazyConv2d(4, 3); m(ember.randn(1, 2, 5, 5)).shape, m.weight.shape
    (ember.Size([1, 4, 3, 3]), ember.Size([4, 2, 3, 3]))
    """

    cls_to_become = Conv2d


class LazyConv3d(_LazyConv, Conv3d):
    """``Conv3d`` whose ``in_channels`` is the first input's channel count."""

    cls_to_become = Conv3d


class LazyConvTranspose1d(_LazyConvTranspose, ConvTranspose1d):
    """``ConvTranspose1d`` whose ``in_channels`` is the first input's channel count."""

    cls_to_become = ConvTranspose1d


class LazyConvTranspose2d(_LazyConvTranspose, ConvTranspose2d):
    """``ConvTranspose2d`` whose ``in_channels`` is the first input's channel count."""

    cls_to_become = ConvTranspose2d


class LazyConvTranspose3d(_LazyConvTranspose, ConvTranspose3d):
    """``ConvTranspose3d`` whose ``in_channels`` is the first input's channel count."""

    cls_to_become = ConvTranspose3d


# ---- normalization ----------------------------------------------------------------------------

class _LazyNormBase(LazyModuleMixin):
    def __init__(self, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        # affine and running statistics off: no tensors that are about to be replaced
        super().__init__(0, eps, momentum, False, False, device, dtype)
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = UninitializedParameter(device=device, dtype=dtype)
            if bias:
                self.bias = UninitializedParameter(device=device, dtype=dtype)
        if track_running_stats:
            self.running_mean = UninitializedBuffer(device=device, dtype=dtype)
            self.running_var = UninitializedBuffer(device=device, dtype=dtype)
            from ember import dtypes
            from ember.tensor import tensor
            self.num_batches_tracked = tensor(0, dtype=dtypes.int64, device=device)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor) -> None:
        if self.has_uninitialized_params():
            self.num_features = input.shape[1]   # dim 1, batched or not, as torch
            with no_grad():
                if self.affine:
                    self.weight.materialize((self.num_features,))
                    if self.bias is not None:
                        self.bias.materialize((self.num_features,))
                if self.track_running_stats:
                    self.running_mean.materialize((self.num_features,))
                    self.running_var.materialize((self.num_features,))
                self.reset_parameters()


class LazyBatchNorm1d(_LazyNormBase, BatchNorm1d):
    """``BatchNorm1d`` whose ``num_features`` is the first input's ``shape[1]``.

    >>> m = nn.LazyBatchNorm1d(); m(ember.randn(4, 3)).shape, m.running_mean.shape
    (ember.Size([4, 3]), ember.Size([3]))
    """

    cls_to_become = BatchNorm1d


class LazyBatchNorm2d(_LazyNormBase, BatchNorm2d):
    """``BatchNorm2d`` whose ``num_features`` is the first input's ``shape[1]``."""

    cls_to_become = BatchNorm2d


class LazyBatchNorm3d(_LazyNormBase, BatchNorm3d):
    """``BatchNorm3d`` whose ``num_features`` is the first input's ``shape[1]``."""

    cls_to_become = BatchNorm3d


class LazyInstanceNorm1d(_LazyNormBase, InstanceNorm1d):
    """``InstanceNorm1d`` whose ``num_features`` is the first input's ``shape[1]`` (affine
    and tracking running statistics by default, as torch's lazy instance norms)."""

    cls_to_become = InstanceNorm1d


class LazyInstanceNorm2d(_LazyNormBase, InstanceNorm2d):
    """``InstanceNorm2d`` whose ``num_features`` is the first input's ``shape[1]``."""

    cls_to_become = InstanceNorm2d


class LazyInstanceNorm3d(_LazyNormBase, InstanceNorm3d):
    """``InstanceNorm3d`` whose ``num_features`` is the first input's ``shape[1]``."""

    cls_to_become = InstanceNorm3d
