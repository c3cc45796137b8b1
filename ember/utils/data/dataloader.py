"""DataLoader: batches of samples from a dataset, in this process or in worker processes.

The pieces are PyTorch's: a sampler gives indices, a batch sampler groups them, a fetcher
turns a group into samples and ``collate_fn`` into a batch. With ``num_workers > 0`` each
batch is fetched in one of ``num_workers`` processes (round-robin, ``prefetch_factor``
batches in flight per worker) and handed out in sampler order.
"""
from __future__ import annotations

import functools
import itertools
import multiprocessing
import queue
import warnings
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ember.tensor import Tensor, tensor, array_of
from ember.utils.data import _worker
from ember.utils.data._random import seed_from
from ember.utils.data.collate import default_collate, default_convert
from ember.utils.data.dataset import Dataset, IterableDataset, TensorDataset
from ember.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

get_worker_info = _worker.get_worker_info

# Seconds between checks that workers are alive while the main process waits for a batch.
_LIVENESS_INTERVAL = 1.0


class DataLoader:
    """Iterate over ``dataset`` in batches, with PyTorch's arguments and checks.

    ``shuffle=True`` draws a new order every epoch from ``generator`` (or ember's
    generator: ``ember.manual_seed`` makes it reproducible). ``sampler``/``batch_sampler``
    choose the indices instead; ``collate_fn`` turns a list of samples into a batch
    (``default_collate`` by default); ``batch_size=None`` yields samples one at a time.
    ``num_workers > 0`` fetches batches in that many processes, each seeded with
    ``base_seed + worker_id`` (``random``, NumPy and ember), ``worker_init_fn(worker_id)``
    called first; results come back in order and a worker's exception is raised here with
    its traceback. ``pin_memory`` copies batches to page-locked memory when CUDA is there
    and does nothing otherwise, as in PyTorch.

    >>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, num_workers=2)
    >>> for xb, yb in loader:
    ...     ...
    """

    _LOCKED = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
               "persistent_workers")

    def __init__(self, dataset: Dataset, batch_size: int | None = 1,
                 shuffle: bool | None = None, sampler: Sampler | Iterable | None = None,
                 batch_sampler: Sampler | Iterable | None = None, num_workers: int = 0,
                 collate_fn: Callable[[list], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: Any = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True) -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 "
                             "to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing.let num_workers > 0 to enable multiprocessing, "
                             "otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in {False, None}:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
            else:
                sampler = SequentialSampler(dataset)  # type: ignore[arg-type]
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self._iterator: Any = None
        self.__initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_DataLoader__initialized") and name in self._LOCKED:
            raise ValueError(f"{name} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._index_sampler)

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            if self._iterator is None:
                self._iterator = _MultiProcessIter(self)
            else:
                self._iterator._reset(self)
            return self._iterator
        return _MultiProcessIter(self)

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"num_workers={self.num_workers}, drop_last={self.drop_last})")


class _InfiniteConstantSampler(Sampler):
    """An iterable dataset's 'indices': None forever (the dataset decides when to stop)."""

    def __iter__(self):
        while True:
            yield None


# ---- fetching: indices to a batch ----------------------------------------------------------

class _MapFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        # A TensorDataset batch is one gather per tensor, not a stack of rows (same values).
        self.gather = type(dataset) is TensorDataset and collate_fn is default_collate

    def fetch(self, index):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self.gather:
            rows = tensor(np.asarray(index, dtype=np.int64))
            return tuple(t[rows if t.device.type == "cpu" else rows.to(t.device)]
                         for t in self.dataset.tensors)
        getitems = getattr(self.dataset, "__getitems__", None)
        data = getitems(index) if callable(getitems) else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class _IterableFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def _fetcher_factory(loader: DataLoader) -> Callable[[], Any]:
    kind = _IterableFetcher if loader._iterable else _MapFetcher
    dataset, auto, collate, drop = (loader.dataset, loader._auto_collation, loader.collate_fn,
                                    loader.drop_last)
    return functools.partial(kind, dataset, auto, collate, drop)  # picklable, for spawn


# ---- pinning ------------------------------------------------------------------------------------

def _pin(data: Any) -> Any:
    """``data`` with its CPU tensors copied to page-locked memory (CuPy's pinned pool)."""
    import cupyx  # only reached when CUDA is available
    if isinstance(data, Tensor):
        if data.device.type != "cpu":
            return data
        host = array_of(data)
        pinned = cupyx.empty_pinned(host.shape, host.dtype)
        pinned[...] = host
        return Tensor._wrap(pinned, data.requires_grad)
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(_pin(d) for d in data))
    if isinstance(data, (tuple, list)):
        return type(data)(_pin(d) for d in data)
    if isinstance(data, dict):
        return type(data)((k, _pin(v)) for k, v in data.items())
    return data


def _can_pin(loader: DataLoader) -> bool:
    if not loader.pin_memory:
        return False
    from ember import cuda
    if not cuda.is_available():
        warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then "
                      "device pinned memory won't be used.", stacklevel=3)
        return False
    try:
        import cupyx
        return callable(getattr(cupyx, "empty_pinned", None))
    except ImportError:
        return False


# ---- iterators -------------------------------------------------------------------------------

class _BaseIter:
    def __init__(self, loader: DataLoader) -> None:
        self._loader = loader
        self._pin = _can_pin(loader)
        self._sampler_iter = iter(loader._index_sampler)
        self._num_yielded = 0
        # Drawn by every iterator, workers or not, as PyTorch does (so a loop over a
        # loader moves the global generator the same way whatever num_workers is).
        self._base_seed = seed_from(loader.generator)

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def _next_index(self):
        return next(self._sampler_iter)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._fetcher = _fetcher_factory(loader)()

    def __next__(self) -> Any:
        data = self._fetcher.fetch(self._next_index())
        self._num_yielded += 1
        return _pin(data) if self._pin else data


class _MultiProcessIter(_BaseIter):
    """Batches fetched by worker processes, returned in sampler order (PyTorch's design:
    one index queue per worker, one result queue, a reorder buffer keyed by task number)."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._shutdown = True
        n = self._num_workers = loader.num_workers
        self._prefetch = loader.prefetch_factor * n
        self._timeout = loader.timeout
        self._persistent = loader.persistent_workers
        self._in_order = loader.in_order
        self._iterable = loader._iterable
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = multiprocessing.get_context()
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        self._done_event = ctx.Event()
        self._result_queue = ctx.Queue()
        self._index_queues, self._workers = [], []
        factory = _fetcher_factory(loader)
        for worker_id in range(n):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()
            w = ctx.Process(target=_worker.worker_loop, daemon=True,
                            args=(factory, index_queue, self._result_queue, self._done_event,
                                  self._base_seed, loader.worker_init_fn, worker_id, n,
                                  loader.dataset, self._iterable))
            w.start()
            self._index_queues.append(index_queue)
            self._workers.append(w)
        self._shutdown = False
        self._reset(loader, first=True)

    def _reset(self, loader: DataLoader, first: bool = False) -> None:
        self._sampler_iter = iter(loader._index_sampler)
        self._num_yielded = 0
        self._send_idx = 0
        self._rcvd_idx = 0
        self._task_info: dict[int, tuple] = {}  # task -> (worker,) or (worker, data)
        self._active = [True] * self._num_workers
        self._cycle = itertools.cycle(range(self._num_workers))
        if not first:
            # Persistent workers start their datasets again; results of the last epoch's
            # unfinished tasks arrive before each worker's answer and are dropped.
            for q in self._index_queues:
                q.put(_worker.ResumeIteration())
            waiting = self._num_workers
            while waiting:
                idx, _ = self._get_data()
                if isinstance(idx, _worker.ResumeIteration):
                    waiting -= 1
        for _ in range(self._prefetch):
            self._try_put_index()

    def _try_put_index(self) -> None:
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):
            worker = next(self._cycle)
            if self._active[worker]:
                break
        else:
            return
        self._index_queues[worker].put((self._send_idx, index))
        self._task_info[self._send_idx] = (worker,)
        self._send_idx += 1

    def _get_data(self) -> tuple:
        if self._timeout > 0:
            try:
                return self._result_queue.get(timeout=self._timeout)
            except queue.Empty:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None
        while True:
            try:
                return self._result_queue.get(timeout=_LIVENESS_INTERVAL)
            except queue.Empty:
                dead = [w for i, w in enumerate(self._workers)
                        if self._active[i] and not w.is_alive()]
                if dead:
                    pids = ", ".join(str(w.pid) for w in dead)
                    self._shutdown_workers()
                    raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited "
                                       "unexpectedly") from None

    def __next__(self) -> Any:
        while True:
            if not self._in_order:  # any batch that has arrived, whatever its number
                for idx, info in list(self._task_info.items()):
                    if len(info) == 2:
                        del self._task_info[idx]
                        return self._process(info[1])
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info is not None and (len(info) == 2 or self._active[info[0]]):
                    break
                self._task_info.pop(self._rcvd_idx, None)  # its worker's dataset ended
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self._shutdown_workers()
                raise StopIteration
            if self._rcvd_idx in self._task_info and len(self._task_info[self._rcvd_idx]) == 2:
                data = self._task_info.pop(self._rcvd_idx)[1]
                self._rcvd_idx += 1
                return self._process(data)
            idx, data = self._get_data()
            if isinstance(idx, _worker.ResumeIteration):
                continue
            if isinstance(data, _worker.IterableStop):
                self._active[data.worker_id] = False
                self._task_info.pop(idx, None)
                self._try_put_index()
                continue
            if idx not in self._task_info:
                continue  # a task voided by its worker's end
            if idx == self._rcvd_idx or not self._in_order:
                del self._task_info[idx]
                if idx == self._rcvd_idx:
                    self._rcvd_idx += 1
                return self._process(data)
            self._task_info[idx] += (data,)

    def _process(self, data: Any) -> Any:
        self._try_put_index()
        if isinstance(data, _worker.ExceptionWrapper):
            data.reraise()
        self._num_yielded += 1
        return _pin(data) if self._pin else data

    def _shutdown_workers(self, wait: float = 5.0) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._done_event.set()
        for q in self._index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.join(timeout=wait)
            if w.is_alive():
                w.terminate()
                w.join()
        for q in self._index_queues:
            q.close()
        self._result_queue.cancel_join_thread()
        self._result_queue.close()

    def __del__(self) -> None:
        # Reached from the garbage collector (an iterator left in an exception's traceback,
        # say), where the index queues' feeder threads may be gone with the rest of the
        # cycle and the None never sent: the workers see the done event within their
        # status check interval, or are terminated (they hold nothing the main one needs).
        try:
            self._shutdown_workers(wait=_worker.STATUS_CHECK_INTERVAL + 0.5)
        except Exception:  # interpreter shutdown: modules may be gone
            pass
