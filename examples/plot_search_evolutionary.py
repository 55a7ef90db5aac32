"""
=============================================
Evolutionary search over a VAE and a pipeline
=============================================

:class:`skvae.model_selection.EvolutionarySearchCV` is a genetic search with the
interface of ``RandomizedSearchCV``: the same ``param_distributions`` (lists and
scipy.stats distributions), the same ``cv_results_``. Instead of drawing every
candidate independently it breeds each generation from the best candidates so
far (Optuna's NSGA-II), and cross-validates a whole generation at once, so
``n_jobs`` evaluates a generation in parallel.

You will learn how to run it on a bare VAE (by held-out log-likelihood) and on a
pipeline (by accuracy), and how the best score evolves over generations.
"""

# %%
import time

import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skvae import VAETransformer
from skvae.model_selection import EvolutionarySearchCV, vae_param_distributions

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)

# %%
# A bare VAE: 4 generations of 4 candidates, stopping early after 2
# generations without improvement. Trials train 15 epochs.
space = vae_param_distributions()
space["hidden_layer_sizes"] = [(64,), (128,)]  # small networks: a fast example
vae = VAETransformer(max_epochs=15, early_stopping=False, random_state=0)
search = EvolutionarySearchCV(vae, space, population_size=4, generations=4,
                              n_iter_no_change=2, cv=3, n_jobs=2, random_state=0)
start = time.perf_counter()
search.fit(X_train)
print(f"evolutionary search ({time.perf_counter() - start:.0f} s), "
      f"{search.n_generations_} generations, {len(search.cv_results_['params'])} candidates")
scores = search.cv_results_["mean_test_score"]
for g in np.unique(search.cv_results_["generation"]):
    best_so_far = np.nanmax(scores[search.cv_results_["generation"] <= g])
    print(f"  after generation {g}: best CV log-likelihood {best_so_far:7.1f}")
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
# A pipeline by accuracy: lists may hold any objects, here the classifier's
# regularisation next to the VAE's space.
pipe = Pipeline([("vae", VAETransformer(max_epochs=15, early_stopping=False,
                                        random_state=0)),
                 ("clf", LogisticRegression(max_iter=1000))])
space = vae_param_distributions(prefix="vae__")
space["vae__hidden_layer_sizes"] = [(64,), (128,)]
space["clf__C"] = [0.1, 1.0, 10.0]
search = EvolutionarySearchCV(pipe, space, population_size=4, generations=2, cv=3,
                              scoring="accuracy", n_jobs=2, random_state=0)
start = time.perf_counter()
search.fit(X_train, y_train)
print(f"evolutionary search, pipeline ({time.perf_counter() - start:.0f} s): best",
      {k: (float(f"{v:.3g}") if isinstance(v, float) else v)
       for k, v in search.best_params_.items()})
default_pipe = Pipeline([("vae", VAETransformer(random_state=0)),
                         ("clf", LogisticRegression(max_iter=1000))]).fit(X_train, y_train)
print(f"held-out accuracy: best {search.score(X_test, y_test):.3f}, "
      f"default VAETransformer {default_pipe.score(X_test, y_test):.3f}")
