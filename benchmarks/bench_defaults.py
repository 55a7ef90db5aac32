"""How skvae's default batch size and hidden layers do on held-out data.

Fits ``VAETransformer(n_components=16)`` with skvae's defaults (Gaussian
likelihood, early stopping on a 10 % validation split, ``max_epochs=200``, ...)
except for the batch size and the hidden layer sizes, over the grid
``batch_size`` in (64, 128, 256) x ``hidden_layer_sizes`` in ((128,), (256, 128),
(512, 256), (400,)), on the 80 % stratified training split of the digits data
(seed 0), and prints for the 20 % held-out images:

- ``score``: mean ELBO per image in nats (higher is better), what ``GridSearchCV``
  selects by;
- ``IWAE K=100``: ``score(X_test, n_importance_samples=100)``, a tighter estimate
  of the held-out log-likelihood;
- the epochs early stopping ran and the ``fit`` wall time.

With ``--seeds N`` every cell is fitted with ``random_state`` 0 .. N-1 and the
mean (and the standard deviation of ``score``) is reported. The row of skvae's
current defaults is marked with ``*``. Run ``python benchmarks/bench_defaults.py``
(about 2 minutes per seed on 2 cores; ``--quick`` for a smoke run).
"""

import argparse
import itertools
import statistics
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skvae import VAETransformer

THREADS = 2
BATCH_SIZES = (64, 128, 256)
HIDDEN = ((128,), (256, 128), (512, 256), (400,))


def evaluate(batch_size, hidden, seeds, data, max_epochs):
    X_train, X_test = data
    runs = []
    for seed in seeds:
        est = VAETransformer(16, batch_size=batch_size, hidden_layer_sizes=hidden,
                             max_epochs=max_epochs, random_state=seed)
        start = time.perf_counter()
        est.fit(X_train)
        fit_s = time.perf_counter() - start
        runs.append((est.score(X_test), est.score(X_test, n_importance_samples=100),
                     est.n_epochs_, fit_s))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1,
                        help="random_state 0 .. N-1 for every cell (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: two cells, at most 5 epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)

    X, y = load_digits(return_X_y=True)
    X_train, X_test = train_test_split(X, test_size=0.2, stratify=y, random_state=0)
    defaults = VAETransformer().get_params()
    grid = list(itertools.product(BATCH_SIZES, HIDDEN))
    max_epochs = defaults["max_epochs"]
    if args.quick:
        grid, max_epochs = grid[:2], 5
    seeds = range(args.seeds)

    header = ["batch", "hidden", "score", "IWAE K=100", "epochs", "fit s"]
    if args.seeds > 1:
        header.insert(3, "score sd")
    print(f"# skvae defaults on digits\n\n{len(X_train)} training / {len(X_test)} held-out "
          f"images (stratified, seed 0), n_components=16, {THREADS} threads, "
          f"random_state {', '.join(map(str, seeds))}; scores in nats per image on the "
          f"held-out images (higher is better); `*`: skvae's defaults.\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|", flush=True)
    for batch_size, hidden in grid:
        runs = evaluate(batch_size, hidden, seeds, (X_train, X_test), max_epochs)
        score, iwae, epochs, fit_s = (statistics.mean(col) for col in zip(*runs))
        mark = "*" if (batch_size == defaults["batch_size"]
                       and hidden == tuple(defaults["hidden_layer_sizes"])) else ""
        cells = [f"{batch_size}{mark}", str(hidden), f"{score:.1f}", f"{iwae:.1f}",
                 f"{epochs:.0f}", f"{fit_s:.1f}"]
        if args.seeds > 1:
            cells.insert(3, f"{statistics.stdev(r[0] for r in runs):.1f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
