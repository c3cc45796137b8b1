"""``torch.nn.modules``'s import paths: ``from ember.nn.modules.loss import _Loss``,
``ember.nn.modules.activation.MultiheadAttention``, ``nn.modules.module.Module``.

Every name of ``ember.nn`` is here, and each of PyTorch's submodules (``activation``,
``linear``, ``normalization``, ...) is a module object holding the ember classes that
PyTorch's file of that name holds (those ember has), registered in ``sys.modules`` so that
``import`` and ``from ... import`` find it.
"""
import sys
import types

from ember.nn import (activation, attention, container, conv, distance, dropout, flatten,
                      linear, loss, module, norm, padding, pooling, rnn, sparse, transformer)
from ember.nn import *  # noqa: F401,F403
from ember.nn import __all__ as _nn_all

# PyTorch's file name -> the ember modules whose public classes it holds, plus extra names.
_LAYOUT = {
    "module": ([module], ["_IncompatibleKeys"]),
    "activation": ([activation], [(attention, "MultiheadAttention")]),
    "linear": ([linear], [(attention, "NonDynamicallyQuantizableLinear")]),
    "container": ([container], []),
    "conv": ([conv], ["_ConvNd", "_ConvTransposeNd"]),
    "dropout": ([dropout], []),
    "flatten": ([flatten], []),
    "loss": ([loss], ["_Loss", "_WeightedLoss"]),
    "batchnorm": ([], [(norm, "BatchNorm1d"), (norm, "BatchNorm2d"), (norm, "_BatchNorm")]),
    "normalization": ([], [(norm, "LayerNorm"), (norm, "GroupNorm"), (norm, "RMSNorm")]),
    "pooling": ([], [(pooling, n) for n in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
                                            "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
                                            "AdaptiveMaxPool1d", "AdaptiveMaxPool2d")]),
    "upsampling": ([], [(pooling, n) for n in ("Upsample", "UpsamplingNearest2d",
                                               "UpsamplingBilinear2d")]),
    "padding": ([padding], []),
    "distance": ([distance], []),
    "rnn": ([rnn], []),
    "sparse": ([sparse], []),
    "transformer": ([transformer], []),
}


def _submodule(name: str, sources: list, extras: list) -> types.ModuleType:
    mod = types.ModuleType(f"{__name__}.{name}", f"PyTorch's torch.nn.modules.{name} path.")
    for src in sources:
        for attr, value in vars(src).items():
            if isinstance(value, type) and value.__module__ == src.__name__:
                setattr(mod, attr, value)
    for extra in extras:
        src, attr = extra if isinstance(extra, tuple) else (sources[0], extra)
        setattr(mod, attr, getattr(src, attr))
    return mod


for _name, (_sources, _extras) in _LAYOUT.items():
    _mod = _submodule(_name, _sources, _extras)
    sys.modules[_mod.__name__] = _mod
    globals()[_name] = _mod
del _name, _sources, _extras, _mod

__all__ = [n for n in _nn_all if n not in ("functional", "init", "utils")]
