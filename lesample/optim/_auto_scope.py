"""Automatic scope (``gamma="auto"``, the paper's Remark 6) and its regime diagnostic.

``H(x, y) = f(y) + |x - y|^2 / (2 gamma)`` is convex in ``y``, and the inner chain then
converges exponentially, while ``1/gamma`` exceeds the most negative curvature of ``f``,
``kappa = max(-lambda_min(grad^2 f), 0)``, where the chain runs. ``auto_scope_update``
estimates ``lambda_min`` at the outer iterate by Lanczos on Hessian-vector products of the
(mini-batch) loss, keeps ``kappa`` as a decaying running maximum over the outer trajectory
(one estimate per call, so a sharp spot seen recently still counts), and sets

    gamma = min(gamma_max, 1 / ((1 + margin) kappa)).

``scope_regime`` is the diagnostic: the smallest curvature of ``H`` at the chain's state
``y``, ``lambda_min(grad^2 f(y)) + 1/gamma``; the chain has left the regime when it is
``<= 0``. Both are pure and jit-able; every HVP is counted.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lesample.adaptation import hvp, lanczos_extremes

__all__ = ["AutoScope", "ScopeState", "auto_scope_init", "auto_scope_update",
           "curvature_extremes", "inner_step", "min_curvature", "resolve_auto", "scope_regime"]


class ScopeState(NamedTuple):
    """``gamma``: the scope in force; ``neg_curvature``: the running ``kappa``;
    ``lambda_min``: the latest estimate of ``lambda_min(grad^2 f)`` at the iterate;
    ``num_hvps``: HVPs spent so far."""

    gamma: jax.Array
    neg_curvature: jax.Array
    lambda_min: jax.Array
    num_hvps: jax.Array


def curvature_extremes(grad_fn, params, key, batch=None, *, num_lanczos: int = 10):
    """``(lambda_min, lambda_max, hvps)``: the extreme Ritz values of ``num_lanczos``
    Lanczos steps on HVPs of ``grad_fn(params, batch)`` (``grad_fn(params)`` when ``batch``
    is None), which lie inside the spectrum of the (mini-batch) Hessian."""
    flat, unravel = ravel_pytree(params)

    def grad(p, b):
        return grad_fn(p) if b is None else grad_fn(p, b)

    def matvec(v):
        return ravel_pytree(hvp(grad, params, unravel(v), batch))[0]

    return lanczos_extremes(matvec, jax.random.normal(key, flat.shape, flat.dtype),
                            num_lanczos)


def min_curvature(grad_fn, params, key, batch=None, *, num_lanczos: int = 10):
    """``(lambda_min, hvps)`` of :func:`curvature_extremes`: an upper bound of the smallest
    eigenvalue of the (mini-batch) Hessian."""
    lo, _, k = curvature_extremes(grad_fn, params, key, batch, num_lanczos=num_lanczos)
    return lo, k


def inner_step(step_size, lambda_max, gamma):
    """The inner step under an automatic scope: ``step_size``, at most ``1 / (lambda_max +
    1/gamma)``, half the gradient-descent stability limit of ``H`` (a small scope couples
    the chain to ``x`` strongly, and a fixed step would make the inner loop blow up)."""
    return jnp.minimum(step_size, 1.0 / (jnp.maximum(lambda_max, 0.0) + 1.0 / gamma))


def _check(gamma_max, margin, decay):
    if not gamma_max > 0:
        raise ValueError(f"`gamma_max` must be > 0 (the largest scope); got {gamma_max!r}.")
    if not margin >= 0:
        raise ValueError(f"`margin` must be >= 0 (1/gamma >= (1 + margin) kappa); "
                         f"got {margin!r}.")
    if not 0 <= decay < 1:
        raise ValueError(f"`decay` must be in [0, 1); got {decay!r}.")


def auto_scope_init(gamma_max: float) -> ScopeState:
    _check(gamma_max, 0.0, 0.0)
    return ScopeState(jnp.asarray(gamma_max, jnp.float32), jnp.zeros(()), jnp.full((), jnp.nan),
                      jnp.zeros((), jnp.int32))


def auto_scope_update(state: ScopeState, grad_fn, params, key, batch=None, *,
                      gamma_max: float, margin: float = 0.5, decay: float = 0.9,
                      num_lanczos: int = 10) -> ScopeState:
    """One estimate at ``params``; returns the new ``ScopeState`` (its ``gamma`` in force)."""
    _check(gamma_max, margin, decay)
    lam, k = min_curvature(grad_fn, params, key, batch, num_lanczos=num_lanczos)
    kappa = jnp.maximum(decay * state.neg_curvature, jnp.maximum(-lam, 0.0))
    return ScopeState(_scope(kappa, gamma_max, margin), kappa, lam, state.num_hvps + k)


def _scope(kappa, gamma_max, margin):
    """``min(gamma_max, 1 / ((1 + margin) kappa))``."""
    return jnp.minimum(gamma_max, 1.0 / jnp.maximum((1.0 + margin) * kappa, 1e-30))


def scope_regime(grad_fn, y, gamma, key, batch=None, *, num_lanczos: int = 10):
    """``(lambda_min_H, in_regime)`` at the chain's state ``y``: the smallest curvature of
    ``H`` (``lambda_min(grad^2 f(y)) + 1/gamma``) and whether it is > 0."""
    lam, _ = min_curvature(grad_fn, y, key, batch, num_lanczos=num_lanczos)
    lam_H = lam + 1.0 / gamma
    return lam_H, lam_H > 0


class AutoScope:
    """``gamma="auto"`` in an optimiser: at every update, ``gamma`` from the curvature of the
    mini-batch loss at the outer iterate (the first gradient input of the update),
    ``min(gamma_max, 1/((1 + margin) max(-lambda_min, 0)))``, and the largest curvature
    ``lambda_max`` of the same Lanczos run (for :func:`inner_step`); ``num_lanczos`` HVPs,
    counted as two gradients each by the optimiser."""

    def __init__(self, gamma_max: float = 1.0, margin: float = 0.5, num_lanczos: int = 10):
        _check(gamma_max, margin, 0.0)
        if isinstance(num_lanczos, bool) or not isinstance(num_lanczos, int) or num_lanczos < 1:
            raise ValueError(f"`num_lanczos` must be an integer >= 1; got {num_lanczos!r}.")
        self.gamma_max, self.margin, self.num_lanczos = float(gamma_max), float(margin), num_lanczos

    def gamma(self, grad_fn, params, grad_input, key):
        """``(gamma, lambda_max, hvps)`` at ``params``; ``grad_input`` None for a full-batch
        gradient."""
        lo, hi, k = curvature_extremes(grad_fn, params, key, grad_input,
                                       num_lanczos=self.num_lanczos)
        return _scope(jnp.maximum(-lo, 0.0), self.gamma_max, self.margin), hi, k


def resolve_auto(gamma, coupling, options: dict | None) -> AutoScope | None:
    """An ``AutoScope`` for ``gamma="auto"`` (then ``coupling`` must be None), else None
    (and ``options`` must be None)."""
    if not (isinstance(gamma, str) and gamma == "auto"):
        if options is not None:
            raise ValueError("`auto_scope` options need `gamma='auto'`.")
        return None
    if coupling is not None:
        raise ValueError("Pass `gamma='auto'` or `coupling`, not both.")
    return AutoScope(**(options or {}))
