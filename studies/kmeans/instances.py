"""The k-means instances of the study, generated from seeds (docs/kmeans.md).

- ``unequal``: 2-D, K = 8; four big diffuse clusters (2,200 to 3,000 points, spread 1.0 to
  1.2) and four small tight ones (200 to 400 points, spread 0.3 to 0.4), each tight one
  beside a diffuse one.
- ``pair``: 2-D, "4 means, 3 clusters" (the talk's slide): two round clusters and one tight
  pair of sub-clusters; the optimum puts two means in the pair.
- ``talk``: 2-D, K = 8 (the talk's k-means experiment: a 2-D mixture with the true number of
  clusters): eight round clusters of 1,250 points (spread 1) at random places at least 3.5
  apart in a 20 x 20 square, N = 10,000.
- ``groups``: d = 20, K = 32 in 8 well separated groups of 4 clusters, 2,000 points each
  (N = 64,000).

Larger instances (the study's full mode), where mini-batches should pay:

- ``scale``: d = 20, K = 32 in 8 groups of 4 as ``groups``, N = 2,000,000 (62,500 points per
  cluster), float32.
- ``fashion10`` and ``fashion50``: the Fashion-MNIST pixels (train and test, 70,000 x 784,
  scaled to [0, 1]), K = 10 and K = 50; from Debian's ``dataset-fashion-mnist``. They have no
  generating centres: ``centers`` and ``groups`` are None.

Each instance also carries its generating centres (one per Gaussian component), from
which the study starts Lloyd when it looks for the best-known minimum, and a group label per
component (the visible clusters: a big diffuse cluster with the tight one beside it, the
tight pair, a group of four), by which the study counts centres put in the wrong group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Instance", "INSTANCES", "LARGE", "make_instance"]


class Instance(NamedTuple):
    name: str
    X: np.ndarray  # (N, d) float32
    n_clusters: int
    centers: np.ndarray | None  # (K, d) generating centres (None for real data)
    description: str
    groups: np.ndarray | None  # (K,) group of each generating centre


def _blobs(rng, centers, sizes, spreads) -> np.ndarray:
    parts = [c + s * rng.standard_normal((n, len(c))) for c, n, s in zip(centers, sizes,
                                                                       spreads, strict=True)]
    X = np.concatenate(parts).astype(np.float32)
    return X[rng.permutation(len(X))]


def _unequal(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    big = np.array([[0.0, 0.0], [7.0, 0.0], [0.0, 7.0], [7.0, 7.0]]) + rng.uniform(-0.5, 0.5,
                                                                                    (4, 2))
    angle = rng.uniform(0, 2 * np.pi, 4)
    tight = big + 2.8 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    centers = np.concatenate([big, tight])
    sizes = [3000, 2800, 2500, 2200, 400, 300, 250, 200]
    spreads = [1.2, 1.1, 1.0, 1.0, 0.4, 0.35, 0.3, 0.3]
    return Instance("unequal", _blobs(rng, centers, sizes, spreads), 8, centers,
                    "2-D, K = 8: big diffuse clusters (2,200-3,000 points, spread 1.0-1.2) "
                    "with small tight ones (200-400 points, spread 0.3-0.4) beside them",
                    np.tile(np.arange(4), 2))


def _pair(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [2.1, 5.0], [3.9, 5.0]])
    sizes = [1000, 1000, 500, 500]
    spreads = [1.0, 1.0, 0.3, 0.3]
    return Instance("pair", _blobs(rng, centers, sizes, spreads), 4, centers,
                    "2-D, 4 means, 3 clusters: two round clusters (1,000 points, spread 1) "
                    "and a tight pair (2 x 500 points, spread 0.3, 1.8 apart)",
                    np.array([0, 1, 2, 2]))


def _talk(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    centers = np.zeros((0, 2))
    while len(centers) < 8:  # rejection: no two components closer than 3.5
        c = rng.uniform(0.0, 20.0, 2)
        if len(centers) == 0 or np.sqrt(((centers - c) ** 2).sum(1)).min() >= 3.5:
            centers = np.vstack([centers, c])
    return Instance("talk", _blobs(rng, centers, [1250] * 8, [1.0] * 8), 8, centers,
                    "2-D, K = 8: eight round clusters (1,250 points each, spread 1) at random "
                    "places at least 3.5 apart, N = 10,000 (the talk's setting)",
                    np.arange(8))


def _grouped(name: str, seed: int, size: int) -> Instance:
    rng = np.random.default_rng(seed)
    d, groups, per_group = 20, 8, 4
    tops = 12.0 * rng.standard_normal((groups, d))
    centers = (tops[:, None, :] + 2.0 * rng.standard_normal((groups, per_group, d)))
    centers = centers.reshape(-1, d)
    K = groups * per_group
    if size * K > 1_000_000:  # float32 throughout: the float64 draws would need 2x the memory
        X = np.empty((size * K, d), np.float32)
        for i, c in enumerate(centers):
            X[i * size:(i + 1) * size] = c + rng.standard_normal((size, d), np.float32)
        X = X[rng.permutation(len(X))]
    else:
        X = _blobs(rng, centers, [size] * K, [1.0] * K)
    return Instance(name, X, K, centers,
                    f"d = 20, K = 32: 8 groups of 4 clusters ({size:,} points each, spread 1), "
                    f"N = {size * K:,}", np.repeat(np.arange(groups), per_group))


def _groups(seed: int) -> Instance:
    return _grouped("groups", seed, 2000)


def _scale(seed: int) -> Instance:
    return _grouped("scale", seed, 62_500)


def _fashion(K: int):
    def make(seed: int) -> Instance:
        del seed  # real data: nothing to draw
        from lesample.data import load_dataset

        data = load_dataset("fashion-mnist")
        X = np.concatenate([data.train_images, data.test_images]).reshape(70_000, -1)
        return Instance(f"fashion{K}", X.astype(np.float32), K, None,
                        f"Fashion-MNIST pixels (70,000 x 784, in [0, 1]), K = {K}", None)

    return make


_MAKERS = {"unequal": _unequal, "pair": _pair, "talk": _talk, "groups": _groups,
           "scale": _scale, "fashion10": _fashion(10), "fashion50": _fashion(50)}
#: The small synthetic instances (every mode) and the large ones (full mode).
INSTANCES = ("unequal", "pair", "talk", "groups")
LARGE = ("scale", "fashion10", "fashion50")


def make_instance(name: str, seed: int = 0) -> Instance:
    """The instance ``name`` (one of :data:`INSTANCES` or :data:`LARGE`) generated from
    ``seed``."""
    if name not in _MAKERS:
        raise ValueError(f"unknown instance {name!r}; expected one of {INSTANCES + LARGE}")
    return _MAKERS[name](seed)
