"""CTCLoss: the connectionist temporal classification loss module (see F.ctc_loss).

>>> ctc = nn.CTCLoss(zero_infinity=True)
>>> loss = ctc(ember.randn(8, 2, 5).log_softmax(2), ember.tensor([[1, 2], [3, 4]]), [8, 8],
...            [2, 2])
"""
from __future__ import annotations

from ember.nn import functional as F
from ember.nn.loss import _Loss
from ember.tensor import Tensor

__all__ = ["CTCLoss"]


class CTCLoss(_Loss):
    """CTC loss of log-probabilities [T, N, C] and target label sequences, with torch's
    ``blank``, ``reduction`` and ``zero_infinity``.

    >>> nn.CTCLoss()(ember.zeros(3, 1, 2).log_softmax(2), ember.tensor([[1]]), [3], [1])
    tensor(0.2877)
    """

    def __init__(self, blank: int = 0, reduction: str = "mean",
                 zero_infinity: bool = False) -> None:
        super().__init__(reduction=reduction)
        self.blank = blank
        self.zero_infinity = zero_infinity

    def forward(self, log_probs: Tensor, targets: Tensor, input_lengths,
                target_lengths) -> Tensor:
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank,
                          self.reduction, self.zero_infinity)
