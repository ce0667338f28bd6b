"""``local_entropy_grad``: target + sampler + driver + estimator in one call.

    grad f_gamma(x) = (x - <y>) / gamma,      <y> ≈ E_rho[y],  rho ∝ exp(-beta H(x, .))

with ``<y>`` the chain mean (over non-diverged chains) of each chain's streaming estimate.
Chains start at ``x``, as Entropy-SGD's inner loop does.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample.estimators import chain_mean, get_estimator
from lesample.samplers import SAMPLERS, build_sampler, run_chains
from lesample.samplers.driver import report_divergence
from lesample.target import check_finite, check_positive, local_entropy_target, resolve_gamma

PyTree = Any

__all__ = ["LocalEntropyInfo", "local_entropy_grad"]


class LocalEntropyInfo(NamedTuple):
    mean: PyTree  # <y>, the estimate of E_rho[y] (pytree like x)
    chain_estimates: PyTree  # per-chain estimates, leaves (chains, ...)
    diverged: jax.Array  # (chains,) bool; diverged chains are left out of `mean`
    num_grads: jax.Array  # gradient evaluations spent, all chains
    acceptance_rate: jax.Array  # mean Metropolis acceptance (NaN for unadjusted kernels)


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "sampler", "num_steps", "num_chains", "burn_in", "estimator",
                     "options"),
)
def _estimate(loss_fn, x, gamma, beta, step_size, key, batches, *, sampler, num_steps, num_chains,
              burn_in, estimator, options):
    target = local_entropy_target(loss_fn, x, gamma, beta)
    algorithm = build_sampler(sampler, target, step_size, **dict(options))
    trace = run_chains(
        algorithm, key, x, num_steps=num_steps, num_chains=num_chains, burn_in=burn_in,
        batches=batches, estimator=estimator, keep_draws=False,
    )
    mean = chain_mean(trace.estimate, trace.diverged)
    grad = jax.tree_util.tree_map(lambda u, m: (u - m) / gamma, x, mean)
    acc = getattr(trace.info, "acceptance_rate", None)
    acc = jnp.nan if acc is None else acc.mean()
    return grad, LocalEntropyInfo(mean, trace.estimate, trace.diverged, trace.num_grads.sum(), acc)


def local_entropy_grad(
    loss_fn,
    x: PyTree,
    gamma=None,
    beta=1.0,
    *,
    key: jax.Array,
    sampler: str = "ula",
    num_steps: int = 20,
    num_chains: int = 1,
    step_size=0.1,
    estimator=None,
    burn_in: int = 0,
    batches: PyTree | None = None,
    coupling=None,
    **sampler_options,
) -> tuple[PyTree, LocalEntropyInfo]:
    """Estimate ``grad f_gamma(x) = (x - E_rho[y]) / gamma`` by MCMC (docs/samplers.md).

    Args:
      loss_fn: ``f(params)``, or ``f(params, batch)`` when ``batches`` is given.
      x: the parameters, any pytree (flat array, dict, flax NNX ``State``).
      gamma: the scope > 0 (or ``coupling = 1/gamma``); beta: inverse temperature > 0.
      key: a JAX PRNG key.
      sampler: one of ``lesample.samplers.SAMPLERS``: "ula"/"sgld", "mala", "baoab", "hj",
        "hmc", "nuts".
      num_steps: inner steps ``L`` per chain (including ``burn_in``).
      step_size: the inner step (default 0.1, the reference Entropy-SGD ``eta'``).
      estimator: "exponential" (alpha 0.75), "uniform", "last", or an instance; default
        depends on the sampler (``SAMPLERS[sampler]``).
      batches: mini-batches with leading axis ``num_steps`` (ula/sgld, baoab, hj).
      sampler_options: kernel options, e.g. ``noise="rademacher"``, ``friction=1.0``,
        ``num_warmup=...``.

    Returns ``(grad, info)``; ``grad`` has the structure of ``x``. Works under ``jit``.
    Called eagerly, it warns when some chains diverged and raises ``DivergenceError``
    when all did.
    """
    gamma = resolve_gamma(gamma, coupling)
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {sorted(SAMPLERS)}; got {sampler!r}.")
    check_positive("beta", beta, allow_inf=sampler in ("ula", "sgld", "baoab", "hj"))
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable f(params[, batch]); got {type(loss_fn)}.")
    check_finite("x", x)
    check_positive("step_size", step_size)
    estimator = get_estimator(SAMPLERS[sampler] if estimator is None else estimator)
    grad, info = _estimate(
        loss_fn, x, gamma, beta, step_size, key, batches, sampler=sampler, num_steps=num_steps,
        num_chains=num_chains, burn_in=burn_in, estimator=estimator,
        options=tuple(sorted(sampler_options.items())),
    )
    if not isinstance(info.diverged, jax.core.Tracer):
        report_divergence(info.diverged, "warn")
    return grad, info
