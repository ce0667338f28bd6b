"""The training loop: epochs of jitted outer steps, evaluation, checkpoints, progress bars.

An **epoch** here is one effective epoch (Remark 22): ``round(N / (B L))`` outer steps of
``L`` mini-batches each, about ``N / B`` gradient evaluations, so ``epochs`` is the budget in
effective epochs for every algorithm; the exact count, ``num_grads * B / N``, is recorded.
The self-tuned settings spend a variable amount per update (``gamma="auto"``: its Lanczos
HVPs, two gradients each; ``tolerance``: the ``L`` actually run), but an epoch keeps its
``round(N / (B L))`` outer steps, so their recorded effective epochs per epoch differ from 1
(docs/adaptation.md: how to give them the same budget).
The mini-batches of epoch ``e`` are the first ``steps * L * B`` rows of random permutations
of the training set drawn by ``numpy.random.default_rng([seed, e])`` (more than one
permutation when ``L`` does not divide ``N / B``), so an epoch's batches depend only on the
seed and the epoch: that, the dropout keys ``fold_in(PRNGKey(seed), step)`` and the
optimiser's key inside its state are all the randomness there is, which is what makes a
resumed run reproduce an uninterrupted one exactly.

**Replicas** (``parle``, ``elastic_sgd``; ``replicas = n``): the parameters are ``n`` stacked
copies of the initial model; effective epochs count the gradients of **all** replicas, so
an epoch is ``round(N / (B L n))`` rounds of ``L`` mini-batches per replica (the replicas
together see about ``N / B`` mini-batches, different ones: the epoch's rows have shape
``(steps, L, n, B)``), ``num_grads`` is the sum over replicas, and ``outer_steps`` counts
the coupling rounds (the rounds of communication). Evaluation and the returned ``params``
use the reference point, the replica mean, with BatchNorm statistics recomputed there.
With several local devices the replicas are sharded over the largest number of them that
divides ``n`` (``lesample.distributed``).

After each epoch the model is evaluated (BatchNorm statistics recomputed at ``x``, see
``lesample.train.step``) on a fixed subset of the training set (training loss and error) and
on the test set (validation loss and error, paper §8.1), and ``(params, opt_state)``, the
epoch and the history are checkpointed atomically; ``fit`` with the same ``checkpoint`` path
resumes from the last finished epoch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from lesample.data import Dataset
from lesample.distributed import gather, replica_mesh, replicated, shard
from lesample.nets import MODELS, FunctionalModel, functional
from lesample.noise import check_noise
from lesample.optim import replica_mean, replicate
from lesample.samplers import DivergenceError
from lesample.train.algorithms import (
    ALGORITHMS,
    canonical_algorithm,
    check_self_tuning,
    make_optimizer,
)
from lesample.train.checkpoint import resume_checkpoint, save_checkpoint
from lesample.train.step import chunked, make_evaluate, make_step, recalibrate

__all__ = ["TrainConfig", "TrainResult", "epoch_indices", "eval_subset", "fit",
           "steps_per_epoch"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
      model: "mnistfc", "lenet" or "allcnn" (``lesample.nets.MODELS``).
      algo: "sgd", "entropy_sgd", "hj" or "heat" (``lesample.train.ALGORITHMS``).
      epochs: the budget in effective epochs (one evaluation and checkpoint each).
      batch_size: mini-batch size ``B`` (128 in the paper).
      seed: seeds the weights, the mini-batches, dropout and the optimiser's noise.
      noise: Entropy-SGD's Langevin noise, "gaussian" or "rademacher" (``lesample.noise``).
      drop_every: the learning rate drops by 5x every ``drop_every`` effective epochs.
      lr, gamma: override the algorithm's reference learning rate and initial scope;
        ``gamma="auto"`` (entropy_sgd, hj): the scope from the loss's curvature at every
        update instead of the hand-set scoping (``lesample.train.make_optimizer``).
      tolerance: entropy_sgd's adaptive inner loop (at most ``L`` steps; None: ``L``
        every update). Effective epochs count the gradients actually spent.
      eval_rows: training rows (a fixed random subset) for the BatchNorm statistics and
        the training loss.
      eval_chunk: rows per evaluation chunk.
      unroll: no XLA loop around the inner gradients (``lesample.optim``'s ``unroll=True``):
        on CPU, XLA's convolution gradients inside a loop run about 3x slower (LeNet's default
        matmul convolutions do not); unrolling costs compile time (~50 s for LeNet at L = 20).
        Same results either way, up to rounding.
      replicas: ``n`` for ``parle`` and ``elastic_sgd`` (None: 3); not for the others.
    """

    model: str = "mnistfc"
    algo: str = "sgd"
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    noise: str = "gaussian"
    drop_every: float = 60
    lr: float | None = None
    gamma: float | str | None = None
    tolerance: float | None = None
    eval_rows: int = 5000
    eval_chunk: int = 1000
    unroll: bool = False
    replicas: int | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {sorted(MODELS)}")
        object.__setattr__(self, "algo", canonical_algorithm(self.algo))
        if self.replicas is not None:
            if ALGORITHMS[self.algo].replicas == 1:
                raise ValueError(f"`replicas` applies to parle and elastic_sgd, not "
                                 f"{self.algo!r}; got replicas={self.replicas!r}")
            if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                    or self.replicas < 1:
                raise ValueError(f"`replicas` must be an integer >= 1; got {self.replicas!r}")
        check_noise(self.noise)
        check_self_tuning(self.algo, self.gamma, self.tolerance)
        if not isinstance(self.unroll, bool):
            raise TypeError(f"`unroll` must be True or False; got {self.unroll!r}")
        for name in ("epochs", "batch_size", "eval_rows", "eval_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1; got {getattr(self, name)!r}")
        if self.seed < 0 or not self.drop_every > 0:
            raise ValueError("`seed` must be >= 0 and `drop_every` > 0.")


class TrainResult(NamedTuple):
    """``params`` and ``batch_stats`` (recomputed at ``params``) of the trained model, its
    ``history`` (one row per epoch), the ``model`` as pure functions (``lesample.nets``) and
    the wall-clock ``seconds`` this call spent."""

    params: Any
    batch_stats: Any
    history: pd.DataFrame
    model: FunctionalModel
    seconds: float


def steps_per_epoch(num_train: int, batch_size: int, num_grads: int) -> int:
    """Outer steps in one effective epoch: ``round(N / (B L))``, at least 1."""
    return max(1, round(num_train / (batch_size * num_grads)))


def epoch_indices(seed: int, epoch: int, num_train: int, shape: tuple[int, ...]) -> np.ndarray:
    """Row indices of one epoch's mini-batches, ``shape = (steps, L, B)`` (module docstring)."""
    rng = np.random.default_rng([seed, epoch])
    count = int(np.prod(shape))
    perms = [rng.permutation(num_train) for _ in range(-(-count // num_train))]
    return np.concatenate(perms)[:count].reshape(shape).astype(np.int32)


def eval_subset(seed: int, num_train: int, count: int) -> np.ndarray:
    """The training rows ``fit`` evaluates on and recomputes BatchNorm statistics from: the
    first ``count`` of a permutation fixed by ``seed``."""
    return np.random.default_rng([seed, num_train]).permutation(num_train)[:count]


def num_replicas(config: TrainConfig) -> int | None:
    """``n`` of a replica algorithm's run (None for the others)."""
    spec = ALGORITHMS[config.algo]
    if spec.replicas == 1:
        return None
    return spec.replicas if config.replicas is None else config.replicas


def replica_devices(n: int | None):
    """The replicas' mesh: with several processes (``lesample.distributed.initialize``) all
    their devices, over which ``n`` must divide; otherwise the largest number of local
    devices dividing ``n`` (None: one device)."""
    if n is None:
        return None
    if jax.process_count() > 1:
        return replica_mesh(n)
    d = max(k for k in range(1, jax.local_device_count() + 1) if n % k == 0)
    return None if d == 1 else replica_mesh(n, jax.local_devices()[:d])


def _header(config: TrainConfig, epoch: int, history: list[dict]) -> dict:
    return dict(config=dataclasses.asdict(config), epoch=epoch, history=history)


#: The dropout keys of outer steps ``s`` (an array): ``fold_in(PRNGKey(seed), s)`` each.
step_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))


def _raise_if_diverged(opt_state, config: TrainConfig, epoch: int) -> None:
    """``DivergenceError`` naming the outer step if the optimiser flagged a non-finite
    update (``OptimState.diverged_at``); states without the flag are not checked."""
    at = getattr(opt_state, "diverged_at", None)
    if at is not None and int(at) >= 0:
        raise DivergenceError(
            f"{config.algo} on {config.model} (seed {config.seed}) diverged at outer step "
            f"{int(at)} (epoch {epoch + 1}): a non-finite update (a NaN/inf gradient, or a "
            "schedule value below 0). Lower the learning rate or check the schedules.")


def fit(config: TrainConfig, data: Dataset, *, checkpoint: str | os.PathLike | None = None,
        until: int | None = None, progress: bool = False,
        grads_per_call: int = 20) -> TrainResult:
    """Train ``config.model`` on ``data`` with ``config.algo`` for ``config.epochs``
    effective epochs; resume from ``checkpoint`` (a file path) if it exists and write it
    after every epoch. ``until``: stop after that many epochs (the schedule is still the
    one of ``config.epochs``; a later call with the same checkpoint goes on exactly).
    ``progress``: a tqdm bar over outer steps showing the last evaluation's training loss
    and validation error. ``grads_per_call``: about this many gradients per call of the
    jitted step (``round(grads_per_call / L)`` outer steps, at least one; see
    ``lesample.train.step``); it changes speed, not results (up to rounding)."""
    if not (isinstance(grads_per_call, int) and grads_per_call >= 1):
        raise ValueError(f"`grads_per_call` must be an int >= 1; got {grads_per_call!r}")
    start_time = time.perf_counter()
    spec = ALGORITHMS[config.algo]
    n, B, L = len(data.train_images), config.batch_size, spec.num_grads
    replicas = num_replicas(config)
    batch_shape = (L, B) if replicas is None else (L, replicas, B)
    steps = steps_per_epoch(n, B, L * (replicas or 1))
    fm = functional(MODELS[config.model](rngs=nnx.Rngs(config.seed)))
    mesh = replica_devices(replicas)
    # several processes: the step's inputs are global arrays, everything else host copies
    multi = mesh is not None and jax.process_count() > 1
    tx = make_optimizer(config.algo, steps_per_epoch=steps, epochs=config.epochs,
                        drop_every=config.drop_every, seed=config.seed, noise=config.noise,
                        lr=config.lr, gamma=config.gamma, tolerance=config.tolerance,
                        unroll=config.unroll or 1,
                        replicas=replicas, mesh=mesh)
    params = fm.params if replicas is None else replicate(fm.params, replicas)
    params = jax.tree_util.tree_map(jnp.copy, params)  # the step donates its input
    state = (params, tx.init(params))
    history: list[dict] = []
    start = 0
    # The newest intact checkpoint; an unreadable one is named in a warning and skipped.
    resumed = None if checkpoint is None else resume_checkpoint(checkpoint, state)
    if resumed is not None:
        state, header = resumed
        # fields added since a checkpoint was written take their defaults
        if {"replicas": None, "tolerance": None, **header["config"]} != \
                dataclasses.asdict(config):
            raise ValueError(f"checkpoint {checkpoint} belongs to another run: "
                             f"{header['config']} (this run: {dataclasses.asdict(config)}).")
        start, history = header["epoch"], header["history"]
    if multi:
        state = shard(state, mesh, replicas)

    def inputs(*arrays):
        return replicated(arrays, mesh) if multi else tuple(map(jnp.asarray, arrays))

    data_dev = inputs(data.train_images, data.train_labels)
    rows = eval_subset(config.seed, n, config.eval_rows)
    train_chunks = chunked(data.train_images[rows], data.train_labels[rows], config.eval_chunk)
    test_chunks = chunked(data.test_images, data.test_labels, config.eval_chunk)
    step, evaluate = make_step(fm, tx), make_evaluate(fm)
    recal = jax.jit(lambda p: recalibrate(fm, p, train_chunks))
    mean = jax.jit(lambda p: p if replicas is None else
                   jax.tree_util.tree_map(lambda u: u[0], replica_mean(p)))

    def reference(p):
        return jax.tree_util.tree_map(jnp.asarray, gather(mean(p))) if multi else mean(p)
    dropout_key = jax.random.PRNGKey(config.seed)

    bar = tqdm(total=config.epochs * steps, initial=start * steps, disable=not progress,
               desc=f"{config.model} {config.algo} seed {config.seed}", unit="step",
               leave=False, dynamic_ncols=True)
    if history:
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.4f}",
                        val_err=f"{100 * history[-1]['val_error']:.2f}%")
    params, opt_state = state
    stop = config.epochs if until is None else min(until, config.epochs)
    per_call = max(1, round(grads_per_call / L))
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        idx = epoch_indices(config.seed, epoch, n, (steps, *batch_shape))
        keys = np.asarray(step_keys(dropout_key, epoch * steps + np.arange(steps)))
        for s in range(0, steps, per_call):
            params, opt_state = step(params, opt_state, data_dev,
                                     *inputs(idx[s:s + per_call], keys[s:s + per_call]))
            bar.update(min(per_call, steps - s))
        jax.block_until_ready(params)
        _raise_if_diverged(opt_state, config, epoch)
        t1 = time.perf_counter()
        x = reference(params)
        stats = recal(x)
        train_loss, train_error = evaluate(x, stats, train_chunks)
        val_loss, val_error = evaluate(x, stats, test_chunks)
        num_grads = int(np.sum(gather(opt_state.num_grads)))
        history.append(dict(
            model=config.model, algo=config.algo, seed=config.seed, epoch=epoch + 1,
            replicas=replicas or 1,
            outer_steps=int(opt_state.count), num_grads=num_grads,
            effective_epochs=num_grads * B / n,
            train_loss=float(train_loss), train_error=float(train_error),
            val_loss=float(val_loss), val_error=float(val_error),
            train_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1,
        ))
        bar.set_postfix(loss=f"{float(train_loss):.4f}", val_err=f"{100 * float(val_error):.2f}%")
        if checkpoint is not None and not multi:
            save_checkpoint(checkpoint, (params, opt_state), _header(config, epoch + 1, history))
        elif checkpoint is not None:  # every process gathers; process 0 writes
            whole = gather((params, opt_state))
            if jax.process_index() == 0:
                save_checkpoint(checkpoint, whole, _header(config, epoch + 1, history))
            multihost_utils.sync_global_devices("lesample checkpoint")  # then all may resume
    bar.close()
    x = reference(params)
    return TrainResult(x, recal(x), pd.DataFrame(history), fm,
                       time.perf_counter() - start_time)
