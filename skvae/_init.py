"""Where training starts: the linear Gaussian models a VAE nests.

``VAETransformer(init="auto")`` starts a Gaussian VAE from probabilistic PCA or
factor analysis fitted to the (standardized) training rows, whichever has the
higher likelihood on the held-out rows under the VAE's own likelihood. The
network then holds that linear model exactly (``VAEModule.init_linear_gaussian``)
and training adds the nonlinear part; with early stopping the starting point is a
candidate for the weights kept, so a fit ends no worse than its start on the
held-out rows.
"""

import threading

import numpy as np
import torch
from sklearn.decomposition import PCA, FactorAnalysis
from threadpoolctl import threadpool_limits

from . import _data
from ._losses import iwae_bound

#: Training rows the linear models are fitted on (a random subset above this).
MAX_INIT_ROWS = 10_000
#: Factor analysis is tried up to this many features (its EM costs d x k per
#: iteration on top of a d x d covariance; PCA alone is used above).
MAX_FA_FEATURES = 1_000
#: Up to this many values (rows x features) the linear models are fitted with
#: one BLAS thread: their matrices are small, and OpenBLAS threads that wait
#: for a busy core (another fit, another process) made factor analysis on the
#: digits 20x slower (12.6 s instead of 0.6 s on 2 busy cores). BLAS limits
#: are process-wide, so only a fit in the main thread sets one: fits running in
#: threads would restore each other's limits in the wrong order.
SINGLE_THREAD_VALUES = 2 ** 24
#: Importance samples of the bound that picks the start.
CHOICE_SAMPLES = 16

#: The ``init`` values and the linear models they try.
INIT_METHODS = {
    "auto": ("pca", "factor_analysis"),
    "pca": ("pca",),
    "factor_analysis": ("factor_analysis",),
    "random": (),
}


def _rows(dataset, generator):
    """Up to MAX_INIT_ROWS model-ready rows of ``dataset`` as a float64 array."""
    n = len(dataset)
    if n > MAX_INIT_ROWS:
        rows = torch.randperm(n, generator=generator)[:MAX_INIT_ROWS].sort().values
    else:
        rows = torch.arange(n)
    return dataset.take(rows.to(dataset.store)).double().cpu().numpy()


def linear_gaussian_model(method, x, n_components, seed):
    """``(weights, noise_variance, offset)`` of PCA or factor analysis fitted to x.

    Parameters
    ----------
    method : {"pca", "factor_analysis"}
    x : ndarray of shape (n_samples, n_features)
        Standardized training rows.
    n_components : int
    seed : int
        ``random_state`` of the randomized SVDs.

    Returns
    -------
    weights : ndarray of shape (n_features, n_components)
    noise_variance : ndarray of shape (n_features,)
    offset : ndarray of shape (n_features,)
    """
    if method == "pca":
        pca = PCA(n_components, random_state=seed).fit(x)
        signal = np.maximum(pca.explained_variance_ - pca.noise_variance_, 0.0)
        weights = pca.components_.T * np.sqrt(signal)
        noise = np.full(x.shape[1], pca.noise_variance_)
        return weights, noise, pca.mean_
    fa = FactorAnalysis(n_components, random_state=seed).fit(x)
    return fa.components_.T, fa.noise_variance_, fa.mean_


def _mean_iwae_bound(module, data, rows, noise):
    """Mean over ``rows`` of ``data`` of the bound that judges the linear models.

    Batches of rows keep the bound's intermediates (rows x importance samples x
    the widest layer, three at once in the likelihood) within
    :data:`skvae._data.INFERENCE_BATCH_FLOATS`, as ``score_samples`` does; the
    noise is a function of each row (:class:`~skvae._losses.RowNoise`), so it is
    the same in any batch.
    """
    width = max(module.n_features, 2 * module.n_components, *module.hidden_layer_sizes)
    step = max(1, _data.INFERENCE_BATCH_FLOATS // (3 * CHOICE_SAMPLES * width))
    values = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), step):
        x = data.take(rows[start:start + step])
        bound = iwae_bound(module, x, noise(x, CHOICE_SAMPLES))
        values[start:start + len(x)] = bound.double().cpu().numpy()
    return float(values.mean())


def linear_start(module, method, train, valid, noise, seed, generator):
    """Initialise ``module`` from the best linear Gaussian model; return its name.

    Parameters
    ----------
    module : VAEModule
        A freshly initialised Gaussian module; changed in place.
    method : str
        Key of :data:`INIT_METHODS`.
    train, valid : TrainingData or None
        Training rows, and the rows that judge the candidates (the training
        rows when ``valid`` is None).
    noise : RowNoise
        Deterministic noise of the bound that judges them.
    seed : int
        Seed of the linear models' randomized SVDs.
    generator : torch.Generator
        Picks the row subset of large data.

    Returns
    -------
    name : str or None
        The model the module now holds, None when it kept its random weights
        (``init="random"``, or fewer training rows than ``n_components + 1``).
    """
    methods = [m for m in INIT_METHODS[method]
               if m != "factor_analysis" or module.n_features <= MAX_FA_FEATURES]
    if not methods or len(train) <= module.n_components:
        return None
    x = _rows(train, generator)
    single = x.size <= SINGLE_THREAD_VALUES and threading.current_thread() is threading.main_thread()
    with threadpool_limits(1 if single else None, user_api="blas"):
        models = {m: linear_gaussian_model(m, x, module.n_components, seed) for m in methods}
    del x  # the rows are not needed to judge, and can be large
    if len(models) == 1:
        name = next(iter(models))
    else:
        judge = valid if valid is not None else train
        rows = torch.arange(min(len(judge), MAX_INIT_ROWS), device=judge.store)
        scores = {}
        with torch.no_grad():
            for m, params in models.items():
                module.init_linear_gaussian(*params)
                scores[m] = _mean_iwae_bound(module, judge, rows, noise)
        name = max(scores, key=lambda m: (np.nan_to_num(scores[m], nan=-np.inf), m == "pca"))
    module.init_linear_gaussian(*models[name])
    return name
