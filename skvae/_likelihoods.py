"""Observation models p(x | z): the one home of everything a likelihood decides.

Each likelihood is a small ``torch.nn.Module`` owned by the network
(``VAEModule.observation``). It says how the data are prepared (standardized or
taken as they are), which values it supports, turns the decoder's output into
per-sample log-likelihoods and into means (in torch and as ONNX nodes), and
holds its own parameters (the Gaussian variances). A new likelihood or variance
model is one class here and one entry in :data:`LIKELIHOODS`. The class gives:

* class attributes ``name`` (the key of :data:`LIKELIHOODS`), ``lr_factors``
  and three properties, each read where its meaning is used:
  ``standardize`` (the data are modelled standardized, ``(X - mean_) /
  scale_``), ``supports_linear_start`` (the network can start from PCA or
  factor analysis, which needs ``set_variance`` and ``variance_floor``) and
  ``pins_constant_features`` (a feature constant in the training rows decodes
  to its constant, :meth:`skvae._module.VAEModule.constant_features`);
* methods ``options``, ``reset_parameters``, ``set_scale``,
  ``set_resolution``, ``log_prob``, ``mean``, ``sample``, ``write_onnx_mean``,
  ``check_support`` and ``encoder_noise_scale``.

Missing entries: ``log_prob(x, out, observed)`` sums over the observed
features only (``observed`` a boolean mask, or None when every entry is
observed). Under a decoder that factorizes over features this is the exact
likelihood of the observed sub-vector, so a likelihood supports missing data by
computing its per-feature terms (:func:`masked_sum`). ``x`` holds a finite
placeholder (0) where ``observed`` is False: a NaN multiplied by a mask of 0
would still reach the gradients.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

_LOG_2PI = math.log(2 * math.pi)

#: Smallest variance of the Gaussian likelihood, in standardized units. Low
#: enough not to cap low-noise data (a swiss roll with noise 0.01 has feature
#: variances near 1e-4); near-constant features are guarded by the outlier
#: component instead (see :class:`GaussianLikelihood`).
MIN_VARIANCE = 1e-6

#: Prior weight of the Gaussian likelihood's broad outlier component.
OUTLIER_WEIGHT = 1e-4

#: The Gaussian variances learn at this multiple of the network's learning rate.
#: Adam moves a parameter by about one learning rate per step whatever its
#: gradient, and the log-variance of a feature must travel several units (from
#: the linear start's noise variance to the noise a nonlinear decoder leaves, a
#: factor of 1e-4 on a low-noise manifold): at 1e-3 per step it lagged far
#: behind the decoder's fit. Measured in benchmarks/bench_decoder_bound.py and
#: docs/defaults.rst; faster (10 and more) lets the variances overfit the
#: training rows before early stopping can judge the decoder (MNIST).
VARIANCE_LR_FACTOR = 5.0


def _inverse_softplus(y):
    """x with ``softplus(x) == y`` for y > 0, stable for small and large y."""
    return y + torch.log(-torch.expm1(-y))


def masked_sum(terms, observed):
    """Sum of per-feature ``terms`` over the last axis, where ``observed`` is True.

    ``observed`` (boolean, broadcastable to ``terms``) or None for all. The
    placeholders of missing entries must be finite (see the module docstring).
    """
    if observed is None:
        return terms.sum(-1)
    if observed.dim() < terms.dim():  # IWAE: x of shape (n, 1, d) against (n, K, d)
        observed = observed.unsqueeze(-2)
    return (terms * observed).sum(-1)


def gaussian_log_likelihood(x, mean, log_var, observed=None):
    """Sum over (observed) features of log N(x; mean, exp(log_var)), shape ``x.shape[:-1]``."""
    terms = _LOG_2PI + log_var + (x - mean).square() * torch.exp(-log_var)
    return -0.5 * masked_sum(terms, observed)


def robust_gaussian_log_likelihood(x, mean, log_var, outlier_log_var,
                                   outlier_weight=OUTLIER_WEIGHT, observed=None):
    """Sum over features of the log density of a two-component Gaussian mixture.

    Each feature is ``N(mean, exp(log_var))`` with probability
    ``1 - outlier_weight`` and ``N(mean, exp(outlier_log_var))`` otherwise: a
    density with the Gaussian's shape where the data are, whose tails are those
    of the broad component. A value far outside what a feature showed in
    training (a pixel that was always blank) costs at most about
    ``-log(outlier_weight)`` plus its squared distance in the broad scale.
    With ``observed`` (a boolean mask) the sum runs over the observed features.
    """
    if observed is None and torch.is_grad_enabled() \
            and (mean.requires_grad or log_var.requires_grad) \
            and not (x.requires_grad or outlier_log_var.requires_grad):
        return _RobustGaussianLogLikelihood.apply(x, mean, log_var, outlier_log_var,
                                                  outlier_weight)
    z2 = (x - mean).square()
    core = math.log1p(-outlier_weight) - 0.5 * (log_var + z2 * torch.exp(-log_var))
    broad = math.log(outlier_weight) - 0.5 * (outlier_log_var + z2 * torch.exp(-outlier_log_var))
    return masked_sum(torch.logaddexp(core, broad) - 0.5 * _LOG_2PI, observed)


class _RobustGaussianLogLikelihood(torch.autograd.Function):
    """:func:`robust_gaussian_log_likelihood` with a hand-written backward pass.

    Training spends a quarter of a step on this function when autograd
    differentiates it term by term on wide data (784 features: 1.5 of 6.5 ms,
    as much as the rest of the step outside the matrix products). The
    gradients have a short closed form in the responsibility ``rho`` of the
    core component: ``d/d mean = (x - mean) * (rho / v + (1 - rho) / o)`` and
    ``d/d log_var = rho * ((x - mean)**2 / v - 1) / 2`` per element (``v``
    and ``o`` the two variances). Used only where gradients flow to ``mean``
    or ``log_var`` (training); scoring evaluates the plain expression.
    """

    @staticmethod
    def forward(ctx, x, mean, log_var, outlier_log_var, outlier_weight):
        residual = x - mean
        z2 = residual.square()
        precision, outlier_precision = torch.exp(-log_var), torch.exp(-outlier_log_var)
        core = torch.addcmul(math.log1p(-outlier_weight) - 0.5 * log_var, z2, precision,
                             value=-0.5)
        broad = torch.addcmul(math.log(outlier_weight) - 0.5 * outlier_log_var, z2,
                              outlier_precision, value=-0.5)
        out = torch.logaddexp(core, broad).sum(-1) - 0.5 * _LOG_2PI * x.shape[-1]
        # core - broad: the logit of the core component's responsibility
        ctx.save_for_backward(residual, z2, core.sub_(broad), precision, outlier_precision)
        ctx.shapes = mean.shape, log_var.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        residual, z2, logit, precision, outlier_precision = ctx.saved_tensors
        mean_shape, log_var_shape = ctx.shapes
        rho = torch.sigmoid(logit)
        grad = grad.unsqueeze(-1)
        grad_mean = grad_log_var = None
        if ctx.needs_input_grad[1]:
            weight = torch.addcmul(outlier_precision, rho, precision - outlier_precision)
            grad_mean = (residual * weight).mul_(grad).sum_to_size(mean_shape)
        if ctx.needs_input_grad[2]:
            rho = rho.mul_(grad)
            grad_log_var = 0.5 * (precision * (rho * z2).sum_to_size(log_var_shape)
                                  - rho.sum_to_size(log_var_shape))
        return None, grad_mean, grad_log_var, None, None


def bernoulli_log_likelihood(x, logits, observed=None):
    """Sum over (observed) features of x log p + (1 - x) log(1 - p), p = sigmoid(logits)."""
    if x.shape != logits.shape:  # IWAE: x of shape (n, 1, d), logits (n, K, d)
        x = x.expand_as(logits)
    return masked_sum(-F.binary_cross_entropy_with_logits(logits, x, reduction="none"),
                      observed)


class GaussianLikelihood(nn.Module):
    """Gaussian p(x | z) with a learned variance per feature and robust tails.

    The decoder gives the mean; each feature has a learned variance, at least
    its floor: :data:`MIN_VARIANCE` in standardized units, or the variance of
    rounding to the feature's resolution where that is larger, up to the
    feature's own variance (:meth:`set_resolution`). Data recorded in whole
    units, such as pixel intensities or counts, cannot be known better than
    to a unit; a model that claims more scores spikes on the recorded values,
    which depend on which rare values the training rows happened to hold. A
    broad component of weight
    :data:`OUTLIER_WEIGHT` whose variance is the data's typical variance
    (:meth:`set_scale`) keeps a feature that is constant or nearly so in
    the training rows from making one held-out value cost millions of nats,
    while it costs a typical value ``-log(1 - 1e-4)``, 1e-4 nats per feature.

    The variances learn at :data:`VARIANCE_LR_FACTOR` times the network's
    learning rate (:attr:`lr_factors`): they are scale parameters, which move
    by orders of magnitude while the decoder learns.

    Parameters
    ----------
    n_features : int
        Width of the data.
    min_variance : float, default=MIN_VARIANCE
        Smallest variance of any feature, in standardized units.
    outlier_weight : float, default=OUTLIER_WEIGHT
        Weight of the broad component; 0 gives a plain Gaussian (the
        likelihood of models saved before skvae 0.2, format 1).
    """

    name = "gaussian"
    #: the data are modelled standardized, ``(X - mean_) / scale_``: the
    #: estimator standardizes its input and undoes it on the means it returns
    standardize = True
    #: the network can start as a linear Gaussian model (PCA or factor analysis,
    #: :meth:`skvae._module.VAEModule.init_linear_gaussian`): this likelihood
    #: is that model's noise, with :meth:`set_variance` and ``variance_floor``
    supports_linear_start = True
    #: a feature constant in the training rows decodes to its constant: the
    #: decoder's output is the mean itself, in the units of ``input_low``
    pins_constant_features = True
    #: parameter name -> multiple of the learning rate it learns at
    lr_factors = {"raw_variance": VARIANCE_LR_FACTOR}

    def __init__(self, n_features, min_variance=MIN_VARIANCE, outlier_weight=OUTLIER_WEIGHT):
        super().__init__()
        self.min_variance = float(min_variance)
        self.outlier_weight = float(outlier_weight)
        self.raw_variance = nn.Parameter(torch.empty(n_features))
        self.register_buffer("outlier_log_variance", torch.empty(n_features))
        self.register_buffer("variance_floor", torch.empty(n_features))

    def options(self):
        """The constructor's keyword arguments, as builtins (for saving)."""
        return {"min_variance": self.min_variance, "outlier_weight": self.outlier_weight}

    def reset_parameters(self):
        """Variance 1 (the standardized data's) for both components, floor ``min_variance``."""
        with torch.no_grad():
            self.variance_floor.fill_(self.min_variance)
            self.set_variance(torch.ones_like(self.raw_variance))
            self.outlier_log_variance.zero_()
        return self

    def set_variance(self, variance):
        """Set the learned variances (standardized units), at least their floor."""
        variance = torch.as_tensor(variance, dtype=torch.float64,
                                   device=self.variance_floor.device)
        floor = self.variance_floor.to(torch.float64)
        excess = (variance - floor).clamp_min(self.min_variance * 1e-3)
        with torch.no_grad():
            self.raw_variance.copy_(_inverse_softplus(excess))

    def set_scale(self, scale):
        """Adapt to the data's units: the broad component gets their mean variance.

        Parameters
        ----------
        scale : ndarray of shape (n_features,)
            The estimator's ``scale_``; in standardized units feature j's broad
            variance is ``mean(scale**2) / scale[j]**2``.
        """
        scale = np.asarray(scale, dtype=np.float64)
        log_var = np.log(np.mean(scale ** 2)) - 2 * np.log(scale)
        with torch.no_grad():
            self.outlier_log_variance.copy_(torch.as_tensor(log_var))

    def set_resolution(self, resolution):
        """Floor each variance at that of rounding to the feature's resolution.

        Parameters
        ----------
        resolution : ndarray of shape (n_features,)
            The smallest gap between two distinct values of each feature, in
            standardized units (0 for a constant feature); see
            :func:`skvae._data.feature_resolution`. The floor becomes
            ``resolution**2 / 12``, the variance of a value spread evenly over
            one step, but at most 1, the feature's own (standardized)
            variance: a feature of rare events (0 in 99 % of the rows, 1 in
            the others) has steps wider than its spread, and the model may
            still be as good as a Gaussian fitted to that feature alone. Never
            below ``min_variance``. The learned variances keep their values
            where they are above it.
        """
        step = torch.as_tensor(np.asarray(resolution, dtype=np.float64),
                               device=self.variance_floor.device)
        with torch.no_grad():
            variance = self.log_variance().to(torch.float64).exp()
            floor = (step.square() / 12).clamp(max=1.0).clamp_min(self.min_variance)
            self.variance_floor.copy_(floor)
            self.set_variance(torch.maximum(variance, floor))
        return self

    def log_variance(self):
        """Log of the per-feature variance, shape ``(n_features,)``."""
        return torch.log(F.softplus(self.raw_variance) + self.variance_floor)

    def encoder_noise_scale(self):
        """Per-feature scale of the noise added to the encoder's input in training.

        The likelihood's own standard deviations, detached: the encoder learns
        from rows perturbed in proportion to the noise the model attributes to
        the data (``skvae._net.ENCODER_INPUT_NOISE`` times it; see
        :func:`skvae._losses.elbo`), so a low-noise feature is barely perturbed
        and a noisy one by a share of its noise.
        """
        return torch.exp(0.5 * self.log_variance()).detach()

    def log_prob(self, x, out, observed=None):
        """log p(x | z) summed over the (observed) features, for decoder outputs ``out``."""
        if self.outlier_weight == 0:
            return gaussian_log_likelihood(x, out, self.log_variance(), observed)
        return robust_gaussian_log_likelihood(x, out, self.log_variance(),
                                              self.outlier_log_variance, self.outlier_weight,
                                              observed)

    def mean(self, out):
        """E[x | z] in the model's (standardized) units."""
        return out

    def sample(self, out, generator=None):
        """A draw of x from p(x | z) for decoder outputs ``out`` (standardized units).

        From the mixture itself: each entry comes from the broad component
        with probability ``outlier_weight``.
        """
        log_var = self.log_variance().expand_as(out)
        if self.outlier_weight > 0:
            broad = torch.rand(out.shape, generator=generator, device=out.device,
                               dtype=out.dtype) < self.outlier_weight
            log_var = torch.where(broad, self.outlier_log_variance.expand_as(out), log_var)
        noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out + torch.exp(0.5 * log_var) * noise

    def write_onnx_mean(self, writer, x, output=None):
        """Write :meth:`mean` as ONNX nodes: the decoder's output itself.

        Parameters
        ----------
        writer : object
            The graph writer of :mod:`skvae.onnx`: ``writer.node(op_type,
            inputs, output=None, **attrs)`` adds a node and
            ``writer.constant(seed, array)`` a float32 initializer, each
            returning the name of its tensor.
        x : str
            Name of the decoder's output (float32, shape ``(n, n_features)``).
        output : str, default=None
            Name of the result; None lets the writer name it.

        Returns
        -------
        name : str
            Name of the tensor holding the means.
        """
        return x if output is None else writer.node("Identity", [x], output)

    @staticmethod
    def check_support(X):
        """Any real value is supported."""


class BernoulliLikelihood(nn.Module):
    """Bernoulli p(x | z) for data in [0, 1]; the decoder gives logits.

    Parameters
    ----------
    n_features : int
        Width of the data (unused: the likelihood has no parameters).
    """

    name = "bernoulli"
    #: the data are modelled as given (in [0, 1]), not standardized
    standardize = False
    #: no linear Gaussian start: the decoder gives logits, not Gaussian means
    supports_linear_start = False
    #: constant features are decoded like the others: the decoder gives logits,
    #: not values in the data's units (a constant 0 or 1 is an infinite logit)
    pins_constant_features = False
    #: no parameter with a step size of its own
    lr_factors = {}

    def __init__(self, n_features):
        super().__init__()

    def options(self):
        """The constructor's keyword arguments: none."""
        return {}

    def reset_parameters(self):
        return self

    def set_scale(self, scale):
        """Nothing to adapt: the data are modelled as given."""

    def set_resolution(self, resolution):
        """Nothing to adapt: the Bernoulli likelihood has no variance."""
        return self

    def encoder_noise_scale(self):
        """None: the encoder sees the data (in [0, 1]) as they are in training."""
        return None

    def log_prob(self, x, out, observed=None):
        """Sum over (observed) features of x log p + (1 - x) log(1 - p), p = sigmoid(out)."""
        return bernoulli_log_likelihood(x, out, observed)

    def mean(self, out):
        """Probabilities: ``sigmoid(out)``."""
        return torch.sigmoid(out)

    def sample(self, out, generator=None):
        """A draw of x (0 or 1) from p(x | z) for the logits ``out``."""
        u = torch.rand(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return (u < torch.sigmoid(out)).to(out.dtype)

    def write_onnx_mean(self, writer, x, output=None):
        """Write :meth:`mean` as ONNX nodes: ``Sigmoid`` of the logits.

        Parameters
        ----------
        writer : object
            The graph writer of :mod:`skvae.onnx`: ``writer.node(op_type,
            inputs, output=None, **attrs)`` adds a node and
            ``writer.constant(seed, array)`` a float32 initializer, each
            returning the name of its tensor.
        x : str
            Name of the decoder's output (float32, shape ``(n, n_features)``).
        output : str, default=None
            Name of the result; None lets the writer name it.

        Returns
        -------
        name : str
            Name of the tensor holding the means.
        """
        return writer.node("Sigmoid", [x], output)

    @staticmethod
    def check_support(X):
        """Raise a ValueError unless every value of X is in [0, 1]."""
        if X.shape[0] == 0:
            return
        values = np.append(X.data, 0.0) if sp.issparse(X) else X  # implicit zeros are fine
        with np.errstate(invalid="ignore"):  # NaN marks a missing entry
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if low < 0 or high > 1:
            raise ValueError(
                f"likelihood='bernoulli' needs X in [0, 1], but X has values in "
                f"[{low:g}, {high:g}]. Rescale X to [0, 1] (e.g. with "
                "sklearn.preprocessing.MinMaxScaler) or use likelihood='gaussian'."
            )


#: The ``likelihood`` parameter's values and their classes.
LIKELIHOODS = {cls.name: cls for cls in (GaussianLikelihood, BernoulliLikelihood)}
