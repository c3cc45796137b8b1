"""PackedSequence and torch.nn.utils.rnn's packing functions.

A packed batch stores only the real steps of sequences of different lengths: ``data`` holds,
time step after time step, the rows of the sequences still running at that step (longest
first), and ``batch_sizes[t]`` says how many there are. Packing and unpacking are each one
``index_select`` (the row positions are computed with NumPy from the lengths), so gradients
flow through them exactly and ``ember.compile`` sees ordinary ops.

>>> from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
>>> packed = pack_padded_sequence(ember.randn(3, 2, 4), [3, 2])
>>> packed.batch_sizes
tensor([2, 2, 1])
>>> pad_packed_sequence(packed)[0].shape
ember.Size([3, 2, 4])
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ember.tensor import Tensor, cat, tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
           "unpack_sequence", "unpad_sequence", "invert_permutation"]


def _ints(t) -> np.ndarray:
    if isinstance(t, Tensor):
        return np.asarray(t.detach().cpu().numpy()).astype(np.int64).reshape(-1)
    return np.asarray(list(t), dtype=np.int64).reshape(-1)


def _long(a: np.ndarray, device=None) -> Tensor:
    from ember.dtypes import int64
    return tensor(np.asarray(a, dtype=np.int64), dtype=int64, device=device)


def invert_permutation(permutation: Optional[Tensor]) -> Optional[Tensor]:
    """The permutation that undoes ``permutation`` (None stays None)."""
    if permutation is None:
        return None
    p = _ints(permutation)
    out = np.empty_like(p)
    out[p] = np.arange(p.size)
    return _long(out)


class _PackedSequenceBase(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Optional[Tensor]
    unsorted_indices: Optional[Tensor]


class PackedSequence(_PackedSequenceBase):
    """Sequences of different lengths packed step by step, as torch's PackedSequence.

    Build one with :func:`pack_padded_sequence` or :func:`pack_sequence`, never by hand;
    ``sorted_indices`` is None when the batch was already sorted by decreasing length.
    """

    def __new__(cls, data: Tensor, batch_sizes: Optional[Tensor] = None,
                sorted_indices: Optional[Tensor] = None,
                unsorted_indices: Optional[Tensor] = None) -> "PackedSequence":
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            # torch accepts (data, batch_sizes) as a tuple in ``data``.
            data, batch_sizes = data
        if not isinstance(batch_sizes, Tensor):
            batch_sizes = _long(_ints(batch_sizes))
        self = super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)
        self._layout = None
        return self

    def _host_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """batch_sizes, sorted_indices and unsorted_indices as NumPy arrays, kept from
        packing: reading them back from the tensors inside ``ember.compile`` would be a
        graph break for every RNN call."""
        if self._layout is None:
            bs = _ints(self.batch_sizes)
            n = int(bs[0]) if bs.size else 0
            srt = np.arange(n) if self.sorted_indices is None else _ints(self.sorted_indices)
            uns = (np.arange(n) if self.unsorted_indices is None
                   else _ints(self.unsorted_indices))
            self._layout = (bs, srt, uns)
        return self._layout

    def _with_data(self, data: Tensor) -> "PackedSequence":
        out = type(self)(data, self.batch_sizes, self.sorted_indices, self.unsorted_indices)
        out._layout = self._layout
        return out

    def to(self, *args, **kwargs) -> "PackedSequence":
        """Move or cast ``data`` (the index tensors stay as they are, like torch's CPU ones)."""
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._with_data(data)

    def cpu(self) -> "PackedSequence":
        return self.to("cpu")

    def cuda(self, *args, **kwargs) -> "PackedSequence":
        return self._with_data(self.data.cuda(*args, **kwargs))

    def double(self) -> "PackedSequence":
        return self._with_data(self.data.double())

    def float(self) -> "PackedSequence":
        return self._with_data(self.data.float())

    def half(self) -> "PackedSequence":
        return self._with_data(self.data.half())

    def long(self) -> "PackedSequence":
        return self._with_data(self.data.long())

    def int(self) -> "PackedSequence":
        return self._with_data(self.data.int())

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda

    def is_pinned(self) -> bool:
        return False


def _sorted_layout(batch_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of each step's rows in ``data`` and each sorted sequence's length."""
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]]).astype(np.int64)
    b = int(batch_sizes[0]) if batch_sizes.size else 0
    lengths = (batch_sizes[None, :] > np.arange(b)[:, None]).sum(1).astype(np.int64)
    return offsets, lengths


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch [T, B, *] ([B, T, *] with ``batch_first``) whose sequence ``b``
    has ``lengths[b]`` real steps. With ``enforce_sorted`` the lengths must decrease.

    >>> pack_padded_sequence(ember.randn(2, 3, 1), [3, 1], batch_first=True).batch_sizes
    tensor([2, 1, 1])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"pack_padded_sequence(): argument 'input' must be Tensor, not "
                        f"{type(input).__name__}")
    lens = _ints(lengths)
    batch_dim = 0 if batch_first else 1
    if input.ndim < 2:
        raise RuntimeError(f"pack_padded_sequence: expected an input of at least 2 dims, got "
                           f"{input.ndim}")
    batch = input.shape[batch_dim]
    if lens.size != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got "
                           f"{lens.size} (batch_size={batch})")
    if enforce_sorted:
        if np.any(lens[1:] > lens[:-1]):
            raise RuntimeError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is "
                "True. You can pass `enforce_sorted=False` to pack_padded_sequence and/or "
                "pack_sequence to sidestep this requirement if you do not need ONNX "
                "exportability.")
        order, sorted_indices = np.arange(batch), None
    else:
        order = np.argsort(-lens, kind="stable")      # torch's CPU sort keeps ties in order
        sorted_indices = _long(order, input.device)     # torch: on the input's device
    if batch and lens.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    steps = input.shape[1 - batch_dim]
    if lens.max() > steps:
        raise RuntimeError(f"pack_padded_sequence: a length of {int(lens.max())} is longer "
                           f"than the input's {steps} steps")
    sorted_lens = lens[order]
    longest = int(sorted_lens[0])
    batch_sizes = (sorted_lens[None, :] > np.arange(longest)[:, None]).sum(1)
    # Row of (step t, sorted rank j) in the input flattened to [T*B] or [B*T].
    rows = [t * batch + order[:n] if not batch_first else order[:n] * steps + t
            for t, n in enumerate(batch_sizes)]
    flat = input.reshape((steps * batch,) + tuple(input.shape[2:]))
    data = flat.index_select(0, _long(np.concatenate(rows), input.device))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(batch)
    out = PackedSequence(data, _long(batch_sizes), sorted_indices,
                         None if sorted_indices is None else _long(inverse, input.device))
    out._layout = (batch_sizes.astype(np.int64), order, inverse)
    return out


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Undo :func:`pack_padded_sequence`: the padded batch in the original order and the
    lengths (an int64 tensor).

    >>> x, lengths = pad_packed_sequence(pack_sequence([ember.ones(2), ember.ones(1)]))
    >>> x.shape, lengths
    (ember.Size([2, 2]), tensor([2, 1]))
    """
    padded, lens = _pad_packed(sequence, batch_first, padding_value, total_length)
    return padded, _long(lens)


def _pad_packed(sequence: PackedSequence, batch_first: bool, padding_value: float,
                total_length: Optional[int]) -> tuple[Tensor, np.ndarray]:
    data = sequence.data
    batch_sizes, _, unsorted = sequence._host_layout()
    offsets, sorted_lens = _sorted_layout(batch_sizes)
    longest = int(batch_sizes.size)
    if total_length is not None:
        if total_length < longest:
            raise ValueError(f"Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {longest}")
        longest = int(total_length)
    rank = unsorted                                  # sequence b is sorted row rank[b]
    lens = sorted_lens[rank]
    t = np.arange(longest)[:, None]
    pad_row = data.shape[0]
    safe_t = np.minimum(t, batch_sizes.size - 1)
    rows = np.where(t < lens[None, :], offsets[safe_t] + rank[None, :], pad_row)   # [T, B]
    if batch_first:
        rows = rows.T
    fill = data.new_full((1,) + tuple(data.shape[1:]), padding_value)
    padded = cat([data, fill], 0).index_select(0, _long(rows.reshape(-1), data.device))
    return padded.reshape(rows.shape + tuple(data.shape[1:])), lens


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of tensors [L_i, *] (longest first unless ``enforce_sorted=False``).

    >>> pack_sequence([ember.ones(3), ember.ones(2)]).batch_sizes
    tensor([2, 2, 1])
    """
    from ember.nn.utils.rnn import pad_sequence
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths,
                                enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list:
    """Split a padded batch back into a list of tensors of their own lengths."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[b, :int(n)] for b, n in enumerate(_ints(lengths))]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The list of tensors a PackedSequence holds, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


def repack_like(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a time-major padded batch (original order) with ``like``'s layout: the RNNs'
    output keeps its input's batch_sizes and indices, as torch's."""
    batch_sizes, order, _ = like._host_layout()
    rows = np.concatenate([t * padded.shape[1] + order[:n] for t, n in enumerate(batch_sizes)])
    flat = padded.reshape((padded.shape[0] * padded.shape[1],) + tuple(padded.shape[2:]))
    return like._with_data(flat.index_select(0, _long(rows, padded.device)))
