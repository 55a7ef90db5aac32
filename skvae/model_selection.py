"""Hyperparameter search for :class:`~skvae.VAETransformer`.

scikit-learn's own searches (``GridSearchCV``, ``RandomizedSearchCV``,
``HalvingRandomSearchCV`` with ``resource="max_epochs"``) and optuna-integration's
``OptunaSearchCV`` work with ``VAETransformer`` as they are: without ``scoring``
they select by :meth:`~skvae.VAETransformer.score`, the held-out log-likelihood in
nats per sample. This module adds what they lack:

- :class:`EvolutionarySearchCV`, a genetic search that is a scikit-learn
  ``BaseSearchCV`` (sklearn-genetic-opt's ``GASearchCV`` refuses transformers);
- default search spaces for ``VAETransformer``: :func:`vae_param_distributions`
  (scipy.stats, for ``RandomizedSearchCV`` and :class:`EvolutionarySearchCV`) and
  :func:`vae_optuna_distributions` (for ``OptunaSearchCV``);
- :func:`dask_cluster`, which runs the fits of any of these searches on a Dask
  cluster through joblib's ``dask`` backend, and :class:`LimitThreads`, a skorch
  callback that caps PyTorch's threads inside each fit (for ``OptunaSearchCV``,
  whose ``n_jobs`` runs threads).

Why Optuna's NSGA-II and not DEAP as the genetic engine: both were tried on the
same generation-at-a-time loop. Optuna's ``NSGAIISampler`` used through
ask-and-tell draws from its own seeded random state (same seed, same search,
nothing global touched), breeds mixed genomes (floats and categorical indices)
with its own uniform crossover and mutation, keeps the best individuals across
generations (elitism), and optuna is already the dependency of ``OptunaSearchCV``.
DEAP draws from Python's global ``random`` module, which would have to be seeded
(the estimator rule here is never to seed a global generator), needs a
hand-written mutation operator for a mixed float/index genome, and is not elitist
in ``varAnd`` without a hall of fame.
"""

import contextlib
import math
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import ParameterSampler
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from skorch.callbacks import Callback

from ._threads import limit_threads
from ._utils import import_optional

__all__ = [
    "EvolutionarySearchCV",
    "LimitThreads",
    "dask_cluster",
    "vae_optuna_distributions",
    "vae_param_distributions",
]

#: Encoder widths searched by the default spaces: width and depth in one choice.
HIDDEN_LAYER_SIZES = ((64,), (128,), (256,), (128, 64), (256, 128), (512, 256), (256, 128, 64))
BATCH_SIZES = (32, 64, 128, 256)


class _IntRange(NamedTuple):
    low: int
    high: int  # inclusive


class _LogRange(NamedTuple):
    low: float
    high: float


#: The default search space, written once: both functions below translate it.
#: A tuple is a list of choices.
_DEFAULT_SPACE = {
    "n_components": _IntRange(2, 32),
    "hidden_layer_sizes": HIDDEN_LAYER_SIZES,
    "beta": _LogRange(0.1, 2.0),
    "learning_rate": _LogRange(1e-4, 1e-2),
    "batch_size": BATCH_SIZES,
    "kl_warmup_epochs": _IntRange(0, 20),
}

# quantile genes are kept off 0 and 1, where ppf gives -inf / inf (or a - 1 for
# discrete distributions)
_EPS = 1e-9


def vae_param_distributions(prefix=""):
    """Default search space of ``VAETransformer`` as scipy.stats distributions.

    For :class:`~sklearn.model_selection.RandomizedSearchCV`,
    :class:`~sklearn.model_selection.HalvingRandomSearchCV` and
    :class:`EvolutionarySearchCV`. Integer parameters use ``scipy.stats.randint``
    (sampled values are ints), lists are sampled uniformly.

    Parameters
    ----------
    prefix : str, default=""
        Prepended to every name, e.g. ``"vae__"`` for a ``Pipeline`` step named
        ``"vae"``.

    Returns
    -------
    param_distributions : dict
        ``n_components`` (2 to 32), ``hidden_layer_sizes`` (one to three layers,
        64 to 512 wide), ``beta`` (log-uniform 0.1 to 2), ``learning_rate``
        (log-uniform 1e-4 to 1e-2), ``batch_size`` (32 to 256) and
        ``kl_warmup_epochs`` (0 to 20).

    See Also
    --------
    vae_optuna_distributions : The same space as Optuna distributions.

    Examples
    --------
    >>> from sklearn.model_selection import ParameterSampler
    >>> from skvae.model_selection import vae_param_distributions
    >>> space = vae_param_distributions(prefix="vae__")
    >>> sorted(space)[:2]
    ['vae__batch_size', 'vae__beta']
    >>> params = next(iter(ParameterSampler(space, 1, random_state=0)))
    >>> type(params["vae__n_components"])
    <class 'int'>
    """
    from scipy.stats import loguniform, randint

    def translate(spec):
        if isinstance(spec, _IntRange):
            return randint(spec.low, spec.high + 1)
        if isinstance(spec, _LogRange):
            return loguniform(spec.low, spec.high)
        return list(spec)

    return {prefix + name: translate(spec) for name, spec in _DEFAULT_SPACE.items()}


def vae_optuna_distributions(prefix=""):
    """Default search space of ``VAETransformer`` as Optuna distributions.

    For ``optuna_integration.OptunaSearchCV``; the same ranges as
    :func:`vae_param_distributions`. Needs the ``search`` extra.

    ``hidden_layer_sizes`` is a categorical distribution over tuples: fine with
    the in-memory storage that ``OptunaSearchCV`` uses by default, but not
    storable in a database storage (Optuna warns about that at construction;
    the warning is silenced here).

    Parameters
    ----------
    prefix : str, default=""
        Prepended to every name, e.g. ``"vae__"`` for a ``Pipeline`` step named
        ``"vae"``.

    Returns
    -------
    param_distributions : dict of str to optuna.distributions.BaseDistribution

    See Also
    --------
    vae_param_distributions : The same space as scipy.stats distributions.

    Examples
    --------
    >>> from skvae.model_selection import vae_optuna_distributions
    >>> vae_optuna_distributions()["n_components"]
    IntDistribution(high=32, log=False, low=2, step=1)
    """
    distributions = import_optional("optuna.distributions", extra="search",
                                    caller="vae_optuna_distributions")

    def translate(spec):
        if isinstance(spec, _IntRange):
            return distributions.IntDistribution(spec.low, spec.high)
        if isinstance(spec, _LogRange):
            return distributions.FloatDistribution(spec.low, spec.high, log=True)
        return distributions.CategoricalDistribution(spec)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution")
        return {prefix + name: translate(spec) for name, spec in _DEFAULT_SPACE.items()}


# --------------------------------------------------------------------- genome


class _Genome:
    """Maps ``param_distributions`` to a fixed set of Optuna genes and back.

    Gene ``"space"`` picks one dict of a list of dicts; each parameter of dict
    ``i`` has a gene ``"i:name"``: an index for a list (categorical gene) and a
    quantile in [0, 1] for a distribution, mapped through its ``ppf``
    (distributions without ``ppf``, which ``RandomizedSearchCV`` also accepts,
    are sampled with ``rvs`` seeded by the gene). All genes exist in every
    individual, so the genome has a fixed length and NSGA-II breeds all of it.
    """

    def __init__(self, param_distributions, distributions_module):
        spaces = param_distributions
        if isinstance(spaces, dict):
            spaces = [spaces]
        self.spaces = [dict(sorted(space.items())) for space in spaces]
        self.genes = {}
        if len(self.spaces) > 1:
            self.genes["space"] = distributions_module.CategoricalDistribution(
                tuple(range(len(self.spaces))))
        for i, space in enumerate(self.spaces):
            for name, values in space.items():
                if hasattr(values, "rvs"):
                    gene = distributions_module.FloatDistribution(0.0, 1.0)
                else:
                    gene = distributions_module.CategoricalDistribution(
                        tuple(range(len(values))))
                self.genes[f"{i}:{name}"] = gene

    def decode(self, genes):
        """``(params, key)``: the parameters and a hashable identity for them."""
        i = genes.get("space", 0)
        params, key = {}, [i]
        for name, values in self.spaces[i].items():
            gene = genes[f"{i}:{name}"]
            if hasattr(values, "rvs"):
                value = _from_quantile(values, gene)
                key.append(value if isinstance(value, (Integral, Real, str)) else gene)
            else:
                value = values[gene]
                key.append(("index", gene))
            params[name] = value
        return params, tuple(key)


def _from_quantile(distribution, q):
    q = min(max(float(q), _EPS), 1.0 - _EPS)
    if hasattr(distribution, "ppf"):
        value = distribution.ppf(q)
        if _is_discrete(distribution):
            return int(value)
        return float(value)
    # a distribution with only rvs: a reproducible draw determined by the gene
    value = distribution.rvs(random_state=np.random.RandomState(int(q * (2**32 - 1))))
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _is_discrete(distribution):
    from scipy.stats import rv_discrete

    return isinstance(getattr(distribution, "dist", None), rv_discrete)


class EvolutionarySearchCV(BaseSearchCV):
    """Genetic (evolutionary) search over specified parameter distributions.

    A drop-in alternative to :class:`~sklearn.model_selection.RandomizedSearchCV`
    (same ``param_distributions``) that breeds candidates instead of drawing
    them independently: each generation of ``population_size`` candidates is
    bred from the best of the previous ones by Optuna's NSGA-II sampler
    (uniform crossover, mutation by resampling a gene, elitist selection), and
    the whole generation is cross-validated in one call of scikit-learn's
    ``evaluate_candidates``, so ``n_jobs`` and joblib backends (Dask included)
    evaluate a generation in parallel. ``cv_results_``, ``best_params_``,
    ``best_estimator_`` and ``refit`` behave as in the other searches. Needs
    the ``search`` extra (optuna).

    Each parameter is one gene: a list gives an index gene (a categorical
    choice, so lists may hold any objects: tuples, estimators), a scipy.stats
    distribution a quantile gene in [0, 1] mapped through the distribution's
    ``ppf``, so integer distributions such as ``randint`` give Python ints and a
    log-uniform distribution is searched in log scale. A list of dicts adds one
    gene choosing the dict.

    Parameters
    ----------
    estimator : estimator object
        The object to tune; it must provide ``score`` or a ``scoring`` must be
        given.

    param_distributions : dict or list of dicts
        Parameter names (``str``) mapped to lists of values or to distributions
        with ``rvs`` (scipy.stats), as in
        :class:`~sklearn.model_selection.RandomizedSearchCV`.

    population_size : int, default=10
        Candidates per generation (at least 2).

    generations : int, default=5
        Maximum number of generations; at most ``population_size * generations``
        candidates are evaluated.

    scoring : str, callable, list, tuple or dict, default=None
        As in :class:`~sklearn.model_selection.GridSearchCV`. None uses the
        estimator's ``score`` (held-out log-likelihood for ``VAETransformer``
        and ``PCA``). With several metrics, the fitness is the ``refit`` metric.

    n_jobs : int, default=None
        Number of jobs to run in parallel (joblib). ``None`` means 1 unless in a
        :obj:`joblib.parallel_backend` context.

    refit : bool or str, default=True
        Refit the best candidate on the whole dataset. With multimetric
        ``scoring`` it must name the metric that is the fitness.

    cv : int, cross-validation generator or iterable, default=None
        As in :class:`~sklearn.model_selection.GridSearchCV` (5-fold by default).

    n_iter_no_change : int, default=None
        Stop when the best mean test score has not improved for this many
        generations. None runs all ``generations``.

    crossover_prob : float, default=0.9
        Probability that a child is bred by crossover of two parents (else it
        copies one parent before mutation).

    mutation_prob : float, default=None
        Probability of resampling each gene of a child. None uses
        ``1 / number of genes`` (Optuna's default).

    verbose : int, default=0
        Controls the verbosity of the cross-validation (joblib) and, above 0,
        prints one line per generation.

    pre_dispatch : int or str, default="2*n_jobs"
        As in :class:`~sklearn.model_selection.GridSearchCV`.

    random_state : int, RandomState instance or None, default=None
        Seeds the genetic algorithm. An int gives the same candidates, in the
        same order, on every run (and the same ``cv_results_`` when the
        estimator is seeded too). It does not seed the estimator.

    error_score : "raise" or numeric, default=np.nan
        Score of a failed fit. Failed candidates (NaN mean score) are bred from
        as the worst individuals of their generation.

    return_train_score : bool, default=False
        Include training scores in ``cv_results_``.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        One entry per evaluated candidate, in order of evaluation (generation
        by generation), with the keys of ``RandomizedSearchCV.cv_results_`` plus
        ``generation``. A candidate bred again in a later generation with the
        same parameters is not evaluated again: its earlier score is given to
        the genetic algorithm, and it appears once.

    best_estimator_ : estimator
        The best candidate refitted on all data (when ``refit`` is set).

    best_score_ : float
        Mean cross-validated score of the best candidate.

    best_params_ : dict
        Parameters of the best candidate.

    best_index_ : int
        Index of the best candidate in ``cv_results_``.

    scorer_ : function or a dict
        Scorer function(s) used on the held-out data.

    n_splits_ : int
        Number of cross-validation splits.

    refit_time_ : float
        Seconds spent refitting the best candidate.

    multimetric_ : bool
        Whether several metrics were used.

    n_generations_ : int
        Generations run (fewer than ``generations`` after an early stop).

    n_features_in_ : int
        Number of features seen during ``fit`` (when the best estimator
        defines it).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit`` (when defined).

    See Also
    --------
    sklearn.model_selection.RandomizedSearchCV : Independent random candidates.
    optuna.samplers.NSGAIISampler : The genetic algorithm used here.

    Notes
    -----
    NSGA-II (Deb et al., 2002) with a single objective is an elitist genetic
    algorithm: parents are the ``population_size`` best individuals so far,
    chosen by binary tournament. Optuna's implementation is used through
    ask-and-tell; nothing of selection, crossover or mutation is re-implemented
    here.

    References
    ----------
    Deb, K., Pratap, A., Agarwal, S. and Meyarivan, T. (2002). A fast and
    elitist multiobjective genetic algorithm: NSGA-II. IEEE Transactions on
    Evolutionary Computation, 6(2), 182-197.

    Examples
    --------
    >>> from scipy.stats import randint
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from skvae.model_selection import EvolutionarySearchCV
    >>> X, _ = load_digits(return_X_y=True)
    >>> search = EvolutionarySearchCV(PCA(), {"n_components": randint(1, 40)},
    ...                               population_size=4, generations=3,
    ...                               random_state=0).fit(X)
    >>> len(search.cv_results_["params"]) <= 12
    True
    >>> type(search.best_params_["n_components"])
    <class 'int'>
    """

    _parameter_constraints: dict = {
        **BaseSearchCV._parameter_constraints,
        "param_distributions": [dict, list],
        "population_size": [Interval(Integral, 2, None, closed="left")],
        "generations": [Interval(Integral, 1, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "crossover_prob": [Interval(Real, 0, 1, closed="both")],
        "mutation_prob": [Interval(Real, 0, 1, closed="both"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        population_size=10,
        generations=5,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        n_iter_no_change=None,
        crossover_prob=0.9,
        mutation_prob=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
    ):
        self.param_distributions = param_distributions
        self.population_size = population_size
        self.generations = generations
        self.n_iter_no_change = n_iter_no_change
        self.crossover_prob = crossover_prob
        self.mutation_prob = mutation_prob
        self.random_state = random_state
        super().__init__(
            estimator=estimator,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )

    def _run_search(self, evaluate_candidates):
        # the same checks and messages as RandomizedSearchCV, before the extra is
        # needed: a mistake in the space is reported with or without Optuna
        ParameterSampler(self.param_distributions, 1)
        optuna = import_optional("optuna", extra="search", caller="EvolutionarySearchCV")
        genome = _Genome(self.param_distributions, optuna.distributions)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        sampler = optuna.samplers.NSGAIISampler(
            population_size=self.population_size, crossover_prob=self.crossover_prob,
            mutation_prob=self.mutation_prob, seed=seed)
        with _quiet_optuna(optuna):
            study = optuna.create_study(direction="maximize", sampler=sampler)

        fitness_key = None
        seen = {}  # parameter key -> fitness, so a re-bred candidate is not refitted
        best, stale = -math.inf, 0
        self.n_generations_ = 0
        for generation in range(self.generations):
            with _quiet_optuna(optuna):
                trials = [study.ask(genome.genes) for _ in range(self.population_size)]
            decoded = [genome.decode(trial.params) for trial in trials]
            new, new_keys = [], []
            for params, key in decoded:
                if key not in seen and key not in new_keys:
                    new.append(params)
                    new_keys.append(key)
            if new:
                results = evaluate_candidates(
                    new, more_results={"generation": [generation] * len(new)})
                fitness_key = fitness_key or self._fitness_key(results)
                scores = results[fitness_key][-len(new):]
                seen.update(zip(new_keys, (float(s) for s in scores)))
            with _quiet_optuna(optuna):
                for trial, (_, key) in zip(trials, decoded):
                    score = seen[key]
                    # a failed fit (NaN) is the worst individual, not a failed
                    # trial: NSGA-II counts a generation by its completed trials
                    study.tell(trial, score if np.isfinite(score) else -math.inf)
            self.n_generations_ = generation + 1

            generation_best = max((s for s in seen.values() if np.isfinite(s)),
                                  default=-math.inf)
            if self.verbose > 0:
                print(f"[EvolutionarySearchCV] generation {generation}: {len(new)} new "
                      f"candidates, best mean test score {generation_best:.6g}")
            if generation_best > best:
                best, stale = generation_best, 0
            else:
                stale += 1
                if self.n_iter_no_change is not None and stale >= self.n_iter_no_change:
                    break

    def _fitness_key(self, results):
        if "mean_test_score" in results:
            return "mean_test_score"
        if isinstance(self.refit, str):
            return f"mean_test_{self.refit}"
        raise ValueError(
            "EvolutionarySearchCV with multimetric scoring needs refit set to the name of "
            f"the metric to maximise (the fitness); got refit={self.refit!r}."
        )


@contextlib.contextmanager
def _quiet_optuna(optuna):
    """Silence Optuna's per-trial log lines and experimental warnings."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


# ----------------------------------------------------------------- scale-out


@contextlib.contextmanager
def dask_cluster(address=None, *, n_workers=None, threads_per_worker=1, processes=True,
                 **cluster_kwargs):
    """Run the joblib-parallel work inside the block on a Dask cluster.

    Connects a ``distributed.Client`` to ``address``, or, when it is None,
    starts a ``distributed.LocalCluster`` on this machine, and activates
    joblib's ``dask`` backend, so that ``GridSearchCV``,
    ``RandomizedSearchCV``, ``HalvingRandomSearchCV`` and
    :class:`EvolutionarySearchCV` send their fits to the cluster's workers.
    Everything started is closed on exit. Needs the ``dask`` extra.

    Each fit runs in one worker thread. Dask's nanny starts worker processes
    with ``OMP_NUM_THREADS=1`` (its ``distributed.nanny.pre-spawn-environ``
    setting), so a fit uses one PyTorch thread there and the workers do not
    oversubscribe the cores. On GPUs, give each worker its own GPU (one worker
    per GPU, e.g. ``dask_cuda.LocalCUDACluster``, which sets
    ``CUDA_VISIBLE_DEVICES`` per worker); ``device="auto"`` then uses the
    worker's GPU.

    Parameters
    ----------
    address : str, default=None
        Scheduler address of a running cluster, e.g. ``"tcp://10.0.0.1:8786"``.
        None starts a ``LocalCluster``.

    n_workers : int, default=None
        Workers of the local cluster (None: one per core, given
        ``threads_per_worker=1``). Ignored with ``address``.

    threads_per_worker : int, default=1
        Threads (concurrent fits) per local worker. Ignored with ``address``.

    processes : bool, default=True
        Local workers in processes (True) or threads of this process (False;
        starts faster, but the fits then share this process's PyTorch thread
        pool). Ignored with ``address``.

    **cluster_kwargs
        Passed to ``distributed.LocalCluster``.

    Yields
    ------
    client : distributed.Client
        The client connected to the cluster.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skvae.model_selection import dask_cluster
    >>> with dask_cluster(n_workers=2) as client:  # doctest: +SKIP
    ...     search = GridSearchCV(VAETransformer(), {"n_components": [2, 8]}).fit(X)
    """
    distributed = import_optional("distributed", extra="dask", caller="dask_cluster")
    joblib = import_optional("joblib", extra="dask", caller="dask_cluster")
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker,
                processes=processes, dashboard_address=cluster_kwargs.pop(
                    "dashboard_address", None), **cluster_kwargs))
            address = cluster
        client = stack.enter_context(distributed.Client(address))
        stack.enter_context(joblib.parallel_config(backend="dask"))
        yield client


class LimitThreads(Callback):
    """skorch callback capping PyTorch's CPU threads while a fit trains.

    Superseded by ``VAETransformer(n_threads=...)``, which caps the threads of
    every fit and inference call by default (``n_threads="auto"``) and restores
    them also when a fit fails; this callback stays for code written before
    it. ``VAETransformer(callbacks=[LimitThreads(1)])`` trains on one thread,
    like ``VAETransformer(n_threads=1)``, through the same mechanism
    (``skvae._threads.limit_threads``): OpenMP's limit, set with
    ``threadpoolctl`` in the thread that trains, which holds only in that
    thread (so it works in Optuna's and joblib's worker threads) and is lifted
    when training ends.

    Parameters
    ----------
    n_threads : int, default=1
        Threads for the fit.
    """

    def __init__(self, n_threads=1):
        self.n_threads = n_threads

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._limits = contextlib.ExitStack()
        self._limits.enter_context(limit_threads(self.n_threads, device=net.device))

    def on_train_end(self, net, X=None, y=None, **kwargs):
        limits = self.__dict__.pop("_limits", None)
        if limits is not None:
            limits.close()
