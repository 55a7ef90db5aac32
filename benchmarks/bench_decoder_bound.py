"""How precisely can the default decoder fit a manifold when it is *given* the coordinates?

``bench_quality.py`` finds the default VAE far below what a 2-D model of the swiss
rolls could score at k=2, with seeds that disagree. This script separates what a VAE
must learn there: where each row lies on the manifold (the encoder's job, a non-convex
search) and how the manifold sits in the data space (the decoder's and the variances'
job, a regression). It hands the decoder the true 2-D coordinates of each row, the
angle and height of ``sklearn.datasets.make_swiss_roll`` / ``make_s_curve``
(standardized), so that no encoder, posterior noise or KL term is involved, and trains
it as ``VAETransformer(2)`` trains its decoder: the same module, likelihood, batch size,
learning rates and number of Adam steps (the budget of ``max_epochs="auto"``), its
linear path started at the least-squares fit of the data on the coordinates and its
nonlinear residual at zero.

For each data set, seed and learning rate of the per-feature variances it prints the
mean held-out ``log p(x | z_true)`` per row in nats, in the units of the data (the 80/20
split of ``bench_quality.py``), with the variances as learned ("learned") and set to
their optimum for the trained decoder, the mean squared training residual of each
feature ("optimal"). The difference is what the variances lag behind the decoder. The
default VAE's held-out ELBO for the same seeds is printed below.

Run from the repository root::

    python benchmarks/bench_decoder_bound.py             # seeds 0-2, about 2 min on 2 cores
    python benchmarks/bench_decoder_bound.py --seeds 6
"""

import argparse
import time

import numpy as np
import torch
from bench_quality import _cpu_model, _embed
from joblib import Parallel, delayed
from sklearn import datasets
from sklearn.model_selection import train_test_split

from skvae import VAETransformer
from skvae._data import feature_resolution
from skvae._likelihoods import VARIANCE_LR_FACTOR
from skvae._training import AUTO_STEPS, build_module, parameter_groups
from skvae._utils import make_generator

#: name -> (function of random_state giving (X 3-D, angle), embedding dim, noise, seed)
DATASETS = {
    "swiss_roll_50d_0.1": (datasets.make_swiss_roll, 50, 0.1, 1),
    "swiss_roll_50d_0.01": (datasets.make_swiss_roll, 50, 0.01, 1),
    "s_curve_30d_0.05": (datasets.make_s_curve, 30, 0.05, 2),
}

#: the variances' learning rate, as a multiple of the network's: skvae's and before it
FACTORS = (VARIANCE_LR_FACTOR, 1.0)
STEPS = AUTO_STEPS


def load(name):
    """Data as ``bench_quality.py`` makes it, with each row's true 2-D coordinates."""
    make, dim, noise, seed = DATASETS[name]
    X3, angle = make(2000, random_state=0)
    X = _embed(X3, dim, noise, seed=seed)
    Z = np.c_[angle, X3[:, 1]]  # the angle along the roll (or S) and the height
    return train_test_split(X, Z, test_size=0.2, random_state=0)


def fit_decoder(X_train, X_test, Z_train, Z_test, seed, factor):
    """Train the default module's decoder on the true coordinates; held-out log p(x | z).

    Returns the held-out mean with the learned variances and with the optimal ones.
    """
    torch.set_num_threads(1)
    vae = VAETransformer(2, random_state=seed)
    mean, scale = X_train.mean(0), X_train.std(0)
    z_mean, z_scale = Z_train.mean(0), Z_train.std(0)

    def tensor(a):
        return torch.as_tensor(a, dtype=torch.float32)

    x, x_test = tensor((X_train - mean) / scale), tensor((X_test - mean) / scale)
    z, z_test = tensor((Z_train - z_mean) / z_scale), tensor((Z_test - z_mean) / z_scale)
    module = build_module(X_train.shape[1], vae.get_params(), make_generator(seed))
    module.observation.set_scale(scale)
    module.observation.set_resolution(feature_resolution(X_train) / scale)
    # the linear start: least squares of x on z, the residual at zero
    design = np.c_[z.double().numpy(), np.ones(len(z))]
    coef, *_ = np.linalg.lstsq(design, x.double().numpy(), rcond=None)
    residual_var = (x.double().numpy() - design @ coef).var(axis=0)
    with torch.no_grad():
        module.decoder_linear.weight.copy_(tensor(coef[:2].T))
        module.decoder_head.weight.zero_()
        module.decoder_head.bias.copy_(tensor(coef[2]))
        module.observation.set_variance(torch.as_tensor(residual_var))
    # the encoder's parameters get no gradient here, so Adam leaves them alone
    groups = parameter_groups(module, vae.learning_rate)
    groups[0]["lr"] = vae.learning_rate * factor  # the variances, at the factor under study
    optimizer = torch.optim.Adam(groups)
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < STEPS:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), vae.batch_size):
            rows = order[start:start + vae.batch_size]
            loss = -module.log_likelihood(x[rows], z[rows]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == STEPS:
                break
    offset = np.log(scale).sum()  # to the units of X
    with torch.no_grad():
        learned = module.log_likelihood(x_test, z_test).double().mean().item() - offset
        residual = (module.decode(z) - x).square().mean(0).double()
        module.observation.set_variance(residual)
        optimal = module.log_likelihood(x_test, z_test).double().mean().item() - offset
    return learned, optimal


def fit_vae(X_train, X_test, seed):
    torch.set_num_threads(1)
    return VAETransformer(2, random_state=seed).fit(X_train).score(X_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.only is None else args.only.split(",")
    seeds = range(args.seeds)
    start = time.perf_counter()
    splits = {name: load(name) for name in names}
    tasks = [(name, factor, seed) for name in names for factor in FACTORS for seed in seeds]
    decoder = Parallel(n_jobs=args.n_jobs)(
        delayed(fit_decoder)(*splits[name], seed, factor) for name, factor, seed in tasks)
    vae = Parallel(n_jobs=args.n_jobs)(
        delayed(fit_vae)(splits[name][0], splits[name][1], seed)
        for name in names for seed in seeds)

    print("### Decoder given the true coordinates, k=2\n")
    print(f"{_cpu_model()}; torch {torch.__version__}; {args.n_jobs} fits at a time, "
          f"1 thread each; {STEPS:,} steps; seeds 0-{args.seeds - 1}; held-out nats per row, "
          "units of X.\n")
    print("| data | variances' learning rate | learned: by seed | mean | spread | "
          "optimal: mean | lag |")
    print("|---|---|---|---:|---:|---:|---:|")
    results = dict(zip(tasks, decoder))
    for name in names:
        for factor in FACTORS:
            learned = np.array([results[(name, factor, seed)][0] for seed in seeds])
            optimal = np.array([results[(name, factor, seed)][1] for seed in seeds])
            print(f"| {name} | {factor:g} x | {', '.join(f'{v:.1f}' for v in learned)} | "
                  f"{learned.mean():.1f} | {np.ptp(learned):.1f} | {optimal.mean():.1f} | "
                  f"{(optimal - learned).mean():.1f} |")
    print("\nThe default VAE (encoder, KL and all), held-out ELBO:\n")
    print("| data | by seed | mean | spread |")
    print("|---|---|---:|---:|")
    vae = iter(vae)
    for name in names:
        values = np.array([next(vae) for _ in seeds])
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {values.mean():.1f} | "
              f"{np.ptp(values):.1f} |")
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
