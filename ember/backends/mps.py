"""``ember.backends.mps``: Apple's Metal backend, which ember does not have."""


def is_available() -> bool:
    """False: ember runs on the CPU and CUDA only."""
    return False


def is_built() -> bool:
    return False
