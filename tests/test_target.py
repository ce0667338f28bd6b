"""``local_entropy_target`` and ``rho2_target`` (docs/conventions.md) on arrays and pytrees.

JAX computes in float32 here; references are float64 NumPy on the same float32 inputs, and
tolerances are float32 rounding bounds ``k * EPS32 * (size of the terms summed)`` with ``k`` the
number of roundings in the longest chain of operations. The sampler check uses a Monte Carlo
standard error from independent chains.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from scipy import stats

import lesample as le

EPS32 = float(np.finfo(np.float32).eps)
ALPHA = 1e-4  # chance that a correct implementation fails a statistical test with a new seed
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)
D = 4
A_VEC = np.array([0.5, -1.0, 0.25, 2.0])


def f_flat(y):
    """A smooth non-quadratic loss: sum log cosh(y) + 0.5 (a . y)^2."""
    return jnp.sum(jnp.log(jnp.cosh(y))) + 0.5 * jnp.dot(jnp.asarray(A_VEC, y.dtype), y) ** 2


def f_ref(y):
    y = np.asarray(y, np.float64)
    return np.sum(np.log(np.cosh(y))) + 0.5 * (A_VEC @ y) ** 2


def grad_f_ref(y):
    y = np.asarray(y, np.float64)
    return np.tanh(y) + A_VEC * (A_VEC @ y)


def f32(a):
    return jnp.asarray(np.asarray(a, np.float32))


def grad_tol(y, x, gamma):
    """float32 bound for grad f(y) + (y - x)/gamma: log cosh/tanh are accurate to a few ulps,
    a . y is a D-term sum (D EPS32 |a||y|), and (y - x)/gamma rounds twice."""
    y64, x64 = np.asarray(y, np.float64), np.asarray(x, np.float64)
    size = np.abs(np.tanh(y64)) + np.abs(A_VEC) * (np.abs(A_VEC) @ np.abs(y64))
    return (D + 4) * EPS32 * (size + 2 * np.abs(y64 - x64) / gamma)


def value_tol(y, x, gamma):
    """float32 bound for f(y) + |x - y|^2/(2 gamma): D-term sums of terms of size T, rounded."""
    y64, x64 = np.asarray(y, np.float64), np.asarray(x, np.float64)
    T = np.sum(np.abs(np.log(np.cosh(y64)))) + (np.abs(A_VEC) @ np.abs(y64)) ** 2
    return (2 * D + 4) * EPS32 * (T + np.sum((y64 - x64) ** 2) / gamma)


# ---------------------------------------------------------------------------------------------
# rho(y; x) on flat arrays.


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), gamma=st.floats(0.05, 5.0), beta=st.floats(0.1, 50.0))
def test_flat_target_matches_definition(seed, gamma, beta):
    rng = np.random.default_rng(seed)
    x, y = f32(rng.normal(size=D)), f32(rng.normal(size=D) * 2)
    t = le.local_entropy_target(f_flat, x, gamma, beta)
    H_ref = f_ref(y) + np.sum((np.float64(x) - np.float64(y)) ** 2) / (2 * gamma)
    grad_ref = grad_f_ref(y) + (np.float64(y) - np.float64(x)) / gamma
    vtol, gtol = value_tol(y, x, gamma), grad_tol(y, x, gamma)

    assert abs(float(t.H(y)) - H_ref) <= vtol
    np.testing.assert_array_less(np.abs(np.asarray(t.grad_H(y), np.float64) - grad_ref), gtol)
    np.testing.assert_array_less(np.abs(np.asarray(jax.grad(t.H)(y), np.float64) - grad_ref), gtol)
    v, g = t.value_and_grad_H(y)
    assert abs(float(v) - H_ref) <= vtol
    np.testing.assert_array_less(np.abs(np.asarray(g, np.float64) - grad_ref), gtol)
    # logdensity = -beta H: one more multiplication (one more rounding of size beta |H|).
    assert abs(float(t.logdensity(y)) + beta * H_ref) <= beta * (vtol + EPS32 * abs(H_ref))
    assert float(t.gamma) == gamma and float(t.beta) == beta
    assert t.x is x


def test_at_y_equal_x_the_coupling_term_vanishes():
    """At y = x the coupling term is exactly zero: grad_H(x) = grad f(x), H(x) = f(x)."""
    x = f32([0.3, -0.7, 1.1, 0.0])
    t = le.local_entropy_target(f_flat, x, 0.5, 2.0)
    np.testing.assert_array_equal(np.asarray(t.grad_H(x)), np.asarray(jax.grad(f_flat)(x)))
    assert float(t.H(x)) == float(f_flat(x))


def test_target_works_under_jit_with_traced_gamma_and_beta():
    x, y = f32([0.3, -0.7, 1.1, 0.0]), f32([1.0, 0.5, -0.5, 2.0])

    @jax.jit
    def fn(x, y, gamma, beta):
        t = le.local_entropy_target(f_flat, x, gamma, beta)
        return t.H(y), t.grad_H(y), t.logdensity(y)

    H, g, logp = fn(x, y, 0.5, 3.0)
    t = le.local_entropy_target(f_flat, x, 0.5, 3.0)
    gtol = grad_tol(y, x, 0.5)
    assert abs(float(H) - float(t.H(y))) <= value_tol(y, x, 0.5)
    np.testing.assert_array_less(np.abs(np.asarray(g) - np.asarray(t.grad_H(y))), gtol)
    # beta times two H values, each within value_tol of the exact one.
    assert abs(float(logp) - float(t.logdensity(y))) <= 3.0 * 2 * value_tol(y, x, 0.5)


# ---------------------------------------------------------------------------------------------
# pytrees.

TREE_X = {"w": np.array([[0.3, -0.7], [1.1, 0.0]]), "b": np.array([0.2, -0.4])}
TREE_Y = {"w": np.array([[1.0, 0.5], [-0.5, 2.0]]), "b": np.array([-1.0, 0.6])}


def tree32(t):
    return jax.tree_util.tree_map(f32, t)


def test_pytree_target_equals_flat_target_on_the_raveled_parameters():
    x, y = tree32(TREE_X), tree32(TREE_Y)
    x_flat, unravel = ravel_pytree(x)
    y_flat, _ = ravel_pytree(y)
    D_tree = x_flat.size

    def f_tree(p):
        v = ravel_pytree(p)[0]
        a = jnp.asarray(A_VEC, v.dtype)
        return jnp.sum(jnp.log(jnp.cosh(v))) + 0.5 * jnp.dot(a, v[:D]) ** 2

    f_vec = lambda v: f_tree(unravel(v))  # noqa: E731
    gamma, beta = 0.4, 5.0
    t_tree = le.local_entropy_target(f_tree, x, gamma, beta)
    t_flat = le.local_entropy_target(f_vec, x_flat, gamma, beta)

    g_tree = t_tree.grad_H(y)
    assert jax.tree_util.tree_structure(g_tree) == jax.tree_util.tree_structure(x)
    for leaf, ref in zip(jax.tree_util.tree_leaves(g_tree), jax.tree_util.tree_leaves(x),
                         strict=True):
        assert leaf.shape == ref.shape and leaf.dtype == ref.dtype
    # Same arithmetic, summed leaf by leaf instead of over one vector: |x - y|^2 is a sum of
    # D_tree squares (D_tree EPS32 relative), everything else is identical elementwise.
    hv = float(t_flat.H(y_flat))
    assert abs(float(t_tree.H(y)) - hv) <= 2 * D_tree * EPS32 * abs(hv)
    g_flat = np.asarray(t_flat.grad_H(y_flat))
    gf_size = np.abs(np.asarray(jax.grad(f_vec)(y_flat)))
    gtol = 2 * D_tree * EPS32 * (gf_size + np.abs(np.asarray(y_flat - x_flat)) / gamma)
    np.testing.assert_array_less(np.abs(np.asarray(ravel_pytree(g_tree)[0]) - g_flat), gtol)
    np.testing.assert_array_less(
        np.abs(np.asarray(ravel_pytree(jax.grad(t_tree.H)(y))[0]) - g_flat), gtol
    )
    # grad_H = grad f(y) + (y - x)/gamma, leaf by leaf.
    gf = jax.grad(f_tree)(y)
    manual = jax.tree_util.tree_map(lambda a, u, v: a + (u - v) / gamma, gf, y, x)
    np.testing.assert_array_less(
        np.abs(np.asarray(ravel_pytree(manual)[0]) - np.asarray(ravel_pytree(g_tree)[0])), gtol
    )
    assert abs(float(t_tree.logdensity(y)) + beta * hv) <= beta * 2 * D_tree * EPS32 * abs(hv)


# ---------------------------------------------------------------------------------------------
# Mini-batch losses f(params, batch).


def f_batch(p, batch):
    """0.5 mean_j |p - batch_j|^2: grad = p - mean_j batch_j."""
    return 0.5 * jnp.mean(jnp.sum((p[None] - batch) ** 2, axis=-1))


def test_minibatch_loss_forwards_the_batch():
    rng = np.random.default_rng(0)
    x, y = f32(rng.normal(size=3)), f32(rng.normal(size=3))
    b1, b2 = f32(rng.normal(size=(5, 3))), f32(rng.normal(size=(5, 3)) + 3.0)
    gamma = 0.25
    t = le.local_entropy_target(f_batch, x, gamma, 1.0)
    for b in (b1, b2):
        y64, x64, b64 = (np.asarray(a, np.float64) for a in (y, x, b))
        ref_g = y64 - b64.mean(0) + (y64 - x64) / gamma
        ref_H = 0.5 * np.mean(np.sum((y64 - b64) ** 2, -1)) + np.sum((x64 - y64) ** 2) / (2 * gamma)
        # 5-point means of 3-term sums (5 + 3 roundings) plus ~4 for the coupling term; all
        # terms of H are non-negative, so its relative error is bounded by the same count.
        k = 5 + 3 + 4
        size = np.abs(y64) + np.abs(b64).mean(0) + 2 * np.abs(y64 - x64) / gamma
        np.testing.assert_array_less(np.abs(np.asarray(t.grad_H(y, b)) - ref_g), k * EPS32 * size)
        v, g = t.value_and_grad_H(y, b)
        np.testing.assert_array_equal(np.asarray(g), np.asarray(t.grad_H(y, b)))
        assert abs(float(t.H(y, b)) - ref_H) <= k * EPS32 * ref_H
        assert abs(float(v) - ref_H) <= k * EPS32 * ref_H
        assert float(t.logdensity(y, b)) == -float(t.H(y, b))  # beta = 1
    # The two batches give different gradients: the batch really is used.
    assert not np.allclose(np.asarray(t.grad_H(y, b1)), np.asarray(t.grad_H(y, b2)))


# ---------------------------------------------------------------------------------------------
# coupling = 1/gamma.


def test_coupling_is_one_over_gamma():
    x, y = f32([0.3, -0.7, 1.1, 0.0]), f32([1.0, 0.5, -0.5, 2.0])
    a = le.local_entropy_target(f_flat, x, coupling=4.0)
    b = le.local_entropy_target(f_flat, x, gamma=0.25)
    assert float(a.gamma) == 0.25  # 1/4 is exact in binary
    assert float(a.H(y)) == float(b.H(y))
    np.testing.assert_array_equal(np.asarray(a.grad_H(y)), np.asarray(b.grad_H(y)))
    c = le.rho2_target(f_flat, x, coupling=4.0)
    assert float(c.gamma) == 0.25


@pytest.mark.parametrize("build", [le.local_entropy_target, le.rho2_target])
def test_gamma_and_coupling_exactly_one(build):
    x = f32([0.3, -0.7, 1.1, 0.0])
    with pytest.raises(ValueError, match="coupling"):
        build(f_flat, x, 0.5, coupling=2.0)
    with pytest.raises(ValueError, match="gamma"):
        build(f_flat, x)
    with pytest.raises(ValueError, match="`coupling`"):
        build(f_flat, x, coupling=0.0)
    with pytest.raises(ValueError, match="`coupling`"):
        build(f_flat, x, coupling=-1.0)


# ---------------------------------------------------------------------------------------------
# rho2(z; x): H2(z) = f(x - z) + |z|^2 / (2 gamma).


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), gamma=st.floats(0.05, 5.0), beta=st.floats(0.1, 50.0))
def test_rho2_target_matches_definition(seed, gamma, beta):
    rng = np.random.default_rng(seed)
    x, z = f32(rng.normal(size=D)), f32(rng.normal(size=D))
    t = le.rho2_target(f_flat, x, gamma, beta)
    y = np.float64(x) - np.float64(z)
    H_ref = f_ref(y) + np.sum(np.float64(z) ** 2) / (2 * gamma)
    grad_ref = -grad_f_ref(y) + np.float64(z) / gamma
    # As for rho with the coupling measured by |z| (pass anchor = y + z so |y - anchor| = |z|),
    # plus the rounding of fl(x - z), <= EPS32 |y| per entry, carried through f by its slope
    # |grad f| and through grad f by its Hessian diag(sech^2) + a a^T.
    anchor = y + np.float64(z)
    vtol = value_tol(y, anchor, gamma) + EPS32 * np.abs(grad_f_ref(y)) @ np.abs(y)
    hess_y = np.abs(y) + np.abs(A_VEC) * (np.abs(A_VEC) @ np.abs(y))
    gtol = grad_tol(y, anchor, gamma) + EPS32 * hess_y
    assert abs(float(t.H(z)) - H_ref) <= vtol
    np.testing.assert_array_less(np.abs(np.asarray(t.grad_H(z), np.float64) - grad_ref), gtol)
    np.testing.assert_array_less(np.abs(np.asarray(jax.grad(t.H)(z), np.float64) - grad_ref), gtol)
    assert abs(float(t.logdensity(z)) + beta * H_ref) <= beta * (vtol + EPS32 * abs(H_ref))
    assert t.x is x  # the anchor, not the zero that H2 is built around


def test_rho2_target_forwards_the_batch():
    rng = np.random.default_rng(1)
    x, z, b = f32(rng.normal(size=3)), f32(rng.normal(size=3)), f32(rng.normal(size=(5, 3)))
    gamma = 0.5
    t = le.rho2_target(f_batch, x, gamma, 2.0)
    x64, z64, b64 = (np.asarray(a, np.float64) for a in (x, z, b))
    # H2 gradient in z: -(x - z - mean b) + z/gamma.
    ref = -(x64 - z64 - b64.mean(0)) + z64 / gamma
    size = np.abs(x64) + np.abs(z64) + np.abs(b64).mean(0) + 2 * np.abs(z64) / gamma
    # As in the rho mini-batch test, plus one rounding of x - z.
    k = 5 + 3 + 5
    np.testing.assert_array_less(np.abs(np.asarray(t.grad_H(z, b)) - ref), k * EPS32 * size)


def gaussian_case():
    rng = np.random.default_rng(5)
    rot, _ = np.linalg.qr(rng.standard_normal((2, 2)))
    Q = (rot * np.array([-0.8, 3.0])) @ rot.T  # non-convex f; gamma |lambda_min| = 0.4 < 1
    return le.GaussianCase((Q + Q.T) / 2, np.array([0.5, -1.0]), gamma=0.5, beta=40.0)


def test_rho2_identity_for_gaussian_by_exact_expectation():
    """grad f_gamma(x) = E_rho2[grad f(x - z)]; for quadratic f, grad f is affine, so the
    expectation is grad f(x - E[z]) with E[z] = x - E_rho[y]; and E[z] is the mode of rho2,
    where the rho2 target's grad_H vanishes."""
    case = gaussian_case()
    x64 = np.array([1.5, 0.7])
    x = f32(x64)
    ez = np.float64(x) - case.mean(np.float64(x))
    g = np.asarray(jax.grad(case.loss)(x - f32(ez)), np.float64)
    expected = case.grad(np.float64(x))
    # float32: x - E[z] (one rounding), Q (x - z - c) (2-term sums): ~4 EPS32 on terms of size
    # |Q| (|x| + |ez| + |c|), plus rounding E[z] to float32.
    size = np.abs(case.Q) @ (np.abs(x64) + np.abs(ez) + np.abs(case.c))
    np.testing.assert_array_less(np.abs(g - expected), 6 * EPS32 * size)
    t = le.rho2_target(case.loss, x, case.gamma, case.beta)
    g2 = np.asarray(t.grad_H(f32(ez)), np.float64)
    np.testing.assert_array_less(np.abs(g2), 6 * EPS32 * (size + np.abs(ez) / case.gamma))
    # ...and the identity is not vacuous: grad f at x itself differs from grad f_gamma(x).
    assert np.linalg.norm(case.Q @ (x64 - case.c) - expected) > 0.1 * np.linalg.norm(expected)


def test_rho2_identity_by_mala_sampling():
    """E_rho2[grad f(x - z)] from MALA draws of the rho2 target agrees with case.grad(x)."""
    case = gaussian_case()
    x = f32([1.5, 0.7])
    x64 = np.float64(x)
    t = le.rho2_target(case.loss, x, case.gamma, case.beta)
    algo = le.build_sampler("mala", t, step_size=0.05)
    num_chains, num_steps = 64, 400
    # Start each chain at an exact draw z = x - y, y ~ rho, so every chain is stationary from
    # step 0 and per-chain means are unbiased; chains are independent, so the spread of their
    # means gives the standard error.
    z0 = f32(x64 - case.sample(x64, num_chains, seed=11))
    trace = le.sample(algo, jax.random.key(0), z0, num_steps=num_steps, num_chains=num_chains,
                      stacked=True)
    z = np.asarray(trace.draws, np.float64)  # (chains, draws, d)
    assert z.shape == (num_chains, num_steps, 2)
    grads = np.asarray(jax.vmap(jax.vmap(jax.grad(case.loss)))(x - jnp.asarray(z, jnp.float32)),
                       np.float64)
    chain_means = grads.mean(1)
    estimate = chain_means.mean(0)
    se = chain_means.std(0, ddof=1) / math.sqrt(num_chains)
    # Student t with chains - 1 dof, Bonferroni over the 2 components.
    q = stats.t.ppf(1 - ALPHA / (2 * 2), num_chains - 1)
    expected = case.grad(x64)
    np.testing.assert_array_less(np.abs(estimate - expected), q * se)
    assert np.linalg.norm(q * se) < 0.1 * np.linalg.norm(expected)  # the check has teeth
    assert 0.5 < float(np.mean(np.asarray(trace.info.acceptance_rate))) <= 1.0


# ---------------------------------------------------------------------------------------------
# Bad input.


BAD_INPUT = [
    (0.0, 1.0, [0.0, 1.0], "`gamma`"),
    (-0.5, 1.0, [0.0, 1.0], "`gamma`"),
    (math.nan, 1.0, [0.0, 1.0], "`gamma`"),
    (math.inf, 1.0, [0.0, 1.0], "`gamma`"),
    (0.5, 0.0, [0.0, 1.0], "`beta`"),
    (0.5, -1.0, [0.0, 1.0], "`beta`"),
    (0.5, math.nan, [0.0, 1.0], "`beta`"),
    (0.5, -math.inf, [0.0, 1.0], "`beta`"),
    (0.5, 1.0, [0.0, math.nan], "`x`"),
    (0.5, 1.0, [math.inf, 1.0], "`x`"),
]

@pytest.mark.parametrize(
    ("build", "gamma", "beta", "x", "name"),
    [(le.local_entropy_target, *case) for case in BAD_INPUT]
    + [
        (le.rho2_target, *case) for case in BAD_INPUT
    ],
)
def test_bad_input_raises_naming_the_argument(build, gamma, beta, x, name):
    with pytest.raises(ValueError, match=name):
        build(lambda y: jnp.sum(y**2), f32(x), gamma, beta)


def test_nonfinite_leaf_in_pytree_x_is_rejected():
    x = {"a": f32([0.0, 1.0]), "b": f32([math.nan])}
    with pytest.raises(ValueError, match="`x`"):
        le.local_entropy_target(lambda p: jnp.sum(p["a"] ** 2), x, 0.5)


@pytest.mark.parametrize("build", [le.local_entropy_target, le.rho2_target])
def test_beta_inf_is_allowed(build):
    x, y = f32([0.3, -0.7, 1.1, 0.0]), f32([1.0, 0.5, -0.5, 2.0])
    t = build(f_flat, x, 0.5, math.inf)
    assert math.isinf(float(t.beta))
    ref = build(f_flat, x, 0.5, 1.0)
    # H and grad_H do not depend on beta at all: bit-identical to the beta = 1 target.
    assert float(t.H(y)) == float(ref.H(y))
    np.testing.assert_array_equal(np.asarray(t.grad_H(y)), np.asarray(ref.grad_H(y)))
