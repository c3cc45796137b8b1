"""torch.nn.utils.rnn: pad_sequence here; PackedSequence and packing in ember.nn.packed.

>>> from ember.nn.utils.rnn import pad_sequence
>>> pad_sequence([ember.ones(2), ember.ones(3)], batch_first=True).shape
ember.Size([2, 3])
"""
from __future__ import annotations

from ember.nn.packed import (PackedSequence, invert_permutation, pack_padded_sequence,
                             pack_sequence, pad_packed_sequence, unpack_sequence,
                             unpad_sequence)
from ember.tensor import Tensor, cat, stack

__all__ = ["pad_sequence", "PackedSequence", "pack_padded_sequence", "pad_packed_sequence",
           "pack_sequence", "unpack_sequence", "unpad_sequence", "invert_permutation"]


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Pad tensors [L_i, *] to the longest length and stack them: [B, L, *] with
    ``batch_first`` else [L, B, *]; ``padding_side='left'`` pads before each sequence.

    >>> pad_sequence([ember.tensor([1]), ember.tensor([2, 3])], padding_side="left").T
    tensor([[0, 1],
            [2, 3]])
    """
    if padding_side not in ("left", "right"):
        raise ValueError("Expected padding_side to be one of left or right, but got "
                         f"{padding_side}.")
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    for s in sequences:
        if not isinstance(s, Tensor):
            raise TypeError("pad_sequence(): argument 'sequences' must be tuple of Tensors, "
                            f"not {type(s).__name__}")
    longest = max(s.shape[0] if s.ndim else 1 for s in sequences)
    padded = []
    for s in sequences:
        s = s.reshape(1) if s.ndim == 0 else s
        short = longest - s.shape[0]
        if short:
            fill = s.new_full((short,) + tuple(s.shape[1:]), padding_value)
            s = cat([s, fill] if padding_side == "right" else [fill, s], 0)
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)
