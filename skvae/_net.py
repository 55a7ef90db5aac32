"""Training through skorch: the ``NeuralNet`` subclass and skvae's callbacks.

The estimator builds one :class:`VAENet` per call to ``fit`` or ``partial_fit``
(see ``VAETransformer._build_net``); users never see it. Only skorch's documented
extension points are overridden: ``get_loss``, ``train_step_single``,
``validation_step``, ``get_default_callbacks``, and, for speed, ``train_step`` (no
optimizer closure), ``run_single_epoch`` (which reads the batch losses off the
GPU once per epoch instead of once per batch) and ``notify`` (which skips the
callbacks that do not implement a hook).
"""

import copy
import math
import sys

import torch
import tqdm.auto
from skorch import NeuralNet
from skorch.callbacks import (Callback, EarlyStopping, EpochTimer, PassthroughScoring,
                              PrintLog, ProgressBar)
from skorch.utils import TeeGenerator

from ._losses import elbo, gaussian_kl_per_dimension, kl_weight


class NegativeELBO(torch.nn.Module):
    """skorch criterion: the batch mean of the negative per-sample ELBO."""

    def forward(self, per_sample_elbo, y=None):
        return -per_sample_elbo.mean()


class KLWarmup(Callback):
    """Set the KL weight at the start of each epoch (linear warm-up to ``beta``).

    The weight comes from :func:`skvae._losses.kl_weight` and is recorded in the
    history as ``kl_weight``. Epochs count across ``partial_fit`` calls.
    """

    def __init__(self, beta=1.0, warmup_epochs=0):
        self.beta = beta
        self.warmup_epochs = warmup_epochs

    def on_epoch_begin(self, net, **kwargs):
        weight = kl_weight(len(net.history) - 1, self.beta, self.warmup_epochs)
        net.kl_weight_ = weight
        net.history.record("kl_weight", weight)


class FiniteLossCheck(Callback):
    """Stop training with a clear error when the loss stops being finite.

    The epoch's losses are checked at the end of every epoch. The weights are
    checked once, when training ends: the losses of an epoch are computed
    before each step, so only a diverged last step shows in the weights alone
    (an earlier one makes the next loss non-finite).
    """

    def __init__(self, learning_rate=None):
        self.learning_rate = learning_rate

    def on_epoch_end(self, net, **kwargs):
        for key, name in (("train_loss", "training"), ("valid_loss", "validation")):
            value = net.history[-1].get(key)
            if value is not None and not math.isfinite(value):
                raise ValueError(
                    f"The {name} loss became {value} at epoch "
                    f"{len(net.history)}: the optimisation diverged. Lower "
                    f"learning_rate (got {self.learning_rate}), or check the data "
                    "for extreme values."
                )

    def on_train_end(self, net, **kwargs):
        # one reduction per parameter, one host sync in all
        finite = torch.stack([torch.isfinite(p).all() for p in net.module_.parameters()])
        if not bool(finite.all()):
            raise ValueError(
                f"The model's weights became non-finite at epoch {len(net.history)}: "
                f"the optimisation diverged. Lower learning_rate (got "
                f"{self.learning_rate}), or check the data for extreme values."
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
        KL weight of the validation loss (the objective once warm-up is over).
    noise_generator : torch.Generator
        Source of the reparameterisation noise, on the training device.
    valid_noise : callable
        ``valid_noise(x, 1)`` gives the deterministic noise of the validation
        loss (:class:`skvae._losses.RowNoise`).
    skvae_callbacks : list of (name, Callback)
        skvae's own callbacks; they run before the user's ``callbacks``.
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

    def __init__(self, module, *, beta=1.0, noise_generator=None, valid_noise=None,
                 skvae_callbacks=(), loss_offset=0.0, **kwargs):
        super().__init__(module, criterion=NegativeELBO, **kwargs)
        self.beta = beta
        self.loss_offset = loss_offset
        self.noise_generator = noise_generator
        self.valid_noise = valid_noise
        self.skvae_callbacks = skvae_callbacks
        self.kl_weight_ = beta

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
        callbacks.extend(self.skvae_callbacks)
        if self.verbose >= 1:
            table = EpochTable(keys_ignored=["kl_weight"], colors=_interactive(sys.stdout))
            callbacks.append(("print_log", table))
            for _, callback in self.skvae_callbacks:
                if isinstance(callback, EarlyStopping):
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
        less Python per batch.
        """
        self._zero_grad_optimizer(set_to_none=True)
        step = self.train_step_single(batch, **fit_params)
        if self._listeners("on_grad_computed"):
            self.notify("on_grad_computed",
                        named_parameters=TeeGenerator(self.get_all_learnable_params()),
                        batch=batch, training=True)
        self._step_optimizer(None)
        return step

    def train_step_single(self, batch, **fit_params):
        if not self.module_.training:  # .train() walks every submodule: once an epoch
            self._set_training(True)
        x, _ = batch
        eps = torch.randn(x.shape[0], self.module_.n_components, generator=self.noise_generator,
                          device=x.device, dtype=x.dtype)
        per_sample = elbo(self.module_, x, eps, self.kl_weight_)
        loss = self.get_loss(per_sample, X=x, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": per_sample}

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
            self._set_training(False)
        x, _ = batch
        with torch.no_grad():
            eps = self._validation_noise(x)
            per_sample = elbo(self.module_, x, eps, self.beta)
            loss = self.get_loss(per_sample, X=x, training=False)
        return {"loss": loss, "y_pred": per_sample}


class WarmupEarlyStopping(EarlyStopping):
    """skorch's ``EarlyStopping`` that starts watching once the KL warm-up is over.

    The validation loss always weights the KL term by ``beta`` while training
    ramps that weight up from 0, so during the warm-up the validation loss can
    rise while training goes as planned, and plain early stopping would end the
    fit there and restore warm-up weights. Like Keras' ``start_from_epoch``, the
    first ``start_epoch`` epochs of the history neither count towards the
    patience nor compete for the best weights. The callback also records
    ``valid_loss_best`` (overwriting skorch's flag) so the history, the
    ``verbose`` table and the plots mark the epoch whose weights are kept.

    The weights training starts from compete too, as "epoch 0", when the net
    has an ``initial_valid_loss_`` (set by the estimator before training): a
    fit that starts from a linear model and only gets worse on the held-out
    rows ends with that linear model.
    """

    def __init__(self, start_epoch=0, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        initial = getattr(net, "initial_valid_loss_", None)
        if initial is not None and math.isfinite(initial):
            self.dynamic_threshold_ = self._calc_new_threshold(initial)
            self.best_epoch_ = len(net.history)  # the epochs already trained: 0 for a new fit
            if self.load_best:
                self.best_model_weights_ = copy.deepcopy(net.module_.state_dict())

    def on_train_end(self, net, **kwargs):
        # a fit that ended inside the warm-up never compared its epochs with the
        # starting weights: keep the last weights, as without a starting loss
        if len(net.history) <= self.start_epoch:
            return
        super().on_train_end(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        best_key = f"{self.monitor}_best"
        if len(net.history) <= self.start_epoch:
            net.history.record(best_key, False)
            return
        try:
            super().on_epoch_end(net, **kwargs)
        finally:
            net.history.record(best_key, self.misses_ == 0)


def optimizer_param_groups(module, learning_rate):
    """skorch's ``optimizer__param_groups`` for ``module``: the likelihood's step sizes.

    Each parameter of ``module.lr_factors()`` (the Gaussian variances) gets a
    group of its own at ``learning_rate`` times its factor, kept in the group as
    ``lr_factor``; skorch puts the other parameters in a last group at the
    net's ``lr``. See :meth:`VAEModule.parameter_groups`, the same groups for a
    plain ``torch.optim`` optimizer.
    """
    return [(name, {"lr": learning_rate * factor, "lr_factor": factor})
            for name, factor in module.lr_factors().items()]


def build_callbacks(*, beta, kl_warmup_epochs, learning_rate, early_stopping,
                    n_iter_no_change):
    """skvae's callbacks in the order they run (before any user callbacks)."""
    callbacks = [
        ("kl_warmup", KLWarmup(beta, kl_warmup_epochs)),
        ("finite_loss", FiniteLossCheck(learning_rate)),
    ]
    if early_stopping:
        # prints "Stopping since ..." only when the net is verbose
        # absolute threshold 0: "improved" means strictly lower, so the restored
        # weights are those of the epoch with the lowest validation loss (skorch's
        # default relative threshold misjudges small and negative losses)
        callbacks.append(("early_stopping", WarmupEarlyStopping(
            start_epoch=kl_warmup_epochs, monitor="valid_loss", patience=n_iter_no_change,
            threshold=0.0, threshold_mode="abs", load_best=True)))
    return callbacks


def mean_latent_kl(module, dataset, batch_size=4096):
    """Mean KL(q(z_j | x) || N(0, 1)) over the rows of ``dataset``, per latent dimension.

    Parameters
    ----------
    module : VAEModule
    dataset : skvae._data.TrainingData
        Model-ready rows (the training data of a fit).
    batch_size : int
        Rows encoded at a time.

    Returns
    -------
    kl : ndarray of shape (n_components,)
        In nats, float64. A dimension whose posterior equals the prior for every
        row (a "collapsed" or unused latent) has 0.
    """
    total = torch.zeros(module.n_components, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            mu, logvar = module.encode(dataset.take(slice(start, start + batch_size)))
            total += gaussian_kl_per_dimension(mu, logvar).sum(0, dtype=torch.float64).cpu()
    return (total / max(1, len(dataset))).numpy()
