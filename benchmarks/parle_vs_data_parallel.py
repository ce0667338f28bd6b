"""Parle against data-parallel SGD: effective epochs and rounds of communication to reach
data-parallel SGD's validation error (the Parle paper's 2-4x claim, counted, not timed).

Data-parallel SGD with ``n`` workers averages the ``n`` workers' mini-batch gradients every
step (one all-reduce, one round of communication per step) and takes one SGD step: that is
SGD on batches of ``n B`` rows, which is how it runs here (``TrainConfig(algo="sgd",
batch_size=n B)``, one device; the arithmetic of the mean is the same, BatchNorm sees the
``n B`` rows at once instead of ``B`` per worker). Two learning rates: the study's ``0.1``
and the linear-scaling ``0.1 n``; the better final error is the target. Parle runs ``n``
replicas sharded over ``n`` of the 8 virtual CPU devices (``lesample.train.fit``), one
round of communication per coupling (every ``L = 20`` gradients per replica).

Effective epochs count every gradient of every worker or replica (``num_grads x B / N``),
so equal budgets cost the same computation. The 8 devices share this machine's cores:
wall-clock times are printed but say nothing about speed-ups.

    python benchmarks/parle_vs_data_parallel.py [--replicas 4] [--epochs 6] [--seeds 1]
        [--out results.csv]
"""

from __future__ import annotations

import argparse
import os
import sys

DEVICES = 8


def first_reach(history, target: float) -> tuple[float, float]:
    """Effective epochs and rounds at the first evaluation with error <= ``target``
    (NaN, NaN if never)."""
    hit = history[history.val_error <= target + 1e-12]
    if not len(hit):
        return float("nan"), float("nan")
    row = hit.iloc[0]
    return float(row.effective_epochs), float(row.outer_steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6, help="budget, effective epochs")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128, help="B, per worker or replica")
    parser.add_argument("--limit", type=int, help="first training rows only (a smoke run)")
    parser.add_argument("--runs", default="dp,parle",
                        help="dp (both learning rates), parle, or both; with --out, the runs "
                        "of an earlier call found in that CSV are kept, not rerun")
    parser.add_argument("--out", help="CSV of every run's history, rewritten after each run")
    args = parser.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={DEVICES}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import pandas as pd

    from lesample.data import load_dataset
    from lesample.train import TrainConfig, fit

    n, B, E = args.replicas, args.batch, args.epochs
    data = load_dataset("fashion-mnist", limit=args.limit)
    common = dict(model="mnistfc", epochs=E, drop_every=max(1, E // 2), noise="rademacher")
    wanted = args.runs.split(",")
    runs = {"parle": dict(algo="parle", batch_size=B, replicas=n)} if "parle" in wanted else {}
    runs.update({f"dp-sgd lr {lr:g}": dict(algo="sgd", batch_size=n * B, lr=lr)
                 for lr in (0.1, 0.1 * n) if "dp" in wanted})
    histories = []
    if args.out and os.path.exists(args.out):
        histories.append(pd.read_csv(args.out))
    for seed in range(args.seeds):
        for name, cfg in runs.items():
            done = pd.concat(histories) if histories else None
            if done is not None and len(done[(done.run == name) & (done.seed == seed)
                                             & (done.epoch == E)]):
                continue
            result = fit(TrainConfig(seed=seed, **common, **cfg), data)
            histories.append(result.history.assign(run=name))
            if args.out:
                pd.concat(histories, ignore_index=True).to_csv(args.out, index=False)
            last = result.history.iloc[-1]
            print(f"seed {seed} {name:>14}: {100 * last.val_error:.2f}% after "
                  f"{last.effective_epochs:.2f} effective epochs, {int(last.outer_steps)} "
                  f"rounds, {result.seconds:.0f} s", file=sys.stderr, flush=True)
    df = pd.concat(histories, ignore_index=True)

    final = df[df.epoch == E].groupby(["run", "seed"]).val_error.first().unstack("seed")
    dp = final.drop(index="parle", errors="ignore")
    best = dp.mean(axis=1).idxmin()
    print(f"mnistfc, Fashion-MNIST ({len(data.train_images):,} training rows), n = {n}, "
          f"B = {B} per worker, budget {E} effective epochs, {args.seeds} seed(s), "
          f"{jax.device_count()} virtual CPU devices (Parle on {n})")
    for run in final.index:
        print(f"  final validation error {run:>14}: "
              + ", ".join(f"{100 * v:.2f}%" for v in final.loc[run]))
    print(f"target: the final error of data-parallel SGD ({best}), per seed")
    print(f"{'seed':>4} {'target':>7} {'DP epochs':>9} {'DP rounds':>9} {'Parle epochs':>12} "
          f"{'Parle rounds':>12} {'epochs ratio':>12} {'rounds ratio':>12}")
    for seed in range(args.seeds):
        target = final.loc[best, seed]
        runs_seed = df[df.seed == seed]
        dp_e, dp_r = first_reach(runs_seed[runs_seed.run == best], target)
        p_e, p_r = first_reach(runs_seed[runs_seed.run == "parle"], target)
        print(f"{seed:>4} {100 * target:>6.2f}% {dp_e:>9.2f} {dp_r:>9.0f} {p_e:>12.2f} "
              f"{p_r:>12.0f} {dp_e / p_e:>12.2f} {dp_r / p_r:>12.1f}")
    print("ratios: data-parallel SGD / Parle (> 1: Parle needs fewer); NaN: never reached "
          "within the budget")


if __name__ == "__main__":
    main()
