"""``torch.multiprocessing``: Python's multiprocessing, tensors in shared memory, ``spawn``.

``Tensor.share_memory_()`` moves a CPU tensor's data into an anonymous shared mapping:
processes forked afterwards (the "fork" start method, Linux's default, as in PyTorch's
Hogwild example) write the same memory, so a model trained in several children after
``model.share_memory()`` is updated in the parent. A shared tensor cannot cross to a
process by pickling (the "spawn"/"forkserver" start methods, a queue): its memory would
be copied and the processes would silently train separate models, so that raises,
saying to fork instead.

>>> import ember.multiprocessing as mp
>>> model.share_memory()
>>> ps = [mp.Process(target=train, args=(model,)) for _ in range(2)]
"""
from __future__ import annotations

import mmap
import multiprocessing as _mp
import traceback
from multiprocessing import *  # noqa: F401,F403  (torch.multiprocessing re-exports it)
from multiprocessing.reduction import ForkingPickler

import numpy as np

from ember.nn.parameter import Parameter
from ember.tensor import Tensor


def share_memory_(t: Tensor) -> Tensor:
    """``Tensor.share_memory_()``: the data moved into shared memory (a no-op on CUDA and
    for a tensor already shared)."""
    if t.device.type != "cpu" or is_shared(t):
        return t
    if t._base is not None:
        raise RuntimeError("share_memory_: a view cannot move its base's memory; share the "
                           "tensor it views")
    a = t._data
    buf = mmap.mmap(-1, max(a.nbytes, 1))   # anonymous and MAP_SHARED: forks share it
    shared = np.frombuffer(buf, dtype=a.dtype, count=a.size).reshape(a.shape)
    shared[...] = a
    t._data = shared
    return t


def is_shared(t: Tensor) -> bool:
    """Whether the tensor's data lives in shared memory (CUDA tensors always count)."""
    if t.device.type != "cpu":
        return True
    a = t._data
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    if isinstance(a, memoryview):   # (np.frombuffer's base)
        a = a.obj
    return isinstance(a, mmap.mmap)


def _reduce_for_processes(t: Tensor):
    if is_shared(t) and t.device.type == "cpu":
        raise RuntimeError("a tensor in shared memory (share_memory_) reaches another process "
                           "only by fork: pickled to a 'spawn' process or through a queue it "
                           "would be copied, and the processes would not share it. Use "
                           "multiprocessing.get_context('fork').")
    return t.__reduce_ex__(2)


# (ForkingPickler looks reducers up by exact type: Parameter needs its own entry)
for _cls in (Tensor, Parameter):
    ForkingPickler.register(_cls, _reduce_for_processes)


class ProcessRaisedException(Exception):
    """A process started by ``spawn`` raised; the message holds its traceback."""

    def __init__(self, msg: str, error_index: int, error_pid: int) -> None:
        super().__init__(msg)
        self.error_index, self.pid = error_index, error_pid


class ProcessExitedException(ProcessRaisedException):
    """A process started by ``spawn`` exited with a non-zero code (a signal)."""

    def __init__(self, msg: str, error_index: int, error_pid: int, exit_code: int) -> None:
        super().__init__(msg, error_index, error_pid)
        self.exit_code = exit_code


def _run(fn, i: int, args: tuple, errors) -> None:
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass
    except Exception:
        errors.put((i, traceback.format_exc()))
        raise SystemExit(1)


def spawn(fn, args: tuple = (), nprocs: int = 1, join: bool = True, daemon: bool = False,
          start_method: str = "spawn"):
    """Run ``fn(i, *args)`` in ``nprocs`` processes, as ``torch.multiprocessing.spawn``;
    raise if one fails (with its traceback). ``join=False`` returns the processes.

    >>> mp.spawn(train, args=(model,), nprocs=2, start_method="fork")
    """
    ctx = _mp.get_context(start_method)
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_run, args=(fn, i, args, errors), daemon=daemon)
             for i in range(nprocs)]
    for p in procs:
        p.start()
    if not join:
        return procs
    for p in procs:
        p.join()
    if not errors.empty():
        i, tb = errors.get()
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise ProcessRaisedException(f"\n\n-- Process {i} terminated with the following "
                                     f"error:\n{tb}", i, procs[i].pid)
    for i, p in enumerate(procs):
        if p.exitcode:
            raise ProcessExitedException(f"process {i} terminated with exit code "
                                         f"{p.exitcode}", i, p.pid, p.exitcode)
    return None


Tensor.share_memory_ = share_memory_
Tensor.is_shared = is_shared
