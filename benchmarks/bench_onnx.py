"""``transform`` throughput: onnxruntime running the skvae.onnx graph vs skvae itself.

Two data sets, both made in memory (nothing is downloaded):

- digits: ``load_digits`` / 16, 1,797 x 64;
- MNIST-sized: 60,000 x 784 uniform in [0, 1] (seed 0).

On each, ``VAETransformer(16, hidden_layer_sizes=(400,), likelihood="bernoulli")``
(the model of ``bench_training.py``) is fitted for one epoch (the weights do not
change the cost of inference), converted with ``skl2onnx.to_onnx`` and timed:

- whole data set per call: skvae ``transform`` on float32 X (skvae keeps float32,
  the fast path) and on float64 X, and an onnxruntime session on float32 X;
- one row per call (a serving request): the same, 200 calls.

Each timing is the median of 5 calls (5 loops of 200 calls for single rows), the
methods taking turns, so a noisy machine slows them alike. Fairness of threads:
the onnxruntime session gets ``intra_op_num_threads = torch.get_num_threads()``
(and ``inter_op_num_threads = 1``), so both use the same cores.

A second table gives the largest absolute difference between onnxruntime and
skvae for every activation and likelihood (digits, ``hidden_layer_sizes=(64,)``,
3 epochs; ``transform`` on all 1,797 rows and ``inverse_transform`` of the codes).

Run ``python benchmarks/bench_onnx.py`` (about a minute on 2 cores);
``--threads N`` sets torch's (and so onnxruntime's) thread count.
"""

import argparse
import time

import numpy as np
import onnxruntime as ort
import skl2onnx
import torch
from sklearn.datasets import load_digits

from skvae import VAETransformer
from skvae._module import ACTIVATIONS
from skvae.onnx import to_onnx_decoder

REPEATS = 5
SINGLE_CALLS = 200


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(name, X):
    vae = VAETransformer(16, hidden_layer_sizes=(400,), likelihood="bernoulli", max_epochs=1,
                         batch_size=128, early_stopping=False, random_state=0).fit(X)
    sess = session(skl2onnx.to_onnx(vae, X[:1]))
    feed = sess.get_inputs()[0].name
    X64 = X.astype(np.float64)
    whole = {
        "skvae transform, float32": lambda: vae.transform(X),
        "skvae transform, float64": lambda: vae.transform(X64),
        "onnxruntime, float32": lambda: sess.run(None, {feed: X}),
    }
    rows = X[:SINGLE_CALLS]
    single = {
        "skvae transform, float32": lambda: [vae.transform(rows[i:i + 1])
                                             for i in range(SINGLE_CALLS)],
        "onnxruntime, float32": lambda: [sess.run(None, {feed: rows[i:i + 1]})
                                         for i in range(SINGLE_CALLS)],
    }
    for calls in (whole, single):  # warm-up
        for fn in calls.values():
            fn()
    out = []
    for calls, n_rows, label in ((whole, X.shape[0], "whole data"),
                                 (single, SINGLE_CALLS, "1 row per call")):
        times = {key: [] for key in calls}
        for _ in range(REPEATS):
            for key, fn in calls.items():
                times[key].append(timed(fn))
        for key in calls:
            out.append((name, label, key, float(np.median(times[key])), n_rows))
    return out


def agreement():
    X = (load_digits(return_X_y=True)[0] / 16).astype(np.float32)
    rows = []
    for likelihood in ("gaussian", "bernoulli"):
        for activation in sorted(ACTIVATIONS):
            vae = VAETransformer(8, hidden_layer_sizes=(64,), activation=activation,
                                 likelihood=likelihood, max_epochs=3, early_stopping=False,
                                 random_state=0).fit(X)
            sess = session(skl2onnx.to_onnx(vae, X[:1]))
            Z = sess.run(None, {sess.get_inputs()[0].name: X})[0]
            dec = session(to_onnx_decoder(vae))
            X_back = dec.run(None, {"Z": Z})[0]
            rows.append((activation, likelihood, np.abs(Z - vae.transform(X)).max(),
                         np.abs(X_back - vae.inverse_transform(Z)).max()))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    digits = (load_digits(return_X_y=True)[0] / 16).astype(np.float32)
    mnist = np.random.default_rng(0).uniform(size=(60_000, 784)).astype(np.float32)

    print("### transform throughput: onnxruntime vs skvae\n")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, skl2onnx "
          f"{skl2onnx.__version__}; {torch.get_num_threads()} threads for both; model "
          "n_features-400-16 (Bernoulli); median of "
          f"{REPEATS} calls.\n")
    print("| data | input | method | seconds | rows/s | / skvae float32 |")
    print("|---|---|---|---:|---:|---:|")
    for name, X in (("digits 1,797 x 64", digits), ("60,000 x 784", mnist)):
        results = throughput(name, X)
        for _, label, key, seconds, n_rows in results:
            base = next(s for _, lab, k, s, _ in results
                        if lab == label and k == "skvae transform, float32")
            print(f"| {name} | {label} | {key} | {seconds:.4f} | {n_rows / seconds:,.0f} "
                  f"| {base / seconds:.2f}x |")

    print("\n### onnxruntime vs skvae: largest absolute difference (float32)\n")
    print("digits / 16, 1,797 rows; n_components=8, hidden_layer_sizes=(64,), 3 epochs.\n")
    print("| activation | likelihood | transform | inverse_transform |")
    print("|---|---|---:|---:|")
    for activation, likelihood, d_enc, d_dec in agreement():
        print(f"| {activation} | {likelihood} | {d_enc:.2e} | {d_dec:.2e} |")


if __name__ == "__main__":
    main()
