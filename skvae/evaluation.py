"""Judge a VAE against PCA on held-out data, with the numbers a data scientist asks for."""

import time
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array

from ._vae import VAETransformer

COLUMNS = [
    "method", "n_components", "log_likelihood", "log_likelihood_iwae",
    "reconstruction_mse", "accuracy", "recall_macro", "f1_macro", "roc_auc_ovr",
    "fit_seconds", "transform_seconds",
]


def compare_with_pca(X, y=None, *, n_components=(2, 8, 16), vae_params=None, test_size=0.2,
                     random_state=0, n_importance_samples=100, verbose=False):
    """Fit PCA and a VAE for each latent size and compare them on held-out data.

    X is split into a training and a test part (stratified by ``y`` when it is
    given); every number is measured on the test part.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data.

    y : array-like of shape (n_samples,), default=None
        Class labels. When given, a :class:`~sklearn.linear_model.LogisticRegression`
        is trained on each method's codes and scored on the test codes.

    n_components : int or sequence of int, default=(2, 8, 16)
        Latent sizes to compare.

    vae_params : dict, default=None
        Parameters of :class:`~skvae.VAETransformer` (its defaults otherwise);
        ``n_components`` is set per row and ``random_state`` defaults to
        ``random_state``.

    test_size : float, default=0.2
        Share of the samples held out for testing.

    random_state : int, default=0
        Seed of the split, of the VAE (unless ``vae_params`` sets one) and of
        the classifier.

    n_importance_samples : int, default=100
        Importance samples of the VAE's IWAE estimate of log p(x).

    verbose : bool, default=False
        Print a line as each model is fitted.

    Returns
    -------
    report : pandas.DataFrame
        One row per (method, n_components) with columns ``method`` ("PCA" or
        "VAE"), ``n_components``, ``log_likelihood`` (mean held-out
        ``score``, nats per sample, the ELBO for the VAE), ``log_likelihood_iwae``
        (VAE only), ``reconstruction_mse`` (mean squared error of
        ``inverse_transform(transform(X_test))`` in the units of X),
        ``accuracy``, ``recall_macro``, ``f1_macro`` and ``roc_auc_ovr`` of the
        classifier (NaN without ``y``), ``fit_seconds`` and ``transform_seconds``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skvae.evaluation import compare_with_pca
    >>> X, y = load_digits(return_X_y=True)
    >>> report = compare_with_pca(X, y, n_components=[2], vae_params={"max_epochs": 2})
    >>> report[["method", "n_components"]].values.tolist()
    [['PCA', 2], ['VAE', 2]]
    """
    X = check_array(X, dtype=[np.float64, np.float32])
    sizes = [n_components] if isinstance(n_components, Integral) else list(n_components)
    params = {"random_state": random_state, **(vae_params or {})}
    if y is None:
        X_train, X_test = train_test_split(X, test_size=test_size, random_state=random_state)
        y_train = y_test = None
    else:
        X_train, X_test, y_train, y_test = train_test_split(
            X, np.asarray(y), test_size=test_size, stratify=y, random_state=random_state)

    rows = []
    for k in sizes:
        models = [("PCA", PCA(n_components=k, random_state=random_state)),
                  ("VAE", clone(VAETransformer(**params)).set_params(n_components=k))]
        for method, model in models:
            if verbose:
                print(f"fitting {method} with n_components={k} ...", end=" ", flush=True)
            row = _evaluate(model, X_train, X_test, y_train, y_test, random_state,
                            n_importance_samples if method == "VAE" else None)
            rows.append({"method": method, "n_components": k, **row})
            if verbose:
                print(f"{row['fit_seconds']:.1f} s")
    return pd.DataFrame(rows, columns=COLUMNS)


def _evaluate(model, X_train, X_test, y_train, y_test, random_state, n_importance_samples):
    start = time.perf_counter()
    model.fit(X_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    codes_test = model.transform(X_test)
    transform_seconds = time.perf_counter() - start
    reconstruction = model.inverse_transform(codes_test)
    row = {
        "log_likelihood": model.score(X_test),
        "log_likelihood_iwae": (np.nan if n_importance_samples is None else
                                model.score(X_test, n_importance_samples=n_importance_samples)),
        "reconstruction_mse": float(np.mean((X_test - reconstruction) ** 2)),
        "fit_seconds": fit_seconds,
        "transform_seconds": transform_seconds,
    }
    row.update(_classification_metrics(model.transform(X_train), codes_test, y_train, y_test,
                                       random_state))
    return row


def _classification_metrics(codes_train, codes_test, y_train, y_test, random_state):
    """Accuracy, macro recall and F1, one-vs-rest ROC AUC of a classifier on the codes."""
    if y_train is None:
        return {"accuracy": np.nan, "recall_macro": np.nan, "f1_macro": np.nan,
                "roc_auc_ovr": np.nan}
    classifier = make_pipeline(StandardScaler(),
                               LogisticRegression(max_iter=2000, random_state=random_state))
    classifier.fit(codes_train, y_train)
    predicted = classifier.predict(codes_test)
    proba = classifier.predict_proba(codes_test)
    if proba.shape[1] == 2:
        auc = roc_auc_score(y_test, proba[:, 1])
    else:
        auc = roc_auc_score(y_test, proba, multi_class="ovr", labels=classifier.classes_)
    return {
        "accuracy": accuracy_score(y_test, predicted),
        "recall_macro": recall_score(y_test, predicted, average="macro", zero_division=0),
        "f1_macro": f1_score(y_test, predicted, average="macro", zero_division=0),
        "roc_auc_ovr": auc,
    }
