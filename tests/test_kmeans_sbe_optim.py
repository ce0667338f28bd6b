"""lesample.optim.sbe: the implicit step by the stochastic fixed-point iteration, as optax."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lesample.optim import sbe, scoping


def _grad(p):
    """grad f for f(y) = |y - p|^2 / 2: ``y - p`` on every batch."""
    return lambda y, b: y - p


def test_sbe_update_is_the_uniform_mean_of_the_fixed_point_iteration():
    """``y_1 = x - g (x - p)``, ``y_2 = x - g (y_1 - p)``; ``x <- (y_1 + y_2) / 2``."""
    x, p, g = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]), 0.4
    tx = sbe(gamma=g, num_steps=2, grad_fn=_grad(p))
    updates, state = tx.update(None, tx.init(x), x, batches=jnp.zeros((2, 1)))
    y1 = x - g * (x - p)
    y2 = x - g * (y1 - p)
    np.testing.assert_allclose(optax.apply_updates(x, updates), (y1 + y2) / 2, rtol=1e-6)
    assert int(state.num_grads) == 2 and int(state.count) == 1


@pytest.mark.parametrize("g", [0.25, 0.5])
def test_sbe_converges_to_the_backward_euler_step(g):
    """Contraction at rate ``g``: the mean of ``L`` iterates is within ``|x - x'| / ((1 - g)
    L)`` of the implicit step ``x' = (x + g p) / (1 + g)``; the scope follows a schedule."""
    x, p, L = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]), 300
    tx = sbe(gamma=scoping(g, 0.5), num_steps=L, grad_fn=_grad(p))
    updates, _ = tx.update(None, tx.init(x), x, batches=jnp.zeros((L, 1)))
    implicit = (x + g * p) / (1 + g)
    bound = float(jnp.linalg.norm(x - implicit)) / ((1 - g) * L)
    assert float(jnp.linalg.norm(optax.apply_updates(x, updates) - implicit)) <= bound
