"""``ember._dynamo``: the parts of ``torch._dynamo`` that real programs set, as meant here.

``torch._dynamo.reset()`` and ``torch._dynamo.config.cache_size_limit = 64`` (or
``recompile_limit``) appear in training scripts; they work the same with ember.

>>> ember._dynamo.config.cache_size_limit = 16   # entries per compiled function
"""
from __future__ import annotations

from ember.compiler import allow_in_graph, disable, reset
from ember.tracer.dynamic import mark_dynamic, mark_static

__all__ = ["config", "reset", "allow_in_graph", "disable", "mark_dynamic", "mark_static"]


class _Config:
    """``torch._dynamo.config``'s settings that have a meaning here. An unknown name
    raises AttributeError, as torch's config does: a setting ember would ignore is not
    taken silently."""

    __slots__ = ()

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


config = _Config()
