"""Fits where users train: alone, two at once, in a search, in threads, on small data.

Every measurement runs in a fresh child process started with this interpreter,
no environment variable set (no ``OMP_NUM_THREADS``): PyTorch's defaults, as a
user gets them. With ``--before PATH`` each section runs twice, once with
``PYTHONPATH=PATH`` (an older checkout of skvae, e.g. ``git worktree add
/tmp/skvae-before 25ceabe``) and once with this checkout, and prints both.

Sections (``--sections abcde``):

a. One fit on digits (``load_digits``, 1,797 x 64; ``VAETransformer(8,
   random_state=0, max_epochs=60, early_stopping=False)``: the same work in
   every run) alone, then two such fits at once in two processes that start
   fitting at the same moment. Each fit's seconds and the ratio to alone.
b. ``GridSearchCV`` of 4 fits with the defaults (``VAETransformer(random_state=0)``,
   ``n_components`` in (4, 8), ``cv=2``; ``--quick``: ``max_epochs=30``) with
   ``n_jobs=1`` and ``n_jobs=2`` (loky processes): the search's seconds, and each
   fit's seconds as ``cv_results_["mean_fit_time"]`` records them (without the
   workers' start-up and imports), against the serial search's.
c. Two such fits one after the other, and at once in two threads of one process
   (``joblib.parallel_backend("threading")``, ``n_jobs=2``).
d. Seconds per epoch of one fit alone (median of skorch's ``dur`` over the
   epochs; ``init="random"`` so that no linear start is fitted): digits at batch
   128, and a 60,000 x 784 MNIST-like set (the digits images upsampled to 28 x 28,
   tiled, plus N(0, 1) noise) at batch 128 and 512. This checkout also with
   ``n_threads=1`` and ``n_threads=2``, and what ``"auto"`` chose.
e. Seconds per optimizer step on small data: iris-sized (150 x 4) and
   wine-sized (178 x 13) standardized data, the default ``VAETransformer``
   (early stopping: 10 % held out and scored every epoch; patience so large that
   all epochs run), against a hand-written PyTorch loop training the same
   ``skvae._module.VAEModule`` with the same loss (``skvae._losses.elbo``), fused
   Adam, batch size and training/validation rows, scoring the validation rows
   every epoch (its ``.item()``). skvae is timed from its ``on_train_begin`` to
   its ``on_train_end`` (all epochs, the callbacks and history included); the
   hand loop over the same epochs on 1 thread, alternating 3 rounds, medians;
   then once on PyTorch's default threads, over a tenth of the epochs.

Timings on a shared machine vary: the load average printed above each table
says how busy it was.

Usage::

    python benchmarks/bench_concurrency.py [--before /tmp/skvae-before] [--sections ae]
        [--quick] [--timeout 120]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DIGITS_PARAMS = dict(n_components=8, random_state=0, max_epochs=60, early_stopping=False)


# ------------------------------------------------------------------ child jobs

def digits():
    from sklearn.datasets import load_digits
    return load_digits(return_X_y=True)[0]


def mnist_like(n_rows=60_000):
    import numpy as np
    from scipy.ndimage import zoom

    X = digits().reshape(-1, 8, 8)
    X = zoom(X, (1, 3.5, 3.5), order=1).reshape(len(X), -1)  # 28 x 28
    X = np.tile(X, (n_rows // len(X) + 1, 1))[:n_rows]
    return X + np.random.RandomState(0).standard_normal(X.shape)


def wait_until(start_at):
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))


def job_fit(spec):
    """One digits fit; seconds from the (shared) start moment."""
    from skvae import VAETransformer
    X = digits()
    est = VAETransformer(**{**DIGITS_PARAMS, **spec.get("params", {})})
    wait_until(spec.get("start_at"))
    start = time.perf_counter()
    est.fit(X)
    return {"seconds": time.perf_counter() - start}


def job_grid(spec):
    from sklearn.model_selection import GridSearchCV
    from skvae import VAETransformer
    X = digits()
    est = VAETransformer(random_state=0, **({"max_epochs": 30} if spec["quick"] else {}))
    search = GridSearchCV(est, {"n_components": [4, 8]}, cv=2, n_jobs=spec["n_jobs"],
                          refit=False)
    start = time.perf_counter()
    search.fit(X)
    return {"seconds": time.perf_counter() - start,
            "fit_seconds": search.cv_results_["mean_fit_time"].tolist()}


def job_threads(spec):
    from joblib import Parallel, delayed, parallel_backend
    from skvae import VAETransformer
    X = digits()

    def fit():
        start = time.perf_counter()
        VAETransformer(**DIGITS_PARAMS).fit(X)
        return time.perf_counter() - start

    fit()  # warm-up: imports and first-call costs out of the timings
    start = time.perf_counter()
    serial = [fit(), fit()]
    serial_total = time.perf_counter() - start
    start = time.perf_counter()
    with parallel_backend("threading"):
        threaded = Parallel(n_jobs=2)(delayed(fit)() for _ in range(2))
    return {"serial": serial, "serial_total": serial_total, "threaded": threaded,
            "threaded_total": time.perf_counter() - start}


def job_epoch(spec):
    import numpy as np
    import torch
    from skvae import VAETransformer
    X = digits() if spec["data"] == "digits" else mnist_like()
    params = dict(n_components=8, batch_size=spec["batch_size"], max_epochs=spec["epochs"],
                  early_stopping=False, init="random", random_state=0)
    if spec.get("n_threads") is not None:
        params["n_threads"] = spec["n_threads"]
    seen = []
    from skorch.callbacks import Callback

    class Seen(Callback):
        def on_epoch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())

    est = VAETransformer(**params, callbacks=[Seen()]).fit(X)
    durations = est.history_[:, "dur"][1:]  # the first epoch warms up
    return {"s_per_epoch": float(np.median(durations)), "threads": sorted(set(seen))}


def _small_data(name):
    from sklearn.datasets import load_iris, load_wine
    from sklearn.preprocessing import StandardScaler
    X = (load_iris if name == "iris" else load_wine)(return_X_y=True)[0]
    return StandardScaler().fit_transform(X)


class HandLoop:
    """The same VAEModule, loss, optimizer, batches and validation as skvae's fit."""

    def __init__(self, X, batch_size, n_components=2, hidden=(256, 128), valid_fraction=0.1):
        import numpy as np
        import torch
        from skvae._losses import RowNoise, elbo
        from skvae._module import VAEModule
        from skvae._training import parameter_groups
        from skvae._utils import adam_options

        gen = torch.Generator().manual_seed(0)
        n = len(X)
        n_valid = max(1, int(round(valid_fraction * n)))
        order = torch.randperm(n, generator=gen)
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        self.train, self.valid = X[order[n_valid:]], X[order[:n_valid]]
        with torch.device("meta"):
            module = VAEModule(X.shape[1], n_components, hidden)
        self.module = module.to(torch.float32).to_empty(device="cpu").reset_parameters(gen)
        self.module.observation.set_scale(np.ones(X.shape[1]))
        self.opt = torch.optim.Adam(parameter_groups(self.module, 1e-3),
                                    **adam_options("cpu"))
        self.gen, self.batch_size, self.elbo = gen, batch_size, elbo
        self.valid_eps = RowNoise(0, n_components)(self.valid, 1)[:, 0]
        self.steps_per_epoch = -(-len(self.train) // batch_size)

    def run(self, epochs):
        import torch
        module, opt, train = self.module, self.opt, self.train
        size, elbo = self.batch_size, self.elbo
        best = float("inf")
        for _ in range(epochs):
            module.train()
            order = torch.randperm(len(train), generator=self.gen)
            losses = []
            for start in range(0, len(train), size):
                x = train[order[start:start + size]]
                eps = torch.randn(len(x), module.n_components, generator=self.gen)
                loss = -elbo(module, x, eps).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            module.eval()
            with torch.no_grad():
                valid_loss = -elbo(module, self.valid, self.valid_eps).mean().item()
            train_loss = torch.stack(losses).mean().item()  # one read per epoch
            best = min(best, valid_loss)
        return train_loss, best


def job_small(spec):
    import torch
    from skorch.callbacks import Callback
    from threadpoolctl import threadpool_limits
    from skvae import VAETransformer

    X = _small_data(spec["data"])
    epochs = spec["epochs"]
    clock = {}

    class TrainClock(Callback):  # passed last: all of skvae's epoch machinery inside
        def on_train_begin(self, net, **kwargs):
            clock["start"] = time.perf_counter()

        def on_train_end(self, net, **kwargs):
            clock["seconds"] = time.perf_counter() - clock["start"]

    def skvae_fit():
        est = VAETransformer(max_epochs=epochs, n_iter_no_change=10**6, random_state=0,
                             callbacks=[TrainClock()]).fit(X)
        steps = sum(est.history_[:, "train_batch_count"])
        return clock["seconds"] / steps, torch.get_num_threads()

    def hand(threads, n_epochs=epochs):
        loop = HandLoop(X, 128)
        with threadpool_limits(threads, user_api="openmp") if threads else _null():
            start = time.perf_counter()
            loop.run(n_epochs)
            seconds = time.perf_counter() - start
        return seconds / (n_epochs * loop.steps_per_epoch)

    skvae_fit(), hand(1)  # warm-up
    times = {"skvae": [], "hand_1_thread": []}
    for _ in range(spec.get("rounds", 3)):
        times["skvae"].append(skvae_fit()[0])
        times["hand_1_thread"].append(hand(1))
    times = {key: statistics.median(value) for key, value in times.items()}
    # PyTorch's default threads: 10x fewer epochs (2 threads on a busy machine
    # can take 100x the 1-thread time per step)
    times["hand"] = hand(None, max(10, epochs // 10))
    return times


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


JOBS = {"fit": job_fit, "grid": job_grid, "threads": job_threads, "epoch": job_epoch,
        "small": job_small}


# ------------------------------------------------------------------ the parent

def launch(job, spec, checkout):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout)
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps([job, spec])],
                            env=env, stdout=subprocess.PIPE, text=True, cwd="/tmp")


#: --timeout: seconds a child may run before it is killed and reported as "> N"
TIMEOUT = None


class TimedOut(dict):
    """The result of a child killed at the time limit: every value reads "> N s"."""

    def __missing__(self, key):
        return Over(TIMEOUT)


class Over(float):
    """A time known only to exceed this value."""

    def __format__(self, spec):
        return f"> {float(self):.0f}"


def result(proc, deadline=None):
    timeout = None if deadline is None else max(1.0, deadline - time.time())
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return TimedOut()
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def run(job, spec, checkout):
    return result(launch(job, spec, checkout), _deadline())


def _deadline(extra=0.0):
    return None if TIMEOUT is None else time.time() + TIMEOUT + extra


def ratio(a, b):
    if isinstance(a, Over) or isinstance(b, Over):
        return "n/a"
    return f"{a / b:.2f}"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(title):
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n### {title}\n\nCPU: {cpu_model()}, {os.cpu_count()} logical cores; "
          f"load average before: {load}\n")


class table:
    """A markdown table printed a row at a time (slow sections show progress)."""

    def __init__(self, head):
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
        sys.stdout.flush()

    def append(self, row):
        print("| " + " | ".join(str(c) for c in row) + " |")
        sys.stdout.flush()


def section_a(checkouts):
    header("a. One digits fit alone vs two at once in two processes (s)")
    rows = table(["skvae", "alone", "concurrent 1", "concurrent 2", "worst ratio"])
    for label, path in checkouts:
        alone = run("fit", {}, path)["seconds"]
        start_at = time.time() + 8  # both children imported and waiting by then
        procs = [launch("fit", {"start_at": start_at}, path) for _ in range(2)]
        deadline = _deadline(8)
        pair = [result(p, deadline)["seconds"] for p in procs]
        worst = max(pair) if not any(isinstance(t, Over) for t in pair) else Over(TIMEOUT)
        rows.append([label, f"{alone:.2f}", f"{pair[0]:.2f}", f"{pair[1]:.2f}",
                     ratio(worst, alone)])


def section_b(checkouts, quick=False):
    header("b. GridSearchCV, 4 digits fits (s)")
    rows = table(["skvae", "search, n_jobs=1", "search, n_jobs=2", "speed-up",
                  "each fit, n_jobs=1", "each fit, n_jobs=2", "fit time ratio"])
    for label, path in checkouts:
        one, two = (run("grid", {"n_jobs": n, "quick": quick}, path) for n in (1, 2))
        fits = [r.get("fit_seconds") for r in (one, two)]
        each = [" / ".join(f"{t:.2f}" for t in f) if f else "n/a" for f in fits]
        fit_ratio = (f"{sum(fits[1]) / sum(fits[0]):.2f}x" if all(fits) else "n/a")
        rows.append([label, f"{one['seconds']:.2f}", f"{two['seconds']:.2f}",
                     ratio(one["seconds"], two["seconds"]), *each, fit_ratio])


def section_c(checkouts):
    header("c. Two digits fits: serial vs two threads of one process (s)")
    rows = table(["skvae", "one fit", "serial total", "each, in threads", "threaded total",
                  "speed-up"])
    for label, path in checkouts:
        r = run("threads", {}, path)
        if isinstance(r, TimedOut):
            rows.append([label, f"> {TIMEOUT:.0f} s in all", "", "", "", "n/a"])
            continue
        rows.append([label, f"{r['serial'][0]:.2f}", f"{r['serial_total']:.2f}",
                     " / ".join(f"{t:.2f}" for t in r["threaded"]),
                     f"{r['threaded_total']:.2f}", ratio(r["serial_total"], r["threaded_total"])])


def section_d(checkouts, quick=False):
    header("d. Seconds per epoch of one fit alone (median over epochs 2..)")
    cases = [("digits", 128, 20), ("MNIST-like 60,000 x 784", 128, 2 if quick else 3),
             ("MNIST-like 60,000 x 784", 512, 2 if quick else 4)]
    configs = [(label, path, None) for label, path in checkouts]
    configs += [(f"{checkouts[-1][0]}, n_threads={n}", checkouts[-1][1], n) for n in (1, 2)]
    rows = table(["data", "batch", "skvae", "s / epoch", "threads in fit"])
    for data, batch, epochs in cases:
        for label, path, n_threads in configs:
            spec = {"data": "digits" if data == "digits" else "mnist", "batch_size": batch,
                    "epochs": epochs, "n_threads": n_threads}
            r = run("epoch", spec, path)
            if isinstance(r, TimedOut):
                rows.append([data, batch, label, f"(fit > {TIMEOUT:.0f} s)", ""])
                continue
            rows.append([data, batch, label, f"{r['s_per_epoch']:.4f}",
                         ",".join(map(str, r["threads"]))])


def section_e(checkouts, quick=False):
    header("e. Seconds per optimizer step on small data (default VAETransformer)")
    rows = table(["data", "skvae", "skvae ms/step", "hand loop ms/step",
                  "hand loop, 1 thread", "skvae / best hand loop"])
    for data in ("iris", "wine"):
        for label, path in checkouts:
            r = run("small", {"data": data, "epochs": 100 if quick else 300}, path)
            if isinstance(r, TimedOut):
                rows.append([data, label, f"(all > {TIMEOUT:.0f} s)", "", "", "n/a"])
                continue
            best = min(r["hand"], r["hand_1_thread"])
            rows.append([data, label, f"{r['skvae'] * 1e3:.3f}", f"{r['hand'] * 1e3:.3f}",
                         f"{r['hand_1_thread'] * 1e3:.3f}", f"{r['skvae'] / best:.2f}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="an older skvae checkout to compare with")
    parser.add_argument("--sections", default="abcde")
    parser.add_argument("--quick", action="store_true", help="fewer epochs in b, d and e")
    parser.add_argument("--timeout", type=float,
                        help="kill a measurement after this many seconds; its time "
                             "prints as '> N' (two threads on a busy machine can "
                             "take 100x as long)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global TIMEOUT
    TIMEOUT = args.timeout
    if args.child:
        job, spec = json.loads(args.child)
        print(json.dumps(JOBS[job](spec)))
        return
    checkouts = [("before", Path(args.before).resolve())] if args.before else []
    checkouts.append(("after" if args.before else "this", HERE))
    import torch
    print(f"torch {torch.__version__}, Python {platform.python_version()}")
    for key in args.sections:
        fn = globals()[f"section_{key}"]
        fn(checkouts, args.quick) if key in "bde" else fn(checkouts)


if __name__ == "__main__":
    main()
