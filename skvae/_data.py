"""From arrays and CSR matrices to model-ready tensor batches.

Training converts X once per fit into one float32 tensor (or the three arrays of a
CSR matrix) on the training device and yields slices of a ``torch.randperm``
order; sparse rows are densified a batch at a time with vectorised tensor ops.
There is no per-row ``__getitem__`` and no Python loop over samples.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch

#: Largest number of floats in one inference batch (rows x width x samples).
INFERENCE_BATCH_FLOATS = 2**22


def batch_rows(width, limit=None):
    """Rows of a batch that holds at most :data:`INFERENCE_BATCH_FLOATS` values.

    Parameters
    ----------
    width : int
        Values per row of the batch's largest array (the widest layer, times
        the importance samples and temporaries held at once).
    limit : int, default=None
        The most rows wanted (the rows there are, say); None: no limit.

    Returns
    -------
    rows : int
        At least 1. The budget is read when called, so a test that changes
        ``INFERENCE_BATCH_FLOATS`` changes every batch sized here.
    """
    rows = max(1, INFERENCE_BATCH_FLOATS // max(1, width))
    return rows if limit is None else max(1, min(limit, rows))


def as_tensor(array, dtype, device):
    """``array`` as a tensor, sharing memory when it can.

    Read-only arrays (memory maps, say) are copied: PyTorch cannot share them.
    """
    array = np.asarray(array)
    if not array.flags.writeable:
        return torch.tensor(array, dtype=dtype, device=device)
    return torch.as_tensor(array).to(device=device, dtype=dtype)


def _fits_on_device(nbytes, device):
    if torch.device(device).type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return nbytes < 0.5 * free


class _CSRRows:
    """The arrays of a CSR matrix as tensors, with vectorised row densification."""

    def __init__(self, X, device, dtype):
        X = sp.csr_matrix(X)
        if not X.has_canonical_format:  # sorted, no duplicates; on a copy, never in place
            X = X.copy()
            X.sum_duplicates()
        self.shape = X.shape
        self.indptr = torch.as_tensor(X.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(X.indices.astype(np.int64), device=device)
        self.data = as_tensor(X.data, dtype, device)

    def take(self, rows):
        """Dense tensor of the rows ``rows`` (a LongTensor of row numbers)."""
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        total = int(counts.sum())
        out = torch.zeros(len(rows), self.shape[1], dtype=self.data.dtype,
                          device=self.data.device)
        if total:
            row_of = torch.repeat_interleave(torch.arange(len(rows), device=rows.device),
                                             counts, output_size=total)
            first = torch.cumsum(counts, 0) - counts
            pos = (torch.arange(total, device=rows.device)
                   - torch.repeat_interleave(first - starts, counts, output_size=total))
            out[row_of, self.indices[pos]] = self.data[pos]
        return out

    def csr(self, rows):
        """The rows ``rows`` (a LongTensor of row numbers) as a scipy CSR matrix.

        The values as held (float32, not standardized), on the CPU: for code that
        works on the sparse rows themselves (the linear start's PCA), with memory
        in proportion to their non-zeros.
        """
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        total = int(counts.sum())
        first = torch.cumsum(counts, 0) - counts
        pos = (torch.arange(total, device=rows.device)
               - torch.repeat_interleave(first - starts, counts, output_size=total))
        indptr = np.concatenate([[0], torch.cumsum(counts, 0).cpu().numpy()])
        return sp.csr_matrix((self.data[pos].cpu().numpy(), self.indices[pos].cpu().numpy(),
                              indptr), shape=(len(rows), self.shape[1]))


def _float32_rows(X, rows, mean, scale):
    """``(X[rows] - mean) / scale`` as a new C-contiguous float32 array.

    Filled a chunk of rows at a time, so that a float64 X never has a float64
    copy of its rows next to the float32 result.
    """
    n = X.shape[0] if rows is None else len(rows)
    out = np.empty((n, X.shape[1]), dtype=np.float32)
    step = batch_rows(X.shape[1])
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = X[start:stop] if rows is None else X[rows[start:stop]]
    if mean is not None:
        out -= mean.astype(np.float32)
        out /= scale.astype(np.float32)
    return out


class TrainingData(torch.utils.data.Dataset):
    """Training rows of X, standardized, as float32 tensors.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    mean, scale : ndarray of shape (n_features,) or None
        The model sees ``(X - mean) / scale``; ``None`` leaves X as it is.
    device : str
        Where the model trains. Dense data move there once when they fit in half
        of the free device memory, and a batch at a time otherwise.
    rows : ndarray or LongTensor of row numbers, default=None
        The rows of X to hold (a validation split, say); None holds all.
    target : ndarray of shape (n_samples,), default=None
        A label for each row of X, encoded for the module's ``target_head``
        (class indices or a standardized target, NaN for a row without a
        label); the batches then come with the labels of their rows (see
        :class:`BatchIterator`). None: no labels.

    Dense rows are converted to float32 and standardized once, into an array of
    their own; a float32 X that needs neither a subset nor standardization is
    used as it is, without a copy. Sparse rows are densified a batch at a time.
    """

    def __init__(self, X, mean=None, scale=None, device="cpu", rows=None, target=None):
        self.device = torch.device(device)
        dtype = torch.float32
        rows = None if rows is None else np.asarray(torch.as_tensor(rows).cpu())
        self.target = None
        if target is not None:
            target = np.asarray(target, dtype=np.float32)
            self.target = torch.from_numpy(target if rows is None else target[rows]).to(device)
        if sp.issparse(X):
            X = X if rows is None else sp.csr_matrix(X)[rows]
            store = self.device if _fits_on_device(X.data.nbytes * 3, device) else "cpu"
            self.rows = _CSRRows(X, store, dtype)
            self.X = None
        else:
            n_rows = X.shape[0] if rows is None else len(rows)
            store = self.device if _fits_on_device(n_rows * X.shape[1] * 4, device) else "cpu"
            if rows is None and mean is None and X.dtype == np.float32:
                self.X = as_tensor(X, dtype, store)  # no copy on the CPU
            else:
                self.X = torch.from_numpy(_float32_rows(X, rows, mean, scale)).to(store)
            self.rows = None
        self.store = torch.device(store)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=dtype, device=store)
        self.scale = None if scale is None else torch.as_tensor(scale, dtype=dtype, device=store)

    def __len__(self):
        return self.X.shape[0] if self.X is not None else self.rows.shape[0]

    @property
    def sparse(self):
        """Whether X was sparse: then :meth:`sparse_rows` hands out its rows."""
        return self.rows is not None

    def sparse_rows(self, rows):
        """Rows of a sparse X, not standardized, as a float32 scipy CSR matrix.

        Parameters
        ----------
        rows : LongTensor
            Row numbers, on ``self.store``.

        Returns
        -------
        X_rows : scipy.sparse.csr_matrix of shape (len(rows), n_features)
            The values as held (X in float32), without ``mean`` and ``scale``:
            ``(X_rows - mean) / scale`` are the rows :meth:`take` gives, which a
            sparse matrix cannot hold without densifying.
        """
        if not self.sparse:
            raise ValueError("sparse_rows needs a TrainingData of a sparse X.")
        return self.rows.csr(rows)

    def take(self, rows):
        """Model-ready batch for ``rows``: a slice or a LongTensor on ``self.store``."""
        if self.X is not None:
            batch = self.X[rows] if isinstance(rows, slice) else self.X.index_select(0, rows)
        else:
            if isinstance(rows, slice):
                rows = torch.arange(len(self), device=self.store)[rows]
            batch = self.rows.take(rows)
            if self.mean is not None:
                batch = batch.sub_(self.mean).div_(self.scale)  # a tensor of its own: in place
        return batch.to(self.device, non_blocking=True)

    def take_target(self, rows):
        """The labels of ``rows`` (as :meth:`take`), or None when there are none."""
        if self.target is None:
            return None
        if not isinstance(rows, slice):
            rows = rows.to(self.target.device)
        return self.target[rows]

    def labelled_count(self):
        """The number of rows with a label (0 without labels)."""
        return 0 if self.target is None else int((~torch.isnan(self.target)).sum())


class BatchIterator:
    """Mini-batches of a :class:`TrainingData`: slices of one permutation per epoch.

    Used as skorch's ``iterator_train`` and ``iterator_valid``; yields
    ``(batch, labels)`` pairs, as skorch expects ``(X, y)``: the labels of the
    batch's rows (:meth:`TrainingData.take_target`), None without labels.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        n, size = len(self.dataset), self.batch_size
        if not self.shuffle:
            for start in range(0, n, size):
                rows = slice(start, start + size)
                yield self.dataset.take(rows), self.dataset.take_target(rows)
            return
        order = torch.randperm(n, generator=self.generator, device=self.generator.device)
        order = order.to(self.dataset.store)
        for start in range(0, n, size):
            rows = order[start:start + size]
            yield self.dataset.take(rows), self.dataset.take_target(rows)


#: Entries of X per block where a pass over all of X needs temporaries of its
#: block's size (32 MiB in float64): no step of a fit holds a copy of X's size.
BLOCK_ENTRIES = 2**22


def row_blocks(X):
    """Slices of consecutive rows of X, each of at most ``BLOCK_ENTRIES`` entries."""
    rows = max(1, BLOCK_ENTRIES // max(1, X.shape[1]))
    return [slice(start, start + rows) for start in range(0, X.shape[0], rows)]


def observed_counts_and_sums(X):
    """Per feature of dense X: the number of observed (not NaN) entries and their sum.

    A block of rows at a time: ``(~np.isnan(X)).sum(0)`` and ``np.nansum``
    would each allocate temporaries of X's size.

    Returns
    -------
    counts : ndarray of shape (n_features,), int
    sums : ndarray of shape (n_features,), float64
    """
    counts = np.zeros(X.shape[1], dtype=np.intp)
    sums = np.zeros(X.shape[1])
    for rows in row_blocks(X):
        block = X[rows]
        observed = ~np.isnan(block)
        counts += observed.sum(axis=0)
        sums += np.where(observed, block, 0).sum(axis=0, dtype=np.float64)
    return counts, sums


def has_missing(X):
    """Whether X (dense; sparse X has no missing entries) holds a NaN.

    ``np.min`` propagates NaN: one reduction, where ``np.isnan(X).any()``
    would first allocate a boolean array of X's size.
    """
    return not sp.issparse(X) and X.size > 0 and bool(np.isnan(np.min(X)))


#: Rows of X that :func:`feature_resolution` looks at (evenly spaced above this).
RESOLUTION_ROWS = 10_000


def feature_resolution(X, max_rows=RESOLUTION_ROWS):
    """The smallest gap between two distinct values of each feature of X.

    Pixel intensities, counts, ages and prices are recorded in steps (1, or
    0.01); a continuous measurement has gaps far below its spread. Computed on
    at most ``max_rows`` evenly spaced rows (a subset's smallest gap is at
    least the data's), with the implicit zeros of a sparse matrix counted as
    values; one sort per column, no per-row work.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    max_rows : int

    Returns
    -------
    resolution : ndarray of shape (n_features,)
        float64; 0 where a feature takes one value only.
    """
    n, d = X.shape
    rows = slice(None)
    if n > max_rows:
        rows = np.linspace(0, n - 1, max_rows).round().astype(np.intp)
        n = max_rows
    resolution = np.zeros(d)
    if n < 2:
        return resolution
    if not sp.issparse(X):
        # a block of columns of the chosen rows at a time: the sorted copy
        # stays small (2**21 values, 16 MiB) however wide or long X is
        block = max(1, 2**21 // n)
        for start in range(0, d, block):
            values = X[rows, start:start + block].astype(np.float64)  # a copy of its own
            values.sort(axis=0)
            gaps = np.diff(values, axis=0)
            del values
            gaps[~(gaps > 0)] = np.inf  # ties, and NaN (missing entries sort last)
            resolution[start:start + block] = gaps.min(axis=0)
    else:
        X = sp.csc_matrix(X if isinstance(rows, slice) else X[rows])
        for j in range(d):
            column = X.data[X.indptr[j]:X.indptr[j + 1]].astype(np.float64)
            if len(column) < n:  # the column has implicit zeros
                column = np.append(column, 0.0)
            gaps = np.diff(np.unique(column))
            gaps = gaps[gaps > 0]
            resolution[j] = gaps.min() if len(gaps) else np.inf
    resolution[~np.isfinite(resolution)] = 0.0
    return resolution


def validation_split(n_samples, validation_fraction, generator, first=None):
    """Random ``(train_rows, valid_rows)`` LongTensors for early stopping.

    The validation part has ``ceil(validation_fraction * n_samples)`` rows, as in
    :func:`sklearn.model_selection.train_test_split`. ``first``, a boolean
    array of shape (n_samples,), names rows to hold out before any other (the
    rows without a label of supervised training, so that every label trains):
    the validation rows are drawn from them as far as they go, and from the
    others after them. None: all rows alike.
    """
    n_valid = math.ceil(validation_fraction * n_samples)
    if n_samples - n_valid < 1:
        raise ValueError(
            f"early_stopping=True holds out validation_fraction={validation_fraction} "
            f"of the data, which leaves no training rows for n_samples={n_samples}; "
            "pass more samples or set early_stopping=False."
        )
    order = torch.randperm(n_samples, generator=generator)
    if first is not None:  # the rows of `first` in front, each group in random order
        later = torch.as_tensor(~np.asarray(first, dtype=bool))[order]
        order = order[torch.argsort(later.to(torch.int8), stable=True)]
    return order[n_valid:], order[:n_valid]


def inference_map(fn, X, tail=(), *, mean=None, scale=None, device="cpu",
                  dtype=torch.float32, width=1):
    """``fn(batch)`` for consecutive model-ready batches of X, gathered into one array.

    Parameters
    ----------
    fn : callable
        Maps a batch, a tensor of shape ``(rows, n_features)``, to a tensor of
        shape ``(rows, *tail)``. It must not modify the batch or keep it.
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    tail : tuple of int
        Shape of one sample's result.
    mean, scale : ndarray of shape (n_features,) or None
        The batches are ``(X - mean) / scale``; ``None`` leaves X as it is.
    device, dtype
        Where and in which precision ``fn`` runs.
    width : int
        Floats of the largest intermediate of ``fn`` per row (the widest layer
        times the importance samples, say): a batch has at most
        :data:`INFERENCE_BATCH_FLOATS` / ``width`` rows.

    Returns
    -------
    out : ndarray of shape (n_samples, *tail), in ``dtype``

    Memory stays flat whatever the number of batches: ``out`` is allocated once
    and each result is copied into its rows; rows are densified (``toarray(out=)``),
    converted and standardized in place in one buffer made once and reused for
    every batch, and dense rows that need none of that are used as they are. No
    array of one batch outlives it, so the allocator can reuse its memory for the
    next one. There is no Python loop over samples.
    """
    n = X.shape[0]
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    out = np.empty((n, *tail), dtype=np_dtype)
    rows = batch_rows(width, n)
    mean_t = None if mean is None else torch.as_tensor(mean, dtype=dtype, device=device)
    scale_t = None if scale is None else torch.as_tensor(scale, dtype=dtype, device=device)
    on_cpu = torch.device(device).type == "cpu"
    host = staged = None  # the reused buffers, made on first need
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        chunk = X[start:stop]
        if (sp.issparse(chunk) or chunk.dtype != np_dtype or not chunk.flags.c_contiguous
                or not chunk.flags.writeable or (on_cpu and mean_t is not None)):
            if host is None:
                host = np.empty((rows, X.shape[1]), dtype=np_dtype)
            chunk_np = host[:stop - start]
            if sp.issparse(chunk):
                chunk_np.fill(0)  # toarray(out=) adds the entries to the buffer
                chunk.astype(np_dtype, copy=False).toarray(out=chunk_np)
            else:
                np.copyto(chunk_np, chunk, casting="unsafe")
        else:  # the rows of X themselves: fn reads them, the buffers do the rest
            chunk_np = chunk
        batch = torch.from_numpy(chunk_np)
        if not on_cpu:
            if staged is None:
                staged = torch.empty((rows, X.shape[1]), dtype=dtype, device=device)
            batch = staged[:stop - start].copy_(batch)
        if mean_t is not None:  # in the buffer, never in X
            batch.sub_(mean_t).div_(scale_t)
        torch.from_numpy(out[start:stop]).copy_(fn(batch))
        del chunk, chunk_np, batch
    return out
