"""Missing values: the masked likelihood, NaN through every method, and VAEImputer."""

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import multivariate_normal
from sklearn.decomposition import FactorAnalysis
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import skvae._data
from skvae import VAEImputer, VAETransformer
from skvae._em import fit_linear_gaussian_missing, refine_ard
from skvae._impute import _Gaussian, _Proposal, antithetic, resolve_n_components
from skvae._likelihoods import LIKELIHOODS
from skvae._losses import elbo
from skvae._module import split_missing
from skvae._training import build_module

TINY = dict(hidden_layer_sizes=(16,), max_epochs=5, early_stopping=False, random_state=0)


def _linear_gaussian(n=300, d=8, k=2, noise=0.3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, k) @ rng.randn(k, d) + noise * rng.randn(n, d)


def _with_holes(X, fraction, seed=0):
    rng = np.random.RandomState(seed)
    holes = rng.rand(*X.shape) < fraction
    holes[:, 0] &= holes.sum(axis=0)[0] < X.shape[0] - 1  # keep features observed
    X_missing = X.copy()
    X_missing[holes] = np.nan
    return X_missing, holes


def _module(likelihood, d=6, k=2, missing_inputs=False, seed=0):
    params = dict(n_components=k, hidden_layer_sizes=(8,), activation="tanh",
                  likelihood=likelihood)
    module = build_module(d, params, torch.Generator().manual_seed(seed),
                          missing_inputs=missing_inputs)
    with torch.no_grad():  # a decoder that depends on z, variances not all 1
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return module.double()


def _linear_gaussian_of(module):
    """``(W, b, psi)`` of a module whose decoder is linear: ``x = W z + b + noise``."""
    k = module.n_components
    with torch.no_grad():
        out = module.decode(torch.cat([torch.zeros(1, k), torch.eye(k)]))
        psi = module.observation.log_variance().exp()
    out = out.double().numpy()
    return (out[1:] - out[0]).T, out[0], psi.double().numpy()


# ------------------------------------------------------------ the likelihood


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@torch.no_grad()
def test_masked_likelihood_is_the_likelihood_of_the_observed_features(likelihood):
    gen = torch.Generator().manual_seed(0)
    module = _module(likelihood)
    x = torch.rand(5, 6, generator=gen, dtype=torch.float64)
    z = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    observed = torch.rand(5, 6, generator=gen) < 0.6
    x_missing = x.masked_fill(~observed, math.nan)
    filled, mask = split_missing(x_missing)
    assert torch.equal(mask, observed)
    masked = module.log_likelihood(filled, z, mask)
    # the sum of one-feature likelihoods over the observed features
    singles = torch.stack([module.log_likelihood(x, z, torch.eye(6, dtype=torch.bool)[j]
                                                 .expand(5, 6)) for j in range(6)], dim=1)
    assert_allclose(masked, (singles * observed).sum(1), rtol=1e-12, atol=1e-12)
    # the placeholder of a missing entry does not matter
    other = torch.where(observed, x, torch.full_like(x, 123.0))
    assert_allclose(module.log_likelihood(other, z, mask), masked, rtol=1e-12, atol=1e-12)
    # all observed: the complete-data path
    assert_allclose(module.log_likelihood(x, z, torch.ones_like(observed)),
                    module.log_likelihood(x, z), rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_gaussian_masked_likelihood_matches_the_density_of_the_observed_subvector():
    module = _module("gaussian")
    obs = module.observation
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    z = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    observed = torch.rand(4, 6, generator=gen) < 0.5
    mean = module.decode(z)
    w = obs.outlier_weight
    core = torch.distributions.Normal(mean, torch.exp(0.5 * obs.log_variance()))
    broad = torch.distributions.Normal(mean, torch.exp(0.5 * obs.outlier_log_variance))
    per_feature = torch.logaddexp(math.log1p(-w) + core.log_prob(x),
                                  math.log(w) + broad.log_prob(x))
    expected = (per_feature * observed).sum(1)
    got = module.log_likelihood(x.masked_fill(~observed, 0.0), z, observed)
    assert_allclose(got, expected, rtol=1e-10)


def test_gradients_stay_finite_with_missing_entries():
    module = _module("gaussian", missing_inputs=True).float()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=gen)
    x[torch.rand(16, 6, generator=gen) < 0.4] = math.nan
    x[0] = math.nan  # a row with nothing observed
    filled, observed = split_missing(x)
    eps = torch.randn(16, 2, generator=gen)
    loss = -elbo(module, filled, eps, observed=observed).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


@torch.no_grad()
def test_encoder_with_mask_inputs_sees_the_mask():
    module = _module("gaussian", missing_inputs=True)
    assert module.encoder[0].in_features == 12
    x = torch.zeros(1, 6, dtype=torch.float64)
    all_observed = module.encode(x)[0]
    assert torch.equal(all_observed, module.encode(x, torch.ones(1, 6, dtype=torch.bool))[0])
    assert not torch.equal(all_observed, module.encode(x, torch.zeros(1, 6, dtype=torch.bool))[0])


# ------------------------------------------------------- the transformer


@pytest.fixture(scope="module")
def holes():
    X = _linear_gaussian()
    X_missing, mask = _with_holes(X, 0.3)
    return X, X_missing, mask


@pytest.fixture(scope="module")
def fitted_on_holes(holes):
    # device="cpu": tests read its module's tensors as numpy (on a GPU machine too)
    return VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=30, random_state=0,
                          device="cpu").fit(holes[1])


def test_every_method_accepts_nan(holes, fitted_on_holes):
    X, X_missing, _ = holes
    vae = fitted_on_holes
    assert vae.module_.missing_inputs
    assert vae.init_ in ("pca", "factor_analysis")
    for out in (vae.transform(X_missing), vae.score_samples(X_missing),
                vae.score_samples(X_missing, n_importance_samples=5)):
        assert np.isfinite(out).all()
    assert np.isfinite(VAETransformer(2, **TINY).fit_transform(X_missing)).all()
    assert np.isfinite(vae.score(X_missing))
    # a row's score is a function of that row alone, with or without holes around it
    assert_allclose(vae.score_samples(X_missing[:7]), vae.score_samples(X_missing)[:7])
    # partial_fit continues on rows with holes
    clone = VAETransformer(2, hidden_layer_sizes=(16,), random_state=0)
    clone.partial_fit(X_missing).partial_fit(X_missing)
    assert np.isfinite(clone.transform(X_missing)).all()


def test_score_with_holes_is_the_likelihood_of_the_observed_entries(holes, fitted_on_holes):
    X, X_missing, mask = holes
    vae = fitted_on_holes
    # in the caller's units: scaling X by c moves a row's score by -log(c) for
    # each feature observed in it (c a power of 2: the standardized
    # values, with them the fit, are the same to the bit; without early
    # stopping, whose choice of epoch could turn on the last digit)
    c = 8.0
    params = dict(hidden_layer_sizes=(16,), max_epochs=10, early_stopping=False,
                  random_state=0)
    X_scaled = X_missing * c
    scaled = VAETransformer(2, **params).fit(X_scaled)
    expected = (VAETransformer(2, **params).fit(X_missing).score_samples(X_missing)
                - np.log(c) * (~mask).sum(axis=1))
    assert_allclose(scaled.score_samples(X_scaled), expected, rtol=1e-10)
    # more observed entries, more density to pay: a row with fewer entries is
    # not scored on the ones it lacks
    empty = np.full_like(X[:1], np.nan)
    # a row with nothing observed: its posterior is the prior, its likelihood 1
    assert_array_equal(vae.score_samples(np.vstack([empty, X_missing[:3]]))[0], 0.0)
    assert_array_equal(vae.score_samples(empty, n_importance_samples=20), 0.0)
    assert_array_equal(vae.transform(empty), 0.0)


def test_complete_data_give_the_complete_data_model(holes):
    X = holes[0]
    vae = VAETransformer(2, **TINY).fit(X)
    assert not vae.module_.missing_inputs
    # a model fitted on complete rows scores and encodes rows with holes
    X_missing = holes[1]
    assert np.isfinite(vae.score_samples(X_missing)).all()
    assert np.isfinite(vae.transform(X_missing)).all()
    complete = ~np.isnan(X_missing).any(axis=1)
    assert_array_equal(vae.transform(X_missing)[complete], vae.transform(X[complete]))


def test_missing_data_errors(holes, monkeypatch):
    X_missing = holes[1].copy()
    X_missing[:, 2] = np.nan
    df = pd.DataFrame(X_missing, columns=[f"f{j}" for j in range(X_missing.shape[1])])
    with pytest.raises(ValueError, match=r"no observed value \(or only one\) in feature\(s\) f2"):
        VAETransformer(2, **TINY).fit(df)
    # counted a block of rows at a time (no mask of X's size): one value in
    # each of two blocks is two, one in all is one
    X_missing[[0, -1], 2] = 1.0
    X_missing[:, 4] = np.nan
    X_missing[5, 4] = 1.0
    with monkeypatch.context() as patch:
        patch.setattr(skvae._data, "BLOCK_ENTRIES", 3 * X_missing.shape[1])
        with pytest.raises(ValueError, match=r"in feature\(s\) 4:"):
            VAETransformer(2, **TINY).fit(X_missing)
    with pytest.raises(ValueError, match="Sparse input X contains NaN"):
        VAETransformer(2, **TINY).fit(sp.csr_matrix(holes[1]))
    with pytest.raises(ValueError, match="infinity"):
        VAETransformer(2, **TINY).fit(np.where(np.isnan(holes[1]), np.inf, holes[1]))


def test_pandas_na_is_missing(holes):
    X, X_missing, _ = holes
    df = pd.DataFrame(X_missing).astype("Float64")  # NaN becomes pd.NA
    assert df.isna().to_numpy().sum() == np.isnan(X_missing).sum()
    a = VAETransformer(2, **TINY).fit(df)
    b = VAETransformer(2, **TINY).fit(X_missing)
    assert_allclose(a.transform(df), b.transform(X_missing))


def test_linear_start_with_holes_is_the_em_fit_of_the_observed_entries(holes):
    """The start is the linear model fitted by EM to the observed entries (the
    covariance W W' + Psi it implies), not one fitted to mean-imputed rows."""
    X, X_missing, _ = holes
    start = dict(hidden_layer_sizes=(16,), max_epochs=1, learning_rate=1e-12,
                 early_stopping=False, random_state=0, init="factor_analysis", device="cpu")
    vae = VAETransformer(2, **start).fit(X_missing)
    module = vae.module_
    W = module.decoder_linear.weight.detach().double().numpy()
    psi = module.observation.log_variance().detach().double().exp().numpy()
    standardized = (X_missing - vae.mean_) / vae.scale_
    # the maximum likelihood fit or its refinement under the ARD prior,
    # whichever the bound prefers
    ml = fit_linear_gaussian_missing(standardized, 2)
    candidates = [ml, refine_ard(standardized, *ml)]
    gaps = [np.abs(W @ W.T + np.diag(psi) - (W_em @ W_em.T + np.diag(psi_em))).max()
            for W_em, psi_em, _ in candidates]
    assert min(gaps) <= 1e-4
    imputed = FactorAnalysis(2, random_state=0).fit(np.nan_to_num(standardized))
    cov_imputed = imputed.get_covariance()
    assert np.abs(W @ W.T + np.diag(psi) - cov_imputed).max() > 0.1


def test_start_with_holes_keeps_only_the_components_the_data_support(holes):
    """With holes, the start may be the linear model under the ARD prior: on
    100 rows of a 2-factor model, a VAE of 6 components starts from 2 non-zero
    columns (held-out rows judge, as by default: the maximum likelihood model
    is 0.1-0.8 nats a row behind over seeds 0-5); complete rows keep the
    maximum likelihood start of factor analysis (all 6 columns). On all 300
    rows the two are within the judge's noise (0.03 nats), a coin toss."""
    X, X_missing, _ = holes
    start = dict(hidden_layer_sizes=(16,), max_epochs=1, learning_rate=1e-12,
                 init="factor_analysis", random_state=0, device="cpu")
    with_holes = VAETransformer(6, **start).fit(X_missing[:100])
    W = with_holes.module_.decoder_linear.weight.detach().double().numpy()
    assert np.count_nonzero(np.linalg.norm(W, axis=0) > 1e-6) == 2
    complete = VAETransformer(6, **start).fit(X)
    W = complete.module_.decoder_linear.weight.detach().double().numpy()
    assert np.all(np.linalg.norm(W, axis=0) > 1e-3)


# ------------------------------------------------------------ the imputer


@pytest.fixture(scope="module")
def imputer(holes):
    return VAEImputer(n_components=2, hidden_layer_sizes=(16,), max_epochs=30,
                      n_importance_samples=50, random_state=0).fit(holes[1])


def test_imputer_fills_holes_and_keeps_observed_entries(holes, imputer):
    X, X_missing, mask = holes
    filled = imputer.transform(X_missing)
    assert not np.isnan(filled).any()
    assert_array_equal(filled[~mask], X_missing[~mask])
    # better than the mean on a linear Gaussian model with strong correlations
    mean_fill = SimpleImputer().fit_transform(X_missing)
    vae_error = ((filled - X)[mask] ** 2).mean()
    mean_error = ((mean_fill - X)[mask] ** 2).mean()
    assert vae_error < 0.5 * mean_error
    # deterministic
    assert_array_equal(imputer.transform(X_missing), filled)


def test_multiple_imputation_varies_only_the_missing_entries(holes):
    _, X_missing, mask = holes
    imp = VAEImputer(n_components=2, hidden_layer_sizes=(16,), max_epochs=10,
                     n_importance_samples=20, sample_posterior=True, random_state=0)
    imp.fit(X_missing)
    first, second = imp.transform(X_missing), imp.transform(X_missing)
    assert_array_equal(first[~mask], X_missing[~mask])
    assert_array_equal(second[~mask], X_missing[~mask])
    assert (first[mask] != second[mask]).mean() > 0.9
    # reproducible: the same random_state gives the same sequence of draws
    again = VAEImputer(**imp.get_params()).fit(X_missing)
    assert_array_equal(again.transform(X_missing), first)


def test_imputer_options(holes):
    _, X_missing, mask = holes
    X_empty = np.column_stack([X_missing, np.full(len(X_missing), np.nan)])
    params = dict(n_components=2, hidden_layer_sizes=(16,), max_epochs=3,
                  n_importance_samples=5, random_state=0)
    dropped = VAEImputer(**params).fit(X_empty)
    assert dropped.transform(X_empty).shape == X_missing.shape
    assert dropped.estimator_.n_features_in_ == X_missing.shape[1]
    once = X_empty.copy()
    once[5, -1] = 3.0  # seen once: filled with that value, not modelled
    filled = VAEImputer(**params).fit(once)
    assert filled.estimator_.n_features_in_ == X_missing.shape[1]
    assert_array_equal(filled.transform(once)[:, -1], 3.0)
    kept = VAEImputer(keep_empty_features=True, **params).fit(X_empty)
    out = kept.transform(X_empty)
    assert out.shape == X_empty.shape and (out[:, -1] == 0).all()
    indicated = VAEImputer(add_indicator=True, **params).fit(X_missing)
    out = indicated.transform(X_missing)
    assert out.shape == (X_missing.shape[0], 2 * X_missing.shape[1])
    assert_array_equal(out[:, X_missing.shape[1]:], mask)
    names = indicated.get_feature_names_out()
    assert names[0] == "x0" and names[-1] == f"missingindicator_x{X_missing.shape[1] - 1}"
    # another placeholder
    sentinel = np.where(mask, -999.0, X_missing)
    other = VAEImputer(missing_values=-999.0, **params).fit(sentinel)
    assert_allclose(other.transform(sentinel), VAEImputer(**params).fit(X_missing)
                    .transform(X_missing))
    # pandas output
    df = VAEImputer(**params).set_output(transform="pandas").fit_transform(
        pd.DataFrame(X_missing, columns=[f"c{j}" for j in range(X_missing.shape[1])]))
    assert list(df.columns) == [f"c{j}" for j in range(X_missing.shape[1])]


def test_imputer_in_a_pipeline(holes):
    X, X_missing, _ = holes
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    pipe = make_pipeline(VAEImputer(n_components=2, hidden_layer_sizes=(16,), max_epochs=5,
                                    n_importance_samples=5, random_state=0),
                         LogisticRegression())
    assert pipe.fit(X_missing, y).score(X_missing, y) > 0.7


def test_imputer_takes_a_vaetransformer(holes):
    _, X_missing, _ = holes
    vae = VAETransformer(2, **TINY)
    imp = VAEImputer(vae, n_importance_samples=5).fit(X_missing)
    assert imp.estimator_ is not vae and imp.estimator_.get_params() == vae.get_params()
    assert not np.isnan(imp.transform(X_missing)).any()


def test_imputer_has_the_vae_parameters():
    vae_params = VAETransformer().get_params()
    imputer_params = VAEImputer().get_params()
    for name, value in vae_params.items():
        if name in ("warm_start", "n_components"):
            continue
        assert imputer_params[name] == value, name


@pytest.mark.parametrize("n_features, n_components, expected", [
    (3, "auto", 3), (8, "auto", 8), (12, "auto", 8), (17, "auto", 8), (20, "auto", 10),
    (30, "auto", 15), (64, "auto", 16), (784, "auto", 16), (5, 8, 5), (30, 4, 4),
])
def test_auto_n_components_grows_with_the_width_of_the_table(n_features, n_components,
                                                             expected):
    assert resolve_n_components(n_components, n_features) == expected


def test_imputer_model_has_the_resolved_n_components():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 20)
    X[rng.rand(*X.shape) < 0.2] = np.nan
    X[:, 0] = np.nan  # empty: not modelled, so 19 features -> 9 components
    imp = VAEImputer(hidden_layer_sizes=(), max_epochs=1, random_state=0).fit(X)
    assert imp.n_components == "auto"
    assert imp.estimator_.n_components == 9
    with pytest.raises(ValueError, match="n_components"):
        VAEImputer(n_components="many").fit(X)


def test_imputation_is_the_conditional_mean_of_the_model(holes):
    """With a linear decoder and a plain Gaussian likelihood the model is Gaussian,
    and E[x_mis | x_obs] has a closed form; the importance-weighted estimate
    converges to it. (The robust likelihood's broad component, weight 1e-4,
    moves the conditional mean of a few rows by up to 0.05 standard deviations.)"""
    _, X_missing, mask = holes
    imp = VAEImputer(n_components=2, hidden_layer_sizes=(), max_epochs=20,
                     n_importance_samples=40_000, random_state=0, device="cpu").fit(X_missing)
    vae = imp.estimator_
    module = vae.module_
    module.observation.outlier_weight = 0.0
    W, b, psi = _linear_gaussian_of(module)
    rows = np.flatnonzero(mask.any(axis=1))[:20]
    filled = (imp.transform(X_missing[rows]) - vae.mean_) / vae.scale_
    for row, values in zip(rows, filled):
        x = (X_missing[row] - vae.mean_) / vae.scale_
        o = ~mask[row]
        precision = np.eye(2) + W[o].T @ (W[o] / psi[o, None])
        z = np.linalg.solve(precision, W[o].T @ ((x[o] - b[o]) / psi[o]))
        assert_allclose(values[~o], W[~o] @ z + b[~o], atol=0.02)


def test_antithetic_draws_come_in_mirrored_pairs():
    eps = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0))
    before = eps.clone()
    out = antithetic(eps)
    assert_array_equal(eps, before)  # the input is left as it was
    assert_array_equal(out[:, 0:6:2], eps[:, 0:6:2])
    assert_array_equal(out[:, 1:6:2], -eps[:, 0:6:2])
    assert_array_equal(out[:, 6], eps[:, 6])  # an odd draw out keeps its value


def test_each_proposal_gaussian_draws_pairs_about_its_mean(fitted_on_holes, holes):
    """The imputer's proposals: each Gaussian's draws are mirrored about its mean,
    the prior's are the noise as given, and the weights use the mixture density."""
    _, X_missing, _ = holes
    module = fitted_on_holes.module_
    x = torch.as_tensor((X_missing[:5] - fitted_on_holes.mean_) / fitted_on_holes.scale_,
                        dtype=torch.float32)
    x, observed = split_missing(x)
    mu = torch.randn(5, 1, module.n_components, generator=torch.Generator().manual_seed(1))
    gaussian = _Gaussian(mu, std=torch.full_like(mu, 0.5))
    proposal = _Proposal(gaussian)
    eps = torch.randn(5, 20, module.n_components, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z, _, log_joint = proposal.draws(module, x, observed, eps)
    n_gaussian = int(round(proposal.shares[0].item() * 20))
    assert n_gaussian == 18  # 10 % from the prior
    pairs = z[:, :n_gaussian].reshape(5, n_gaussian // 2, 2, -1)
    assert_allclose((pairs[:, :, 0] + pairs[:, :, 1]) / 2,
                    mu.expand(5, n_gaussian // 2, -1), atol=1e-6)
    assert_array_equal(z[:, n_gaussian:], eps[:, n_gaussian:])
    assert torch.isfinite(log_joint).all() and torch.isfinite(proposal.log_density(z)).all()


def test_models_with_holes_round_trip(holes, fitted_on_holes, imputer):
    """Format 6 keeps the encoder's mask inputs; the imputer saves like its model."""
    _, X_missing, _ = holes
    loaded = pickle.loads(pickle.dumps(fitted_on_holes))
    assert loaded.module_.missing_inputs
    assert_array_equal(loaded.transform(X_missing), fitted_on_holes.transform(X_missing))
    assert_array_equal(loaded.score_samples(X_missing), fitted_on_holes.score_samples(X_missing))
    assert_array_equal(pickle.loads(pickle.dumps(imputer)).transform(X_missing),
                       imputer.transform(X_missing))
    sio = pytest.importorskip("skops.io")
    blob = sio.dumps(imputer)
    untrusted = sio.get_untrusted_types(data=blob)
    assert all(name.startswith("skvae.") for name in untrusted), untrusted
    assert_array_equal(sio.loads(blob, trusted=untrusted).transform(X_missing),
                       imputer.transform(X_missing))


def test_product_of_experts_start_is_the_linear_posterior(holes):
    """Started from a linear Gaussian model, the encoder for data with holes gives a
    complete row the model's exact posterior (the IWAE bound is the exact
    log-likelihood), and narrows the posterior with every entry observed."""
    X, X_missing, mask = holes
    start = dict(hidden_layer_sizes=(16,), max_epochs=1, learning_rate=1e-12,
                 early_stopping=False, random_state=0, init="factor_analysis", device="cpu")
    vae = VAETransformer(2, **start).fit(X_missing)
    module = vae.module_
    W, b, psi = _linear_gaussian_of(module)
    # complete training rows (a value outside the observed range would be clipped)
    complete = X[~mask.any(axis=1)][:50]
    x = (complete - vae.mean_) / vae.scale_
    cov = W @ W.T + np.diag(psi)
    exact = multivariate_normal(b, cov).logpdf(x) - np.log(vae.scale_).sum()
    module.observation.outlier_weight = 0.0  # the linear Gaussian model itself
    assert_allclose(vae.score_samples(complete, n_importance_samples=10), exact, atol=1e-3)
    # each observed entry narrows the posterior
    with torch.no_grad():
        row = torch.as_tensor(x[:1], dtype=torch.float32).repeat(3, 1)
        observed = torch.ones(3, x.shape[1], dtype=torch.bool)
        observed[1, :4] = False
        observed[2, :] = False
        observed[2, 0] = True
        _, logvar = module.encode(row, observed)
    assert (logvar[0] < logvar[1]).all() and (logvar[1] < logvar[2]).all()


def test_product_of_experts_start_gives_the_exact_posterior_mean_of_every_pattern(holes):
    """From a linear Gaussian start, a row with holes gets that model's exact
    posterior mean given its observed entries, (I + W_o' Psi_o^-1 W_o)^-1 W_o'
    Psi_o^-1 (x_o - b_o), not its diagonal approximation, and the variances of the
    best diagonal Gaussian (1 / the precision's diagonal)."""
    X, X_missing, mask = holes
    start = dict(hidden_layer_sizes=(16,), max_epochs=1, learning_rate=1e-12,
                 early_stopping=False, random_state=0, init="factor_analysis", device="cpu")
    vae = VAETransformer(3, **start).fit(X_missing)
    W, b, psi = _linear_gaussian_of(vae.module_)
    x = (X_missing[mask.any(axis=1)][:40] - vae.mean_) / vae.scale_
    with torch.no_grad():
        mu, logvar = vae.module_.encode(*split_missing(torch.as_tensor(x, dtype=torch.float32)))
    gap = 0.0
    for i, row in enumerate(x):
        o = ~np.isnan(row)
        Wp = W[o] / psi[o, None]
        precision = np.eye(W.shape[1]) + W[o].T @ Wp
        natural = Wp.T @ (row[o] - b[o])
        exact = np.linalg.solve(precision, natural)
        # the start's experts add a precision of 1e-4 each to every dimension
        assert_allclose(mu[i].numpy(), exact, rtol=1e-3, atol=2e-3)
        assert_allclose(np.exp(-logvar[i].numpy()), np.diag(precision), rtol=1e-3)
        gap = max(gap, np.abs(natural / np.diag(precision) - exact).max())
    assert gap > 0.1  # the diagonal approximation would have missed by that much


def test_a_pattern_of_holes_never_seen_in_training(holes, imputer):
    """Rows missing the features that no training row missed, or nearly all of
    their entries, get finite codes, scores and fills from the observed ones."""
    X, X_missing, _ = holes
    rows = X[:4].copy()
    rows[0, :4] = np.nan          # half of the row
    rows[1, 1:] = np.nan          # one entry observed
    rows[2, ::2] = np.nan
    rows[3] = np.nan
    vae = imputer.estimator_
    for out in (vae.transform(rows), vae.score_samples(rows), imputer.transform(rows)):
        assert np.isfinite(out).all()
    filled = imputer.transform(rows)
    observed = ~np.isnan(rows)
    assert_array_equal(filled[observed], rows[observed])
    # with nothing observed, the fill is the model's marginal mean, near the data's
    assert np.abs(filled[3] - np.nanmean(X_missing, axis=0)).max() < 0.5 * X.std(axis=0).max()
