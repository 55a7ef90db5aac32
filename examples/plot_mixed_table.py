"""
=====================================================
A mixed table: text, two-valued and real columns
=====================================================

Real tables mix real columns with text ones. :class:`~skvae.VAETransformer`
takes such a DataFrame as it is: with the default ``likelihood="auto"`` each
column gets a likelihood from its dtype (a softmax over the categories of a
text or category column, a Bernoulli for a column with two values, a Gaussian
for a real one), and the log-likelihood of a row is the sum over its cells.
This example fits one to the Palmer penguins (333 birds: species, island and
sex as text, four body measurements and the year as numbers), plots the codes,
and fills a copy of the table with holes in every column.

You will learn how to read the resolved likelihoods (``likelihoods_``), that
``inverse_transform`` and ``sample`` give back a DataFrame with the fitted
columns, dtypes and categories, and how :class:`~skvae.VAEImputer` fills text
holes with categories.
"""

# %%
# The table
# ---------
# ``palmerpenguins`` ships the data (``pip install palmerpenguins``). The rows
# with a missing value are dropped here, so that the holes made below can be
# scored against the truth.
import matplotlib.pyplot as plt
import numpy as np
from palmerpenguins import load_penguins

from skvae import VAEImputer, VAETransformer

penguins = load_penguins().dropna().reset_index(drop=True)
penguins = penguins.astype({"species": "category", "island": "category", "sex": "category"})
print(penguins.dtypes)

# %%
# Codes of a mixed table
# ----------------------
# No encoder in front: the DataFrame goes in as it is. ``likelihoods_`` says
# how each column is modelled; ``sex`` has two categories, so it gets a
# Bernoulli likelihood. ``score`` is the mean log-likelihood of a row in nats:
# the densities of its real cells (in their units) plus the log probabilities
# of its text cells.
vae = VAETransformer(n_components=2, random_state=0).fit(penguins)
print(vae.likelihoods_)
print(f"score: {vae.score(penguins):.2f} nats per row")
codes = vae.transform(penguins)

fig, ax_codes = plt.subplots(figsize=(5.5, 4.2))
for species in penguins["species"].cat.categories:
    rows = (penguins["species"] == species).to_numpy()
    ax_codes.scatter(codes[rows, 0], codes[rows, 1], s=10, label=species)
ax_codes.set(xlabel="code 1", ylabel="code 2", title="Codes of the penguin table")
ax_codes.legend(title="species")
plt.show()

# %%
# The three species, which the model sees as one of its columns, fall apart in
# the latent space.

# %%
# A DataFrame out
# ---------------
# Decoding gives the same columns back, with their dtypes and categories: a
# decoded text cell is its most probable category, and in ``sample`` the text
# cells are draws.
print(vae.inverse_transform(codes[:3]))
print(vae.sample(3, random_state=0))

# %%
# Filling holes in every column
# -----------------------------
# A fifth of the cells go missing at random (NaN in every column, text ones
# included). :class:`~skvae.VAEImputer` fills each text hole with its most
# probable category given the row's observed cells, and the real holes with
# their conditional means; the observed cells and the dtypes stay as they
# were (``year``, integers, became floats when holes were punched in it).
rng = np.random.RandomState(0)
holes = rng.rand(*penguins.shape) < 0.2
holey = penguins.mask(holes)
filled = VAEImputer(random_state=0).fit_transform(holey)
print("dtypes kept:", filled.dtypes.equals(holey.dtypes), "holes left:", filled.isna().sum().sum())

text = ["species", "island", "sex"]
real = [c for c in penguins.columns if c not in text]
error = {c: float((filled[c] != penguins[c])[holes[:, i]].mean())
         for i, c in enumerate(penguins.columns) if c in text}
nrmse = {c: float(np.sqrt(((filled[c] - penguins[c])[holes[:, i]] ** 2).mean())
                  / penguins[c].std())
         for i, c in enumerate(penguins.columns) if c in real}
names = list(error) + list(nrmse)
fig, ax_fill = plt.subplots(figsize=(6.5, 3.6))
ax_fill.barh(names, list(error.values()) + list(nrmse.values()),
             color=["tab:orange"] * len(error) + ["tab:blue"] * len(nrmse))
ax_fill.set(xlabel="error rate (text) / RMSE in standard deviations (real)",
            title="VAEImputer on 20 % holes")
fig.tight_layout()
plt.show()

# %%
# The bars show how well the imputer filled the holes: the share of text holes
# given a wrong category (orange) and the error of the real ones in units of
# each column's spread (blue). The filled table has the dtypes of the original.
