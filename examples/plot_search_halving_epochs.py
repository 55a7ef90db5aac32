"""
==================================================
Successive halving with training epochs as budget
==================================================

``HalvingRandomSearchCV`` evaluates many candidates on a small budget and gives
more only to the best. With ``resource="max_epochs"`` the budget is the number
of training epochs of ``VAETransformer``: all candidates train for a few
epochs, the better half trains twice as long, and so on, selecting by held-out
log-likelihood (``score``).

You will learn how to make epochs the resource of successive halving, and what
the search spends on each round.
"""

# %%
import time

from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV, train_test_split

from skvae import VAETransformer
from skvae.model_selection import vae_param_distributions

X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

# %%
# Eight candidates from the default space; 4, 8, then 16 epochs. Early stopping
# is off so that ``max_epochs`` is exactly the budget.
space = vae_param_distributions()
space["hidden_layer_sizes"] = [(64,), (128,)]  # small networks: a fast example
search = HalvingRandomSearchCV(
    VAETransformer(early_stopping=False, random_state=0), space,
    resource="max_epochs", min_resources=4, max_resources=16, factor=2,
    n_candidates=8, cv=3, random_state=0)
start = time.perf_counter()
search.fit(X_train)
print(f"halving search: {time.perf_counter() - start:.0f} s")
for round_, (n, epochs) in enumerate(zip(search.n_candidates_, search.n_resources_)):
    print(f"  round {round_}: {n} candidates x {epochs} epochs")

# %%
# The winner, refitted with the full budget, against the default estimator
# (two components, the default budget with early stopping):
print("best:", {k: (float(round(v, 4)) if isinstance(v, float) else v)
                for k, v in search.best_params_.items()})
default = VAETransformer(random_state=0).fit(X_train)
print(f"held-out log-likelihood: best {search.score(X_test):7.1f}, "
      f"default VAETransformer {default.score(X_test):7.1f} nats/image")

# %%
# Successive halving spent 8 x 4 + 4 x 8 + 2 x 16 = 96 epochs per fold, three
# quarters of the 8 x 16 = 128 that eight full-length trials would cost.
