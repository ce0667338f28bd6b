"""Run a sampler's warm-up and sampling on a flat potential, each compiled ahead of time
and timed on one execution (compilation excluded), with gradients counted.

One HVP (forward over reverse) is counted as two gradients in ``warmup_grads``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import lesample as le
from lesample import adaptation
from lesample.timing import wall_time


class Run(NamedTuple):
    draws: np.ndarray  # (chains, draws, d)
    grads: int  # gradients spent sampling, all chains
    seconds: float  # sampling, compilation excluded
    warmup_grads: int  # gradient equivalents spent in warm-up, all chains
    warmup_seconds: float
    diverged: np.ndarray  # (chains,) bool, warm-up or sampling
    step_size: float  # the tuned (mean) step size


def _compiled_run(fn, *args):
    """(result, seconds) of one execution of ``jit(fn)`` compiled ahead of time."""
    compiled = jax.jit(fn).lower(*args).compile()
    out = jax.block_until_ready(compiled(*args))
    return out, wall_time(compiled, *args)


def selftuned(sampler, target, start, key, *, chains, num_warmup, num_draws,
              preconditioner="diag") -> Run:
    """``lesample.adaptation.warmup`` then ``run_chains`` of the adapted kernel."""
    k_warm, k_run = jax.random.split(key)
    (ys, params, rec), warm_s = _compiled_run(
        lambda k: adaptation.warmup(sampler, target, start, k, num_steps=num_warmup,
                                    num_chains=chains, preconditioner=preconditioner), k_warm)
    alg = adaptation.adapted_sampler(sampler, target, params)
    trace, seconds = _compiled_run(
        lambda k, ys: le.run_chains(alg, k, ys, num_steps=num_draws, num_chains=chains,
                                    stacked=True), k_run, ys)
    return Run(np.asarray(trace.draws), int(np.asarray(trace.num_grads).sum()), seconds,
               int(rec.num_grads) + 2 * int(rec.num_hvps), warm_s,
               np.asarray(trace.diverged), float(params.step_size))


def numpyro_nuts(target, start, key, *, chains, num_warmup, num_draws) -> Run:
    """NumPyro NUTS (diagonal mass, its defaults) through ``lesample.numpyro_hmc``: its
    kernel in our jitted scan, adapted first, then sampling from the adapted states."""
    k_warm, k_run = jax.random.split(key)
    nuts = le.numpyro_hmc(target.H, 1.0, algo="NUTS", num_warmup=num_warmup)
    warm, warm_s = _compiled_run(
        lambda k: le.run_chains(nuts, k, start, num_steps=num_warmup, num_chains=chains,
                                keep_draws=False), k_warm)
    from_state = nuts._replace(init=lambda position, key=None: position)
    trace, seconds = _compiled_run(
        lambda k, s: le.run_chains(from_state, k, s, num_steps=num_draws, num_chains=chains,
                                   stacked=True), k_run, warm.final_state)
    step = float(np.mean(np.asarray(trace.info.step_size)))
    return Run(np.asarray(trace.draws), int(np.asarray(trace.num_grads).sum()), seconds,
               int(np.asarray(warm.num_grads).sum()) + chains, warm_s,
               np.asarray(warm.diverged) | np.asarray(trace.diverged), step)


def blackjax_nuts(target, start, key, *, chains, num_warmup, num_draws) -> Run:
    """BlackJAX's window adaptation for NUTS, then NUTS, chains vectorised."""
    from studies.samplers import peers

    keys = jax.random.split(key, chains)
    (state, params, warm_grads), warm_s = _compiled_run(
        jax.vmap(lambda k: peers.nuts_adapt(target, k, start, 0.1, num_warmup)), keys)
    (draws, grads), seconds = _compiled_run(
        jax.vmap(lambda p, s, k: peers.nuts_sample(target, p, s, k, num_draws)),
        params, state, jax.random.split(keys[0], chains))
    draws = np.asarray(draws)
    diverged = ~np.isfinite(draws).all(axis=(1, 2))
    return Run(draws, int(np.asarray(grads).sum()), seconds, int(np.asarray(warm_grads).sum()),
               warm_s, diverged, float(np.mean(np.asarray(params["step_size"]))))


def blackjax_mala(target, start, key, *, chains, num_warmup, num_draws) -> Run:
    """BlackJAX MALA (identity metric: its MALA takes none) with its dual-averaging step
    adaptation toward acceptance 0.574 during the warm-up, chains vectorised."""
    import blackjax
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    kernel = blackjax.mala.build_kernel()
    da_init, da_update, da_final = dual_averaging_adaptation(target=0.574)
    logdensity = target.logdensity

    def adapt(k):
        def body(carry, kk):
            state, da = carry
            state, info = kernel(kk, state, logdensity, jnp.exp(da.log_step_size))
            return (state, da_update(da, info.acceptance_rate)), None

        init = (blackjax.mala.init(start, logdensity), da_init(1.0))
        (state, da), _ = jax.lax.scan(body, init, jax.random.split(k, num_warmup))
        return state, da_final(da)

    def sample(state, step, k):
        def body(s, kk):
            s, _ = kernel(kk, s, logdensity, step)
            return s, s.position

        return jax.lax.scan(body, state, jax.random.split(k, num_draws))[1]

    k_warm, k_run = jax.random.split(key)
    (state, step), warm_s = _compiled_run(jax.vmap(adapt), jax.random.split(k_warm, chains))
    draws, seconds = _compiled_run(jax.vmap(sample), state, step,
                                   jax.random.split(k_run, chains))
    draws = np.asarray(draws)
    diverged = ~np.isfinite(draws).all(axis=(1, 2))
    # One gradient per MALA step and one for each chain's initial state.
    return Run(draws, chains * num_draws, seconds, chains * (num_warmup + 1), warm_s, diverged,
               float(np.mean(np.asarray(step))))
