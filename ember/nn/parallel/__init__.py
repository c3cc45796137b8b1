"""Data parallelism over processes: ``DistributedDataParallel`` (see ember.distributed);
``DataParallel``, which runs the module on its own device (data_parallel.py).

>>> from ember.nn.parallel import DistributedDataParallel as DDP
"""
from ember.nn.parallel.data_parallel import DataParallel, data_parallel
from ember.nn.parallel.distributed import (DistributedDataParallel,
                                           consume_prefix_in_state_dict_if_present)

__all__ = ["DataParallel", "data_parallel", "DistributedDataParallel",
           "consume_prefix_in_state_dict_if_present"]
