"""``ember.distributions``: torch.distributions' families, sampling from ember's
generator (``ember.manual_seed`` repeats draws; a compiled function draws fresh ones at
every call) and differentiable where torch's are (``rsample``, ``log_prob``,
``entropy``, ``kl_divergence``).

>>> from ember.distributions import Normal, kl_divergence
>>> p = Normal(ember.tensor([0.]), ember.tensor([1.]))
>>> kl_divergence(p, Normal(ember.tensor([1.]), ember.tensor([1.])))
tensor([0.5])
"""
from ember.distributions import constraints  # noqa: F401
from ember.distributions.bernoulli import Bernoulli
from ember.distributions.beta import Beta
from ember.distributions.categorical import Categorical, OneHotCategorical
from ember.distributions.distribution import Distribution
from ember.distributions.exponential import Exponential
from ember.distributions.gamma import Gamma
from ember.distributions.independent import Independent
from ember.distributions.kl import kl_divergence, register_kl
from ember.distributions.laplace import Laplace
from ember.distributions.multivariate_normal import MultivariateNormal
from ember.distributions.normal import Normal
from ember.distributions.uniform import Uniform

__all__ = ["Bernoulli", "Beta", "Categorical", "Distribution", "Exponential", "Gamma",
           "Independent", "Laplace", "MultivariateNormal", "Normal", "OneHotCategorical",
           "Uniform", "constraints", "kl_divergence", "register_kl"]
