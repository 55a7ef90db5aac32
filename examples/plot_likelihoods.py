"""
============================================
Choosing a likelihood: Gaussian or Bernoulli
============================================

``VAETransformer(likelihood="gaussian")`` models real-valued data with a
Gaussian density per feature; ``likelihood="bernoulli"`` models data in [0, 1]
(pixel intensities, binary indicators) with a Bernoulli probability per feature.
This example fits both on the digits and compares them *correctly*.

You will learn how ``score`` changes with the units of the data, why the scores
of a Gaussian and a Bernoulli VAE cannot be compared with each other, and what
to compare instead.
"""

# %%
# Data: the digits have pixel values 0-16. The Bernoulli likelihood needs
# values in [0, 1], so it gets ``X / 16``.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skvae import VAETransformer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0)

# %%
# A change of units changes ``score``
# -----------------------------------
# ``score`` is a log-*density* in the units of X, like ``PCA.score``. Measuring
# the pixels in units of 16 (``X / 16``) divides every coordinate by 16, which
# multiplies a density on the 64-dimensional space by ``16 ** 64``: the score
# rises by ``64 * log(16) = 177.4`` nats although the model is the same. The
# Gaussian VAE standardizes its input, so with the same seed both fits are
# identical and the scores differ by exactly this amount.
gauss = VAETransformer(8, random_state=0).fit(X_train)
gauss_16 = VAETransformer(8, random_state=0).fit(X_train / 16)
print(f"Gaussian VAE, pixels 0-16: score {gauss.score(X_test):8.2f} nats/image")
print(f"Gaussian VAE, pixels 0-1:  score {gauss_16.score(X_test / 16):8.2f} nats/image")
print(f"difference {gauss_16.score(X_test / 16) - gauss.score(X_test):.2f}"
      f" = 64 * log(16) = {64 * np.log(16):.2f}")

# %%
# So compare scores only on data in the same units. That is automatic inside
# one ``GridSearchCV`` (every candidate scores the same X), and it is why a
# preprocessing step that rescales X (a ``StandardScaler`` before the VAE, say)
# makes scores incomparable with those of a pipeline without it.
#
# Gaussian against Bernoulli
# --------------------------
# The Bernoulli VAE's ``score`` is ``sum_j x_j log p_j + (1 - x_j) log(1 - p_j)``.
# For binary data this is a log-*probability* (at most 0); for grey values it is
# the usual cross-entropy, which is not the log of any normalised density on
# [0, 1]^64. Either way it is a different kind of number from the Gaussian's
# log-density, and neither can be converted into the other: the two scores are
# not comparable, whatever the units.
bern = VAETransformer(8, likelihood="bernoulli", random_state=0).fit(X_train / 16)
print(f"Bernoulli VAE, pixels 0-1: score {bern.score(X_test / 16):8.2f} (not comparable)")

# %%
# What *can* be compared is anything measured on the same footing outside the
# likelihood: reconstruction error in one set of units, and how useful the
# codes are for a downstream classifier.
for name, model, scale in [("Gaussian", gauss, 1.0), ("Bernoulli", bern, 16.0)]:
    reconstruction = model.inverse_transform(model.transform(X_test / scale)) * scale
    clf = LogisticRegression(max_iter=2000).fit(model.transform(X_train / scale), y_train)
    print(f"{name:9s}: reconstruction MSE {np.mean((X_test - reconstruction) ** 2):5.2f} "
          f"(pixels 0-16), LogReg accuracy on the codes "
          f"{clf.score(model.transform(X_test / scale), y_test):.3f}")

# %%
# Samples from the prior, decoded: the Gaussian VAE returns the decoder's
# means in pixel units, the Bernoulli VAE the pixel probabilities (times 16
# here, to share the colour scale).
fig, axes = plt.subplots(2, 8, figsize=(9, 2.8), layout="constrained")
models = [("Gaussian", gauss, 1.0), ("Bernoulli", bern, 16.0)]
for row, (name, model, scale) in enumerate(models):
    samples = model.sample(8, random_state=1) * scale
    for ax, image in zip(axes[row], samples):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
fig.suptitle("Decoded samples from the prior")

# %%
# Both likelihoods give usable codes on these grey-level images. Prefer the
# Bernoulli likelihood for data that are (close to) binary or are proportions
# in [0, 1], and the Gaussian one for real-valued measurements; choose between
# them with a criterion both share (reconstruction error in the original
# units, a downstream score), never by comparing their ``score`` values.
