"""ctc_loss: connectionist temporal classification, the forward algorithm in log space.

The targets are extended with blanks (``b l1 b l2 ... b``, 2S+1 states) and
``alpha[t, s] = logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2]) + log_probs[t,
l'_s]`` (the s-2 hop only onto a label that differs from the one two states back) runs
over time for the whole batch at once, frozen after each sample's input length. Every
step is ordinary ops, so the gradient is autograd's (equal to the alpha-beta formula) and
``ember.compile`` unrolls the loop. "Impossible" is a large negative finite number rather
than -inf, so no step ever computes inf - inf or log(0): gradients stay finite, and a
loss at that level is reported as inf (or 0 with ``zero_infinity``), as PyTorch's.

>>> import ember.nn.functional as F
>>> lp = ember.zeros(3, 1, 2).log_softmax(2)      # every path has probability 1/8
>>> F.ctc_loss(lp, ember.tensor([[1]]), [3], [1], reduction="sum")   # 6 paths give "1"
tensor(0.2877)
"""
from __future__ import annotations

from ember import dtypes
from ember.compiler import is_compiling
from ember.tensor import Tensor, arange, cat, full, stack, tensor, where

__all__ = ["ctc_loss"]

_NEG = -1e30          # "log 0": finite, so logsumexp's gradient never meets inf - inf
_IMPOSSIBLE = -1e29   # a log-likelihood below this had no valid alignment


def _lengths(v, name: str, device) -> Tensor:
    if isinstance(v, Tensor):
        return v.to(dtypes.int64).reshape(-1)
    return tensor(list(v) if isinstance(v, (tuple, list)) else [v], dtype=dtypes.int64,
                  device=device)


def _lse3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    s = stack([a, b, c], 0)
    m = s.amax(0).detach()
    return m + (s - m).exp().sum(0).log()


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths, target_lengths,
             blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """The CTC loss of ``log_probs`` [T, N, C] (log-softmaxed; or [T, C] for one sample)
    against ``targets`` [N, S] (padded) or 1-D (concatenated), as torch's.

    ``reduction='mean'`` divides each loss by its target length, then averages.
    """
    from ember.nn.functional import _not_tensor
    if not isinstance(log_probs, Tensor) or not isinstance(targets, Tensor):
        raise _not_tensor("ctc_loss", log_probs=log_probs, targets=targets)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    unbatched = log_probs.ndim == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    if lp.ndim != 3:
        raise RuntimeError(f"ctc_loss: expected log_probs to be 2-D or 3-D, got {lp.ndim}-D")
    steps, batch, classes = lp.shape
    if not 0 <= blank < classes:
        raise RuntimeError("blank must be in label range")
    device = lp.device
    in_len = _lengths(input_lengths, "input_lengths", device)
    tgt_len = _lengths(target_lengths, "target_lengths", device)
    if unbatched and targets.ndim == 1:
        targets = targets.unsqueeze(0)
    if in_len.shape[0] != batch or tgt_len.shape[0] != batch:
        raise RuntimeError(f"ctc_loss: expected input_lengths and target_lengths of size "
                           f"{batch}, got {in_len.shape[0]} and {tgt_len.shape[0]}")
    if not is_compiling():   # value checks read the lengths; a compiled call skips them
        if bool((in_len > steps).any()):
            raise RuntimeError(f"Expected input_lengths to have value at most {steps}, but "
                               f"got value {int(in_len.max())}")
    targets = targets.to(dtypes.int64)
    if targets.ndim == 2:
        padded = targets
    else:       # concatenated: sample n's labels start at the sum of the lengths before it
        most = max(int(targets.shape[0]), 1)
        width = most
        start = tgt_len.cumsum(0) - tgt_len
        pos = (start.unsqueeze(1) + arange(width, device=device).unsqueeze(0)).clamp(0, most - 1)
        source = targets if targets.shape[0] else full((1,), blank, dtype=dtypes.int64,
                                                        device=device)
        padded = source[pos]
    width = padded.shape[1]
    states = 2 * width + 1
    s_idx = arange(states, device=device)
    label_of_state = ((s_idx - 1) // 2).clamp(0, max(width - 1, 0))
    if width:
        ext = where((s_idx % 2 == 1).unsqueeze(0), padded[:, label_of_state], blank)
    else:
        ext = full((batch, 1), blank, dtype=dtypes.int64, device=device)
    # The s-2 hop: onto a label (not a blank) that differs from the label two states back.
    prev2 = cat([full((batch, 2), blank, dtype=dtypes.int64, device=device), ext[:, :-2]], 1)
    hop = (ext != blank) & (ext != prev2) & (s_idx >= 2).unsqueeze(0)
    emit = lp.gather(2, ext.unsqueeze(0).expand(steps, batch, states))     # [T, N, S']
    alpha = where((s_idx < 2).unsqueeze(0), emit[0], _NEG)
    neg1 = full((batch, 1), _NEG, dtype=lp.dtype, device=device)
    neg2 = full((batch, 2), _NEG, dtype=lp.dtype, device=device)
    for t in range(1, steps):
        one = cat([neg1, alpha[:, :-1]], 1)
        two = where(hop, cat([neg2, alpha[:, :-2]], 1), _NEG)
        new = _lse3(alpha, one, two) + emit[t]
        alpha = where((in_len > t).unsqueeze(1), new, alpha)
    last = (2 * tgt_len).unsqueeze(1)                                      # state 2S
    end_a = alpha.gather(1, last.clamp(0, states - 1))[:, 0]
    end_b = alpha.gather(1, (last - 1).clamp(0, states - 1))[:, 0]
    end_b = where(tgt_len > 0, end_b, _NEG)
    ll = _lse3(end_a, end_b, full(end_a.shape, _NEG, dtype=lp.dtype, device=device))
    impossible = (ll < _IMPOSSIBLE) | (in_len == 0)
    loss = -ll
    if zero_infinity:
        loss = where(impossible, 0.0, loss)
    else:
        loss = where(impossible, float("inf"), loss)
    if unbatched and reduction == "none":
        return loss[0]
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return (loss / tgt_len.clamp(1, None).to(loss.dtype)).mean()
