"""LocalEntropyKMeans: the exact mini-batch gradient, SBE's implicit step, a fit to a known
optimum, n_init, empty clusters, deprecated names, input validation and scikit-learn's
estimator contract."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from lesample import LocalEntropyKMeans
from lesample.kmeans import (
    KMeansHyper,
    init_centers,
    kmeans_descent,
    kmeans_energy,
    kmeans_grad,
    kmeans_trials,
    lloyd,
)

# Small settings keep every fit (and its compilation) short.
FAST = dict(max_iter=20, num_steps=5, batch_size=100, n_init=2)


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


@pytest.mark.parametrize("init, method", [("random", "sbe"), ("k-means++", "sbe"),
                                          ("random", "heat"), ("random", "entropy-sgd")])
def test_fit_reaches_the_known_optimum(init, method):
    X, centers = _blobs()
    best = KMeans(4, init=centers, n_init=1, tol=0.0).fit(X).inertia_
    km = LocalEntropyKMeans(4, init=init, method=method, random_state=0, **FAST).fit(X)
    assert km.inertia_ == pytest.approx(best, rel=1e-6)
    assert km.cluster_centers_.shape == (4, 2) and km.n_iter_ > FAST["max_iter"]
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    assert km.score(X) == pytest.approx(-km.inertia_)
    np.testing.assert_allclose(km.transform(X).min(1) ** 2, ((X - km.cluster_centers_[
        km.labels_]) ** 2).sum(1), rtol=1e-6, atol=1e-9)
    again = LocalEntropyKMeans(4, init=init, method=method, random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)


@pytest.mark.parametrize(
    "params, X, match",
    [
        (dict(n_clusters=3), [[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]], "NaN"),
        (dict(n_clusters=4), [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], "n_clusters"),
        (dict(n_clusters=2), [0.0, 1.0, 2.0], "2D array"),
        (dict(n_clusters=2, gamma=-1.0), None, "`gamma`"),
        (dict(n_clusters=2, learning_rate=0.0), None, "`learning_rate`"),
        (dict(n_clusters=2, n_init=0), None, "`n_init`"),
        (dict(n_clusters=2, scoping=1.0), None, "`scoping`"),
        (dict(n_clusters=0), None, "`n_clusters`"),
        (dict(n_clusters=2, sampler="nuts"), None, "`sampler`"),
        (dict(n_clusters=2, method="lloyd"), None, "`method`"),
        (dict(n_clusters=2, init="kmeans"), None, "`init`"),
        (dict(n_clusters=2, init=np.zeros((3, 2))), None, r"`init` array must have shape"),
    ],
)
def test_input_validation_names_the_argument(params, X, match):
    X = np.arange(20.0).reshape(10, 2) if X is None else X
    with pytest.raises(ValueError, match=match):
        LocalEntropyKMeans(**{**FAST, **params}).fit(X)


@pytest.mark.parametrize("params, match", [(dict(num_steps=2.5), "`num_steps`"),
                                           (dict(gamma="1"), "`gamma`"),
                                           (dict(n_init=True), "`n_init`")])
def test_wrong_kinds_are_type_errors_naming_the_argument(params, match):
    with pytest.raises(TypeError, match=match):
        LocalEntropyKMeans(2, **{**FAST, **params}).fit(np.arange(20.0).reshape(10, 2))


def test_predict_checks_the_number_of_features():
    X, _ = _blobs()
    km = LocalEntropyKMeans(4, random_state=0, **FAST).fit(X)
    with pytest.raises(ValueError, match="features"):
        km.predict(np.zeros((3, 3)))


def test_trials_vmap():
    X, _ = _blobs()
    Z = jnp.asarray((X - X.mean(0)) / X.std(0).max(), jnp.float32)
    C, energies, steps = kmeans_trials(jax.random.split(jax.random.key(1), 3), Z,
                                       KMeansHyper(gamma=0.03, scoping=0.03), n_clusters=4,
                                       batch_size=100, num_steps=5, max_iter=20)
    assert C.shape == (3, 4, 2) and np.all(np.isfinite(C))
    np.testing.assert_allclose(energies, jax.vmap(kmeans_energy, (0, None))(C, Z), rtol=1e-6)
    assert steps.shape == (3,)


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_heat_step_at_zero_scope_is_lloyds_step(lr):
    """At scope ~0 a HEAT step moves each centre ``lr`` of the way to the mean of the batch
    points it owns; on data made of K repeated points, that mean is its point."""
    points = jnp.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    X = jnp.repeat(points, 50, axis=0)
    C0 = points + jnp.array([[0.5, -0.3], [-0.2, 0.4], [0.3, 0.3]])
    C = kmeans_descent(jax.random.key(0), X, C0, KMeansHyper(gamma=1e-12, learning_rate=lr),
                       method="heat", batch_size=30, num_steps=4, max_iter=1)
    C, lloyd_steps = lloyd(C, X, 0.0, 0)
    assert int(lloyd_steps) == 0
    np.testing.assert_allclose(C, C0 + lr * (points - C0), atol=1e-5)


def _sbe(x, p, gamma, num_steps, lr=1.0, max_rate=np.inf):
    """One SBE outer step for one centre on data equal to the point ``p`` (K = 1: in reduced
    units ``grad f(y) = y - p`` on every mini-batch, curvature 1)."""
    X = jnp.repeat(p[None], 20, axis=0)
    return kmeans_descent(jax.random.key(0), X, x[None], KMeansHyper(
        gamma=gamma, learning_rate=lr, max_rate=max_rate), method="sbe", batch_size=10,
        num_steps=num_steps, max_iter=1)[0]


def test_sbe_iterates_the_implicit_step_and_carries_the_uniform_mean():
    """``y <- x - gamma grad f(y)`` from ``y_0 = x``: ``y_1 = x - g (x - p)``, ``y_2 = x - g
    (y_1 - p)``; the outer step is ``x <- (y_1 + y_2) / 2`` (``lr = 1``), or ``lr`` of the way
    there."""
    x, p, g = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]), 0.4
    y1 = x - g * (x - p)
    y2 = x - g * (y1 - p)
    np.testing.assert_allclose(_sbe(x, p, g, 1), y1, rtol=1e-6)
    np.testing.assert_allclose(_sbe(x, p, g, 2), (y1 + y2) / 2, rtol=1e-6)
    np.testing.assert_allclose(_sbe(x, p, g, 2, lr=0.5), x + 0.5 * ((y1 + y2) / 2 - x),
                               rtol=1e-6)


def test_sbe_solves_the_backward_euler_step():
    """For ``gamma < 1`` the fixed-point map contracts (rate ``gamma``) to the implicit step
    ``x' = x - gamma grad f(x') = (x + gamma p) / (1 + gamma)``; the mean of ``L`` iterates
    is within ``|x - x'| / ((1 - gamma) L)`` of it (the summed transient, ``sum_l gamma^l |y_0 -
    x'|``, over ``L``)."""
    x, p, g, L = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]), 0.5, 400
    implicit = (x + g * p) / (1 + g)
    bound = float(jnp.linalg.norm(x - implicit)) / ((1 - g) * L)
    assert float(jnp.linalg.norm(_sbe(x, p, g, L) - implicit)) <= bound
    assert float(jnp.linalg.norm(_sbe(x, p, g, 4) - implicit)) > bound  # L matters


def test_sbe_caps_each_centres_rate():
    """``max_rate`` caps a centre's scope at ``max_rate`` over its curvature (1 here): at
    scope 5 with the cap 0.5 the map is the one of scope 0.5, ``y <- x - 0.5 (y - p)``; a cap
    above ``gamma`` times the curvature changes nothing."""
    x, p = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5])
    np.testing.assert_allclose(_sbe(x, p, 5.0, 7, max_rate=0.5), _sbe(x, p, 0.5, 7),
                               rtol=1e-6)
    np.testing.assert_array_equal(_sbe(x, p, 0.4, 7, max_rate=0.5), _sbe(x, p, 0.4, 7))


def test_sbe_reseeds_a_centre_that_owns_no_point():
    """A centre far from the data owns no point, so the fixed-point map leaves it where it
    is; at the end of the outer step it takes the batch point farthest from its nearest
    centre, as in Lloyd."""
    X = jnp.repeat(jnp.array([[0.0, 0.0], [10.0, 0.0]]), 50, axis=0)
    C = kmeans_descent(jax.random.key(0), X, jnp.array([[0.0, 0.0], [-100.0, 0.0]]),
                       KMeansHyper(gamma=1e-6), method="sbe", batch_size=30, num_steps=3,
                       max_iter=1)
    np.testing.assert_allclose(C, [[0.0, 0.0], [10.0, 0.0]], atol=1e-4)


def test_n_init_keeps_the_best_run():
    X, _ = _blobs()
    km = LocalEntropyKMeans(4, random_state=0, **{**FAST, "n_init": 5}).fit(X)
    assert km.energies_.shape == (5,)
    J1 = ((X - X.mean(0)) ** 2).sum(1).mean()
    assert km.inertia_ / len(X) == pytest.approx(km.energies_.min() * J1, rel=1e-4)


def test_kmeans_pp_seeds_every_separated_cluster():
    """Four tight clusters far apart: greedy D^2 seeding puts one seed in each."""
    X, centers = _blobs()
    X = jnp.asarray(np.concatenate([c + 0.01 * np.random.default_rng(1).standard_normal(
        (150, 2)) for c in centers]), jnp.float32)
    for key in jax.random.split(jax.random.key(0), 20):
        C = init_centers(key, X, 4, "k-means++")
        nearest = ((C[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
        assert sorted(np.asarray(nearest).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["sbe", "entropy-sgd"])
def test_constant_data_warns_of_empty_clusters(method):
    """Issue 16 item 11: K = 3 on one repeated point leaves two centres without points;
    warn as scikit-learn does, and keep every centre on the data."""
    X = np.full((30, 2), 3.0)
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        km = LocalEntropyKMeans(3, method=method, random_state=0, **FAST).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, np.full((3, 2), 3.0), atol=1e-5)


def test_no_warning_when_every_cluster_owns_points():
    X, _ = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LocalEntropyKMeans(4, random_state=0, **FAST).fit(X)


def test_lloyd_moves_an_empty_centre_to_the_farthest_point():
    X = jnp.array([[0.0], [0.1], [10.0]])
    C, _ = lloyd(jnp.array([[0.05], [-50.0]]), X, 0.0, 1)
    np.testing.assert_allclose(C, [[0.05], [10.0]], atol=1e-6)


@pytest.mark.parametrize("old, new", [(dict(L=3), dict(num_steps=3)),
                                      (dict(lr=0.5), dict(learning_rate=0.5)),
                                      (dict(lr_inner=0.2), dict(step_size=0.2)),
                                      (dict(sampler="heat"), dict(method="heat"))])
def test_old_names_still_work_with_a_deprecation_warning(old, new):
    X, _ = _blobs()
    params = dict(FAST, method="entropy-sgd", random_state=0)
    with pytest.warns(DeprecationWarning, match=next(iter(old))):
        km_old = LocalEntropyKMeans(4, **{**params, **old}).fit(X)
    km_new = LocalEntropyKMeans(4, **{**params, **new}).fit(X)
    np.testing.assert_array_equal(km_old.cluster_centers_, km_new.cluster_centers_)


@parametrize_with_checks([LocalEntropyKMeans(random_state=0, **FAST)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
