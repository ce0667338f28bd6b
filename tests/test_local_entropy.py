"""``local_entropy_grad`` = target + sampler + driver + estimator (docs/samplers.md).

Ground truth is ``GaussianCase`` (docs/gaussian.md). On a quadratic ``H`` every kernel except the
Metropolis ones is an affine recursion driven by zero-mean noise, so the exact expectation of
its estimate is the same recursion run without noise (computed here in float64); Monte Carlo
error is the standard error over independent chains (``info.chain_estimates``), with a
Student-t quantile. JAX runs in float32: rounding tolerances are ``EPS32`` times the size of
the terms, times the number of roundings.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from scipy import stats

import lesample as le

EPS32 = float(np.finfo(np.float32).eps)
ALPHA = 1e-4  # chance that a correct implementation fails a statistical test with a new seed

# A 5-d Gaussian case: precision eigenvalues of A = Q + I/gamma spread over [1, 10].
CASE = le.GaussianCase.from_condition_number(5, 10.0, gamma=1.0, beta=100.0, seed=0)
DIM = CASE.dim
X64 = np.asarray(np.float32(CASE.c + 2.0), np.float64)  # float32-representable anchor
X = jnp.asarray(X64, jnp.float32)
EIG = np.linalg.eigvalsh(CASE.A)


def f32(a):
    return jnp.asarray(np.asarray(a, np.float32))


# ---------------------------------------------------------------------------------------------
# Exact expectations of the estimators on a Gaussian case.


def mean_path(case, x, step_size, num_steps, kernel="ula", friction=1.0):
    """E[y_k], k = 0..num_steps, from y_0 = x: the kernel's noise-free recursion, which is exact
    in expectation because grad H = A (y - m) is affine and the noise has mean zero."""
    A, m = case.A, case.mean(x)
    h = step_size
    y, v = x.copy(), np.zeros_like(x)  # BAOAB's momentum starts with mean 0
    path = [y.copy()]
    for _ in range(num_steps):
        if kernel == "baoab":
            v = v - h / 2 * A @ (y - m)
            y = y + h / 2 * v
            v = math.exp(-friction * h) * v
            y = y + h / 2 * v
            v = v - h / 2 * A @ (y - m)
        else:  # ula, sgld, hj: y - h A (y - m)
            y = y - h * A @ (y - m)
        path.append(y.copy())
    return np.array(path)


def expected_estimate(path, estimator, burn_in=0, alpha=0.75):
    """The estimator applied to the mean path (all three are linear in the path)."""
    if estimator == "last":
        return path[-1]
    if estimator == "uniform":  # the states after the burn_in transitions
        return path[burn_in + 1:].mean(0)
    mu = path[burn_in]  # exponential: mu_0 is the position where estimation starts
    for y in path[burn_in + 1:]:
        mu = alpha * mu + (1 - alpha) * y
    return mu


def check_against_truth(g_hat, chain_estimates, expected_mean, gamma, extra_tol=0.0):
    """Assert the MC estimate ``g_hat`` (the mean over i.i.d. chains) matches its exact
    expectation within the t-quantile of its standard error (+ extra_tol), and its relative
    error vs CASE.grad within the resulting bound; return the relative error."""
    g_hat = np.asarray(g_hat, np.float64)
    ce = np.asarray(chain_estimates, np.float64)
    C = ce.shape[0]
    if C > 1:  # chains are i.i.d. given x: their spread estimates the SE of the chain mean
        se = ce.std(0, ddof=1) / math.sqrt(C) / gamma
        q = stats.t.ppf(1 - ALPHA / (2 * DIM), C - 1)  # Bonferroni over the DIM components
    else:
        se, q = np.zeros(DIM), 0.0
    expected_g = (X64 - expected_mean) / gamma
    tol = q * se + extra_tol
    np.testing.assert_array_less(np.abs(g_hat - expected_g), tol)
    truth = CASE.grad(X64)
    bound = (np.linalg.norm(expected_g - truth) + np.linalg.norm(tol)) / np.linalg.norm(truth)
    rel = np.linalg.norm(g_hat - truth) / np.linalg.norm(truth)
    assert rel <= bound
    assert bound < 0.1  # the test has teeth: a zero, flipped or halved gradient fails it
    return rel


def check_info(grad, info, gamma, num_chains):
    """info.mean is <y>, grad = (x - <y>)/gamma, per-chain estimates have a chain axis."""
    g = np.asarray(grad, np.float64)
    assert grad.shape == X.shape and grad.dtype == X.dtype
    # (x - <y>)/gamma then x - gamma g: 3 roundings of size |x| + gamma |g|.
    np.testing.assert_allclose(
        np.asarray(info.mean, np.float64), X64 - gamma * g,
        rtol=0, atol=3 * EPS32 * (np.abs(X64).max() + gamma * np.abs(g).max()),
    )
    assert np.asarray(info.chain_estimates).shape == (num_chains, DIM)
    assert np.asarray(info.diverged).shape == (num_chains,)
    assert not np.asarray(info.diverged).any()


def rounding_tol(num_steps, step_size, contraction=None):
    """float32 bound on the rounding in a run's mean: each step rounds y - h grad_H (2 roundings
    of size |y| + h |grad_H|, with grad_H = Q(y - c) + (y - x)/gamma a DIM-term sum). If the
    step map is a 2-norm contraction by `contraction` (I - h A is symmetric), the errors add up
    to <= sqrt(DIM) / (1 - contraction) steps' worth; otherwise (None) to num_steps' worth.
    Then x - y rounds once more and everything is divided by gamma."""
    Y = max(np.abs(X64).max(), np.abs(CASE.mean(X64)).max())
    G = np.abs(CASE.Q).sum(1).max() * (Y + np.abs(CASE.c).max()) + 2 * Y / CASE.gamma
    per_step = (2 + DIM) * EPS32 * (Y + step_size * G)
    steps = num_steps
    if contraction is not None:
        steps = min(num_steps, math.sqrt(DIM) / (1.0 - contraction))
    return (per_step * steps + EPS32 * Y) / CASE.gamma


# (kernel for mean_path, local_entropy_grad kwargs). The affine kernels run many chains in
# one call; the Metropolis kernels (costly to compile under vmap) run one chain per call,
# repeated with NUM_REPEATS keys on one compilation.
# The static configuration of the ULA sampler test, shared by the jit, coupling and divergence
# tests so that their eager calls reuse its compilation (gamma, beta, step_size and the key
# are traced arguments).
ULA_KW = dict(sampler="ula", num_steps=400, num_chains=256)
SAMPLER_CASES = {
    "ula": ("ula", dict(step_size=0.05, num_steps=ULA_KW["num_steps"],
                        num_chains=ULA_KW["num_chains"])),
    "sgld": ("ula", dict(step_size=0.05, num_steps=400, num_chains=256, noise="rademacher")),
    "hj": ("hj", dict(step_size=0.05, num_steps=400, num_chains=1)),
    "baoab": ("baoab", dict(step_size=0.1, num_steps=500, num_chains=64, burn_in=100,
                            friction=1.0)),
    "mala": (None, dict(step_size=0.05, num_steps=800, num_chains=1, burn_in=200)),
    "nuts": (None, dict(step_size=0.1, num_steps=400, num_chains=1, burn_in=100,
                        num_warmup=100)),
    "hmc": (None, dict(step_size=0.1, num_steps=400, num_chains=1, burn_in=100, num_warmup=100,
                       num_leapfrog=10)),
}
NUM_REPEATS = 24


@pytest.mark.parametrize("sampler", list(SAMPLER_CASES))
def test_each_sampler_estimates_the_gaussian_local_entropy_gradient(sampler):
    kernel, kw = SAMPLER_CASES[sampler]
    beta = math.inf if sampler == "hj" else CASE.beta  # HJ is the beta = inf limit
    repeats = NUM_REPEATS if kernel is None else 1
    grads, estimates, accs = [], [], []
    for i in range(repeats):
        grad, info = le.local_entropy_grad(
            CASE.loss, X, CASE.gamma, beta, key=jax.random.key(100 + i), sampler=sampler, **kw
        )
        check_info(grad, info, CASE.gamma, kw["num_chains"])
        grads.append(np.asarray(grad, np.float64))
        estimates.append(np.asarray(info.chain_estimates, np.float64))
        accs.append(float(info.acceptance_rate))
        if kernel is not None:  # one gradient per step
            assert int(info.num_grads) == kw["num_chains"] * kw["num_steps"]
            assert np.isnan(float(info.acceptance_rate))
        else:  # >= 1 gradient per step
            assert int(info.num_grads) >= kw["num_chains"] * kw["num_steps"]
    g_hat, chain_estimates = np.mean(grads, 0), np.concatenate(estimates)
    estimator = le.DEFAULT_ESTIMATORS[sampler]  # the default estimator of each sampler
    h, L, burn_in = kw["step_size"], kw["num_steps"], kw.get("burn_in", 0)
    m = CASE.mean(X64)
    if kernel is not None:
        # Affine kernels: exact expectation of the estimate, incl. the transient from y_0 = x.
        expected = expected_estimate(
            mean_path(CASE, X64, h, L, kernel, kw.get("friction", 1.0)), estimator, burn_in
        )
        # ULA/HJ: I - h A contracts by rho; BAOAB's mean map is not a norm contraction.
        rho = max(abs(1 - h * EIG.min()), abs(1 - h * EIG.max()))
        extra = rounding_tol(L, h, None if kernel == "baoab" else rho)
    else:
        # Metropolis kernels are unbiased for rho once the start is forgotten.
        expected = m
        acc = min(accs)
        assert 0.5 < acc <= 1.0
        if sampler == "mala":
            # The mean of a MALA chain contracts at least like (1 - acc h lambda_min) per step
            # (the gradient step is taken with probability acc): the transient left after
            # burn_in steps.
            extra = (1 - acc * h * EIG.min()) ** burn_in * np.abs(X64 - m) / CASE.gamma
        else:
            # NUTS/HMC: the num_warmup adaptation transitions (tens of leapfrog steps each)
            # mix a 5-d Gaussian of condition number 10 completely; only the MCSE is budgeted,
            # as for any converged reference run (docs/gaussian.md).
            extra = 0.0
    rel = check_against_truth(g_hat, chain_estimates, expected, CASE.gamma, extra)
    assert np.isfinite(rel)


def test_hj_reaches_the_exact_proximal_point_up_to_contraction():
    """HJ: (x - y_L)/gamma -> grad f_gamma(x) with error rho^L |x - m| / gamma (plus rounding)."""
    h, L = 0.05, 400
    grad, _ = le.local_entropy_grad(CASE.loss, X, CASE.gamma, math.inf, key=jax.random.key(0),
                                    sampler="hj", step_size=h, num_steps=L)
    rho = max(abs(1 - h * EIG.min()), abs(1 - h * EIG.max()))
    m = CASE.mean(X64)
    tol = rho**L * np.linalg.norm(X64 - m) / CASE.gamma + math.sqrt(DIM) * rounding_tol(L, h, rho)
    assert np.linalg.norm(np.asarray(grad, np.float64) - CASE.grad(X64)) <= tol
    assert tol < 1e-3 * np.linalg.norm(CASE.grad(X64))  # converged: far tighter than MC tests


# ---------------------------------------------------------------------------------------------
# (b) pytree parameters: a flax NNX MLP.


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(3, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))


def mlp_problem():
    graphdef, state = nnx.split(MLP(nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    data_x = f32(rng.normal(size=(16, 3)))
    data_y = jnp.sin(data_x.sum(1))

    def loss(s):
        return jnp.mean((nnx.merge(graphdef, s)(data_x)[:, 0] - data_y) ** 2)

    return loss, state


def test_nnx_state_small_gamma_limit():
    """grad f_gamma = grad f(y*) with y* = x - gamma grad f_gamma (the prox point, HJ's fixed
    point); hence |grad f_gamma - grad f(x)| <= gamma sup ||Hess f|| |grad f_gamma|."""
    loss, state = mlp_problem()
    gamma, beta = 1e-3, 1e8
    flat_x, unravel = ravel_pytree(state)
    flat_loss = lambda v: loss(unravel(v))  # noqa: E731
    hess_fn = jax.jit(jax.hessian(flat_loss))
    hess = lambda v: np.linalg.norm(np.asarray(hess_fn(v), np.float64), 2)  # noqa: E731
    # H's Hessian has eigenvalues in 1/gamma +- ||Hess f||: step h = gamma/2 contracts by
    # rho = 1/2 + gamma ||Hess f|| / 2; 40 steps leave rho^40 ~ 1e-12 of |x - y*|.
    h, L = gamma / 2, 40
    grad, info = le.local_entropy_grad(loss, state, gamma, beta, key=jax.random.key(0),
                                       sampler="hj", step_size=h, num_steps=L)
    assert jax.tree_util.tree_structure(grad) == jax.tree_util.tree_structure(state)
    assert jax.tree_util.tree_structure(info.mean) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(state),
                    strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    g = np.asarray(ravel_pytree(grad)[0], np.float64)
    x = np.asarray(flat_x, np.float64)
    gf = np.asarray(jax.grad(flat_loss)(flat_x), np.float64)
    # sup of ||Hess f|| over the segment [x, y*] (length gamma |g| ~ 1e-3): sampled at 5 points;
    # over so short a segment the Hessian varies by O(gamma |g| ||D^3 f||), negligible.
    seg = [flat_x - t * gamma * jnp.asarray(g, jnp.float32) for t in np.linspace(0, 1, 5)]
    lip = max(hess(v) for v in seg)
    assert gamma * lip < 0.5  # H strongly convex: the prox point is unique
    rho = 0.5 + gamma * lip / 2
    # float32: 2 roundings per step of size |y| ~ |x| (h grad_H is tiny next to it), accumulated
    # over <= 1/(1 - rho) steps, one more for x - y; all divided by gamma.
    round_tol = (2 * EPS32 * np.abs(x) / (1 - rho) + EPS32 * np.abs(x)) / gamma
    # HJ leaves |y_L - y*| <= rho^L |x - y*|, and |x - y*| = gamma |g*| <= gamma |grad f(x)| /
    # (1 - gamma lip); in gradient units (/ gamma):
    contraction = rho**L * np.linalg.norm(gf) / (1 - gamma * lip)
    # The prox fixed point: g = grad f(x - gamma g). An error e in y_L gives e/gamma in g and
    # lip |e| in grad f(x - gamma g). (float32 rounding inside grad f itself, ~EPS32 |terms|,
    # is 1/gamma = 1000 times smaller than round_tol.)
    gy = np.asarray(jax.grad(flat_loss)(flat_x - gamma * jnp.asarray(g, jnp.float32)), np.float64)
    fixed_tol = (np.linalg.norm(round_tol) + contraction) * (1 + gamma * lip)
    assert np.linalg.norm(g - gy) <= fixed_tol
    # The small-gamma limit.
    limit_tol = gamma * lip * np.linalg.norm(g) + fixed_tol
    assert np.linalg.norm(g - gf) <= limit_tol
    assert limit_tol < 0.1 * np.linalg.norm(gf)  # grad f is resolved to better than 10%

    # ULA at beta = 1e8 through the same pytree (default exponential estimator, alpha = 3/4).
    grad_u, _ = le.local_entropy_grad(loss, state, gamma, beta, key=jax.random.key(1),
                                      sampler="ula", step_size=h, num_steps=L)
    assert jax.tree_util.tree_structure(grad_u) == jax.tree_util.tree_structure(state)
    g_u = np.asarray(ravel_pytree(grad_u)[0], np.float64)
    # Noise: the estimate is a convex combination of iterates, each with variance below ULA's
    # stationary 1 / (beta a (1 - h a / 2)) along an eigenvalue a of Hess H in 1/gamma +- lip.
    a_lo, a_hi = 1 / gamma - lip, 1 / gamma + lip
    var_y = 1 / (beta * min(a_lo * (1 - h * a_lo / 2), a_hi * (1 - h * a_hi / 2)))
    z = stats.norm.ppf(1 - ALPHA / (2 * g.size))  # Bonferroni over the parameters
    # Transient: E[y_k] - y* shrinks like rho^k |x - y*| (|x - y*| = gamma |g|), and the
    # estimate alpha^L x + (1 - alpha) sum_k alpha^(L-k) y_k weighs it by at most
    # alpha^L + (1 - alpha) L max(alpha, rho)^L. (The O(var_y |D^3 f|) shift of a noisy mean
    # from the noise-free path is ~1e-11, far below the rest.)
    alpha = 0.75
    transient = (alpha**L + (1 - alpha) * L * max(alpha, rho) ** L) * np.linalg.norm(g)
    tol_u = z * math.sqrt(var_y) / gamma + transient + round_tol + fixed_tol
    np.testing.assert_array_less(np.abs(g_u - g), tol_u)
    assert np.linalg.norm(tol_u) < 0.5 * np.linalg.norm(gf)  # a zero or flipped gradient fails


# ---------------------------------------------------------------------------------------------
# (c) estimator choice, checked by hand on HJ.


def hand_hj_path(x, h, gamma, num_steps):
    y, path = x.copy(), [x.copy()]
    for _ in range(num_steps):
        y = y - h * (CASE.Q @ (y - CASE.c) + (y - x) / gamma)
        path.append(y.copy())
    return path


@pytest.mark.parametrize(
    ("estimator", "num_steps", "combine"),
    [
        ("last", 1, lambda p: p[1]),
        ("uniform", 1, lambda p: p[1]),
        ("exponential", 1, lambda p: 0.75 * p[0] + 0.25 * p[1]),
        (le.ExponentialAverage(alpha=0.5), 1, lambda p: 0.5 * p[0] + 0.5 * p[1]),
        ("last", 2, lambda p: p[2]),
        ("uniform", 2, lambda p: (p[1] + p[2]) / 2),
        ("exponential", 2, lambda p: 0.75 * (0.75 * p[0] + 0.25 * p[1]) + 0.25 * p[2]),
        (le.TimeAverage(), 3, lambda p: (p[1] + p[2] + p[3]) / 3),
    ],
    ids=["last-1", "uniform-1", "exponential-1", "exp-alpha-0.5-1", "last-2", "uniform-2",
         "exponential-2", "TimeAverage-3"],
)
def test_estimators_on_hj_match_hand_computed_steps(estimator, num_steps, combine):
    h, gamma = 0.1, 0.5
    grad, info = le.local_entropy_grad(CASE.loss, X, gamma, math.inf, key=jax.random.key(0),
                                       sampler="hj", step_size=h, num_steps=num_steps,
                                       estimator=estimator)
    path = hand_hj_path(X64, h, gamma, num_steps)
    expected = (X64 - combine(path)) / gamma
    # float32: per step 2 roundings of |y| + h |grad_H| (grad_H a DIM-term sum, EPS32 each), the
    # average adds num_steps roundings of |y|, x - <y> one more; all divided by gamma.
    Y = max(np.abs(p).max() for p in path)
    G = np.abs(CASE.Q).sum(1).max() * (Y + np.abs(CASE.c).max()) + 2 * Y / gamma
    tol = ((2 + DIM) * num_steps * EPS32 * (Y + h * G) + (num_steps + 1) * EPS32 * Y) / gamma
    np.testing.assert_array_less(np.abs(np.asarray(grad, np.float64) - expected), tol)
    # One HJ step from y_0 = x is a plain gradient step: (x - y_1)/gamma = h grad f(x)/gamma.
    if num_steps == 1 and estimator == "last":
        np.testing.assert_array_less(
            np.abs(expected - h * CASE.Q @ (X64 - CASE.c) / gamma), tol
        )
    # Estimators here differ by factors (1/4, 1/2, ...) of |expected|; the tolerance is far
    # smaller, so a swapped estimator fails.
    assert np.linalg.norm(tol) < 1e-3 * np.linalg.norm(expected)


# ---------------------------------------------------------------------------------------------
# (d) jit.


# The jit and divergence tests share this jitted function (one compilation).
JITTED = jax.jit(
    lambda x, k, gamma, beta, h: le.local_entropy_grad(
        CASE.loss, x, gamma, beta, key=k, step_size=h, **ULA_KW
    )
)


def test_jit_matches_eager():
    kw = dict(ULA_KW, step_size=0.02)
    fn = lambda x, k: JITTED(x, k, 0.1, 1.0, kw["step_size"])[0]  # noqa: E731
    key = jax.random.key(3)
    jitted = np.asarray(fn(X, key), np.float64)
    eager = np.asarray(le.local_entropy_grad(CASE.loss, X, 0.1, 1.0, key=key, **kw)[0],
                       np.float64)
    # Same keys, same ops; XLA may fuse differently inside the outer jit, so each step may
    # round differently: (2 + DIM) roundings of size |y| + h |grad_H| (as in rounding_tol).
    # I - h A contracts by rho in 2-norm, so these add up to <= sqrt(DIM) / (1 - rho) steps'
    # worth (the estimator is a convex combination of iterates); then divided by gamma.
    # |y| <= |x| + |m| + 10 sd of ULA's stationary law (Gaussian tail beyond 10 sd: 1e-23).
    gamma, beta, h = 0.1, 1.0, kw["step_size"]
    a = np.linalg.eigvalsh(CASE.Q + np.eye(DIM) / gamma)
    rho = max(abs(1 - h * a.min()), abs(1 - h * a.max()))
    sd = math.sqrt(np.max(1 / (beta * a * (1 - h * a / 2))))
    m = le.GaussianCase(CASE.Q, CASE.c, gamma, beta).mean(X64)
    Y = np.abs(X64).max() + np.abs(m).max() + 10 * sd
    per_step = (2 + DIM) * EPS32 * (Y + h * a.max() * 2 * Y)  # |grad_H| = |A (y - m)|
    tol = (per_step * math.sqrt(DIM) / (1 - rho) + EPS32 * Y) / gamma
    np.testing.assert_array_less(np.abs(jitted - eager), tol)
    # The comparison is not vacuous: another key gives a different estimate.
    other = np.asarray(fn(X, jax.random.key(4)), np.float64)
    assert np.abs(other - eager).max() > 100 * tol


# ---------------------------------------------------------------------------------------------
# (e) divergence.


def test_all_chains_diverging_raises_eagerly_and_is_flagged_under_jit():
    # ULA with h = 100: |1 - h lambda| >= 99 per step overflows float32 (3e38) in < 25 steps.
    kw = dict(ULA_KW, step_size=100.0)
    with pytest.raises(le.DivergenceError):
        le.local_entropy_grad(CASE.loss, X, CASE.gamma, CASE.beta, key=jax.random.key(0), **kw)
    grad, info = JITTED(X, jax.random.key(0), CASE.gamma, CASE.beta, kw["step_size"])
    assert np.asarray(info.diverged).all() and info.diverged.shape == (ULA_KW["num_chains"],)
    assert np.isnan(np.asarray(grad)).all()  # never a silent average of nothing


# ---------------------------------------------------------------------------------------------
# (f) bad input.


def call(**overrides):
    kw = dict(loss_fn=CASE.loss, x=X, gamma=CASE.gamma, beta=CASE.beta, key=jax.random.key(0),
              sampler="ula", num_steps=5)
    kw.update(overrides)
    return le.local_entropy_grad(**kw)


@pytest.mark.parametrize(
    ("overrides", "error", "name"),
    [
        (dict(gamma=0.0), ValueError, "`gamma`"),
        (dict(gamma=-1.0), ValueError, "`gamma`"),
        (dict(gamma=math.nan), ValueError, "`gamma`"),
        (dict(beta=0.0), ValueError, "`beta`"),
        (dict(beta=-1.0), ValueError, "`beta`"),
        (dict(x=f32([0.0, math.nan, 0.0, 0.0, 0.0])), ValueError, "`x`"),
        (dict(x=f32([math.inf, 0.0, 0.0, 0.0, 0.0])), ValueError, "`x`"),
        (dict(sampler="foo"), ValueError, "`sampler`"),
        (dict(estimator="foo"), ValueError, "`estimator`"),
        (dict(coupling=2.0), ValueError, "coupling"),
        (dict(gamma=None), ValueError, "gamma"),
        (dict(gamma=None, coupling=-1.0), ValueError, "`coupling`"),
        (dict(sampler="mala", beta=math.inf), ValueError, "`beta`"),
        (dict(sampler="nuts", beta=math.inf), ValueError, "`beta`"),
        (dict(sampler="hmc", beta=math.inf), ValueError, "`beta`"),
        (dict(num_steps=0), ValueError, "`num_steps`"),
        (dict(num_chains=0), ValueError, "`num_chains`"),
        (dict(burn_in=5), ValueError, "`burn_in`"),
        (dict(sampler="hj", friction=1.0), TypeError, "friction"),
        (dict(sampler="mala", noise="rademacher"), TypeError, "noise"),
        (dict(sampler="ula", num_leapfrog=3), TypeError, "num_leapfrog"),
        (dict(noise="foo"), ValueError, "`noise`"),
        (dict(sampler="baoab", friction=0.0), ValueError, "`friction`"),
        (dict(loss_fn="not a function"), TypeError, "`loss_fn`"),
        (dict(batches=jnp.zeros((4, 2))), ValueError, "batches"),
        (dict(sampler="mala", batches=jnp.zeros((5, 2))), TypeError, "batches"),
    ],
)
def test_bad_input_raises_naming_the_argument(overrides, error, name):
    with pytest.raises(error, match=name):
        call(**overrides)


@pytest.mark.parametrize("step_size", [0.0, -0.1])
def test_nonpositive_step_size_raises(step_size):
    with pytest.raises(ValueError, match="`step_size`"):
        call(sampler="hj", step_size=step_size)


def test_coupling_equals_one_over_gamma():
    kw = dict(ULA_KW, key=jax.random.key(2), step_size=0.05)
    a, _ = le.local_entropy_grad(CASE.loss, X, beta=CASE.beta, coupling=4.0, **kw)
    b, _ = le.local_entropy_grad(CASE.loss, X, 0.25, CASE.beta, **kw)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # 1/4 is exact: same program


# ---------------------------------------------------------------------------------------------
# (g) mini-batches: f(params, batch), batches with leading axis num_steps.


def f_batch(p, batch):
    """0.5 mean_j |p - batch_j|^2, so grad f(p, batch) = p - mean_j batch_j."""
    return 0.5 * jnp.mean(jnp.sum((p[None] - batch) ** 2, axis=-1))


def test_minibatch_hj_follows_the_batches_step_by_step():
    rng = np.random.default_rng(4)
    L, B, d, h, gamma = 6, 8, 3, 0.2, 0.5
    x64 = np.float64(np.float32(rng.normal(size=d)))
    batches64 = np.float64(np.float32(rng.normal(size=(L, B, d)) + np.arange(L)[:, None, None]))
    x, batches = f32(x64), f32(batches64)
    y, Y = x64.copy(), np.abs(x64).max()
    for k in range(L):  # step k sees batch k
        y = y - h * (y - batches64[k].mean(0) + (y - x64) / gamma)
        Y = max(Y, np.abs(y).max())
    expected = (x64 - y) / gamma
    grad, info = le.local_entropy_grad(f_batch, x, gamma, math.inf, key=jax.random.key(0),
                                       sampler="hj", step_size=h, num_steps=L, batches=batches)
    # float32: per step, a B-point mean of B-term sums (B + d roundings on |batch|) and ~4 more
    # on |y| + h |grad_H|; no contraction assumed over the L steps; then x - y, / gamma.
    Bmax = np.abs(batches64).max()
    per_step = (B + d + 4) * EPS32 * (Y + h * (Y + Bmax + 2 * Y / gamma))
    tol = (L * per_step + EPS32 * Y) / gamma
    np.testing.assert_array_less(np.abs(np.asarray(grad, np.float64) - expected), tol)
    # Ignoring the batches (e.g. always batch 0) would give a visibly different answer.
    y0 = x64.copy()
    for _ in range(L):
        y0 = y0 - h * (y0 - batches64[0].mean(0) + (y0 - x64) / gamma)
    assert np.abs((x64 - y0) / gamma - expected).max() > 100 * tol.max()
    # ULA at beta = inf has zero noise: it is the same recursion.
    grad_u, _ = le.local_entropy_grad(f_batch, x, gamma, math.inf, key=jax.random.key(0),
                                      sampler="ula", step_size=h, num_steps=L, batches=batches,
                                      estimator="last")
    np.testing.assert_array_less(np.abs(np.asarray(grad_u, np.float64) - expected), tol)


def test_minibatch_sgld_mean_is_the_noise_free_recursion():
    """SGLD with batches: E[estimate] is the batch-driven noise-free recursion, within MCSE."""
    rng = np.random.default_rng(5)
    L, B, d, h, gamma, beta, C = 30, 8, 3, 0.1, 0.5, 50.0, 128
    x64 = np.float64(np.float32(rng.normal(size=d)))
    batches64 = np.float64(np.float32(rng.normal(size=(L, B, d))))
    y, path = x64.copy(), [x64.copy()]
    for k in range(L):
        y = y - h * (y - batches64[k].mean(0) + (y - x64) / gamma)
        path.append(y.copy())
    expected_mu = expected_estimate(np.array(path), "exponential")
    grad, info = le.local_entropy_grad(f_batch, f32(x64), gamma, beta, key=jax.random.key(6),
                                       sampler="sgld", step_size=h, num_steps=L, num_chains=C,
                                       batches=f32(batches64))
    ce = np.asarray(info.chain_estimates, np.float64)
    se = ce.std(0, ddof=1) / math.sqrt(C) / gamma
    q = stats.t.ppf(1 - ALPHA / (2 * d), C - 1)
    expected = (x64 - expected_mu) / gamma
    np.testing.assert_array_less(np.abs(np.asarray(grad, np.float64) - expected), q * se)
    assert np.linalg.norm(q * se) < 0.1 * np.linalg.norm(expected)
    assert int(info.num_grads) == C * L


# ---------------------------------------------------------------------------------------------
# (f) extension points: a user's estimator, batches drawn inside the loop (lesample.inner).


@dataclasses.dataclass(frozen=True)
class FirstAndLast:
    """A user estimator (not one of the library's): the mean of the start and the last state."""

    def init(self, position):
        return position, position

    def update(self, acc, position):
        return acc[0], position

    def result(self, acc):
        return jax.tree_util.tree_map(lambda a, b: (a + b) / 2, *acc)


def test_a_user_estimator_following_the_protocol_is_accepted():
    assert isinstance(FirstAndLast(), le.Estimator)
    h, gamma, L = 0.1, 0.5, 3
    grad, _ = le.local_entropy_grad(CASE.loss, X, gamma, math.inf, key=jax.random.key(0),
                                    sampler="hj", step_size=h, num_steps=L,
                                    estimator=FirstAndLast())
    path = hand_hj_path(X64, h, gamma, L)
    expected = (X64 - (path[0] + path[L]) / 2) / gamma
    # float32 as in test_estimators_on_hj_match_hand_computed_steps, plus the final average.
    Y = max(np.abs(p).max() for p in path)
    G = np.abs(CASE.Q).sum(1).max() * (Y + np.abs(CASE.c).max()) + 2 * Y / gamma
    tol = ((2 + DIM) * L * EPS32 * (Y + h * G) + 3 * EPS32 * Y) / gamma
    np.testing.assert_array_less(np.abs(np.asarray(grad, np.float64) - expected), tol)
    assert np.linalg.norm(tol) < 1e-3 * np.linalg.norm(expected)
    with pytest.raises(ValueError, match="Estimator"):
        le.local_entropy_grad(CASE.loss, X, gamma, key=jax.random.key(0), estimator=object())


def test_estimate_mean_draws_batches_inside_the_loop():
    """``batches=batch_fn`` (called with a fresh key each step) gives what the same batches
    stacked along the step axis give; the HJ kernel ignores its key, so the two agree bit for
    bit when ``batch_fn`` returns a fixed batch."""
    rng = np.random.default_rng(5)
    L, gamma, h = 4, 0.5, 0.2
    x, batch = f32(rng.normal(size=3)), f32(rng.normal(size=(8, 3)))
    target = le.local_entropy_target(f_batch, x, gamma, math.inf)
    kernel = le.hj(target.grad_H, h)
    stacked = le.estimate_mean(kernel, "last", x, jax.random.key(0), L,
                               batches=jnp.broadcast_to(batch, (L, *batch.shape)))
    drawn = le.estimate_mean(kernel, "last", x, jax.random.key(0), L, batches=lambda k: batch)
    np.testing.assert_array_equal(np.asarray(drawn.mean), np.asarray(stacked.mean))
    assert int(drawn.num_grads) == L and not bool(drawn.diverged.any())
    # Random mini-batches (the k-means inner loop): rows gathered by random indices.
    data = f32(rng.normal(size=(100, 3)) + 2.0)
    sgld = le.ula(le.local_entropy_target(f_batch, x, gamma, 1e6).grad_H, h, 1e6)
    out = jax.jit(lambda k: le.estimate_mean(
        sgld, le.TimeAverage(), x, k, 200,
        batches=lambda kb: data[jax.random.randint(kb, (10,), 0, 100)]))(jax.random.key(1))
    # f's minimiser is the data mean m, and H's Hessian is (1 + 1/gamma) I, so y contracts
    # at r = 1 - h (1 + 1/gamma) per step towards the proximal point (x + gamma m)/(1 + gamma).
    # The average of N = 200 steps misses it by the transient, at most |x - prox|/((1-r) N),
    # plus the mini-batch noise: a batch mean of 10 rows drawn with replacement has sd
    # s/sqrt(10); y's stationary sd is h s/sqrt(10)/sqrt(1 - r^2) (AR(1)), and the average's
    # that times sqrt((1 + r)/((1 - r) N)). The Langevin noise (beta = 1e6) is negligible.
    N, r = 200, 1 - h * (1 + 1 / gamma)
    data64, x64 = np.asarray(data, np.float64), np.asarray(x, np.float64)
    prox = (x64 + gamma * data64.mean(0)) / (1 + gamma)
    sd = h * data64.std(0) / np.sqrt(10) / np.sqrt(1 - r**2) * np.sqrt((1 + r) / ((1 - r) * N))
    tol = 5 * sd + np.abs(x64 - prox) / ((1 - r) * N)
    np.testing.assert_array_less(np.abs(np.asarray(out.mean) - prox), tol)
