"""``ember.compiler``: asking about ``ember.compile`` from inside user code, as
``torch.compiler``.

>>> ember.compiler.is_compiling()
False
"""
from __future__ import annotations


def is_compiling() -> bool:
    """True while ``ember.compile`` traces the calling code in this thread. A branch on
    it is fixed in the trace: compiled replays take the traced side."""
    from ember import dispatch
    return dispatch.tracer is not None


is_dynamo_compiling = is_compiling
