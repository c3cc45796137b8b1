"""Utilities: data loading, activation checkpointing."""
from ember.utils import _pytree, checkpoint, data  # noqa: F401
