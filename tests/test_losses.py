"""Tests of the loss functions and the scoring noise (skvae/_losses.py)."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from scipy.special import logsumexp

import skvae._losses
from skvae._likelihoods import (bernoulli_log_likelihood, gaussian_log_likelihood,
                                robust_gaussian_log_likelihood)
from skvae._losses import (MAX_IMPORTANCE_SAMPLES, RowNoise, elbo, gaussian_kl, iwae_bound,
                           kl_weight, reconstruction_log_likelihood, standard_normal_log_density)
from skvae._module import VAEModule


def _module(likelihood, n_features=6, n_components=2, hidden=(5,), seed=0):
    module = VAEModule(n_features, n_components, hidden, "tanh", likelihood)
    module.reset_parameters(torch.Generator().manual_seed(seed))
    if likelihood == "gaussian":  # a variance other than 1 per feature
        with torch.no_grad():
            module.observation.raw_variance.copy_(torch.linspace(-2.0, 2.0, n_features))
    return module.double()


def _x(likelihood, n=4, n_features=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if likelihood == "bernoulli":
        return torch.rand(n, n_features, generator=gen, dtype=torch.float64)
    return torch.randn(n, n_features, generator=gen, dtype=torch.float64)


def _eps(n, k, d, seed=1):
    return torch.randn(n, k, d, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


# --------------------------------------------------------------- log-likelihoods and KL


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.RandomState(0)
    x, mean = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    log_var = rng.normal(size=7)
    result = gaussian_log_likelihood(torch.from_numpy(x), torch.from_numpy(mean),
                                     torch.from_numpy(log_var))
    expected = stats.norm.logpdf(x, loc=mean, scale=np.exp(0.5 * log_var)).sum(axis=-1)
    assert result.shape == (5,)
    assert_allclose(result.numpy(), expected, rtol=1e-12)


def test_gaussian_log_likelihood_broadcasts_leading_axes():
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.normal(size=(3, 1, 4)))
    mean = torch.from_numpy(rng.normal(size=(3, 5, 4)))
    log_var = torch.zeros(4, dtype=torch.float64)
    result = gaussian_log_likelihood(x, mean, log_var)
    assert result.shape == (3, 5)
    assert_allclose(result[:, 2].numpy(),
                    gaussian_log_likelihood(x[:, 0], mean[:, 2], log_var).numpy())


def _robust_by_autograd(x, mean, log_var, outlier_log_var, weight=1e-4):
    """The robust likelihood's expression, differentiated term by term by autograd."""
    z2 = (x - mean).square()
    core = math.log1p(-weight) - 0.5 * (log_var + z2 * torch.exp(-log_var))
    broad = math.log(weight) - 0.5 * (outlier_log_var + z2 * torch.exp(-outlier_log_var))
    return (torch.logaddexp(core, broad) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _robust_inputs(x_shape, mean_shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = x_shape[-1]
    x = torch.randn(x_shape, generator=gen, dtype=dtype)
    x[0, ..., 0] = 40.0  # an outlier: the broad component carries it
    mean = torch.randn(mean_shape, generator=gen, dtype=dtype).requires_grad_()
    log_var = (torch.randn(d, generator=gen, dtype=dtype) - 3).requires_grad_()
    outlier_log_var = torch.randn(d, generator=gen, dtype=dtype)
    return x, mean, log_var, outlier_log_var


def test_robust_gaussian_gradients_pass_gradcheck():
    x, mean, log_var, outlier_log_var = _robust_inputs((4, 6), (4, 6), torch.float64)
    out = robust_gaussian_log_likelihood(x, mean, log_var, outlier_log_var)
    assert type(out.grad_fn).__name__ == "_RobustGaussianLogLikelihoodBackward"
    assert torch.autograd.gradcheck(
        lambda m, v: robust_gaussian_log_likelihood(x, m, v, outlier_log_var),
        (mean, log_var))


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("x_shape, mean_shape", [((5, 7), (5, 7)), ((5, 1, 7), (5, 3, 7))])
def test_robust_gaussian_hand_written_backward_matches_autograd(dtype, rtol, x_shape,
                                                                mean_shape):
    # training differentiates the likelihood by hand: the same values and
    # gradients as autograd on the expression, for the ELBO's (n, d) and the
    # IWAE's broadcast (n, 1, d) against (n, K, d)
    x, mean, log_var, outlier_log_var = _robust_inputs(x_shape, mean_shape, dtype)
    expected = _robust_by_autograd(x, mean, log_var, outlier_log_var)
    out = robust_gaussian_log_likelihood(x, mean, log_var, outlier_log_var)
    assert_allclose(out.detach(), expected.detach(), rtol=rtol)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    want = torch.autograd.grad((expected * weights).sum(), (mean, log_var))
    got = torch.autograd.grad((out * weights).sum(), (mean, log_var))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert_allclose(g, w, rtol=rtol, atol=rtol * float(w.abs().max()))


def test_robust_gaussian_without_gradients_is_the_expression():
    # scoring (no gradients) evaluates the expression itself, bit for bit
    x, mean, log_var, outlier_log_var = _robust_inputs((4, 6), (4, 6), torch.float32)
    with torch.no_grad():
        out = robust_gaussian_log_likelihood(x, mean, log_var, outlier_log_var)
        expected = _robust_by_autograd(x, mean, log_var, outlier_log_var)
    assert out.grad_fn is None
    assert_array_equal(out, expected)


def test_bernoulli_log_likelihood_matches_scipy_for_binary_data():
    rng = np.random.RandomState(0)
    x = (rng.uniform(size=(6, 9)) > 0.5).astype(np.float64)
    logits = rng.normal(scale=3, size=(6, 9))
    result = bernoulli_log_likelihood(torch.from_numpy(x), torch.from_numpy(logits))
    p = 1 / (1 + np.exp(-logits))
    expected = stats.bernoulli.logpmf(x, p).sum(axis=-1)
    assert result.shape == (6,)
    assert_allclose(result.numpy(), expected, rtol=1e-10)
    assert (result.numpy() <= 0).all()


def test_bernoulli_log_likelihood_is_the_cross_entropy_for_grey_values():
    rng = np.random.RandomState(0)
    x = rng.uniform(size=(4, 5))
    logits = rng.normal(size=(4, 5))
    p = 1 / (1 + np.exp(-logits))
    expected = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
    result = bernoulli_log_likelihood(torch.from_numpy(x), torch.from_numpy(logits))
    assert_allclose(result.numpy(), expected, rtol=1e-10)


def test_bernoulli_log_likelihood_is_stable_for_large_logits():
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[200.0, -200.0]], dtype=torch.float64)
    assert bernoulli_log_likelihood(x, logits).item() == pytest.approx(0.0, abs=1e-12)
    assert bernoulli_log_likelihood(1 - x, logits).item() == pytest.approx(-400.0)


def test_bernoulli_log_likelihood_broadcasts_x():
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64).unsqueeze(1)  # (1, 1, 3)
    logits = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    result = bernoulli_log_likelihood(x, logits)
    assert result.shape == (1, 4)
    assert_allclose(result[0, 1].item(), bernoulli_log_likelihood(x[0], logits[:, 1]).item())


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
    rng = np.random.RandomState(0)
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(scale=0.5, size=(3, 4))
    result = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(logvar)).numpy()
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(0.0, 1.0)
    expected = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    assert result.shape == (3,)
    assert_allclose(result, expected, rtol=1e-12)
    # Monte Carlo: E_q[log q(z) - log p(z)], from a seeded generator (not torch's global
    # one, whose state depends on the tests run before), within 5 standard errors
    generator = torch.Generator().manual_seed(0)
    eps = torch.randn((200_000, 3, 4), generator=generator, dtype=torch.float64)
    z = q.loc + q.scale * eps
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1).numpy()
    standard_error = log_ratio.std(0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(result - log_ratio.mean(0)) < 5 * standard_error)


def test_gaussian_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    assert_array_equal(gaussian_kl(zeros, zeros).numpy(), [0.0, 0.0])
    rng = np.random.RandomState(1)
    mu, logvar = torch.from_numpy(rng.normal(size=(50, 3))), torch.from_numpy(
        rng.normal(size=(50, 3)))
    assert (gaussian_kl(mu, logvar) > 0).all()


def test_standard_normal_log_density_matches_scipy():
    z = np.random.RandomState(0).normal(size=(4, 3, 2))
    result = standard_normal_log_density(torch.from_numpy(z))
    assert result.shape == (4, 3)
    assert_allclose(result.numpy(), stats.norm.logpdf(z).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_reconstruction_log_likelihood_uses_the_modules_likelihood(likelihood):
    module = _module(likelihood)
    x = _x(likelihood)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = reconstruction_log_likelihood(module, x, z).detach().numpy()
    out = module.decode(z).detach().numpy()
    if likelihood == "gaussian":  # a mixture: the Gaussian, and its broad outlier share
        std = np.exp(0.5 * module.observation.log_variance().detach().numpy())
        broad = np.exp(0.5 * module.observation.outlier_log_variance.numpy())
        w = module.observation.outlier_weight
        expected = np.log((1 - w) * stats.norm.pdf(x.numpy(), out, std)
                          + w * stats.norm.pdf(x.numpy(), out, broad)).sum(-1)
    else:
        p = 1 / (1 + np.exp(-out))
        expected = (x.numpy() * np.log(p) + (1 - x.numpy()) * np.log(1 - p)).sum(-1)
    assert_allclose(result, expected, rtol=1e-10)


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_elbo_is_reconstruction_minus_weighted_kl(likelihood):
    module = _module(likelihood)
    x = _x(likelihood)
    eps = _eps(4, 1, 2)[:, 0]
    with torch.no_grad():
        mu, logvar = module.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = reconstruction_log_likelihood(module, x, z)
        kl = gaussian_kl(mu, logvar)
        for weight in (0.0, 0.3, 1.0, 2.5):
            assert_allclose(elbo(module, x, eps, weight).numpy(), (recon - weight * kl).numpy(),
                            rtol=1e-12)
        assert_array_equal(elbo(module, x, eps).numpy(), elbo(module, x, eps, 1.0).numpy())
    assert elbo(module, x, eps).shape == (4,)


def test_elbo_input_noise_reaches_the_encoder_alone():
    # the encoder sees x + noise; the likelihood scores x itself
    module = _module("gaussian")
    x = _x("gaussian")
    eps = _eps(4, 1, 2)[:, 0]
    noise = 0.3 * _x("gaussian", seed=5)
    with torch.no_grad():
        mu, logvar = module.encode(x + noise)
        z = mu + torch.exp(0.5 * logvar) * eps
        expected = reconstruction_log_likelihood(module, x, z) - 0.7 * gaussian_kl(mu, logvar)
        assert_allclose(elbo(module, x, eps, 0.7, input_noise=noise).numpy(),
                        expected.numpy(), rtol=1e-12)
        assert_array_equal(elbo(module, x, eps, input_noise=None).numpy(),
                           elbo(module, x, eps).numpy())
        # the noise changes the code, so the bound: it is used, not dropped
        assert not np.allclose(elbo(module, x, eps, input_noise=noise).numpy(),
                               elbo(module, x, eps).numpy())


def test_encoder_noise_scale_is_the_likelihoods_standard_deviation():
    gaussian = _module("gaussian").observation
    scale = gaussian.encoder_noise_scale()
    assert_allclose(scale.numpy(), np.exp(0.5 * gaussian.log_variance().detach().numpy()),
                    rtol=1e-12)
    assert not scale.requires_grad  # a fixed scale, not a path for the variances to learn by
    assert _module("bernoulli").observation.encoder_noise_scale() is None


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_iwae_with_one_sample_is_the_single_sample_monte_carlo_elbo(likelihood):
    module = _module(likelihood)
    x = _x(likelihood)
    eps = _eps(4, 1, 2)
    with torch.no_grad():
        bound = iwae_bound(module, x, eps)
        mu, logvar = module.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps[:, 0]
        log_px_z = reconstruction_log_likelihood(module, x, z)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz_x = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    assert bound.shape == (4,)
    assert_allclose(bound.numpy(), (log_px_z + log_pz - log_qz_x).numpy(), rtol=1e-12,
                    atol=1e-12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_iwae_is_the_log_mean_of_single_sample_weights(likelihood):
    module = _module(likelihood)
    x = _x(likelihood)
    k = 9
    eps = _eps(4, k, 2)
    with torch.no_grad():
        bound = iwae_bound(module, x, eps).numpy()
        single = np.stack([iwae_bound(module, x, eps[:, i:i + 1]).numpy() for i in range(k)], 1)
    assert_allclose(bound, logsumexp(single, axis=1) - np.log(k), rtol=1e-12)
    # log of a mean >= mean of the logs (Jensen): never below the average ELBO draw
    assert (bound >= single.mean(axis=1) - 1e-12).all()


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_analytic_kl_elbo_is_the_average_of_single_sample_iwae_draws(likelihood):
    module = _module(likelihood)
    n, n_draws = 3, 40_000
    x = _x(likelihood, n=n)
    eps = _eps(n, n_draws, 2)
    # each row of x_rep / eps_rep is one (x, eps) pair: one K=1 draw
    x_rep = x.repeat_interleave(n_draws, 0)
    eps_rep = eps.reshape(n * n_draws, 1, 2)
    with torch.no_grad():
        single = iwae_bound(module, x_rep, eps_rep).reshape(n, n_draws)
        analytic = elbo(module, x_rep, eps_rep[:, 0]).reshape(n, n_draws)
    # same draws, so the two differ only by the Monte Carlo error of the KL term
    error = (single - analytic).std(1) / math.sqrt(n_draws)
    assert_allclose(single.mean(1).numpy(), analytic.mean(1).numpy(),
                    atol=4 * error.max().item())
    assert error.max().item() < 0.05
    # one call with K=1 is one such draw, exactly
    with torch.no_grad():
        assert_allclose(iwae_bound(module, x, eps[:, :1]).numpy(), single[:, 0].numpy(),
                        rtol=1e-12)
        assert_allclose(elbo(module, x, eps[:, 0]).numpy(), analytic[:, 0].numpy(),
                        rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_bounds_are_deterministic(likelihood):
    module = _module(likelihood)
    x = _x(likelihood)
    eps = _eps(4, 5, 2)
    with torch.no_grad():
        assert_array_equal(iwae_bound(module, x, eps).numpy(), iwae_bound(module, x, eps).numpy())
        assert_array_equal(elbo(module, x, eps[:, 0]).numpy(), elbo(module, x, eps[:, 0]).numpy())


def test_iwae_bound_tightens_with_more_samples():
    module = _module("gaussian")
    x = _x("gaussian", n=200)  # enough rows that the means' Monte Carlo noise is small
    with torch.no_grad():
        means = [iwae_bound(module, x, _eps(200, k, 2, seed=k)).mean().item()
                 for k in (1, 10, 300)]
    assert means[0] < means[1] < means[2]


# --------------------------------------------------------------------------- kl_weight


@pytest.mark.parametrize(
    "epoch, beta, warmup, expected",
    [
        (0, 1.0, 0, 1.0),
        (5, 2.0, 0, 2.0),
        (0, 1.0, 4, 0.0),
        (1, 1.0, 4, 0.25),
        (2, 2.0, 4, 1.0),
        (4, 2.0, 4, 2.0),
        (100, 2.0, 4, 2.0),
        (3, 0.0, 4, 0.0),
        (1, 0.5, 1, 0.5),
    ],
)
def test_kl_weight(epoch, beta, warmup, expected):
    result = kl_weight(epoch, beta, warmup)
    assert isinstance(result, float)
    assert result == pytest.approx(expected, rel=1e-12)


def test_kl_weight_ramp_is_linear_and_capped():
    weights = [kl_weight(epoch, 3.0, 6) for epoch in range(10)]
    assert_allclose(weights, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3, 3, 3])


# --------------------------------------------------------------------------- RowNoise


def _rows(n, n_features=5, seed=0, dtype=torch.float64):
    return torch.randn(n, n_features, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_noise_shape_and_dtype(dtype):
    noise = RowNoise(0, 3)
    x = _rows(7, dtype=dtype)
    eps = noise(x, 4)
    assert eps.shape == (7, 4, 3)
    assert eps.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_noise_depends_on_the_row_alone(dtype):
    noise = RowNoise(42, 2)
    x = _rows(30, dtype=dtype)
    eps = noise(x, 5)
    # the same row gets the same noise whatever the other rows and its position
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise(x[perm], 5), eps[perm])
    assert torch.equal(noise(x[3:4], 5), eps[3:4])
    others = torch.cat([_rows(10, seed=9, dtype=dtype), x[3:4], _rows(4, seed=8, dtype=dtype)])
    assert torch.equal(noise(others, 5)[10], eps[3])
    # and from a fresh instance with the same seed
    assert torch.equal(RowNoise(42, 2)(x, 5), eps)
    # a non-contiguous (column-major) tensor of the same values: the same noise
    column_major = x.t().contiguous().t()
    assert not column_major.is_contiguous()
    assert torch.equal(noise(column_major, 5), eps)


def test_row_noise_differs_between_rows_and_seeds():
    x = _rows(200)
    eps = RowNoise(0, 2)(x, 1)[:, 0]
    # one draw per row from a table of 8191: a few birthday collisions at most
    assert torch.unique(eps, dim=0).shape[0] >= 195
    # K draws per row (a start and a stride): distinct sequences for distinct rows
    eps = RowNoise(0, 2)(x, 5).reshape(200, -1)
    assert torch.unique(eps, dim=0).shape[0] == 200
    # rows differing in one value only
    y = x.clone()
    y[:, 0] += 1.0
    assert not torch.equal(RowNoise(0, 2)(y, 1), RowNoise(0, 2)(x, 1))
    assert not torch.equal(RowNoise(1, 2)(x, 1), RowNoise(0, 2)(x, 1))


@pytest.mark.parametrize("k", [2, 50, 8191, 9000])
def test_row_noise_gives_distinct_draws_per_row(k):
    x = _rows(3)
    eps = RowNoise(0, 2)(x, k)
    for row in eps:
        assert torch.unique(row, dim=0).shape[0] == k


def test_row_noise_first_draw_is_the_elbo_draw():
    # the ELBO (K=1) uses the first of the K draws of the IWAE (same table size)
    x = _rows(10)
    noise = RowNoise(5, 3)
    assert torch.equal(noise(x, 1)[:, 0], noise(x, 20)[:, 0])


def test_row_noise_is_approximately_standard_normal():
    x = _rows(20_000, n_features=4)
    eps = RowNoise(0, 2)(x, 1)[:, 0].numpy()
    assert_allclose(eps.mean(0), 0, atol=0.04)
    assert_allclose(eps.std(0), 1, atol=0.04)
    # uncorrelated latent dimensions
    assert abs(np.corrcoef(eps.T)[0, 1]) < 0.04
    # K draws of one row are a standard-normal sample too
    many = RowNoise(0, 2)(x[:1], 8000)[0].numpy()
    assert_allclose(many.mean(0), 0, atol=0.05)
    assert_allclose(many.std(0), 1, atol=0.05)
    assert stats.kstest(many[:, 0], "norm").pvalue > 1e-3


def test_row_noise_rejects_nothing_up_to_the_largest_table():
    x = _rows(1)
    assert RowNoise(0, 1)(x, MAX_IMPORTANCE_SAMPLES).shape == (1, MAX_IMPORTANCE_SAMPLES, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_noise_hash_is_the_same_in_float64_and_int64(monkeypatch, dtype):
    # rows up to 2**13 16-bit pieces are hashed with an exact float64 matrix
    # product, wider ones in int64: both give the same noise
    x = torch.randn(50, 300, generator=torch.Generator().manual_seed(0), dtype=dtype)
    fast = RowNoise(3, 4)(x, 5)
    monkeypatch.setattr(skvae._losses, "_EXACT_FLOAT64_PIECES", 0)
    assert torch.equal(RowNoise(3, 4)(x, 5), fast)
    # extreme bit patterns (all pieces 0xFFFF) stay exact too
    ones = torch.full((2, 2**13 // (dtype.itemsize // 2)), -1, dtype=torch.int16)
    ones = ones.view(dtype)
    slow = RowNoise(3, 4)(ones, 2)
    monkeypatch.setattr(skvae._losses, "_EXACT_FLOAT64_PIECES", 2**13)
    assert torch.equal(RowNoise(3, 4)(ones, 2), slow)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exact_pieces", [0, 2**13])
def test_row_noise_is_the_same_hashed_in_blocks_of_rows(monkeypatch, dtype, exact_pieces):
    # the hash runs a block of rows at a time, to bound its memory: any block
    # size, down to one row, gives the same noise
    monkeypatch.setattr(skvae._losses, "_EXACT_FLOAT64_PIECES", exact_pieces)
    x = _rows(50, n_features=7, dtype=dtype)
    whole = RowNoise(3, 4)(x, 5)
    for block in (1, 3 * 7 * dtype.itemsize // 2, 10**9):
        monkeypatch.setattr(skvae._losses, "_HASH_BLOCK_PIECES", block)
        assert torch.equal(RowNoise(3, 4)(x, 5), whole)
