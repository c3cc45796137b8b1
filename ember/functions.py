"""Module-level forms of tensor methods: ``ember.exp(x)`` is ``x.exp()``, as in PyTorch."""
from __future__ import annotations

from ember.errors import type_name
from ember.tensor import Tensor, tensor

_METHODS = """
exp log sqrt rsqrt abs sign sin cos tanh sigmoid erf relu square reciprocal log1p neg
maximum minimum clamp clip sum mean var std amax amin max min argmax argmin all any
softmax log_softmax logsumexp norm matmul mm bmm dot reshape flatten unflatten permute
transpose swapaxes t unsqueeze squeeze expand broadcast_to clone split chunk narrow unbind diagonal
masked_fill lt le gt ge eq ne logical_not add sub mul div pow numel floor ceil trunc
remainder fmod floor_divide
""".split()


# PyTorch's forms that take a Python number as ``input`` (``torch.add(2, x)``); every other
# function wants a tensor there.
_NUMBER_INPUT = frozenset("add sub mul div pow remainder floor_divide".split())
# The second argument of binary forms: its name, and whether a Python number may stand
# there (``torch.add(x, 2)``; not ``torch.maximum(x, 2)``). A NumPy array never may.
_OTHER = dict({n: ("other", True) for n in
               "add sub mul div pow remainder fmod floor_divide lt le gt ge eq ne".split()},
              maximum=("other", False), minimum=("other", False), matmul=("other", False),
              mm=("mat2", False), bmm=("mat2", False), dot=("tensor", False))
_NUMBERS = (bool, int, float)


def _make(name: str):
    method = getattr(Tensor, name)
    numbers_in = name in _NUMBER_INPUT
    other_name, numbers_ok = _OTHER.get(name, ("", False))

    def fn(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            if not (numbers_in and isinstance(input, _NUMBERS)):
                raise _not_tensor(name, "input", 1, input)
            input = tensor(input)
        if other_name and args and not isinstance(args[0], Tensor) and not (
                numbers_ok and isinstance(args[0], _NUMBERS)):
            raise _not_tensor(name, other_name, 2, args[0])
        return method(input, *args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``ember.{name}(x, ...)`` is ``x.{name}(...)``.\n\n{method.__doc__ or ''}"
    return fn


def _not_tensor(name: str, arg: str, position: int, value) -> TypeError:
    return TypeError(f"{name}(): argument '{arg}' (position {position}) must be Tensor, "
                     f"not {type_name(value)}")


for _name in _METHODS:
    globals()[_name] = _make(_name)

__all__ = list(_METHODS)
