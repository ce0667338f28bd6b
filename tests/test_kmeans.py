"""LocalEntropyKMeans: the exact mini-batch gradient, a fit to a known optimum, input
validation and scikit-learn's estimator contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.utils.estimator_checks import parametrize_with_checks

from lesample import LocalEntropyKMeans
from lesample.kmeans import kmeans_energy, kmeans_grad

# Small settings keep every fit (and its compilation) short.
FAST = dict(max_iter=20, L=5, batch_size=100)


def test_minibatch_gradient_is_autodiff_of_energy():
    kx, kc = jax.random.split(jax.random.key(0))
    X = jax.random.normal(kx, (257, 3))
    C = jax.random.normal(kc, (5, 3))
    np.testing.assert_allclose(kmeans_grad(C, X), jax.grad(kmeans_energy)(C, X),
                               rtol=1e-5, atol=1e-6)
    # The factor: one centre, gradient of the mean squared distance is 2 (c - mean).
    np.testing.assert_allclose(kmeans_grad(C[:1], X)[0], 2 * (C[0] - X.mean(0)), rtol=1e-5)


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    X = np.concatenate([c + 0.5 * rng.standard_normal((150, 2)) for c in centers])
    return X, centers


@pytest.mark.parametrize("init, sampler", [("random", "ula"), ("k-means++", "ula"),
                                           ("random", "heat")])
def test_fit_reaches_the_known_optimum(init, sampler):
    X, centers = _blobs()
    best = KMeans(4, init=centers, n_init=1, tol=0.0).fit(X).inertia_
    km = LocalEntropyKMeans(4, init=init, sampler=sampler, random_state=0, **FAST).fit(X)
    assert km.inertia_ == pytest.approx(best, rel=1e-6)
    assert km.cluster_centers_.shape == (4, 2) and km.n_iter_ > FAST["max_iter"]
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    assert km.score(X) == pytest.approx(-km.inertia_)
    np.testing.assert_allclose(km.transform(X).min(1) ** 2, ((X - km.cluster_centers_[
        km.labels_]) ** 2).sum(1), rtol=1e-6, atol=1e-9)
    again = LocalEntropyKMeans(4, init=init, sampler=sampler, random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)


@pytest.mark.parametrize(
    "params, X, match",
    [
        (dict(n_clusters=3), [[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]], "NaN"),
        (dict(n_clusters=4), [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], "n_clusters"),
        (dict(n_clusters=2), [0.0, 1.0, 2.0], "2D array"),
        (dict(n_clusters=2, gamma=-1.0), None, "`gamma`"),
        (dict(n_clusters=2, lr=0.0), None, "`lr`"),
        (dict(n_clusters=2, L=2.5), None, "`L`"),
        (dict(n_clusters=0), None, "`n_clusters`"),
        (dict(n_clusters=2, sampler="nuts"), None, "`sampler`"),
        (dict(n_clusters=2, init="kmeans"), None, "`init`"),
        (dict(n_clusters=2, init=np.zeros((3, 2))), None, r"`init` array must have shape"),
    ],
)
def test_input_validation_names_the_argument(params, X, match):
    X = np.arange(20.0).reshape(10, 2) if X is None else X
    with pytest.raises(ValueError, match=match):
        LocalEntropyKMeans(**{**FAST, **params}).fit(X)


def test_predict_checks_the_number_of_features():
    X, _ = _blobs()
    km = LocalEntropyKMeans(4, random_state=0, **FAST).fit(X)
    with pytest.raises(ValueError, match="features"):
        km.predict(np.zeros((3, 3)))


def test_trials_vmap():
    from lesample.kmeans import init_centers, kmeans_fit

    X, _ = _blobs()
    Z = jnp.asarray((X - X.mean(0)) / X.std(0).max(), jnp.float32)

    def one(key):
        C0 = init_centers(key, Z, 4, "random")
        return kmeans_fit(key, Z, C0, 0.03, 0.03, 1.0, 0.5, 1e3, 1e-6, batch_size=100,
                          L=5, max_iter=20)[0]

    C = jax.vmap(one)(jax.random.split(jax.random.key(1), 3))
    assert C.shape == (3, 4, 2) and np.all(np.isfinite(C))


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_heat_step_at_zero_scope_is_lloyds_step(lr):
    """At scope ~0 a HEAT step moves each centre ``lr`` of the way to the mean of the batch
    points it owns; on data made of K repeated points, that mean is its point."""
    from lesample.kmeans import kmeans_fit

    points = jnp.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    X = jnp.repeat(points, 50, axis=0)
    C0 = points + jnp.array([[0.5, -0.3], [-0.2, 0.4], [0.3, 0.3]])
    C, lloyd_steps = kmeans_fit(jax.random.key(0), X, C0, 1e-12, 0.0, lr, 0.5, 1e3, 0.0,
                                batch_size=30, L=4, max_iter=1, sampler="heat",
                                max_lloyd=0)
    assert int(lloyd_steps) == 0
    np.testing.assert_allclose(C, C0 + lr * (points - C0), atol=1e-5)


@parametrize_with_checks([LocalEntropyKMeans(random_state=0, **FAST)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
