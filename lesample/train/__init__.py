"""Training engine of the deep benchmarks (paper §8, docs/deepnets.md).

>>> from lesample.data import load_dataset
>>> from lesample.train import TrainConfig, fit
>>> result = fit(TrainConfig(model="lenet", algo="entropy_sgd", epochs=20, seed=0),
...              load_dataset("fashion-mnist"), checkpoint="runs/lenet-esgd-0.npz",
...              progress=True)
>>> result.history  # one row per effective epoch: losses, errors, gradients, seconds

- ``algorithms``: the four algorithms with the paper's settings in our conventions and the
  learning-rate schedule in effective epochs.
- ``step``: the one jitted outer step per algorithm (data on the device, inner loop in
  ``lax.scan``, explicit dropout keys), BatchNorm statistics recomputed at ``x``, evaluation.
- ``checkpoint``: pickle-free atomic checkpoints.
- ``loop``: ``fit``: epochs, evaluation, checkpoints and exact resumption, progress bars,
  a tidy history.
"""

from lesample.train.algorithms import ALGORITHMS, canonical_algorithm, lr_schedule, make_optimizer
from lesample.train.checkpoint import load_checkpoint, save_checkpoint
from lesample.train.loop import (
    TrainConfig,
    TrainResult,
    epoch_indices,
    eval_subset,
    fit,
    steps_per_epoch,
)
from lesample.train.step import Chunks, chunked, make_evaluate, make_step, recalibrate

__all__ = [
    "ALGORITHMS",
    "Chunks",
    "TrainConfig",
    "TrainResult",
    "canonical_algorithm",
    "chunked",
    "epoch_indices",
    "eval_subset",
    "fit",
    "load_checkpoint",
    "lr_schedule",
    "make_evaluate",
    "make_optimizer",
    "make_step",
    "recalibrate",
    "save_checkpoint",
    "steps_per_epoch",
]
