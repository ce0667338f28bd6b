"""Committed quick results, recomputed here, agree within the tolerances that
docs/reproducibility.md states (not bit for bit: XLA:CPU's code depends on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: float32 JAX results of the sampler study: rounding differs with the CPU's instruction
#: set by a few float32 ulps per operation, and the study's chains contract, so the
#: differences do not grow.
RTOL_FLOAT32_CHAINS = 1e-4
#: float64 NumPy/scikit-learn results: only the summation order of the BLAS can differ.
RTOL_FLOAT64 = 1e-9


def _committed_cell(study: str, **match) -> tuple[dict, pd.DataFrame]:
    """``(cell, rows)``: the committed rows of the first cell matching ``match`` and that
    cell's parameters (the columns up to ``version``; JSON columns parsed)."""
    df = pd.read_csv(ROOT / "reports" / study / "results.csv")
    params = list(df.columns[: list(df.columns).index("version") + 1])
    for name, value in match.items():
        df = df[np.isclose(df[name], value, rtol=0, atol=1e-12) if isinstance(value, float)
                else df[name] == value]
    assert len(df), f"no committed rows for {match} in reports/{study}/results.csv"
    first = df.iloc[0]
    df = df[(df[params] == first[params]).all(axis=1)]

    def parse(v):
        if isinstance(v, str) and v[:1] in "[{":
            return json.loads(v)
        return v.item() if hasattr(v, "item") else v

    return {p: parse(first[p]) for p in params}, df


@pytest.mark.slow  # one cell of the sampler study (32 chains, six budgets), in a subprocess
def test_sampler_study_matches_committed_on_another_instruction_set():
    # Recomputed with XLA:CPU limited to SSE4.2, as on an older CPU: every gradient error
    # then differs from the committed one in its last bits, and agrees within the tolerance.
    cell, committed = _committed_cell("samplers", target="gauss-d100-k100-g10-b10000",
                                      sampler="ula", seed=0)
    code = ("import json, sys; from studies.samplers.cells import run_cell; "
            "print(run_cell(json.loads(sys.argv[1])).to_json(orient='records'))")
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_max_isa=SSE4_2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cell)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    fresh = pd.DataFrame(json.loads(out.stdout.strip().splitlines()[-1]))
    both = fresh.merge(committed, on=["L", "estimator"], suffixes=("", "_c"))
    assert len(both) == len(committed)
    np.testing.assert_allclose(both.grad_rel_error, both.grad_rel_error_c,
                               rtol=RTOL_FLOAT32_CHAINS)


@pytest.mark.slow  # ten scikit-learn KMeans fits
def test_kmeans_study_scikit_learn_rows_match_committed():
    from studies.kmeans.cells import run_cell

    cell, committed = _committed_cell("kmeans", instance="pair", label="KMeans (k-means++)")
    fresh = run_cell(cell)
    np.testing.assert_allclose(fresh.energy, committed.energy, rtol=RTOL_FLOAT64)
    np.testing.assert_array_equal(fresh.misallocated, committed.misallocated)
