"""Linear Gaussian models fitted by EM to rows with missing entries.

Factor analysis and probabilistic PCA, ``x = W z + mean + e`` with
``z ~ N(0, I)`` and ``e ~ N(0, diag(psi))``, fitted by maximum likelihood to the
observed entries of each row: a row's likelihood is the Gaussian marginal of
its observed entries, and the missing ones are integrated out, never imputed.
A model fitted to mean-imputed rows underestimates every variance and
covariance; this one does not.

Everything is vectorised over rows: the posterior of each row's latent vector
is a k x k system (``M_i = I + W' diag(o_i / psi) W``), solved for all the rows
of a block at once, and the M-step is one (k + 1) x (k + 1) regression per
feature, solved for all the features at once. An iteration costs
O(n d k^2) time. The iterations are parameter-expanded EM, which converges
in far fewer of them than plain EM.

:func:`refine_ard` refines such a model to the maximum a posteriori model
under an automatic relevance determination prior on the columns of ``W``
(Bayesian PCA, Bishop 1999): a column the data do not support shrinks to
exactly 0, so a model of more components than the data's rank keeps only the
ones they need.
"""

import numpy as np
from scipy import linalg
from sklearn.utils import check_array

#: Floor of the noise variances. The data are standardized (unit scale), so an
#: absolute floor is a relative one.
MIN_NOISE_VARIANCE = 1e-6
#: Values of the largest array a block of rows makes in the E-step
#: (rows x max(features, (components + 1)^2); 32 MB in float64).
BLOCK_VALUES = 2 ** 22

#: A column of ``W`` shorter than this share of the longest is pruned (set to 0)
#: by the ARD refinement: its prior precision ``d / |w|^2`` is then over 10^12
#: times the longest one's, and EM would only shrink it further.
ARD_PRUNE = 1e-6

#: The ARD refinement has converged when no column shrinks by more than this
#: share of its length in an iteration. A column on its way to 0 shrinks by more
#: and more (10-100 % an iteration on the data of benchmarks/bench_imputation.py),
#: one the data support by less and less (the prior's pull, about 1 % in the
#: first iteration on 5,000 MNIST images with 20 % holes and 0.03 % after 68).
ARD_SHRINK_TOL = 3e-3

_LOG_2PI = np.log(2.0 * np.pi)


def _check_rows(x):
    """``x`` as a 2-d float64 array whose NaN mark missing entries (no infinities)."""
    return check_array(x, dtype=np.float64, ensure_all_finite="allow-nan",
                       ensure_min_samples=0)


def _blocks(n_rows, width):
    """Slices of rows with at most about BLOCK_VALUES values of ``width`` each."""
    step = max(1, BLOCK_VALUES // max(width, 1))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def _symmetric(upper, size):
    """Symmetric matrices of shape (..., size, size) from their upper triangles.

    ``upper`` holds the entries at ``np.triu_indices(size)`` in its last axis.
    """
    rows, cols = np.triu_indices(size)
    position = np.empty((size, size), dtype=np.intp)
    position[rows, cols] = position[cols, rows] = np.arange(len(rows))
    return upper[..., position.ravel()].reshape(upper.shape[:-1] + (size, size))


def _posterior(centred, observed, weights, noise_variance):
    """Posterior of the latent vectors of a block of rows, and the rows' log-likelihood.

    Parameters
    ----------
    centred : ndarray of shape (n_rows, n_features)
        ``x - mean`` on the observed entries, 0 on the missing ones.
    observed : ndarray of shape (n_rows, n_features)
        1.0 where an entry is observed, 0.0 where it is missing.
    weights : ndarray of shape (n_features, n_components)
    noise_variance : ndarray of shape (n_features,)

    Returns
    -------
    mean : ndarray of shape (n_rows, n_components)
        ``m_i = M_i^{-1} W' diag(o_i / psi) (x_i - mean)``.
    covariance : ndarray of shape (n_rows, n_components, n_components)
        ``M_i^{-1}`` with ``M_i = I + W' diag(o_i / psi) W``.
    log_likelihood : ndarray of shape (n_rows,)
        Log-density of each row's observed entries. With ``C_i`` their
        covariance, ``log det C_i = log det M_i + sum_o log psi`` (determinant
        lemma) and ``r' C_i^{-1} r = r' Psi^{-1} r - u' M_i^{-1} u`` with
        ``u = W' Psi^{-1} r`` (Woodbury).
    """
    k = weights.shape[1]
    rows, cols = np.triu_indices(k)
    # M_i = I + sum_j o_ij / psi_j w_j w_j': one product with the upper
    # triangles of the outer products w_j w_j'
    precision = observed / noise_variance
    M = _symmetric(precision @ (weights[:, rows] * weights[:, cols]), k)
    M[:, np.arange(k), np.arange(k)] += 1.0
    scaled = centred / noise_variance                       # 0 where missing
    u = scaled @ weights
    covariance = np.linalg.inv(M)
    mean = np.einsum("ikl,il->ik", covariance, u)
    chol = np.linalg.cholesky(M)
    log_det_M = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    quadratic = np.einsum("ij,ij->i", centred, scaled) - np.einsum("ik,ik->i", u, mean)
    log_likelihood = -0.5 * (observed.sum(axis=1) * _LOG_2PI
                             + observed @ np.log(noise_variance)
                             + log_det_M + quadratic)
    return mean, covariance, log_likelihood


def missing_log_likelihood(x, weights, noise_variance, mean):
    """Log-likelihood of each row's observed entries under a linear Gaussian model.

    The model is ``x = W z + mean + e`` with ``z ~ N(0, I)`` and
    ``e ~ N(0, diag(noise_variance))``; a row's observed entries are Gaussian
    with the sub-vector of the mean and the sub-matrix of the covariance
    ``W W' + diag(noise_variance)``. Computed with the k x k matrices
    ``I + W' diag(o_i / psi) W`` (Woodbury identity and determinant lemma) in
    O(n d k^2) time, never a d x d matrix.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
        Rows, NaN where an entry is missing.
    weights : array-like of shape (n_features, n_components)
        Loadings ``W``.
    noise_variance : array-like of shape (n_features,)
        Diagonal of the noise covariance, positive.
    mean : array-like of shape (n_features,)
        Mean of the rows.

    Returns
    -------
    log_likelihood : ndarray of shape (n_samples,)
        Log-density of each row's observed entries; 0 for a row with none.
    """
    x = _check_rows(x)
    weights = np.asarray(weights, dtype=np.float64).reshape(x.shape[1], -1)
    noise_variance = np.asarray(noise_variance, dtype=np.float64).reshape(x.shape[1])
    mean = np.asarray(mean, dtype=np.float64).reshape(x.shape[1])
    if not np.all(noise_variance > 0):
        raise ValueError("noise_variance must be positive.")
    observed = ~np.isnan(x)
    out = np.empty(x.shape[0])
    width = max(x.shape[1], weights.shape[1] ** 2)
    for rows in _blocks(x.shape[0], width):
        obs = observed[rows]
        centred = np.where(obs, x[rows] - mean, 0.0)
        out[rows] = _posterior(centred, obs.astype(np.float64), weights, noise_variance)[2]
    return out


def _start(x, observed, counts, n_components, isotropic):
    """Starting loadings, noise variances and mean from mean-imputed rows.

    The loadings are probabilistic PCA's maximum likelihood solution for the
    covariance of the mean-imputed rows, ``V_k sqrt(lambda_k - sigma2)`` with
    ``sigma2`` the mean of the other eigenvalues (each column at least
    ``sqrt(1e-3 sigma2)`` long, since a zero column is a fixed point of EM);
    the noise variances are what the loadings leave of each feature's variance
    on its observed entries (pooled for probabilistic PCA, which then makes the
    start the exact solution when nothing is missing).
    """
    n, d = x.shape
    mean = np.where(observed, x, 0.0).sum(axis=0) / counts
    centred = np.where(observed, x - mean, 0.0)
    k = min(n_components, d)
    covariance = centred.T @ centred / n
    values, vectors = linalg.eigh(covariance, subset_by_index=[d - k, d - 1])
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    total = max(np.trace(covariance), 0.0)
    sigma2 = max(total - values.sum(), 0.0) / (d - k) if d > k else 0.0
    floor = 1e-3 * (sigma2 if sigma2 > 0 else total / d)
    weights = np.zeros((d, n_components))   # columns beyond d stay 0
    weights[:, :k] = vectors * np.sqrt(np.maximum(values - sigma2, floor))
    residual = (centred ** 2).sum(axis=0) / counts - (weights ** 2).sum(axis=1)
    if isotropic:
        residual = np.full(d, (counts * residual).sum() / counts.sum())
    return weights, np.maximum(residual, MIN_NOISE_VARIANCE), mean


def _statistics(x, observed, weights, noise_variance, mean):
    """The E-step: the rows' mean log-likelihood and the sums the M-step regresses on.

    With ``z~ = [z; 1]`` and the posterior of each row's ``z``: for each
    feature j, the upper triangle of ``sum_i o_ij E[z~ z~']`` (``gram``),
    ``sum_i o_ij (x_ij - mean_j) E[z~]`` (``cross``) and
    ``sum_i o_ij (x_ij - mean_j)^2`` (``squares``), and ``sum_i E[z~ z~']``
    over all the rows (``latent``).
    """
    n, d = x.shape
    k = weights.shape[1]
    rows, cols = np.triu_indices(k + 1)
    gram = np.zeros((d, len(rows)))
    cross = np.zeros((d, k + 1))
    squares = np.zeros(d)
    latent = np.zeros((k + 1, k + 1))
    total = 0.0
    for block in _blocks(n, max(d, (k + 1) ** 2)):
        obs = observed[block].astype(np.float64)
        centred = np.where(observed[block], x[block] - mean, 0.0)
        z, z_cov, log_likelihood = _posterior(centred, obs, weights, noise_variance)
        total += log_likelihood.sum()
        z1 = np.hstack([z, np.ones((len(z), 1))])
        moments = z1[:, :, None] * z1[:, None, :]
        moments[:, :k, :k] += z_cov
        gram += obs.T @ moments[:, rows, cols]
        latent += moments.sum(axis=0)
        cross += centred.T @ z1
        squares += (centred ** 2).sum(axis=0)
    return total / n, _symmetric(gram, k + 1), cross, squares, latent


def _noise(residual, counts, isotropic):
    """The noise variances from each feature's residual sum of squares."""
    if isotropic:
        return np.full(len(counts), max(residual.sum() / counts.sum(), MIN_NOISE_VARIANCE))
    return np.maximum(residual / counts, MIN_NOISE_VARIANCE)


def _em_step(x, observed, weights, noise_variance, mean, counts, isotropic):
    """One EM iteration: the mean log-likelihood of the model given, and the next model.

    The E-step gathers, for each feature j, the sums over the rows where j is
    observed of ``E[z~ z~']`` and ``(x_ij - mean_j) E[z~]`` with
    ``z~ = [z; 1]``; the M-step solves each feature's regression
    ``[w_j, mean_j]`` on them, and sets ``psi_j`` to the mean over its observed
    entries of ``E[(x_ij - w~_j' z~_i)^2]``.

    It is parameter-expanded EM (PX-EM) [1]_: the M-step also fits the mean
    ``mu`` and covariance ``C = L L'`` of the latent vectors, the mean over the
    rows of their posteriors, and folds them back into the model
    (``mean + W mu``, ``W L``), which has the same likelihood. The likelihood
    still never decreases, and it converges in far fewer iterations than EM
    (on 569 x 30 rows with 30 % missing, k = 8: as far in 90 iterations as EM
    in 20,000).

    References
    ----------
    .. [1] C. Liu, D. B. Rubin and Y. N. Wu, "Parameter expansion to
       accelerate EM: the PX-EM algorithm", Biometrika 85(4), 755-770, 1998.
    """
    n = x.shape[0]
    k = weights.shape[1]
    log_likelihood, gram, cross, squares, latent = _statistics(
        x, observed, weights, noise_variance, mean)
    coef = np.linalg.solve(gram, cross[:, :, None])[:, :, 0]
    # sum_i o_ij E[(x_ij - mean_j - w~_j' z~_i)^2] at the regression's solution
    new_noise = _noise(squares - (coef * cross).sum(axis=1), counts, isotropic)
    weights, mean = coef[:, :k], mean + coef[:, k]
    z_mean = latent[:k, k] / n
    z_cov = latent[:k, :k] / n - np.outer(z_mean, z_mean)
    return log_likelihood, (weights @ np.linalg.cholesky(z_cov), new_noise,
                            mean + weights @ z_mean)


def _ard_step(x, observed, weights, noise_variance, mean, counts, isotropic):
    """One EM iteration of the MAP model under the ARD prior; see :func:`refine_ard`.

    Returns the mean log-likelihood of the model given and the next model.
    """
    d, k = weights.shape
    log_likelihood, gram, cross, squares, _ = _statistics(
        x, observed, weights, noise_variance, mean)
    # w_l ~ N(0, I / alpha_l) with alpha_l = d / |w_l|^2 (its maximum
    # a posteriori value): a ridge of psi_j alpha_l on each feature's regression
    alpha = d / (weights ** 2).sum(axis=0)
    ridge = np.zeros((d, k + 1, k + 1))
    ridge[:, np.arange(k), np.arange(k)] = noise_variance[:, None] * alpha
    coef = np.linalg.solve(gram + ridge, cross[:, :, None])[:, :, 0]
    residual = (squares - 2.0 * (coef * cross).sum(axis=1)
                + np.einsum("dk,dkl,dl->d", coef, gram, coef))
    new_noise = _noise(residual, counts, isotropic)
    return log_likelihood, (coef[:, :k], new_noise, mean + coef[:, k])


def refine_ard(x, weights, noise_variance, mean, *, isotropic=False, max_iter=200):
    """Refine a linear Gaussian model to its MAP solution under an ARD prior.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
        Rows, NaN where an entry is missing (the rows the model was fitted to).
    weights : array-like of shape (n_features, n_components)
    noise_variance : array-like of shape (n_features,)
    mean : array-like of shape (n_features,)
        The model to start from, usually the maximum likelihood model of
        :func:`fit_linear_gaussian_missing`.
    isotropic : bool, default=False
        Whether the noise variance is one, pooled (probabilistic PCA).
    max_iter : int, default=200
        Maximum number of EM iterations.

    Returns
    -------
    weights, noise_variance, mean : ndarray
        The refined model, with the same shapes; the columns of ``weights``
        the data do not support are 0 and come last.

    Notes
    -----
    Each column ``w_l`` of the loadings gets the prior ``N(0, I / alpha_l)``,
    with ``alpha_l`` re-estimated as ``d / |w_l|^2`` at every iteration
    (Bayesian PCA [1]_; for factor analysis the same prior with a noise
    variance per feature). A column the data do not support shrinks, faster
    as it gets shorter, and once shorter than :data:`ARD_PRUNE` times the
    longest it is set to exactly 0 and left out (a zero column is a fixed
    point). The columns are first rotated to be orthogonal, longest first
    (``W V`` for ``W = U S V'``: the same likelihood), so that a rank the data
    lack is in whole columns. The iterations are plain EM, since the prior is
    not rotation invariant, as parameter expansion needs; from the maximum
    likelihood model they have little to do. They stop after ``max_iter``, or
    when no column was pruned and none shrank by more than
    :data:`ARD_SHRINK_TOL` of its length. The model's likelihood is a hair
    below the maximum likelihood model's of as many components as are kept
    (the prior shortens the kept columns a little).

    References
    ----------
    .. [1] C. M. Bishop, "Bayesian PCA", Advances in Neural Information
       Processing Systems 11, 382-388, 1999.
    """
    x = _check_rows(x)
    observed = ~np.isnan(x)
    keep = observed.any(axis=1)
    if not keep.all():
        x, observed = x[keep], observed[keep]
    d = x.shape[1]
    weights = np.asarray(weights, dtype=np.float64).reshape(d, -1)
    noise_variance = np.asarray(noise_variance, dtype=np.float64).reshape(d)
    mean = np.asarray(mean, dtype=np.float64).reshape(d)
    n_components = weights.shape[1]
    if not np.any(weights):
        return weights, noise_variance, mean
    counts = observed.sum(axis=0)
    weights = weights @ np.linalg.svd(weights, full_matrices=False)[2].T
    for _ in range(max_iter):
        norms = np.sqrt((weights ** 2).sum(axis=0))
        active = norms > ARD_PRUNE * norms.max(initial=0.0)
        if not active.any():
            break
        weights, norms = weights[:, active], norms[active]
        _, following = _ard_step(x, observed, weights, noise_variance, mean, counts, isotropic)
        weights, noise_variance, mean = following
        shrink = 1.0 - np.sqrt((weights ** 2).sum(axis=0)) / norms
        if active.all() and shrink.max() < ARD_SHRINK_TOL:
            break
    out = np.zeros((weights.shape[0], n_components))
    out[:, :weights.shape[1]] = weights
    return out, noise_variance, mean


def fit_linear_gaussian_missing(x, n_components, *, isotropic=False, max_iter=200,
                                tol=1e-4, random_state=None, return_history=False):
    """Fit factor analysis or probabilistic PCA by EM to rows with missing entries.

    The model is ``x = W z + mean + e`` with ``z ~ N(0, I_k)`` and
    ``e ~ N(0, diag(psi))``. It is fitted by maximum likelihood on the observed
    entries alone: each row's likelihood is the Gaussian marginal of its
    observed entries (missing at random), and no entry is imputed.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
        Rows, NaN where an entry is missing; standardized, ideally (the floor
        of the noise variances is absolute). Rows with every entry missing
        carry no information and are ignored.
    n_components : int
        Dimension ``k`` of the latent vectors.
    isotropic : bool, default=False
        False: factor analysis, one noise variance per feature. True:
        probabilistic PCA, one noise variance pooled over all the observed
        entries.
    max_iter : int, default=200
        Maximum number of EM iterations.
    tol : float, default=1e-4
        EM stops when an iteration increases the mean log-likelihood per row
        (of the observed entries) by less than ``tol``.
    random_state : int, RandomState instance or None, default=None
        Accepted for consistency with scikit-learn's linear models; the start
        (from the eigenvectors of the mean-imputed rows' covariance) and EM
        are deterministic, so it has no effect.
    return_history : bool, default=False
        Whether to also return the mean log-likelihood per row of each model
        of the iterations.

    Returns
    -------
    weights : ndarray of shape (n_features, n_components)
        Loadings ``W``.
    noise_variance : ndarray of shape (n_features,)
        Diagonal of the noise covariance ``psi``, at least
        :data:`MIN_NOISE_VARIANCE`; all equal when ``isotropic=True``.
    mean : ndarray of shape (n_features,)
        Mean of the model (not the mean of the observed entries, in general).
    history : ndarray of shape (n_iter + 1,)
        Only when ``return_history=True``: the mean log-likelihood per row of
        the observed entries, of the start and of the model after each
        iteration; the last is that of the model returned. It never decreases
        (up to rounding): EM's property.

    Raises
    ------
    ValueError
        If a feature is observed in fewer than 2 rows (the message names it),
        or ``x`` has infinite entries.

    See Also
    --------
    missing_log_likelihood : The log-likelihood of each row's observed entries.
    refine_ard : The model's MAP refinement under an ARD prior on ``W``.
    sklearn.decomposition.FactorAnalysis : Factor analysis of complete rows.
    sklearn.decomposition.PCA : Its ``score`` is probabilistic PCA's.

    Notes
    -----
    With ``o_i`` the observed mask of row i, its latent posterior has
    covariance ``Sigma_i = M_i^{-1}``, ``M_i = I + W' diag(o_i / psi) W``, and
    mean ``m_i = Sigma_i W' diag(o_i / psi) (x_i - mean)``. The M-step regresses
    each feature on ``z~ = [z; 1]`` over the rows where it is observed:
    ``[w_j, mean_j] = (sum_i o_ij E[z~ z~'])^{-1} sum_i o_ij x_ij E[z~]``.
    The iterations are parameter-expanded (PX-EM [4]_), which keeps EM's
    monotone likelihood and needs far fewer of them. Each costs O(n d k^2)
    time; the rows are processed in blocks of bounded memory
    (:data:`BLOCK_VALUES`).

    EM starts from probabilistic PCA of the mean-imputed rows' covariance
    (``W = V_k sqrt(lambda_k - sigma2)``, ``sigma2`` the mean of the other
    eigenvalues) and each feature's variance, on its observed entries, that
    ``W`` leaves. With no missing entries and ``isotropic=True`` that start is
    probabilistic PCA's closed-form solution; with ``isotropic=False`` EM
    reaches the maximum likelihood solution that
    :class:`~sklearn.decomposition.FactorAnalysis` finds by another
    algorithm, slowly where a noise variance tends to 0 (a Heywood case).
    Components beyond ``n_features`` stay 0.

    References
    ----------
    .. [1] D. B. Rubin and D. T. Thayer, "EM algorithms for ML factor
       analysis", Psychometrika 47(1), 69-76, 1982.
    .. [2] M. E. Tipping and C. M. Bishop, "Probabilistic principal component
       analysis", Journal of the Royal Statistical Society B 61(3), 611-622,
       1999.
    .. [3] A. Ilin and T. Raiko, "Practical approaches to principal component
       analysis in the presence of missing values", Journal of Machine
       Learning Research 11, 1957-2000, 2010.
    .. [4] C. Liu, D. B. Rubin and Y. N. Wu, "Parameter expansion to
       accelerate EM: the PX-EM algorithm", Biometrika 85(4), 755-770, 1998.
    """
    del random_state  # deterministic
    x = _check_rows(x)
    observed = ~np.isnan(x)
    keep = observed.any(axis=1)
    if not keep.all():
        x, observed = x[keep], observed[keep]
    counts = observed.sum(axis=0)
    sparse = np.flatnonzero(counts < 2)
    if len(sparse):
        listed = ", ".join(f"feature {j} ({counts[j]} row{'' if counts[j] == 1 else 's'})"
                           for j in sparse[:10])
        more = f" and {len(sparse) - 10} more" if len(sparse) > 10 else ""
        raise ValueError(f"Every feature must be observed in at least 2 rows: {listed}"
                         f"{more} {'is' if len(sparse) == 1 else 'are'} not.")
    if int(n_components) != n_components or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
    model = _start(x, observed, counts, int(n_components), isotropic)
    history = []
    while True:
        # each step measures the model it is given: the last one measured is
        # the one returned
        log_likelihood, following = _em_step(x, observed, *model, counts, isotropic)
        history.append(log_likelihood)
        if len(history) > max_iter or (len(history) > 1 and history[-1] - history[-2] < tol):
            break
        model = following
    weights, noise_variance, mean = model
    if return_history:
        return weights, noise_variance, mean, np.asarray(history)
    return weights, noise_variance, mean
