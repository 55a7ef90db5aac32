"""ONNX export of a fitted :class:`~skvae.VAETransformer` (extra ``onnx``).

Importing this module registers a converter for ``VAETransformer`` with
`skl2onnx <https://onnx.ai/sklearn-onnx/>`_, so that ``skl2onnx.to_onnx`` converts
a fitted ``VAETransformer`` alone or as a step of a scikit-learn ``Pipeline``,
next to any step that skl2onnx supports (``StandardScaler``, ``LogisticRegression``,
...). The graph computes :meth:`~skvae.VAETransformer.transform`, the posterior
means, with skvae's standardization folded in, in float32 with a dynamic batch
axis; missing entries (NaN) are handled as ``transform`` handles them.
:func:`to_onnx_decoder` exports :meth:`~skvae.VAETransformer.inverse_transform`
as a model of its own.

The graph is written directly from the fitted weights, one ``Gemm`` (matrix
product plus bias) and one activation per layer, not traced through
``torch.onnx.export``: an MLP needs a handful of standard operators, the result
does not depend on torch's exporter (which changes between PyTorch releases and
needs extra packages), and torch is not called at all during the conversion.

Needs ``pip install "skvae[onnx]"`` (skl2onnx, onnx, onnxruntime); importing
:mod:`skvae` itself never imports them.
"""

import math

import numpy as np
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._utils import import_optional
from ._vae import VAETransformer

skl2onnx = import_optional("skl2onnx", extra="onnx", caller="skvae.onnx")
onnx = import_optional("onnx", extra="onnx", caller="skvae.onnx")
from onnx import TensorProto, helper  # noqa: E402  (after the check above)
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

__all__ = ["to_onnx_decoder"]

#: Opsets from which ONNX has a ``Gelu`` operator; below, Gelu is written with ``Erf``.
_GELU_OPSET = 20

#: The skl2onnx alias of the converter.
ALIAS = "SkvaeVAETransformer"


# ------------------------------------------------------------ graph writing

class _HelperWriter:
    """Collects nodes and float32 initializers for :func:`onnx.helper.make_graph`."""

    def __init__(self, opset):
        self.opset, self.nodes, self.initializers, self._count = opset, [], [], 0

    def _name(self, seed):
        self._count += 1
        return f"{seed}_{self._count}"

    def constant(self, seed, array):
        name = self._name(seed)
        array = np.asarray(array, dtype=np.float32)
        self.initializers.append(helper.make_tensor(
            name, TensorProto.FLOAT, array.shape, array.ravel().tolist()))
        return name

    def shape(self, seed, values):
        """An int64 initializer (a shape for ``Reshape``)."""
        name = self._name(seed)
        self.initializers.append(helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                    [int(v) for v in values]))
        return name

    def node(self, op_type, inputs, output=None, **attrs):
        output = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output],
                                           name=self._name(op_type), **attrs))
        return output


class _ContainerWriter:
    """The same interface on skl2onnx's scope and container."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container
        self.opset = container.target_opset

    def constant(self, seed, array):
        name = self.scope.get_unique_variable_name(seed)
        array = np.asarray(array, dtype=np.float32)
        self.container.add_initializer(name, TensorProto.FLOAT, list(array.shape),
                                       array.ravel().tolist())
        return name

    def shape(self, seed, values):
        """An int64 initializer (a shape for ``Reshape``)."""
        name = self.scope.get_unique_variable_name(seed)
        self.container.add_initializer(name, TensorProto.INT64, [len(values)],
                                       [int(v) for v in values])
        return name

    def node(self, op_type, inputs, output=None, **attrs):
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(op_type, inputs, [output],
                                name=self.scope.get_unique_operator_name(op_type), **attrs)
        return output


def _weights(layer):
    """``(weight, bias)`` of a ``nn.Linear`` as float32 arrays (bias None without one)."""
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy().astype(np.float32)
    return layer.weight.detach().cpu().numpy().astype(np.float32), bias


def _write_activation(w, x, activation):
    if activation == "identity":
        return x
    if activation == "gelu":  # torch's nn.GELU(): the exact form, with erf
        if w.opset >= _GELU_OPSET:
            return w.node("Gelu", [x])
        scaled = w.node("Mul", [x, w.constant("inv_sqrt2", 1 / math.sqrt(2))])
        one_plus = w.node("Add", [w.node("Erf", [scaled]), w.constant("one", 1.0)])
        return w.node("Mul", [w.node("Mul", [x, one_plus]), w.constant("half", 0.5)])
    if activation == "elu":
        return w.node("Elu", [x], alpha=1.0)
    op = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid"}[activation]
    return w.node(op, [x])


def _write_mlp(w, x, mlp, activation):
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            weight, bias = _weights(layer)
            x = w.node("Gemm", [x, w.constant("W", weight), w.constant("B", bias)],
                       transB=1)
            x = _write_activation(w, x, activation)
    return x


def _write_encoder(w, x, estimator, output):
    """Posterior means of x: what ``estimator.transform`` computes."""
    module = estimator.module_
    if module.observation.standardize:  # (x - mean_) / scale_, as skvae does
        x = w.node("Sub", [x, w.constant("mean", estimator.mean_)])
        x = w.node("Div", [x, w.constant("scale", estimator.scale_)])
    # missing entries (NaN): 0 in their place, and the mask of the observed
    # ones (skvae._module.split_missing)
    missing = w.node("IsNaN", [x])
    x = w.node("Where", [missing, w.constant("zero", 0.0), x])
    observed = w.node("Cast", [w.node("Not", [missing])], to=TensorProto.FLOAT)
    # the encoder sees each feature clipped to its training range (finite once fitted)
    x = w.node("Max", [x, w.constant("input_low", module.input_low.cpu().numpy())])
    x = w.node("Min", [x, w.constant("input_high", module.input_high.cpu().numpy())])
    inputs = w.node("Concat", [x, observed], axis=1) if module.missing_inputs else x
    h = _write_mlp(w, inputs, module.encoder, module.activation)
    weight, bias = _weights(module.encoder_head)
    k = module.n_components  # the head gives (mu, logvar): keep the mu rows only
    h = w.node("Gemm", [h, w.constant("W_mu", weight[:k]), w.constant("B_mu", bias[:k])],
               transB=1)
    loading = _weights(module.encoder_linear)[0].T
    if module.missing_inputs:  # the product of experts of the observed features
        offset = module.encoder_offset.detach().cpu().numpy()
        centred = w.node("Mul", [w.node("Sub", [x, w.constant("offset", offset)]), observed])
        natural = w.node("MatMul", [centred, w.constant("W_linear", loading)])
        linear = _write_expert_mean(w, module, observed, natural)
    else:
        linear = w.node("MatMul", [x, w.constant("W_linear", loading)])
    mu = w.node("Add", [h, linear])
    # a row with nothing observed has the prior as its posterior: code 0
    counts = w.node("MatMul", [observed, w.constant(
        "ones", np.ones((module.n_features, 1), dtype=np.float32))])
    empty = w.node("Less", [counts, w.constant("half", 0.5)])
    return w.node("Where", [empty, w.constant("zero", 0.0), mu], output)


def _write_expert_mean(w, module, observed, natural):
    """``Lambda^-1 b``: the mean of the experts' product (``VAEModule.expert_precision``).

    ONNX has no linear solve, so the Cholesky factorization of each row's k x k
    precision and the two triangular solves are written out, one column (one
    unknown) at a time, on (n, k, k) and (n, k, 1) tensors with one-hot
    constants: about 22 k nodes, the arithmetic of ``torch.cholesky_solve``.
    """
    k, d = module.n_components, module.n_features
    U = module.encoder_loading.weight.detach().cpu().numpy().astype(np.float32)  # (k, d)
    experts = module.encoder_precision.detach().exp().cpu().numpy()              # (k, d)
    eye = np.eye(k, dtype=np.float32)
    # Lambda = (U * o) U' + diag(1 + o lambda'), shape (n, k, k)
    mask = w.node("Reshape", [observed, w.shape("shape", [-1, 1, d])])
    coupled = w.node("MatMul", [w.node("Mul", [mask, w.constant("loading", U)]),
                                w.constant("loading_t", U.T)])
    own = w.node("Add", [w.constant("one", 1.0), w.node(
        "MatMul", [observed, w.constant("experts", experts.T.astype(np.float32))])])
    own = w.node("Reshape", [own, w.shape("shape", [-1, k, 1])])
    precision = w.node("Add", [coupled, w.node("Mul", [own, w.constant("eye", eye)])])

    zero = w.constant("zero", 0.0)
    columns = [w.constant("e", eye[:, j:j + 1]) for j in range(k)]   # (k, 1) each
    rows = [w.constant("e_t", eye[j:j + 1]) for j in range(k)]       # (1, k) each

    # Cholesky: L (n, k, k) gains column j; below[j] = L[j, :j] (row j before its
    # pivot, (n, 1, k)); pivots[j] = L[j, j], (n, 1, 1)
    factor, below, pivots = w.node("Mul", [precision, zero]), [], []
    for j in range(k):
        c = w.node("MatMul", [precision, columns[j]])               # (n, k, 1)
        below.append(w.node("MatMul", [rows[j], factor]))
        if j:
            above = w.node("Transpose", [below[j]], perm=[0, 2, 1])
            c = w.node("Sub", [c, w.node("MatMul", [factor, above])])
        pivot = w.node("Sqrt", [w.node("MatMul", [rows[j], c])])
        lower = w.constant("tril", (np.arange(k) >= j).astype(np.float32)[:, None])
        c = w.node("Mul", [w.node("Div", [c, pivot]), lower])
        factor = w.node("Add", [factor, w.node("MatMul", [c, rows[j]])])
        pivots.append(pivot)
    # L y = b (y's entries from j on are still 0), then L' x = y, each (n, k, 1)
    b = w.node("Reshape", [natural, w.shape("shape", [-1, k, 1])])
    y = w.node("Mul", [b, zero])
    for j in range(k):
        value = w.node("Sub", [w.node("MatMul", [rows[j], b]),
                               w.node("MatMul", [below[j], y])])
        y = w.node("Add", [y, w.node("MatMul", [columns[j],
                                                w.node("Div", [value, pivots[j]])])])
    x = w.node("Mul", [b, zero])
    factor_t = w.node("Transpose", [factor], perm=[0, 2, 1])
    for j in reversed(range(k)):
        known = w.node("MatMul", [w.node("MatMul", [rows[j], factor_t]), x])
        value = w.node("Sub", [w.node("MatMul", [rows[j], y]), known])
        x = w.node("Add", [x, w.node("MatMul", [columns[j],
                                                w.node("Div", [value, pivots[j]])])])
    return w.node("Reshape", [x, w.shape("shape", [-1, k])])


def _write_decoder(w, z, estimator, output):
    """Decoder means of z in the original units: ``estimator.inverse_transform``.

    As ``VAEModule.decoder_mean``: the networks' output, the constant features
    of ``VAEModule.constant_features`` set to their constants, then the
    likelihood's mean, which the likelihood writes itself (``write_onnx_mean``).
    """
    module = estimator.module_
    x = _write_mlp(w, z, module.decoder, module.activation)
    weight, bias = _weights(module.decoder_head)
    x = w.node("Gemm", [x, w.constant("W", weight), w.constant("B", bias)], transB=1)
    linear = w.node("MatMul", [z, w.constant("W_linear", _weights(module.decoder_linear)[0].T)])
    x = w.node("Add", [x, linear])
    pinned = module.constant_features()  # the rule of VAEModule.decode
    if pinned is not None:
        constant, value = (t.cpu().numpy() for t in pinned)
        if constant.any():
            x = w.node("Mul", [x, w.constant("varies", ~constant)])
            x = w.node("Add", [x, w.constant("constant", np.where(constant, value, 0.0))])
    observation = module.observation
    if not observation.standardize:
        return observation.write_onnx_mean(w, x, output)
    x = observation.write_onnx_mean(w, x)
    x = w.node("Mul", [x, w.constant("scale", estimator.scale_)])
    return w.node("Add", [x, w.constant("mean", estimator.mean_)], output)


# ------------------------------------------------------- skl2onnx converter

def _check_exportable(estimator):
    """Refuse a model of a mixed table: its inputs are text and categories."""
    if getattr(estimator, "_columns", None) is not None:
        kinds = sorted(set(estimator._columns["kinds"]))
        raise ValueError(
            "skvae's ONNX export covers models of numeric arrays; this VAETransformer "
            f"was fitted on a table with {', '.join(kinds)} columns (likelihoods_), whose "
            "categorical inputs the export does not encode. Use the estimator itself, or "
            "fit it on numeric (e.g. one-hot encoded) columns to export it.")


def _check_input(estimator, input_type):
    if not isinstance(input_type, FloatTensorType):
        raise TypeError(
            "The ONNX converter of VAETransformer supports float32 input only, got "
            f"{type(input_type).__name__}. Convert with float32 sample data, e.g. "
            "skl2onnx.to_onnx(model, X[:1].astype(np.float32))."
        )
    shape = input_type.shape
    n_features = shape[1] if len(shape) == 2 else None
    if isinstance(n_features, int) and n_features != estimator.n_features_in_:
        raise ValueError(
            f"The ONNX input has {n_features} features, but VAETransformer was fitted "
            f"with n_features_in_={estimator.n_features_in_}. Convert with sample data "
            "of the training width."
        )


def _calculate_shape(operator):
    """skl2onnx shape calculator: (N, n_features) float32 -> (N, n_components)."""
    estimator = operator.raw_operator
    check_is_fitted(estimator)
    _check_exportable(estimator)
    if len(operator.inputs) != 1 or len(operator.outputs) != 1:
        raise RuntimeError("VAETransformer's ONNX operator takes one input and one output.")
    _check_input(estimator, operator.inputs[0].type)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, estimator.module_.n_components])


def _convert(scope, operator, container):
    """skl2onnx converter: the encoder's posterior means as ONNX nodes."""
    _write_encoder(_ContainerWriter(scope, container), operator.inputs[0].full_name,
                   operator.raw_operator, operator.outputs[0].full_name)


skl2onnx.update_registered_converter(VAETransformer, ALIAS, _calculate_shape, _convert)


# ------------------------------------------------------------- the decoder

def _default_opset():
    return skl2onnx.get_latest_tested_opset_version()


def to_onnx_decoder(estimator, *, target_opset=None):
    """Export the decoder of a fitted VAE (its ``inverse_transform``) to ONNX.

    The model takes latent codes ``Z`` (float32, shape ``(n, n_components)``,
    any ``n``) and returns ``X``, the means of p(x | z) in the units of the
    training data (float32, shape ``(n, n_features_in_)``): the same values as
    ``estimator.inverse_transform(Z)`` up to float32 rounding. With
    ``Z = numpy.random.default_rng(seed).standard_normal((n, n_components))``
    it generates new data, as :meth:`~skvae.VAETransformer.sample` does.

    Parameters
    ----------
    estimator : VAETransformer
        A fitted estimator.

    target_opset : int, default=None
        The ONNX opset of the model; None takes the latest one that skl2onnx
        has tested. From opset 20 on a ``"gelu"`` activation is one ``Gelu``
        node, below it is written with ``Erf``.

    Returns
    -------
    model : onnx.ModelProto
        A model with input ``"Z"`` and output ``"X"``; save it with
        ``onnx.save(model, path)`` and run it with ``onnxruntime``.

    See Also
    --------
    skl2onnx.to_onnx : Converts ``transform`` (the encoder), alone or in a
        pipeline, once :mod:`skvae.onnx` is imported.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_digits
    >>> from skvae import VAETransformer
    >>> from skvae.onnx import to_onnx_decoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = VAETransformer(n_components=2, max_epochs=2, random_state=0).fit(X)
    >>> session = ort.InferenceSession(to_onnx_decoder(vae).SerializeToString())
    >>> Z = np.zeros((3, 2), dtype=np.float32)
    >>> session.run(None, {"Z": Z})[0].shape
    (3, 64)
    """
    if not isinstance(estimator, VAETransformer):
        raise TypeError(
            f"to_onnx_decoder exports a VAETransformer, got {type(estimator).__name__}. "
            "For a pipeline, pass its VAETransformer step, e.g. pipeline[-1] or "
            "pipeline.named_steps['vae']."
        )
    check_is_fitted(estimator)
    _check_exportable(estimator)
    opset = _default_opset() if target_opset is None else int(target_opset)
    w = _HelperWriter(opset)
    module = estimator.module_
    _write_decoder(w, "Z", estimator, "X")
    graph = helper.make_graph(
        w.nodes, "skvae_VAETransformer_decoder",
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [None, module.n_components])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, module.n_features])],
        initializer=w.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="skvae",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model
