"""The sampler study's grids: every cell is distinct, and each mode holds what it promises."""

from __future__ import annotations

import pandas as pd
import pytest

from lesample.store import CellStore
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


# --------------------------------------------------------------------------- deep-net rounds


@pytest.fixture
def deepnet_run(monkeypatch, tmp_path):
    """``(cells, data, run)``: two tiny training cells on 320 digits, two epochs, and a
    function that runs them in rounds of one epoch into ``tmp_path`` (serially)."""
    from lesample.data import load_dataset
    from studies.deepnets import cells as dn

    monkeypatch.setattr(dn, "_DATA", {})
    data = load_dataset("digits", limit=320)
    cells = [dict(model="mnistfc", algo=a, seed=0, epochs=2, batch_size=32, drop_every=1,
                  noise="rademacher", eval_rows=200, unroll=False) for a in ("sgd", "hj")]

    def run():
        return dn.run_rounds(cells, data, tmp_path, 1, False,
                             lambda results, bn, execution: (results, bn, execution),
                             limit=320)

    return cells, data, run


def _rows_once(results, cells):
    """Every cell has epochs 1 and 2, each exactly once."""
    counts = results.groupby(["algo", "epoch"]).size()
    assert counts.to_dict() == {(c["algo"], e): 1 for c in cells for e in (1, 2)}


def test_deepnets_resumes_checkpoints_of_a_run_started_before_the_executor(deepnet_run,
                                                                          tmp_path):
    """The rounds used to run in a loop of their own, which left checkpoints and no round
    cells: a run that finds such checkpoints goes on from them (the epoch already trained
    is read, not trained again: its measured seconds are the checkpoint's)."""
    from lesample.train import TrainConfig, fit
    from studies.deepnets.cells import checkpoint_key

    cells, data, run = deepnet_run
    before = {}
    for cell in cells:  # what the old loop left after its first round
        path = tmp_path / "checkpoints" / f"{checkpoint_key(cell, data)}.npz"
        before[cell["algo"]] = fit(TrainConfig(**cell), data, checkpoint=path,
                                   until=1).history
    results, bn, execution = run()
    _rows_once(results, cells)
    for cell in cells:
        first = results[(results.algo == cell["algo"]) & (results.epoch == 1)]
        assert first.train_seconds.tolist() == before[cell["algo"]].train_seconds.tolist()
    assert sorted(bn.algo) == ["hj", "sgd"] and len(execution.failed) == 0
    saved = pd.read_csv(tmp_path / "results.csv")
    assert len(saved) == 4 and (saved.dataset == "digits").all()


def test_deepnets_stopped_run_resumes_with_nothing_lost_or_duplicated(deepnet_run,
                                                                      monkeypatch, tmp_path):
    """Interrupt the second round; the rerun keeps round 1 as saved (same measured seconds:
    not trained again), trains round 2, and every epoch appears once."""
    from studies.deepnets import cells as dn

    cells, data, run = deepnet_run
    real_fit = dn.fit

    def interrupted(config, data, *, checkpoint=None, until=None, **kw):
        if until == 2:
            raise KeyboardInterrupt
        return real_fit(config, data, checkpoint=checkpoint, until=until, **kw)

    monkeypatch.setattr(dn, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    first = pd.read_csv(tmp_path / "results.csv")
    assert sorted(first.epoch) == [1, 1]
    monkeypatch.setattr(dn, "fit", real_fit)
    results, bn, execution = run()
    _rows_once(results, cells)
    again = results[results.epoch == 1].sort_values("algo").train_seconds.tolist()
    assert again == first.sort_values("algo").train_seconds.tolist()
    assert execution.resumed == 2 and len(bn) == 2
    assert len(CellStore(tmp_path / "cells")) == 6  # 2 cells x (2 rounds + BatchNorm)


def test_deepnets_self_tuning_options_go_to_the_algorithms_that_take_them(tmp_path,
                                                                          monkeypatch):
    """``-O gamma=auto -O tolerance=...``: Entropy-SGD gets both, HJ the scope, SGD
    neither (its cells, and so its checkpoints, are those of a plain run); the runs are
    named apart in the results, and a bad value is refused before any work starts."""
    from lesample.data import load_dataset
    from studies.deepnets import STUDY, plan
    from studies.deepnets import cells as dn

    _, plain = plan("quick", model="mnistfc", algo="sgd,entropy_sgd,hj")
    _, tuned = plan("quick", model="mnistfc", algo="sgd,entropy_sgd,hj", gamma="auto",
                    tolerance=0.2)
    by_algo = {c["algo"]: c for c in tuned}
    assert by_algo["sgd"] == next(c for c in plain if c["algo"] == "sgd")
    assert (by_algo["entropy_sgd"]["gamma"], by_algo["entropy_sgd"]["tolerance"]) == ("auto", 0.2)
    assert by_algo["hj"]["gamma"] == "auto" and "tolerance" not in by_algo["hj"]
    # the same budget in effective epochs: an update costs 20 + 20 (Entropy-SGD) and
    # 5 + 20 (HJ) gradients with the automatic scope's 10 HVPs, instead of 20 and 5
    assert [(c["epochs"], c["drop_every"]) for c in tuned] == [(3, 2), (2, 1), (1, 1)]
    _, full = plan("full", model="lenet", algo="entropy_sgd,hj", gamma="auto")
    assert [(c["epochs"], c["drop_every"]) for c in full[:2]] == [(15, 7), (6, 3)]
    assert [dn.variant(c) for c in tuned] == ["sgd", "entropy_sgd+auto+tol", "hj+auto"]
    with pytest.raises(ValueError, match="`tolerance` .* a number > 0"):
        STUDY.validate("quick", {"algo": "hj", "tolerance": 0})

    monkeypatch.setattr(dn, "_DATA", {})
    data = load_dataset("digits", limit=320)
    cells = [dict(c, epochs=1, batch_size=32, drop_every=1, eval_rows=200) for c in tuned
             if c["algo"] != "hj"]
    results, _, _ = dn.run_rounds(cells, data, tmp_path, 1, False,
                                  lambda results, bn, execution: (results, bn, execution),
                                  limit=320)
    assert sorted(results.algo.unique()) == ["entropy_sgd+auto+tol", "sgd"]
