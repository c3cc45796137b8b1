"""``ember._dynamo``: the parts of ``torch._dynamo`` that real programs set, as meant here.

``torch._dynamo.reset()`` and ``torch._dynamo.config.cache_size_limit = 64`` (or
``recompile_limit``) appear in training scripts; they work the same with ember.

>>> ember._dynamo.config.cache_size_limit = 16   # entries per compiled function
"""
from __future__ import annotations

import sys
import types

from ember.compiler import allow_in_graph, disable, is_compiling, reset
from ember.tracer.dynamic import mark_dynamic, mark_static

__all__ = ["config", "reset", "allow_in_graph", "disable", "is_compiling", "mark_dynamic",
           "mark_static"]


class _Config(types.ModuleType):
    """``torch._dynamo.config``'s settings that have a meaning here, as a module (litgpt
    does ``import torch._dynamo.config``). An unknown name raises AttributeError, as
    torch's config does: a setting ember would ignore is not taken silently."""

    def __setattr__(self, name: str, value) -> None:
        if not hasattr(type(self), name):
            raise AttributeError(f"torch._dynamo.config has no setting {name!r} in ember")
        super().__setattr__(name, value)

    @property
    def recompile_limit(self) -> int:
        """Cache entries a compiled function keeps by default (8; 64 once sizes vary)."""
        from ember.tracer import options
        return options.DEFAULT_CACHE_LIMIT

    @recompile_limit.setter
    def recompile_limit(self, value: int) -> None:
        from ember.tracer import options
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"recompile_limit must be a positive int, got {value!r}")
        options.DEFAULT_CACHE_LIMIT = value

    cache_size_limit = recompile_limit   # torch's older name

    @property
    def suppress_errors(self) -> bool:
        """ember never raises for code it cannot compile (except with fullgraph=True):
        that call runs eagerly, with the reason in ``stats()["fallbacks"]``."""
        return True

    @suppress_errors.setter
    def suppress_errors(self, value: bool) -> None:
        if not value:
            raise ValueError("ember.compile always runs code it cannot compile eagerly "
                             "(the reason is in stats()['fallbacks']); use "
                             "ember.compile(fullgraph=True) to raise instead")

    @property
    def automatic_dynamic_shapes(self) -> bool:
        """A size that changes between calls makes that dimension dynamic: ember's
        ``dynamic=None`` default does so (litgpt sets it True)."""
        return True

    @automatic_dynamic_shapes.setter
    def automatic_dynamic_shapes(self, value: bool) -> None:
        if not value:
            raise ValueError("pass dynamic=False to ember.compile to keep every size "
                             "static")


config = _Config(__name__ + ".config")
sys.modules[config.__name__] = config   # ``import torch._dynamo.config``
