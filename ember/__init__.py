"""ember: a small PyTorch-style deep learning library with a graph-capturing compiler.

>>> import ember
>>> x = ember.tensor([2., 3.], requires_grad=True)
>>> (x ** 2).backward(ember.tensor([1., 1.]))
>>> x.grad
tensor([4., 6.])
"""
from ember import ops as _ops  # noqa: F401  (fills the op registry)
from ember.autograd import (enable_grad, inference_mode, is_grad_enabled,
                            is_inference_mode_enabled, no_grad, set_grad_enabled)
from ember.autograd import is_anomaly_check_nan_enabled, is_anomaly_enabled, set_anomaly_enabled  # noqa: E501,F401
from ember.dtypes import (bool_ as bool, bfloat16, complex64, complex128, float16, float32,
                          float64, finfo, get_default_dtype, iinfo, int8, int16, int32, int64,
                          is_complex, is_floating_point, promote_types, set_default_dtype,
                          uint8, DType as dtype)
from ember.errors import OpError
from ember.functions import *  # noqa: F401,F403
from ember.functions_more import *  # noqa: F401,F403
from ember.functions_math import *  # noqa: F401,F403
from ember.ops.random import Generator, default_generator, initial_seed, manual_seed, seed
from ember.devices import Device as device
from ember.devices import get_default_device, set_default_device
from ember.tensor import (Size, Tensor, allclose, arange, as_tensor, cat, concat, empty,
                          empty_like, eye, from_numpy, full, full_like, is_tensor, linspace, ones,
                          ones_like, rand, rand_like, randint, randint_like, randn, randn_like,
                          randperm, stack, tensor, where, zeros, zeros_like)
from ember.tensor_common import (channels_last, channels_last_3d, contiguous_format,  # noqa
                                 memory_format, preserve_format)
from ember.tensor_create import broadcast_shapes
from ember.tensor_create import LEGACY_TYPES as _LEGACY_TYPES
globals().update(_LEGACY_TYPES)   # ember.LongTensor, ember.FloatTensor, ...
from ember.einsum import einsum
from ember import linalg
from ember.linalg_decomp import (cholesky_solve, det, logdet, matrix_power,  # noqa: E402
                                 pinverse, slogdet, triangular_solve)
from ember.linalg_decomp import inv as inverse, legacy_cholesky as cholesky  # noqa: E402
from ember.linalg_decomp import legacy_cross as cross, legacy_qr as qr, legacy_svd as svd  # noqa
from ember.linalg_more import legacy_lu as lu, legacy_lu_solve as lu_solve, lu_unpack  # noqa
from ember import fft  # noqa: E402
from ember.complex_numbers import (angle, complex, conj, imag, polar, real,  # noqa: E402
                                   view_as_complex, view_as_real)
from ember import serialization  # noqa: E402
from ember.serialization import load, save  # noqa: E402
from ember.sampling import binomial, bernoulli, multinomial, normal, poisson  # noqa: E402
from ember.random import get_rng_state, set_rng_state  # noqa: E402
from ember import cuda, nn, optim, profiler, random, utils  # noqa: E402
from ember.nn.functional import cosine_similarity, pairwise_distance  # noqa: E402,F401
from ember import _dynamo, accelerator, amp, backends, compiler, jit  # noqa: E402
from ember import testing  # noqa: E402,F401
from ember.amp import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: E402
from ember.backends.precision import (get_float32_matmul_precision,  # noqa: E402
                                      set_float32_matmul_precision)
from ember import distributed  # noqa: E402,F401
from ember import multiprocessing  # noqa: E402,F401  (Tensor.share_memory_)
from ember import special  # noqa: E402
from ember.special import (digamma, erfc, erfinv, exp2, i0, logit, polygamma,  # noqa: E402
                           sinc, xlogy)
from ember.special import gammaln as lgamma, multigammaln as mvlgamma  # noqa: E402
from ember.tensor_more import (cummax, cummin, cumulative_trapezoid, heaviside,  # noqa: E402
                               logcumsumexp, mode, rot90, signbit, trapezoid, trapz, vander)
from ember import distributions  # noqa: E402,F401
from ember import sparse  # noqa: E402
from ember import func  # noqa: E402,F401
from ember.printing import set_printoptions  # noqa: E402,F401
from ember.functions_toplevel import *  # noqa: E402,F401,F403
from ember.tensor_extra import *  # noqa: E402,F401,F403
from ember.functions_extra import *  # noqa: E402,F401,F403
from ember.foreach import *  # noqa: E402,F401,F403
from ember.spectral import istft, stft  # noqa: E402
from ember.sparse import layout, sparse_coo, sparse_coo_tensor, spmm, strided  # noqa: E402,F401
from ember.threads import (get_num_interop_threads, get_num_threads,  # noqa: E402
                           set_num_interop_threads, set_num_threads)
from ember import blas_spin as _blas_spin  # noqa: E402
_blas_spin.shorten()   # NumPy's BLAS threads sleep soon after a GEMM (see the module)
from ember.determinism import (are_deterministic_algorithms_enabled,  # noqa: E402
                               get_deterministic_debug_mode,
                               is_deterministic_algorithms_warn_only_enabled,
                               set_deterministic_debug_mode, use_deterministic_algorithms)

float = float32
double = float64
long = int64
int = int32
half = float16
short = int16
cfloat = complex64
cdouble = complex128


from ember import version  # noqa: E402
from ember.version import __version__  # noqa: E402,F401

from ember.inspect.logs import set_logs  # noqa: E402
from ember.tracer.compile import (CompileError, VerificationError, compile,  # noqa: E402
                                  eager_mode, set_eager)
from ember.tracer.dynamic import mark_dynamic, mark_static  # noqa: E402
from ember.inspect.explain import explain  # noqa: E402
from ember.inspect.dump import set_dump_dir  # noqa: E402

import sys  # noqa: E402

from ember import axis_alias as _axis_alias  # noqa: E402
_axis_alias.install(sys.modules[__name__], Tensor)   # ``axis=`` for ``dim=``, as torch
