"""What runs in a DataLoader worker process: seeding, ``get_worker_info``, fetching
batches, and carrying an exception back to the main process with its traceback."""
from __future__ import annotations

import os
import queue
import random
import sys
import traceback
from typing import Any, Callable

import numpy as np

_worker_info: WorkerInfo | None = None
# How often (seconds) an idle worker checks that the main process still exists and
# still wants it.
STATUS_CHECK_INTERVAL = 1.0


class WorkerInfo:
    """Which worker this is: ``id``, ``num_workers``, ``seed`` (base seed + id) and its
    copy of ``dataset``. Read-only, as PyTorch's."""

    __initialized = False

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.__keys = tuple(kwargs)
        self.__initialized = True

    def __setattr__(self, key: str, val: Any) -> None:
        if self.__initialized:
            raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")
        super().__setattr__(key, val)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={getattr(self, k)}" for k in self.__keys)
        return f"{type(self).__name__}({items})"


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its ``WorkerInfo``; None in the main process.

    >>> info = get_worker_info()
    >>> shard = range(info.id, n, info.num_workers) if info else range(n)
    """
    return _worker_info


class ExceptionWrapper:
    """An exception raised in a worker, as its type and its formatted traceback."""

    def __init__(self, exc_info=None, where: str = "in background") -> None:
        exc_info = exc_info or sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self) -> None:
        """Raise the exception again, its message the worker's traceback (PyTorch's text)."""
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)  # KeyError repr()s its message; keep the lines
        try:
            exception = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        raise exception


class _KeyErrorMessage(str):
    def __repr__(self) -> str:
        return self


class IterableStop:
    """A worker's iterable dataset is exhausted."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class ResumeIteration:
    """Sent to persistent workers at a new epoch: start the dataset's iterator again."""


def numpy_seed(base_seed: int, worker_id: int) -> np.ndarray:
    """The NumPy seed of a worker, as PyTorch's ``_generate_state`` (which is NumPy's
    SeedSequence over these four words): distinct from ``random``'s and torch's seed."""
    entropy = [worker_id, base_seed & 0xFFFFFFFF, base_seed >> 32, 0]
    return np.random.SeedSequence(entropy).generate_state(4)


def worker_loop(fetcher_factory: Callable[[], Any], index_queue, data_queue, done_event,
                base_seed: int, init_fn: Callable[[int], None] | None, worker_id: int,
                num_workers: int, dataset: Any, iterable: bool) -> None:
    """Seed as PyTorch does, then fetch each (task index, indices) sent until None."""
    global _worker_info
    try:
        import ember
        seed = base_seed + worker_id
        random.seed(seed)
        ember.manual_seed(seed)
        np.random.seed(numpy_seed(base_seed, worker_id))
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                  dataset=dataset)
        parent = os.getppid()
        init_error = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = fetcher_factory()
        except Exception:
            init_error = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
        exhausted = False
        while True:
            try:
                task = index_queue.get(timeout=STATUS_CHECK_INTERVAL)
            except queue.Empty:
                if os.getppid() != parent or done_event.is_set():
                    break  # the main process is gone, or has shut the workers down
                continue
            if isinstance(task, ResumeIteration):
                data_queue.put((task, None))
                exhausted = False
                if init_error is None:
                    fetcher = fetcher_factory()
                continue
            if task is None:
                break
            if done_event.is_set() or exhausted:
                continue
            idx, index = task
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetcher.fetch(index)
                except Exception as e:
                    if isinstance(e, StopIteration) and iterable:
                        data = IterableStop(worker_id)
                        exhausted = True
                    else:
                        data = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
            data_queue.put((idx, data))
            del data
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        # Don't wait at exit to flush results nobody will read.
        data_queue.cancel_join_thread()
        data_queue.close()
