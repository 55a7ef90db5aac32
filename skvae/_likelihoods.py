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


class _DiscreteLikelihood(nn.Module):
    """Shared parts of the likelihoods of discrete data, modelled as given
    (Bernoulli, categorical, Poisson, negative binomial).

    No standardization, no linear Gaussian start, no pinned constants (the
    decoder gives logits or log-rates, not values in the data's units), no
    noise on the encoder's input.
    """

    standardize = False
    supports_linear_start = False
    pins_constant_features = False
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
        """Nothing to adapt: a discrete likelihood has no variance."""
        return self

    def encoder_noise_scale(self):
        """None: the encoder sees the data as they are in training."""
        return None

    def write_onnx_mean(self, writer, x, output=None):
        """Refuse: the ONNX decoder covers the Gaussian and Bernoulli likelihoods."""
        raise ValueError(
            f"The ONNX export of skvae does not cover likelihood={self.name!r}; it "
            "covers 'gaussian' and 'bernoulli'. Use the estimator itself "
            "(inverse_transform) for this model.")


class BernoulliLikelihood(_DiscreteLikelihood):
    """Bernoulli p(x | z) for data in [0, 1]; the decoder gives logits.

    Parameters
    ----------
    n_features : int
        Width of the data (unused: the likelihood has no parameters).
    """

    name = "bernoulli"

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


def _check_counts(X, name):
    """Raise a ValueError unless every (observed) value of X is a non-negative integer."""
    if X.shape[0] == 0:
        return
    values = X.data if sp.issparse(X) else np.asarray(X)
    values = values[~np.isnan(values)]
    if len(values) and (values.min() < 0 or np.any(values != np.round(values))):
        bad = values[(values < 0) | (values != np.round(values))][0]
        raise ValueError(
            f"likelihood={name!r} needs non-negative integer counts, but X holds "
            f"{bad:g}. Use likelihood='gaussian' for real values.")


class CategoricalLikelihood(_DiscreteLikelihood):
    """Categorical p(x | z) over one-hot columns; the decoder gives logits.

    The ``n_features`` columns are the indicators of one variable's
    categories: a row has one 1 (or is missing as a whole), and its log
    probability is ``log softmax(out)`` at that category. A table's categorical
    column is one such group (:class:`MixedLikelihood`).

    Parameters
    ----------
    n_features : int
        Number of categories.
    """

    name = "categorical"

    def log_prob(self, x, out, observed=None):
        """``sum_j x_j log softmax(out)_j`` over the (observed) one-hot columns."""
        return masked_sum(x * torch.log_softmax(out, dim=-1), observed)

    def mean(self, out):
        """Probabilities of the categories: ``softmax(out)``."""
        return torch.softmax(out, dim=-1)

    def write_onnx_mean(self, writer, x, output=None):
        """Write :meth:`mean` as ONNX nodes: ``Softmax`` over the categories."""
        return writer.node("Softmax", [x], output, axis=-1)

    def sample(self, out, generator=None):
        """A one-hot draw of a category for the logits ``out`` (the Gumbel-max trick)."""
        u = torch.rand(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))
        pick = torch.argmax(out + gumbel, dim=-1)
        return F.one_hot(pick, out.shape[-1]).to(out.dtype)

    @staticmethod
    def check_support(X):
        """Raise a ValueError unless X is one-hot: 0 or 1, one 1 per (observed) row."""
        if X.shape[0] == 0:
            return
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        rows = ~np.isnan(dense).any(axis=1)
        values = dense[rows]
        if np.any((values != 0) & (values != 1)) or np.any(values.sum(axis=1) != 1):
            raise ValueError(
                "likelihood='categorical' on an array needs one-hot rows (0 or 1, one 1 "
                "per row). Pass a DataFrame to model each column as a categorical "
                "variable, or one-hot encode X.")


class PoissonLikelihood(_DiscreteLikelihood):
    """Poisson p(x | z) for non-negative counts; the decoder gives log-rates.

    Parameters
    ----------
    n_features : int
        Width of the data (unused: the likelihood has no parameters).
    """

    name = "poisson"

    def log_prob(self, x, out, observed=None):
        """Sum over (observed) features of ``x out - exp(out) - log(x!)``."""
        return masked_sum(x * out - torch.exp(out) - torch.lgamma(x + 1), observed)

    def mean(self, out):
        """Rates: ``exp(out)``."""
        return torch.exp(out)

    def sample(self, out, generator=None):
        """A draw of counts for the log-rates ``out``."""
        return torch.poisson(torch.exp(out), generator=generator)

    def write_onnx_mean(self, writer, x, output=None):
        """Write :meth:`mean` as ONNX nodes: ``Exp`` of the log-rates."""
        return writer.node("Exp", [x], output)

    @staticmethod
    def check_support(X):
        """Raise a ValueError unless every value of X is a non-negative integer."""
        _check_counts(X, "poisson")


def _standard_gamma(shape, generator=None):
    """Gamma(shape, 1) draws from ``generator`` (Marsaglia & Tsang 2000), vectorized.

    ``torch._standard_gamma`` takes no generator. Shapes below 1 use
    ``Gamma(a) = Gamma(a + 1) U**(1/a)``.
    """
    boost = shape < 1
    a = torch.where(boost, shape + 1, shape)
    d = a - 1.0 / 3
    c = 1.0 / torch.sqrt(9 * d)
    out = torch.empty_like(shape)
    todo = torch.ones_like(shape, dtype=torch.bool)
    while bool(todo.any()):
        x = torch.randn(shape.shape, generator=generator, device=shape.device, dtype=shape.dtype)
        u = torch.rand(shape.shape, generator=generator, device=shape.device, dtype=shape.dtype)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x * x + d - d * v
                        + d * torch.log(v.clamp_min(1e-30)))
        accept = todo & ok
        out = torch.where(accept, d * v, out)
        todo = todo & ~ok
    u = torch.rand(shape.shape, generator=generator, device=shape.device, dtype=shape.dtype)
    return torch.where(boost, out * u.clamp_min(1e-30) ** (1 / shape), out)


class NegativeBinomialLikelihood(_DiscreteLikelihood):
    """Negative binomial p(x | z) for overdispersed counts (as in scvi-tools).

    The decoder gives the log of the mean ``mu``; each feature has a learned
    inverse dispersion ``theta`` (variance ``mu + mu**2 / theta``), which
    learns at :data:`VARIANCE_LR_FACTOR` times the network's rate, as the
    Gaussian variances do.

    Parameters
    ----------
    n_features : int
        Width of the data.
    """

    name = "negative_binomial"
    lr_factors = {"log_theta": VARIANCE_LR_FACTOR}

    def __init__(self, n_features):
        super().__init__(n_features)
        self.log_theta = nn.Parameter(torch.empty(n_features))

    def reset_parameters(self):
        """``theta = 1``."""
        with torch.no_grad():
            self.log_theta.zero_()
        return self

    def log_prob(self, x, out, observed=None):
        """Sum over (observed) features of log NB(x; mu=exp(out), theta)."""
        log_theta = self.log_theta
        theta = torch.exp(log_theta)
        log_total = torch.logaddexp(log_theta, out)  # log(theta + mu)
        terms = (theta * (log_theta - log_total) + x * (out - log_total)
                 + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
        return masked_sum(terms, observed)

    def mean(self, out):
        """Means: ``exp(out)``."""
        return torch.exp(out)

    def sample(self, out, generator=None):
        """A draw of counts: Poisson with a Gamma(theta, theta / mu) rate."""
        theta = torch.exp(self.log_theta.detach()).to(out.dtype).expand_as(out)
        rate = _standard_gamma(theta, generator) * torch.exp(out) / theta
        return torch.poisson(rate, generator=generator)

    def write_onnx_mean(self, writer, x, output=None):
        """Write :meth:`mean` as ONNX nodes: ``Exp`` of the log-means."""
        return writer.node("Exp", [x], output)

    @staticmethod
    def check_support(X):
        """Raise a ValueError unless every value of X is a non-negative integer."""
        _check_counts(X, "negative_binomial")


#: The ``likelihood`` parameter's values and their classes.
LIKELIHOODS = {cls.name: cls for cls in (GaussianLikelihood, BernoulliLikelihood,
                                         CategoricalLikelihood, PoissonLikelihood,
                                         NegativeBinomialLikelihood)}


class MixedLikelihood(nn.Module):
    """One likelihood per group of columns: the model of a mixed table.

    The decoder's output is split among the groups in their order; the
    log-likelihood of a row is the sum of the groups' over its observed
    cells. A categorical column is one group of its one-hot columns; the
    other likelihoods take any number of columns. Built by the estimator from
    a DataFrame's column layout (:mod:`skvae._columns`).

    The Gaussian groups are modelled standardized
    (:meth:`standardized_features`); the estimator's ``mean_`` and ``scale_``
    are 0 and 1 on the other columns, so standardizing leaves them as given.
    No linear start and no pinned constants: the decoder gives logits and
    rates beside the Gaussian means.

    Parameters
    ----------
    n_features : int
        Width of the encoded data: the sum of the groups' widths.
    groups : list of [str, int, dict]
        Each group's likelihood (a key of :data:`LIKELIHOODS`), width and
        options, in the column order of the encoded data.
    """

    name = "mixed"
    standardize = True
    supports_linear_start = False
    pins_constant_features = False

    def __init__(self, n_features, groups=()):
        super().__init__()
        self.groups = [[str(name), int(width), dict(options or {})]
                       for name, width, options in groups]
        if sum(width for _, width, _ in self.groups) != n_features:
            raise ValueError(f"The groups' widths do not add up to n_features={n_features}.")
        self.parts = nn.ModuleList(LIKELIHOODS[name](width, **options)
                                   for name, width, options in self.groups)
        bounds = np.cumsum([0] + [width for _, width, _ in self.groups])
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def lr_factors(self):
        """The parts' ``lr_factors``, under their names in this module."""
        return {f"parts.{i}.{name}": factor for i, part in enumerate(self.parts)
                for name, factor in part.lr_factors.items()}

    def options(self):
        """The constructor's keyword arguments, as builtins (for saving)."""
        return {"groups": [[name, width, part.options()]
                           for (name, width, _), part in zip(self.groups, self.parts)]}

    def standardized_features(self):
        """Boolean array of shape (n_features,): the columns modelled standardized."""
        return np.concatenate([np.full(width, part.standardize)
                               for (_, width, _), part in zip(self.groups, self.parts)])

    def reset_parameters(self):
        for part in self.parts:
            part.reset_parameters()
        return self

    def set_scale(self, scale):
        """Each standardized group adapts to its columns' ``scale_``."""
        for part, cols in zip(self.parts, self._slices):
            if part.standardize:
                part.set_scale(np.asarray(scale)[cols])

    def set_resolution(self, resolution):
        """Each group gets its columns' resolution."""
        for part, cols in zip(self.parts, self._slices):
            part.set_resolution(np.asarray(resolution)[cols])
        return self

    def encoder_noise_scale(self):
        """The Gaussian groups' noise scales, 0 on the other columns; None without any."""
        scales = [part.encoder_noise_scale() for part in self.parts]
        if all(scale is None for scale in scales):
            return None
        device = next(scale for scale in scales if scale is not None).device
        return torch.cat([torch.zeros(cols.stop - cols.start, device=device)
                          if scale is None else scale
                          for scale, cols in zip(scales, self._slices)])

    def log_prob(self, x, out, observed=None):
        """Sum over the groups of their log-likelihoods of the (observed) cells."""
        total = 0
        for part, cols in zip(self.parts, self._slices):
            total = total + part.log_prob(
                x[..., cols], out[..., cols], None if observed is None else observed[..., cols])
        return total

    def mean(self, out):
        """Each group's means: values, probabilities or rates."""
        return torch.cat([part.mean(out[..., cols])
                          for part, cols in zip(self.parts, self._slices)], dim=-1)

    def sample(self, out, generator=None):
        """A draw of each group's cells."""
        return torch.cat([part.sample(out[..., cols], generator=generator)
                          for part, cols in zip(self.parts, self._slices)], dim=-1)

    def write_onnx_mean(self, writer, x, output=None):
        """Refuse: the ONNX export does not cover mixed tables."""
        raise ValueError(
            "The ONNX export of skvae does not cover models of mixed tables (a "
            "DataFrame with categorical or count columns): their inputs are text. "
            "Use the estimator itself for this model.")

    def check_support(self, X):
        """Each group's check on its columns."""
        for part, cols in zip(self.parts, self._slices):
            part.check_support(X[:, cols])


def observation_model(name):
    """The class of a network's observation model: a likelihood, or ``"mixed"``."""
    return MixedLikelihood if name == MixedLikelihood.name else LIKELIHOODS[name]
