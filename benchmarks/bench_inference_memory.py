"""Peak memory of skvae's inference calls on sparse and dense data.

Each measurement runs in a fresh child process, which builds the data (seeded),
fits a tiny model on it (``VAETransformer(8, hidden_layer_sizes=(64,),
max_epochs=1, early_stopping=False, random_state=0)``), prepares the call's
input (the latent codes of X for ``inverse_transform``, the first rows of X for
``score_samples`` with K=100), collects garbage, resets the kernel's peak-RSS
mark (``/proc/self/clear_refs``) and makes one call. "Growth" is the peak RSS
during the call (``VmHWM``) minus the RSS just before it, output included; each
case is measured in ``--repeats`` fresh processes (min and max reported), since
what malloc keeps from one batch to the next varies from run to run.

Cases (``--quick`` divides the rows by 10): ``sparse`` 40,000 x 2,000 CSR at
0.05 % density (positions drawn uniformly), float64 and float32; ``dense``
8,000 x 2,000 standard normal, float64 and float32. ``score_samples`` with
K=100 scores the first 4,000 rows (400 with ``--quick``). For reference the
table gives the size of the call's input rows made dense in their dtype, and
of the output.

Linux only (``/proc``). ``python benchmarks/bench_inference_memory.py``
(13 minutes on 2 busy cores, most of it in ``score_samples`` with K=100);
``--python`` runs the children with another interpreter, and ``PYTHONPATH``
selects the skvae they import (run from a folder without a ``skvae`` in it).
"""

import argparse
import gc
import json
import os
import subprocess
import sys

import numpy as np

METHODS = ("transform", "inverse_transform", "score_samples", "score_samples K=100")
CASES = {  # name: (kind, dtype, rows, features)
    "sparse float64": ("sparse", "float64", 40_000, 2_000),
    "sparse float32": ("sparse", "float32", 40_000, 2_000),
    "dense float64": ("dense", "float64", 8_000, 2_000),
    "dense float32": ("dense", "float32", 8_000, 2_000),
}
DENSITY = 0.0005
IWAE_ROWS = 4_000


def make_data(kind, dtype, n_rows, n_features):
    rng = np.random.RandomState(0)
    if kind == "sparse":  # uniform positions (a few duplicates, summed), normal values
        import scipy.sparse as sp
        nnz = int(n_rows * n_features * DENSITY)
        rows, cols = rng.randint(n_rows, size=nnz), rng.randint(n_features, size=nnz)
        X = sp.csr_matrix((rng.standard_normal(nnz), (rows, cols)), shape=(n_rows, n_features))
        return X.astype(dtype)
    return rng.standard_normal((n_rows, n_features)).astype(dtype)


def child(spec):
    """One call in this fresh process; print its result as one JSON line."""
    import torch
    from bench_training import _proc_status  # this folder is on sys.path
    from skvae import VAETransformer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    X = make_data(*spec["case"])
    est = VAETransformer(8, hidden_layer_sizes=(64,), max_epochs=1, early_stopping=False,
                         random_state=0).fit(X)
    method = spec["method"]
    if method == "transform":
        args, call = X, est.transform
    elif method == "inverse_transform":
        args, call = est.transform(X), est.inverse_transform
    elif method == "score_samples":
        args, call = X, est.score_samples
    else:
        args = X[:spec["iwae_rows"]]
        call = lambda A: est.score_samples(A, n_importance_samples=100)  # noqa: E731
    rows, width = args.shape[0], X.shape[1]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    base = _proc_status("VmRSS")
    out = call(args)
    growth = _proc_status("VmHWM") - base
    print(json.dumps({"growth": growth, "out_bytes": out.nbytes,
                      "dense_bytes": rows * width * X.dtype.itemsize}))


def measure(spec, python):
    proc = subprocess.run([python, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n_bytes):
    return f"{n_bytes / 2**20:,.0f}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per case and call (default 3)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in the children (default: torch's default)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the children (default: this one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    shrink = 10 if args.quick else 1
    print("### Inference memory: peak RSS growth of one call, MiB\n\n"
          f"min-max over {args.repeats} fresh processes; `dense input`: the call's input "
          "rows made dense in their dtype; `output`: the returned array.\n")
    print("| case | call | rows | growth MiB | dense input MiB | output MiB |")
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for name in args.cases:
        kind, dtype, n_rows, n_features = CASES[name]
        case = (kind, dtype, n_rows // shrink, n_features)
        for method in args.methods:
            spec = {"case": case, "method": method, "iwae_rows": IWAE_ROWS // shrink,
                    "threads": args.threads}
            results = [measure(spec, args.python) for _ in range(args.repeats)]
            growth = sorted(r["growth"] for r in results)
            rows = IWAE_ROWS // shrink if method.endswith("K=100") else case[2]
            print(f"| {name} | {method} | {rows:,} | {mib(growth[0])}-{mib(growth[-1])} | "
                  f"{mib(results[0]['dense_bytes'])} | {mib(results[0]['out_bytes'])} |",
                  flush=True)


if __name__ == "__main__":
    main()
