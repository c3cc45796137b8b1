"""Data loading: datasets, samplers and the DataLoader that batches them, as
``torch.utils.data``.

>>> from ember.utils.data import DataLoader, TensorDataset
>>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, num_workers=2)
"""
from ember.utils.data._worker import WorkerInfo, get_worker_info
from ember.utils.data.collate import default_collate, default_convert
from ember.utils.data.dataloader import DataLoader
from ember.utils.data.dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset,
                                      Subset, TensorDataset, random_split)
from ember.utils.data.sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                                      SubsetRandomSampler, WeightedRandomSampler)
from ember.utils.data.distributed import DistributedSampler

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
           "ChainDataset", "random_split", "Sampler", "SequentialSampler", "RandomSampler",
           "SubsetRandomSampler", "WeightedRandomSampler", "BatchSampler", "DistributedSampler", "DataLoader",
           "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]
