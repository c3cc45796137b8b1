"""``set_printoptions``: how tensors print (torch.set_printoptions).

A tensor's repr formats its values with NumPy's ``array2string``; these options are the
ones it is given: ``precision`` digits (4), ``threshold`` elements before the middle is
summarized (1000), ``edgeitems`` shown at each end then (3), ``linewidth``, and
``sci_mode`` (None: NumPy chooses; True: always scientific; False: never). ``profile``
sets all four at once: "default" (the values above, NumPy's line width of 75), "short"
(2 digits, 2 edge items) or "full" (nothing summarized).

>>> import ember
>>> ember.set_printoptions(precision=2)
>>> ember.tensor([1.23456])
tensor([1.23])
>>> ember.set_printoptions(profile="default")
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["set_printoptions"]

# Unset (None) options are NumPy's own defaults, which the repr has always used (1000
# elements, 3 edge items, lines of 75); precision is 4 unless set.
_UNSET = {"precision": 4, "threshold": None, "edgeitems": None, "linewidth": None}
_PROFILES = {
    "default": _UNSET,
    "short": {"precision": 2, "threshold": 1000, "edgeitems": 2, "linewidth": 80},
    "full": {"precision": 4, "threshold": math.inf, "edgeitems": 3, "linewidth": 80},
}
OPTIONS: dict[str, Any] = dict(_UNSET, sci_mode=None)


def set_printoptions(precision: int | None = None, threshold: float | None = None,
                     edgeitems: int | None = None, linewidth: int | None = None,
                     profile: str | None = None, sci_mode: bool | None = None) -> None:
    """Set how tensors print (see the module docstring); unset arguments keep their
    value, except that a ``profile`` resets the four it covers and ``sci_mode``.

    >>> ember.set_printoptions(threshold=5, edgeitems=1); ember.arange(10)
    tensor([0, ..., 9])
    >>> ember.set_printoptions(profile="default")
    """
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of {sorted(_PROFILES)}, "
                             f"got {profile!r}")
        OPTIONS.update(_PROFILES[profile], sci_mode=None)
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            OPTIONS[name] = value
    if sci_mode is not None:
        OPTIONS["sci_mode"] = bool(sci_mode)


def array2string_options() -> dict[str, Any]:
    """The keyword arguments of ``np.array2string`` for the current options."""
    out = {"precision": OPTIONS["precision"], "floatmode": "maxprec_equal"}
    for name, key in (("edgeitems", "edgeitems"), ("linewidth", "max_line_width"),
                      ("threshold", "threshold")):
        if OPTIONS[name] is not None:
            out[key] = OPTIONS[name] if OPTIONS[name] != math.inf else 2 ** 62
    if OPTIONS["sci_mode"] is True:
        p = OPTIONS["precision"]
        out["formatter"] = {"float_kind": lambda v: f"{v:.{p}e}"}
    elif OPTIONS["sci_mode"] is False:
        out.update(suppress_small=True, floatmode="fixed")   # torch: every digit shown
    return out
