"""The saved state of a fitted estimator: NumPy arrays and builtins only.

``VAETransformer.__getstate__`` passes its attributes through :func:`export_state`
and ``__setstate__`` through :func:`import_state`. On the way out, every torch or
skorch object becomes data that pickle and ``skops.io`` store without running code
on load: the network becomes its architecture (builtins) and ``state_dict()`` (NumPy
arrays), tensors nested in dicts, lists and tuples (the optimizer state) become
NumPy arrays, and skorch's ``History`` its list of dicts as one JSON string. The
state records which attributes were converted, how, and in which format, so that
loading rebuilds exactly those objects, whatever other attributes the estimator has.

Formats
-------
0
    No ``_skvae_format`` key: pickles written before formats existed, holding the
    torch objects themselves. Loaded as they are.
1
    The conversion above, with ``_skvae_version`` and ``_skvae_format``.
2
    As 1; the network adds its likelihood's options, linear paths and the
    Gaussian's outlier variances (skvae 0.2). A format 1 network loads as the
    model it was: linear paths at zero, the plain Gaussian with its variance
    floor of 1e-3, and an optimizer state that gives the new parameters a
    fresh start.
3
    As 2; the Gaussian likelihood adds its per-feature variance floor (the
    resolution of each feature). A format 2 or 1 network loads with the floor
    it had: its ``min_variance`` for every feature.
4
    As 3; the optimizer state holds the Gaussian variances in a group of their
    own, in front of the other parameters (they learn at
    ``VARIANCE_LR_FACTOR`` times the learning rate). The one group of a format
    3 or older state is split in two on load, with Adam's moments kept.
5
    As 4; the resolved budget and patience are the public ``max_epochs_`` and
    ``n_iter_no_change_``, and the scoring noise's seed is derived from the
    model's seed (``_training.RandomStreams``). A format 4 or older state loads
    with ``_budget_epochs`` renamed, the patience resolved from its parameters
    and the batches of its last epoch, and its ``_noise_seed`` dropped (it was
    always the derived one).
6
    As 5; the network records ``missing_inputs`` (an encoder that also sees
    the mask of observed entries, for models fitted on data with missing
    values). A format 5 or older network loads without it.
7
    As 6; the encoder of a network with ``missing_inputs`` adds
    ``encoder_loading`` (the experts' full precision matrices), its last
    parameter. A format 6 network loads with it at zero, which is the encoder
    it had, and Adam starts it afresh.
8
    As 7; the parameter ``tol`` and its resolved ``tol_`` (the improvement
    of the held-out loss that resets early stopping's patience). A format 7
    or older model loads with ``tol=0.0``, the rule it was trained with.
9
    As 8; the parameter ``target_weight``, the fitted ``target_type_`` (and
    ``classes_`` for class labels), and the network's ``target`` (its model
    of the label given the code, ``target_head``, the last child). A format 8
    or older model loads as one fitted without labels: ``target_weight=0.0``,
    ``target_type_=None``. Also the column layout of a mixed table
    (``_columns``, builtins; the network's likelihood ``"mixed"`` with its
    groups in ``likelihood_options``) and the fitted ``likelihoods_``. A format
    8 or older model loads with one likelihood, its ``likelihood``, for every
    column.
"""

import math
import json

import numpy as np
import torch
from skorch.history import History

from ._likelihoods import MIN_VARIANCE
from ._module import VAEModule, empty_on_cpu
from ._training import resolve_max_epochs, resolve_n_iter_no_change, set_learning_rates

#: The format this skvae writes; it reads formats 0 to FORMAT.
FORMAT = 9

#: Parameters that format 2 added, and their values for an older model.
_FORMAT_2_PARAMS = {"init": "random", "n_threads": "auto"}

#: New names of the parameters of a format 1 network.
_FORMAT_1_NAMES = {"raw_variance": "observation.raw_variance"}
#: The Gaussian likelihood of format 1: variance floor 1e-3, no outlier component.
_FORMAT_1_GAUSSIAN = {"min_variance": 1e-3, "outlier_weight": 0.0}

#: Keys added to the state (removed again on load).
VERSION_KEY, FORMAT_KEY, CONVERTED_KEY = "_skvae_version", "_skvae_format", "_skvae_converted"


def export_state(state, version):
    """Return a copy of the attribute dict ``state`` without torch or skorch objects.

    Parameters
    ----------
    state : dict
        The estimator's attributes. Not modified.
    version : str
        The skvae version to record.

    Returns
    -------
    state : dict
        Builtins and NumPy arrays (plus any non-torch objects ``state`` held),
        with :data:`VERSION_KEY`, :data:`FORMAT_KEY` and :data:`CONVERTED_KEY`.
    """
    out, converted = {}, {}
    for name, value in state.items():
        if isinstance(value, torch.nn.Module):
            out[name], converted[name] = _export_module(name, value), "module"
        elif isinstance(value, History):
            out[name], converted[name] = _export_history(value), "history"
        elif _holds_tensors(value):
            out[name], converted[name] = _tensors_to_numpy(value), "tensors"
        else:
            out[name] = value
    out[VERSION_KEY], out[FORMAT_KEY], out[CONVERTED_KEY] = version, FORMAT, converted
    return out


def import_state(state, version):
    """Rebuild the attribute dict written by :func:`export_state` (or a format 0 one).

    Parameters
    ----------
    state : dict
        A saved state. Not modified.
    version : str
        The running skvae version, for the error message.

    Returns
    -------
    state : dict
        The attributes, with the network and tensors on the CPU.

    Raises
    ------
    ValueError
        When the state has a format this skvae does not know (a newer one, or
        not a format number at all).
    """
    state = dict(state)
    fmt = state.pop(FORMAT_KEY, 0)
    saved_by = state.pop(VERSION_KEY, "an unknown version")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or not 0 <= fmt <= FORMAT:
        newer = isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT
        raise ValueError(
            f"Cannot load this VAETransformer: it was saved by skvae {saved_by} in state "
            f"format {fmt!r}, but skvae {version} reads formats 0 to {FORMAT}. "
            + ("Upgrade skvae (pip install --upgrade skvae) to load it."
               if newer else "The file is not a state that any skvae wrote.")
        )
    renamed = None  # format 1: new positions of the saved network's parameters
    for name, kind in state.pop(CONVERTED_KEY, {}).items():
        if kind == "module":
            saved_names = [_FORMAT_1_NAMES.get(key, key) for key in state[name]["state_dict"]]
            state[name] = _import_module(state[name], fmt)
            if fmt == 1 and name == "module_":
                names = [key for key, _ in state[name].named_parameters()]
                renamed = [names.index(key) for key in saved_names]
        elif kind == "history":
            state[name] = _import_history(state[name])
        elif kind == "tensors":
            state[name] = _numpy_to_tensors(state[name])
        else:
            raise ValueError(
                f"Cannot load this VAETransformer: attribute {name!r} was saved as "
                f"{kind!r}, which skvae {version} does not know. Upgrade skvae "
                "(pip install --upgrade skvae) to load it."
            )
    if renamed is not None and isinstance(state.get("_optimizer_state"), dict):
        state["_optimizer_state"] = _format_1_optimizer(state["_optimizer_state"], renamed)
    if fmt <= 3 and isinstance(state.get("_optimizer_state"), dict) \
            and isinstance(state.get("module_"), VAEModule):
        state["_optimizer_state"] = _format_3_optimizer(state["_optimizer_state"],
                                                        state["module_"])
    if fmt <= 4:
        _format_4_attributes(state)
    if fmt <= 6 and isinstance(state.get("_optimizer_state"), dict) \
            and isinstance(state.get("module_"), VAEModule):
        state["_optimizer_state"] = _format_6_optimizer(state["_optimizer_state"],
                                                        state["module_"])
    if fmt <= 7:
        # every improvement reset the patience of models saved before tol
        state.setdefault("tol", 0.0)
        if "module_" in state:
            state.setdefault("tol_", 0.0)
    if fmt <= 8:
        # models saved before supervised training were fitted without labels,
        # and before mixed tables with one likelihood for every column
        state.setdefault("target_weight", 0.0)
        if "module_" in state:
            state.setdefault("target_type_", None)
            state.setdefault("_target_scale", None)
            state.setdefault("_columns", None)
            names = state.get("feature_names_in_")
            labels = range(state["n_features_in_"]) if names is None else list(names)
            state.setdefault("likelihoods_", dict.fromkeys(labels, state["likelihood"]))
    if fmt <= 1:
        # parameters added in format 2, with the values that describe how those
        # models were trained (from random weights): get_params and clone work
        for param, value in _FORMAT_2_PARAMS.items():
            state.setdefault(param, value)
    return state


# ----------------------------------------------------------------- the network

def _export_module(name, module):
    if not isinstance(module, VAEModule):
        raise TypeError(
            f"Cannot save attribute {name!r}: skvae saves its own VAEModule networks, "
            f"not a {type(module).__name__}. Store the network's state_dict() instead."
        )
    return {
        "n_features": module.n_features,
        "n_components": module.n_components,
        "hidden_layer_sizes": tuple(module.hidden_layer_sizes),
        "activation": module.activation,
        "likelihood": module.likelihood,
        "likelihood_options": module.observation.options(),
        "max_log_variance": module.max_log_variance,
        "missing_inputs": module.missing_inputs,
        "target": module.target,
        "state_dict": {key: _tensor_to_numpy(value)
                       for key, value in module.state_dict().items()},
    }


def _import_module(saved, fmt=FORMAT):
    # Built on the meta device (no random draws, no memory), given CPU storage,
    # then filled with the saved weights: as skvae._vae builds a new network.
    weights = {key: torch.tensor(value) for key, value in saved["state_dict"].items()}
    options = saved.get("likelihood_options", {})
    max_log_variance = saved.get("max_log_variance")
    if fmt == 1:
        options, weights = _format_1_network(saved, weights)
        max_log_variance = None  # format 1 did not bound the posterior variance
    if "observation.raw_variance" in weights and "observation.variance_floor" not in weights:
        # formats 1 and 2: one floor for every feature
        floor = options.get("min_variance", MIN_VARIANCE)
        weights["observation.variance_floor"] = torch.full((saved["n_features"],), floor)
    if saved.get("missing_inputs", False) and "encoder_loading.weight" not in weights:
        # formats 6 and older: experts without a loading, a diagonal precision
        weights["encoder_loading.weight"] = torch.zeros(saved["n_components"],
                                                        saved["n_features"])
    with torch.device("meta"):
        module = VAEModule(saved["n_features"], saved["n_components"],
                           tuple(saved["hidden_layer_sizes"]), saved["activation"],
                           saved["likelihood"], options, max_log_variance,
                           missing_inputs=saved.get("missing_inputs", False),
                           target=saved.get("target"))
    module = empty_on_cpu(module)
    module.load_state_dict(weights)
    return module


def _format_1_network(saved, weights):
    """Likelihood options and full state_dict of a format 1 network."""
    d, k = saved["n_features"], saved["n_components"]
    options = _FORMAT_1_GAUSSIAN if saved["likelihood"] == "gaussian" else {}
    weights = dict(weights)
    weights["encoder_linear.weight"] = torch.zeros(k, d)
    weights["decoder_linear.weight"] = torch.zeros(d, k)
    weights["input_low"] = torch.full((d,), -math.inf)  # format 1 did not clip
    weights["input_high"] = torch.full((d,), math.inf)
    if "raw_variance" in weights:
        weights[_FORMAT_1_NAMES["raw_variance"]] = weights.pop("raw_variance")
        weights["observation.outlier_log_variance"] = torch.zeros(d)
    return options, weights


def _format_1_optimizer(state, renamed):
    """Adam's state of a format 1 network, for the network it loads as.

    Parameter ``i`` of the saved network is parameter ``renamed[i]`` of the
    new one (the variance moved into the likelihood); the new parameters (the
    linear paths) join the group without state, so Adam starts them afresh.
    """
    n_params = len(renamed) + 2
    groups = []
    for group in state["param_groups"]:
        params = sorted(renamed[i] for i in group["params"])
        params += [i for i in range(n_params) if i not in renamed]
        groups.append({**group, "params": params})
    return {**state, "param_groups": groups,
            "state": {renamed[i]: value for i, value in state["state"].items()}}


def _format_3_optimizer(state, module):
    """Adam's state of a format 3 or older network, in the groups of format 4.

    Those states have one group, whose parameter ids are the positions of the
    network's ``named_parameters``. The parameters with a step size of their
    own (:meth:`VAEModule.lr_factors`) move to groups of their own in front;
    their ids, and so their Adam moments, stay as they were.
    """
    groups = state.get("param_groups")
    factors = module.lr_factors() if hasattr(module, "observation") else {}
    if not isinstance(groups, list) or len(groups) != 1 or not factors:
        return state
    names = [name for name, _ in module.named_parameters()]
    own = [names.index(name) for name in factors]
    group = groups[0]
    split = set_learning_rates([{**group, "params": [i], "lr_factor": factor}
                                for i, factor in zip(own, factors.values())], group["lr"])
    rest = {**group, "params": [i for i in group["params"] if i not in own]}
    return {**state, "param_groups": split + [rest]}


def _format_6_optimizer(state, module):
    """Adam's state of a format 6 or older network, for the parameters it loads with.

    The parameters that a network gained in format 7 (``encoder_loading``,
    last in ``named_parameters``) join the last group without state, so Adam
    starts them afresh; the others keep their ids and moments.
    """
    groups = state.get("param_groups")
    n_params = len(list(module.parameters()))
    if not isinstance(groups, list) or not groups:
        return state
    known = {i for group in groups for i in group["params"]}
    new = [i for i in range(n_params) if i not in known]
    if not new:
        return state
    return {**state, "param_groups": groups[:-1] + [
        {**groups[-1], "params": list(groups[-1]["params"]) + new}]}


def _format_4_attributes(state):
    """The fitted attributes of format 5 from those of a format 4 or older state.

    The budget was kept as ``_budget_epochs`` from format 4 on; the patience
    was not kept. Both depend on the training rows only through the steps of
    an epoch, which the history's last epoch records (``train_batch_count``),
    so older states get them resolved exactly from their parameters.
    """
    state.pop("_noise_seed", None)  # RandomStreams(_base_seed) derives it, as it always was
    if "_budget_epochs" in state:
        state["max_epochs_"] = state.pop("_budget_epochs")
    history = state.get("history_")
    if "batch_size" not in state or history is None or not len(history) \
            or "train_batch_count" not in history[-1]:
        return
    batch_size = state["batch_size"]
    n_rows = history[-1]["train_batch_count"] * batch_size  # the same steps per epoch
    if "max_epochs" in state and "max_epochs_" not in state:
        state["max_epochs_"] = resolve_max_epochs(state["max_epochs"], n_rows, batch_size)
    if "n_iter_no_change" in state:
        # the rule these formats were trained with: no upper bound in epochs
        state["n_iter_no_change_"] = resolve_n_iter_no_change(
            state["n_iter_no_change"], n_rows, batch_size, max_patience=None)


# ------------------------------------------------------------------- history

def _export_history(history):
    # One JSON string: skops.io would store each entry of each batch as a node of
    # its schema (about 30 times the size, and slow to load for long fits).
    # Floats survive exactly (repr round-trips), NaN and inf included.
    entries = _plain(list(history))
    try:
        return json.dumps(entries)
    except (TypeError, ValueError):  # a callback recorded something else: keep it
        return entries


def _import_history(saved):
    return History(json.loads(saved) if isinstance(saved, str) else saved)


# -------------------------------------------------------------- nested values

def _map_leaves(fn, value):
    """``fn`` applied to every leaf of ``value``, through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: _map_leaves(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(fn, v) for v in value)
    return fn(value)


def _leaves(value):
    """The leaves of ``value`` (see :func:`_map_leaves`), depth first."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        yield value
        return
    for item in value:
        yield from _leaves(item)


def _plain(value):
    """``value`` with NumPy scalars as Python ones (exact), through dicts and lists."""
    return _map_leaves(lambda v: v.item() if isinstance(v, np.generic) else v, value)


def _holds_tensors(value):
    return any(isinstance(leaf, torch.Tensor) for leaf in _leaves(value))


def _tensor_to_numpy(tensor):
    # a copy: the live tensor must not change the saved state (nor the reverse)
    tensor = tensor.detach()
    if tensor.device.type == "cpu":
        return tensor.numpy().copy()
    return tensor.cpu().numpy()


def _tensors_to_numpy(value):
    return _map_leaves(lambda v: _tensor_to_numpy(v) if isinstance(v, torch.Tensor) else v,
                       value)


def _numpy_to_tensors(value):
    return _map_leaves(lambda v: torch.tensor(v) if isinstance(v, np.ndarray) else v, value)
