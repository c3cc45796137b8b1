"""Data parallelism over processes: ``DistributedDataParallel`` (see ember.distributed).

>>> from ember.nn.parallel import DistributedDataParallel as DDP
"""
from ember.nn.parallel.distributed import (DistributedDataParallel,
                                           consume_prefix_in_state_dict_if_present)

__all__ = ["DistributedDataParallel", "consume_prefix_in_state_dict_if_present"]
