"""Replica throughput and the cost of a coupling round, on n = 1, 2, 4, 8 devices.

For each ``n`` a subprocess starts with ``n`` virtual CPU devices (``XLA_FLAGS``, set before
JAX starts) and runs ``n`` mnistfc replicas, one per device (``lesample.distributed``):

- ``images_per_s``: Parle's images per second summed over the replicas (one round = ``L``
  gradients of ``B`` images per replica, plus the coupling), median of timed rounds;
- ``inner_ms``: one inner step (one mini-batch gradient and the update of ``y`` on every
  replica), ``coupling_ms``: one coupling round (the replica mean, a ``psum`` across the
  devices, and the elastic update), medians over alternating repeats.

Printed as ratios measured in one run: throughput against ``n = 1``, coupling against one
inner step, and the coupling's share of a round (``coupling / (L inner)``). Virtual devices
share this machine's cores, so throughput cannot grow with ``n`` here: the scaling column
says what the sharding costs, not what more hardware would give; the coupling ratio is the
part that carries over (a psum of the parameters against a gradient).

    python benchmarks/replicas.py [--counts 1,2,4,8] [--steps 10] [--batch 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(n: int, L: int, B: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx
    from jax.sharding import PartitionSpec as P

    from lesample import optim
    from lesample.distributed import AXIS, replica_mesh
    from lesample.nets import MODELS, functional

    mesh = replica_mesh(n)
    fm = functional(MODELS["mnistfc"](rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(4096, 28, 28, 1)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 10, 4096).astype(np.int32))
    grad_loss = jax.grad(fm.loss)

    def gradient(images, labels):  # data as arguments, not constants baked into the program
        def grad_fn(p, batch):
            rows, k = batch
            return grad_loss(p, (images[rows], labels[rows], k))
        return grad_fn

    gamma, rho = 1e4, 1e4 / (0.001 * L * n)
    tx = optim.parle(gamma=gamma, rho=rho, num_steps=L, beta=float("inf"), mesh=mesh)
    params = optim.replicate(fm.params, n)
    state = tx.init(params)

    @jax.jit
    def round_(params, state, rows, keys, images, labels):
        updates, state = tx.update(None, state, params, grad_fn=gradient(images, labels),
                                   batches=(rows, keys))
        return optax.apply_updates(params, updates), state

    def inner_shard(y, x, rows, keys, images, labels):
        def one(y, x, r, k):
            g = gradient(images, labels)(y, (r, k))
            return jax.tree_util.tree_map(lambda yi, gi, xi: yi - 0.1 * (gi + (yi - xi) / gamma),
                                          y, g, x)
        return jax.vmap(one)(y, x, rows, keys)

    def coupling_shard(x):
        xbar = optim.replica_mean(x, AXIS, n)
        return jax.tree_util.tree_map(lambda u, m: u - gamma * (u - m) / rho, x, xbar)

    rep = P(AXIS)
    inner = jax.jit(jax.shard_map(inner_shard, mesh=mesh,
                                  in_specs=(rep, rep, rep, rep, P(), P()), out_specs=rep))
    coupling = jax.jit(jax.shard_map(coupling_shard, mesh=mesh, in_specs=rep, out_specs=rep))

    def batch(i, shape):
        rows = jnp.asarray(rng.integers(0, 4096, shape + (B,)).astype(np.int32))
        return rows, jax.random.split(jax.random.PRNGKey(i), shape)

    def timed(fn, *args):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - t0

    rows1, keys1 = batch(0, (n,))
    inner(params, params, rows1, keys1, images, labels)  # compile
    coupling(params)
    t_inner, t_coupling = [], []
    for _ in range(repeats * 4):  # alternating, so drifting load hits both alike
        t_inner.append(timed(inner, params, params, rows1, keys1, images, labels))
        t_coupling.append(timed(coupling, params))
    rows, keys = batch(1, (L, n))
    params, state = round_(params, state, rows, keys, images, labels)  # compile
    t_round = []
    for i in range(repeats):
        rows, keys = batch(i + 2, (L, n))
        t0 = time.perf_counter()
        params, state = jax.block_until_ready(round_(params, state, rows, keys, images,
                                                     labels))
        t_round.append(time.perf_counter() - t0)
    round_s = statistics.median(t_round)
    return dict(n=n, devices=jax.device_count(), L=L, B=B,
                images_per_s=n * L * B / round_s, round_ms=1e3 * round_s,
                inner_ms=1e3 * statistics.median(t_inner),
                coupling_ms=1e3 * statistics.median(t_coupling))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=10, help="L, inner steps per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.repeats)))
        return
    root = Path(__file__).resolve().parents[1]
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   JAX_PLATFORMS="cpu",
                   PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--steps",
                              str(args.steps), "--batch", str(args.batch), "--repeats",
                              str(args.repeats)], env=env, capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["images_per_s"]
    print(f"mnistfc Parle replicas, one per virtual CPU device (cores: {os.cpu_count()}), "
          f"L = {args.steps}, B = {args.batch}")
    print(f"{'n':>2} {'images/s':>9} {'vs n=1':>7} {'round ms':>9} {'inner ms':>9} "
          f"{'couple ms':>10} {'couple/inner':>13} {'couple/round':>13}")
    for r in rows:
        print(f"{r['n']:>2} {r['images_per_s']:>9.0f} {r['images_per_s'] / base:>7.2f} "
              f"{r['round_ms']:>9.1f} {r['inner_ms']:>9.2f} {r['coupling_ms']:>10.3f} "
              f"{r['coupling_ms'] / r['inner_ms']:>13.4f} "
              f"{r['coupling_ms'] / (r['L'] * r['inner_ms']):>13.5f}")


if __name__ == "__main__":
    main()
