"""Module-level forms of tensor methods: ``ember.exp(x)`` is ``x.exp()``, as in PyTorch."""
from __future__ import annotations

from ember.errors import type_name
from ember.out_arg import write_out
from ember.tensor import Tensor, arange, tensor

_METHODS = """
exp log sqrt rsqrt abs sign sin cos tanh sigmoid erf relu square reciprocal log1p neg
maximum minimum clamp clip sum mean var std amax amin max min argmax argmin all any
softmax log_softmax logsumexp norm matmul mm bmm dot reshape flatten unflatten permute
transpose swapaxes t unsqueeze squeeze expand broadcast_to clone split chunk narrow unbind diagonal
masked_fill lt le gt ge eq ne logical_not add sub mul div pow numel floor ceil trunc
remainder fmod floor_divide
expm1 round isnan isinf isfinite isclose cumsum cumprod tril triu flip fliplr flipud roll
movedim moveaxis sort argsort topk gather scatter scatter_add index_select masked_select
nonzero argwhere bitwise_and bitwise_or bitwise_xor bitwise_not logical_and logical_or
bitwise_left_shift bitwise_right_shift
logical_xor addmm baddbmm outer ger tensor_split nan_to_num
""".split()


# PyTorch's forms that take a Python number as ``input`` (``torch.add(2, x)``); every other
# function wants a tensor there.
_NUMBER_INPUT = frozenset("add sub mul div pow remainder floor_divide bitwise_and bitwise_or "
                          "bitwise_xor bitwise_left_shift bitwise_right_shift".split())
# The second argument of binary forms: its name, and whether a Python number may stand
# there (``torch.add(x, 2)``; not ``torch.maximum(x, 2)``). A NumPy array never may.
_OTHER = dict({n: ("other", True) for n in
               "add sub mul div pow remainder fmod floor_divide lt le gt ge eq ne bitwise_and "
               "bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift".split()},
              maximum=("other", False), minimum=("other", False), matmul=("other", False),
              mm=("mat2", False), bmm=("mat2", False), dot=("tensor", False),
              isclose=("other", False), logical_and=("other", False),
              logical_or=("other", False), logical_xor=("other", False),
              outer=("vec2", False), ger=("vec2", False))
_NUMBERS = (bool, int, float)


def _make(name: str):
    method = getattr(Tensor, name)
    numbers_in = name in _NUMBER_INPUT
    other_name, numbers_ok = _OTHER.get(name, ("", False))

    def fn(input, *args, out=None, **kwargs):
        if not isinstance(input, Tensor):
            if not (numbers_in and isinstance(input, _NUMBERS)):
                raise _not_tensor(name, "input", 1, input)
            input = tensor(input)
        if other_name and args and not isinstance(args[0], Tensor) and not (
                numbers_ok and isinstance(args[0], _NUMBERS)):
            raise _not_tensor(name, other_name, 2, args[0])
        if out is not None:   # (ember/out_arg.py)
            return write_out(name, out, method(input, *args, **kwargs))
        return method(input, *args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``ember.{name}(x, ...)`` is ``x.{name}(...)``.\n\n{method.__doc__ or ''}"
    return fn


def _not_tensor(name: str, arg: str, position: int, value) -> TypeError:
    return TypeError(f"{name}(): argument '{arg}' (position {position}) must be Tensor, "
                     f"not {type_name(value)}")


for _name in _METHODS:
    globals()[_name] = _make(_name)


def repeat_interleave(input, repeats=None, dim: int | None = None, *,
                      output_size: int | None = None):
    """``x.repeat_interleave(repeats, dim)``; ``repeat_interleave(counts)`` alone gives
    each index i repeated counts[i] times.

    >>> ember.repeat_interleave(ember.tensor([2, 1]))
    tensor([0, 0, 1])
    """
    if not isinstance(input, Tensor):
        raise _not_tensor("repeat_interleave", "input", 1, input)
    if repeats is None:
        return arange(input.numel(), device=input.device).repeat_interleave(input.reshape(-1))
    return input.repeat_interleave(repeats, dim, output_size=output_size)


__all__ = list(_METHODS) + ["repeat_interleave"]
