"""Time to a converged model: the default ``VAETransformer`` against a hand-written loop.

Seconds per epoch say how fast a loop runs; a user waits for a *converged* model.
For each data set and seed this script fits the default ``VAETransformer(k)``
(early stopping on 10 % of the rows, the linear start, the step-counted budget and
patience) and a hand-written PyTorch loop that trains the same network from the same
kind of start with the same stopping rule:

* the same ``skvae._module.VAEModule`` (default layers), started from the better of
  PCA and factor analysis on the held-out rows (``skvae._init.linear_start``);
* Adam (lr 1e-3, the variances at 5e-3: ``skvae._training.parameter_groups``), batch 128,
  reshuffled every epoch, one reparameterised draw;
* the validation ELBO after every epoch; the starting weights compete as epoch 0;
  stop when ``patience`` epochs (skvae's ``n_iter_no_change="auto"``) brought no
  improvement, or after skvae's ``max_epochs="auto"``; restore the best weights.

For each it prints the seconds until the held-out (validation) loss is within
1 nat of the loss of the weights finally kept ("converged"), the seconds of the
whole fit (the linear start included in both), the epochs, and the ratios. Both run
in this process, one after the other, with the same thread count (skvae's
``n_threads="auto"`` choice for the model, given to the hand loop as well).

Run from the repository root::

    python benchmarks/bench_convergence.py                    # iris, wine, digits; seeds 0-1
    python benchmarks/bench_convergence.py --only digits --seeds 3
"""

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn import datasets
from threadpoolctl import threadpool_limits

from skvae import VAETransformer
from skvae._data import TrainingData, feature_resolution, validation_split
from skvae._init import linear_start
from skvae._losses import RowNoise, elbo
from skvae._module import VAEModule
from skvae._threads import auto_n_threads, step_macs
from skvae._training import parameter_groups, resolve_max_epochs, resolve_n_iter_no_change
from skvae._utils import adam_options

from bench_quality import _cpu_model  # this folder is on sys.path when run as a script

#: name -> (loader, k)
DATASETS = {
    "iris": (lambda: datasets.load_iris().data, 2),
    "wine": (lambda: datasets.load_wine().data, 8),
    "digits": (lambda: datasets.load_digits().data, 8),
}


class Clock(Callback):
    """Seconds from the start of ``fit`` to the end of each epoch, and epoch 0."""

    def __init__(self, start):
        self.start = start

    def on_train_begin(self, net, **kwargs):
        self.start[1] = (net.initial_valid_loss_, time.perf_counter() - self.start[0])

    def on_epoch_end(self, net, **kwargs):
        net.history.record("elapsed", time.perf_counter() - self.start[0])


def skvae_fit(X, k, seed, threads):
    start = [0.0, None]
    est = VAETransformer(k, random_state=seed, n_threads=threads, callbacks=[Clock(start)])
    start[0] = time.perf_counter()
    est.fit(X)
    total = time.perf_counter() - start[0]
    valid = np.array(est.history_[:, "valid_loss"])
    elapsed = np.array(est.history_[:, "elapsed"])
    return _converged(valid, elapsed, total, est.n_epochs_, start[1])


def _converged(valid, elapsed, total, epochs, initial=None):
    """Seconds until the validation loss is within 1 nat of the kept (lowest) one."""
    losses = valid if initial is None else np.concatenate([[initial[0]], valid])
    times = elapsed if initial is None else np.concatenate([[initial[1]], elapsed])
    final = losses.min()
    first = int(np.argmax(losses <= final + 1.0))
    return {"converged_s": float(times[first]), "total_s": total, "epochs": epochs,
            "final": float(final)}


def hand_fit(X, k, seed, threads, max_epochs, patience, batch_size=128):
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    constant = scale == 0
    scale[constant] = np.sqrt(np.mean(scale[~constant] ** 2)) if (~constant).any() else 1.0
    train_rows, valid_rows = validation_split(len(X), 0.1, gen)  # skvae's default fraction
    train = TrainingData(X, mean, scale, "cpu", rows=train_rows)
    valid = TrainingData(X, mean, scale, "cpu", rows=valid_rows)
    with threadpool_limits(threads, user_api="openmp"):
        module = VAEModule(X.shape[1], k, (256, 128)).reset_parameters(gen)
        module.observation.set_scale(scale)
        module.observation.set_resolution(feature_resolution(X) / scale)
        module.set_input_range((X.min(axis=0) - mean) / scale, (X.max(axis=0) - mean) / scale)
        noise = RowNoise(seed, k)
        linear_start(module, "auto", train, valid, noise, seed, gen)
        x_train = train.take(torch.arange(len(train)))
        x_valid = valid.take(torch.arange(len(valid)))
        valid_eps = noise(x_valid, 1)[:, 0]
        offset = float(np.log(scale).sum())
        opt = torch.optim.Adam(parameter_groups(module, 1e-3), **adam_options("cpu"))

        def valid_loss():
            module.eval()
            with torch.no_grad():
                return -elbo(module, x_valid, valid_eps).mean().item() + offset

        best, best_state, misses = valid_loss(), None, 0
        initial = (best, time.perf_counter() - start)
        losses, elapsed = [], []
        for _ in range(max_epochs):
            module.train()
            order = torch.randperm(len(x_train), generator=gen)
            for s in range(0, len(x_train), batch_size):
                x = x_train[order[s:s + batch_size]]
                eps = torch.randn(len(x), k, generator=gen)
                loss = -elbo(module, x, eps).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(valid_loss())
            elapsed.append(time.perf_counter() - start)
            if losses[-1] < best:
                best, best_state, misses = losses[-1], {
                    key: value.clone() for key, value in module.state_dict().items()}, 0
            else:
                misses += 1
                if misses >= patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
    total = time.perf_counter() - start
    return _converged(np.array(losses), np.array(elapsed), total, len(losses), initial)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(DATASETS)

    print(f"### Time to a converged model\n\n{_cpu_model()}, {torch.get_num_threads()} "
          f"threads available; torch {torch.__version__}; load average "
          f"{open('/proc/loadavg').read().split()[0] if platform.system() == 'Linux' else '?'}"
          "; medians over seeds\n")
    print("| data | k | threads | skvae converged s | hand converged s | ratio | "
          "skvae total s | hand total s | ratio | epochs skvae / hand | final skvae / hand |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    VAETransformer(2, max_epochs=1, random_state=0).fit(DATASETS["iris"][0]())  # warm-up
    for name in names:
        loader, k = DATASETS[name]
        X = np.asarray(loader(), dtype=np.float64)
        n_train = len(X) - math.ceil(0.1 * len(X))  # validation_split's rows
        max_epochs = resolve_max_epochs("auto", n_train, 128)
        patience = resolve_n_iter_no_change("auto", n_train, 128)
        threads = auto_n_threads(step_macs(X.shape[1], k, (256, 128), 128),
                                 torch.get_num_threads())
        runs = {"skvae": [], "hand": []}
        for seed in range(args.seeds):
            runs["skvae"].append(skvae_fit(X, k, seed, threads))
            runs["hand"].append(hand_fit(X, k, seed, threads, max_epochs, patience))
        med = {who: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
               for who, rs in runs.items()}
        s, h = med["skvae"], med["hand"]
        print(f"| {name} ({X.shape[0]} x {X.shape[1]}) | {k} | {threads} | "
              f"{s['converged_s']:.2f} | {h['converged_s']:.2f} | "
              f"{s['converged_s'] / h['converged_s']:.2f} | {s['total_s']:.2f} | "
              f"{h['total_s']:.2f} | {s['total_s'] / h['total_s']:.2f} | "
              f"{s['epochs']:.0f} / {h['epochs']:.0f} | {s['final']:.1f} / {h['final']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
