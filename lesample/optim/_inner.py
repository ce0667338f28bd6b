"""The inner loop of Entropy-SGD, HJ and Parle: any kernel on ``rho(y; x)`` via ``grad_fn``.

``grad_H(y, b) = grad_fn(y, b) + (y - x) / gamma`` (docs/conventions.md) feeds a kernel built
by ``lesample.samplers.build_sampler``; ``lesample.inner.estimate_mean`` runs it for ``L``
steps with the per-step keys or mini-batches as its ``batches`` and returns ``<y>``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lesample.checks import check_int, check_unroll
from lesample.estimators import ExponentialAverage, get_estimator
from lesample.inner import DEFAULT_ESTIMATORS, check_sampler, estimate_mean
from lesample.noise import check_noise
from lesample.samplers import build_sampler
from lesample.stopping import adaptive_mean
from lesample.target import LocalEntropyTarget, local_entropy_target

PyTree = Any


class InnerLoop:
    """Validated settings of an inner sampling loop; ``mean(...)`` runs it (pure, jit-able).

    Every argument is checked here, once, when the optimiser is built (the kernel's factory
    checks ``step_size``, ``beta`` and the options: ``lesample.inner.check_sampler``).
    """

    def __init__(self, *, sampler, num_steps, step_size, beta, noise, alpha, estimator,
                 num_chains, burn_in, sampler_options, unroll=1, tolerance=None, chunk=5):
        self.num_steps = check_int("num_steps", num_steps)
        self.tolerance, self.chunk = _check_stopping(tolerance, chunk, num_steps, burn_in,
                                                     estimator)
        self.num_chains = check_int("num_chains", num_chains)
        self.burn_in = check_int("burn_in", burn_in, low=0)
        self.unroll = check_unroll(unroll)
        if self.burn_in >= self.num_steps:
            raise ValueError(f"`burn_in` ({burn_in}) must be smaller than `num_steps` "
                             f"({num_steps}).")
        check_noise(noise)
        options = dict(sampler_options or {})
        # beta = inf: ULA's noise is zero, so run the noise-free kernel (no wasted draws).
        kernel = "hj" if sampler in ("ula", "sgld") and beta == float("inf") else sampler
        if kernel in ("ula", "sgld", "baoab"):
            options.setdefault("noise", noise)
        elif noise != "gaussian" and kernel != "hj":
            raise ValueError(f"`noise={noise!r}` is not available for the {sampler!r} sampler "
                             "(its Metropolis test needs Gaussian proposals).")
        if kernel in ("hmc", "nuts"):
            options.setdefault("num_warmup", self.burn_in)
        probe = check_sampler(sampler, step_size, beta, **options)
        average = ExponentialAverage(alpha)  # validates alpha whatever the estimator
        if estimator is None:
            estimator = DEFAULT_ESTIMATORS[sampler]
        if estimator == "exponential":
            estimator = average
        self.estimator = get_estimator(estimator)
        self.sampler, self.kernel, self.step_size = sampler, kernel, float(step_size)
        self.beta = float(beta)
        self.options = options
        self.minibatch = probe.minibatch
        self.init_grads = probe.init_grads

    def target(self, x, gamma, grad_fn, loss_fn) -> LocalEntropyTarget:
        if not self.minibatch:
            return local_entropy_target(loss_fn, x, gamma, self.beta)

        def grad_H(y, b):
            g = grad_fn(y, b)
            return jax.tree_util.tree_map(lambda gi, yi, xi: gi + (yi - xi) / gamma, g, y, x)

        def no_value(*args, **kwargs):  # mini-batch kernels never ask for H
            raise TypeError("this sampler needs loss values; pass `loss_fn`.")

        return LocalEntropyTarget(no_value, grad_H, no_value, no_value, x, gamma, self.beta)

    def mean(self, x, gamma, grad_inputs, noise_key, *, grad_fn=None, loss_fn=None,
             step_size=None):
        """``(<y>, num_grads)``: the chain mean of the estimates of ``E_rho[y]``, chains
        started at ``x``; ``grad_inputs`` (leading axis ``num_steps``) feed ``grad_fn``.
        ``num_grads`` counts the kernels' initial gradients too. ``step_size``: this
        update's step, if not the loop's (an automatic scope's :func:`inner_step`)."""
        target = self.target(x, gamma, grad_fn, loss_fn)
        kernel = build_sampler(self.kernel, target,
                               self.step_size if step_size is None else step_size,
                               **self.options)
        out = estimate_mean(
            kernel, self.estimator, x, noise_key, self.num_steps, num_chains=self.num_chains,
            burn_in=self.burn_in, batches=grad_inputs if self.minibatch else None,
            unroll=self.unroll,
        )
        n = out.num_grads + self.num_chains * self.init_grads
        return out.mean, jnp.asarray(n, jnp.int32)

    def stopped_mean(self, x, gamma, grad_inputs, noise_key, *, grad_fn=None, loss_fn=None,
                     step_size=None):
        """``(<y>, num_grads, L)`` of ``lesample.stopping.adaptive_mean``: chunks of
        ``chunk`` steps until the batch-means error of ``<y>`` is below ``tolerance`` of
        ``|x - <y>|``, at most ``num_steps``; ``L`` is the number of steps it spent.
        ``step_size`` as in :meth:`mean`."""
        target = self.target(x, gamma, grad_fn, loss_fn)
        kernel = build_sampler(self.kernel, target,
                               self.step_size if step_size is None else step_size,
                               **self.options)
        out = adaptive_mean(kernel, x, noise_key, tol=self.tolerance, max_steps=self.num_steps,
                            chunk=self.chunk, num_chains=self.num_chains,
                            batches=grad_inputs if self.minibatch else None)
        n = out.num_grads + self.num_chains * self.init_grads
        mean = jax.tree_util.tree_map(lambda m, u: m.astype(u.dtype), out.mean, x)
        return mean, jnp.asarray(n, jnp.int32), out.num_steps


def _check_stopping(tolerance, chunk, num_steps, burn_in, estimator):
    """``(tolerance, chunk)`` of an adaptive inner loop (``tolerance`` None: a fixed ``L``)."""
    if tolerance is None:
        return None, None
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance > 0:
        raise ValueError(f"`tolerance` must be a number > 0 (the relative error of <y>) or "
                         f"None; got {tolerance!r}.")
    chunk = check_int("chunk", chunk)
    if num_steps % chunk or num_steps < 4 * chunk:
        raise ValueError(f"with `tolerance`, `num_steps` (the largest L, {num_steps}) must be "
                         f"a multiple of `chunk` ({chunk}) and at least 4 chunks.")
    if burn_in or estimator not in (None, "uniform"):
        raise ValueError("with `tolerance`, <y> is the uniform mean of every step (batch "
                         "means): pass `burn_in=0` and `estimator=None`.")
    return float(tolerance), chunk
