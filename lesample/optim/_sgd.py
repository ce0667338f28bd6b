"""SGD, the baseline (paper §8): ``optax.sgd`` plus the gradient count of docs/optimizers.md.

``optax.sgd(eta, momentum=0.9, nesterov=True)`` is the same update; this wrapper adds
``state.num_grads`` (one gradient per update) so that cost comparisons with Entropy-SGD, HJ
and HEAT count the same thing, and accepts the same ``grad_fn``/``key``/``batches``
arguments so that the optimisers are interchangeable in one training loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lesample.checks import check_int, check_schedule
from lesample.optim._base import (
    OptimState,
    check_momentum,
    evaluate,
    outer_step,
    step_inputs,
    transformation,
)

__all__ = ["sgd"]


def sgd(learning_rate, momentum: float = 0.9, nesterov: bool = True, *, seed: int = 0,
        grad_fn=None) -> optax.GradientTransformationExtraArgs:
    """SGD with Nesterov momentum (``delta = 0.9``, §7.4) that counts one gradient per update.

    ``update(updates, state, params=None, *, grad_fn=None, key=None, batches=None)``: without
    ``grad_fn`` (here or in the factory) the incoming ``updates`` is the gradient (as for
    ``optax.sgd``); with ``grad_fn`` the gradient is ``grad_fn(params, k)`` (``k`` split from
    ``key``, or from the state's key seeded by ``seed``) or ``grad_fn(params, batches[0])``
    (leading axis 1), and ``updates`` is ignored. Either way ``state.num_grads`` grows by 1.
    """
    lr = check_schedule("learning_rate", learning_rate)
    momentum = check_momentum(momentum)
    seed = check_int("seed", seed, low=0)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        del loss_fn
        rng = state.rng
        if grad_fn is not None:
            grad_inputs, _, rng = step_inputs(key, batches, state.rng, 1)
            grads = grad_fn(params, jax.tree_util.tree_map(lambda u: u[0], grad_inputs))
        updates, m = outer_step(grads, state, evaluate(lr, state.count), momentum, nesterov)
        n = state.num_grads + jnp.ones((), jnp.int32)
        return updates, OptimState(state.count + 1, n, m, rng)

    return transformation("sgd", impl, momentum=momentum, seed=seed, num_inputs=1,
                          grad_fn=grad_fn, mode="optional")
