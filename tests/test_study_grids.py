"""The sampler study's grids: every cell is distinct, and each mode holds what it promises."""

from __future__ import annotations

import pytest

from studies.samplers import BREADTH_SEEDS, HEADLINE, grid, settings


@pytest.mark.parametrize("lipschitz", [1.0, 10.0, 5.0000003, 100.0, 1797.0])
@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("minibatch", [True, False])
def test_settings_are_distinct_and_keep_the_reference(lipschitz, quick, minibatch):
    """At L = 10 the reference step 0.1 equals 1/L, and at L = 5 (to rounding) 0.5/L: it
    must appear once (a duplicate cell stopped the first full run; a near-duplicate made
    the reference ambiguous in the report)."""
    out = settings(lipschitz, minibatch, quick=quick)
    keys = [tuple(sorted((k, round(v, 5) if isinstance(v, float) else v) for k, v in s.items()))
            for s in out]
    assert len(set(keys)) == len(keys)
    assert out[0] == dict(sampler="ula", step_size=0.1)
    assert {"ula", "hj", "baoab", "blackjax-sgld"} <= {s["sampler"] for s in out}


def test_grid_seeds_and_budgets():
    quick, quick_budgets = grid("quick")
    assert list(quick) == list(HEADLINE) and set(quick.values()) == {2}
    assert max(quick_budgets) == 200
    full, full_budgets = grid("full")
    assert all(full[t] == 10 for t in HEADLINE)
    breadth = [t for t in full if t not in HEADLINE]
    assert breadth and all(full[t] == BREADTH_SEEDS for t in breadth)
    assert min(full_budgets) == 5 and max(full_budgets) == 1000
    # d in {10, 100, 1000} x condition number {1, 100}, and the digits target.
    gauss = {tuple(t.split("-")[1:3]) for t in full if t.startswith("gauss")}
    assert {(f"d{d}", f"k{k}") for d in (10, 100, 1000) for k in (1, 100)} <= gauss
    assert any(t.startswith("digits") for t in full)
    assert grid("full", seeds=4)[0][HEADLINE[0]] == 4


def test_target_settings_dense_on_headline_and_no_nuts_at_d1000():
    from studies.samplers import target_settings

    dense = target_settings(HEADLINE[0], "full")
    sparse = target_settings("gauss-d100-k100-g1-b10000", "full")
    assert len(dense) > len(sparse) and any(s["sampler"] == "nuts" for s in sparse)
    big = target_settings("gauss-d1000-k100-g10-b1", "full")
    assert big and not any(s["sampler"].endswith("nuts") for s in big)
