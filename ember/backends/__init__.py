"""``ember.backends``: the switches programs set on ``torch.backends``.

ember runs float32 matmuls at full float32 precision on every device (NumPy's BLAS on
the CPU, cuBLAS through CuPy without TF32), and never uses cuDNN or MPS. The TF32 and
cuDNN switches are kept so that programs setting them run unchanged: allowing TF32 is
a permission, and full precision is always within it.

>>> ember.backends.cuda.matmul.allow_tf32 = True
>>> ember.backends.mps.is_available()
False
"""
from ember.backends import cpu, cuda, cudnn, mps

__all__ = ["cpu", "cuda", "cudnn", "mps"]
