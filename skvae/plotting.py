"""Figures of a fitted :class:`~skvae.VAETransformer` and of ``compare_with_pca``.

Every function here needs matplotlib (``pip install "skvae[plot]"``); importing
this module does not. Functions that draw one panel accept ``ax=None`` and return
the :class:`~matplotlib.axes.Axes`; those that draw a grid of panels accept
``fig=None`` and return the :class:`~matplotlib.figure.Figure` (its panels are
``fig.axes``).
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ._utils import import_optional

__all__ = [
    "plot_comparison",
    "plot_latent_space",
    "plot_latent_traversal",
    "plot_reconstructions",
    "plot_training_history",
]

#: ``method="auto"`` uses t-SNE for more than 2 components up to this many samples.
TSNE_MAX_SAMPLES = 5000

#: ``y`` with at most this many distinct values (integers or strings) is drawn
#: with one colour per class and a legend; otherwise with a colour bar.
MAX_CLASSES = 20


def _pyplot(caller):
    return import_optional("matplotlib.pyplot", extra="plot", caller=f"skvae.plotting.{caller}")


# -------------------------------------------------------------------- latent space


def plot_latent_space(estimator, X, y=None, *, method="auto", ax=None, random_state=0,
                      **scatter_kwargs):
    """Scatter plot of the posterior means of X, coloured by ``y``.

    With two latent components the axes are the latent variables themselves;
    with more, the codes are projected to two dimensions first.

    Parameters
    ----------
    estimator : VAETransformer
        A fitted estimator (any fitted transformer works).

    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Data to encode with ``estimator.transform``.

    y : array-like of shape (n_samples,), default=None
        Colours of the points. Class labels (strings, booleans, or integers
        with at most 20 distinct values) get one colour each and a legend;
        other numbers (floats included) a colour map and a colour bar. None draws all points in one
        colour.

    method : {"auto", "tsne", "pca", "none"}, default="auto"
        How to show more than two components. ``"tsne"``:
        :class:`~sklearn.manifold.TSNE` of the codes (seeded with
        ``random_state``; distances between clusters are not meaningful);
        ``"pca"``: their first two principal components (a linear view that
        keeps large distances); ``"none"``: the latent variables themselves
        (one or two components only). ``"auto"`` is ``"none"`` for one or two
        components, ``"tsne"`` for more components and at most 5000 samples,
        and ``"pca"`` above that (t-SNE is slow on many samples).

    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure when None.

    random_state : int, default=0
        Seed of the t-SNE projection (and of the vertical jitter for a single
        component).

    **scatter_kwargs : dict
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s``, ``alpha``).

    Returns
    -------
    ax : matplotlib Axes
        The axes with one scatter collection of ``n_samples`` points.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skvae import VAETransformer
    >>> from skvae.plotting import plot_latent_space
    >>> X, y = load_digits(return_X_y=True)
    >>> vae = VAETransformer(2, max_epochs=2, random_state=0).fit(X)
    >>> ax = plot_latent_space(vae, X, y)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('latent 0', 'latent 1')
    """
    check_is_fitted(estimator)
    plt = _pyplot("plot_latent_space")
    if method not in ("auto", "tsne", "pca", "none"):
        raise ValueError(f"method must be 'auto', 'tsne', 'pca' or 'none'; got {method!r}.")
    Z = np.asarray(estimator.transform(X), dtype=np.float64)
    n_samples, n_components = Z.shape
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n_samples:
            raise ValueError(f"y must be 1-D with one value per sample of X ({n_samples}); "
                             f"got shape {y.shape}.")
    if method == "auto":
        if n_components <= 2:
            method = "none"
        else:
            method = "tsne" if n_samples <= TSNE_MAX_SAMPLES else "pca"
    if method == "none" and n_components > 2:
        raise ValueError(
            f"method='none' shows the latent variables themselves and needs at most 2 "
            f"components; the estimator has n_components={n_components}. Use "
            "method='tsne' or method='pca' to project them to 2-D."
        )

    if method == "none" and n_components == 2:
        points, labels = Z, ("latent 0", "latent 1")
        title = "Latent space (posterior means)"
    elif method == "none":  # one component: a strip with random vertical jitter
        jitter = np.random.RandomState(random_state).uniform(-1, 1, n_samples)
        points, labels = np.column_stack([Z[:, 0], jitter]), ("latent 0", "")
        title = "Latent space (posterior means, vertical jitter)"
    elif method == "pca":
        if n_components < 2 or n_samples < 2:
            raise ValueError("method='pca' needs at least 2 components and 2 samples.")
        points = PCA(2, random_state=random_state).fit_transform(Z)
        labels = ("PCA 1 of the latent means", "PCA 2 of the latent means")
        title = f"Latent space ({n_components}-D), first two principal components"
    else:
        if n_samples < 3:
            raise ValueError(f"method='tsne' needs at least 3 samples; got {n_samples}.")
        tsne = TSNE(2, perplexity=min(30.0, (n_samples - 1) / 3), init="pca",
                    random_state=random_state)
        points = tsne.fit_transform(Z)
        labels = ("t-SNE 1", "t-SNE 2")
        title = f"Latent space ({n_components}-D), t-SNE projection"

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    scatter_kwargs.setdefault("s", 12)
    if y is None:
        scatter_kwargs.setdefault("color", "C0")
        ax.scatter(points[:, 0], points[:, 1], **scatter_kwargs)
    elif _is_categorical(y):
        _scatter_classes(ax, points, y, scatter_kwargs)
    else:
        scatter_kwargs.setdefault("cmap", "viridis")
        collection = ax.scatter(points[:, 0], points[:, 1], c=y.astype(np.float64),
                                **scatter_kwargs)
        ax.figure.colorbar(collection, ax=ax, label="y")
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title)
    if method == "none" and n_components == 1:
        ax.set_yticks([])
    return ax


def _is_categorical(y):
    if y.dtype.kind not in "biuf":  # strings, objects: labels
        return True
    return y.dtype.kind in "biu" and np.unique(y).size <= MAX_CLASSES


def _scatter_classes(ax, points, y, scatter_kwargs):
    """One scatter collection in drawing order, one colour per class, a legend."""
    mpl = import_optional("matplotlib", extra="plot", caller="plot_latent_space")
    lines = import_optional("matplotlib.lines", extra="plot", caller="plot_latent_space")
    classes, codes = np.unique(y, return_inverse=True)
    palette = mpl.colormaps["tab10" if classes.size <= 10 else "tab20"]
    cmap = mpl.colors.ListedColormap([palette(i) for i in range(classes.size)])
    ax.scatter(points[:, 0], points[:, 1], c=codes, cmap=cmap, vmin=-0.5,
               vmax=classes.size - 0.5, **scatter_kwargs)
    handles = [lines.Line2D([], [], linestyle="", marker="o", color=cmap(i), label=str(c))
               for i, c in enumerate(classes)]
    ax.legend(handles=handles, title="y", loc="center left", bbox_to_anchor=(1.0, 0.5),
              frameon=False, handletextpad=0.2)


# ------------------------------------------------------ reconstructions / traversals


def _resolve_image_shape(image_shape, n_features):
    """``image_shape`` checked against n_features; None -> square images or None."""
    if image_shape is None:
        side = int(round(np.sqrt(n_features)))
        return (side, side) if side * side == n_features and side >= 4 else None
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise ValueError(f"image_shape must be a tuple of ints such as (8, 8); got "
                         f"{image_shape!r}.") from None
    if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != n_features:
        raise ValueError(
            f"image_shape={image_shape!r} does not fit the {n_features} features of the "
            "estimator: it must be (height, width) with height * width == n_features."
        )
    return shape


#: Colour of a missing value (NaN) in an image of :func:`plot_reconstructions`.
MISSING_COLOR = "#e9967a"


def _draw_tile(ax, values, shape, vrange):
    """An image (grey, dark = high, upright) or a feature profile on one axes.

    Missing values (NaN) are drawn in :data:`MISSING_COLOR` on an image, and as
    gaps in a profile.
    """
    if shape is not None:
        import matplotlib  # noqa: PLC0415 (the plot extra, imported by _pyplot first)

        cmap = matplotlib.colormaps["gray_r"].with_extremes(bad=MISSING_COLOR)
        ax.imshow(values.reshape(shape), cmap=cmap, vmin=vrange[0], vmax=vrange[1],
                  interpolation="nearest")
    else:
        ax.plot(np.arange(values.size), values, color="C0", lw=1)
        ax.set_ylim(*vrange)
    ax.set_xticks([])
    ax.set_yticks([])


def _value_range(values, percentile=0.0):
    values = np.asarray(values)
    values = values[np.isfinite(values)] if np.isnan(values).any() else values
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [percentile, 100 - percentile]))
    if high <= low:
        high = low + 1.0
    return low, high


def _check_positive_int(value, name):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
    return int(value)


def plot_reconstructions(estimator, X, *, image_shape=None, n_images=10, fig=None):
    """Draw the first samples of X above their reconstructions.

    Each sample is encoded to its posterior mean and decoded
    (``inverse_transform(transform(X))``).

    Parameters
    ----------
    estimator : VAETransformer
        A fitted estimator.

    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Data; the first ``n_images`` samples are drawn. Missing entries (NaN)
        are drawn in salmon (``skvae.plotting.MISSING_COLOR``) in the originals, or left
        out of a profile; the reconstructions fill them.

    image_shape : tuple of int (height, width), default=None
        Shape of one sample as an image (row-major, as in ``X.reshape``). None
        draws square images when ``n_features`` is a square of at least 16
        (e.g. 64 -> 8x8, 784 -> 28x28) and feature profiles (value against
        feature index) otherwise.

    n_images : int, default=10
        Number of samples to draw (fewer when X has fewer).

    fig : matplotlib Figure, default=None
        Figure to draw on; a new one when None.

    Returns
    -------
    fig : matplotlib Figure
        The figure, with ``2 * n_images`` axes: the originals in the first row
        (label "original"), the reconstructions in the second ("reconstruction").
        Images use the ``gray_r`` colour map (dark is high), all with the
        value range of the originals; profiles share that y-range.
    """
    check_is_fitted(estimator)
    plt = _pyplot("plot_reconstructions")
    n_images = _check_positive_int(n_images, "n_images")
    # missing entries (NaN) are blank in the originals, filled in the reconstructions
    X = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32],
                    ensure_all_finite="allow-nan")
    shape = _resolve_image_shape(image_shape, estimator.n_features_in_)
    X = X[:n_images]
    X = X.toarray() if sp.issparse(X) else X
    n = X.shape[0]
    reconstructed = np.asarray(estimator.inverse_transform(estimator.transform(X)))
    vrange = _value_range(X)

    if fig is None:
        fig = plt.figure(figsize=(max(1.0 * n, 4.0) + 1.2 if shape else max(1.6 * n, 5.0) + 1.2,
                                  2.8),
                         layout="constrained")
    axes = fig.subplots(2, n, squeeze=False, sharey=shape is None)
    for j in range(n):
        _draw_tile(axes[0, j], X[j], shape, vrange)
        _draw_tile(axes[1, j], reconstructed[j], shape, vrange)
    axes[0, 0].set_ylabel("original", rotation=0, ha="right", va="center")
    axes[1, 0].set_ylabel("reconstruction", rotation=0, ha="right", va="center")
    fig.suptitle("Samples (top) and their reconstructions (bottom)")
    if shape is None:
        fig.supxlabel("feature index")
    return fig


def plot_latent_traversal(estimator, *, dims=None, n_steps=7, span=3.0, image_shape=None,
                          fig=None):
    """Decode points along the latent axes through the prior mean.

    Every latent variable is 0 (the prior mean) except the one traversed,
    which takes ``n_steps`` values from ``-span`` to ``+span`` (in prior
    standard deviations: the prior is N(0, I)). For a model with two
    components and ``dims=None`` both vary: the 2-D manifold grid.

    Parameters
    ----------
    estimator : VAETransformer
        A fitted estimator.

    dims : int or sequence of int, default=None
        Latent dimensions to traverse (0-based, as in
        ``get_feature_names_out``), one row each. None: all of them, or the
        2-D grid when the model has two components.

    n_steps : int, default=7
        Number of values along each axis.

    span : float, default=3.0
        The values run from ``-span`` to ``+span``.

    image_shape : tuple of int (height, width), default=None
        As in :func:`plot_reconstructions`: images when given or when
        ``n_features`` is a square >= 16, feature profiles otherwise.

    fig : matplotlib Figure, default=None
        Figure to draw on; a new one when None.

    Returns
    -------
    fig : matplotlib Figure
        The figure. Traversal: ``len(dims)`` rows (labelled "latent d") by
        ``n_steps`` columns (titled with the value), values increasing to the
        right. Grid: ``n_steps`` x ``n_steps`` panels, latent 0 increasing to
        the right and latent 1 upwards. Images use the ``gray_r`` colour map
        (dark is high) with one value range for all panels: the 1st to 99th
        percentile of the decoded values.
    """
    check_is_fitted(estimator)
    plt = _pyplot("plot_latent_traversal")
    n_steps = _check_positive_int(n_steps, "n_steps")
    if not isinstance(span, Real) or isinstance(span, bool) or not np.isfinite(span) \
            or span <= 0:
        raise ValueError(f"span must be a positive number; got {span!r}.")
    n_components = estimator.transform(np.zeros((1, estimator.n_features_in_))).shape[1]
    shape = _resolve_image_shape(image_shape, estimator.n_features_in_)
    values = np.linspace(-span, span, n_steps)
    grid = dims is None and n_components == 2
    if dims is None:
        dims = list(range(n_components))
    elif isinstance(dims, Integral):
        dims = [dims]
    dims = list(dims)
    if (not dims or any(not isinstance(d, Integral) or isinstance(d, bool) for d in dims)
            or any(not 0 <= d < n_components for d in dims) or len(set(dims)) != len(dims)):
        raise ValueError(
            f"dims must be distinct ints in [0, {n_components - 1}] (the model has "
            f"n_components={n_components}); got {dims!r}."
        )

    if grid:
        # row i shows latent 1 = values[::-1][i] (top: +span), column j latent 0 = values[j]
        z0, z1 = np.meshgrid(values, values[::-1])
        Z = np.column_stack([z0.ravel(), z1.ravel()])
        n_rows = n_steps
    else:
        Z = np.zeros((len(dims) * n_steps, n_components))
        for i, d in enumerate(dims):
            Z[i * n_steps:(i + 1) * n_steps, d] = values
        n_rows = len(dims)
    decoded = np.asarray(estimator.inverse_transform(Z))
    vrange = _value_range(decoded, percentile=1.0)

    if fig is None:
        width = 1.0 * n_steps if shape else 1.5 * n_steps
        fig = plt.figure(figsize=(max(width, 4.0) + 0.8, 1.0 * n_rows + 0.9),
                         layout="constrained")
    axes = fig.subplots(n_rows, n_steps, squeeze=False, sharey=shape is None)
    for i in range(n_rows):
        for j in range(n_steps):
            _draw_tile(axes[i, j], decoded[i * n_steps + j], shape, vrange)
    for j, v in enumerate(values):
        if grid:
            axes[-1, j].set_xlabel(f"{v:+.3g}")
        else:
            axes[0, j].set_title(f"{v:+.3g}", fontsize="medium")
    if grid:
        for i, v in enumerate(values[::-1]):
            axes[i, 0].set_ylabel(f"{v:+.3g}", rotation=0, ha="right", va="center")
        fig.supxlabel("latent 0")
        fig.supylabel("latent 1")
        fig.suptitle("Decoded 2-D latent space")
    else:
        for i, d in enumerate(dims):
            axes[i, 0].set_ylabel(f"latent {d}", rotation=0, ha="right", va="center")
        fig.supxlabel("value of the traversed latent (prior standard deviations)")
        fig.suptitle("Latent traversals (other latents at the prior mean 0)")
    return fig


# ------------------------------------------------------------------ training history


def plot_training_history(estimator, *, ax=None):
    """Training and validation loss per epoch, with the best epoch marked.

    The loss is the negative ELBO per sample, in nats, in the units of X, as
    ``history_`` records it: the validation curve is on the same scale as
    ``-estimator.score``. The training loss weights
    the KL term by the epoch's KL weight (``beta``, ramped up during
    ``kl_warmup_epochs``) and averages over the epoch's mini-batches while the
    weights change; the validation loss is computed at the end of the epoch
    with weight ``beta``.

    Parameters
    ----------
    estimator : VAETransformer
        A fitted estimator.

    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes: a "training" line (one point per epoch), a "validation" line
        when validation losses were recorded (``early_stopping=True``), and a
        dashed vertical line at the epoch whose weights the model kept (the
        lowest validation loss of the last ``fit`` after the KL warm-up), and
        a grey band over the epochs of the KL warm-up, if any.
    """
    check_is_fitted(estimator)
    plt = _pyplot("plot_training_history")
    history = estimator.history_
    epochs = np.array([record["epoch"] for record in history])
    train = np.array([record["train_loss"] for record in history])
    valid = [(record["epoch"], record["valid_loss"]) for record in history
             if "valid_loss" in record]

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(epochs, train, color="C0", label="training")
    if valid:
        v_epochs, v_loss = np.array(valid).T
        ax.plot(v_epochs, v_loss, color="C1", label="validation")
    warmup = [record["epoch"] for record in history
              if record.get("kl_weight", estimator.beta) < estimator.beta]
    if warmup:
        ax.axvspan(min(warmup) - 0.5, max(warmup) + 0.5, color="0.9", zorder=0,
                   label="KL warm-up (early stopping waits)")
    best = _best_epoch(history, getattr(estimator, "kl_warmup_epochs", 0))
    if best is not None:
        stopped = len(history) < _last_fit_max_epochs(estimator, history)
        what = "early stopping: " if stopped else ""
        start = " = the starting weights" if best == _last_fit_start(history) else ""
        ax.axvline(best, color="k", linestyle="--", lw=1,
                   label=f"{what}best epoch {best}{start} (weights kept)")
    ax.set(xlabel="epoch", ylabel="loss: -ELBO (nats per sample)",
           title="Training history")
    ax.legend()
    return ax


def _best_epoch(history, kl_warmup_epochs=0):
    """Epoch whose weights early stopping kept, or None.

    skvae's early stopping (``_net.WarmupEarlyStopping``) restores the epoch
    with the lowest validation loss of the last ``fit`` after the KL warm-up,
    and flags it ``valid_loss_best`` in the history (its best-so-far restarts
    with every fit): the last flagged epoch. The weights the fit started from
    (a linear model, or the previous fit's) compete as well: when no epoch of a
    fit that ran past its warm-up is flagged, they were kept, shown as the epoch
    before the fit's first (0 for a first fit). Without a validation loss in
    the last epoch (no early stopping, or ``partial_fit`` afterwards) the
    weights are the last epoch's: None.
    """
    if not len(history) or "valid_loss" not in history[-1]:
        return None
    for record in reversed(history):
        if "valid_loss" not in record:
            return None
        if record.get("valid_loss_best"):
            return record["epoch"]
    start = _last_fit_start(history)
    if len(history) - start > kl_warmup_epochs:
        return start
    return None


def _last_fit_start(history):
    """Epochs before the last fit (whose epochs are the trailing ones with a validation loss)."""
    n_valid = 0
    for record in reversed(history):
        if "valid_loss" not in record:
            break
        n_valid += 1
    return len(history) - n_valid


def _last_fit_max_epochs(estimator, history):
    """Epochs the history would have if the last fit had run to max_epochs."""
    n_valid = len(history) - _last_fit_start(history)
    # the last call's budget in epochs (max_epochs="auto" resolves it from the data's size)
    max_epochs = getattr(estimator, "max_epochs_", n_valid)
    return len(history) - n_valid + max_epochs


# ---------------------------------------------------------------------- comparison

_PANELS = [
    ("log_likelihood", "held-out log-likelihood\n(nats per sample, higher is better)",
     "Log-likelihood"),
    ("reconstruction_mse", "reconstruction MSE\n(units of X squared, lower is better)",
     "Reconstruction error"),
    ("accuracy", "accuracy", "Classifier on the codes: accuracy"),
    ("f1_macro", "macro F1", "Classifier on the codes: macro F1"),
    ("roc_auc_ovr", "one-vs-rest ROC AUC", "Classifier on the codes: ROC AUC"),
    ("fit_seconds", "fit time (s, log scale)", "Fit time"),
]


def plot_comparison(report, *, fig=None):
    """Draw the table of :func:`skvae.evaluation.compare_with_pca`.

    One panel per metric against ``n_components``, one line per method:
    held-out log-likelihood (the VAE's ELBO solid, its IWAE estimate dashed),
    reconstruction MSE, the classifier's accuracy, macro F1 and ROC AUC (only
    when the report has them, i.e. ``y`` was given) and fit time.

    Parameters
    ----------
    report : pandas.DataFrame
        The output of :func:`~skvae.evaluation.compare_with_pca` (columns
        ``method``, ``n_components``, ``log_likelihood``, ... ; rows may be
        filtered or concatenated).

    fig : matplotlib Figure, default=None
        Figure to draw on; a new one when None.

    Returns
    -------
    fig : matplotlib Figure
        The figure; ``fig.axes`` holds 3 panels (log-likelihood, MSE, fit
        time) or, with classification metrics, 6.
    """
    plt = _pyplot("plot_comparison")
    if not isinstance(report, pd.DataFrame):
        raise ValueError(f"report must be the DataFrame of compare_with_pca; got "
                         f"{type(report).__name__}.")
    required = {"method", "n_components", "log_likelihood", "reconstruction_mse"}
    missing = sorted(required - set(report.columns))
    if missing or report.empty:
        raise ValueError(f"report must be the DataFrame of compare_with_pca, with columns "
                         f"{sorted(required)} and at least one row; missing {missing}, "
                         f"{len(report)} rows.")
    panels = [p for p in _PANELS if p[0] in report.columns and report[p[0]].notna().any()]
    if fig is None:
        fig = plt.figure(figsize=(12, 3.6 if len(panels) <= 3 else 7), layout="constrained")
    ncols = 3
    axes = fig.subplots((len(panels) + ncols - 1) // ncols, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.remove()
    methods = sorted(dict.fromkeys(report["method"]), key=lambda m: m != "PCA")  # PCA first
    ticks = sorted(set(report["n_components"]))
    for ax, (column, ylabel, title) in zip(axes, panels):
        for i, method in enumerate(methods):
            rows = report[report["method"] == method].sort_values("n_components")
            ax.plot(rows["n_components"], rows[column], marker="o", color=f"C{i}",
                    label=method + (" (ELBO)" if column == "log_likelihood"
                                    and "log_likelihood_iwae" in rows
                                    and rows["log_likelihood_iwae"].notna().any() else ""))
            if column == "log_likelihood" and "log_likelihood_iwae" in rows \
                    and rows["log_likelihood_iwae"].notna().any():
                ax.plot(rows["n_components"], rows["log_likelihood_iwae"], marker="s",
                        linestyle="--", color=f"C{i}", label=f"{method} (IWAE)")
        if column == "fit_seconds":
            ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.set(xlabel="n_components", ylabel=ylabel, title=title)
    axes[0].legend(fontsize="small")
    fig.suptitle("Held-out comparison")
    return fig
