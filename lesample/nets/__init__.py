"""Networks of the deep benchmarks (paper §8), in flax NNX: three models, the layers they
are built from, and the models as pure functions.

- :mod:`lesample.nets.layers`: PRNG-keyed ``Dropout``, max-pooling, ``conv_shifted_matmul``.
- :mod:`lesample.nets.models`: ``MnistFC``, ``LeNet``, ``AllCNN`` and the ``MODELS`` table.
- :mod:`lesample.nets.functional`: ``functional``/``functional_loss`` (pure functions of
  ``(params, batch_stats, batch)``).

Images are NHWC (``(N, 28, 28, 1)`` for MNIST, ``(N, 32, 32, 3)`` for CIFAR-10); the MNIST
models also accept flat ``(N, 784)`` inputs. Outputs are logits ``(N, 10)``.

Modes
-----
``model(x, key)`` is **training** mode: dropout draws its masks from the explicit PRNG
``key``, and BatchNorm normalises with the statistics of the batch.
``model(x)`` (``key=None``) is **evaluation** mode: no dropout, BatchNorm uses its running
statistics. ``train=`` overrides the BatchNorm mode alone (``model(x, train=True)``: batch
statistics without dropout). No randomness is hidden in the modules (no ``nnx.Rngs``
stream is consumed by a call).

Running statistics
------------------
Each BatchNorm keeps ``mean``/``var`` as ``nnx.BatchStat`` variables, updated only by a
training-mode call: ``s <- momentum * s + (1 - momentum) * batch_statistic``, with
``momentum = 0.9`` by default (PyTorch's and Torch's ``momentum=0.1``, which the reference
code used). An eager NNX call ``model(x, key)`` updates them in place. The pure API splits
the two roles:

- ``functional_loss(model) -> (loss_fn, params)``: ``loss_fn(params, batch)`` with
  ``batch = (images, labels, key)`` is the training-mode cross-entropy and **does not**
  update the statistics. This is what the inner loop of Entropy-SGD differentiates
  (the ``L`` Langevin steps must not move the running averages).
- ``functional(model) -> FunctionalModel`` adds ``forward_with_stats(params, batch_stats,
  batch) -> (logits, new_batch_stats)`` and ``loss_with_stats`` (the same, returning the loss:
  use it with ``jax.value_and_grad(..., has_aux=True)``) for the outer step, which is where
  a training engine advances the running statistics, once per outer update; ``predict(params,
  batch_stats, images)`` evaluates; ``merge(params, batch_stats)`` rebuilds an NNX module.
"""

from lesample.nets.functional import FunctionalModel, functional, functional_loss
from lesample.nets.layers import (
    CONVS,
    POOLS,
    Dropout,
    conv_shifted_matmul,
    max_pool,
    max_pool_reshape,
)
from lesample.nets.models import MODELS, AllCNN, LeNet, MnistFC, num_params

__all__ = [
    "MnistFC",
    "LeNet",
    "AllCNN",
    "MODELS",
    "FunctionalModel",
    "functional",
    "functional_loss",
    "num_params",
    "max_pool",
    "max_pool_reshape",
    "conv_shifted_matmul",
    "Dropout",
    "CONVS",
    "POOLS",
]
