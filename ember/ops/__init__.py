"""The primitive ops. Importing this package fills the registry (``OPS``)."""
from ember.ops import elementwise, index, matmul, movement, random, reduce, valueops  # noqa: F401
from ember.ops import mathops  # noqa: F401
from ember.ops.registry import OPS, OpDef, defop, get  # noqa: F401
