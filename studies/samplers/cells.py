"""One cell of the sampler study: a target, a sampler, a step size and a seed.

A cell runs ``num_chains`` chains for ``max(budgets)`` steps from ``x`` (as the Entropy-SGD
inner loop does; NUTS first spends its warm-up, which is counted in its gradients) and
records every iterate. From that one run it reports, for every budget ``L`` in the grid and
every estimator (uniform, exponential ``alpha = 0.75``, last iterate), against the truth:

- ``grad_rel_error``: relative error of ``(x - <y>)/gamma`` (mean over non-diverged chains);
- ``w2``: W2 between the law of ``y_L`` across chains and ``rho`` (Bures on the Gaussian fit
  for Gaussian targets, beside ``w2_floor``, the same statistic for as many exact draws;
  exact OT against grid draws for low-dimensional targets);
- ``ess_bulk``/``ess_tail`` (min over coordinates) and ``rhat`` (max) over the second half of
  the first ``L`` steps; ESS per gradient and per second. Above ``DIAGNOSED_COORDS``
  dimensions, over that many coordinates drawn once per target (ArviZ loops over
  coordinates in Python: at d = 1000 the diagnostics would take ~70 s a cell);
- ``num_grads``, ``seconds`` (the run's time scaled by its share of gradients) and
  ``divergences`` (chains non-finite by step ``L``).
"""

from __future__ import annotations

import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import lesample as le
from lesample import diagnostics
from lesample.estimators import estimate_path
from studies.samplers.peers import NUM_WARMUP, PEERS, peer_sampler
from studies.samplers.targets import get_target

ESTIMATORS = ("uniform", "exponential", "last")
DIAGNOSED_COORDS = 100


@functools.lru_cache(maxsize=16)
def _compiled(target_name, sampler, num_steps, num_chains, options):
    """A jitted ``run(key, step_size) -> (draws, num_grads per step, diverged per step)``,
    compiled once per (target, sampler, length, chains, options): step and seed are traced.
    Only the 16 most recent are kept (a long study holding all of them ran out of memory;
    an evicted program comes back from the on-disk compilation cache)."""
    tgt = get_target(target_name)
    target = le.local_entropy_target(tgt.loss, tgt.x, tgt.gamma, tgt.beta)
    opts = dict(options)
    warmup = NUM_WARMUP if sampler == "blackjax-nuts" else int(opts.get("num_warmup", 0))
    batch_size = opts.pop("batch_size", None)

    @jax.jit
    def run(key, step_size):
        if sampler in PEERS:
            return peer_sampler(sampler, target, key, step_size, tgt.x, num_steps, num_chains)
        batches = None
        if batch_size:  # SGLD: one random mini-batch of rows per step, shared by the chains
            key, k_batch = jax.random.split(key)
            batches = jax.random.randint(k_batch, (num_steps, batch_size), 0, tgt.num_data)
        algorithm = le.build_sampler(sampler, target, step_size, **opts)
        trace = le.run_chains(algorithm, key, tgt.x, num_steps=warmup + num_steps,
                              num_chains=num_chains, burn_in=warmup, batches=batches)
        return trace.draws, trace.info.num_grads, trace.info.diverged

    return run, warmup


def run_cell(cell: dict) -> pd.DataFrame:
    """``cell``: target, sampler, step_size, seed, num_chains, budgets (list of L), and
    optional kernel options (friction, noise, num_warmup). One row per L x estimator."""
    tgt = get_target(cell["target"])
    budgets = sorted(int(b) for b in cell["budgets"])
    options = tuple(sorted((k, cell[k]) for k in ("friction", "noise", "num_warmup", "batch_size")
                           if cell.get(k) is not None))
    run, warmup = _compiled(cell["target"], cell["sampler"], budgets[-1], int(cell["num_chains"]),
                            options)
    key, h = jax.random.key(int(cell["seed"])), jnp.float32(cell["step_size"])
    jax.block_until_ready(run(key, h))  # compile (cached across cells) and warm up
    start = time.perf_counter()
    draws, grads, diverged = jax.block_until_ready(run(key, h))
    seconds = time.perf_counter() - start

    grads = np.asarray(grads).sum(0)  # per step, all chains (warm-up first)
    total_grads = grads.sum()
    diverged = np.asarray(diverged)[:, warmup:]
    x = np.asarray(tgt.x, np.float64)
    draws = np.asarray(draws, np.float64).reshape(draws.shape[0], budgets[-1], -1)
    dim = draws.shape[-1]
    coords = (slice(None) if dim <= DIAGNOSED_COORDS else
              np.sort(np.random.default_rng(dim).choice(dim, DIAGNOSED_COORDS, replace=False)))
    paths = {e: np.asarray(estimate_path(e, jnp.asarray(x), jnp.asarray(draws)), np.float64)
             for e in ESTIMATORS}
    rows = []
    for L in budgets:
        bad = diverged[:, :L].any(1)
        used = grads[: warmup + L].sum()
        base = dict(L=L, num_grads=int(used), seconds=seconds * used / total_grads,
                    divergences=int(bad.sum()))
        if bad.all():
            rows += [base | dict(estimator=e) for e in ESTIMATORS]
            continue
        ok = draws[~bad]
        base |= tgt.w2_row(ok[:, L - 1, :], int(cell["seed"]))
        half = ok[:, L // 2 : L, coords]
        if half.shape[1] >= 4 and half.shape[0] >= 2:
            window = grads[warmup + L // 2 : warmup + L].sum()
            with warnings.catch_warnings():
                # Many chains of few draws, by design: short inner loops, not swapped axes.
                # Chains that never moved (a step too large for MALA to accept anything)
                # get NaN ESS and R-hat, which the tables show: no warning per cell.
                warnings.filterwarnings("ignore", "`draws` has more chains", UserWarning)
                warnings.filterwarnings("ignore", category=diagnostics.ConvergenceWarning)
                ess = diagnostics.ess(half, method="bulk").min()
                base |= dict(
                    ess_bulk=float(ess),
                    ess_tail=float(diagnostics.ess(half, method="tail").min()),
                    rhat=float(diagnostics.rhat(half).max()),
                    ess_per_grad=float(ess / window),
                    ess_per_second=float(ess / (seconds * window / total_grads)),
                )
        for e in ESTIMATORS:
            mean = paths[e][~bad, L - 1].mean(0)
            grad = (x.reshape(mean.shape) - mean) / tgt.gamma
            err = diagnostics.relative_error(grad, tgt.true_grad)
            rows.append(base | dict(estimator=e, grad_rel_error=err))
    return pd.DataFrame(rows)
