"""Stochastic backward Euler (Yin, Pham, Oberman, Osher 2018) as an optax transformation.

One update, with ``x = params`` and ``gamma = gamma(n)`` at outer step ``n``: the implicit
step ``x' = x - gamma grad f(x')`` solved by the stochastic fixed-point iteration

    y_0 = x,   y_{l+1} = x - gamma grad_fn(y_l, b_l),   l = 0, ..., L-1,

and the uniform mean of the trajectory carried over: ``<y> = (1/L) sum_{l=1}^L y_l``,
``g = (x - <y>) / gamma``, ``updates = -eta g`` (``eta = gamma``, the default: ``x <- <y>``).
This is the shared inner loop (``lesample.inner.estimate_mean``) run noise-free on ``H(y) =
f(y) + |y - x|^2 / (2 gamma)`` with the inner step equal to the scope, ``y - gamma grad H(y)
= x - gamma grad f(y)``: Entropy-SGD at ``beta = inf`` with ``step_size = gamma(n)`` and the
uniform average, which ``entropy_sgd`` (a fixed ``step_size``) cannot express under a
``gamma`` schedule. docs/kmeans.md derives it and gives its use on k-means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lesample.checks import check_int, check_schedule, check_scope
from lesample.estimators import TimeAverage
from lesample.inner import estimate_mean
from lesample.optim._base import OptimState, evaluate, outer_step, step_inputs, transformation
from lesample.samplers import hj as hj_kernel

__all__ = ["sbe"]


def sbe(learning_rate=None, gamma=None, *, coupling=None, num_steps: int = 10, seed: int = 0,
        grad_fn=None) -> optax.GradientTransformationExtraArgs:
    """Stochastic backward Euler: the implicit step by a stochastic fixed-point iteration.

    Args:
      learning_rate: the outer step ``eta`` (float or schedule); None (default) is ``eta =
        gamma``, the paper's ``x <- <y>``.
      gamma: the implicit step (the scope) > 0, a float or a schedule (e.g.
        ``scoping(gamma_0, gamma_1)``); or ``coupling = 1/gamma``, never both.
      num_steps: ``L``, fixed-point steps (gradient evaluations) per update.
      seed: seeds the state's key (the ``grad_fn`` keys of updates given neither ``key`` nor
        ``batches``).
      grad_fn: the ``grad_fn(params, key_or_batch)`` of every update, given here instead of
        to ``update``.

    ``update(updates, state, params, *, grad_fn, key=None, batches=None)`` as for
    ``entropy_sgd``; ``updates`` is ignored; ``state.num_grads`` grows by ``L`` per update.
    """
    gamma_s = check_scope(gamma, coupling, schedules=True)
    lr = check_schedule("learning_rate", learning_rate, allow_none=True)
    seed = check_int("seed", seed, low=0)
    num_steps = check_int("num_steps", num_steps)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        del grads, loss_fn
        gamma_n = evaluate(gamma_s, state.count)
        grad_inputs, noise_key, rng = step_inputs(key, batches, state.rng, num_steps)

        def grad_H(y, b):
            return jax.tree_util.tree_map(lambda gi, yi, xi: gi + (yi - xi) / gamma_n,
                                          grad_fn(y, b), y, params)

        mean = estimate_mean(hj_kernel(grad_H, gamma_n), TimeAverage(), params, noise_key,
                             num_steps, batches=grad_inputs).mean
        g = jax.tree_util.tree_map(lambda u, m: (u - m) / gamma_n, params, mean)
        eta = gamma_n if lr is None else evaluate(lr, state.count)
        updates, m = outer_step(g, state, eta, 0.0, False)
        n = state.num_grads + jnp.asarray(num_steps, jnp.int32)
        return updates, OptimState(state.count + 1, n, m, rng)

    return transformation("sbe", impl, momentum=0.0, seed=seed, num_inputs=num_steps,
                          grad_fn=grad_fn)
