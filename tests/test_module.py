"""Tests of the network ``VAEModule`` (skvae/_module.py)."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from skvae._likelihoods import (LIKELIHOODS, MIN_VARIANCE, BernoulliLikelihood,
                                GaussianLikelihood)
from skvae._module import (ACTIVATIONS, MAX_POSTERIOR_LOG_VARIANCE, VAEModule,
                           _bounded_log_variance, _unbounded_log_variance)


def _randn(*shape):
    """Standard normal draws from a seeded generator, not torch's global one."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _module(n_features=7, n_components=3, hidden=(6, 4), activation="relu",
            likelihood="gaussian", seed=0):
    module = VAEModule(n_features, n_components, hidden, activation, likelihood)
    return module.reset_parameters(torch.Generator().manual_seed(seed))


class _FreeGaussian(GaussianLikelihood):
    """The Gaussian likelihood, decoding constant features like the others."""

    name = "free_gaussian"
    pins_constant_features = False


class _GaussianWithoutLinearStart(GaussianLikelihood):
    """The Gaussian likelihood, claiming no linear Gaussian start."""

    name = "gaussian_without_linear_start"
    supports_linear_start = False


@pytest.fixture
def custom_likelihoods(monkeypatch):
    """Register the likelihood classes above for the test (VAEModule looks names up)."""
    for cls in (_FreeGaussian, _GaussianWithoutLinearStart):
        monkeypatch.setitem(LIKELIHOODS, cls.name, cls)


def _linears(sequential):
    return [layer for layer in sequential if isinstance(layer, nn.Linear)]


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("hidden", [(), (5,), (6, 4)])
def test_encode_decode_shapes(likelihood, hidden):
    module = _module(hidden=hidden, likelihood=likelihood)
    x = _randn(11, 7)
    mu, logvar = module.encode(x)
    assert mu.shape == logvar.shape == (11, 3)
    assert module.decode(mu).shape == (11, 7)
    assert module.decoder_mean(mu).shape == (11, 7)
    assert torch.equal(module(x), mu)
    # leading axes broadcast (the K importance samples)
    assert module.decode(_randn(11, 5, 3)).shape == (11, 5, 7)


def test_layers_mirror_the_hidden_sizes():
    module = _module(n_features=7, n_components=3, hidden=(6, 4))
    encoder = [(layer.in_features, layer.out_features) for layer in _linears(module.encoder)]
    decoder = [(layer.in_features, layer.out_features) for layer in _linears(module.decoder)]
    assert encoder == [(7, 6), (6, 4)]
    assert (module.encoder_head.in_features, module.encoder_head.out_features) == (4, 6)
    assert decoder == [(3, 4), (4, 6)]
    assert (module.decoder_head.in_features, module.decoder_head.out_features) == (6, 7)
    assert module.hidden_layer_sizes == (6, 4)
    assert module.n_features == 7 and module.n_components == 3


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_follows_every_hidden_layer(activation):
    module = _module(hidden=(6, 4), activation=activation)
    kinds = [type(layer) for layer in module.encoder]
    assert kinds == [nn.Linear, ACTIVATIONS[activation]] * 2
    assert module.activation == activation


def test_likelihood_parameters():
    gaussian = _module(likelihood="gaussian")
    assert gaussian.observation.raw_variance.shape == (7,)
    # the variance starts at 1: the standardized data's
    assert_allclose(gaussian.observation.log_variance().detach().numpy(), 0.0, atol=1e-6)
    bernoulli = _module(likelihood="bernoulli")
    assert not hasattr(bernoulli.observation, "raw_variance")
    assert len(list(bernoulli.parameters())) == len(list(gaussian.parameters())) - 1
    p = bernoulli.decoder_mean(_randn(50, 3) * 10)
    assert (p >= 0).all() and (p <= 1).all()
    z = _randn(4, 3)
    assert torch.allclose(bernoulli.decoder_mean(z), torch.sigmoid(bernoulli.decode(z)))
    assert torch.equal(gaussian.decoder_mean(z), gaussian.decode(z))


def test_variance_has_a_floor():
    observation = _module().observation
    with torch.no_grad():
        observation.raw_variance.fill_(-1e4)
    assert_allclose(observation.log_variance().detach().numpy(), math.log(MIN_VARIANCE),
                    rtol=1e-6)
    with torch.no_grad():
        observation.raw_variance.fill_(50.0)
    assert_allclose(observation.log_variance().detach().numpy(), math.log(50.0 + MIN_VARIANCE),
                    rtol=1e-6)


def test_reset_parameters_with_the_same_generator_gives_identical_weights():
    a = _module(seed=3)
    b = _module(seed=3)
    c = _module(seed=4)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if pa.abs().sum() > 0 and pa.numel() > 7:  # not the variance, not the zero paths
            assert not torch.equal(pa, pc)
    assert a.reset_parameters(torch.Generator().manual_seed(3)) is a


def test_reset_parameters_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    # built on the meta device (as the estimator does): nn.Linear draws nothing
    with torch.device("meta"):
        module = VAEModule(7, 3, (6,))
    module.to_empty(device="cpu").reset_parameters(torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_reset_parameters_uses_pytorch_default_scheme():
    module = _module(n_features=400, hidden=(300,), seed=0)
    layer = module.encoder[0]
    bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform(a=sqrt(5)) bound
    weight = layer.weight.detach().numpy()
    assert np.abs(weight).max() <= bound
    assert np.abs(weight).max() > 0.99 * bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(layer.bias.detach().numpy()).max() <= bound


def test_module_built_on_meta_equals_module_built_on_cpu():
    with torch.device("meta"):
        meta = VAEModule(7, 3, (6, 4))
    meta = meta.to_empty(device="cpu").reset_parameters(torch.Generator().manual_seed(0))
    cpu = _module()
    for a, b in zip(meta.parameters(), cpu.parameters()):
        assert torch.equal(a, b)


def test_posterior_log_variance_is_bounded_above():
    module = _module(hidden=(6,), activation="relu")
    with torch.no_grad():
        module.encoder_head.bias.fill_(1e3)  # asks for an enormous posterior variance
        _, logvar = module.encode(_randn(4, 7))
    assert torch.all(logvar <= MAX_POSTERIOR_LOG_VARIANCE)
    assert torch.all(logvar > MAX_POSTERIOR_LOG_VARIANCE - 1e-6)
    raw = np.array([-8.0, -1.0, 0.0, 1.9])
    assert_allclose(_bounded_log_variance(torch.as_tensor(_unbounded_log_variance(raw))), raw,
                    rtol=1e-10)


def test_encoder_clips_its_input_to_the_training_range():
    module = _module(hidden=(6,), activation="relu").double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    low, high = x.min(0).values.numpy(), x.max(0).values.numpy()
    with torch.no_grad():
        unclipped = module.encode(x)[0]
        module.set_input_range(low, high)
        assert_allclose(module.encode(x)[0].numpy(), unclipped.numpy())  # inside: unchanged
        far = x.clone()
        far[:, 2] = 1e6  # far beyond the range: encoded as at its edge
        edge = x.clone()
        edge[:, 2] = float(high[2])
        assert_allclose(module.encode(far)[0].numpy(), module.encode(edge)[0].numpy())


def test_identity_activation_gives_a_linear_map():
    module = _module(hidden=(6, 4), activation="identity").double()
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(5, 7, generator=gen, dtype=torch.float64) for _ in range(2))
    z1, z2 = (torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    zero_x, zero_z = torch.zeros(1, 7, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    with torch.no_grad():
        # the posterior mean, and the log-variance below its smooth upper bound
        for f, a, b, zero in [(lambda x: module.encode(x)[0], x1, x2, zero_x),
                              (lambda x: torch.as_tensor(
                                  _unbounded_log_variance(module.encode(x)[1])), x1, x2,
                               zero_x),
                              (module.decode, z1, z2, zero_z)]:
            # affine: f(2a - 3b) - f(0) == 2 (f(a) - f(0)) - 3 (f(b) - f(0))
            lhs = f(2 * a - 3 * b) - f(zero)
            rhs = 2 * (f(a) - f(zero)) - 3 * (f(b) - f(zero))
            assert_allclose(lhs.numpy(), rhs.numpy(), rtol=1e-10, atol=1e-12)
        # a nonlinear activation is not
        relu = _module(hidden=(6, 4), activation="relu").double()
        lhs = relu.decode(2 * z1 - 3 * z2) - relu.decode(zero_z)
        base = relu.decode(zero_z)
        rhs = 2 * (relu.decode(z1) - base) - 3 * (relu.decode(z2) - base)
        assert not torch.allclose(lhs, rhs)


def test_empty_hidden_layers_are_linear_heads():
    module = _module(hidden=(), activation="relu")
    assert len(module.encoder) == 0 and len(module.decoder) == 0
    assert module.encoder_head.in_features == 7
    assert module.decoder_head.in_features == 3


def test_gradients_reach_every_parameter():
    module = _module()
    x = _randn(8, 7)
    mu, logvar = module.encode(x)
    loss = module.log_likelihood(x, mu + logvar.exp()).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize("cls, values", [(GaussianLikelihood, True),
                                         (BernoulliLikelihood, False)])
def test_likelihood_properties(cls, values):
    assert cls.standardize is values
    assert cls.supports_linear_start is values
    assert cls.pins_constant_features is values


def test_gaussian_variance_setters_keep_to_the_device_of_the_likelihood():
    # numpy inputs must land on the parameters' device: a CPU tensor mixed
    # with CUDA buffers broke every GPU fit (found on an H200). The meta
    # device stands in for a GPU here, and mixes with the CPU no better.
    observation = GaussianLikelihood(3).to("meta")
    observation.set_variance(np.array([0.5, 1.0, 2.0]))
    observation.set_resolution(np.array([0.1, 0.0, 1.0]))
    observation.set_scale(np.array([1.0, 2.0, 3.0]))
    assert {t.device.type for t in observation.state_dict().values()} == {"meta"}


def _decoder_output(module, z):
    """decode(z) without the constant-feature rule: the networks' sum."""
    return module.decoder_head(module.decoder(z)) + module.decoder_linear(z)


@pytest.mark.parametrize("likelihood, pins", [("gaussian", True), ("bernoulli", False),
                                              ("free_gaussian", False)])
def test_constant_features_decode_to_their_constant_where_the_likelihood_pins_them(
        custom_likelihoods, likelihood, pins):
    module = _module(likelihood=likelihood).double()
    assert module.constant_features() is None or not module.constant_features()[0].any()
    low = np.linspace(-1.0, 1.0, 7)
    high = low + 0.5
    high[[2, 5]] = low[[2, 5]]  # features 2 and 5 were constant in training
    module.set_input_range(low, high)
    z = 3 * torch.randn(20, 4, 3, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    with torch.no_grad():
        out, free = module.decode(z), _decoder_output(module, z)
    assert free[..., [2, 5]].std() > 0.1  # the networks' output varies with z there
    if not pins:
        assert module.constant_features() is None
        assert torch.equal(out, free)
        return
    constant, value = module.constant_features()
    assert constant.tolist() == [j in (2, 5) for j in range(7)]
    assert_allclose(value[constant].numpy(), low[[2, 5]])
    assert torch.equal(out[..., ~constant], free[..., ~constant])
    assert torch.equal(out[..., constant], value[constant].expand(20, 4, 2))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_without_linear_start"])
def test_linear_start_needs_a_likelihood_that_supports_it(custom_likelihoods, likelihood):
    module = _module(likelihood=likelihood)
    with pytest.raises(ValueError, match=f"linear Gaussian start.*{likelihood}"):
        module.init_linear_gaussian(np.ones((7, 3)), np.ones(7), np.zeros(7))


def test_linear_start_makes_the_decoder_linear():
    module = _module(likelihood="gaussian").double()
    rng = np.random.default_rng(0)
    W, offset = rng.standard_normal((7, 3)), rng.standard_normal(7)
    module.init_linear_gaussian(W, np.full(7, 0.5), offset)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        x = module.decode(z).numpy()
        assert_allclose(module.decode(torch.zeros(1, 3, dtype=torch.float64)).numpy()[0], offset)
    # the latent axes are rotated: the same linear map up to that rotation
    centred = x - offset
    assert_allclose(centred @ np.linalg.pinv(W).T @ W.T, centred, atol=1e-10)
    assert_allclose(module.observation.log_variance().exp().detach().numpy(), 0.5)


def test_widest_layer_is_the_widest_activation_per_row():
    assert _module(n_features=7, n_components=3, hidden=(6, 4)).widest_layer == 7
    assert _module(n_features=3, n_components=5, hidden=(6,)).widest_layer == 10
    assert _module(n_features=3, n_components=1, hidden=(4, 9)).widest_layer == 9
