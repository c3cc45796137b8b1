"""ember.utils.data: datasets, batching, shuffling, collation."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import ember
from ember.utils.data import (ConcatDataset, DataLoader, Dataset, Subset, TensorDataset,
                              default_collate, random_split)


def _xy(n: int = 10):
    x = ember.arange(n * 3).float().reshape(n, 3)
    y = ember.arange(n)
    return x, y


class Squares(Dataset):
    """A dataset that is not a TensorDataset: exercises the sample-by-sample path."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return ember.tensor([float(i), float(i)]), i * i


def test_tensor_dataset_items_and_length():
    x, y = _xy()
    ds = TensorDataset(x, y)
    assert len(ds) == 10
    xi, yi = ds[3]
    assert xi.tolist() == [9.0, 10.0, 11.0] and yi.item() == 3


def test_tensor_dataset_size_mismatch():
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(ember.zeros(3, 2), ember.zeros(4))


@pytest.mark.parametrize("drop_last, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_in_order(drop_last, sizes):
    x, y = _xy()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(sizes)
    assert [b[1].shape[0] for b in batches] == sizes
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert batches[0][0].shape == (4, 3) and batches[0][0].dtype is ember.float32
    got = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(got, np.arange(sum(sizes)))


def test_exact_multiple_and_oversized_batch():
    x, y = _xy(8)
    assert len(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(TensorDataset(x, y), batch_size=4)) == 2
    big = list(DataLoader(TensorDataset(x, y), batch_size=100))
    assert len(big) == 1 and big[0][0].shape == (8, 3)
    assert list(DataLoader(TensorDataset(x, y), batch_size=100, drop_last=True)) == []


def test_shuffle_is_a_permutation_and_reproducible():
    x, y = _xy(50)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    ember.manual_seed(123)
    first = np.concatenate([b[1].numpy() for b in loader])
    second_epoch = np.concatenate([b[1].numpy() for b in loader])
    ember.manual_seed(123)
    again = np.concatenate([b[1].numpy() for b in loader])
    assert sorted(first.tolist()) == list(range(50))
    assert not np.array_equal(first, np.arange(50))
    assert not np.array_equal(first, second_epoch)  # a new order every epoch
    np.testing.assert_array_equal(first, again)


def test_shuffled_rows_stay_paired():
    x, y = _xy(20)
    ember.manual_seed(0)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True):
        np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy() * 3)


def test_batches_are_copies():
    x, y = _xy()
    xb, _ = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    xb.mul_(0)
    assert x[0].tolist() == [0.0, 1.0, 2.0] and x[1].tolist() == [3.0, 4.0, 5.0]


def test_generic_dataset_collates_samples():
    loader = DataLoader(Squares(7), batch_size=3)
    batches = list(loader)
    assert len(batches) == 3
    xb, yb = batches[0]
    assert xb.shape == (3, 2) and xb.dtype is ember.float32
    assert yb.dtype is ember.int64 and yb.tolist() == [0, 1, 4]
    assert batches[-1][1].tolist() == [36]


def test_generic_dataset_shuffle_matches_tensor_dataset_order():
    # Both paths draw the same permutation from ember's generator.
    x, y = _xy(7)
    ember.manual_seed(5)
    fast = [b[1].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True)]
    ember.manual_seed(5)
    slow = [[int(round(v ** 0.5)) for v in b[1].tolist()]
            for b in DataLoader(Squares(7), batch_size=3, shuffle=True)]
    assert fast == slow


def test_custom_collate_fn_and_no_batching():
    x, y = _xy(5)
    loader = DataLoader(TensorDataset(x, y), batch_size=2, collate_fn=lambda b: len(b))
    assert list(loader) == [2, 2, 1]
    samples = list(DataLoader(TensorDataset(x, y), batch_size=None))
    assert len(samples) == 5 and samples[2][1].item() == 2 and samples[2][0].shape == (3,)


def test_default_collate_kinds():
    Point = namedtuple("Point", "a b")
    out = default_collate([{"x": np.ones(2, np.float32), "n": 1.5, "ok": True, "s": "u"},
                           {"x": np.zeros(2, np.float32), "n": 2.5, "ok": False, "s": "v"}])
    assert out["x"].shape == (2, 2) and out["x"].dtype is ember.float32
    assert out["n"].dtype is ember.float64 and out["n"].tolist() == [1.5, 2.5]
    assert out["ok"].dtype is ember.bool and out["s"] == ["u", "v"]
    p = default_collate([Point(1, ember.ones(3)), Point(2, ember.zeros(3))])
    assert isinstance(p, Point) and p.a.tolist() == [1, 2] and p.b.shape == (2, 3)
    lst = default_collate([[1, 2], [3, 4]])
    assert isinstance(lst, list) and lst[0].tolist() == [1, 3]
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([(1, 2), (3,)])
    with pytest.raises(TypeError):
        default_collate([object(), object()])


def test_subset_concat_random_split():
    x, y = _xy(10)
    ds = TensorDataset(x, y)
    sub = Subset(ds, [7, 2])
    assert len(sub) == 2 and sub[0][1].item() == 7
    both = ds + sub
    assert isinstance(both, ConcatDataset) and len(both) == 12 and both[11][1].item() == 2
    ember.manual_seed(0)
    a, b = random_split(ds, [0.7, 0.3])
    assert (len(a), len(b)) == (7, 3)
    assert sorted(a.indices + b.indices) == list(range(10))
    ember.manual_seed(0)
    a2, _ = random_split(ds, [7, 3])
    assert a2.indices == a.indices
    with pytest.raises(ValueError):
        random_split(ds, [5, 4])


def test_bad_batch_size():
    x, y = _xy()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(x, y), batch_size=0)


def test_pytorch_loader_options_are_accepted():
    """num_workers and pin_memory, as PyTorch GPU scripts pass them: the same batches."""
    data = TensorDataset(ember.arange(10), ember.arange(10) * 2)
    plain = [b[0].tolist() for b in DataLoader(data, batch_size=4)]
    tuned = [b[0].tolist() for b in DataLoader(data, batch_size=4, num_workers=4,
                                                pin_memory=True)]
    assert tuned == plain
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(data, num_workers=-1)
