"""Tests of the skorch net and skvae's callbacks (skvae/_net.py)."""

import copy
import inspect
import io
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import skorch
import torch
from numpy.testing import assert_allclose
from skorch.callbacks import Callback, PrintLog, ProgressBar
from skorch.history import History

from skvae._data import BatchIterator, TrainingData
from skvae._losses import RowNoise, elbo
from skvae._module import VAEModule
from skvae._optim import AVERAGING_DECAY
from skvae._net import (ENCODER_INPUT_NOISE, SKORCH_HOOKS, FiniteLossCheck, KLWarmup,
                        NegativeELBO, VAENet, WarmupEarlyStopping, _interactive,
                        mean_latent_kl)


def _module(seed=0, likelihood="gaussian"):
    module = VAEModule(6, 2, (5,), "relu", likelihood)
    return module.reset_parameters(torch.Generator().manual_seed(seed))


def _data(n=40, seed=0, rows=None):
    rng = np.random.RandomState(seed)
    return TrainingData(rng.normal(size=(n, 6)), rows=rows)


def _net(module=None, callbacks=None, verbose=0, beta=1.0, seed=0, net_class=VAENet,
         **kwargs):
    module = _module() if module is None else module
    return net_class(
        module,
        beta=beta,
        noise_generator=torch.Generator().manual_seed(seed),
        valid_noise=RowNoise(seed, module.n_components),
        callbacks=callbacks or [],
        optimizer=torch.optim.Adam,
        lr=1e-2,
        batch_size=16,
        iterator_train=BatchIterator,
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(seed + 1),
        iterator_valid=BatchIterator,
        verbose=verbose,
        **{"train_split": None, "max_epochs": 3, **kwargs},
    )


def _fake_net(n_epochs=1, module=None, beta=1.0, kl_warmup_epochs=0, lr=0.5, **record):
    history = History()
    for _ in range(n_epochs):
        history.new_epoch()
    for key, value in record.items():
        history.record(key, value)
    return SimpleNamespace(history=history, verbose=0, beta=beta,
                           kl_warmup_epochs=kl_warmup_epochs, lr=lr,
                           module_=_module() if module is None else module)


# --------------------------------------------------------------------------- criterion


def test_negative_elbo_is_the_negative_batch_mean():
    per_sample = torch.tensor([-1.0, -2.0, -6.0])
    assert NegativeELBO()(per_sample).item() == pytest.approx(3.0)
    assert NegativeELBO()(per_sample, y=None).item() == pytest.approx(3.0)


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("beta, warmup", [(1.0, 0), (2.0, 4), (0.5, 1)])
def test_kl_warmup_sets_and_records_the_weight(beta, warmup):
    callback = KLWarmup()
    for epoch in range(6):
        net = _fake_net(n_epochs=epoch + 1, beta=beta, kl_warmup_epochs=warmup)
        callback.on_epoch_begin(net)
        expected = beta if warmup == 0 else beta * min(1, epoch / warmup)
        assert net.kl_weight_ == pytest.approx(expected)
        assert net.history[-1, "kl_weight"] == pytest.approx(expected)


@pytest.mark.parametrize("key", ["train_loss", "valid_loss"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_finite_loss_check_raises_on_non_finite_losses(key, value):
    net = _fake_net(n_epochs=3, **{key: value})
    name = "training" if key == "train_loss" else "validation"
    with pytest.raises(ValueError, match=f"The {name} loss became {value} at epoch 3.*"
                                         r"learning_rate \(got 0.5\)"):
        FiniteLossCheck().on_epoch_end(net)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_finite_loss_check_raises_on_non_finite_weights(value):
    # the losses of an epoch are computed before each step: a last step that
    # diverged shows only in the weights
    module = _module()
    with torch.no_grad():
        module.decoder_head.weight[0, 0] = value
    net = _fake_net(n_epochs=2, module=module, train_loss=1.0, valid_loss=1.0)
    check = FiniteLossCheck()
    check.on_epoch_end(net)  # the losses are finite: checked once, at the end
    with pytest.raises(ValueError, match=r"weights became non-finite at epoch 2.*"
                                         r"learning_rate \(got 0.5\)"):
        check.on_train_end(net)


def test_finite_loss_check_passes_finite_and_missing_losses():
    FiniteLossCheck().on_epoch_end(_fake_net(train_loss=1.5, valid_loss=-2.0))
    FiniteLossCheck().on_epoch_end(_fake_net(train_loss=1.5))
    FiniteLossCheck().on_epoch_end(_fake_net())
    FiniteLossCheck().on_train_end(_fake_net(train_loss=1.5))


def test_skvae_callbacks_come_from_the_nets_parameters():
    net = _net(beta=0.5, kl_warmup_epochs=3).initialize()
    names = [name for name, _ in net.callbacks_]
    assert "early_stopping" not in names  # n_iter_no_change=None: no early stopping
    net = _net(beta=0.5, kl_warmup_epochs=3, n_iter_no_change=5).initialize()
    callbacks = dict(net.callbacks_)
    skvae_names = [name for name, _ in net.callbacks_
                   if name in ("kl_warmup", "finite_loss", "early_stopping")]
    assert skvae_names == ["kl_warmup", "finite_loss", "early_stopping"]
    stopping = callbacks["early_stopping"]
    assert isinstance(stopping, WarmupEarlyStopping)
    assert stopping.monitor == "valid_loss"
    assert stopping.patience == 5
    assert stopping.start_epoch == 3  # watches from the end of the KL warm-up
    assert stopping.start_patience is None  # the same patience throughout
    net = _net(n_iter_no_change=5, start_patience=9).initialize()
    assert dict(net.callbacks_)["early_stopping"].start_patience == 9
    # skorch's own way of changing a default callback's parameter works
    net = _net(n_iter_no_change=5, callbacks__early_stopping__patience=2).initialize()
    assert dict(net.callbacks_)["early_stopping"].patience == 2


@pytest.mark.parametrize("name", sorted(SKORCH_HOOKS))
def test_skorch_still_has_the_hooks_skvae_overrides(name):
    """A skorch release that renames or re-signs one of these fails here, loudly."""
    method = getattr(skorch.NeuralNet, name, None)
    assert method is not None, f"skorch {skorch.__version__} has no NeuralNet.{name}"
    assert str(inspect.signature(method)) == SKORCH_HOOKS[name], (
        f"skorch {skorch.__version__} changed NeuralNet.{name}: VAENet overrides it "
        f"assuming {SKORCH_HOOKS[name]}")
    assert getattr(VAENet, name) is not method  # VAENet does override it


def test_skorch_fit_loop_calls_the_hooks_skvae_overrides():
    """The overrides are not dead code: skorch's loop reaches each of them."""
    calls = set()

    class Spy(VAENet):
        pass

    for name in SKORCH_HOOKS:
        def spy(self, *args, __name=name, **kwargs):
            calls.add(__name)
            return getattr(VAENet, __name)(self, *args, **kwargs)
        setattr(Spy, name, spy)
    valid = _data(n=10, seed=1)
    _net(net_class=Spy, max_epochs=1, train_split=lambda data: (data, valid)).fit(_data())
    assert calls == set(SKORCH_HOOKS)


# --------------------------------------------------------------------------- VAENet


def _pretend_terminal(monkeypatch):
    """Make the captured stdout and stderr say they are terminals.

    Call it in the test: capsys replaces the streams when the test starts.
    """
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)


@pytest.mark.parametrize("verbose, terminal, printed", [
    (0, False, []), (1, False, [PrintLog]), (2, False, [PrintLog]),
    (0, True, []), (1, True, [PrintLog]), (2, True, [ProgressBar, PrintLog])])
def test_default_callbacks_depend_on_verbose(verbose, terminal, printed, monkeypatch):
    # a progress bar only on a terminal, where tqdm's carriage returns redraw it
    if terminal:
        _pretend_terminal(monkeypatch)
    net = _net(verbose=verbose)
    callbacks = dict(net.get_default_callbacks())
    assert {"kl_warmup", "finite_loss", "train_loss", "valid_loss"} <= set(callbacks)
    kinds = [kind for cb in callbacks.values() for kind in (PrintLog, ProgressBar)
             if isinstance(cb, kind)]
    assert kinds == printed


def test_interactive_means_a_terminal():
    assert not _interactive(io.StringIO())
    assert not _interactive(object())  # no isatty
    closed = io.StringIO()
    closed.close()
    assert not _interactive(closed)  # isatty raises ValueError


def test_verbose_table_is_plain_text_when_not_a_terminal(capsys):
    _net(verbose=1).fit(_data())
    out = capsys.readouterr().out
    assert "train_loss" in out
    assert "\x1b[" not in out  # ANSI escape codes


def test_verbose_table_colours_the_best_losses_on_a_terminal(capsys, monkeypatch):
    _pretend_terminal(monkeypatch)
    _net(verbose=1).fit(_data())
    out = capsys.readouterr().out
    assert "train_loss" in out
    assert "\x1b[36m" in out and "\x1b[0m" in out  # skorch's colours


def test_verbose_2_draws_no_progress_bar_when_not_a_terminal(capsys):
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    net = _net(verbose=2, train_split=lambda dataset: (dataset, valid)).fit(train)
    captured = capsys.readouterr()
    assert "valid_loss" in captured.out
    assert "\r" not in captured.out + captured.err  # no redrawn bars in a log file
    assert captured.err == ""
    assert not net._listeners("on_batch_end")  # the batch losses are read once per epoch


def test_verbose_2_bar_counts_training_batches_and_is_erased(capsys, monkeypatch):
    _pretend_terminal(monkeypatch)
    monkeypatch.setattr(sys, "stderr", sys.stdout)  # bar and table on one terminal
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    _net(verbose=2, train_split=lambda dataset: (dataset, valid)).fit(train)
    out = capsys.readouterr().out
    # 45 training rows in batches of 16: 3 batches (skorch's bar adds the
    # validation batch: 0/4)
    assert "epoch 1:   0%" in out and "| 0/3 [" in out and "/4 [" not in out
    assert out.count("epoch 1:   0%") == out.count("epoch 3:   0%") == 1
    lines = out.split("\n")
    rows = [line for line in lines if "\r" in line]  # the lines where a bar was drawn
    shown = []
    for line in rows:
        *bar, text = line.split("\r")
        assert bar[-1].strip() == ""  # erased (tqdm, leave=False) ...
        shown.append(text.split()[0])
    assert shown == ["epoch", "2", "3"]  # ... before the header (epoch 1) or the row


class _RecordConstant(Callback):
    """Records ``constant=1.0`` every epoch: early stopping on it stops at once."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("constant", 1.0)


class _ConstantStoppingNet(VAENet):
    """Early stopping on ``constant``, recorded before it, instead of ``valid_loss``."""

    def skvae_callbacks(self):
        return [("constant", _RecordConstant()),
                ("early_stopping", WarmupEarlyStopping(monitor="constant", patience=2))]


def _stopping_net(verbose):
    # epoch 1 improves on inf, epochs 2 and 3 do not: stopped after epoch 3 of 10
    return _net(verbose=verbose, max_epochs=10, net_class=_ConstantStoppingNet)


def _stopping_epoch(losses, initial, **params):
    """The epoch at which WarmupEarlyStopping stops a fit with these validation losses."""
    stopping = WarmupEarlyStopping(**params)
    net = _fake_net(n_epochs=0)
    net.initial_valid_loss_ = initial
    stopping.on_train_begin(net)
    for epoch, loss in enumerate(losses, start=1):
        net.history.new_epoch()
        net.history.record("epoch", epoch)
        net.history.record("valid_loss", loss)
        try:
            stopping.on_epoch_end(net)
        except KeyboardInterrupt:
            return epoch
    return None


def test_early_stopping_waits_longer_until_the_start_is_beaten():
    """start_patience holds while the starting weights are the best; patience after."""
    worse = [2.0] * 20
    assert _stopping_epoch(worse, 1.0, patience=3, start_patience=8) == 8
    assert _stopping_epoch(worse, 1.0, patience=3) == 3
    # once an epoch beats the start, the patience is the short one again
    assert _stopping_epoch([0.5] + worse, 1.0, patience=3, start_patience=8) == 4
    # no starting weights to beat (a random start): the first epoch is the best
    assert _stopping_epoch(worse, None, patience=3, start_patience=8) == 4


def test_early_stopping_threshold_lets_a_creep_stop_and_steady_progress_go_on():
    """With a threshold, a new best restarts the patience only once the best has
    fallen by more than it since the last restart: a creep of 0.01 an epoch stops
    after ``patience`` epochs, 0.04 an epoch (0.12 over 3 epochs) trains on."""
    creep = list(1.0 - 0.01 * np.arange(1, 30))
    steady = list(1.0 - 0.04 * np.arange(1, 20))
    # the first epoch beats the start (1.1) and restarts the patience, however little
    assert _stopping_epoch(creep, 1.1, patience=3, threshold=0.1) == 4
    assert _stopping_epoch(creep, 1.1, patience=3) is None
    assert _stopping_epoch(steady, 1.1, patience=3, threshold=0.1) is None
    # the weights kept are the best epoch's all the same: the last one of the creep
    stopping = WarmupEarlyStopping(patience=3, threshold=0.1)
    net = _fake_net(n_epochs=0)
    net.initial_valid_loss_ = 1.1
    stopping.on_train_begin(net)
    with pytest.raises(KeyboardInterrupt):
        for epoch, loss in enumerate(creep, start=1):
            net.history.new_epoch()
            net.history.record("epoch", epoch)
            net.history.record("valid_loss", loss)
            stopping.on_epoch_end(net)
    assert stopping.best_epoch_ == 4 and stopping.best_loss_ == creep[3]


@pytest.mark.parametrize("terminal", [False, True])
def test_early_stopping_message_follows_the_last_row(capsys, monkeypatch, terminal):
    if terminal:
        _pretend_terminal(monkeypatch)
        monkeypatch.setattr(sys, "stderr", sys.stdout)  # bar, table and message on one
    net = _stopping_net(verbose=2).fit(_data())
    assert len(net.history) == 3
    out = capsys.readouterr().out
    # what the screen shows: each line's text after its last carriage return
    lines = [line.split("\r")[-1] for line in out.split("\n") if line.strip()]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]  # every epoch's row
    assert lines[5:] == ["Stopping since constant has not improved in the last 2 epochs.",
                         "Restoring best model from epoch 1."]
    assert ("\r" in out) == terminal


def test_early_stopping_is_silent_when_not_verbose(capsys):
    net = _stopping_net(verbose=0).fit(_data())
    assert len(net.history) == 3
    assert capsys.readouterr() == ("", "")


def test_user_callbacks_come_after_skvae_callbacks():
    class Mine(Callback):
        pass

    net = _net(callbacks=[("mine", Mine())]).initialize()
    names = [name for name, _ in net.callbacks_]
    assert names.index("kl_warmup") < names.index("finite_loss") < names.index("mine")


def test_training_is_reproducible_and_trains():
    a = _net(seed=0)
    b = _net(module=_module(), seed=0)
    a.fit(_data())
    b.fit(_data())
    losses = a.history[:, "train_loss"]
    assert losses == b.history[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert a.history[:, "kl_weight"] == [1.0, 1.0, 1.0]
    c = _net(seed=5).fit(_data())
    assert c.history[:, "train_loss"] != losses


def test_train_step_uses_the_noise_generator_and_the_kl_weight():
    net = _net(seed=3).initialize()
    net.kl_weight_ = 0.25
    x = _data().take(slice(0, 8))
    module_copy = copy.deepcopy(net.module_)
    step = net.train_step_single((x, None))
    generator = torch.Generator().manual_seed(3)
    eps = torch.randn(8, 2, generator=generator)
    # then the encoder's input noise, at the likelihood's standard deviation
    scale = module_copy.observation.encoder_noise_scale()
    noise = torch.randn(8, 6, generator=generator) * scale * ENCODER_INPUT_NOISE
    expected = -elbo(module_copy, x, eps, 0.25, input_noise=noise).mean()
    assert step["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert step["y_pred"].shape == (8,)
    # gradients were computed
    assert all(p.grad is not None for p in net.module_.parameters())


def test_encoder_input_noise_follows_the_likelihood(monkeypatch):
    net = _net(seed=3).initialize()
    with torch.no_grad():  # variances far apart: the noise must follow each feature's
        net.module_.observation.raw_variance.copy_(torch.linspace(-6.0, 3.0, 6))
    x = torch.zeros(4000, 6)
    noise = net._encoder_input_noise(x)
    expected = net.module_.observation.encoder_noise_scale() * ENCODER_INPUT_NOISE
    assert_allclose(noise.std(0).numpy(), expected.numpy(), rtol=0.1)
    # a training step leaves the rows untouched
    rows = _data().take(slice(0, 8))
    before = rows.clone()
    net.train_step_single((rows, None))
    assert torch.equal(rows, before)
    # none for the Bernoulli likelihood, for data with holes, nor when switched off
    assert _net(module=_module(likelihood="bernoulli")).initialize() \
        ._encoder_input_noise(x) is None
    net.missing = True
    assert net._encoder_input_noise(x) is None
    net.missing = False
    monkeypatch.setattr("skvae._net.ENCODER_INPUT_NOISE", 0.0)
    assert net._encoder_input_noise(x) is None


def test_validation_step_is_deterministic_and_uses_beta():
    net = _net(beta=0.5).initialize()
    net.kl_weight_ = 0.0  # warm-up does not change the validation loss
    x = _data().take(slice(0, 10))
    first = net.validation_step((x, None))
    second = net.validation_step((x, None))
    assert first["loss"].item() == second["loss"].item()
    eps = RowNoise(0, 2)(x, 1)[:, 0]
    with torch.no_grad():
        expected = -elbo(net.module_, x, eps, 0.5).mean()
    assert_allclose(first["loss"].item(), expected.item(), rtol=1e-6)
    assert not first["loss"].requires_grad


def test_fit_on_a_validation_set_records_valid_loss():
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    net = _net(train_split=lambda dataset: (dataset, valid))
    net.fit(train)
    assert len(net.history[:, "valid_loss"]) == 3
    assert net.history[:, "valid_batch_count"] == [1, 1, 1]
    assert net.history[:, "train_batch_count"] == [3, 3, 3]


class _BatchLossReader(Callback):
    """Reads each batch's loss from the history in ``on_batch_end``."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.seen.append(net.history[-1, "batches", -1, "train_loss"])


def test_batch_losses_are_read_once_per_epoch_with_the_same_history():
    # without a callback that reads them per batch, the losses are written to the
    # history at the end of the epoch: the same floats that skorch's loop records
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    deferred = _net(train_split=lambda dataset: (dataset, valid)).fit(train)
    reader = _BatchLossReader()
    per_batch = _net(train_split=lambda dataset: (dataset, valid),
                     callbacks=[("reader", reader)]).fit(train)
    assert not deferred._listeners("on_batch_end") and per_batch._listeners("on_batch_end")
    for key in ("train_loss", "valid_loss", "train_batch_size", "valid_batch_size"):
        values = deferred.history[:, "batches", :, key]
        assert values == per_batch.history[:, "batches", :, key]
        assert all(type(v) is (float if key.endswith("loss") else int)
                   for epoch in values for v in epoch)
    assert deferred.history[:, "train_loss"] == per_batch.history[:, "train_loss"]
    assert deferred.history[:, "valid_loss"] == per_batch.history[:, "valid_loss"]
    assert deferred.history[:, "train_batch_count"] == [3, 3, 3]
    # the reader saw each batch's loss as a float when the batch ended
    assert reader.seen == [v for epoch in per_batch.history[:, "batches", :, "train_loss"]
                           for v in epoch]
    assert len(reader.seen) == 9 and all(type(v) is float for v in reader.seen)


@pytest.mark.parametrize("reader", [False, True])
def test_loss_offset_shifts_the_recorded_losses_only(reader):
    # the offset moves every recorded loss (per batch and per epoch, on either
    # loop) and nothing else: the training steps are those without it
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))

    def fit(offset):
        callbacks = [("reader", _BatchLossReader())] if reader else []
        return _net(train_split=lambda dataset: (dataset, valid), callbacks=callbacks,
                    loss_offset=offset).fit(train)

    plain, shifted = fit(0.0), fit(-37.5)
    for key in ("train_loss", "valid_loss"):
        assert_allclose(np.subtract(shifted.history[:, key], plain.history[:, key]), -37.5,
                        rtol=0, atol=1e-9)
        per_batch = np.subtract(shifted.history[:, "batches", :, key],
                                plain.history[:, "batches", :, key])
        assert_allclose(per_batch, -37.5, rtol=0, atol=1e-9)
    for a, b in zip(plain.module_.parameters(), shifted.module_.parameters()):
        assert torch.equal(a, b)


class _GradReader(Callback):
    """Records the gradient norm it sees in ``on_grad_computed``."""

    def __init__(self):
        self.norms = []

    def on_grad_computed(self, net, named_parameters, training=False, **kwargs):
        grads = [p.grad for _, p in named_parameters]
        assert training and all(g is not None for g in grads)
        self.norms.append(float(torch.cat([g.flatten() for g in grads]).norm()))


def test_on_grad_computed_reaches_callbacks_that_implement_it():
    reader = _GradReader()
    net = _net(callbacks=[("grads", reader)])
    assert net.initialize()._listeners("on_grad_computed") == [reader]
    assert not _net().initialize()._listeners("on_grad_computed")
    net.fit(_data())
    assert len(reader.norms) == 3 * 3  # 3 epochs of 3 batches (40 rows, batch 16)
    # a callback that only reads the gradients does not change the training
    plain = _net().fit(_data())
    assert net.history[:, "train_loss"] == plain.history[:, "train_loss"]


def test_gradient_clipping_callback_clips():
    from skorch.callbacks import GradientNormClipping

    reader = _GradReader()  # runs after the clipping callback
    net = _net(callbacks=[("clip", GradientNormClipping(gradient_clip_value=0.01)),
                          ("grads", reader)])
    net.fit(_data())
    assert max(reader.norms) <= 0.01 + 1e-6
    unclipped = _GradReader()
    _net(callbacks=[("grads", unclipped)]).fit(_data())
    assert max(unclipped.norms) > 0.1


class _Counter(Callback):
    """Counts the hooks it implements."""

    def __init__(self):
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_train_begin(self, net, **kwargs):
        self._count("on_train_begin")

    def on_epoch_begin(self, net, **kwargs):
        self._count("on_epoch_begin")

    def on_batch_begin(self, net, **kwargs):
        self._count("on_batch_begin")

    def on_epoch_end(self, net, **kwargs):
        self._count("on_epoch_end")

    def on_train_end(self, net, **kwargs):
        self._count("on_train_end")


def test_notify_calls_every_callback_that_implements_the_hook():
    counter = _Counter()
    net = _net(callbacks=[("counter", counter)]).initialize()
    names = [name for name, cb in net.callbacks_ if cb in net._listeners("on_batch_begin")]
    assert names == ["counter"]  # no skvae or skorch default callback has this hook
    assert [name for name, cb in net.callbacks_ if cb in net._listeners("on_epoch_end")] == [
        "epoch_timer", "train_loss", "valid_loss", "finite_loss", "counter"]
    net.fit(_data())  # 3 epochs of 3 batches
    assert counter.calls == {"on_train_begin": 1, "on_epoch_begin": 3, "on_batch_begin": 9,
                             "on_epoch_end": 3, "on_train_end": 1}
    # callbacks re-initialized (a new list): the listeners are looked up afresh
    old = net.callbacks_
    net.callbacks = [("other", _Counter())]
    net.initialize_callbacks()
    assert net.callbacks_ is not old
    assert net._listeners("on_batch_begin") == [dict(net.callbacks_)["other"]]


class _CountingData:
    """A TrainingData wrapper that records the rows of each ``take``."""

    def __init__(self, data):
        self.data, self.batches = data, []

    def __len__(self):
        return len(self.data)

    def take(self, rows):
        batch = self.data.take(rows)
        self.batches.append(len(batch))
        return batch


def test_mean_latent_kl_batches_are_bounded_by_the_widest_layer(monkeypatch):
    import scipy.sparse as sp

    import skvae._data

    X = sp.random(50, 6, density=0.3, random_state=0, format="csr")
    data = TrainingData(X, mean=np.full(6, 0.1), scale=np.full(6, 2.0))
    module = _module()
    whole = mean_latent_kl(module, data, batch_size=len(data))
    # 6 features are the widest layer: a budget of 60 values is 10 rows a batch
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 60)
    counting = _CountingData(data)
    batched = mean_latent_kl(module, counting)
    assert counting.batches == [10] * 5
    assert_allclose(batched, whole, rtol=1e-6)
    assert batched.dtype == np.float64 and (batched >= 0).all()
    # never more than 4,096 rows, however narrow the network
    monkeypatch.setattr(skvae._data, "INFERENCE_BATCH_FLOATS", 10**9)
    counting = _CountingData(TrainingData(np.zeros((5000, 6))))
    mean_latent_kl(module, counting)
    assert counting.batches == [4096, 904]


def test_sparse_batches_are_standardized_without_touching_the_stored_rows():
    import scipy.sparse as sp

    X = sp.random(30, 6, density=0.3, random_state=0, format="csr")
    mean, scale = np.linspace(-1, 1, 6), np.linspace(0.5, 2, 6)
    data = TrainingData(X, mean=mean, scale=scale)
    expected = (X.toarray() - mean) / scale
    for _ in range(2):  # a second take sees the same stored rows
        assert_allclose(data.take(slice(0, 30)).numpy(), expected, rtol=1e-6, atol=1e-6)
        rows = torch.tensor([3, 0, 29])
        assert_allclose(data.take(rows).numpy(), expected[[3, 0, 29]], rtol=1e-6, atol=1e-6)


class _ManualAverage(Callback):
    """The warmed-up exponential average of the weights after each training step."""

    def on_train_begin(self, net, **kwargs):
        self.steps, self.average = 0, [p.detach().clone() for p in net.module_.parameters()]

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.steps += 1
            decay = min(AVERAGING_DECAY, (1 + self.steps) / (10 + self.steps))
            self.average = [decay * a + (1 - decay) * p.detach()
                            for a, p in zip(self.average, net.module_.parameters())]


def test_averaged_weights_are_validated_and_kept_without_changing_the_steps():
    """Training steps from the trained weights; validation and the end see their average."""
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    manual = _ManualAverage()
    plain = _net(train_split=lambda dataset: (dataset, valid), max_epochs=4,
                 callbacks=[manual]).fit(train)
    averaged = _net(train_split=lambda dataset: (dataset, valid), max_epochs=4,
                    average_weights=True).fit(train)
    # the same training steps: the same training losses, batch by batch
    assert averaged.history[:, "batches", :, "train_loss"] == \
        plain.history[:, "batches", :, "train_loss"]
    # the module ends with the average of the trained weights
    for p, a in zip(averaged.module_.parameters(), manual.average):
        torch.testing.assert_close(p.detach(), a)
    assert not all(torch.equal(p, q) for p, q in zip(averaged.module_.parameters(),
                                                     plain.module_.parameters()))
    # whose held-out loss is the one the last epoch recorded
    assert averaged.validation_loss(valid) == pytest.approx(averaged.history[-1, "valid_loss"])
    assert averaged.history[-1, "valid_loss"] != plain.history[-1, "valid_loss"]
    assert "weight_average_" not in averaged.__dict__  # nothing kept after the fit


def test_early_stopping_keeps_the_best_averaged_weights():
    train, valid = _data(60, rows=torch.arange(45)), _data(60, rows=torch.arange(45, 60))
    net = _net(train_split=lambda dataset: (dataset, valid), max_epochs=60,
               n_iter_no_change=3, average_weights=True).fit(train)
    losses = net.history[:, "valid_loss"]
    assert net.validation_loss(valid) == pytest.approx(min(losses))
