"""One home for training: what a call to ``fit`` or ``partial_fit`` does.

``VAETransformer`` keeps the scikit-learn contract: it validates its parameters
and the data, calls :func:`train`, and turns the :class:`TrainingResult` into
fitted attributes. Everything in between lives here, each value once:

- the named random streams of a model and of each training call
  (:class:`RandomStreams`);
- the ``"auto"`` budget and patience (:func:`resolve_max_epochs`,
  :func:`resolve_n_iter_no_change`);
- the learning-rate groups (:func:`parameter_groups`, :func:`set_learning_rates`);
- preparing the data (standardization, resolution floors, the encoder's input
  range, the validation split), the linear start, building the skorch net
  (whose callbacks come from its own parameters, skorch's
  ``get_default_callbacks``) and running it.

The module sits above ``_data``, ``_init``, ``_module`` and ``_net`` and below
the estimator; nothing here knows about scikit-learn's parameter validation.
"""

import copy
import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.preprocessing import StandardScaler
from skorch.history import History

from ._data import (BatchIterator, TrainingData, feature_resolution, has_missing, row_blocks,
                    validation_split)
from ._init import linear_start
from ._likelihoods import observation_model
from ._losses import RowNoise
from ._module import VAEModule, empty_on_cpu
from ._net import VAENet, mean_latent_kl
from ._optim import Adam
from ._utils import adam_options, derive_seed, make_generator, make_seed

#: ``max_epochs="auto"``: epochs for this many optimizer steps, and at least
#: AUTO_MIN_EPOCHS (an epoch is two steps on 150 rows, 469 on 60,000)
AUTO_STEPS, AUTO_MIN_EPOCHS = 2_000, 60
#: Training rows with missing entries get this many times the ``"auto"`` budget
#: and patience (in steps and in the patience's bound in epochs). A row with
#: holes gives each step part of its information, and the encoder learns every
#: pattern of holes as well as the rows; with 2,000 steps the Gaussian mixture
#: and the nonlinear factors of benchmarks/bench_imputation.py stopped at 250
#: of 250 epochs, their best epoch among the last 30, and with 40 epochs of
#: patience the mixture stopped at 254-337 of 500 while it could still improve.
MISSING_DATA_FACTOR = 2
#: ``n_iter_no_change="auto"``: this many steps of patience, at least
#: AUTO_MIN_PATIENCE epochs, so that the noise of a small data set's first
#: epochs (a few steps each) does not stop it, and at most AUTO_MAX_PATIENCE
#: epochs once training has improved on its start: on a small table 500 steps are
#: hundreds of passes over the same rows, and waiting 40 instead moved no mean
#: score of benchmarks/bench_quality.py by more than 0.2 nats (its small tables
#: stop after 1/2 to 1/6 of the epochs). Before the first improvement the 500
#: steps hold in full: leaving a linear start takes steps, not passes (a
#: 600-row swiss roll stopped at its linear start after 40 epochs, 35 nats
#: below the fit that waited 125). With the averaged weights (see
#: skvae._optim.WeightAverage) a bound of 20 stopped the small tables 15-45 %
#: sooner, but cost iris 0.3 nats and a low-noise curve in 20-D (the spiral of
#: tests/test_defaults.py, seeds 0-2) 2.4 nats of its lead over factor analysis
AUTO_PATIENCE_STEPS, AUTO_MIN_PATIENCE, AUTO_MAX_PATIENCE = 500, 20, 40
#: ``tol="auto"``: the patience restarts only when the best held-out loss has
#: fallen by more than this many nats per row since it last restarted (see
#: skvae._net.WarmupEarlyStopping). On the small tables of
#: benchmarks/bench_quality.py the held-out loss creeps down by hundredths of a
#: nat per epoch for hundreds of epochs after the fit has got within 0.5 nats of
#: where it ends (iris: 360 epochs on average, 99 with 0.1, the mean score 0.1
#: nats lower). A low-noise curve learns in bursts between slow stretches (the
#: 5-D spiral of tests/test_defaults.py: the same fits with 0.2, a third of its
#: lead lost with 0.3), so 0.1 leaves it room. Rows with missing entries keep 0:
#: their fits were judged (benchmarks/bench_imputation.py) with every
#: improvement counted.
AUTO_TOL = 0.1
#: Sparse X of at most this many entries (rows x features) is standardized
#: from densified blocks: StandardScaler's sparse variances differ from its
#: dense ones in the last bits, and the scoring noise hashes each standardized
#: row's bits, so a CSR matrix scored rows up to 9 nats away from its dense
#: copy (digits). Densifying costs about 5 ns an entry (0.5 s for 40,000 x
#: 2,000, 10 s for 100,000 x 20,000, where the sparse statistics take 2 s), so
#: larger X, whose linear start is not its dense copy's anyway, keeps the
#: sparse statistics.
DENSE_STATISTICS_VALUES = 2 ** 26
#: ``target_weight`` is a share of these weights. A labelled row's
#: log p(y | z) counts ``target_weight * TARGET_SCALE * sqrt(n / n_labelled)``
#: times in the objective of n training rows of which n_labelled have a label,
#: and (class labels) an unlabelled row's entropy of p(y | z) counts
#: ``target_weight * UNLABELLED_SCALE`` times. Measured on the digits
#: (benchmarks/bench_supervision.py, issue 39), at target_weight=0.5: 16 per
#: labelled row moved the 2-D codes' LR / 5-NN accuracy from 0.70 / 0.80 to
#: 0.87 / 0.90 for 2.8 % of held-out score (8: 0.80 / 0.85; 32: 0.92 / 0.94
#: for 7.7 %). With 10 % of the labels, n / n_labelled (the labels weighing as
#: much as when all are there) made the encoder move the few labelled codes
#: alone and cost the 2-D codes' 5-NN 9 points against no labels;
#: sqrt(n / n_labelled) gained 4, and the entropy of the unlabelled rows at 4
#: (per unlabelled row, at 0.5) another 8 for LR (2 and 16: less).
TARGET_SCALE, UNLABELLED_SCALE = 32.0, 8.0


# ------------------------------------------------------------ random streams

class RandomStreams:
    """The named random streams of a model and of one training call.

    Every random choice of training draws from a stream named here. A stream
    is a ``numpy.random.SeedSequence`` keyed by the seed and the stream's fixed
    key: the first call's streams hang off the model's seed (drawn once from
    ``random_state``), those of a resumed call (``partial_fit``,
    ``warm_start``) off a call seed keyed by the epochs trained before it, in
    a key space of their own. The scoring noise belongs to the model and is the
    same for all its calls, so that ``score`` does not change between calls
    that leave the weights alone.

    The keys are fixed numbers, not positions: a new stream takes a new key and
    changes no existing draw.

    Parameters
    ----------
    seed : int
        The model's seed.
    call : int, default=0
        0 for the call that creates the model; for a resumed call, the epochs
        trained before it (``n_epochs_``, at least 1).
    """

    #: streams of one training call -> key under the call's seed
    CALL = {
        "weights": 0,             # the network's initial weights
        "validation_split": 1,    # which rows early stopping holds out
        "shuffle": 2,             # each epoch's order of the training rows
        "reparameterization": 3,  # the training draws z = mu + sigma * eps
        "init_svd": 5,            # the randomized SVDs of the linear start
        "init_rows": 6,           # the row subset of the linear start (large data)
    }
    #: streams of the model, the same for all its calls -> key under its seed
    MODEL = {
        "scoring": 4,             # the deterministic noise of score, IWAE and valid_loss
    }
    #: key of the call seeds of resumed calls
    RESUME = 7

    def __init__(self, seed, call=0):
        self.seed = int(seed)
        self.call = int(call)
        self.call_seed = self.seed if call == 0 else derive_seed(self.seed, self.RESUME, call)

    @classmethod
    def from_random_state(cls, random_state):
        """The streams of a new model: its seed drawn from ``random_state``."""
        return cls(make_seed(random_state))

    def seed_of(self, name):
        """The integer seed of stream ``name`` (a key of :attr:`CALL` or :attr:`MODEL`)."""
        if name in self.MODEL:
            return derive_seed(self.seed, self.MODEL[name])
        return derive_seed(self.call_seed, self.CALL[name])

    def generator(self, name, device="cpu"):
        """A ``torch.Generator`` on ``device`` for stream ``name``."""
        return make_generator(self.seed_of(name), device)

    def scoring_noise(self, n_components):
        """The model's deterministic scoring noise (:class:`~skvae._losses.RowNoise`)."""
        return RowNoise(self.seed_of("scoring"), n_components)


# ------------------------------------------------------- budget and patience

def steps_per_epoch(n_rows, batch_size):
    """Optimizer steps of one epoch over ``n_rows`` training rows."""
    return max(1, math.ceil(n_rows / batch_size))


def resolve_max_epochs(max_epochs, n_rows, batch_size, missing=False):
    """``max_epochs`` in epochs: ``"auto"`` is :data:`AUTO_STEPS` optimizer steps.

    :data:`MISSING_DATA_FACTOR` times that when the training rows have missing
    entries (``missing``). At least :data:`AUTO_MIN_EPOCHS`; an int is returned
    as it is.
    """
    if max_epochs != "auto":
        return int(max_epochs)
    steps = AUTO_STEPS * (MISSING_DATA_FACTOR if missing else 1)
    return max(AUTO_MIN_EPOCHS, math.ceil(steps / steps_per_epoch(n_rows, batch_size)))


def resolve_tol(tol, missing=False):
    """``tol`` in nats per row: ``"auto"`` is :data:`AUTO_TOL`, 0 for rows with holes."""
    if tol != "auto":
        return float(tol)
    return 0.0 if missing else AUTO_TOL


def resolve_n_iter_no_change(n_iter_no_change, n_rows, batch_size,
                             max_patience=AUTO_MAX_PATIENCE, missing=False):
    """The patience in epochs: ``"auto"`` is :data:`AUTO_PATIENCE_STEPS` steps.

    At least :data:`AUTO_MIN_PATIENCE` epochs and at most ``max_patience``
    (see :data:`AUTO_MAX_PATIENCE`; None: no upper bound, the rule that
    models saved in formats before 5 were trained with); an int is returned
    as it is. Training rows with missing entries (``missing``) get
    :data:`MISSING_DATA_FACTOR` times the steps and the upper bound.
    """
    if n_iter_no_change != "auto":
        return int(n_iter_no_change)
    factor = MISSING_DATA_FACTOR if missing else 1
    patience = math.ceil(factor * AUTO_PATIENCE_STEPS / steps_per_epoch(n_rows, batch_size))
    if max_patience is not None:
        patience = min(patience, factor * max_patience)
    return max(AUTO_MIN_PATIENCE, patience)


# ------------------------------------------------------- learning-rate groups

def parameter_groups(module, learning_rate):
    """Parameter groups for a ``torch.optim`` optimizer, as skvae trains ``module``.

    The parameters of ``module.lr_factors()`` (the Gaussian variances) come
    first, one group each; every other parameter follows in one group with
    factor 1. Each group's ``lr`` is ``learning_rate`` times its ``lr_factor``
    (:func:`set_learning_rates`). skvae's skorch net gets the same groups in
    the same order (:func:`skorch_param_groups`), so an optimizer state saved
    by either fits the other; hand-written training loops (the benchmarks) use
    these to train as skvae does.

    Parameters
    ----------
    module : VAEModule
    learning_rate : float

    Returns
    -------
    groups : list of dict
        Each with ``params``, ``lr`` and ``lr_factor``.
    """
    factors = module.lr_factors()
    named = dict(module.named_parameters())
    groups = [{"params": [named[name]], "lr_factor": factor} for name, factor in factors.items()]
    rest = [param for name, param in named.items() if name not in factors]
    return set_learning_rates(groups + [{"params": rest, "lr_factor": 1.0}], learning_rate)


def set_learning_rates(groups, learning_rate):
    """Set each group's ``lr`` to ``learning_rate`` times its ``lr_factor``; return them.

    The one place where a group's step size is computed: new optimizers, a
    resumed fit with another ``learning_rate`` and converted old states all
    call it. A group without ``lr_factor`` has factor 1.
    """
    for group in groups:
        group["lr"] = learning_rate * group.get("lr_factor", 1.0)
    return groups


def skorch_param_groups(module, learning_rate):
    """skorch's ``optimizer__param_groups``: :func:`parameter_groups` by name pattern.

    skorch matches parameters by name and puts the unmatched ones (the last
    group of :func:`parameter_groups`) in a group of its own, last, at the
    net's ``lr``.
    """
    groups = parameter_groups(module, learning_rate)[:-1]
    return [(name, {key: value for key, value in group.items() if key != "params"})
            for name, group in zip(module.lr_factors(), groups)]


# ----------------------------------------------------------- one training call

@dataclass
class TrainingResult:
    """What a training call leaves: the estimator's fitted state.

    Attributes
    ----------
    module : VAEModule
        The trained network.
    history : skorch.history.History
        Every epoch trained so far (of this call and the ones before it).
    optimizer_state : dict
        The optimizer's ``state_dict()``, for resuming.
    mean, scale : ndarray of shape (n_features,)
        The standardization of the first call (zeros and ones when the
        likelihood models the data as given).
    seed : int
        The model's seed (:class:`RandomStreams`).
    init : str or None
        The linear model the first call started from.
    max_epochs : int
        This call's budget in epochs (``max_epochs`` resolved; 1 for
        ``partial_fit``).
    n_iter_no_change : int
        The patience of early stopping in epochs, resolved.
    tol : float or None
        The improvement that resets the patience, in nats per row, resolved
        (models saved before it load with 0.0, the rule they were trained with;
        None only in a fitted state that lacks ``tol_``, as for the other
        resolved values here).
    latent_kl : ndarray of shape (n_components,)
        Mean KL divergence from the prior per latent dimension on the
        training rows.
    device : str
    """

    module: VAEModule
    history: History
    optimizer_state: dict
    mean: np.ndarray
    scale: np.ndarray
    seed: int
    init: Optional[str]
    max_epochs: int
    n_iter_no_change: int
    tol: Optional[float]
    latent_kl: np.ndarray
    device: str


def train(params, X, *, epochs, incremental, device, previous=None, target=None):
    """Train a VAE on X for one call to ``fit`` or ``partial_fit``.

    Parameters
    ----------
    params : dict
        The estimator's parameters (``get_params(deep=False)``), validated,
        with ``likelihood`` resolved to a key of
        :data:`~skvae._likelihoods.LIKELIHOODS` (or ``"mixed"``) and, optionally,
        ``likelihood_options`` (its keyword arguments).
    X : ndarray or CSR matrix of shape (n_samples, n_features)
        Validated training data, in the likelihood's support (a mixed table
        encoded by :mod:`skvae._columns`).
    epochs : int or "auto"
        The call's budget (``max_epochs``, or 1 for ``partial_fit``).
    incremental : bool
        ``partial_fit``: no rows are held out.
    device : str
        A resolved device name.
    previous : TrainingResult or None
        The fitted state to continue from (``partial_fit`` or ``warm_start``);
        None trains a new model.
    target : skvae._target.Target or None
        The labels of supervised training (``target_weight > 0``): the
        network gets a ``target_head`` and the labelled rows' log p(y | z)
        joins the objective (:data:`TARGET_SCALE`); early stopping holds out
        rows without a label first and watches their ELBO (with the label's
        term for held-out rows that have one). None: the ELBO alone, as
        without labels.

    Returns
    -------
    result : TrainingResult
        A new result; ``previous`` and its objects are left as they were.
    """
    p = params
    likelihood = observation_model(p["likelihood"])
    missing = has_missing(X)
    if previous is None:
        streams = RandomStreams.from_random_state(p["random_state"])
        module = build_module(X.shape[1], p, streams.generator("weights"),
                              missing_inputs=missing,
                              target=None if target is None else target.head)
        mean, scale = model_standardization(X, module.observation)
        module.observation.set_scale(scale)
        module.observation.set_resolution(feature_resolution(X) / scale)
        module = module.to(device)
    else:
        streams = RandomStreams(previous.seed, call=len(previous.history))
        mean, scale = previous.mean, previous.scale
        module = copy.deepcopy(previous.module).to(device)

    data_mean, data_scale = (mean, scale) if likelihood.standardize else (None, None)
    low, high = _feature_range(X, data_mean, data_scale)
    if previous is not None:  # the range of all the rows trained on so far
        low = np.minimum(low, module.input_low.cpu().numpy())
        high = np.maximum(high, module.input_high.cpu().numpy())
    module.set_input_range(low, high)
    labels = None if target is None else target.values
    prepare = functools.partial(TrainingData, X, data_mean, data_scale, device, target=labels)
    if p["early_stopping"] and not incremental:
        train_rows, valid_rows = validation_split(
            X.shape[0], p["validation_fraction"], streams.generator("validation_split"),
            first=None if labels is None else np.isnan(labels))
        data, valid = prepare(rows=train_rows), prepare(rows=valid_rows)
    else:
        data, valid = prepare(), None

    noise = streams.scoring_noise(p["n_components"])
    if previous is not None:
        init = previous.init
    elif likelihood.supports_linear_start:
        init = linear_start(module, p["init"], data, valid, noise, streams.seed_of("init_svd"),
                            streams.generator("init_rows"))
    else:
        init = None

    max_epochs = resolve_max_epochs(epochs, len(data), p["batch_size"], missing=missing)
    patience = resolve_n_iter_no_change(p["n_iter_no_change"], len(data), p["batch_size"],
                                        missing=missing)
    # until an epoch beats the starting weights, "auto" waits its 500 steps in full
    start_patience = resolve_n_iter_no_change(p["n_iter_no_change"], len(data),
                                              p["batch_size"], max_patience=None,
                                              missing=missing)
    tol = resolve_tol(p["tol"], missing=missing)
    net = build_net(module, p, streams, device, max_epochs=max_epochs, valid=valid,
                    n_iter_no_change=patience if valid is not None else None,
                    start_patience=start_patience, tol=tol, missing=missing,
                    # the history's losses in the units of X, as -score: the change
                    # of variables of standardization adds sum(log(scale)) over a
                    # row's observed features (0 for bernoulli); scale is fixed at
                    # the first fit, so all calls share these units
                    loss_offset=float(np.mean(observed_log_scale(X, scale, missing))),
                    target_weights=_row_target_weights(p.get("target_weight", 0.0), data))
    net.initialize()
    if previous is not None:
        # Adam's moments from the last call, each group at this call's rate
        factors = [group.get("lr_factor", 1.0) for group in net.optimizer_.param_groups]
        net.optimizer_.load_state_dict(copy.deepcopy(previous.optimizer_state))
        for group, factor in zip(net.optimizer_.param_groups, factors):
            group["lr_factor"] = factor
        set_learning_rates(net.optimizer_.param_groups, p["learning_rate"])
        # a new list of the same epoch records: training appends epochs and
        # writes only to the newest, so the previous history stays as it was
        # (for a failed call) without a deep copy that grows with every epoch
        net.history_ = History(previous.history)
    if valid is not None:
        # the starting weights (a linear model, or those of the last fit)
        # compete for the weights kept; see WarmupEarlyStopping
        net.initial_valid_loss_ = net.validation_loss(valid)
    net.partial_fit(data)

    return TrainingResult(
        module=net.module_, history=net.history_, optimizer_state=net.optimizer_.state_dict(),
        mean=mean, scale=scale, seed=streams.seed, init=init, max_epochs=max_epochs,
        n_iter_no_change=patience, tol=tol, latent_kl=mean_latent_kl(net.module_, data),
        device=device)


def _row_target_weights(target_weight, data):
    """``(labelled, unlabelled)``: each training row's weight of its label's terms.

    See :data:`TARGET_SCALE`. ``(0, 0)`` without labels in ``data``
    (unsupervised, or a ``partial_fit`` chunk without a labelled row).
    """
    n_labelled = data.labelled_count()
    if not target_weight or not n_labelled:
        return 0.0, 0.0
    weight = float(target_weight)
    return (weight * TARGET_SCALE * math.sqrt(len(data) / n_labelled),
            weight * UNLABELLED_SCALE)


def build_module(n_features, params, generator, missing_inputs=False, target=None):
    """A new network for ``params``, initialised from ``generator``.

    Built on the meta device (no global random draws), then initialised on
    the CPU from ``generator``: the same weights on every device. With
    ``missing_inputs`` the encoder also sees the mask of observed entries
    (training data with missing entries); with ``target`` (a number of
    classes, or ``"continuous"``) the network has a model of the label given
    the code, drawn after the other weights, which are those of the network
    without it.
    """
    # "auto" on numbers is "gaussian" (skvae._columns resolves it for the estimator)
    likelihood = "gaussian" if params["likelihood"] == "auto" else params["likelihood"]
    with torch.device("meta"):
        module = VAEModule(n_features, params["n_components"],
                           hidden_sizes(params["hidden_layer_sizes"]), params["activation"],
                           likelihood, params.get("likelihood_options"),
                           missing_inputs=missing_inputs, target=target)
    module = empty_on_cpu(module)
    return module.reset_parameters(generator)


def build_net(module, params, streams, device, *, max_epochs, valid, n_iter_no_change,
              start_patience=None, tol=0.0, missing=False, loss_offset=0.0,
              target_weights=(0.0, 0.0)):
    """The skorch net of one training call: the estimator's parameters, prefixed.

    Parameters
    ----------
    module : VAEModule
        Trained in place.
    params : dict
        The estimator's parameters.
    streams : RandomStreams
        The call's random streams (shuffling, reparameterisation, scoring noise).
    device : str
    max_epochs : int
        The call's budget in epochs, resolved.
    valid : TrainingData or None
        The held-out rows; None trains on all rows without early stopping.
        With held-out rows the net validates, keeps and ends with a moving
        average of the weights (``average_weights`` of
        :class:`~skvae._net.VAENet`); without them (``partial_fit``: one
        epoch, often one step, resumed by the next call) it keeps the weights
        trained, so that a first ``partial_fit`` is a one-epoch fit.
    n_iter_no_change : int or None
        Patience of early stopping in epochs; None: no early stopping.
    start_patience : int or None
        Patience while no epoch has beaten the starting weights; None: the same.
    tol : float, default=0.0
        The improvement of the held-out loss that resets the patience (nats per row).
    missing : bool, default=False
        Whether the rows have missing entries (NaN).
    loss_offset : float
        See :class:`~skvae._net.VAENet`.
    target_weights : (float, float), default=(0.0, 0.0)
        The weights of each labelled row's log p(y | z) and of each unlabelled
        row's entropy of p(y | z) (``target_weight`` and ``unlabelled_weight``
        of :class:`~skvae._net.VAENet`).
    """
    return VAENet(
        module,
        beta=params["beta"],
        kl_warmup_epochs=params["kl_warmup_epochs"],
        n_iter_no_change=n_iter_no_change,
        start_patience=start_patience,
        tol=tol,
        noise_generator=streams.generator("reparameterization", device),
        valid_noise=streams.scoring_noise(module.n_components),
        missing=missing,
        loss_offset=loss_offset,
        target_weight=target_weights[0],
        unlabelled_weight=target_weights[1],
        average_weights=valid is not None,
        callbacks=copy.deepcopy(params["callbacks"]) or [],
        optimizer=Adam,
        lr=params["learning_rate"],
        optimizer__param_groups=skorch_param_groups(module, params["learning_rate"]),
        **{f"optimizer__{k}": v for k, v in adam_options(device).items()},
        max_epochs=max_epochs,
        batch_size=params["batch_size"],
        iterator_train=BatchIterator,
        iterator_train__shuffle=True,
        iterator_train__generator=streams.generator("shuffle", device),
        iterator_valid=BatchIterator,
        train_split=None if valid is None else (lambda dataset: (dataset, valid)),
        device=device,
        verbose=params["verbose"],
    )


# ------------------------------------------------------------- data statistics

def hidden_sizes(hidden_layer_sizes):
    """``hidden_layer_sizes`` as a tuple (an int is one layer)."""
    if isinstance(hidden_layer_sizes, (int, np.integer)):
        return (int(hidden_layer_sizes),)
    return tuple(hidden_layer_sizes)


def observed_log_scale(X, scale, missing=None):
    """Sum of ``log(scale)`` over each row's observed features.

    The change of variables from the standardized data the module scores to
    the units of X; a missing entry (NaN) has no density, and no term. A
    float when X has no missing entry (the same for every row), an array of
    shape (n_samples,) otherwise. ``missing``: :func:`has_missing` of X, when
    the caller knows it.
    """
    log_scale = np.log(np.asarray(scale, dtype=np.float64))
    if not (has_missing(X) if missing is None else missing):
        return float(log_scale.sum())
    # a block of rows at a time: the mask, cast to float64 for the product,
    # would be twice X's float32 size at once
    out = np.empty(X.shape[0])
    for rows in row_blocks(X):
        out[rows] = (~np.isnan(X[rows])) @ log_scale
    return out


def model_standardization(X, observation):
    """``(mean, scale)`` of the features the likelihood ``observation`` standardizes.

    :func:`standardization` of X for a likelihood that standardizes it all,
    zeros and ones for one that models it as given, and for a mixture
    (``standardized_features``) the first on its standardized columns and
    the second on the others.
    """
    d = X.shape[1]
    if not observation.standardize:
        return np.zeros(d), np.ones(d)
    standardized = getattr(observation, "standardized_features", None)
    if standardized is None:
        return standardization(X)
    mean, scale = np.zeros(d), np.ones(d)
    columns = np.flatnonzero(standardized())
    if len(columns):
        mean[columns], scale[columns] = standardization(X[:, columns])
    return mean, scale


def standardization(X):
    """Per-feature ``(mean, scale)`` of X for the Gaussian likelihood.

    ``scale`` is the standard deviation, except for constant features, which get
    the root-mean-square standard deviation of the other features (1 if all are
    constant). The model's variance floor is relative to ``scale``, so this
    keeps ``score`` equivariant to a change of units (``c * X`` scores
    ``n_features * log(c)`` lower) and bounds the penalty for a held-out value
    that leaves a feature constant in training by the data's typical spread.
    Missing entries (NaN) are left out, as ``StandardScaler`` does; the
    constant test counts the observed entries of each feature.

    ``StandardScaler.partial_fit`` a block of about 4 M entries at a time: one
    call for data of that size or less (the same numbers as ``fit``), and no
    float64 temporary of X's size for more (``fit`` of 50,000 x 5,000 float32
    rows peaked at 2.2 GiB above the data's 0.95 GiB). A sparse X of at most
    :data:`DENSE_STATISTICS_VALUES` entries is densified a block at a time, so
    that it gets its dense copy's numbers, bit for bit; a larger one gets
    StandardScaler's sparse statistics, equal up to rounding.
    """
    scaler = StandardScaler(with_mean=False)
    densify = sp.issparse(X) and X.shape[0] * X.shape[1] <= DENSE_STATISTICS_VALUES
    for rows in row_blocks(X):
        scaler.partial_fit(X[rows].toarray() if densify else X[rows])
    mean, var = scaler.mean_.astype(np.float64), scaler.var_.astype(np.float64)
    n = scaler.n_samples_seen_
    eps = np.finfo(np.float64).eps  # StandardScaler's test for "constant"
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = np.sqrt(var[~constant].mean()) if (~constant).any() else 1.0
    return mean, scale


def _feature_range(X, mean=None, scale=None):
    """Per-feature minimum and maximum of X (dense or CSR), standardized if given.

    Missing entries (NaN) are left out.
    """
    if sp.issparse(X):
        low, high = X.min(axis=0), X.max(axis=0)
    else:
        low, high = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    if sp.issparse(X):
        low, high = low.toarray().ravel(), high.toarray().ravel()
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if mean is not None:
        low, high = (low - mean) / scale, (high - mean) / scale
    return low, high
