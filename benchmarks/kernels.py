"""Kernel benchmarks, printed as ratios measured in one run.

1. Overhead: time of ``L`` ULA steps in one ``lax.scan`` (noise on) divided by ``L`` bare
   jitted gradient evaluations, on a d = 10^4 quadratic and on the mini-batch loss of
   mnistfc (1.87M parameters, batch 128), for exact Gaussian noise and the fast sign noise.
2. Speed against peers: ESS per second (min bulk ESS over coordinates) of our kernels
   against NumPyro NUTS and BlackJAX (sgld, mala, nuts) on the same Gaussian ``rho``
   (d = 100, condition number 100); see ``studies/samplers/efficiency.py``. Bias: ``w2``,
   the exact W2 of 1000 of each sampler's draws to as many exact draws of ``rho``, against
   ``w2_floor``, the same for an exact sample (a sampler without bias sits at the floor).

Usage: ``python benchmarks/kernels.py [--quick]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import lesample as le
from lesample.timing import best_time
from studies.samplers.efficiency import efficiency_table


def overhead(loss_fn, params, batches, L, noise):
    """(time of L ULA steps in a scan) / (L * time of one jitted gradient)."""
    grad = jax.jit(jax.grad(loss_fn))
    one_batch = jax.tree_util.tree_map(lambda u: u[0], batches)
    t_grad = best_time(grad, params, one_batch, repeats=5)
    target = le.local_entropy_target(loss_fn, params, gamma=1.0, beta=1e8)
    kernel = le.ula(target.grad_H, 0.1, 1e8, noise=noise)
    run = jax.jit(
        lambda key: le.run_chains(
            kernel, key, params, num_steps=L, batches=batches, estimator="exponential",
            keep_draws=False,
        ).estimate
    )
    t_scan = best_time(run, jax.random.key(0), repeats=5)
    return t_scan / (L * t_grad), t_grad


def quadratic_problem(d=10_000, m=1_000, L=20):
    rng = np.random.default_rng(0)
    B = jnp.asarray(rng.standard_normal((m, d)) / np.sqrt(d), jnp.float32)
    c = jnp.asarray(rng.standard_normal(d), jnp.float32)

    def loss(y, batch):
        del batch
        r = B @ (y - c)
        return 0.5 * r @ r

    return loss, jnp.zeros(d), jnp.zeros((L, 1))


def mnistfc_problem(L=20, batch=128):
    from flax import nnx

    from lesample.nets import MnistFC, functional_loss

    loss, params = functional_loss(MnistFC(rngs=nnx.Rngs(0)))
    keys = jax.random.split(jax.random.key(1), 3)
    images = jax.random.normal(keys[0], (L, batch, 784))
    labels = jax.random.randint(keys[1], (L, batch), 0, 10)
    return loss, params, (images, labels, jax.random.split(keys[2], L))


def overhead_table(L):
    rows = []
    problems = (("quadratic d=1e4", quadratic_problem), ("mnistfc b=128", mnistfc_problem))
    for name, problem in problems:
        loss, params, batches = problem(L=L)
        for noise in ("gaussian", "rademacher"):
            ratio, t_grad = overhead(loss, params, batches, L, noise)
            rows.append(dict(problem=name, noise=noise, L=L, grad_ms=1e3 * t_grad,
                             ula_step_ms=1e3 * t_grad * ratio, overhead=ratio))
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    print(f"devices: {jax.devices()}")
    print("\n== Overhead: L ULA steps in one scan / (L x bare jitted gradient) ==")
    print(overhead_table(L=20).to_string(index=False, float_format="%.3f"))
    print("\n== ESS per second on Gaussian rho (d=100, cond 100), same run ==")
    table = efficiency_table(num_draws=2_000 if args.quick else 10_000,
                             nuts_draws=250 if args.quick else 1_000)
    cols = ["sampler", "chains", "ess_min", "tail_ess_min", "seconds", "ess_per_second",
            "ess_per_grad", "cov_rel_bias", "w2", "w2_floor", "best_ours_over_this"]
    table = table[cols]
    print(table.to_string(index=False, float_format="%.4g"))


if __name__ == "__main__":
    main()
