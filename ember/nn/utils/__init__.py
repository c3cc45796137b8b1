"""ember.nn.utils: gradient clipping and parameter/vector conversion, as torch.nn.utils.

>>> from ember.nn.utils import clip_grad_norm_
>>> total = clip_grad_norm_(model.parameters(), max_norm=1.0)
"""
from ember.nn.utils.clip_grad import (clip_grad_norm, clip_grad_norm_, clip_grad_value_,
                                      clip_grads_with_norm_, get_total_norm)
from ember.nn.utils.convert_parameters import parameters_to_vector, vector_to_parameters
from ember.nn.utils import rnn  # noqa: F401
from ember.nn.utils import parametrize  # noqa: F401
from ember.nn.utils import parametrizations  # noqa: F401
from ember.nn.utils import stateless  # noqa: F401
from ember.nn.utils.spectral_norm import remove_spectral_norm, spectral_norm
from ember.nn.utils.weight_norm import remove_weight_norm, weight_norm

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "clip_grads_with_norm_",
           "get_total_norm", "parameters_to_vector", "vector_to_parameters", "weight_norm",
           "remove_weight_norm", "spectral_norm", "remove_spectral_norm"]

# Conv/linear + BatchNorm folding, skip_init, convolution weights' memory format.
from ember.nn.utils import fusion, init, memory_format  # noqa: E402,F401
from ember.nn.utils.fusion import (fuse_conv_bn_eval, fuse_conv_bn_weights,  # noqa: E402
                                   fuse_linear_bn_eval, fuse_linear_bn_weights)
from ember.nn.utils.init import skip_init  # noqa: E402
from ember.nn.utils.memory_format import (convert_conv2d_weight_memory_format,  # noqa: E402
                                          convert_conv3d_weight_memory_format)

__all__ += ["fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval",
            "fuse_linear_bn_weights", "skip_init", "convert_conv2d_weight_memory_format",
            "convert_conv3d_weight_memory_format"]
