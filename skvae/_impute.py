"""The imputer: ``VAEImputer``, missing values filled by a VAE of the observed entries.

The VAE (:class:`~skvae.VAETransformer`) is fitted to the observed entries only:
the likelihood of a row is that of its observed features. A missing entry is
filled with its conditional mean given the row's observed entries, estimated by
self-normalised importance sampling (Mattei & Frellsen, "MIWAE", ICML 2019):
with ``z_k ~ r(z)`` and weights ``w_k`` proportional to
``p(x_obs | z_k) p(z_k) / r(z_k)``, ``E[x_mis | x_obs] ~ sum_k w_k E[x_mis | z_k]``.
The proposal ``r`` mixes the encoder's posterior and, for the Gaussian
likelihood, the full-covariance posterior of the decoder's linear part, both
widened, with the prior, each Gaussian's draws in antithetic pairs; a second
round adapts to the first's weighted draws. With ``sample_posterior=True``
one ``z_k`` is drawn by those weights (sampling importance resampling) and the
missing entries from ``p(x_mis | z_k)``: a draw from the posterior predictive,
for multiple imputation.
"""

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.impute import MissingIndicator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (_check_feature_names, _check_n_features, check_is_fitted,
                                      validate_data)

from ._columns import decode, resolve_columns
from ._data import observed_counts_and_sums, row_blocks
from ._losses import MAX_IMPORTANCE_SAMPLES, standard_normal_log_density
from ._module import split_missing
from ._training import RandomStreams
from ._utils import make_generator, make_seed
from ._vae import VAETransformer

#: The importance sampler's proposal is the encoder's posterior with its
#: standard deviations this many times wider. An encoder trained on the ELBO
#: is narrower than the posterior it approximates, and a narrow proposal gives
#: a few draws all the weight. Measured on breast cancer with half its entries
#: missing (3 masks and models): the imputations of 100 draws from the
#: widened proposal are as good as those of 1,000 from the encoder's own
#: (MSE 0.278 and 0.266 against 0.283 and 0.264; 2x is too wide).
PROPOSAL_WIDTH = 1.5

#: Share of the importance samples drawn from the prior instead (defensive
#: importance sampling, Hesterberg 1995): the weights of a mixture with the
#: prior are bounded, so a row whose encoder output is far off (a pattern of
#: holes unlike the training rows') still gets its conditional mean. With a
#: linear decoder (where it has a closed form) and 4,000 draws, the largest
#: error of 20 rows with holes fell from 1.55 to 0.12; on breast cancer
#: (half missing, 100 draws) the MSE moved by -0.001 and +0.002.
PRIOR_SHARE = 0.1

#: Draws per round of adaptive importance sampling, at least: with
#: ``n_importance_samples`` of twice this or more, half the draws come from a
#: second proposal fitted to the weighted first half (:meth:`_Proposal.fit`).
#: With a linear decoder, where the conditional mean has a closed form, the
#: largest error of 20 rows with holes fell from 0.156 to 0.066 (4,000 draws);
#: on breast cancer (half missing, 100 draws, 2 masks) the MSE went from
#: 0.279 and 0.265 to 0.275 and 0.266, and with 200 from 0.275 and 0.261 to
#: 0.274 and 0.249.
MIN_ROUND_DRAWS = 4
#: Smallest standard deviation of an adapted proposal (latent units).
MIN_PROPOSAL_STD = 1e-3

#: Default ``n_importance_samples``. The imputations of 100 draws were those of
#: a noisy estimate: on the 9 data sets of benchmarks/bench_imputation.py (3
#: masks and models each, MCAR 20 and 50 %), 1,000 antithetic draws lowered the
#: error of 16 of the 18 rows, by up to 14 % (the Gaussian mixture at 20 %:
#: 0.0367 -> 0.0316). 300 draws reached most of that with 8 latent dimensions,
#: but not with the 16 of ``n_components="auto"`` on wide tables, where a
#: proposal covers the posterior less well: digits at 20 % MCAR 0.339 with 300,
#: 0.334 with 600, 0.329 with 1,000 and 2,000 (seeds 0-2: 0.350 / 0.271 / 0.396
#: -> 0.340 / 0.260 / 0.386), and at 50 % 0.455 -> 0.444; the Gaussian mixture
#: 0.031 / 0.125 -> 0.029 / 0.123, breast cancer 0.138 / 0.247 -> 0.137 / 0.244.
#: No row of the 27 rose by more than 0.001. Filling costs 3.3x as long (digits:
#: 1.1 -> 3.7 s; a fit and fill 9.5 -> 12.2 s).
DEFAULT_IMPORTANCE_SAMPLES = 1000

#: ``n_components="auto"``: half the modelled features, within these bounds
#: (all of them when there are fewer than the lower one). A fill is as good as
#: the model's rank lets it be, and wide tables need more than 8 dimensions: on
#: benchmarks/bench_imputation.py (3 masks and models, MCAR 20 / 50 %), breast
#: cancer (30 features) imputes 0.184 / 0.247 with 8 and 0.140 / 0.245 with 15,
#: where IterativeImputer, which regresses each feature on all the others,
#: gives 0.170 / 0.322; digits (64) 0.354 / 0.478 with 8 and 0.346 / 0.458
#: with 16. 32 on digits fits 3-4x slower for 0.338 / 0.487. The tables of 8 to
#: 17 features keep 8 (wine, 13 features, seed 0: 0.633 with 13, 0.570 with 8);
#: linear Gaussian data (20) and the S-curve (30) move by under 1 %.
AUTO_COMPONENTS = (8, 16)

#: The parameters of VAETransformer that are the imputer's too (all but
#: ``warm_start``: every ``fit`` of an imputer trains a new model).
_VAE_PARAMS = (
    "n_components", "hidden_layer_sizes", "activation", "likelihood", "init", "target_weight",
    "beta",
    "kl_warmup_epochs", "max_epochs", "batch_size", "learning_rate", "early_stopping",
    "validation_fraction", "n_iter_no_change", "tol", "device", "n_threads", "callbacks",
    "verbose", "random_state",
)


class _Gaussian:
    """A Gaussian over z per row: ``mu`` (n, 1, k) and a diagonal ``std`` (n, 1, k)
    or a lower-triangular ``tril`` (n, 1, k, k), the square root of its covariance."""

    def __init__(self, mu, std=None, tril=None):
        self.mu, self.std, self.tril = mu, std, tril

    @classmethod
    def fit(cls, z, weights):
        """The diagonal Gaussian of the weighted draws' mean and standard deviations.

        ``z`` of shape (n, K, k) and normalised ``weights`` of shape (n, K):
        adaptive importance sampling, which corrects a proposal that is off
        for a row (a pattern of holes the encoder rarely saw).
        """
        w = weights.unsqueeze(-1)
        mu = (w * z).sum(1, keepdim=True)
        std = (w * (z - mu).square()).sum(1, keepdim=True).sqrt()
        return cls(mu, std=std.clamp_min(MIN_PROPOSAL_STD))

    @classmethod
    def linear_posterior(cls, module, x, observed):
        """The posterior of the decoder's linear Gaussian part given the observed entries.

        ``x = W z + b + noise``, with ``W`` the decoder's linear path, ``b``
        the decoder's output at ``z = 0`` and the likelihood's variances:
        ``N(m, S)`` with ``S^-1 = I + W' diag(o / psi) W``, exact where the
        decoder is linear (the linear start), and with the correlations
        between latent dimensions that a diagonal encoder lacks.
        """
        W = module.decoder_linear.weight                                       # (d, k)
        k = W.shape[1]
        b = module.decode(torch.zeros(1, k, dtype=x.dtype, device=x.device))[0]
        a = observed.to(x.dtype) * torch.exp(-module.observation.log_variance())  # (n, d)
        precision = torch.eye(k, dtype=x.dtype, device=x.device) + torch.einsum(
            "nd,dk,dl->nkl", a, W, W)
        root = torch.linalg.cholesky(precision)
        mu = torch.cholesky_solve((((x - b) * a) @ W).unsqueeze(-1), root)[..., 0]
        tril = torch.linalg.cholesky(torch.cholesky_inverse(root))
        return cls(mu.unsqueeze(1), tril=tril.unsqueeze(1))

    def sample(self, eps):
        if self.tril is None:
            return self.mu + self.std * eps
        return self.mu + (self.tril @ eps.unsqueeze(-1))[..., 0]

    def log_density(self, z):
        if self.tril is None:
            return (standard_normal_log_density((z - self.mu) / self.std)
                    - torch.log(self.std).sum(-1))
        u = torch.linalg.solve_triangular(self.tril, (z - self.mu).unsqueeze(-1), upper=False)
        return (standard_normal_log_density(u[..., 0])
                - torch.log(torch.diagonal(self.tril, dim1=-2, dim2=-1)).sum(-1))

    def widened(self):
        """The same Gaussian, :data:`PROPOSAL_WIDTH` times wider."""
        if self.tril is None:
            return _Gaussian(self.mu, std=self.std * PROPOSAL_WIDTH)
        return _Gaussian(self.mu, tril=self.tril * PROPOSAL_WIDTH)


class _Proposal:
    """An importance sampler's proposal over z: Gaussians, widened, mixed with the prior.

    The draws are shared evenly among the Gaussians (each
    :data:`PROPOSAL_WIDTH` times wider than given), except a share
    :data:`PRIOR_SHARE` from the prior N(0, I) (defensive importance
    sampling: bounded weights); each draw is weighted against the mixture.
    """

    def __init__(self, *gaussians):
        self.gaussians = [g.widened() for g in gaussians]

    def draws(self, module, x, observed, eps):
        """Draws of z for standard normal ``eps`` (n, K, k), their decoder outputs
        and ``log p(x_obs, z)``, each with K along axis 1."""
        K, C = eps.shape[1], len(self.gaussians)
        n_prior = K - max(C, round((1 - PRIOR_SHARE) * K)) if K > C else 0
        # which component each draw position comes from; C is the prior
        which = torch.cat([torch.arange(C).repeat_interleave(
            torch.tensor([len(part) for part in torch.arange(K - n_prior).chunk(C)])),
            torch.full((n_prior,), C)]).to(x.device)
        self.shares = torch.bincount(which, minlength=C + 1).double().cpu() / K
        z = eps.clone()  # the prior's draws are eps itself
        for c, gaussian in enumerate(self.gaussians):
            chosen = which == c
            z[:, chosen] = gaussian.sample(antithetic(eps[:, chosen]))
        out = module.decode(z)
        log_joint = (module.observation.log_prob(x.unsqueeze(1), out, observed)
                     + standard_normal_log_density(z))
        return z, out, log_joint

    def log_density(self, z):
        """log of the density the draws came from, at ``z`` (n, K, k)."""
        parts = [gaussian.log_density(z) + math.log(share)
                 for gaussian, share in zip(self.gaussians, self.shares[:-1].tolist())
                 if share > 0]
        if self.shares[-1] > 0:
            parts.append(standard_normal_log_density(z) + math.log(float(self.shares[-1])))
        return torch.logsumexp(torch.stack(parts), dim=0)


def antithetic(eps):
    """``eps`` (n, K, k) with each odd draw the negative of the draw before it.

    Antithetic pairs: a Gaussian's draws come in pairs mirrored about its mean,
    so the part of the estimate that is linear in ``z`` has no sampling error
    (the conditional mean of a nearly linear decoder, most of it). Each draw
    is still a draw of the Gaussian, so the importance weights are unchanged.
    With 100 draws on the data of benchmarks/bench_imputation.py it lowered the
    error of 15 of the 18 MCAR rows (linear Gaussian data at 20 %: 0.1291 ->
    0.1277, what 1,000 independent draws give: 0.1275).
    """
    pairs = eps.shape[1] // 2
    out = eps.clone()
    out[:, 1:2 * pairs:2] = -eps[:, 0:2 * pairs:2]
    return out


def resolve_n_components(n_components, n_features):
    """The latent dimension of an imputer's model of ``n_features`` features.

    An int is capped at ``n_features``; "auto" is ``n_features // 2`` within
    :data:`AUTO_COMPONENTS`, and ``n_features`` when that is smaller.
    """
    if n_components == "auto":
        low, high = AUTO_COMPONENTS
        n_components = min(max(n_features // 2, low), high)
    return max(1, min(n_components, n_features))


def _is_nan(value):
    return isinstance(value, Real) and np.isnan(value)


class VAEImputer(TransformerMixin, BaseEstimator):
    """Impute missing values with a variational autoencoder of the observed entries.

    A :class:`~skvae.VAETransformer` is fitted to X with its missing entries
    left out of the likelihood (the exact likelihood of each row's observed
    features under a decoder that factorizes over features). ``transform``
    fills each missing entry with its conditional mean given the row's
    observed entries, estimated by self-normalised importance sampling (as
    MIWAE does), or, with ``sample_posterior=True``, with a draw from the
    posterior predictive distribution. Observed entries are never changed.

    Read more in the :doc:`missing data page </missing_data>` of the docs.

    Parameters
    ----------
    estimator : VAETransformer, default=None
        The model to fit (a clone of it). None: a ``VAETransformer`` built
        from the parameters below, which are ignored when an estimator is
        given (except ``random_state``, which also seeds the imputer's draws).

    missing_values : float or int, default=np.nan
        The placeholder of a missing value; every entry equal to it is
        imputed. ``pandas.NA`` in a DataFrame is NaN once converted.

    sample_posterior : bool, default=False
        False: the importance-weighted conditional mean. True: each call to
        ``transform`` draws the missing entries from the posterior predictive
        p(x_mis | x_obs) (resampled importance samples, then the likelihood),
        so that repeated calls give multiple imputations.

    n_importance_samples : int, default=1000
        Posterior draws per row with a missing entry, in antithetic pairs.
        More gives a better estimate of the conditional mean, at a cost
        linear in it.

    add_indicator : bool, default=False
        Append a :class:`~sklearn.impute.MissingIndicator` of the features
        that had missing values at fit.

    keep_empty_features : bool, default=False
        Keep the features with no observed value at fit in the output, filled
        with 0, as scikit-learn's imputers do; False drops them.

    n_components : int or "auto", default="auto"
        Dimension of the model's latent space. "auto": half the number of
        modelled features, at least 8 and at most 16 (every feature when
        there are fewer than 8); wide tables need more dimensions to fill
        well than narrow ones. An int larger than the number of features is
        reduced to it. The value used is ``estimator_.n_components``.

    hidden_layer_sizes, activation, likelihood, init, target_weight, beta, \
kl_warmup_epochs, max_epochs, batch_size, learning_rate, early_stopping, \
validation_fraction, n_iter_no_change, tol, device, n_threads, callbacks, verbose
        The parameters of :class:`~skvae.VAETransformer`, with its defaults.

    random_state : int, RandomState instance or None, default=None
        Seed of the model (as in ``VAETransformer``) and of the draws of
        ``sample_posterior=True``. With an int, ``fit`` then ``transform``
        calls give the same imputations in every run; the draws of
        successive calls differ.

    Attributes
    ----------
    estimator_ : VAETransformer
        The fitted model, over the features with two observed values or more
        at fit (a feature seen once is filled with that value).

    indicator_ : sklearn.impute.MissingIndicator
        The indicator of ``add_indicator=True``; None otherwise.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.impute.IterativeImputer : Imputes each feature from the others in turn.
    sklearn.impute.KNNImputer : Imputes from the nearest complete neighbours.
    VAETransformer : The model, which itself accepts NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skvae import VAEImputer
    >>> X = load_iris().data
    >>> X_missing = X.copy()
    >>> X_missing[::3, 2] = np.nan
    >>> imputer = VAEImputer(random_state=0).fit(X_missing)
    >>> X_filled = imputer.transform(X_missing)
    >>> bool(np.isnan(X_filled).any())
    False
    >>> bool(np.array_equal(X_filled[1], X_missing[1]))
    True
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit", "transform", "score_samples"])],
        "missing_values": [Real, Integral],
        "sample_posterior": ["boolean"],
        "n_importance_samples": [Interval(Integral, 1, MAX_IMPORTANCE_SAMPLES, closed="both")],
        "add_indicator": ["boolean"],
        "keep_empty_features": ["boolean"],
        **{name: VAETransformer._parameter_constraints[name] for name in _VAE_PARAMS},
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        estimator=None,
        *,
        missing_values=np.nan,
        sample_posterior=False,
        n_importance_samples=DEFAULT_IMPORTANCE_SAMPLES,
        add_indicator=False,
        keep_empty_features=False,
        n_components="auto",
        hidden_layer_sizes=(256, 128),
        activation="relu",
        likelihood="auto",
        init="auto",
        target_weight=0.0,
        beta=1.0,
        kl_warmup_epochs=0,
        max_epochs="auto",
        batch_size=128,
        learning_rate=1e-3,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol="auto",
        device="auto",
        n_threads="auto",
        callbacks=None,
        verbose=0,
        random_state=None,
    ):
        self.estimator = estimator
        self.missing_values = missing_values
        self.sample_posterior = sample_posterior
        self.n_importance_samples = n_importance_samples
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.init = init
        self.target_weight = target_weight
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ input

    def _validate_input(self, X, *, reset):
        nan = _is_nan(self.missing_values)
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                          ensure_all_finite="allow-nan" if nan else True, copy=not nan,
                          ensure_min_samples=2 if reset else 1)
        if not nan:  # the placeholder becomes NaN, in a copy
            X[X == self.missing_values] = np.nan
        return X

    def _make_estimator(self, n_features):
        if self.estimator is not None:
            estimator = clone(self.estimator)
            if getattr(estimator, "random_state", None) is None:
                estimator.set_params(random_state=self.random_state)
            return estimator
        params = {name: getattr(self, name) for name in _VAE_PARAMS}
        params["n_components"] = resolve_n_components(self.n_components, n_features)
        return VAETransformer(**params)

    # -------------------------------------------------------------------- fit

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the VAE to the observed entries of X.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Data with missing values (``missing_values``, NaN by default). A
            DataFrame with categorical columns (text, category, bool; see
            ``likelihood``) is modelled as a mixed table, with NaN, None or
            pd.NA as its holes.

        y : array-like of shape (n_samples,), default=None
            Labels for a supervised model (``target_weight > 0``, see
            :class:`~skvae.VAETransformer`); ignored otherwise.

        Returns
        -------
        self : VAEImputer
            The fitted imputer.
        """
        likelihood = (self.likelihood if self.estimator is None
                      else self.estimator.get_params().get("likelihood", "auto"))
        if isinstance(X, pd.DataFrame) and resolve_columns(X, likelihood)[0] is not None:
            return self._fit_table(X, y)
        self._table = False
        X = self._validate_input(X, reset=True)
        counts, sums = observed_counts_and_sums(X)
        # scikit-learn's rule: a feature without an observed value is "empty";
        # the VAE models the features with two values or more, and one seen
        # once is filled with that value
        self._valid_features = counts >= 1
        self._modelled = counts[self._valid_features] >= 2
        if not self._modelled.any():
            raise ValueError("X has no feature with two observed values or more: there is "
                             "nothing to learn the missing values from.")
        valid = self._valid_features
        self._fill_values = sums[valid] / counts[valid]
        # a copy of X only where features are set aside
        modelled = np.flatnonzero(valid)[self._modelled]
        estimator = self._make_estimator(len(modelled))
        estimator.fit(X if len(modelled) == X.shape[1] else X[:, modelled], y)
        self.indicator_ = (MissingIndicator(missing_values=np.nan, error_on_new=False).fit(X)
                           if self.add_indicator else None)
        self.random_state_ = check_random_state(self.random_state)
        self.estimator_ = estimator
        return self

    def _fit_table(self, X, y=None):
        """Fit to a mixed table (a DataFrame with categorical columns), ``y`` as for :meth:`fit`.

        The VAE models the table itself (its column layout, with holes in any
        column); a column without an observed value is an error of the VAE's.
        """
        if self.missing_values is not None and not _is_nan(self.missing_values) \
                and self.missing_values is not pd.NA:
            raise ValueError(
                "A table with categorical columns marks its holes with NaN, None or "
                f"pd.NA; missing_values={self.missing_values!r} is for numeric arrays.")
        _check_feature_names(self, X, reset=True)
        _check_n_features(self, X, reset=True)
        estimator = self._make_estimator(X.shape[1])
        estimator.fit(X, y)
        self._table = True
        self._valid_features = np.ones(X.shape[1], dtype=bool)
        self.indicator_ = (MissingIndicator(missing_values=1.0, error_on_new=False)
                           .fit(X.isna().to_numpy(dtype=np.float64)) if self.add_indicator
                           else None)
        self.random_state_ = check_random_state(self.random_state)
        self.estimator_ = estimator
        return self

    def _transform_table(self, X):
        """A copy of the table X with its holes filled, each column in its dtype."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError("This VAEImputer was fitted on a DataFrame with categorical "
                             "columns; transform takes such a DataFrame too.")
        _check_feature_names(self, X, reset=False)
        _check_n_features(self, X, reset=False)
        vae = self.estimator_
        encoded = vae._validate_X(X, reset=False)
        out = X.copy()
        holes = np.flatnonzero(np.isnan(encoded).any(axis=1))
        if len(holes):
            filled = decode(vae._columns, self._impute(encoded[holes]))
            missing = X.isna().to_numpy()[holes]
            for j in range(X.shape[1]):
                rows = missing[:, j]
                if rows.any():
                    column = out.columns[j]
                    values = filled.iloc[np.flatnonzero(rows), j]
                    out[column] = out[column].copy()
                    out.iloc[holes[rows], j] = values.to_numpy(dtype=object) \
                        if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy()
        if self.indicator_ is not None:
            flags = self.indicator_.transform(X.isna().to_numpy(dtype=np.float64))
            names = self.indicator_.get_feature_names_out(np.asarray(X.columns, dtype=object))
            out = pd.concat([out, pd.DataFrame(flags, index=X.index, columns=names)], axis=1)
        return out

    # -------------------------------------------------------------- transform

    def transform(self, X):
        """Fill the missing entries of X.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Data with missing values.

        Returns
        -------
        X_filled : ndarray or DataFrame of shape (n_samples, n_features_out)
            For an imputer fitted on a mixed table (a DataFrame with
            categorical columns), a copy of the DataFrame with each hole
            filled in its column's dtype: a categorical hole with its most
            probable category under the importance-weighted posterior
            predictive (a draw with ``sample_posterior=True``), followed by
            the indicator's columns with ``add_indicator``. Otherwise:
            X with its missing entries filled (observed entries unchanged),
            without the features that had no observed value at fit unless
            ``keep_empty_features``, followed by the missing indicator's
            columns with ``add_indicator``.
        """
        check_is_fitted(self)
        if getattr(self, "_table", False):
            return self._transform_table(X)
        X = self._validate_input(X, reset=False)
        valid = self._valid_features
        out = X.copy() if valid.all() else X[:, valid]  # the output, a new array
        modelled = np.flatnonzero(self._modelled)
        every = len(modelled) == out.shape[1]
        fill_values = self._fill_values.astype(out.dtype)
        # a block of rows at a time: the rows with holes, their fills and masks
        # stay the size of a block, not of X
        for rows in row_blocks(out):
            block = out[rows]  # a view: filled in place
            part = block if every else block[:, modelled]
            holes = np.flatnonzero(np.isnan(part).any(axis=1))
            if len(holes):
                values = part[holes]
                part[holes] = np.where(np.isnan(values), self._impute(values), values)
                if not every:
                    block[:, modelled] = part
            # the features seen once at fit
            np.copyto(block, fill_values, where=np.isnan(block))
        if self.keep_empty_features and not valid.all():
            full = np.zeros(X.shape, dtype=out.dtype)
            full[:, valid] = out
            out = full
        if self.indicator_ is not None:
            out = np.hstack([out, self.indicator_.transform(X).astype(out.dtype)])
        return out

    def _impute(self, X):
        """Imputed values (all entries, model means or draws) of rows with holes."""
        vae = self.estimator_
        K = self.n_importance_samples
        noise = RandomStreams(vae._base_seed).scoring_noise(vae.module_.n_components)
        # sample_posterior: a new draw every call, seeded from random_state_
        seed = make_seed(self.random_state_) if self.sample_posterior else None
        generator = None

        def impute(module, x):
            nonlocal generator
            x, observed = split_missing(x)
            if seed is None:
                eps = noise(x, K)
            else:
                if generator is None:
                    generator = make_generator(seed, x.device)
                eps = torch.randn(x.shape[0], K, module.n_components, generator=generator,
                                  dtype=x.dtype, device=x.device)
            mu, logvar = module.encode(x, observed)
            encoder = _Gaussian(mu.unsqueeze(1), std=torch.exp(0.5 * logvar).unsqueeze(1))
            if module.observation.supports_linear_start:
                first = _Proposal(encoder, _Gaussian.linear_posterior(module, x, observed))
            else:
                first = _Proposal(encoder)
            if K < 2 * MIN_ROUND_DRAWS:
                z, out, log_joint = first.draws(module, x, observed, eps)
                log_w = log_joint - first.log_density(z)
            else:  # a second round from the first round's weighted moments
                half = K // 2
                z1, out1, joint1 = first.draws(module, x, observed, eps[:, :half])
                second = _Proposal(_Gaussian.fit(
                    z1, torch.softmax(joint1 - first.log_density(z1), dim=1)))
                z2, out2, joint2 = second.draws(module, x, observed, eps[:, half:])
                z, out = torch.cat([z1, z2], dim=1), torch.cat([out1, out2], dim=1)
                # all draws weighted against the mixture of the two proposals
                # (the balance heuristic of multiple importance sampling)
                log_w = torch.cat([joint1, joint2], dim=1) - torch.logaddexp(
                    first.log_density(z) + math.log(half / K),
                    second.log_density(z) + math.log(1 - half / K))
            weights = torch.softmax(log_w, dim=1)                               # (n, K)
            if seed is None:
                return (weights.unsqueeze(-1) * module.observation.mean(out)).sum(1)
            pick = torch.multinomial(weights, 1, generator=generator)[:, 0]
            chosen = out[torch.arange(len(x), device=x.device), pick]
            return module.observation.sample(chosen, generator=generator)

        # the decoder's output for K draws, its copy and about four temporaries of its
        # size; in float32, the precision the model was trained in (float64
        # doubles the time for digits that the estimate does not have)
        values = vae._inference(X.astype(np.float32), impute, (X.shape[1],),
                                width_factor=6 * K).astype(X.dtype)
        if vae.module_.observation.standardize:
            values *= vae.scale_.astype(X.dtype)
            values += vae.mean_.astype(X.dtype)
        return values

    # --------------------------------------------------------------- contract

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: the imputed ones, then the indicator's.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names; None uses ``feature_names_in_`` or
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        from sklearn.utils.validation import _check_feature_names_in  # noqa: PLC0415

        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        out = names if self.keep_empty_features else names[self._valid_features]
        if self.indicator_ is not None:
            out = np.concatenate([out, self.indicator_.get_feature_names_out(names)])
        return np.asarray(out, dtype=object)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
