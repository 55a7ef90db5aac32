"""Where training starts: the linear Gaussian models a VAE nests.

``VAETransformer(init="auto")`` starts a Gaussian VAE from probabilistic PCA or
factor analysis fitted to the (standardized) training rows, whichever has the
higher likelihood on the held-out rows under the VAE's own likelihood. The
network then holds that linear model exactly (``VAEModule.init_linear_gaussian``)
and training adds the nonlinear part; with early stopping the starting point is a
candidate for the weights kept, so a fit ends no worse than its start on the
held-out rows.

Rows with missing entries get two more candidates: each model refined to its
maximum a posteriori solution under an automatic relevance determination
prior on its loadings (Bayesian PCA, :func:`skvae._em.refine_ard`), which
keeps only the components the data support. A start of more components than
the data's rank otherwise fits noise with the rest, and with fewer entries to
fit, more of it: on 500 rows of a 3-factor model with 20 % of the entries
missing, ``VAEImputer``'s 10 components imputed with an error of 0.128, as
IterativeImputer does, and 0.123 from the start of 3 (benchmarks/README.md,
the imputation run of stop 35). Complete rows keep the two maximum likelihood
candidates: with the ARD ones too, benchmarks/bench_quality.py was mixed
(wine at k=2 -20.2 -> -20.7 with a seed spread of 2.3, the swiss roll at k=2
17.8 -> 16.6; the 600-row roll -2.8 -> -2.2) and MNIST fits took 2-5 s longer.

Sparse training rows stay sparse: PCA centres them implicitly, and factor
analysis is fitted to rows made from their covariance (at most 1,000 x 1,000).
The bound that picks the model scores its rows in batches of bounded size.
"""

import math
import threading

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA, FactorAnalysis
from threadpoolctl import threadpool_limits

from . import _data
from ._em import fit_linear_gaussian_missing, refine_ard
from ._losses import iwae_bound
from ._module import split_missing

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
    """Up to MAX_INIT_ROWS model-ready rows of ``dataset``.

    A float64 array of the standardized rows for dense data. For sparse data a
    :class:`SparseRows`: the rows stay sparse, since the mean, subtracted, would
    fill them (a 10,000 x 100,000 subset of text would take 8 GB).
    """
    n = len(dataset)
    if n > MAX_INIT_ROWS:
        rows = torch.randperm(n, generator=generator)[:MAX_INIT_ROWS].sort().values
    else:
        rows = torch.arange(n)
    rows = rows.to(dataset.store)
    if dataset.sparse:
        return SparseRows.of(dataset, rows)
    return dataset.take(rows).double().cpu().numpy()


class SparseRows:
    """Standardized sparse rows ``(X - mean) / scale``, kept as ``X / scale - shift``.

    Parameters
    ----------
    scaled : scipy.sparse.csr_matrix of shape (n_samples, n_features)
        ``X / scale`` in float64.
    shift : ndarray of shape (n_features,)
        ``mean / scale``.

    The linear models see the rows through their mean and covariance, which
    the shift moves and leaves alone: PCA centres sparse input implicitly, and
    factor analysis is fitted to the covariance (:func:`covariance_rows`).
    """

    def __init__(self, scaled, shift):
        self.scaled, self.shift = scaled, shift
        self.shape = scaled.shape

    @classmethod
    def of(cls, dataset, rows):
        """The rows ``rows`` (a LongTensor on ``dataset.store``) of a sparse TrainingData."""
        X = dataset.sparse_rows(rows).astype(np.float64)
        d = X.shape[1]
        # the float32 mean and scale that training standardizes with
        mean = np.zeros(d) if dataset.mean is None else dataset.mean.double().cpu().numpy()
        scale = np.ones(d) if dataset.scale is None else dataset.scale.double().cpu().numpy()
        return cls(X @ sp.diags(1.0 / scale, format="csr"), mean / scale)

    @property
    def mean(self):
        """Column means of the standardized rows, shape (n_features,)."""
        return np.asarray(self.scaled.mean(axis=0)).ravel() - self.shift

    def covariance(self):
        """Covariance of the standardized rows (divided by n), shape (n_features, n_features).

        ``X' X / n - m m'`` of the scaled rows (the shift cancels): one sparse
        product. It loses digits where a feature's mean is far above its spread,
        as scikit-learn's sparse PCA (``covariance_eigh``) does; the rows were
        float32, so those digits were few.
        """
        n = self.shape[0]
        m = np.asarray(self.scaled.mean(axis=0)).ravel()
        gram = (self.scaled.T @ self.scaled).toarray()
        gram /= n
        gram -= np.outer(m, m)
        return gram


def covariance_rows(covariance, n_samples):
    """Rows with mean 0 whose covariance (divided by the rows) is ``covariance``.

    Factor analysis depends on its data through their mean and covariance
    alone (the sufficient statistics of a Gaussian model), and scikit-learn's
    ``FactorAnalysis.fit`` reads X only through its mean, its variances and
    the SVD of ``X / sqrt(n)``, whose singular values and right vectors are
    those of any matrix with the same ``X' X``. So rows with the covariance of
    the data stand in for them: about ``n_features`` rows made from the d x d
    covariance instead of up to 10,000 densified ones.

    Parameters
    ----------
    covariance : ndarray of shape (n_features, n_features)
        Symmetric positive semi-definite.
    n_samples : int
        Rows of the data it came from.

    Returns
    -------
    rows : ndarray of shape (m, n_features)
        ``sqrt(m) * H @ R`` with ``R' R = covariance`` (``R`` from its
        eigenvectors of non-zero eigenvalue) and ``H`` columns of the
        Householder reflection that maps the first axis to the normalised ones
        vector: orthonormal, orthogonal to the ones vector, so the rows have
        mean 0 and ``rows' rows / m = covariance``. ``m`` is ``n_samples``
        below ``n_features`` rows and at least ``n_features`` otherwise:
        scikit-learn's randomized SVD works on the transpose of a matrix with
        fewer rows than columns, and on the same side as for the data it gives
        the same result as for them (up to rounding; its random projection
        multiplies the same right-hand side).
    """
    d = covariance.shape[0]
    lam, vectors = np.linalg.eigh(covariance)
    keep = lam > max(lam.max(initial=0.0), 0.0) * d * np.finfo(np.float64).eps
    R = np.sqrt(lam[keep])[:, None] * vectors[:, keep].T        # R' R = covariance
    m = max(2, min(n_samples, max(len(R) + 1, d)))  # two rows at least: one has no spread
    P = np.zeros((m, d))
    P[1:len(R) + 1] = R
    v = np.full(m, -1.0 / math.sqrt(m))
    v[0] += 1.0                                                 # e1 - ones / sqrt(m)
    # Q P with Q = I - 2 v v' / v'v: Q is orthogonal and Q e1 = ones / sqrt(m), so
    # Q P = H R, and its columns sum to sqrt(m) e1' P = 0
    P -= np.outer(v, (2.0 / (v @ v)) * (v @ P))
    P *= math.sqrt(m)
    return P


def linear_gaussian_model(method, x, n_components, seed):
    """``(weights, noise_variance, offset)`` of PCA or factor analysis fitted to x.

    Parameters
    ----------
    method : {"pca", "factor_analysis"}
    x : ndarray of shape (n_samples, n_features) or SparseRows
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
    if isinstance(x, SparseRows):
        return _sparse_linear_gaussian_model(method, x, n_components, seed)
    if _data.has_missing(x):
        # maximum likelihood on the observed entries: a model fitted to
        # mean-imputed rows underestimates every variance and covariance
        return fit_linear_gaussian_missing(x, n_components, isotropic=method == "pca",
                                           random_state=seed)
    if method == "pca":
        pca = PCA(n_components, random_state=seed).fit(x)
        signal = np.maximum(pca.explained_variance_ - pca.noise_variance_, 0.0)
        weights = pca.components_.T * np.sqrt(signal)
        noise = np.full(x.shape[1], pca.noise_variance_)
        return weights, noise, pca.mean_
    fa = FactorAnalysis(n_components, random_state=seed).fit(x)
    return fa.components_.T, fa.noise_variance_, fa.mean_


def _sparse_linear_gaussian_model(method, x, n_components, seed):
    """:func:`linear_gaussian_model` of sparse rows, which stay sparse.

    PCA gets ``X / scale``: scikit-learn (1.6 and later) centres sparse input
    implicitly with the ``arpack`` and ``covariance_eigh`` solvers, and the
    shift moves only the mean. ``arpack`` (its default for sparse input) finds
    the leading components to machine precision, with memory in proportion
    to the rows' non-zeros; ``covariance_eigh`` forms the d x d covariance and
    fits only ``n_components == n_features`` (then d is at most the rows, and
    small), which ``arpack`` cannot.

    Factor analysis has no sparse support: it is fitted to the rows of
    :func:`covariance_rows`, which have the sparse rows' covariance, with its
    tolerance (on the total log-likelihood, which grows with the rows) scaled
    from the data's rows to theirs, so that it stops after the same
    iterations. With at least as many rows as features the covariance rows give
    the dense rows' model up to rounding (noise variances within 1e-7 of
    theirs, from float32 rows); with fewer, scikit-learn's randomized SVD
    projects them from the other side, and the model is as good a fit as the
    dense rows' but not the same one (as two seeds differ). Measured on
    10,000 x 1,000 rows at 1 % and 0.05 % non-zeros, one BLAS thread on a busy
    2-core machine: from the dense rows (80 MB) the fit took 1.9-3.2 s and its
    arrays 164 MB at their peak; from the covariance rows (1,000 x 1,000,
    8 MB), covariance included, 0.7 s and 41 MB.
    """
    n, d = x.shape
    if method == "pca":
        if not x.scaled.count_nonzero():
            # X is 0: every row is the mean, and arpack cannot start on a zero
            # matrix; PCA of the dense rows is all zero variance too
            return np.zeros((d, n_components)), np.zeros(d), x.mean
        solver = "arpack" if n_components < min(n, d) else "covariance_eigh"
        pca = PCA(n_components, svd_solver=solver, random_state=seed).fit(x.scaled)
        signal = np.maximum(pca.explained_variance_ - pca.noise_variance_, 0.0)
        weights = pca.components_.T * np.sqrt(signal)
        noise = np.full(d, pca.noise_variance_)
        return weights, noise, np.asarray(pca.mean_).ravel() - x.shift
    rows = covariance_rows(x.covariance(), n)
    tol = FactorAnalysis().tol * len(rows) / n
    fa = FactorAnalysis(n_components, tol=tol, random_state=seed).fit(rows)
    return fa.components_.T, fa.noise_variance_, x.mean


def _mean_iwae_bound(module, data, rows, noise):
    """Mean over ``rows`` of ``data`` of the bound that judges the linear models.

    Batches of rows keep the bound's intermediates (rows x importance samples x
    the widest layer, three at once in the likelihood) within
    :data:`skvae._data.INFERENCE_BATCH_FLOATS`, as ``score_samples`` does; the
    noise is a function of each row (:class:`~skvae._losses.RowNoise`), so it is
    the same in any batch.
    """
    step = _data.batch_rows(3 * CHOICE_SAMPLES * module.widest_layer)
    values = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), step):
        x, observed = split_missing(data.take(rows[start:start + step]))
        bound = iwae_bound(module, x, noise(x, CHOICE_SAMPLES), observed)
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
    if isinstance(x, SparseRows):  # the non-zeros, and factor analysis's covariance
        d = module.n_features
        work = x.scaled.nnz + (d * d if "factor_analysis" in methods else 0)
    else:
        work = x.size
    single = work <= SINGLE_THREAD_VALUES and threading.current_thread() is threading.main_thread()
    with threadpool_limits(1 if single else None, user_api="blas"):
        # with holes, each model also refined under the ARD prior (see the
        # module's docstring)
        holes = not isinstance(x, SparseRows) and _data.has_missing(x)
        models = {}
        for m in methods:
            models[m, "ml"] = linear_gaussian_model(m, x, module.n_components, seed)
            if holes:
                models[m, "ard"] = refine_ard(x, *models[m, "ml"], isotropic=m == "pca")
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
        name = max(scores, key=lambda m: (np.nan_to_num(scores[m], nan=-np.inf),
                                          m[0] == "pca", m[1] == "ml"))
    module.init_linear_gaussian(*models[name])
    return name[0]
