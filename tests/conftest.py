"""Shared fixtures: tiny data built once, a fitted estimator, matplotlib."""

import pytest
import torch
from skorch.callbacks import Callback
from sklearn.datasets import load_digits, make_blobs

from skvae import VAETransformer

#: Settings of the shared fitted estimators.
FIXTURE_PARAMS = dict(hidden_layer_sizes=(16,), max_epochs=20, batch_size=32,
                      learning_rate=1e-2, early_stopping=False, random_state=0)


def pytest_configure(config):
    # The models under test are tiny: intra-op threads only add synchronisation,
    # and under pytest-xdist they oversubscribe the cores (as sklearn/conftest.py
    # limits its thread pools per worker). This does not touch what the tests
    # check: that skvae itself never changes the thread count.
    torch.set_num_threads(1)
    try:
        import matplotlib

        matplotlib.use("agg")
    except ImportError:
        pass


@pytest.fixture(scope="session")
def digits():
    """200 digits images, float64 in [0, 16]; columns 0 and 32 are always 0."""
    X, y = load_digits(return_X_y=True)
    return X[:200], y[:200]


@pytest.fixture(scope="session")
def digits_test():
    """100 held-out digits images (never used for fitting)."""
    X, y = load_digits(return_X_y=True)
    return X[1000:1100], y[1000:1100]


@pytest.fixture(scope="session")
def digits_binary(digits):
    """The digits subset scaled to [0, 1], for the Bernoulli likelihood."""
    return digits[0] / 16.0


@pytest.fixture(scope="session")
def blobs():
    X, y = make_blobs(60, 5, random_state=0)
    return X, y


@pytest.fixture(scope="session")
def fitted_vae(digits):
    """A Gaussian VAE fitted on ``digits``. Tests must not modify it."""
    return VAETransformer(2, **FIXTURE_PARAMS).fit(digits[0])


@pytest.fixture(scope="session")
def fitted_bernoulli_vae(digits_binary):
    """A Bernoulli VAE fitted on ``digits / 16``. Tests must not modify it."""
    return VAETransformer(2, likelihood="bernoulli", **FIXTURE_PARAMS).fit(digits_binary)


@pytest.fixture
def fitted_for(fitted_vae, fitted_bernoulli_vae):
    """``fitted_for(likelihood)``: the shared fitted estimator of that likelihood."""
    return {"gaussian": fitted_vae, "bernoulli": fitted_bernoulli_vae}.__getitem__


@pytest.fixture(scope="function")
def pyplot():
    """matplotlib.pyplot with all figures closed before and after the test.

    Skips the test when matplotlib is not installed (as in sklearn/conftest.py).
    """
    pyplot = pytest.importorskip("matplotlib.pyplot")
    pyplot.close("all")
    yield pyplot
    pyplot.close("all")


class _StopAfter(Callback):
    """Ends a fit after ``epochs`` epochs of its history (skorch's way: KeyboardInterrupt)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) >= self.epochs:
            raise KeyboardInterrupt


@pytest.fixture
def stop_after():
    """The callback class ``stop_after(epochs)``: ends a fit after that many epochs."""
    return _StopAfter
