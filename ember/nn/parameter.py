"""``torch.nn.parameter``'s import path: ``from ember.nn.parameter import Parameter``
(and ``Buffer``, ``UninitializedParameter``, ``UninitializedBuffer``)."""
from ember.nn.lazy import Buffer, UninitializedBuffer, UninitializedParameter
from ember.nn.module import Parameter

__all__ = ["Parameter", "Buffer", "UninitializedParameter", "UninitializedBuffer"]
