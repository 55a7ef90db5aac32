"""Tests of data handling: TrainingData, BatchIterator, splits (skvae/_data.py)."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.sparse import csr_array, csr_matrix
from sklearn.model_selection import train_test_split

import skvae._data
from skvae._data import (BatchIterator, TrainingData, as_tensor, feature_resolution,
                         has_missing, inference_map, validation_split)

CSR_CONTAINERS = [csr_matrix, csr_array]


def _sparse_data(n=23, n_features=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)) * (rng.uniform(size=(n, n_features)) < 0.4)
    X[4] = 0.0  # an empty row
    return X


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- as_tensor


def test_as_tensor_shares_writeable_memory_and_copies_read_only():
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = as_tensor(X, torch.float32, "cpu")
    assert tensor.data_ptr() == X.ctypes.data
    read_only = X.copy()
    read_only.setflags(write=False)
    tensor = as_tensor(read_only, torch.float32, "cpu")
    assert tensor.data_ptr() != read_only.ctypes.data
    assert_array_equal(tensor.numpy(), X)
    assert as_tensor(X, torch.float64, "cpu").dtype == torch.float64


# --------------------------------------------------------------------------- TrainingData


@pytest.mark.parametrize("csr_container", CSR_CONTAINERS)
@pytest.mark.parametrize("standardize", [False, True])
def test_training_data_dense_and_csr_give_equal_batches(csr_container, standardize):
    X = _sparse_data()
    mean, scale = (X.mean(0), X.std(0) + 0.5) if standardize else (None, None)
    dense = TrainingData(X, mean, scale)
    sparse = TrainingData(csr_container(X), mean, scale)
    assert len(dense) == len(sparse) == len(X)
    expected = ((X - mean) / scale if standardize else X).astype(np.float32)
    rows = torch.tensor([4, 0, 22, 7, 7, 3])
    for index in (rows, slice(0, 10), slice(20, 30), slice(None)):
        a, b = dense.take(index), sparse.take(index)
        assert a.dtype == b.dtype == torch.float32
        assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
        assert_allclose(a.numpy(), expected[index.numpy() if torch.is_tensor(index) else index],
                        rtol=1e-6, atol=1e-6)


def test_training_data_handles_unsorted_and_duplicate_csr_entries():
    indptr = np.array([0, 3, 5])
    indices = np.array([2, 0, 2, 1, 1])
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    X = csr_matrix((data, indices, indptr), shape=(2, 3))
    batch = TrainingData(X.copy()).take(torch.tensor([0, 1]))
    assert_array_equal(batch.numpy(), [[2.0, 0.0, 4.0], [0.0, 9.0, 0.0]])


def test_training_data_copies_dense_input():
    X = _sparse_data()
    original = X.copy()
    data = TrainingData(X, X.mean(0), X.std(0) + 1)
    assert_array_equal(X, original)  # standardized in its own copy
    data.X[0, 0] = 123.0
    assert_array_equal(X, original)


def test_training_data_shares_float32_input_it_does_not_change():
    # Bernoulli data (no standardization) in float32: no copy of X on the CPU
    X = _sparse_data().astype(np.float32)
    data = TrainingData(X)
    assert data.X.data_ptr() == X.ctypes.data
    # a float64 X, a subset or standardization need a float32 array of their own
    for other in (TrainingData(X.astype(np.float64)), TrainingData(X, rows=[0, 1]),
                  TrainingData(X, X.mean(0), X.std(0) + 1)):
        assert other.X.data_ptr() != X.ctypes.data and other.X.dtype == torch.float32


@pytest.mark.parametrize("csr_container", [None, csr_matrix])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_data_rows(csr_container, dtype):
    X = _sparse_data().astype(dtype)
    mean, scale = X.mean(0), X.std(0) + 0.5
    container = (lambda A: A) if csr_container is None else csr_container
    for rows in (torch.tensor([9, 2, 15]), np.array([9, 2, 15]), [9, 2, 15]):
        subset = TrainingData(container(X), mean, scale, rows=rows)
        assert len(subset) == 3
        assert_allclose(subset.take(slice(None)).numpy(), ((X[[9, 2, 15]] - mean) / scale),
                        rtol=1e-6, atol=1e-6)
    # the same values as the rows of the whole, standardized once
    whole = TrainingData(container(X), mean, scale)
    assert_array_equal(subset.take(slice(None)).numpy(),
                       whole.take(torch.tensor([9, 2, 15])).numpy())


def test_dense_rows_are_converted_a_chunk_at_a_time(monkeypatch):
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 12)  # 2 rows of 6
    X = _sparse_data()
    rows = np.arange(len(X))[::-1].copy()
    data = TrainingData(X, X.mean(0), X.std(0) + 1, rows=rows)
    assert_allclose(data.X.numpy(), ((X - X.mean(0)) / (X.std(0) + 1))[rows],
                    rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- BatchIterator


def _ids(n=23):
    """Data whose first column is the row number, to see which rows a batch holds."""
    X = np.zeros((n, 2), dtype=np.float32)
    X[:, 0] = np.arange(n)
    return X


@pytest.mark.parametrize("csr_container", [None, csr_matrix])
@pytest.mark.parametrize("batch_size", [1, 5, 23, 100])
def test_batch_iterator_shuffled_covers_every_row_once_per_epoch(csr_container, batch_size):
    X = _ids()
    data = TrainingData(X if csr_container is None else csr_container(X))
    iterator = BatchIterator(data, batch_size, shuffle=True, generator=_gen())
    assert len(iterator) == math.ceil(23 / batch_size)
    orders = []
    for _ in range(3):  # epochs
        batches = [batch for batch, y in iterator]
        assert all(y is None for _, y in iterator)
        assert len(batches) == len(iterator)
        assert all(len(b) == batch_size for b in batches[:-1])
        order = torch.cat(batches)[:, 0].numpy().astype(int)
        assert sorted(order) == list(range(23))
        orders.append(order)
    if batch_size < 23:
        # each epoch a new permutation
        assert not np.array_equal(orders[0], orders[1])


def test_batch_iterator_in_order_without_shuffle():
    X = _ids()
    iterator = BatchIterator(TrainingData(X), 5, shuffle=False)
    batches = [batch[:, 0].numpy().astype(int) for batch, _ in iterator]
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert_array_equal(np.concatenate(batches), np.arange(23))


def test_batch_iterator_order_comes_from_the_generator():
    X = _ids()

    def first_epoch(seed):
        iterator = BatchIterator(TrainingData(X), 4, shuffle=True, generator=_gen(seed))
        return torch.cat([batch for batch, _ in iterator])[:, 0]

    assert torch.equal(first_epoch(0), first_epoch(0))
    assert not torch.equal(first_epoch(0), first_epoch(1))


# --------------------------------------------------------------------------- validation split


@pytest.mark.parametrize("n_samples", [4, 10, 30, 59, 60, 1797])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.7])
def test_validation_split_sizes_match_train_test_split(n_samples, fraction):
    train, valid = validation_split(n_samples, fraction, _gen())
    _, expected_valid = train_test_split(np.arange(n_samples), test_size=fraction,
                                         random_state=0)
    assert len(valid) == len(expected_valid) == math.ceil(fraction * n_samples)
    assert len(train) == n_samples - len(valid)
    assert sorted(torch.cat([train, valid]).tolist()) == list(range(n_samples))
    assert train.dtype == valid.dtype == torch.int64


def test_validation_split_is_random_and_seeded():
    a = validation_split(100, 0.2, _gen(0))
    b = validation_split(100, 0.2, _gen(0))
    c = validation_split(100, 0.2, _gen(1))
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert not torch.equal(torch.sort(a[1]).values, torch.arange(80, 100))


@pytest.mark.parametrize("n_samples, fraction", [(1, 0.1), (5, 0.9), (10, 0.95)])
def test_validation_split_needs_a_training_row(n_samples, fraction):
    with pytest.raises(ValueError, match=f"validation_fraction={fraction}.*no training rows.*"
                                         f"n_samples={n_samples}.*early_stopping=False"):
        validation_split(n_samples, fraction, _gen())


# --------------------------------------------------------------------------- inference


class _Recorder:
    """An inference ``fn`` that returns its batch and records copies of them."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.clone())
        return batch


@pytest.mark.parametrize("csr_container", [None, csr_matrix, csr_array])
@pytest.mark.parametrize("budget, width", [(2**22, 1), (24, 6), (24, 5), (10, 6), (7, 100)])
def test_inference_map_respects_the_budget_and_covers_everything(
        monkeypatch, csr_container, budget, width):
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", budget)
    X = _sparse_data()
    mean, scale = X.mean(0), X.std(0) + 0.5
    source = X if csr_container is None else csr_container(X)
    fn = _Recorder()
    out = inference_map(fn, source, (X.shape[1],), mean=mean, scale=scale,
                        dtype=torch.float64, width=width)
    rows = max(1, budget // width)
    batches = fn.batches
    assert [len(b) for b in batches[:-1]] == [rows] * (len(batches) - 1)
    assert all(len(b) * width <= budget or len(b) == 1 for b in batches)
    assert len(batches) == math.ceil(len(X) / min(rows, len(X)))
    assert out.dtype == np.float64
    assert_allclose(out, (X - mean) / scale, rtol=1e-12)
    assert_array_equal(torch.cat(batches).numpy(), out)


@pytest.mark.parametrize("csr_container", [None, csr_matrix])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_map_without_standardization(csr_container, dtype):
    X = _sparse_data()
    source = X if csr_container is None else csr_container(X)
    out = inference_map(lambda batch: batch, source, (X.shape[1],), dtype=dtype)
    assert out.dtype == torch.empty(0, dtype=dtype).numpy().dtype
    assert_allclose(out, X, rtol=1e-6)


@pytest.mark.parametrize("layout", ["C", "F", "read-only", "csr", "csr float32"])
@pytest.mark.parametrize("standardize", [False, True])
def test_inference_map_batches_are_the_same_numbers_from_any_layout(monkeypatch, layout,
                                                                    standardize):
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 24)
    X = _sparse_data()
    mean, scale = (X.mean(0), X.std(0) + 0.5) if standardize else (None, None)
    source = {"C": X, "F": np.asfortranarray(X), "read-only": X.copy(),
              "csr": csr_matrix(X), "csr float32": csr_matrix(X.astype(np.float32))}[layout]
    if layout == "read-only":
        source.setflags(write=False)
    dtype = torch.float32 if layout == "csr float32" else torch.float64
    expected = inference_map(lambda b: b, X.astype(source.dtype), (6,), mean=mean,
                             scale=scale, dtype=dtype)
    out = inference_map(lambda b: b, source, (6,), mean=mean, scale=scale, dtype=dtype)
    assert_array_equal(out, expected)


def test_inference_map_densifies_one_batch_at_a_time(monkeypatch):
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 12)
    densified = []
    X = csr_matrix(_sparse_data())

    class Spy(csr_matrix):
        def __getitem__(self, key):
            chunk = super().__getitem__(key)
            densified.append(chunk.shape[0])
            return chunk

    fn = _Recorder()
    inference_map(fn, Spy(X), (6,), width=6)
    assert densified == [len(b) for b in fn.batches] == [2] * 11 + [1]


def test_inference_map_reuses_one_buffer_and_writes_into_one_output(monkeypatch):
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 12)
    X = _sparse_data()
    pointers = set()

    def fn(batch):
        pointers.add(batch.data_ptr())
        return batch[:, :2]

    out = inference_map(fn, csr_matrix(X), (2,), mean=X.mean(0), scale=X.std(0) + 1,
                        dtype=torch.float64, width=6)
    assert len(pointers) == 1  # 12 batches, densified and standardized in one buffer
    assert out.flags.owndata and out.shape == (23, 2)
    assert_allclose(out, ((X - X.mean(0)) / (X.std(0) + 1))[:, :2], rtol=1e-12)


def test_inference_map_uses_dense_rows_in_place_when_it_can():
    X = _sparse_data()
    pointers = []
    inference_map(lambda b: pointers.append(b.data_ptr()) or b, X, (6,), dtype=torch.float64)
    assert pointers == [X.ctypes.data]  # no copy: float64 rows without standardization


def test_inference_map_does_not_modify_the_input():
    X = _sparse_data()
    original = X.copy()

    def fn(batch):
        return batch + 1

    for source in (X, csr_matrix(X)):
        inference_map(fn, source, (6,), mean=X.mean(0), scale=X.std(0) + 1,
                      dtype=torch.float64)
    assert_array_equal(X, original)


def test_inference_map_of_no_rows():
    out = inference_map(lambda b: b[:, 0], np.empty((0, 3)), (), dtype=torch.float64)
    assert out.shape == (0,) and out.dtype == np.float64


# --------------------------------------------------------------------------- CUDA

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fits", [True, False])
def test_training_data_moves_to_the_gpu_once_or_a_batch_at_a_time(monkeypatch, sparse, fits):
    # data that fit in half of the free GPU memory move there once; larger data
    # stay on the host and move a batch at a time
    monkeypatch.setattr(skvae._data, "_fits_on_device", lambda nbytes, device: fits)
    X = _sparse_data()
    data = TrainingData(csr_matrix(X) if sparse else X, mean=X.mean(0), scale=X.std(0) + 1,
                        device="cuda")
    assert data.store.type == ("cuda" if fits else "cpu")
    rows = torch.tensor([3, 0, 4, 7], device=data.store)
    batch = data.take(rows)
    assert batch.device.type == "cuda"
    expected = (X[[3, 0, 4, 7]] - X.mean(0)) / (X.std(0) + 1)
    assert_allclose(batch.cpu().numpy(), expected, rtol=1e-6, atol=1e-6)
    iterator = BatchIterator(data, batch_size=5, shuffle=True,
                             generator=torch.Generator("cuda").manual_seed(0))
    seen = torch.cat([b for b, _ in iterator])
    assert seen.device.type == "cuda" and seen.shape == X.shape


@pytest.mark.parametrize("csr_container", [None, csr_matrix])
def test_feature_resolution_is_the_smallest_gap_between_values(csr_container):
    rng = np.random.RandomState(0)
    X = np.column_stack([
        rng.randint(0, 17, size=300).astype(float),     # whole units
        np.round(rng.randn(300) * 5, 2),                 # recorded to 0.01
        rng.randn(300),                                  # continuous
        np.full(300, 3.0),                               # constant
        (rng.rand(300) < 0.05) * 4.0,                    # rare events, mostly 0
    ])
    X_in = X if csr_container is None else csr_container(X)
    resolution = feature_resolution(X_in)
    assert resolution.dtype == np.float64 and resolution.shape == (5,)
    assert_allclose(resolution[[0, 1, 3, 4]], [1.0, 0.01, 0.0, 4.0], rtol=1e-9)
    gaps = np.diff(np.sort(X[:, 2]))
    assert resolution[2] == gaps[gaps > 0].min() < 1e-3


def test_feature_resolution_looks_at_evenly_spaced_rows_of_large_data():
    X = np.arange(1000.0)[:, None] * 0.5
    assert feature_resolution(X) == 0.5
    # 100 evenly spaced rows of 0, 0.5, ..., 499.5: 10 or 11 rows apart
    assert feature_resolution(X, max_rows=100) == 5.0
    assert feature_resolution(X[:1]) == 0.0


@pytest.mark.parametrize("csr_container", [None, *CSR_CONTAINERS])
def test_feature_resolution_of_many_rows_is_that_of_the_evenly_spaced_rows(csr_container):
    # the rows are picked block by block, never copied as a whole
    rng = np.random.RandomState(2)
    X = np.round(rng.randn(5000, 7) * rng.uniform(1, 50, size=7), 1)
    X[rng.rand(*X.shape) < 0.5] = 0.0
    rows = np.linspace(0, 4999, 300).round().astype(np.intp)
    X_in = X if csr_container is None else csr_container(X)
    assert_array_equal(feature_resolution(X_in, max_rows=300), feature_resolution(X[rows]))


def test_has_missing_finds_one_nan_anywhere():
    X = np.zeros((50, 4), dtype=np.float32)
    assert not has_missing(X)
    X[0, 0] = np.inf  # an infinity is no missing entry
    X[49, 3] = -np.inf
    assert not has_missing(X)
    X[31, 2] = np.nan
    assert has_missing(X)
    assert not has_missing(np.zeros((0, 4)))
    assert not has_missing(csr_matrix(np.eye(3)))


def test_feature_resolution_of_wide_data_goes_a_block_of_columns_at_a_time():
    # 3,000 rows: 699 columns per block, so 800 columns take two blocks
    rng = np.random.RandomState(1)
    steps = rng.choice([0.5, 1.0, 2.0], size=800)
    X = rng.randint(0, 50, size=(3000, 800)) * steps
    expected = [np.diff(np.unique(column)).min() for column in X.T]
    assert_allclose(feature_resolution(X), expected)
