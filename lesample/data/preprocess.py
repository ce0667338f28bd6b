"""Preprocessing of the deep-benchmark images: global contrast normalization and ZCA whitening
(CIFAR-10), and the upsampling of scikit-learn's 8x8 digits to 28x28.

CIFAR-10 preprocessing
----------------------
As the reference code (``ucla-vision/entropy-sgd``, ``process_cifar.py``): global contrast
normalization of each image (``gcn``: subtract the image's mean over its pixels and channels,
divide by its standard deviation, ``ddof=1``), then ZCA whitening (``ZCA.fit``) **fitted on
the training set only** and applied to both sets. The fit uses all 50,000 training images
whatever ``limit`` is, so a quick run sees the same inputs as a full one (its 3072 x 3072
eigendecomposition alone takes about 15 s on two CPU cores).

Digits are upsampled by separable linear interpolation with pixel centres aligned
(``upsample``), deterministic and exact in numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ZCA", "gcn", "gcn_zca", "upsample"]


def gcn(images: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Global contrast normalization: each image (the first axis indexes images) minus its
    mean over all its pixels and channels, divided by their standard deviation (``ddof=1``);
    an image whose deviation is below ``eps`` (a constant image) is only centred.
    ``float64``."""
    x = np.asarray(images, np.float64)
    axes = tuple(range(1, x.ndim))
    x = x - x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, ddof=1, keepdims=True)
    return x / np.where(std < eps, 1.0, std)


class ZCA(NamedTuple):
    """ZCA whitening ``x -> (x - mean) @ matrix``, ``matrix = U (Lambda + eps)^(-1/2) U^T``
    where ``U Lambda U^T`` is the covariance (``ddof=1``) of the data it was fitted on.

    ``matrix`` is symmetric: of all the whitening transforms it is the one that moves the
    data least (Bell & Sejnowski). Images are flattened per image (any layout, the same at
    fit and apply). The reference code adds its regularizer ``1e-5`` to ``sqrt(Lambda)``;
    here ``eps`` adds to ``Lambda`` (default ``1e-5``, also negligible against the
    eigenvalues of CIFAR-10 after GCN, except along the constant image that GCN removes).
    """

    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, D)

    @classmethod
    def fit(cls, images: np.ndarray, eps: float = 1e-5) -> ZCA:
        x = np.asarray(images, np.float64).reshape(len(images), -1)
        mean = x.mean(axis=0)
        x = x - mean
        lam, u = np.linalg.eigh(x.T @ x / (len(x) - 1))
        return cls(mean, (u / np.sqrt(np.maximum(lam, 0.0) + eps)) @ u.T)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Whitened ``images``, same shape, ``float32`` (computed in ``float64``)."""
        x = np.asarray(images, np.float64).reshape(len(images), -1)
        return ((x - self.mean) @ self.matrix).astype(np.float32).reshape(np.shape(images))


def gcn_zca(train: np.ndarray, test: np.ndarray, eps: float = 1e-5):
    """GCN on each set, then ZCA fitted on ``train`` alone and applied to both."""
    train, test = gcn(train), gcn(test)
    zca = ZCA.fit(train, eps)
    return zca.apply(train), zca.apply(test)


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images ``(N, n, n)`` to ``(N, size, size)`` by separable linear
    interpolation, pixel centres aligned (output pixel ``i`` samples the input at
    ``(i + 0.5) n / size - 0.5``, clamped to the border pixels). Each output is a convex
    combination of inputs, so the range is kept."""
    n = images.shape[-1]
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = pos - lo
    weights = np.zeros((size, n))
    weights[np.arange(size), lo] = 1 - frac
    weights[np.arange(size), lo + 1] = frac
    return np.einsum("ia,nab,jb->nij", weights, images, weights)
