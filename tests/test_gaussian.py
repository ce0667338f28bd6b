"""``GaussianCase``: the closed forms of docs/gaussian.md against their definitions.

Everything here is float64 NumPy/SciPy. Tolerances are rounding-error bounds (``EPS`` is the
float64 unit roundoff scaled by the number of flops in the longest sum involved), quadrature
error estimates returned by ``scipy.integrate.quad``, or Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from lesample import GaussianCase

EPS = np.finfo(np.float64).eps
# Probability that a correct implementation fails one statistical test with a fresh seed.
ALPHA = 1e-6
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def random_case(seed: int, dim: int, gamma: float, beta: float, min_scaled_eig: float = -0.9):
    """``Q`` = random rotation of eigenvalues ``lam`` with ``gamma * lam`` in
    ``[min_scaled_eig, 10]``, so ``I + gamma Q`` is positive definite (possibly non-convex f)."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = rng.uniform(min_scaled_eig, 10.0, dim) / gamma
    Q = (rot * lam) @ rot.T
    Q = (Q + Q.T) / 2
    return GaussianCase(Q, rng.standard_normal(dim), gamma, beta, f0=rng.normal()), rng


def fd_tolerance(case: GaussianCase, x: np.ndarray, h: float) -> np.ndarray:
    """Bound on |central FD of value(x) - grad(x)| per component.

    value is quadratic, so the O(h^2) truncation term (h^2/6 f''') is exactly zero and only
    rounding remains: (i) the quadratic form 0.5 d^T M d is a sum of d^2 products, each with
    relative error <= (d^2 + 2) EPS, of total magnitude S = 0.5 |d|^T |M| |d|; adding f0 and
    the log-det term L rounds twice more at magnitude S + |f0| + |L|; the FD divides the
    difference of two such values by 2h; (ii) fl(x_i +- h) moves x_i by h(1 +- EPS |x_i| / h);
    (iii) the computed M = solve(I + gamma Q, Q) is symmetric only to d EPS cond(I + gamma Q)
    ||M||, while value differentiates its symmetric part.
    """
    d = case.dim
    dx = np.abs(x - case.c) + h
    S = 0.5 * dx @ np.abs(case._M) @ dx
    L = abs(np.linalg.slogdet(np.eye(d) + case.gamma * case.Q)[1]) / (2 * case.beta)
    value_err = (d * d + 2) * EPS * S + 2 * EPS * (S + abs(case.f0) + L)
    g = np.abs(case.grad(x))
    B = np.eye(d) + case.gamma * case.Q
    asym = d * EPS * np.linalg.cond(B) * np.linalg.norm(case._M, 2) * np.linalg.norm(dx)
    return value_err / h + 2 * EPS * np.abs(x) * g / h + asym


def central_fd(fun, x: np.ndarray, h: float) -> np.ndarray:
    steps = h * np.eye(x.size)
    return (fun(x + steps) - fun(x - steps)) / (2 * h)


#: Hypothesis strategies for :func:`random_case`'s arguments.
RANDOM_CASES = dict(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(1, 6),
    gamma=st.floats(0.05, 5.0),
    beta=st.floats(0.1, 10.0),
)


# ---------------------------------------------------------------------------------------------
# (a), (b): the gradient against finite differences and against (x - E_rho[y]) / gamma.


@PROPERTY
@given(**RANDOM_CASES)
def test_grad_matches_central_differences_of_value(seed, dim, gamma, beta):
    case, rng = random_case(seed, dim, gamma, beta)
    x = case.c + rng.standard_normal(dim)
    h = 1e-5
    fd = central_fd(case.value, x, h)
    np.testing.assert_array_less(np.abs(fd - case.grad(x)), fd_tolerance(case, x, h))


@PROPERTY
@given(**RANDOM_CASES)
def test_grad_is_x_minus_mean_over_gamma(seed, dim, gamma, beta):
    case, rng = random_case(seed, dim, gamma, beta)
    x = case.c + rng.standard_normal((3, dim))  # a batch of anchors, shape (..., d)
    lhs = case.grad(x)
    rhs = (x - case.mean(x)) / gamma
    assert lhs.shape == rhs.shape == x.shape
    # Both sides solve with A = Q + I/gamma (resp. I + gamma Q, same condition number): backward
    # stability gives relative error <= d EPS cond(A) for each solve/inverse; the mean's error is
    # then divided by gamma, and x - m adds EPS (|x| + |m|) / gamma.
    cond = np.linalg.cond(case.A)
    m = case.mean(x)
    b = np.linalg.norm(case.Q @ case.c + x / gamma, axis=-1, keepdims=True)
    tol = (
        dim * EPS * cond * np.linalg.norm(case._A_inv, 2) * b / gamma
        + dim * EPS * (np.abs(x) + np.abs(m)) / gamma
        + dim * EPS * cond * np.linalg.norm(case._M, 2) * np.abs(x - case.c).sum(-1, keepdims=True)
    )
    np.testing.assert_array_less(np.abs(lhs - rhs), tol)
    # The covariance and precision are inverse to each other (same rounding argument).
    np.testing.assert_allclose(
        case.precision @ case.cov, np.eye(dim), rtol=0, atol=dim * EPS * cond
    )


# ---------------------------------------------------------------------------------------------
# (c): 1-D quadrature of the integral definition of f_gamma.

QUAD_CASES = [
    # (q, c, gamma, beta, f0, x): convex, strongly convex at high beta, and non-convex f
    # (q < 0 with gamma |q| < 1, so rho is still normalisable).
    (2.0, 0.3, 0.5, 3.0, 0.7, 1.5),
    (8.0, -1.0, 0.2, 50.0, -2.0, 0.4),
    (-1.5, -0.2, 0.4, 2.0, 0.0, 0.9),
]
NUM_SD = 40.0  # integrate over mode +- 40 sd: the omitted Gaussian tail mass is < 1e-300


def quad_moments(case: GaussianCase, x: float):
    """f_gamma(x), E_rho[y], Var_rho[y] by quadrature, each with an error bound.

    The integrand w(y) = G(x - y) exp(-beta f(y)) with G = N(0, gamma/beta) is scaled by its
    peak value exp(e_max) (at the mode m = mean(x)); ``quad`` then returns each integral with an
    absolute error estimate. The exponent e(y) itself carries a rounding error of a few EPS
    times the size T of its terms near the peak, a relative error of the integrand.
    """
    q, c, gamma, beta, f0 = case.Q[0, 0], case.c[0], case.gamma, case.beta, case.f0
    log_norm = -0.5 * math.log(2 * math.pi * gamma / beta)

    def exponent(y):
        return log_norm - beta * (x - y) ** 2 / (2 * gamma) - beta * (0.5 * q * (y - c) ** 2 + f0)

    m = float(case.mean(np.array([x]))[0])
    sd = math.sqrt(case.cov[0, 0])
    e_max = exponent(m)
    lo, hi = m - NUM_SD * sd, m + NUM_SD * sd

    def integral(power):
        # The scaled integrand is ~ exp(-(y - m)^2 / (2 sd^2)), so the integral is of order
        # sqrt(2 pi) sd^(power + 1); ask for 1e-12 of that (the odd moment is ~0, so relative
        # accuracy alone is unattainable for it).
        scale = math.sqrt(2 * math.pi) * sd ** (power + 1)
        val, err = integrate.quad(
            lambda y: (y - m) ** power * math.exp(exponent(y) - e_max),
            lo, hi, points=[m], epsabs=1e-12 * scale, epsrel=1e-12, limit=200,
        )
        return val, err

    J0, e0 = integral(0)
    J1, e1 = integral(1)
    J2, e2 = integral(2)
    # 8 flops in the exponent, each with relative error EPS, on terms of size T.
    T = abs(log_norm) + beta * (x - m) ** 2 / (2 * gamma) + beta * abs(0.5 * q * (m - c) ** 2 + f0)
    rel_integrand = 8 * EPS * (T + abs(e_max) + 1)

    value = -(e_max + math.log(J0)) / beta
    value_err = (e0 / J0 + rel_integrand) / beta + 4 * EPS * (abs(value) + abs(e_max) / beta)
    mean_shift = J1 / J0
    mean = m + mean_shift
    mean_err = e1 / J0 + abs(mean_shift) * e0 / J0 + rel_integrand * sd + EPS * abs(mean)
    var = J2 / J0 - mean_shift**2
    var_err = e2 / J0 + (J2 / J0) * (e0 / J0 + rel_integrand) + 2 * abs(mean_shift) * mean_err
    return (value, value_err), (mean, mean_err), (var, var_err)


@pytest.mark.parametrize(("q", "c", "gamma", "beta", "f0", "x"), QUAD_CASES)
def test_closed_forms_match_quadrature_of_the_definition(q, c, gamma, beta, f0, x):
    case = GaussianCase([[q]], [c], gamma, beta, f0=f0)
    (value, value_err), (mean, mean_err), (var, var_err) = quad_moments(case, x)
    xa = np.array([x])
    assert abs(value - case.value(xa)) <= value_err + 8 * EPS * abs(value)
    assert abs(mean - case.mean(xa)[0]) <= mean_err
    assert abs(var - case.cov[0, 0]) <= var_err + 8 * EPS * case.cov[0, 0]


@pytest.mark.parametrize(("q", "c", "gamma", "beta", "f0", "x"), QUAD_CASES)
def test_grad_sign_pinned_by_differentiating_the_quadrature(q, c, gamma, beta, f0, x):
    """d/dx of the quadrature value of f_gamma is (x - E_rho[y]) / gamma, pointing uphill."""
    case = GaussianCase([[q]], [c], gamma, beta, f0=f0)
    h = 1e-3
    (vp, ep), _, _ = quad_moments(case, x + h)
    (vm, em), _, _ = quad_moments(case, x - h)
    fd = (vp - vm) / (2 * h)
    # f_gamma is exactly quadratic in x, so the O(h^2) truncation term vanishes; what remains is
    # the two quadrature values' error bounds divided by 2h, plus fl(x +- h) moving x by EPS|x|.
    tol = (ep + em) / (2 * h) + 2 * EPS * abs(x) * abs(fd) / h
    g = case.grad(np.array([x]))[0]
    assert abs(fd - g) <= tol
    # The tolerance is small enough to reject the sign-flipped (x - E[y]) -> (E[y] - x) form.
    assert tol < abs(g)
    assert np.sign(fd) == np.sign(x - case.mean(np.array([x]))[0])


# ---------------------------------------------------------------------------------------------
# (d): non-convex Q.


def test_nonconvex_Q_below_the_threshold_is_a_valid_case():
    rng = np.random.default_rng(3)
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    lam = np.array([-2.0, 0.5, 3.0])
    Q = (rot * lam) @ rot.T
    Q = (Q + Q.T) / 2
    gamma = 0.8 / abs(lam.min())  # gamma |lambda_min| = 0.8 < 1
    case = GaussianCase(Q, rng.standard_normal(3), gamma, beta=2.0)
    np.linalg.cholesky(case.cov)  # raises unless Sigma is positive definite
    x = case.c + rng.standard_normal(3)
    h = 1e-5
    fd = central_fd(case.value, x, h)
    np.testing.assert_array_less(np.abs(fd - case.grad(x)), fd_tolerance(case, x, h))
    # Along the negative-curvature direction f_gamma is concave too: its curvature there is
    # lambda / (1 + gamma lambda) = -2 / 0.2 = -10 (the eigenvalue of (I + gamma Q)^{-1} Q).
    u = rot[:, 0]
    curv = u @ case._M @ u
    expected = lam[0] / (1 + gamma * lam[0])
    # solve() with cond(I + gamma Q) relative error; lambda/(1 + gamma lambda) is exact to EPS.
    assert abs(curv - expected) <= 3 * 3 * EPS * np.linalg.cond(case.A) * abs(expected)


def test_nonconvex_Q_at_or_above_the_threshold_raises():
    # Diagonal Q and gamma = 1/|lambda_min| exactly representable: Q + I/gamma has an exact 0.
    with pytest.raises(ValueError, match="positive definite"):
        GaussianCase(np.diag([-2.0, 1.0]), [0.0, 0.0], gamma=0.5)
    rng = np.random.default_rng(4)
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    Q = (rot * np.array([-2.0, 0.5, 3.0])) @ rot.T
    with pytest.raises(ValueError, match="positive definite"):
        GaussianCase((Q + Q.T) / 2, np.zeros(3), gamma=1.0)  # gamma |lambda_min| = 2


# ---------------------------------------------------------------------------------------------
# (e): from_condition_number and sample().


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(2, 8),
    log10_kappa=st.floats(0.0, 6.0),
    gamma=st.floats(0.01, 100.0),
)
def test_from_condition_number_has_the_requested_condition_number(seed, dim, log10_kappa, gamma):
    kappa = 10.0**log10_kappa
    case = GaussianCase.from_condition_number(dim, kappa, gamma, beta=1.5, seed=seed)
    eig = np.linalg.eigvalsh(case.A)
    # Weyl: building rot diag rot^T (d-term sums, QR orthogonal to d EPS), adding I/gamma and
    # the eigensolver each perturb eigenvalues by <= d EPS ||A|| = d EPS kappa/gamma; relative
    # to lambda_min = 1/gamma that is d EPS kappa, to lambda_max d EPS: 4 such terms in all.
    rtol = 4 * dim * EPS * (1 + kappa)
    assert abs(eig.max() / eig.min() - kappa) <= rtol * kappa
    assert abs(eig.min() * gamma - 1.0) <= rtol
    assert case.beta == 1.5 and case.c.shape == (dim,)


def test_from_condition_number_rejects_unreachable_kappa_in_one_dimension():
    with pytest.raises(ValueError, match="condition_number"):
        GaussianCase.from_condition_number(1, 10.0, gamma=1.0)


def test_sample_mean_and_covariance_within_monte_carlo_error():
    case = GaussianCase.from_condition_number(3, 5.0, gamma=0.7, beta=2.0, seed=1)
    x = np.array([0.5, -1.0, 2.0])
    n = 20_000
    draws = case.sample(x, n, seed=7)
    assert draws.shape == (n, 3)
    m, cov = case.mean(x), case.cov
    # Exact i.i.d. Gaussian draws: n (ybar - m)^T Sigma^{-1} (ybar - m) ~ chi^2_d.
    r = draws.mean(0) - m
    assert n * r @ np.linalg.solve(cov, r) <= stats.chi2.ppf(1 - ALPHA, 3)
    # Whitened second moments S = W^T W / n with W = L^{-1}(y - m): E S = I, sd(S_ii) =
    # sqrt(2/n), sd(S_ij) = sqrt(1/n) (CLT); Bonferroni over the 6 distinct entries.
    w = np.linalg.solve(np.linalg.cholesky(cov), (draws - m).T).T
    S = w.T @ w / n
    z = stats.norm.ppf(1 - ALPHA / (2 * 6))
    sd = np.where(np.eye(3, dtype=bool), math.sqrt(2 / n), math.sqrt(1 / n))
    np.testing.assert_array_less(np.abs(S - np.eye(3)), z * sd)
    # Same seed, same draws; another seed, other draws.
    np.testing.assert_array_equal(case.sample(x, 5, seed=7), draws[:5])
    assert not np.allclose(case.sample(x, 5, seed=8), draws[:5])


# ---------------------------------------------------------------------------------------------
# (f): bad input names the offending argument.


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(Q=np.ones((2, 3)), c=np.zeros(2), gamma=1.0), "`Q`"),
        (dict(Q=np.ones(3), c=np.zeros(3), gamma=1.0), "`Q`"),
        (dict(Q=np.eye(2), c=np.zeros(3), gamma=1.0), "`c`"),
        (dict(Q=np.eye(2), c=np.zeros((2, 1)), gamma=1.0), "`c`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=0.0), "`gamma`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=-1.0), "`gamma`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=math.nan), "`gamma`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=math.inf), "`gamma`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=1.0, beta=0.0), "`beta`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=1.0, beta=-2.0), "`beta`"),
        (dict(Q=np.eye(2), c=np.zeros(2), gamma=1.0, beta=math.nan), "`beta`"),
        (dict(Q=np.array([[1.0, np.nan], [np.nan, 1.0]]), c=np.zeros(2), gamma=1.0), "`Q`"),
        (dict(Q=np.array([[np.inf, 0.0], [0.0, 1.0]]), c=np.zeros(2), gamma=1.0), "`Q`"),
        (dict(Q=np.eye(2), c=np.array([0.0, np.inf]), gamma=1.0), "`c`"),
        (dict(Q=np.array([[1.0, 0.5], [0.0, 1.0]]), c=np.zeros(2), gamma=1.0), "symmetric"),
    ],
)
def test_bad_constructor_input_raises_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GaussianCase(**kwargs)


@pytest.mark.parametrize("method", ["grad", "value", "mean", "sample"])
def test_wrong_x_shape_raises_naming_x(method):
    case = GaussianCase(np.eye(2), np.zeros(2), gamma=1.0)
    args = (5,) if method == "sample" else ()
    with pytest.raises(ValueError, match="`x`"):
        getattr(case, method)(np.zeros(3), *args)


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 10.0, 1.0), "`dim`"), ((2.5, 10.0, 1.0), "`dim`"), ((3, 0.5, 1.0), "condition_number"),
     ((3, 10.0, 0.0), "`gamma`")],
)
def test_from_condition_number_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        GaussianCase.from_condition_number(*args)
