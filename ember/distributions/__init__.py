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
from ember.distributions import transforms  # noqa: F401
from ember.distributions.bernoulli import Bernoulli
from ember.distributions.beta import Beta
from ember.distributions.binomial import Binomial
from ember.distributions.categorical import Categorical, OneHotCategorical
from ember.distributions.cauchy import Cauchy, HalfCauchy
from ember.distributions.chi2 import Chi2
from ember.distributions.constraint_registry import biject_to, transform_to
from ember.distributions.dirichlet import Dirichlet
from ember.distributions.distribution import Distribution
from ember.distributions.exponential import Exponential
from ember.distributions.gamma import Gamma
from ember.distributions.geometric import Geometric
from ember.distributions.gumbel import Gumbel
from ember.distributions.half_normal import HalfNormal
from ember.distributions.independent import Independent
from ember.distributions.kl import kl_divergence, register_kl
from ember.distributions.laplace import Laplace
from ember.distributions.log_normal import LogNormal
from ember.distributions.mixture_same_family import MixtureSameFamily
from ember.distributions.multinomial import Multinomial
from ember.distributions.multivariate_normal import MultivariateNormal
from ember.distributions.normal import Normal
from ember.distributions.pareto import Pareto
from ember.distributions.poisson import Poisson
from ember.distributions.one_hot_categorical import OneHotCategoricalStraightThrough
from ember.distributions.relaxed_bernoulli import RelaxedBernoulli
from ember.distributions.relaxed_categorical import RelaxedOneHotCategorical
from ember.distributions.student_t import StudentT
from ember.distributions.transformed_distribution import TransformedDistribution
from ember.distributions.transforms import (AbsTransform, AffineTransform,
                                            ComposeTransform, ExpTransform,
                                            IndependentTransform, LowerCholeskyTransform,
                                            PositiveDefiniteTransform, PowerTransform,
                                            SigmoidTransform, SoftmaxTransform,
                                            SoftplusTransform, StickBreakingTransform,
                                            TanhTransform, Transform, identity_transform)
from ember.distributions.uniform import Uniform
from ember.distributions.weibull import Weibull

__all__ = ["AbsTransform", "AffineTransform", "Bernoulli", "Beta", "Binomial", "Categorical",
           "Cauchy", "Chi2", "ComposeTransform", "Dirichlet", "Distribution", "ExpTransform",
           "Exponential", "Gamma", "Geometric", "Gumbel", "HalfCauchy", "HalfNormal",
           "Independent", "IndependentTransform", "Laplace", "LogNormal",
           "LowerCholeskyTransform", "MixtureSameFamily", "Multinomial", "MultivariateNormal",
           "Normal", "OneHotCategorical", "OneHotCategoricalStraightThrough", "Pareto",
           "Poisson", "PositiveDefiniteTransform", "PowerTransform", "RelaxedBernoulli",
           "RelaxedOneHotCategorical", "SigmoidTransform", "SoftmaxTransform",
           "SoftplusTransform", "StickBreakingTransform", "StudentT", "TanhTransform",
           "Transform", "TransformedDistribution", "Uniform", "Weibull", "biject_to",
           "constraints", "identity_transform", "kl_divergence", "register_kl",
           "transform_to", "transforms"]
