"""Code generation: the backend-neutral Kernel description and its CPU/GPU backends."""
