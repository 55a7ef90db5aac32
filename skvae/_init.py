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

Sparse training rows of more than :data:`DENSE_INIT_VALUES` entries stay
sparse: PCA centres them implicitly, and factor analysis is fitted to rows
made from their covariance (at most 1,000 x 1,000). Smaller ones are densified,
so that a CSR matrix and its dense copy start from the same model. The bound
that picks the model scores its rows in batches of bounded size.

No solver's failure reaches ``fit``. Where ARPACK does not converge on sparse
rows (leading singular values that tie, as for rows of one non-zero each), PCA
is fitted by a randomized SVD of the implicitly centred rows
(:func:`randomized_pca`). A model whose solver still fails, or whose
parameters or held-out bound are not finite, is left out; when none is left,
training starts from random weights, with a warning that says why.
"""

import copy
import math
import threading
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackError
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
#: Sparse training rows of at most this many entries (rows x features) are
#: densified for the linear models, which then see what a dense copy of X
#: gives them (32 MB as float64): the same model, bit for bit, and the dense
#: solvers, which cannot fail to converge where ARPACK can (512 rows x 2,000
#: columns at one non-zero a row did).
DENSE_INIT_VALUES = 2 ** 22
#: What a solver raises when it fails on the data (no convergence, a singular
#: system, a non-finite intermediate): the linear model is then left out of
#: the start, never raised from ``fit``.
SOLVER_ERRORS = (ArithmeticError, ValueError, RuntimeError, ArpackError,
                 np.linalg.LinAlgError)  # a ValueError from NumPy 2 on, not before

#: The ``init`` values and the linear models they try.
INIT_METHODS = {
    "auto": ("pca", "factor_analysis"),
    "pca": ("pca",),
    "factor_analysis": ("factor_analysis",),
    "random": (),
}


def _rows(dataset, generator):
    """Up to MAX_INIT_ROWS model-ready rows of ``dataset``.

    A float64 array of the standardized rows for dense data, and for sparse
    data of at most :data:`DENSE_INIT_VALUES` entries. For larger sparse data
    a :class:`SparseRows`: the rows stay sparse, since the mean, subtracted,
    would fill them (a 10,000 x 100,000 subset of text would take 8 GB).
    """
    n = len(dataset)
    if n > MAX_INIT_ROWS:
        rows = torch.randperm(n, generator=generator)[:MAX_INIT_ROWS].sort().values
    else:
        rows = torch.arange(n)
    rows = rows.to(dataset.store)
    if dataset.sparse and len(rows) * dataset.rows.shape[1] > DENSE_INIT_VALUES:
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
        try:
            pca = PCA(n_components, svd_solver=solver, random_state=seed).fit(x.scaled)
            variance, components = pca.explained_variance_, pca.components_
            noise_variance, offset = pca.noise_variance_, np.asarray(pca.mean_).ravel() - x.shift
        except ArpackError:
            # no convergence where the leading singular values (nearly) tie, as
            # for rows of one non-zero each: any of the tied axes is as good
            variance, components, noise_variance = randomized_pca(x, n_components, seed)
            offset = x.mean
        signal = np.maximum(variance - noise_variance, 0.0)
        weights = components.T * np.sqrt(signal)
        return weights, np.full(d, noise_variance), offset
    rows = covariance_rows(x.covariance(), n)
    tol = FactorAnalysis().tol * len(rows) / n
    fa = FactorAnalysis(n_components, tol=tol, random_state=seed).fit(rows)
    return fa.components_.T, fa.noise_variance_, x.mean


def randomized_pca(x, n_components, seed, n_oversamples=10, n_iter=7):
    """PCA of sparse rows by a randomized SVD of the implicitly centred rows.

    The route of :func:`_sparse_linear_gaussian_model` when ARPACK does not
    converge: the range finder of Halko, Martinsson and Tropp (2011) with
    ``n_iter`` power iterations, each orthonormalized, always returns.
    scikit-learn's :func:`~sklearn.utils.extmath.randomized_svd` takes no
    linear operator, and PCA has no randomized solver for sparse input, so the
    centring ``X - 1 m'`` is applied here, product by product: the rows stay
    sparse.

    Parameters
    ----------
    x : SparseRows
    n_components : int
    seed : int
        Seed of the random test matrix.
    n_oversamples, n_iter : int
        As in :func:`~sklearn.utils.extmath.randomized_svd`.

    Returns
    -------
    explained_variance : ndarray of shape (n_components,)
        Variances along the components (divided by ``n - 1``, as PCA's).
    components : ndarray of shape (n_components, n_features)
        Orthonormal principal axes.
    noise_variance : float
        PCA's: the mean variance of the other ``min(n, d) - n_components``
        directions (0 when there are none).
    """
    X = x.scaled
    n, d = X.shape
    m = np.asarray(X.mean(axis=0)).ravel()

    def right(Q):  # (X - 1 m') Q
        return X @ Q - m @ Q

    def left(P):  # (X - 1 m')' P
        return X.T @ P - np.outer(m, P.sum(axis=0))

    size = min(n_components + n_oversamples, n, d)
    Q = np.random.RandomState(seed).standard_normal((d, size))
    for _ in range(n_iter):
        Q = np.linalg.qr(left(np.linalg.qr(right(Q))[0]))[0]
    P = np.linalg.qr(right(Q))[0]
    _, s, components = np.linalg.svd(left(P).T, full_matrices=False)
    k = min(n_components, len(s))
    variance = np.zeros(n_components)
    variance[:k] = s[:k] ** 2 / max(n - 1, 1)
    axes = np.zeros((n_components, d))
    axes[:k] = components[:k]
    total = (np.asarray(X.multiply(X).mean(axis=0)).ravel() - m ** 2).sum() * n / max(n - 1, 1)
    rest = min(n, d) - n_components
    noise_variance = max(total - variance.sum(), 0.0) / rest if rest > 0 else 0.0
    return variance, axes, noise_variance


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
        (``init="random"``, fewer training rows than ``n_components + 1``, or
        no linear model that could be fitted: then with a ``UserWarning``
        that names each model's failure).
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
    failures = {}
    with threadpool_limits(1 if single else None, user_api="blas"):
        # with holes, each model also refined under the ARD prior (see the
        # module's docstring)
        holes = not isinstance(x, SparseRows) and _data.has_missing(x)
        models = {}
        for m in methods:
            fitted = _solved(failures, _label((m, "ml")), linear_gaussian_model,
                             m, x, module.n_components, seed)
            if fitted is not None:
                models[m, "ml"] = fitted
                if holes:
                    refined = _solved(failures, _label((m, "ard")), refine_ard,
                                      x, *fitted, isotropic=m == "pca")
                    if refined is not None:
                        models[m, "ard"] = refined
    del x  # the rows are not needed to judge, and can be large
    scores = {}
    if len(models) > 1:
        judge = valid if valid is not None else train
        rows = torch.arange(min(len(judge), MAX_INIT_ROWS), device=judge.store)
        random_weights = copy.deepcopy(module.state_dict())
        with torch.no_grad():
            for m, params in list(models.items()):
                module.init_linear_gaussian(*params)
                scores[m] = _mean_iwae_bound(module, judge, rows, noise)
                if not np.isfinite(scores[m]):
                    failures[_label(m)] = "its bound on the held-out rows is not finite"
                    del models[m]
        if not models:  # the module was changed in judging: back to its random weights
            module.load_state_dict(random_weights)
    if not models:
        warnings.warn(
            "skvae could not start from a linear model (" + "; ".join(
                f"{m}: {why}" for m, why in failures.items())
            + "), so training starts from random weights (init='random'). The fit "
            "may be worse than PCA's; check the data for degenerate features.",
            UserWarning)
        return None
    name = max(models, key=lambda m: (scores.get(m, 0.0), m[0] == "pca", m[1] == "ml"))
    module.init_linear_gaussian(*models[name])
    return name[0]


def _label(model):
    """How the warning of :func:`linear_start` names a candidate ``(method, fit)``."""
    method, fit = model
    return method if fit == "ml" else f"{method} under the ARD prior"


def _solved(failures, name, solver, *args, **kwargs):
    """``solver(*args, **kwargs)``: a linear model's arrays, or None if it failed.

    A solver's failure on the data (see :data:`SOLVER_ERRORS`) or arrays with
    a non-finite value leave the model out of the start; ``failures[name]``
    then says why, for the warning of :func:`linear_start`.
    """
    try:
        with np.errstate(all="ignore"):
            arrays = solver(*args, **kwargs)
    except SOLVER_ERRORS as error:
        failures[name] = f"{type(error).__name__}: {error}"
        return None
    if not all(np.isfinite(a).all() for a in arrays):
        failures[name] = "it has non-finite parameters"
        return None
    return arrays
