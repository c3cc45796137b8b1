"""The part Normal and Laplace share: a location and a scale broadcast together, expand,
and mean and mode at the location."""
from __future__ import annotations

import numbers

from ember.distributions.distribution import Distribution, _size
from ember.distributions.utils import broadcast_all
from ember.tensor import Size, Tensor


class LocScale(Distribution):
    """A family parametrized by ``loc`` and ``scale`` (broadcast to one batch shape)."""

    def __init__(self, loc, scale, validate_args: bool | None = None) -> None:
        self.loc, self.scale = broadcast_all(loc, scale)
        if isinstance(loc, numbers.Number) and isinstance(scale, numbers.Number):
            batch_shape = Size(())
        else:
            batch_shape = self.loc.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        # (as each family's own expand: a subclass of Normal must override it, as in torch)
        family = next(c for c in type(self).__mro__ if LocScale in c.__bases__)
        new = self._get_checked_instance(family, _instance)
        batch_shape = _size(batch_shape)
        new.loc, new.scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc
