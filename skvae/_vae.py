"""The scikit-learn estimator: ``VAETransformer``.

This module holds the scikit-learn contract (parameters, validation, fitted
attributes, persistence). Training has its home in ``_training.py`` (random
streams, budgets, learning-rate groups, the skorch net); the network is in
``_module.py``, the objective in ``_losses.py``, data iteration in ``_data.py`` and
skorch's training loop in ``_net.py``.
"""

import copy
import functools
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                          _fit_context)
from sklearn.utils import check_array
from sklearn.utils._param_validation import (Interval, InvalidParameterError, StrOptions,
                                             validate_params)
from sklearn.utils.validation import (_check_feature_names, _check_n_features, check_is_fitted,
                                      validate_data)

from ._columns import decode, encode, encoded_sources, resolve_columns
from ._data import has_missing, inference_map, observed_counts_and_sums
from ._init import INIT_METHODS
from ._likelihoods import LIKELIHOODS
from ._losses import MAX_IMPORTANCE_SAMPLES, elbo, iwae_bound
from ._module import ACTIVATIONS, split_missing
from ._persistence import export_state, import_state
from ._target import Target, check_target
from ._threads import fit_work, inference_work, limit_threads
from ._training import RandomStreams, TrainingResult, hidden_sizes, observed_log_scale, train
from ._utils import check_device_name, make_generator, make_seed, resolve_device

# the parts of a fitted model that a warm start must keep
_ARCHITECTURE = ("n_components", "hidden_layer_sizes", "activation", "likelihood")


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Variational autoencoder as a scikit-learn transformer.

    Learns a nonlinear latent-variable model of X (Kingma & Welling, 2014): an MLP
    encoder maps each sample to a diagonal Gaussian posterior over
    ``n_components`` latent variables, and a mirrored decoder maps latent codes
    back to the parameters of a Gaussian or Bernoulli likelihood. ``transform``
    returns the posterior means, so the estimator can replace
    :class:`~sklearn.decomposition.PCA` in a pipeline; ``score`` returns the
    average log-likelihood bound per sample, in nats and in the units of X, so
    the two can be compared and tuned on the same number.

    Training runs through `skorch <https://skorch.readthedocs.io>`_ on PyTorch,
    on a GPU when there is one (``device="auto"``).

    Parameters
    ----------
    n_components : int, default=2
        Number of latent dimensions.

    hidden_layer_sizes : int or tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder uses them in reverse
        order. An empty tuple maps data and latent space linearly.

    activation : {"relu", "tanh", "logistic", "elu", "gelu", "identity"}, \
            default="relu"
        Nonlinearity after each hidden layer. ``"identity"`` gives a linear VAE,
        close to probabilistic PCA with one noise variance per feature.

    likelihood : {"auto", "gaussian", "bernoulli", "categorical", "poisson", \
            "negative_binomial"} or dict, default="auto"
        Observation model p(x | z). ``"auto"``: ``"gaussian"`` for a numeric
        array (exactly the former default); for a DataFrame, one likelihood
        per column from its dtype, as ``HistGradientBoostingClassifier(
        categorical_features="from_dtype")`` reads them: category, object,
        string and bool columns are categorical (softmax over the column's
        categories; ``"bernoulli"`` for two categories), numeric columns
        Gaussian. A dict maps column names (or indices) to likelihood names,
        to set count columns (``"poisson"``, ``"negative_binomial"``, with a
        learned dispersion per column) or override a dtype; the other columns
        are resolved as by ``"auto"``. The log-likelihood of a row is the sum
        over its observed cells; a DataFrame with categorical columns comes
        back as such a DataFrame from :meth:`inverse_transform` and
        :meth:`sample`. The choice is ``likelihoods_``. A name alone sets the
        likelihood of every column. ``"gaussian"``: real-valued data, modelled
        after standardization (see ``mean_`` and ``scale_``) with a decoded mean
        and a learned variance per feature, at least ``1e-6`` in standardized
        units and at least the variance of rounding to the feature's
        resolution (``step**2 / 12`` for values recorded in steps of ``step``,
        such as whole pixel intensities, up to the feature's own variance),
        and tails that bound what one value far outside a feature's training
        range costs (a 1e-4 share of a broad component with the data's typical
        variance). ``"bernoulli"``: data in [0, 1] such as pixel intensities;
        other values raise a ``ValueError``. ``"poisson"`` and
        ``"negative_binomial"``: non-negative integer counts, dense or sparse
        (the decoder gives log-means). See :ref:`mixed-tables`.

    target_weight : float, default=0.0
        Opt-in supervised and semi-supervised training, in [0, 1]. At 0, ``y``
        is ignored, as :class:`~sklearn.decomposition.PCA` ignores it: the
        fit is the same with or without ``y``. Above 0, ``fit(X, y)`` and
        ``partial_fit(X, y)`` add to the objective the log-likelihood of each
        labelled row's label given its code, log p(y | z), from a linear
        model of the label on the code (a softmax over the classes for class
        labels, binary or multiclass: ints, bools or strings; a Gaussian for a
        continuous target: a float ``y``, whole numbers included, as a
        regressor reads it). The codes then place the classes (or the target's levels)
        apart, where a linear classifier or nearest neighbours find them.
        Rows without a label are -1 for class labels (scikit-learn's
        semi-supervised convention) or NaN for a continuous target; they
        train the model of X, and, for class labels, the entropy of their
        predicted classes p(y | z) is minimized (their codes move off the
        boundaries between classes). The weight is a share of a fixed scale:
        each labelled row's log p(y | z) counts ``32 * target_weight *
        sqrt(n / n_labelled)`` times next to its ELBO (n training rows,
        n_labelled of them labelled), and each unlabelled row's entropy
        ``8 * target_weight`` times. 0.5 (16 per row when all are labelled)
        is the value to start from: it shapes the codes by the labels and
        leaves the held-out ``score`` within a few percent of the
        unsupervised one. 1 is twice that. Early stopping holds out rows
        without a label first, so that every label trains, and watches their
        ELBO (with the label's term for held-out rows that have one).
        ``transform`` still encodes X alone, and ``score`` is still
        log p(x). See :ref:`supervision`.

    init : {"auto", "pca", "factor_analysis", "random"}, default="auto"
        Where training starts. The network has a linear path beside each MLP,
        so it can hold a linear Gaussian model exactly: ``"pca"`` starts from
        probabilistic PCA and ``"factor_analysis"`` from factor analysis,
        fitted to (at most 10,000 of) the training rows; ``"auto"`` fits both
        (factor analysis up to 1,000 features) and starts from the one with the
        higher likelihood on the held-out rows. Training then learns the
        nonlinear part, and with early stopping the start competes for the
        weights kept, so the fit is at least as good as the linear model on the
        held-out rows. With missing values in X each model is fitted by EM to
        the observed entries and is also tried refined under an ARD prior,
        which sets the components the data do not support to 0 (see the
        missing-data page). A model whose solver fails on the data (e.g.
        ARPACK's on sparse rows, then tried by a randomized SVD) or is not
        finite is left out, and with none left training starts from random
        weights, with a warning; no solver's error stops the fit.
        ``"random"``: PyTorch's default random weights, linear paths at zero.
        The linear starts need ``likelihood="gaussian"``; ``"auto"`` means
        ``"random"`` for the Bernoulli likelihood.

    beta : float, default=1.0
        Weight of the KL term in the training objective (beta-VAE). ``score``
        always uses the true bound (weight 1).

    kl_warmup_epochs : int, default=0
        Epochs over which the KL weight rises linearly from 0 to ``beta``.
        0 means no warm-up. Early stopping starts watching the held-out loss
        when the warm-up is over.

    max_epochs : int or "auto", default="auto"
        Passes over the training data. ``"auto"``: enough epochs for
        2,000 optimizer steps (4,000 when X has missing entries), and at
        least 60 (an epoch is two steps on 150 rows, 469 on 60,000),
        resolved at fit as ``max_epochs_``. Early stopping usually ends the
        fit first.

    batch_size : int, default=128
        Mini-batch size.

    learning_rate : float, default=1e-3
        Step size of the Adam optimizer. The Gaussian likelihood's per-feature
        variances learn at 5 times this rate: they must shrink by orders of
        magnitude as the decoder fits low-noise data.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of X and stop when the held-out loss
        has not improved for ``n_iter_no_change`` epochs, then restore the
        weights of the best epoch. The held-out loss uses the full ``beta``;
        epochs of the KL warm-up neither count towards the patience nor
        compete for the best weights. The weights validated and kept are a
        moving average of those training visits (Polyak averaging, over about
        the last tenth of the steps and at most the last 100), which hold out
        better than the last weights of a noisy optimizer. Without early
        stopping, and in ``partial_fit``, the weights are those trained.

    validation_fraction : float, default=0.1
        Share of X held out when ``early_stopping=True``.

    n_iter_no_change : int or "auto", default="auto"
        Patience of early stopping, in epochs. ``"auto"``: 500 optimizer
        steps, at least 20 epochs, so that small data sets (a few steps per
        epoch) are not stopped by the noise of their first epochs, and, once
        an epoch has improved on the weights training started from, at most
        40 epochs, so that they do not wait hundreds of passes over the same
        rows either; twice both (1,000 steps, at most 80 epochs) when X has
        missing entries. Resolved at fit as ``n_iter_no_change_`` (the
        bounded value).

    tol : float or "auto", default="auto"
        Tolerance of early stopping, in nats per sample (the units of
        ``score``), in the spirit of ``tol`` in
        :class:`~sklearn.neural_network.MLPClassifier`: training stops when
        the best held-out loss has not fallen by more than ``tol`` in
        ``n_iter_no_change`` epochs (counted from the last epoch that took it
        ``tol`` lower, or that first beat the starting weights). The weights
        kept are those of the best epoch, whatever its lead. 0: any
        improvement restarts the patience. ``"auto"``: 0.1, and 0 when X has
        missing entries. On small tables the held-out loss creeps down by
        hundredths of a nat per epoch for hundreds of epochs (iris: 360
        epochs with 0, about 100 with 0.1, for 0.1 nats of ``score``).
        Resolved at fit as ``tol_``.

    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.

    n_threads : int or "auto", default="auto"
        CPU threads of ``fit``, ``partial_fit`` and inference (``transform``,
        ``score_samples``, ``inverse_transform``, ``sample``), set for the
        duration of each call in the calling thread only (OpenMP's limit, with
        ``threadpoolctl``; PyTorch's process-wide count is never changed).
        ``"auto"``: one thread per 2**26 multiply-adds of an optimizer step
        (of an inference batch), at least 1 and at most the threads the caller
        has (``torch.get_num_threads()``): small models train on one thread,
        and concurrent fits (``n_jobs`` of a search, threads or processes) do
        not fight over the cores. An int forces that many threads. Ignored on
        a GPU. See :ref:`threads`.

    callbacks : list of skorch callbacks, default=None
        Extra :mod:`skorch.callbacks` (instances or ``(name, callback)`` pairs),
        run after skvae's own. Each ``fit`` uses fresh copies.

    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted weights (and optimizer
        state) instead of starting afresh.

    verbose : int, default=0
        0 prints nothing; 1 prints a table with one row per epoch, whose
        ``train_loss`` and ``valid_loss`` are those of ``history_`` (in the
        units of ``-score``); 2 also shows a progress bar of each epoch's
        training batches when standard error is a terminal (or in a notebook),
        none in a log file. Colours mark the best losses on a terminal only.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, the validation split, the
        reparameterisation noise and :meth:`sample`. With an int, two fits on
        the CPU give identical results. NumPy's and PyTorch's global random
        states are never used or changed.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (a ``skvae._module.VAEModule``).

    history_ : skorch.History
        One entry per epoch with ``train_loss`` and, with early stopping,
        ``valid_loss`` (mean negative ELBO per sample, in nats, in the units of
        X, like ``-score``: ``valid_loss`` of the kept epoch is ``-score`` of
        the held-out rows as float32),
        ``kl_weight`` and ``dur`` (seconds). ``history_[:, "train_loss"]``
        gives the training curve. ``train_loss`` weights the KL term by the
        epoch's KL weight and averages over the epoch's mini-batches. With
        ``target_weight > 0`` both losses also hold the (weighted) terms of
        the labels: ``train_loss`` those of the training rows,
        ``valid_loss`` the label term of the held-out rows that have one.

    n_epochs_ : int
        Epochs trained, counted across ``partial_fit`` and warm-started fits.

    max_epochs_ : int
        The last call's budget in epochs: ``max_epochs`` resolved (``"auto"``
        is 2,000 optimizer steps, 4,000 for rows with missing entries, at
        least 60 epochs, for the training rows of that call), 1 after
        ``partial_fit``.

    n_iter_no_change_ : int
        The patience of early stopping in epochs: ``n_iter_no_change``
        resolved for the last call's training rows (used only with
        ``early_stopping``; ``partial_fit`` holds no rows out).

    tol_ : float
        The improvement that counts for early stopping, in nats per sample:
        ``tol`` resolved for the last call's training rows.

    n_components_ : int
        Number of latent dimensions (the columns of :meth:`transform`), as in
        :class:`~sklearn.decomposition.PCA`.

    latent_kl_ : ndarray of shape (`n_components_`,)
        How much the model uses each latent dimension: the mean over the
        training rows of the last ``fit`` (or ``partial_fit`` call) of
        KL(q(z_j | x) || N(0, 1)), in nats, in the column order of
        :meth:`transform`. A dimension the model does not use ("posterior
        collapse") has a value near 0. This is the counterpart of PCA's
        ``explained_variance_ratio_`` for choosing ``n_components``:
        ``np.sort(latent_kl_)[::-1]`` orders the dimensions like PCA's
        components.

    mean_ : ndarray of shape (`n_features_in_`,)
        Per-feature mean subtracted before modelling (zeros for
        ``likelihood="bernoulli"``, whose data are modelled as given).

    scale_ : ndarray of shape (`n_features_in_`,)
        Per-feature standard deviation divided out before modelling. Constant
        features get the root-mean-square deviation of the others, so that
        ``score`` follows a change of units exactly; 1 for
        ``likelihood="bernoulli"``.

    likelihoods_ : dict
        The likelihood of each column, by feature name (or index): the
        ``likelihood`` parameter resolved.

    target_type_ : {"binary", "multiclass", "continuous"} or None
        The label the model was trained to predict from the code:
        ``"continuous"`` for a float ``y``, otherwise what
        :func:`~sklearn.utils.multiclass.type_of_target` saw; None for a model
        fitted with ``target_weight=0``.

    classes_ : ndarray of shape (n_classes,)
        The class labels (with class labels as the target only).

    init_ : {"pca", "factor_analysis"} or None
        The linear model training started from (see ``init``); None when the
        first fit started from random weights: ``init="random"``, or no linear
        model could be fitted to the data (a ``UserWarning`` then says why).

    device_ : str
        The device the model was trained on.

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.decomposition.PCA : Linear projection with a Gaussian likelihood
        (``PCA.score`` is in the same units as ``VAETransformer.score``).
    sklearn.decomposition.FactorAnalysis : Linear Gaussian latent-variable model
        with one noise variance per feature.

    Notes
    -----
    The training objective is the evidence lower bound (ELBO)
    ``E_q[log p(x | z)] - beta * KL(q(z | x) || p(z))`` with one
    reparameterised draw per sample and the analytic KL term. ``score_samples``
    returns the ELBO (beta = 1), or the importance-weighted bound of Burda et
    al. (2016) with ``n_importance_samples`` > 1. Both use noise derived from
    each sample's values, so they are deterministic and a sample's value does
    not depend on the other samples in the call.

    Three guards keep a held-out row that looks like no training row from
    scoring catastrophically (PCA's shared noise variance gives it the same
    robustness): the encoder sees each feature clipped to the range it took
    in the training rows; the posterior log-variance is bounded above by 2;
    and a Gaussian feature that was constant in training decodes to that
    constant, so another value there costs the bounded price of the
    likelihood's broad component.

    Inference runs in the precision of the input: float64 X is scored and
    transformed in float64 (the same for any batching up to float64 rounding),
    float32 X in float32 (faster). Training always runs in float32.

    References
    ----------
    Kingma, D. P. and Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.

    Burda, Y., Grosse, R. and Salakhutdinov, R. (2016). Importance Weighted
    Autoencoders. ICLR.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skvae import VAETransformer
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = VAETransformer(n_components=2, max_epochs=2, random_state=0)
    >>> vae.fit_transform(X).shape
    (1797, 2)
    >>> vae.inverse_transform(vae.transform(X[:5])).shape
    (5, 64)
    >>> vae.score_samples(X[:5], n_importance_samples=10).shape
    (5,)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "likelihood": [StrOptions(set(LIKELIHOODS) | {"auto"}), dict],
        "init": [StrOptions(set(INIT_METHODS))],
        "target_weight": [Interval(Real, 0, 1, closed="both")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             StrOptions({"auto"})],
        "tol": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "device": [str],
        "n_threads": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "callbacks": [list, None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_components=2,
        *,
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
        warm_start=False,
        verbose=0,
        random_state=None,
    ):
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
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model to X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse matrices are densified one batch at a time.

        y : array-like of shape (n_samples,), default=None
            Ignored when ``target_weight=0``. Otherwise the labels: class
            labels (-1 for a row without one) or a continuous target (NaN for
            a row without one); at least one row needs a label.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, epochs=self.max_epochs, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train for one epoch on X, initialising the model on the first call.

        Use it for data that arrive in chunks (out-of-core training) or to
        control training epoch by epoch (e.g. pruning in a hyperparameter
        search). No data are held out: ``early_stopping`` does not apply.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,), default=None
            Ignored (and not validated) when ``target_weight=0``. Otherwise the
            labels, as for :meth:`fit`. The first call fixes the classes (or
            the continuous target's standardization); a later call's chunk may
            have no labelled row, and then trains the model of X only.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, epochs=1, incremental=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit the model to X and return the posterior means of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,), default=None
            The labels, as for :meth:`fit` (ignored when ``target_weight=0``).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Posterior means (the latent codes) of X, from X alone.
        """
        return self.fit(X, y).transform(X)

    def _fit(self, X, y, *, epochs, incremental):
        # All or nothing: a failure anywhere restores the estimator as it was
        # (unfitted, or fitted with its previous attributes and weights).
        saved = dict(self.__dict__)
        try:
            work = fit_work(X, self.n_components, self.hidden_layer_sizes, self.batch_size)
            with torch.inference_mode(False), torch.enable_grad(), \
                    limit_threads(self.n_threads, work, self.device):
                self._fit_unchecked(X, y, epochs=epochs, incremental=incremental)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return self

    def _fit_unchecked(self, X, y, *, epochs, incremental):
        self._check_remaining_params()
        fitted = self.__sklearn_is_fitted__()
        resume = fitted and (incremental or self.warm_start)
        if resume:
            self._check_same_architecture()
        X = self._validate_X(X, reset=not resume)
        if not resume:
            _check_observed_features(X, getattr(self, "feature_names_in_", None)
                                     if self._columns is None else encoded_sources(self._columns))
        if not resume and self.n_components > X.shape[1]:
            raise ValueError(
                f"n_components={self.n_components} must be at most n_features="
                f"{X.shape[1]}, as for PCA: a latent space wider than the data only adds "
                "dimensions that the KL term switches off. Use n_components <= "
                f"{X.shape[1]}."
            )
        params = self.get_params(deep=False)
        if resume:
            params["likelihood"] = self.module_.likelihood
        elif self._columns is None:
            params["likelihood"] = self._likelihood_name
            LIKELIHOODS[params["likelihood"]].check_support(X)
        else:  # a mixed table: one likelihood per group of encoded columns
            params["likelihood"] = "mixed"
            params["likelihood_options"] = {"groups": self._columns["groups"]}
        if not resume and self.init in ("pca", "factor_analysis") \
                and params["likelihood"] != "gaussian":
            raise ValueError(
                f"init={self.init!r} starts from a linear Gaussian model and needs "
                f"likelihood='gaussian' for every column; got likelihood="
                f"{self.likelihood!r}. Use init='auto' or init='random'."
            )
        target = None
        if self.target_weight > 0:
            fitted_target = self._fitted_target() if resume else None
            if resume and fitted_target is None:
                raise ValueError(
                    f"Cannot continue training with target_weight={self.target_weight!r}: "
                    "the fitted model was trained without labels (target_weight=0) and "
                    "has no model of them. Set warm_start=False (or refit with fit "
                    "instead of partial_fit) to train a supervised model.")
            target = check_target(y, X.shape[0], self.target_weight, fitted_target)
        elif not resume:
            fitted_target = None
        else:
            fitted_target = self._fitted_target()
        result = train(params, X, epochs=epochs, incremental=incremental,
                       device=resolve_device(self.device),
                       previous=self._training_result() if resume else None, target=target)

        if not resume:
            self.likelihoods_ = self._resolved_likelihoods()
        self.mean_, self.scale_ = result.mean, result.scale
        self.init_ = result.init
        self.n_components_ = result.module.n_components
        self.latent_kl_ = result.latent_kl
        self.history_ = result.history
        self.n_epochs_ = len(result.history)
        self.max_epochs_, self.n_iter_no_change_ = result.max_epochs, result.n_iter_no_change
        self.tol_ = result.tol
        self.device_ = result.device
        self._optimizer_state = result.optimizer_state
        self._base_seed = result.seed
        kept = target if target is not None and not resume else fitted_target
        self.target_type_ = None if kept is None else kept.type
        self._target_scale = None if kept is None else (kept.mean, kept.scale)
        if kept is not None and kept.classes is not None:
            self.classes_ = kept.classes
        else:
            self.__dict__.pop("classes_", None)
        self.module_ = result.module  # last: its presence means "fitted"

    def _fitted_target(self):
        """The fitted model's label encoding (classes, standardization), or None."""
        kind = getattr(self, "target_type_", None)
        if kind is None:
            return None
        mean, scale = self._target_scale
        return Target(np.empty(0, np.float32), kind, classes=getattr(self, "classes_", None),
                      mean=mean, scale=scale)

    def _training_result(self):
        """The fitted state as the training home returns it, to continue from.

        Models loaded from old files may lack the attributes a call only
        returns (``init_`` came in format 2): those are None here.
        """
        return TrainingResult(
            module=self.module_, history=self.history_, optimizer_state=self._optimizer_state,
            mean=self.mean_, scale=self.scale_, seed=self._base_seed,
            **{name: getattr(self, f"{name}_", None)
               for name in ("init", "max_epochs", "n_iter_no_change", "tol", "latent_kl",
                            "device")})

    def _resolved_likelihoods(self):
        """``likelihoods_``: each column's likelihood, by name (or index)."""
        columns = self._columns
        if columns is not None:
            return dict(zip(columns["columns"], columns["kinds"]))
        names = getattr(self, "feature_names_in_", None)
        labels = range(self.n_features_in_) if names is None else names.tolist()
        return {label: self._likelihood_name for label in labels}

    def _validate_X(self, X, *, reset):
        if reset:
            # the column layout (None for one likelihood on numbers: X as it is)
            self._columns, self._likelihood_name = resolve_columns(X, self.likelihood)
        columns = getattr(self, "_columns", None)
        if columns is not None:
            return self._validate_table(X, columns, reset=reset)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32],
                          ensure_all_finite="allow-nan", reset=reset)
        if sp.issparse(X) and np.isnan(X.data).any():
            raise ValueError(
                "Sparse input X contains NaN. skvae reads the implicit zeros of a sparse "
                "matrix as values, so missing entries need a dense X (a NumPy array or "
                "a DataFrame) with NaN where they are missing.")
        if sp.issparse(X) and not X.has_canonical_format:
            X = X.copy()  # sum duplicate entries, never in the caller's arrays
            X.sum_duplicates()
        return X

    def _validate_table(self, X, columns, *, reset):
        """A mixed table (DataFrame) checked against the fitted columns, encoded."""
        if not hasattr(X, "iloc"):
            X = check_array(X, dtype=None, ensure_all_finite="allow-nan", input_name="X")
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)
        if X.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a "
                             "minimum of 1 is required.")
        return encode(columns, X)

    def _validate_params(self):
        _check_n_components(self.n_components)
        super()._validate_params()

    def _check_remaining_params(self):
        """Checks that ``_parameter_constraints`` cannot express."""
        if not check_device_name(self.device):
            raise InvalidParameterError(
                "The 'device' parameter of VAETransformer must be 'auto', 'cpu', 'cuda' "
                f"or 'cuda:N' (N an integer). Got {self.device!r} instead."
            )
        sizes = hidden_sizes(self.hidden_layer_sizes)
        if any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in sizes):
            raise InvalidParameterError(
                "The 'hidden_layer_sizes' parameter of VAETransformer must be an int "
                "or a sequence of ints >= 1 (the widths of the hidden layers). Got "
                f"{self.hidden_layer_sizes!r} instead."
            )

    def _check_same_architecture(self):
        fitted = self._fitted_architecture
        for name in _ARCHITECTURE:
            if name == "likelihood" and (self.likelihood == "auto"
                                         or isinstance(self.likelihood, dict)
                                         or getattr(self, "_columns", None) is not None):
                continue  # resolved from the data at the first fit, and kept
            new = getattr(self, name)
            if name == "hidden_layer_sizes":
                new = hidden_sizes(new)
            if new != fitted[name]:
                raise ValueError(
                    f"Cannot continue training with {name}={new!r}: the fitted model has "
                    f"{name}={fitted[name]!r}. Set warm_start=False (or refit with fit "
                    "instead of partial_fit) to train a new model."
                )

    @property
    def _fitted_architecture(self):
        module = self.module_
        return {
            "n_components": module.n_components,
            "hidden_layer_sizes": module.hidden_layer_sizes,
            "activation": module.activation,
            "likelihood": module.likelihood,
        }

    # ---------------------------------------------------------------- inference

    def _inference(self, X, fn, tail=(), width_factor=1, standardize=True):
        """``fn(module, batch)`` for model-ready batches of X, gathered into one array.

        The batches run in X's precision. Their rows are sized so that
        ``width_factor`` arrays as wide as the widest layer (importance samples
        times the arrays ``fn`` holds at once) fit the budget of
        ``inference_map``; ``standardize=False`` passes X as it is (latent codes).
        """
        dtype = torch.float64 if X.dtype == np.float64 else torch.float32
        module = self.module_
        if dtype != torch.float32:  # a float64 copy; the fitted weights stay float32
            module = copy.deepcopy(module).to(dtype)
        device = next(module.parameters()).device
        standardize = standardize and module.observation.standardize
        # the widest activation of encoder or decoder, once per importance sample
        width = module.widest_layer
        module.eval()
        work = inference_work(module, X.shape[0], width * width_factor)
        with torch.inference_mode(), limit_threads(self.n_threads, work, device):
            return inference_map(functools.partial(fn, module), X, tail,
                                 mean=self.mean_ if standardize else None,
                                 scale=self.scale_ if standardize else None,
                                 device=device, dtype=dtype,
                                 width=width * width_factor)

    def transform(self, X):
        """Encode X: the means of the approximate posterior q(z | x).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to encode.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Latent codes; float32 for float32 input, float64 otherwise.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._inference(X, lambda module, x: module.encode(*split_missing(x))[0],
                               (self.module_.n_components,))

    def inverse_transform(self, X):
        """Decode latent codes into the original feature space and units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent codes, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray or DataFrame of shape (n_samples, `n_features_in_`)
            Means of p(x | z): in the units of the training data for the
            Gaussian likelihood, probabilities in [0, 1] for the Bernoulli one,
            rates for counts. For a model of a DataFrame with categorical
            columns, a DataFrame with the fitted columns, dtypes and
            categories: the most probable category of each categorical cell
            (the second category of a Bernoulli column where its probability
            is at least 0.5); integer columns rounded.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        n_components = self.module_.n_components
        if Z.shape[1] != n_components:
            raise ValueError(
                f"X has {Z.shape[1]} columns, but inverse_transform expects latent codes "
                f"with n_components={n_components} columns."
            )
        return self._decode(Z, lambda module, z: module.decoder_mean(z))

    def _decode(self, Z, fn):
        """``fn(module, z)`` (means or draws in model units) in the original units.

        For a mixed table, the table itself (:func:`skvae._columns.decode`).
        """
        X_original = self._inference(Z, fn, (len(self.mean_),), standardize=False)
        if self.module_.observation.standardize:  # in place: no copies of the output
            X_original *= self.scale_.astype(Z.dtype)
            X_original += self.mean_.astype(Z.dtype)
        columns = getattr(self, "_columns", None)
        return X_original if columns is None else decode(columns, X_original)

    def score_samples(self, X, n_importance_samples=1):
        """Log-likelihood bound of each sample, in nats, in the units of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to score.

        n_importance_samples : int, default=1
            Number K of posterior draws. K=1 gives the evidence lower bound
            (ELBO); K > 1 the tighter importance-weighted bound (IWAE), which
            approaches log p(x) as K grows. At most 524287.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            Lower bound of log p(x) for each sample (float64). For the Gaussian
            likelihood it is a density in the units of X, comparable with
            :meth:`sklearn.decomposition.PCA.score_samples`.
        """
        check_is_fitted(self)
        n_importance_samples = _check_importance_samples(n_importance_samples)
        X = self._validate_X(X, reset=False)
        self.module_.observation.check_support(X)
        noise = RandomStreams(self._base_seed).scoring_noise(self.module_.n_components)

        if n_importance_samples == 1:
            def bound(module, x):
                x, observed = split_missing(x)
                return elbo(module, x, noise(x, 1)[:, 0], observed=observed)
        else:
            def bound(module, x):
                x, observed = split_missing(x)
                return iwae_bound(module, x, noise(x, n_importance_samples), observed)

        # the likelihood holds the decoder's output and two temporaries of its size
        values = self._inference(X, bound, width_factor=3 * n_importance_samples)
        # density of the standardized data -> density in the caller's units,
        # over each row's observed features
        values = values.astype(np.float64, copy=False)
        values -= observed_log_scale(X, self.scale_)
        return values

    def score(self, X, y=None, n_importance_samples=1):
        """Average log-likelihood bound per sample, in nats, in the units of X.

        The same quantity as :meth:`sklearn.decomposition.PCA.score`, so a grid
        search without a ``scoring`` argument selects by held-out
        log-likelihood and can compare a VAE with PCA.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to score.

        y : Ignored
            Not used, present for API consistency by convention.

        n_importance_samples : int, default=1
            Number of posterior draws; see :meth:`score_samples`.

        Returns
        -------
        score : float
            Mean of :meth:`score_samples` over X.
        """
        return float(np.mean(self.score_samples(X, n_importance_samples)))

    @validate_params(
        {
            "n_samples": [Interval(Integral, 1, None, closed="left")],
            "random_state": ["random_state"],
        },
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1, random_state=None):
        """Generate new data: decoded draws from the prior N(0, I).

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        random_state : int, RandomState instance or None, default=None
            Seed of the prior draws; None uses the estimator's
            ``random_state`` (so an int there gives the same samples each
            call, as in :meth:`sklearn.mixture.GaussianMixture.sample`).

        Returns
        -------
        X : ndarray or DataFrame of shape (n_samples, `n_features_in_`)
            Decoder means of the draws, in the original units. For a model of
            a DataFrame with categorical columns, a DataFrame as
            :meth:`inverse_transform` gives, whose discrete cells (categorical,
            Bernoulli and count columns) are draws from p(x | z).
        """
        check_is_fitted(self)
        seed = make_seed(self.random_state if random_state is None else random_state)
        generator = make_generator(seed)
        z = torch.randn(n_samples, self.module_.n_components, generator=generator,
                        dtype=torch.float64)
        columns = getattr(self, "_columns", None)
        if columns is None:
            return self.inverse_transform(z.numpy())
        # a mixed table: the real cells are decoder means, as for numeric data,
        # the discrete ones draws (the same generator, after the codes)
        real = torch.as_tensor(self.module_.observation.standardized_features())
        draws_seed, generators = make_seed(np.random.RandomState(seed)), {}

        def draw(module, z):
            if z.device not in generators:
                generators[z.device] = make_generator(draws_seed, z.device)
            out = module.decode(z)
            draws = module.observation.sample(out, generator=generators[z.device])
            return torch.where(real.to(z.device), module.observation.mean(out), draws)

        return self._decode(z.numpy(), draw)

    # ---------------------------------------------------------------- contract

    def __getattr__(self, name):
        # Only called when normal lookup fails: PCA's fitted attributes get an
        # error that names the VAE's counterpart instead of a bare AttributeError.
        if name in _PCA_ATTRIBUTES:
            raise AttributeError(
                f"'VAETransformer' object has no attribute {name!r}: it is an attribute "
                f"of PCA. {_PCA_ATTRIBUTES[name]} See 'Coming from PCA' in the skvae "
                "documentation."
            )
        raise AttributeError(f"'VAETransformer' object has no attribute {name!r}")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    @property
    def _n_features_out(self):
        return self.module_.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __getstate__(self):
        # NumPy arrays and builtins only (see _persistence.py): pickle and skops.io
        # store no torch or skorch objects, so loading runs no torch code from the
        # file and a model fitted on a GPU loads anywhere.
        from . import __version__

        return export_state(super().__getstate__(), __version__)

    def __setstate__(self, state):
        from . import __version__

        super().__setstate__(import_state(state, __version__))
        device = getattr(self, "device_", "cpu")
        if device != "cpu" and hasattr(self, "module_"):
            try:
                self.module_.to(resolve_device(device))
            except ValueError:  # that device is not here: stay on the CPU
                pass


_NO_VARIANCE_ORDER = (
    "A VAE's latent dimensions are not ordered by explained variance; the fitted "
    "attribute latent_kl_ says how much each one is used (mean KL divergence from the "
    "prior, in nats; near 0 for an unused dimension)."
)
_PCA_ATTRIBUTES = {
    "explained_variance_ratio_": _NO_VARIANCE_ORDER,
    "explained_variance_": _NO_VARIANCE_ORDER,
    "singular_values_": _NO_VARIANCE_ORDER,
    "components_": (
        "A VAE's decoder is nonlinear, so there is no matrix of components: "
        "inverse_transform maps latent codes to the data space, and "
        "skvae.plotting.plot_latent_traversal draws what each latent dimension does."
    ),
    "noise_variance_": (
        "The Gaussian likelihood learns one variance per feature "
        "(module_.observation.log_variance(), in standardized units); score and "
        "score_samples give the log-likelihood directly."
    ),
}


def _check_n_components(n_components):
    """A clear error for an ``n_components`` that PCA takes and a VAE cannot."""
    if isinstance(n_components, bool):  # an Integral that torch cannot size a layer with
        pca_reading = "A bool is not a number of dimensions."
    elif isinstance(n_components, Integral):
        if n_components >= 1:
            return
        pca_reading = "PCA(n_components=0) keeps no component; a VAE needs at least one."
    elif n_components is None:
        pca_reading = "PCA reads None as 'keep every component'."
    elif isinstance(n_components, str):
        pca_reading = f"PCA reads {n_components!r} as 'choose the number for me'."
    elif isinstance(n_components, Real) and 0 < n_components < 1:
        pca_reading = ("PCA reads a float in (0, 1) as the share of variance to explain; "
                       "a VAE's latent dimensions are not ordered by variance.")
    else:
        return  # the generic message of _parameter_constraints says it well
    raise InvalidParameterError(
        "The 'n_components' parameter of VAETransformer must be an int >= 1, the number "
        f"of latent dimensions. Got {n_components!r} instead. {pca_reading} Choose it by "
        "held-out score (e.g. GridSearchCV over n_components), or fit with a generous "
        "n_components and count the dimensions in use in the fitted latent_kl_."
    )


def _check_observed_features(X, feature_names=None):
    """Raise a ValueError naming the features that X observes in fewer than 2 rows.

    A feature whose every entry is missing (NaN) tells nothing about itself,
    and one value does not tell its spread.
    """
    if sp.issparse(X) or X.shape[0] < 2 or not has_missing(X):
        return
    counts, _ = observed_counts_and_sums(X)
    few = np.flatnonzero(counts < 2)
    if len(few):
        names = [str(feature_names[j]) if feature_names is not None else str(j) for j in few]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise ValueError(
            f"X has no observed value (or only one) in feature(s) {shown}: every other "
            "entry is NaN, and nothing can be learned about them. Drop them before "
            "fitting, or use skvae.VAEImputer, which sets aside the features without "
            "an observed value as scikit-learn's imputers do (keep_empty_features).")


def _check_importance_samples(n):
    if (not isinstance(n, Integral) or isinstance(n, bool)
            or not 1 <= n <= MAX_IMPORTANCE_SAMPLES):
        raise ValueError(
            f"n_importance_samples must be an int in [1, {MAX_IMPORTANCE_SAMPLES}] (1 gives "
            f"the ELBO, more samples a tighter bound); got {n!r}."
        )
    return int(n)
