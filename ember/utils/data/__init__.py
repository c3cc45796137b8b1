"""Data loading: datasets and the DataLoader that batches and shuffles them.

>>> from ember.utils.data import DataLoader, TensorDataset
>>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
"""
from ember.utils.data.dataloader import DataLoader, default_collate
from ember.utils.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "DataLoader",
           "default_collate"]
