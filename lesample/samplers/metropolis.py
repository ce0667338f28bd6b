"""Metropolis-adjusted Langevin (MALA): the ULA proposal plus a Metropolis test.

Proposal ``y' = y - h grad_y H(y) + sqrt(2h/beta) xi`` with Gaussian ``xi``; accept with
probability ``min(1, exp(-beta [H(y') - H(y)]) q(y | y') / q(y' | y))`` where
``q(a | b) ∝ exp(-beta |a - b + h grad_y H(b)|^2 / (4h))``. Unbiased for ``rho`` at any
step; full batch only (the test needs exact ``H``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_positive
from lesample.noise import gaussian_like
from lesample.samplers.base import SamplingAlgorithm, check_gradient

__all__ = ["MALAState", "MALAInfo", "build_init", "build_kernel", "mala"]


class MALAState(NamedTuple):
    """State of one MALA chain.

    position
        The current sample ``y``, a pytree like the starting position.
    H
        Float scalar: ``H(position)``, cached for the Metropolis test.
    grad
        ``grad_y H(position)``, a pytree like ``position``, cached for the next proposal.
    """

    position: Any
    H: jax.Array
    grad: Any


class MALAInfo(NamedTuple):
    """Information about one MALA transition.

    acceptance_rate
        Float scalar in [0, 1]: the Metropolis acceptance probability of the proposal.
    is_accepted
        Boolean scalar: the proposal was accepted.
    diverged
        Boolean scalar: the chain's state is non-finite (docs/samplers.md).
    num_grads
        int32 scalar: gradient evaluations spent by the step (always 1).
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    diverged: jax.Array
    num_grads: jax.Array


def build_init(value_and_grad_H):
    def init(position, key=None) -> MALAState:
        del key
        out = value_and_grad_H(position)
        if not (isinstance(out, tuple) and len(out) == 2 and jnp.ndim(out[0]) == 0):
            raise TypeError("`value_and_grad_H` must return a pair (H(y), grad_y H(y)), e.g. "
                            "`target.value_and_grad_H` or `jax.value_and_grad(H)`; got "
                            f"{jax.tree_util.tree_structure(out)}.")
        check_gradient(out[1], position, "value_and_grad_H")
        return MALAState(position, *out)

    return init


def build_kernel(value_and_grad_H, step_size, beta):
    def log_q(to, frm, grad_frm):  # log q(to | frm), up to a constant
        residual = tree.axpy(step_size, grad_frm, tree.sub(to, frm))
        return -beta * tree.sq_norm(residual) / (4 * step_size)

    def kernel(key, state: MALAState):
        k_noise, k_accept = jax.random.split(key)
        xi = gaussian_like(k_noise, state.position)
        proposal = tree.axpy(
            jnp.sqrt(2 * step_size / beta), xi, tree.axpy(-step_size, state.grad, state.position)
        )
        H_new, g_new = value_and_grad_H(proposal)
        log_ratio = (
            -beta * (H_new - state.H)
            + log_q(state.position, proposal, g_new)
            - log_q(proposal, state.position, state.grad)
        )
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
        accepted = jnp.log(jax.random.uniform(k_accept)) < log_ratio
        new = jax.tree_util.tree_map(
            lambda a, b: jnp.where(accepted, a, b), MALAState(proposal, H_new, g_new), state
        )
        # The new state, not the proposal: a rejected proposal that overflows moves nothing.
        diverged = ~(tree.all_finite(new.position) & jnp.isfinite(new.H))
        return new, MALAInfo(accept_prob, accepted, diverged, jnp.ones((), jnp.int32))

    return kernel


def mala(value_and_grad_H, step_size, beta) -> SamplingAlgorithm:
    """MALA on ``rho ∝ exp(-beta H)``.

    Args:
      value_and_grad_H: ``value_and_grad_H(y) -> (H(y), grad_y H(y))`` (full batch).
      step_size: ``h > 0``.
      beta: the inverse temperature, a finite number ``> 0``.
    """
    step_size = check_positive("step_size", step_size)
    beta = check_positive("beta", beta)
    return SamplingAlgorithm(
        build_init(value_and_grad_H), build_kernel(value_and_grad_H, step_size, beta), "mala",
        False, init_grads=1,
    )
