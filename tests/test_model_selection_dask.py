"""Searches on a Dask cluster give the serial results (needs the ``dask`` extra)."""

import numpy as np
import pytest
from joblib.parallel import get_active_backend
from scipy.stats import randint
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV

from skvae import VAETransformer
from skvae.model_selection import EvolutionarySearchCV, dask_cluster

distributed = pytest.importorskip("distributed")

TINY = dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=64, learning_rate=1e-2,
            early_stopping=False, random_state=0)


def _torch_threads():
    import torch

    return torch.get_num_threads()


def test_grid_search_on_local_cluster_equals_serial(digits):
    """Worker processes, as on a real cluster: the estimator is pickled to them."""
    X, _ = digits
    grid = {"n_components": [2, 4], "learning_rate": [1e-3, 1e-2]}
    serial = GridSearchCV(VAETransformer(**TINY), grid, cv=2).fit(X)
    with dask_cluster(n_workers=2, threads_per_worker=1, processes=True) as client:
        # the nanny starts workers with OMP_NUM_THREADS=1: one torch thread per fit
        assert set(client.run(_torch_threads).values()) == {1}
        on_dask = GridSearchCV(VAETransformer(**TINY), grid, cv=2).fit(X)
        assert len(client.scheduler_info()["workers"]) == 2
    assert on_dask.cv_results_["params"] == serial.cv_results_["params"]
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert on_dask.best_params_ == serial.best_params_


def test_evolutionary_search_on_dask_equals_serial(digits):
    X, _ = digits
    kwargs = dict(population_size=4, generations=2, cv=2, random_state=0)
    space = {"n_components": randint(1, 40)}
    serial = EvolutionarySearchCV(PCA(), space, **kwargs).fit(X)
    with dask_cluster(n_workers=2, processes=False):
        on_dask = EvolutionarySearchCV(PCA(), space, **kwargs).fit(X)
    assert on_dask.cv_results_["params"] == serial.cv_results_["params"]
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_dask_cluster_connects_to_an_address():
    with distributed.LocalCluster(n_workers=1, processes=False,
                                  dashboard_address=None) as cluster:
        with dask_cluster(cluster.scheduler_address) as client:
            assert client.scheduler.address == cluster.scheduler_address
            assert type(get_active_backend()[0]).__name__ == "DaskDistributedBackend"
        assert client.status == "closed"
        assert type(get_active_backend()[0]).__name__ != "DaskDistributedBackend"


def test_partial_fit_ignores_placeholder_y(digits):
    """dask-ml's Incremental passes a placeholder y; partial_fit must not validate it."""
    X, _ = digits
    a = VAETransformer(**TINY).partial_fit(X, y="not an array")
    b = VAETransformer(**TINY).partial_fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
