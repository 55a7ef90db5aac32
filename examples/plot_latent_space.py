"""
====================================
Looking at a latent space with t-SNE
====================================

A VAE with more than two latent dimensions cannot be drawn directly.
:func:`skvae.plotting.plot_latent_space` projects its codes (the posterior
means from ``transform``) to two dimensions, with t-SNE by default and PCA on
request, and colours them by a label or by any number.

You will learn what ``method="auto"`` does, how the t-SNE and PCA views of the
same codes differ, and how to colour the points by a continuous quantity.
"""

# %%
# A VAE with 10 latent dimensions, fitted on 80% of the digits; the pictures
# show the 360 held-out digits.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skvae import VAETransformer
from skvae.plotting import plot_latent_space

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0)
vae = VAETransformer(10, random_state=0).fit(X_train)

# %%
# ``method="auto"`` uses t-SNE for more than two components (up to 5000
# samples, PCA beyond, where t-SNE gets slow). Integer labels with at most 20
# values get one colour each and a legend. t-SNE keeps neighbourhoods: each
# digit forms one or two clusters of its own (here the 2s and the 5s come in
# two groups), but the distances between clusters and their sizes mean little.
plot_latent_space(vae, X_test, y_test)

# %%
# ``method="pca"`` shows the first two principal components of the codes: a
# linear view that keeps large distances but lets the classes overlap, since
# ten classes do not fit in two linear directions of a 10-D space.
plot_latent_space(vae, X_test, y_test, method="pca")

# %%
# Any number can colour the points; floats get a colour bar. Here: the total
# ink of each image. Both views can share one figure through ``ax``.
ink = X_test.sum(axis=1)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plot_latent_space(vae, X_test, ink.astype(float), ax=axes[0])
plot_latent_space(vae, X_test, ink.astype(float), method="pca", ax=axes[1])
for ax in axes:
    ax.collections[0].colorbar.set_label("total ink (sum of the 64 pixels)")

# %%
# The last figure shows that ink does not separate the t-SNE clusters (each
# digit comes in light and heavy versions, side by side in its cluster), while
# in the PCA view it shows only a weak trend, rising towards the lower right
# (larger first, smaller second principal component), where the heavy 0s lie
# and away from the light 1s at the top. Colouring by a quantity other than the
# labels is a quick way to see what else the codes encode.
