"""Optimizers: update parameters from their gradients.

>>> opt = ember.optim.Adam(model.parameters(), lr=1e-3)
>>> for x, y in loader:
...     opt.zero_grad()
...     loss_fn(model(x), y).backward()
...     opt.step()
"""
from ember.optim.adam import Adam, AdamW
from ember.optim.optimizer import Optimizer
from ember.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
