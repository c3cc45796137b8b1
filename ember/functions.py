"""Module-level forms of tensor methods: ``ember.exp(x)`` is ``x.exp()``, as in PyTorch."""
from __future__ import annotations

from ember.tensor import Tensor, tensor

_METHODS = """
exp log sqrt rsqrt abs sign sin cos tanh sigmoid erf relu square reciprocal log1p neg
maximum minimum clamp clip sum mean var std amax amin max min argmax argmin all any
softmax log_softmax logsumexp norm matmul mm bmm dot reshape flatten unflatten permute
transpose swapaxes t unsqueeze squeeze expand broadcast_to clone split chunk narrow unbind diagonal
masked_fill lt le gt ge eq ne logical_not add sub mul div pow numel floor ceil trunc
remainder fmod floor_divide
""".split()


def _make(name: str):
    method = getattr(Tensor, name)

    def fn(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            input = tensor(input)
        return method(input, *args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``ember.{name}(x, ...)`` is ``x.{name}(...)``.\n\n{method.__doc__ or ''}"
    return fn


for _name in _METHODS:
    globals()[_name] = _make(_name)

__all__ = list(_METHODS)
