"""Running the cells of the deep-network study in rounds, from checkpoints.

Every cell (model x algorithm x seed) trains through ``lesample.train.fit`` with its own
checkpoint ``checkpoints/<key>.npz``. Round ``r`` advances every cell to epoch
``r * round_epochs``, so a long run that is stopped leaves all cells at about the same
budget; ``results.csv`` (all histories so far) is rewritten after every cell. A finished
cell also gets its BatchNorm comparison (validation error with the statistics recomputed
with dropout on), kept in a ``CellStore``.
"""

from __future__ import annotations

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


def load_data(limit: int | None, data_dir: Path | None) -> Dataset:
    """Fashion-MNIST (from ``data_dir`` or the Debian package); digits when it is missing
    and no ``data_dir`` was named."""
    try:
        data = load_dataset("fashion-mnist", data_dir, limit=limit)
    except FileNotFoundError:
        if data_dir is not None:
            raise
        print("deepnets: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist);"
              " using scikit-learn's digits instead.", file=sys.stderr)
        return load_dataset("digits", limit=limit)
    print("deepnets: using Fashion-MNIST.", file=sys.stderr)
    return data


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


def run_rounds(cells: list[dict], data: Dataset, out_dir: Path, round_epochs: int,
               progress: bool, on_round: Callable[[pd.DataFrame, pd.DataFrame], object]):
    """Advance all cells round by round to their budget, calling ``on_round(histories,
    bn)`` with the tables so far after every round (the report of a stopped run is that of
    its last round); return what the last call returned."""
    ckpt_dir = out_dir / "checkpoints"
    bn_store = CellStore(out_dir / "cells")
    budget = max(c["epochs"] for c in cells)
    histories: dict[str, pd.DataFrame] = {}
    bn_rows = []
    out = None
    for until in range(round_epochs, budget + round_epochs, round_epochs):
        for cell in cells:
            config = TrainConfig(**cell)
            key = cell_key(dict(cell, dataset=data.name, num_train=len(data.train_images)))
            result = fit(config, data, checkpoint=ckpt_dir / f"{key}.npz", until=until,
                         progress=progress)
            histories[key] = result.history.assign(dataset=data.name, noise=config.noise)
            write_csv(pd.concat(histories.values(), ignore_index=True),
                      out_dir / "results.csv")
            if until >= config.epochs and until - round_epochs < config.epochs:
                bn_cell = dict(cell, kind="bn", checkpoint=key)
                if not bn_store.has(bn_cell):
                    bn_store.save(bn_cell, bn_comparison(result, data, config))
                bn_rows.append(bn_store.load(bn_cell).assign(**cell))
        bn = pd.concat(bn_rows, ignore_index=True) if bn_rows else pd.DataFrame()
        write_csv(bn, out_dir / "bn.csv")
        out = on_round(pd.concat(histories.values(), ignore_index=True), bn)
    return out


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
