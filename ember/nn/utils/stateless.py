"""``torch.nn.utils.stateless.functional_call``: ``ember.func.functional_call`` under its
older name.

>>> from ember.nn.utils.stateless import functional_call
"""
from ember.func import functional_call

__all__ = ["functional_call"]
