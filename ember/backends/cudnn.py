"""``ember.backends.cudnn``: PyTorch's cuDNN switches. ember does not use cuDNN (its
convolutions are im2col + GEMM), so these are recorded and change nothing.

>>> ember.backends.cudnn.benchmark = True
"""
enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    """False: ember does not call cuDNN."""
    return False


def version() -> None:
    """None, as PyTorch's where cuDNN is not available."""
    return None
