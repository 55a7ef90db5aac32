"""Pure loss functions of the VAE, one value per sample, in nats.

Training takes the mean of these values and ``score_samples`` returns them as they
are, so the number a user scores with is the number the model was trained on.
"""

import math

import torch

_LOG_2PI = math.log(2 * math.pi)

# Table sizes for deterministic scoring noise: Mersenne primes, so that any
# stride in [1, M-1] visits M distinct rows of the table.
_TABLE_SIZES = (8191, 131071, 524287)
MAX_IMPORTANCE_SAMPLES = _TABLE_SIZES[-1]
# rows of at most this many 16-bit pieces are hashed with a float64 matrix product
_EXACT_FLOAT64_PIECES = 2**13
# rows are hashed this many 16-bit pieces at a time, so that the hash's copies
# of the pieces (int32, then float64 or int64) stay small whatever the batch
_HASH_BLOCK_PIECES = 2**20


def gaussian_kl_per_dimension(mu, logvar):
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) of each latent dimension, shape ``mu.shape``."""
    return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar)


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dimensions."""
    return gaussian_kl_per_dimension(mu, logvar).sum(-1)


def standard_normal_log_density(z):
    """Sum over the last axis of log N(z; 0, 1)."""
    return -0.5 * (_LOG_2PI + z.square()).sum(-1)


def reconstruction_log_likelihood(module, x, z, observed=None):
    """log p(x | z) under the module's likelihood, broadcasting ``z``'s leading axes.

    Over the observed entries only when ``observed`` (a boolean mask) is given.
    """
    return module.log_likelihood(x, z, observed)


def elbo(module, x, eps, kl_weight=1.0, observed=None, input_noise=None):
    """Per-sample ELBO with one reparameterised draw: E_q[log p(x|z)] - w * KL.

    Parameters
    ----------
    module : VAEModule
    x : Tensor of shape (n, n_features)
    eps : Tensor of shape (n, n_components)
        Standard normal noise; ``z = mu + exp(logvar / 2) * eps``.
    kl_weight : float
        Weight of the analytic KL term (``beta`` or its warm-up value). The
        evidence lower bound itself is ``kl_weight=1``.
    observed : BoolTensor of shape (n, n_features), default=None
        The entries present; ``x`` holds 0 in the others (see
        :func:`skvae._module.split_missing`). None: all are.
    input_noise : Tensor of shape (n, n_features), default=None
        Added to the encoder's input only; the likelihood scores ``x`` itself.
        Training perturbs the encoder's input this way (a denoising encoder:
        Shu et al. 2018, "Amortized inference regularization"): an encoder
        fitted to the exact training rows generalizes worse than the decoder,
        and its posteriors for held-out rows fall several nats short of the
        best ones (``benchmarks/bench_amortization.py``). None: the encoder
        sees ``x``.
    """
    return _elbo_and_code(module, x, eps, kl_weight, observed, input_noise)[0]


def _elbo_and_code(module, x, eps, kl_weight, observed, input_noise):
    """:func:`elbo` and the draw ``z`` it decoded."""
    mu, logvar = module.encode(x if input_noise is None else x + input_noise, observed)
    z = mu + torch.exp(0.5 * logvar) * eps
    value = (reconstruction_log_likelihood(module, x, z, observed)
             - kl_weight * gaussian_kl(mu, logvar))
    return value, z


def supervised_elbo(module, x, y, eps, kl_weight=1.0, target_weight=1.0,
                    unlabelled_weight=0.0, observed=None, input_noise=None):
    """Per-sample ELBO plus the weighted log-likelihood of the label given the code.

    ``elbo + target_weight * log p(y | z)`` for a row with a label, and
    ``elbo - unlabelled_weight * H(p(. | z))`` for a row without one (class
    labels; the entropy of the predicted classes, entropy minimization as in
    Grandvalet & Bengio 2005: the unlabelled codes are drawn away from the
    boundaries between the classes, into the clusters of the labelled ones),
    with the same draw ``z`` from q(z | x) in every term. The label's term
    trains the encoder to put the classes (or the target's levels) where the
    module's ``target_head`` can tell them apart, and the head itself.

    Parameters
    ----------
    module : VAEModule
        With a ``target_head`` (:class:`skvae._module.TargetHead`).
    x : Tensor of shape (n, n_features)
    y : Tensor of shape (n,)
        Class indices (as floats) or a standardized target; NaN for a row
        without a label.
    eps, kl_weight, observed, input_noise
        As in :func:`elbo`.
    target_weight : float
        Weight of each labelled row's ``log p(y | z)``, in nats per nat.
    unlabelled_weight : float, default=0.0
        Weight of each unlabelled row's entropy of p(y | z) (class labels only).

    Returns
    -------
    objective : Tensor of shape (n,)
        Not a bound of log p(x) (the label's terms are not); :func:`elbo` is.
    """
    value, z = _elbo_and_code(module, x, eps, kl_weight, observed, input_noise)
    log_prob, negative_entropy, labelled = module.target_head.log_prob(z, y)
    value = value + target_weight * log_prob
    if unlabelled_weight:
        value = value + unlabelled_weight * torch.where(labelled, 0.0, negative_entropy)
    return value


def importance_log_weights(module, x, eps, observed=None):
    """Draws from the encoder's posterior and their log importance weights.

    ``z_k = mu + sigma * eps[:, k]`` for ``eps`` of shape ``(n, K, n_components)``,
    and ``log p(x, z_k) - log q(z_k | x)``. All K draws go through the decoder in
    one batched call. ``observed`` as in :func:`elbo`.

    Returns
    -------
    z : Tensor of shape (n, K, n_components)
    log_w : Tensor of shape (n, K)
    """
    mu, logvar = module.encode(x, observed)
    std = torch.exp(0.5 * logvar)
    z = mu.unsqueeze(1) + std.unsqueeze(1) * eps  # (n, K, d)
    log_q = standard_normal_log_density(eps) - 0.5 * logvar.sum(-1, keepdim=True)
    log_w = (
        reconstruction_log_likelihood(module, x.unsqueeze(1), z, observed)
        + standard_normal_log_density(z)
        - log_q
    )
    return z, log_w


def iwae_bound(module, x, eps, observed=None):
    """Per-sample importance-weighted bound (Burda et al. 2016) with K draws.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` with the draws and weights of
    :func:`importance_log_weights`, combined with ``torch.logsumexp``.
    """
    _, log_w = importance_log_weights(module, x, eps, observed)
    return torch.logsumexp(log_w, dim=1) - math.log(eps.shape[1])


def kl_weight(epoch, beta, warmup_epochs):
    """KL weight at (0-based) ``epoch``: a linear ramp from 0 to ``beta``.

    With ``warmup_epochs=0`` the weight is ``beta`` from the start; otherwise it
    is ``beta * epoch / warmup_epochs`` until it reaches ``beta``.
    """
    if warmup_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / warmup_epochs)


class RowNoise:
    """Deterministic standard-normal noise for scoring, a function of each row.

    Each row of ``x`` is hashed from the bits of its values and picks
    ``n_importance_samples`` distinct rows of a standard-normal table drawn once
    from ``seed`` (a start and a stride modulo the table's prime size). The noise
    of a row depends on that row alone, not on its position or on the other rows
    of the call, so scores are deterministic and invariant to batching and
    subsetting, while different rows still see different draws.

    Parameters
    ----------
    seed : int
        Seed of the table and of the hash weights.
    n_components : int
        Latent dimensions.
    """

    def __init__(self, seed, n_components):
        self.seed = int(seed)
        self.n_components = n_components
        self._cache = {}

    def _tables(self, size, width, device, dtype):
        key = (size, width, str(device), dtype)
        if key not in self._cache:
            gen = torch.Generator().manual_seed(self.seed)
            table = torch.randn(size, self.n_components, generator=gen, dtype=torch.float64)
            weights = torch.randint(1, 2**24, (width,), generator=gen)
            self._cache[key] = (table.to(device=device, dtype=dtype), weights.to(device))
        return self._cache[key]

    def __call__(self, x, n_importance_samples):
        """Noise of shape ``(len(x), n_importance_samples, n_components)``."""
        size = next(m for m in _TABLE_SIZES if m >= n_importance_samples)
        pieces = x.contiguous().view(torch.int16)  # 16-bit pieces of each row's values
        table, weights = self._tables(size, pieces.shape[1], x.device, x.dtype)
        h = torch.empty(len(x), dtype=torch.int64, device=x.device)
        step = max(1, _HASH_BLOCK_PIECES // max(1, pieces.shape[1]))
        for i in range(0, len(x), step):  # blocks of rows; every row is hashed alone
            h[i:i + step] = _hash(pieces[i:i + step], weights)
        start = h % size
        stride = 1 + (h // size) % (size - 1)
        k = torch.arange(n_importance_samples, device=x.device)
        return table[(start.unsqueeze(1) + k * stride.unsqueeze(1)) % size]


def _hash(pieces, weights):
    """``sum(pieces * weights)`` per row, exactly, for int16 pieces read as unsigned."""
    chunks = pieces.to(torch.int32) & 0xFFFF
    # each term < 2**40, so with at most 2**13 pieces every partial sum is an
    # integer below 2**53, exact in float64 in any order: one matrix product,
    # 2.3x faster than int64 arithmetic, and the same value whatever the batch
    # or block. Wider rows (> 4096 float32 or 2048 float64 features) sum in
    # int64 (no overflow below 2**23 pieces).
    if chunks.shape[1] <= _EXACT_FLOAT64_PIECES:
        return (chunks.to(torch.float64) @ weights.to(torch.float64)).to(torch.int64)
    return (chunks.to(torch.int64) * weights).sum(-1)
