"""
=======================================================
Bayesian search with Optuna, pruning by partial_fit
=======================================================

``optuna_integration.OptunaSearchCV`` runs a Bayesian search (Optuna's TPE
sampler) over :func:`skvae.model_selection.vae_optuna_distributions`, the default
``VAETransformer`` search space as Optuna distributions. With
``enable_pruning=True`` it trains each trial by ``partial_fit`` (one epoch per
call, ``max_iter`` calls), reports the held-out score after each epoch, and stops
trials that fall behind the median of earlier trials at the same epoch.

You will learn how to search a bare VAE with pruning and a ``Pipeline`` (which
has no ``partial_fit``, so no pruning) by accuracy, and how to keep Optuna's
threads (``n_jobs``) from oversubscribing the cores.
"""

# %%
import time
import warnings

import optuna
from optuna_integration import OptunaSearchCV
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skvae import VAETransformer
from skvae.model_selection import vae_optuna_distributions

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# optuna-integration 5.0 uses optuna.terminator, which optuna 4.9+ deprecates
warnings.filterwarnings("ignore", message=".*optuna.terminator", category=FutureWarning)

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)

# %%
# A bare VAE, selected by held-out log-likelihood. Each trial trains up to
# ``max_iter=15`` epochs by ``partial_fit``, one epoch per call, and the median
# pruner stops trials that fall behind; the refit of the best trial uses
# ``fit``, so ``max_epochs`` is set to the same 15. Trials run one after the
# other (``n_jobs=1``): with a seeded sampler the search is reproducible.
# Twenty trials are few for six dimensions, so this search leaves ``beta`` and
# the KL warm-up at their defaults and tunes the size of the model and the
# optimiser.
space = vae_optuna_distributions()
for name in ("beta", "kl_warmup_epochs"):
    space.pop(name)
space["hidden_layer_sizes"] = optuna.distributions.CategoricalDistribution(
    [64, 128])  # an int is one hidden layer: small networks, a fast example
vae = VAETransformer(max_epochs=15, early_stopping=False, random_state=0)
study = optuna.create_study(
    direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3))
search = OptunaSearchCV(vae, space, cv=3, n_trials=20, enable_pruning=True, max_iter=15,
                        n_jobs=1, study=study, random_state=0)
start = time.perf_counter()
search.fit(X_train)
states = [t.state.name for t in search.trials_]
print(f"Optuna, bare VAE ({time.perf_counter() - start:.0f} s): "
      f"{states.count('COMPLETE')} trials complete, {states.count('PRUNED')} pruned")
print("best:", {k: (float(f"{v:.3g}") if isinstance(v, float) else v)
                for k, v in search.best_params_.items()})
# the search trained each candidate for 15 epochs only: the configuration it
# chose, retrained with the default budget (max_epochs and n_iter_no_change "auto",
# early stopping)
default = VAETransformer(random_state=0).fit(X_train)
retrained = clone(search.estimator).set_params(
    **search.best_params_, max_epochs="auto", early_stopping=True).fit(X_train)
print(f"held-out log-likelihood: best as searched {search.score(X_test):7.1f}, "
      f"best retrained {retrained.score(X_test):7.1f}, "
      f"default VAETransformer {default.score(X_test):7.1f} nats/image")

# %%
# A ``Pipeline`` by accuracy: the same space under the step's prefix (a
# ``Pipeline`` has no ``partial_fit``, so no pruning here). ``n_jobs=2`` runs two
# trials as threads of this process: joblib backends do not reach them, and
# each fit could use all cores for PyTorch, so ``n_threads=1`` caps every fit
# at one thread, in the thread that runs it (``n_threads="auto"`` picks one
# thread for models this small anyway).
# The order in which parallel trials finish depends on thread timing and the
# sampler sees that order, so this search can choose differently from run to
# run; use ``n_jobs=1`` where the result must be reproducible.
pipe = Pipeline([("vae", VAETransformer(max_epochs=15, early_stopping=False,
                                        random_state=0, n_threads=1)),
                 ("clf", LogisticRegression(max_iter=1000))])
space = vae_optuna_distributions(prefix="vae__")
space["vae__hidden_layer_sizes"] = optuna.distributions.CategoricalDistribution([64, 128])
start = time.perf_counter()
search = OptunaSearchCV(pipe, space, cv=3, n_trials=6, scoring="accuracy", n_jobs=2,
                        random_state=0).fit(X_train, y_train)
print(f"Optuna, pipeline ({time.perf_counter() - start:.0f} s): best",
      {k: (float(f"{v:.3g}") if isinstance(v, float) else v)
       for k, v in search.best_params_.items()})
default_pipe = Pipeline([("vae", VAETransformer(random_state=0)),
                         ("clf", LogisticRegression(max_iter=1000))]).fit(X_train, y_train)
print(f"held-out accuracy: best {search.score(X_test, y_test):.3f}, "
      f"default VAETransformer {default_pipe.score(X_test, y_test):.3f}")

# %%
# A trap: with ``error_score="raise"``, optuna-integration (4.x, 5.0) turns an
# error raised by a fit into an unrelated ``TypeError``. Keep the default
# ``error_score=np.nan``: failed trials then score NaN, and refitting one
# trial's parameters directly shows the real error, e.g.
# ``clone(search.estimator).set_params(**trial.params).fit(X_train)``.
