"""Gym study: self-tuned kernels against NumPyro and BlackJAX NUTS on inference-gym targets.

Targets with published ground truth and no download (Banana, Eight Schools, Brownian
motion with missing observations, an ill-conditioned Gaussian, Neal's funnel); samplers:
self-tuned BAOAB (diagonal and dense preconditioner), MALA and ULA
(``lesample.adaptation``), NumPyro NUTS, BlackJAX NUTS and BlackJAX MALA, one set of
defaults for every target (``studies.gym.cells.SETTINGS``). Needs the ``gym`` extra.
See docs/adaptation.md.
"""

from __future__ import annotations

from pathlib import Path

from lesample.registry import Study

#: Seeds per target and sampler by default: one for a quick look, three for the verdicts
#: (a 95% interval over seeds).
SEEDS = {"quick": 1, "full": 3}


def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None,
        executor=None) -> Path:
    from lesample.executor import run_grid
    from lesample.store import publish, write_csv
    from studies.gym.cells import PEERS, SAMPLERS, SETTINGS, run_cell
    from studies.gym.report import summarise, write_report
    from studies.gym.targets import GYM_TARGETS

    # Seed-major order: an interrupted run has every sampler on every target for its first
    # seeds. A cell's version is its code's: the self-tuned kernels' (version 3: the step
    # against the design curvature) and the peers' (2) are rerun only when theirs changes.
    cells = [dict(target=t, sampler=s, seed=seed, mode=mode, version=2 if s in PEERS else 3)
             for seed in range(seeds or SEEDS[mode]) for s in SAMPLERS for t in GYM_TARGETS]
    # Every cell times its sampler (ESS per second): each runs alone, one at a time.
    grid_run = run_grid(out_dir / "cells", cells, run_cell, executor=executor,
                        progress=progress, desc="gym", at_once=1)
    results = grid_run.results
    with publish(out_dir) as stage:  # all outputs or none: never new data under an old report
        write_csv(results, stage / "results.csv")
        write_csv(summarise(results), stage / "summary.csv")
        write_csv(grid_run.failed, stage / "failed.csv")
        write_report(results, stage, mode=mode, settings=SETTINGS[mode], execution=grid_run)
    return out_dir / "report.html"


STUDY = Study("gym", "Self-tuned kernels vs NUTS on inference-gym targets with ground truth",
              run, order=40, requires=("inference_gym", "tensorflow_probability"), extra="gym")
