"""``ember.testing.assert_close``: PyTorch's tensor comparison for tests.

Same defaults (tolerances by dtype), same checks (shape, dtype, device) and the same
error messages as ``torch.testing.assert_close``, on ember tensors, Python numbers and
sequences or mappings of them.

>>> import ember
>>> ember.testing.assert_close(ember.tensor([1.0, 2.0]), ember.tensor([1.0, 2.0 + 1e-7]))
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np

from ember import dtypes
from ember.tensor import Tensor

__all__ = ["assert_close"]

# (rtol, atol) by dtype name, as torch.testing's _DTYPE_PRECISIONS; other dtypes: (0, 0)
_PRECISIONS = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5),
               "float32": (1.3e-6, 1e-5), "float64": (1e-7, 1e-7),
               "complex64": (1.3e-6, 1e-5), "complex128": (1e-7, 1e-7)}
_SCALAR_DTYPE = {bool: dtypes.bool_, int: dtypes.int64, float: dtypes.float64,
                 complex: dtypes.complex128}


class _Mismatch(Exception):
    """A failed check, with the path of the item it failed for (sequences, mappings)."""

    def __init__(self, type_: type[Exception], msg: str, path: tuple = ()) -> None:
        super().__init__(msg)
        self.type, self.msg, self.path = type_, msg, path


def assert_close(actual: Any, expected: Any, *, allow_subclasses: bool = True,
                 rtol: float | None = None, atol: float | None = None,
                 equal_nan: bool = False, check_device: bool = True,
                 check_dtype: bool = True, check_layout: bool = True,
                 check_stride: bool = False,
                 msg: str | Callable[[str], str] | None = None) -> None:
    """Raise ``AssertionError`` unless ``|actual - expected| <= atol + rtol * |expected|``
    everywhere (with matching shape, dtype and device), as torch.testing.assert_close.

    Without ``rtol``/``atol`` the dtype's defaults apply (float32: 1.3e-6 and 1e-5;
    integers and bool: exact).

    >>> ember.testing.assert_close(ember.tensor([1.0]), ember.tensor([1.5]))
    Traceback (most recent call last):
    AssertionError: Tensor-likes are not close!
    ...
    """
    if (rtol is None) != (atol is None):
        raise ValueError("Both 'rtol' and 'atol' must be either specified or omitted, but "
                         f"got no {'rtol' if rtol is None else 'atol'}.")
    try:
        _compare(actual, expected, (), rtol=rtol, atol=atol, equal_nan=equal_nan,
                 check_device=check_device, check_dtype=check_dtype,
                 check_stride=check_stride)
    except _Mismatch as m:
        if isinstance(msg, str):
            raise m.type(msg) from None
        text = m.msg
        if m.path:
            text += "\n\nThe failure occurred for item " + "".join(str([p]) for p in m.path)
        raise m.type(msg(text) if callable(msg) else text) from None


def _compare(actual, expected, path: tuple, **opts) -> None:
    if isinstance(actual, Tensor) or isinstance(expected, Tensor) or (
            isinstance(actual, np.ndarray) and isinstance(expected, np.ndarray)):
        if type(actual) is not type(expected) and not (
                isinstance(actual, Tensor) and isinstance(expected, Tensor)):
            raise _Mismatch(TypeError, "No comparison pair was able to handle inputs of type "
                            f"{type(actual)} and {type(expected)}.", path)
        _compare_tensors(actual, expected, path, **opts)
        return
    if isinstance(actual, (bool, int, float, complex)) and isinstance(
            expected, (bool, int, float, complex)):
        _compare_scalars(actual, expected, path, **opts)
        return
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        if set(actual) != set(expected):
            missing = sorted(set(expected) - set(actual), key=repr)
            extra = sorted(set(actual) - set(expected), key=repr)
            raise _Mismatch(AssertionError, "The keys of the mappings do not match:\n"
                            + (f"Missing keys in the actual mapping: {missing}\n"
                               if missing else "")
                            + (f"Additional keys in the actual mapping: {extra}"
                               if extra else "").rstrip(), path)
        for key in expected:
            _compare(actual[key], expected[key], (*path, key), **opts)
        return
    if (isinstance(actual, Sequence) and isinstance(expected, Sequence)
            and not isinstance(actual, str) and not isinstance(expected, str)):
        if len(actual) != len(expected):
            raise _Mismatch(AssertionError, "The length of the sequences mismatch: "
                            f"{len(actual)} != {len(expected)}", path)
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, (*path, i), **opts)
        return
    raise _Mismatch(TypeError, "No comparison pair was able to handle inputs of type "
                    f"{type(actual)} and {type(expected)}.", path)


def _tolerances(*ds: dtypes.DType) -> tuple[float, float]:
    pairs = [_PRECISIONS.get(d.name, (0.0, 0.0)) for d in ds]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _compare_scalars(actual, expected, path, *, rtol, atol, equal_nan, check_dtype,
                     **_) -> None:
    if check_dtype and type(actual) is not type(expected):
        raise _Mismatch(AssertionError, "The (d)types do not match: "
                        f"{type(actual)} != {type(expected)}.", path)
    if rtol is None:
        rtol, atol = _tolerances(_SCALAR_DTYPE[type(actual)], _SCALAR_DTYPE[type(expected)])
    if actual == expected:
        return
    if equal_nan and actual != actual and expected != expected:
        return
    both_finite = all(np.isfinite(v) for v in (actual, expected))
    if both_finite and abs(actual - expected) <= atol + rtol * abs(expected):
        return
    abs_diff = abs(actual - expected)
    rel_diff = float("inf") if expected == 0 else abs_diff / abs(expected)
    raise _Mismatch(AssertionError, _message(
        "Scalars", rtol, atol, f"Expected {expected} but got {actual}.",
        abs_diff, None, rel_diff, None), path)


def _compare_tensors(actual, expected, path, *, rtol, atol, equal_nan, check_device,
                     check_dtype, check_stride) -> None:
    if isinstance(actual, np.ndarray):
        a, e = actual, expected
        da, de = dtypes.as_dtype(a.dtype), dtypes.as_dtype(e.dtype)
    else:
        if actual.shape != expected.shape:
            _attribute("shape", actual.shape, expected.shape, path)
        if check_device and actual.device != expected.device:
            _attribute("device", actual.device, expected.device, path)
        da, de = actual.dtype, expected.dtype
        if check_dtype and da is not de:
            _attribute("dtype", da, de, path)
        if check_stride and actual.stride() != expected.stride():
            _attribute("stride()", actual.stride(), expected.stride(), path)
        a, e = (np.asarray(_host(t)) for t in (actual, expected))
    if a.shape != e.shape:
        _attribute("shape", a.shape, e.shape, path)
    if check_dtype and da is not de:
        _attribute("dtype", da, de, path)
    if rtol is None:
        rtol, atol = _tolerances(da, de)
    common = dtypes.promote_types(da, de)
    a, e = a.astype(common.np, copy=False), e.astype(common.np, copy=False)
    with np.errstate(all="ignore"):
        if common is dtypes.bool_:
            matches = a == e
        else:
            matches = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan)
            # torch.isclose: only finite pairs by distance, equal infinities match
            matches = (a == e) | (matches & np.isfinite(a) & np.isfinite(e)) | (
                equal_nan & np.isnan(a) & np.isnan(e))
        if matches.all():
            return
        if a.ndim == 0:
            raise _Mismatch(AssertionError, _message(
                "Scalars", rtol, atol, f"Expected {e.item()} but got {a.item()}.",
                abs(a.item() - e.item()), None,
                float("inf") if e.item() == 0 else abs(a.item() - e.item()) / abs(e.item()),
                None), path)
        raise _Mismatch(AssertionError, _tensor_message(a, e, matches, rtol, atol), path)


def _host(t: Tensor):
    t = t.detach()
    return t._data if t.device.type == "cpu" else t.cpu()._data


def _attribute(name: str, a, e, path) -> None:
    raise _Mismatch(AssertionError, f"The values for attribute '{name}' do not match: "
                    f"{a} != {e}.", path)


def _tensor_message(a: np.ndarray, e: np.ndarray, matches: np.ndarray, rtol: float,
                    atol: float) -> str:
    n = matches.size
    bad = n - int(matches.sum())
    extra = f"Mismatched elements: {bad} / {n} ({bad / n:.1%})"
    a, e, m = a.reshape(-1), e.reshape(-1), matches.reshape(-1)
    if a.dtype.kind not in "fc" and a.dtype.name != "bfloat16":
        a, e = a.astype(np.int64), e.astype(np.int64)   # as torch: no unsigned wraparound
    abs_diff = np.abs(a - e)
    abs_diff[m] = 0
    if abs_diff.dtype == np.int64:   # torch divides integers in the default float dtype
        rel_diff = abs_diff.astype(np.float32) / np.abs(e).astype(np.float32)
    else:
        rel_diff = abs_diff / np.abs(e)
    rel_diff[m] = 0
    ia, ir = _argmax_nan(abs_diff), _argmax_nan(rel_diff)
    return _message("Tensor-likes", rtol, atol, extra,
                    _py(abs_diff[ia]), np.unravel_index(ia, matches.shape),
                    _py(rel_diff[ir]), np.unravel_index(ir, matches.shape))


def _py(x):
    """A NumPy scalar as the Python number torch's ``.item()`` gives."""
    v = x.item()
    return v if isinstance(v, (int, float, complex)) else float(v)


def _argmax_nan(x: np.ndarray) -> int:
    """torch.max's index: the first NaN if any (NaN is the largest), else the max's."""
    nan = np.isnan(x) if x.dtype.kind in "fc" or x.dtype.name == "bfloat16" else None
    if nan is not None and nan.any():
        return int(np.argmax(nan))
    return int(np.argmax(x))


def _message(identifier: str, rtol: float, atol: float, extra: str, abs_diff, abs_idx,
             rel_diff, rel_idx) -> str:
    equality = rtol == 0 and atol == 0

    def diff(kind: str, value, idx, tol) -> str:
        if idx is None:
            line = f"{kind.title()} difference: {value}"
        else:
            idx = tuple(int(i) for i in idx)
            line = f"Greatest {kind} difference: {value} at index {idx}"
        return line + ("" if equality else f" (up to {tol} allowed)") + "\n"

    text = f"{identifier} are not {'equal' if equality else 'close'}!\n\n{extra.strip()}\n"
    text += diff("absolute", abs_diff, abs_idx, atol) + diff("relative", rel_diff, rel_idx,
                                                             rtol)
    return text.strip()
