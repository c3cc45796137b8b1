"""Recurrent layers: RNN, LSTM, GRU and their single-step cells, with PyTorch's names.

Each time step is ordinary ember ops (matmul, sigmoid, tanh, chunk), so autograd
differentiates through time and ``ember.compile`` unrolls the loop into one graph. The
input projection of a whole sequence is one matmul per layer and direction; only the
hidden-to-hidden product runs per step.

Parameters are named and shaped as in PyTorch (``weight_ih_l0``, ``bias_hh_l1_reverse``,
gates stacked in PyTorch's order: LSTM i, f, g, o; GRU r, z, n), so a torch
``state_dict`` loads unchanged.

>>> lstm = nn.LSTM(10, 20, num_layers=2)
>>> out, (h, c) = lstm(ember.randn(5, 3, 10))
>>> out.shape, h.shape
(ember.Size([5, 3, 20]), ember.Size([2, 3, 20]))
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from ember.nn import functional as F
from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.nn.packed import PackedSequence, _pad_packed, repack_like
from ember.tensor import Tensor, cat, empty, stack, tensor, where, zeros

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class RNNBase(Module):
    """The shared machinery of RNN, LSTM and GRU: parameters, shape checks, the layer
    and direction loops. ``mode`` is one of RNN_TANH, RNN_RELU, LSTM, GRU."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        if (not isinstance(dropout, (int, float)) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
            raise TypeError(f"hidden_size should be of type int, got: "
                            f"{type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        gate_size = _GATES[mode] * hidden_size
        directions = 2 if bidirectional else 1
        real_hidden = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_in = input_size if layer == 0 else real_hidden * directions
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_in)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name + suffix,
                            Parameter(empty(*shape, dtype=dtype, device=device)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """PyTorch packs weights for cuDNN here; ember keeps them as they are."""

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        per = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    # ---- forward ----------------------------------------------------------------------
    def forward(self, input: Tensor, hx=None):
        is_lstm = self.mode == "LSTM"
        name = _NAMES[self.mode]
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}.forward(): argument 'input' must be Tensor, not "
                            f"{type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D "
                             f"instead")
        batched = input.ndim == 3
        batch_dim = 0 if self.batch_first else 1
        x = input if batched else input.unsqueeze(batch_dim)
        if self.batch_first:
            x = x.transpose(0, 1)                      # [L, N, H_in] from here on
        directions = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        h_shape = (self.num_layers * directions, x.shape[1], real_hidden)
        c_shape = (self.num_layers * directions, x.shape[1], self.hidden_size)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        h0, c0 = self._initial_state(hx, batched, x, h_shape, c_shape)
        output, h_n, c_n = self._layers(x, h0, c0, None)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(batch_dim)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        return (output, (h_n, c_n)) if is_lstm else (output, h_n)

    def _forward_packed(self, input: PackedSequence, hx):
        """A packed batch runs padded, in the original order, with a [T, B, 1] mask that
        freezes each sequence's state after its last step (and, in reverse, until its last
        step): the final states are those at each sequence's own end, as torch's."""
        is_lstm = self.mode == "LSTM"
        x, lengths = _pad_packed(input, False, 0.0, None)   # [T, B, H_in], original order
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        directions = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        h_shape = (self.num_layers * directions, x.shape[1], real_hidden)
        c_shape = (self.num_layers * directions, x.shape[1], self.hidden_size)
        h0, c0 = self._initial_state(hx, True, x, h_shape, c_shape)
        steps = np.arange(x.shape[0])[:, None, None]
        mask = tensor(steps < lengths[None, :, None], device=x.device)
        output, h_n, c_n = self._layers(x, h0, c0, mask)
        output = repack_like(output, input)
        return (output, (h_n, c_n)) if is_lstm else (output, h_n)

    def _layers(self, x: Tensor, h0: Tensor, c0: Optional[Tensor], mask: Optional[Tensor]):
        """Every layer and direction over a time-major [L, N, H_in] input."""
        is_lstm = self.mode == "LSTM"
        directions = 2 if self.bidirectional else 1
        layer_input = x
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                k = layer * directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                out, h, c = self._run_direction(layer_input, suffix, h0[k],
                                                None if c0 is None else c0[k], direction == 1,
                                                mask)
                outs.append(out)
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            layer_input = outs[0] if directions == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        return layer_input, stack(h_n, 0), (stack(c_n, 0) if is_lstm else None)

    def _initial_state(self, hx, batched: bool, x: Tensor, h_shape, c_shape):
        is_lstm = self.mode == "LSTM"
        dims = 3 if batched else 2
        if hx is None:
            h0 = zeros(*h_shape, dtype=x.dtype, device=x.device)
            return h0, (zeros(*c_shape, dtype=x.dtype, device=x.device) if is_lstm else None)
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError("LSTM: expected hx to be a tuple (h_0, c_0)")
            h0, c0 = hx
            if h0.ndim != dims or c0.ndim != dims:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {dims}-D but "
                                   f"got ({h0.ndim}-D, {c0.ndim}-D) tensors")
        else:
            if isinstance(hx, (tuple, list)):
                raise RuntimeError(f"{_NAMES[self.mode]}: expected hx to be a Tensor, "
                                   f"not a tuple")
            h0, c0 = hx, None
            if h0.ndim != dims:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx should also be {dims}-D but got "
                                   f"{h0.ndim}-D tensor")
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None
        which = ("[0]", "[1]") if is_lstm else ("", "")
        if tuple(h0.shape) != tuple(h_shape):
            raise RuntimeError(f"Expected hidden{which[0]} size {tuple(h_shape)}, got "
                               f"{list(h0.shape)}")
        if c0 is not None and tuple(c0.shape) != tuple(c_shape):
            raise RuntimeError(f"Expected hidden{which[1]} size {tuple(c_shape)}, got "
                               f"{list(c0.shape)}")
        return h0, c0

    def _run_direction(self, x: Tensor, suffix: str, h: Tensor, c: Optional[Tensor],
                       reverse: bool, mask: Optional[Tensor] = None):
        w_ih = getattr(self, "weight_ih" + suffix)
        w_hh_t = getattr(self, "weight_hh" + suffix).t()
        b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
        w_hr_t = getattr(self, "weight_hr" + suffix).t() if self.proj_size else None
        # The input's share of every gate, for all steps in one matmul: [L, N, G*H].
        xw = F.linear(x, w_ih, getattr(self, "bias_ih" + suffix) if self.bias else None)
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        outs = [None] * x.shape[0]
        for t in steps:
            hw = h.matmul(w_hh_t)
            if b_hh is not None:
                hw = hw + b_hh
            h_new, c_new = _step(self.mode, xw[t], hw, h, c)
            if w_hr_t is not None:
                h_new = h_new.matmul(w_hr_t)
            if mask is None:
                h, c = h_new, c_new
            else:       # a finished (or, in reverse, not yet started) sequence keeps its state
                h = where(mask[t], h_new, h)
                c = where(mask[t], c_new, c) if c is not None else None
            outs[t] = h
        return stack(outs, 0), h, c

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


_NAMES = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _step(mode: str, xw: Tensor, hw: Tensor, h: Tensor, c: Optional[Tensor]):
    """One time step from the input's and the hidden state's gate pre-activations."""
    if mode == "RNN_TANH":
        return (xw + hw).tanh(), None
    if mode == "RNN_RELU":
        return (xw + hw).relu(), None
    if mode == "LSTM":
        i, f, g, o = (xw + hw).chunk(4, -1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c
    # GRU: the reset gate scales the hidden state's share of n *after* its bias (PyTorch's
    # formula, which differs from the original paper's r * h inside the matmul).
    x_r, x_z, x_n = xw.chunk(3, -1)
    h_r, h_z, h_n = hw.chunk(3, -1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n), None


class RNN(RNNBase):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or relu).

    >>> rnn = nn.RNN(10, 20, 2)
    >>> out, h = rnn(ember.randn(5, 3, 10), ember.zeros(2, 3, 20))
    >>> out.shape, h.shape
    (ember.Size([5, 3, 20]), ember.Size([2, 3, 20]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None) -> None:
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)


class LSTM(RNNBase):
    """Long short-term memory; returns ``output, (h_n, c_n)``.

    >>> out, (h, c) = nn.LSTM(4, 8, batch_first=True)(ember.randn(2, 5, 4))
    >>> out.shape
    ember.Size([2, 5, 8])
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit, with PyTorch's gate order (r, z, n).

    >>> out, h = nn.GRU(4, 8, bidirectional=True)(ember.randn(5, 2, 4))
    >>> out.shape, h.shape
    (ember.Size([5, 2, 16]), ember.Size([2, 2, 8]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)


# ---- cells -----------------------------------------------------------------------------

class RNNCellBase(Module):
    """Parameters and shape checks shared by the three cells."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, dtype=dtype,
                                         device=device))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, dtype=dtype,
                                         device=device))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _prepare(self, input: Tensor, hx, name: str):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}.forward(): argument 'input' must be Tensor, not "
                            f"{type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D "
                             f"instead")
        for h in (hx if isinstance(hx, (tuple, list)) else (hx,)):
            if h is not None and h.ndim not in (1, 2):
                raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {h.ndim}D "
                                 f"instead")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} "
                               f"expected {self.input_size}")
        return x, batched

    def _hidden(self, h, x: Tensor, batched: bool, name: str = "hidden0") -> Tensor:
        if h is None:
            return zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        h = h if batched else h.unsqueeze(0)
        if tuple(h.shape) != (x.shape[0], self.hidden_size):
            raise RuntimeError(f"Input batch size {x.shape[0]} doesn't match {name} batch "
                               f"size {h.shape[0]}" if h.shape[0] != x.shape[0] else
                               f"{name} has inconsistent hidden_size: got {h.shape[-1]}, "
                               f"expected {self.hidden_size}")
        return h

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return (F.linear(x, self.weight_ih, self.bias_ih),
                F.linear(h, self.weight_hh, self.bias_hh))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    >>> nn.RNNCell(4, 8)(ember.randn(3, 4)).shape
    ember.Size([3, 8])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, batched = self._prepare(input, hx, "RNNCell")
        h = self._hidden(hx, x, batched)
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h, _ = _step(mode, *self._gates(x, h), h, None)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step; returns ``(h', c')``.

    >>> h, c = nn.LSTMCell(4, 8)(ember.randn(3, 4))
    >>> h.shape, c.shape
    (ember.Size([3, 8]), ember.Size([3, 8]))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:
        x, batched = self._prepare(input, hx, "LSTMCell")
        if hx is None:
            h = c = self._hidden(None, x, batched)
        else:
            h = self._hidden(hx[0], x, batched, "hidden0")
            c = self._hidden(hx[1], x, batched, "hidden1")
        h, c = _step("LSTM", *self._gates(x, h), h, c)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step, PyTorch's formula and gate order (r, z, n).

    >>> nn.GRUCell(4, 8)(ember.randn(3, 4)).shape
    ember.Size([3, 8])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, batched = self._prepare(input, hx, "GRUCell")
        h = self._hidden(hx, x, batched)
        h, _ = _step("GRU", *self._gates(x, h), h, None)
        return h if batched else h.squeeze(0)
