"""Running the cells of the deep-network study in rounds, from checkpoints, on an executor.

Every training cell (model x algorithm x seed) trains through ``lesample.train.fit`` with its
own checkpoint ``checkpoints/<key>.npz`` (``key``: :func:`checkpoint_key`). Round ``r`` is one
grid of ``lesample.executor.run_grid``: one *round cell* per training cell, which advances it
to epoch ``r * round_epochs`` from its checkpoint, so a long run that is stopped leaves all
cells at about the same budget. A round cell's result is the cell's history up to that epoch,
kept in the ``CellStore`` ``cells/``; ``results.csv`` (the newest history of every cell) and
``bn.csv`` are rewritten after every round. A cell that reached its budget also gets its
BatchNorm comparison (validation error with the statistics recomputed with dropout on), a
``kind="bn"`` cell of the same store, run in the next grid.

Resuming: a round cell found in the store is not run again; one that is not finished resumes
from the checkpoint (which holds the history), so a restarted run recomputes at most the
epoch each cell was in. Checkpoints and BatchNorm cells are named as they were when the
rounds ran in a loop of their own, so runs started then resume here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import pandas as pd

from lesample.data import Dataset, load_dataset
from lesample.store import CellStore, cell_key, write_csv
from lesample.train import (
    TrainConfig,
    TrainResult,
    chunked,
    eval_subset,
    fit,
    make_evaluate,
    recalibrate,
)

#: Data sets loaded in this process, by ``(limit, data_dir)``: a worker loads one once.
_DATA: dict[tuple, Dataset] = {}


def load_data(limit: int | None, data_dir: Path | None, *, quiet: bool = False) -> Dataset:
    """Fashion-MNIST (from ``data_dir`` or the Debian package); digits when it is missing
    and no ``data_dir`` was named. Loaded once per process. ``quiet``: say nothing (workers)."""
    key = (limit, None if data_dir is None else str(data_dir))
    if key not in _DATA:
        try:
            _DATA[key] = load_dataset("fashion-mnist", data_dir, limit=limit)
        except FileNotFoundError:
            if data_dir is not None:
                raise
            _DATA[key] = load_dataset("digits", limit=limit)
    data = _DATA[key]
    if not quiet:
        print("deepnets: using Fashion-MNIST." if data.name == "fashion-mnist" else
              "deepnets: Fashion-MNIST is not installed (apt-get install "
              "dataset-fashion-mnist); using scikit-learn's digits instead.", file=sys.stderr)
    return data


def checkpoint_key(cell: dict, data: Dataset) -> str:
    """The name of a training cell's checkpoint: the cell with its data set and size."""
    return cell_key(dict(cell, dataset=data.name, num_train=len(data.train_images)))


def bn_comparison(result: TrainResult, data: Dataset, config: TrainConfig) -> pd.DataFrame:
    """Validation error of the final model with BatchNorm statistics recomputed at ``x``
    without dropout (the engine's choice) and with dropout on (what a running average of
    training passes tracks)."""
    fm = result.model
    rows = eval_subset(config.seed, len(data.train_images), config.eval_rows)
    train = chunked(data.train_images[rows], data.train_labels[rows], config.eval_chunk)
    test = chunked(data.test_images, data.test_labels, config.eval_chunk)
    evaluate = make_evaluate(fm)
    out = {}
    for name, key in (("no_dropout", None), ("dropout", jax.random.PRNGKey(config.seed))):
        stats = jax.jit(lambda p, k: recalibrate(fm, p, train, k))(result.params, key)
        out[f"val_error_{name}"] = float(evaluate(result.params, stats, test)[1])
    return pd.DataFrame([out])


#: Entries of a round or BatchNorm cell that are not ``TrainConfig`` arguments.
_RUN_KEYS = ("kind", "checkpoint", "until")


def run_cell(cell: dict, *, ckpt_dir: str, limit: int | None, data_dir: str | None
             ) -> pd.DataFrame:
    """One cell of a round's grid (module level: workers import it).

    ``kind="round"``: train the cell to epoch ``until`` from its checkpoint; its history up
    to that epoch. ``kind="bn"``: the BatchNorm comparison of the cell's final checkpoint
    (:func:`bn_comparison`)."""
    data = load_data(limit, None if data_dir is None else Path(data_dir), quiet=True)
    train_cell = {k: v for k, v in cell.items() if k not in _RUN_KEYS}
    if checkpoint_key(train_cell, data) != cell["checkpoint"]:
        raise RuntimeError(f"this process loaded {data.name} ({len(data.train_images)} "
                           "rows), not the data set the run was planned with")
    config = TrainConfig(**train_cell)
    path = Path(ckpt_dir) / f"{cell['checkpoint']}.npz"
    if cell["kind"] == "bn":
        return bn_comparison(fit(config, data, checkpoint=path), data, config)
    history = fit(config, data, checkpoint=path, until=cell["until"]).history
    return history[history.epoch <= cell["until"]].reset_index(drop=True)


def run_rounds(cells: list[dict], data: Dataset, out_dir: Path, round_epochs: int,
               progress: bool, on_round: Callable[..., object], *, executor=None,
               data_dir: Path | None = None, limit: int | None = None):
    """Advance all cells round by round to their budget on ``executor`` (default: serially
    in this process), calling ``on_round(histories, bn, execution)`` with the tables so far
    and a ``lesample.executor.GridResult`` after every round (the report of a stopped run
    is that of its last round); return what the last call returned. ``data`` is the data
    set loaded from ``data_dir`` with ``limit`` rows (workers load it themselves)."""
    from lesample.executor import GridResult, run_grid

    store = CellStore(out_dir / "cells")
    fn = functools.partial(run_cell, ckpt_dir=str(out_dir / "checkpoints"), limit=limit,
                           data_dir=None if data_dir is None else str(data_dir))
    _DATA.setdefault((limit, None if data_dir is None else str(data_dir)), data)
    keys = {id(c): checkpoint_key(c, data) for c in cells}
    budget = max(c["epochs"] for c in cells)
    histories: dict[str, pd.DataFrame] = {}
    bn_rows: list[pd.DataFrame] = []
    failed: list[pd.DataFrame] = []
    gave_up: set[str] = set()
    bn_todo: list[dict] = []
    resumed = 0
    out = None
    rounds = list(range(round_epochs, budget + round_epochs, round_epochs)) + [None]
    for number, until in enumerate(rounds, 1):
        todo = [dict(c, kind="round", checkpoint=keys[id(c)], until=min(until, c["epochs"]))
                for c in cells if until is not None and keys[id(c)] not in gave_up
                and until - round_epochs < c["epochs"]]
        if not todo and not bn_todo:
            continue
        desc = "deepnets BatchNorm" if until is None else f"deepnets round {number}"
        # A worker keeps to a model, an algorithm and a run from round to round.
        grid = run_grid(store, todo + bn_todo, fn, executor=executor, progress=progress,
                        desc=desc, affinity=lambda c: (c["model"], c["algo"], c["checkpoint"]))
        resumed += grid.resumed
        if len(grid.failed):
            failed.append(grid.failed)
            gave_up |= set(grid.failed.checkpoint)
        for cell in todo:
            if store.has(cell):
                histories[cell["checkpoint"]] = store.load(cell).assign(
                    dataset=data.name, noise=cell["noise"], algo=variant(cell),
                    epochs=cell["epochs"])
        for cell in bn_todo:
            if store.has(cell):
                bn_rows.append(store.load(cell).assign(**{
                    **{k: v for k, v in cell.items() if k not in _RUN_KEYS},
                    "algo": variant(cell)}))
        bn_todo = [dict({k: v for k, v in cell.items() if k not in _RUN_KEYS}, kind="bn",
                        checkpoint=cell["checkpoint"])
                   for cell in todo if cell["until"] >= cell["epochs"]
                   and cell["checkpoint"] not in gave_up]
        if not histories:
            raise RuntimeError(f"every deep-network cell failed (first: {failed[0].error[0]})")
        results = pd.concat(histories.values(), ignore_index=True)
        bn = pd.concat(bn_rows, ignore_index=True) if bn_rows else pd.DataFrame()
        failures = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame()
        write_csv(results, out_dir / "results.csv")
        write_csv(bn, out_dir / "bn.csv")
        write_csv(failures, out_dir / "failed.csv")
        execution = GridResult(results, failures, grid.concurrency, grid.executor, resumed)
        out = on_round(results, bn, execution)
    return out


def with_self_tuning(cells: list[dict], gamma, tolerance) -> list[dict]:
    """The cells with ``gamma="auto"`` set on the algorithms that take it and ``tolerance``
    on those with an adaptive inner loop (``lesample.train``); the others, and every cell
    when both are None, keep their settings and keys. An epoch of the training loop is a
    fixed number of updates, and the automatic scope's Lanczos HVPs make an update dearer
    (``grads_per_update``: 40 gradients for Entropy-SGD instead of 20, 25 for HJ instead of
    5), so the budget and the learning-rate drop of an automatic-scope cell, in epochs, are
    scaled down by that ratio: the same budget in effective epochs, at most (30 effective
    epochs in full mode: 15 epochs for Entropy-SGD, 6 for HJ)."""
    from lesample.train.algorithms import (
        ADAPTIVE_L,
        AUTO_SCOPE,
        check_self_tuning,
        grads_per_update,
    )

    for algo in AUTO_SCOPE:  # refuse a bad value before any work starts
        check_self_tuning(algo, gamma, tolerance if algo in ADAPTIVE_L else None)
    out = []
    for c in cells:
        extra = {}
        if gamma is not None and c["algo"] in AUTO_SCOPE:
            share = grads_per_update(c["algo"]) / grads_per_update(c["algo"], gamma)
            extra.update(gamma=gamma, epochs=max(1, round(c["epochs"] * share)),
                         drop_every=max(1, int(c["drop_every"] * share)))
        if tolerance is not None and c["algo"] in ADAPTIVE_L:
            extra["tolerance"] = tolerance
        out.append(dict(c, **extra))
    return out


def variant(cell: dict) -> str:
    """The name a cell's algorithm goes by in the results: ``entropy_sgd``, or
    ``entropy_sgd+auto``, ``entropy_sgd+auto+tol`` for the self-tuned settings, so that they
    sit beside the hand-set runs in one report."""
    return cell["algo"] + ("+auto" if cell.get("gamma") == "auto" else "") + (
        "+tol" if cell.get("tolerance") is not None else "")


def with_replicas(cells: list[dict], replicas: int | None) -> list[dict]:
    """The cells with ``replicas`` set on those of replica algorithms (``parle``,
    ``elastic_sgd``); None leaves them at their default (3) and their keys unchanged."""
    from lesample.train import ALGORITHMS

    if replicas is None:
        return cells
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"`replicas` must be an integer >= 1; got {replicas!r}")
    return [dict(c, replicas=replicas) if ALGORITHMS[c["algo"]].replicas > 1 else c
            for c in cells]
