"""One cell of the gym study: a target, a sampler and a seed; one row of results.

Errors are in ground-truth standard-deviation units, per coordinate of the ``identity``
sample transformation, reported at the worst coordinate: ``mean_err`` (|mean - truth| /
truth sd) beside ``mean_mc`` (its Monte Carlo standard error in the same units) and
``mean_z`` (the largest |error| / MCSE over coordinates: of order 1-3 when unbiased);
likewise ``sd_err`` = |sd / truth sd - 1| with ``sd_mc`` and ``sd_z``. ESS is the minimum
bulk ESS over coordinates; per gradient with the warm-up excluded (``ess_per_grad``) and
included (``ess_per_grad_total``, an HVP counted as two gradients), per second likewise;
``rhat`` is the largest split R-hat.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from lesample import diagnostics
from studies.gym import runners
from studies.gym.targets import get_target

#: One set of defaults for every target: chains, warm-up and draws per chain.
SETTINGS = {
    "quick": dict(chains=4, warmup=1000, draws=4000, nuts_warmup=500, nuts_draws=500),
    "full": dict(chains=4, warmup=1000, draws=20000, nuts_warmup=500, nuts_draws=2000),
}
SAMPLERS = ("baoab-diag", "numpyro-nuts", "baoab-dense", "blackjax-nuts", "mala-diag",
            "ula-diag", "blackjax-mala")
#: The peers' runners; NUTS gets its own warm-up and draws, BlackJAX MALA (one gradient a
#: step, as ours) the self-tuned kernels'.
PEERS = {"numpyro-nuts": (runners.numpyro_nuts, "nuts_"),
         "blackjax-nuts": (runners.blackjax_nuts, "nuts_"),
         "blackjax-mala": (runners.blackjax_mala, "")}


def _run(sampler, tgt, key, s):
    if sampler in PEERS:
        fn, prefix = PEERS[sampler]
        return fn(tgt.potential, tgt.start, key, chains=s["chains"],
                  num_warmup=s[f"{prefix}warmup"], num_draws=s[f"{prefix}draws"])
    kernel, preconditioner = sampler.split("-")
    return runners.selftuned(kernel, tgt.potential, tgt.start, key, chains=s["chains"],
                             num_warmup=s["warmup"], num_draws=s["draws"],
                             preconditioner=preconditioner)


def _worst(err, mc):
    i = int(np.argmax(err))
    return float(err[i]), float(mc[i]), float(np.max(err / mc))


def run_cell(cell: dict) -> pd.DataFrame:
    """``cell``: target, sampler, seed, mode."""
    tgt = get_target(cell["target"])
    s = SETTINGS[cell["mode"]]
    run = _run(cell["sampler"], tgt, jax.random.key(int(cell["seed"])), s)
    row = dict(target=cell["target"], sampler=cell["sampler"], seed=cell["seed"],
               chains=s["chains"], draws=run.draws.shape[1],
               divergences=int(run.diverged.sum()), step_size=run.step_size,
               grads=run.grads, warmup_grads=run.warmup_grads, seconds=run.seconds,
               warmup_seconds=run.warmup_seconds)
    if (~run.diverged).sum() < 2:  # no R-hat or ESS from one chain: reported as diverged
        return pd.DataFrame([row])
    z = run.draws[~run.diverged]
    params = np.asarray(jax.vmap(jax.vmap(tgt.to_params))(z), np.float64)  # (c, n, p)
    flat = params.reshape(-1, params.shape[-1])
    sd_true = tgt.true_sd
    mean_err = np.abs(flat.mean(0) - tgt.true_mean) / sd_true
    mean_mc = diagnostics.mcse_mean(params) / sd_true
    sd_err = np.abs(flat.std(0) / sd_true - 1.0)
    sd_mc = np.asarray(array_stats.mcse(np.moveaxis(params, -1, 0), method="sd")) / sd_true
    ess = float(diagnostics.ess(params, method="bulk").min())
    used = run.grads * len(z) / len(run.draws)
    for name, err, mc in (("mean", mean_err, mean_mc), ("sd", sd_err, sd_mc)):
        e, m, zmax = _worst(err, mc)
        row |= {f"{name}_err": e, f"{name}_mc": m, f"{name}_z": zmax}
    row |= dict(ess=ess, ess_per_grad=ess / used,
                ess_per_grad_total=ess / (used + run.warmup_grads),
                ess_per_second=ess / run.seconds,
                ess_per_second_total=ess / (run.seconds + run.warmup_seconds),
                rhat=float(diagnostics.rhat(params).max()))
    return pd.DataFrame([row])
