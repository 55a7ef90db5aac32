"""scikit-learn's estimator checks on small ``VAETransformer`` instances.

The contract says ``expected_failed_checks`` is empty: every check must pass.

``likelihood="bernoulli"`` is not in the list: the checks feed data outside
[0, 1] (standardized blobs, negative values, integers up to 100s), which the
Bernoulli likelihood rejects by design with a ``ValueError`` naming the range seen
(see ``test_bernoulli_rejects_data_outside_unit_interval`` in test_vae.py); about
two dozen checks would fail on that alone, telling nothing about the estimator.
The Bernoulli path is covered by the parametrized tests in test_vae.py.

Both estimators declare the ``allow_nan`` tag, so the checks that feed NaN
expect them to fit and transform it.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skvae import VAEImputer, VAETransformer

SMALL = dict(n_components=2, hidden_layer_sizes=(8,), max_epochs=2, random_state=0)


@parametrize_with_checks(
    [
        VAETransformer(**SMALL, early_stopping=False),
        VAETransformer(**SMALL, early_stopping=True),
        VAEImputer(**SMALL, n_importance_samples=10),
        VAEImputer(**SMALL, n_importance_samples=10, sample_posterior=True, add_indicator=True),
    ],
    expected_failed_checks=lambda estimator: {},
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
