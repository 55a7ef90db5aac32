"""n_threads: PyTorch's CPU threads during fit and inference (skvae/_threads.py).

tests/conftest.py calls ``torch.set_num_threads(1)``, so the tests' threads have
one thread to start with; the tests that need more set an OpenMP limit of 2
around the call, as a caller with two cores would have.
"""

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed, parallel_backend
from numpy.testing import assert_allclose
from skorch.callbacks import Callback
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_info, threadpool_limits

import skvae._vae
from skvae import VAETransformer
from skvae._threads import (MACS_PER_THREAD, auto_n_threads, fit_work, forward_macs,
                            limit_threads, step_macs)
from skvae.model_selection import LimitThreads

# device="cpu": the threads are the CPU's (a GPU fit leaves them alone)
SMALL = dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=32, early_stopping=False,
             random_state=0, device="cpu")


@pytest.fixture(autouse=True)
def torch_thread_initialised():
    # In a process where torch.set_num_threads was called (conftest.py), a
    # thread's first PyTorch call sets that thread's OpenMP limit to that
    # count, undoing a limit set before it: make that call before any limit.
    torch.get_num_threads()


def openmp_threads():
    """OpenMP's limit in the calling thread, as threadpoolctl reads it."""
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"}


class Record(Callback):
    """Records the threads seen at each epoch and inside each backward pass."""

    def initialize(self):
        self.seen_ = set()
        self.openmp_ = set()
        return self

    def on_train_begin(self, net, **kwargs):
        def hook(grad):  # runs inside the backward pass
            self.seen_.add(torch.get_num_threads())
        self.handle_ = net.module_.decoder_head.weight.register_hook(hook)

    def on_epoch_begin(self, net, **kwargs):
        self.seen_.add(torch.get_num_threads())
        self.openmp_ |= openmp_threads()

    def on_train_end(self, net, **kwargs):
        self.handle_.remove()


class Fail(Callback):
    def on_epoch_begin(self, net, **kwargs):
        raise RuntimeError("boom")


#: what each Keep callback saw, by key: fit copies its callbacks, so they cannot
#: hand back what they recorded through an attribute
RECORDED = {}


class Keep(Record):
    def __init__(self, key=None):
        self.key = key

    def on_train_end(self, net, **kwargs):
        super().on_train_end(net, **kwargs)
        RECORDED[self.key] = (self.seen_, self.openmp_)


def seen_in_fit(X, **params):
    """The threads that a fit's epochs and backward passes saw, and OpenMP's limits."""
    key = object().__repr__()  # unique while RECORDED holds it
    VAETransformer(**{**SMALL, **params, "callbacks": [Keep(key)]}).fit(X)
    return RECORDED.pop(key)


# ------------------------------------------------------------------- the policy

def test_auto_policy_one_thread_per_unit_of_work_capped():
    assert auto_n_threads(0, 8) == 1
    assert auto_n_threads(MACS_PER_THREAD - 1, 8) == 1
    assert auto_n_threads(3 * MACS_PER_THREAD, 8) == 3
    assert auto_n_threads(10**15, 8) == 8  # never more than the caller has
    assert auto_n_threads(10**15, 1) == 1


def test_work_estimate_counts_forward_and_backward():
    # 4 -> 3 -> 2 encoder (head 3 -> 2*2), decoder 2 -> 3 -> 4, linear paths 2 * 4*2
    assert forward_macs(4, 2, (3,)) == 4 * 3 + 3 * 4 + 2 * 3 + 3 * 4 + 2 * 4 * 2
    assert step_macs(4, 2, (3,), 10) == 3 * 10 * forward_macs(4, 2, (3,))
    # a tiny model gets one thread; MNIST-sized work gets all the caller has
    assert auto_n_threads(step_macs(5, 2, (8,), 32), 16) == 1
    assert auto_n_threads(step_macs(784, 8, (256, 128), 512), 16) > 1
    # the batch is at most the data; unreadable shapes leave the fit's checks to raise
    assert fit_work(np.zeros((10, 4)), 2, (3,), 128) == step_macs(4, 2, (3,), 10)
    assert fit_work([[0.0] * 4] * 10, 2, 3, 128) == step_macs(4, 2, (3,), 10)
    assert fit_work(object(), 2, (3,), 128) == 0


def test_limit_threads_restores_also_when_the_block_raises():
    with threadpool_limits(2, user_api="openmp"):
        with limit_threads(1) as n:
            assert n == torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), limit_threads(1):
            raise RuntimeError
        assert torch.get_num_threads() == 2
        with limit_threads("auto", work=10**15) as n:  # capped at the caller's 2
            assert n == torch.get_num_threads() == 2


def test_limit_threads_leaves_a_gpu_alone():
    # the name alone decides: no GPU is needed to check that nothing changes
    with threadpool_limits(2, user_api="openmp"):
        with limit_threads(1, device="cuda:0") as n:
            assert n is None and torch.get_num_threads() == 2


# ------------------------------------------------------------------ the estimator

def test_n_threads_in_get_params_and_default_auto():
    assert VAETransformer().get_params()["n_threads"] == "auto"
    assert VAETransformer(n_threads=3).get_params()["n_threads"] == 3


@pytest.mark.parametrize("value", [0, -1, 1.5, "all", None, "2"])
def test_invalid_n_threads_raises(blobs, value):
    X, _ = blobs
    with pytest.raises(InvalidParameterError, match="'n_threads' parameter"):
        VAETransformer(n_threads=value, **SMALL).fit(X)


def test_fit_applies_n_threads_and_restores(blobs):
    X, _ = blobs
    with threadpool_limits(2, user_api="openmp"):
        seen, openmp = seen_in_fit(X, n_threads="auto")  # tiny model: one thread
        assert seen == openmp == {1}
        assert torch.get_num_threads() == 2
        seen, openmp = seen_in_fit(X, n_threads=1)
        assert seen == openmp == {1}
        assert torch.get_num_threads() == 2
    # an int is the user's choice, also above what the caller has (1 here)
    assert torch.get_num_threads() == 1
    seen, openmp = seen_in_fit(X, n_threads=3)
    assert seen == openmp == {3}
    assert torch.get_num_threads() == 1


def test_fit_that_raises_restores_threads(blobs):
    X, _ = blobs
    with threadpool_limits(2, user_api="openmp"):
        vae = VAETransformer(**{**SMALL, "n_threads": 1, "callbacks": [Fail()]})
        with pytest.raises(RuntimeError, match="boom"):
            vae.fit(X)
        assert torch.get_num_threads() == 2
        assert openmp_threads() == {2}


def test_partial_fit_applies_n_threads(blobs):
    X, _ = blobs
    vae = VAETransformer(**{**SMALL, "n_threads": 2, "callbacks": [Keep("partial")]})
    vae.partial_fit(X)
    assert RECORDED.pop("partial")[0] == {2}
    assert torch.get_num_threads() == 1


def test_inference_applies_n_threads(blobs, monkeypatch):
    X, _ = blobs
    vae = VAETransformer(**{**SMALL, "n_threads": 2}).fit(X)
    seen = []
    inference_map = skvae._vae.inference_map

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inference_map(*args, **kwargs)

    monkeypatch.setattr(skvae._vae, "inference_map", recording)
    Z = vae.transform(X)
    vae.inverse_transform(Z)
    vae.score_samples(X, n_importance_samples=3)
    vae.sample(2)
    assert seen == [2, 2, 2, 2]
    assert torch.get_num_threads() == 1


def test_fits_in_joblib_threads(blobs):
    """Each worker thread gets its own limit; the caller's stays as it was."""
    X, _ = blobs

    with parallel_backend("threading"):
        results = Parallel(n_jobs=2)(delayed(seen_in_fit)(X, n_threads=n)
                                     for n in ("auto", 2, "auto", 2))
    assert [seen for seen, _ in results] == [{1}, {2}, {1}, {2}]
    assert torch.get_num_threads() == 1


def test_same_result_whatever_n_threads(blobs):
    X, _ = blobs
    params = {**SMALL, "hidden_layer_sizes": (64, 32), "max_epochs": 3}
    Z1 = VAETransformer(n_threads=1, **params).fit_transform(X)
    Z2 = VAETransformer(n_threads=2, **params).fit_transform(X)
    # not always bitwise: a matrix product may split its sums otherwise on 2 threads
    assert_allclose(Z1, Z2, rtol=1e-4, atol=1e-4)


def test_limit_threads_callback_still_works(blobs):
    X, _ = blobs
    with threadpool_limits(2, user_api="openmp"):
        vae = VAETransformer(**{**SMALL, "n_threads": 2,
                                "callbacks": [LimitThreads(1), Keep("callback")]})
        vae.fit(X)
        assert RECORDED.pop("callback")[0] == {1}
        assert torch.get_num_threads() == 2
