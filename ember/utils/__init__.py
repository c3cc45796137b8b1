"""Utilities: data loading."""
from ember.utils import data  # noqa: F401
