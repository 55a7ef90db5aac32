"""Tests of the estimator ``skvae.VAETransformer`` (skvae/_vae.py)."""

import copy
import io
import pickle
import re
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.sparse import csr_array, csr_matrix
from skorch.callbacks import Callback
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

import skvae._data
import skvae._training
import skvae._vae
from skvae import VAETransformer

#: A small, fast model; tests override what they exercise.
# a small, fast fit from random weights: the tests of the training loop's mechanics
# (losses fall, history, warm starts) need a start that training improves on
SMALL = dict(hidden_layer_sizes=(16,), max_epochs=5, early_stopping=False, init="random",
             random_state=0)

LIKELIHOODS = ["gaussian", "bernoulli"]
DTYPES = [np.float32, np.float64]
CSR_CONTAINERS = [csr_matrix, csr_array]


def _data(likelihood, X):
    """X as the likelihood needs it: digits / 16 (in [0, 1]) for Bernoulli."""
    return X / 16.0 if likelihood == "bernoulli" else X


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same_params(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _global_states():
    return np.random.get_state(), torch.random.get_rng_state()


def _assert_same_global_states(a, b):
    (np_a, torch_a), (np_b, torch_b) = a, b
    assert np_a[0] == np_b[0] and np_a[2:] == np_b[2:]
    assert_array_equal(np_a[1], np_b[1])
    assert torch.equal(torch_a, torch_b)


def _snapshot(est, X):
    """Everything a failed fit must leave as it was."""
    return {
        "n_features_in_": est.n_features_in_,
        "feature_names_in_": getattr(est, "feature_names_in_", None),
        "n_epochs_": est.n_epochs_,
        "transform": est.transform(X),
        "score_samples": est.score_samples(X),
        "params": _params(est.module_),
        "history": copy.deepcopy(list(est.history_)),
    }


def _assert_unchanged(est, X, snapshot):
    assert est.n_features_in_ == snapshot["n_features_in_"]
    if snapshot["feature_names_in_"] is None:
        assert not hasattr(est, "feature_names_in_")
    else:
        assert_array_equal(est.feature_names_in_, snapshot["feature_names_in_"])
    assert est.n_epochs_ == snapshot["n_epochs_"] == len(est.history_)
    assert_array_equal(est.transform(X), snapshot["transform"])
    assert_array_equal(est.score_samples(X), snapshot["score_samples"])
    assert _same_params(_params(est.module_), snapshot["params"])
    assert list(est.history_) == snapshot["history"]  # no epoch added, none changed


class RecordParams(Callback):
    """Records the module's parameters in the history after every batch.

    The last record of an epoch holds the weights the epoch ended with (the ones
    its validation loss was computed with).
    """

    def on_batch_end(self, net, **kwargs):
        net.history.record("params", _params(net.module_))


class RecordKLWeightSeen(Callback):
    """Records, at the start of each epoch, the KL weight skvae has set by then."""

    def __init__(self):
        self.n_calls = 0

    def on_epoch_begin(self, net, **kwargs):
        self.n_calls += 1
        net.history.record("kl_weight_seen", net.history[-1].get("kl_weight"))


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_fit_returns_self_and_sets_fitted_attributes(digits, likelihood):
    X = _data(likelihood, digits[0])
    est = VAETransformer(3, likelihood=likelihood, **SMALL)
    assert est.fit(X) is est
    check_is_fitted(est)
    assert est.n_features_in_ == X.shape[1]
    assert isinstance(est.module_, torch.nn.Module)
    assert est.n_epochs_ == len(est.history_) == SMALL["max_epochs"]
    assert est.mean_.shape == est.scale_.shape == (X.shape[1],)
    assert est.device_ == ("cuda" if torch.cuda.is_available() else "cpu")  # "auto"
    assert not hasattr(est, "feature_names_in_")


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_transform_shape_and_deterministic(digits, fitted_for, likelihood):
    X = _data(likelihood, digits[0])
    est = fitted_for(likelihood)
    Z = est.transform(X)
    assert Z.shape == (X.shape[0], 2)
    assert np.isfinite(Z).all()
    assert_array_equal(est.transform(X), Z)
    # the codes are informative: they are not all the same
    assert Z.std(axis=0).min() > 1e-3


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_fit_transform_equals_fit_then_transform(digits, likelihood):
    X = _data(likelihood, digits[0])
    Z1 = VAETransformer(2, likelihood=likelihood, **SMALL).fit_transform(X)
    Z2 = VAETransformer(2, likelihood=likelihood, **SMALL).fit(X).transform(X)
    assert_array_equal(Z1, Z2)


def test_inverse_transform_gaussian_in_original_units(digits, fitted_vae):
    X = digits[0]
    X_rec = fitted_vae.inverse_transform(fitted_vae.transform(X))
    assert X_rec.shape == X.shape
    # original units: per-feature means near the data's (pixel values in [0, 16]),
    # not the ~0 of standardized data
    assert_allclose(X_rec.mean(axis=0), X.mean(axis=0), atol=3.0)
    assert X_rec.mean() == pytest.approx(X.mean(), rel=0.1)
    assert X_rec.max() > 5
    # the reconstruction is better than predicting the mean image
    mse = ((X_rec - X) ** 2).mean()
    assert mse < ((X - X.mean(axis=0)) ** 2).mean()


def test_inverse_transform_bernoulli_gives_probabilities(digits_binary, fitted_bernoulli_vae):
    X = digits_binary
    X_rec = fitted_bernoulli_vae.inverse_transform(fitted_bernoulli_vae.transform(X))
    assert X_rec.shape == X.shape
    assert X_rec.min() >= 0 and X_rec.max() <= 1
    assert_allclose(X_rec.mean(axis=0), X.mean(axis=0), atol=0.25)


@pytest.mark.parametrize("n_columns", [1, 3])
def test_inverse_transform_rejects_wrong_number_of_columns(fitted_vae, n_columns):
    Z = np.zeros((4, n_columns))
    with pytest.raises(ValueError, match=f"{n_columns} columns.*n_components=2"):
        fitted_vae.inverse_transform(Z)


def test_inverse_transform_accepts_lists_and_the_pandas_output(digits):
    X = digits[0]
    est = VAETransformer(2, **SMALL).set_output(transform="pandas").fit(X)
    Z = est.transform(X[:5])
    assert isinstance(Z, pd.DataFrame)
    X_rec = est.inverse_transform(Z)
    assert_allclose(X_rec, est.inverse_transform(Z.to_numpy().tolist()))
    assert X_rec.shape == (5, X.shape[1])


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_score_is_mean_of_score_samples(digits, fitted_for, likelihood, dtype):
    X = _data(likelihood, digits[0]).astype(dtype)
    est = fitted_for(likelihood)
    scores = est.score_samples(X)
    assert scores.shape == (X.shape[0],)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()
    score = est.score(X)
    assert isinstance(score, float)
    assert score == pytest.approx(scores.mean(), rel=1e-12)
    assert est.score(X, n_importance_samples=5) == pytest.approx(
        est.score_samples(X, n_importance_samples=5).mean(), rel=1e-12
    )


def test_score_ignores_y(digits, fitted_vae):
    X, y = digits
    assert fitted_vae.score(X, y) == fitted_vae.score(X)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_sample(fitted_for, likelihood):
    est = fitted_for(likelihood)
    samples = est.sample(7, random_state=1)
    assert samples.shape == (7, est.n_features_in_)
    assert samples.dtype == np.float64
    assert np.isfinite(samples).all()
    assert_array_equal(est.sample(7, random_state=1), samples)
    assert not np.allclose(est.sample(7, random_state=2), samples)
    # the 7 draws differ from each other
    assert np.unique(samples.round(6), axis=0).shape[0] == 7
    # random_state=None uses the estimator's (an int here): the same each call
    assert_array_equal(est.sample(3), est.sample(3))
    assert est.sample().shape == (1, est.n_features_in_)
    if likelihood == "bernoulli":
        assert samples.min() >= 0 and samples.max() <= 1


def test_sample_is_decoded_prior_draws(fitted_vae):
    # samples are the decoder means of z ~ N(0, I): their spread in latent space
    # (re-encoded) is that of the prior, not a point mass
    samples = fitted_vae.sample(200, random_state=0)
    assert samples.std(axis=0).max() > 0.1
    assert_allclose(samples.mean(axis=0), fitted_vae.mean_, atol=4.0)


@pytest.mark.parametrize("n_samples", [0, -1, 1.5])
def test_sample_rejects_invalid_n_samples(fitted_vae, n_samples):
    with pytest.raises(InvalidParameterError, match="n_samples"):
        fitted_vae.sample(n_samples)


def test_get_feature_names_out(fitted_vae, digits):
    names = fitted_vae.get_feature_names_out()
    assert_array_equal(names, ["vaetransformer0", "vaetransformer1"])
    est = VAETransformer(4, **SMALL).fit(digits[0])
    assert_array_equal(est.get_feature_names_out(), [f"vaetransformer{i}" for i in range(4)])


def test_set_output_pandas(digits):
    X = digits[0]
    df = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])],
                      index=np.arange(100, 100 + X.shape[0]))
    est = VAETransformer(2, **SMALL).set_output(transform="pandas")
    Z = est.fit_transform(df)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == ["vaetransformer0", "vaetransformer1"]
    assert_array_equal(Z.index, df.index)
    Z2 = est.transform(df)
    assert isinstance(Z2, pd.DataFrame)
    assert_array_equal(Z2.to_numpy(), Z.to_numpy())
    # numpy input gives a DataFrame too
    with pytest.warns(UserWarning, match="feature names"):
        assert isinstance(est.transform(X), pd.DataFrame)


def test_dataframe_input_keeps_feature_names(digits):
    X = digits[0]
    columns = [f"pixel{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    est = VAETransformer(2, **SMALL).fit(df)
    assert_array_equal(est.feature_names_in_, columns)
    # the same model as from the array (a DataFrame's values may be Fortran-ordered:
    # matrix products may round differently in the last bit)
    assert_allclose(est.transform(df), VAETransformer(2, **SMALL).fit(X).transform(X),
                    rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="feature names"):
        est.transform(df[columns[::-1]])
    with pytest.warns(UserWarning, match="feature names"):
        est.transform(X)


@pytest.mark.parametrize(
    "method, args",
    [
        ("transform", "X"),
        ("inverse_transform", "Z"),
        ("score", "X"),
        ("score_samples", "X"),
        ("sample", None),
        ("get_feature_names_out", None),
    ],
)
def test_unfitted_estimator_raises_not_fitted_error(digits, method, args):
    est = VAETransformer(2, **SMALL)
    inputs = {"X": (digits[0],), "Z": (np.zeros((3, 2)),), None: ()}[args]
    with pytest.raises(NotFittedError):
        getattr(est, method)(*inputs)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_pipeline_with_logistic_regression(digits):
    X, y = digits
    # device="cpu": the bound below was set by CPU training (a GPU's random
    # numbers differ; an H200 gave 0.595)
    vae = VAETransformer(2, **{**SMALL, "max_epochs": 20, "learning_rate": 1e-2,
                               "batch_size": 32, "device": "cpu"})
    pipe = make_pipeline(vae, LogisticRegression(max_iter=1000))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == y.shape
    # 10 classes: chance is 0.1; the 2-D codes separate most of them
    assert pipe.score(X, y) > 0.6
    assert_array_equal(pipe[0].get_feature_names_out(), ["vaetransformer0", "vaetransformer1"])


def test_grid_search_without_scoring_selects_by_score(digits):
    X = digits[0][:120]
    cv = KFold(2)
    search = GridSearchCV(VAETransformer(**SMALL), {"n_components": [1, 3]}, cv=cv)
    search.fit(X)
    # each split's test score is the estimator's own score (held-out ELBO)
    for split, (train, test) in enumerate(cv.split(X)):
        for i, params in enumerate(search.cv_results_["params"]):
            est = clone(search.estimator).set_params(**params).fit(X[train])
            assert search.cv_results_[f"split{split}_test_score"][i] == pytest.approx(
                est.score(X[test]), rel=1e-12)
    mean_scores = search.cv_results_["mean_test_score"]
    assert search.best_index_ == np.argmax(mean_scores)
    assert search.best_estimator_.n_components == [1, 3][np.argmax(mean_scores)]


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_preserved(digits, fitted_for, likelihood, dtype):
    X = _data(likelihood, digits[0]).astype(dtype)
    est = fitted_for(likelihood)
    Z = est.transform(X)
    assert Z.dtype == dtype
    X_rec = est.inverse_transform(Z)
    assert X_rec.dtype == dtype
    # both precisions compute the same thing
    Z64 = est.transform(X.astype(np.float64))
    assert_allclose(Z, Z64, rtol=1e-4, atol=1e-5)
    assert_allclose(X_rec, est.inverse_transform(Z64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_on_each_float_dtype(digits, dtype):
    X = digits[0].astype(dtype)
    est = VAETransformer(2, **SMALL).fit(X)
    assert est.fit_transform(X).dtype == dtype
    assert next(est.module_.parameters()).dtype == torch.float32  # training in float32
    # float32 and float64 data are the same numbers here: the same model
    ref = VAETransformer(2, **SMALL).fit(digits[0])
    assert_allclose(est.transform(digits[0]), ref.transform(digits[0]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64])
def test_int_input(digits, fitted_vae, int_dtype):
    X = digits[0].astype(int_dtype)  # digits are integers: nothing is lost
    assert_array_equal(fitted_vae.transform(X), fitted_vae.transform(digits[0]))
    assert fitted_vae.transform(X).dtype == np.float64
    assert_array_equal(fitted_vae.score_samples(X), fitted_vae.score_samples(digits[0]))
    est = VAETransformer(2, **SMALL).fit(X)
    assert_array_equal(est.transform(X), VAETransformer(2, **SMALL).fit(digits[0]).transform(X))


def test_list_input(digits, fitted_vae):
    X = digits[0][:10]
    assert_array_equal(fitted_vae.transform(X.tolist()), fitted_vae.transform(X))
    est = VAETransformer(2, **SMALL).fit(digits[0].tolist())
    assert est.n_features_in_ == 64


# --------------------------------------------------------------------------- sparse


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("csr_container", CSR_CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_input_gives_the_dense_results(digits, fitted_for, likelihood, csr_container,
                                              dtype):
    X = _data(likelihood, digits[0]).astype(dtype)
    X_sparse = csr_container(X)
    est = fitted_for(likelihood)
    Z = est.transform(X_sparse)
    assert Z.dtype == dtype
    assert_array_equal(Z, est.transform(X))
    assert_array_equal(est.score_samples(X_sparse), est.score_samples(X))
    assert_array_equal(est.score_samples(X_sparse, n_importance_samples=3),
                       est.score_samples(X, n_importance_samples=3))
    assert est.score(X_sparse) == est.score(X)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("csr_container", CSR_CONTAINERS)
def test_fit_on_sparse_close_to_fit_on_dense(digits, likelihood, csr_container):
    X = _data(likelihood, digits[0])
    X_sparse = csr_container(X)
    dense = VAETransformer(2, likelihood=likelihood, **SMALL).fit(X)
    sparse = VAETransformer(2, likelihood=likelihood, **SMALL).fit(X_sparse)
    assert_allclose(sparse.mean_, dense.mean_, rtol=1e-12)
    assert_allclose(sparse.scale_, dense.scale_, rtol=1e-12)
    assert_allclose(sparse.history_[:, "train_loss"], dense.history_[:, "train_loss"],
                    rtol=1e-5)
    assert_allclose(sparse.transform(X), dense.transform(X), rtol=1e-4, atol=1e-5)
    # scores see noise hashed from the exact bits of the standardized rows, which
    # may differ in the last bit between the two standardizations
    assert sparse.score(X) == pytest.approx(dense.score(X), rel=1e-2)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "dok", "bsr"])
def test_other_sparse_formats_are_accepted(digits, fitted_vae, fmt):
    X = digits[0]
    X_sparse = sp.csr_matrix(X).asformat(fmt)
    assert_array_equal(fitted_vae.transform(X_sparse), fitted_vae.transform(X))
    assert_array_equal(fitted_vae.score_samples(X_sparse), fitted_vae.score_samples(X))
    est = VAETransformer(2, **SMALL).fit(X_sparse)
    assert_allclose(est.transform(X), VAETransformer(2, **SMALL).fit(X).transform(X),
                    rtol=1e-4, atol=1e-5)


def test_fit_does_not_modify_dense_input(digits):
    X = digits[0].copy()
    VAETransformer(2, **SMALL).fit(X)
    assert_array_equal(X, digits[0])
    X32 = digits[0].astype(np.float32)
    VAETransformer(2, **SMALL).fit(X32)
    assert_array_equal(X32, digits[0].astype(np.float32))


def _csr_with_duplicates_and_unsorted_indices():
    """A valid CSR matrix whose rows list column 2 twice, out of order."""
    row_lengths = [3, 2] * 10
    indptr = np.concatenate([[0], np.cumsum(row_lengths)])
    indices = np.tile([2, 0, 2, 1, 1], 10).astype(np.int32)
    data = np.tile([0.1, 0.2, 0.3, 0.4, 0.5], 10)
    return csr_matrix((data, indices, indptr), shape=(20, 3))


def test_fit_does_not_modify_sparse_input():
    """Regression: _CSRRows summed duplicates / sorted the caller's CSR in place."""
    X = _csr_with_duplicates_and_unsorted_indices()
    arrays = [X.data.copy(), X.indices.copy(), X.indptr.copy()]
    dense = X.toarray()
    VAETransformer(1, **SMALL).fit(X)
    assert_array_equal(X.toarray(), dense)
    assert X.nnz == 50
    for before, after in zip(arrays, [X.data, X.indices, X.indptr]):
        assert_array_equal(after, before)


def test_fit_accepts_read_only_sparse_input_with_unsorted_indices():
    """Regression: sorting the caller's read-only CSR arrays in place failed."""
    X = _csr_with_duplicates_and_unsorted_indices()
    for array in (X.data, X.indices, X.indptr):
        array.setflags(write=False)
    est = VAETransformer(1, **SMALL).fit(X)
    assert_array_equal(est.transform(X), est.transform(X.toarray()))


def test_fit_on_csr_with_duplicate_entries_equals_fit_on_dense():
    X = _csr_with_duplicates_and_unsorted_indices()
    dense = X.toarray()
    from_sparse = VAETransformer(1, **SMALL).fit(X)
    from_dense = VAETransformer(1, **SMALL).fit(dense)
    assert_allclose(from_sparse.mean_, from_dense.mean_, rtol=1e-12)
    assert_allclose(from_sparse.scale_, from_dense.scale_, rtol=1e-12)
    assert_allclose(from_sparse.transform(dense), from_dense.transform(dense), rtol=1e-4,
                    atol=1e-5)


def test_bernoulli_checks_the_values_of_csr_with_duplicate_entries(fitted_bernoulli_vae):
    # X[0, 0] is stored twice, as 0.6 and 0.6: its value is 1.2
    X = csr_matrix((np.array([0.6, 0.6, 0.5]), np.array([0, 0, 1]), np.array([0, 2, 3])),
                   shape=(2, 2))
    assert X.toarray()[0, 0] == pytest.approx(1.2)
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[0, 1\.2\]"):
        VAETransformer(1, likelihood="bernoulli", **SMALL).fit(X)
    X64 = csr_matrix((np.r_[0.6, 0.6], np.r_[0, 0], np.r_[0, 2]), shape=(1, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[0, 1\.2\]"):
        fitted_bernoulli_vae.score_samples(X64)


# --------------------------------------------------------------------------- likelihoods


def test_training_data_scores_above_noise(digits, fitted_vae):
    X = digits[0]
    est = fitted_vae
    rng = np.random.RandomState(0)
    # the same marginals, no dependence between features
    shuffled = np.column_stack([rng.permutation(column) for column in X.T])
    noise = rng.normal(X.mean(axis=0), X.std(axis=0), size=X.shape)
    score = est.score(X)
    assert score > est.score(shuffled) + 10
    assert score > est.score(noise) + 10
    # per sample too: most training images beat the typical shuffled one
    assert np.mean(est.score_samples(X) > np.median(est.score_samples(shuffled))) > 0.8


def test_score_is_in_the_units_of_X(digits):
    # A density in the units of X: fitting and scoring 10 * X gives a score lower
    # by n_features * log(10), as for PCA (the -sum(log(scale_)) correction).
    X = digits[0]
    est = VAETransformer(2, **SMALL).fit(X)
    est10 = VAETransformer(2, **SMALL).fit(10 * X)
    assert_allclose(est10.scale_, 10 * est.scale_, rtol=1e-12)
    assert_allclose(est10.transform(10 * X), est.transform(X), rtol=1e-3, atol=1e-4)
    expected = X.shape[1] * np.log(10)  # 147.4 nats
    assert est.score(X) - est10.score(10 * X) == pytest.approx(expected, abs=1.0)
    # per sample, with the noise of the bound averaged out by IWAE
    difference = (est.score_samples(X, n_importance_samples=100)
                  - est10.score_samples(10 * X, n_importance_samples=100))
    assert_allclose(difference, expected, atol=2.0)


def test_score_units_match_pca(digits):
    # PCA.score and VAETransformer.score are the same quantity: on data with a
    # 2-D linear structure, a linear VAE and PCA(2) score alike.
    from sklearn.decomposition import PCA

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) * 5 + rng.normal(size=(300, 6))
    X += 100  # an offset: the score must not depend on it
    pca = PCA(2).fit(X)
    vae = VAETransformer(2, hidden_layer_sizes=(), activation="identity", max_epochs=300,
                         learning_rate=3e-2, batch_size=300, early_stopping=False,
                         random_state=0).fit(X)
    # (in standardized units the VAE would score sum(log(std)) = 11 nats higher)
    assert vae.score(X, n_importance_samples=50) == pytest.approx(pca.score(X), abs=0.3)


def test_constant_features_give_finite_scores(digits, fitted_vae):
    X = digits[0]
    constant = X.std(axis=0) == 0
    assert constant.sum() >= 2  # digits has blank pixels
    scale = fitted_vae.scale_
    # a constant feature gets the root-mean-square spread of the others
    assert_allclose(scale[constant], np.sqrt(np.mean(X[:, ~constant].var(axis=0))),
                    rtol=1e-12)
    assert_allclose(scale[~constant], X[:, ~constant].std(axis=0), rtol=1e-12)
    assert np.isfinite(fitted_vae.score_samples(X)).all()
    # constant in training: reconstructed as that constant
    X_rec = fitted_vae.inverse_transform(fitted_vae.transform(X))
    assert_allclose(X_rec[:, constant], X[:, constant], atol=1e-9)
    # a sample departing from a value that was constant in training: finite and
    # lower, by a bounded penalty (the outlier component's), not a catastrophe
    X_new = X[:5].copy()
    X_new[:, np.flatnonzero(constant)[0]] = 8.0
    before = fitted_vae.score_samples(X[:5], n_importance_samples=64)
    after = fitted_vae.score_samples(X_new, n_importance_samples=64)
    assert np.isfinite(after).all()
    assert (after < before).all()
    assert (after > before - 40).all()  # -log(1e-4) + the broad component's terms


def test_all_features_constant(digits):
    X = np.ones((30, 4))
    est = VAETransformer(2, **SMALL).fit(X)
    assert_array_equal(est.scale_, np.ones(4))
    assert np.isfinite(est.score_samples(X)).all()
    assert np.isfinite(est.transform(X)).all()


def test_bernoulli_scores_binary_data_as_log_probabilities(digits):
    X = (digits[0] > 8).astype(np.float64)
    est = VAETransformer(2, likelihood="bernoulli", **SMALL).fit(X)
    assert_array_equal(est.mean_, np.zeros(X.shape[1]))
    assert_array_equal(est.scale_, np.ones(X.shape[1]))
    scores = est.score_samples(X, n_importance_samples=10)
    assert (scores <= 0).all()
    # above a coin flip for every pixel
    assert scores.mean() > X.shape[1] * np.log(0.5)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad, seen", [(16.0, r"\[0, 16\]"), (-1.0, r"\[-1, 1\]")])
def test_bernoulli_rejects_data_outside_unit_interval(digits_binary, fitted_bernoulli_vae,
                                                      sparse, bad, seen):
    X = digits_binary.copy()
    X[3, 10] = bad
    if sparse:
        X = csr_matrix(X)
    est = VAETransformer(2, likelihood="bernoulli", **SMALL)
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\].*" + seen):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\].*" + seen):
        fitted_bernoulli_vae.score_samples(X)
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\]"):
        fitted_bernoulli_vae.score(X)


@pytest.mark.parametrize("csr_container", CSR_CONTAINERS)
def test_bernoulli_accepts_all_zero_sparse_rows(fitted_bernoulli_vae, csr_container):
    """Regression: _check_support took min() of an empty X.data."""
    blank = csr_container((3, 64))
    assert_array_equal(fitted_bernoulli_vae.score_samples(blank),
                       fitted_bernoulli_vae.score_samples(np.zeros((3, 64))))


def test_bernoulli_fit_on_all_zero_sparse_data():
    """Regression: _check_support took min() of an empty X.data."""
    est = VAETransformer(2, likelihood="bernoulli", **SMALL).fit(csr_matrix((20, 5)))
    assert est.transform(np.zeros((2, 5))).shape == (2, 2)


# --------------------------------------------------------------------------- IWAE


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_iwae_with_one_sample_is_the_elbo(digits, fitted_for, likelihood):
    X = _data(likelihood, digits[0])
    est = fitted_for(likelihood)
    assert_array_equal(est.score_samples(X, n_importance_samples=1), est.score_samples(X))
    assert est.score(X, n_importance_samples=1) == est.score(X)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_iwae_is_above_the_elbo_on_held_out_data(digits_test, fitted_for, likelihood):
    X = _data(likelihood, digits_test[0])
    est = fitted_for(likelihood)
    elbo = est.score_samples(X)
    iwae = est.score_samples(X, n_importance_samples=100)
    assert np.isfinite(iwae).all()
    assert iwae.mean() > elbo.mean()
    if likelihood == "gaussian":  # a wide posterior: IWAE gains on most samples
        assert np.mean(iwae >= elbo) > 0.5
    if likelihood == "gaussian":
        # more samples, a tighter bound (on average)
        assert iwae.mean() > est.score_samples(X, n_importance_samples=5).mean() + 0.1


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_importance_samples", [1, 7])
def test_score_samples_is_deterministic(digits, fitted_for, likelihood, dtype,
                                        n_importance_samples):
    X = _data(likelihood, digits[0]).astype(dtype)
    est = fitted_for(likelihood)
    first = est.score_samples(X, n_importance_samples=n_importance_samples)
    assert_array_equal(est.score_samples(X, n_importance_samples=n_importance_samples), first)
    # and so is a copy of the estimator
    assert_array_equal(copy.deepcopy(est).score_samples(X, n_importance_samples), first)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_importance_samples", [1, 7])
@pytest.mark.parametrize("batch_floats", [None, 64 * 7 * 7])
def test_score_samples_subset_and_order_invariant(digits, fitted_for, monkeypatch, likelihood,
                                                  dtype, n_importance_samples, batch_floats):
    if batch_floats is not None:  # several inference batches, of 7 rows
        monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", batch_floats)
    X = _data(likelihood, digits[0])[:40].astype(dtype)
    est = fitted_for(likelihood)
    k = n_importance_samples
    # float64: the same up to float64 rounding; float32: float32 rounding (relative)
    tol = dict(rtol=0, atol=1e-7) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    full = est.score_samples(X, n_importance_samples=k)
    assert_allclose(est.score_samples(X[:5], n_importance_samples=k), full[:5], **tol)
    for i in (0, 17, 39):
        assert_allclose(est.score_samples(X[i:i + 1], n_importance_samples=k), full[i:i + 1],
                        **tol)
    order = np.random.RandomState(0).permutation(len(X))
    assert_allclose(est.score_samples(X[order], n_importance_samples=k), full[order], **tol)
    # transform is batch-invariant too
    Z = est.transform(X)
    assert_allclose(est.transform(X[order]), Z[order], **tol)


def test_identical_rows_get_identical_scores_and_different_rows_differ(fitted_vae, digits):
    X = digits[0][:10]
    scores = fitted_vae.score_samples(np.vstack([X, X]))
    # the same row scores the same wherever it sits in the call, up to the last
    # bit of float64 (a matrix product may round a row differently by its
    # position in the block, 1e-14 here)
    assert_allclose(scores[:10], scores[10:], rtol=1e-13, atol=0)
    # and different rows differ: each has its own noise and value
    gaps = np.abs(scores[:10, None] - scores[None, :10])[~np.eye(10, dtype=bool)]
    assert gaps.min() > 1e-6


@pytest.mark.parametrize("n_importance_samples", [0, -1, 1.5, "a", None, True,
                                                  skvae._vae.MAX_IMPORTANCE_SAMPLES + 1])
def test_invalid_n_importance_samples(digits, fitted_vae, n_importance_samples):
    X = digits[0][:5]
    with pytest.raises(ValueError, match="n_importance_samples"):
        fitted_vae.score_samples(X, n_importance_samples=n_importance_samples)
    with pytest.raises(ValueError, match="n_importance_samples"):
        fitted_vae.score(X, n_importance_samples=n_importance_samples)


def test_numpy_integer_n_importance_samples(digits, fitted_vae):
    X = digits[0][:5]
    assert_array_equal(fitted_vae.score_samples(X, n_importance_samples=np.int64(4)),
                       fitted_vae.score_samples(X, n_importance_samples=4))


# --------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_same_int_random_state_gives_identical_fits(digits, likelihood):
    X = _data(likelihood, digits[0])
    params = {**SMALL, "early_stopping": True, "likelihood": likelihood}
    a = VAETransformer(2, **params).fit(X)
    b = VAETransformer(2, **params).fit(X)
    assert_array_equal(a.transform(X), b.transform(X))
    assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert_array_equal(a.score_samples(X, n_importance_samples=5),
                       b.score_samples(X, n_importance_samples=5))
    assert_array_equal(a.sample(4), b.sample(4))
    for key in ("train_loss", "valid_loss"):
        assert a.history_[:, key] == b.history_[:, key]
    assert _same_params(_params(a.module_), _params(b.module_))
    # refitting the same estimator is idempotent as well
    assert_array_equal(a.fit(X).transform(X), b.transform(X))


def test_different_random_states_give_different_fits(digits):
    X = digits[0]
    a = VAETransformer(2, **SMALL).fit(X)
    b = VAETransformer(2, **{**SMALL, "random_state": 1}).fit(X)
    assert not np.allclose(a.transform(X), b.transform(X))
    assert a.history_[:, "train_loss"] != b.history_[:, "train_loss"]


def test_random_state_none_gives_different_fits(digits):
    X = digits[0]
    a = VAETransformer(2, **{**SMALL, "random_state": None}).fit(X)
    b = VAETransformer(2, **{**SMALL, "random_state": None}).fit(X)
    assert not np.allclose(a.transform(X), b.transform(X))


def test_random_state_instance(digits):
    X = digits[0]
    a = VAETransformer(2, **{**SMALL, "random_state": np.random.RandomState(3)}).fit(X)
    b = VAETransformer(2, **{**SMALL, "random_state": np.random.RandomState(3)}).fit(X)
    assert_array_equal(a.transform(X), b.transform(X))
    # the instance is advanced by each fit, as in scikit-learn
    rng = np.random.RandomState(3)
    c = VAETransformer(2, **{**SMALL, "random_state": rng})
    Z1 = c.fit(X).transform(X)
    Z2 = c.fit(X).transform(X)
    assert_array_equal(Z1, a.transform(X))
    assert not np.allclose(Z1, Z2)


@pytest.mark.parametrize("random_state", [0, None, "instance"])
def test_global_random_states_are_untouched(digits, random_state):
    X = digits[0]
    if random_state == "instance":
        random_state = np.random.RandomState(0)
    np.random.seed(123)
    torch.manual_seed(123)
    before = _global_states()
    est = VAETransformer(2, **{**SMALL, "random_state": random_state, "early_stopping": True})
    est.fit(X)
    est.partial_fit(X)
    est.fit_transform(X)
    est.transform(X)
    est.inverse_transform(np.zeros((2, 2)))
    est.score_samples(X)
    est.score(X, n_importance_samples=3)
    est.sample(5)
    est.sample(5, random_state=0)
    pickle.loads(pickle.dumps(est))
    _assert_same_global_states(before, _global_states())


def test_global_random_state_does_not_change_the_fit(digits):
    X = digits[0]
    np.random.seed(0)
    torch.manual_seed(0)
    a = VAETransformer(2, **SMALL).fit(X)
    np.random.seed(1)
    torch.manual_seed(1)
    b = VAETransformer(2, **SMALL).fit(X)
    assert_array_equal(a.transform(X), b.transform(X))


def test_fit_leaves_torch_settings_unchanged(digits):
    X = digits[0]
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    VAETransformer(2, **{**SMALL, "early_stopping": True}).fit(X).score(X)
    assert torch.get_num_threads() == threads
    assert torch.get_default_dtype() == dtype
    assert torch.is_grad_enabled() == grad


def test_fit_under_float64_default_dtype(digits):
    """Regression: the module took torch's default dtype, the data were float32."""
    X = digits[0]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        est = VAETransformer(2, **SMALL).fit(X)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert next(est.module_.parameters()).dtype == torch.float32  # "training in float32"
    assert np.isfinite(est.score_samples(X)).all()


# --------------------------------------------------------------------------- training


def test_early_stopping_stops_and_restores_the_best_weights(blobs):
    X = blobs[0]
    # tol=0: every improvement restarts the patience
    est = VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=40, n_iter_no_change=2,
                         tol=0.0, learning_rate=1e-2, batch_size=32,
                         callbacks=[RecordParams()], init="random", random_state=0).fit(X)
    valid = np.array(est.history_[:, "valid_loss"])
    best = int(np.argmin(valid))
    assert est.n_epochs_ == len(est.history_) < 40
    # stopped n_iter_no_change epochs after the best one, which was not the last
    assert len(valid) == best + 1 + 2
    assert valid[-1] > valid[best]
    assert est.history_[best, "valid_loss_best"]
    assert _same_params(_params(est.module_), est.history_[best, "params"])
    assert not _same_params(_params(est.module_), est.history_[-2, "params"])


class RecordModes(Callback):
    """Records, after every batch, whether it trained and the modes of all submodules."""

    def on_batch_end(self, net, training=False, **kwargs):
        net.history.record_batch("modes", (training, {m.training for m in net.module_.modules()}))


def test_training_batches_run_in_train_mode_and_validation_in_eval_mode(blobs):
    """skvae sets the submodules' modes from a list made once per network."""
    X = blobs[0]
    est = VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=3, n_iter_no_change=5,
                         callbacks=[RecordModes()], random_state=0).fit(X)
    modes = [batch["modes"] for epoch in est.history_ for batch in epoch["batches"]]
    assert {training for training, _ in modes} == {True, False}
    assert all(seen == {training} for training, seen in modes)
    assert not any(m.training for m in est.module_.modules())  # as after validation


def test_best_weights_are_a_copy_kept_across_improvements(blobs):
    """The kept weights are copied into the same tensors at each improvement, never
    a view of the live parameters."""
    X = blobs[0]
    est = VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=12, n_iter_no_change=12,
                         learning_rate=1e-2, batch_size=32, callbacks=[RecordParams()],
                         init="random", random_state=0)
    stopper = []

    class Spy(Callback):
        def on_epoch_end(self, net, **kwargs):
            callback = dict(net.callbacks_)["early_stopping"]
            stopper.append({k: v.data_ptr() for k, v in callback.best_weights_.items()})
            live = {k: v.data_ptr() for k, v in net.module_.state_dict().items()}
            assert not set(stopper[-1].values()) & set(live.values())

    est.set_params(callbacks=[RecordParams(), Spy()]).fit(X)
    valid = np.array(est.history_[:, "valid_loss"])
    assert sum(est.history_[:, "valid_loss_best"]) >= 2  # several improvements
    assert all(pointers == stopper[0] for pointers in stopper)  # the same tensors
    best = int(np.argmin(valid))
    assert _same_params(_params(est.module_), est.history_[best, "params"])


def test_early_stopping_waits_for_the_end_of_the_kl_warmup(digits_binary):
    """Regression: the validation loss weights the KL term by beta while training
    ramps it up, so it can rise during the warm-up; early stopping ended such fits
    in the warm-up (beta=4, kl_warmup_epochs=50 on digits: stopped at epoch 11).
    Bernoulli: a Gaussian's variances learn fast enough that its validation loss
    falls through these 8 epochs."""
    X = digits_binary
    params = dict(n_components=2, hidden_layer_sizes=(16,), beta=4.0, n_iter_no_change=1,
                  tol=0.0, max_epochs=30, learning_rate=1e-2, batch_size=32, init="random",
                  likelihood="bernoulli", random_state=0, device="cpu")
    est = VAETransformer(kl_warmup_epochs=8, callbacks=[RecordParams()], **params).fit(X)
    valid = np.array(est.history_[:, "valid_loss"])
    flags = est.history_[:, "valid_loss_best"]
    assert est.n_epochs_ > 8
    # an epoch of the warm-up did not improve on the ones before it: early stopping
    # with patience 1 from the first epoch would have ended the fit there
    assert any(valid[e] >= valid[:e].min() for e in range(1, 8))
    # the warm-up epochs neither count towards patience nor compete for the best
    # weights, even where their validation loss is lower than later ones
    assert not any(flags[:8])
    best = 8 + int(np.argmin(valid[8:]))
    assert flags[best] and sum(flags[best + 1:]) == 0
    assert est.n_epochs_ == best + 2  # stopped one epoch (the patience) after the best
    assert _same_params(_params(est.module_), est.history_[best, "params"])


def test_early_stopping_restores_the_epoch_with_the_lowest_validation_loss(digits):
    """Regression: skorch's default relative threshold (1e-4) ignored small
    improvements: training stopped while the validation loss still fell and
    load_best restored an epoch worse than the last. With ``tol=0`` every
    improvement counts; with a ``tol`` the same creep stops the fit, which keeps
    the lowest epoch all the same."""
    X = digits[0]
    params = dict(hidden_layer_sizes=(16,), max_epochs=8, n_iter_no_change=3,
                  learning_rate=1e-6, callbacks=[RecordParams()], init="random",
                  random_state=0)
    for tol, epochs in [(0.0, 8), (0.1, 4)]:
        est = VAETransformer(2, tol=tol, **params).fit(X)
        valid = np.array(est.history_[:, "valid_loss"])
        # a tiny learning rate: the validation loss falls by ~1e-5 relative per epoch
        assert (np.diff(valid) < 0).all()
        # tol=0: training does not stop; 0.1: the first epoch restarts the patience
        # (it beats the start), then 3 epochs creep by less than 0.1 nats
        assert est.n_epochs_ == epochs
        best = int(np.argmin(valid))
        assert best == epochs - 1
        assert _same_params(_params(est.module_), est.history_[best, "params"])


def test_history_has_losses_per_epoch(digits):
    X = digits[0]
    # learning_rate=1e-2: the loss falls by 2-4 nats in 4 epochs, well beyond the
    # noise of one reparameterised draw (on any device)
    est = VAETransformer(2, **{**SMALL, "early_stopping": True, "max_epochs": 4,
                               "learning_rate": 1e-2}).fit(X)
    assert est.n_epochs_ == len(est.history_) == 4
    assert est.history_[:, "epoch"] == [1, 2, 3, 4]
    train, valid = est.history_[:, "train_loss"], est.history_[:, "valid_loss"]
    assert len(train) == len(valid) == 4
    assert np.isfinite(train).all() and np.isfinite(valid).all()
    assert train[-1] < train[0]


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_history_losses_are_in_the_units_of_score(digits, likelihood):
    # valid_loss of the kept epoch is -score of the held-out rows (scored as
    # float32, as in training: the ELBO's noise derives from the values)
    X = _data(likelihood, digits[0])
    est = VAETransformer(2, **{**SMALL, "likelihood": likelihood, "early_stopping": True,
                               "max_epochs": 6, "learning_rate": 1e-2}).fit(X)
    streams = skvae._training.RandomStreams.from_random_state(0)  # the fit's own split
    rows = skvae._data.validation_split(
        X.shape[0], 0.1, streams.generator("validation_split"))[1].numpy()
    kept = [record for record in est.history_ if record["valid_loss_best"]][-1]
    minus_score = -est.score(X[rows].astype(np.float32))
    assert kept["valid_loss"] == pytest.approx(minus_score, rel=1e-5)
    # the training loss is the same quantity on the training rows (up to the
    # drift of the weights within the epoch), not off by sum(log(scale_))
    train_loss, offset = est.history_[-1, "train_loss"], np.log(est.scale_).sum()
    assert abs(train_loss + est.score(X)) < 0.1 * abs(train_loss)
    assert offset == 0 if likelihood == "bernoulli" else offset > 0.2 * abs(train_loss)


def test_history_follows_a_change_of_units(digits):
    # c * X: the same standardized data and training, losses higher by
    # n_features * log(c), as -score is (test_score_is_in_the_units_of_X)
    X = digits[0]
    a = VAETransformer(2, **SMALL).fit(X)
    b = VAETransformer(2, **SMALL).fit(10 * X)
    shift = X.shape[1] * np.log(10)
    assert_allclose(np.subtract(b.history_[:, "train_loss"], a.history_[:, "train_loss"]),
                    shift, rtol=1e-3)


def test_partial_fit_keeps_the_units_of_the_history(digits):
    # scale_ is fixed by the first call: later epochs continue the same curve
    X = digits[0]
    est = VAETransformer(2, **SMALL).fit(X)
    before = est.history_[-1, "train_loss"]
    est.partial_fit(X)
    after = est.history_[-1, "train_loss"]
    assert abs(after - before) < 0.1 * np.log(est.scale_).sum()
    assert after == pytest.approx(-est.score(X), rel=0.05)


def test_no_early_stopping_has_no_valid_loss(digits):
    est = VAETransformer(2, **SMALL).fit(digits[0])
    assert all("valid_loss" not in row for row in est.history_)
    assert len(est.history_[:, "train_loss"]) == SMALL["max_epochs"]


def test_validation_rows_are_held_out_from_training(blobs):
    # with validation_fraction=0.5 the training batches hold half the rows
    X = blobs[0]
    est = VAETransformer(2, **{**SMALL, "early_stopping": True, "batch_size": 7,
                               "validation_fraction": 0.5, "max_epochs": 2}).fit(X)
    assert est.history_[0, "train_batch_count"] == np.ceil(30 / 7)
    assert est.history_[0, "valid_batch_count"] == np.ceil(30 / 7)


@pytest.mark.parametrize("beta, warmup", [(1.0, 4), (0.5, 2), (2.0, 0)])
def test_kl_warmup_ramps_the_kl_weight(digits, beta, warmup):
    est = VAETransformer(2, **{**SMALL, "beta": beta, "kl_warmup_epochs": warmup,
                               "max_epochs": 6}).fit(digits[0])
    expected = [beta * min(1.0, epoch / warmup) if warmup else beta for epoch in range(6)]
    assert_allclose(est.history_[:, "kl_weight"], expected, rtol=1e-12)
    if warmup:
        assert est.history_[0, "kl_weight"] == 0.0
        assert est.history_[1, "kl_weight"] == pytest.approx(beta / warmup)


def test_kl_warmup_continues_across_partial_fit(digits):
    est = VAETransformer(2, **{**SMALL, "kl_warmup_epochs": 3})
    for _ in range(5):
        est.partial_fit(digits[0])
    assert_allclose(est.history_[:, "kl_weight"], [0, 1 / 3, 2 / 3, 1, 1])


def test_beta_weights_the_kl_term_of_the_training_loss(digits):
    X = digits[0]
    # train_loss = -(recon - beta * KL): the first batch sees the same weights and
    # noise whatever beta, so its loss grows linearly with beta (by the batch's KL)
    first = {}
    for beta in (0.0, 1.0, 3.0):
        est = VAETransformer(2, **{**SMALL, "beta": beta}).fit(X)
        loss = est.history_[:, "train_loss"]
        assert np.isfinite(loss).all()
        assert loss[-1] < loss[0]  # it trains, beta=0 included
        first[beta] = est.history_[0, "batches"][0]["train_loss"]
    kl = first[1.0] - first[0.0]
    assert kl > 0
    assert first[3.0] - first[0.0] == pytest.approx(3 * kl, rel=1e-3)


def test_score_ignores_beta(digits, fitted_vae):
    # score is the true ELBO (KL weight 1) whatever beta the model trained with
    X = digits[0]
    est = copy.deepcopy(fitted_vae).set_params(beta=5.0, kl_warmup_epochs=3)
    assert_array_equal(est.score_samples(X), fitted_vae.score_samples(X))


def test_verbose_0_prints_nothing(digits, blobs, capsys):
    VAETransformer(2, **{**SMALL, "early_stopping": True}).fit(digits[0])
    # an early-stopped fit (skorch would announce the stop when verbose)
    est = VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=40, n_iter_no_change=2,
                         learning_rate=1e-2, batch_size=32, random_state=0).fit(blobs[0])
    assert est.n_epochs_ < 40
    VAETransformer(2, **SMALL).partial_fit(digits[0])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_verbose_1_prints_an_epoch_table(digits, capsys):
    VAETransformer(2, **{**SMALL, "early_stopping": True, "max_epochs": 3,
                         "verbose": 1}).fit(digits[0])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert "epoch" in lines[0] and "train_loss" in lines[0] and "valid_loss" in lines[0]
    rows = [line.split()[0] for line in lines[2:]]
    assert rows == ["1", "2", "3"]
    assert "\x1b[" not in out  # not a terminal: no colour codes


def test_verbose_1_prints_every_epoch_then_the_stop(blobs, capsys):
    # the row of the epoch that triggers early stopping is printed before the message
    est = VAETransformer(2, hidden_layer_sizes=(16,), max_epochs=40, n_iter_no_change=2,
                         learning_rate=1e-2, batch_size=32, random_state=0,
                         verbose=1).fit(blobs[0])
    assert est.n_epochs_ < 40
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:-2]] == [
        str(epoch) for epoch in range(1, est.n_epochs_ + 1)]
    assert lines[-2].startswith("Stopping since valid_loss has not improved")
    assert lines[-1].startswith("Restoring best model from epoch")


def test_verbose_2_draws_progress_bars_on_a_terminal_only(digits, capsys, monkeypatch):
    VAETransformer(2, **{**SMALL, "max_epochs": 2, "verbose": 2}).fit(digits[0])
    captured = capsys.readouterr()
    assert "train_loss" in captured.out
    assert "\r" not in captured.out + captured.err  # a log file gets the table only
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    VAETransformer(2, **{**SMALL, "max_epochs": 2, "verbose": 2}).fit(digits[0])
    captured = capsys.readouterr()
    assert "train_loss" in captured.out
    assert "epoch 2:" in captured.err and "it/s" in captured.err


def test_user_callbacks_run_after_skvae_callbacks(digits):
    callback = RecordKLWeightSeen()
    est = VAETransformer(2, **{**SMALL, "kl_warmup_epochs": 2, "max_epochs": 4,
                               "callbacks": [callback]}).fit(digits[0])
    # the user's callback ran every epoch and saw the KL weight skvae had set
    assert est.history_[:, "kl_weight_seen"] == [0.0, 0.5, 1.0, 1.0]
    assert est.history_[:, "kl_weight_seen"] == est.history_[:, "kl_weight"]
    # each fit uses a copy: the user's instance (a parameter) is left as it was
    assert callback.n_calls == 0
    assert est.get_params()["callbacks"][0] is callback
    # (name, callback) pairs are accepted too
    est = VAETransformer(2, **{**SMALL, "max_epochs": 2,
                               "callbacks": [("seen", RecordKLWeightSeen())]}).fit(digits[0])
    assert est.history_[:, "kl_weight_seen"] == [1.0, 1.0]


def test_warm_start_continues_training(digits):
    X = digits[0]
    params = {**SMALL, "warm_start": True, "max_epochs": 4, "learning_rate": 1e-2,
              "batch_size": 32}
    est = VAETransformer(2, **params).fit(X)
    Z = est.transform(X)
    first = est.history_[:, "train_loss"]
    est.fit(X)
    assert est.n_epochs_ == len(est.history_) == 8
    loss = est.history_[:, "train_loss"]
    assert loss[:4] == first
    # the second fit starts where the first ended, not from new random weights
    assert loss[4] < loss[3] + 0.2 * (loss[0] - loss[3])
    assert not np.allclose(est.transform(X), Z)
    # a warm-started sequence is reproducible
    again = VAETransformer(2, **params).fit(X).fit(X)
    assert_array_equal(again.transform(X), est.transform(X))
    # warm_start=False starts afresh
    est.set_params(warm_start=False).fit(X)
    assert est.n_epochs_ == 4
    assert_array_equal(est.transform(X), Z)


@pytest.mark.parametrize("param, value", [("n_components", 3), ("hidden_layer_sizes", (8,)),
                                          ("activation", "tanh"),
                                          ("likelihood", "bernoulli")])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_continuing_with_another_architecture_raises(digits, param, value, method):
    X = digits[0] / 16
    est = VAETransformer(2, **{**SMALL, "warm_start": True}).fit(X)
    snapshot = _snapshot(est, X)
    est.set_params(**{param: value})
    with pytest.raises(ValueError, match=re.escape(f"{param}={value!r}") + ".*warm_start=False"):
        getattr(est, method)(X)
    _assert_unchanged(est, X, snapshot)


def test_warm_start_accepts_equivalent_hidden_layer_sizes(digits):
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "warm_start": True, "hidden_layer_sizes": 16}).fit(X)
    est.set_params(hidden_layer_sizes=[16]).fit(X)
    assert est.n_epochs_ == 2 * SMALL["max_epochs"]


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_warm_start_uses_the_current_learning_rate(digits, method):
    """Regression: the reloaded optimizer state brought back the old learning rate."""
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "warm_start": True, "max_epochs": 3}).fit(X)
    Z = est.transform(X)
    # a learning rate this small leaves the weights where they are
    est.set_params(learning_rate=1e-12, max_epochs=1)
    getattr(est, method)(X)
    assert est.n_epochs_ == 4
    assert_allclose(est.transform(X), Z, rtol=0, atol=1e-6)
    # and a large one moves them
    est.set_params(learning_rate=1e-1)
    getattr(est, method)(X)
    assert not np.allclose(est.transform(X), Z, rtol=0, atol=1e-3)


def test_partial_fit(digits):
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "early_stopping": True})
    assert est.partial_fit(X, y="anything") is est  # y is ignored, not validated
    check_is_fitted(est)
    assert est.n_epochs_ == 1
    first = est.transform(X)
    est.partial_fit(X, y=[1, 2, 3])  # a y of the wrong length is ignored too
    assert est.n_epochs_ == len(est.history_) == 2
    assert not np.allclose(est.transform(X), first)
    # partial_fit holds no data out
    assert all("valid_loss" not in row for row in est.history_)


def test_first_partial_fit_equals_a_one_epoch_fit(digits):
    X = digits[0]
    a = VAETransformer(2, **SMALL).partial_fit(X)
    b = VAETransformer(2, **{**SMALL, "max_epochs": 1}).fit(X)
    assert_array_equal(a.transform(X), b.transform(X))
    assert a.history_[:, "train_loss"] == b.history_[:, "train_loss"]


@pytest.mark.parametrize("csr_container", [None, csr_matrix])
def test_partial_fit_on_chunks(digits, csr_container):
    X = digits[0]
    est = VAETransformer(2, **SMALL)
    chunks = np.array_split(X, 4)
    for chunk in chunks:
        est.partial_fit(chunk if csr_container is None else csr_container(chunk))
    assert est.n_epochs_ == 4
    # statistics come from the first chunk
    assert_allclose(est.mean_, chunks[0].mean(axis=0))
    assert est.history_[:, "train_batch_count"] == [1, 1, 1, 1]
    loss = est.history_[:, "train_loss"]
    assert np.isfinite(loss).all()
    # partial_fit sequences are reproducible
    again = VAETransformer(2, **SMALL)
    for chunk in chunks:
        again.partial_fit(chunk if csr_container is None else csr_container(chunk))
    assert_array_equal(again.transform(X), est.transform(X))
    assert again.history_[:, "train_loss"] == loss


def test_partial_fit_rejects_another_number_of_features(digits):
    X = digits[0]
    est = VAETransformer(2, **SMALL).partial_fit(X)
    snapshot = _snapshot(est, X)
    with pytest.raises(ValueError, match="3 features.*expecting 64 features"):
        est.partial_fit(X[:, :3])
    _assert_unchanged(est, X, snapshot)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "elu", "gelu", "identity"])
def test_every_activation_trains(digits, activation):
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "activation": activation}).fit(X)
    loss = est.history_[:, "train_loss"]
    assert np.isfinite(loss).all()
    assert loss[-1] < loss[0]
    assert np.isfinite(est.transform(X)).all()
    assert est.module_.activation == activation


def test_hidden_layer_sizes_empty_and_int(digits):
    X = digits[0]
    linear = VAETransformer(2, **{**SMALL, "hidden_layer_sizes": ()}).fit(X)
    assert linear.transform(X).shape == (len(X), 2)
    assert len(list(linear.module_.encoder)) == 0
    assert np.isfinite(linear.score(X))
    as_int = VAETransformer(2, **{**SMALL, "hidden_layer_sizes": 16}).fit(X)
    as_tuple = VAETransformer(2, **SMALL).fit(X)
    assert as_int.module_.hidden_layer_sizes == (16,)
    assert_array_equal(as_int.transform(X), as_tuple.transform(X))
    deep = VAETransformer(2, **{**SMALL, "hidden_layer_sizes": [16, 8]}).fit(X)
    assert deep.module_.hidden_layer_sizes == (16, 8)


def test_batch_size_larger_than_n_samples(digits):
    X = digits[0][:10]
    est = VAETransformer(2, **{**SMALL, "batch_size": 1000}).fit(X)
    assert est.history_[:, "train_batch_count"] == [1] * SMALL["max_epochs"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("value, message", [(np.inf, "infinity"), (-np.inf, "infinity")])
def test_non_finite_input(digits, fitted_vae, value, message):
    X = digits[0].copy()
    X[5, 7] = value
    for method in ("fit", "partial_fit"):
        est = VAETransformer(2, **SMALL)
        with pytest.raises(ValueError, match=message):
            getattr(est, method)(X)
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
    for method in ("transform", "score_samples", "score"):
        with pytest.raises(ValueError, match=message):
            getattr(fitted_vae, method)(X)
    with pytest.raises(ValueError, match=message):
        fitted_vae.inverse_transform(np.array([[0.0, value]]))
    with pytest.raises(ValueError, match=message):
        VAETransformer(2, **SMALL).fit(csr_matrix(X))


def test_non_numeric_input(fitted_vae):
    X = np.array([["a", "b"], ["c", "d"]], dtype=object)
    with pytest.raises(ValueError, match="could not convert string to float"):
        VAETransformer(2, **SMALL).fit(X)
    with pytest.raises(ValueError, match="could not convert string to float"):
        fitted_vae.transform(np.full((2, 64), "x", dtype=object))
    # a DataFrame's text columns are categorical (tests/test_mixed.py), but not
    # under a likelihood of numbers
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(ValueError, match="Column 'b' holds"):
        VAETransformer(2, likelihood="gaussian", **SMALL).fit(df)


@pytest.mark.parametrize("shape, message", [((0, 64), "0 sample"), ((5, 0), "0 feature")])
def test_empty_input(fitted_vae, shape, message):
    X = np.empty(shape)
    with pytest.raises(ValueError, match=message):
        VAETransformer(2, **SMALL).fit(X)
    with pytest.raises(ValueError, match=message):
        VAETransformer(2, **SMALL).partial_fit(X)
    with pytest.raises(ValueError, match=message):
        fitted_vae.transform(X)
    with pytest.raises(ValueError, match=message):
        fitted_vae.score_samples(X)


def test_one_dimensional_input(digits, fitted_vae):
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        VAETransformer(2, **SMALL).fit(digits[0][0])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fitted_vae.transform(digits[0][0])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fitted_vae.score_samples(digits[0][0])


@pytest.mark.parametrize("method", ["transform", "score_samples", "score"])
@pytest.mark.parametrize("n_features", [3, 65])
def test_wrong_number_of_features(digits, fitted_vae, method, n_features):
    X = np.ones((4, n_features))
    with pytest.raises(ValueError, match=f"X has {n_features} features, but VAETransformer "
                                         "is expecting 64 features"):
        getattr(fitted_vae, method)(X)


def test_single_sample(digits, fitted_vae):
    X = digits[0][:1]
    assert fitted_vae.transform(X).shape == (1, 2)
    est = VAETransformer(2, **SMALL).fit(X)
    assert np.isfinite(est.score(X))
    with pytest.raises(ValueError, match="n_samples=1.*early_stopping=False"):
        VAETransformer(2, **{**SMALL, "early_stopping": True}).fit(X)


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(n_components=0), "n_components"),
        (dict(n_components=1.5), "n_components"),
        (dict(beta=-1), "beta"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(validation_fraction=1.5), "validation_fraction"),
        (dict(validation_fraction=0.0), "validation_fraction"),
        (dict(activation="foo"), "activation"),
        (dict(likelihood="student_t"), "likelihood"),
        (dict(device="gpu"), "device"),
        (dict(device="cuda:x"), "device"),
        (dict(device=0), "device"),
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
        (dict(hidden_layer_sizes=(8, "a")), "hidden_layer_sizes"),
        (dict(hidden_layer_sizes=(8, 2.5)), "hidden_layer_sizes"),
        (dict(hidden_layer_sizes=0), "hidden_layer_sizes"),
        (dict(hidden_layer_sizes="8"), "hidden_layer_sizes"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_epochs=0), "max_epochs"),
        (dict(verbose=-1), "verbose"),
        (dict(kl_warmup_epochs=-1), "kl_warmup_epochs"),
        (dict(n_iter_no_change=0), "n_iter_no_change"),
        (dict(early_stopping="yes"), "early_stopping"),
        (dict(warm_start=None), "warm_start"),
        (dict(callbacks="print"), "callbacks"),
        (dict(random_state="seed"), "random_state"),
    ],
)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "fit_transform"])
def test_invalid_parameters(digits, params, name, method):
    est = VAETransformer(**{**SMALL, **params})
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of VAETransformer"):
        getattr(est, method)(digits[0])
    assert issubclass(InvalidParameterError, ValueError)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_constructor_does_no_validation():
    est = VAETransformer(n_components=-3, activation="foo", device="gpu")
    assert est.get_params()["n_components"] == -3
    assert est.get_params()["device"] == "gpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_device_without_cuda(digits, device):
    est = VAETransformer(2, **{**SMALL, "device": device})
    with pytest.raises(ValueError, match=f"device='{device}'.*CUDA is not available"):
        est.fit(digits[0])
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_auto_resolves_to_cpu(digits):
    est = VAETransformer(2, **{**SMALL, "device": "auto"}).fit(digits[0])
    assert est.device_ == "cpu"
    assert next(est.module_.parameters()).device.type == "cpu"
    assert VAETransformer().device == "auto"


def test_diverging_training_raises(digits):
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "learning_rate": 1e6})
    with pytest.raises(ValueError, match=r"loss became (nan|inf).*learning_rate \(got 1000000"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(ValueError, match="learning_rate"):
        VAETransformer(2, **{**SMALL, "learning_rate": 1e6, "early_stopping": True}).fit(X)


def test_divergence_in_the_last_step_is_detected(digits):
    """Regression: only losses (computed before each step) were checked, so a
    diverging last step left a "fitted" model with non-finite weights."""
    X = digits[0]
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs=1, batch_size=len(X),
                         learning_rate=1e38, early_stopping=False, random_state=0)
    with pytest.raises(ValueError, match=r"non-finite.*learning_rate \(got 1e\+38\)"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    # the same for a single-batch partial_fit: the check runs after every call
    with pytest.raises(ValueError, match="learning_rate"):
        est.partial_fit(X)


def _failing_fits(X):
    """failure: (parameters to set, X to fit, what the error says)."""
    X_empty = X.copy()
    X_empty[:, 3] = np.nan  # a feature never observed; NaN elsewhere is a missing entry
    return {
        "empty_feature": ({}, X_empty, "no observed value"),
        "divergence": ({"learning_rate": 1e6}, X, "diverged"),
        # fit: X outside [0, 1]; partial_fit: the fitted model is Gaussian
        "bernoulli_range": ({"likelihood": "bernoulli"}, X, "likelihood='bernoulli'"),
        "invalid_param": ({"beta": -1.0}, X, "'beta' parameter"),
        "cuda": ({"device": "cuda"}, X, "CUDA is not available"),
    }


@pytest.mark.parametrize("failure", ["empty_feature", "divergence", "bernoulli_range",
                                     "invalid_param", "cuda"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_failed_fit_leaves_the_estimator_as_it_was(digits, failure, method):
    if failure == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if failure == "invalid_param" and method == "partial_fit":
        # sklearn's _fit_context validates parameters on the first partial_fit only
        pytest.skip("parameters are not re-validated by a later partial_fit")
    if failure == "empty_feature" and method == "partial_fit":
        pytest.skip("a later partial_fit may see a feature without values: the model has it")
    X = digits[0]
    params, X_bad, message = _failing_fits(X)[failure]
    df = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(64)])
    X_bad = pd.DataFrame(X_bad, columns=df.columns)
    # previously fitted (on a DataFrame: feature_names_in_ must survive)
    est = VAETransformer(2, **SMALL).fit(df)
    snapshot = _snapshot(est, df)
    est.set_params(**params)
    with pytest.raises(ValueError, match=message):
        getattr(est, method)(X_bad)
    est.set_params(**{k: getattr(VAETransformer(**SMALL), k) for k in params})
    _assert_unchanged(est, df, snapshot)
    # and it still works
    est.set_params(warm_start=True).fit(df)
    assert est.n_epochs_ == 2 * SMALL["max_epochs"]
    # a fresh estimator stays unfitted
    fresh = VAETransformer(2, **{**SMALL, **params})
    with pytest.raises(ValueError, match=message if failure != "bernoulli_range" else
                       r"needs X in \[0, 1\]"):
        getattr(fresh, method)(X_bad)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    assert not hasattr(fresh, "n_features_in_")


# --------------------------------------------------------------------------- persistence


def _outputs(est, X):
    Z = est.transform(X)
    return [Z, est.inverse_transform(Z), est.score_samples(X),
            est.score_samples(X, n_importance_samples=5), est.sample(3)]


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dumper", ["pickle", "joblib"])
def test_pickle_round_trip(digits, fitted_for, likelihood, dumper, tmp_path):
    X = _data(likelihood, digits[0])
    est = fitted_for(likelihood)
    if dumper == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    else:
        joblib.dump(est, tmp_path / "vae.joblib")
        loaded = joblib.load(tmp_path / "vae.joblib")
    assert loaded is not est
    for a, b in zip(_outputs(loaded, X), _outputs(est, X)):
        assert_array_equal(a, b)
    assert loaded.history_[:, "train_loss"] == est.history_[:, "train_loss"]
    assert loaded.get_params() == est.get_params()
    # the loaded model keeps training like the original
    a = copy.deepcopy(est).partial_fit(X)
    b = loaded.partial_fit(X)
    assert b.n_epochs_ == est.n_epochs_ + 1
    assert_array_equal(a.transform(X), b.transform(X))


def test_unfitted_estimator_pickles(digits):
    est = pickle.loads(pickle.dumps(VAETransformer(2, **SMALL)))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert_array_equal(est.fit(digits[0]).transform(digits[0]),
                       VAETransformer(2, **SMALL).fit(digits[0]).transform(digits[0]))


def test_gpu_fitted_model_loads_and_runs_on_the_cpu(digits, fitted_vae, monkeypatch):
    # As if trained on a GPU: device_ says "cuda". Loading on a machine without
    # CUDA (patched, as skorch/tests/test_net.py does) keeps the module on the CPU.
    X = digits[0]
    est = copy.deepcopy(fitted_vae)
    est.device_ = "cuda"
    buffer = io.BytesIO()
    pickle.dump(est, buffer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    loaded = pickle.loads(buffer.getvalue())
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    for a, b in zip(_outputs(loaded, X), _outputs(fitted_vae, X)):
        # equal bits when fitted_vae is on the CPU; on a GPU machine it really is
        # GPU-fitted, and GPU and CPU kernels round float64 differently (1e-12)
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    loaded.partial_fit(X)  # device="auto" trains on the CPU
    assert loaded.device_ == "cpu"


def test_pickling_does_not_modify_the_estimator(fitted_vae):
    """Regression: __getstate__ wrote CPU copies into the live self.__dict__
    (what BaseEstimator.__getstate__ returns on Python >= 3.11)."""
    est = copy.deepcopy(fitted_vae)
    attributes = dict(est.__dict__)
    module = est.module_
    pickle.dumps(est)
    assert est.module_ is module
    assert all(est.__dict__[name] is value for name, value in attributes.items())
    assert set(est.__dict__) == set(attributes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_pickles_and_loads_on_the_cpu(digits, monkeypatch):
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "device": "cuda"}).fit(X)
    assert est.device_ == "cuda"
    assert next(est.module_.parameters()).device.type == "cuda"
    outputs = _outputs(est, X)
    blob = pickle.dumps(est)
    # a round trip on a CUDA machine goes back to the GPU
    assert next(pickle.loads(blob).module_.parameters()).device.type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    loaded = pickle.loads(blob)
    assert next(loaded.module_.parameters()).device.type == "cpu"
    for a, b in zip(_outputs(loaded, X), outputs):
        assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pickling_keeps_a_cuda_model_on_the_gpu(digits):
    """Regression: pickling moved the live module_ to the CPU."""
    est = VAETransformer(2, **{**SMALL, "device": "cuda"}).fit(digits[0])
    pickle.dumps(est)
    assert next(est.module_.parameters()).device.type == "cuda"


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_fit_inside_a_no_grad_block_trains(digits, context):
    X = digits[0]
    reference = VAETransformer(2, **SMALL).fit(X)
    with context():
        est = VAETransformer(2, **SMALL).fit(X)
        est.partial_fit(X)
    n = SMALL["max_epochs"]
    assert_array_equal(est.history_[:n, "train_loss"], reference.history_[:, "train_loss"])
    assert est.n_epochs_ == SMALL["max_epochs"] + 1


# --------------------------------------------------------- coming from PCA


@pytest.mark.parametrize("n_components, reading", [
    (0, "keeps no component"),
    (0.95, "share of variance"),
    ("mle", "choose the number for me"),
    (None, "keep every component"),
    (True, "not a number of dimensions"),
])
def test_pca_only_n_components_name_the_vae_way(digits, n_components, reading):
    est = VAETransformer(n_components, **SMALL)
    for method in ("fit", "partial_fit"):
        with pytest.raises(InvalidParameterError,
                           match=r"'n_components' parameter of VAETransformer must be an int"
                                 rf" >= 1.*{reading}.*GridSearchCV.*latent_kl_"):
            getattr(est, method)(digits[0])
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("method", ["fit", "partial_fit", "fit_transform"])
def test_more_components_than_features_raises_like_pca(blobs, method):
    X, _ = blobs  # 5 features
    est = VAETransformer(6, **SMALL)
    with pytest.raises(ValueError, match="n_components=6 must be at most n_features=5"):
        getattr(est, method)(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert VAETransformer(5, **SMALL).fit(X).n_components_ == 5


@pytest.mark.parametrize("name", ["explained_variance_ratio_", "explained_variance_",
                                  "singular_values_", "components_", "noise_variance_"])
def test_pca_attributes_name_the_vae_counterpart(fitted_vae, name):
    with pytest.raises(AttributeError, match=rf"no attribute '{name}': it is an attribute of "
                                             r"PCA\..*Coming from PCA"):
        getattr(fitted_vae, name)
    assert not hasattr(fitted_vae, name)
    with pytest.raises(AttributeError, match=r"no attribute 'explained_variance_rati'$"):
        fitted_vae.explained_variance_rati


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_latent_kl_is_the_mean_kl_per_dimension_of_the_training_rows(digits, likelihood):
    X = _data(likelihood, digits[0])
    est = VAETransformer(3, likelihood=likelihood, device="cpu", **SMALL).fit(X)
    assert est.n_components_ == 3
    assert est.latent_kl_.shape == (3,) and est.latent_kl_.dtype == np.float64
    model_ready = (X - est.mean_) / est.scale_
    with torch.no_grad():
        mu, logvar = est.module_.encode(torch.as_tensor(model_ready, dtype=torch.float32))
    expected = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).double().mean(0).numpy()
    assert_allclose(est.latent_kl_, expected, rtol=1e-4, atol=1e-6)
    # partial_fit: the rows of the last call
    est.partial_fit(X[:50])
    with torch.no_grad():
        mu, logvar = est.module_.encode(torch.as_tensor(model_ready[:50], dtype=torch.float32))
    expected = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).double().mean(0).numpy()
    assert_allclose(est.latent_kl_, expected, rtol=1e-4, atol=1e-6)


def test_latent_kl_shows_posterior_collapse(digits):
    X = digits[0]
    params = dict(SMALL, max_epochs=30, learning_rate=1e-2)
    used = VAETransformer(4, **params).fit(X).latent_kl_
    collapsed = VAETransformer(4, beta=100.0, **params).fit(X).latent_kl_
    assert (used >= 0).all() and (collapsed >= 0).all()
    assert used.max() > 1.0  # nats: the model encodes the images
    assert collapsed.max() < 0.1 * used.max()  # a heavy KL weight switches latents off
