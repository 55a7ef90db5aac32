"""
=======================================================
Reconstructions, latent traversals and the 2-D manifold
=======================================================

What has a VAE learned? Three pictures answer it:
:func:`skvae.plotting.plot_reconstructions` (what survives the trip through the
latent space), :func:`skvae.plotting.plot_latent_traversal` (what each latent
variable does to the output) and, for two latent variables, the decoded grid of
the whole 2-D latent space.

You will learn to read these pictures, why a latent dimension of a VAE can end
up doing nothing at all, and how to check which dimensions are used.
"""

# %%
# A VAE with 16 latent dimensions on 80% of the digits.
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skvae import VAETransformer
from skvae.plotting import plot_latent_traversal, plot_reconstructions

X, y = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.2, stratify=y, random_state=0)
vae = VAETransformer(16, random_state=0).fit(X_train)

# %%
# Held-out digits above their reconstructions. The 64 features are shown as 8x8
# images because 64 is a square (pass ``image_shape`` for other layouts; data
# that are not images are drawn as feature profiles). Dark is high, and all
# panels share the originals' value range.
plot_reconstructions(vae, X_test, n_images=8)

# %%
# A VAE need not use all of its latent variables. The KL term pulls each
# posterior towards the prior N(0, 1); a dimension whose posterior mean is the
# same for every image carries no information, and the decoder learns to ignore
# it. The spread of the posterior means over the data tells which dimensions are
# *active*. Here all 16 are: the spreads range from 0.75 to 1.1.
spread = vae.transform(X_train).std(axis=0)
print("std of the posterior means per latent:", np.round(spread, 2))
print("active latents (std > 0.1):", np.flatnonzero(spread > 0.1))

# %%
# Traversals: each row starts from the prior mean (all latents 0) and moves one
# latent variable from -3 to +3 prior standard deviations. The four most active
# dimensions (top rows) change the digit's shape; the two least active (bottom
# rows) change it much less.
order = np.argsort(-spread)
plot_latent_traversal(vae, dims=[*order[:4], *order[-2:]], n_steps=9)

# %%
# With two latent variables the whole latent space fits on one page: a grid of
# decoded points, latent 0 increasing to the right and latent 1 upwards, both
# from -2.5 to +2.5.
vae2 = VAETransformer(2, random_state=0).fit(X_train)
plot_latent_traversal(vae2, n_steps=11, span=2.5)

# %%
# The last figure is the 2-D VAE's map of the digits: neighbouring cells decode
# to similar images and the digits morph continuously into one another, since
# the decoder is a smooth function of the latent point.
