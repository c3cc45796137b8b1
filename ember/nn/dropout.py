"""Dropout, channel dropout (Dropout1d/2d/3d) and AlphaDropout."""
from __future__ import annotations

from ember.nn import functional as F
from ember.nn.module import Module
from ember.tensor import Tensor


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    1/(1-p); in eval mode, the identity.

    >>> nn.Dropout(0.5).eval()(ember.ones(3))
    tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class _DropoutNd(Dropout):
    _fn = "dropout"

    def forward(self, input: Tensor) -> Tensor:
        return getattr(F, self._fn)(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Zero whole channels of [N, C, L] in training. ``nn.Dropout1d(0.2)``."""
    _fn = "dropout1d"


class Dropout2d(_DropoutNd):
    """Zero whole channels of [N, C, H, W] in training. ``nn.Dropout2d(0.25)``."""
    _fn = "dropout2d"


class Dropout3d(_DropoutNd):
    """Zero whole channels of [N, C, D, H, W] in training. ``nn.Dropout3d()``."""
    _fn = "dropout3d"


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's mean and variance. ``nn.AlphaDropout(0.1)``."""
    _fn = "alpha_dropout"


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels. ``nn.FeatureAlphaDropout(0.1)``."""
    _fn = "feature_alpha_dropout"
