"""Gym study: self-tuned kernels against NumPyro and BlackJAX NUTS on inference-gym targets.

Targets with published ground truth and no download (Banana, Eight Schools, Brownian
motion with missing observations, an ill-conditioned Gaussian, Neal's funnel); samplers:
self-tuned BAOAB (diagonal and dense preconditioner) and MALA (``lesample.adaptation``),
NumPyro NUTS and BlackJAX NUTS, one set of defaults for every target
(``studies.gym.cells.SETTINGS``). Needs the ``gym`` extra. See docs/adaptation.md.
"""

from __future__ import annotations

from pathlib import Path

from lesample.registry import Study

#: Columns of the summary table, per target and sampler (means over seeds).
SUMMARY = ["mean_err", "mean_mc", "sd_err", "sd_mc", "ess_per_grad", "ess_per_grad_total",
           "ess_per_second", "ess_per_second_total", "rhat", "divergences"]


def summarise(results):
    """Means over seeds per (target, sampler), with BAOAB-diag's ESS per gradient (warm-up
    included) over NumPyro NUTS's as ``baoab_over_nuts``."""
    table = results.groupby(["target", "sampler"], sort=False)[SUMMARY].mean().reset_index()
    ref = table[table.sampler == "numpyro-nuts"].set_index("target").ess_per_grad_total
    table["vs_nuts_grad_total"] = table.ess_per_grad_total / table.target.map(ref)
    return table


def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None) -> Path:
    import pandas as pd

    from lesample.store import run_cells, write_csv
    from studies.gym.cells import SAMPLERS, run_cell
    from studies.gym.targets import GYM_TARGETS

    # Sampler-major order: an interrupted run has every target for the first samplers.
    cells = [dict(target=t, sampler=s, seed=seed, mode=mode, version=1)
             for s in SAMPLERS for t in GYM_TARGETS for seed in range(seeds or 1)]
    results = run_cells(out_dir / "cells", cells, run_cell, progress=progress, desc="gym")
    write_csv(results, out_dir / "results.csv")
    table = summarise(results)
    write_csv(table, out_dir / "summary.csv")
    report = out_dir / "report.html"
    with pd.option_context("display.float_format", "{:.4g}".format):
        report.write_text("<h1>Gym study</h1>\n" + table.to_html(index=False))
    return report


STUDY = Study("gym", "Self-tuned kernels vs NUTS on inference-gym targets with ground truth",
              run, order=40, requires=("inference_gym", "tensorflow_probability"), extra="gym")
