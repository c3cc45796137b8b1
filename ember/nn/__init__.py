"""ember.nn: modules, losses and initializations with PyTorch's names and behavior.

>>> import ember.nn as nn
>>> model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
>>> model(ember.randn(32, 784)).shape
ember.Size([32, 10])
"""
from ember.nn import functional, init  # noqa: F401
from ember.nn import parallel  # noqa: F401  (DistributedDataParallel)
from ember.nn.attention import MultiheadAttention
from ember.nn.activation import GELU, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Tanh
from ember.nn.container import ModuleDict, ModuleList, Sequential
from ember.nn.conv import Conv2d
from ember.nn.dropout import Dropout
from ember.nn.flatten import Flatten, Unflatten
from ember.nn.linear import Identity, Linear
from ember.nn.loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss,
                           NLLLoss)
from ember.nn.module import Module, Parameter
from ember.nn.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from ember.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from ember.nn.rnn import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNBase, RNNCell, RNNCellBase
from ember.nn.sparse import Embedding
from ember.nn.transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer,
                                  TransformerEncoder, TransformerEncoderLayer)

__all__ = [
    "functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict",
    "Identity", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ReLU",
    "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout",
    "Flatten", "Unflatten", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "Embedding",
    "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss",
    "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
    "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
    "TransformerEncoderLayer", "TransformerDecoderLayer",
]
