"""
=====================================================
Grid and randomized search over a VAE and a pipeline
=====================================================

``GridSearchCV`` and ``RandomizedSearchCV`` tune ``VAETransformer`` like any
scikit-learn estimator. Without ``scoring`` they select by
:meth:`~skvae.VAETransformer.score`, the held-out log-likelihood in nats per
sample; in a ``Pipeline`` with a classifier, ``scoring="accuracy"`` tunes the
codes for the downstream task instead. The randomized search draws from
:func:`skvae.model_selection.vae_param_distributions`, the default search space
(``prefix="vae__"`` addresses the pipeline step).

You will learn how to search a bare VAE and a VAE inside a pipeline, and how the
best configuration found compares with the default ``VAETransformer`` on
held-out digits.
"""

# %%
# Digits, split into a training set (searched with 3-fold cross-validation) and
# a test set that no search sees. Trials train for 20 epochs without early
# stopping: a small budget that keeps this example under a minute.
import time

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skvae import VAETransformer
from skvae.model_selection import vae_param_distributions

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
base = VAETransformer(hidden_layer_sizes=(128,), max_epochs=20, early_stopping=False,
                      learning_rate=3e-3, random_state=0)

# %%
# Grid search on a bare VAE: no ``scoring``, so held-out log-likelihood.
start = time.perf_counter()
grid = GridSearchCV(base, {"n_components": [8, 16], "learning_rate": [3e-3, 1e-2]}, cv=3)
grid.fit(X_train)
print(f"grid search ({time.perf_counter() - start:.0f} s): best {grid.best_params_}")
# the search trained each candidate for 20 epochs only: the configuration it
# chose, retrained with the default budget (max_epochs and n_iter_no_change "auto",
# early stopping)
default = VAETransformer(random_state=0).fit(X_train)
retrained = clone(grid.estimator).set_params(
    **grid.best_params_, max_epochs="auto", early_stopping=True).fit(X_train)
print(f"  held-out log-likelihood: best as searched {grid.score(X_test):7.1f}, "
      f"best retrained {retrained.score(X_test):7.1f}, "
      f"default VAETransformer {default.score(X_test):7.1f} nats/image")

# %%
# Randomized search in the default space, for a ``Pipeline`` ending in a
# classifier, by accuracy.
pipe = Pipeline([("vae", base), ("clf", LogisticRegression(max_iter=1000))])
space = vae_param_distributions(prefix="vae__")
space.pop("vae__hidden_layer_sizes")  # keep the small network of `base`
start = time.perf_counter()
random = RandomizedSearchCV(pipe, space, n_iter=4, cv=3, scoring="accuracy",
                            random_state=0)
random.fit(X_train, y_train)
default_pipe = Pipeline([("vae", VAETransformer(random_state=0)),
                         ("clf", LogisticRegression(max_iter=1000))]).fit(X_train, y_train)
print(f"randomized search ({time.perf_counter() - start:.0f} s): best "
      + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in random.best_params_.items()))
print(f"  held-out accuracy: best {random.score(X_test, y_test):.3f}, "
      f"default VAETransformer {default_pipe.score(X_test, y_test):.3f}")

# %%
# ``cv_results_`` has one row per candidate; the top three by accuracy:
import pandas as pd  # noqa: E402

table = pd.DataFrame(random.cv_results_).sort_values("rank_test_score")
print(table[["param_vae__n_components", "param_vae__beta", "mean_test_score",
             "std_test_score"]].head(3).to_string(index=False))

# %%
# The default ``VAETransformer`` has two latent dimensions: the searches find
# that more components explain unseen digits far better, and give a classifier
# more to work with.
