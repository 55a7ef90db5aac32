"""The label of supervised training: checking ``y`` and encoding it for the network.

``VAETransformer(target_weight > 0)`` models a label given the code for the rows
that have one. This module turns the ``y`` a user passes into what the training
home needs: one float per row, a class index or a standardized target, NaN for a
row without a label, and the fitted attributes that say how (the classes, or
the target's mean and scale). It knows NumPy and scikit-learn, not torch.

Conventions: a float ``y`` is a continuous target, as a regressor reads it,
with NaN for a row without one, even when its values are whole numbers (the
diabetes progression score, a count, a price): scikit-learn's
:func:`~sklearn.utils.multiclass.type_of_target` calls those ``"multiclass"``,
and a model of 214 classes of one target each taught the codes nothing of it.
Class labels are ints, bools or strings (what ``type_of_target`` then calls
``"binary"`` or ``"multiclass"``), with -1 for a row without a label, as in
:mod:`sklearn.semi_supervised`.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
from sklearn.utils.multiclass import type_of_target

#: The label of a row without one, for class labels (scikit-learn's
#: semi-supervised convention); NaN for a continuous target
UNLABELLED = -1


@dataclass
class Target:
    """``y`` encoded for training, and what the encoding needs to be repeated.

    Attributes
    ----------
    values : ndarray of shape (n_samples,), float32
        The class index of each row, or its standardized target; NaN for a
        row without a label.
    type : {"binary", "multiclass", "continuous"}
        What :func:`~sklearn.utils.multiclass.type_of_target` saw in the
        labelled rows (of the first call).
    classes : ndarray or None
        The sorted class labels (class labels only).
    mean, scale : float or None
        The standardization of a continuous target (of the first call).
    """

    values: np.ndarray
    type: str
    classes: Optional[np.ndarray] = None
    mean: Optional[float] = None
    scale: Optional[float] = None

    @property
    def head(self):
        """The module's ``target``: the number of classes, or ``"continuous"``."""
        return "continuous" if self.type == "continuous" else len(self.classes)

    @property
    def n_labelled(self):
        """The rows with a label."""
        return int(np.count_nonzero(~np.isnan(self.values)))


def check_target(y, n_samples, target_weight, fitted=None):
    """Check ``y`` for ``target_weight > 0`` and encode it.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or None
        The labels passed to ``fit`` or ``partial_fit``.
    n_samples : int
        The rows of X.
    target_weight : float
        The estimator's parameter, for the messages.
    fitted : Target or None
        The encoding of the call that created the model (a resumed
        ``partial_fit`` or warm start): its classes and standardization are
        reused. None: a new model, which needs at least one labelled row (and
        two classes among the class labels).

    Returns
    -------
    target : Target

    Raises
    ------
    ValueError
        For a missing ``y``, a ``y`` of the wrong length, multilabel or
        multi-output ``y``, a type that is neither class labels nor a
        continuous target, no labelled row (a new model), fewer than two
        classes (a new model), or a class the resumed model does not know.
    """
    if y is None:
        raise ValueError(
            f"target_weight={target_weight!r} models the labels, but fit got no y. Pass "
            "fit(X, y) with a label per row (-1 for a row without a class label, NaN "
            "without a continuous target), or set target_weight=0 to ignore labels.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        kind = type_of_target(y) if y.ndim == 2 and y.size else f"{y.ndim}-D"
        raise ValueError(
            f"target_weight > 0 models one label per row, but y has shape {y.shape} "
            f"({kind}): multilabel and multi-output targets are not supported. Pass a "
            "1-D y (one class label or one continuous target per row).")
    if len(y) != n_samples:
        raise ValueError(
            f"y has {len(y)} rows, but X has {n_samples}: pass one label per row of X "
            "(-1 or NaN for a row without one).")
    nan = _nan_mask(y)
    if fitted is not None:
        kind = fitted.type
    else:
        seen = ~nan
        if y.dtype.kind == "O":  # strings with -1 for the rows without a label
            seen &= ~_equals_unlabelled(y)
        if not seen.any():
            _no_label(target_weight)
        kind = ("continuous" if y.dtype.kind == "f"
                else type_of_target(y[seen].tolist() if y.dtype.kind == "O" else y[seen]))
    if kind == "continuous":
        values = np.where(nan, np.nan, y).astype(np.float64)
        labelled = ~nan
        if fitted is None:
            if not labelled.any():
                _no_label(target_weight)
            mean = float(values[labelled].mean())
            scale = float(values[labelled].std())
            scale = scale if scale > 0 else 1.0
        else:
            mean, scale = fitted.mean, fitted.scale
        return Target(((values - mean) / scale).astype(np.float32), kind, mean=mean,
                      scale=scale)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"target_weight > 0 needs class labels (binary or multiclass) or a continuous "
            f"target, but type_of_target(y) is {kind!r}. Multilabel and multi-output "
            "targets are not supported.")
    labelled = ~nan & ~_equals_unlabelled(y)
    if fitted is None:
        if not labelled.any():
            _no_label(target_weight)
        classes = np.unique(y[labelled])
        if len(classes) < 2:
            raise ValueError(
                f"target_weight > 0 needs at least two classes among the labelled rows; "
                f"y has only {classes.tolist()} (and -1 for the rows without a label).")
    else:
        classes = fitted.classes
    index = np.searchsorted(classes, y[labelled])
    index = np.minimum(index, len(classes) - 1)
    unknown = classes[index] != y[labelled]
    if unknown.any():
        raise ValueError(
            f"y has labels {np.unique(y[labelled][unknown]).tolist()[:10]} that the "
            f"fitted model does not know (classes_ = {classes.tolist()[:10]}): the "
            "first call of fit or partial_fit fixes the classes.")
    values = np.full(len(y), np.nan, dtype=np.float32)
    values[labelled] = index
    return Target(values, kind, classes=classes)


def _no_label(target_weight):
    raise ValueError(
        f"target_weight={target_weight!r} models the labels, but y has no labelled row "
        "(every row is -1 or NaN). Pass at least one label, or set target_weight=0.")


def _nan_mask(y):
    """NaN entries of ``y`` (None and NaN in an object array)."""
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in y],
                        dtype=bool)
    return np.zeros(len(y), dtype=bool)


def _equals_unlabelled(y):
    """Entries of ``y`` equal to :data:`UNLABELLED` (never for strings)."""
    if y.dtype.kind in "iuf":
        return y == UNLABELLED
    if y.dtype.kind == "O":
        return np.array([not isinstance(v, str) and v == UNLABELLED for v in y], dtype=bool)
    return np.zeros(len(y), dtype=bool)
