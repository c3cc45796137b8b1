"""ember.nn: modules, losses and initializations with PyTorch's names and behavior.

>>> import ember.nn as nn
>>> model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
>>> model(ember.randn(32, 784)).shape
ember.Size([32, 10])
"""
from ember.nn import functional, init  # noqa: F401
from ember.nn import parallel  # noqa: F401  (DistributedDataParallel)
from ember.nn.parallel import DataParallel  # noqa: E402,F401
from ember.nn.attention import MultiheadAttention
from ember.nn.activation import (CELU, ELU, GELU, GLU, SELU, Hardsigmoid, Hardswish, Hardtanh,
                                 LeakyReLU, LogSigmoid, LogSoftmax, Mish, PReLU, ReLU, ReLU6,
                                 SiLU, Sigmoid, Softmax, Softmin, Softplus, Softsign, Tanh,
                                 Tanhshrink, Threshold)
from ember.nn.container import (ModuleDict, ModuleList, ParameterDict, ParameterList,
                                Sequential)
from ember.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from ember.nn.distance import CosineSimilarity, PairwiseDistance
from ember.nn.dropout import (AlphaDropout, Dropout, Dropout1d, Dropout2d, Dropout3d,
                              FeatureAlphaDropout)
from ember.nn.flatten import Flatten, Unflatten
from ember.nn.fold import Fold, PixelShuffle, PixelUnshuffle, Unfold
from ember.nn.linear import Identity, Linear
from ember.nn.loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss,
                           GaussianNLLLoss, HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss,
                           MarginRankingLoss, MSELoss, NLLLoss, PoissonNLLLoss, SmoothL1Loss,
                           SoftMarginLoss)
from ember.nn.module import Module, Parameter
from ember.nn.padding import (CircularPad1d, CircularPad2d, CircularPad3d, ConstantPad1d,
                              ConstantPad2d, ConstantPad3d, ReflectionPad1d, ReflectionPad2d,
                              ReflectionPad3d, ReplicationPad1d, ReplicationPad2d,
                              ReplicationPad3d, ZeroPad1d, ZeroPad2d, ZeroPad3d)
from ember.nn.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm
from ember.nn.pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d,
                              AdaptiveMaxPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
                              Upsample, UpsamplingBilinear2d, UpsamplingNearest2d)
from ember.nn.rnn import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNBase, RNNCell, RNNCellBase
from ember.nn.sparse import Embedding
from ember.nn.bilinear import Bilinear
from ember.nn.ctc import CTCLoss
from ember.nn.conv3d import (AdaptiveAvgPool3d, AdaptiveMaxPool3d, AvgPool3d, Conv3d,
                             ConvTranspose3d, MaxPool3d)
from ember.nn.embedding_bag import EmbeddingBag
from ember.nn.norm3d import BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from ember.nn.transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer,
                                  TransformerEncoder, TransformerEncoderLayer)

__all__ = [
    "functional", "init", "utils", "Module", "Parameter", "DataParallel", "Sequential",
    "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Identity", "Linear",
    "Conv1d", "Conv2d",
    "ConvTranspose1d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "ReLU", "ReLU6", "LeakyReLU",
    "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Softmin", "ELU", "CELU",
    "SELU", "Softplus", "Mish", "Hardtanh", "Hardswish", "Hardsigmoid", "LogSigmoid",
    "Softsign", "Tanhshrink", "GLU", "PReLU", "Threshold", "Dropout", "Flatten", "Unflatten",
    "LayerNorm", "GroupNorm", "BatchNorm1d", "BatchNorm2d", "Embedding", "CrossEntropyLoss",
    "NLLLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss", "SoftMarginLoss", "MarginRankingLoss", "CosineEmbeddingLoss",
    "HingeEmbeddingLoss", "PoissonNLLLoss", "GaussianNLLLoss", "RNNBase", "RNN", "LSTM", "GRU",
    "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "MultiheadAttention", "Transformer",
    "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "CosineSimilarity", "PairwiseDistance", "ConstantPad1d",
    "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ReflectionPad1d",
    "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "MaxPool1d",
    "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "RMSNorm",
    "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "Fold", "Unfold", "PixelShuffle", "PixelUnshuffle", "Bilinear", "EmbeddingBag",
    "Conv3d", "ConvTranspose3d", "MaxPool3d", "AvgPool3d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool3d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "CTCLoss",
]

from ember.nn.modules_extra import *  # noqa: E402,F401,F403
from ember.nn.modules_extra import __all__ as _extra  # noqa: E402
__all__ += _extra

# Lazy modules, Buffer, LPPool, MaxUnpool3d, SyncBatchNorm, adaptive softmax.
from ember.nn.lazy import (Buffer, LazyBatchNorm1d, LazyBatchNorm2d,  # noqa: E402
                           LazyBatchNorm3d, LazyConv1d, LazyConv2d, LazyConv3d,
                           LazyConvTranspose1d, LazyConvTranspose2d, LazyConvTranspose3d,
                           LazyInstanceNorm1d, LazyInstanceNorm2d, LazyInstanceNorm3d,
                           LazyLinear, UninitializedBuffer, UninitializedParameter)
from ember.nn.pooling_more import LPPool1d, LPPool2d, LPPool3d, MaxUnpool3d  # noqa: E402
from ember.nn.sync_batchnorm import SyncBatchNorm  # noqa: E402
from ember.nn.adaptive import AdaptiveLogSoftmaxWithLoss  # noqa: E402
__all__ += ["Buffer", "UninitializedParameter", "UninitializedBuffer", "LazyLinear",
            "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d",
            "LazyConvTranspose2d", "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
            "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d",
            "LazyInstanceNorm3d", "LPPool1d", "LPPool2d", "LPPool3d", "MaxUnpool3d",
            "SyncBatchNorm", "AdaptiveLogSoftmaxWithLoss"]

# PyTorch's import paths (torch.nn.modules.loss, torch.nn.parameter); last: they read __all__.
from ember.nn import modules, parameter, utils  # noqa: E402,F401
