"""Tests of the figures (skvae/plotting.py): they assert on the artists drawn."""

import copy
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

from skvae import VAETransformer, plotting
from skvae._data import validation_split
from skvae._training import RandomStreams
from skvae.evaluation import COLUMNS
from skvae.plotting import (plot_comparison, plot_latent_space, plot_latent_traversal,
                            plot_reconstructions, plot_training_history)

from conftest import FIXTURE_PARAMS

# init="random": a fit that improves on its starting weights for a few epochs;
# tol=0: it stops n_iter_no_change epochs after its best one
ES_PARAMS = dict(FIXTURE_PARAMS, early_stopping=True, max_epochs=200, n_iter_no_change=3,
                 tol=0.0, init="random")


@pytest.fixture(scope="module")
def vae3(digits):
    """Three latent components, trained with early stopping (stops well before 200)."""
    return VAETransformer(3, **ES_PARAMS).fit(digits[0])


@pytest.fixture(scope="module")
def blobs_vae(blobs):
    """Five features: not an image, so feature profiles are drawn."""
    return VAETransformer(2, **FIXTURE_PARAMS).fit(blobs[0])


def _images(ax):
    return ax.get_images()


# ------------------------------------------------------------------ latent space


def test_latent_space_2d_with_classes(pyplot, fitted_vae, digits):
    X, y = digits
    ax = plot_latent_space(fitted_vae, X, y)
    assert len(ax.collections) == 1
    assert_allclose(ax.collections[0].get_offsets(), fitted_vae.transform(X))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latent 0", "latent 1")
    assert "posterior means" in ax.get_title()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [str(c) for c in range(10)]
    assert len(ax.figure.axes) == 1  # a legend, no colour bar
    # each point has its class's colour, the one of the legend entry
    ax.figure.canvas.draw()
    faces = ax.collections[0].get_facecolors()
    handles = legend.legend_handles
    for label in (0, 3, 9):
        expected = pyplot.matplotlib.colors.to_rgba(handles[label].get_color())
        assert_allclose(faces[y == label], np.tile(expected, ((y == label).sum(), 1)))
    assert len({tuple(f) for f in faces}) == 10


def test_latent_space_continuous_y_gets_a_colorbar(pyplot, fitted_vae, digits):
    X = digits[0]
    y = X[:, 20] + 0.5  # floats: continuous
    ax = plot_latent_space(fitted_vae, X, y)
    assert ax.get_legend() is None
    assert len(ax.figure.axes) == 2
    colorbar_ax = ax.figure.axes[1]
    assert colorbar_ax.get_ylabel() == "y"
    assert_allclose(ax.collections[0].get_array(), y)


def test_latent_space_without_y_is_one_colour(pyplot, fitted_vae, digits):
    ax = plot_latent_space(fitted_vae, digits[0])
    ax.figure.canvas.draw()
    faces = ax.collections[0].get_facecolors()
    assert len(ax.collections[0].get_offsets()) == 200
    assert len({tuple(f) for f in faces}) == 1
    assert ax.get_legend() is None and len(ax.figure.axes) == 1


def test_latent_space_draws_on_the_given_axes(pyplot, fitted_vae, digits):
    _, (left, right) = pyplot.subplots(1, 2)
    assert plot_latent_space(fitted_vae, digits[0], ax=right, s=3) is right
    assert not left.collections and len(right.collections) == 1
    assert_allclose(right.collections[0].get_sizes(), [3])


def test_latent_space_tsne_above_two_components(pyplot, vae3, digits_test):
    X, y = digits_test
    ax = plot_latent_space(vae3, X, y)  # auto: 100 samples, 3 components -> t-SNE
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("t-SNE 1", "t-SNE 2")
    assert "t-SNE" in ax.get_title() and "3-D" in ax.get_title()
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (100, 2)
    # seeded: the same picture twice
    again = plot_latent_space(vae3, X, y, method="tsne").collections[0].get_offsets()
    assert_allclose(again, offsets)


def test_latent_space_pca(pyplot, vae3, digits_test, monkeypatch):
    X = digits_test[0]
    expected = PCA(2, random_state=0).fit_transform(vae3.transform(X))
    ax = plot_latent_space(vae3, X, method="pca")
    assert_allclose(ax.collections[0].get_offsets(), expected)
    assert ax.get_xlabel() == "PCA 1 of the latent means"
    # "auto" falls back to PCA above TSNE_MAX_SAMPLES samples
    monkeypatch.setattr(plotting, "TSNE_MAX_SAMPLES", 50)
    ax = plot_latent_space(vae3, X)
    assert_allclose(ax.collections[0].get_offsets(), expected)


def test_latent_space_one_component(pyplot, digits):
    vae = VAETransformer(1, **FIXTURE_PARAMS).fit(digits[0])
    ax = plot_latent_space(vae, digits[0])
    offsets = ax.collections[0].get_offsets()
    assert_allclose(offsets[:, 0], vae.transform(digits[0])[:, 0])
    assert ax.get_xlabel() == "latent 0" and "jitter" in ax.get_title()


def test_latent_space_bad_arguments(pyplot, fitted_vae, vae3, digits):
    X, y = digits
    with pytest.raises(ValueError, match="method must be"):
        plot_latent_space(fitted_vae, X, method="umap")
    with pytest.raises(ValueError, match="method='none'.*n_components=3.*'tsne'"):
        plot_latent_space(vae3, X, method="none")
    with pytest.raises(ValueError, match=r"one value per sample of X \(200\)"):
        plot_latent_space(fitted_vae, X, y[:10])


# -------------------------------------------------------------- reconstructions


def test_reconstructions_images(pyplot, fitted_vae, digits):
    X = digits[0]
    fig = plot_reconstructions(fitted_vae, X, n_images=4)
    assert len(fig.axes) == 8
    top, bottom = fig.axes[:4], fig.axes[4:]
    expected = fitted_vae.inverse_transform(fitted_vae.transform(X[:4]))
    for j in range(4):
        (original,), (reconstruction,) = _images(top[j]), _images(bottom[j])
        # upright: row-major 8x8 drawn from the top row down
        assert original.get_array().shape == (8, 8)
        assert original.origin == "upper"
        assert_array_equal(original.get_array(), X[j].reshape(8, 8))
        assert_allclose(reconstruction.get_array(), expected[j].reshape(8, 8))
        assert original.get_cmap().name == "gray_r"
        assert original.get_clim() == reconstruction.get_clim() == (X[:4].min(), X[:4].max())
        assert not top[j].get_xticks().size and not top[j].get_yticks().size
    assert top[0].get_ylabel() == "original"
    assert bottom[0].get_ylabel() == "reconstruction"
    assert "reconstructions" in fig.get_suptitle()


def test_reconstructions_show_missing_values(pyplot, fitted_vae, digits):
    X = digits[0][:2].copy()
    X[0, :5] = np.nan
    fig = plot_reconstructions(fitted_vae, X, n_images=2)
    original = _images(fig.axes[0])[0]
    assert original.get_array().mask.ravel()[:5].all()  # NaN: drawn in the "bad" colour
    assert original.get_cmap().get_bad() == pytest.approx(
        pyplot.matplotlib.colors.to_rgba(plotting.MISSING_COLOR))
    assert original.get_clim() == (np.nanmin(X), np.nanmax(X))
    reconstruction = _images(fig.axes[2])[0].get_array()
    assert np.isfinite(reconstruction).all()
    assert_allclose(reconstruction, fitted_vae.inverse_transform(
        fitted_vae.transform(X[:1])).reshape(8, 8))


def test_reconstructions_shapes_and_counts(pyplot, fitted_vae, digits):
    X = digits[0]
    fig = plot_reconstructions(fitted_vae, X[:3], n_images=10)  # fewer samples than asked
    assert len(fig.axes) == 6
    fig = plot_reconstructions(fitted_vae, sp.csr_matrix(X), image_shape=(4, 16), n_images=2)
    assert _images(fig.axes[0])[0].get_array().shape == (4, 16)
    assert_array_equal(_images(fig.axes[1])[0].get_array(), X[1].reshape(4, 16))
    given = pyplot.figure()
    assert plot_reconstructions(fitted_vae, X, n_images=1, fig=given) is given


def test_reconstructions_profiles(pyplot, blobs_vae, blobs):
    X = blobs[0]
    fig = plot_reconstructions(blobs_vae, X, n_images=3)
    assert len(fig.axes) == 6
    expected = blobs_vae.inverse_transform(blobs_vae.transform(X[:3]))
    for j in range(3):
        (top,), (bottom,) = fig.axes[j].get_lines(), fig.axes[3 + j].get_lines()
        assert_array_equal(top.get_xdata(), np.arange(5))
        assert_array_equal(top.get_ydata(), X[j])
        assert_allclose(bottom.get_ydata(), expected[j])
        assert not _images(fig.axes[j])
    assert fig.get_supxlabel() == "feature index"


@pytest.mark.parametrize("kwargs, match", [
    ({"image_shape": (7, 7)}, r"image_shape=\(7, 7\) does not fit the 64 features"),
    ({"image_shape": 8}, "tuple of ints"),
    ({"n_images": 0}, "n_images must be an int >= 1"),
])
def test_reconstructions_bad_arguments(pyplot, fitted_vae, digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_reconstructions(fitted_vae, digits[0], **kwargs)


# ------------------------------------------------------------------ traversals


def test_traversal_grid_for_two_components(pyplot, fitted_vae):
    fig = plot_latent_traversal(fitted_vae, n_steps=3, span=2.0)
    assert len(fig.axes) == 9
    assert all(len(_images(ax)) == 1 for ax in fig.axes)
    # top left: latent 0 lowest, latent 1 highest; bottom right the opposite
    for index, z in [(0, [-2.0, 2.0]), (2, [2.0, 2.0]), (8, [2.0, -2.0]), (4, [0.0, 0.0])]:
        expected = fitted_vae.inverse_transform(np.array([z]))[0].reshape(8, 8)
        assert_allclose(_images(fig.axes[index])[0].get_array(), expected)
    assert [fig.axes[i].get_xlabel() for i in (6, 7, 8)] == ["-2", "+0", "+2"]
    assert [fig.axes[i].get_ylabel() for i in (0, 3, 6)] == ["+2", "+0", "-2"]
    assert (fig.get_supxlabel(), fig.get_supylabel()) == ("latent 0", "latent 1")
    clims = {_images(ax)[0].get_clim() for ax in fig.axes}
    assert len(clims) == 1


def test_traversal_rows(pyplot, fitted_vae, vae3):
    fig = plot_latent_traversal(fitted_vae, dims=[1], n_steps=5)
    assert len(fig.axes) == 5
    values = np.linspace(-3, 3, 5)
    Z = np.column_stack([np.zeros(5), values])
    expected = fitted_vae.inverse_transform(Z)
    for j in range(5):
        assert_allclose(_images(fig.axes[j])[0].get_array(), expected[j].reshape(8, 8))
    assert [ax.get_title() for ax in fig.axes] == ["-3", "-1.5", "+0", "+1.5", "+3"]
    assert fig.axes[0].get_ylabel() == "latent 1"

    fig = plot_latent_traversal(vae3, n_steps=4)  # all three dims, one row each
    assert len(fig.axes) == 12
    assert [fig.axes[4 * i].get_ylabel() for i in range(3)] == [
        "latent 0", "latent 1", "latent 2"]
    fig = plot_latent_traversal(vae3, dims=2, n_steps=4, image_shape=(2, 32))
    assert len(fig.axes) == 4
    assert _images(fig.axes[0])[0].get_array().shape == (2, 32)


def test_traversal_profiles(pyplot, blobs_vae):
    fig = plot_latent_traversal(blobs_vae, dims=[0, 1], n_steps=3, span=1.0)
    assert len(fig.axes) == 6
    expected = blobs_vae.inverse_transform(np.array([[-1.0, 0], [0, 0], [1, 0]]))
    for j in range(3):
        (line,) = fig.axes[j].get_lines()
        assert_allclose(line.get_ydata(), expected[j])


@pytest.mark.parametrize("kwargs, match", [
    ({"dims": [2]}, r"dims must be distinct ints in \[0, 1\].*got \[2\]"),
    ({"dims": [-1]}, "dims must be distinct ints"),
    ({"dims": [0, 0]}, "dims must be distinct ints"),
    ({"dims": []}, "dims must be distinct ints"),
    ({"dims": [0.5]}, "dims must be distinct ints"),
    ({"n_steps": 0}, "n_steps must be an int >= 1"),
    ({"span": -1.0}, "span must be a positive number"),
    ({"span": np.inf}, "span must be a positive number"),
    ({"image_shape": (3, 3)}, "does not fit the 64 features"),
])
def test_traversal_bad_arguments(pyplot, fitted_vae, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_latent_traversal(fitted_vae, **kwargs)


# ------------------------------------------------------------------ history


def test_history_without_validation(pyplot, fitted_vae):
    ax = plot_training_history(fitted_vae)
    (line,) = ax.get_lines()
    assert_array_equal(line.get_xdata(), np.arange(1, fitted_vae.n_epochs_ + 1))
    # history_ is in the units of X already: drawn as recorded
    assert_array_equal(line.get_ydata(), fitted_vae.history_[:, "train_loss"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training"]
    assert ax.get_xlabel() == "epoch"
    assert "nats per sample" in ax.get_ylabel() and "ELBO" in ax.get_ylabel()


def test_history_marks_the_early_stopping_epoch(pyplot, vae3, digits):
    history = vae3.history_
    assert vae3.n_epochs_ < 200  # it did stop early
    valid = np.array(history[:, "valid_loss"])
    best = int(np.argmin(valid)) + 1
    assert vae3.n_epochs_ == best + ES_PARAMS["n_iter_no_change"]

    ax = plot_training_history(vae3)
    train_line, valid_line, marker = ax.get_lines()
    assert len(train_line.get_xdata()) == len(valid_line.get_xdata()) == vae3.n_epochs_
    assert_array_equal(marker.get_xdata(), [best, best])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training", "validation", f"early stopping: best epoch {best} (weights kept)"]

    # the validation curve is -score of the held-out rows: same units, and the
    # kept weights are those of the marked epoch (float32, as in training: the
    # ELBO's noise is derived from the values, so float64 input draws other noise)
    streams = RandomStreams.from_random_state(0)  # the fit's own validation split
    rows = validation_split(200, 0.1, streams.generator("validation_split"))[1].numpy()
    minus_score = -vae3.score(digits[0][rows].astype(np.float32))
    assert_allclose(valid_line.get_ydata()[best - 1], minus_score, rtol=1e-6)
    assert not np.isclose(valid_line.get_ydata()[-1], minus_score, rtol=1e-6)


def test_history_after_partial_fit_has_no_marker(pyplot, vae3, digits):
    vae = copy.deepcopy(vae3).partial_fit(digits[0])  # the weights are now the last epoch's
    ax = plot_training_history(vae)
    train_line, valid_line = ax.get_lines()
    assert len(train_line.get_xdata()) == vae3.n_epochs_ + 1
    assert len(valid_line.get_xdata()) == vae3.n_epochs_
    assert len(ax.get_legend().get_texts()) == 2


def test_history_without_stopping_early(pyplot, digits):
    vae = VAETransformer(2, **dict(ES_PARAMS, max_epochs=4)).fit(digits[0])
    ax = plot_training_history(vae)
    best = 1 + int(np.argmin(vae.history_[:, "valid_loss"]))
    assert ax.get_legend().get_texts()[-1].get_text() == f"best epoch {best} (weights kept)"


def test_history_marks_the_starting_weights_when_they_were_kept(pyplot, digits):
    # from factor analysis's weights, a learning rate of 0.5 only makes things
    # worse on the held-out rows: early stopping keeps the weights it started from
    vae = VAETransformer(3, **dict(ES_PARAMS, init="factor_analysis", learning_rate=0.5)
                         ).fit(digits[0])
    history = vae.history_
    assert not any(history[:, "valid_loss_best"])
    assert vae.n_epochs_ == ES_PARAMS["n_iter_no_change"]
    ax = plot_training_history(vae)
    marker = ax.get_lines()[-1]
    assert_array_equal(marker.get_xdata(), [0, 0])
    assert ax.get_legend().get_texts()[-1].get_text() == (
        "early stopping: best epoch 0 = the starting weights (weights kept)")


def test_history_shades_the_kl_warmup(pyplot, digits):
    vae = VAETransformer(2, **dict(ES_PARAMS, max_epochs=12, kl_warmup_epochs=5)).fit(digits[0])
    assert vae.n_epochs_ > 5
    ax = plot_training_history(vae)
    band, = ax.patches
    # epochs 1-5 (KL weights 0, 0.2, ..., 0.8 of beta) are the warm-up
    x0, x1 = band.get_window_extent().x0, band.get_window_extent().x1
    assert_allclose(ax.transData.inverted().transform([[x0, 0], [x1, 0]])[:, 0], [0.5, 5.5])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "KL warm-up (early stopping waits)" in texts
    best = int(ax.get_lines()[-1].get_xdata()[0])
    assert best > 5  # the kept weights come from after the warm-up
    # no warm-up, no band
    assert not plot_training_history(VAETransformer(2, **dict(ES_PARAMS, max_epochs=4)).fit(
        digits[0])).patches


# ------------------------------------------------------------------ comparison


def _report(with_y=True):
    rows = []
    for k in (2, 8):
        for method, iwae in (("PCA", np.nan), ("VAE", -100.0 + k)):
            row = dict.fromkeys(COLUMNS, np.nan)
            row.update(method=method, n_components=k, log_likelihood=-120.0 + k - 5 * (
                method == "PCA"), log_likelihood_iwae=iwae, reconstruction_mse=10.0 / k,
                fit_seconds=0.5 * k, transform_seconds=0.01)
            if with_y:
                row.update(accuracy=0.5 + k / 100, recall_macro=0.5, f1_macro=0.4 + k / 100,
                           roc_auc_ovr=0.9)
            rows.append(row)
    return pd.DataFrame(rows[::-1], columns=COLUMNS)  # unsorted on purpose


def test_comparison_panels_and_lines(pyplot):
    report = _report()
    fig = plot_comparison(report)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == [
        "Log-likelihood", "Reconstruction error", "Classifier on the codes: accuracy",
        "Classifier on the codes: macro F1", "Classifier on the codes: ROC AUC", "Fit time"]
    likelihood = fig.axes[0]
    pca, vae, iwae = likelihood.get_lines()
    assert_array_equal(pca.get_xdata(), [2, 8])
    assert_array_equal(pca.get_ydata(), [-123.0, -117.0])
    assert_array_equal(vae.get_ydata(), [-118.0, -112.0])
    assert_array_equal(iwae.get_ydata(), [-98.0, -92.0])
    assert [t.get_text() for t in likelihood.get_legend().get_texts()] == [
        "PCA", "VAE (ELBO)", "VAE (IWAE)"]
    assert_array_equal(fig.axes[1].get_lines()[0].get_ydata(), [5.0, 1.25])
    assert_allclose(fig.axes[3].get_lines()[1].get_ydata(), [0.42, 0.48])
    assert fig.axes[5].get_yscale() == "log"
    assert all(ax.get_xlabel() == "n_components" for ax in fig.axes)
    assert_array_equal(fig.axes[0].get_xticks(), [2, 8])


def test_comparison_without_labels(pyplot):
    fig = plot_comparison(_report(with_y=False))
    assert [ax.get_title() for ax in fig.axes] == [
        "Log-likelihood", "Reconstruction error", "Fit time"]


@pytest.mark.parametrize("report, match", [
    (np.zeros((2, 3)), "must be the DataFrame of compare_with_pca; got ndarray"),
    (pd.DataFrame({"method": ["PCA"]}), r"missing \['log_likelihood'"),
    (pd.DataFrame(columns=COLUMNS), "0 rows"),
])
def test_comparison_bad_report(pyplot, report, match):
    with pytest.raises(ValueError, match=match):
        plot_comparison(report)


# ------------------------------------------------------------------ common


ESTIMATOR_PLOTS = [
    lambda est, X: plot_latent_space(est, X),
    lambda est, X: plot_reconstructions(est, X),
    lambda est, X: plot_latent_traversal(est),
    lambda est, X: plot_training_history(est),
]


@pytest.mark.parametrize("plot", ESTIMATOR_PLOTS)
def test_unfitted_estimator(pyplot, plot, digits):
    with pytest.raises(NotFittedError):
        plot(VAETransformer(), digits[0])


@pytest.mark.parametrize("plot", ESTIMATOR_PLOTS + [lambda est, X: plot_comparison(_report())])
def test_without_matplotlib(monkeypatch, fitted_vae, digits, plot):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails
    with pytest.raises(ImportError, match=r'needs \'matplotlib\'.*pip install "skvae\[plot\]"'):
        plot(fitted_vae, digits[0])


def test_importing_skvae_does_not_need_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import skvae, skvae.plotting, skvae.evaluation\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
