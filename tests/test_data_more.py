"""ember.utils.data against torch.utils.data: samplers, DataLoader options and errors,
collation, splits, iterable datasets and real worker processes."""
from __future__ import annotations

import collections
import itertools
import os
import random
import time
import warnings

import numpy as np
import pytest

import ember
from ember.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset,
                              IterableDataset, RandomSampler, Sampler, SequentialSampler, Subset,
                              SubsetRandomSampler, TensorDataset, WeightedRandomSampler,
                              default_collate, default_convert, get_worker_info, random_split)
from ember.utils.data._worker import numpy_seed


def _to_np(x):
    if isinstance(x, ember.Tensor) or type(x).__module__.startswith("torch"):
        return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)
    return x


def _same_batch(e, t) -> None:
    """An ember batch equals a torch batch: same values, structure and field names."""
    if isinstance(t, dict):
        assert isinstance(e, dict) and list(e) == list(t)
        for k in t:
            _same_batch(e[k], t[k])
    elif isinstance(t, (list, tuple)):
        # torch gives a list where a sample is a plain tuple; ember keeps the tuple.
        assert isinstance(e, (list, tuple)) and len(e) == len(t)
        if hasattr(t, "_fields"):
            assert type(e).__name__ == type(t).__name__ and e._fields == t._fields
        for a, b in zip(e, t):
            _same_batch(a, b)
    elif hasattr(t, "numpy"):
        assert isinstance(e, ember.Tensor)
        assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    else:
        assert e == t


# ---- datasets used in both libraries (plain Python, so torch can index them too) ----------

class Rows(Dataset):
    """Samples of every collatable kind."""

    Point = collections.namedtuple("Point", "x y")

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return {"vec": np.arange(3, dtype=np.float32) + i, "i": i, "f": i / 2,
                "name": f"s{i}", "pt": self.Point(i, np.float64(i) * 2)}


class WorkerReport(Dataset):
    """What each worker sees: its pid, info, and the first draws of every generator."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        info = get_worker_info()
        return {"i": i, "pid": os.getpid(),
                "id": -1 if info is None else info.id,
                "seed": -1 if info is None else info.seed,
                "py": random.random(), "np": float(np.random.rand()),
                "init": _INIT_MARK.get("worker", -1)}


_INIT_MARK: dict = {}


def _mark_init(worker_id: int) -> None:
    _INIT_MARK["worker"] = worker_id * 10


class Stream(IterableDataset):
    """0..n-1, split between workers by get_worker_info (PyTorch's documented pattern)."""

    def __init__(self, n: int, shard: bool = True) -> None:
        self.n, self.shard = n, shard

    def __iter__(self):
        info = get_worker_info()
        if info is None or not self.shard:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


class TorchStream:
    """The same stream for torch (its own get_worker_info)."""

    def __new__(cls, n: int):
        import torch.utils.data as tud

        class _S(tud.IterableDataset):
            def __iter__(self):
                info = tud.get_worker_info()
                if info is None:
                    return iter(range(n))
                return iter(range(info.id, n, info.num_workers))
        return _S()


class Failing(Dataset):
    def __init__(self, bad: int, exc=ValueError) -> None:
        self.bad, self.exc = bad, exc

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        if i == self.bad:
            raise self.exc(f"bad sample {i}")
        return i


class Dying(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        if i == 5:
            os._exit(3)
        return i


class Slow(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        time.sleep(3.0 if i == 2 else 0.0)
        return i


# ---- samplers ---------------------------------------------------------------------------

def test_sequential_and_batch_sampler_equal_torch():
    tud = pytest.importorskip("torch.utils.data")
    for n, bs, drop in [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False), (0, 2, False)]:
        e = BatchSampler(SequentialSampler(range(n)), bs, drop)
        t = tud.BatchSampler(tud.SequentialSampler(range(n)), bs, drop)
        assert list(e) == list(t) and len(e) == len(t)


@pytest.mark.parametrize("args", [(0, False), (-1, False), (2.0, False), (True, False),
                                  (2, "yes"), (2, 1)])
def test_batch_sampler_errors_equal_torch(args):
    tud = pytest.importorskip("torch.utils.data")
    with pytest.raises(Exception) as te:
        tud.BatchSampler(range(4), *args)
    with pytest.raises(type(te.value), match=_re(str(te.value))):
        BatchSampler(range(4), *args)


def _re(text: str) -> str:
    import re
    return "^" + re.escape(text) + "$"


def test_random_sampler_permutations():
    ember.manual_seed(3)
    s = RandomSampler(range(50))
    first, second = list(s), list(s)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != second and first != list(range(50))
    ember.manual_seed(3)
    assert list(s) == first
    # More samples than items: whole permutations, then part of one (as torch).
    many = list(RandomSampler(range(7), num_samples=17))
    assert len(many) == 17
    assert sorted(many[:7]) == list(range(7)) and sorted(many[7:14]) == list(range(7))
    assert len(set(many[14:])) == 3
    drawn = list(RandomSampler(range(5), replacement=True, num_samples=200))
    assert len(drawn) == 200 and set(drawn) == set(range(5))


@pytest.mark.parametrize("kwargs", [{"replacement": 1}, {"num_samples": 0},
                                    {"num_samples": -3}, {"num_samples": 2.5}])
def test_random_sampler_errors_equal_torch(kwargs):
    tud = pytest.importorskip("torch.utils.data")
    with pytest.raises(Exception) as te:
        tud.RandomSampler(range(4), **kwargs)
    with pytest.raises(type(te.value), match=_re(str(te.value))):
        RandomSampler(range(4), **kwargs)


def test_generator_argument_gives_reproducible_orders():
    def rng(seed):
        return ember.Generator().manual_seed(seed)
    a = list(RandomSampler(range(30), generator=rng(7)))
    ember.manual_seed(0)
    b = list(RandomSampler(range(30), generator=rng(7)))
    assert a == b and sorted(a) == list(range(30))
    assert list(RandomSampler(range(30), generator=rng(8))) != a
    g = rng(7)
    first = list(RandomSampler(range(30), generator=g))
    assert first == a and list(RandomSampler(range(30), generator=g)) != a  # g advanced


def test_subset_random_sampler():
    idx = [3, 8, 11, 20, 21]
    ember.manual_seed(0)
    s = SubsetRandomSampler(idx)
    orders = [list(s) for _ in range(5)]
    assert all(sorted(o) == idx for o in orders) and len(s) == 5
    assert len({tuple(o) for o in orders}) > 1


def test_weighted_random_sampler_frequencies():
    ember.manual_seed(0)
    w = [0.0, 1.0, 3.0, 0.0, 6.0]
    draws = np.array(list(WeightedRandomSampler(w, 20000)))
    counts = np.bincount(draws, minlength=5) / 20000
    assert counts[0] == 0 and counts[3] == 0
    np.testing.assert_allclose(counts, np.array(w) / 10, atol=0.015)
    once = list(WeightedRandomSampler(ember.tensor(w), 3, replacement=False))
    assert sorted(once) == [1, 2, 4]
    with pytest.raises(RuntimeError, match="without replacement"):
        list(WeightedRandomSampler(w, 4, replacement=False))
    with pytest.raises(RuntimeError, match="invalid multinomial"):
        list(WeightedRandomSampler([1.0, -1.0], 2))


@pytest.mark.parametrize("args", [([1.0, 2.0], 0), ([1.0, 2.0], 2, 1), ([[1.0, 2.0]], 2)])
def test_weighted_random_sampler_errors_equal_torch(args):
    tud = pytest.importorskip("torch.utils.data")
    with pytest.raises(Exception) as te:
        tud.WeightedRandomSampler(*args)
    with pytest.raises(type(te.value), match=_re(str(te.value))):
        WeightedRandomSampler(*args)


def test_custom_sampler_subclass():
    class Evens(Sampler):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(0, self.n, 2))

        def __len__(self):
            return (self.n + 1) // 2

    loader = DataLoader(TensorDataset(ember.arange(10)), batch_size=2, sampler=Evens(10))
    assert [b[0].tolist() for b in loader] == [[0, 2], [4, 6], [8]]
    assert len(loader) == 3


# ---- DataLoader arguments ------------------------------------------------------------------

_BAD_ARGS = [
    {"num_workers": -1}, {"timeout": -1}, {"prefetch_factor": 2},
    {"num_workers": 1, "prefetch_factor": -1}, {"persistent_workers": True},
    {"sampler": [0, 1], "shuffle": True}, {"batch_sampler": [[0]], "batch_size": 2},
    {"batch_sampler": [[0]], "shuffle": True}, {"batch_sampler": [[0]], "drop_last": True},
    {"batch_sampler": [[0]], "sampler": [0]}, {"batch_size": None, "drop_last": True},
    {"batch_size": 0}, {"batch_size": -2}, {"drop_last": 1},
]


@pytest.mark.parametrize("kwargs", _BAD_ARGS)
def test_loader_argument_errors_equal_torch(kwargs):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as te:
        torch.utils.data.DataLoader(list(range(4)), **kwargs)
    with pytest.raises(type(te.value), match=_re(str(te.value))):
        DataLoader(list(range(4)), **kwargs)


@pytest.mark.parametrize("kwargs", [{"shuffle": True}, {"sampler": [0]}, {"batch_sampler": [[0]]}])
def test_iterable_dataset_argument_errors_equal_torch(kwargs):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as te:
        torch.utils.data.DataLoader(TorchStream(4), **kwargs)
    # The messages print the argument: compare them with ember's own argument.
    with pytest.raises(type(te.value), match=str(te.value).split(", but")[0]):
        DataLoader(Stream(4), **kwargs)


def test_attributes_locked_after_init():
    loader = DataLoader(list(range(4)), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set after "
                                         "DataLoader is initialized"):
        loader.batch_size = 3
    loader.num_workers = 0  # not locked, as in torch


# ---- DataLoader batches against torch's ----------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"batch_size": 3}, {"batch_size": 4, "drop_last": True},
                                    {"batch_size": None},
                                    {"batch_sampler": [[4, 1], [0], [7, 8, 9]]},
                                    {"batch_size": 2, "sampler": [9, 3, 3, 0]}])
def test_batches_equal_torch(kwargs):
    torch = pytest.importorskip("torch")
    mine = list(DataLoader(Rows(10), **kwargs))
    theirs = list(torch.utils.data.DataLoader(Rows(10), **kwargs))
    assert len(mine) == len(theirs)
    for e, t in zip(mine, theirs):
        _same_batch(e, t)


def test_tensor_dataset_batches_equal_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10)
    mine = list(DataLoader(TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=4))
    theirs = list(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4))
    for e, t in zip(mine, theirs):
        _same_batch(e, t)


def test_default_collate_equals_torch():
    pytest.importorskip("torch")
    from torch.utils.data import default_collate as tcollate
    cases = [
        [Rows()[0], Rows()[1]],
        [(1, 2.0, True), (3, 4.0, False)],
        [np.float32(1.5), np.float32(2.5)],
        [collections.OrderedDict(a=1, b=2), collections.OrderedDict(a=3, b=4)],
        [[np.ones((2, 2)), "a"], [np.zeros((2, 2)), "b"]],
    ]
    for batch in cases:
        e, t = default_collate(batch), tcollate(batch)
        _same_batch(e, t)
        if isinstance(t, dict):
            assert type(e) is type(t)
    with pytest.raises(TypeError) as te:
        tcollate([object()])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        default_collate([object()])
    assert "default_collate: batch must contain tensors" in str(te.value)


def test_default_convert_equals_torch():
    pytest.importorskip("torch")
    from torch.utils.data import default_convert as tconvert
    for sample in [np.arange(3), {"a": np.ones(2), "b": "s"}, (np.int64(3), [np.zeros(1)]),
                   Rows.Point(np.ones(1), 2)]:
        _same_batch(default_convert(sample), tconvert(sample))


def test_random_split_lengths_equal_torch():
    torch = pytest.importorskip("torch")
    for n, fracs in [(10, [0.7, 0.3]), (11, [0.5, 0.25, 0.25]), (7, [0.1, 0.9]), (5, [1.0])]:
        g = torch.Generator().manual_seed(0)
        theirs = [len(s) for s in torch.utils.data.random_split(range(n), fracs, generator=g)]
        mine = random_split(list(range(n)), fracs)
        assert [len(s) for s in mine] == theirs
        assert sorted(i for s in mine for i in s.indices) == list(range(n))
    for fracs in ([1.5, -0.5], [0.5, 0.7, -0.2]):
        with pytest.raises(ValueError) as te:
            torch.utils.data.random_split(range(4), fracs)
        with pytest.raises(ValueError, match=_re(str(te.value))):
            random_split(list(range(4)), fracs)
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        random_split(list(range(2)), [0.9, 0.1])


def test_random_split_generator():
    a = random_split(list(range(20)), [15, 5], generator=ember.Generator().manual_seed(4))
    b = random_split(list(range(20)), [15, 5], generator=ember.Generator().manual_seed(4))
    assert a[0].indices == b[0].indices and a[1].indices == b[1].indices
    assert [a[1][i] for i in range(5)] == a[1].indices


def test_subset_getitems_and_concat_errors():
    ds = TensorDataset(ember.arange(10) * 10)
    sub = Subset(ds, [9, 0, 4])
    assert [s[0].item() for s in sub.__getitems__([0, 2])] == [90, 40]
    loader = DataLoader(sub, batch_size=3, collate_fn=lambda b: [s[0].item() for s in b])
    assert list(loader) == [[90, 0, 40]]
    with pytest.raises(AssertionError, match="ConcatDataset does not support IterableDataset"):
        ConcatDataset([ds, Stream(3)])
    assert list(ChainDataset([Stream(2), Stream(3)])) == [0, 1, 0, 1, 2]
    assert list(Stream(2) + Stream(1)) == [0, 1, 0]


# ---- iterable datasets ---------------------------------------------------------------------

def test_iterable_dataset_single_process():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == \
        [[0, 1, 2], [3, 4, 5]]
    assert [int(v) for v in DataLoader(Stream(3), batch_size=None)] == [0, 1, 2]


@pytest.mark.parametrize("workers, batch", [(2, 3), (3, 2), (2, None)])
def test_iterable_dataset_workers_order_equals_torch(workers, batch):
    torch = pytest.importorskip("torch")
    mine = [b.tolist() if isinstance(b, ember.Tensor) else b
            for b in DataLoader(Stream(11), batch_size=batch, num_workers=workers)]
    theirs = [b.tolist() if hasattr(b, "tolist") else b
              for b in torch.utils.data.DataLoader(TorchStream(11), batch_size=batch,
                                                   num_workers=workers)]
    assert mine == theirs


def test_iterable_dataset_without_sharding_repeats_per_worker():
    got = [b.tolist() for b in DataLoader(Stream(4, shard=False), batch_size=4, num_workers=2)]
    assert got == [[0, 1, 2, 3], [0, 1, 2, 3]]


# ---- worker processes -----------------------------------------------------------------------

def test_workers_give_the_same_batches_in_order():
    x = ember.randn(37, 3)
    y = ember.arange(37)
    ds = TensorDataset(x, y)
    plain = [(a.numpy(), b.numpy()) for a, b in DataLoader(ds, batch_size=5)]
    for workers in (1, 3):
        got = [(a.numpy(), b.numpy()) for a, b in DataLoader(ds, batch_size=5,
                                                               num_workers=workers)]
        assert len(got) == len(plain)
        for (a, b), (c, d) in zip(got, plain):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


def test_workers_are_processes_seeded_like_torch():
    ember.manual_seed(11)
    loader = DataLoader(WorkerReport(), batch_size=2, num_workers=3, worker_init_fn=_mark_init,
                        collate_fn=lambda b: b)
    rows = [r for batch in loader for r in batch]
    assert [r["i"] for r in rows] == list(range(12))
    pids = {r["pid"] for r in rows}
    assert len(pids) == 3 and os.getpid() not in pids
    # Batch k goes to worker k % 3 (round-robin, as torch).
    assert [r["id"] for r in rows] == [(i // 2) % 3 for i in range(12)]
    assert all(r["init"] == r["id"] * 10 for r in rows)
    base = rows[0]["seed"] - rows[0]["id"]
    firsts = {}
    for r in rows:
        assert r["seed"] == base + r["id"]
        firsts.setdefault(r["id"], r)
    for wid, r in firsts.items():  # each worker's first draws
        assert r["py"] == random.Random(base + wid).random()
        assert r["np"] == np.random.RandomState(numpy_seed(base, wid)).rand()
    # A new epoch draws a new base seed from ember's generator; manual_seed repeats it.
    ember.manual_seed(11)
    again = [r for batch in loader for r in batch]
    assert [r["seed"] for r in again] == [r["seed"] for r in rows]
    assert get_worker_info() is None


def test_numpy_worker_seed_equals_torch():
    pytest.importorskip("torch")
    from torch.utils.data._utils.worker import _generate_state
    for base, wid in [(0, 0), (12345678901234, 3), ((1 << 63) - 5, 7)]:
        assert list(numpy_seed(base, wid)) == list(_generate_state(base, wid))


@pytest.mark.parametrize("exc", [ValueError, KeyError])
def test_worker_exception_reraised_with_traceback(exc):
    loader = DataLoader(Failing(5, exc), batch_size=2, num_workers=2)
    got = []
    with pytest.raises(exc) as info:
        for b in loader:
            got.append(b.tolist())
    assert got == [[0, 1], [2, 3]]
    text = str(info.value)
    assert "Caught " + exc.__name__ + " in DataLoader worker process 0" in text
    assert "Original Traceback (most recent call last)" in text
    assert "in __getitem__" in text and "bad sample 5" in text


def test_worker_init_fn_exception_is_reraised():
    def bad_init(worker_id):
        raise RuntimeError(f"init failed in {worker_id}")
    with pytest.raises(RuntimeError, match="init failed in 0"):
        list(DataLoader(list(range(4)), num_workers=1, worker_init_fn=bad_init))


def test_worker_death_is_reported():
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited "
                                           "unexpectedly"):
        list(DataLoader(Dying(), batch_size=2, num_workers=2))


def test_timeout():
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.5 seconds"):
        list(DataLoader(Slow(), batch_size=1, num_workers=1, timeout=0.5))


def test_clean_shutdown_after_epoch_and_after_break():
    loader = DataLoader(list(range(20)), batch_size=2, num_workers=2)
    it = iter(loader)
    workers = list(it._workers)
    assert all(w.is_alive() for w in workers)
    assert sum(len(b) for b in it) == 20
    assert not any(w.is_alive() for w in workers)
    it = iter(loader)
    workers = list(it._workers)
    next(it)
    del it  # breaking out of a loop early
    deadline = time.time() + 10
    while any(w.is_alive() for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(w.is_alive() for w in workers)


def test_persistent_workers_keep_processes_across_epochs():
    loader = DataLoader(WorkerReport(), batch_size=3, num_workers=2, persistent_workers=True,
                        collate_fn=lambda b: b)
    first = [r for b in loader for r in b]
    second = [r for b in loader for r in b]
    assert [r["i"] for r in first] == [r["i"] for r in second] == list(range(12))
    assert {r["pid"] for r in first} == {r["pid"] for r in second}
    # Stop early, then a whole epoch: no batch of the broken epoch leaks into it.
    for k, b in enumerate(loader):
        if k == 1:
            break
    assert [r["i"] for b in loader for r in b] == list(range(12))
    workers = loader._iterator._workers
    loader._iterator._shutdown_workers()
    assert not any(w.is_alive() for w in workers)


def test_persistent_workers_restart_iterable_datasets():
    loader = DataLoader(Stream(6), batch_size=2, num_workers=2, persistent_workers=True)
    epochs = [sorted(v for b in loader for v in b.tolist()) for _ in range(2)]
    assert epochs == [list(range(6))] * 2
    loader._iterator._shutdown_workers()


def test_out_of_order_results():
    got = [int(b) for b in DataLoader(Slow(), batch_size=None, num_workers=2, in_order=False)]
    assert sorted(got) == [0, 1, 2, 3] and got[-1] == 2  # the slow sample comes last


def test_spawned_workers_receive_pickled_tensors():
    ds = TensorDataset(ember.arange(12.).reshape(6, 2), ember.arange(6))
    got = list(DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn"))
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5]]
    np.testing.assert_array_equal(got[0][0].numpy(), ds.tensors[0][:4].numpy())


def test_pin_memory_warns_without_cuda_like_torch_and_changes_no_values():
    loader = DataLoader(list(range(5)), batch_size=2, pin_memory=True)
    if ember.cuda.is_available():   # pinned host memory: the same values, no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = [b.tolist() for b in loader]
    else:
        with pytest.warns(UserWarning, match="'pin_memory' argument is set as true but no "
                                             "accelerator is found"):
            got = [b.tolist() for b in loader]
    assert got == [[0, 1], [2, 3], [4]]


def test_len_of_loaders():
    assert len(DataLoader(list(range(10)), batch_size=3)) == 4
    assert len(DataLoader(list(range(10)), batch_size=3, drop_last=True)) == 3

    class Sized(Stream):
        def __len__(self):
            return self.n
    assert len(DataLoader(Sized(10), batch_size=4)) == 3
    with pytest.raises(TypeError):
        len(DataLoader(Stream(10), batch_size=4))


def test_mingpt_sampler_pattern_is_lazy():
    """minGPT: RandomSampler(replacement=True, num_samples=int(1e10)), a few batches taken
    from iter(loader) with worker processes."""
    ds = TensorDataset(ember.arange(20).reshape(10, 2), ember.arange(10))
    sampler = RandomSampler(ds, replacement=True, num_samples=int(1e10))
    assert len(sampler) == int(1e10)
    t0 = time.time()
    loader = DataLoader(ds, sampler=sampler, shuffle=False, pin_memory=False, batch_size=4,
                        num_workers=2)
    it = iter(loader)
    batches = [next(it) for _ in range(3)]
    assert time.time() - t0 < 10
    for x, y in batches:
        assert x.shape == (4, 2) and (x[:, 0] == 2 * y).all().item()
    assert len(loader) == int(1e10) // 4
    del it
    w = list(itertools.islice(WeightedRandomSampler([1.0, 2.0], int(1e10)), 5))
    assert len(w) == 5 and set(w) <= {0, 1}


def test_pin_memory_with_cuda_copies_batches_to_pinned_memory(monkeypatch):
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import cupy_standin
    made = []

    def empty_pinned(shape, dtype):  # CuPy's: a NumPy array over page-locked memory
        made.append(tuple(shape))
        return np.empty(shape, dtype)
    with cupy_standin.installed():
        monkeypatch.setattr(cupy_standin.cupyx, "empty_pinned", empty_pinned, raising=False)
        ds = TensorDataset(ember.arange(12.).reshape(6, 2), ember.arange(6))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "no accelerator" warning
            got = list(DataLoader(ds, batch_size=4, pin_memory=True))
    assert made == [(4, 2), (4,), (2, 2), (2,)]
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5]]
    np.testing.assert_array_equal(got[1][0].numpy(), [[8.0, 9.0], [10.0, 11.0]])



def test_fuzz_workers_equal_single_process():
    """Random sizes, batch sizes, drop_last, samplers and worker counts: worker processes
    give exactly the single-process batches, in order."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        bs = int(rng.integers(1, 9))
        drop = bool(rng.integers(0, 2))
        workers = int(rng.integers(1, 4))
        prefetch = int(rng.integers(1, 4))
        ds = TensorDataset(ember.arange(n * 2).reshape(n, 2), ember.arange(n))
        sampler = [int(i) for i in rng.integers(0, n, int(rng.integers(1, 30)))]
        for kwargs in ({}, {"sampler": sampler}):
            one = [[t.tolist() for t in b] for b in DataLoader(ds, batch_size=bs, drop_last=drop,
                                                               **kwargs)]
            many = [[t.tolist() for t in b] for b in DataLoader(
                ds, batch_size=bs, drop_last=drop, num_workers=workers,
                prefetch_factor=prefetch, **kwargs)]
            assert many == one, (n, bs, drop, workers, prefetch, kwargs)
        streamed = sorted(v for b in DataLoader(Stream(n), batch_size=bs, num_workers=workers)
                          for v in b.tolist())
        assert streamed == list(range(n))
