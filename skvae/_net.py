"""Training through skorch: the ``NeuralNet`` subclass and skvae's callbacks.

The training home (``_training.py``) builds one :class:`VAENet` per call to ``fit``
or ``partial_fit``; users never see it. The net builds skvae's callbacks from its
own parameters (``beta``, ``kl_warmup_epochs``, ``n_iter_no_change``) in
``get_default_callbacks``, as skorch's own nets do.

skvae overrides public skorch methods only, listed with the signatures it relies
on in :data:`SKORCH_HOOKS` (``tests/test_net.py`` checks them against the installed
skorch, so a skorch release that changes one fails loudly): ``get_loss``,
``train_step_single``, ``validation_step``, ``get_default_callbacks``, and, for
speed, ``train_step`` (no optimizer closure), ``run_single_epoch`` (which reads the
batch losses off the GPU once per epoch instead of once per batch) and ``notify``
(which skips the callbacks that do not implement a hook), and ``on_train_begin``
and ``on_train_end`` (the moving average of the weights). Early stopping is
skvae's own callback, so no private state of skorch's ``EarlyStopping`` is read.
"""

import math
import sys

import torch
import tqdm.auto
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, PassthroughScoring, PrintLog, ProgressBar
from skorch.utils import TeeGenerator

from ._data import batch_rows
from ._losses import elbo, gaussian_kl_per_dimension, kl_weight, supervised_elbo
from ._module import fill_missing, split_missing
from ._optim import WeightAverage

#: Standard deviation of the noise added to the encoder's input in training, as
#: a multiple of the likelihood's own per-feature standard deviation (0: none).
#: A denoising encoder (amortized inference regularization, Shu et al. 2018)
#: generalizes to held-out rows better: on the digits the held-out score rose by
#: 1.0-1.1 nats and the 2-D codes' 5-NN accuracy from 0.730 to 0.774, while MNIST at
#: k=2 lost 0.9 % (bench_quality.py, bench_codes.py). A multiple of 1 helped the
#: digits more but lost 1 % on MNIST at k=2 and 13 nats on the low-noise swiss
#: roll's best seeds (docs/defaults.rst, benchmarks/README.md).
ENCODER_INPUT_NOISE = 0.5

#: The skorch methods that VAENet overrides and skorch's training loop calls, with
#: the signatures skvae relies on. All are public; tests/test_net.py compares them
#: with the installed skorch, so a release that changes one fails there, loudly,
#: before it can change training silently.
SKORCH_HOOKS = {
    "get_default_callbacks": "(self)",
    "notify": "(self, method_name, **cb_kwargs)",
    "run_single_epoch": "(self, iterator, training, prefix, step_fn, **fit_params)",
    "train_step": "(self, batch, **fit_params)",
    "train_step_single": "(self, batch, **fit_params)",
    "validation_step": "(self, batch, **fit_params)",
    "on_train_begin": "(self, net, X=None, y=None, **kwargs)",
    "on_train_end": "(self, net, X=None, y=None, **kwargs)",
}


class NegativeELBO(torch.nn.Module):
    """skorch criterion: the batch mean of the negative per-sample ELBO."""

    def forward(self, per_sample_elbo, y=None):
        return -per_sample_elbo.mean()


class KLWarmup(Callback):
    """Set the KL weight at the start of each epoch (linear warm-up to ``beta``).

    The weight comes from :func:`skvae._losses.kl_weight` of the net's ``beta``
    and ``kl_warmup_epochs``, is set as the net's ``kl_weight_`` and recorded in
    the history as ``kl_weight``. Epochs count across ``partial_fit`` calls.
    """

    def on_epoch_begin(self, net, **kwargs):
        weight = kl_weight(len(net.history) - 1, net.beta, net.kl_warmup_epochs)
        net.kl_weight_ = weight
        net.history.record("kl_weight", weight)


class FiniteLossCheck(Callback):
    """Stop training with a clear error when the loss stops being finite.

    The epoch's losses are checked at the end of every epoch. The weights are
    checked once, when training ends: the losses of an epoch are computed
    before each step, so only a diverged last step shows in the weights alone
    (an earlier one makes the next loss non-finite). The message names the
    net's learning rate ``lr``.
    """

    def on_epoch_end(self, net, **kwargs):
        for key, name in (("train_loss", "training"), ("valid_loss", "validation")):
            value = net.history[-1].get(key)
            if value is not None and not math.isfinite(value):
                raise ValueError(
                    f"The {name} loss became {value} at epoch "
                    f"{len(net.history)}: the optimisation diverged. Lower "
                    f"learning_rate (got {net.lr}), or check the data "
                    "for extreme values."
                )

    def on_train_end(self, net, **kwargs):
        # one reduction per parameter, one host sync in all
        finite = torch.stack([torch.isfinite(p).all() for p in net.module_.parameters()])
        if not bool(finite.all()):
            raise ValueError(
                f"The model's weights became non-finite at epoch {len(net.history)}: "
                f"the optimisation diverged. Lower learning_rate (got "
                f"{net.lr}), or check the data for extreme values."
            )


def _in_notebook():
    """Whether this runs in a Jupyter kernel (as skorch's ``ProgressBar`` checks)."""
    try:
        return get_ipython().__class__.__name__ == "ZMQInteractiveShell"  # noqa: F821
    except NameError:
        return False


def _interactive(stream):
    """Whether ``stream`` is shown live to a person: a terminal or a notebook.

    Colour codes and carriage-return progress bars are for these only; in a
    file or a pipe they are noise (``ESC[36m89.5055ESC[0m``).
    """
    if _in_notebook():
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class EpochTable(PrintLog):
    """skorch's ``PrintLog`` whose colours can be switched off, and a sink.

    ``PrintLog`` colours each loss of an epoch that is the best so far with ANSI
    codes; ``colors=False`` prints plain text, for output that is not a
    terminal.

    :meth:`write` is the sink of skvae's early stopping. That callback runs
    before the table (the row shows the best-epoch flag it records) and ends
    training by raising ``KeyboardInterrupt`` from its ``on_epoch_end``, so the
    table's own ``on_epoch_end`` never sees the last epoch: ``write`` prints
    that epoch's row first, then the message.
    """

    def __init__(self, keys_ignored=None, sink=print, colors=True, **kwargs):
        super().__init__(keys_ignored=keys_ignored, sink=sink, **kwargs)
        self.colors = colors

    def initialize(self):
        super().initialize()
        self.net_ = None
        self.printed_epoch_ = 0
        return self

    def table(self, row):
        if not self.colors:  # PrintLog colours a value whose "<key>_best" is true
            row = {key: value for key, value in row.items() if not key.endswith("_best")}
        return super().table(row)

    def on_train_begin(self, net, **kwargs):
        self.net_ = net

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch != self.printed_epoch_:  # not yet printed by write
            self.printed_epoch_ = epoch
            super().on_epoch_end(net, **kwargs)

    def on_train_end(self, net, **kwargs):
        self.net_ = None  # no reference cycle through the net's callbacks

    def write(self, text):
        """Print ``text`` on its own line, after the row of the epoch under way."""
        if self.net_ is not None and len(self.net_.history):
            self.on_epoch_end(self.net_)
        self.sink(text)
        if self.sink is print:
            sys.stdout.flush()


class TrainingProgressBar(ProgressBar):
    """skorch's ``ProgressBar`` over the training batches of each epoch.

    skorch's bar counts training and validation batches together. This one
    counts the training batches (``epoch N`` and the batch's ``train_loss``
    beside it) and is erased when the epoch ends. VAENet runs it before its
    other epoch-end callbacks, so the table row and any message (early
    stopping) start on a line of their own. ``tqdm.auto`` draws a widget in a
    notebook.
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        total = None if dataset_train is None else math.ceil(len(dataset_train) / net.batch_size)
        self.pbar_ = tqdm.auto.tqdm(total=total, leave=False,
                                    desc=f"epoch {len(net.history)}")

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            super().on_batch_end(net, training=training, **kwargs)

    def on_train_end(self, net, **kwargs):
        # the last epoch's bar when training stopped before its end
        pbar = getattr(self, "pbar_", None)
        if pbar is not None:
            pbar.close()


class VAENet(NeuralNet):
    """skorch ``NeuralNet`` that trains a :class:`~skvae._module.VAEModule`.

    Parameters
    ----------
    module : VAEModule
        An initialised module; it is trained in place.
    beta : float
        KL weight of the objective once the warm-up is over, and of the
        validation loss throughout.
    kl_warmup_epochs : int, default=0
        Epochs over which the KL weight of training rises from 0 to ``beta``
        (:class:`KLWarmup`); early stopping starts watching after them.
    n_iter_no_change : int or None, default=None
        Patience of early stopping in epochs (:class:`WarmupEarlyStopping`,
        which needs a validation split); None: no early stopping.
    start_patience : int or None, default=None
        Patience while no epoch has improved on the weights training started
        from (``start_patience`` of :class:`WarmupEarlyStopping`); None: the
        same as ``n_iter_no_change``.
    tol : float, default=0.0
        The improvement of the held-out loss, in nats per row, that resets the
        patience (``threshold`` of :class:`WarmupEarlyStopping`).
    noise_generator : torch.Generator
        Source of the reparameterisation noise, on the training device.
    valid_noise : callable
        ``valid_noise(x, 1)`` gives the deterministic noise of the validation
        loss (:class:`skvae._losses.RowNoise`).
    missing : bool, default=False
        Whether the training or validation rows have missing entries (NaN):
        then every batch is split into values and a mask of the observed
        entries, and the ELBO covers the observed ones. Known once per fit, so
        complete data pay nothing for it.
    average_weights : bool, default=False
        Whether to validate, keep and end with a moving average of the weights
        training visits (:class:`~skvae._optim.WeightAverage`) instead of the
        weights themselves; training itself steps from the latter.
    target_weight : float, default=0.0
        Weight of each labelled row's ``log p(y | z)`` in the training
        objective (:func:`skvae._losses.supervised_elbo`), for training data
        with labels (batches whose second item is not None); 0: the ELBO alone.
        The held-out loss has the same term for the held-out rows with a label
        (none of them when training has rows without one: those are held out
        first) and is the ELBO alone for the others; the entropy term of the
        rows without a label is left out.
    unlabelled_weight : float, default=0.0
        Weight of the entropy of p(y | z) of each training row without a
        label (class labels), with ``target_weight``.
    loss_offset : float, default=0.0
        Added to every loss the history records (``train_loss``,
        ``valid_loss``, per batch and per epoch), in float64: ``sum(log(scale))``
        turns the negative ELBO of the standardized data the module sees into
        the negative ELBO in the units of X, the units of ``-score``. The
        objective and its gradient are unchanged (the ``loss`` a callback
        receives in ``on_batch_end`` is the objective, without the offset).
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(self, module, *, beta=1.0, kl_warmup_epochs=0, n_iter_no_change=None,
                 start_patience=None, tol=0.0, noise_generator=None, valid_noise=None,
                 missing=False, loss_offset=0.0, average_weights=False, target_weight=0.0,
                 unlabelled_weight=0.0, **kwargs):
        super().__init__(module, criterion=NegativeELBO, **kwargs)
        self.target_weight = target_weight
        self.unlabelled_weight = unlabelled_weight
        self.missing = missing
        self.average_weights = average_weights
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.n_iter_no_change = n_iter_no_change
        self.start_patience = start_patience
        self.tol = tol
        self.loss_offset = loss_offset
        self.noise_generator = noise_generator
        self.valid_noise = valid_noise
        self.kl_weight_ = beta

    def skvae_callbacks(self):
        """skvae's own callbacks, from the net's parameters, in the order they run.

        The KL warm-up, the finite-loss check and, with ``n_iter_no_change``,
        early stopping that restores the best weights. They run after skorch's
        timing and loss bookkeeping and before the table and the user's
        ``callbacks``.
        """
        callbacks = [("kl_warmup", KLWarmup()), ("finite_loss", FiniteLossCheck())]
        if self.n_iter_no_change is not None:
            callbacks.append(("early_stopping", WarmupEarlyStopping(
                patience=self.n_iter_no_change, start_epoch=self.kl_warmup_epochs,
                start_patience=self.start_patience, threshold=self.tol)))
        return callbacks

    def get_default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
        ]
        # verbose=2: a bar only where a person watches it (tqdm redraws it with
        # carriage returns: thousands of them in a log file), closed before
        # skvae's callbacks can print or stop training
        if self.verbose >= 2 and _interactive(sys.stderr):
            callbacks.append(("progress_bar", TrainingProgressBar()))
        own = self.skvae_callbacks()
        callbacks.extend(own)
        if self.verbose >= 1:
            table = EpochTable(keys_ignored=["kl_weight"], colors=_interactive(sys.stdout))
            callbacks.append(("print_log", table))
            for _, callback in own:
                if isinstance(callback, WarmupEarlyStopping):
                    # "Stopping since ..." after the row of the epoch that stops
                    callback.sink = table.write
        return callbacks

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's loop over an epoch's batches, reading their losses once per epoch.

        skorch records ``loss.item()`` after every batch, which makes the CPU wait
        for the GPU at every step (on the GPU, 1.45x the time of a hand-written
        loop at batch size 512). Here the losses stay on the device and are
        written to the history as floats in one transfer when the batches are
        done, before any ``on_epoch_end``. A callback with an ``on_batch_end``
        (a progress bar, say) may read the batch's loss there: then each loss is
        recorded as its batch ends, as skorch does. Either way the history gets
        ``loss + loss_offset``, added in float64.
        """
        if iterator is None:
            return
        average = self.__dict__.get("weight_average_")
        if average is not None:  # validation sees the averaged weights
            average.use(not training)
        offset = float(self.loss_offset)
        per_batch = bool(self._listeners("on_batch_end"))
        # one preallocated buffer: 0-d tensors kept alive between the batches'
        # large temporaries fragment the CPU heap (+400 MiB RSS in one epoch on
        # 50,000 x 5,000 sparse data)
        losses, count = None, 0
        fixed = not training and not getattr(iterator, "shuffle", True)
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            # the same rows at this position every epoch: see validation_step
            self._valid_batch_key = (id(iterator.dataset), count) if fixed else None
            step = step_fn(batch, **fit_params)
            if per_batch:
                self.history.record_batch(prefix + "_loss", step["loss"].item() + offset)
            else:
                if losses is None:
                    losses = step["loss"].new_empty(len(iterator))
                losses[count] = step["loss"].detach()
            count += 1
            self.history.record_batch(prefix + "_batch_size", len(batch[0]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if count and not per_batch:
            batches = self.history[-1]["batches"][-count:]
            for record, value in zip(batches, losses[:count].tolist()):
                record[prefix + "_loss"] = value + offset
        self.history.record(prefix + "_batch_count", count)

    def notify(self, method_name, **cb_kwargs):
        """skorch's ``notify``, calling only the callbacks that implement the hook.

        A callback inherits a no-op for every hook it does not define; with
        skvae's seven callbacks, skipping those saves about 20 Python calls per
        batch (1.5 % of an epoch on digits).
        """
        getattr(self, method_name)(self, **cb_kwargs)
        for callback in self._listeners(method_name):
            getattr(callback, method_name)(self, **cb_kwargs)

    def _listeners(self, method_name):
        """The callbacks whose class overrides ``Callback.<method_name>``, in order."""
        cache = self.__dict__.get("_listeners_cache")
        if cache is None or cache[0] is not self.callbacks_:  # built or re-initialized
            cache = self.__dict__["_listeners_cache"] = (self.callbacks_, {})
        if method_name not in cache[1]:
            base = getattr(Callback, method_name, None)
            cache[1][method_name] = [cb for _, cb in self.callbacks_
                                     if base is None or getattr(type(cb), method_name) is not base]
        return cache[1][method_name]

    def validation_loss(self, dataset):
        """``valid_loss`` of the current weights on ``dataset``, as the history records it.

        The mean over the rows of the negative ELBO with the validation noise
        and the full ``beta``, plus ``loss_offset``: what the next epoch's
        ``valid_loss`` would be if training left the weights as they are.
        """
        total, count = 0.0, 0
        for i, batch in enumerate(self.get_iterator(dataset, training=False)):
            self._valid_batch_key = (id(dataset), i)
            step = self.validation_step(batch)
            total += float(step["loss"]) * len(batch[0])
            count += len(batch[0])
        return total / max(1, count) + float(self.loss_offset)

    def get_loss(self, y_pred, y_true=None, X=None, training=False):
        """Mean negative ELBO of the batch; ``y_pred`` holds the per-sample ELBO."""
        return self.criterion_(y_pred)

    def train_step(self, batch, **fit_params):
        """One optimisation step on ``batch``; returns ``train_step_single``'s dict.

        skorch's version hands the optimizer a closure (for optimizers such as
        L-BFGS that evaluate the loss several times) and builds the parameter
        list for ``on_grad_computed`` at every step. skvae's optimizer is Adam,
        which needs no closure, and ``on_grad_computed`` is sent only when a
        callback implements it (gradient clipping, say): the same steps with
        less Python per batch. The net has one optimizer, ``optimizer_``.
        """
        self.optimizer_.zero_grad(set_to_none=True)
        step = self.train_step_single(batch, **fit_params)
        if self._listeners("on_grad_computed"):
            self.notify("on_grad_computed",
                        named_parameters=TeeGenerator(self.get_all_learnable_params()),
                        batch=batch, training=True)
        self.optimizer_.step()
        average = self.__dict__.get("weight_average_")
        if average is not None:
            average.update()
        return step

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # the average starts at the weights training starts from
        self.weight_average_ = WeightAverage(self.module_) if self.average_weights else None

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # before the callbacks' on_train_end (notify calls the net first): the
        # module ends with the averaged weights, unless early stopping then
        # restores those of a better epoch (averaged ones too)
        average = self.__dict__.pop("weight_average_", None)
        if average is not None:
            average.use(True)

    def train_step_single(self, batch, **fit_params):
        if not self.module_.training:  # once an epoch, after validation
            self._set_mode(True)
        x, observed = self._split(batch[0])
        eps = torch.randn(x.shape[0], self.module_.n_components, generator=self.noise_generator,
                          device=x.device, dtype=x.dtype)
        noise = self._encoder_input_noise(x)
        if batch[1] is not None and self.target_weight:
            per_sample = supervised_elbo(self.module_, x, batch[1], eps, self.kl_weight_,
                                         self.target_weight, self.unlabelled_weight,
                                         observed, input_noise=noise)
        else:
            per_sample = elbo(self.module_, x, eps, self.kl_weight_, observed,
                              input_noise=noise)
        loss = self.get_loss(per_sample, X=x, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": per_sample}

    def _set_mode(self, training):
        """``module_.train(training)``, from a list of the submodules made once.

        ``Module.train`` walks the module tree through ``Module.__setattr__``:
        57 µs for the default network, twice an epoch (training, then
        validation), 1.6 % of an epoch on iris. A submodule whose class
        overrides ``train`` gets the walk, as before.
        """
        cache = self.__dict__.get("_mode_cache")
        if cache is None or cache[0] is not self.module_:
            modules = tuple(self.module_.modules())
            plain = all(type(m).train is torch.nn.Module.train for m in modules)
            cache = self.__dict__["_mode_cache"] = (self.module_, modules if plain else None)
        if cache[1] is None:
            self.module_.train(training)
            return
        for module in cache[1]:
            module.__dict__["training"] = training

    def _encoder_input_noise(self, x):
        """Noise for the encoder's input in a training step, or None.

        ``ENCODER_INPUT_NOISE`` times the likelihood's own standard deviation
        per feature (:meth:`encoder_noise_scale` of the likelihood; None for a
        likelihood without one), drawn from the training noise generator.
        None when the training data have missing entries: their holes already
        train the encoder on partial rows, and noise on top made imputation
        worse (iris at 20 % MCAR: 0.256 -> 0.266, benchmarks/bench_imputation.py).
        """
        scale = self.module_.observation.encoder_noise_scale()
        if scale is None or not ENCODER_INPUT_NOISE or self.missing:
            return None
        return torch.randn(x.shape, generator=self.noise_generator, device=x.device,
                           dtype=x.dtype).mul_(scale * ENCODER_INPUT_NOISE)

    def _split(self, x):
        """``(x with 0 for its missing entries, mask of the observed ones or None)``."""
        return fill_missing(x) if self.missing else (x, None)

    def _validation_noise(self, x):
        """``valid_noise(x, 1)[:, 0]``, computed once per validation batch of a fit.

        The validation rows come in the same unshuffled batches every epoch,
        and their noise depends on the rows' values alone (``RowNoise``): it is
        kept per (dataset, batch position), which saves hashing the rows every
        epoch (4 % of an epoch on 150 rows). Other batches get it computed.
        """
        key = self.__dict__.pop("_valid_batch_key", None)
        cache = self.__dict__.setdefault("_valid_noise_cache", {})
        eps = cache.get(key) if key is not None else None
        if eps is None or eps.shape[0] != x.shape[0] or eps.device != x.device \
                or eps.dtype != x.dtype:
            eps = self.valid_noise(x, 1)[:, 0]
            if key is not None:
                cache[key] = eps
        return eps

    def validation_step(self, batch, **fit_params):
        if self.module_.training:
            self._set_mode(False)
        x, observed = self._split(batch[0])
        with torch.no_grad():
            eps = self._validation_noise(x)
            if batch[1] is not None and self.target_weight:
                per_sample = supervised_elbo(self.module_, x, batch[1], eps, self.beta,
                                             self.target_weight, 0.0, observed)
            else:
                per_sample = elbo(self.module_, x, eps, self.beta, observed)
            loss = self.get_loss(per_sample, X=x, training=False)
        return {"loss": loss, "y_pred": per_sample}


class WarmupEarlyStopping(Callback):
    """Stop when the validation loss stops improving; keep the best weights.

    Ends training (by raising ``KeyboardInterrupt``, skorch's documented way
    for a callback to stop a fit) when ``monitor`` has not improved for
    ``patience`` epochs, and restores the weights of the epoch with the lowest
    value when training ends. "Improved" means lower than the best value at
    the patience's last restart by more than ``threshold``, an absolute amount
    in the monitor's units, so that slow but steady progress adds up and
    restarts the patience while a creep of hundredths does not (skorch's
    ``EarlyStopping`` defaults to a relative threshold, which misjudges small
    and negative losses). The weights kept are those of the lowest value all
    the same, whatever its lead.

    Two additions to skorch's ``EarlyStopping``. Like Keras'
    ``start_from_epoch``, the first ``start_epoch`` epochs of the history (the
    KL warm-up, during which the validation loss, always weighted by the full
    ``beta``, can rise while training goes as planned) neither count towards
    the patience nor compete for the best weights. And the weights training
    starts from compete too, as "epoch 0", when the net has an
    ``initial_valid_loss_`` (set before training): a fit that starts from a
    linear model and only gets worse on the held-out rows ends with that linear
    model. The callback records ``<monitor>_best`` in the history, so the
    ``verbose`` table and the plots mark the epoch whose weights are kept.

    Parameters
    ----------
    patience : int, default=5
        Epochs without improvement before training stops.
    start_patience : int or None, default=None
        The patience while the best weights are still those training started
        from (the net's ``initial_valid_loss_``): leaving a linear start, whose
        nonlinear residuals are at zero, takes a number of optimizer steps
        before any epoch improves on it, however few steps an epoch has.
        None: ``patience``.
    start_epoch : int, default=0
        Epochs of the history before the callback starts watching.
    threshold : float, default=0.0
        How much lower than at the last restart of the patience the best
        value must fall to restart it again; 0: any new best does. The first
        epoch that beats the starting weights restarts it whatever its lead:
        from there on the (shorter) ``patience`` applies.
    monitor : str, default="valid_loss"
        History key to watch; lower is better.
    sink : callable, default=print
        Where the "Stopping since ..." and "Restoring ..." messages go, when
        the net is verbose.

    Attributes
    ----------
    best_loss_ : float
        The lowest value so far (or the starting weights').
    best_epoch_ : int or None
        The epoch of the weights kept (the epochs before the fit for the
        starting weights); None before any.
    misses_ : int
        Epochs since the patience last restarted.
    reference_ : float
        The best value when the patience last restarted.
    at_start_ : bool
        Whether the best weights are still those training started from.
    """

    def __init__(self, patience=5, start_epoch=0, monitor="valid_loss", sink=print,
                 start_patience=None, threshold=0.0):
        self.patience = patience
        self.start_patience = start_patience
        self.start_epoch = start_epoch
        self.threshold = threshold
        self.monitor = monitor
        self.sink = sink

    def on_train_begin(self, net, **kwargs):
        self.misses_ = 0
        self.best_loss_, self.best_epoch_, self.best_weights_ = math.inf, None, None
        self.reference_ = math.inf
        self.at_start_ = False
        initial = getattr(net, "initial_valid_loss_", None)
        if initial is not None and math.isfinite(initial):
            self.at_start_ = True
            self.best_loss_ = self.reference_ = initial
            self.best_epoch_ = len(net.history)  # the epochs already trained: 0 for a new fit
            self._keep_weights(net.module_)

    def on_epoch_end(self, net, **kwargs):
        best_key = f"{self.monitor}_best"
        if len(net.history) <= self.start_epoch:
            net.history.record(best_key, False)
            return
        loss = net.history[-1, self.monitor]
        improved = loss < self.best_loss_
        # the patience restarts when the best has fallen by more than the
        # threshold since it last restarted, or first beats the starting weights
        if improved and (self.at_start_ or loss < self.reference_ - self.threshold):
            self.misses_, self.reference_ = 0, loss
        else:
            self.misses_ += 1
        if improved:
            self.at_start_ = False
            self.best_loss_, self.best_epoch_ = loss, net.history[-1, "epoch"]
            self._keep_weights(net.module_)
        net.history.record(best_key, improved)
        patience = self.patience
        if self.at_start_ and self.start_patience is not None:
            patience = self.start_patience
        if self.misses_ >= patience:
            if net.verbose:
                by = f" by more than {self.threshold:g}" if self.threshold else ""
                self.sink(f"Stopping since {self.monitor} has not improved{by} in the last "
                          f"{patience} epochs.")
            raise KeyboardInterrupt

    def _keep_weights(self, module):
        """Copy ``module``'s state into ``best_weights_``, reusing its tensors.

        A fit improves on many of its epochs; ``copy.deepcopy`` of the state
        dict allocated a new copy each time (0.7 ms on the default network).
        The first copy of a fit is cloned (``on_train_begin`` clears it); the
        later ones go into its tensors, as the module keeps its entries.
        """
        state = module.state_dict()
        if self.best_weights_ is None:
            self.best_weights_ = {name: value.clone() for name, value in state.items()}
            return
        for kept, value in zip(self.best_weights_.values(), state.values()):
            kept.copy_(value)

    def on_train_end(self, net, **kwargs):
        # a fit that ended inside the warm-up never compared its epochs with the
        # starting weights: keep the last weights
        if len(net.history) <= self.start_epoch or self.best_weights_ is None:
            return
        if self.best_epoch_ != net.history[-1, "epoch"]:
            net.module_.load_state_dict(self.best_weights_)
            if net.verbose:
                self.sink(f"Restoring best model from epoch {self.best_epoch_}.")
        self.best_weights_ = None  # no copy of the weights kept after the fit


def mean_latent_kl(module, dataset, batch_size=None):
    """Mean KL(q(z_j | x) || N(0, 1)) over the rows of ``dataset``, per latent dimension.

    Parameters
    ----------
    module : VAEModule
    dataset : skvae._data.TrainingData
        Model-ready rows (the training data of a fit).
    batch_size : int, default=None
        Rows encoded at a time; None: at most 4,096, and no more than
        :data:`skvae._data.INFERENCE_BATCH_FLOATS` values of the widest
        layer, as in inference (a sparse X is densified a batch at a time:
        4,096 rows of 20,000 features would be 330 MB).

    Returns
    -------
    kl : ndarray of shape (n_components,)
        In nats, float64. A dimension whose posterior equals the prior for every
        row (a "collapsed" or unused latent) has 0.
    """
    if batch_size is None:
        batch_size = batch_rows(module.widest_layer, 4096)
    total = torch.zeros(module.n_components, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            x, observed = split_missing(dataset.take(slice(start, start + batch_size)))
            mu, logvar = module.encode(x, observed)
            total += gaussian_kl_per_dimension(mu, logvar).sum(0, dtype=torch.float64).cpu()
    return (total / max(1, len(dataset))).numpy()
