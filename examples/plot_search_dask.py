"""
=======================================
Running searches on a Dask cluster
=======================================

Every scikit-learn search, and :class:`~skvae.model_selection.EvolutionarySearchCV`,
runs its fits through joblib, so joblib's ``dask`` backend sends them to a Dask
cluster. :func:`skvae.model_selection.dask_cluster` starts a
``distributed.LocalCluster`` on this machine (or connects to a running cluster
given its address) and activates that backend for the block. ``partial_fit``
also lets dask-ml's ``Incremental`` train a VAE block by block on a Dask array
that need not fit in memory.

You will learn how to scale a search out with one ``with`` statement, why the
workers do not oversubscribe the cores, and how to train out of core.
"""

# %%
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from skvae import VAETransformer
from skvae.model_selection import EvolutionarySearchCV, dask_cluster, vae_param_distributions


def torch_threads():
    import torch

    return torch.get_num_threads()


# %%
# Two worker processes with one thread each (one fit at a time per worker).
# Dask's nanny starts the workers with ``OMP_NUM_THREADS=1``, so each fit uses
# one PyTorch thread: two concurrent fits on two cores, no oversubscription. On
# a machine with GPUs, use one worker per GPU (``dask_cuda.LocalCUDACluster``)
# so that the workers do not all train on the same device. For a real cluster,
# pass its address: ``dask_cluster("tcp://scheduler:8786")``.
if __name__ == "__main__":  # worker processes re-import this script
    X, _ = load_digits(return_X_y=True)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    vae = VAETransformer(hidden_layer_sizes=(64,), max_epochs=20, early_stopping=False,
                         random_state=0)
    grid = {"n_components": [8, 16], "learning_rate": [3e-3, 1e-2]}
    space = vae_param_distributions()
    space["hidden_layer_sizes"] = [(64,), (128,)]

    start = time.perf_counter()
    with dask_cluster(n_workers=2, threads_per_worker=1) as client:
        print(f"cluster up in {time.perf_counter() - start:.0f} s; torch threads per "
              f"worker: {sorted(client.run(torch_threads).values())}")
        start = time.perf_counter()
        grid_search = GridSearchCV(vae, grid, cv=3).fit(X_train)
        print(f"grid search on Dask: {time.perf_counter() - start:.0f} s, "
              f"best {grid_search.best_params_}")
        start = time.perf_counter()
        evolution = EvolutionarySearchCV(vae, space, population_size=4, generations=2,
                                         cv=3, random_state=0).fit(X_train)
        print(f"evolutionary search on Dask: {time.perf_counter() - start:.0f} s, best",
              {k: (float(f"{v:.3g}") if isinstance(v, float) else v)
               for k, v in evolution.best_params_.items()})

    # %%
    # Each search's best configuration on the held-out test set, next to the
    # default estimator. The Dask results equal the serial ones (the test suite
    # checks it): the backend changes where the fits run, not what they compute.
    default = VAETransformer(random_state=0).fit(X_train)
    print(f"held-out log-likelihood: grid {grid_search.score(X_test):7.1f}, evolutionary "
          f"{evolution.score(X_test):7.1f}, default VAETransformer "
          f"{default.score(X_test):7.1f} nats/image")

    # %%
    # Out-of-core training: dask-ml's ``Incremental`` calls ``partial_fit`` once
    # per block of a Dask array (one epoch over that block), passing a
    # placeholder ``y`` that ``VAETransformer.partial_fit`` ignores. Here the
    # training set is cut into blocks of 256 images and the blocks are passed 10
    # times.
    import dask.array as da
    from dask_ml.wrappers import Incremental

    X_blocks = da.from_array(X_train.astype(np.float32), chunks=(256, 64))
    incremental = Incremental(VAETransformer(16, hidden_layer_sizes=(64,), random_state=0))
    start = time.perf_counter()
    for _ in range(10):
        incremental.partial_fit(X_blocks)
    vae = incremental.estimator_
    print(f"Incremental: {vae.n_epochs_} partial_fit calls in "
          f"{time.perf_counter() - start:.0f} s; held-out log-likelihood "
          f"{vae.score(X_test):7.1f} nats/image")
