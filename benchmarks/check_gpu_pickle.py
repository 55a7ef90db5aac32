"""Check that a VAETransformer fitted on a GPU loads and runs on a machine without one.

Two steps, on two machines:

``python benchmarks/check_gpu_pickle.py save FOLDER`` (on a CUDA machine)
    fits ``VAETransformer(8, device="cuda", random_state=0)`` on the digits data,
    pickles it to ``FOLDER/vae_cuda.pkl`` and saves what the GPU model gives for
    ``transform``, ``inverse_transform``, ``score_samples`` (K = 1 and K = 100) and
    ``sample`` to ``FOLDER/vae_cuda_outputs.npz``. The same for a model fitted on
    data with missing values (``VAETransformer(4)`` on the standardized breast
    cancer data with 30 % of the entries NaN, its encoder a product of experts),
    called on those rows with their NaN: ``FOLDER/vae_cuda_holes.pkl`` and
    ``FOLDER/vae_cuda_holes_outputs.npz``.

``python benchmarks/check_gpu_pickle.py load FOLDER`` (on a machine without CUDA)
    unpickles the model, checks that its weights are on the CPU and that the same
    calls give the same numbers (float32 GPU and CPU kernels differ in rounding:
    compared with a relative tolerance of 1e-4), and prints a table.

The test suite simulates the second step (``torch.cuda.is_available`` patched to
False); this script is the real thing.
"""

import argparse
import os
import pickle
import sys

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.preprocessing import StandardScaler

from skvae import VAETransformer

CALLS = {
    "transform": lambda est, X: est.transform(X),
    "inverse_transform": lambda est, X: est.inverse_transform(est.transform(X)),
    "score_samples": lambda est, X: est.score_samples(X),
    "score_samples K=100": lambda est, X: est.score_samples(X[:200], n_importance_samples=100),
    "sample": lambda est, X: est.sample(20, random_state=0),
}


def _with_holes():
    """Standardized breast cancer rows with 30 % of the entries NaN (seed 1)."""
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    X[np.random.default_rng(1).random(X.shape) < 0.3] = np.nan
    return X


#: name -> (data, n_components): the models fitted and checked
MODELS = {"vae_cuda": (lambda: load_digits().data, 8), "vae_cuda_holes": (_with_holes, 4)}


def save(folder):
    if not torch.cuda.is_available():
        sys.exit("save needs a CUDA machine")
    os.makedirs(folder, exist_ok=True)
    for name, (data, k) in MODELS.items():
        X = data()
        est = VAETransformer(k, device="cuda", random_state=0).fit(X)
        assert est.device_ == "cuda" and next(est.module_.parameters()).is_cuda
        with open(os.path.join(folder, f"{name}.pkl"), "wb") as f:
            pickle.dump(est, f)
        outputs = {call_name: call(est, X) for call_name, call in CALLS.items()}
        np.savez(os.path.join(folder, f"{name}_outputs.npz"), **outputs)
        # pickling must not move the fitted model off the GPU
        assert next(est.module_.parameters()).is_cuda
        print(f"{name}: fitted on {torch.cuda.get_device_name()} in {est.n_epochs_} epochs; "
              f"held-in score {est.score(X):.2f}; saved to {folder}")


def load(folder):
    return all([_load(folder, name, data()) for name, (data, _) in MODELS.items()])


def _load(folder, name, X):
    with open(os.path.join(folder, f"{name}.pkl"), "rb") as f:
        est = pickle.load(f)
    devices = {p.device.type for p in est.module_.parameters()}
    expected = np.load(os.path.join(folder, f"{name}_outputs.npz"))
    print(f"## {name}\n\nCUDA available here: {torch.cuda.is_available()}; fitted on "
          f"{est.device_!r}; weights now on {sorted(devices)}\n")
    print("| call | shape | max abs. difference GPU vs CPU | max rel. difference |")
    print("|---|---|---:|---:|")
    failed = []
    for name, call in CALLS.items():
        got, want = call(est, X), expected[name]
        diff = np.abs(got - want)
        rel = float(np.max(diff / np.maximum(np.abs(want), 1e-6)))
        print(f"| {name} | {got.shape} | {diff.max():.2e} | {rel:.2e} |")
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            failed.append(name)
    if not torch.cuda.is_available() and devices != {"cpu"}:
        failed.append("weights not on the CPU")
    print("\n" + ("OK: the GPU-fitted model loads and gives the same outputs on the CPU"
                  if not failed else f"FAILED: {failed}") + "\n")
    return not failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["save", "load"])
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    if args.step == "save":
        save(args.folder)
    elif not load(args.folder):
        sys.exit(1)


if __name__ == "__main__":
    main()
