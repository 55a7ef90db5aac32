"""
==================================
Training curves and early stopping
==================================

:func:`skvae.plotting.plot_training_history` draws a fitted VAE's loss per
epoch from ``history_``: the training loss and, with early stopping, the loss
on the held-out validation part, with the epoch whose weights the model kept.

You will learn to read these curves: what the loss is and in which units,
what early stopping does with ``n_iter_no_change``, and how a KL warm-up shows
in the curves.
"""

# %%
# The loss is the negative ELBO per sample in nats, in the units of X, as
# ``history_`` records it (and ``verbose=1`` prints it): the validation curve
# is on the same scale as ``-score``. Early stopping (on
# by default) holds out ``validation_fraction=0.1`` of the training data and
# stops once the validation loss has not improved for ``n_iter_no_change``
# epochs, then restores the best epoch's weights.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skvae import VAETransformer
from skvae.plotting import plot_training_history

X, y = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.2, stratify=y, random_state=0)

patient = VAETransformer(8, learning_rate=3e-3, n_iter_no_change=10,
                         random_state=0).fit(X_train)
impatient = VAETransformer(8, learning_rate=3e-3, n_iter_no_change=2,
                           random_state=0).fit(X_train)
warmup = VAETransformer(8, learning_rate=3e-3, kl_warmup_epochs=30,
                        random_state=0).fit(X_train)

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True, layout="constrained")
for ax, (name, model) in zip(axes, [("n_iter_no_change=10", patient),
                                    ("n_iter_no_change=2", impatient),
                                    ("kl_warmup_epochs=30", warmup)]):
    plot_training_history(model, ax=ax)
    ax.set_title(f"{name}\n{model.n_epochs_} epochs, held-out score "
                 f"{model.score(X_test):.1f}")
axes[0].set_ylim(top=160)

# %%
# All three start from the linear model that ``init="auto"`` fits (here factor
# analysis, a validation loss of about 104 nats), not from random weights, so
# the curves begin low and fall slowly as the nonlinear part is learned. Left:
# the validation loss falls more slowly than the training loss (the gap is
# over-fitting) and flattens out; 10 epochs without a new best ended the fit,
# with the best epoch's weights kept. Middle: a patience of 2 stops a few
# epochs earlier with about the same held-out score: the validation loss is
# that of a moving average of the weights (see "The defaults" in the
# documentation), a smooth curve whose small bumps are rare. Right: during the
# 30 warm-up epochs (grey band) the training loss weights the KL term by less
# than 1, so the curves jump apart and the validation loss (always with the
# full weight, ``beta``) first rises above the linear start, to about 116 nats;
# early stopping only starts watching when the warm-up is over. This fit was
# then also ended by early stopping, 40 epochs (the default patience here)
# after its best epoch, and scored within a nat of the left one, with this
# seed; one seed is not a comparison of settings (see the spread that
# ``python -m skvae.demo`` prints).
#
# The training loss is averaged over an epoch's mini-batches while the weights
# change, with the weights the optimizer steps from; the validation loss is
# computed at the end of the epoch with their moving average, the weights a fit
# keeps: small differences between the two are not over-fitting.
