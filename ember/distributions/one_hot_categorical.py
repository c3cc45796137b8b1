"""OneHotCategorical (defined in categorical.py, re-exported here where torch has it) and
OneHotCategoricalStraightThrough, whose ``rsample`` is a one-hot draw carrying the
probabilities' gradient (torch.distributions.one_hot_categorical).

>>> d = ember.distributions.OneHotCategoricalStraightThrough(probs=ember.tensor([0., 1.]))
>>> d.rsample()
tensor([0., 1.])
"""
from __future__ import annotations

from ember.distributions.categorical import OneHotCategorical
from ember.tensor import Tensor

__all__ = ["OneHotCategorical", "OneHotCategoricalStraightThrough"]


class OneHotCategoricalStraightThrough(OneHotCategorical):
    """A OneHotCategorical whose ``rsample`` is a one-hot draw plus ``probs - probs.detach()``:
    the value of a draw, the gradient of the probabilities (Bengio et al., 2013)."""
    has_rsample = True

    def rsample(self, sample_shape=()) -> Tensor:
        samples = self.sample(sample_shape)
        probs = self._categorical.probs
        return samples + (probs - probs.detach())
