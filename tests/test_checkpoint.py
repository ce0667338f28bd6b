"""Checkpoints under faults: an unreadable file is named, the previous one is kept and used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lesample.train.checkpoint import (
    CheckpointWarning,
    CorruptCheckpointError,
    load_checkpoint,
    previous_path,
    resume_checkpoint,
    save_checkpoint,
)

TREE = {"a": jnp.arange(6.0).reshape(3, 2), "b": (jnp.ones(4, jnp.int32),)}


def _flip_a_byte(path):  # a bad CRC-32 inside the zip
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _tree_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate])
def test_unreadable_checkpoint_names_its_file(tmp_path, damage):
    path = tmp_path / "cell-3f.npz"
    save_checkpoint(path, TREE, {"epoch": 1})
    damage(path)
    with pytest.raises(CorruptCheckpointError, match="cell-3f.npz"):
        load_checkpoint(path, TREE)


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate])
def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, damage):
    path = tmp_path / "run.npz"
    older = jax.tree_util.tree_map(lambda x: x - 1, TREE)
    save_checkpoint(path, older, {"epoch": 1})
    save_checkpoint(path, TREE, {"epoch": 2})
    _, header = load_checkpoint(previous_path(path), TREE)
    assert header == {"epoch": 1}  # the last two are kept
    _, header = resume_checkpoint(path, TREE)
    assert header == {"epoch": 2}

    damage(path)
    with pytest.warns(CheckpointWarning, match=r"run\.npz.*falling back to .*run\.prev\.npz"):
        tree, header = resume_checkpoint(path, TREE)
    assert header == {"epoch": 1}
    _tree_equal(tree, older)
    # The bad file is moved aside, so the next save cannot rotate it over the good one.
    save_checkpoint(path, TREE, {"epoch": 2})
    assert load_checkpoint(previous_path(path), TREE)[1] == {"epoch": 1}

    damage(path)
    damage(previous_path(path))
    with pytest.warns(CheckpointWarning) as record:
        assert resume_checkpoint(path, TREE) is None
    assert [str(w.message).split(";")[-1] for w in record
            if w.category is CheckpointWarning] == [
        f" falling back to {previous_path(path)}", " starting afresh"]
    assert resume_checkpoint(tmp_path / "none.npz", TREE) is None


@pytest.mark.slow  # three compiled training runs
def test_fit_resumes_from_the_previous_checkpoint(tmp_path):
    from lesample.data import load_dataset
    from lesample.train import TrainConfig, fit

    digits = load_dataset("digits", limit=96)
    config = TrainConfig(model="mnistfc", algo="sgd", epochs=2, batch_size=16, seed=3,
                         eval_rows=100, eval_chunk=100)
    whole = fit(config, digits)
    ckpt = tmp_path / "run.npz"
    fit(config, digits, checkpoint=ckpt)
    _flip_a_byte(ckpt)  # the last checkpoint is bad: go on from the one before
    with pytest.warns(CheckpointWarning, match="run.npz"):
        resumed = fit(config, digits, checkpoint=ckpt)
    _tree_equal(resumed.params, whole.params)
    cols = ["epoch", "num_grads", "train_loss", "val_error"]
    assert resumed.history[cols].equals(whole.history[cols])
