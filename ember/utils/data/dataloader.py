"""DataLoader: batches of samples from a dataset, optionally shuffled."""
from __future__ import annotations

import collections.abc
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ember import dtypes
from ember.runtime.device import CPU
from ember.tensor import Tensor, arange, as_tensor, randperm, stack, tensor
from ember.utils.data.dataset import Dataset, TensorDataset


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` samples.

    ``shuffle=True`` draws a new order every epoch from ember's generator, so
    ``ember.manual_seed`` makes it reproducible. ``drop_last=True`` skips a last,
    smaller batch. ``collate_fn`` turns a list of samples into a batch (by default
    ``default_collate``: tensors and numbers are stacked, tuples/dicts batched per field).
    ``batch_size=None`` yields samples one at a time, uncollated.

    A ``TensorDataset`` with the default collate is indexed a whole batch at a time
    (one gather per tensor) instead of sample by sample.

    >>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    >>> for xb, yb in loader:
    ...     ...
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool = False,
                 drop_last: bool = False, collate_fn: Callable[[list], Any] | None = None,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        # num_workers and pin_memory are taken so PyTorch scripts run unchanged: batches
        # are gathered in this process (the data is in memory already), and host-to-GPU
        # copies go through CuPy from ordinary memory.
        if type(num_workers) is not int or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 "
                             "to disable multiprocessing.")
        if batch_size is not None and (type(batch_size) is not int or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.dataset)
        # The order is drawn on the CPU generator whatever the data's device, so one seed
        # gives one order everywhere.
        order = randperm(n) if self.shuffle else arange(n)
        if self.batch_size is None:
            for i in order.tolist():
                yield self.dataset[i]
            return
        bounds = [(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]
        if self.drop_last and bounds and bounds[-1][1] - bounds[-1][0] < self.batch_size:
            bounds.pop()
        if type(self.dataset) is TensorDataset and self.collate_fn is None:
            yield from self._tensor_batches(self.dataset.tensors, order, bounds)
            return
        collate = self.collate_fn or default_collate
        indices = order.tolist()
        for start, end in bounds:
            yield collate([self.dataset[i] for i in indices[start:end]])

    @staticmethod
    def _tensor_batches(tensors: Sequence[Tensor], order: Tensor, bounds) -> Iterator[tuple]:
        """Whole batches by one gather per tensor (a copy, as stacking samples would give)."""
        per_device = {CPU: order}
        for t in tensors:
            if t.device not in per_device:
                per_device[t.device] = order.to(t.device)
        for start, end in bounds:
            yield tuple(t[per_device[t.device][start:end]] for t in tensors)

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")


def default_collate(batch: list) -> Any:
    """Turn a list of samples into a batch, as PyTorch's ``default_collate``.

    Tensors are stacked along a new first dim; NumPy arrays become stacked tensors; Python
    ints, floats and bools become int64, float64 and bool tensors; tuples, lists, named
    tuples and dicts are collated field by field; strings are returned as a list.

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
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                    f"lists; found {type(elem).__name__}")
