"""``ember.backends.cuda``: TF32 and attention-kernel switches, as ``torch.backends.cuda``
(recorded; ember's CUDA matmul is full float32 whatever they say)."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


class _MatmulFlags:
    """``ember.backends.cuda.matmul``: ``allow_tf32`` and the reduced-precision flags."""

    def __init__(self) -> None:
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    def __setattr__(self, name: str, value) -> None:
        if name not in ("allow_tf32", "allow_fp16_reduced_precision_reduction",
                        "allow_bf16_reduced_precision_reduction"):
            raise AttributeError(f"Unknown attribute {name}")
        object.__setattr__(self, name, bool(value))


matmul = _MatmulFlags()
_sdp = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True}


def is_built() -> bool:
    """Can ember run on CUDA here (is CuPy installed)? A GPU may still be missing."""
    import importlib.util
    return importlib.util.find_spec("cupy") is not None


def enable_flash_sdp(enabled: bool) -> None:
    _sdp["flash"] = bool(enabled)


def flash_sdp_enabled() -> bool:
    return _sdp["flash"]


def enable_mem_efficient_sdp(enabled: bool) -> None:
    _sdp["mem_efficient"] = bool(enabled)


def mem_efficient_sdp_enabled() -> bool:
    return _sdp["mem_efficient"]


def enable_math_sdp(enabled: bool) -> None:
    _sdp["math"] = bool(enabled)


def math_sdp_enabled() -> bool:
    return _sdp["math"]


def enable_cudnn_sdp(enabled: bool) -> None:
    _sdp["cudnn"] = bool(enabled)


def cudnn_sdp_enabled() -> bool:
    return _sdp["cudnn"]


@contextlib.contextmanager
def sdp_kernel(enable_flash: bool = True, enable_math: bool = True,
               enable_mem_efficient: bool = True,
               enable_cudnn: bool = True) -> Iterator[None]:
    """The attention-kernel flags for a block, restored after (torch's deprecated
    ``torch.backends.cuda.sdp_kernel``; ``ember.nn.attention.sdpa_kernel`` is the current
    spelling). ember has one attention implementation, used whatever they say.

    >>> with ember.backends.cuda.sdp_kernel(enable_math=False):
    ...     out = F.scaled_dot_product_attention(q, k, v)
    """
    warnings.warn("torch.backends.cuda.sdp_kernel() is deprecated. In the future, this "
                  "context manager will be removed. Please see "
                  "torch.nn.attention.sdpa_kernel() for the new context manager, with "
                  "updated signature.", FutureWarning, stacklevel=3)
    previous = dict(_sdp)
    try:
        _sdp.update(flash=bool(enable_flash), math=bool(enable_math),
                    mem_efficient=bool(enable_mem_efficient), cudnn=bool(enable_cudnn))
        yield
    finally:
        _sdp.update(previous)
