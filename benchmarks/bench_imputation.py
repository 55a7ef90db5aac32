"""Imputation error of ``VAEImputer`` against scikit-learn's imputers.

Protocol. Every data set is standardized first (``StandardScaler`` on the complete
data), so that errors are in standardized units: predicting every missing entry by
the feature's true mean scores about 1. Holes are punched into the standardized data
by one of three patterns, with ``np.random.RandomState(seed)``:

* ``mcar20``, ``mcar50``: each entry goes missing independently with probability
  0.2 / 0.5 (missing completely at random). Rows are kept as they come, so some rows
  of the narrow data sets lose every entry;
* ``mnar``: in half of the features (``d // 2``, chosen by the seed) every value
  above the feature's mean goes missing (missing not at random: self-masking, about
  half of each chosen feature, a quarter of all entries).

Every feature keeps at least 2 observed values (entries are put back at random where
fewer remain), so no imputer drops a feature. For each seed (``--seeds``, default 3:
seeds 0-2; the seed draws the holes and seeds every model) each method fills the
holes with ``fit_transform`` and is scored by the mean squared error over the missing
entries, in standardized units. The methods, run on the same holes:

* ``vae``: ``skvae.VAEImputer(random_state=seed, **params)`` with the defaults
  (``--params`` takes a JSON object of VAEImputer parameters): the importance-weighted
  conditional mean of the missing entries given the observed ones;
* ``mean``: ``SimpleImputer(strategy="mean")``;
* ``knn``: ``KNNImputer()`` (5 neighbours, uniform weights);
* ``iterative``: ``IterativeImputer(max_iter=20, random_state=seed)`` (BayesianRidge,
  chained equations, single imputation by the posterior mean);
* ``missforest``: ``IterativeImputer(ExtraTreesRegressor(n_estimators=10,
  random_state=seed), max_iter=5, random_state=seed)``, a missForest-like imputer.
  The original missForest (Stekhoven & Buehlmann 2012) grows 100 random-forest trees
  for up to 10 rounds; 10 extra trees and 5 rounds keep a full run feasible on 2
  cores: one fit on digits at 50 % MCAR takes 40-60 s on one core, the slowest fit of
  the run.

The data sets (``--only``): scikit-learn's iris (150 x 4), wine (178 x 13), diabetes
(442 x 10), breast cancer (569 x 30) and digits (1797 x 64, with 3 constant pixels,
whose errors are 0 for every method), and generated ones: ``linear_gaussian``
(500 x 20 from a 3-factor model with unequal noise, as in bench_quality.py),
``s_curve_30d`` (1500 points of an S-curve embedded linearly in 30 dimensions, noise
0.05: a low-noise 2-D manifold), ``nonlinear_factors`` (1000 x 15: 2 Gaussian factors
through a random one-hidden-layer tanh network, noise 0.1) and ``gaussian_mixture``
(1000 x 12: 4 clusters, each with its own rank-2 covariance plus noise). Nothing is
downloaded.

How to read the first table. One row per (data set, pattern): the missing share, the
mean MSE over seeds of each method, the VAE's worst seed, and three flags: the VAE's
mean beats IterativeImputer's, beats KNN's, and is within 5 % of the best baseline
(VAE <= 1.05 x the lowest of mean, KNN, IterativeImputer, missForest). A second table
gives the seconds of one ``fit_transform`` (fit, then fill the holes) per method and
data set, averaged over patterns and seeds. The anchor line puts breast cancer at 50 %
MCAR next to the numbers quoted in the issue from Mattei & Frellsen (2019, MIWAE):
MIWAE 0.287, missForest about 0.32, MICE (IterativeImputer) about 0.35, mean about
1.03; the target is VAE <= 0.287. Under MNAR every method is biased (the missing values
are the large ones, and no method sees them); the row shows which is hurt least, not
which is right.

``--likelihood`` adds the held-out likelihood with holes: an 80/20 split (seed 0) of
each standardized data set; ``VAETransformer(random_state=seed)`` (default settings,
plus the parameters of ``--params`` that VAETransformer takes) fitted on the training
rows with 50 % MCAR holes and on the complete training rows, and ``PCA`` with as many
components fitted on the mean-imputed training rows (and, for reference, on the
complete ones); each scores the complete held-out rows (``score``, nats per row,
standardized units). "cost of holes" is the VAE's complete minus its holed score.
``PCA, mean-imputed`` shows what happens to a likelihood model that treats filled-in
means as data: its variances shrink and it scores held-out rows badly.

``--downstream`` adds classification after imputation: breast cancer and digits in
their original units, 30 % MCAR holes (seed 0), 5-fold stratified cross-validation
(shuffled, seed 0) of ``Pipeline([imputer, StandardScaler(),
LogisticRegression(max_iter=5000)])`` with VAEImputer, IterativeImputer and
SimpleImputer, of ``HistGradientBoostingClassifier`` (which handles NaN natively), and
of the logistic regression on the complete data (the ceiling); accuracy mean +- std
over the folds.

Run from the repository root::

    python benchmarks/bench_imputation.py            # 9 data sets, 3 patterns, seeds 0-2
    python benchmarks/bench_imputation.py --methods mean,knn,iterative,missforest   # no VAE
    python benchmarks/bench_imputation.py --only breast_cancer --patterns mcar50 --seeds 5
    python benchmarks/bench_imputation.py --params '{"n_components": 8}'
    python benchmarks/bench_imputation.py --likelihood --downstream

Fits run in ``--n-jobs`` worker processes (default 2), each with one PyTorch thread
and one BLAS / OpenMP thread: on 2 cores, two one-thread fits at once are each as fast
as one fit alone.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# this folder is on sys.path when run as a script
from bench_quality import _cpu_model, _embed, _linear_gaussian

#: missForest-like settings (see the module docstring)
FOREST_TREES, FOREST_ROUNDS = 10, 5
#: Rounds of the BayesianRidge IterativeImputer
ITERATIVE_ROUNDS = 20


def _s_curve():
    X, _ = datasets.make_s_curve(1500, random_state=0)
    return _embed(X, 30, 0.05, seed=2)


def _nonlinear_factors():
    """1000 rows, 15 features: 2 Gaussian factors through a random tanh layer."""
    rng = np.random.RandomState(5)
    hidden = np.tanh(rng.randn(1000, 2) @ rng.randn(2, 8) + 0.5 * rng.randn(8))
    return hidden @ rng.randn(8, 15) + 0.1 * rng.randn(1000, 15)


def _gaussian_mixture():
    """1000 rows, 12 features: 4 clusters, each with its own rank-2 covariance."""
    rng = np.random.RandomState(6)
    labels = rng.randint(4, size=1000)
    centers = 3.0 * rng.randn(4, 12)
    loadings = rng.randn(4, 2, 12)
    z = rng.randn(1000, 2)
    X = centers[labels] + np.einsum("nk,nkd->nd", z, loadings[labels])
    return X + 0.3 * rng.randn(1000, 12)


#: name -> loader of the complete data, original units
DATASETS = {
    "iris": lambda: datasets.load_iris().data,
    "wine": lambda: datasets.load_wine().data,
    "diabetes": lambda: datasets.load_diabetes().data,
    "breast_cancer": lambda: datasets.load_breast_cancer().data,
    "digits": lambda: datasets.load_digits().data,
    "linear_gaussian": _linear_gaussian,
    "s_curve_30d": _s_curve,
    "nonlinear_factors": _nonlinear_factors,
    "gaussian_mixture": _gaussian_mixture,
}
PATTERNS = ("mcar20", "mcar50", "mnar")
METHODS = ("vae", "mean", "knn", "iterative", "missforest")
LABELS = {"vae": "VAE", "mean": "mean", "knn": "KNN", "iterative": "Iterative",
          "missforest": "missForest"}
#: relative cost of one fit, to start the slow fits first
_COST = {"vae": 3.0, "mean": 0.01, "knn": 0.2, "iterative": 1.0, "missforest": 6.0}


def _standardized(name):
    return StandardScaler().fit_transform(np.asarray(DATASETS[name](), dtype=np.float64))


def make_mask(X, pattern, seed):
    """Boolean mask of the entries to remove (True = missing); see the docstring."""
    rng = np.random.RandomState(seed)
    n, d = X.shape
    if pattern.startswith("mcar"):
        missing = rng.rand(n, d) < int(pattern[4:]) / 100
    elif pattern == "mnar":
        features = rng.choice(d, size=max(1, d // 2), replace=False)
        missing = np.zeros((n, d), dtype=bool)
        missing[:, features] = X[:, features] > X[:, features].mean(axis=0)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    for j in range(d):  # keep >= 2 observed values in every feature
        short = 2 - np.count_nonzero(~missing[:, j])
        if short > 0:
            missing[rng.choice(np.flatnonzero(missing[:, j]), short, replace=False), j] = False
    return missing


def _with_holes(X, missing):
    X = X.copy()
    X[missing] = np.nan
    return X


def make_imputer(method, seed, params):
    if method == "vae":
        from skvae import VAEImputer  # noqa: PLC0415 (lets the baselines run without it)

        return VAEImputer(**{"random_state": seed, **params})
    if method == "mean":
        return SimpleImputer(strategy="mean")
    if method == "knn":
        return KNNImputer()
    if method == "iterative":
        return IterativeImputer(max_iter=ITERATIVE_ROUNDS, random_state=seed)
    if method == "missforest":
        forest = ExtraTreesRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1)
        return IterativeImputer(estimator=forest, max_iter=FOREST_ROUNDS, random_state=seed)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def _quiet():
    """One thread everywhere, and no convergence chatter from the imputers."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", message=".*[Ee]arly imputation stopping.*")
    return threadpool_limits(1)


def _impute(method, X_true, missing, seed, params):
    with _quiet():
        try:
            imputer = make_imputer(method, seed, params)
            X = _with_holes(X_true, missing)
            start = time.perf_counter()
            X_filled = np.asarray(imputer.fit_transform(X), dtype=np.float64)
            seconds = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 (reported in the table)
            return {"error": f"{type(exc).__name__}: {exc}"}
    if X_filled.shape != X_true.shape or not np.isfinite(X_filled).all():
        return {"error": f"output of shape {X_filled.shape} with "
                         f"{np.count_nonzero(~np.isfinite(X_filled))} non-finite values"}
    return {"mse": float(np.mean((X_filled[missing] - X_true[missing]) ** 2)),
            "observed_changed": not np.allclose(X_filled[~missing], X_true[~missing],
                                                rtol=1e-6, atol=1e-9),
            "seconds": seconds}


def run_imputation(names, patterns, methods, seeds, params, n_jobs):
    rows, tasks = [], []
    for name in names:
        X = _standardized(name)
        for pattern in patterns:
            masks = [make_mask(X, pattern, seed) for seed in range(seeds)]
            rows.append({"data": name, "shape": X.shape, "pattern": pattern,
                         "missing": np.mean(masks), "runs": {m: [] for m in methods}})
            tasks += [(len(rows) - 1, method, X, mask, seed)
                      for method in methods for seed, mask in enumerate(masks)]
    order = sorted(range(len(tasks)),
                   key=lambda i: -tasks[i][2].size * _COST[tasks[i][1]])
    results = Parallel(n_jobs=n_jobs)(
        delayed(_impute)(tasks[i][1], tasks[i][2], tasks[i][3], tasks[i][4], params)
        for i in order)
    for i, result in zip(order, results):
        row, method = tasks[i][:2]
        rows[row]["runs"][method].append(result)
    return rows


def _mean_mse(runs):
    if not runs or any("error" in r for r in runs):
        return np.nan
    return float(np.mean([r["mse"] for r in runs]))


def _f(value, digits=3):
    return "err" if not np.isfinite(value) else f"{value:.{digits}f}"


def _yes(ok):
    return "yes" if ok else "**no**"


def report_imputation(rows, methods):
    baselines = [m for m in methods if m != "vae"]
    has_vae = "vae" in methods
    head = ["data (n x d)", "pattern", "missing %"] + [LABELS[m] for m in baselines]
    align = ["---", "---", "---:"] + ["---:"] * len(baselines)
    if has_vae:
        head += ["VAE", "VAE worst", "VAE < Iterative", "VAE < KNN", "VAE <= 1.05 best"]
        align += ["---:", "---:", ":-:", ":-:", ":-:"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    counts = {"iterative": 0, "knn": 0, "best": 0}
    errors, changed = [], set()
    for row in rows:
        means = {m: _mean_mse(row["runs"][m]) for m in methods}
        for m in methods:
            errors += [f"{row['data']} {row['pattern']} {LABELS[m]}: {r['error']}"
                       for r in row["runs"][m] if "error" in r]
            if any(r.get("observed_changed") for r in row["runs"][m]):
                changed.add(LABELS[m])
        n, d = row["shape"]
        cells = [f"{row['data']} ({n} x {d})", row["pattern"], f"{100 * row['missing']:.0f}"]
        best = min((means[m] for m in baselines if np.isfinite(means[m])), default=np.nan)
        cells += [("**" + _f(means[m]) + "**") if means[m] == best else _f(means[m])
                  for m in baselines]
        if has_vae:
            vae = means["vae"]
            worst = (max(r["mse"] for r in row["runs"]["vae"]) if np.isfinite(vae)
                     else np.nan)
            flags = {"iterative": vae < means.get("iterative", np.nan),
                     "knn": vae < means.get("knn", np.nan),
                     "best": vae <= 1.05 * best}
            known = {"iterative": np.isfinite(means.get("iterative", np.nan)),
                     "knn": np.isfinite(means.get("knn", np.nan)),
                     "best": np.isfinite(best)}
            for key, ok in flags.items():
                counts[key] += bool(ok)
            cells += [_f(vae), _f(worst)]
            cells += [_yes(flags[k]) if np.isfinite(vae) and known[k] else "-"
                      for k in ("iterative", "knn", "best")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean MSE over seeds on the missing entries, standardized units; the "
                 "lowest baseline in bold.")
    if has_vae:
        parts = [f"VAE < {label} on {counts[key]}" for key, label in
                 (("iterative", "IterativeImputer"), ("knn", "KNN")) if key in methods]
        if baselines:
            parts.append(f"VAE within 5 % of the best baseline on {counts['best']}")
        if parts:
            lines.append(f"Of {len(rows)} rows: " + ", ".join(parts) + ".")
    if changed:
        lines.append(f"**Observed entries changed by: {', '.join(sorted(changed))}.**")
    for error in errors[:20]:
        lines.append(f"- error: {error}")
    return "\n".join(lines)


def report_seconds(rows, methods):
    lines = ["| data | " + " | ".join(f"{LABELS[m]} s" for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for name in dict.fromkeys(row["data"] for row in rows):
        cells = []
        for m in methods:
            secs = [r["seconds"] for row in rows if row["data"] == name
                    for r in row["runs"][m] if "seconds" in r]
            cells.append(f"{np.mean(secs):.2f}" if secs else "err")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Seconds of one fit_transform, mean over patterns and seeds.")
    return "\n".join(lines)


#: as quoted in the issue, from Mattei & Frellsen (2019), breast cancer at 50 % MCAR
PUBLISHED = {"MIWAE": 0.287, "missForest": 0.32, "MICE": 0.35, "mean": 1.03}


def anchor(rows, methods):
    for row in rows:
        if row["data"] == "breast_cancer" and row["pattern"] == "mcar50":
            parts = []
            for m in methods:
                mean = _mean_mse(row["runs"][m])
                text = f"{LABELS[m]} {_f(mean)}"
                if m == "vae" and np.isfinite(mean):
                    text += f" (worst seed {_f(max(r['mse'] for r in row['runs'][m]))})"
                parts.append(text)
            published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
            line = (f"Anchor, breast cancer at 50 % MCAR: {', '.join(parts)}; published "
                    f"(Mattei & Frellsen 2019, as quoted in the issue): {published}.")
            if "vae" in methods:
                vae = _mean_mse(row["runs"]["vae"])
                line += f" Target VAE <= 0.287: {_yes(vae <= 0.287)}."
            return line
    return ""


# ---------------------------------------------------------------- likelihood table

def _vae_params(params):
    from skvae import VAETransformer  # noqa: PLC0415

    known = VAETransformer().get_params()
    return {k: v for k, v in params.items() if k in known}


def _likelihood_one(name, X_train, X_test, missing, seed, params):
    from skvae import VAETransformer  # noqa: PLC0415

    with _quiet():
        vae_params = {"random_state": seed, **_vae_params(params)}
        result = {"data": name}
        try:
            holes = VAETransformer(**vae_params).fit(_with_holes(X_train, missing))
            result["vae_holes"] = holes.score(X_test)
        except Exception as exc:  # noqa: BLE001
            result["error"] = f"{type(exc).__name__}: {exc}"
        full = VAETransformer(**vae_params).fit(X_train)
        result["vae_complete"] = full.score(X_test)
        k = full.n_components
        mean_filled = SimpleImputer().fit_transform(_with_holes(X_train, missing))
        result["pca_mean_imputed"] = PCA(k).fit(mean_filled).score(X_test)
        result["pca_complete"] = PCA(k).fit(X_train).score(X_test)
        result["k"] = k
    return result


def run_likelihood(names, seeds, params, n_jobs):
    tasks = []
    for name in names:
        X = _standardized(name)
        X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)
        tasks += [(name, X_train, X_test, make_mask(X_train, "mcar50", seed), seed)
                  for seed in range(seeds)]
    return Parallel(n_jobs=n_jobs)(delayed(_likelihood_one)(*task, params) for task in tasks)


def report_likelihood(results):
    lines = ["| data (n_train x d) | k | VAE, 50 % holes | worst seed | VAE, complete | "
             "cost of holes | PCA, mean-imputed | PCA, complete | VAE holes > PCA mean-imp. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:-:|"]
    errors = []
    for name in dict.fromkeys(r["data"] for r in results):
        runs = [r for r in results if r["data"] == name]
        errors += [f"{name}: {r['error']}" for r in runs if "error" in r]
        holes = np.array([r.get("vae_holes", np.nan) for r in runs])
        complete = np.mean([r["vae_complete"] for r in runs])
        pca_mean = np.mean([r["pca_mean_imputed"] for r in runs])
        n, d = _standardized(name).shape
        lines.append(
            f"| {name} ({int(round(0.8 * n))} x {d}) | {runs[0]['k']} | {_f(holes.mean(), 1)} | "
            f"{_f(holes.min(), 1)} | {_f(complete, 1)} | {_f(complete - holes.mean(), 1)} | "
            f"{_f(pca_mean, 1)} | {_f(runs[0]['pca_complete'], 1)} | "
            f"{_yes(holes.mean() > pca_mean) if np.isfinite(holes.mean()) else '-'} |")
    lines.append("")
    lines.append("Held-out score (nats per complete held-out row, standardized units), mean "
                 "over seeds; cost of holes = complete - holes.")
    lines += [f"- error: {e}" for e in errors[:20]]
    return "\n".join(lines)


# ---------------------------------------------------------------- downstream table

DOWNSTREAM = {"breast_cancer": datasets.load_breast_cancer,
              "digits": datasets.load_digits}


def _classifier(method, seed, params):
    if method == "hgb":
        return HistGradientBoostingClassifier(random_state=seed)
    logreg = LogisticRegression(max_iter=5000)
    if method == "complete":
        return Pipeline([("scale", StandardScaler()), ("clf", logreg)])
    imputer = {"vae": lambda: make_imputer("vae", seed, params),
               "iterative": lambda: make_imputer("iterative", seed, params),
               "mean": lambda: make_imputer("mean", seed, params)}[method]()
    return Pipeline([("impute", imputer), ("scale", StandardScaler()), ("clf", logreg)])


def _downstream_one(method, X, y, train, test, seed, params):
    with _quiet():
        try:
            start = time.perf_counter()
            model = _classifier(method, seed, params).fit(X[train], y[train])
            return {"accuracy": model.score(X[test], y[test]),
                    "seconds": time.perf_counter() - start}
        except Exception as exc:  # noqa: BLE001
            return {"error": f"{type(exc).__name__}: {exc}"}


DOWNSTREAM_LABELS = {"vae": "VAEImputer + LogReg", "iterative": "IterativeImputer + LogReg",
                     "mean": "SimpleImputer(mean) + LogReg", "hgb": "HistGradientBoosting (NaN)",
                     "complete": "LogReg, complete data"}


def run_downstream(methods, params, n_jobs, seed=0):
    chosen = [m for m in ("vae", "iterative", "mean") if m in methods] + ["hgb", "complete"]
    tasks = []
    for name, loader in DOWNSTREAM.items():
        X_true, y = loader(return_X_y=True)
        X_true = np.asarray(X_true, dtype=np.float64)
        X = _with_holes(X_true, make_mask(X_true, "mcar30", seed))
        folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y)
        for train, test in folds:
            tasks += [(name, m, X_true if m == "complete" else X, y, train, test)
                      for m in chosen]
    results = Parallel(n_jobs=n_jobs)(
        delayed(_downstream_one)(m, X, y, train, test, seed, params)
        for _, m, X, y, train, test in tasks)
    return chosen, [(t[0], t[1], r) for t, r in zip(tasks, results)]


def report_downstream(chosen, results):
    names = list(DOWNSTREAM)
    lines = ["| method | " + " | ".join(f"{n} accuracy" for n in names) + " | fit s |",
             "|---|" + "---:|" * (len(names) + 1)]
    errors = []
    for m in chosen:
        cells, secs = [], []
        for name in names:
            runs = [r for n, mm, r in results if n == name and mm == m]
            errors += [f"{name} {m}: {r['error']}" for r in runs if "error" in r]
            acc = [r["accuracy"] for r in runs if "accuracy" in r]
            secs += [r["seconds"] for r in runs if "seconds" in r]
            cells.append(f"{np.mean(acc):.3f} +- {np.std(acc):.3f}" if len(acc) == len(runs)
                         else "err")
        seconds = f"{np.mean(secs):.1f}" if secs else "err"
        lines.append(f"| {DOWNSTREAM_LABELS[m]} | " + " | ".join(cells) + f" | {seconds} |")
    lines.append("")
    lines.append("30 % MCAR holes (seed 0) in the original units; 5-fold stratified CV "
                 "(shuffled, seed 0), accuracy mean +- std over the folds; fit s: mean "
                 "seconds of one fold's fit over both data sets.")
    lines += [f"- error: {e}" for e in errors[:20]]
    return "\n".join(lines)


def _split(value, allowed, what):
    chosen = list(allowed) if value is None else value.split(",")
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--patterns", default=None,
                        help=f"comma-separated, from {','.join(PATTERNS)} (default: all)")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, from {','.join(METHODS)} (default: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--params", default="{}",
                        help="JSON of VAEImputer parameters (default: none, the defaults)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--likelihood", action="store_true",
                        help="also the held-out likelihood with holes")
    parser.add_argument("--downstream", action="store_true",
                        help="also cross-validated classification after imputation")
    parser.add_argument("--no-imputation", action="store_true",
                        help="skip the imputation table (with --likelihood / --downstream)")
    args = parser.parse_args(argv)
    names = _split(args.only, DATASETS, "data sets")
    patterns = _split(args.patterns, PATTERNS, "patterns")
    methods = _split(args.methods, METHODS, "methods")
    params = json.loads(args.params)
    start = time.perf_counter()
    print(f"### skvae imputation benchmark\n\n{_cpu_model()}, {os.cpu_count()} cores; torch "
          f"{torch.__version__}; {args.n_jobs} fits at a time, 1 thread each; VAEImputer "
          f"parameters: {params or 'defaults'}; seeds 0-{args.seeds - 1}; missForest: "
          f"{FOREST_TREES} extra trees, {FOREST_ROUNDS} rounds.\n")
    if not args.no_imputation:
        rows = run_imputation(names, patterns, methods, args.seeds, params, args.n_jobs)
        print(report_imputation(rows, methods))
        print("\n" + report_seconds(rows, methods))
        line = anchor(rows, methods)
        if line:
            print("\n" + line)
    if args.likelihood:
        results = run_likelihood(names, args.seeds, params, args.n_jobs)
        print("\n#### Held-out likelihood with holes (80/20 split, 50 % MCAR in the "
              "training rows)\n")
        print(report_likelihood(results))
    if args.downstream:
        chosen, results = run_downstream(methods, params, args.n_jobs)
        print("\n#### Classification after imputation\n")
        print(report_downstream(chosen, results))
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
