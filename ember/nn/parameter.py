"""``torch.nn.parameter``'s import path: ``from ember.nn.parameter import Parameter``."""
from ember.nn.module import Parameter

__all__ = ["Parameter"]
