"""One search of each kind on the same VAE search space and a comparable budget.

On the digits (75 % training split, seed 0; the 25 % test split is seen by no
search), each search tunes ``VAETransformer(hidden_layer_sizes=(64,),
max_epochs=20, early_stopping=False, random_state=0)`` over ``n_components``,
``learning_rate`` and ``beta`` with 3-fold cross-validation, selecting by
``score`` (held-out log-likelihood), with about 12 candidates each:

- grid: 3 x 2 x 2 = 12 points;
- randomized: 12 draws (``RandomizedSearchCV``);
- halving: 24 draws, 5 -> 10 -> 20 epochs (``HalvingRandomSearchCV``,
  ``resource="max_epochs"``);
- Optuna: 12 TPE trials, pruned epoch by epoch through ``partial_fit``
  (``OptunaSearchCV``, ``MedianPruner``);
- evolutionary: 3 generations of 4 (``EvolutionarySearchCV``);
- grid on Dask: the grid again, on a ``LocalCluster`` of 2 worker processes with
  1 thread each (``skvae.model_selection.dask_cluster``).

It prints one markdown table: the best candidate's held-out test score (refitted
on the training split), its CV score, the number of fits (candidates x folds;
for Optuna trials x folds, pruned trials included; for halving the sum over
rounds) and the epochs trained by all fits together, and the search's wall time.
All but the Dask row run serially (``n_jobs=1``), and every fit uses one
PyTorch thread (``torch.set_num_threads(1)`` here; the Dask workers get
``OMP_NUM_THREADS=1`` from their nanny), so the Dask row's speed-up is that of
two workers, and the timings hold up when other processes share the cores
(with two OpenMP threads per fit, a busy 2-core machine slows training ~4x).
Rows are printed as each search finishes. Run
``python benchmarks/bench_search.py``.
"""

import time
import warnings

import numpy as np
import torch
from scipy.stats import loguniform, randint
from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV,
                                     train_test_split)

from skvae import VAETransformer
from skvae.model_selection import EvolutionarySearchCV, dask_cluster

EPOCHS = 20
CV = 3
GRID = {"n_components": [4, 16, 32], "learning_rate": [1e-3, 1e-2], "beta": [0.5, 1.0]}
SPACE = {"n_components": randint(2, 33), "learning_rate": loguniform(1e-3, 3e-2),
         "beta": loguniform(0.25, 2.0)}


def base():
    return VAETransformer(hidden_layer_sizes=(64,), max_epochs=EPOCHS, early_stopping=False,
                          random_state=0)


def optuna_search():
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna_integration import OptunaSearchCV

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"n_components": IntDistribution(2, 32),
             "learning_rate": FloatDistribution(1e-3, 3e-2, log=True),
             "beta": FloatDistribution(0.25, 2.0, log=True)}
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=4))
    return OptunaSearchCV(base(), space, cv=CV, n_trials=12, enable_pruning=True,
                          max_iter=EPOCHS, study=study, random_state=0)


def count(search):
    """(fits, epochs trained) of a fitted search."""
    if hasattr(search, "trials_"):  # OptunaSearchCV: one partial_fit per epoch
        epochs = sum(len(t.intermediate_values) for t in search.trials_)
        return len(search.trials_) * CV, epochs * CV
    results = search.cv_results_
    fits = len(results["params"]) * CV
    if "n_resources" in results:  # successive halving
        return fits, int(np.sum(results["n_resources"])) * CV
    return fits, fits * EPOCHS


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    X, _ = load_digits(return_X_y=True)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    searches = {
        "grid": lambda: GridSearchCV(base(), GRID, cv=CV),
        "randomized": lambda: RandomizedSearchCV(base(), SPACE, n_iter=12, cv=CV,
                                                 random_state=0),
        "halving (epochs)": lambda: HalvingRandomSearchCV(
            base(), SPACE, resource="max_epochs", min_resources=5, max_resources=EPOCHS,
            factor=2, n_candidates=24, cv=CV, random_state=0),
        "Optuna (TPE + pruning)": optuna_search,
        "evolutionary (NSGA-II)": lambda: EvolutionarySearchCV(
            base(), SPACE, population_size=4, generations=3, cv=CV, random_state=0),
    }
    print("| search | test score | CV score | fits | epochs | wall s |")
    print("|---|---|---|---|---|---|", flush=True)

    def report(name, search, seconds):
        fits, epochs = count(search)
        print(f"| {name} | {search.score(X_test):.1f} | {search.best_score_:.1f} | {fits} "
              f"| {epochs} | {seconds:.0f} |", flush=True)

    for name, make in searches.items():
        start = time.perf_counter()
        search = make().fit(X_train)
        report(name, search, time.perf_counter() - start)
    start = time.perf_counter()
    with dask_cluster(n_workers=2, threads_per_worker=1):
        search = GridSearchCV(base(), GRID, cv=CV).fit(X_train)
    report("grid on Dask LocalCluster (2x1)", search, time.perf_counter() - start)

    default = VAETransformer(random_state=0).fit(X_train).score(X_test)
    print(f"\ntest score = held-out log-likelihood of the refitted best, nats/image; "
          f"default VAETransformer(): {default:.1f}")


if __name__ == "__main__":
    main()
