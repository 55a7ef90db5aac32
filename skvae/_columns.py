"""The column layout of a mixed table: which likelihood models each column, and
how a DataFrame becomes the numbers the network sees and back.

``likelihood="auto"`` (the default) resolves a numeric array to ``"gaussian"``
and a DataFrame to one likelihood per column from its dtype, the convention of
``HistGradientBoostingClassifier(categorical_features="from_dtype")``:
category, object, string and bool columns are categorical (Bernoulli for two
categories), numeric columns Gaussian. A mapping from column name or index to
a likelihood name sets count columns or overrides a dtype.

When every column gets the same likelihood and holds numbers, there is no
layout (:func:`resolve_columns` returns None) and the estimator takes the data
as they are, exactly as before mixed tables were supported. Otherwise the
layout is a dict of builtins (saved by pickle and ``skops.io`` as it is):

``frame``
    Whether the data came as a DataFrame (then outputs are DataFrames).
``columns``, ``kinds``, ``dtypes``, ``categories``, ``ordered``
    Per original column: its label, its likelihood, its dtype (a string
    pandas reads back), its categories (a list, or None) and whether they
    are ordered.
``slices``
    Per original column, ``[start, stop]`` of its cells in the encoded data.
``groups``
    The network's :class:`~skvae._likelihoods.MixedLikelihood` groups:
    ``[name, width, options]`` in the encoded column order, Gaussian columns
    first, then Bernoulli, Poisson and negative binomial ones, then one group
    of one-hot columns per categorical column.

The encoded data are float64: standardizing is left to the estimator (its
``mean_`` and ``scale_`` are 0 and 1 outside the Gaussian columns); a Bernoulli
column is 0 or 1 (its second category is 1); a categorical column is its
one-hot columns; a missing cell (NaN, None, pd.NA) is NaN in all its columns.
"""

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._likelihoods import LIKELIHOODS

#: The order of the likelihoods' columns in the encoded data (categorical last).
_ORDER = ("gaussian", "bernoulli", "poisson", "negative_binomial", "categorical")
_NUMERIC = ("gaussian", "poisson", "negative_binomial")


def _is_categorical_dtype(dtype):
    return (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def _auto_likelihood(column):
    if not _is_categorical_dtype(column.dtype):
        return "gaussian"
    return "bernoulli" if len(_categories(column)) == 2 else "categorical"


def _categories(column):
    """The categories of a column: declared (category, bool) or its sorted values."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return list(dtype.categories.tolist())
    if pd.api.types.is_bool_dtype(dtype):
        return [False, True]
    values = pd.unique(column.dropna())
    try:
        values = sorted(values)
    except TypeError:  # values of several types: the order they come in
        pass
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _check_name(name, where):
    if name == "auto" or name not in LIKELIHOODS:
        raise ValueError(
            f"likelihood[{where!r}]={name!r} is not a likelihood. Use one of "
            f"{sorted(LIKELIHOODS)}.")
    return name


def resolve_columns(X, likelihood):
    """The column layout of X under the ``likelihood`` parameter, or None.

    Parameters
    ----------
    X : DataFrame, array-like or sparse matrix
        The training data as the caller gave them.
    likelihood : str or mapping
        The estimator's ``likelihood`` parameter (validated).

    Returns
    -------
    layout : dict or None
        See the module docstring; None when every column gets one likelihood
        and the data are numbers (the estimator then takes X as it is).
    name : str or None
        That one likelihood (``"auto"`` resolved) when ``layout`` is None.
    """
    frame = isinstance(X, pd.DataFrame)
    if not frame and not isinstance(likelihood, Mapping) and likelihood != "categorical":
        return None, "gaussian" if likelihood == "auto" else likelihood
    if not frame:
        if sp.issparse(X):
            raise ValueError(
                f"likelihood={likelihood!r} needs a dense X: a sparse matrix takes one "
                "likelihood for every column ('gaussian', 'bernoulli', 'poisson' or "
                "'negative_binomial').")
        X = pd.DataFrame(np.asarray(X, dtype=np.float64) if not hasattr(X, "dtype")
                         or X.dtype.kind in "biuf" else np.asarray(X))
        if X.ndim != 2:
            return None, "gaussian"
    columns = list(X.columns)
    if isinstance(likelihood, Mapping):
        kinds = [None] * len(columns)
        for key, name in likelihood.items():
            if key in columns:
                j = columns.index(key)
            elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) \
                    and -len(columns) <= key < len(columns):
                j = int(key) % len(columns)
            else:
                raise ValueError(
                    f"likelihood has an entry for column {key!r}, which X does not have. "
                    f"Its columns are {columns[:10]}{' ...' if len(columns) > 10 else ''}.")
            kinds[j] = _check_name(name, key)
        kinds = [_auto_likelihood(X.iloc[:, j]) if kind is None else kind
                 for j, kind in enumerate(kinds)]
    elif likelihood == "auto":
        kinds = [_auto_likelihood(X.iloc[:, j]) for j in range(len(columns))]
    else:
        kinds = [likelihood] * len(columns)
    text = [_is_categorical_dtype(X.iloc[:, j].dtype) for j in range(len(columns))]
    if len(set(kinds)) == 1 and kinds[0] != "categorical" and not any(text):
        return None, kinds[0]
    return _layout(X, columns, kinds, frame), None


def _layout(X, columns, kinds, frame):
    categories, ordered, dtypes = [], [], []
    for j, (label, kind) in enumerate(zip(columns, kinds)):
        column = X.iloc[:, j]
        is_text = _is_categorical_dtype(column.dtype)
        if kind in _NUMERIC and is_text:
            raise ValueError(
                f"Column {label!r} holds {column.dtype} values, but likelihood {kind!r} "
                "models numbers. Leave it to likelihood='auto' (categorical) or set "
                "'categorical' for it.")
        cats = None
        if kind == "categorical" or (kind == "bernoulli" and is_text):
            cats = _categories(column)
        if kind == "bernoulli" and cats is not None and len(cats) != 2:
            raise ValueError(
                f"Column {label!r} has {len(cats)} categories; likelihood 'bernoulli' "
                "needs two. Use 'categorical' for it.")
        categories.append(cats)
        ordered.append(bool(getattr(column.dtype, "ordered", False) or False))
        dtypes.append(str(column.dtype))
    order = sorted(range(len(columns)), key=lambda j: (_ORDER.index(kinds[j]), j))
    slices, groups, start = [None] * len(columns), [], 0
    for j in order:
        width = len(categories[j]) if kinds[j] == "categorical" else 1
        slices[j] = [start, start + width]
        start += width
        if kinds[j] != "categorical" and groups and groups[-1][0] == kinds[j]:
            groups[-1][1] += 1
        else:
            groups.append([kinds[j], width, {}])
    return {"frame": frame, "columns": [_builtin(c) for c in columns], "kinds": kinds,
            "dtypes": dtypes, "categories": categories, "ordered": ordered,
            "slices": slices, "groups": groups}


def _builtin(value):
    return value.item() if isinstance(value, np.generic) else value


def n_encoded(layout):
    """Width of the encoded data."""
    return sum(width for _, width, _ in layout["groups"])


def encoded_sources(layout):
    """Per encoded column, the label of the original column it comes from."""
    sources = [None] * n_encoded(layout)
    for label, (start, stop) in zip(layout["columns"], layout["slices"]):
        sources[start:stop] = [label] * (stop - start)
    return sources


def _numbers(column, label):
    try:
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        return pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"Column {label!r} must hold numbers; it holds "
                         f"{column.dtype} values.") from None


def encode(layout, X):
    """The float64 array the network sees for the table X (see the module docstring).

    Parameters
    ----------
    layout : dict
    X : DataFrame or array-like of shape (n_samples, n_columns)
        Columns in the layout's order (the estimator checks names and count).

    Returns
    -------
    encoded : ndarray of shape (n_samples, n_encoded(layout))

    Raises
    ------
    ValueError
        For a category unseen at fit, a value a column's likelihood does not
        support or an infinite value, naming the column.
    """
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X) if hasattr(X, "dtype") else np.asarray(X, dtype=object))
    out = np.zeros((X.shape[0], n_encoded(layout)))
    for j, (label, kind) in enumerate(zip(layout["columns"], layout["kinds"])):
        column, cats = X.iloc[:, j], layout["categories"][j]
        start, stop = layout["slices"][j]
        if cats is None:
            values = _numbers(column, label)
            if np.isinf(values).any():
                raise ValueError(f"Column {label!r} holds an infinite value.")
            observed = values[~np.isnan(values)]
            if kind in ("poisson", "negative_binomial") and len(observed) and (
                    observed.min() < 0 or np.any(observed != np.round(observed))):
                raise ValueError(f"Column {label!r} must hold non-negative integer counts "
                                 f"for likelihood {kind!r}.")
            if kind == "bernoulli" and len(observed) and (
                    observed.min() < 0 or observed.max() > 1):
                raise ValueError(f"Column {label!r} must hold values in [0, 1] for "
                                 "likelihood 'bernoulli'.")
            out[:, start] = values
            continue
        missing = column.isna().to_numpy()
        codes = np.asarray(pd.Index(cats, dtype=object).get_indexer(
            column.astype(object).to_numpy()), dtype=np.intp)
        unseen = (codes < 0) & ~missing
        if unseen.any():
            value = column[unseen].iloc[0]
            raise ValueError(
                f"Column {label!r} holds the category {value!r}, which it did not hold at "
                f"fit (its categories are {cats[:10]}{' ...' if len(cats) > 10 else ''}). "
                "Replace it, or set it to NaN to treat it as a missing cell.")
        if kind == "bernoulli":
            out[:, start] = np.where(missing, np.nan, codes)
        else:
            block = out[:, start:stop]
            block[np.flatnonzero(~missing), codes[~missing]] = 1.0
            block[missing] = np.nan
    return out


def decode(layout, encoded, index=None):
    """The table of the encoded means or draws: a DataFrame, or an array for arrays.

    A categorical column takes its most probable category (the largest of its
    columns: a one-hot draw picks the drawn one), a Bernoulli column its second
    category where the value is at least 0.5. Integer and bool columns are
    rounded; every column gets its fitted dtype and categories.

    Parameters
    ----------
    layout : dict
    encoded : ndarray of shape (n_samples, n_encoded(layout))
    index : pandas Index, default=None

    Returns
    -------
    X : DataFrame or ndarray of shape (n_samples, n_columns)
    """
    data = {}
    for j, (label, kind) in enumerate(zip(layout["columns"], layout["kinds"])):
        start, stop = layout["slices"][j]
        cats = layout["categories"][j]
        if cats is None:
            data[j] = _cast(encoded[:, start], layout["dtypes"][j])
            continue
        codes = (encoded[:, start] >= 0.5).astype(np.intp) if kind == "bernoulli" \
            else np.argmax(encoded[:, start:stop], axis=1)
        data[j] = _categorical_values(cats, codes, layout["dtypes"][j], layout["ordered"][j])
    if not layout["frame"]:
        return np.column_stack([np.asarray(data[j], dtype=np.float64) for j in sorted(data)]) \
            if data else np.empty((encoded.shape[0], 0))
    frame = pd.DataFrame({j: data[j].to_numpy() if isinstance(data[j], pd.Series) else data[j]
                          for j in sorted(data)}, index=index)
    for j in sorted(data):
        if isinstance(data[j], pd.Series):
            frame[j] = pd.Series(data[j].to_numpy(), index=frame.index, dtype=object)
    frame.columns = pd.Index(layout["columns"])
    return frame


def _cast(values, dtype):
    dtype = pd.api.types.pandas_dtype(dtype)
    if dtype.kind in "iub":
        values = np.round(values)
    try:
        return pd.array(values).astype(dtype)
    except (TypeError, ValueError):
        return values


def _categorical_values(categories, codes, dtype, ordered):
    if dtype == "category":
        return pd.Categorical.from_codes(codes, categories=categories, ordered=ordered)
    values = np.empty(len(codes), dtype=object)
    values[:] = [categories[c] for c in codes] if len(codes) else []
    if dtype == "object":  # a Series: pandas would infer a string dtype from the array
        return pd.Series(values, dtype=object)
    try:
        return pd.array(values).astype(pd.api.types.pandas_dtype(dtype))
    except (TypeError, ValueError):
        return values
