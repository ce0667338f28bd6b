"""Self-tuned BAOAB (no spectrum given) against NumPyro NUTS, printed as ratios of one run.

Target: the sampler study's Gaussian ``rho`` (d = 100, condition number 100, a random
rotation), from ``x = c + 0.1``. BAOAB tunes itself with ``lesample.adaptation.warmup``
(curvature by Lanczos on Hessian-vector products, preconditioner from warm-up draws) and
then samples; NumPyro NUTS runs its own adaptation (diagonal mass, its default) with its
kernel inside our jitted scan (``lesample.numpyro_hmc``: ``MCMC.run`` would recompile on
every call). Sampling is timed on a second call of each jitted loop; warm-up is timed
too and counted in ``ess_per_grad_total`` and ``ess_per_second_total``.

Bias: W2 (Bures) between the Gaussian fitted to all draws and ``rho``, beside the same
statistic for as many exact i.i.d. draws as the run's minimum ESS (``w2_floor``): a run
unbiased within Monte Carlo error has ``w2`` of the order of ``w2_floor``.

Usage: ``python benchmarks/adaptation.py [--quick]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import lesample as le
from lesample import adaptation, diagnostics
from lesample.timing import benchmark_args, best_time, print_table, wall_time
from studies.samplers.peers import NUM_WARMUP


def _timed(fn, *args):
    """(result, seconds) of a second call of the jitted ``fn`` (the first compiles)."""
    out = jax.block_until_ready(fn(*args))
    return out, wall_time(fn, *args)


def _row(name, chains, draws, seconds, grads, warm_seconds, warm_grads, case, x, seed):
    draws = np.asarray(draws, np.float64)
    ess = float(diagnostics.ess(draws, method="bulk").min())
    flat = draws.reshape(-1, draws.shape[-1])
    mean, cov = case.mean(x), case.cov
    w2 = diagnostics.bures_w2(flat.mean(0), np.cov(flat.T), mean, cov)
    exact = case.sample(x, max(int(ess), draws.shape[-1] + 1), seed=seed)
    w2_floor = diagnostics.bures_w2(exact.mean(0), np.cov(exact.T), mean, cov)
    return dict(sampler=name, chains=chains, draws=draws.shape[1], ess_min=ess,
                seconds=seconds, ess_per_second=ess / seconds, ess_per_grad=ess / grads,
                warmup_grads=warm_grads, ess_per_grad_total=ess / (grads + warm_grads),
                ess_per_second_total=ess / (seconds + warm_seconds), w2=w2, w2_floor=w2_floor,
                rhat_max=float(diagnostics.rhat(draws).max()))


def baoab_rows(case, x, target, start, num_draws, chains, num_warmup, preconditioner):
    warm = jax.jit(lambda k: adaptation.warmup("baoab", target, start, k, num_steps=num_warmup,
                                               num_chains=chains,
                                               preconditioner=preconditioner))
    (ys, params, rec), warm_seconds = _timed(warm, jax.random.key(0))
    alg = adaptation.adapted_sampler("baoab", target, params)
    run = jax.jit(lambda k: le.run_chains(alg, k, ys, num_steps=num_draws, num_chains=chains,
                                          stacked=True))
    trace = run(jax.random.key(3))
    seconds = best_time(run, jax.random.key(3))
    if bool(np.asarray(trace.diverged).any()):
        raise RuntimeError(f"self-tuned BAOAB ({preconditioner}) diverged while sampling")
    # One HVP costs about two gradients (forward over reverse): count it as two.
    warm_grads = int(rec.num_grads) + 2 * int(rec.num_hvps)
    return _row(f"self-tuned baoab ({preconditioner})", chains, trace.draws, seconds,
                int(np.asarray(trace.num_grads).sum()), warm_seconds, warm_grads, case, x, 11)


def nuts_row(case, x, target, start, num_draws, chains):
    nuts = le.numpyro_hmc(target.H, 1.0, algo="NUTS", num_warmup=NUM_WARMUP)
    adapt = jax.jit(lambda k: le.run_chains(nuts, k, start, num_steps=NUM_WARMUP,
                                            num_chains=chains, keep_draws=False))
    warm, warm_seconds = _timed(adapt, jax.random.key(4))
    from_state = nuts._replace(init=lambda position, key=None: position)
    run = jax.jit(lambda k: le.run_chains(from_state, k, warm.final_state, num_steps=num_draws,
                                          num_chains=chains, stacked=True))
    trace = run(jax.random.key(5))
    seconds = best_time(run, jax.random.key(5))
    return _row("numpyro nuts (diag mass)", chains, trace.draws, seconds,
                int(np.asarray(trace.num_grads).sum()), warm_seconds,
                int(np.asarray(warm.num_grads).sum()), case, x, 12)


def adaptation_table(num_draws=10_000, nuts_draws=1_000, chain_counts=(4, 64),
                     nuts_chains=4, num_warmup=1000, dim=100, kappa=100.0) -> pd.DataFrame:
    case = le.GaussianCase.from_condition_number(dim, kappa, gamma=1.0, beta=1.0, seed=0)
    x = case.c + 0.1
    target = le.local_entropy_target(case.loss, jnp.asarray(x, jnp.float32), 1.0, 1.0)
    start = jnp.asarray(x, jnp.float32)
    rows = [nuts_row(case, x, target, start, nuts_draws, nuts_chains)]
    for chains in chain_counts:
        for pre in ("diag", "dense"):
            rows.append(baoab_rows(case, x, target, start, num_draws, chains, num_warmup, pre))
            print(pd.DataFrame(rows).to_string(index=False, float_format="%.4g"), flush=True)
    table = pd.DataFrame(rows)
    nuts = table.iloc[0]
    table["ess_per_second_vs_nuts"] = table.ess_per_second / nuts.ess_per_second
    table["ess_per_grad_total_vs_nuts"] = table.ess_per_grad_total / nuts.ess_per_grad_total
    return table


def main():
    args = benchmark_args(__doc__)
    table = adaptation_table(num_draws=2_000 if args.quick else 10_000,
                             nuts_draws=250 if args.quick else 1_000,
                             chain_counts=(64,) if args.quick else (4, 64))
    print_table("Self-tuned BAOAB vs NumPyro NUTS, Gaussian rho (d=100, cond 100), same run", table)


if __name__ == "__main__":
    main()
