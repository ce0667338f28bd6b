"""The inner loop of Entropy-SGD and HJ: any core sampler on ``rho(y; x)`` via ``grad_fn``.

``grad_H(y, b) = grad_fn(y, b) + (y - x) / gamma`` (docs/conventions.md) feeds a kernel built by
``lesample.samplers.build_sampler``; ``lesample.samplers.run_chains`` runs it for ``L`` steps
with the per-step keys or mini-batches passed as its ``batches``; the streaming estimator of
``lesample.estimators`` gives ``<y>`` and ``chain_mean`` averages the chains.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.estimators import ExponentialAverage, chain_mean, get_estimator
from lesample.noise import check_noise
from lesample.optim._base import check_int, check_positive, typed_key
from lesample.samplers import SAMPLERS, build_sampler, run_chains
from lesample.samplers.driver import check_unroll
from lesample.target import LocalEntropyTarget, local_entropy_target

PyTree = Any

#: Samplers whose kernels take a mini-batch per step (driven by ``grad_fn``).
MINIBATCH = ("ula", "sgld", "baoab", "hj")
#: Kernels whose state is the position alone and that never reject a move: a non-finite
#: state stays non-finite (IEEE arithmetic), and every estimator's result is a convex
#: combination of the states, so a chain diverged iff its estimate is non-finite. Testing
#: that once, instead of every step (which XLA then drops), saves ~0.4 ms per mnistfc step.
POSITION_ONLY = ("ula", "sgld", "hj")
#: Gradient evaluations a kernel's ``init`` spends (not counted by ``run_chains``).
INIT_GRADS = {"baoab": 1, "mala": 1, "hmc": 1, "nuts": 1}


class InnerLoop:
    """Validated settings of an inner sampling loop; ``mean(...)`` runs it (pure, jit-able)."""

    def __init__(self, *, sampler, num_steps, step_size, beta, noise, alpha, estimator,
                 num_chains, burn_in, sampler_options, unroll=1):
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {sorted(SAMPLERS)}; got {sampler!r}.")
        self.num_steps = check_int("num_steps", num_steps)
        self.num_chains = check_int("num_chains", num_chains)
        self.burn_in = check_int("burn_in", burn_in, low=0)
        self.unroll = check_unroll(unroll)
        if self.burn_in >= self.num_steps:
            raise ValueError(f"`burn_in` ({burn_in}) must be smaller than `num_steps` "
                             f"({num_steps}).")
        check_positive("step_size", step_size)
        self.beta = check_positive("beta", beta, allow_inf=sampler in MINIBATCH)
        check_noise(noise)
        options = dict(sampler_options or {})
        # beta = inf: ULA's noise is zero, so run the noise-free kernel (no wasted draws).
        kernel = "hj" if sampler in ("ula", "sgld") and self.beta == float("inf") else sampler
        if kernel in ("ula", "sgld", "baoab"):
            options.setdefault("noise", noise)
        elif noise != "gaussian" and kernel != "hj":
            raise ValueError(f"`noise={noise!r}` is not available for the {sampler!r} sampler "
                             "(its Metropolis test needs Gaussian proposals).")
        if kernel in ("hmc", "nuts"):
            options.setdefault("num_warmup", self.burn_in)
        average = ExponentialAverage(alpha)  # validates alpha whatever the estimator
        if estimator is None:
            estimator = "exponential" if sampler in ("ula", "sgld") else SAMPLERS[sampler]
        if estimator == "exponential":
            estimator = average
        self.estimator = get_estimator(estimator)
        self.sampler, self.kernel, self.step_size = sampler, kernel, float(step_size)
        self.options = options
        self.minibatch = sampler in MINIBATCH

    def target(self, x, gamma, grad_fn, loss_fn) -> LocalEntropyTarget:
        if not self.minibatch:
            return local_entropy_target(loss_fn, x, gamma, self.beta)

        def grad_H(y, b):
            g = grad_fn(y, b)
            return jax.tree_util.tree_map(lambda gi, yi, xi: gi + (yi - xi) / gamma, g, y, x)

        def no_value(*args, **kwargs):  # mini-batch kernels never ask for H
            raise TypeError("this sampler needs loss values; pass `loss_fn`.")

        return LocalEntropyTarget(no_value, grad_H, no_value, no_value, x, gamma, self.beta)

    def mean(self, x, gamma, grad_inputs, noise_key, *, grad_fn=None, loss_fn=None):
        """``(<y>, num_grads)``: the chain mean of the estimates of ``E_rho[y]``, chains
        started at ``x``; ``grad_inputs`` (leading axis ``num_steps``) feed ``grad_fn``."""
        target = self.target(x, gamma, grad_fn, loss_fn)
        algorithm = build_sampler(self.kernel, target, self.step_size, **self.options)
        trace = run_chains(
            algorithm, typed_key(noise_key), x, num_steps=self.num_steps,
            num_chains=self.num_chains, burn_in=self.burn_in,
            batches=grad_inputs if self.minibatch else None, estimator=self.estimator,
            keep_draws=False, unroll=self.unroll,
        )
        diverged = trace.diverged
        if self.kernel in POSITION_ONLY:
            diverged = ~jax.vmap(tree.all_finite)(trace.estimate)
        mean = chain_mean(trace.estimate, diverged)
        mean = jax.tree_util.tree_map(lambda m, u: m.astype(u.dtype), mean, x)
        n = trace.num_grads.sum() + self.num_chains * INIT_GRADS.get(self.kernel, 0)
        return mean, jnp.asarray(n, jnp.int32)
