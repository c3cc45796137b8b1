"""The chi-squared distribution: Gamma(df / 2, 1 / 2) (torch.distributions.Chi2).

>>> ember.distributions.Chi2(ember.tensor(4.)).mean
tensor(4.)
"""
from __future__ import annotations

from ember.distributions import constraints
from ember.distributions.gamma import Gamma
from ember.tensor import Tensor

__all__ = ["Chi2"]


class Chi2(Gamma):
    """Chi2(df): the sum of ``df`` squared standard normals."""
    arg_constraints = {"df": constraints.positive}

    def __init__(self, df, validate_args: bool | None = None) -> None:
        super().__init__(0.5 * df, 0.5, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Chi2, _instance)
        return super().expand(batch_shape, new)

    @property
    def df(self) -> Tensor:
        return self.concentration * 2
