"""ESS per second at stationarity: our kernels against NumPyro NUTS and BlackJAX.

Every sampler runs from the mean of ``rho`` (so no burn-in is needed for
the unadjusted kernels), compiled once and timed on a second call of its jitted loop. NUTS
(NumPyro and BlackJAX) adapts first, untimed; the timed call samples from the adapted state.
ESS is the minimum bulk ESS over coordinates (arviz-stats). BAOAB is exact on Gaussians, so
its bias is zero; ULA's is measured (``cov_rel_bias``: the relative error of the sample
covariance's trace against the truth), and every sampler's ``w2``: the exact empirical W2 of
``W2_DRAWS`` draws spread over all chains to as many exact draws of ``rho``, printed next to
``w2_floor``, the same distance for an exact sample of that size (its Monte Carlo floor).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import lesample as le
from lesample import diagnostics
from lesample.timing import best_time
from studies.samplers import peers

#: Draws (pooled over chains, evenly spaced) compared with exact draws of rho by exact W2.
W2_DRAWS = 1_000


def _row(name, draws, seconds, grads, case, x, chains):
    draws = np.asarray(draws, np.float64)
    ess = diagnostics.ess(draws, method="bulk")
    tail = diagnostics.ess(draws, method="tail")
    flat = draws.reshape(-1, draws.shape[-1])
    trace_cov = np.trace(np.cov(flat.T))
    return dict(
        sampler=name, chains=chains, draws=draws.shape[1], ess_min=float(ess.min()),
        tail_ess_min=float(tail.min()), seconds=seconds,
        ess_per_second=float(ess.min()) / seconds, ess_per_grad=float(ess.min()) / grads,
        cov_rel_bias=trace_cov / np.trace(case.cov) - 1.0,
        mean_err_sd=float(np.max(np.abs(flat.mean(0) - case.mean(x)) / np.sqrt(np.diag(case.cov)))),
        **_w2_columns(flat, case.mean(x), case.cov),
    )


def _w2_columns(flat, mean, cov):
    """``w2`` of draws ``flat`` (n, d) to N(mean, cov) and ``w2_floor``, that of an exact
    sample of the same size (``W2_DRAWS`` rows, evenly spaced, at most)."""
    n = min(W2_DRAWS, len(flat))
    sub = flat[np.linspace(0, len(flat) - 1, n).astype(int)]
    exact = diagnostics.gaussian_draws(mean, cov, n, seed=1)
    return dict(w2=diagnostics.empirical_w2(sub, mean, cov, seed=0),
                w2_floor=diagnostics.empirical_w2(exact, mean, cov, seed=0))


def _driver_row(name, algorithm, position, num_draws, chains, case, x, repeats, stacked=False):
    """Time a jitted ``run_chains`` of ``algorithm`` (second call) and summarise its draws."""
    run = jax.jit(lambda k: le.run_chains(algorithm, k, position, num_steps=num_draws,
                                          num_chains=chains, stacked=stacked))
    key = jax.random.key(3)
    trace = run(key)
    seconds = best_time(run, key, repeats=repeats)
    return _row(name, trace.draws, seconds, int(np.asarray(trace.num_grads).sum()), case, x,
                chains)


def efficiency_table(num_draws=10_000, chain_counts=(4, 64), dim=100, kappa=100.0,
                     peers_on=True, repeats=3, nuts_draws=1_000,
                     nuts_chain_counts=(4, 64)) -> pd.DataFrame:
    """One row per sampler and chain count, all on the same Gaussian ``rho``.

    Every sampler runs at each of ``chain_counts`` (chains vectorised with ``vmap``), so each
    gets its best configuration; NUTS (NumPyro and BlackJAX) runs at ``nuts_chain_counts``
    and keeps ``nuts_draws`` draws per chain (each costs tens of gradients), the others
    ``num_draws``. ``family_best`` marks each sampler's best chain
    count, and ``best_ours_over_this`` is the best of our kernels' ESS/s divided by the row's.
    """
    case = le.GaussianCase.from_condition_number(dim, kappa, gamma=1.0, beta=1.0, seed=0)
    x = case.c + 0.1
    target = le.local_entropy_target(case.loss, jnp.asarray(x, jnp.float32), 1.0, 1.0)
    lam = np.linalg.eigvalsh(case.A)
    start = jnp.asarray(case.mean(x), jnp.float32)
    rows = []
    nuts_draws = min(nuts_draws, num_draws)
    # BAOAB: exact position law at any stable step (h sqrt(lambda_max) < 2): 1.9 of the way;
    # friction = critical damping of the slowest mode.
    ours_kernels = [
        (f"lesample baoab ({noise} noise)",
         le.baoab(target.grad_H, 1.9 / np.sqrt(lam.max()), 1.0,
                  friction=2 * np.sqrt(lam.min()), noise=noise))
        for noise in ("gaussian", "rademacher")
    ] + [("lesample mala", le.mala(target.value_and_grad_H, 0.8 / lam.max(), 1.0)),
         ("lesample ula (biased)", le.ula(target.grad_H, 0.5 / lam.max(), 1.0))]
    # NumPyro NUTS (our adapter around numpyro.infer.hmc): adapted first, untimed.
    nuts = le.numpyro_hmc(target.H, 1.0, algo="NUTS", num_warmup=peers.NUM_WARMUP)
    nuts_from = nuts._replace(init=lambda position, key=None: position)

    for chains in chain_counts:
        for name, algorithm in ours_kernels:
            rows.append(_driver_row(name, algorithm, start, num_draws, chains, case, x, repeats))
        with_nuts = chains in nuts_chain_counts
        if with_nuts:
            adapt = jax.jit(lambda k, chains=chains: le.run_chains(
                nuts, k, start, num_steps=peers.NUM_WARMUP, num_chains=chains,
                keep_draws=False).final_state)
            rows.append(_driver_row("numpyro nuts", nuts_from, adapt(jax.random.key(4)),
                                    nuts_draws, chains, case, x, repeats, stacked=True))
        if peers_on:
            rows += blackjax_rows(target, case, x, start, num_draws, nuts_draws, chains, lam,
                                  repeats, with_nuts)
    table = pd.DataFrame(rows)
    family_max = table.groupby("sampler").ess_per_second.transform("max")
    table["family_best"] = table.ess_per_second == family_max
    best = table[table.sampler.str.startswith("lesample")].ess_per_second.max()
    table["best_ours_over_this"] = best / table.ess_per_second
    return table


def blackjax_rows(target, case, x, start, num_draws, nuts_draws, chains, lam, repeats,
                  with_nuts=True):
    rows = []
    keys = jax.random.split(jax.random.key(7), chains)
    for name, h in (("blackjax-sgld", 0.5 / lam.max()), ("blackjax-mala", 0.8 / lam.max())):
        run = jax.jit(lambda k, name=name, h=h: peers.peer_sampler(
            name, target, k, h, start, num_draws, chains)[:2])
        draws, grads = run(jax.random.key(7))
        seconds = best_time(run, jax.random.key(7), repeats=repeats)
        rows.append(_row(name.replace("-", " "), draws, seconds, int(grads.sum()), case, x,
                         chains))
    if not with_nuts:
        return rows
    adapt = jax.jit(jax.vmap(lambda k: peers.nuts_adapt(target, k, start, 0.1)[:2]))
    state, params = adapt(keys)
    run = jax.jit(jax.vmap(lambda p, s, k: peers.nuts_sample(target, p, s, k, nuts_draws)))
    draws, grads = run(params, state, keys)
    seconds = best_time(run, params, state, keys, repeats=repeats)
    rows.append(_row("blackjax nuts", draws, seconds, int(grads.sum()), case, x, chains))
    return rows
