"""A model as pure functions of ``(params, batch_stats, batch)`` pytrees (see
:mod:`lesample.nets`, "Running statistics")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax
from flax import nnx

__all__ = ["FunctionalModel", "functional", "functional_loss"]


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class FunctionalModel(NamedTuple):
    """A model as pure functions of pytrees (see the module docstring).

    ``batch = (images, labels, key)`` throughout (``forward_with_stats`` ignores ``labels``).

    - ``loss(params, batch) -> scalar``: training-mode mean cross-entropy; statistics untouched.
    - ``forward_with_stats(params, batch_stats, batch) -> (logits, new_batch_stats)``.
    - ``loss_with_stats(params, batch_stats, batch) -> (loss, new_batch_stats)``.
    - ``predict(params, batch_stats, images) -> logits``: evaluation mode (no dropout,
      running statistics).
    - ``merge(params, batch_stats) -> nnx.Module``: a fresh module holding these values.
    - ``params``, ``batch_stats``: the ``nnx.Param`` and ``nnx.BatchStat`` states of the
      model at the time of the split.
    """

    loss: Callable
    forward_with_stats: Callable
    loss_with_stats: Callable
    predict: Callable
    merge: Callable
    params: Any
    batch_stats: Any


def functional(model: nnx.Module) -> FunctionalModel:
    """Split ``model`` into pure functions and its ``(params, batch_stats)`` pytrees."""
    graphdef, params, batch_stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)

    def merge(params, batch_stats):
        return nnx.merge(graphdef, params, batch_stats, other, copy=True)

    def loss(params, batch):
        images, labels, key = batch
        return _cross_entropy(merge(params, batch_stats)(images, key, train=True), labels)

    def forward_with_stats(params, batch_stats, batch):
        images, _, key = batch
        net = merge(params, batch_stats)
        logits = net(images, key, train=True)
        return logits, nnx.state(net, nnx.BatchStat)

    def loss_with_stats(params, batch_stats, batch):
        logits, new_stats = forward_with_stats(params, batch_stats, batch)
        return _cross_entropy(logits, batch[1]), new_stats

    def predict(params, batch_stats, images):
        return merge(params, batch_stats)(images)

    return FunctionalModel(loss, forward_with_stats, loss_with_stats, predict, merge,
                           params, batch_stats)


def functional_loss(model: nnx.Module):
    """Split ``model`` into ``(loss_fn, params)`` with ``loss_fn(params, batch)`` pure.

    ``batch = (images, labels, key)``: mean cross-entropy in training mode (dropout keyed by
    ``key``, BatchNorm on batch statistics; running statistics are not updated by the pure
    loss). ``params`` is the ``nnx.Param`` state, a pytree. For the statistics see
    ``functional``.
    """
    f = functional(model)
    return f.loss, f.params
