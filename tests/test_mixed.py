"""Mixed tables: per-column likelihoods, DataFrames in and out, holes anywhere.

Covers skvae/_columns.py, the new likelihoods of skvae/_likelihoods.py and what
VAETransformer and VAEImputer do with a DataFrame of text, two-valued, count and
real columns.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy import stats
from sklearn.utils.validation import check_is_fitted
from sklearn.exceptions import NotFittedError

from skvae import VAEImputer, VAETransformer
from skvae._columns import decode, encode, resolve_columns
from skvae._likelihoods import (LIKELIHOODS, CategoricalLikelihood, MixedLikelihood,
                                NegativeBinomialLikelihood, PoissonLikelihood)

FAST = dict(n_components=2, hidden_layer_sizes=(16,), max_epochs=5, random_state=0)


def make_table(n=120, seed=0):
    rng = np.random.RandomState(seed)
    a = rng.randn(n)
    return pd.DataFrame({
        "x": a,
        "y": 2 * a + 0.3 * rng.randn(n),
        "level": pd.Categorical(np.where(a > 0.5, "hi", np.where(a < -0.5, "lo", "mid")),
                                categories=["lo", "mid", "hi"], ordered=True),
        "answer": np.where(a + 0.3 * rng.randn(n) > 0, "yes", "no"),
        "flag": a > 0,
        "kind": pd.Series(rng.choice(["p", "q", "r"], n), dtype=object),
        "count": rng.poisson(np.exp(a)).astype(np.int64),
    })


@pytest.fixture(scope="module")
def table():
    return make_table()


@pytest.fixture(scope="module")
def fitted(table):
    return VAETransformer(likelihood={"count": "poisson"}, **FAST).fit(table)


# ------------------------------------------------------------ resolution


def test_auto_resolves_each_column_from_its_dtype(table):
    layout, name = resolve_columns(table, "auto")
    assert name is None
    assert dict(zip(layout["columns"], layout["kinds"])) == {
        "x": "gaussian", "y": "gaussian", "level": "categorical", "answer": "bernoulli",
        "flag": "bernoulli", "kind": "categorical", "count": "gaussian"}
    assert layout["categories"][2] == ["lo", "mid", "hi"]
    assert layout["categories"][4] == [False, True]


def test_mapping_sets_counts_and_overrides_dtypes(table):
    vae = VAETransformer(likelihood={"count": "poisson", "answer": "categorical"}, **FAST)
    vae.fit(table)
    assert vae.likelihoods_["count"] == "poisson"
    assert vae.likelihoods_["answer"] == "categorical"
    assert vae.likelihoods_["kind"] == "categorical"  # unnamed: as by "auto"


def test_numeric_data_keep_one_gaussian_likelihood(table):
    X = table[["x", "y"]]
    auto = VAETransformer(**FAST).fit(X)
    gaussian = VAETransformer(likelihood="gaussian", **FAST).fit(X.to_numpy())
    assert auto.likelihoods_ == {"x": "gaussian", "y": "gaussian"}
    assert auto.module_.likelihood == "gaussian"
    assert np.array_equal(auto.transform(X), gaussian.transform(X.to_numpy()))
    assert np.array_equal(auto.score_samples(X), gaussian.score_samples(X.to_numpy()))


@pytest.mark.parametrize("likelihood, match", [
    ({"nope": "poisson"}, "column 'nope'"),
    ({"x": "poison"}, "not a likelihood"),
    ({"answer": "gaussian"}, "Column 'answer'"),
    ({"kind": "bernoulli"}, "3 categories"),
])
def test_bad_mappings_are_clear_errors(table, likelihood, match):
    vae = VAETransformer(likelihood=likelihood, **FAST)
    with pytest.raises(ValueError, match=match):
        vae.fit(table)
    with pytest.raises(NotFittedError):
        check_is_fitted(vae)


def test_count_columns_need_counts(table):
    bad = table.assign(count=table["count"] - 5)
    with pytest.raises(ValueError, match="Column 'count' must hold non-negative integer"):
        VAETransformer(likelihood={"count": "poisson"}, **FAST).fit(bad)


# --------------------------------------------------------- likelihoods


def _logits(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_categorical_log_prob_matches_scipy():
    out = _logits((6, 4))
    codes = np.array([0, 1, 2, 3, 1, 0])
    x = torch.nn.functional.one_hot(torch.as_tensor(codes), 4).double()
    p = torch.softmax(out, -1).numpy()
    expected = [stats.multinomial(1, p[i]).logpmf(x[i].numpy()) for i in range(6)]
    got = CategoricalLikelihood(4).log_prob(x, out).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    observed = torch.zeros(6, 4, dtype=torch.bool)  # a missing cell adds nothing
    assert np.all(CategoricalLikelihood(4).log_prob(x, out, observed).numpy() == 0)


def test_bernoulli_log_prob_matches_scipy():
    out = _logits((5, 3))
    x = (torch.rand(5, 3, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    p = torch.sigmoid(out).numpy()
    expected = stats.bernoulli(p).logpmf(x.numpy()).sum(1)
    np.testing.assert_allclose(LIKELIHOODS["bernoulli"](3).log_prob(x, out).numpy(),
                               expected, rtol=1e-10)


def test_poisson_log_prob_matches_scipy():
    out = _logits((5, 3))
    x = torch.tensor(np.random.RandomState(0).poisson(2.0, (5, 3)), dtype=torch.float64)
    expected = stats.poisson(np.exp(out.numpy())).logpmf(x.numpy()).sum(1)
    np.testing.assert_allclose(PoissonLikelihood(3).log_prob(x, out).numpy(), expected,
                               rtol=1e-10)


def test_negative_binomial_log_prob_matches_scipy():
    out = _logits((5, 3))
    x = torch.tensor(np.random.RandomState(0).poisson(3.0, (5, 3)), dtype=torch.float64)
    nb = NegativeBinomialLikelihood(3).double().reset_parameters()
    with torch.no_grad():
        nb.log_theta.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    theta, mu = np.exp([-1.0, 0.0, 2.0]), np.exp(out.numpy())
    expected = stats.nbinom(theta, theta / (theta + mu)).logpmf(x.numpy()).sum(1)
    np.testing.assert_allclose(nb.log_prob(x, out).detach().numpy(), expected, rtol=1e-8)


def test_negative_binomial_draws_have_its_mean_and_variance():
    nb = NegativeBinomialLikelihood(1).double().reset_parameters()  # theta = 1
    out = torch.full((20000, 1), np.log(4.0), dtype=torch.float64)
    draws = nb.sample(out, generator=torch.Generator().manual_seed(0)).numpy()
    assert abs(draws.mean() - 4.0) < 0.15
    assert abs(draws.var() - (4.0 + 16.0)) < 1.5  # mu + mu**2 / theta


def test_mixed_log_prob_is_the_sum_of_its_groups():
    groups = [["gaussian", 2, {}], ["poisson", 1, {}], ["categorical", 3, {}]]
    mixed = MixedLikelihood(6, groups).double().reset_parameters()
    out = _logits((4, 6))
    x = torch.cat([_logits((4, 2), 1), torch.tensor([[0.], [1.], [2.], [3.]], dtype=torch.float64),
                   torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]]], dim=1)
    parts = mixed.parts
    expected = (parts[0].log_prob(x[:, :2], out[:, :2]) + parts[1].log_prob(x[:, 2:3], out[:, 2:3])
                + parts[2].log_prob(x[:, 3:], out[:, 3:]))
    torch.testing.assert_close(mixed.log_prob(x, out), expected)
    assert mixed.standardized_features().tolist() == [True, True] + [False] * 4


# ------------------------------------------------------ DataFrame in and out


def test_inverse_transform_and_sample_give_the_fitted_table(fitted, table):
    for out in (fitted.inverse_transform(fitted.transform(table)), fitted.sample(7)):
        assert list(out.columns) == list(table.columns)
        assert out.dtypes.to_dict() == table.dtypes.to_dict()
        assert out["level"].cat.categories.tolist() == ["lo", "mid", "hi"]
        assert out["level"].cat.ordered
        assert set(out["answer"]) <= {"no", "yes"}
        assert set(out["kind"]) <= {"p", "q", "r"}
        assert (out["count"] >= 0).all()


def test_the_mean_decodes_to_the_most_probable_category():
    layout, _ = resolve_columns(pd.DataFrame({"c": ["a", "b", "c"], "b": ["u", "v", "u"]}),
                                "auto")
    # encoded order: bernoulli b, then the one-hot columns of c
    encoded = np.array([[0.7, 0.1, 0.2, 0.7], [0.2, 0.5, 0.3, 0.2]])
    out = decode(layout, encoded)
    assert out["c"].tolist() == ["c", "a"]
    assert out["b"].tolist() == ["v", "u"]


def test_sample_is_reproducible_and_draws_categories(fitted):
    a, b = fitted.sample(50, random_state=1), fitted.sample(50, random_state=1)
    pd.testing.assert_frame_equal(a, b)
    assert a["kind"].nunique() > 1  # draws, not one most probable category


def test_holes_in_any_column_are_missing_cells(table):
    rows = np.arange(len(table))
    holey = table.assign(
        kind=table["kind"].astype(object).where(rows != 0, None),
        answer=table["answer"].where(rows != 1, np.nan),
        level=table["level"].where(rows != 2),
        count=table["count"].astype("Int64").where(rows != 3, pd.NA))
    layout, _ = resolve_columns(holey, {"count": "poisson"})
    encoded = encode(layout, holey)
    start, stop = layout["slices"][list(holey.columns).index("kind")]
    assert np.isnan(encoded[0, start:stop]).all()
    assert np.isnan(encoded[:4]).any(axis=1).all() and not np.isnan(encoded[4:]).any()
    vae = VAETransformer(likelihood={"count": "poisson"}, **FAST).fit(holey)
    assert np.isfinite(vae.score_samples(holey)).all()
    assert np.isfinite(vae.transform(holey)).all()


def test_an_unseen_category_is_an_error_naming_the_column(fitted, table):
    new = table.assign(kind=table["kind"].where(np.arange(len(table)) != 5, "zz"))
    with pytest.raises(ValueError, match="Column 'kind' holds the category 'zz'"):
        fitted.transform(new)


def test_a_table_scores_the_sum_of_its_cells(fitted, table):
    # one cell left out: the row's likelihood loses that cell's term, so a row of
    # only discrete cells scores at most 0 nats
    discrete = table[["answer", "kind", "level"]]
    vae = VAETransformer(**FAST).fit(discrete)
    assert (vae.score_samples(discrete) <= 1e-9).all()


def test_int_random_state_gives_identical_fits_and_leaves_global_state(table):
    np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
    a = VAETransformer(**FAST).fit(table).transform(table)
    b = VAETransformer(**FAST).fit(table).transform(table)
    assert np.array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_warm_start_and_partial_fit_keep_the_layout(table):
    vae = VAETransformer(warm_start=True, **FAST).fit(table)
    layout = vae.likelihoods_
    vae.fit(table)
    vae.partial_fit(table)
    assert vae.likelihoods_ == layout and vae.n_epochs_ > 10


def test_categorical_on_an_array_gives_an_array_of_categories():
    X = np.random.RandomState(0).randint(0, 3, (60, 4)).astype(np.float64)
    vae = VAETransformer(likelihood="categorical", warm_start=True, **FAST).fit(X)
    vae.fit(X)  # the layout is kept
    out = vae.inverse_transform(vae.transform(X))
    assert isinstance(out, np.ndarray) and out.shape == X.shape
    assert set(np.unique(out)) <= {0.0, 1.0, 2.0}
    assert vae.likelihoods_ == {j: "categorical" for j in range(4)}


# ------------------------------------------------------------ counts alone


def test_sparse_count_matrix_with_poisson():
    rng = np.random.RandomState(0)
    dense = rng.poisson(0.3, (80, 12)).astype(np.float64)
    X = sp.csr_matrix(dense)
    vae = VAETransformer(likelihood="poisson", **FAST).fit(X)
    assert vae.likelihoods_ == {j: "poisson" for j in range(12)}
    np.testing.assert_allclose(vae.score_samples(X), vae.score_samples(dense), rtol=1e-6)
    assert (vae.inverse_transform(vae.transform(X)) > 0).all()  # rates
    with pytest.raises(ValueError, match="non-negative integer counts"):
        vae.score(-X)


def test_negative_binomial_fits_counts():
    rng = np.random.RandomState(0)
    X = rng.negative_binomial(2, 0.3, (100, 6)).astype(np.float64)
    vae = VAETransformer(likelihood="negative_binomial", **FAST).fit(X)
    assert np.isfinite(vae.score(X))
    assert vae.sample(3).shape == (3, 6)


# ------------------------------------------------------------------ imputer


def test_imputer_fills_text_holes_with_categories(table):
    rng = np.random.RandomState(0)
    holey = table.astype({"kind": object, "answer": object, "flag": object})
    holey = holey.apply(lambda column: column.where(rng.rand(len(column)) >= 0.2))
    dtypes = holey.dtypes.to_dict()
    imputer = VAEImputer(likelihood={"count": "poisson"}, max_epochs=5, random_state=0)
    filled = imputer.fit(holey).transform(holey)
    assert filled.dtypes.to_dict() == dtypes
    assert not filled.isna().any().any()
    observed = holey.notna()
    for column in holey.columns:
        pd.testing.assert_series_equal(filled[column][observed[column]],
                                       holey[column][observed[column]])
    assert set(filled["kind"]) <= {"p", "q", "r"}
    assert set(filled["level"]) <= {"lo", "mid", "hi"}
    draws = VAEImputer(sample_posterior=True, max_epochs=5, random_state=0).fit(holey)
    first, second = draws.transform(holey), draws.transform(holey)
    assert set(first["kind"]) <= {"p", "q", "r"}
    assert not first.equals(second)  # a new draw every call


def test_imputer_with_indicator_on_a_table(table):
    holey = table.assign(kind=table["kind"].where(np.arange(len(table)) >= 10, None))
    out = VAEImputer(add_indicator=True, max_epochs=5, random_state=0).fit_transform(holey)
    assert out.shape == (len(table), table.shape[1] + 1)
    assert out.iloc[:, -1].tolist() == [True] * 10 + [False] * (len(table) - 10)


# ---------------------------------------------------------- persistence, ONNX


def test_pickle_round_trip_of_a_mixed_model(fitted, table):
    loaded = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(loaded.score_samples(table), fitted.score_samples(table))
    pd.testing.assert_frame_equal(loaded.sample(5, random_state=0),
                                  fitted.sample(5, random_state=0))
    assert loaded.likelihoods_ == fitted.likelihoods_


def test_skops_round_trip_of_a_mixed_model(fitted, table):
    sio = pytest.importorskip("skops.io")
    blob = sio.dumps(fitted)
    assert sio.get_untrusted_types(data=blob) == ["skvae._vae.VAETransformer"]
    loaded = sio.loads(blob, trusted=["skvae._vae.VAETransformer"])
    assert np.array_equal(loaded.transform(table), fitted.transform(table))
    pd.testing.assert_frame_equal(loaded.inverse_transform(loaded.transform(table)),
                                  fitted.inverse_transform(fitted.transform(table)))


def test_onnx_export_refuses_a_mixed_model(fitted):
    pytest.importorskip("skl2onnx")
    from skvae.onnx import to_onnx_decoder

    with pytest.raises(ValueError, match="categorical inputs the export does not encode"):
        to_onnx_decoder(fitted)


# ------------------------------------------------------------ with labels (issue 39)


def test_labels_shape_the_codes_of_a_mixed_table(table):
    """target_weight on a mixed table: the label model joins the table's
    likelihood; transform, score, the decoded table and the imputer keep
    working, and y reaches the imputer's VAE."""
    y = np.where(table["x"] > 0, "up", "down").astype(object)
    y[::4] = -1  # semi-supervised: a quarter without a label
    holes = table.copy()
    holes.loc[::6, "kind"] = None
    vae = VAETransformer(target_weight=0.5, **FAST).fit(holes, y)
    assert vae.target_type_ == "binary" and list(vae.classes_) == ["down", "up"]
    assert vae.likelihoods_["kind"] == "categorical"
    assert np.isfinite(vae.transform(holes)).all() and np.isfinite(vae.score(holes))
    assert list(vae.inverse_transform(vae.transform(holes[:3])).columns) == list(table.columns)
    imputer = VAEImputer(target_weight=0.5, **FAST).fit(holes, y)
    assert imputer.estimator_.target_type_ == "binary"
    filled = imputer.transform(holes)
    assert filled["kind"].notna().all() and set(filled["kind"]) <= {"p", "q", "r"}
    with pytest.raises(ValueError, match="got no y"):
        VAEImputer(target_weight=0.5, **FAST).fit(holes)
