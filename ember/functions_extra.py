"""torch's top-level names that real programs call and ember lacked: the constants
(``ember.pi``, ``ember.inf`` ...), creation functions (``range``, ``logspace``,
``scalar_tensor``, ``empty_strided``, ``frombuffer``, ``from_dlpack``, the window
functions), small utilities (``unravel_index``, ``combinations``, ``is_nonzero``,
``chain_matmul``, ``addr``, ``pdist`` ...), the top-level in-place forms (``ember.relu_``,
``ember.exp_`` ...), and the ``torch.kl_div`` / ``torch.embedding`` forms of functional
ops with torch's argument orders (an int ``reduction``: 0 none, 1 mean, 2 sum).

>>> import ember
>>> ember.range(0, 1, 0.5)       # doctest: +SKIP  (warns: deprecated, as torch)
tensor([0.0000, 0.5000, 1.0000])
>>> ember.hann_window(4)
tensor([0.0000, 0.5000, 1.0000, 0.5000])
"""
from __future__ import annotations

import builtins
import itertools
import math
import warnings
from typing import Any, Sequence

import numpy as np

import ember.nn.functional as F
from ember import dtypes
from ember.tensor import Tensor, arange, as_tensor, from_numpy, linspace, tensor, zeros

__all__ = ["inf", "nan", "pi", "e", "newaxis", "detach", "fill", "fill_", "zero_", "range",
           "logspace", "scalar_tensor", "unravel_index", "combinations", "is_nonzero",
           "is_same_size", "concatenate", "chain_matmul", "addr", "index_put", "index_put_",
           "masked_scatter", "empty_strided", "frombuffer", "from_dlpack", "to_dlpack",
           "set_default_tensor_type", "hann_window", "hamming_window", "blackman_window",
           "bartlett_window", "kaiser_window", "binary_cross_entropy_with_logits", "kl_div",
           "cosine_embedding_loss", "hinge_embedding_loss", "margin_ranking_loss",
           "triplet_margin_loss", "poisson_nll_loss", "ctc_loss", "embedding", "prelu",
           "bilinear", "pdist", "rms_norm", "dropout_", "alpha_dropout_",
           "feature_alpha_dropout_", "selu_", "celu_", "rrelu_", "threshold_"]

inf = math.inf
nan = math.nan
pi = math.pi
e = math.e
newaxis = None

_py_range = builtins.range


# ---- top-level forms of methods -----------------------------------------------------------
def detach(input: Tensor) -> Tensor:
    return input.detach()


def fill(input: Tensor, value: Any) -> Tensor:
    """A new tensor like ``input`` holding ``value`` everywhere (differentiable in a
    tensor ``value``, as torch's)."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"fill only supports 0-dimension value tensor but got tensor "
                               f"with {value.ndim} dimensions.")
        return value.to(input.dtype).expand(input.shape).clone()
    return input.new_full(input.shape, value)


def fill_(input: Tensor, value: Any) -> Tensor:
    return input.fill_(value)


def zero_(input: Tensor) -> Tensor:
    return input.zero_()


def index_put(input: Tensor, indices: Sequence[Tensor], values: Tensor,
              accumulate: bool = False) -> Tensor:
    return input.index_put(indices, values, accumulate)


def index_put_(input: Tensor, indices: Sequence[Tensor], values: Tensor,
               accumulate: bool = False) -> Tensor:
    return input.index_put_(indices, values, accumulate)


def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    return input.masked_scatter(mask, source)


def concatenate(tensors: Sequence[Tensor], dim: int = 0, axis: int | None = None) -> Tensor:
    """``cat`` (torch's NumPy-style alias, which also takes ``axis``)."""
    from ember.tensor import cat
    return cat(tensors, dim if axis is None else axis)


def is_nonzero(input: Tensor) -> bool:
    """The truth of a one-element tensor (more or fewer elements raise)."""
    if input.numel() == 0:
        raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
    if input.numel() > 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return bool(input)


def is_same_size(input: Tensor, other: Tensor) -> bool:
    return tuple(input.shape) == tuple(other.shape)


def chain_matmul(*matrices: Tensor) -> Tensor:
    """The product of the matrices, in the cheapest order (deprecated, as in torch)."""
    warnings.warn("torch.chain_matmul is deprecated and will be removed in a future PyTorch "
                  "release. Use torch.linalg.multi_dot instead, which accepts a list of two "
                  "or more tensors rather than multiple parameters.", UserWarning, stacklevel=2)
    if len(matrices) == 1 and isinstance(matrices[0], (list, tuple)):
        matrices = tuple(matrices[0])
    if not matrices:
        raise RuntimeError("chain_matmul(): Expected one or more matrices")
    if len(matrices) == 1:
        if matrices[0].ndim != 2:
            raise RuntimeError(f"chain_matmul(): Tensor 0 must be 2D, but got "
                               f"{matrices[0].ndim}D")
        return matrices[0].clone()
    from ember.linalg_decomp import multi_dot
    return multi_dot(list(matrices))


def addr(input: Tensor, vec1: Tensor, vec2: Tensor, *, beta: Any = 1, alpha: Any = 1
         ) -> Tensor:
    """``beta * input + alpha * outer(vec1, vec2)`` (``beta=0`` ignores ``input``, NaN
    included)."""
    for name, v in (("vec1", vec1), ("vec2", vec2)):
        if v.ndim != 1:
            raise RuntimeError(f"addr: Expected 1-D argument {name}, but got {v.ndim}-D")
    prod = vec1.outer(vec2)
    prod = prod if alpha == 1 else prod * alpha
    if beta == 0:
        return (prod + input.new_zeros(())).expand(
            np.broadcast_shapes(tuple(input.shape), tuple(prod.shape))).clone()
    return input * beta + prod if beta != 1 else input + prod


def _addr_(self: Tensor, vec1: Tensor, vec2: Tensor, *, beta: Any = 1, alpha: Any = 1
           ) -> Tensor:
    return self._inplace(lambda s: addr(s, vec1, vec2, beta=beta, alpha=alpha),
                         (vec1, vec2), "addr_")


Tensor.addr = addr
Tensor.addr_ = _addr_


# ---- creation ---------------------------------------------------------------------------
def range(start: Any = 0, end: Any = None, step: Any = 1, *, dtype: Any = None,
          layout: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``start, start + step, ...`` up to and including ``end``, in the default float
    dtype unless ``dtype`` (deprecated in torch for its inclusive end: use ``arange``)."""
    warnings.warn("torch.range is deprecated and will be removed in a future release because "
                  "its behavior is inconsistent with Python's range builtin. Instead, use "
                  "torch.arange, which produces values in [start, end).", UserWarning,
                  stacklevel=2)
    if end is None:
        raise TypeError('range() missing 1 required positional arguments: "end"')
    start, end, step = (float(v) if isinstance(v, Tensor) else v for v in (start, end, step))
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    n = int(math.floor((end - start) / step)) + 1
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    out = arange(n, dtype=dtypes.float64, device=device) * step + start
    out = out.to(dtype)
    return out.requires_grad_(True) if requires_grad else out


def logspace(start: Any, end: Any, steps: int, base: float = 10.0, *, dtype: Any = None,
             layout: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``base ** linspace(start, end, steps)``."""
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    exps = linspace(float(start), float(end), steps, dtype=dtypes.float64, device=device)
    out = (float(base) ** exps)
    out = out.round().to(dtype) if not (dtype.is_floating_point or dtype.is_complex) \
        else out.to(dtype)
    return out.requires_grad_(True) if requires_grad else out


def scalar_tensor(s: Any, *, dtype: Any = None, layout: Any = None, device: Any = None,
                  requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    """A 0-D tensor of ``s`` in the default float dtype unless ``dtype``."""
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    value = complex(s) if isinstance(s, complex) else float(s)
    return tensor(value, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_strided(size: Sequence[int], stride: Sequence[int], *, dtype: Any = None,
                  layout: Any = None, device: Any = None, requires_grad: bool = False,
                  pin_memory: bool = False) -> Tensor:
    """A tensor of ``size`` laid out with ``stride`` (in elements), zero-filled where torch
    leaves memory uninitialized."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    if any(s < 0 for s in stride):
        raise RuntimeError("as_strided: Negative strides are not supported at the moment, "
                           f"got strides: {list(stride)}")
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    out = zeros(size, dtype=dtype, device=device)
    if out.numel() and tuple(s for s, n in zip(stride, size) if n > 1) != tuple(
            st // out.element_size() for st, n in zip(out._data.strides, size) if n > 1):
        extent = 1 + sum((n - 1) * s for n, s in zip(size, stride))
        xp = out._xp
        buf = xp.zeros(extent, dtype=out._data.dtype)
        item = buf.itemsize
        arr = xp.lib.stride_tricks.as_strided(buf, size, tuple(s * item for s in stride))
        out = Tensor._wrap(arr)
    return out.requires_grad_(True) if requires_grad else out


def frombuffer(buffer: Any, *, dtype: Any, count: int = -1, offset: int = 0,
               requires_grad: bool = False) -> Tensor:
    """A 1-D tensor sharing the memory of an object with the buffer protocol."""
    dt = dtypes.as_dtype(dtype)
    view = memoryview(buffer)
    if view.nbytes == 0:
        raise ValueError("both buffer length (0) and count (-1) must not be 0")
    if offset < 0 or offset >= view.nbytes:
        raise ValueError(f"offset ({offset} bytes) must be non-negative and no greater than "
                         f"buffer length ({view.nbytes} bytes) minus 1")
    if view.readonly:
        warnings.warn("The given buffer is not writable, and PyTorch does not support "
                      "non-writable tensors. This means you can write to the underlying "
                      "(supposedly non-writable) buffer using the tensor. You may want to copy "
                      "the buffer to protect its data or make it writable before converting "
                      "it to a tensor. This type of warning will be suppressed for the rest of "
                      "this program.", UserWarning, stacklevel=2)
    arr = np.frombuffer(buffer, dtype=np.dtype(_np_name(dt)), count=count, offset=offset)
    if not arr.flags.writeable:   # ember writes in place: a private copy keeps it legal
        arr = arr.copy()
    out = from_numpy(arr)
    return out.requires_grad_(True) if requires_grad else out


def _np_name(dt: Any) -> str:
    return "bool" if dt is dtypes.bool_ else dt.name


class _Capsule:
    """A bare DLPack capsule (the legacy ``to_dlpack`` form), as a producer NumPy takes."""

    def __init__(self, capsule: Any) -> None:
        self.capsule = capsule

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)   # kDLCPU


def from_dlpack(ext_tensor: Any) -> Tensor:
    """A tensor sharing the memory of a DLPack producer (a NumPy array, a torch tensor,
    a capsule from ``to_dlpack``); CPU producers only (CUDA ones through CuPy)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor
    if type(ext_tensor).__name__ == "PyCapsule":
        ext_tensor = _Capsule(ext_tensor)
    device = getattr(ext_tensor, "__dlpack_device__", lambda: (1, 0))()
    if device[0] != 1:
        import cupy
        return as_tensor(cupy.from_dlpack(ext_tensor))
    return from_numpy(np.from_dlpack(ext_tensor))


def to_dlpack(tensor: Tensor) -> Any:
    """A DLPack capsule of the tensor's memory (shared, not copied): a versioned one
    where the array supports it, which NumPy reads back writable."""
    try:
        return tensor._data.__dlpack__(max_version=(1, 0))
    except TypeError:   # an array type without DLPack 1.0
        return tensor._data.__dlpack__()


Tensor.__dlpack__ = lambda self, *args, **kwargs: self.detach()._data.__dlpack__(*args,
                                                                                 **kwargs)
Tensor.__dlpack_device__ = lambda self: self._data.__dlpack_device__()


def set_default_tensor_type(t: Any) -> None:
    """The default float dtype (and, for a ``cuda`` type, the default device) from a
    legacy type: ``ember.DoubleTensor`` or a name such as ``'torch.FloatTensor'``."""
    warnings.warn("torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please "
                  "use torch.set_default_dtype() and torch.set_default_device() as "
                  "alternatives.", UserWarning, stacklevel=2)
    from ember.devices import set_default_device
    from ember.tensor_create import LEGACY_TYPES
    if isinstance(t, str):
        prefix, _, name = t.rpartition(".")
        if name not in LEGACY_TYPES or prefix not in ("torch", "ember", "torch.cuda",
                                                      "ember.cuda"):
            raise TypeError(f"invalid type: '{t}'")
        dtype, cuda = LEGACY_TYPES[name].dtype, prefix.endswith("cuda")
    else:
        dtype, cuda = getattr(t, "dtype", None), False
        if not isinstance(dtype, dtypes.DType):
            raise TypeError(f"invalid type: '{t}'")
    if not dtype.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    dtypes.set_default_dtype(dtype)
    set_default_device("cuda" if cuda else "cpu")


# ---- windows ------------------------------------------------------------------------------
def _window(name: str, n: int, periodic: bool, dtype: Any, layout: Any, device: Any,
            requires_grad: bool, formula) -> Tensor:
    """torch's window: ``formula(k, m)`` over ``k = 0 .. m-1`` with ``m = n + 1`` then
    the last value dropped when ``periodic``; in float64, cast to ``dtype``."""
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not dtype.is_floating_point:
        raise RuntimeError(f"{name} expects floating point dtypes, got: {dtype}")
    if n < 0:
        raise RuntimeError(f"{name} requires non-negative window_length, got "
                           f"window_length={n}")
    if n <= 1:
        values = np.ones(n)
    else:
        m = n + 1 if periodic else n
        values = formula(np.arange(m, dtype=np.float64), m)[:n]
    out = tensor(values, dtype=dtype, device=device)
    return out.requires_grad_(True) if requires_grad else out


def hann_window(window_length: int, periodic: bool = True, *, dtype: Any = None,
                layout: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _window("hann_window", window_length, periodic, dtype, layout, device,
                   requires_grad, lambda k, m: 0.5 - 0.5 * np.cos(2 * np.pi * k / (m - 1)))


def hamming_window(window_length: int, periodic: bool = True, alpha: float = 0.54,
                   beta: float = 0.46, *, dtype: Any = None, layout: Any = None,
                   device: Any = None, requires_grad: bool = False) -> Tensor:
    return _window("hamming_window", window_length, periodic, dtype, layout, device,
                   requires_grad,
                   lambda k, m: alpha - beta * np.cos(2 * np.pi * k / (m - 1)))


def blackman_window(window_length: int, periodic: bool = True, *, dtype: Any = None,
                    layout: Any = None, device: Any = None,
                    requires_grad: bool = False) -> Tensor:
    return _window("blackman_window", window_length, periodic, dtype, layout, device,
                   requires_grad,
                   lambda k, m: 0.42 - 0.5 * np.cos(2 * np.pi * k / (m - 1))
                   + 0.08 * np.cos(4 * np.pi * k / (m - 1)))


def bartlett_window(window_length: int, periodic: bool = True, *, dtype: Any = None,
                    layout: Any = None, device: Any = None,
                    requires_grad: bool = False) -> Tensor:
    return _window("bartlett_window", window_length, periodic, dtype, layout, device,
                   requires_grad, lambda k, m: 1 - np.abs(2 * k / (m - 1) - 1))


def kaiser_window(window_length: int, periodic: bool = True, beta: float = 12.0, *,
                  dtype: Any = None, layout: Any = None, device: Any = None,
                  requires_grad: bool = False) -> Tensor:
    def formula(k, m):
        a = (m - 1) / 2
        return np.i0(beta * np.sqrt(np.clip(1 - ((k - a) / a) ** 2, 0, None))) / np.i0(beta)
    return _window("kaiser_window", window_length, periodic, dtype, layout, device,
                   requires_grad, formula)


# ---- small utilities ----------------------------------------------------------------------
def unravel_index(indices: Any, shape: Any) -> tuple[Tensor, ...]:
    """The coordinates in ``shape`` of flat ``indices`` (int64 tensors, one per dim;
    out-of-range indices wrap around, as torch's)."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    idx = indices if isinstance(indices, Tensor) else tensor(indices)
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype is dtypes.bool_:
        raise TypeError(f"expected 'indices' to be integer dtype, but got {idx.dtype}")
    if any(s < 0 for s in shape):
        raise ValueError("'shape' cannot have negative values, but got "
                         f"{tuple(shape)}")
    idx = idx.long()
    out = []
    for s in reversed(shape):
        out.append(idx.remainder(s) if s else idx.new_zeros(idx.shape))
        idx = idx.floor_divide(s) if s else idx
    return tuple(reversed(out))


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:
    """The length-``r`` combinations of a 1-D tensor's elements, one per row (as
    ``itertools.combinations``)."""
    if input.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input.shape)}")
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    if r == 0:
        return input.new_zeros(0)
    pick = itertools.combinations_with_replacement if with_replacement \
        else itertools.combinations
    rows = list(pick(_py_range(input.shape[0]), r))
    if not rows:
        return input.new_zeros((0, r))
    idx = tensor(np.array(rows, dtype=np.int64).reshape(-1), device=input.device)
    return input.index_select(0, idx).reshape(len(rows), r)


def pdist(input: Tensor, p: float = 2) -> Tensor:
    """The ``p``-norm distances between every pair of rows ``i < j``, in that order."""
    if input.ndim != 2:
        raise RuntimeError(f"pdist only supports 2D tensors, got: {input.ndim}D")
    if p < 0:
        raise RuntimeError("pdist only supports non-negative p values")
    n = input.shape[0]
    if n < 2:
        return input.new_zeros(0)
    i, j = np.triu_indices(n, 1)
    from ember.linalg import vector_norm
    a = input.index_select(0, tensor(i.astype(np.int64), device=input.device))
    b = input.index_select(0, tensor(j.astype(np.int64), device=input.device))
    return vector_norm(a - b, p, dim=1)


# ---- functional ops in torch's top-level form ----------------------------------------------
_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


def _reduction(r: Any) -> str:
    """torch's top-level losses take the reduction as an int enum; a string is accepted."""
    return _REDUCTIONS[r] if isinstance(r, int) and not isinstance(r, bool) else r


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None,
                                     pos_weight: Tensor | None = None,
                                     reduction: Any = 1) -> Tensor:
    return F.binary_cross_entropy_with_logits(input, target, weight,
                                              reduction=_reduction(reduction),
                                              pos_weight=pos_weight)


def kl_div(input: Tensor, target: Tensor, reduction: Any = 1, *,
           log_target: bool = False) -> Tensor:
    with warnings.catch_warnings():   # torch.kl_div has no 'batchmean' to point to
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(input, target, reduction=_reduction(reduction),
                        log_target=log_target)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor,
                          margin: float = 0.0, reduction: Any = 1) -> Tensor:
    return F.cosine_embedding_loss(input1, input2, target, margin,
                                   reduction=_reduction(reduction))


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,
                         reduction: Any = 1) -> Tensor:
    return F.hinge_embedding_loss(input, target, margin, reduction=_reduction(reduction))


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor,
                        margin: float = 0.0, reduction: Any = 1) -> Tensor:
    return F.margin_ranking_loss(input1, input2, target, margin,
                                 reduction=_reduction(reduction))


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor,
                        margin: float = 1.0, p: float = 2, eps: float = 1e-6,
                        swap: bool = False, reduction: Any = 1) -> Tensor:
    return F.triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap,
                                 reduction=_reduction(reduction))


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool, full: bool,
                     eps: float, reduction: Any) -> Tensor:
    return F.poisson_nll_loss(input, target, log_input, full, eps=eps,
                              reduction=_reduction(reduction))


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths: Any, target_lengths: Any,
             blank: int = 0, reduction: Any = 1, zero_infinity: bool = False) -> Tensor:
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank,
                      _reduction(reduction), zero_infinity)


def embedding(weight: Tensor, indices: Tensor, padding_idx: int = -1,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """torch.embedding's order: the weight first; ``padding_idx=-1`` means none."""
    return F.embedding(indices, weight, None if padding_idx == -1 else padding_idx,
                       scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


prelu = F.prelu
bilinear = F.bilinear
rms_norm = F.rms_norm


# ---- top-level in-place forms ---------------------------------------------------------------
def dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return F.dropout(input, p, train, inplace=True)


def alpha_dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return F.alpha_dropout(input, p, train, inplace=True)


def feature_alpha_dropout_(input: Tensor, p: float, train: bool) -> Tensor:
    return F.feature_alpha_dropout(input, p, train, inplace=True)


def selu_(input: Tensor) -> Tensor:
    return F.selu(input, inplace=True)


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return F.celu(input, alpha, inplace=True)


def rrelu_(input: Tensor, lower: float = 0.125, upper: float = 1 / 3,
           training: bool = False, generator: Any = None) -> Tensor:
    return F.rrelu(input, lower, upper, training, inplace=True)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    return F.threshold(input, threshold, value, inplace=True)


# torch.x_(input, ...) for the Tensor methods x_ (those torch has at the top level).
_INPLACE = """abs_ acos_ acosh_ arccos_ arcsin_ arctan_ asin_ asinh_ atan_ atanh_ ceil_ clamp_
clamp_max_ clamp_min_ clip_ cos_ cosh_ deg2rad_ detach_ erf_ erfc_ exp2_ exp_ expm1_ fix_
floor_ frac_ gcd_ i0_ lcm_ log10_ log1p_ log2_ log_ logit_ nan_to_num_ neg_ negative_ rad2deg_
reciprocal_ relu_ round_ rsqrt_ sigmoid_ sin_ sinc_ sinh_ sqrt_ square_ tan_ tanh_ trunc_
xlogy_""".split()


def _top_level_inplace(name: str):
    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``ember.{name}(x, ...)`` is ``x.{name}(...)``."
    return fn


for _name in _INPLACE:
    if hasattr(Tensor, _name):
        globals()[_name] = _top_level_inplace(_name)
        __all__.append(_name)
