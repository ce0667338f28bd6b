"""The three models of the deep benchmarks: ``MnistFC`` (mnistfc), ``LeNet`` and ``AllCNN``
(All-CNN-C with BatchNorm). Images are NHWC; outputs are logits ``(N, 10)``; ``model(x, key)``
is training mode and ``model(x)`` evaluation mode (see :mod:`lesample.nets`)."""

from __future__ import annotations

import jax
from flax import nnx

from lesample.nets.layers import CONVS, POOLS, Dropout

__all__ = ["BN_MOMENTUM", "MODELS", "AllCNN", "LeNet", "MnistFC", "num_params"]

BN_MOMENTUM = 0.9  # flax convention; = PyTorch/Torch momentum 0.1 of the reference code



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
    where XLA's convolution gradients inside a ``lax.scan`` run about 50x slower
    (docs/results.md), and ``"xla"`` elsewhere (cuDNN on a GPU;
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
