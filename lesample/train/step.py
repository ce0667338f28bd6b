"""One jitted outer step, and evaluation with BatchNorm statistics recomputed at ``x``.

Step
----
``step(params, opt_state, data, idx, keys) -> (params, opt_state)`` is one ``jax.jit``
function for every algorithm that runs ``K`` outer steps in a ``lax.scan``: ``data =
(images, labels)`` is the whole training set, already on the device (an argument, not a
constant baked into the program); ``idx`` is ``(K, L, B)`` row indices and ``keys`` ``(K,)``
dropout keys; gradient ``l`` of outer step ``k`` gathers ``images[idx[k, l]]`` on the device
inside the optimiser's ``lax.scan`` and differentiates the training-mode loss with the
dropout key ``split(keys[k], L)[l]`` (explicit keys, no hidden RNG state). Replica
algorithms (``parle``, ``elastic_sgd``) take ``idx`` of shape ``(K, L, n, B)`` and
replica ``a`` the key ``split(keys[k], (L, n))[l, a]``. The optimiser's
own noise (Langevin, HEAT perturbations) comes from its state's key, which is part of
``opt_state``. Several outer steps per call matter for SGD (``L = 1``): on XLA:CPU a call of
LeNet's one-gradient step costs about 16 ms more than the same step inside a loop
(``benchmarks/entropy_step.py`` times both forms of SGD), so ``fit`` batches about 20 gradients per
call whatever ``L`` is.

BatchNorm statistics
--------------------
Every forward pass of training (the ``L`` inner steps of Entropy-SGD/HJ, HEAT's perturbed
points, SGD's one gradient) normalises with the statistics of its own mini-batch, and **no
pass updates the running averages**: the inner iterates ``y`` (or ``x + e``) are not the
point the model will be evaluated at, and the reference PyTorch code, which lets each of the
``L`` inner passes move its running averages, ends with statistics of ``y`` mixed over the
last few dozen inner steps, not of ``x``. Instead, the running statistics are a function of
``x`` alone, recomputed when they are needed (evaluation, the final model) by
:func:`recalibrate`: training-mode passes at ``x`` without dropout over a fixed subset of the
training set, batch means and variances averaged over chunks ("precise BN"). This is also
what the reference code does before validating (its ``dry_feed``: a pass over the training
set with dropout off), done exactly rather than by a running average. Effects: the training
step carries no ``batch_stats`` and spends nothing on them, so an Entropy-SGD step costs its
``L`` gradients only; the statistics match the evaluation-time network (no dropout: the
"variance shift" of dropout before BatchNorm is removed); evaluation costs two extra forward
passes over the subset. ``studies/deepnets`` reports the validation error with statistics
recomputed with dropout on (what a running average of training passes tracks) beside ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lesample.nets import FunctionalModel

__all__ = ["CPU_COMPILER_OPTIONS", "Chunks", "chunked", "make_evaluate", "make_step",
           "recalibrate"]

#: XLA options of the step on the CPU. Region-based copy insertion: without it XLA copies,
#: at every gradient, each weight that the backward pass reads before the weight is updated
#: in place in the loop (mnistfc: 4 MB per gradient); the gain is in docs/results.md.
#: Buffer assignment only: the numbers are the same
#: bit for bit (``tests/test_train.py``).
CPU_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def make_step(fm: FunctionalModel, tx: optax.GradientTransformationExtraArgs) -> Callable:
    """The jitted ``K`` outer steps of module docstring (params and optimiser state
    donated)."""
    grad_loss = jax.grad(fm.loss)

    def rows_grad(images, labels, p, batch):
        rows, k = batch
        return grad_loss(p, (images[rows], labels[rows], k))

    def step(params, opt_state, data, idx, keys):
        # A Partial binding the data as arguments, not a closure: sharded replicas
        # (lesample.optim.parle/elastic_sgd on a mesh) pass them into shard_map.
        grad_fn = jax.tree_util.Partial(rows_grad, *data)

        def one(carry, xs):
            params, opt_state = carry
            rows, key = xs
            updates, opt_state = tx.update(None, opt_state, params, grad_fn=grad_fn,
                                           batches=(rows, jax.random.split(key, rows.shape[:-1])))
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(one, (params, opt_state), (idx, keys))[0]

    options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(step, donate_argnums=(0, 1), compiler_options=options)


class Chunks(NamedTuple):
    """A data set cut into equal chunks: images ``(C, n, ...)``, labels ``(C, n)``, and
    ``mask`` ``(C, n)`` (0 on the padding of the last chunk)."""

    images: jax.Array
    labels: jax.Array
    mask: jax.Array


def chunked(images: np.ndarray, labels: np.ndarray, size: int) -> Chunks:
    """Pad to a multiple of ``size`` (repeating the first rows, masked out) and reshape."""
    n = len(images)
    size = min(size, n)
    pad = -n % size
    take = np.concatenate([np.arange(n), np.arange(pad) % n])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    shape = (-1, size)
    return Chunks(jnp.asarray(images[take].reshape(shape + images.shape[1:])),
                  jnp.asarray(labels[take].reshape(shape)), jnp.asarray(mask.reshape(shape)))


def recalibrate(fm: FunctionalModel, params, chunks: Chunks, key: jax.Array | None = None):
    """Running statistics of BatchNorm at ``params``: each layer's batch mean and variance in
    training mode, averaged over the chunks (equal sizes: the padding of the last chunk
    repeats real rows). ``key=None``: no dropout (ours); a key: dropout on, one key per
    chunk. Pure; jit it."""
    keys = None if key is None else jax.random.split(key, chunks.images.shape[0])

    def one(xs):
        images, k = xs
        net = fm.merge(params, fm.batch_stats)
        for _, node in nnx.iter_graph(net):
            if isinstance(node, nnx.BatchNorm):
                node.momentum = 0.0  # the state after one pass is the batch statistic
        net(images, k, train=True)
        return nnx.state(net, nnx.BatchStat)

    stats = jax.lax.map(one, (chunks.images, keys))
    return jax.tree_util.tree_map(lambda s: s.mean(axis=0), stats)


def make_evaluate(fm: FunctionalModel) -> Callable:
    """``evaluate(params, batch_stats, chunks) -> (mean loss, error rate)``, jitted:
    evaluation mode (no dropout, the given running statistics), masked means."""

    def evaluate(params, batch_stats, chunks: Chunks):
        def one(xs):
            images, labels, mask = xs
            logits = fm.predict(params, batch_stats, images)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            wrong = (jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32)
            return (loss * mask).sum(), (wrong * mask).sum()

        loss, wrong = jax.lax.map(one, tuple(chunks))
        n = chunks.mask.sum()
        return loss.sum() / n, wrong.sum() / n

    return jax.jit(evaluate)
