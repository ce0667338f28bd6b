"""BlackJAX peers on the same targets, in the same layout as our driver's output.

Step sizes are given in our convention (docs/conventions.md): BlackJAX's SGLD and MALA step on
``log rho = -beta H`` with ``y + eps grad log rho + sqrt(2 eps) xi``, which is our
``y - h grad H + sqrt(2h/beta) xi`` at ``eps = h / beta``. NumPyro NUTS is our own
``nuts`` sampler (its functional kernel in our jitted scan), so it needs no entry here.
BlackJAX NUTS runs its window adaptation (``NUM_WARMUP`` steps, counted in its gradients)
inside the same jitted function, then samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PEERS = ("blackjax-sgld", "blackjax-mala", "blackjax-nuts")
NUM_WARMUP = 500

__all__ = ["PEERS", "NUM_WARMUP", "peer_sampler"]


def _scan(step, state, key, num_steps):
    """Run ``step(key, state) -> (state, position, num_grads)`` for num_steps."""

    def body(s, k):
        s, pos, n = step(k, s)
        return s, (pos, n)

    return jax.lax.scan(body, state, jax.random.split(key, num_steps))[1]


def nuts_adapt(target, key, x, initial_step_size, num_warmup=NUM_WARMUP):
    """BlackJAX window adaptation for NUTS: (state, parameters, gradients per step)."""
    import blackjax

    warm = blackjax.window_adaptation(blackjax.nuts, target.logdensity,
                                      initial_step_size=initial_step_size)
    (state, params), info = warm.run(key, x, num_steps=num_warmup)
    return state, params, info.info.num_integration_steps.astype(jnp.int32)


def nuts_sample(target, params, state, key, num_steps):
    """BlackJAX NUTS from an adapted state: (draws (steps, d), gradients per step)."""
    import blackjax

    nuts = blackjax.nuts(target.logdensity, **params)

    def step(k, s):
        s, info = nuts.step(k, s)
        return s, s.position, info.num_integration_steps.astype(jnp.int32)

    return _scan(step, state, key, num_steps)


def peer_sampler(name, target, key, step_size, x, num_steps, num_chains):
    """Draws (chains, steps, d), gradients per step (chains, steps), diverged (chains, steps).

    For NUTS the gradient array has ``NUM_WARMUP`` leading adaptation steps (no draws).
    """
    import blackjax

    beta = target.beta
    eps = step_size / beta
    logdensity = target.logdensity
    one = jnp.ones((), jnp.int32)

    if name == "blackjax-sgld":
        sgld = blackjax.sgld(lambda y, batch: -beta * target.grad_H(y))

        def chain(k):
            return _scan(lambda kk, y: (s := sgld.step(kk, y, None, eps), s, one), x, k, num_steps)

    elif name == "blackjax-mala":
        mala = blackjax.mala(logdensity, eps)

        def chain(k):
            def step(kk, s):
                s, _ = mala.step(kk, s)
                return s, s.position, one

            return _scan(step, mala.init(x), k, num_steps)

    elif name == "blackjax-nuts":

        def chain(k):
            k_warm, k_run = jax.random.split(k)
            state, params, warm_grads = nuts_adapt(target, k_warm, x, eps)
            draws, grads = nuts_sample(target, params, state, k_run, num_steps)
            return draws, jnp.concatenate([warm_grads, grads])

    else:
        raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")

    draws, grads = jax.vmap(chain)(jax.random.split(key, num_chains))
    diverged = ~jnp.isfinite(draws.reshape(num_chains, num_steps, -1)).all(-1)
    warm = grads.shape[1] - num_steps  # NUTS adaptation steps: no draws, never diverged
    return draws, grads, jnp.pad(diverged, ((0, 0), (warm, 0)))
