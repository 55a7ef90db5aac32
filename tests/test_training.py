"""Tests of the training call's helpers (skvae/_training.py)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.sparse import csr_matrix
from sklearn.preprocessing import StandardScaler

import skvae._data
import skvae._training
from skvae._training import standardization


@pytest.mark.parametrize("kind", ["dense", "holes", "csr", "large csr"])
def test_standardization_a_block_of_rows_at_a_time_is_standard_scalers(kind, monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.normal(loc=rng.uniform(-100, 100, size=6), scale=rng.uniform(0.1, 10, size=6),
                   size=(1000, 6))
    X[:, 5] = 7.0  # constant: the root-mean-square scale of the others
    if kind == "holes":
        X[rng.rand(*X.shape) < 0.3] = np.nan
    if kind.endswith("csr"):
        X[:, :5][rng.rand(1000, 5) < 0.5] = 0.0  # the constant column stays 7
        X = csr_matrix(X)
    if kind == "large csr":  # StandardScaler's sparse statistics, not densified
        monkeypatch.setattr(skvae._training, "DENSE_STATISTICS_VALUES", 5999)
    whole = standardization(X)  # one block
    monkeypatch.setattr(skvae._data, "BLOCK_ENTRIES", 6 * 64)  # 16 blocks of 64 rows
    blocks = standardization(X)
    # a small sparse X gets its dense copy's numbers, bit for bit (the scoring
    # noise hashes the standardized rows' bits)
    scaler = StandardScaler(with_mean=False).fit(X.toarray() if kind == "csr" else X)
    assert_array_equal(whole[0], scaler.mean_)
    assert_array_equal(whole[1][:5], np.sqrt(scaler.var_[:5]))
    assert_allclose(whole[1][5], np.sqrt(scaler.var_[:5].mean()))
    assert_allclose(blocks[0], whole[0], rtol=1e-12, atol=1e-12)
    assert_allclose(blocks[1], whole[1], rtol=1e-10)
