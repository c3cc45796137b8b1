"""ember.distributed: PyTorch's ``torch.distributed`` API on MPI (mpi4py) and NCCL (CuPy).

>>> import ember.distributed as dist
>>> dist.init_process_group("gloo")        # "mpi" and "gloo" run on MPI; "nccl" on GPUs
>>> t = ember.ones(3) * dist.get_rank()
>>> dist.all_reduce(t, op=dist.ReduceOp.SUM)

Start N processes with ``ember-run --nproc-per-node N train.py`` (or ``python -m
ember.distributed.run``), or ``mpiexec -n N python train.py``. Importing ember in a
process started by an MPI launcher sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE`` (when not set already), so scripts written for torchrun that read
them before ``init_process_group`` (nanoGPT's ``train.py``) run unchanged.
"""
from __future__ import annotations

import os as _os

from ember.distributed.collectives import (Work, all_gather, all_gather_into_tensor,
                                           all_gather_object, all_reduce, barrier, broadcast,
                                           broadcast_object_list, gather, irecv, isend, recv,
                                           reduce, reduce_scatter_tensor, scatter, send)
from ember.distributed.group import (Backend, GroupMember, ProcessGroup, ReduceOp,
                                     destroy_process_group, get_backend, get_global_rank,
                                     get_rank, get_world_size, init_process_group, is_available,
                                     is_gloo_available, is_initialized, is_mpi_available,
                                     is_nccl_available, is_torchelastic_launched, new_group)
from ember.distributed.mpi import DistTimeoutError

DistBackendError = RuntimeError
group = GroupMember


def _torchrun_env_from_mpi() -> None:
    """RANK/WORLD_SIZE/LOCAL_RANK from the MPI launcher's variables (MPICH's hydra,
    Open MPI, Intel MPI), so torchrun-style scripts see them at start-up."""
    env = _os.environ
    pairs = (("RANK", ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")),
             ("WORLD_SIZE", ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")),
             ("LOCAL_RANK", ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")),
             ("LOCAL_WORLD_SIZE", ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")))
    if not any(v in env for v in pairs[0][1]):
        return
    for name, sources in pairs:
        if name not in env:
            for s in sources:
                if s in env:
                    env[name] = env[s]
                    break
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", "29500")
    if int(env.get("WORLD_SIZE", "1")) > 1:
        # A rank that fails before init_process_group must end the job too: the others
        # would wait in MPI's start-up for it.
        from ember.distributed.group import _install_abort_hook
        _install_abort_hook()


_torchrun_env_from_mpi()

__all__ = ["Backend", "DistBackendError", "DistTimeoutError", "GroupMember", "ProcessGroup",
           "ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_gather_object",
           "all_reduce", "barrier", "broadcast", "broadcast_object_list",
           "destroy_process_group", "gather", "get_backend", "get_global_rank", "get_rank",
           "get_world_size", "init_process_group", "irecv", "is_available",
           "is_gloo_available", "is_initialized", "is_mpi_available", "is_nccl_available",
           "is_torchelastic_launched", "isend", "new_group", "recv", "reduce",
           "reduce_scatter_tensor", "scatter", "send"]
