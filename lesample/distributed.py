"""Replicas across devices and hosts, on JAX's own runtime (docs/distributed.md).

``elastic_sgd`` and ``parle`` (``lesample.optim``) take ``mesh=``: a one-axis
``jax.sharding.Mesh`` over which the replica axis is split. The same program runs on one
device (``mesh=None``), on the devices of one host, and on several hosts once every process
has called :func:`initialize` (``jax.distributed``): ``jax.devices()`` then lists the devices
of all processes, :func:`replica_mesh` spans them, and :func:`shard` places a tree that every
process holds identically as global arrays. The only communication is the replica mean of
each coupling round (a ``psum`` inside ``jax.shard_map``).

Every wait is bounded: :func:`initialize` gives up after ``timeout_s`` (a worker whose
coordinator does not answer raises ``TimeoutError`` here; a coordinator missing a worker is
ended by JAX with ``DEADLINE_EXCEEDED`` after the same time, announced on stderr first), and a
process that dies later is detected by the heartbeats within ``heartbeat_timeout_s``, which
end the others. ``n`` that does not divide over the devices is a ``ValueError`` before any
collective runs.

``python -m lesample.distributed`` runs a small Parle problem and prints its result as
JSON: the check that a cluster is wired up (same numbers on one process as on several).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lesample.checks import check_int, check_positive

PyTree = Any

__all__ = ["AXIS", "gather", "initialize", "replica_mesh", "replicated", "shard"]

#: The mesh axis of the replicas.
AXIS = "replica"


def _wait_for_port(address: str, timeout_s: float) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no coordinator answered at {address} within {timeout_s:g} s: start "
                    "process 0 there (the same --coordinator on every process), or raise "
                    "`timeout_s`.") from None
            time.sleep(0.2)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: float = 120,
               heartbeat_timeout_s: float = 60, local_device_ids=None) -> None:
    """``jax.distributed.initialize`` with every wait bounded and CPU collectives (gloo).

    Call it once per process, before any other JAX call. With no arguments JAX detects the
    cluster (SLURM, Open MPI, Kubernetes, TPU pods); otherwise give all three of
    ``coordinator_address`` ("host:port" of process 0), ``num_processes`` and ``process_id``.
    ``timeout_s`` bounds the rendezvous (and shutdown); ``heartbeat_timeout_s`` how long a
    silent process is waited for before the others are ended.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit) and any(v is None for v in explicit):
        raise ValueError("give all of `coordinator_address`, `num_processes` and "
                         f"`process_id`, or none (auto-detection); got {explicit!r}.")
    timeout_s = check_positive("timeout_s", timeout_s)
    heartbeat_timeout_s = check_positive("heartbeat_timeout_s", heartbeat_timeout_s)
    if num_processes is not None:
        num_processes = check_int("num_processes", num_processes)
        process_id = check_int("process_id", process_id, low=0)
        if process_id >= num_processes:
            raise ValueError(f"`process_id` must be < num_processes = {num_processes}; got "
                             f"{process_id}.")
        if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
            raise ValueError("`coordinator_address` must be 'host:port'; got "
                             f"{coordinator_address!r}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if process_id:  # a worker: fail here, in Python, if the coordinator is not up
        _wait_for_port(coordinator_address, timeout_s)
    print(f"lesample.distributed: process {process_id} of {num_processes} waiting up to "
          f"{timeout_s:g} s for all processes at {coordinator_address} (a missing one ends "
          "this process with DEADLINE_EXCEEDED)", file=sys.stderr, flush=True)
    jax.distributed.initialize(
        coordinator_address, num_processes, process_id, local_device_ids=local_device_ids,
        initialization_timeout=max(1, round(timeout_s)),
        heartbeat_timeout_seconds=max(1, round(heartbeat_timeout_s)),
        shutdown_timeout_seconds=max(1, round(timeout_s)))


def replica_mesh(n: int, devices=None) -> Mesh:
    """A one-axis mesh (axis :data:`AXIS`) over ``devices`` (default: all, of every process)
    for ``n`` replicas, which must divide over them."""
    n = check_int("n", n)
    devices = list(jax.devices() if devices is None else devices)
    if not devices or n % len(devices):
        raise ValueError(f"n = {n} replicas do not divide over {len(devices)} devices: use a "
                         f"multiple of {len(devices)} replicas, or pass `devices=` a list "
                         f"whose length divides {n}.")
    return Mesh(np.array(devices), (AXIS,))


def shard(tree: PyTree, mesh: Mesh, n: int) -> PyTree:
    """Global arrays of ``tree`` (the same values on every process): leaves with leading axis
    ``n`` split over ``mesh``'s replica axis, the others (scalars, keys) replicated."""
    axis = mesh.axis_names[0]

    def place(u):
        host = np.asarray(u)
        spec = P(axis) if host.ndim and host.shape[0] == n else P()
        return jax.make_array_from_callback(host.shape, NamedSharding(mesh, spec),
                                            lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)


def replicated(tree: PyTree, mesh: Mesh) -> PyTree:
    """Global arrays of ``tree`` (the same values on every process), whole on every device of
    ``mesh``: inputs that every replica reads (data, row indices, keys)."""
    sharding = NamedSharding(mesh, P())

    def place(u):
        host = np.asarray(u)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)


def gather(tree: PyTree) -> PyTree:
    """Numpy copies of (possibly multi-process) global arrays, whole on every process."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


# ---------------------------------------------------------------------------------------------
# A smoke run: ``python -m lesample.distributed``.


def demo(n: int, steps: int, mesh: Mesh | None, algo: str = "parle") -> dict:
    """``steps`` Parle (or Elastic-SGD) updates of ``n`` replicas of a small regression,
    mini-batches from the replicas' own keys; returns the replicas and the replica mean."""
    import jax.numpy as jnp
    import optax

    from lesample import optim

    data = jax.random.normal(jax.random.PRNGKey(0), (64, 5))
    target = jnp.sin(data @ jnp.arange(1.0, 6.0))

    def grad_fn(x, key):
        rows = jax.random.randint(key, (16,), 0, 64)
        return jax.grad(lambda p: jnp.mean((jnp.tanh(data[rows] @ p["w"]) @ p["v"]
                                            - target[rows]) ** 2))(x)

    x0 = {"w": 0.3 * jax.random.normal(jax.random.PRNGKey(1), (5, 8)),
          "v": 0.3 * jax.random.normal(jax.random.PRNGKey(2), (8,))}
    if algo == "parle":
        tx = optim.parle(gamma=0.3, rho=0.5, num_steps=4, step_size=0.05, beta=1e4,
                         grad_fn=grad_fn, mesh=mesh)
    else:
        tx = optim.elastic_sgd(0.05, 0.5, grad_fn=grad_fn, mesh=mesh)
    params = optim.replicate(x0, n)
    state = tx.init(params)
    if mesh is not None:
        params, state = shard((params, state), mesh, n)
    for _ in range(steps):
        updates, state = tx.update(None, state, params)
        params = optax.apply_updates(params, updates)
    params, num_grads = gather((params, state.num_grads))
    return dict(replicas={k: v.tolist() for k, v in params.items()},
                mean={k: v.mean(axis=0).tolist() for k, v in params.items()},
                num_grads=num_grads.tolist())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesample.distributed",
                                     description="A small Parle run over all processes' "
                                     "devices; prints the replicas as JSON.")
    parser.add_argument("--coordinator", help="host:port of process 0 (multi-process)")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--auto", action="store_true",
                        help="jax.distributed auto-detection (SLURM, Open MPI)")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--algo", choices=("parle", "elastic-sgd"), default="parle")
    parser.add_argument("--unsharded", action="store_true", help="mesh=None (one device)")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    if args.auto or args.coordinator is not None:
        initialize(args.coordinator, args.num_processes, args.process_id,
                   timeout_s=args.timeout)
    mesh = None if args.unsharded else replica_mesh(args.replicas)
    result = demo(args.replicas, args.steps, mesh, args.algo)
    result.update(processes=jax.process_count(), devices=jax.device_count())
    if jax.process_index() == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
