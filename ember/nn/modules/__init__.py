"""``torch.nn.modules``'s import paths (``from torch.nn.modules.loss import _Loss``,
``torch.nn.modules.module.Module``): every name of ``ember.nn``, and each of PyTorch's
submodule paths bound to the ember module that holds those classes, so
``ember.nn.modules.loss is ember.nn.loss``.
"""
import sys

from ember.nn import (activation, attention, container, conv, dropout, flatten, linear, loss,
                      module, norm, pooling, rnn, sparse, transformer)
from ember.nn import *  # noqa: F401,F403
from ember.nn import __all__ as _nn_all

# PyTorch's file name -> ember's module holding the same classes.
_PATHS = {
    "module": module, "activation": activation, "container": container, "conv": conv,
    "dropout": dropout, "flatten": flatten, "linear": linear, "loss": loss,
    "batchnorm": norm, "normalization": norm, "pooling": pooling, "upsampling": pooling,
    "rnn": rnn, "sparse": sparse, "transformer": transformer, "activation_attention": attention,
}
for _name, _mod in _PATHS.items():
    sys.modules[f"{__name__}.{_name}"] = _mod
    globals()[_name] = _mod
del _name, _mod

__all__ = [n for n in _nn_all if n not in ("functional", "init", "utils")]
