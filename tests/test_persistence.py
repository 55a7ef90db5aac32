"""Tests of the saved state (skvae/_persistence.py): pickle, skops.io, formats.

``tests/data/vae_format_1.skops`` is a small model saved in state format 1 with the
outputs it gave, so that every later skvae is checked to load it. It was written by
running this file as a script, ``python tests/test_persistence.py`` (see
:func:`write_format_1`), with skvae 0.1.0 and skops 0.16.0. Never regenerate the file
of an old format: when the format changes, add a file for the new one.
"""

import copy
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.history import History

import skvae
import skvae._training
from skvae import VAETransformer
from skvae._likelihoods import VARIANCE_LR_FACTOR
from skvae._module import ACTIVATIONS
from skvae._persistence import FORMAT

DATA = Path(__file__).parent / "data"
SMALL = dict(hidden_layer_sizes=(8,), max_epochs=3, early_stopping=False, random_state=0)
LIKELIHOODS = ["gaussian", "bernoulli"]
SKVAE_TYPES = ["skvae._vae.VAETransformer"]


def _data(likelihood, X):
    return X / 16.0 if likelihood == "bernoulli" else X


def _outputs(est, X):
    Z = est.transform(X)
    return [Z, est.inverse_transform(Z), est.score_samples(X),
            est.score_samples(X, n_importance_samples=5), est.sample(3, random_state=1)]


def _walk(value):
    """Every object in a nested state of dicts, lists and tuples."""
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_state_holds_numpy_and_builtins_only(fitted_for, likelihood):
    state = fitted_for(likelihood).__getstate__()
    allowed = (np.ndarray, np.generic, str, int, float, bool, type(None), dict, list,
               tuple)
    assert all(isinstance(value, allowed) for value in _walk(state))
    assert state["_skvae_version"] == skvae.__version__
    assert state["_skvae_format"] == FORMAT == 9


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_pickle_round_trip_rebuilds_torch_objects(digits, fitted_for, likelihood):
    est = fitted_for(likelihood)
    loaded = pickle.loads(pickle.dumps(est))
    assert isinstance(loaded.module_, torch.nn.Module)
    assert isinstance(loaded.history_, History)
    assert loaded.history_ == est.history_
    assert set(loaded.__dict__) == set(est.__dict__)  # no version keys left behind
    X = _data(likelihood, digits[0])
    for a, b in zip(_outputs(loaded, X), _outputs(est, X)):
        assert_array_equal(a, b)


def test_loading_draws_no_global_random_numbers(fitted_vae):
    blob = pickle.dumps(fitted_vae)
    before = torch.random.get_rng_state()
    pickle.loads(blob)
    assert torch.equal(before, torch.random.get_rng_state())


def test_unfitted_state_round_trips():
    est = VAETransformer(3, activation="tanh")
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.get_params() == est.get_params()
    assert not hasattr(loaded, "module_")


def test_state_without_a_format_loads_as_format_0(digits, fitted_vae):
    # the pickles written before formats existed held the torch objects themselves
    est = VAETransformer.__new__(VAETransformer)
    est.__setstate__(copy.deepcopy(fitted_vae.__dict__))
    for a, b in zip(_outputs(est, digits[0]), _outputs(fitted_vae, digits[0])):
        assert_array_equal(a, b)


def test_newer_format_is_a_clear_error(fitted_vae):
    state = fitted_vae.__getstate__()
    state.update(_skvae_format=FORMAT + 1, _skvae_version="9.0")
    est = VAETransformer.__new__(VAETransformer)
    with pytest.raises(ValueError, match=(
            rf"saved by skvae 9\.0 in state format {FORMAT + 1}, but skvae "
            rf"{skvae.__version__} reads formats 0 to {FORMAT}\. Upgrade skvae")):
        est.__setstate__(state)


@pytest.mark.parametrize("fmt", [-1, "1", 1.0, True, None])
def test_unknown_format_is_a_clear_error(fitted_vae, fmt):
    state = fitted_vae.__getstate__()
    state["_skvae_format"] = fmt
    est = VAETransformer.__new__(VAETransformer)
    with pytest.raises(ValueError, match="not a state that any skvae wrote"):
        est.__setstate__(state)


def test_unknown_attribute_kind_is_a_clear_error(fitted_vae):
    state = fitted_vae.__getstate__()
    state["_skvae_converted"] = {**state["_skvae_converted"], "module_": "jax"}
    with pytest.raises(ValueError, match="'module_' was saved as 'jax'.*Upgrade skvae"):
        VAETransformer.__new__(VAETransformer).__setstate__(state)


def test_new_numpy_and_torch_attributes_are_handled_generically(digits, fitted_vae):
    est = copy.deepcopy(fitted_vae)
    est.extra_array_ = np.arange(3.0)
    est._extra_tensors = {"a": [torch.ones(2)], "b": (torch.zeros(1), 1)}
    state = est.__getstate__()
    assert state["_skvae_converted"]["_extra_tensors"] == "tensors"
    assert "extra_array_" not in state["_skvae_converted"]
    loaded = pickle.loads(pickle.dumps(est))
    assert_array_equal(loaded.extra_array_, est.extra_array_)
    assert torch.equal(loaded._extra_tensors["a"][0], torch.ones(2))
    assert loaded._extra_tensors["b"][1] == 1


def test_a_foreign_torch_module_is_refused_with_advice(fitted_vae):
    est = copy.deepcopy(fitted_vae)
    est.other_ = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="'other_'.*state_dict"):
        pickle.dumps(est)


# ------------------------------------------------------------------- skops.io


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_skops_round_trip(digits, fitted_for, likelihood, tmp_path):
    sio = pytest.importorskip("skops.io")
    X = _data(likelihood, digits[0])
    est = fitted_for(likelihood)
    sio.dump(est, tmp_path / "vae.skops")
    assert sio.get_untrusted_types(file=tmp_path / "vae.skops") == SKVAE_TYPES
    loaded = sio.load(tmp_path / "vae.skops", trusted=SKVAE_TYPES)
    for a, b in zip(_outputs(loaded, X), _outputs(est, X)):
        assert_array_equal(a, b)
    assert loaded.history_ == est.history_
    assert loaded.get_params() == est.get_params()
    # the loaded model keeps training like the original (optimizer state included)
    a = copy.deepcopy(est).partial_fit(X)
    b = loaded.partial_fit(X)
    assert b.n_epochs_ == est.n_epochs_ + 1
    assert_array_equal(a.transform(X), b.transform(X))


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_skops_round_trip_of_every_architecture(digits, activation, likelihood):
    sio = pytest.importorskip("skops.io")
    X = _data(likelihood, digits[0][:100])
    est = VAETransformer(2, activation=activation, likelihood=likelihood,
                         **{**SMALL, "max_epochs": 1}).fit(X)
    blob = sio.dumps(est)
    assert sio.get_untrusted_types(data=blob) == SKVAE_TYPES
    loaded = sio.loads(blob, trusted=SKVAE_TYPES)
    assert loaded.module_.activation == activation
    Z = est.transform(X)
    assert_array_equal(loaded.transform(X), Z)
    assert_array_equal(loaded.inverse_transform(Z), est.inverse_transform(Z))


def test_skops_round_trip_of_a_pipeline(digits, tmp_path):
    sio = pytest.importorskip("skops.io")
    X, y = digits
    pipe = make_pipeline(StandardScaler(), VAETransformer(4, **SMALL),
                         LogisticRegression(max_iter=200)).fit(X, y)
    sio.dump(pipe, tmp_path / "pipe.skops")
    assert sio.get_untrusted_types(file=tmp_path / "pipe.skops") == SKVAE_TYPES
    loaded = sio.load(tmp_path / "pipe.skops", trusted=SKVAE_TYPES)
    assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert_array_equal(loaded[:-1].transform(X), pipe[:-1].transform(X))
    assert_array_equal(loaded[1].sample(5), pipe[1].sample(5))


def test_skops_refuses_an_untrusted_vae(fitted_vae, tmp_path):
    sio = pytest.importorskip("skops.io")
    sio.dump(fitted_vae, tmp_path / "vae.skops")
    with pytest.raises(Exception, match="Untrusted types"):
        sio.load(tmp_path / "vae.skops")


def test_skops_gpu_fitted_model_loads_on_the_cpu(digits, fitted_vae, monkeypatch, tmp_path):
    # As in test_vae.py: device_ says "cuda", and this machine has no CUDA.
    sio = pytest.importorskip("skops.io")
    est = copy.deepcopy(fitted_vae)
    est.device_ = "cuda"
    sio.dump(est, tmp_path / "vae.skops")
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    loaded = sio.load(tmp_path / "vae.skops", trusted=SKVAE_TYPES)
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    for a, b in zip(_outputs(loaded, digits[0]), _outputs(fitted_vae, digits[0])):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_skops_cuda_fit_loads_on_the_cpu(digits, monkeypatch, tmp_path):
    sio = pytest.importorskip("skops.io")
    X = digits[0]
    est = VAETransformer(2, **{**SMALL, "device": "cuda"}).fit(X)
    expected = _outputs(est, X)
    sio.dump(est, tmp_path / "vae.skops")
    assert sio.get_untrusted_types(file=tmp_path / "vae.skops") == SKVAE_TYPES
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    loaded = sio.load(tmp_path / "vae.skops", trusted=SKVAE_TYPES)
    assert next(loaded.module_.parameters()).device.type == "cpu"
    for a, b in zip(_outputs(loaded, X), expected):
        assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------- older formats


def write_format_1(path):
    """Write the reference file of state format 1: a tiny model, data and outputs."""
    import skops.io as sio

    X, _ = make_blobs(40, 5, random_state=0)
    est = VAETransformer(2, hidden_layer_sizes=(4,), max_epochs=2, batch_size=20,
                         early_stopping=False, random_state=0).fit(X)
    Z = est.transform(X)
    saved = {"estimator": est, "X": X, "transform": Z,
             "inverse_transform": est.inverse_transform(Z),
             "score_samples": est.score_samples(X), "sample": est.sample(3)}
    sio.dump(saved, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)


def test_format_1_file_loads_and_gives_its_outputs():
    sio = pytest.importorskip("skops.io")
    path = DATA / "vae_format_1.skops"
    assert sio.get_untrusted_types(file=path) == SKVAE_TYPES
    saved = sio.load(path, trusted=SKVAE_TYPES)
    est, X = saved["estimator"], saved["X"]
    Z = est.transform(X)
    # computed on another machine (other BLAS): equal to float64 rounding
    assert_allclose(Z, saved["transform"], rtol=1e-10, atol=1e-12)
    assert_allclose(est.inverse_transform(Z), saved["inverse_transform"], rtol=1e-10,
                    atol=1e-12)
    assert_allclose(est.score_samples(X), saved["score_samples"], rtol=1e-10)
    assert_allclose(est.sample(3), saved["sample"], rtol=1e-10, atol=1e-12)
    # the resolved values of format 5, from its parameters and history
    assert (est.max_epochs_, est.n_iter_no_change_) == (2, 10)
    est.partial_fit(X)  # and keeps training
    assert est.n_epochs_ == 3
    # parameters added since: the values that describe how it was trained
    params = est.get_params()
    assert params["init"] == "random" and params["n_threads"] == "auto"
    assert clone(est).get_params() == params
    # fitted attributes added since: one likelihood for every column, no labels
    assert est.likelihoods_ == dict.fromkeys(range(X.shape[1]), params["likelihood"])
    assert est.target_type_ is None


def test_format_2_state_loads_with_one_variance_floor():
    """A network saved before the per-feature floor: every feature gets min_variance."""
    X = np.random.RandomState(0).randn(80, 5)  # continuous: the floor is min_variance
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs=3, random_state=0,
                         device="cpu").fit(X)
    state = est.__getstate__()
    state["_skvae_format"] = 2
    weights = state["module_"]["state_dict"]
    assert "observation.variance_floor" in weights
    del weights["observation.variance_floor"]
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    assert_allclose(loaded.module_.observation.variance_floor.numpy(), 1e-6)
    assert_allclose(loaded.score_samples(X), est.score_samples(X), rtol=1e-12)


def test_format_3_optimizer_state_is_split_into_the_variance_group():
    """Format 3 trained every parameter in one Adam group; format 4 gives the variances
    their own step size. A format 3 model keeps training as if saved in format 4."""
    X = np.random.RandomState(0).randn(80, 5)
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs=3, random_state=0).fit(X)
    state = est.__getstate__()
    saved = state["_optimizer_state"]
    assert [len(group["params"]) for group in saved["param_groups"]] == [1, 10]
    # the layout of format 3: one group, parameter ids = positions in named_parameters
    names = [name for name, _ in est.module_.named_parameters()]
    order = ["observation.raw_variance"] + [n for n in names if n != "observation.raw_variance"]
    position = {i: names.index(name) for i, name in enumerate(order)}
    group = {**saved["param_groups"][1], "params": list(range(len(names)))}
    state["_optimizer_state"] = {
        "state": {position[i]: value for i, value in saved["state"].items()},
        "param_groups": [group]}
    state["_skvae_format"] = 3
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    groups = loaded._optimizer_state["param_groups"]
    assert [g["params"] for g in groups] == [[names.index("observation.raw_variance")],
                                             [position[i] for i in range(1, len(names))]]
    assert groups[0]["lr_factor"] == VARIANCE_LR_FACTOR
    # the same moments for the same parameters: training continues identically
    a = copy.deepcopy(est).partial_fit(X)
    b = loaded.partial_fit(X)
    assert_array_equal(a.transform(X), b.transform(X))
    assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_format_4_state_loads_with_public_resolved_values(stop_after):
    """Format 4 kept the budget privately, not the patience, and the scoring noise's
    seed beside the model's. Format 5 derives all three: the same model, the same
    scores, and the public attributes a format 5 fit has (the patience by the rule
    of their time)."""
    X = np.random.RandomState(0).randn(150, 5)  # 135 training rows: 2 steps an epoch
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs="auto", random_state=0)
    est.set_params(callbacks=[stop_after(3)]).fit(X).set_params(callbacks=None)
    state = est.__getstate__()
    state["_skvae_format"] = 4
    state["_budget_epochs"] = state.pop("max_epochs_")
    state.pop("n_iter_no_change_")
    state["_noise_seed"] = skvae._training.RandomStreams(est._base_seed).seed_of("scoring")
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    assert not hasattr(loaded, "_noise_seed") and not hasattr(loaded, "_budget_epochs")
    assert loaded.max_epochs_ == est.max_epochs_ == skvae._training.AUTO_STEPS // 2
    # the patience those files were trained with: 500 steps, no upper bound in epochs
    assert loaded.n_iter_no_change_ == skvae._training.AUTO_PATIENCE_STEPS // 2
    assert_array_equal(loaded.score_samples(X, n_importance_samples=3),
                       est.score_samples(X, n_importance_samples=3))


def test_format_6_network_with_holes_loads_as_the_encoder_it_had():
    """Format 7 adds the experts' loading to the encoder of data with holes. A format
    6 network loads with it at zero (its diagonal experts), encodes as it did, and
    keeps training with the moments it had."""
    X = np.random.RandomState(0).randn(120, 5)
    X[np.random.RandomState(1).rand(*X.shape) < 0.2] = np.nan
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs=3, random_state=0,
                         device="cpu").fit(X)
    assert est.module_.missing_inputs
    names = [name for name, _ in est.module_.named_parameters()]
    assert names[-1] == "encoder_loading.weight"
    with torch.no_grad():  # the network a format 6 file holds
        est.module_.encoder_loading.weight.zero_()
    state = est.__getstate__()
    state["_skvae_format"] = 6
    del state["module_"]["state_dict"]["encoder_loading.weight"]
    last = len(names) - 1
    saved = state["_optimizer_state"]
    saved["state"].pop(last)
    saved["param_groups"][-1]["params"].remove(last)
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    assert_array_equal(loaded.module_.encoder_loading.weight.detach().numpy(), 0.0)
    assert_array_equal(loaded.transform(X), est.transform(X))
    assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert loaded._optimizer_state["param_groups"][-1]["params"][-1] == last
    loaded.partial_fit(X)
    assert loaded.n_epochs_ == est.n_epochs_ + 1
    assert np.isfinite(loaded.score_samples(X)).all()
    # a loading of zero has no gradient: the network keeps its diagonal experts
    assert_array_equal(loaded.module_.encoder_loading.weight.detach().numpy(), 0.0)


def test_format_7_state_loads_counting_every_improvement():
    """Format 8 adds ``tol``. A model saved before it was trained with every
    improvement of the held-out loss resetting the patience, and loads with
    ``tol=0.0``: the rule its warm-started fits keep."""
    X = np.random.RandomState(0).randn(120, 5)
    est = VAETransformer(2, hidden_layer_sizes=(8,), max_epochs=3, random_state=0).fit(X)
    assert est.tol_ == skvae._training.AUTO_TOL
    state = est.__getstate__()
    state["_skvae_format"] = 7
    state.pop("tol"), state.pop("tol_")
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    assert loaded.get_params()["tol"] == 0.0 and loaded.tol_ == 0.0
    assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    loaded.set_params(warm_start=True).fit(X)
    assert loaded.tol_ == 0.0 and loaded.n_epochs_ > est.n_epochs_
    # an unfitted estimator of format 7 gets the parameter alone
    state = VAETransformer().__getstate__()
    state["_skvae_format"] = 7
    state.pop("tol")
    unfitted = VAETransformer.__new__(VAETransformer)
    unfitted.__setstate__(state)
    assert unfitted.tol == 0.0 and not hasattr(unfitted, "tol_")


if __name__ == "__main__":
    target = DATA / "vae_format_1.skops"
    if target.exists():
        raise SystemExit(f"{target} exists: the file of an old format is never rewritten.")
    DATA.mkdir(exist_ok=True)
    write_format_1(target)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
