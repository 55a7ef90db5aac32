"""The linear start on sparse data, and the judge in batches (skvae/_init.py).

Sparse rows of more than ``DENSE_INIT_VALUES`` entries are never made dense:
PCA centres them implicitly, factor analysis is fitted to rows with their
covariance. The model must be the one the dense rows give, up to rounding (the
dense rows are float32 and standardized in float32, the sparse ones in
float64). The tests of that route set ``DENSE_INIT_VALUES`` to 0 (the
fixture ``sparse_route``; ``dense_route`` restores it), since their data
are small; smaller sparse data are densified and get the dense rows' model
bit for bit.

A solver that fails (ARPACK without convergence, a singular system) or a
model that is not finite leaves the start to the other models, and to random
weights with a warning when none is left: no solver's exception reaches
``fit``.
"""

import json
import os
import subprocess
import sys
import textwrap

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.sparse import csr_array, csr_matrix
from scipy.sparse.linalg import ArpackNoConvergence
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

import skvae
import skvae._data
import skvae._init
from skvae import VAETransformer
from skvae._data import TrainingData
from skvae._init import (SparseRows, _mean_iwae_bound, _rows, covariance_rows,
                         linear_gaussian_model, linear_start, randomized_pca)
from skvae._losses import RowNoise, iwae_bound
from skvae._utils import make_generator
from skvae._training import build_module, standardization

CSR_CONTAINERS = [csr_matrix, csr_array]


@pytest.fixture(autouse=True)
def sparse_route(monkeypatch):
    """The sparse route for the sparse tests' small data."""
    monkeypatch.setattr(skvae._init, "DENSE_INIT_VALUES", 0)


@pytest.fixture
def dense_route(monkeypatch):
    """The default: small sparse data densified for the linear start."""
    monkeypatch.setattr(skvae._init, "DENSE_INIT_VALUES", 2 ** 22)


def _data(n, d, k=3, density=0.4, seed=0):
    """Rows of a k-factor model, most values implicit zeros, two constant columns."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, k) @ rng.randn(k, d) + rng.randn(n, d) * rng.uniform(0.3, 1.0, d)
    X *= rng.uniform(size=(n, d)) < density
    X[:, 0] = 0.0  # implicit zeros only
    X[:, 1] = 2.5  # one value, stored in every row
    X[3] = 0.0     # an empty row
    return X


def _training_data(X, container=None, rows=None):
    mean, scale = standardization(X)  # the same for both: the start is under test
    return TrainingData(X if container is None else container(X), mean, scale, rows=rows)


def _module(d, k, scale, seed=0):
    module = build_module(d, VAETransformer(k, hidden_layer_sizes=(16,)).get_params(),
                          make_generator(seed))
    module.observation.set_scale(scale)
    return module


def _model_covariance(model):
    weights, noise, _ = model
    return weights @ weights.T + np.diag(noise)


def _log_likelihood(model, x):
    return multivariate_normal(model[2], _model_covariance(model), allow_singular=True
                               ).logpdf(x).mean()


# --------------------------------------------------------------------------- the rows


@pytest.mark.parametrize("container", CSR_CONTAINERS)
def test_sparse_rows_are_the_standardized_rows(container):
    X = _data(60, 8)
    dense, sparse = _training_data(X), _training_data(X, container)
    rows = torch.tensor([0, 3, 4, 17, 59])
    x = SparseRows.of(sparse, rows)
    expected = dense.take(rows).double().numpy()
    assert isinstance(x.scaled, csr_matrix) and x.shape == (5, 8)
    assert_allclose(x.scaled.toarray() - x.shift, expected, rtol=1e-6, atol=1e-6)
    assert_allclose(x.mean, expected.mean(0), atol=1e-6)
    assert_allclose(x.covariance(), np.cov(expected.T, bias=True), atol=1e-5)


def test_rows_stay_sparse_and_dense_rows_are_as_before():
    X = _data(50, 6)
    assert isinstance(_rows(_training_data(X, csr_matrix), make_generator(0)), SparseRows)
    dense = _training_data(X)
    x = _rows(dense, make_generator(0))
    assert isinstance(x, np.ndarray) and x.dtype == np.float64
    assert_array_equal(x, dense.take(torch.arange(50)).double().numpy())


@pytest.mark.parametrize("container", CSR_CONTAINERS)
def test_small_sparse_data_take_the_dense_route(dense_route, container):
    """Up to DENSE_INIT_VALUES entries, sparse rows are densified: the dense
    copy's rows, so the same linear model bit for bit."""
    X = _data(50, 6)
    x = _rows(_training_data(X, container), make_generator(0))
    assert isinstance(x, np.ndarray)
    assert_array_equal(x, _rows(_training_data(X), make_generator(0)))


def test_a_csr_matrix_and_its_dense_copy_fit_the_same_model(dense_route):
    """Digits: the same start, codes and scores whatever the container (the
    first code's sign differed before the sign convention)."""
    X = load_digits().data[:600]
    params = dict(max_epochs=5, hidden_layer_sizes=(32,), random_state=0, device="cpu")
    dense = VAETransformer(3, **params).fit(X)
    sparse = VAETransformer(3, **params).fit(csr_matrix(X))
    assert dense.init_ == sparse.init_ == "factor_analysis"
    for vae in (dense, sparse):
        codes = vae.transform(X)
        assert_allclose(codes, dense.transform(X), rtol=1e-6, atol=1e-6)
        assert_allclose(vae.transform(csr_matrix(X)), codes, rtol=1e-6, atol=1e-6)
        assert_allclose(vae.score_samples(X), dense.score_samples(X), rtol=1e-6)


def test_every_axis_of_a_start_has_its_largest_loading_positive():
    """One sign convention for every solver: flipping the loadings' columns
    (as another solver may) gives the same module."""
    X = _data(200, 8)
    x = _rows(_training_data(X), make_generator(0))
    weights, noise, offset = linear_gaussian_model("factor_analysis", x, 3, seed=0)
    scale = standardization(X)[1]
    states = []
    for signs in ([1, 1, 1], [-1, 1, -1]):
        module = _module(8, 3, scale).init_linear_gaussian(weights * signs, noise, offset)
        W = module.decoder_linear.weight.detach().double().numpy()
        assert np.all(W[np.abs(W).argmax(axis=0), np.arange(3)] > 0)
        states.append(module.state_dict())
    assert all(torch.allclose(states[0][key], states[1][key], atol=1e-6) for key in states[0])


def _one_non_zero_a_row():
    """Issue 38's rows: 512 of 40,000 with a non-zero a row on average at random
    cells (a bag of words), empty rows and columns."""
    rng = np.random.RandomState(0)
    X = csr_matrix((rng.uniform(0.5, 2.0, 40000), (rng.randint(40000, size=40000),
                    rng.randint(2000, size=40000))), shape=(40000, 2000))
    return X[:512]


class _ArpackFails(PCA):
    """PCA whose ARPACK solver does not converge, as it did on issue 38's rows
    (with scipy 1.17's ARPACK and some start vectors: not every build fails)."""

    def fit(self, X, y=None):
        if self.svd_solver == "arpack":
            raise ArpackNoConvergence("ARPACK error -1: No convergence", None, None)
        return super().fit(X, y)


def test_sparse_pca_that_arpack_cannot_solve_takes_the_randomized_route(monkeypatch):
    monkeypatch.setattr(skvae._init, "PCA", _ArpackFails)
    X = _one_non_zero_a_row()
    x = _rows(_training_data(X, csr_matrix), make_generator(0))
    weights, noise, offset = linear_gaussian_model("pca", x, 2, seed=1)
    assert weights.shape == (2000, 2) and np.isfinite(weights).all()
    # PCA's model: its variances are the top of the dense rows' spectrum, its
    # noise the mean of the rest (both approximate where the values nearly tie)
    dense = x.scaled.toarray() - x.shift
    spectrum = np.linalg.svd(dense - dense.mean(axis=0), compute_uv=False) ** 2 / 511
    assert_allclose(np.sort((weights ** 2).sum(axis=0) + noise[0])[::-1], spectrum[:2],
                    rtol=0.05)
    assert noise[0] == pytest.approx(spectrum[2:].mean(), rel=1e-3)
    assert_allclose(offset, dense.mean(axis=0), atol=1e-12)


def test_randomized_pca_is_pca_where_the_spectrum_has_a_gap():
    X = _data(300, 40, k=3, density=0.6)
    x = _rows(_training_data(X, csr_matrix), make_generator(0))
    variance, components, noise = randomized_pca(x, 3, seed=0)
    pca = PCA(3, svd_solver="full").fit(x.scaled.toarray())
    assert_allclose(variance, pca.explained_variance_, rtol=1e-8)
    assert_allclose(np.abs(components @ pca.components_.T), np.eye(3), atol=1e-6)
    assert noise == pytest.approx(pca.noise_variance_, rel=1e-8)


@pytest.mark.parametrize("route", ["dense", "sparse"])
def test_issue_38s_rows_fit_without_a_warning(monkeypatch, route):
    """512 rows of a bag of words: ARPACK gave up on them (from fit)."""
    if route == "dense":  # the default for rows this small
        monkeypatch.setattr(skvae._init, "DENSE_INIT_VALUES", 2 ** 22)
    X = _one_non_zero_a_row()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vae = VAETransformer(2, max_epochs=1, hidden_layer_sizes=(16,), random_state=0,
                             device="cpu").fit(X)
    assert vae.init_ == "pca" and np.isfinite(vae.transform(X)).all()


@pytest.mark.parametrize("data", ["dense", "csr"])
def test_a_failed_solver_leaves_the_start_to_the_other(monkeypatch, data):
    X = _data(200, 10)
    container = csr_matrix if data == "csr" else None
    train = _training_data(X, container, rows=torch.arange(150))
    valid = _training_data(X, container, rows=torch.arange(150, 200))
    real = skvae._init.linear_gaussian_model

    def pca_fails(method, *args):
        if method == "pca":
            raise ArpackNoConvergence("ARPACK error -1: No convergence", None, None)
        return real(method, *args)

    monkeypatch.setattr(skvae._init, "linear_gaussian_model", pca_fails)
    module = _module(10, 2, standardization(X)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: a linear model started it
        name = linear_start(module, "auto", train, valid, RowNoise(0, 2), 0, make_generator(1))
    assert name == "factor_analysis"


@pytest.mark.parametrize("failure", ["raises", "not finite", "bound not finite"])
def test_when_every_linear_model_fails_training_starts_from_random_weights(
        monkeypatch, failure):
    X = _data(200, 10)
    train = _training_data(X, rows=torch.arange(150))
    valid = _training_data(X, rows=torch.arange(150, 200))
    real = skvae._init.linear_gaussian_model

    def broken(method, *args):
        if failure == "raises":
            raise np.linalg.LinAlgError("SVD did not converge")
        weights, noise, offset = real(method, *args)
        if failure == "not finite":
            weights[0, 0] = np.nan
        else:  # finite, but no row is finite under it (float32 overflow)
            offset = offset.copy()
            offset[0] = np.finfo(np.float64).max
        return weights, noise, offset

    monkeypatch.setattr(skvae._init, "linear_gaussian_model", broken)
    module = _module(10, 2, standardization(X)[1])
    random_weights = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.warns(UserWarning, match="could not start from a linear model.*random"):
        name = linear_start(module, "auto", train, valid, RowNoise(0, 2), 0, make_generator(1))
    assert name is None
    assert all(torch.equal(module.state_dict()[k], v) for k, v in random_weights.items())


@pytest.mark.parametrize("failure", [np.linalg.LinAlgError("Singular matrix"),
                                     FloatingPointError("overflow")])
def test_fit_never_raises_a_solvers_error(monkeypatch, failure):
    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(skvae._init, "linear_gaussian_model", broken)
    X = _data(120, 6)
    with pytest.warns(UserWarning, match=type(failure).__name__):
        vae = VAETransformer(2, max_epochs=2, hidden_layer_sizes=(8,), random_state=0,
                             device="cpu").fit(X)
    assert vae.init_ is None and np.isfinite(vae.transform(X)).all()


@pytest.mark.parametrize("n, d", [(300, 12), (12, 12), (7, 12), (5, 12)])
def test_covariance_rows_have_the_covariance(n, d):
    X = _data(n, d)
    covariance = np.cov(X.T, bias=True)
    rows = covariance_rows(covariance, n)
    # below d rows, as many as the data; above, at least d (scikit-learn's
    # randomized SVD then works on the same side of the matrix as for the data)
    assert len(rows) == n if n < d else d <= len(rows) <= n
    assert_allclose(rows.mean(0), 0.0, atol=1e-12)
    assert_allclose(rows.T @ rows / len(rows), covariance, atol=1e-12)


def test_covariance_rows_of_no_variance():
    rows = covariance_rows(np.zeros((4, 4)), 10)
    assert rows.shape[1] == 4 and len(rows) >= 2
    assert_array_equal(rows, 0.0)


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("container", CSR_CONTAINERS)
@pytest.mark.parametrize("method", ["pca", "factor_analysis"])
@pytest.mark.parametrize("n_components", [1, 3])
def test_sparse_start_is_the_dense_start(container, method, n_components):
    """At least as many rows as features: the same model, up to rounding."""
    X = _data(400, 20)
    dense = _rows(_training_data(X), make_generator(0))
    sparse = _rows(_training_data(X, container), make_generator(0))
    expected = linear_gaussian_model(method, dense, n_components, seed=0)
    model = linear_gaussian_model(method, sparse, n_components, seed=0)
    assert_allclose(_model_covariance(model), _model_covariance(expected), rtol=1e-5,
                    atol=1e-6)
    assert_allclose(model[1], expected[1], rtol=1e-5, atol=1e-6)  # noise variances
    assert_allclose(model[2], expected[2], atol=1e-6)             # offsets
    # the loadings span the same subspace
    q, _ = np.linalg.qr(expected[0])
    assert_allclose(q @ (q.T @ model[0]), model[0], atol=1e-5)


def test_sparse_start_with_fewer_rows_than_features():
    """PCA is the dense rows' model; factor analysis (randomized SVDs from the
    other side) as good a fit as theirs."""
    X = _data(60, 80)
    dense = _rows(_training_data(X), make_generator(0))
    sparse = _rows(_training_data(X, csr_matrix), make_generator(0))
    expected = linear_gaussian_model("pca", dense, 3, seed=0)
    assert_allclose(_model_covariance(linear_gaussian_model("pca", sparse, 3, seed=0)),
                    _model_covariance(expected), rtol=1e-5, atol=1e-6)
    expected = _log_likelihood(linear_gaussian_model("factor_analysis", dense, 3, seed=0), dense)
    found = _log_likelihood(linear_gaussian_model("factor_analysis", sparse, 3, seed=0), dense)
    assert found == pytest.approx(expected, rel=1e-3)


def test_sparse_pca_with_as_many_components_as_features():
    """arpack cannot fit n_components == n_features; covariance_eigh does."""
    X = _data(50, 4, k=2, density=0.6)
    dense = _rows(_training_data(X), make_generator(0))
    sparse = _rows(_training_data(X, csr_matrix), make_generator(0))
    expected = linear_gaussian_model("pca", dense, 4, seed=0)
    model = linear_gaussian_model("pca", sparse, 4, seed=0)
    assert_allclose(_model_covariance(model), _model_covariance(expected), atol=1e-5)
    assert_allclose(_model_covariance(model), np.cov(dense.T), atol=1e-5)


# scikit-learn warns of the zero variance, for the dense rows as for these
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
@pytest.mark.parametrize("method", ["pca", "factor_analysis"])
def test_sparse_start_of_a_zero_matrix(method):
    """No variance at all (arpack cannot start on it): the dense rows' model."""
    X = np.zeros((30, 5))
    dense = _rows(_training_data(X), make_generator(0))
    sparse = _rows(_training_data(X, csr_matrix), make_generator(0))
    expected = linear_gaussian_model(method, dense, 2, seed=0)
    model = linear_gaussian_model(method, sparse, 2, seed=0)
    for found, wanted in zip(model, expected):
        assert_allclose(found, wanted, atol=1e-12)
    module = _module(5, 2, standardization(X)[1])
    data = _training_data(X, csr_matrix)
    assert linear_start(module, "auto", data, None, RowNoise(0, 2), 0, make_generator(1))


@pytest.mark.parametrize("method", ["auto", "pca", "factor_analysis"])
def test_linear_start_on_sparse_data_matches_dense(monkeypatch, method):
    """The same choice and the same held-out bound, with a row subset drawn."""
    monkeypatch.setattr(skvae._init, "MAX_INIT_ROWS", 250)  # the subset of large data
    X = _data(400, 20)
    train_rows, valid_rows = torch.arange(300), torch.arange(300, 400)
    results = []
    for container in (None, csr_matrix):
        train = _training_data(X, container, rows=train_rows)
        valid = _training_data(X, container, rows=valid_rows)
        module = _module(20, 3, standardization(X)[1])
        name = linear_start(module, method, train, valid, RowNoise(0, 3), 0, make_generator(1))
        with torch.no_grad():
            bound = _mean_iwae_bound(module, valid, torch.arange(100), RowNoise(0, 3))
        results.append((name, bound))
    (expected_name, expected_bound), (name, bound) = results
    assert name == expected_name and name in skvae._init.INIT_METHODS[method]
    assert bound == pytest.approx(expected_bound, rel=1e-5)


# --------------------------------------------------------------------------- the judge


@pytest.mark.parametrize("container", [None, csr_matrix])
def test_the_judge_bound_is_the_same_in_any_batches(monkeypatch, container):
    X = _data(200, 10)
    data = _training_data(X, container)
    module = _module(10, 2, standardization(X)[1])
    noise, rows = RowNoise(0, 2), torch.arange(200)
    with torch.no_grad():
        whole = iwae_bound(module, data.take(rows), noise(data.take(rows), 16))
        # rows per batch: INFERENCE_BATCH_FLOATS // (3 * 16 * widest layer)
        monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 3 * 16 * 16 * 7)
        batched = _mean_iwae_bound(module, data, rows, noise)
    assert batched == pytest.approx(float(whole.double().mean()), rel=1e-6)


def test_linear_start_chooses_the_same_in_small_batches(monkeypatch):
    X = _data(300, 12)
    train, valid = (_training_data(X, rows=torch.arange(200)),
                    _training_data(X, rows=torch.arange(200, 300)))
    states = []
    for budget in (skvae._data.INFERENCE_BATCH_FLOATS, 3 * 16 * 16 * 3):
        monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", budget)
        module = _module(12, 2, standardization(X)[1])
        name = linear_start(module, "auto", train, valid, RowNoise(0, 2), 0, make_generator(1))
        states.append((name, module.state_dict()))
    (first, a), (second, b) = states
    assert first == second
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_dense_start_fits_pca_to_the_rows_as_they_are():
    X = _data(120, 9)
    x = _rows(_training_data(X), make_generator(0))
    weights, noise, offset = linear_gaussian_model("pca", x, 2, seed=0)
    pca = PCA(2, random_state=0).fit(x)
    assert_array_equal(offset, pca.mean_)
    assert_array_equal(noise, pca.noise_variance_)


# --------------------------------------------------------------------------- memory

SCRIPT = textwrap.dedent("""
    import gc, json, sys
    import numpy as np, scipy.sparse as sp, torch
    import skvae._data, skvae._init
    from skvae import VAETransformer
    from skvae._data import TrainingData, validation_split
    from skvae._losses import RowNoise
    from skvae._utils import make_generator
    from skvae._training import build_module, standardization

    n_rows, n_features = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    skvae._data.INFERENCE_BATCH_FLOATS = 2**20  # 4 MiB batches: the judge's share is small
    rng = np.random.RandomState(0)
    nnz = n_rows * n_features // 1000  # 0.1 % non-zeros
    X = sp.csr_matrix((rng.standard_normal(nnz), (rng.randint(n_rows, size=nnz),
                       rng.randint(n_features, size=nnz))), shape=(n_rows, n_features))
    mean, scale = standardization(X)
    train_rows, valid_rows = validation_split(n_rows, 0.1, make_generator(1))
    train = TrainingData(X, mean, scale, rows=train_rows)
    valid = TrainingData(X, mean, scale, rows=valid_rows)
    module = build_module(n_features, VAETransformer(2, hidden_layer_sizes=(64,)).get_params(),
                          make_generator(0))
    module.observation.set_scale(scale)

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # peak RSS := current RSS
        f.write("5")
    base = status("VmRSS:")
    name = skvae._init.linear_start(module, "auto", train, valid, RowNoise(0, 2), 0,
                                    make_generator(2))
    rows = min(len(train), skvae._init.MAX_INIT_ROWS)
    print(json.dumps({"growth": status("VmHWM:") - base, "init": name,
                      "dense_rows_bytes": rows * n_features * 8}))
""")


def _can_reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_reset_peak_rss(),
                    reason="measures peak RSS through Linux's /proc/self")
@pytest.mark.parametrize("n_rows, n_features, share", [
    # above 1,000 features PCA alone (arpack): memory in the non-zeros; up to
    # 1,000 features factor analysis too, and the judge: d x d arrays (8 MB each).
    # HEAD's start, which densified, grew by 343 and 537 MiB here.
    (12_000, 2_000, 0.1),
    (12_000, 1_000, 0.8),
], ids=["2000 features", "1000 features"])
def test_linear_start_on_sparse_data_does_not_densify_rows(n_rows, n_features, share):
    root = os.path.dirname(os.path.dirname(os.path.abspath(skvae.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)  # see tests/test_memory.py
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([n_rows, n_features])],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth {result['growth'] / 2**20:.1f} MiB, dense rows "
          f"{result['dense_rows_bytes'] / 2**20:.1f} MiB")  # shown by pytest -s
    # the dense start held these rows in float32 and float64, and more copies
    assert result["growth"] < share * result["dense_rows_bytes"], result
