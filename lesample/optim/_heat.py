"""HEAT (paper §7.3, eq. 35): descent on the heat-equation smoothing of ``f``.

    g = (1/L) sum_l grad_fn(x + e_l, b_l),   e_l ~ N(0, (gamma / beta) I)

with ``beta = 1`` (default) giving eq. (35)'s variance ``gamma I``; the general variance is
that of the homogenised dynamics, eq. (23). Then the outer Nesterov step of §7.4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lesample import tree
from lesample.checks import check_int, check_positive, check_schedule, check_scope, check_unroll
from lesample.noise import gaussian_like
from lesample.optim._base import (
    OptimState,
    check_momentum,
    evaluate,
    outer_step,
    step_inputs,
    transformation,
)

__all__ = ["heat"]


def heat(
    learning_rate,
    gamma=None,
    *,
    coupling=None,
    num_steps: int = 20,
    beta: float = 1.0,
    momentum: float = 0.9,
    nesterov: bool = True,
    seed: int = 0,
    unroll: int | bool = 1,
    grad_fn=None,
) -> optax.GradientTransformationExtraArgs:
    """HEAT: average of ``L`` mini-batch gradients at Gaussian perturbations of ``x`` (eq. 35).

    Args:
      learning_rate: the outer step ``eta`` (float or schedule).
      gamma: the smoothing time > 0 (float or schedule; perturbation variance
        ``gamma / beta``); or ``coupling = 1/gamma``, never both.
      num_steps: ``L`` (default 20) perturbed gradients per update.
      beta: inverse temperature; 1 (default) is eq. (35).
      momentum, nesterov: the outer Nesterov momentum (``delta = 0.9``, §7.4).
      seed: seeds the state's key, the source of the perturbations in updates driven by
        ``batches`` and of the keys in updates given neither ``key`` nor ``batches``.
      unroll: perturbed gradients per XLA loop iteration, or True for no loop. On CPU, XLA's
        convolution gradients inside a loop run about 3x slower (``True`` removes the loop,
        for more compile time; LeNet's default matmul convolutions do not need it); 1
        (default) compiles fastest.
      grad_fn: the ``grad_fn`` of every update, given here instead of to ``update``.

    ``update(updates, state, params, *, grad_fn, key=None, batches=None)``: ``updates`` is
    ignored; perturbation ``l`` calls ``grad_fn(x + e_l, keys[l] or batches[l])``;
    ``state.num_grads`` grows by ``L`` per update.
    """
    gamma_s = check_scope(gamma, coupling, schedules=True)
    lr = check_schedule("learning_rate", learning_rate)
    momentum = check_momentum(momentum)
    num_steps = check_int("num_steps", num_steps)
    beta = check_positive("beta", beta)
    seed = check_int("seed", seed, low=0)
    unroll = check_unroll(unroll)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        del grads, loss_fn
        gamma_n = evaluate(gamma_s, state.count)
        grad_inputs, noise_key, rng = step_inputs(key, batches, state.rng, num_steps)
        scale = jnp.sqrt(gamma_n / beta)

        # Perturbation l + 1 is drawn while gradient l runs, which does not depend on it:
        # drawn in front of its own gradient, XLA:CPU ran the two one after the other and
        # LeNet's HEAT step took 1.6x as long. The last iteration's draw goes unused.
        def body(carry, xs):
            total, e = carry
            b, k_next = xs
            g = grad_fn(tree.axpy(scale, e, params), b)
            return (jax.tree_util.tree_map(jnp.add, total, g), gaussian_like(k_next, params)), None

        zero = jax.tree_util.tree_map(lambda u: jnp.zeros_like(u, jnp.result_type(u, 1.0)),
                                      params)
        keys = jax.random.split(noise_key, num_steps)
        next_keys = keys[(jnp.arange(num_steps) + 1) % num_steps]
        (total, _), _ = jax.lax.scan(body, (zero, gaussian_like(keys[0], params)),
                                     (grad_inputs, next_keys), unroll=unroll)
        g = tree.scale(1.0 / num_steps, total)
        eta = evaluate(lr, state.count)
        updates, m = outer_step(g, state, eta, momentum, nesterov)
        n = state.num_grads + jnp.asarray(num_steps, jnp.int32)
        return updates, OptimState(state.count + 1, n, m, rng)

    return transformation("heat", impl, momentum=momentum, seed=seed, num_inputs=num_steps,
                          grad_fn=grad_fn)
