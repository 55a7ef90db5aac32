"""Tests of the ONNX export (skvae/onnx.py): skl2onnx converter and decoder model."""

import copy
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import torch

from skvae import VAETransformer
from skvae._likelihoods import LIKELIHOODS as LIKELIHOOD_CLASSES
from skvae._module import ACTIVATIONS

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
skvae_onnx = pytest.importorskip("skvae.onnx")

# device="cpu": the tests read the module's tensors as numpy (on a GPU machine too)
SMALL = dict(hidden_layer_sizes=(16,), max_epochs=3, early_stopping=False, random_state=0,
             device="cpu")
LIKELIHOODS = ["gaussian", "bernoulli"]
# float32 arithmetic in a different order (ONNX Runtime's kernels vs PyTorch's)
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def X1000():
    """1,000 digits images as float32 in [0, 16]."""
    return load_digits(return_X_y=True)[0][:1000].astype(np.float32)


def _data(likelihood, X):
    return X / np.float32(16) if likelihood == "bernoulli" else X


def _run(model, X):
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.fixture(scope="module")
def fitted(X1000):
    cache = {}

    def get(activation, likelihood):
        if (activation, likelihood) not in cache:
            cache[activation, likelihood] = VAETransformer(
                3, activation=activation, likelihood=likelihood, **SMALL
            ).fit(_data(likelihood, X1000[:300]))
        return cache[activation, likelihood]
    return get


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("target_opset", [None, 18])  # 18: gelu written with Erf
def test_transform_and_decoder_match_skvae(fitted, X1000, activation, likelihood,
                                           target_opset):
    est = fitted(activation, likelihood)
    X = _data(likelihood, X1000)
    model = skl2onnx.to_onnx(est, X[:1], target_opset=target_opset)
    decoder = skvae_onnx.to_onnx_decoder(est, target_opset=target_opset)
    for n in (1, 1000):  # one model, any batch size
        Z = _run(model, X[:n])[0]
        assert Z.shape == (n, 3) and Z.dtype == np.float32
        assert_allclose(Z, est.transform(X[:n]), **TOL)
        X_back = _run(decoder, Z)[0]
        assert X_back.shape == (n, 64) and X_back.dtype == np.float32
        assert_allclose(X_back, est.inverse_transform(Z), **TOL)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("fitted_with_holes", [False, True])
def test_missing_values_are_encoded_as_transform_does(fitted, X1000, likelihood,
                                                      fitted_with_holes):
    X = _data(likelihood, X1000).copy()
    rng = np.random.RandomState(0)
    X[rng.rand(*X.shape) < 0.3] = np.nan
    X[5] = np.nan  # a row with nothing observed: code 0
    if fitted_with_holes:
        est = VAETransformer(3, likelihood=likelihood, **SMALL).fit(X[:300])
        assert est.module_.missing_inputs
        # the Gaussian starts from a linear model: full precision matrices to solve
        loading = est.module_.encoder_loading.weight.detach().numpy()
        assert (np.abs(loading).max() > 0) == (likelihood == "gaussian")
    else:
        est = fitted("relu", likelihood)
    model = skl2onnx.to_onnx(est, X1000[:1])
    Z = _run(model, X)[0]
    assert_allclose(Z, est.transform(X), **TOL)
    assert_array_equal(Z[5], 0.0)


@pytest.mark.parametrize("target_opset, op", [(None, "Gelu"), (18, "Erf")])
def test_gelu_uses_the_operator_of_the_opset(fitted, X1000, target_opset, op):
    model = skl2onnx.to_onnx(fitted("gelu", "gaussian"), X1000[:1],
                             target_opset=target_opset)
    ops = {node.op_type for node in model.graph.node}
    assert op in ops and ({"Gelu", "Erf"} - {op}).isdisjoint(ops)


def test_graph_has_a_dynamic_batch_axis(fitted, X1000):
    model = skl2onnx.to_onnx(fitted("relu", "gaussian"), X1000[:1])
    (inp,), (out,) = model.graph.input, model.graph.output
    for value in (inp, out):
        assert not value.type.tensor_type.shape.dim[0].HasField("dim_value")
    assert inp.type.tensor_type.shape.dim[1].dim_value == 64
    assert out.type.tensor_type.shape.dim[1].dim_value == 3


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_pipeline_with_scaler_and_classifier(X1000, likelihood):
    X = _data(likelihood, X1000)
    y = load_digits(return_X_y=True)[1][:1000]
    pipe = make_pipeline(StandardScaler(),
                         VAETransformer(4, likelihood="gaussian", **SMALL),
                         LogisticRegression(max_iter=300))
    if likelihood == "bernoulli":  # no scaler: the Bernoulli VAE needs X in [0, 1]
        pipe = make_pipeline(VAETransformer(4, likelihood="bernoulli", **SMALL),
                             LogisticRegression(max_iter=300))
    pipe.fit(X, y)
    model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    for n in (1, 1000):
        label, proba = _run(model, X[:n])
        assert_allclose(proba, pipe.predict_proba(X[:n]), **TOL)
        # labels agree except where two classes tie within float32 rounding
        top2 = np.sort(pipe.predict_proba(X[:n]), axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4
        assert_array_equal(label[clear], pipe.predict(X[:n])[clear])


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOOD_CLASSES))
def test_each_likelihood_writes_its_own_onnx_mean(likelihood):
    from onnx import TensorProto, helper

    observation = LIKELIHOOD_CLASSES[likelihood](5)
    w = skvae_onnx._HelperWriter(18)
    assert observation.write_onnx_mean(w, "out", "mean") == "mean"
    graph = helper.make_graph(
        w.nodes, "mean", [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 5])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [None, 5])],
        initializer=w.initializers)
    opsets = [helper.make_opsetid("", 18)]
    # the oldest IR version for the opset, as skvae.onnx writes: an onnx newer
    # than the installed ONNX Runtime would otherwise stamp one it cannot read
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    out = 4 * np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    expected = observation.mean(torch.from_numpy(out)).numpy()
    assert_allclose(_run(model, out)[0], expected, **TOL)


def _latent(n=50, spread=3.0):
    """Latent codes, also far out in the prior's tails."""
    return (spread * np.random.default_rng(0).standard_normal((n, 3))).astype(np.float32)


def test_bernoulli_decoder_is_the_sigmoid_of_the_logits(fitted):
    est = fitted("relu", "bernoulli")
    assert not est.module_.observation.standardize
    decoder = skvae_onnx.to_onnx_decoder(est)
    assert decoder.graph.node[-1].op_type == "Sigmoid"  # no units to restore after it
    encoder_ops = {node.op_type for node in skl2onnx.to_onnx(est, np.zeros((1, 64), np.float32))
                   .graph.node}
    assert encoder_ops.isdisjoint({"Sub", "Div"})  # the data are modelled as given
    Z = _latent()
    with torch.no_grad():
        logits = est.module_.decode(torch.from_numpy(Z)).numpy()
    assert_allclose(_run(decoder, Z)[0], 1 / (1 + np.exp(-logits)), **TOL)


def _moved_off_the_constants(est):
    """A copy of ``est`` whose networks no longer give the constant features' constants."""
    est = copy.deepcopy(est)
    constant = est.module_.constant_features()[0]
    with torch.no_grad():  # training leaves them at the constant: no gradient reaches them
        est.module_.decoder_linear.weight[constant] = 1.0
        est.module_.decoder_head.bias[constant] += 0.5
    return est


def test_gaussian_decoder_restores_the_units_and_pins_constant_features(fitted, X1000):
    est = _moved_off_the_constants(fitted("relu", "gaussian"))
    X = X1000[:300]  # the training rows
    constant = est.module_.constant_features()[0].numpy()
    assert_array_equal(constant, X.min(axis=0) == X.max(axis=0))
    assert constant.sum() >= 2  # digits has blank pixels
    Z = _latent(spread=10.0)
    with torch.no_grad():
        means = est.module_.decode(torch.from_numpy(Z)).numpy()
    X_back = _run(skvae_onnx.to_onnx_decoder(est), Z)[0]
    assert_allclose(X_back, means * est.scale_ + est.mean_, rtol=1e-4, atol=1e-4)
    assert_allclose(X_back[:, constant], np.broadcast_to(X[0, constant], (50, constant.sum())),
                    atol=1e-5)


def test_decoder_follows_a_likelihood_that_decodes_constant_features_freely(fitted, X1000):
    est = _moved_off_the_constants(fitted("relu", "gaussian"))
    est.module_.observation.pins_constant_features = False
    assert est.module_.constant_features() is None
    X = X1000[:300]
    constant = X.min(axis=0) == X.max(axis=0)
    Z = _latent()
    X_back = _run(skvae_onnx.to_onnx_decoder(est), Z)[0]
    assert_allclose(X_back, est.inverse_transform(Z), **TOL)
    assert (X_back[:, constant].std(axis=0) > 0.1).all()  # no longer pinned


def test_float64_input_is_refused_with_advice(fitted, X1000):
    with pytest.raises(TypeError, match=r"float32 input only.*astype\(np\.float32\)"):
        skl2onnx.to_onnx(fitted("relu", "gaussian"), X1000[:1].astype(np.float64))


def test_wrong_width_is_refused(fitted, X1000):
    from skl2onnx.common.data_types import FloatTensorType

    with pytest.raises(ValueError, match="10 features.*n_features_in_=64"):
        skl2onnx.convert_sklearn(fitted("relu", "gaussian"),
                                 initial_types=[("X", FloatTensorType([None, 10]))])


def test_unfitted_estimator_is_refused(X1000):
    with pytest.raises(NotFittedError):
        skl2onnx.to_onnx(VAETransformer(2), X1000[:1])
    with pytest.raises(NotFittedError):
        skvae_onnx.to_onnx_decoder(VAETransformer(2))


def test_decoder_wants_the_vae_step(fitted):
    pipe = make_pipeline(StandardScaler(), fitted("relu", "gaussian"))
    with pytest.raises(TypeError, match=r"pass its VAETransformer step"):
        skvae_onnx.to_onnx_decoder(pipe)


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_importing_skvae_imports_no_onnx_package():
    result = _python("import sys, skvae; skvae.VAETransformer(); "
                     "print(sorted({'skl2onnx', 'onnx', 'onnxruntime'} & set(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_import_without_the_extra_names_the_pip_command():
    result = _python("import sys; sys.modules['skl2onnx'] = None; import skvae.onnx")
    assert result.returncode != 0
    assert 'pip install "skvae[onnx]"' in result.stderr
