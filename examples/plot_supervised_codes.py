"""
==========================================
Codes shaped by labels: ``target_weight``
==========================================

By default a :class:`~skvae.VAETransformer` ignores ``y``, as
:class:`~sklearn.decomposition.PCA` does: its codes keep what describes X best,
whether or not it tells the classes apart. With ``target_weight > 0``,
``fit(X, y)`` also trains a linear model of the label given the code, so the
codes place the classes apart; rows labelled -1 (or NaN for a continuous target)
train the model of X only (semi-supervised learning). ``transform`` still
encodes X alone, and ``score`` is still the log-likelihood of X.

You will see the 2-D codes of the digits without labels, with every label and
with 10 % of the labels, and a grid search over ``target_weight`` in a
classification pipeline.
"""

# %%
# Three fits on 80 % of the digits; the pictures show the 360 held-out digits.
# The semi-supervised fit keeps 10 % of each class's labels and marks the
# others -1, scikit-learn's convention for unlabelled rows.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skvae import VAETransformer
from skvae.plotting import plot_latent_space

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0)
rng = np.random.RandomState(0)
y_semi = np.where(rng.rand(len(y_train)) < 0.1, y_train, -1)

fits = {
    "no labels (target_weight=0)": VAETransformer(2, random_state=0).fit(X_train),
    "all labels (target_weight=0.5)": VAETransformer(
        2, target_weight=0.5, random_state=0).fit(X_train, y_train),
    f"{(y_semi != -1).sum()} labels, the rest -1": VAETransformer(
        2, target_weight=0.5, random_state=0).fit(X_train, y_semi),
}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
for ax, (title, vae) in zip(axes, fits.items()):
    plot_latent_space(vae, X_test, y_test, ax=ax)
    ax.set_title(f"{title}\nheld-out score {vae.score(X_test):.1f} nats")

# %%
# Without labels the classes that look alike (3, 5, 8, 9) overlap in the
# middle. With every label the classes spread out around the centre, each
# towards a direction of its own (the geometry of a linear softmax on the
# code), and the held-out score drops by a few percent: the codes now serve
# the labels as well as X. With 10 % of the labels the picture moves less:
# the encoder places the labelled rows, and the unlabelled ones follow only as
# far as they resemble them (their predicted classes are also made confident,
# entropy minimization). Few labels help these 2-D codes a little; label
# spreading on the raw features remains the better classifier there (see
# ``benchmarks/bench_supervision.py``).
#
# Accuracy of a logistic regression on the held-out codes, trained on the
# labelled training rows' codes:
for title, vae in fits.items():
    labelled = y_semi != -1 if "rest -1" in title else slice(None)
    clf = LogisticRegression(max_iter=1000).fit(vae.transform(X_train)[labelled],
                                                y_train[labelled])
    print(f"{title:32s} {clf.score(vae.transform(X_test), y_test):.3f}")

# %%
# ``target_weight`` is a hyperparameter like the others. In a ``Pipeline`` the
# search passes ``y`` to the VAE's ``fit`` (as it does for
# :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis`), and the
# pipeline's ``score`` is the classifier's accuracy.
# Two folds and half the default budget of optimizer steps keep the example
# quick.
pipe = Pipeline([("vae", VAETransformer(2, max_epochs=90, random_state=0)),
                 ("clf", LogisticRegression(max_iter=1000))])
search = GridSearchCV(pipe, {"vae__target_weight": [0.0, 0.5]}, cv=2)
search.fit(X_train, y_train)
for weight, accuracy in zip(search.cv_results_["param_vae__target_weight"],
                            search.cv_results_["mean_test_score"]):
    print(f"target_weight={weight}: cross-validated accuracy {accuracy:.3f}")
print(f"held-out accuracy of the best pipeline: {search.score(X_test, y_test):.3f}")
