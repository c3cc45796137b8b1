"""Turning a list of samples into a batch (``default_collate``) and converting a single
sample's arrays into tensors (``default_convert``), as PyTorch's do."""
from __future__ import annotations

import collections.abc
import copy
from typing import Any

import numpy as np

from ember import dtypes
from ember.tensor import Tensor, as_tensor, stack, tensor

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        "found {}")


def default_collate(batch: list) -> Any:
    """Turn a list of samples into a batch, as PyTorch's ``default_collate``.

    Tensors are stacked along a new first dim; NumPy arrays become stacked tensors; Python
    ints, floats and bools become int64, float64 and bool tensors; tuples, lists, named
    tuples and dicts are collated field by field (a tuple of fields stays a tuple); strings
    are returned as a list.

    >>> default_collate([(ember.ones(2), 0), (ember.zeros(2), 1)])
    (tensor([[1., 1.],
            [0., 0.]]), tensor([0, 1]))
    """
    if not batch:
        raise ValueError("default_collate: can't collate an empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "SaUO":
            raise TypeError(_ERR.format(elem.dtype))
        return stack([as_tensor(b) for b in batch])
    if isinstance(elem, (np.number, np.bool_)):
        return as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return tensor(batch, dtype=dtypes.bool_)
    if isinstance(elem, int):
        return tensor(batch, dtype=dtypes.int64)
    if isinstance(elem, float):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        fields = {key: default_collate([d[key] for d in batch]) for key in elem}
        if isinstance(elem, collections.abc.MutableMapping):
            clone = copy.copy(elem)  # keeps the mapping's type (OrderedDict, a subclass)
            clone.update(fields)
            return clone
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """What a DataLoader without batching (``batch_size=None``) does to each sample: NumPy
    arrays and scalars become tensors, inside dicts, tuples and lists too; anything else is
    returned as it is.

    >>> default_convert({"x": np.ones(2)})
    {'x': tensor([1., 1.], dtype=ember.float64)}
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "SaUO" else as_tensor(data)
    if isinstance(data, (np.number, np.bool_)):
        return as_tensor(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        fields = {key: default_convert(data[key]) for key in data}
        if isinstance(data, collections.abc.MutableMapping):
            clone = copy.copy(data)
            clone.update(fields)
            return clone
        try:
            return type(data)(fields)
        except TypeError:
            return fields
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return tuple(default_convert(d) for d in data)
    if isinstance(data, collections.abc.Sequence):
        converted = [default_convert(d) for d in data]
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    return data
