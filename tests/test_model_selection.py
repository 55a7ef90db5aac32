"""Tests of skvae.model_selection and of the searches used with VAETransformer."""

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import loguniform, randint
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (GridSearchCV, HalvingRandomSearchCV, ParameterSampler,
                                     RandomizedSearchCV)
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skvae import VAETransformer
from skvae.model_selection import (EvolutionarySearchCV, dask_cluster, vae_optuna_distributions,
                                   vae_param_distributions)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY = dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=64, learning_rate=1e-2,
            early_stopping=False, random_state=0)

# PCA searches on the 200-image digits fixture draw n_components below this: with
# 100 training rows per fold, PCA's noise variance reaches 0 above ~45 components
# (pixels constant in a fold) and its held-out score is -inf, which sklearn's
# searches rank last with a "non-finite test scores" warning.
PCA_FINITE = 40

#: EvolutionarySearchCV runs on Optuna's NSGA-II sampler (the "search" extra, which
#: the test extra installs; a machine without it, such as a GPU image, skips these)
requires_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                     reason="EvolutionarySearchCV needs optuna")


@pytest.fixture
def spy_batches(monkeypatch):
    """Record the candidate lists that EvolutionarySearchCV hands to evaluate_candidates."""
    calls = []
    run_search = EvolutionarySearchCV._run_search

    def spying(self, evaluate_candidates):
        def evaluate(candidates, *args, **kwargs):
            calls.append(list(candidates))
            return evaluate_candidates(candidates, *args, **kwargs)
        return run_search(self, evaluate)

    monkeypatch.setattr(EvolutionarySearchCV, "_run_search", spying)
    return calls


# ------------------------------------------------------------ EvolutionarySearchCV


@requires_optuna
def test_evolutionary_search_same_seed_same_results(digits):
    X, _ = digits
    space = {"n_components": randint(2, 8), "learning_rate": loguniform(1e-3, 1e-1)}

    def run(seed):
        return EvolutionarySearchCV(VAETransformer(**TINY), space, population_size=3,
                                    generations=2, cv=2, random_state=seed).fit(X)

    a, b, c = run(0), run(0), run(1)
    assert a.cv_results_["params"] == b.cv_results_["params"]
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"],
                                  b.cv_results_["mean_test_score"])
    assert a.best_params_ == b.best_params_
    assert a.cv_results_["params"] != c.cv_results_["params"]


@requires_optuna
def test_evolutionary_search_value_types(digits):
    X, _ = digits
    space = {"n_components": randint(1, 30), "tol": loguniform(1e-3, 1e-1),
             "svd_method": ["lapack", "randomized"]}
    search = EvolutionarySearchCV(FactorAnalysis(max_iter=20), space, population_size=4,
                                  generations=2, cv=2, random_state=0).fit(X)
    for params in search.cv_results_["params"]:
        assert type(params["n_components"]) is int and 1 <= params["n_components"] < 30
        assert type(params["tol"]) is float and 1e-3 <= params["tol"] <= 1e-1
        assert params["svd_method"] in ("lapack", "randomized")


@requires_optuna
def test_evolutionary_search_lists_of_objects(digits):
    """Tuples and estimators in lists, and a list of dicts, as RandomizedSearchCV takes."""
    X, _ = digits
    pipe = Pipeline([("reduce", PCA())])
    space = [{"reduce": [PCA(4), FactorAnalysis(4, max_iter=20)]},
             {"reduce": [VAETransformer(4, **TINY)],
              "reduce__hidden_layer_sizes": [(8,), (8, 4)]}]
    search = EvolutionarySearchCV(pipe, space, population_size=6, generations=2, cv=2,
                                  random_state=0).fit(X)
    seen = set()
    for params in search.cv_results_["params"]:
        seen.add(type(params["reduce"]).__name__)
        if "reduce__hidden_layer_sizes" in params:
            assert isinstance(params["reduce"], VAETransformer)
            assert params["reduce__hidden_layer_sizes"] in [(8,), (8, 4)]
    assert "VAETransformer" in seen and len(seen) >= 2
    assert seen <= {"PCA", "FactorAnalysis", "VAETransformer"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # the best step is refitted, and the objects in the space were not fitted
    assert hasattr(search.best_estimator_.named_steps["reduce"], "n_features_in_")
    assert not hasattr(space[0]["reduce"][0], "components_")


@requires_optuna
def test_evolutionary_search_one_batch_per_generation(digits, spy_batches):
    X, _ = digits
    search = EvolutionarySearchCV(PCA(), {"n_components": randint(1, PCA_FINITE)},
                                  population_size=5, generations=3, cv=2,
                                  random_state=0).fit(X)
    assert search.n_generations_ == 3
    # one evaluate_candidates call per generation, holding that generation's
    # new candidates, in the order of cv_results_
    generation = search.cv_results_["generation"]
    assert len(spy_batches) == len(np.unique(generation))
    assert all(1 <= len(batch) <= 5 for batch in spy_batches)
    assert [p for batch in spy_batches for p in batch] == search.cv_results_["params"]
    assert np.all(np.diff(generation) >= 0)
    # a candidate is evaluated once: no duplicate parameters in cv_results_
    values = [p["n_components"] for p in search.cv_results_["params"]]
    assert len(values) == len(set(values))


@requires_optuna
def test_evolutionary_search_stops_without_improvement(digits, spy_batches):
    X, _ = digits
    # one possible candidate: every later generation repeats it, the best never improves
    search = EvolutionarySearchCV(PCA(), {"n_components": [5]}, population_size=4,
                                  generations=10, n_iter_no_change=2, cv=2,
                                  random_state=0).fit(X)
    assert search.n_generations_ == 3
    assert len(spy_batches) == 1  # duplicates reuse their score, nothing refitted
    assert search.cv_results_["params"] == [{"n_components": 5}]

    full = EvolutionarySearchCV(PCA(), {"n_components": [5]}, population_size=4,
                                generations=4, cv=2, random_state=0).fit(X)
    assert full.n_generations_ == 4


@requires_optuna
def test_evolutionary_search_improves_on_first_generation(digits):
    X, _ = digits
    search = EvolutionarySearchCV(PCA(), {"n_components": randint(1, PCA_FINITE)},
                                  population_size=4, generations=6, cv=2,
                                  random_state=0).fit(X)
    scores = search.cv_results_["mean_test_score"]
    first = search.cv_results_["generation"] == 0
    assert search.best_score_ > scores[first].max()


@requires_optuna
def test_evolutionary_search_n_jobs(digits):
    X, _ = digits
    space = {"n_components": randint(2, 6)}
    kwargs = dict(population_size=2, generations=2, cv=2, random_state=0)
    serial = EvolutionarySearchCV(VAETransformer(**TINY), space, **kwargs).fit(X)
    parallel = EvolutionarySearchCV(VAETransformer(**TINY), space, n_jobs=2, **kwargs).fit(X)
    assert serial.cv_results_["params"] == parallel.cv_results_["params"]
    np.testing.assert_allclose(serial.cv_results_["mean_test_score"],
                               parallel.cv_results_["mean_test_score"])


@requires_optuna
def test_evolutionary_search_pipeline_accuracy(digits):
    X, y = digits
    pipe = Pipeline([("vae", VAETransformer(**TINY)),
                     ("clf", LogisticRegression(max_iter=200))])
    space = {"vae__n_components": randint(2, 10), "clf__C": loguniform(0.01, 10)}
    search = EvolutionarySearchCV(pipe, space, population_size=3, generations=2, cv=2,
                                  scoring="accuracy", random_state=0).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores >= 0) & (scores <= 1))
    assert search.best_score_ == scores.max()
    assert search.score(X, y) == pytest.approx(search.best_estimator_.score(X, y))


@requires_optuna
def test_evolutionary_search_failed_fits(digits):
    X, _ = digits
    # n_components > n_features fails to fit
    space = {"n_components": [3, 500]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)
        search = EvolutionarySearchCV(PCA(), space, population_size=4, generations=2, cv=2,
                                      random_state=0).fit(X)
    scores = dict(zip([p["n_components"] for p in search.cv_results_["params"]],
                      search.cv_results_["mean_test_score"]))
    assert np.isnan(scores[500])
    assert search.best_params_ == {"n_components": 3}

    with pytest.raises(ValueError, match="n_components"):
        EvolutionarySearchCV(PCA(), {"n_components": [500]}, population_size=2,
                             generations=1, cv=2, error_score="raise").fit(X)


@requires_optuna
def test_evolutionary_search_multimetric(digits):
    X, y = digits
    pipe = Pipeline([("pca", PCA()), ("clf", LogisticRegression(max_iter=200))])
    space = {"pca__n_components": randint(1, 20)}
    scoring = {"acc": "accuracy", "nll": "neg_log_loss"}
    search = EvolutionarySearchCV(pipe, space, population_size=4, generations=2, cv=2,
                                  scoring=scoring, refit="nll", random_state=0).fit(X, y)
    nll = search.cv_results_["mean_test_nll"]
    assert search.best_index_ == np.argmax(nll)
    assert "mean_test_acc" in search.cv_results_

    with pytest.raises(ValueError, match="refit set to the name"):
        EvolutionarySearchCV(pipe, space, population_size=2, generations=1, cv=2,
                             scoring=scoring, refit=False).fit(X, y)


@pytest.mark.parametrize("params, error, match", [
    (dict(population_size=1), InvalidParameterError, "population_size"),
    (dict(generations=0), InvalidParameterError, "generations"),
    (dict(n_iter_no_change=0), InvalidParameterError, "n_iter_no_change"),
    (dict(mutation_prob=2.0), InvalidParameterError, "mutation_prob"),
    (dict(param_distributions="n_components"), InvalidParameterError,
     "param_distributions"),
    (dict(param_distributions={"n_components": 3}), TypeError, "n_components"),
])
def test_evolutionary_search_validates_parameters(digits, params, error, match):
    kwargs = dict(param_distributions={"n_components": [2, 3]}, population_size=2,
                  generations=1, cv=2)
    kwargs.update(params)
    with pytest.raises(error, match=match):
        EvolutionarySearchCV(PCA(), **kwargs).fit(digits[0])


# ------------------------------------------------------------------ search spaces


def test_default_scipy_space_is_valid(digits):
    X, _ = digits
    space = vae_param_distributions()
    assert set(space) == {"n_components", "hidden_layer_sizes", "beta", "learning_rate",
                          "batch_size", "kl_warmup_epochs"}
    for params in ParameterSampler(space, 4, random_state=0):
        assert type(params["n_components"]) is int
        assert type(params["kl_warmup_epochs"]) is int
        vae = VAETransformer(max_epochs=1, early_stopping=False, random_state=0)
        vae.set_params(**params).fit(X[:64])
        assert np.isfinite(vae.score(X[:64]))
    prefixed = vae_param_distributions(prefix="vae__")
    assert set(prefixed) == {"vae__" + name for name in space}


def test_default_optuna_space_is_valid(digits):
    optuna = pytest.importorskip("optuna")
    X, _ = digits
    space = vae_optuna_distributions()
    assert set(space) == set(vae_param_distributions())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        params = study.ask(space).params
        vae = VAETransformer(max_epochs=1, early_stopping=False, random_state=0)
        vae.set_params(**params).fit(X[:64])
        assert np.isfinite(vae.score(X[:64]))
    assert set(vae_optuna_distributions("vae__")) == {"vae__" + name for name in space}
    # the two spaces have the same ranges and choices
    for name, scipy_values in vae_param_distributions().items():
        optuna_values = space[name]
        if isinstance(optuna_values, optuna.distributions.CategoricalDistribution):
            assert list(optuna_values.choices) == scipy_values
        else:
            assert scipy_values.support() == (optuna_values.low, optuna_values.high)


@pytest.mark.parametrize("module, call", [
    ("optuna", lambda X: EvolutionarySearchCV(PCA(), {"n_components": [2]}, cv=2).fit(X)),
    ("optuna", lambda X: vae_optuna_distributions()),
    ("distributed", lambda X: dask_cluster().__enter__()),
])
def test_missing_extra_names_pip_command(monkeypatch, digits, module, call):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    monkeypatch.setitem(sys.modules, module + ".distributions", None)
    extra = "search" if module == "optuna" else "dask"
    with pytest.raises(ImportError, match=rf'pip install "skvae\[{extra}\]"'):
        call(digits[0])


# -------------------------------------------------------- sklearn's own searches


def test_grid_and_randomized_search_select_by_log_likelihood(digits):
    X, _ = digits
    grid = GridSearchCV(VAETransformer(**TINY), {"n_components": [2, 6]}, cv=2).fit(X)
    for i, params in enumerate(grid.cv_results_["params"]):
        vae = clone(VAETransformer(**TINY)).set_params(**params)
        half = X[:100], X[100:]
        # fold 0 of KFold(2): trained on the second half, scored on the first
        expected = vae.fit(half[1]).score(half[0])
        assert grid.cv_results_["split0_test_score"][i] == pytest.approx(expected)
    random = RandomizedSearchCV(VAETransformer(**TINY), vae_param_distributions(), n_iter=2,
                                cv=2, random_state=0).fit(X)
    assert np.isfinite(random.best_score_)


def test_pca_vs_vae_search_picks_vae():
    """The extension of sklearn's "model selection with probabilistic PCA and FA"."""
    X, _ = load_digits(return_X_y=True)
    pipe = Pipeline([("reduce", PCA())])
    vae = VAETransformer(hidden_layer_sizes=(64,), max_epochs=20, batch_size=64,
                         learning_rate=3e-3, early_stopping=False, random_state=0)
    search = GridSearchCV(pipe, {"reduce": [PCA(), vae], "reduce__n_components": [16]},
                          cv=3).fit(X)
    scores = dict(zip([type(p["reduce"]).__name__ for p in search.cv_results_["params"]],
                      search.cv_results_["mean_test_score"]))
    assert isinstance(search.best_params_["reduce"], VAETransformer)
    assert scores["VAETransformer"] > scores["PCA"] + 5  # nats per sample


def test_halving_search_on_epochs(digits):
    X, _ = digits
    search = HalvingRandomSearchCV(
        VAETransformer(**{**TINY, "max_epochs": 1}), {"n_components": randint(2, 10)},
        resource="max_epochs", min_resources=1, max_resources=4, factor=2, n_candidates=4,
        cv=2, random_state=0).fit(X)
    assert search.n_resources_ == [1, 2, 4]
    assert search.n_candidates_ == [4, 2, 1]
    assert search.best_estimator_.n_epochs_ == 4


def test_optuna_search_pruning_bare_vae(digits):
    """OptunaSearchCV prunes a bare VAE through partial_fit, one epoch a step.

    The pruner prunes every odd-numbered trial after its first step, whatever the
    scores: the test is about the wiring (intermediate values, pruned trials, the
    refit), and does not depend on which trial a median rule happens to stop,
    which follows the last digits of trained scores (another CPU, another order).
    """
    optuna = pytest.importorskip("optuna")
    OptunaSearchCV = pytest.importorskip("optuna_integration").OptunaSearchCV
    X, _ = digits

    class PruneOddTrials(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number % 2 == 1 and trial.last_step is not None

    space = {"n_components": optuna.distributions.IntDistribution(2, 8)}
    study = optuna.create_study(direction="maximize", pruner=PruneOddTrials(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        search = OptunaSearchCV(VAETransformer(**{**TINY, "max_epochs": 3}), space, cv=2,
                                n_trials=6, enable_pruning=True, max_iter=3,
                                random_state=0, study=study).fit(X)
    # one partial_fit (one epoch) per step, reported as an intermediate value
    complete = [t for t in search.trials_ if t.state.name == "COMPLETE"]
    pruned = [t for t in search.trials_ if t.state.name == "PRUNED"]
    assert [t.number for t in complete] == [0, 2, 4]
    assert [t.number for t in pruned] == [1, 3, 5]
    assert all(len(t.intermediate_values) == 3 for t in complete)
    assert all(len(t.intermediate_values) == 1 for t in pruned)
    assert all(np.isfinite(list(t.intermediate_values.values())).all()
               for t in search.trials_)
    # the refit uses fit, trained for max_epochs (set it to max_iter)
    assert search.best_estimator_.n_epochs_ == 3


def test_optuna_search_pipeline_accuracy(digits):
    optuna = pytest.importorskip("optuna")
    OptunaSearchCV = pytest.importorskip("optuna_integration").OptunaSearchCV
    X, y = digits
    pipe = Pipeline([("vae", VAETransformer(**TINY)),
                     ("clf", LogisticRegression(max_iter=200))])
    space = vae_optuna_distributions("vae__")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        search = OptunaSearchCV(pipe, space, cv=2, n_trials=2, scoring="accuracy",
                                random_state=0).fit(X, y)
    assert 0 <= search.best_score_ <= 1
    assert set(search.best_params_) == set(space)


def test_optuna_search_error_score_raise_trap(digits):
    """optuna-integration 4.x/5.0 turns a fit's ValueError into a TypeError.

    Documented in docs/model_selection.rst with the way around it: keep the
    default error_score=np.nan and refit a failed trial's parameters directly.
    """
    optuna = pytest.importorskip("optuna")
    OptunaSearchCV = pytest.importorskip("optuna_integration").OptunaSearchCV
    X, _ = digits
    space = {"likelihood": optuna.distributions.CategoricalDistribution(["bernoulli"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError):
            OptunaSearchCV(VAETransformer(**TINY), space, cv=2, n_trials=1,
                           error_score="raise", random_state=0).fit(X)
        search = OptunaSearchCV(VAETransformer(**TINY), space, cv=2, n_trials=1,
                                refit=False, random_state=0).fit(X)
    failed = search.trials_[0]
    assert np.isnan(failed.user_attrs["mean_test_score"])
    with pytest.raises(ValueError, match="needs X in"):
        clone(search.estimator).set_params(**failed.params).fit(X)


_THREADS_SCRIPT = """
import warnings, numpy as np, optuna, torch
from optuna_integration import OptunaSearchCV
from skorch.callbacks import Callback
from skvae import VAETransformer
from skvae.model_selection import LimitThreads

class Record(Callback):
    def on_epoch_begin(self, net, **kwargs):
        SEEN.add(torch.get_num_threads())

warnings.simplefilter("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)
X = np.random.RandomState(0).rand(64, 5)
space = {"n_components": optuna.distributions.IntDistribution(1, 3)}
for cap in (False, True):
    SEEN = set()
    callbacks = [LimitThreads(1), Record()] if cap else [Record()]
    # n_threads: all the caller has, as before n_threads="auto" capped tiny fits itself
    vae = VAETransformer(hidden_layer_sizes=(4,), max_epochs=1, early_stopping=False,
                         n_threads=torch.get_num_threads(), callbacks=callbacks,
                         random_state=0)
    OptunaSearchCV(vae, space, cv=2, n_trials=4, n_jobs=2, refit=False).fit(X)
    print(sorted(SEEN))
print(torch.get_num_threads())
"""


def test_limit_threads_caps_torch_in_optuna_threads():
    """OptunaSearchCV(n_jobs=2) fits in threads; LimitThreads caps torch in each."""
    pytest.importorskip("optuna_integration")
    # a fresh process: conftest.py calls torch.set_num_threads, which overrides
    # OpenMP's per-thread limit
    out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parents[1]).stdout.split("\n")
    uncapped, capped, default = out[0], out[1], int(out[2])
    assert uncapped == str([default])
    assert capped == "[1]"
