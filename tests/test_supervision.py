"""Tests of supervised and semi-supervised training (``target_weight``, issue 39)."""

import io
import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from skvae import VAETransformer
from skvae._data import validation_split
from skvae._module import TargetHead
from skvae._target import check_target

SMALL = dict(hidden_layer_sizes=(16,), max_epochs=5, random_state=0, device="cpu")


def easy_classes(n=300, seed=0):
    """Two classes told apart by a low-variance direction of X only.

    The unsupervised 1-D code follows the high-variance directions, which know
    nothing of the class; the supervised one must find the class's direction.
    """
    rs = np.random.RandomState(seed)
    y = rs.randint(0, 2, n)
    X = rs.randn(n, 6) * np.array([5, 4, 3, 0.3, 0.3, 0.3])
    X[:, 3] += 0.6 * (2 * y - 1)
    return X, y


def easy_target(n=300, seed=0):
    """A continuous target in a low-variance direction of X."""
    rs = np.random.RandomState(seed)
    t = rs.randn(n)
    X = rs.randn(n, 6) * np.array([5, 4, 3, 0.3, 0.3, 0.3])
    X[:, 3] += 0.5 * t
    return X, 10 + 3 * t


def _same_fit(a, b, X):
    assert_array_equal(a.transform(X), b.transform(X))
    assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert_array_equal(a.history_[:, "train_loss"], b.history_[:, "train_loss"])


# ---------------------------------------------------------------- target_weight=0

def test_target_weight_zero_ignores_y(digits):
    X, y = digits
    plain = VAETransformer(2, **SMALL).fit(X)
    with_y = VAETransformer(2, **SMALL).fit(X, y)
    _same_fit(plain, with_y, X)
    # y is not even looked at: another length, another type
    VAETransformer(2, **SMALL).fit(X, ["a"] * 3)
    assert with_y.target_type_ is None and not hasattr(with_y, "classes_")
    assert not hasattr(with_y.module_, "target_head")
    pf = VAETransformer(2, **SMALL).partial_fit(X, y).partial_fit(X, y)
    pf_plain = VAETransformer(2, **SMALL).partial_fit(X).partial_fit(X)
    _same_fit(pf, pf_plain, X)


def test_target_weight_is_validated(digits):
    X, y = digits
    for bad in (-0.1, 1.5):
        with pytest.raises(InvalidParameterError, match="target_weight"):
            VAETransformer(target_weight=bad).fit(X, y)
    VAETransformer(2, target_weight=1.0, **SMALL).fit(X, y)  # 1 is allowed


# ---------------------------------------------------------------- behaviour

def test_labels_shape_the_codes():
    """The supervised 1-D code separates classes that the unsupervised one does not."""
    X, y = easy_classes()
    X_test, y_test = easy_classes(seed=1)
    params = dict(hidden_layer_sizes=(16,), random_state=0, device="cpu")
    accuracy = {}
    for weight in (0.0, 0.5):
        vae = VAETransformer(1, target_weight=weight, **params).fit(X, y)
        clf = LogisticRegression().fit(vae.transform(X), y)
        accuracy[weight] = clf.score(vae.transform(X_test), y_test)
    assert accuracy[0.0] < 0.7
    assert accuracy[0.5] > 0.9


def test_continuous_target_shapes_the_codes():
    X, t = easy_target()
    X_test, t_test = easy_target(seed=1)
    params = dict(hidden_layer_sizes=(16,), random_state=0, device="cpu")
    r2 = {}
    for weight in (0.0, 0.5):
        vae = VAETransformer(1, target_weight=weight, **params).fit(X, t)
        reg = LinearRegression().fit(vae.transform(X), t)
        r2[weight] = reg.score(vae.transform(X_test), t_test)
    assert r2[0.0] < 0.3
    assert r2[0.5] > 0.6
    assert vae.target_type_ == "continuous" and not hasattr(vae, "classes_")


def test_semi_supervised_class_labels(digits):
    X, y = digits
    y_semi = np.where(np.arange(len(y)) % 5 == 0, y, -1)
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y_semi)
    assert vae.target_type_ == "multiclass"
    classes = np.unique(y_semi[y_semi != -1])  # -1 is no class
    assert_array_equal(vae.classes_, classes)
    assert vae.module_.target_head.linear.out_features == len(classes)
    assert vae.transform(X).shape == (len(X), 2)


def test_semi_supervised_continuous_target_with_nan():
    X, t = easy_target(100)
    t = t.copy()
    t[::3] = np.nan
    vae = VAETransformer(1, target_weight=0.5, **SMALL).fit(X, t)
    assert vae.target_type_ == "continuous"
    assert np.isfinite(vae.score(X))
    # -1 is a value of a continuous target, not a missing label
    target = check_target(np.array([-1.0, 0.5, 2.5, np.nan]), 4, 0.5)
    assert np.isnan(target.values).tolist() == [False, False, False, True]


def test_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, names[y])
    assert_array_equal(vae.classes_, np.sort(names))
    # object arrays may mark unlabelled rows with -1, as integer labels do
    y_obj = names[y].astype(object)
    y_obj[::2] = -1
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y_obj)
    assert sorted(vae.classes_) == sorted(names)


def test_binary_labels_and_column_vector(blobs):
    X, y = blobs
    y = (y == 0).astype(int)
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y.reshape(-1, 1))
    assert vae.target_type_ == "binary"
    assert_array_equal(vae.classes_, [0, 1])


def test_score_and_inference_stay_those_of_x(digits):
    X, y = digits
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y)
    assert vae.score(X, y) == vae.score(X)
    assert vae.score_samples(X).shape == (len(X),)
    assert vae.inverse_transform(vae.transform(X[:4])).shape == (4, X.shape[1])
    assert vae.sample(3).shape == (3, X.shape[1])
    # the code depends on X alone: the same rows encode alike in any company
    assert_allclose(vae.transform(X[:10]), vae.transform(X)[:10], rtol=1e-6, atol=1e-7)
    assert_array_equal(vae.fit_transform(X, y), vae.transform(X))


def test_supervised_fits_are_reproducible_and_leave_global_state(digits):
    X, y = digits
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    a = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y)
    b = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y)
    _same_fit(a, b, X)
    assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_partial_fit_with_labels(digits):
    X, y = digits
    vae = VAETransformer(2, target_weight=0.5, **SMALL)
    vae.partial_fit(X[:100], y[:100])
    vae.partial_fit(X[100:], np.full(100, -1))  # a chunk without labels
    vae.partial_fit(X[100:], y[100:])
    assert vae.n_epochs_ == 3
    assert_array_equal(vae.classes_, np.arange(10))
    with pytest.raises(ValueError, match="does not know"):
        vae.partial_fit(X[:3], [0, 1, 42])


def test_warm_start_keeps_the_label_model(digits):
    X, y = digits
    vae = VAETransformer(2, target_weight=0.5, warm_start=True, **SMALL).fit(X, y)
    head = vae.module_.target_head.linear.weight.detach().clone()
    vae.fit(X, y)
    assert vae.n_epochs_ > 5
    assert not torch.equal(head, vae.module_.target_head.linear.weight)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("y, match", [
    (None, "got no y"),
    (np.full(200, -1), "no labelled row"),
    (np.full(200, np.nan), "no labelled row"),
    (np.zeros(200, dtype=int), "at least two classes"),
    (np.arange(199) % 3, "y has 199 rows, but X has 200"),
    (np.eye(3)[np.arange(200) % 3], "multilabel and multi-output"),
    (np.random.RandomState(0).randn(200, 2), "multi-output"),
])
def test_clear_errors_and_nothing_half_fitted(digits, y, match):
    X, _ = digits
    vae = VAETransformer(2, target_weight=0.5, **SMALL)
    with pytest.raises(ValueError, match=match):
        vae.fit(X, y)
    assert not hasattr(vae, "module_") and not hasattr(vae, "target_type_")
    # a fitted model stays as it was
    fitted = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, digits[1])
    before = fitted.transform(X)
    with pytest.raises(ValueError, match=match):
        fitted.fit(X, y)
    assert_array_equal(fitted.transform(X), before)
    assert fitted.target_type_ == "multiclass"


def test_supervision_cannot_resume_an_unsupervised_model(digits):
    X, y = digits
    vae = VAETransformer(2, **SMALL).partial_fit(X)
    vae.set_params(target_weight=0.5)
    with pytest.raises(ValueError, match="trained without labels"):
        vae.partial_fit(X, y)
    assert vae.target_type_ is None


# ---------------------------------------------------------------- persistence

def test_pickle_round_trip(digits):
    X, y = digits
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, np.array(list("abcdefghij"))[y])
    loaded = pickle.loads(pickle.dumps(vae))
    assert_array_equal(loaded.transform(X), vae.transform(X))
    assert_array_equal(loaded.score_samples(X), vae.score_samples(X))
    assert_array_equal(loaded.classes_, vae.classes_)
    assert loaded.target_type_ == "multiclass"
    assert clone(loaded).get_params() == vae.get_params()
    loaded.partial_fit(X, np.array(list("abcdefghij"))[y])  # keeps training


def test_skops_round_trip(digits):
    sio = pytest.importorskip("skops.io")
    X, y = digits
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y)
    data = sio.dumps(vae)
    assert sio.get_untrusted_types(data=data) == ["skvae._vae.VAETransformer"]
    loaded = sio.loads(data, trusted=["skvae._vae.VAETransformer"])
    assert_array_equal(loaded.transform(X), vae.transform(X))
    assert_array_equal(loaded.classes_, vae.classes_)


def test_format_8_state_loads_as_unsupervised(digits):
    X, _ = digits
    vae = VAETransformer(2, **SMALL).fit(X)
    state = vae.__getstate__()
    state["_skvae_format"] = 8
    for name in ("target_weight", "target_type_", "_target_scale"):
        del state[name]
    del state["module_"]["target"]
    loaded = VAETransformer.__new__(VAETransformer)
    loaded.__setstate__(state)
    assert loaded.get_params()["target_weight"] == 0.0 and loaded.target_type_ is None
    assert_array_equal(loaded.transform(X), vae.transform(X))
    loaded.partial_fit(X)


def test_onnx_export_of_a_supervised_model(digits):
    pytest.importorskip("skl2onnx")
    ort = pytest.importorskip("onnxruntime")
    skvae_onnx = pytest.importorskip("skvae.onnx")
    X, y = digits
    X = X.astype(np.float32)
    vae = VAETransformer(2, target_weight=0.5, **SMALL).fit(X, y)
    import skl2onnx

    model = skl2onnx.to_onnx(vae, X[:1])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    Z = session.run(None, {session.get_inputs()[0].name: X})[0]
    assert_allclose(Z, vae.transform(X), rtol=1e-4, atol=1e-5)
    buffer = io.BytesIO(skvae_onnx.to_onnx_decoder(vae).SerializeToString())
    assert buffer.getbuffer().nbytes > 0


# ---------------------------------------------------------------- the pieces

def test_target_head_log_prob():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    head = TargetHead(3, 4)
    with torch.no_grad():
        head.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0.0, 3.0, float("nan"), 1.0, 2.0])
    log_prob, negative_entropy, labelled = head.log_prob(z, y)
    expected = -torch.nn.functional.cross_entropy(head.linear(z), y.nan_to_num(0).long(),
                                                  reduction="none")
    assert labelled.tolist() == [True, True, False, True, True]
    assert_allclose(log_prob[labelled].detach(), expected[labelled].detach(), rtol=1e-6)
    assert log_prob[2] == 0
    assert (negative_entropy <= 0).all()
    # a continuous target: a Gaussian with one learned variance, from the marginal
    head = TargetHead(3, "continuous").reset_parameters()
    y = torch.tensor([0.0, 1.0, float("nan"), -2.0, 0.5])
    log_prob, negative_entropy, _ = head.log_prob(z, y)
    expected = -0.5 * (np.log(2 * np.pi) + np.nan_to_num(y.numpy()) ** 2)
    assert_allclose(log_prob.detach().numpy()[[0, 1, 3, 4]], expected[[0, 1, 3, 4]],
                    rtol=1e-6)
    assert log_prob[2] == 0 and (negative_entropy == 0).all()


def test_validation_split_holds_out_unlabelled_rows_first():
    first = np.zeros(100, dtype=bool)
    first[::4] = True  # 25 rows without a label
    train, valid = validation_split(100, 0.1, torch.Generator().manual_seed(0), first)
    assert len(valid) == 10 and first[valid.numpy()].all()
    train, valid = validation_split(100, 0.4, torch.Generator().manual_seed(0), first)
    assert first[valid.numpy()].sum() == 25 and not first[train.numpy()].any()
    # without `first`, the split of before
    plain = validation_split(100, 0.1, torch.Generator().manual_seed(0))
    again = validation_split(100, 0.1, torch.Generator().manual_seed(0), None)
    assert torch.equal(plain[1], again[1])


def test_imputer_with_a_supervised_model(digits):
    from skvae import VAEImputer

    X, y = digits
    X = X.copy()
    X[::3, 10] = np.nan
    imputer = VAEImputer(target_weight=0.5, n_components=2, hidden_layer_sizes=(16,),
                         max_epochs=3, random_state=0).fit(X, y)
    assert imputer.estimator_.target_type_ == "multiclass"
    assert not np.isnan(imputer.transform(X)).any()
    with pytest.raises(ValueError, match="got no y"):
        VAEImputer(target_weight=0.5, max_epochs=2).fit(X)


def test_a_float_target_of_whole_numbers_is_continuous():
    """Diabetes' target is whole numbers in a float array: type_of_target calls
    it "multiclass", a regressor reads it as a target (as skvae does now)."""
    rng = np.random.RandomState(0)
    X = rng.randn(60, 4)
    y = np.round(50 + 10 * X[:, 0])  # float64, integral
    vae = VAETransformer(2, target_weight=0.5, hidden_layer_sizes=(8,), max_epochs=2,
                         random_state=0, device="cpu").fit(X, y)
    assert vae.target_type_ == "continuous" and not hasattr(vae, "classes_")
    labels = VAETransformer(2, target_weight=0.5, hidden_layer_sizes=(8,), max_epochs=2,
                            random_state=0, device="cpu").fit(X, (y > 50).astype(int))
    assert labels.target_type_ == "binary"
