"""DistributedSampler: each rank reads its own share of a dataset's indices."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ember.utils.data.sampler import Sampler


class DistributedSampler(Sampler):
    """Indices of ``dataset`` for rank ``rank`` of ``num_replicas`` (by default the
    process group's): every rank gets ``len(sampler)`` indices, disjoint across ranks,
    padded by repeating the first indices (or cut with ``drop_last=True``) so all ranks
    take the same number of steps. With ``shuffle``, the order depends on ``seed`` and
    the epoch only, so all ranks agree on it: call ``set_epoch(epoch)`` at the start of
    every epoch, or each epoch repeats the first one's order.

    >>> sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=False)
    >>> list(sampler)          # of a dataset of 5: [0, 2, 4]; rank 1 gets [1, 3, 0]
    [0, 2, 4]

    The permutation is NumPy's (PCG64 seeded with ``seed + epoch``), not PyTorch's: the
    same within ember on every rank, a different order than torch's sampler gives.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ember import distributed as dist
            if not dist.is_initialized():
                raise RuntimeError("Requires distributed package to be available")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(self.seed + self.epoch))
            indices = rng.permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size
        mine = indices[self.rank:self.total_size:self.num_replicas]
        assert len(mine) == self.num_samples
        return iter(mine)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's shuffle that of ``epoch`` (the same on every rank)."""
        self.epoch = epoch
