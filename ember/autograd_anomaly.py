"""Anomaly detection, as ``torch.autograd.detect_anomaly``: while it is on, a backward
that produces a NaN gradient raises, naming the node and where its forward op ran.

>>> with ember.autograd.detect_anomaly():
...     loss.backward()     # RuntimeError: Function 'DivBackward0' returned nan values ...
"""
from __future__ import annotations

import functools
import warnings

ENABLED = [False]    # read by autograd._run for every node while a backward runs
_CHECK_NAN = [True]


def is_anomaly_enabled() -> bool:
    """Whether anomaly detection is on."""
    return ENABLED[0]


def is_anomaly_check_nan_enabled() -> bool:
    """Whether anomaly detection checks gradients for NaN."""
    return _CHECK_NAN[0]


class set_detect_anomaly:   # noqa: N801  (torch's name; a call and a context manager)
    """Turn anomaly detection on or off: as a call, or for a ``with`` block (then the
    previous setting comes back).

    >>> ember.autograd.set_detect_anomaly(True)
    """

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self._prev = (ENABLED[0], _CHECK_NAN[0])
        ENABLED[0], _CHECK_NAN[0] = bool(mode), bool(check_nan)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        ENABLED[0], _CHECK_NAN[0] = self._prev


class detect_anomaly:   # noqa: N801
    """Anomaly detection for a ``with`` block or a decorated function.

    >>> with ember.autograd.detect_anomaly():
    ...     loss.backward()
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", UserWarning, stacklevel=2)

    def __enter__(self) -> None:
        self._prev = (ENABLED[0], _CHECK_NAN[0])
        ENABLED[0], _CHECK_NAN[0] = True, self.check_nan

    def __exit__(self, *exc) -> None:
        ENABLED[0], _CHECK_NAN[0] = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper


def check(node, in_grads) -> None:
    """Raise if ``node``'s backward gave a NaN gradient (anomaly mode with check_nan)."""
    if not _CHECK_NAN[0]:
        return
    for i, g in enumerate(in_grads):
        if g is None or g.dtype.is_complex or not g.is_floating_point():
            continue
        if bool(g._xp.isnan(g._data).any()):
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th "
                               f"output (its forward op ran at {node.recorded_at()}).")
