"""Default fits on a grid of sparse shapes: every one must succeed.

Each case builds a CSR matrix of ``rows x columns`` with ``rows * per_row``
non-zeros (``uniform(0.5, 2)`` at uniformly random cells, duplicates summed:
the shape of a bag of words or a one-hot log, with empty rows and columns)
and runs ``VAETransformer(2, random_state=0).fit(X).transform(X)``. The
table gives the linear model the fit started from (``init_``), the epochs,
the seconds of fit and transform, whether the codes are finite and any
warning the fit gave. The first row is issue 38's reproducer: 512 rows of a
40,000 x 2,000 matrix with 40,000 non-zeros, which raised ARPACK's
``ArpackNoConvergence`` from ``fit`` before the linear start learned to fall
back.

``python benchmarks/bench_sparse_grid.py`` runs the 18 cases of the grid (64 /
512 / 4,000 rows x 300 / 2,000 / 20,000 columns x 1 / 20 non-zeros a row)
after the reproducer; ``--rows``, ``--columns`` and ``--per-row`` choose
parts of it, ``--max-epochs N`` caps the training (the default budget runs
the 4,000 x 20,000 cases for minutes on 2 cores).
"""

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp

from skvae import VAETransformer


def make_data(n_rows, n_columns, per_row, seed=0):
    """A CSR matrix of ``n_rows * per_row`` non-zeros at random cells."""
    rng = np.random.RandomState(seed)
    nnz = int(n_rows * per_row)
    return sp.csr_matrix((rng.uniform(0.5, 2.0, nnz), (rng.randint(n_rows, size=nnz),
                          rng.randint(n_columns, size=nnz))), shape=(n_rows, n_columns))


def run(name, X, max_epochs):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vae = VAETransformer(2, max_epochs=max_epochs, random_state=0).fit(X)
            fitted = time.perf_counter()
            codes = vae.transform(X)
            error = None
        except Exception as exc:  # reported, not raised: the table is the result
            error = f"{type(exc).__name__}: {exc}"[:60]
    end = time.perf_counter()
    said = "; ".join(sorted({str(w.message)[:50] for w in caught})) or "-"
    if error is not None:
        print(f"{name:>22} {'FAILED':>16} {'':>6} {end - start:8.2f} {'':>8} {'':>6}  {error}")
        return False
    print(f"{name:>22} {str(vae.init_):>16} {vae.n_epochs_:6d} {fitted - start:8.2f} "
          f"{end - fitted:8.2f} {str(np.isfinite(codes).all()):>6}  {said}", flush=True)
    return np.isfinite(codes).all()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[64, 512, 4000])
    parser.add_argument("--columns", type=int, nargs="+", default=[300, 2000, 20000])
    parser.add_argument("--per-row", type=float, nargs="+", default=[1, 20])
    parser.add_argument("--max-epochs", default="auto",
                        type=lambda v: v if v == "auto" else int(v))
    parser.add_argument("--no-reproducer", action="store_true")
    args = parser.parse_args(argv)
    print(f"{'case':>22} {'init_':>16} {'epochs':>6} {'fit (s)':>8} {'transform':>8} "
          f"{'finite':>6}  warnings")
    ok = True
    if not args.no_reproducer:
        ok &= run("issue 38 (512 of 40k)", make_data(40_000, 2_000, 1)[:512], args.max_epochs)
    for n in args.rows:
        for d in args.columns:
            for per_row in args.per_row:
                ok &= run(f"{n} x {d}, {per_row:g}/row", make_data(n, d, per_row),
                          args.max_epochs)
    print("every fit succeeded with finite codes" if ok else "SOME FITS FAILED")


if __name__ == "__main__":
    main()
