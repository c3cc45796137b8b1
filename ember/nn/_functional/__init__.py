"""Parts of ``ember.nn.functional`` kept in their own files (functional.py re-exports
them): activations, attention, losses, convolutions and group norm, resampling and padding, and the
embedding options. They import functional's helpers inside functions, so functional.py
can import this package at its end."""
from ember.nn._functional import activation, conv, embedding, loss  # noqa: F401
from ember.nn._functional import attention, dropout, pooling, sampling  # noqa: F401
from ember.nn._functional import folding as _fold  # noqa: F401
from ember.nn._functional import extra  # noqa: F401
from ember.nn._functional.extra import *  # noqa: F401,F403
from ember.nn._functional.folding import *  # noqa: F401,F403
from ember.nn._functional.attention import *  # noqa: F401,F403
from ember.nn._functional.activation import *  # noqa: F401,F403
from ember.nn._functional.conv import *  # noqa: F401,F403
from ember.nn._functional.dropout import *  # noqa: F401,F403
from ember.nn._functional.loss import *  # noqa: F401,F403
from ember.nn._functional.pooling import *  # noqa: F401,F403
from ember.nn._functional.sampling import *  # noqa: F401,F403

__all__ = (attention.__all__ + activation.__all__ + conv.__all__ + dropout.__all__ + loss.__all__ + pooling.__all__
           + sampling.__all__ + _fold.__all__ + extra.__all__)
