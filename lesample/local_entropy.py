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

from lesample.checks import check_callable, check_finite, check_scope
from lesample.estimators import get_estimator
from lesample.inner import DEFAULT_ESTIMATORS, check_sampler, estimate_mean
from lesample.samplers import build_sampler, report_divergence
from lesample.target import local_entropy_target

PyTree = Any

__all__ = ["LocalEntropyInfo", "local_entropy_grad"]


class LocalEntropyInfo(NamedTuple):
    """What ``local_entropy_grad`` reports besides the gradient.

    mean
        ``<y>``, the estimate of ``E_rho[y]``: a pytree like ``x``.
    chain_estimates
        Each chain's estimate, leaves ``(num_chains, ...)``.
    diverged
        ``(num_chains,)`` bool: the chain reached a non-finite state; left out of ``mean``.
    num_grads
        int32 scalar: gradient evaluations spent by the transitions, all chains (the
        kernels' initial gradient excluded).
    acceptance_rate
        Float scalar: the mean Metropolis acceptance probability (NaN for unadjusted
        kernels).
    """

    mean: PyTree
    chain_estimates: PyTree
    diverged: jax.Array
    num_grads: jax.Array
    acceptance_rate: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "sampler", "num_steps", "num_chains", "burn_in", "estimator",
                     "options"),
)
def _estimate(loss_fn, x, gamma, beta, step_size, key, batches, *, sampler, num_steps, num_chains,
              burn_in, estimator, options):
    target = local_entropy_target(loss_fn, x, gamma, beta)
    kernel = build_sampler(sampler, target, step_size, **dict(options))
    out = estimate_mean(kernel, estimator, x, key, num_steps, batches=batches,
                        num_chains=num_chains, burn_in=burn_in)
    grad = jax.tree_util.tree_map(lambda u, m: (u - m) / gamma, x, out.mean)
    acc = getattr(out.info, "acceptance_rate", None)
    acc = jnp.nan if acc is None else acc.mean()
    return grad, LocalEntropyInfo(out.mean, out.estimates, out.diverged, out.num_grads, acc)


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
      sampler: one of ``lesample.KERNELS``: "ula"/"sgld", "mala", "baoab", "hj", "hmc",
        "nuts".
      num_steps: inner steps ``L`` per chain (including ``burn_in``).
      step_size: the inner step (default 0.1, the reference Entropy-SGD ``eta'``).
      estimator: "exponential" (alpha 0.75), "uniform", "last", or any object of the
        ``lesample.Estimator`` protocol; the default
        depends on the sampler (``lesample.DEFAULT_ESTIMATORS[sampler]``).
      batches: mini-batches with leading axis ``num_steps`` (ula/sgld, baoab, hj).
      sampler_options: kernel options, e.g. ``noise="rademacher"``, ``friction=1.0``,
        ``num_warmup=...``.

    Returns ``(grad, info)``; ``grad`` has the structure of ``x``. Works under ``jit``.
    Called eagerly, it warns when some chains diverged and raises ``DivergenceError``
    when all did.
    """
    gamma = check_scope(gamma, coupling)
    check_sampler(sampler, step_size, beta, **sampler_options)  # the one check of each
    check_callable("loss_fn", loss_fn, "f(params[, batch]) returning a scalar")
    check_finite("x", x)
    estimator = get_estimator(DEFAULT_ESTIMATORS[sampler] if estimator is None else estimator)
    grad, info = _estimate(
        loss_fn, x, gamma, beta, step_size, key, batches, sampler=sampler, num_steps=num_steps,
        num_chains=num_chains, burn_in=burn_in, estimator=estimator,
        options=tuple(sorted(sampler_options.items())),
    )
    if not isinstance(info.diverged, jax.core.Tracer):
        report_divergence(info.diverged, "warn")
    return grad, info
