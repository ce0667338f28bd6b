"""Networks of the deep benchmarks (DESIGN.md §5, paper §8), in flax NNX.

Three models: ``MnistFC`` (mnistfc), ``LeNet`` and ``AllCNN`` (All-CNN-C with BatchNorm).
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

Max-pooling
-----------
``max_pool`` (``nnx.max_pool``, a ``lax.reduce_window``) and ``max_pool_reshape`` (reshape to
``(N, H/k, k, W/k, k, C)`` and take the max over the two window axes) agree exactly when the
window equals the stride and divides H and W, forward, and backward when a window has a
single maximum (with ties, ``reduce_window`` sends the gradient to one maximum and ``max`` splits
it among them). LeNet's pools satisfy the condition (24 -> 8, 4 -> 2), and it uses the reshape
form, which is faster on CPU in the backward pass (``benchmarks/maxpool.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lesample.threefry import random_words

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
]

BN_MOMENTUM = 0.9  # flax convention; = PyTorch/Torch momentum 0.1 of the reference code


# ---------------------------------------------------------------------------------------------
# Building blocks.


class Dropout(nnx.Module):
    """Inverted dropout with 16-bit masks: ``Dropout(rate)(x, key)``; ``key=None`` is the
    identity (evaluation mode).

    A unit is kept when a 16-bit random integer is below ``t = round((1 - rate) 2^16)``, and
    kept units are scaled by ``2^16 / t``, the exact inverse of the keep probability, so the
    layer is unbiased. The rate is ``rate`` to within 2^-17 (0.2 gives 0.199997; 0.25 and
    0.5 are exact). Each random 32-bit word (``lesample.threefry.random_words``: 2.3x cheaper
    per word than ``jax.random.bits`` on the CPU) makes two masks. Dropout costs about 5% of
    an mnistfc gradient on the CPU (20 gradients: 190 ms, 179 ms with rate 0; measured), down
    from 16% with the bits of ``jax.random.bits`` unpacked in interleaved pairs.
    """

    def __init__(self, rate: float):
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"dropout `rate` must be a number in [0, 1); got {rate!r}.")
        self.rate = float(rate)
        self.threshold = round((1.0 - rate) * 2**16)
        if self.threshold < 1:  # the scale 2^16 / t needs t >= 1
            raise ValueError(f"dropout `rate` must be at most 1 - 2^-17 (16-bit masks); "
                             f"got {rate!r}.")

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if key is None or self.rate == 0.0:
            return x
        n = x.size
        words = random_words(key, -(-n // 2), store=False)
        # Low halves mask the first half of the flattened x, high halves the second: on
        # XLA:CPU this fuses better than interleaving them (an mnistfc gradient ~6% faster).
        halves = jnp.concatenate([words & jnp.uint32(0xFFFF), words >> 16])
        keep = halves[:n].reshape(x.shape) < self.threshold
        return jnp.where(keep, x * (2**16 / self.threshold), 0).astype(x.dtype)


def max_pool(x: jax.Array, window: int) -> jax.Array:
    """Max-pool NHWC ``x`` over ``window x window`` patches with stride ``window`` (VALID):
    ``nnx.max_pool``, a ``lax.reduce_window``."""
    return nnx.max_pool(x, (window, window), strides=(window, window), padding="VALID")


def max_pool_reshape(x: jax.Array, window: int) -> jax.Array:
    """Same as ``max_pool`` when ``window`` divides H and W, as a reshape and a ``max``.

    Its backward pass is an elementwise comparison instead of ``select_and_scatter_add``.
    Where ``window`` does not divide H or W it falls back to ``max_pool`` (whose VALID
    padding drops the remainder)."""
    n, h, w, c = x.shape
    if h % window or w % window:
        return max_pool(x, window)
    return x.reshape(n, h // window, window, w // window, window, c).max(axis=(2, 4))


POOLS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "reshape": max_pool_reshape,
    "reduce_window": max_pool,
}


def conv_shifted_matmul(inputs, kernel, window_strides, padding, *, lhs_dilation=None,
                        rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                        **kwargs):
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels (any strides; padding
    "VALID", "SAME" or non-negative pairs; no dilation or groups) as one matmul over the
    ``kh * kw`` shifted, strided slices of the zero-padded input (im2col by slicing); any
    other case goes to ``lax.conv_general_dilated``. Same result up to rounding. On XLA:CPU,
    where XLA's convolution gradients run far slower inside a loop: LeNet's gradient step
    1.5-2x faster (``benchmarks/maxpool.py``), All-CNN's in a ``lax.scan`` 26 s -> 0.52 s per
    gradient of 32 images (measured). A drop-in for ``nnx.Conv(conv_general_dilated=...)``."""
    plain = (kernel.ndim == 4 and inputs.ndim == 4
             and lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
             and feature_group_count == 1
             and dimension_numbers == jax.lax.conv_dimension_numbers(
                 inputs.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
             and kwargs.get("preferred_element_type") is None
             and kwargs.get("out_sharding") is None)
    if plain and isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(inputs.shape[1:3], kernel.shape[:2], window_strides,
                                          padding)
    if not plain or min(p for pair in padding for p in pair) < 0:
        return jax.lax.conv_general_dilated(
            inputs, kernel, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, **kwargs)
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (ph, pw) = window_strides, padding
    x = jnp.pad(inputs, ((0, 0), tuple(ph), tuple(pw), (0, 0)))
    h, w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    cols = jnp.concatenate([x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)
    # cols: (N, h, w, kh * kw * cin)
    return jax.lax.dot_general(cols, kernel.reshape(kh * kw * cin, cout),
                               (((3,), (0,)), ((), ())), precision=kwargs.get("precision"))


#: Convolution implementations of LeNet and All-CNN (``nnx.Conv``'s ``conv_general_dilated``).
CONVS: dict[str, Callable] = {
    "matmul": conv_shifted_matmul,
    "xla": jax.lax.conv_general_dilated,
}


def _check_choice(name: str, value, choices: dict) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def _batch_norm(features: int, momentum: float, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=momentum, epsilon=1e-5, rngs=rngs)


def _dropout_keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _as_images(x: jax.Array, height: int, width: int, channels: int) -> jax.Array:
    """Accept flat ``(N, H*W*C)`` or ``(N, H, W)`` inputs as NHWC."""
    return x.reshape(x.shape[0], height, width, channels)


# ---------------------------------------------------------------------------------------------
# Models.


class MnistFC(nnx.Module):
    """mnistfc: 784-drop-[fc1024+BN+ReLU+drop]x2-fc10 (paper §8.2.1: dropout 0.2; the
    reference code uses 0.5). 1,867,786 parameters (``tests/test_nets.py`` derives it)."""

    def __init__(self, *, dropout: float = 0.2, hidden: int = 1024,
                 bn_momentum: float = BN_MOMENTUM, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(784, hidden, rngs=rngs)
        self.bn1 = _batch_norm(hidden, bn_momentum, rngs)
        self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.bn2 = _batch_norm(hidden, bn_momentum, rngs)
        self.fc3 = nnx.Linear(hidden, 10, rngs=rngs)
        self.drop = Dropout(dropout)

    def __call__(self, x, key=None, *, train: bool | None = None):
        """Logits ``(N, 10)`` of ``x`` (``(N, 784)`` or ``(N, 28, 28[, 1])``); see the module
        docstring for ``key`` and ``train``."""
        train = key is not None if train is None else train
        keys = _dropout_keys(key, 3)
        x = self.drop(x.reshape(x.shape[0], -1), keys[0])
        x = nnx.relu(self.bn1(self.fc1(x), use_running_average=not train))
        x = self.drop(x, keys[1])
        x = nnx.relu(self.bn2(self.fc2(x), use_running_average=not train))
        x = self.drop(x, keys[2])
        return self.fc3(x)


class LeNet(nnx.Module):
    """LeNet of paper §8.2.2: conv20,5,pool3 - drop - conv50,5,pool2 - drop - fc500 - drop -
    fc10, dropout 0.25 (the reference code uses 0.5), BatchNorm after each convolution.

    Shapes (VALID convolutions): 28 -conv5-> 24 -pool3-> 8 -conv5-> 4 -pool2-> 2, so fc500
    sees 50 * 2 * 2 = 200 features. With ``fc_batchnorm=False`` (default) the count is the
    paper's 131,220 parameters, which is the Torch reference (``models.lua``, ``mnistconv``:
    BatchNorm after the two convolutions, none after fc500); ``fc_batchnorm=True`` adds
    BatchNorm after fc500 as the later PyTorch reference does (132,220 parameters).

    Each convolution block is conv -> BN -> max-pool -> ReLU -> dropout: ReLU is monotone so
    it commutes with the max, and applying it after the pool touches 9x (4x) fewer values
    than conv -> BN -> ReLU -> pool, with the same output and gradients. ``pool`` picks the
    max-pool implementation (``"reshape"``, the faster, or ``"reduce_window"``), ``conv`` the
    convolution's (``"matmul"``, :func:`conv_shifted_matmul`, the faster on CPU, or
    ``"xla"``, ``lax.conv_general_dilated``).
    """

    def __init__(self, *, dropout: float = 0.25, fc_batchnorm: bool = False,
                 bn_momentum: float = BN_MOMENTUM, pool: str = "reshape",
                 conv: str = "matmul", rngs: nnx.Rngs):
        _check_choice("pool", pool, POOLS)
        _check_choice("conv", conv, CONVS)
        self.pool = pool
        self.conv1 = nnx.Conv(1, 20, (5, 5), padding="VALID", conv_general_dilated=CONVS[conv],
                              rngs=rngs)
        self.bn1 = _batch_norm(20, bn_momentum, rngs)
        self.conv2 = nnx.Conv(20, 50, (5, 5), padding="VALID",
                              conv_general_dilated=CONVS[conv], rngs=rngs)
        self.bn2 = _batch_norm(50, bn_momentum, rngs)
        self.fc1 = nnx.Linear(50 * 2 * 2, 500, rngs=rngs)
        self.bn3 = _batch_norm(500, bn_momentum, rngs) if fc_batchnorm else None
        self.fc2 = nnx.Linear(500, 10, rngs=rngs)
        self.drop = Dropout(dropout)

    def __call__(self, x, key=None, *, train: bool | None = None):
        """Logits ``(N, 10)`` of ``x`` (``(N, 28, 28, 1)``, ``(N, 28, 28)`` or ``(N, 784)``);
        see the module docstring for ``key`` and ``train``."""
        train = key is not None if train is None else train
        keys = _dropout_keys(key, 3)
        pool = POOLS[self.pool]
        x = _as_images(x, 28, 28, 1)
        x = nnx.relu(pool(self.bn1(self.conv1(x), use_running_average=not train), 3))
        x = self.drop(x, keys[0])
        x = nnx.relu(pool(self.bn2(self.conv2(x), use_running_average=not train), 2))
        x = self.drop(x, keys[1])
        x = self.fc1(x.reshape(x.shape[0], -1))
        if self.bn3 is not None:
            x = self.bn3(x, use_running_average=not train)
        x = self.drop(nnx.relu(x), keys[2])
        return self.fc2(x)


class AllCNN(nnx.Module):
    """All-CNN-C with BatchNorm (paper §8.3; Springenberg et al. 2014), for 32x32x3 inputs.

    drop(input_dropout) - block96 - block192 - conv192,3 - conv192,3 - conv10,1 - mean-pool,
    where ``block_d`` = conv d,3 - conv d,3 - conv d,3 stride 2 - drop(block_dropout). Every
    convolution, the last included, is followed by BatchNorm and ReLU, as in both reference
    implementations (``models.lua``, ``python/models.py``; Springenberg's conv10 has a ReLU
    too); 3x3 convolutions pad by 1 on each side (32 -> 32 -> 32 -> 16 -> ... -> 8), so
    the mean-pool averages a 10 x 8 x 8 map. 1,667,166 parameters (the paper: 1.67 million).

    ``conv`` picks the convolutions (as ``LeNet``'s): None (default) is ``"matmul"`` on the CPU,
    where XLA's convolution gradients inside a ``lax.scan`` ran 50x slower (26 s against
    0.52 s per gradient of 32 images, measured), and ``"xla"`` elsewhere (cuDNN on a GPU;
    the matmul form materialises 9x its input per 3x3 convolution). Same parameters and,
    up to rounding, the same network either way.
    """

    def __init__(self, *, input_dropout: float = 0.2, block_dropout: float = 0.5,
                 widths: tuple[int, int] = (96, 192), num_classes: int = 10,
                 bn_momentum: float = BN_MOMENTUM, conv: str | None = None,
                 rngs: nnx.Rngs):
        if conv is None:
            conv = "matmul" if jax.default_backend() == "cpu" else "xla"
        _check_choice("conv", conv, CONVS)
        c1, c2 = widths
        # (in, out, kernel, stride); a block ends at each stride-2 convolution.
        spec = [(3, c1, 3, 1), (c1, c1, 3, 1), (c1, c1, 3, 2),
                (c1, c2, 3, 1), (c2, c2, 3, 1), (c2, c2, 3, 2),
                (c2, c2, 3, 1), (c2, c2, 3, 1), (c2, num_classes, 1, 1)]
        self.strides = tuple(s for *_, s in spec)
        self.convs = nnx.List([
            nnx.Conv(ci, co, (k, k), strides=(s, s),
                     padding=((k // 2, k // 2), (k // 2, k // 2)),
                     conv_general_dilated=CONVS[conv], rngs=rngs)
            for ci, co, k, s in spec
        ])
        self.bns = nnx.List([_batch_norm(co, bn_momentum, rngs) for _, co, _, _ in spec])
        self.input_drop = Dropout(input_dropout)
        self.block_drop = Dropout(block_dropout)

    def __call__(self, x, key=None, *, train: bool | None = None):
        """Logits ``(N, num_classes)`` of NHWC ``x`` ``(N, 32, 32, 3)``; see the module
        docstring for ``key`` and ``train``."""
        train = key is not None if train is None else train
        keys = _dropout_keys(key, 3)
        x = self.input_drop(x, keys[0])
        block = 1
        for conv, bn, stride in zip(self.convs, self.bns, self.strides, strict=True):
            x = nnx.relu(bn(conv(x), use_running_average=not train))
            if stride == 2:
                x = self.block_drop(x, keys[block])
                block += 1
        return x.mean(axis=(1, 2))


MODELS: dict[str, type[nnx.Module]] = {"mnistfc": MnistFC, "lenet": LeNet, "allcnn": AllCNN}


def num_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves: weights, biases, BN scale/bias)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---------------------------------------------------------------------------------------------
# Pure functions of (params, batch_stats, batch).


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
