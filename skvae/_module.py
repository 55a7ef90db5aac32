"""The variational autoencoder as a ``torch.nn.Module``.

The module only knows tensors: an MLP encoder giving the mean and log-variance of
a diagonal Gaussian posterior, and a mirrored MLP decoder giving the parameters of
the observation likelihood. Training, data handling and randomness live elsewhere.
"""

import math

import numpy as np
import torch
from torch import nn

from ._likelihoods import _inverse_softplus, observation_model

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}

#: Upper bound of the posterior's log-variance (a variance of e^2 = 7.4, the
#: prior's is 1): approached smoothly, so that an input unlike the training rows
#: cannot ask for a posterior so wide that its samples decode to nonsense.
MAX_POSTERIOR_LOG_VARIANCE = 2.0

_LOG_2PI = math.log(2 * math.pi)


def _bounded_log_variance(raw, bound=MAX_POSTERIOR_LOG_VARIANCE):
    """``bound - softplus(bound - raw)``: ``raw`` below the bound, never above it."""
    if bound is None:
        return raw
    return bound - nn.functional.softplus(bound - raw)


def _soft_cap(log_var, bound=MAX_POSTERIOR_LOG_VARIANCE):
    """``log_var`` where it is below 0, ``bound * tanh(log_var / bound)`` above.

    Never above ``bound``, and the identity on log-variances below the prior's
    (0), which the product-of-experts encoder's linear path always gives: a
    start from a linear model keeps its exact posterior. Smooth (continuous
    slope) at 0.
    """
    if bound is None:
        return log_var
    return torch.where(log_var < 0, log_var, bound * torch.tanh(log_var / bound))


#: ``encoder_precision`` of an expert that adds nothing yet: a precision of 1e-4.
_EMPTY_LOG_PRECISION = math.log(1e-4)


def _unbounded_log_variance(log_var, bound=MAX_POSTERIOR_LOG_VARIANCE):
    """Inverse of :func:`_bounded_log_variance` (for ``log_var`` below the bound)."""
    if bound is None:
        return np.asarray(log_var, dtype=np.float64)
    gap = torch.as_tensor(bound - np.asarray(log_var, dtype=np.float64))
    return bound - _inverse_softplus(gap).numpy()


def split_missing(x):
    """``(x with its missing entries set to 0, mask of the observed ones)``.

    Missing entries are NaN. The mask is None when every entry is observed,
    so complete data take the paths they took before missing data were
    supported. The placeholder 0 is finite: a NaN that a mask multiplies away
    still turns the gradients NaN. Checking for NaN reads one flag back from
    the device: training, which knows once whether its data have holes, makes
    the mask itself.
    """
    missing = torch.isnan(x)
    if not bool(missing.any()):
        return x, None
    return fill_missing(x, missing)


def fill_missing(x, missing=None):
    """``(x with 0 where missing, the mask of observed entries)``, with no check.

    For callers that know the data have holes (the training net, once per
    fit); :func:`split_missing` decides by looking.
    """
    missing = torch.isnan(x) if missing is None else missing
    return x.masked_fill(missing, 0.0), ~missing


def empty_on_cpu(module):
    """``module``, built on the meta device, with uninitialised CPU storage.

    Floating-point tensors become float32 whatever torch's default dtype
    (training data are float32). ``Module.to_empty`` would do the same through
    ``torch.empty_like`` of meta tensors, whose reference implementation
    imports ``torch.fx.experimental.symbolic_shapes`` and SymPy on its first
    call: 0.7 s of the first fit of every process. ``torch.empty`` of each
    tensor's shape imports nothing.
    """
    return module._apply(lambda t: torch.empty(
        t.shape, dtype=torch.float32 if t.is_floating_point() else t.dtype, device="cpu"))


def _mlp(sizes, activation):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class VAEModule(nn.Module):
    """MLP variational autoencoder with linear paths, and a Gaussian or Bernoulli decoder.

    The posterior mean is ``encoder_head(encoder(x))[:k] + encoder_linear(x)``
    and the decoder output ``decoder_head(decoder(z)) + decoder_linear(z)``: a
    linear model plus a nonlinear residual. With the residual's last layers at
    zero the module *is* a linear Gaussian model (probabilistic PCA or factor
    analysis, see :meth:`init_linear_gaussian`), so training starts from the
    linear solution and can only move from it where the data say so.

    The encoder sees each feature clipped to the range it took in the training
    rows (buffers ``input_low`` and ``input_high``, set by
    :meth:`set_input_range`; unbounded until then): a held-out row with a value
    far outside that range, say ink on a pixel that was blank in every training
    image, cannot push its latent code, and with it the reconstruction of every
    other feature, arbitrarily far. The likelihood still scores the row's own
    values. With a likelihood whose ``pins_constant_features`` is true (the
    Gaussian one) a feature that was constant in training decodes to that
    constant (:meth:`constant_features`): its variance falls to the
    likelihood's floor, and a held-out row with another value there pays the
    outlier component's bounded penalty instead of the decoder drifting off the
    constant during training.

    Parameters
    ----------
    n_features : int
        Width of the data.
    n_components : int
        Latent dimensions.
    hidden_layer_sizes : tuple of int
        Encoder widths; the decoder uses them in reverse order.
    activation : str
        Key of :data:`ACTIVATIONS`.
    likelihood : {"gaussian", "bernoulli"}
        Key of :data:`skvae._likelihoods.LIKELIHOODS` (a likelihood,
        or ``"mixed"``: one per group of columns); the likelihood object,
        with its parameters, is the submodule ``observation``.
        ``"gaussian"``: :meth:`decode` returns means (one learned variance per
        feature). ``"bernoulli"``: :meth:`decode` returns logits.
    likelihood_options : dict, default=None
        Keyword arguments of the likelihood's class.
    max_log_variance : float or None, default=MAX_POSTERIOR_LOG_VARIANCE
        Smooth upper bound of the posterior's log-variance; None for none (the
        networks of skvae before it, loaded from their files).
    target : None, "continuous" or int, default=None
        A model of a label given the code, :class:`TargetHead` (the submodule
        ``target_head``, built last, so that the other weights are drawn and
        stored as without it): the number of classes of a class label, or
        ``"continuous"`` for a real target. None: no label model.
    missing_inputs : bool, default=False
        An encoder for rows with missing entries, built for training data
        that have them. Its linear path is a product of Gaussian experts:
        each observed feature j adds ``u_j u_j' + diag(lambda_j)`` to the
        posterior's precision matrix, ``Lambda = I + sum_j o_j (u_j u_j' +
        diag(lambda_j))`` (``u_j``: column j of ``encoder_loading.weight``;
        ``lambda_j``: ``exp`` of column j of ``encoder_precision``, so that
        it learns relative steps), and ``a_j (x_j - c_j)``
        (``encoder_linear``, ``encoder_offset``) to its natural mean ``b``.
        The linear path's mean is ``Lambda^-1 b`` (a k x k Cholesky solve per
        row) and its variances ``1 / diag(Lambda)``, those of the best
        diagonal Gaussian: the posterior narrows with every entry observed,
        a missing entry contributes nothing, whatever the pattern of holes
        (a complete row included), and, started from a linear Gaussian model
        (:meth:`init_linear_gaussian`), the mean is that model's exact
        posterior mean for every pattern. A loading of zero has no gradient
        and stays zero: from random weights (``init="random"``) the experts
        stay diagonal. The MLP residual also sees the mask (its first layer
        takes ``2 * n_features`` inputs) and corrects mean and log-variance.
        A module without it encodes a row with missing entries from its
        values alone, 0 (the training mean, in standardized units) in their
        place.

    Notes
    -----
    Missing entries: :meth:`encode` and :meth:`log_likelihood` take
    ``observed``, a boolean mask of the entries present (None: all), with a
    finite placeholder in ``x`` where it is False (:func:`split_missing`). The
    likelihood of a row is that of its observed entries.
    """

    def __init__(self, n_features, n_components, hidden_layer_sizes=(), activation="relu",
                 likelihood="gaussian", likelihood_options=None,
                 max_log_variance=MAX_POSTERIOR_LOG_VARIANCE, missing_inputs=False,
                 target=None):
        super().__init__()
        self.max_log_variance = max_log_variance
        self.missing_inputs = bool(missing_inputs)
        self.n_features = n_features
        self.n_components = n_components
        self.likelihood = likelihood
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        sizes = (n_features * (2 if missing_inputs else 1), *hidden_layer_sizes)
        self.encoder = _mlp(sizes, activation)
        # one head for mean and log-variance: a single matmul instead of two
        self.encoder_head = nn.Linear(sizes[-1], 2 * n_components)
        decoder_sizes = (n_components, *reversed(hidden_layer_sizes))
        self.decoder = _mlp(decoder_sizes, activation)
        self.decoder_head = nn.Linear(decoder_sizes[-1], n_features)
        # the likelihood before the linear paths: the parameters of a model saved
        # in format 1 (which had no linear paths) keep their positions
        self.observation = observation_model(likelihood)(n_features,
                                                         **(likelihood_options or {}))
        self.encoder_linear = nn.Linear(n_features, n_components, bias=False)
        if self.missing_inputs:
            self.encoder_precision = nn.Parameter(torch.empty(n_components, n_features))
            self.encoder_offset = nn.Parameter(torch.empty(n_features))
        self.decoder_linear = nn.Linear(n_components, n_features, bias=False)
        self.register_buffer("input_low", torch.full((n_features,), -math.inf))
        self.register_buffer("input_high", torch.full((n_features,), math.inf))
        if self.missing_inputs:
            # the last child, so that the parameters of a network saved before it
            # (format 6) keep their positions in the optimizer's state; its weight
            # (n_components, n_features) holds the experts' loadings u_j
            self.encoder_loading = nn.Linear(n_features, n_components, bias=False)
        # after every other child: a supervised network's other weights are drawn
        # from the generator, and ordered in its state, as an unsupervised one's
        self.target = target
        if target is not None:
            self.target_head = TargetHead(n_components, target)

    def reset_parameters(self, generator=None):
        """Initialise every weight from ``generator`` (PyTorch's default scheme).

        Uses the Kaiming-uniform scheme of :class:`torch.nn.Linear`, but draws from
        the given generator instead of the global one; the linear paths start at
        zero and the Gaussian variance at 1 (the standardized data's variance).
        """
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        with torch.no_grad():
            self.encoder_linear.weight.zero_()
            if self.missing_inputs:  # no expert yet: the MLP residual does the work
                self.encoder_precision.fill_(_EMPTY_LOG_PRECISION)
                self.encoder_loading.weight.zero_()
                self.encoder_offset.zero_()
            self.decoder_linear.weight.zero_()
            self.input_low.fill_(-math.inf)
            self.input_high.fill_(math.inf)
            if self.target is not None:
                self.target_head.reset_parameters()
        self.observation.reset_parameters()
        return self

    def lr_factors(self):
        """Parameters with a step size of their own: full name -> multiple of the rate.

        The likelihood's ``lr_factors`` (the Gaussian variances), under the
        names ``named_parameters`` gives them. The optimizer policy built on
        them (the groups and their step sizes) lives in the training home:
        :func:`skvae._training.parameter_groups`.
        """
        return {f"observation.{name}": factor
                for name, factor in self.observation.lr_factors.items()}

    @property
    def widest_layer(self):
        """Values per row of the network's widest activation.

        The largest of the input (and the decoder's output), the encoder
        head's means and log-variances, and the hidden layers: what sizes the
        batches of inference and of the other passes over all rows.
        """
        return max(self.n_features * (2 if self.missing_inputs else 1), 2 * self.n_components,
                   *self.hidden_layer_sizes)

    def set_input_range(self, low, high):
        """Clip the encoder's input to ``[low, high]`` per feature (model units).

        Parameters
        ----------
        low, high : array-like of shape (n_features,)
            Smallest and largest value of each feature in the training rows.
        """
        with torch.no_grad():
            self.input_low.copy_(torch.as_tensor(np.asarray(low, dtype=np.float64)))
            self.input_high.copy_(torch.as_tensor(np.asarray(high, dtype=np.float64)))
        return self

    def init_linear_gaussian(self, weights, noise_variance, offset):
        """Make the module the linear Gaussian model ``x = W z + offset + noise``.

        The decoder becomes ``z @ W.T + offset`` and the encoder the model's
        exact posterior, so the ELBO's expectation and the importance-weighted
        bound equal the linear model's log-likelihood. The latent axes are
        rotated (which leaves the model unchanged) so that the posterior
        covariance is diagonal, as the encoder's is (with ``missing_inputs``
        the experts get precisions ``W_jd**2 / psi_j`` and loadings
        ``W_jd / psi_j``: the exact posterior of a complete row, its diagonal
        for a row with holes), and each axis gets the sign that makes its
        largest loading in W positive (the convention of scikit-learn's
        ``svd_flip``), so that the solvers of one model (a sparse X and its
        dense copy take different routes) give the same module. The last
        layers of the nonlinear residuals are zeroed: their hidden layers
        keep the random weights of :meth:`reset_parameters` and start
        learning once the heads move.

        Parameters
        ----------
        weights : ndarray of shape (n_features, n_components)
            Loadings W in the model's (standardized) units, e.g.
            ``PCA.components_.T * sqrt(explained_variance_ - noise_variance_)``
            or ``FactorAnalysis.components_.T``.
        noise_variance : ndarray of shape (n_features,)
            Diagonal noise covariance Psi (floored at the likelihood's
            ``variance_floor``).
        offset : ndarray of shape (n_features,)
            Mean of x.
        """
        if not self.observation.supports_linear_start:
            raise ValueError(
                "init_linear_gaussian needs a likelihood with a linear Gaussian start "
                f"(likelihood='gaussian'), got likelihood={self.likelihood!r}.")
        W = np.asarray(weights, dtype=np.float64)
        psi = np.maximum(np.asarray(noise_variance, dtype=np.float64),
                         self.observation.variance_floor.double().cpu().numpy())
        Wp = W / psi[:, None]                         # Psi^-1 W
        lam, rotation = np.linalg.eigh(W.T @ Wp)      # W^T Psi^-1 W = R diag(lam) R^T
        lam = np.maximum(lam, 0.0)
        # one sign per latent axis, whatever solver gave W (scikit-learn's svd_flip
        # convention): the largest loading of each column of W R is positive, so a
        # sparse X and its dense copy, whose solvers differ, start from the same model
        WR = W @ rotation
        rotation = rotation * np.where(WR[np.abs(WR).argmax(axis=0), np.arange(len(lam))] < 0,
                                       -1.0, 1.0)
        W, Wp = W @ rotation, Wp @ rotation
        post_var = 1.0 / (1.0 + lam)                  # diagonal in the rotated axes
        encoder = Wp * post_var                       # (d, k): mu = (x - offset) @ encoder
        k = self.n_components

        def put(tensor, value):
            tensor.copy_(torch.as_tensor(value, dtype=torch.float64))

        with torch.no_grad():
            self.encoder_head.weight.zero_()
            if self.missing_inputs:
                # the experts: precision W_j W_j' / psi_j, natural mean Wp_j (x_j - offset_j)
                put(self.encoder_linear.weight, Wp.T)
                put(self.encoder_loading.weight, (W / np.sqrt(psi)[:, None]).T)
                self.encoder_precision.fill_(_EMPTY_LOG_PRECISION)
                put(self.encoder_offset, offset)
                self.encoder_head.bias.zero_()
            else:
                put(self.encoder_linear.weight, encoder.T)
                put(self.encoder_head.bias[:k], -np.asarray(offset, dtype=np.float64) @ encoder)
                put(self.encoder_head.bias[k:], _unbounded_log_variance(
                    np.log(post_var), self.max_log_variance))
            put(self.decoder_linear.weight, W)
            self.decoder_head.weight.zero_()
            put(self.decoder_head.bias, offset)
            self.observation.set_variance(torch.as_tensor(psi))
        return self

    def encode(self, x, observed=None):
        """Posterior parameters ``(mu, logvar)``, each of shape ``(n, n_components)``.

        ``observed``: boolean mask of the entries present, None for all; ``x``
        holds 0 where it is False (see :func:`split_missing`). A row with no
        entry observed gets the prior, ``(0, 0)``: its exact posterior.
        """
        x = torch.clamp(x, self.input_low, self.input_high)
        if self.missing_inputs:
            mask = (torch.ones_like(x) if observed is None else observed.to(x.dtype))
            mu, raw = self.encoder_head(self.encoder(torch.cat([x, mask], dim=-1))).chunk(2, -1)
            # the product of experts of the observed features (see the class)
            precision = self.expert_precision(mask)
            natural = self.encoder_linear((x - self.encoder_offset) * mask)
            root, _ = torch.linalg.cholesky_ex(precision)  # Lambda >= I: no failure to check
            mu = mu + torch.cholesky_solve(natural.unsqueeze(-1), root)[..., 0]
            diagonal = torch.diagonal(precision, dim1=-2, dim2=-1)
            logvar = _soft_cap(raw - torch.log(diagonal), self.max_log_variance)
        else:
            mu, raw = self.encoder_head(self.encoder(x)).chunk(2, dim=-1)
            mu = mu + self.encoder_linear(x)
            logvar = _bounded_log_variance(raw, self.max_log_variance)
        if observed is not None:
            # a row with nothing observed has the prior as its exact posterior
            # (code 0, ELBO 0): no encoder output stands in for it
            empty = ~observed.any(dim=-1, keepdim=True)
            mu, logvar = mu.masked_fill(empty, 0.0), logvar.masked_fill(empty, 0.0)
        return mu, logvar

    def expert_precision(self, mask):
        """The linear path's posterior precision for rows observed where ``mask`` is 1.

        ``Lambda = I + sum_j o_j (u_j u_j' + diag(lambda_j))`` (see the class),
        of shape ``mask.shape[:-1] + (n_components, n_components)``; at least
        the identity, so its Cholesky factor always exists. Only for a module
        with ``missing_inputs``.
        """
        loading = self.encoder_loading.weight                                 # (k, d)
        precision = (loading * mask.unsqueeze(-2)) @ loading.T                # (..., k, k)
        diagonal = 1.0 + mask @ torch.exp(self.encoder_precision).T           # (..., k)
        return precision + torch.diag_embed(diagonal)

    def constant_features(self):
        """The features that decode to a constant, and their values.

        The one statement of the rule, read by :meth:`decode` and by the ONNX
        decoder of :mod:`skvae.onnx`: with a likelihood whose
        ``pins_constant_features`` is true, a feature that was constant in the
        training rows (``input_low == input_high``, see
        :meth:`set_input_range`) decodes to that constant, whatever z.

        Returns
        -------
        pinned : tuple of (Tensor, Tensor) or None
            ``(mask, values)``, each of shape ``(n_features,)``: True for a
            constant feature, and the value it decodes to (model units) where
            ``mask`` is True. None when the likelihood decodes every feature
            freely.
        """
        if not self.observation.pins_constant_features:
            return None
        return self.input_low == self.input_high, self.input_low

    def decode(self, z):
        """Decoder output: Gaussian means or Bernoulli logits, shape ``(..., n_features)``."""
        out = self.decoder_head(self.decoder(z)) + self.decoder_linear(z)
        pinned = self.constant_features()
        if pinned is not None:
            constant, value = pinned
            out = torch.where(constant, value, out)
        return out

    def log_likelihood(self, x, z, observed=None):
        """log p(x | z) summed over the (observed) features, broadcasting ``z``'s leading axes."""
        return self.observation.log_prob(x, self.decode(z), observed)

    def decoder_mean(self, z):
        """The mean of p(x | z) in the model's (standardized) units."""
        return self.observation.mean(self.decode(z))

    def forward(self, x):
        """Posterior means: what ``transform`` returns."""
        return self.encode(x)[0]


class TargetHead(nn.Module):
    """p(y | z): a model of a label given the code, for supervised training.

    A linear map of the code, so that the classes (or the target's level) must
    be told apart by a linear function of the code: codes that separate the
    classes for a linear classifier, and for k-nearest neighbours. For class
    labels it gives the logits of a softmax over the classes; for a continuous
    target (standardized) the mean of a Gaussian, with one learned
    log-variance.

    Parameters
    ----------
    n_components : int
        Latent dimensions.
    target : int or "continuous"
        The number of classes (at least 2), or ``"continuous"``.
    """

    def __init__(self, n_components, target):
        super().__init__()
        self.continuous = target == "continuous"
        self.linear = nn.Linear(n_components, 1 if self.continuous else int(target))
        if self.continuous:
            self.log_variance = nn.Parameter(torch.zeros(()))

    def reset_parameters(self):
        """Start from the label's marginal: zero weights and bias, unit variance.

        Draws nothing: the head starts where it knows nothing of the code.
        """
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            if self.continuous:
                self.log_variance.zero_()
        return self

    def log_prob(self, z, y):
        """``(log p(y | z), -H(p(. | z)), labelled)`` per row.

        Parameters
        ----------
        z : Tensor of shape (n, n_components)
        y : Tensor of shape (n,)
            Class indices (as floats) or standardized targets; NaN where the
            row has no label.

        Returns
        -------
        log_prob : Tensor of shape (n,)
            In nats; 0 for the rows without a label.
        negative_entropy : Tensor of shape (n,)
            ``sum_c p(c | z) log p(c | z)`` of class labels, in nats (at most
            0, 0 when the head is sure); 0 for a continuous target.
        labelled : BoolTensor of shape (n,)
        """
        labelled = ~torch.isnan(y)
        out = self.linear(z)
        if self.continuous:
            residual = torch.where(labelled, y, out[:, 0]) - out[:, 0]
            value = -0.5 * (_LOG_2PI + self.log_variance
                            + residual.square() * torch.exp(-self.log_variance))
            negative_entropy = torch.zeros_like(value)
        else:
            log_p = torch.log_softmax(out, dim=1)
            index = torch.where(labelled, y, 0.0).long()
            value = log_p.gather(1, index.unsqueeze(1))[:, 0]
            negative_entropy = (log_p.exp() * log_p).sum(1)
        return torch.where(labelled, value, 0.0), negative_entropy, labelled
