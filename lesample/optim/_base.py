"""Shared pieces of the local-entropy optimisers: state, schedules, checks, the outer step.

Every transformation here is an ``optax.GradientTransformationExtraArgs`` whose ``update``
takes ``grad_fn(params, key_or_batch)`` (a mini-batch gradient of ``f``) and at most one of
``key`` or ``batches`` (leading axis ``L``, one entry per gradient evaluation); with neither,
keys are split from the state's ``rng``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lesample import tree
from lesample.checks import check_fraction, check_positive

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]

__all__ = ["OptimState", "scoping"]


class OptimState(NamedTuple):
    """State of every transformation in ``lesample.optim``.

    Attributes:
      count: outer steps taken (int32); schedules (``gamma``, ``learning_rate``) are
        evaluated at it.
      num_grads: gradient evaluations (calls of ``grad_fn``, or of ``loss_fn``'s gradient)
        spent by all updates so far (int32): the cost measure of docs/optimizers.md.
      momentum: the outer Nesterov buffer, a pytree like ``params`` (None without momentum).
      rng: a raw PRNG key (uint32[2]), seeded by the factory's ``seed``: the source of the
        optimiser's own noise (Langevin noise, HEAT perturbations) in updates driven by
        ``batches``, and of the ``grad_fn`` keys in updates given neither ``key`` nor
        ``batches``.
      diverged_at: the outer step (a ``count``, int32) of the first update that was not
        finite (a NaN/inf gradient, or a schedule value that is negative: see
        :func:`evaluate`), -1 while every update was finite. Set by the transformation's
        ``update`` (``impl`` functions leave it None); ``lesample.train`` raises on it.
      inner_steps: inner steps per chain spent by all updates so far (int32): ``L`` per
        update, or what an adaptive inner loop spent (``entropy_sgd(tolerance=...)``); one
        per update for SGD. Set by ``update`` where ``impl`` leaves it None.
    """

    count: jax.Array
    num_grads: jax.Array
    momentum: PyTree
    rng: jax.Array
    diverged_at: jax.Array | None = None
    inner_steps: jax.Array | None = None


# ---------------------------------------------------------------------------------------------
# Schedules.


def scoping(gamma_0: float, gamma_1: float = 1e-3, L: float = 1) -> Schedule:
    """Scoping (paper §7.5): ``gamma_k = gamma_0 (1 - gamma_1)^(k / L)``, an optax schedule.

    ``gamma`` is the scope (docs/conventions.md), so scoping *decreases* it (the coupling
    ``1/gamma`` grows). The transformations of ``lesample.optim`` evaluate their ``gamma``
    schedule at the outer step count ``n``; the paper's ``k`` counts inner steps and updates
    ``gamma`` when ``k/L`` is an integer, i.e. ``k/L = n``. So ``L = 1`` (the default) is the
    paper's rule for a schedule fed with ``n``; pass the inner ``L`` to evaluate it at an
    inner-step count (e.g. against gradient evaluations). This is
    ``optax.exponential_decay(gamma_0, transition_steps=L, decay_rate=1 - gamma_1)``.

    The reference code scopes the coupling instead, ``g0 (1 + g1)^n`` (its scope is
    ``(1/g0)(1 + g1)^-n = gamma_0 (1 - g1 + O(g1^2))^n``); its python version never
    increments ``n``, so it does not scope at all.
    """
    check_positive("gamma_0", gamma_0)
    check_fraction("gamma_1", gamma_1)
    check_positive("L", L)
    log_rate = math.log1p(-gamma_1) / L

    def schedule(count):
        return gamma_0 * jnp.exp(log_rate * jnp.asarray(count, jnp.float32))

    return schedule


def evaluate(value, count):
    """A float or a schedule evaluated at ``count``.

    Floats are checked by the factories; a schedule's values can only be seen under ``jit``,
    so the policy is NaN-and-flag: a negative or NaN value becomes NaN (a zero ``gamma``
    gives inf through ``1/gamma``), the update is then non-finite and the state's
    ``diverged_at`` records the step (docs/optimizers.md, "Bad values under jit")."""
    if not callable(value):
        return value
    v = jnp.asarray(value(count))
    return jnp.where(v >= 0, v, jnp.nan)


def flag_divergence(state: OptimState, updates) -> jax.Array:
    """``state.diverged_at`` after an update: the first step whose ``updates`` were not
    finite, or -1."""
    first = jnp.where(tree.all_finite(updates), -1, state.count).astype(jnp.int32)
    if state.diverged_at is None:  # a state built by hand, without the field
        return first
    return jnp.where(state.diverged_at >= 0, state.diverged_at, first)


# ---------------------------------------------------------------------------------------------
# Checks.


def check_momentum(momentum) -> float:
    """The outer momentum ``delta`` in [0, 1) (None: 0)."""
    return check_fraction("momentum", 0.0 if momentum is None else momentum)


def check_batches(batches, length: int) -> None:
    """Every leaf of ``batches`` has leading axis ``length`` (one entry per gradient)."""
    if batches is None:
        return
    leaves = jax.tree_util.tree_leaves(batches)
    if not leaves:
        raise ValueError("`batches` has no array leaves.")
    lengths = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if lengths != {length}:
        raise ValueError(f"every leaf of `batches` needs leading axis {length} (one entry per "
                         f"gradient evaluation); got leading sizes {sorted(lengths, key=str)}.")


# ---------------------------------------------------------------------------------------------
# Inputs of one update: per-evaluation grad_fn inputs and the noise key.


def step_inputs(key, batches, rng, length: int):
    """``(grad_inputs, noise_key, new_rng)`` for one update.

    With ``key``: ``noise_key, k = split(key)``, ``grad_inputs = split(k, length)``; the state's
    ``rng`` is left as is. With ``batches``: ``grad_inputs = batches`` and the noise key comes
    from (and advances) the state's ``rng``. With neither, ``key`` is split from the state's
    ``rng`` (which advances) and used as above.
    """
    if key is None and batches is None:
        rng, key = jax.random.split(rng)
    if key is not None:
        noise_key, k = jax.random.split(key)
        return jax.random.split(k, length), noise_key, rng
    rng, noise_key = jax.random.split(rng)
    return batches, noise_key, rng


def init_state(params, momentum: float, seed: int) -> OptimState:
    buf = tree.zeros_like(params) if momentum > 0 else None
    return OptimState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), buf,
                      jax.random.PRNGKey(seed), jnp.full((), -1, jnp.int32),
                      jnp.zeros((), jnp.int32))


def outer_step(g, state: OptimState, eta, momentum: float, nesterov: bool):
    """``updates = -eta (g + delta m')`` (Nesterov) or ``-eta m'``, ``m' = delta m + g`` (§7.4).

    The same recursion as ``optax.sgd(eta, momentum=delta, nesterov=...)`` and the
    reference code's ``mdw.mul_(mom).add_(dw); dw.add_(mom, mdw)``. ``eta`` is the value
    of the learning rate at this step. Returns ``(updates, new_momentum)``.
    """
    if momentum > 0:
        m = jax.tree_util.tree_map(lambda b, u: momentum * b + u, state.momentum, g)
        d = tree.axpy(momentum, m, g) if nesterov else m
    else:
        m, d = None, g
    updates = jax.tree_util.tree_map(lambda u: (-eta * u).astype(u.dtype), d)
    return updates, m


# ---------------------------------------------------------------------------------------------
# The update function shared by every transformation.

#: How ``update`` gets its gradients: "minibatch" (``grad_fn`` required), "fullbatch"
#: (``loss_fn`` required, no ``batches``), "optional" (SGD: ``grad_fn`` or the incoming
#: gradient ``updates``).
MODES = ("minibatch", "fullbatch", "optional")


def _is_hashable(fn) -> bool:
    try:
        hash(fn)
    except TypeError:
        return False
    return True


def transformation(name: str, impl, *, momentum: float, seed: int, num_inputs: int,
                   grad_fn=None, mode: str = "minibatch") -> optax.GradientTransformationExtraArgs:
    """Wrap ``impl(state, params, grads, key, batches, *, grad_fn, loss_fn)`` into an optax
    transformation with the argument checks of every ``lesample.optim`` update; its ``init``
    gives an ``OptimState`` (a momentum buffer if ``momentum > 0``, a key from ``seed``).

    ``update(updates, state, params, *, grad_fn=None, key=None, batches=None, loss_fn=None)``:
    ``grad_fn`` is given here or to the factory, never both; ``key`` or ``batches`` (leading
    axis ``num_inputs``), never both; with neither, keys come from the state's ``rng``.
    ``impl`` is jitted with ``grad_fn`` and ``loss_fn`` static (when they are hashable).
    """
    if grad_fn is not None and not callable(grad_fn):
        raise TypeError(f"`grad_fn` must be callable; got {type(grad_fn).__name__}.")
    default_grad_fn = grad_fn

    def flagged(state, params, grads, key, batches, *, grad_fn, loss_fn):
        updates, new = impl(state, params, grads, key, batches, grad_fn=grad_fn,
                            loss_fn=loss_fn)
        steps = new.inner_steps
        if steps is None and state.inner_steps is not None:
            steps = state.inner_steps + num_inputs
        return updates, new._replace(diverged_at=flag_divergence(state, updates),
                                     inner_steps=steps)

    jitted = jax.jit(flagged, static_argnames=("grad_fn", "loss_fn"))

    def update_fn(updates, state, params=None, *, grad_fn=None, key=None, batches=None,
                  loss_fn=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(f"{name}.update needs `params` (the current parameters x).")
        if grad_fn is not None and default_grad_fn is not None:
            raise TypeError(f"{name}: `grad_fn` was given to the factory; do not pass it to "
                            "update as well.")
        grad_fn = default_grad_fn if grad_fn is None else grad_fn
        if grad_fn is not None and not callable(grad_fn):
            raise TypeError(f"`grad_fn` must be callable; got {type(grad_fn).__name__}.")
        if key is not None and batches is not None:
            raise ValueError(f"{name}.update takes `key` or `batches`, not both: grad_fn sees "
                             "either keys split from `key` or the entries of `batches`.")
        grads = None
        if mode == "fullbatch":
            if not callable(loss_fn):
                raise TypeError(f"{name} with a full-batch sampler needs `loss_fn=` (the "
                                "full-batch loss f(params)) in update.")
            if batches is not None:
                raise TypeError(f"{name} with a full-batch sampler takes `key` only: pass "
                                "`batches=None`.")
            grad_fn = None
        elif grad_fn is None and mode == "minibatch":
            raise TypeError(
                f"{name} needs `grad_fn` (in update or the factory): grad_fn(params, "
                "key_or_batch) returning a mini-batch gradient with the structure of params."
            )
        elif grad_fn is None:  # SGD fed the incoming gradient, as optax.sgd
            if key is not None or batches is not None:
                raise TypeError(f"{name}: `key`/`batches` feed `grad_fn`; pass `grad_fn` too, "
                                "or neither (then `updates` is the gradient).")
            if updates is None:
                raise ValueError(f"{name}.update needs the gradient `updates` (or `grad_fn`).")
            grads = updates
        check_batches(batches, num_inputs)
        run = jitted if _is_hashable(grad_fn) and _is_hashable(loss_fn) else flagged
        return run(state, params, grads, key, batches, grad_fn=grad_fn, loss_fn=loss_fn)

    def init_fn(params):
        return init_state(params, momentum, seed)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
