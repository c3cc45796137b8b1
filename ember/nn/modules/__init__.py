"""``torch.nn.modules``'s import paths: ``from ember.nn.modules.loss import _Loss``,
``ember.nn.modules.activation.MultiheadAttention``, ``nn.modules.module.Module``.

Every name of ``ember.nn`` is here, and each of PyTorch's submodules (``activation``,
``linear``, ``normalization``, ...) is a module object holding the ember classes that
PyTorch's file of that name holds (those ember has), registered in ``sys.modules`` so that
``import`` and ``from ... import`` find it.
"""
import importlib
import pkgutil
import sys
import types

import ember.nn as _nn
from ember.nn import *  # noqa: F401,F403
from ember.nn import __all__ as _nn_all

# PyTorch's file name -> the classes it holds that ember has (public ones from ember.nn,
# private bases from the ember module that defines them)
_LAYOUT = {
    "module": "Module _IncompatibleKeys",
    "activation": "CELU ELU GELU GLU Hardshrink Hardsigmoid Hardswish Hardtanh LeakyReLU "
                  "LogSigmoid LogSoftmax Mish MultiheadAttention PReLU RReLU ReLU ReLU6 SELU "
                  "SiLU Sigmoid Softmax Softmax2d Softmin Softplus Softshrink Softsign Tanh "
                  "Tanhshrink Threshold",
    "adaptive": "AdaptiveLogSoftmaxWithLoss _ASMoutput",
    "batchnorm": "BatchNorm1d BatchNorm2d BatchNorm3d LazyBatchNorm1d LazyBatchNorm2d "
                 "LazyBatchNorm3d SyncBatchNorm _BatchNorm _LazyNormBase",
    "channelshuffle": "ChannelShuffle",
    "container": "ModuleDict ModuleList ParameterDict ParameterList Sequential",
    "conv": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d LazyConv1d "
            "LazyConv2d LazyConv3d LazyConvTranspose1d LazyConvTranspose2d "
            "LazyConvTranspose3d _ConvNd _ConvTransposeNd _LazyConvXdMixin",
    "distance": "CosineSimilarity PairwiseDistance",
    "dropout": "AlphaDropout Dropout Dropout1d Dropout2d Dropout3d FeatureAlphaDropout "
               "_DropoutNd",
    "flatten": "Flatten Unflatten",
    "fold": "Fold Unfold",
    "instancenorm": "InstanceNorm1d InstanceNorm2d InstanceNorm3d LazyInstanceNorm1d "
                    "LazyInstanceNorm2d LazyInstanceNorm3d _InstanceNorm",
    "lazy": "LazyModuleMixin",
    "linear": "Bilinear Identity LazyLinear Linear NonDynamicallyQuantizableLinear",
    "loss": "BCELoss BCEWithLogitsLoss CTCLoss CosineEmbeddingLoss CrossEntropyLoss "
            "GaussianNLLLoss HingeEmbeddingLoss HuberLoss KLDivLoss L1Loss MSELoss "
            "MarginRankingLoss MultiLabelMarginLoss MultiLabelSoftMarginLoss MultiMarginLoss "
            "NLLLoss PoissonNLLLoss SmoothL1Loss SoftMarginLoss TripletMarginLoss "
            "TripletMarginWithDistanceLoss _Loss _WeightedLoss",
    "normalization": "CrossMapLRN2d GroupNorm LayerNorm LocalResponseNorm RMSNorm",
    "padding": "CircularPad1d CircularPad2d CircularPad3d ConstantPad1d ConstantPad2d "
               "ConstantPad3d ReflectionPad1d ReflectionPad2d ReflectionPad3d ReplicationPad1d "
               "ReplicationPad2d ReplicationPad3d ZeroPad1d ZeroPad2d ZeroPad3d _ConstantPadNd",
    "pixelshuffle": "PixelShuffle PixelUnshuffle",
    "pooling": "AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d "
               "AdaptiveMaxPool2d AdaptiveMaxPool3d AvgPool1d AvgPool2d AvgPool3d LPPool1d "
               "LPPool2d LPPool3d MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d MaxUnpool2d "
               "MaxUnpool3d _LPPoolNd",
    "rnn": "GRU GRUCell LSTM LSTMCell RNN RNNBase RNNCell RNNCellBase",
    "sparse": "Embedding EmbeddingBag",
    "transformer": "Transformer TransformerDecoder TransformerDecoderLayer TransformerEncoder "
                   "TransformerEncoderLayer",
    "upsampling": "Upsample UpsamplingBilinear2d UpsamplingNearest2d",
}


def _classes() -> dict:
    """The classes of ember.nn by name: its public names, then those its modules define
    (private bases such as ``_BatchNorm``, mixins such as ``LazyModuleMixin``)."""
    found = {n: v for n, v in vars(_nn).items() if isinstance(v, type)}
    for info in pkgutil.iter_modules(_nn.__path__, "ember.nn."):
        if info.name.rsplit(".", 1)[-1] in ("modules", "functional"):
            continue
        for name, value in vars(importlib.import_module(info.name)).items():
            if isinstance(value, type) and name not in found:
                found[name] = value
    return found


def _submodule(name: str, classes: str, known: dict) -> types.ModuleType:
    mod = types.ModuleType(f"{__name__}.{name}", f"PyTorch's torch.nn.modules.{name} path.")
    for attr in classes.split():
        if attr not in known:
            raise ImportError(f"ember.nn lacks {attr} (torch.nn.modules.{name})")
        setattr(mod, attr, known[attr])
    return mod


_KNOWN = _classes()
for _name, _names in _LAYOUT.items():
    _mod = _submodule(_name, _names, _KNOWN)
    sys.modules[_mod.__name__] = _mod
    globals()[_name] = _mod
del _name, _names, _mod, _KNOWN

__all__ = [n for n in _nn_all if n not in ("functional", "init", "utils")]
