"""The inner loop shared by every local-entropy method: ``<y> ≈ E_rho[y]`` from ``L`` steps.

``estimate_mean(kernel, estimator, x, key, num_steps, ...)`` runs ``num_chains`` chains of a
kernel (any ``SamplingAlgorithm``) from ``x`` for ``num_steps`` transitions, streams each
chain's states into an estimator (any object of the ``Estimator`` protocol), and returns
the mean over the chains that did not diverge (docs/samplers.md). It is pure and jit-able;
``local_entropy_grad``, the optimisers of ``lesample.optim`` and k-means all call it.

Whether a kernel takes a mini-batch per step is a property of the kernel
(``SamplingAlgorithm.minibatch``); the default estimator of each named sampler is
``DEFAULT_ESTIMATORS``. A mini-batch kernel is driven by ``batches``: a pytree with leading
axis ``num_steps`` (step ``l`` gets entry ``l``: keys for a ``grad_fn(params, key)``, or
prepared mini-batches), or a function ``batch_fn(key) -> batch`` called inside the loop
with a fresh key at every step (and once for the kernel's ``init``), e.g. to gather a
mini-batch from data by random indices without materialising ``L`` of them. Example, the
inner loop of k-means (``scale * kmeans_grad`` is the mini-batch gradient of ``f``)::

    def grad_H(y, batch):                      # H(y) = f(y) + |y - x|^2 / (2 gamma)
        return scale * kmeans_grad(y, batch) + (y - x) / gamma

    kernel = lesample.ula(grad_H, step_size, beta)  # step_size may vary per outer step
    draw = lambda k: X[jax.random.randint(k, (batch_size,), 0, X.shape[0])]
    out = estimate_mean(kernel, TimeAverage(), x, key, L, batches=draw)
    x = x - lr * (x - out.mean)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_positive
from lesample.estimators import chain_mean, get_estimator
from lesample.samplers import build_sampler
from lesample.samplers.base import SamplingAlgorithm
from lesample.samplers.driver import run_chains
from lesample.target import LocalEntropyTarget

PyTree = Any

__all__ = ["DEFAULT_ESTIMATORS", "InnerResult", "check_sampler", "estimate_mean"]

#: The estimator of ``E_rho[y]`` each named sampler is paired with by default (by
#: ``local_entropy_grad`` and ``lesample.optim``): the exponential average of Entropy-SGD
#: for the unadjusted Langevin kernels, the last iterate for noise-free HJ dynamics, the
#: uniform average for the exact or second-order kernels.
DEFAULT_ESTIMATORS = {
    "ula": "exponential",
    "sgld": "exponential",
    "mala": "uniform",
    "baoab": "uniform",
    "hj": "last",
    "hmc": "uniform",
    "nuts": "uniform",
}


class InnerResult(NamedTuple):
    """What ``estimate_mean`` returns.

    mean
        ``<y>``: the mean over non-diverged chains of each chain's estimate, a pytree with
        the structure and dtypes of ``x`` (NaN where every chain diverged).
    estimates
        Each chain's estimate, leaves ``(num_chains, ...)``.
    diverged
        ``(num_chains,)`` bool: the chain reached a non-finite state (left out of ``mean``).
    num_grads
        int32 scalar: gradient evaluations spent by the transitions of all chains. The
        kernels' ``init`` spends ``num_chains * kernel.init_grads`` more.
    info
        The kernel's ``Info`` of every transition, leaves ``(num_chains, num_steps)``.
    """

    mean: PyTree
    estimates: PyTree
    diverged: jax.Array
    num_grads: jax.Array
    info: Any


def _unused(*args, **kwargs):
    raise TypeError("check_sampler's kernel has no target: build the kernel for one.")


def check_sampler(name: str, step_size, beta, **options) -> SamplingAlgorithm:
    """Check the settings of the named kernel once, eagerly, by building it (its factory
    checks ``step_size``, ``beta`` and ``options``) on a placeholder target; the returned
    kernel tells the kernel's properties (``minibatch``, ``init_grads``, ``position_only``)
    but cannot run. Entry points call this before tracing, then build the real kernel for
    ``rho(y; x)`` inside their jitted code (where a traced ``x`` is known). ``beta`` is
    checked here too, since noise-free kernels ("hj") never read it."""
    beta = check_positive("beta", beta, allow_inf=True)
    target = LocalEntropyTarget(_unused, _unused, _unused, _unused, None, None, beta)
    return build_sampler(name, target, step_size, **options)


def _typed_key(key):
    # run_chains reshapes split keys, which raw uint32[2] keys do not allow.
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def estimate_mean(
    kernel: SamplingAlgorithm,
    estimator,
    x: PyTree,
    key: jax.Array,
    num_steps: int,
    *,
    batches=None,
    num_chains: int = 1,
    burn_in: int = 0,
    unroll: int | bool = 1,
) -> InnerResult:
    """Estimate ``E_rho[y]`` with ``num_chains`` chains of ``kernel`` started at ``x``.

    Args:
      kernel: any ``SamplingAlgorithm`` (built for the target ``rho(y; x)``).
      estimator: an ``Estimator`` (``TimeAverage()``, ``ExponentialAverage(alpha)``,
        ``LastIterate()``, a user's) or one of their names.
      x: the anchor and the chains' start, any pytree.
      key: a PRNG key (new-style or raw).
      num_steps: transitions per chain ``L`` (including ``burn_in``).
      batches: for mini-batch kernels, a pytree with leading axis ``num_steps`` or a
        function ``key -> batch`` (see the module docstring); None for full-batch kernels.
      num_chains: chains, each with its own keys; all see the same batches.
      burn_in: transitions left out of the estimate.
      unroll: transitions per XLA loop iteration, or True for no loop.

    Returns an ``InnerResult``. Pure: call it under ``jit`` (settings are static).
    """
    trace = run_chains(
        kernel, _typed_key(key), x, num_steps=num_steps, num_chains=num_chains,
        burn_in=burn_in, batches=batches, estimator=get_estimator(estimator),
        keep_draws=False, unroll=unroll,
    )
    diverged = trace.diverged
    if kernel.position_only:  # see SamplingAlgorithm.position_only: one test, not L
        diverged = ~jax.vmap(tree.all_finite)(trace.estimate)
    mean = chain_mean(trace.estimate, diverged)
    mean = jax.tree_util.tree_map(lambda m, u: m.astype(u.dtype), mean, x)
    num_grads = jnp.asarray(trace.num_grads.sum(), jnp.int32)
    return InnerResult(mean, trace.estimate, diverged, num_grads, trace.info)
