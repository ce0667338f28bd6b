"""``lesample.optim``: the outer loop of local-entropy descent (docs/optimizers.md, paper §7).

Ground truth is closed form: on a quadratic ``f`` the gradient of ``f_gamma`` is linear
(``GaussianCase``, docs/gaussian.md), so the outer iterates are compared with the float64
recursion ``x <- x - eta grad f_gamma(x)`` (with Nesterov momentum where used). Tolerances
are derived in the comments: the inner loop's bias (its contraction factor to the power
``L``), Monte Carlo standard errors with a Student-t quantile, and float32 rounding
(``EPS32`` times the size of the terms, times the number of roundings).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import stats

import lesample as le
from lesample import nets, optim

EPS32 = float(np.finfo(np.float32).eps)
ALPHA = 1e-4  # chance that a correct implementation fails a statistical test with a new seed


def quadratic(dim, q_min, q_max, seed):
    """``(Q, c)``: a random rotation of ``diag(linspace(q_min, q_max))`` and a centre."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    Q = (rot * np.linspace(q_min, q_max, dim)) @ rot.T
    return (Q + Q.T) / 2, rng.standard_normal(dim)


def quadratic_grad_fn(Q, c):
    Qj, cj = jnp.asarray(Q, jnp.float32), jnp.asarray(c, jnp.float32)
    return lambda y, b: Qj @ (y - cj)


def wavy(y):
    """A non-convex test loss, ``sum(cos(3 y) + 0.1 y^2)`` (``f'' >= -8.8``)."""
    return jnp.sum(jnp.cos(3.0 * y) + 0.1 * y**2)


def wavy_grad(y, b):
    """Its gradient plus an additive 'mini-batch' noise ``b`` (zero for full batch)."""
    return jax.grad(wavy)(y) + b


def run_steps(tx, x, num_updates, **kwargs):
    """``num_updates`` eager updates from ``x``; returns the iterates (float64) and the state."""
    state = tx.init(x)
    path = [np.asarray(x, np.float64)]
    for _ in range(num_updates):
        updates, state = tx.update(None, state, x, **kwargs)
        x = optax.apply_updates(x, updates)
        path.append(np.asarray(x, np.float64))
    return np.array(path), state


# ---------------------------------------------------------------------------------------------
# The outer iterates follow the closed-form gradient descent on f_gamma.


def test_hj_follows_closed_form_descent_with_nesterov_and_scoping():
    """HJ (noise-free, last iterate) with Nesterov 0.9, ``eta = gamma_k`` and scoping
    ``gamma_k = gamma_0 (1 - gamma_1)^k`` tracks the float64 recursion
    ``m <- delta m + g_k, x <- x - gamma_k (g_k + delta m)``, ``g_k = M_k (x - c)``,
    ``M_k = (I + gamma_k Q)^{-1} Q`` (docs/gaussian.md)."""
    dim, num_outer, L, h, delta = 4, 20, 60, 0.15, 0.9
    gamma_0, gamma_1 = 0.5, 0.05
    Q, c = quadratic(dim, 0.5, 4.0, seed=1)
    x0 = np.asarray(np.float32(c + 1.5), np.float64)
    gammas = gamma_0 * (1 - gamma_1) ** np.arange(num_outer)
    # Inner bias: y_L - m = (I - h A_k)^L (x - m) with A_k = Q + I/gamma_k, so
    # |g_hat - g| <= r^L |g|, r = max_k max |1 - h eig(A_k)|. Below float32 resolution here:
    eig = np.linalg.eigvalsh(Q)
    r = max(np.abs(1 - h * (eig + 1 / g)).max() for g in gammas)
    assert r**L < EPS32 / 100
    tx = optim.hj(gamma=optim.scoping(gamma_0, gamma_1), num_steps=L, step_size=h,
                  momentum=delta)
    path, state = run_steps(tx, jnp.asarray(x0, jnp.float32), num_outer,
                            grad_fn=quadratic_grad_fn(Q, c), key=jax.random.key(0))
    # The float64 closed form, and the propagator norms of the (x, m) system for the bound.
    x, m = x0.copy(), np.zeros(dim)
    ref, steps = [x.copy()], []
    eye = np.eye(dim)
    for g_k in gammas:
        M = np.linalg.solve(eye + g_k * Q, Q)
        g = M @ (x - c)
        m = delta * m + g
        x = x - g_k * (g + delta * m)
        ref.append(x.copy())
        # (x - c, m) <- T (x - c, m): m' = delta m + M e, e' = e - g_k (M e + delta m').
        steps.append(np.block([[eye - g_k * (1 + delta) * M, -g_k * delta**2 * eye],
                               [M, delta * eye]]))
    ref = np.array(ref)
    # Rounding: each inner step rounds y - h grad_H (~(2 + dim) roundings of size R); the
    # inner map contracts by r, so <= (2 + dim) eps R / (1 - r) reaches y_L, and g = (x-y)/gamma
    # carries it times 1/gamma; the outer step multiplies g by gamma (1 + 2 delta) and rounds x
    # and m once more. Each step's error is carried to the end by at most P = the largest
    # norm of a product of the T's.
    R = np.abs(ref).max() + np.abs(c).max()
    per_step = (1 + 2 * delta) * (2 + dim) * EPS32 * R / (1 - r) + 3 * EPS32 * R
    P, prod = 1.0, np.eye(2 * dim)
    for T in steps[::-1]:
        prod = prod @ T
        P = max(P, np.linalg.norm(prod, 2))
    tol = P * num_outer * per_step
    err = np.abs(path - ref).max()
    assert err <= tol, (err, tol)
    # Teeth: the iterates move by far more than the tolerance, and plain GD on f differs.
    assert np.abs(ref[-1] - ref[0]).max() > 1e3 * tol
    assert int(state.count) == num_outer and int(state.num_grads) == num_outer * L


def test_entropy_sgd_mean_iterates_follow_closed_form_descent():
    """Entropy-SGD with a noisy ULA inner loop (beta = 50), ``eta = gamma`` (proximal), no
    momentum: over many independent runs, the mean of ``x_k`` follows the closed form
    ``x_{k+1} - c = (I - gamma M)(x_k - c)``.

    Every map is affine and the Langevin noise has mean zero, so ``E[x_k]`` follows the
    noise-free recursion exactly; its difference from the closed form is the inner bias
    ``b = alpha^L + (1 - alpha) sum_l alpha^(L-l) r^l`` per step (exponential average of
    ``y_l - m = (I - h A)^l (x - m)``), added up over steps because ``I - gamma M`` is a
    contraction (eigenvalues ``1 / (1 + gamma q)``)."""
    case = le.GaussianCase.from_condition_number(3, 4.0, gamma=1.0, beta=50.0, seed=2)
    num_outer, num_runs, L, h, alpha = 6, 400, 60, 0.4, 0.75
    tx = optim.entropy_sgd(gamma=case.gamma, beta=case.beta, num_steps=L, step_size=h,
                           momentum=0.0)
    grad_fn = quadratic_grad_fn(case.Q, case.c)
    x0 = jnp.asarray(case.c + 2.0, jnp.float32)

    @jax.jit
    def one_run(key):
        state = tx.init(x0)

        def body(carry, k):
            x, state = carry
            updates, state = tx.update(None, state, x, grad_fn=grad_fn, key=k)
            x = optax.apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(body, (x0, state), jax.random.split(key, num_outer))
        return xs

    runs = np.asarray(jax.vmap(one_run)(jax.random.split(jax.random.key(3), num_runs)),
                      np.float64)  # (runs, steps, dim)
    x, ref = np.asarray(x0, np.float64), []
    for _ in range(num_outer):
        x = x - case.gamma * case.grad(x)
        ref.append(x)
    ref = np.array(ref)
    eig = np.linalg.eigvalsh(case.A)
    r = np.abs(1 - h * eig).max()
    b = alpha**L + (1 - alpha) * sum(alpha ** (L - l) * r**l for l in range(1, L + 1))
    before = np.vstack([np.asarray(x0, np.float64), ref[:-1]])
    g_norms = np.linalg.norm(case.grad(before), axis=1)
    bias = case.gamma * b * np.cumsum(g_norms)[:, None]
    se = runs.std(0, ddof=1) / math.sqrt(num_runs)
    q = stats.t.ppf(1 - ALPHA / (2 * ref.size), num_runs - 1)  # Bonferroni over steps x dims
    rounding = 10 * L * EPS32 * (np.abs(ref).max() + np.abs(case.c).max())
    np.testing.assert_array_less(np.abs(runs.mean(0) - ref), q * se + bias + rounding)
    # Teeth: the steps are large against the tolerance (a wrong sign or a factor 2 fails).
    assert np.linalg.norm(ref[0] - np.asarray(x0)) > 20 * (q * se + bias + rounding).max()


# ---------------------------------------------------------------------------------------------
# HJ in the rho form equals HJ in the rho2 form (eq. 34); eta = gamma is the proximal step.


def hj_gradient(form, num_steps, gamma, h, x, batches):
    """The outer gradient g of one HJ update (``learning_rate = 1``, no momentum: updates = -g)."""
    tx = optim.hj(1.0, gamma=gamma, num_steps=num_steps, step_size=h, form=form, momentum=0.0)
    updates, _ = tx.update(None, tx.init(x), x, grad_fn=wavy_grad, batches=batches)
    return -np.asarray(updates, np.float64)


@pytest.mark.parametrize("h", [0.05, 0.12])
def test_hj_rho_form_equals_rho2_form(h):
    """With ``z = x - y``, the rho form is ``z_{l+1} = (1 - h/gamma) z_l + h grad f(x - z_l)``
    and returns ``g_rho(L) = z_L / gamma``; the rho2 form (eq. 34) runs the same recursion to
    ``z_{L-1}`` and returns ``g_rho2(L) = grad f(x - z_{L-1})``. Hence, exactly, for any f and
    the same mini-batches: ``g_rho(L) = (h/gamma) g_rho2(L) + (1 - h/gamma) g_rho(L-1)``,
    and ``h = gamma`` makes the two forms identical (checked on a non-convex f with noise)."""
    gamma, L, dim = 0.2, 7, 5
    x = jnp.asarray(np.linspace(-1.0, 1.3, dim), jnp.float32)
    batches = 0.3 * jax.random.normal(jax.random.key(4), (L, dim))
    g_rho = hj_gradient("rho", L, gamma, h, x, batches)
    g_rho_short = hj_gradient("rho", L - 1, gamma, h, x, batches[:-1])
    g_rho2 = hj_gradient("rho2", L, gamma, h, x, batches)
    # Rounding: z is computed as x - y (|x| + |y| <= 2 Z), each of L steps rounds ~4 terms of
    # size Z + h |grad f|, and the result is divided by gamma.
    Z = 2.0 + np.abs(np.asarray(x)).max()
    tol = 8 * L * EPS32 * (Z + h * 4.0) / gamma
    np.testing.assert_allclose(g_rho, (h / gamma) * g_rho2 + (1 - h / gamma) * g_rho_short,
                               rtol=0, atol=tol)
    assert np.abs(g_rho - g_rho2).max() > 1e3 * tol  # the relation is not trivial here
    g_prox = hj_gradient("rho", L, h, h, x, batches)  # gamma = h
    np.testing.assert_allclose(g_prox, hj_gradient("rho2", L, h, h, x, batches), rtol=0,
                               atol=8 * L * EPS32 * (Z + h * 4.0) / h)


def test_eta_gamma_is_the_proximal_step():
    """``learning_rate=None`` (``eta = gamma``) and no momentum give ``x <- <y>``: checked
    against the float64 inner recursions on a non-convex f, with scoping (``eta = gamma_k``):
    HJ's last iterate, and Entropy-SGD's exponential average at ``beta = inf``."""
    dim, L, h, alpha = 4, 20, 0.05, 0.75
    schedule = optim.scoping(0.3, 0.2)
    x0 = jnp.asarray(np.linspace(-0.8, 1.1, dim), jnp.float32)

    def inner(x, gamma, estimator):
        y, mu = x.copy(), x.copy()
        for _ in range(L):
            y = y - h * (-3 * np.sin(3 * y) + 0.2 * y + (y - x) / gamma)
            mu = alpha * mu + (1 - alpha) * y
        return y if estimator == "last" else mu

    for tx, estimator in [
        (optim.hj(gamma=schedule, num_steps=L, step_size=h, momentum=0.0), "last"),
        (optim.entropy_sgd(gamma=schedule, beta=float("inf"), num_steps=L, step_size=h,
                           momentum=0.0), "exponential"),
    ]:
        path, _ = run_steps(tx, x0, 2, grad_fn=wavy_grad, batches=jnp.zeros((L, dim)))
        x1 = inner(path[0], 0.3, estimator)
        x2 = inner(path[1], 0.3 * 0.8, estimator)  # gamma_1 = gamma_0 (1 - 0.2)
        # L steps of ~4 roundings of size |y| + h |grad H|, then (x - <y>)/gamma * gamma.
        tol = 6 * L * EPS32 * (2.0 + h * 4.0)
        np.testing.assert_allclose(path[1], x1, rtol=0, atol=tol)
        np.testing.assert_allclose(path[2], x2, rtol=0, atol=2 * tol)
        assert np.abs(path[1] - path[0]).max() > 1e3 * tol
    # learning_rate=None is learning_rate=gamma.
    explicit = optim.hj(0.3, gamma=0.3, num_steps=L, step_size=h, momentum=0.0)
    implicit = optim.hj(gamma=0.3, num_steps=L, step_size=h, momentum=0.0)
    kw = dict(grad_fn=wavy_grad, batches=jnp.zeros((L, dim)))
    np.testing.assert_array_equal(run_steps(explicit, x0, 1, **kw)[0],
                                  run_steps(implicit, x0, 1, **kw)[0])


# ---------------------------------------------------------------------------------------------
# Paper Figure 1: a wide valley beside many narrow minima.

WIDE_CURVATURE, WELL_DEPTH, WELL_PERIOD, NOISE = 0.25, 0.3, 0.5, 0.1


def figure1_loss(x):
    """A wide valley ``0.125 x^2`` (curvature 0.25) and, for ``|x| > 1.5``, narrow cosine wells
    of depth 0.3 and period 0.5 (curvature ``0.3 (2 pi / 0.5)^2 / 2 = 23.7``, about 100 times
    the valley's; those near the valley are lower than its minimum). ``x``: (1,)."""
    wells = jax.nn.sigmoid((jnp.abs(x) - 1.5) / 0.1)
    return jnp.sum(0.5 * WIDE_CURVATURE * x**2
                   - WELL_DEPTH * wells * (1 + jnp.cos(2 * jnp.pi * x / WELL_PERIOD)) / 2)


def figure1_grad(x, key):
    """Its gradient plus N(0, 0.1^2) 'mini-batch' noise."""
    return jax.grad(figure1_loss)(x) + NOISE * jax.random.normal(key, x.shape)


def wide_basin_share(tx, starts, budget, grads_per_update, seed):
    """Share of the starts whose final iterate lies in the wide basin (|x| < 1)."""
    num_updates = budget // grads_per_update

    def one(x0, key):
        def body(carry, k):
            x, state = carry
            updates, state = tx.update(None, state, x, grad_fn=figure1_grad, key=k)
            return (optax.apply_updates(x, updates), state), None

        (x, state), _ = jax.lax.scan(body, (x0, tx.init(x0)),
                                     jax.random.split(key, num_updates))
        return x, state.num_grads

    keys = jax.random.split(jax.random.key(seed), starts.shape[0])
    xs, spent = jax.jit(jax.vmap(one))(starts, keys)
    assert np.all(np.asarray(spent) == budget)  # the equal budget, as the optimisers count it
    return float(np.mean(np.abs(np.asarray(xs)) < 1.0))


def test_figure1_local_entropy_finds_the_wide_valley():
    """Random starts uniform on [-5, 5], 2000 gradient evaluations each, the same step 0.05
    for every gradient (SGD's learning rate = the inner step; at 0.05 the narrow wells are
    stable for SGD with Nesterov 0.9, since 0.05 * 23.7 < 2 (1 + 0.9) / (1 + 2 * 0.9)).

    Entropy-SGD at beta = 2 (temperature 0.5, above the wells' depth 0.3) samples across the
    wells within the coupling radius ``sqrt(gamma / beta) = 0.7 > period``, so ``f_gamma`` has
    no narrow minima (the viscous smoothing of Figure 1); HEAT smooths them with
    ``N(0, gamma)`` perturbations. SGD stays in the well where it starts.
    Measured (seeds 5, 6; 800 starts): SGD 0.360, Entropy-SGD 0.863, HEAT 1.000, HJ 0.393
    (binomial standard errors about 0.017).

    Noise-free HJ does not beat SGD here, and cannot: its inner loop starts at ``y = x``, and
    at a local minimum ``x*`` of f, ``grad H(x*) = grad f(x*) = 0``, so ``y`` never moves and
    every narrow well is a fixed point of the HJ step (the Hopf-Lax formula's global inf
    would leave such wells, a local descent does not). With only the 'mini-batch' noise it
    is SGD at the inner step; only step-size instability in the wells (a larger step, which
    helps SGD equally) moves it. The assertion for HJ is that it matches SGD; the test below
    checks the fixed point, and that the exact Hopf-Lax step keeps these wells too.
    """
    n, budget = 800, 2000
    starts = jax.random.uniform(jax.random.key(5), (n, 1), minval=-5.0, maxval=5.0)
    shares = {
        "sgd": wide_basin_share(optim.sgd(0.05), starts, budget, 1, seed=6),
        "entropy_sgd": wide_basin_share(
            optim.entropy_sgd(0.03, gamma=1.0, beta=2.0, step_size=0.05), starts, budget, 20,
            seed=6),
        "heat": wide_basin_share(optim.heat(0.05, gamma=0.5), starts, budget, 20, seed=6),
        "hj": wide_basin_share(optim.hj(gamma=1.0, step_size=0.05), starts, budget, 5, seed=6),
    }
    # A clear margin: the difference of two independent binomial shares exceeds 5 standard
    # errors (a one-sided chance below 3e-7 under equal shares).
    def se(p, q):
        return math.sqrt((p * (1 - p) + q * (1 - q)) / n + 1 / n**2)

    for name in ("entropy_sgd", "heat"):
        assert shares[name] - shares["sgd"] > 5 * se(shares[name], shares["sgd"]), shares
    assert abs(shares["hj"] - shares["sgd"]) < 4 * se(shares["hj"], shares["sgd"]), shares


def hopf_lax_share(starts, gamma, num_updates=100):
    """Share of ``starts`` in the wide basin after ``num_updates`` exact non-viscous HJ steps
    with ``eta = gamma``: ``x <- argmin_y f(y) + (x - y)^2 / (2 gamma)``, the global argmin
    of the Hopf-Lax formula (paper Lemma 2) on a grid of step 1e-3 over [-8, 8]."""
    grid = np.linspace(-8.0, 8.0, 16001)
    f = np.asarray(jax.vmap(figure1_loss)(jnp.asarray(grid[:, None], jnp.float32)), np.float64)
    x = np.asarray(starts, np.float64)[:, 0]
    for _ in range(num_updates):
        x = grid[np.argmin(f[None, :] + (x[:, None] - grid[None, :]) ** 2 / (2 * gamma), 1)]
    return float(np.mean(np.abs(x) < 1.0))


def test_figure1_hj_keeps_the_narrow_wells():
    """The two facts behind HJ matching SGD in the Figure 1 test, checked.

    1. The bottom ``x*`` of a narrow well is an attracting fixed point of the HJ update: from
       ``x* + 0.1`` (inside the well, whose half-period is 0.25), 40 updates with a noise-free
       gradient return to ``x*``, and the update at ``x*`` is zero up to float32 rounding.
    2. Even the *exact* non-viscous HJ, the proximal point as the global argmin of ``H``
       (Hopf-Lax, on a grid), keeps the wells at this scope: iterated from the same starts
       at ``gamma = 1`` it ends in the wide basin less often than SGD does (the paper's
       Figure 1 caption: non-viscous HJ preserves local minima for short times and ends in
       "a nearly optimal local minimum"). It reaches the basin from every start only at
       ``gamma = 8``, where the argmin lies several units from ``x``: out of reach of a
       descent started at ``y = x``. Measured (800 starts): exact HJ 0.23, 0.24, 0.27 at
       gamma 1, 2, 4; 1.0 at gamma 8; SGD 0.36.
    """
    def descend(x, _):
        return x - 0.02 * jax.grad(figure1_loss)(x), None

    x_star, _ = jax.lax.scan(descend, jnp.array([-3.05]), None, length=5000)
    assert abs(float(jax.grad(figure1_loss)(x_star)[0])) < 1e-4  # a critical point
    exact = jax.jit(lambda x, k: jax.grad(figure1_loss)(x))
    tx = optim.hj(gamma=1.0, step_size=0.05)
    path, _ = run_steps(tx, x_star + 0.1, 40, grad_fn=exact)
    # Attracted back: |x - x*| shrinks from 0.1 to the rounding level of the iterates.
    assert abs(path[-1, 0] - float(x_star[0])) < 1e-4, path[-1]
    updates, _ = tx.update(None, tx.init(x_star), x_star, grad_fn=exact)
    # One update moves by eta * (x - y_L)/gamma with y_L - x a sum of L = 5 steps of size
    # h |f'(x*)| <= 0.05 * 1e-4, plus rounding of x (3 ulp of 3.05).
    assert abs(float(updates[0])) < 5 * 0.05 * 1e-4 + 3 * EPS32 * 3.05

    n = 800
    starts = jax.random.uniform(jax.random.key(5), (n, 1), minval=-5.0, maxval=5.0)
    sgd = wide_basin_share(optim.sgd(0.05), starts, 2000, 1, seed=6)
    assert hopf_lax_share(starts, gamma=1.0) < sgd
    assert hopf_lax_share(starts, gamma=8.0) == 1.0


# ---------------------------------------------------------------------------------------------
# Cost accounting, SGD, schedules, flax NNX, bad input.


def test_gradient_counts_match_calls():
    """``state.num_grads`` equals the number of ``grad_fn`` calls actually made."""
    calls = []

    def counted(y, b):
        jax.debug.callback(lambda u: calls.append(1), y)  # once per chain under vmap
        return wavy_grad(y, 0.0)

    x = jnp.zeros(2)
    cases = [
        (optim.entropy_sgd(gamma=0.5, num_steps=4, num_chains=3), 12),
        (optim.entropy_sgd(gamma=0.5, num_steps=4, sampler="baoab"), 5),  # + its init
        (optim.hj(gamma=0.5, num_steps=3), 3),
        (optim.hj(gamma=0.5, num_steps=3, form="rho2"), 3),
        (optim.heat(0.1, gamma=0.5, num_steps=6), 6),
        (optim.sgd(0.1), 1),
    ]
    for tx, per_update in cases:
        calls.clear()
        _, state = run_steps(tx, x, 2, grad_fn=counted, key=jax.random.key(0))
        jax.effects_barrier()
        assert int(state.num_grads) == len(calls) == 2 * per_update


@pytest.mark.parametrize("make", [
    lambda u: optim.entropy_sgd(0.05, gamma=0.5, num_steps=4, beta=50.0, unroll=u),
    lambda u: optim.hj(gamma=0.5, num_steps=4, unroll=u),
    lambda u: optim.hj(gamma=0.5, num_steps=4, form="rho2", unroll=u),
    lambda u: optim.heat(0.05, gamma=0.5, num_steps=4, unroll=u),
], ids=["entropy_sgd", "hj", "hj-rho2", "heat"])
def test_unrolled_inner_loop_gives_the_same_iterates(make):
    """``unroll`` changes the compiled loop, not the arithmetic: the same key gives the same
    iterates (to float32 rounding) with the loop rolled, partly and fully unrolled."""
    x = jnp.array([0.3, -1.2])
    batches = 0.1 * jax.random.normal(jax.random.key(4), (4, 2))  # 'mini-batch' noise
    paths = [run_steps(make(u), x, 3, grad_fn=wavy_grad, batches=batches)[0]
             for u in (1, 2, True)]
    for path in paths[1:]:
        np.testing.assert_allclose(path, paths[0], rtol=1e-5, atol=1e-6)


def test_sgd_is_optax_sgd():
    """Same iterates as ``optax.sgd`` (Nesterov 0.9), fed the gradient or via ``grad_fn``."""
    Q, c = quadratic(3, 0.5, 2.0, seed=7)
    grad_fn = quadratic_grad_fn(Q, c)
    x0 = jnp.asarray(c + 1.0, jnp.float32)
    ref_tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    x, ref_state = x0, ref_tx.init(x0)
    ref = [np.asarray(x)]
    for _ in range(5):
        updates, ref_state = ref_tx.update(grad_fn(x, None), ref_state, x)
        x = optax.apply_updates(x, updates)
        ref.append(np.asarray(x))
    path, state = run_steps(optim.sgd(0.1), x0, 5, grad_fn=grad_fn)
    np.testing.assert_allclose(path, np.array(ref), rtol=4 * EPS32, atol=4 * EPS32)
    assert int(state.num_grads) == 5


def test_scoping_schedule():
    """``gamma_k = gamma_0 (1 - gamma_1)^(k/L)``, equal to optax's exponential decay."""
    sched = optim.scoping(0.1, 1e-3, L=20)
    ks = np.array([0, 1, 20, 400, 4000])
    np.testing.assert_allclose(np.asarray(sched(ks)), 0.1 * (1 - 1e-3) ** (ks / 20), rtol=1e-6)
    decay = optax.exponential_decay(0.1, transition_steps=20, decay_rate=1 - 1e-3)
    # Both in float32, with exponents of size <= 1 rounded differently: a few tens of eps.
    np.testing.assert_allclose(np.asarray(sched(ks)), np.asarray(decay(ks)), rtol=32 * EPS32)
    # coupling = 1/gamma as a schedule gives the same updates as the equivalent gamma.
    x, kw = jnp.ones(2), dict(grad_fn=wavy_grad, batches=jnp.zeros((5, 2)))
    a = run_steps(optim.hj(gamma=optim.scoping(0.2, 0.1)), x, 3, **kw)[0]
    b = run_steps(optim.hj(coupling=lambda k: 1 / optim.scoping(0.2, 0.1)(k)), x, 3, **kw)[0]
    np.testing.assert_allclose(a, b, rtol=4 * EPS32, atol=4 * EPS32)


def test_flax_nnx_model_trains_in_an_unchanged_sgd_loop():
    """An NNX training step written for ``optax.sgd`` runs Entropy-SGD unchanged: only the
    ``tx`` differs (its ``grad_fn`` given to the factory, keys from its state). The model
    learns (chance accuracy is 0.25), and the NNX path gives the parameters of the
    pure-pytree path."""
    rng = np.random.default_rng(8)
    n, classes = 256, 4
    labels = rng.integers(0, classes, n)
    protos = rng.standard_normal((classes, 784))
    images = jnp.asarray(protos[labels] + 2.0 * rng.standard_normal((n, 784)), jnp.float32)
    labels = jnp.asarray(labels)

    def make_model():
        return nets.MnistFC(hidden=16, rngs=nnx.Rngs(0))

    pure = nets.functional(make_model())

    def grad_fn(params, key):
        k_batch, k_drop = jax.random.split(key)
        idx = jax.random.choice(k_batch, n, (64,), replace=False)
        return jax.grad(pure.loss)(params, (images[idx], labels[idx], k_drop))

    @nnx.jit
    def train_step(model, optimizer, key):  # the loop as written for optax.sgd
        k_batch, k_drop = jax.random.split(key)
        idx = jax.random.choice(k_batch, n, (64,), replace=False)

        def loss(model):
            logits = model(images[idx], k_drop)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

        optimizer.update(model, nnx.grad(loss)(model))

    @nnx.jit
    def metrics(model):
        logits = model(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

    num_updates = 10
    tx = optim.entropy_sgd(gamma=1.0, num_steps=5, step_size=0.05, grad_fn=grad_fn)
    model = make_model()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)  # was optax.sgd(0.05, 0.9, True)
    start = float(metrics(model)[0])
    for key in jax.random.split(jax.random.key(9), num_updates):
        train_step(model, optimizer, key)
    end, acc = map(float, metrics(model))
    assert end < 0.5 * start and acc > 0.9, (start, end, acc)
    assert int(optimizer.opt_state.num_grads[...]) == 5 * num_updates

    def pure_step(carry, _):
        params, state = carry
        updates, state = tx.update(None, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(
        pure_step, (p, tx.init(p)), None, length=num_updates))(pure.params)
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(params),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_bad_input_names_the_argument():
    x = jnp.zeros(2)
    with pytest.raises(ValueError, match="gamma"):
        optim.entropy_sgd()
    with pytest.raises(ValueError, match="coupling"):
        optim.hj(gamma=0.1, coupling=10.0)
    with pytest.raises(ValueError, match="gamma"):
        optim.heat(0.1, gamma=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        optim.sgd(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="num_steps"):
        optim.hj(gamma=0.1, num_steps=0)
    with pytest.raises(ValueError, match="form"):
        optim.hj(gamma=0.1, form="rho3")
    with pytest.raises(ValueError, match="alpha"):
        optim.entropy_sgd(gamma=0.1, sampler="hj", alpha=1.5)
    with pytest.raises(ValueError, match="gamma_1"):
        optim.scoping(0.1, 1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        optim.heat(lambda k: -1.0, gamma=0.1)
    for make in (optim.entropy_sgd, optim.hj, lambda **kw: optim.heat(0.1, **kw)):
        with pytest.raises(ValueError, match="unroll"):
            make(gamma=0.1, unroll=0)
    with pytest.raises(TypeError, match="grad_fn"):
        optim.entropy_sgd(gamma=0.1, grad_fn=3)
    tx = optim.entropy_sgd(gamma=0.1, num_steps=3)
    state = tx.init(x)
    with pytest.raises(TypeError, match="grad_fn"):
        tx.update(None, state, x, key=jax.random.key(0))
    with pytest.raises(ValueError, match="params"):
        tx.update(None, state, grad_fn=wavy_grad, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batches"):
        tx.update(None, state, x, grad_fn=wavy_grad, key=jax.random.key(0),
                  batches=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="batches"):
        tx.update(None, state, x, grad_fn=wavy_grad, batches=jnp.zeros((4, 2)))
    with pytest.raises(TypeError, match="loss_fn"):
        full = optim.entropy_sgd(gamma=0.1, sampler="mala", beta=10.0)
        full.update(None, full.init(x), x, key=jax.random.key(0))


@pytest.mark.parametrize("learning_rate", ["0.1", b"0.1", True, [0.1]])
@pytest.mark.parametrize("name", ["sgd", "heat", "entropy_sgd", "hj"])
def test_a_learning_rate_that_is_not_a_number_is_rejected(name, learning_rate):
    """Issue 16 item 10: ``"0.1"`` used to be accepted (``float("0.1")``)."""
    with pytest.raises(TypeError, match="`learning_rate`"):
        getattr(optim, name)(learning_rate, **({} if name == "sgd" else {"gamma": 0.1}))
