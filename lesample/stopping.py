"""An inner loop that stops itself: run until the estimated error of ``<y>`` is small.

``adaptive_mean(kernel, x, key, ...)`` runs ``num_chains`` chains of any kernel from ``x``
in chunks of ``chunk`` steps (pure, jit-able: a ``lax.while_loop``). Every chunk's mean
per chain is a batch mean; ``<y>`` is the mean of all batch means, and its standard error
is estimated from their spread (batch means, pooled over chains: valid when a chunk is
longer than the chain's autocorrelation time). The loop stops, after at least
``min_chunks`` chunks, when

    |se(<y>)| <= tol * |x - <y>|,

i.e. when the estimated relative error of ``grad f_gamma(x) = (x - <y>) / gamma`` is below
``tol``, or at ``max_steps``. ``AdaptiveMean.num_steps`` is the ``L`` spent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lesample.samplers import SamplingAlgorithm

PyTree = Any

__all__ = ["AdaptiveMean", "adaptive_mean"]


class AdaptiveMean(NamedTuple):
    """``mean``: ``<y>`` (like ``x``); ``num_steps``: the ``L`` spent per chain;
    ``rel_error``: the estimated ``|se(<y>)| / |x - <y>|`` at the stop; ``converged``:
    it reached ``tol`` before ``max_steps``; ``diverged``: (chains,) non-finite chains (left
    out of nothing: a diverged chain makes ``mean`` non-finite, so it is reported);
    ``num_grads``: gradients spent by all chains."""

    mean: PyTree
    num_steps: jax.Array
    rel_error: jax.Array
    converged: jax.Array
    diverged: jax.Array
    num_grads: jax.Array


def _check(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")


def adaptive_mean(kernel: SamplingAlgorithm, x: PyTree, key: jax.Array, *, tol: float,
                  max_steps: int, chunk: int = 10, min_chunks: int = 4, num_chains: int = 1,
                  batch_fn=None, batches=None) -> AdaptiveMean:
    """Estimate ``E_rho[y]`` until its estimated relative error is below ``tol``.

    Args:
      kernel: any ``SamplingAlgorithm`` for ``rho(y; x)``.
      tol: target relative error of ``x - <y>`` (> 0).
      max_steps: the largest ``L`` (a multiple of ``chunk``).
      batch_fn: for mini-batch kernels, ``batch_fn(key) -> batch``, called at every step
        (None: the kernel's gradient gets no batch).
      batches: for mini-batch kernels, instead of ``batch_fn``: a pytree whose leaves have
        leading axis ``max_steps``; step ``l`` gets entry ``l`` (every chain the same), as
        ``run_chains``' ``batches`` (the optimisers' mini-batches or keys).
    """
    _check("chunk", chunk, 1)
    _check("min_chunks", min_chunks, 2)
    _check("max_steps", max_steps, chunk * min_chunks)
    _check("num_chains", num_chains, 1)
    if max_steps % chunk:
        raise ValueError(f"`max_steps` ({max_steps}) must be a multiple of `chunk` ({chunk}).")
    if not tol > 0:
        raise ValueError(f"`tol` must be > 0 (a relative error); got {tol!r}.")
    if batch_fn is not None and batches is not None:
        raise TypeError("pass `batch_fn` or `batches`, not both.")
    if (batch_fn is not None or batches is not None) and not kernel.minibatch:
        raise TypeError(f"the {kernel.name!r} kernel is full-batch: pass neither `batch_fn` "
                        "nor `batches`.")
    if batches is not None and {jnp.shape(u)[0] for u in jax.tree_util.tree_leaves(batches)} \
            != {max_steps}:
        raise ValueError(f"every leaf of `batches` needs leading axis max_steps={max_steps}.")
    max_chunks = max_steps // chunk
    flat_x, unravel = ravel_pytree(x)

    def step(state, k, batch):
        if batches is not None:
            return kernel.step(k, state, batch)
        if batch_fn is None:
            return kernel.step(k, state)
        k_batch, k_step = jax.random.split(k)
        return kernel.step(k_step, state, batch_fn(k_batch))

    def run_chunk(state, k, chunk_batches):
        def body(s, inputs):
            s, info = step(s, *inputs)
            return s, (ravel_pytree(s.position)[0], info.num_grads, info.diverged)

        state, (ys, grads, div) = jax.lax.scan(body, state,
                                               (jax.random.split(k, chunk), chunk_batches))
        return state, ys.mean(0), grads.sum(), div.any()

    k_init, k_loop = jax.random.split(key)
    init_keys = jax.random.split(k_init, num_chains)
    first = None if batches is None else jax.tree_util.tree_map(lambda u: u[0], batches)

    def init_args(k):
        if batches is not None:
            return [first]
        return [] if batch_fn is None else [batch_fn(k)]
    states = jax.vmap(lambda k: kernel.init(x, k, *init_args(k)))(init_keys)
    d = flat_x.size

    def stats(n, s1, s2):
        """Grand mean and relative standard error from running sums of batch means."""
        total = n * num_chains
        mean = s1 / total
        var = jnp.maximum(s2 / total - mean**2, 0.0) * total / jnp.maximum(total - 1, 1)
        se = jnp.sqrt(jnp.sum(var) / total)
        return mean, se / jnp.maximum(jnp.linalg.norm(flat_x - mean), 1e-30)

    def cond(c):
        n, _, s1, s2, _, _, _ = c
        _, rel = stats(n, s1, s2)
        return (n < max_chunks) & ((n < min_chunks) | (rel > tol))

    def body(c):
        n, states, s1, s2, grads, div, k = c
        k, k_chunk = jax.random.split(k)
        chunk_batches = None if batches is None else jax.tree_util.tree_map(
            lambda u: jax.lax.dynamic_slice_in_dim(u, n * chunk, chunk), batches)
        states, means, g, dv = jax.vmap(run_chunk, in_axes=(0, 0, None))(
            states, jax.random.split(k_chunk, num_chains), chunk_batches)
        return (n + 1, states, s1 + means.sum(0), s2 + (means**2).sum(0), grads + g.sum(),
                div | dv, k)

    zeros = jnp.zeros(d, flat_x.dtype)
    carry = (jnp.zeros((), jnp.int32), states, zeros, zeros, jnp.zeros((), jnp.int32),
             jnp.zeros(num_chains, bool), k_loop)
    n, _, s1, s2, grads, div, _ = jax.lax.while_loop(cond, body, carry)
    mean, rel = stats(n, s1, s2)
    return AdaptiveMean(unravel(mean), n * chunk, rel, rel <= tol, div, grads)
