"""Wall time of a study sweep on each executor, measured in one run: a fixed grid of the
sampler study's quick cells (no NUTS unless ``--nuts``) run serially, on a local process
pool of ``--workers`` workers, and on a Dask ``LocalCluster`` of as many single-threaded
worker processes.

The pools keep each worker on a target and a setting (the study's ``affinity``: each
program traced by one worker); ``--fifo`` adds a process pool that takes the cells in the
order given instead, to show what that saves.

Each variant runs in a fresh Python process (nothing compiled in its memory) into a new cell
store, and its time covers starting the workers, running every cell and saving the results
(not the interpreter's own start). All variants share one on-disk JAX compilation cache,
which an untimed serial run fills first, so no variant pays for compiling that another does
not (every program is kept, however short its compilation, as the command line does). The
variants then run in turn, ``--rounds`` times, and each round's ratios (pool time over
serial time) are printed with their medians, with each run's CPU time over its wall time
(the cores it kept busy on average: a serial run whose XLA and BLAS already use several
cores leaves a pool less to gain). The numeric columns of every variant's
results are compared with the serial run's (all but the timing columns ``seconds`` and
``ess_per_second``): a cell's result must not depend on where it ran.

The load average is printed before and after: on a machine shared with other work the
ratios are only as good as the cores the pool actually got.

Usage: ``python benchmarks/sweep.py [--cells N] [--nuts] [--workers N] [--rounds N]
[--no-dask] [--fifo]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from lesample.executor import CACHE_MIN_COMPILE_SECONDS

TIMING_COLUMNS = ("seconds", "ess_per_second")

#: One variant, run as a child process: prints its wall time as JSON on the last line.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from lesample.executor import CellExecutor, run_grid
    from studies.samplers import affinity
    from studies.samplers.cells import run_cell

    def cpu():  # this process and its finished children (the workers, once stopped)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    if __name__ == "__main__":  # spawned workers import this module
        kind, workers, store, cells = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        cells = json.loads(open(cells).read())
        fifo = kind.endswith("-fifo")  # the cells in the order given, wherever a lane is free
        start, cpu0 = time.perf_counter(), cpu()
        with CellExecutor(kind.removesuffix("-fifo"), workers) as ex:
            grid = run_grid(store, cells, run_cell, executor=ex, progress=False,
                            affinity=None if fifo else affinity)
        seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu0
        grid.results.to_csv(store + ".csv", index=False)
        print(json.dumps(dict(seconds=seconds, cpu=cpu_seconds, failed=len(grid.failed))))
""")


def quick_cells(n: int, nuts: bool = False) -> list[dict]:
    """``n`` cells of ``lesample study samplers --quick`` spread over its targets (every
    ``k``-th cell, in the study's order), leaving out the NUTS cells unless ``nuts`` (each
    runs much longer than the others, so a few of them decide the wall time of a small grid;
    ``--cells 1000 --nuts`` is the whole quick grid)."""
    from studies.samplers import grid, target_settings

    targets, budgets = grid("quick")
    cells = [dict(target=t, **s, seed=seed, num_chains=32, budgets=budgets, version=1)
             for t, num_seeds in targets.items() for s in target_settings(t, "quick")
             for seed in range(num_seeds) if nuts or not s["sampler"].endswith("nuts")]
    step = max(1, len(cells) // n)
    return cells[::step][:n]


def run_variant(kind: str, workers: int, cells_file: Path, store: Path, env: dict
                ) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one variant, in a fresh process."""
    script = cells_file.with_name("child.py")
    script.write_text(CHILD)
    out = subprocess.run([sys.executable, str(script), kind, str(workers), str(store),
                          str(cells_file)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{kind} run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["failed"]:
        raise RuntimeError(f"{kind} run: {result['failed']} cells failed")
    return result["seconds"], result["cpu"]


def max_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest absolute difference between the numeric non-timing columns (NaN = NaN)."""
    cols = [c for c in a.select_dtypes("number").columns if c not in TIMING_COLUMNS]
    x, y = a[cols].to_numpy(np.float64), b[cols].to_numpy(np.float64)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    return float(np.where(same, 0.0, np.abs(x - y)).max(initial=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=12, help="cells in the grid")
    parser.add_argument("--workers", type=int, default=2, help="workers of the pools")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs of each variant")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster")
    parser.add_argument("--nuts", action="store_true", help="keep the NUTS cells")
    parser.add_argument("--fifo", action="store_true",
                        help="also run the pool without affinity (cells in the order given)")
    args = parser.parse_args()
    kinds = (["serial", "process"] + (["process-fifo"] if args.fifo else [])
             + ([] if args.no_dask else ["dask"]))

    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        tmp = Path(tmp)
        cells = quick_cells(args.cells, args.nuts)
        cells_file = tmp / "cells.json"
        cells_file.write_text(json.dumps(cells))
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp / "jax-cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(CACHE_MIN_COMPILE_SECONDS))
        print(f"grid: {len(cells)} cells of `lesample study samplers --quick` "
              f"({'with' if args.nuts else 'no'} NUTS); "
              f"{os.cpu_count()} cores; load average before: "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        warm, _ = run_variant("serial", 1, cells_file, tmp / "warm", env)
        print(f"untimed serial run filling the compilation cache: {warm:.1f} s", flush=True)
        rows = []
        for r in range(args.rounds):
            times, busy = {}, {}
            for kind in kinds:
                workers = 1 if kind == "serial" else args.workers
                wall, cpu = run_variant(kind, workers, cells_file, tmp / f"{kind}{r}", env)
                times[kind], busy[kind] = wall, cpu / wall
            rows.append(times)
            print(f"round {r + 1}: " + ", ".join(f"{k} {t:.1f} s ({busy[k]:.2f} cores busy)"
                                                 for k, t in times.items())
                  + "; ratios: " + ", ".join(f"{k}/serial {times[k] / times['serial']:.2f}"
                                             for k in kinds[1:]), flush=True)
        serial = pd.read_csv(tmp / "serial0.csv")
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        table = pd.DataFrame(rows)
        for kind in kinds[1:]:
            ratio = np.median(table[kind] / table["serial"])
            diff = max_difference(serial, pd.read_csv(tmp / f"{kind}0.csv"))
            print(f"{kind} ({args.workers} workers) / serial wall time: median ratio "
                  f"{ratio:.2f} over {args.rounds} round(s) (target <= 0.6); "
                  f"largest difference of the results' numeric columns from serial: {diff:.3g}")


if __name__ == "__main__":
    main()
