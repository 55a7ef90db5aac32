"""The variational autoencoder as a ``torch.nn.Module``.

The module only knows tensors: an MLP encoder giving the mean and log-variance of
a diagonal Gaussian posterior, and a mirrored MLP decoder giving the parameters of
the observation likelihood. Training, data handling and randomness live elsewhere.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}

#: Smallest variance of the Gaussian likelihood, in standardized units.
MIN_VARIANCE = 1e-3


def _mlp(sizes, activation):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class VAEModule(nn.Module):
    """MLP variational autoencoder with a Gaussian or Bernoulli decoder.

    Parameters
    ----------
    n_features : int
        Width of the data.
    n_components : int
        Latent dimensions.
    hidden_layer_sizes : tuple of int
        Encoder widths; the decoder uses them in reverse order.
    activation : str
        Key of :data:`ACTIVATIONS`.
    likelihood : {"gaussian", "bernoulli"}
        ``"gaussian"``: :meth:`decode` returns means and the module holds one
        learned log-variance per feature (at least :data:`MIN_VARIANCE`).
        ``"bernoulli"``: :meth:`decode` returns logits.
    """

    def __init__(self, n_features, n_components, hidden_layer_sizes=(), activation="relu",
                 likelihood="gaussian"):
        super().__init__()
        self.n_features = n_features
        self.n_components = n_components
        self.likelihood = likelihood
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        sizes = (n_features, *hidden_layer_sizes)
        self.encoder = _mlp(sizes, activation)
        # one head for mean and log-variance: a single matmul instead of two
        self.encoder_head = nn.Linear(sizes[-1], 2 * n_components)
        decoder_sizes = (n_components, *reversed(hidden_layer_sizes))
        self.decoder = _mlp(decoder_sizes, activation)
        self.decoder_head = nn.Linear(decoder_sizes[-1], n_features)
        if likelihood == "gaussian":
            self.raw_variance = nn.Parameter(torch.empty(n_features))
        else:
            self.register_parameter("raw_variance", None)

    def reset_parameters(self, generator=None):
        """Initialise every weight from ``generator`` (PyTorch's default scheme).

        Uses the Kaiming-uniform scheme of :class:`torch.nn.Linear`, but draws from
        the given generator instead of the global one; the Gaussian variance starts
        at 1 (the standardized data's variance).
        """
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        if self.raw_variance is not None:
            with torch.no_grad():  # softplus(raw) + MIN_VARIANCE == 1
                self.raw_variance.fill_(math.log(math.expm1(1.0 - MIN_VARIANCE)))
        return self

    def encode(self, x):
        """Posterior parameters ``(mu, logvar)``, each of shape ``(n, n_components)``."""
        mu, logvar = self.encoder_head(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z):
        """Decoder output: Gaussian means or Bernoulli logits, shape ``(..., n_features)``."""
        return self.decoder_head(self.decoder(z))

    def log_variance(self):
        """Log of the per-feature Gaussian variance, shape ``(n_features,)``."""
        return torch.log(F.softplus(self.raw_variance) + MIN_VARIANCE)

    def decoder_mean(self, z):
        """The mean of p(x | z) in the model's (standardized) units."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x):
        """Posterior means: what ``transform`` returns."""
        return self.encode(x)[0]
