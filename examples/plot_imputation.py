"""
==================================
Imputing missing values with a VAE
==================================

:class:`~skvae.VAEImputer` fits a :class:`~skvae.VAETransformer` to the
observed entries of a table with holes and fills each missing entry with its
conditional mean given the row's observed entries, as MIWAE does (Mattei &
Frellsen, 2019). This example punches 40 % of the entries out of the breast
cancer data, at random, fills them with the VAE, with scikit-learn's
:class:`~sklearn.impute.IterativeImputer` and with the column means, and
compares the filled values with the truth.

You will learn how to use ``VAEImputer`` like any scikit-learn imputer, how to
measure an imputer's error when you know the truth, and how
``sample_posterior=True`` gives multiple imputations whose spread says how
uncertain each filled value is.
"""

# %%
# Data with holes
# ---------------
# The 569 x 30 breast cancer measurements, standardized so that the errors
# below are in units of each feature's standard deviation (predicting every
# missing entry by its true mean scores 1). Each entry goes missing with
# probability 0.4, independently of everything (missing completely at random,
# MCAR); ``missing`` remembers where, so that the imputations can be scored.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.preprocessing import StandardScaler

from skvae import VAEImputer

data = load_breast_cancer()
X = StandardScaler().fit_transform(data.data)
rng = np.random.RandomState(0)
missing = rng.rand(*X.shape) < 0.4
X_missing = X.copy()
X_missing[missing] = np.nan
print(f"{missing.mean():.1%} of the entries missing, "
      f"{np.count_nonzero(missing.any(axis=1))} of {len(X)} rows with holes")

# %%
# Three imputers
# --------------
# Each is fitted on the data with holes and fills them (``fit_transform``).
# ``VAEImputer`` takes every :class:`~skvae.VAETransformer` parameter; here the
# defaults (``n_components="auto"``: 15 latent dimensions for these 30 features;
# 300 importance samples per row in antithetic pairs).
imputers = {
    "mean (SimpleImputer)": SimpleImputer(strategy="mean"),
    "IterativeImputer": IterativeImputer(max_iter=20, random_state=0),
    "VAEImputer": VAEImputer(random_state=0),
}
filled, errors = {}, {}
for name, imputer in imputers.items():
    start = time.perf_counter()
    filled[name] = imputer.fit_transform(X_missing)
    errors[name] = np.mean((filled[name][missing] - X[missing]) ** 2)
    print(f"{name:21s} MSE on the missing entries {errors[name]:.3f} "
          f"({time.perf_counter() - start:.1f} s)")

# %%
# Observed entries are never changed, by any of the three:
print("observed entries kept:",
      all(np.array_equal(f[~missing], X[~missing]) for f in filled.values()))

# %%
# The fitted model is ``estimator_``, a :class:`~skvae.VAETransformer` that
# itself accepts NaN: its ``score`` is the log-likelihood of each row's
# observed entries (nats per row, standardized units here) and ``transform``
# gives the codes of rows with holes.
vae = imputers["VAEImputer"].estimator_
print(f"codes of the rows with holes: {vae.transform(X_missing).shape}, "
      f"score of their observed entries: {vae.score(X_missing):.1f} nats per row")

# %%
# Multiple imputation
# -------------------
# A conditional mean is one best guess; it hides how uncertain the guess is,
# and a table filled with conditional means has too little variance. With
# ``sample_posterior=True`` every ``transform`` draws the missing entries from
# the model's posterior predictive distribution p(x_mis | x_obs) instead, so
# repeated calls give multiple imputations (Rubin's rules then combine the
# analyses of the completed tables).
sampler = VAEImputer(sample_posterior=True, random_state=0).fit(X_missing)
draws = np.stack([sampler.transform(X_missing) for _ in range(10)])
spread = draws.std(axis=0)[missing]
print(f"10 imputations: mean standard deviation of a filled entry {spread.mean():.2f}; "
      f"their average has MSE {np.mean((draws.mean(axis=0)[missing] - X[missing]) ** 2):.3f}")
inside = np.abs(draws.mean(axis=0)[missing] - X[missing]) <= 2 * spread
print(f"true value within 2 standard deviations of the draws: {inside.mean():.0%}")

# %%
# The figure: left, the error of each imputer; right, one feature's true
# values against the VAE's conditional means, each with the spread (one
# standard deviation) of its 10 multiple imputations. Points on the diagonal
# are perfect imputations; a flat cloud at 0 is what mean imputation gives.
feature = list(data.feature_names).index("mean concavity")
rows = np.flatnonzero(missing[:, feature])
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
names = list(errors)
left.barh(names, [errors[n] for n in names], color=["0.6", "tab:orange", "tab:blue"])
for i, name in enumerate(names):
    left.text(errors[name], i, f" {errors[name]:.3f}", va="center")
left.set_xlabel("MSE on the missing entries (standardized units)")
left.set_xlim(0, 1.25 * max(errors.values()))
left.set_title("Imputation error, 40 % MCAR")
right.errorbar(X[rows, feature], filled["VAEImputer"][rows, feature],
               yerr=draws[:, rows, feature].std(axis=0), fmt="o", ms=3, alpha=0.6,
               elinewidth=0.8, label="VAEImputer (bars: spread of 10 draws)")
right.scatter(X[rows, feature], filled["IterativeImputer"][rows, feature], s=8,
              color="tab:orange", alpha=0.6, label="IterativeImputer")
lims = [X[rows, feature].min() - 0.3, X[rows, feature].max() + 0.3]
right.plot(lims, lims, color="k", lw=0.8)
right.set_xlabel(f"true {data.feature_names[feature]} (standardized)")
right.set_ylabel("imputed")
right.set_title(f"{len(rows)} missing values of one feature")
right.legend(loc="upper left", fontsize=8)

# %%
# On these data the VAE's conditional means are a little closer to the truth
# than the chained linear regressions of ``IterativeImputer`` (most visibly for
# the largest values, right), and both are far better than the column means.
# The multiple imputations are wide where the observed entries of a row say
# little about the missing one and narrow where they pin it down; if they were
# perfectly calibrated, about 95 % of the true values would lie within two of
# their standard deviations (10 draws estimate that spread only roughly).
#
# All of this assumes the holes are missing at random: when the chance that a
# value is missing depends on the value itself (large measurements going
# unrecorded, say), every imputer here is biased; see the
# :doc:`missing data page </missing_data>`.
