"""Elastic-SGD (paper §4.3, eq. 21) over replica-stacked parameters, and the replica engine
that Parle shares.

**Replica-stacked parameters**: every leaf of ``params`` has a leading axis of length ``n``,
replica ``a`` being ``x_a = params[a]``. One update, at outer step ``k``:

    g_a = the replica's own gradient estimate at x_a         (SGD: grad f; Parle: grad f_gamma)
    g_a <- g_a + (x_a - xbar) / rho,     xbar = (1/n) sum_b x_b   (the elastic coupling)
    m_a <- delta m_a + g_a;  x_a <- x_a - eta (g_a + delta m_a)    (Nesterov, as ``sgd``)

**Coupling to the replica mean.** Eq. (21) couples each worker to the current mean
``ybar`` of the workers; EASGD (Zhang et al. 2015) couples them to a centre variable ``x``
with its own dynamics, and the reference Parle keeps a "master" ``x``. We implement the
mean, for three reasons: the centre's own minimisation over ``x`` of
``sum_a |x_a - x|^2 / (2 rho)`` is solved exactly by the mean (Parle's paper takes that
closed form too, and the reference's master is recomputed as a mean at every round), so a
centre with its own step would only lag it; the mean needs no extra state and one
all-reduce per round is the only communication; and ``n = 1`` then leaves the replica
uncoupled exactly (``x_1 - xbar = 0``), which is what makes Parle reduce to Entropy-SGD bit
for bit. The reference point ``x`` of validation is the mean of the replicas
(:func:`replica_mean`).

``rho`` is a *scope* like ``gamma`` (``docs/conventions.md``): the force is ``1/rho``;
eq. (21)'s ``gamma`` is our ``rho``. ``rho = inf`` uncouples the replicas (no
communication: ``n`` independent runs).

**Randomness.** Replica ``a`` consumes exactly what the single-replica transformation
would: with ``key``, ``split(key, n)[a]``; with ``batches`` (leaves of shape ``(L, n,
...)``: step first, then replica), ``batches[:, a]`` and its own key ``state.rng[a]``
(``init``: ``split(PRNGKey(seed), n)``); with neither, keys from ``state.rng[a]``.

**Devices.** With ``mesh`` (a one-axis ``jax.sharding.Mesh``, see ``lesample.distributed``)
the update runs under ``jax.shard_map``: each device updates its ``n / devices`` replicas,
and the only collective is the ``psum`` of the replica sum in :func:`replica_mean`, once
per update. Without a mesh the same function runs on the whole stack. Sharded and
unsharded runs differ only in the order of that sum (bit for bit when each device holds
one replica and ``n <= 2``; otherwise to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P
from jax.tree_util import Partial

from lesample import tree
from lesample.checks import check_int, check_schedule
from lesample.optim._base import (
    check_momentum,
    evaluate,
    outer_step,
    step_inputs,
    transformation,
)

PyTree = Any

__all__ = ["ReplicaState", "elastic_sgd", "num_replicas", "replica_mean", "replicate"]


class ReplicaState(NamedTuple):
    """State of ``elastic_sgd`` and ``parle``.

    Attributes:
      count: outer steps (coupling rounds) taken, int32 scalar; ``gamma``, ``rho`` and
        ``learning_rate`` schedules are evaluated at it.
      num_grads: int32 ``(n,)``, gradient evaluations spent by each replica; the total cost
        (all replicas) is ``num_grads.sum()``.
      momentum: replica-stacked Nesterov buffers (None without momentum).
      rng: ``(n, 2)`` raw keys, one per replica.
      diverged_at: as ``OptimState``'s: the round of the first non-finite update (any
        replica), -1 while none.
      inner_steps: None (``OptimState``'s field, which the shared wrapper sets, is not
        kept per replica: ``num_grads`` counts their work).
    """

    count: jax.Array
    num_grads: jax.Array
    momentum: PyTree
    rng: jax.Array
    diverged_at: jax.Array | None = None
    inner_steps: jax.Array | None = None


def replicate(params: PyTree, n: int) -> PyTree:
    """``n`` copies of ``params`` stacked on a new leading axis: replicas that start from
    the same point (the reference Parle seeds each rank's weights differently; the mean of
    differently initialised networks is not a network, so we do not)."""
    n = check_int("n", n)
    return jax.tree_util.tree_map(lambda u: jnp.broadcast_to(u, (n, *jnp.shape(u))), params)


def num_replicas(params: PyTree) -> int:
    """The common leading axis ``n`` of the leaves of replica-stacked ``params``."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("replica-stacked `params` has no array leaves.")
    sizes = {np.shape(u)[0] if np.ndim(u) else None for u in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError("every leaf of replica-stacked `params` needs the same leading axis n "
                         f"(the replicas); got leading sizes {sorted(sizes, key=str)}. Stack "
                         "n copies with lesample.optim.replicate(params, n).")
    return sizes.pop()


def replica_mean(params: PyTree, axis_name: str | None = None, n: int | None = None) -> PyTree:
    """The replica mean ``xbar`` (leaves of shape ``(1, ...)``, broadcasting against the stack).

    Outside ``shard_map`` (``axis_name=None``) ``params`` is the whole stack. Inside, it is
    this device's slice: the local sums are added over ``axis_name`` (the one collective) and
    divided by the total ``n``.
    """
    n = num_replicas(params) if n is None else n

    def mean(u):
        s = jnp.sum(u, axis=0, keepdims=True)
        if axis_name is not None:
            s = jax.lax.psum(s, axis_name)
        return s / n

    return jax.tree_util.tree_map(mean, params)


def as_rho(rho):
    """``rho``: a float > 0, ``inf`` (uncoupled) or a schedule; None if uncoupled."""
    if not callable(rho) and isinstance(rho, int | float) and math.isinf(rho) and rho > 0:
        return None
    return check_schedule("rho", rho)


def mesh_axis(mesh, n: int) -> str | None:
    """The axis name of a one-axis ``mesh`` over which ``n`` replicas divide (None: no mesh)."""
    if mesh is None:
        return None
    if not isinstance(mesh, jax.sharding.Mesh) or len(mesh.axis_names) != 1:
        raise TypeError("`mesh` must be a jax.sharding.Mesh with one axis (the replicas), e.g. "
                        f"lesample.distributed.replica_mesh(n); got {mesh!r}.")
    devices = mesh.devices.size
    if n % devices:
        raise ValueError(f"n = {n} replicas do not divide over the {devices} devices of "
                         f"`mesh`: use a multiple of {devices} replicas, or a mesh of a "
                         f"divisor of {n} devices (lesample.distributed.replica_mesh).")
    return mesh.axis_names[0]


def replica_transformation(name: str, local: Callable, *, eta: Callable, rho, momentum: float,
                           nesterov: bool, seed: int, num_inputs: int, grad_fn, mode: str,
                           mesh) -> optax.GradientTransformationExtraArgs:
    """An optax transformation over replica-stacked params (module docstring).

    ``local(x_a, grads_a, grad_inputs_a, noise_key_a, count, *, grad_fn, loss_fn) -> (g_a,
    num_grads_a)`` is the replica's own gradient estimate, vmapped over the replicas;
    ``eta(count)`` the outer learning rate; ``rho`` from :func:`as_rho`. Argument checks are
    ``lesample.optim``'s (``batches`` has leading axis ``num_inputs``, then ``n``).
    """

    def shard(state, params, grads, keys, batches, *, axis_name, n, grad_fn, loss_fn):
        count = state.count

        def one(x, g_in, key, batch, rng):
            grad_inputs = noise_key = None
            if g_in is None:
                grad_inputs, noise_key, rng = step_inputs(key, batch, rng, num_inputs)
            g, spent = local(x, g_in, grad_inputs, noise_key, count, grad_fn=grad_fn,
                             loss_fn=loss_fn)
            return g, jnp.asarray(spent, jnp.int32), rng

        g, spent, rng = jax.vmap(one, in_axes=(0, 0, 0, 1, 0))(params, grads, keys, batches,
                                                                state.rng)
        if rho is not None:
            rho_k = evaluate(rho, count)
            xbar = replica_mean(params, axis_name, n)
            g = jax.tree_util.tree_map(lambda gi, x, m: gi + (x - m) / rho_k, g, params, xbar)
        updates, m = outer_step(g, state, eta(count), momentum, nesterov)
        return updates, ReplicaState(count + 1, state.num_grads + spent, m, rng)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        n = num_replicas(params)
        if state.rng.shape[0] != n:
            raise ValueError(f"{name}: the state holds {state.rng.shape[0]} replicas but "
                             f"`params` {n}; init the state with these params.")
        keys = None if key is None else jax.random.split(key, n)
        axis_name = mesh_axis(mesh, n)
        state = state._replace(diverged_at=None)  # set by the wrapper, after the update

        def run(state, params, grads, keys, batches, fns):
            return shard(state, params, grads, keys, batches, axis_name=axis_name, n=n,
                         grad_fn=fns[0], loss_fn=fns[1])

        if axis_name is None:
            return run(state, params, grads, keys, batches, (grad_fn, loss_fn))
        # The arrays that grad_fn/loss_fn bind as jax.tree_util.Partial arguments (the
        # training data of lesample.train) enter shard_map as replicated inputs: a
        # closed-over array placed on the mesh would clash with shard_map's manual axes.
        fns = tuple(f if f is None or isinstance(f, Partial) else Partial(f)
                    for f in (grad_fn, loss_fn))
        rep = P(axis_name)
        state_spec = ReplicaState(P(), rep, None if state.momentum is None else rep, rep)
        specs = (state_spec, rep, rep, rep, P(None, axis_name), P())
        # check_vma=False: loops inside a replica's update (samplers, Threefry draws) start
        # from carries that are the same on every device while their bodies make them
        # per-replica; JAX's varying-axis typing would reject that. The one collective is
        # the psum of replica_mean, and count is computed alike on every device.
        return jax.shard_map(run, mesh=mesh, in_specs=specs, out_specs=(rep, state_spec),
                             check_vma=False)(state, params, grads, keys, batches, fns)

    def init(params):
        n = num_replicas(params)
        buf = tree.zeros_like(params) if momentum > 0 else None
        return ReplicaState(jnp.zeros((), jnp.int32), jnp.zeros((n,), jnp.int32), buf,
                            jax.random.split(jax.random.PRNGKey(seed), n),
                            jnp.full((), -1, jnp.int32))

    tx = transformation(name, impl, momentum=momentum, seed=seed, num_inputs=num_inputs,
                        grad_fn=grad_fn, mode=mode)
    return optax.GradientTransformationExtraArgs(init, tx.update)


def elastic_sgd(learning_rate, rho, *, momentum: float = 0.9, nesterov: bool = True,
                seed: int = 0, grad_fn=None, mesh=None) -> optax.GradientTransformationExtraArgs:
    """Elastic-SGD, eq. (21) in discrete time: SGD on each replica plus ``(x_a - xbar) / rho``.

    Args:
      learning_rate: the step ``eta`` (float or optax schedule of the step count).
      rho: the elastic scope > 0 (float or schedule; eq. (21)'s ``gamma``), ``inf`` for
        uncoupled replicas. Scoping: a decreasing schedule, e.g. ``scoping(rho_0, rho_1)``.
      momentum, nesterov: the outer Nesterov momentum, per replica, as ``sgd``.
      seed: seeds the replicas' keys (``split(PRNGKey(seed), n)``).
      grad_fn: as ``lesample.optim.sgd``: ``grad_fn(x_a, key_or_batch)``; without it the
        incoming ``updates`` are the replica-stacked gradients.
      mesh: None (one device) or a one-axis ``Mesh`` to shard the replicas over. A
        ``grad_fn`` that reads arrays placed on the mesh (data of several processes) must
        bind them as ``jax.tree_util.Partial`` arguments, not close over them.

    ``update(updates, state, params, *, grad_fn=None, key=None, batches=None)``: ``params``
    replica-stacked; ``batches`` leaves ``(1, n, ...)``. With ``n = 1`` or ``rho = inf``
    this is ``lesample.optim.sgd`` on each replica, bit for bit (``tests/test_parle.py``).
    """
    lr = check_schedule("learning_rate", learning_rate)
    rho = as_rho(rho)
    momentum = check_momentum(momentum)
    seed = check_int("seed", seed, low=0)

    def local(x, grads, grad_inputs, noise_key, count, *, grad_fn, loss_fn):
        del noise_key, count, loss_fn
        if grads is not None:
            return grads, 1
        return grad_fn(x, jax.tree_util.tree_map(lambda u: u[0], grad_inputs)), 1

    return replica_transformation("elastic_sgd", local, eta=lambda k: evaluate(lr, k), rho=rho,
                                  momentum=momentum, nesterov=nesterov, seed=seed, num_inputs=1,
                                  grad_fn=grad_fn, mode="optional", mesh=mesh)
