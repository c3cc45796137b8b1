"""ember's IR: Graph (networkx), text printer, verifier, reference interpreter, passes."""
from ember.ir.graph import Graph, InputSource  # noqa: F401
