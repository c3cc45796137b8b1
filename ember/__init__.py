"""ember: a small PyTorch-style deep learning library with a graph-capturing compiler.

>>> import ember
>>> x = ember.tensor([2., 3.], requires_grad=True)
>>> (x ** 2).backward(ember.tensor([1., 1.]))
>>> x.grad
tensor([4., 6.])
"""
from ember import ops as _ops  # noqa: F401  (fills the op registry)
from ember.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from ember.dtypes import (bool_ as bool, float32, float64, get_default_dtype, int32, int64,
                          set_default_dtype, DType as dtype)
from ember.errors import OpError
from ember.functions import *  # noqa: F401,F403
from ember.ops.random import manual_seed
from ember.runtime.device import Device as device
from ember.tensor import (Size, Tensor, allclose, arange, as_tensor, cat, concat, empty,
                          empty_like, eye, from_numpy, full, full_like, is_tensor, linspace, ones,
                          ones_like, rand, rand_like, randint, randint_like, randn, randn_like,
                          randperm, stack, tensor, where, zeros, zeros_like)
from ember import cuda, nn, optim, utils  # noqa: E402
from ember import distributed  # noqa: E402,F401

float = float32
double = float64
long = int64
int = int32

__version__ = "0.1.0"

from ember.inspect.logs import set_logs  # noqa: E402
from ember.tracer.compile import (CompileError, VerificationError, compile,  # noqa: E402
                                  eager_mode, set_eager)
from ember.inspect.explain import explain  # noqa: E402
from ember.inspect.dump import set_dump_dir  # noqa: E402
