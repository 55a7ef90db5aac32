"""Peak memory and time of a default fit + transform on sparse data.

Each case runs in a fresh child process, which builds a CSR matrix (seeded:
positions drawn uniformly, a few duplicates summed, standard normal values,
float64), warms the libraries up with a one-epoch fit and transform of its
first 300 rows (PyTorch's, OpenMP's and BLAS's first calls allocate some 40 MB
of their own, once per process; ``--cold`` leaves this out), collects garbage,
resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and runs
``VAETransformer(2, random_state=0).fit(X)`` then ``transform(X)``. "Growth" is
the peak RSS of fit and transform (``VmHWM``) minus the RSS just before the
fit: the linear start (``init="auto"``), the training and the latent codes.
For scale the table gives the bytes of a dense float64 copy of X.

Cases: ``40k x 2k``, 40,000 x 2,000 at 0.05 % non-zeros (PCA alone starts
these: factor analysis is tried up to 1,000 features), ``100k x 20k``,
100,000 x 20,000 at 0.1 %, and ``40k x 1k``, 40,000 x 1,000 at 0.05 % (PCA
and factor analysis both fitted, the held-out bound picks one).

Linux only (``/proc``). ``python benchmarks/bench_sparse_fit.py``: the 40,000-row
cases take 5-15 minutes each on 2 cores (60 epochs), the 100,000 x 20,000 case
about 2 minutes per epoch (``--max-epochs N`` caps the training; 2 are enough to
see its memory). ``--before PATH`` also runs each case against another
checkout of skvae (``git archive HEAD skvae | tar -x -C PATH``, say); the
children import skvae from this checkout, or from PATH, through ``PYTHONPATH``.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
CASES = {  # name: (rows, features, density)
    "40k x 2k": (40_000, 2_000, 0.0005),
    "100k x 20k": (100_000, 20_000, 0.001),
    "40k x 1k": (40_000, 1_000, 0.0005),
}


def make_data(n_rows, n_features, density):
    import scipy.sparse as sp

    rng = np.random.RandomState(0)
    nnz = int(n_rows * n_features * density)
    rows, cols = rng.randint(n_rows, size=nnz), rng.randint(n_features, size=nnz)
    return sp.csr_matrix((rng.standard_normal(nnz), (rows, cols)), shape=(n_rows, n_features))


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(spec):
    """Fit and transform in this fresh process; print the result as one JSON line."""
    import skvae
    from skvae import VAETransformer

    X = make_data(*spec["case"])
    params = {} if spec["max_epochs"] is None else {"max_epochs": spec["max_epochs"]}
    if not spec["cold"]:
        VAETransformer(2, random_state=0, max_epochs=1).fit(X[:300]).transform(X[:300])
    est = VAETransformer(2, random_state=0, **params)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    base = _proc_status("VmRSS")
    start = time.perf_counter()
    est.fit(X)
    fitted = time.perf_counter()
    est.transform(X)
    done = time.perf_counter()
    print(json.dumps({"growth": _proc_status("VmHWM") - base, "fit_s": fitted - start,
                      "transform_s": done - fitted, "init": est.init_,
                      "epochs": est.n_epochs_, "skvae": skvae.__file__}))


def measure(spec, checkout, python):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([python, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = Path(checkout).resolve() / "skvae" / "__init__.py"
    if Path(result["skvae"]).resolve() != expected:  # PYTHONPATH did not win
        raise RuntimeError(f"child imported {result['skvae']}, not {expected}")
    return result


def span(values, spec):
    """``min-max`` of ``values`` in format ``spec``; one number when they agree."""
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}-{high}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="max_epochs of the fits (default: skvae's 'auto')")
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up fit before the measured one")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh processes per case (default 1; min-max reported)")
    parser.add_argument("--before", help="another skvae checkout to run the cases with too")
    parser.add_argument("--before-cases", nargs="+", choices=list(CASES),
                        help="the cases run with --before (default: all of --cases)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the children (default: this one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    checkouts = [("this", HERE)]
    if args.before:
        checkouts.insert(0, ("before", Path(args.before).resolve()))
    budget = "'auto'" if args.max_epochs is None else args.max_epochs
    print("### Default fit + transform on sparse data: peak RSS growth\n\n"
          f"`VAETransformer(2, random_state=0, max_epochs={budget})`, CSR float64; "
          f"min-max over {args.repeats} fresh process(es), "
          f"{'no warm-up' if args.cold else 'after a warm-up fit on 300 rows'}; "
          "`dense copy`: X as a dense float64 array. Load average before: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.\n")
    print("| case | skvae | growth MB | fit s | transform s | init_ | epochs | dense copy MB |")
    print("|---|---|---:|---:|---:|---|---:|---:|", flush=True)
    for name in args.cases:
        n_rows, n_features, density = CASES[name]
        spec = {"case": [n_rows, n_features, density], "max_epochs": args.max_epochs,
                "cold": args.cold}
        for label, checkout in checkouts:
            if label == "before" and args.before_cases and name not in args.before_cases:
                continue
            results = [measure(spec, checkout, args.python) for _ in range(args.repeats)]
            growth = span([r["growth"] / 1e6 for r in results], ",.0f")
            fit_s = span([r["fit_s"] for r in results], ".1f")
            transform_s = span([r["transform_s"] for r in results], ".2f")
            print(f"| {name} | {label} | {growth} | {fit_s} | {transform_s} | "
                  f"{results[0]['init']} | "
                  f"{results[0]['epochs']} | {n_rows * n_features * 8 / 1e6:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
