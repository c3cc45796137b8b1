"""``ember.set_printoptions`` (torch.set_printoptions): programs call it at the top; the
options change how values print and the defaults print as before."""
from __future__ import annotations

import pytest

import ember


@pytest.fixture(autouse=True)
def _default_options():
    yield
    ember.set_printoptions(profile="default")


def test_precision_threshold_edgeitems_and_profiles():
    x = ember.tensor([1.23456, 2.5])
    before = repr(ember.arange(2000.0))
    ember.set_printoptions(precision=2)
    assert repr(x) == "tensor([1.23, 2.50])"
    ember.set_printoptions(threshold=5, edgeitems=1)
    assert repr(ember.arange(10)) == "tensor([0, ..., 9])"
    ember.set_printoptions(profile="full")
    assert "..." not in repr(ember.arange(2000))
    ember.set_printoptions(profile="short")
    assert repr(x) == "tensor([1.23, 2.50])"
    ember.set_printoptions(profile="default")
    assert repr(ember.arange(2000.0)) == before and repr(x) == "tensor([1.2346, 2.5000])"
    with pytest.raises(ValueError, match="profile"):
        ember.set_printoptions(profile="long")


def test_sci_mode_as_torch():
    torch = pytest.importorskip("torch")
    for mode in (True, False):
        ember.set_printoptions(sci_mode=mode, precision=3)
        torch.set_printoptions(sci_mode=mode, precision=3)
        try:
            e, t = repr(ember.tensor([1.5, 20000.0])), repr(torch.tensor([1.5, 20000.0]))
        finally:
            torch.set_printoptions(profile="default", sci_mode=None)
        assert e == t, (mode, e, t)
