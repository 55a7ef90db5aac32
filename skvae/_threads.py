"""How many CPU threads a fit or an inference call uses.

PyTorch's CPU operators run on an OpenMP thread pool as large as the machine.
For the small networks skvae usually trains, a step is a few million
multiply-adds: the second thread costs more in synchronisation than it saves,
and when two fits run at once (a grid search with ``n_jobs=2``, two notebooks)
their pools fight for the cores, each fit spinning while it waits for a thread
that the other one holds (measured: 3x, at worst 16x, the time of a fit alone).

:func:`limit_threads` caps the pool for the duration of one call with
``threadpoolctl`` (OpenMP's ``omp_set_num_threads``). OpenMP's limit belongs to
the calling thread, so the cap holds in processes and in threads alike (Optuna's
``n_jobs``, joblib's threading backend, Dask's threaded workers) and never
changes the process-wide count that ``torch.set_num_threads`` would.
"""

import contextlib
import functools

import torch

#: ``n_threads="auto"``: one thread per this many multiply-adds of an optimizer
#: step (or of an inference batch). The default digits fit (64 features, layers
#: (256, 128), batch 128) is 3.9e7 per step, 0.6 of this: one thread, as the
#: issue measured it should be (a second thread bought nothing alone and made
#: two concurrent fits 3-16x slower); 784 features at batch 128 is 2.8 units,
#: at batch 512 11 units: two threads or more. 2**24 would give the digits fit
#: two threads. See ``benchmarks/bench_concurrency.py``.
MACS_PER_THREAD = 2**26


def forward_macs(n_features, n_components, hidden_layer_sizes):
    """Multiply-adds of one row's forward pass through a ``VAEModule``.

    The encoder MLP and its head (mean and log-variance), the decoder MLP and
    its head, and the two linear paths.
    """
    hidden = tuple(hidden_layer_sizes)
    encoder = (n_features, *hidden)
    decoder = (n_components, *reversed(hidden))
    macs = sum(a * b for a, b in zip(encoder[:-1], encoder[1:]))
    macs += encoder[-1] * 2 * n_components
    macs += sum(a * b for a, b in zip(decoder[:-1], decoder[1:]))
    macs += decoder[-1] * n_features
    return macs + 2 * n_features * n_components  # the linear paths


def step_macs(n_features, n_components, hidden_layer_sizes, batch_size):
    """Multiply-adds of one optimizer step: forward and backward, 3x the forward pass."""
    return 3 * batch_size * forward_macs(n_features, n_components, hidden_layer_sizes)


def auto_n_threads(work, available):
    """``n_threads="auto"``: one thread per :data:`MACS_PER_THREAD` of ``work``.

    At least 1, at most ``available`` (the threads the caller has).
    """
    return max(1, min(int(available), int(work // MACS_PER_THREAD)))


def on_cuda(device):
    """Whether ``device`` (a name, ``"auto"`` included, or a ``torch.device``) is a GPU."""
    if str(device) == "auto":
        return torch.cuda.is_available()
    return str(device).startswith("cuda")


@functools.lru_cache(maxsize=1)
def _controller():
    # scanning the loaded libraries takes about a millisecond: once per process
    # (torch's OpenMP runtime is loaded with torch, before the first call). The
    # OpenMP runtimes only: their limit is per thread, while BLAS limits are
    # process-wide, and restoring one when the block ends would undo a change
    # made meanwhile in another thread.
    from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

    return ThreadpoolController().select(user_api="openmp")


@contextlib.contextmanager
def limit_threads(n_threads="auto", work=0, device="cpu"):
    """Cap PyTorch's CPU threads in the calling thread for the block's duration.

    Parameters
    ----------
    n_threads : "auto" or int
        ``"auto"``: :func:`auto_n_threads` of ``work``, capped at the threads
        the calling thread has now (``torch.get_num_threads()``, which reflects
        ``OMP_NUM_THREADS``, ``torch.set_num_threads`` and any enclosing
        ``threadpoolctl`` limit). An int: that many threads, as asked.
    work : int
        Multiply-adds of the unit that a thread count is chosen for: an
        optimizer step (:func:`step_macs`) or an inference batch.
    device : str or torch.device
        On a GPU the threads are left as they are.

    Yields
    ------
    n_threads : int or None
        The threads in use inside the block; None on a GPU.

    The previous limit comes back when the block ends, also when it raises.
    """
    if on_cuda(device):
        yield None
        return
    # before any limit: the first PyTorch call in a thread sets the thread's
    # OpenMP count when torch.set_num_threads was called in the process, which
    # would undo a limit set earlier in that thread
    available = torch.get_num_threads()
    n = auto_n_threads(work, available) if n_threads == "auto" else int(n_threads)
    if n == available:
        yield n
        return
    with _controller().limit(limits=n):
        yield n


def fit_work(X, n_components, hidden_layer_sizes, batch_size):
    """:func:`step_macs` of a fit on X, before X and the parameters are validated.

    0 (one thread under ``"auto"``) when the shapes cannot be read: the fit's
    own checks then raise the error.
    """
    try:
        shape = getattr(X, "shape", None)
        n_rows, n_features = shape if shape is not None else (len(X), len(X[0]))
        hidden = ((hidden_layer_sizes,) if isinstance(hidden_layer_sizes, int)
                  else hidden_layer_sizes)
        return step_macs(int(n_features), int(n_components),
                         [int(h) for h in hidden], min(int(batch_size), int(n_rows)))
    except (TypeError, ValueError, IndexError):
        return 0


def inference_work(module, n_rows, width):
    """Multiply-adds of one batch of ``inference_map`` through ``module``.

    ``width`` is ``inference_map``'s: floats per row of the largest
    intermediate, which also grows with the importance samples per row.
    """
    from . import _data  # read when called: tests change the budget

    rows = min(n_rows, _data.batch_rows(width))
    samples = max(1, width // module.widest_layer)  # importance samples (and temporaries) per row
    return rows * samples * forward_macs(module.n_features, module.n_components,
                                         module.hidden_layer_sizes)
