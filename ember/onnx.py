"""``ember.onnx``: present so that programs which import ``torch.onnx`` run unchanged.

ember cannot export ONNX models; ``export`` says so instead of failing at import time
(pytorch/examples' word_language_model imports ``torch.onnx`` and exports only when asked).

Example:
    >>> import ember.onnx
    >>> ember.onnx.is_in_onnx_export()
    False
"""
from __future__ import annotations


def export(model, args, f=None, *rest, **kwargs) -> None:
    """Raise: ember has no ONNX exporter (export the model from PyTorch instead)."""
    raise NotImplementedError(
        "ember.onnx.export: ember cannot export ONNX models; save the weights with "
        "ember.save(model.state_dict(), path), load them into the PyTorch model and "
        "export from there")


def is_in_onnx_export() -> bool:
    """Always False: ember never runs an ONNX export."""
    return False
