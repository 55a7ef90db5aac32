"""Linear Gaussian models fitted by EM to rows with missing entries (skvae/_em.py).

The fit is maximum likelihood on the observed entries: with nothing missing it
must reach the likelihood of scikit-learn's factor analysis and probabilistic
PCA, and with holes it must beat the same models fitted to mean-imputed rows.
``missing_log_likelihood`` must be the exact Gaussian marginal of each row's
observed entries.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA, FactorAnalysis

import skvae._em
from skvae._em import (MIN_NOISE_VARIANCE, fit_linear_gaussian_missing,
                       missing_log_likelihood, refine_ard)


def _factor_model(n_samples=400, n_features=15, n_components=3, seed=0):
    """Rows of a known factor model, standardized, and its parameters (unscaled)."""
    rng = np.random.RandomState(seed)
    weights = rng.randn(n_features, n_components)
    noise = rng.uniform(0.2, 1.0, n_features)
    mean = rng.randn(n_features)
    x = rng.randn(n_samples, n_components) @ weights.T + mean
    x += rng.randn(n_samples, n_features) * np.sqrt(noise)
    return (x - x.mean(axis=0)) / x.std(axis=0), (weights, noise, mean)


def _with_holes(x, fraction=0.3, seed=1):
    """``x`` with a fraction of its entries missing completely at random."""
    x = x.copy()
    x[np.random.RandomState(seed).rand(*x.shape) < fraction] = np.nan
    return x


def test_complete_rows_match_factor_analysis():
    x, _ = _factor_model()
    weights, noise, mean = fit_linear_gaussian_missing(x, 3)
    ours = missing_log_likelihood(x, weights, noise, mean).mean()
    reference = FactorAnalysis(3, tol=1e-8, random_state=0).fit(x).score(x)
    assert abs(ours - reference) <= 1e-3 * abs(reference)
    assert weights.shape == (15, 3) and noise.shape == (15,) and mean.shape == (15,)
    assert_allclose(mean, x.mean(axis=0), atol=1e-6)  # the ML mean of complete rows


def test_complete_rows_match_probabilistic_pca():
    x, _ = _factor_model()
    weights, noise, mean = fit_linear_gaussian_missing(x, 3, isotropic=True)
    ours = missing_log_likelihood(x, weights, noise, mean).mean()
    reference = PCA(3).fit(x).score(x)
    # PCA's variances are divided by n - 1, so its model is a hair below the ML one
    assert ours >= reference - 1e-9
    assert abs(ours - reference) <= 1e-3 * abs(reference)
    assert np.ptp(noise) == 0


@pytest.mark.parametrize("isotropic", [False, True])
def test_holes_beat_mean_imputation_and_likelihood_increases(isotropic):
    x, _ = _factor_model()
    holes = _with_holes(x)
    weights, noise, mean, history = fit_linear_gaussian_missing(
        holes, 3, isotropic=isotropic, return_history=True)
    ours = missing_log_likelihood(holes, weights, noise, mean)
    # the history ends with the returned model's mean log-likelihood
    assert_allclose(history[-1], ours.mean(), rtol=1e-12)
    assert len(history) > 2
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[1:]))

    imputed = np.where(np.isnan(holes), np.nanmean(holes, axis=0), holes)
    if isotropic:
        pca = PCA(3).fit(imputed)
        signal = np.maximum(pca.explained_variance_ - pca.noise_variance_, 0.0)
        baseline = (pca.components_.T * np.sqrt(signal), np.full(15, pca.noise_variance_),
                    pca.mean_)
    else:
        fa = FactorAnalysis(3, random_state=0).fit(imputed)
        baseline = (fa.components_.T, fa.noise_variance_, fa.mean_)
    theirs = missing_log_likelihood(holes, *baseline)
    # imputation shrinks every variance and covariance: a clear margin
    assert ours.mean() > theirs.mean() + 0.5


def test_log_likelihood_of_complete_rows_is_factor_analysis_score():
    x, _ = _factor_model(n_samples=50)
    fa = FactorAnalysis(3, random_state=0).fit(x)
    ours = missing_log_likelihood(x, fa.components_.T, fa.noise_variance_, fa.mean_)
    assert_allclose(ours, fa.score_samples(x), rtol=0, atol=1e-8)


def test_log_likelihood_is_the_marginal_of_the_observed_entries():
    x, (weights, noise, mean) = _factor_model(n_samples=30, n_features=8, n_components=2)
    x = _with_holes(x, fraction=0.4)
    x[3] = np.nan                          # a row with nothing observed
    x[4, :] = np.nan
    x[4, 5] = 0.3                          # a row with one entry observed
    covariance = weights @ weights.T + np.diag(noise)
    ours = missing_log_likelihood(x, weights, noise, mean)
    assert ours[3] == 0.0
    for i in [0, 1, 2, 4, 7]:
        o = ~np.isnan(x[i])
        expected = multivariate_normal(mean[o], covariance[np.ix_(o, o)]).logpdf(x[i, o])
        assert_allclose(ours[i], expected, rtol=1e-12, atol=1e-10)


def test_blocks_of_rows_give_the_same_result(monkeypatch):
    x = _with_holes(_factor_model(n_samples=100)[0])
    whole = fit_linear_gaussian_missing(x, 3, max_iter=5)
    monkeypatch.setattr(skvae._em, "BLOCK_VALUES", 7 * 16)   # blocks of 7 rows
    blocks = fit_linear_gaussian_missing(x, 3, max_iter=5)
    for a, b in zip(whole, blocks):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_allclose(missing_log_likelihood(x, *blocks),
                    missing_log_likelihood(x, *whole), rtol=1e-10)


def test_rows_with_nothing_observed_are_ignored():
    x = _with_holes(_factor_model(n_samples=100)[0])
    empty = np.insert(x, [0, 40, 40, 100], np.nan, axis=0)
    for a, b in zip(fit_linear_gaussian_missing(x, 3, max_iter=20),
                    fit_linear_gaussian_missing(empty, 3, max_iter=20)):
        assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("isotropic", [False, True])
def test_ard_keeps_the_components_the_data_support(isotropic):
    """A model of 8 components fitted to rows of a 3-factor model, with holes:
    the ARD prior sets 5 columns to exactly 0 and leaves a model as likely as
    the 3-component maximum likelihood model; the 8-component
    maximum likelihood model uses all 8. The noise variances are equal and
    the rows not standardized: probabilistic PCA of unequal ones rightly keeps
    more columns, which model the noise."""
    rng = np.random.RandomState(0)
    x = _with_holes(rng.randn(400, 3) @ rng.randn(3, 15) + 0.7 * rng.randn(400, 15))
    ml, ml_noise, ml_mean = fit_linear_gaussian_missing(x, 8, isotropic=isotropic)
    weights, noise, mean = refine_ard(x, ml, ml_noise, ml_mean, isotropic=isotropic)
    norms = np.linalg.norm(weights, axis=0)
    assert weights.shape == (15, 8)
    assert np.count_nonzero(norms) == 3 and np.all(norms[3:] == 0)
    assert np.all(np.linalg.norm(ml, axis=0) > 0.01)
    # the prior costs the rows next to no likelihood against the 3-component
    # maximum likelihood model (its loadings are a hair shorter)
    W3, noise3, mean3 = fit_linear_gaussian_missing(x, 3, isotropic=isotropic)
    ours = missing_log_likelihood(x, weights, noise, mean).mean()
    three = missing_log_likelihood(x, W3, noise3, mean3).mean()
    assert three - 0.01 <= ours <= missing_log_likelihood(x, ml, ml_noise, ml_mean).mean()


def test_ard_keeps_every_component_of_full_rank_data():
    x, _ = _factor_model(n_components=6)
    x = _with_holes(x)
    weights, _, _ = refine_ard(x, *fit_linear_gaussian_missing(x, 4))
    assert np.all(np.linalg.norm(weights, axis=0) > 0.3)


@pytest.mark.parametrize("isotropic", [False, True])
@pytest.mark.parametrize("ard", [False, True])
@pytest.mark.parametrize("n_components", [1, 4, 20])
def test_outputs_are_finite(isotropic, ard, n_components):
    # more components than features, and a constant feature (no noise left)
    x = _with_holes(_factor_model(n_samples=60, n_features=10)[0], fraction=0.5)
    x[:, 2] = np.where(np.isnan(x[:, 2]), np.nan, 1.0)
    weights, noise, mean = fit_linear_gaussian_missing(x, n_components, isotropic=isotropic,
                                                       max_iter=50)
    if ard:
        weights, noise, mean = refine_ard(x, weights, noise, mean, isotropic=isotropic,
                                          max_iter=50)
    assert weights.shape == (10, n_components)
    for value in (weights, noise, mean, missing_log_likelihood(x, weights, noise, mean)):
        assert np.all(np.isfinite(value))
    assert np.all(noise >= MIN_NOISE_VARIANCE)


def test_feature_observed_in_fewer_than_two_rows():
    x = _with_holes(_factor_model(n_samples=50)[0])
    x[:, 11] = np.nan
    x[7, 11] = 0.5
    with pytest.raises(ValueError, match=r"feature 11 \(1 row\)"):
        fit_linear_gaussian_missing(x, 2)
    x[:, 4] = np.nan
    with pytest.raises(ValueError, match=r"feature 4 \(0 rows\), feature 11 \(1 row\)"):
        fit_linear_gaussian_missing(x, 2)


def test_infinite_entries_are_rejected():
    x = _factor_model(n_samples=20)[0]
    x[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fit_linear_gaussian_missing(x, 2)
