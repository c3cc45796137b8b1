"""The functional layers of ember/nn/_functional/{embedding_bag,grid_sample,conv3d,ctc}.py in
one namespace, which ember.nn.functional re-exports."""
from ember.nn._functional.conv3d import *  # noqa: F401,F403
from ember.nn._functional.conv3d import __all__ as _conv3d
from ember.nn._functional.ctc import *  # noqa: F401,F403
from ember.nn._functional.ctc import __all__ as _ctc
from ember.nn._functional.embedding_bag import *  # noqa: F401,F403
from ember.nn._functional.embedding_bag import __all__ as _bag
from ember.nn._functional.grid_sample import *  # noqa: F401,F403
from ember.nn._functional.grid_sample import __all__ as _grid

__all__ = list(_bag) + list(_grid) + list(_conv3d) + list(_ctc)
