"""The data sets of the deep benchmarks as ``Dataset`` splits (see :mod:`lesample.data`).

The digits split
----------------
scikit-learn's 1,797 8x8 digits (intensities 0..16): the first 1,500 are the training set,
the last 297 the test set; each image is upsampled to 28x28 by separable linear interpolation
with pixel centres aligned (``upsample``), deterministic and exact in numpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lesample.data.formats import read_cifar10, read_mnist_like, required_dir
from lesample.data.preprocess import gcn_zca, upsample

__all__ = ["DATASETS", "FASHION_MNIST_DEBIAN_DIR", "Dataset", "load_dataset"]

DATASETS = ("mnist", "fashion-mnist", "cifar10", "digits")
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_TEST = 297


class Dataset(NamedTuple):
    """A train/test split: NHWC ``float32`` images, ``int32`` labels in ``0..9``."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 limit: int | None = None, verify: bool = True) -> Dataset:
    """Load ``name`` (one of ``DATASETS``) as described in :mod:`lesample.data`.

    ``data_dir=None``: Fashion-MNIST from ``FASHION_MNIST_DEBIAN_DIR``, digits from
    scikit-learn; MNIST and CIFAR-10 need ``data_dir``. ``limit`` keeps the first ``limit``
    training images (all of them if there are fewer); the test set is never cut.
    ``verify`` checks the published checksums (:mod:`lesample.data.formats`).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of training images, got {limit}")
    if name == "digits":
        x, y, tx, ty = _digits()
    elif name == "cifar10":
        x, y, tx, ty = read_cifar10(required_dir(name, data_dir), verify=verify)
        x, tx = gcn_zca(x, tx)
    else:
        if data_dir is None and name == "fashion-mnist":
            data_dir = FASHION_MNIST_DEBIAN_DIR
            if not data_dir.is_dir():
                raise FileNotFoundError(
                    f"Fashion-MNIST is not installed in {data_dir}: install Debian's package "
                    "(`apt-get update && apt-get install -y dataset-fashion-mnist`) or pass "
                    "data_dir, a folder with the four IDX files")
        x, y, tx, ty = read_mnist_like(name, required_dir(name, data_dir), verify)
        x, tx = (a.astype(np.float32)[..., None] / 255 for a in (x, tx))
    return Dataset(name, x[:limit], y[:limit].astype(np.int32), tx, ty.astype(np.int32))


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = upsample(digits.images / 16.0, 28).astype(np.float32)[..., None]
    y = digits.target
    cut = len(x) - DIGITS_TEST
    return x[:cut], y[:cut], x[cut:], y[cut:]
