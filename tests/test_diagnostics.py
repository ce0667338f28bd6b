"""Tests of lesample.diagnostics against closed forms and exact identities.

Statistical tolerances are a few standard deviations of the estimator (stated next to each);
the rest are exact identities checked to rounding error.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import lfilter

from lesample import diagnostics as D


def rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def ar1(phi, chains, draws, rng):
    """Stationary AR(1) chains ``x_t = phi x_{t-1} + e_t``, ``e_t ~ N(0, 1)``."""
    e = rng.standard_normal((chains, draws))
    e[:, 0] /= math.sqrt(1 - phi**2)  # start in the stationary law N(0, 1/(1-phi^2))
    return lfilter([1.0], [1.0, -phi], e, axis=1)


def w2_sorted_1d(x, y):
    """Exact W2 between two 1-D empirical measures of equal size: match order statistics."""
    return math.sqrt(np.mean((np.sort(np.ravel(x)) - np.sort(np.ravel(y))) ** 2))


# --------------------------------------------------------------------------- draws layout


def test_as_chains_draws_dim_layouts():
    rng = np.random.default_rng(0)
    x2 = rng.standard_normal((3, 5)).astype(np.float32)
    out = D.as_chains_draws_dim(x2)
    assert out.shape == (3, 5, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[..., 0], x2)

    x4 = rng.standard_normal((3, 5, 2, 4))
    out = D.as_chains_draws_dim(jnp.asarray(x4, dtype=jnp.float32))
    assert out.shape == (3, 5, 8) and out.dtype == np.float64
    np.testing.assert_allclose(out[:, :, 4 + 3], x4[:, :, 1, 3], rtol=1e-6)  # C order

    # dict leaves come in sorted-key order: "a" (event 2x4 -> 8) then "b" (no event -> 1)
    tree = {"b": x2, "a": x4}
    out = D.as_chains_draws_dim(tree)
    assert out.shape == (3, 5, 9)
    np.testing.assert_array_equal(out[..., :8], x4.reshape(3, 5, 8))
    np.testing.assert_array_equal(out[..., 8], x2.astype(np.float64))


def test_pytree_diagnostics_match_concatenated_array():
    rng = np.random.default_rng(1)
    tree = {"w": rng.standard_normal((4, 50, 2, 2)), "b": rng.standard_normal((4, 50))}
    flat = np.concatenate([tree["b"][..., None], tree["w"].reshape(4, 50, 4)], axis=2)
    for method in D.ESS_METHODS:
        np.testing.assert_array_equal(D.ess(tree, method), D.ess(flat, method))
    np.testing.assert_array_equal(D.rhat(tree), D.rhat(flat))
    np.testing.assert_array_equal(D.mcse_mean(tree), D.mcse_mean(flat))
    assert D.ess(tree).shape == (5,)


# --------------------------------------------------------------------------- ESS, R-hat, MCSE


def test_ess_iid_close_to_number_of_draws():
    # For i.i.d. draws the autocorrelation estimates are ~N(0, 1/N) and Geyer's truncation
    # keeps a few lags, so the ESS estimate has a relative sd of about 2 sqrt(2 / N) ~ 4.5%
    # at N = 4000 (a 100-replicate simulation gives 4.4%): 20% is > 4 sd. The tail ESS
    # (indicators of the 5%/95% quantiles) is slightly more variable (~4.8%): 25%.
    x = np.random.default_rng(2).standard_normal((4, 1000, 3))
    n = 4000
    np.testing.assert_allclose(D.ess(x, "bulk"), n, rtol=0.20)
    np.testing.assert_allclose(D.ess(x, "mean"), n, rtol=0.20)
    tail = D.ess(x, method="tail")
    assert tail.shape == (3,)
    np.testing.assert_allclose(tail, n, rtol=0.25)


@pytest.mark.parametrize("method", ["bulk", "mean"])
def test_ess_ar1_matches_integrated_autocorrelation_time(method):
    # AR(1): rho_t = phi^t, tau = (1 + phi) / (1 - phi), ESS = N / tau = N / 3 for phi = 0.5.
    # Relative sd of the estimate ~ sqrt(4 M / N) with M ~ 10 lags kept (Bartlett): 5% at
    # N = 16000 (simulation at N = 8000: 6%); 20% is ~4 sd.
    phi, chains, draws = 0.5, 4, 4000
    x = ar1(phi, chains, draws, np.random.default_rng(3))
    expected = chains * draws * (1 - phi) / (1 + phi)
    np.testing.assert_allclose(D.ess(x, method), expected, rtol=0.20)


def test_rhat_iid_near_one_and_shifted_chains_flagged():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 1000, 3))
    r = D.rhat(x)
    # sd of R-hat for 4 x 1000 i.i.d. draws is ~5e-4 (simulation): 0.01 is ~20 sd.
    assert r.shape == (3,) and np.all(np.abs(r - 1) < 0.01)
    # Shift one chain of coordinate 0 by 3 sd: the between-chain variance of the 8 split
    # half-chains is ~1.9 W, so R-hat ~ sqrt(1 + 1.9) ~ 1.7 before rank-normalization.
    x[3, :, 0] += 3.0
    r = D.rhat(x)
    assert r[0] > 1.1
    assert np.all(np.abs(r[1:] - 1) < 0.01)
    # Same means, one chain with 3x the sd: plain split R-hat stays ~1; the folded half of the
    # rank-normalized R-hat (Vehtari et al. 2021, §4.2) sees it: ~1.146 +- 0.003 (simulation).
    y = rng.standard_normal((4, 1000, 1))
    y[3] *= 3.0
    assert D.rhat(y)[0] > 1.1


def test_mcse_mean_iid_and_ar1():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 1000, 2))
    n = 4000
    m = D.mcse_mean(x)
    # mcse = sd / sqrt(ESS_mean) by definition, to rounding.
    sd = x.reshape(n, 2).std(axis=0, ddof=1)
    np.testing.assert_allclose(m, sd / np.sqrt(D.ess(x, "mean")), rtol=1e-10)
    # ESS within 20% of N (see above) puts sqrt(N / ESS) within [0.91, 1.12].
    np.testing.assert_allclose(m, 1 / math.sqrt(n), rtol=0.12)
    # AR(1) with unit innovations: sd_x = 1/sqrt(1 - phi^2), var(mean) = sd_x^2 tau / N.
    phi = 0.5
    y = ar1(phi, 4, 4000, rng)
    tau = (1 + phi) / (1 - phi)
    truth = math.sqrt(tau / (1 - phi**2) / y.size)
    np.testing.assert_allclose(D.mcse_mean(y), truth, rtol=0.12)


# --------------------------------------------------------------------------- Bures W2


def test_bures_1d_closed_form():
    m1, s1, m2, s2 = 0.3, 1.7, -1.1, 0.4
    w = D.bures_w2([m1], [[s1**2]], [m2], [[s2**2]])
    assert w == pytest.approx(math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2), rel=1e-12)


def test_bures_commuting_diagonal_zero_symmetry_and_rotation():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])  # b singular: PSD allowed
    m1, m2 = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 0.5])
    expected = math.sqrt(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((m1 - m2) ** 2))
    w = D.bures_w2(m1, np.diag(a), m2, np.diag(b))
    assert w == pytest.approx(expected, rel=1e-12)
    assert D.bures_w2(m2, np.diag(b), m1, np.diag(a)) == pytest.approx(w, rel=1e-12)

    rng = np.random.default_rng(6)
    G = rng.standard_normal((4, 4))
    S = G @ G.T
    mu = rng.standard_normal(4)
    # The Frobenius form has no cancellation: W2 of identical Gaussians is rounding-level.
    assert 0.0 <= D.bures_w2(mu, S, mu, S) < 1e-12

    # W2 is invariant under a common rotation of both Gaussians.
    R = rotation(0.7)
    a2, b2 = np.array([2.0, 0.5]), np.array([0.3, 3.0])
    n1, n2 = np.array([1.0, 2.0]), np.array([-1.0, 0.0])
    plain = D.bures_w2(n1, np.diag(a2), n2, np.diag(b2))
    rotated = D.bures_w2(R @ n1, R @ np.diag(a2) @ R.T, R @ n2, R @ np.diag(b2) @ R.T)
    assert rotated == pytest.approx(plain, rel=1e-12)


def test_bures_non_commuting_2x2_closed_form():
    # For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)). With M = S2^{1/2} S1 S2^{1/2}:
    # tr M = tr(S1 S2), det M = det S1 det S2.
    S1 = rotation(0.4) @ np.diag([3.0, 0.2]) @ rotation(0.4).T
    S2 = rotation(-1.1) @ np.diag([0.5, 2.0]) @ rotation(-1.1).T
    dm = np.array([0.3, -0.8])
    tr_sqrt = math.sqrt(np.trace(S1 @ S2) + 2 * math.sqrt(np.linalg.det(S1) * np.linalg.det(S2)))
    expected = math.sqrt(dm @ dm + np.trace(S1) + np.trace(S2) - 2 * tr_sqrt)
    assert D.bures_w2(dm, S1, np.zeros(2), S2) == pytest.approx(expected, rel=1e-10)
    # Degenerate Gaussians on orthogonal lines: tr sqrt(...) = 0, so W2^2 = 1 + 1.
    e1, e2 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert D.bures_w2(np.zeros(2), e1, np.zeros(2), e2) == pytest.approx(math.sqrt(2), rel=1e-12)


def test_gaussian_fit_w2_exact_moments():
    rng = np.random.default_rng(7)
    d, n = 3, 50
    mean = np.array([1.0, -1.0, 2.0])
    G = rng.standard_normal((d, d))
    cov = G @ G.T + np.eye(d)
    # Samples whose sample mean and (ddof=1) covariance are exactly (mean, cov).
    Z = rng.standard_normal((n, d))
    Z -= Z.mean(axis=0)
    Z = Z @ np.linalg.inv(np.linalg.cholesky(np.cov(Z, rowvar=False)).T)
    X = mean + Z @ np.linalg.cholesky(cov).T
    assert D.gaussian_fit_w2(X, mean, cov) < 1e-7
    shift = np.array([0.3, 0.4, 1.2])
    assert D.gaussian_fit_w2(X + shift, mean, cov) == pytest.approx(1.3, rel=1e-7)


# --------------------------------------------------------------------------- sample-based W2


def test_empirical_w2_between_translated_clouds_is_the_shift():
    # W2^2(X, X + s) = min over couplings of E|x - x' - s|^2 = |s|^2 + min E|x - x'|^2 = |s|^2
    # (the cross term vanishes because both marginals have the same mean).
    rng = np.random.default_rng(8)
    X = rng.standard_normal((200, 3))
    s = np.array([0.5, -1.0, 2.0])
    Y = (X + s)[rng.permutation(200)]
    assert D.empirical_w2_between(X, Y) == pytest.approx(np.linalg.norm(s), rel=1e-10)
    # The same through the public API: samples built from the reference draws + s.
    mean, cov = np.zeros(3), np.diag([1.0, 2.0, 0.5])
    samples = D.gaussian_draws(mean + s, cov, 300, seed=11)
    assert D.empirical_w2(samples, mean, cov, seed=11) == pytest.approx(
        np.linalg.norm(s), rel=1e-10
    )


def test_empirical_w2_shifted_1d_gaussian():
    m, s, delta, n = 0.5, 1.5, 2.0, 1000
    X = (m + delta + s * np.random.default_rng(9).standard_normal(n))[:, None]
    w = D.empirical_w2(X, [m], [[s**2]], seed=3)
    Y = D.gaussian_draws([m], [[s**2]], n, seed=3)
    # In 1-D the optimal plan matches order statistics: the LP must find exactly that.
    assert w == pytest.approx(w2_sorted_1d(X, Y), rel=1e-10)
    # Triangle inequality, exact: |W2(X, Y) - delta| <= W2(X - delta, Y).
    null = w2_sorted_1d(X - delta, Y)
    assert abs(w - delta) <= null + 1e-12
    # The null distance between two n-samples of N(m, s^2): E W2^2 ~ c s^2 log log n / n
    # (Bobkov & Ledoux 2019, §6), c ~ 3.1 at n = 1e3 (simulation). Markov's inequality gives
    # P(W2 > 5 sqrt(E W2^2)) <= 4%.
    assert null < 5 * s * math.sqrt(3.1 * math.log(math.log(n)) / n)


def test_sliced_w2_1d_equals_sorted_quantile_w2():
    # In 1-D every projection is +-1, and W2 of the projections is the 1-D W2.
    X = np.random.default_rng(10).gamma(2.0, size=(400, 1))
    w = D.sliced_w2(X, [1.0], [[2.0]], num_projections=7, seed=4)
    assert w == pytest.approx(
        w2_sorted_1d(X, D.gaussian_draws([1.0], [[2.0]], 400, seed=4)), rel=1e-10
    )


def test_sliced_w2_bounds_and_translation_scale():
    rng = np.random.default_rng(12)
    mean, cov = np.zeros(3), np.diag([1.0, 0.5, 2.0])
    X = rng.standard_normal((300, 3)) * [1.5, 1.0, 0.7] + [0.5, 0.0, 0.2]
    # Projections are 1-Lipschitz, so each projected W2 <= the W2 of the same two clouds.
    assert D.sliced_w2(X, mean, cov, seed=5) <= D.empirical_w2(X, mean, cov, seed=5) + 1e-12
    # Translation by s: projected W2^2 = (theta . s)^2, and (theta . s)^2 / |s|^2 ~ Beta(1/2, 1)
    # in d = 3 (mean 1/3, sd 0.30); over 500 projections the mean has sd 0.013 (4%), i.e. 2%
    # on its square root: 10% is 5 sd.
    s = np.array([1.0, 2.0, -2.0])
    samples = D.gaussian_draws(mean + s, cov, 300, seed=6)
    sw = D.sliced_w2(samples, mean, cov, num_projections=500, seed=6)
    assert sw == pytest.approx(np.linalg.norm(s) / math.sqrt(3), rel=0.10)


def test_empirical_w2_nonconvergence_raises():
    X = np.random.default_rng(13).standard_normal((100, 2))
    with pytest.raises(RuntimeError, match="num_iter_max"):
        D.empirical_w2(X, np.zeros(2), np.eye(2), num_iter_max=1)


def test_w2_to_gaussian_dispatch(monkeypatch):
    rng = np.random.default_rng(14)
    X = rng.standard_normal((200, 2)) + 0.3
    mean, cov = np.zeros(2), np.eye(2)
    exact = D.empirical_w2(X, mean, cov, seed=2)
    assert D.w2_to_gaussian(X, mean, cov, seed=2) == exact
    assert D.w2_to_gaussian(X, mean, cov, method="exact", seed=2) == exact
    assert D.w2_to_gaussian(X, mean, cov, method="bures") == D.gaussian_fit_w2(X, mean, cov)
    assert D.w2_to_gaussian(X, mean, cov, method="sliced", seed=2) == D.sliced_w2(
        X, mean, cov, seed=2
    )
    big = rng.standard_normal((D.EXACT_W2_MAX_SAMPLES + 1, 2))
    # Above the exact limit "auto" must go to sliced_w2 (stubbed: POT takes ~2.5 s at this n).
    calls = []
    monkeypatch.setattr(D, "sliced_w2", lambda x, m, c, *, seed: calls.append((len(x), seed)))
    D.w2_to_gaussian(big, mean, cov, seed=2)
    assert calls == [(D.EXACT_W2_MAX_SAMPLES + 1, 2)]
    with pytest.raises(ValueError, match="samples.*sliced_w2"):
        D.empirical_w2(big, mean, cov)
    with pytest.raises(ValueError, match="method"):
        D.w2_to_gaussian(X, mean, cov, method="sinkhorn")


# --------------------------------------------------------------------------- error, cost


def test_relative_error():
    assert D.relative_error(np.array([3.0, 4.0]), np.array([0.0, 10.0])) == pytest.approx(
        math.sqrt(9 + 36) / 10
    )
    est = {"w": jnp.ones((2, 2)), "b": jnp.array([1.0])}
    truth = {"w": np.zeros((2, 2)), "b": np.array([2.0])}
    # |est - truth|^2 = 4 * 1 + 1, |truth| = 2
    assert D.relative_error(est, truth) == pytest.approx(math.sqrt(5) / 2)
    assert D.relative_error(truth, truth) == 0.0
    # zero truth: the absolute norm
    assert D.relative_error(np.array([3.0, 4.0]), np.zeros(2)) == pytest.approx(5.0)
    assert D.relative_error(np.array([np.nan, 1.0]), np.ones(2)) == math.inf


def test_efficiency():
    out = D.efficiency(np.array([100.0, 400.0, 250.0]), num_grads=1000, seconds=2.0)
    assert out == {
        "ess_min": 100.0,
        "ess_median": 250.0,
        "ess_per_grad": 0.1,
        "ess_per_second": 50.0,
    }


# --------------------------------------------------------------------------- validation

_X = np.random.default_rng(15).standard_normal((4, 10, 2))
_S = np.random.default_rng(16).standard_normal((20, 2))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: D.ess(_X, method="median"), ValueError, "method"),
        (lambda: D.ess(_X[:1]), ValueError, "draws.*chains"),
        (lambda: D.rhat(_X[:, :3]), ValueError, "draws"),
        (lambda: D.mcse_mean(_X[:1]), ValueError, "draws"),
        (lambda: D.rhat(np.where(_X > 2, np.nan, _X)), ValueError, "draws.*non-finite"),
        (lambda: D.ess(np.ones(10)), ValueError, "draws"),
        (lambda: D.ess({"a": _X, "b": _X[:, :5]}), ValueError, "draws"),
        (lambda: D.ess({}), ValueError, "draws"),
        (lambda: D.ess(np.full((2, 5), "a")), TypeError, "draws"),
        (lambda: D.empirical_w2(_S, np.zeros(3), np.eye(3)), ValueError, "samples"),
        (lambda: D.empirical_w2(_S[:, 0], [0.0], [[1.0]]), ValueError, "samples"),
        (lambda: D.sliced_w2(_S, np.zeros(2), np.eye(3)), ValueError, "cov"),
        (lambda: D.gaussian_fit_w2(_S, np.zeros((2, 1)), np.eye(2)), ValueError, "mean"),
        (lambda: D.gaussian_fit_w2(_S, np.zeros(2), [[1, 2], [0, 1]]), ValueError, "cov"),
        (lambda: D.gaussian_fit_w2(_S, np.zeros(2), [[1, 2], [2, 1]]), ValueError, "cov"),
        (lambda: D.gaussian_fit_w2(_S[:1], np.zeros(2), np.eye(2)), ValueError, "samples"),
        (
            lambda: D.empirical_w2(np.where(_S > 1, np.inf, _S), np.zeros(2), np.eye(2)),
            ValueError,
            "samples.*non-finite",
        ),
        (
            lambda: D.sliced_w2(_S, np.zeros(2), np.eye(2), num_projections=0),
            ValueError,
            "num_projections",
        ),
        (lambda: D.bures_w2(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), ValueError, "mean1"),
        (lambda: D.bures_w2(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3)), ValueError, "cov2"),
        (lambda: D.empirical_w2_between(_S, _S[:, :1]), ValueError, "Y"),
        (lambda: D.relative_error({"a": 1.0}, {"b": 1.0}), ValueError, "estimate"),
        (lambda: D.relative_error(np.ones(2), np.ones(3)), ValueError, "estimate"),
        (lambda: D.relative_error(np.ones(2), np.array([1.0, np.nan])), ValueError, "truth"),
        (lambda: D.efficiency([1.0, np.nan], 10, 1.0), ValueError, "ess_values"),
        (lambda: D.efficiency([1.0], 0, 1.0), ValueError, "num_grads"),
        (lambda: D.efficiency([1.0], 10, -1.0), ValueError, "seconds"),
    ],
)
def test_invalid_inputs_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
