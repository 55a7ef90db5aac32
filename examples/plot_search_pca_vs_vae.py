"""
=====================================================
Choosing between PCA and a VAE by held-out likelihood
=====================================================

scikit-learn's example "Model selection with Probabilistic PCA and Factor
Analysis" picks a linear model by cross-validated log-likelihood. A
``VAETransformer``'s ``score`` is the same quantity (an average log-likelihood in
nats per sample, in the units of the data), so the VAE joins the same search:
one ``Pipeline`` step is swapped in the grid, ``{"reduce": [PCA(), VAE], ...}``,
and ``cv_results_`` compares the two directly.

You will learn how to put estimators of different kinds in one grid, and that on
the digits a VAE with 16 latent dimensions explains unseen images much better
than PCA with 16 components.
"""

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skvae import VAETransformer

X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

# %%
# One grid, two kinds of model, three sizes. The VAE trains for 30 epochs: a
# small budget, enough to beat PCA. (``FactorAnalysis`` would fit in the same grid,
# but two pixels of the digits are always 0, where its noise variance collapses
# and its held-out likelihood is meaningless.)
vae = VAETransformer(hidden_layer_sizes=(128,), max_epochs=30, early_stopping=False,
                     learning_rate=3e-3, random_state=0)
grid = {"reduce": [PCA(), vae],
        "reduce__n_components": [2, 8, 16]}
start = time.perf_counter()
search = GridSearchCV(Pipeline([("reduce", PCA())]), grid, cv=3).fit(X_train)
print(f"{len(search.cv_results_['params'])} candidates in "
      f"{time.perf_counter() - start:.0f} s")

results = pd.DataFrame({
    "model": [type(p["reduce"]).__name__ for p in search.cv_results_["params"]],
    "n_components": search.cv_results_["param_reduce__n_components"].astype(int),
    "cv log-likelihood": search.cv_results_["mean_test_score"],
})
table = results.pivot(index="n_components", columns="model", values="cv log-likelihood")
print(table.round(1).to_string())

# %%
# The best candidate, refitted on the training set, on the held-out test set,
# next to PCA with the same number of components and the default VAE:
best = search.best_params_
k = best["reduce__n_components"]
print(f"best: {type(best['reduce']).__name__} with n_components={k}")
print(f"held-out log-likelihood: best {search.score(X_test):7.1f}, "
      f"PCA({k}) {PCA(k).fit(X_train).score(X_test):7.1f}, default VAETransformer "
      f"{VAETransformer(random_state=0).fit(X_train).score(X_test):7.1f} nats/image")

# %%
# Per number of components, the search's choice is the highest curve.
fig, ax = plt.subplots(figsize=(6, 4))
for model in table.columns:
    ax.plot(table.index, table[model], marker="o", label=model)
ax.set(xlabel="n_components", ylabel="CV log-likelihood (nats/image)",
       title="One grid search over PCA and a VAE")
ax.legend()
fig.tight_layout()

# %%
# The figure shows the cross-validated log-likelihood of each model against its
# number of latent dimensions: all are in the same units, so the grid search can
# rank them. The VAE is above PCA at every size, by 60-70 nats per image, and
# even with this short budget (30 epochs per trial) it does better with every
# added component, so the search picks the 16-component VAE.
