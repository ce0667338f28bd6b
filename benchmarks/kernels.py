"""Kernel benchmarks, printed as ratios measured in one run.

1. Overhead of the Langevin step: ``L`` ULA steps in one ``lax.scan`` (noise on, the
   exponential average of Entropy-SGD) against ``L`` plain gradient-descent steps
   ``y <- y - h grad f(y)`` in one ``lax.scan`` (the same gradients, the least work a step
   can add to them), on a d = 10^4 quadratic and on the mini-batch loss of mnistfc (1.87M
   parameters, batch 128), for exact Gaussian noise and sign noise. Both loops run in every
   round, in alternating order; ``overhead`` is the median over rounds of the ratio within
   a round (95% interval ``overhead_lo``, ``overhead_hi``), ``extra_us`` the median extra
   time per step in microseconds, ``extra_vs_step`` the same as a fraction of a descent step,
   and ``overhead_cpu`` the ratio of process CPU times (less disturbed by other processes
   on a shared machine).
2. Speed against peers: ESS per second (min bulk ESS over coordinates) of our kernels
   against NumPyro NUTS and BlackJAX (sgld, mala, nuts) on the same Gaussian ``rho``
   (d = 100, condition number 100); see ``studies/samplers/efficiency.py``. Bias: ``w2``,
   the exact W2 of 1000 of each sampler's draws to as many exact draws of ``rho``, against
   ``w2_floor``, the same for an exact sample (a sampler without bias sits at the floor).

Usage: ``python benchmarks/kernels.py [--quick] [--rounds N]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import lesample as le
from lesample.timing import benchmark_args, median_interval, print_table, timed
from studies.samplers.efficiency import efficiency_table


def overhead(loss_fn, params, batches, L, noise, rounds):
    """One row: ``L`` ULA steps against ``L`` gradient-descent steps, each in one scan."""
    h = 0.1
    grad = jax.grad(loss_fn)

    def descend(y, batch):
        return jax.tree_util.tree_map(lambda u, g: u - h * g, y, grad(y, batch)), None

    descent = jax.jit(lambda y: jax.lax.scan(descend, y, batches)[0])
    target = le.local_entropy_target(loss_fn, params, gamma=1.0, beta=1e8)
    kernel = le.ula(target.grad_H, h, 1e8, noise=noise)
    ula = jax.jit(
        lambda key: le.run_chains(
            kernel, key, params, num_steps=L, batches=batches, estimator="exponential",
            keep_draws=False,
        ).estimate
    )
    runs = {"descent": lambda: descent(params), "ula": lambda: ula(jax.random.key(0))}
    times = {name: [] for name in runs}
    for run in runs.values():
        jax.block_until_ready(run())  # compile
    for r in range(rounds):
        for name, run in list(runs.items())[:: 1 if r % 2 == 0 else -1]:
            times[name].append(timed(run))
    wall, cpu = ({name: np.array([t[i] for t in ts]) for name, ts in times.items()}
                 for i in (0, 1))
    ratio = wall["ula"] / wall["descent"]
    lo, hi = median_interval(ratio)
    extra = np.median(wall["ula"] - wall["descent"]) / L
    return dict(step_ms=1e3 * wall["descent"].min() / L, ula_step_ms=1e3 * wall["ula"].min() / L,
                overhead=np.median(ratio), overhead_lo=lo, overhead_hi=hi, extra_us=1e6 * extra,
                extra_vs_step=extra * L / np.median(wall["descent"]),
                overhead_cpu=np.median(cpu["ula"] / cpu["descent"]))


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


def overhead_table(L, rounds):
    rows = []
    problems = (("quadratic d=1e4", quadratic_problem), ("mnistfc b=128", mnistfc_problem))
    for name, problem in problems:
        loss, params, batches = problem(L=L)
        for noise in ("gaussian", "rademacher"):
            rows.append(dict(problem=name, noise=noise, L=L,
                             **overhead(loss, params, batches, L, noise, rounds)))
    return pd.DataFrame(rows)


def main():
    args = benchmark_args(__doc__, lambda parser: parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved timing rounds of the overhead"))
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    print_table("Overhead: L ULA steps / L gradient-descent steps, each in one scan, same run",
                overhead_table(L=20, rounds=args.rounds), float_format="%.3f")
    table = efficiency_table(num_draws=2_000 if args.quick else 10_000,
                             nuts_draws=250 if args.quick else 1_000)
    cols = ["sampler", "chains", "ess_min", "tail_ess_min", "seconds", "ess_per_second",
            "ess_per_grad", "cov_rel_bias", "w2", "w2_floor", "best_ours_over_this"]
    print_table("ESS per second on Gaussian rho (d=100, cond 100), same run", table[cols])


if __name__ == "__main__":
    main()
