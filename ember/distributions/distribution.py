"""The base class of every distribution (torch.distributions.Distribution).

A distribution has a ``batch_shape`` (independent, differently parametrized copies)
and an ``event_shape`` (the shape of one draw). ``sample``/``rsample`` take a
``sample_shape`` and return ``sample_shape + batch_shape + event_shape``; ``rsample``
is reparameterized (differentiable in the parameters). Draws come from ember's
generator, so ``ember.manual_seed`` repeats them and a compiled function draws fresh
numbers at every call. With ``validate_args`` (on by default, as in torch)
parameters and ``log_prob``'s values are checked against their constraints.

>>> d = ember.distributions.Normal(ember.zeros(2), ember.ones(2))
>>> d.sample((3,)).shape
ember.Size([3, 2])
"""
from __future__ import annotations

import numpy as np

from ember import autograd
from ember import dispatch as _dispatch
from ember.distributions import constraints
from ember.distributions.utils import lazy_property
from ember.errors import OpError
from ember.ops.registry import INDEX, defop
from ember.tensor import Size, Tensor

__all__ = ["Distribution"]


def _size(shape) -> Size:
    if isinstance(shape, int):
        return Size((shape,))
    return Size(tuple(int(s) for s in shape))


class Distribution:
    """Base class: subclasses set ``arg_constraints``, ``support`` and the methods."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args = True   # torch's default (``__debug__``)

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        """Turn the default validation on or off for distributions made afterwards."""
        if value not in (True, False):
            raise ValueError
        Distribution._validate_args = value

    def __init__(self, batch_shape=(), event_shape=(), validate_args: bool | None = None):
        self._batch_shape = _size(batch_shape)
        self._event_shape = _size(event_shape)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            for param, constraint in self.arg_constraints.items():
                if constraints.is_dependent(constraint):
                    continue
                if param not in self.__dict__ and isinstance(getattr(type(self), param, None),
                                                             lazy_property):
                    continue
                value = getattr(self, param)
                if not _all_true(constraint.check(value)):
                    raise ValueError(
                        f"Expected parameter {param} ({type(value).__name__} of shape "
                        f"{tuple(value.shape)}) of distribution {self!r} to satisfy the "
                        f"constraint {constraint!r}, but found invalid values:\n{value}")

    # ---- shapes ------------------------------------------------------------------------
    @property
    def batch_shape(self) -> Size:
        return self._batch_shape

    @property
    def event_shape(self) -> Size:
        return self._event_shape

    def _extended_shape(self, sample_shape=()) -> Size:
        return Size(tuple(_size(sample_shape)) + tuple(self._batch_shape)
                    + tuple(self._event_shape))

    def expand(self, batch_shape, _instance=None):
        """The same distribution over a larger batch (parameters are expanded, not copied)."""
        raise NotImplementedError

    def _get_checked_instance(self, cls, _instance=None):
        if _instance is None and type(self).__init__ != cls.__init__:
            raise NotImplementedError(
                f"Subclass {self.__class__.__name__} of {cls.__name__} that defines a custom "
                "__init__ method must also define a custom .expand() method.")
        return self.__new__(type(self)) if _instance is None else _instance

    # ---- what subclasses define ---------------------------------------------------------
    @property
    def arg_constraints(self) -> dict:
        raise NotImplementedError

    @property
    def support(self):
        raise NotImplementedError

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError(f"{self.__class__} does not implement mean")

    @property
    def mode(self) -> Tensor:
        raise NotImplementedError(f"{self.__class__} does not implement mode")

    @property
    def variance(self) -> Tensor:
        raise NotImplementedError(f"{self.__class__} does not implement variance")

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    def sample(self, sample_shape=()) -> Tensor:
        """A draw of shape ``sample_shape + batch_shape + event_shape``, without gradient."""
        with autograd.no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=()) -> Tensor:
        """A reparameterized draw: differentiable in the parameters."""
        raise NotImplementedError

    def sample_n(self, n: int) -> Tensor:
        return self.sample((n,))

    def log_prob(self, value: Tensor) -> Tensor:
        raise NotImplementedError

    def cdf(self, value: Tensor) -> Tensor:
        raise NotImplementedError

    def icdf(self, value: Tensor) -> Tensor:
        raise NotImplementedError

    def enumerate_support(self, expand: bool = True) -> Tensor:
        raise NotImplementedError

    def entropy(self) -> Tensor:
        raise NotImplementedError

    def perplexity(self) -> Tensor:
        return self.entropy().exp()

    # ---- validation -------------------------------------------------------------------
    def _validate_sample(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise ValueError("The value argument to log_prob must be a Tensor")
        event_dim_start = value.ndim - len(self._event_shape)
        if tuple(value.shape[event_dim_start:]) != tuple(self._event_shape):
            raise ValueError(f"The right-most size of value must match event_shape: "
                             f"{value.shape} vs {self._event_shape}.")
        actual = value.shape
        expected = Size(tuple(self._batch_shape) + tuple(self._event_shape))
        for i, j in zip(reversed(actual), reversed(expected)):
            if i != 1 and j != 1 and i != j:
                raise ValueError(f"Value is not broadcastable with batch_shape+event_shape: "
                                 f"{actual} vs {expected}.")
        support = self.support
        if not _all_true(support.check(value)):
            raise ValueError(
                f"Expected value argument ({type(value).__name__} of shape "
                f"{tuple(value.shape)}) to be within the support ({support!r}) of the "
                f"distribution {self!r}, but found invalid values:\n{value}")

    def __repr__(self) -> str:
        names = [k for k in self.arg_constraints if k in self.__dict__]
        args = ", ".join(f"{p}: {_brief(self.__dict__[p])}" for p in names)
        return f"{self.__class__.__name__}({args})"


def _brief(value: Tensor):
    """A parameter in a repr: its value when it has one element, else its shape."""
    return value if value.numel() == 1 else value.size()


def _dist_check(xp, ok):
    """A replayed validation: all True passes; else an error that makes the compiled call
    run again eagerly (``OpError.from_check``), where the Python check raises torch's
    ValueError with its text."""
    if not bool(ok.all()):
        err = OpError("distribution check", "a value is outside its constraint")
        err.from_check = True
        raise err
    return xp.ones((), dtype=bool)


defop("dist_check", INDEX, _dist_check, effect=True)


def _all_true(ok: Tensor) -> bool:
    """Whether every element of a constraint's check holds. Inside ``ember.compile`` the
    traced value is read directly (no graph break: torch's validation would split the
    graph at every check) and a check op is recorded, so each replay checks again."""
    if _dispatch.tracer is None:
        return bool(ok.all())
    data = ok._data
    if not bool(np.asarray(data.get() if hasattr(data, "get") else data).all()):
        return False   # the caller raises now, as eager code does
    _dispatch.dispatch("dist_check", ok)
    return True
