"""Process groups: ``init_process_group`` and what it sets up.

A process group is an MPI communicator (mpi4py) plus, for the "nccl" backend, an NCCL
communicator over the same ranks for CUDA tensors. MPI does the rendezvous: processes
started by ``ember-run`` or ``mpiexec -n N`` find each other through the MPI launcher, so
``MASTER_ADDR``/``MASTER_PORT`` are accepted but not needed. ``RANK``/``WORLD_SIZE`` (as
torchrun sets them), when present, must agree with MPI's view.

When more than one process runs, an uncaught exception on any rank prints its traceback
and aborts the MPI job, so the other ranks end at once instead of waiting in a
collective; collectives also time out (``timeout``, 30 minutes by default as in PyTorch).
"""
from __future__ import annotations

import datetime
import enum
import os
import sys
import time
import traceback

from ember.distributed.mpi import load_mpi


class ReduceOp(enum.Enum):
    """How ``all_reduce``, ``reduce`` and ``reduce_scatter_tensor`` combine values.

    >>> dist.all_reduce(t, op=dist.ReduceOp.MAX)
    """
    SUM = "SUM"
    AVG = "AVG"
    PRODUCT = "PRODUCT"
    MIN = "MIN"
    MAX = "MAX"
    BAND = "BAND"
    BOR = "BOR"
    BXOR = "BXOR"

    def __repr__(self) -> str:
        return f"<ReduceOp.{self.name}>"


class Backend:
    """Backend names as in ``torch.distributed.Backend``."""
    MPI = "mpi"
    GLOO = "gloo"
    NCCL = "nccl"
    UNDEFINED = "undefined"


DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
# How long a failing rank waits, after printing its traceback, before MPI_Abort.
_ABORT_GRACE_S = 0.3
# Ranks compare what they call (collective, shapes, dtype, root, op) for this many first
# collectives of a group, and always under EMBER_DISTRIBUTED_DEBUG=1 (or PyTorch's
# TORCH_DISTRIBUTED_DEBUG=DETAIL): the comparison is one small allgather, so checking
# every call would double the latency of small collectives. The count is the same on
# every rank, so all ranks agree on whether a call is checked.
CHECKED_CALLS = 8


class ProcessGroup:
    """The ranks taking part in collectives together (the default group: all of them)."""

    _next_id = 0
    _by_id: dict[int, ProcessGroup] = {}

    def __init__(self, comm, backend_name: str, timeout: float, device_index: int | None):
        from ember.distributed.mpi import MPIBackend

        self.comm = comm
        self.backend_name = backend_name
        self.timeout = timeout
        self.mpi = MPIBackend(comm, timeout)
        self.rank = self.mpi.rank
        self.size = self.mpi.size
        self.nccl = None
        if "nccl" in backend_name:   # "nccl", or "cpu:gloo,cuda:nccl"
            from ember.distributed.nccl import NCCLBackend
            self.nccl = NCCLBackend(comm, timeout, device_index or 0)
        self.calls = 0
        debug = os.environ.get("EMBER_DISTRIBUTED_DEBUG", "") not in ("", "0") or \
            os.environ.get("TORCH_DISTRIBUTED_DEBUG", "").upper() == "DETAIL"
        self.check_all = debug
        self.id = ProcessGroup._next_id
        ProcessGroup._next_id += 1
        ProcessGroup._by_id[self.id] = self
        self.global_ranks = list(comm.Get_group().Translate_ranks(
            list(range(self.size)), load_mpi().COMM_WORLD.Get_group()))

    def transport(self, device_type: str):
        """The transport for tensors of this device type: NCCL for CUDA tensors when the
        group has it, else MPI (CUDA tensors then go through host memory)."""
        if device_type == "cuda" and self.nccl is not None:
            return self.nccl
        return self.mpi

    def should_check(self) -> bool:
        self.calls += 1
        return self.check_all or self.calls <= CHECKED_CALLS

    def __repr__(self) -> str:
        return f"<ProcessGroup {self.id} backend={self.backend_name} rank={self.rank}/{self.size}>"


class GroupMember:
    WORLD = None
    NON_GROUP_MEMBER = object()


_world: ProcessGroup | None = None
_hook_installed = False


def is_available() -> bool:
    """True: ember.distributed is always built (mpi4py is needed by init_process_group)."""
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
        return True
    except ImportError:
        return False


is_gloo_available = is_mpi_available   # "gloo" runs on MPI here


def is_nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
        return bool(getattr(nccl, "available", True))
    except Exception:
        return False


def is_initialized() -> bool:
    return _world is not None


def is_torchelastic_launched() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | None = None, world_size: int = -1,
                       rank: int = -1, store=None, group_name: str = "", pg_options=None,
                       device_id=None) -> None:
    """Join the default process group of all processes of the job.

    ``backend``: "mpi" or "gloo" (both MPI here) for CPU tensors, "nccl" for CUDA
    tensors (CPU tensors then still go over MPI), or None for "nccl" when CUDA is
    available else "mpi". Start the processes with ``ember-run --nproc-per-node N
    script.py`` or ``mpiexec -n N python script.py``; a plain ``python script.py`` is a
    group of one.

    >>> import ember.distributed as dist
    >>> dist.init_process_group("gloo")
    >>> dist.get_rank(), dist.get_world_size()
    (0, 1)
    """
    global _world
    if _world is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    MPI = load_mpi()
    comm = MPI.COMM_WORLD
    n, r = comm.Get_size(), comm.Get_rank()
    env_size, env_rank = os.environ.get("WORLD_SIZE"), os.environ.get("RANK")
    for what, given, actual in (("world_size", world_size, n), ("rank", rank, r),
                                ("WORLD_SIZE", env_size, n), ("RANK", env_rank, r)):
        if given in (None, -1, "", "-1"):
            continue
        if int(given) != actual:
            hint = ("start the processes with `ember-run --nproc-per-node N script.py` or "
                    "`mpiexec -n N python script.py`: ember.distributed joins processes "
                    "through MPI") if n == 1 else "the MPI launcher decides ranks"
            raise RuntimeError(f"init_process_group: {what}={given}, but MPI sees rank {r} of "
                               f"{n} processes; {hint}")
    name = (backend or "").lower()
    if not name:
        name = "nccl" if _cuda_ok() else "mpi"
    if name not in ("mpi", "gloo", "nccl") and not name.startswith("cpu:"):
        raise ValueError(f"Invalid backend: '{backend}' (ember.distributed supports 'mpi', "
                         "'gloo' (run on MPI) and 'nccl')")
    seconds = (timeout or _env_timeout()).total_seconds()
    device_index = None
    if "nccl" in name:
        device_index = getattr(device_id, "index", None)
        if device_index is None:
            device_index = int(os.environ.get("LOCAL_RANK", _local_rank()))
    _world = ProcessGroup(comm, name, seconds, device_index)
    GroupMember.WORLD = _world
    if n > 1:
        _install_abort_hook()


def _cuda_ok() -> bool:
    try:
        from ember.devices import _load_cupy
        return _load_cupy() is not None and is_nccl_available()
    except Exception:
        return False


def _env_timeout() -> datetime.timedelta:
    s = os.environ.get("EMBER_DISTRIBUTED_TIMEOUT")
    return datetime.timedelta(seconds=float(s)) if s else DEFAULT_TIMEOUT


def _local_rank() -> int:
    for var in ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def _install_abort_hook() -> None:
    """An uncaught exception on one rank ends every rank (MPI_Abort), with its traceback:
    the others would otherwise wait in their next collective until the timeout."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(tp, value, tb):
        r = _world.rank if _world is not None else os.environ.get("RANK", "?")
        note = f"[ember.distributed] rank {r} raised {tp.__name__}: ending the job (MPI_Abort)\n"
        try:
            if previous is sys.__excepthook__:
                # One write of the whole message, then a moment before the abort: the MPI
                # launcher forwards a rank's stderr through a pipe and stops reading it
                # when the job is aborted, so a traceback printed line by line was seen
                # cut off mid-frame (1 run in 15).
                text = "".join(traceback.format_exception(tp, value, tb)) + note
                sys.stdout.flush()
                sys.stderr.flush()
                os.write(2, text.encode("utf-8", "backslashreplace"))
            else:
                previous(tp, value, tb)
                sys.stderr.write(note)
                sys.stderr.flush()
                sys.stdout.flush()
            time.sleep(_ABORT_GRACE_S)
        finally:
            load_mpi().COMM_WORLD.Abort(1)

    sys.excepthook = hook


def destroy_process_group(group: ProcessGroup | None = None) -> None:
    """Leave the default group (or ``group``); collectives then need a new init."""
    global _world
    pg = group or _world
    if pg is None:
        return
    if pg.nccl is not None:
        pg.nccl.close()
    if pg is _world:
        _world = None
        GroupMember.WORLD = None
    else:
        pg.mpi.close()
    ProcessGroup._by_id.pop(pg.id, None)


def default_group(what: str) -> ProcessGroup:
    if _world is None:
        raise ValueError(f"{what}: Default process group has not been initialized, please make "
                         "sure to call init_process_group.")
    return _world


def resolve(group, what: str) -> ProcessGroup:
    if group is None or group is GroupMember.WORLD:
        return default_group(what)
    if group is GroupMember.NON_GROUP_MEMBER:
        raise RuntimeError(f"{what}: this rank is not a member of the group")
    return group


def group_by_id(gid: int) -> ProcessGroup:
    pg = ProcessGroup._by_id.get(gid)
    if pg is None:
        raise RuntimeError(f"process group {gid} was destroyed; a compiled function that "
                           "used it must be traced again")
    return pg


def get_rank(group: ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (the default group: 0 .. world_size - 1)."""
    return resolve(group, "get_rank").rank


def get_world_size(group: ProcessGroup | None = None) -> int:
    """How many processes ``group`` has."""
    return resolve(group, "get_world_size").size


def get_backend(group: ProcessGroup | None = None) -> str:
    return resolve(group, "get_backend").backend_name


def new_group(ranks: list[int] | None = None, timeout: datetime.timedelta | None = None,
              backend: str | None = None, pg_options=None, use_local_synchronization=False):
    """A group of some ranks of the default group. Every rank calls it (as in PyTorch);
    ranks outside ``ranks`` get ``GroupMember.NON_GROUP_MEMBER``."""
    world = default_group("new_group")
    MPI = load_mpi()
    ranks = sorted(range(world.size) if ranks is None else ranks)
    member = world.rank in ranks
    comm = world.comm.Split(0 if member else MPI.UNDEFINED, ranks.index(world.rank)
                            if member else 0)
    if not member:
        return GroupMember.NON_GROUP_MEMBER
    seconds = timeout.total_seconds() if timeout else world.timeout
    return ProcessGroup(comm, (backend or world.backend_name).lower(), seconds,
                        world.nccl.device if world.nccl else None)


def get_global_rank(group: ProcessGroup, group_rank: int) -> int:
    return resolve(group, "get_global_rank").global_ranks[group_rank]
